//! `ips blocklist import FILE`: read a list, filter and aggregate it in the daemon, and ban
//! what is left under origin `list:<name>` (replacing that list's earlier import).
use std::path::PathBuf;

use ips::{api::ImportRequest, enforcer::ImportReport};

use crate::{Ctx, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Import a list file (plain, FireHOL, Spamhaus, abuse.ch, CrowdSec stream).
    Import {
        /// The file (`-` for stdin).
        file: PathBuf,
        /// List name (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Format: plain, spamhaus, spamhaus-json, abusech, crowdsec (default: detected).
        #[arg(long)]
        format: Option<String>,
        /// How long entries last unless imported again.
        #[arg(long, default_value = "24h")]
        duration: String,
    },
    /// The configured sources: entries, last success, last error, drops.
    Status,
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    let (file, name, format, duration) = match cmd {
        Command::Import {
            file,
            name,
            format,
            duration,
        } => (file, name, format, duration),
        Command::Status => return status(ctx),
    };
    ips::duration::parse(&duration)?;
    if let Some(f) = &format {
        f.parse::<ips::blocklists::Format>()
            .map_err(anyhow::Error::msg)?;
    }
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
    };
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".into())
    });
    eprintln!(
        "importing {} ({} bytes) as list:{name} ...",
        file.display(),
        text.len()
    );
    let report: ImportReport = ctx.client().post(
        "/v1/ips/blocklists/import",
        &ImportRequest {
            name,
            text,
            format,
            duration: Some(duration),
        },
    )?;
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let p = &report.prepared;
    println!(
        "list:{}: {} entries read ({:?}), {} after filtering and aggregation; {} added, {} removed",
        report.name, p.read, p.format, report.entries, report.added, report.removed
    );
    let f = &p.filtered;
    println!(
        "left out: {} private, {} reserved, {} allowlisted; {} entries cut around such ranges",
        f.private, f.reserved, f.allowlisted, f.split
    );
    for (why, n) in &p.rejected {
        println!("rejected {n} entries: {why}");
    }
    Ok(())
}

fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let list: Vec<ips::blocklists::source::SourceStatus> =
        ctx.client().get("/v1/ips/blocklists")?;
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.entries.to_string(),
                s.last_success_ms
                    .map_or_else(|| "never".to_owned(), crate::output::time),
                s.last_error.clone().unwrap_or_else(|| "-".into()),
                s.dropped.to_string(),
                s.from.clone(),
            ]
        })
        .collect();
    crate::output::print(
        ctx.format,
        &list,
        &[
            "NAME",
            "ENTRIES",
            "LAST SUCCESS (UTC)",
            "LAST ERROR",
            "DROPPED",
            "FROM",
        ],
        rows,
    )
}
