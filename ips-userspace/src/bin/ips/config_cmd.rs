//! `ips config check`.
use std::path::Path;

use ips::config::Config;

use crate::Format;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Parse the config and report the first problem, naming the key.
    Check,
    /// Print the effective config (defaults filled in).
    Show,
}

pub fn exec(cmd: &Command, path: &Path, explicit: bool, format: Format) -> anyhow::Result<()> {
    let config = Config::load(path, explicit)?;
    match cmd {
        Command::Check => match format {
            Format::Json => println!("{}", serde_json::json!({ "ok": true, "path": path })),
            Format::Table => println!("{}: ok", path.display()),
        },
        Command::Show => match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&config)?),
            Format::Table => print!("{}", toml::to_string(&config)?),
        },
    }
    Ok(())
}
