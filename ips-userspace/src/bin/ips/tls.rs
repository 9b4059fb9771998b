//! `ips tls generate`: a self-signed certificate and key for the TCP listener of a lab (use a
//! certificate from your CA in production).
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a self-signed certificate and its key (PEM, the key mode 0600).
    Generate {
        /// Certificate file to write.
        #[arg(long)]
        cert: PathBuf,
        /// Key file to write.
        #[arg(long)]
        key: PathBuf,
        /// Names and addresses it is for (repeat); clients check them.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
}

pub fn exec(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Generate { cert, key, names } => {
            use std::{io::Write, os::unix::fs::OpenOptionsExt};
            let (cert_pem, key_pem) = ips::api::tls::generate(&names)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key)
                .and_then(|mut f| f.write_all(key_pem.as_bytes()))
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            std::fs::write(&cert, cert_pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            println!(
                "wrote {} and {} for {}; set api.cert and api.key to them",
                cert.display(),
                key.display(),
                names.join(", ")
            );
            Ok(())
        }
    }
}
