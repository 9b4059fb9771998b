//! `ips`: the daemon (`ips run`) and the CLI that talks to it. One file per subcommand.
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use ips::config::{self, Config};

mod alerts;
mod allow;
mod blocklist;
mod bouncers;
mod config_cmd;
mod decisions;
mod detach;
mod hub;
mod metrics;
mod output;
mod reload;
mod replay;
mod run;
mod scenarios;
mod status;
mod store;
mod tls;

/// An intrusion prevention system that drops banned sources at XDP.
#[derive(Parser)]
#[command(name = "ips", version, about)]
struct Cli {
    /// Config file.
    #[arg(short, long, global = true, env = "IPS_CONFIG")]
    config: Option<PathBuf>,
    /// Output format of listings.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// `--output`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Table,
    /// For programs.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: attach XDP, enforce decisions, serve the local API.
    Run(run::Args),
    /// Add, delete and list bans.
    #[command(subcommand)]
    Decisions(decisions::Command),
    /// Add, delete and list allowlist entries (never banned).
    #[command(subcommand)]
    Allow(allow::Command),
    /// Interfaces, attach mode, map fill and packet counters.
    Status,
    /// Packets judged and dropped per origin, map fill, log sources: what /metrics serves.
    Metrics,
    /// Remove the XDP program from an interface (and the pins when none is left).
    Detach(detach::Args),
    /// API keys for CrowdSec bouncers reading `ips` decisions (LAPI-compatible endpoints).
    #[command(subcommand)]
    Bouncers(bouncers::Command),
    /// Keys for ips agents that report to this one (alerts, decisions, heartbeats).
    #[command(subcommand)]
    Machines(bouncers::Command),
    /// Admin tokens: the whole API over TCP (`Authorization: Bearer`).
    #[command(subcommand)]
    Tokens(bouncers::Command),
    /// TLS for the TCP listener.
    #[command(subcommand)]
    Tls(tls::Command),
    /// Import blocklists.
    #[command(subcommand)]
    Blocklist(blocklist::Command),
    /// Alerts raised by the detection scenarios.
    #[command(subcommand)]
    Alerts(alerts::Command),
    /// Run the detection pipeline offline on a log file and print what it would ban.
    Replay(replay::ReplayArgs),
    /// Show how one log line parses and which scenarios it feeds.
    Explain(replay::ExplainArgs),
    /// List the scenarios, or translate CrowdSec scenario YAML into ips's format.
    #[command(subcommand)]
    Scenarios(scenarios::Command),
    /// Run a community hub: agents push signals, everyone pulls the consensus.
    Hub(hub::Args),
    /// Check the config file, or write one for this host.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Make the running daemon read its config again (as SIGHUP does).
    Reload,
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ips.1 and one per subcommand) into a folder.
    #[command(hide = true)]
    Man {
        /// The folder.
        dir: PathBuf,
    },
    /// Check or repair the decision store, offline.
    #[command(subcommand)]
    Store(store::Command),
}

/// What every subcommand gets.
pub struct Ctx {
    /// The parsed config.
    pub config: Config,
    /// Where it came from.
    pub config_path: PathBuf,
    /// Output format.
    pub format: Format,
}

impl Ctx {
    /// A client for the running daemon.
    pub fn client(&self) -> ips::api::Client {
        ips::api::Client::new(&self.config.api.socket)
    }
}

fn main() {
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let config_path = cli
        .config
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    if !matches!(cli.command, Command::Run(_) | Command::Hub(_)) {
        // A CLI whose output is cut short (`ips status | head -1`) ends quietly, as other
        // Unix tools do, instead of failing on the closed pipe. The daemons keep ignoring
        // SIGPIPE (a client gone is an error on its socket, not the daemon's end).
        // SAFETY: setting a signal's disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = (|| -> anyhow::Result<()> {
        match &cli.command {
            Command::Config(c) => return config_cmd::exec(c, &config_path, explicit, cli.output),
            Command::Completions { shell } => {
                clap_complete::generate(*shell, &mut Cli::command(), "ips", &mut std::io::stdout());
                return Ok(());
            }
            Command::Man { dir } => return man_pages(dir),
            _ => {}
        }
        let command = match cli.command {
            Command::Hub(args) => return hub::exec(args),
            other => other,
        };
        let config = Config::load(&config_path, explicit)?;
        let ctx = Ctx {
            config,
            config_path,
            format: cli.output,
        };
        match command {
            Command::Run(args) => run::exec(args, ctx),
            Command::Decisions(c) => decisions::exec(c, &ctx),
            Command::Allow(c) => allow::exec(c, &ctx),
            Command::Status => status::exec(&ctx),
            Command::Metrics => metrics::exec(&ctx),
            Command::Reload => reload::exec(&ctx),
            Command::Detach(args) => detach::exec(args, &ctx),
            Command::Alerts(c) => alerts::exec(c, &ctx),
            Command::Blocklist(c) => blocklist::exec(c, &ctx),
            Command::Bouncers(c) => bouncers::exec(c, ips::decisions::Role::Bouncer, &ctx),
            Command::Machines(c) => bouncers::exec(c, ips::decisions::Role::Machine, &ctx),
            Command::Tokens(c) => bouncers::exec(c, ips::decisions::Role::Admin, &ctx),
            Command::Tls(c) => tls::exec(c),
            Command::Replay(args) => replay::replay(args, &ctx),
            Command::Explain(args) => replay::explain(args, &ctx),
            Command::Scenarios(c) => scenarios::exec(c, &ctx),
            Command::Store(c) => store::exec(c, &ctx),
            Command::Config(_)
            | Command::Hub(_)
            | Command::Completions { .. }
            | Command::Man { .. } => Ok(()),
        }
    })();
    if let Err(e) = result {
        eprintln!("error: {}", message(&e));
        std::process::exit(1);
    }
}

/// Renders `ips.1` and `ips-SUB.1` for every visible subcommand into `dir`.
fn man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut pages = vec![("ips".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ips-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(name.clone());
        pages.push((name, page));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(())
}

/// The error and its causes on one line, each said once (many messages quote their cause).
fn message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
