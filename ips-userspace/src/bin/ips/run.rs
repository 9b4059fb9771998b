//! `ips run`.
use ips::config::LogFormat;

use crate::Ctx;

/// `ips run` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Interface to attach to (repeat for several); added to `enforcer.interfaces`.
    #[arg(short, long = "iface")]
    ifaces: Vec<String>,
}

pub fn exec(args: Args, ctx: Ctx) -> anyhow::Result<()> {
    let log = &ctx.config.log;
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        // Colours only for a terminal: a file or the journal gets plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    if ctx.config_path.exists() {
        tracing::info!(config = %ctx.config_path.display(), "Starting ips.");
    } else {
        tracing::warn!(
            config = %ctx.config_path.display(),
            interfaces = ?ctx.config.enforcer.interfaces,
            store = %ctx.config.store.path.display(),
            socket = %ctx.config.api.socket.display(),
            "No config file: running on the defaults (no log source, so nothing is detected). `ips config init` writes one for this host."
        );
    }
    ips::daemon::run(ctx.config, &ctx.config_path, &args.ifaces)?;
    Ok(())
}
