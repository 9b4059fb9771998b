//! `ips run`.
use crate::Ctx;

/// `ips run` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Interface to attach to (repeat for several); added to `enforcer.interfaces`.
    #[arg(short, long = "iface")]
    ifaces: Vec<String>,
}

pub fn exec(args: Args, ctx: Ctx) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tracing::info!(config = %ctx.config_path.display(), "Starting ips.");
    ips::daemon::run(ctx.config, &ctx.config_path, &args.ifaces)?;
    Ok(())
}
