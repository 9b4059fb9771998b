//! TLS for the TCP listener: the acceptor from the configured PEM files, and a self-signed
//! pair for a lab (`ips tls generate`).
use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file did not read.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the pair.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The pair could not be generated.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn pem(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The certificate chain in `cert` (PEM).
pub fn read_certs(cert: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, e))?;
    if certs.is_empty() {
        return Err(pem(cert, "no certificate in it"));
    }
    Ok(certs)
}

/// A TLS acceptor (TLS 1.2 and 1.3, HTTP/1.1) for the pair in `cert` and `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A self-signed certificate for `names` (DNS names or IP addresses) and its key, both PEM.
pub fn generate(names: &[String]) -> Result<(String, String), TlsError> {
    let pair = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((pair.cert.pem(), pair.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_makes_an_acceptor() {
        let dir = std::env::temp_dir().join(format!("ips-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("c.pem"), cert).unwrap();
        std::fs::write(dir.join("k.pem"), key).unwrap();
        assert!(acceptor(&dir.join("c.pem"), &dir.join("k.pem")).is_ok());
        let Err(e) = acceptor(&dir.join("k.pem"), &dir.join("c.pem")) else {
            panic!("a key read as a certificate");
        };
        assert!(e.to_string().contains(".pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
