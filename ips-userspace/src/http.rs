//! The HTTP client the daemon's pull and push jobs use: built once per job and reused, so
//! connections are kept alive between fetches. Statuses are answers, not errors.
use std::time::Duration;

/// A client whose requests give up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// [`agent`] that trusts only the certificates in the PEM file `ca` (a central `ips` with a
/// self-signed certificate, or a private CA).
pub fn agent_trusting(
    timeout: Duration,
    ca: &std::path::Path,
) -> Result<ureq::Agent, crate::api::tls::TlsError> {
    let roots: Vec<ureq::tls::Certificate<'static>> = crate::api::tls::read_certs(ca)?
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
        .build();
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .build()
        .into())
}
