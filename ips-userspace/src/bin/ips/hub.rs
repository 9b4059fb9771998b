//! `ips hub`: run a community hub.
use std::{net::SocketAddr, path::PathBuf};

use ips::{
    hub::{HubConfig, HubStore, server},
    prefix::Prefix,
};

/// `ips hub` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// SQLite file, or a PostgreSQL connection string (`postgres://user:pass@host/db`) for a
    /// fleet of hub nodes sharing one database.
    #[arg(long, default_value = "/var/lib/ips/hub.db")]
    db: String,
    /// Enrolment token agents present.
    #[arg(long, env = "IPS_HUB_TOKEN")]
    token: Option<String>,
    /// How long a new agent takes to weigh its full trust, unless approved.
    #[arg(long, default_value = "7d")]
    trust_ramp: String,
    /// Instead of serving: approve an enrolled agent (it weighs its full trust at once).
    #[command(subcommand)]
    action: Option<Action>,
    /// Trust weight (distinct agents) needed to list an address.
    #[arg(long, default_value_t = 3.0)]
    k: f64,
    /// How long a report counts.
    #[arg(long, default_value = "24h")]
    window: String,
    /// Never listed (repeat).
    #[arg(long = "allow")]
    allow: Vec<Prefix>,
    /// The shortest IPv4 prefix a signal may carry.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=32))]
    min_prefix_v4: u8,
    /// The shortest IPv6 prefix a signal may carry.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=128))]
    min_prefix_v6: u8,
    /// Signals one agent may push per minute; a push over that is answered 429 and kept by
    /// the agent for a later try.
    #[arg(long, default_value_t = ips::hub::signals_per_minute())]
    max_signals_per_minute: u64,
}

/// What else `ips hub` does than serve.
#[derive(clap::Subcommand)]
pub enum Action {
    /// Approve an agent by name, as `cscli machines validate` does.
    Approve {
        /// The agent's name, as it enrolled.
        name: String,
    },
}

pub fn exec(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let token = match (&args.action, &args.token) {
        (Some(_), t) => t.clone().unwrap_or_default(),
        (None, Some(t)) if t.len() >= 16 => t.clone(),
        (None, _) => anyhow::bail!(
            "the enrolment token (--token or IPS_HUB_TOKEN) must be at least 16 characters"
        ),
    };
    let window_ms = ips::duration::parse(&args.window)?.as_millis() as i64;
    let ramp_ms = ips::duration::parse(&args.trust_ramp)?.as_millis() as i64;
    let config = HubConfig {
        token,
        ramp_ms,
        k: args.k,
        window_ms,
        allowlist: args.allow,
        min: ips::decisions::MinPrefix {
            v4: args.min_prefix_v4,
            v6: args.min_prefix_v6,
        },
        signals_per_minute: args.max_signals_per_minute,
    };
    let pg = args.db.starts_with("postgres://")
        || args.db.starts_with("postgresql://")
        || args.db.contains("host=");
    let store = if pg {
        HubStore::postgres(&args.db, config)?
    } else {
        let path = PathBuf::from(&args.db);
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        HubStore::open(&path, config)?
    };
    let mut store = store;
    if let Some(Action::Approve { name }) = &args.action {
        if store.approve(name)? {
            println!("approved {name}: it weighs its full trust now");
            return Ok(());
        }
        anyhow::bail!("no agent named {name:?} has enrolled");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = server::bind(args.listen).await?;
        tracing::info!(listen = %args.listen, "Hub listening.");
        server::serve(store, listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}
