//! `ips config check|show|init`.
use std::path::{Path, PathBuf};

use ips::config::Config;

use crate::Format;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Parse the config and report the first problem, naming the key.
    Check,
    /// Print the effective config (defaults filled in).
    Show,
    /// Write a config for this host: follows the logs of the sshd, nginx and Apache found.
    Init(InitArgs),
}

/// `ips config init` flags.
#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write (`-` for standard output); the `--config` path by default.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace a file that exists.
    #[arg(long)]
    force: bool,
    /// Look for services under this root instead of `/` (for images and tests).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

pub fn exec(cmd: &Command, path: &Path, explicit: bool, format: Format) -> anyhow::Result<()> {
    if let Command::Init(args) = cmd {
        return init(args, path);
    }
    let config = Config::load(path, explicit)?;
    match cmd {
        Command::Check => {
            if !path.exists() {
                eprintln!(
                    "note: {} does not exist; the defaults are used (`ips config init` writes one)",
                    path.display()
                );
            }
            match format {
                Format::Json => println!("{}", serde_json::json!({ "ok": true, "path": path })),
                Format::Table => println!("{}: ok", path.display()),
            }
        }
        Command::Show => match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&config)?),
            Format::Table => print!("{}", toml::to_string(&config)?),
        },
        Command::Init(_) => {}
    }
    Ok(())
}

fn init(args: &InitArgs, config_path: &Path) -> anyhow::Result<()> {
    let found = ips::setup::detect(&args.root);
    let text = ips::setup::config_text(&found);
    // What is written must load.
    Config::from_toml(&text, Path::new("(generated)"))?;
    let out = args.out.clone().unwrap_or_else(|| config_path.to_owned());
    if out == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    if out.exists() && !args.force {
        anyhow::bail!(
            "{} exists; pass --force to replace it, or --out - to print",
            out.display()
        );
    }
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &text).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    eprintln!("wrote {}", out.display());
    if found.is_empty() {
        eprintln!("  no sshd, nginx or Apache log found: add an [[acquisition]] table");
    }
    for f in &found {
        eprintln!("  {}: {}", f.service, f.from);
    }
    eprintln!(
        "  enforcer.interfaces = [\"auto\"] (the default route's interface); check with `ips config check`"
    );
    Ok(())
}
