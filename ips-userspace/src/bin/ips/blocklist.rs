//! `ips blocklist import FILE`: read a list, filter and aggregate it in the daemon, and ban
//! what is left under origin `list:<name>` (replacing that list's earlier import).
use std::path::PathBuf;

use std::time::Duration;

use ips::{api::ImportRequest, blocklists::Format as ListFormat, decisions::ImportReport};

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
        format: Option<ListFormat>,
        /// How long entries last unless imported again.
        #[arg(long, default_value = "24h", value_parser = ips::duration::parse)]
        duration: Duration,
    },
    /// The configured sources: entries, last success, last error, drops.
    Status,
    /// Remove an imported list (its entries are unbanned unless something else bans them).
    Delete {
        /// List name.
        name: String,
    },
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
        Command::Delete { name } => {
            ips::decisions::check_name(&name).map_err(|e| anyhow::anyhow!("list {e}"))?;
            let v: serde_json::Value = ctx.client().delete(&format!(
                "/v1/ips/blocklists?name={}",
                ips::api::client::encode(&name)
            ))?;
            if ctx.format == crate::Format::Json {
                println!("{v}");
            } else {
                println!("list:{name} removed ({} entries)", v["removed"]);
            }
            return Ok(());
        }
    };
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        read_with_progress(&file)?
    };
    if text.len() > ips::api::MAX_IMPORT {
        anyhow::bail!(
            "the list is {} MB, over the {} MiB an import takes: split it, or serve it as a [[blocklist]] source",
            text.len() >> 20,
            ips::api::MAX_IMPORT >> 20
        );
    }
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".into())
    });
    ips::decisions::check_name(&name).map_err(|e| anyhow::anyhow!("list {e} (give --name)"))?;
    let lines = text.lines().count();
    let progress = Progress::start(format!("importing {lines} lines as list:{name}"));
    let report: Result<ImportReport, _> = ctx.client().post(
        "/v1/ips/blocklists/import",
        &ImportRequest {
            name,
            text,
            format,
            duration: Some(duration),
        },
    );
    progress.finish();
    let report = report?;
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
    let t = &report.took;
    println!(
        "took {} ms: read, filter and aggregate {} ms, store {} ms, kernel {} ms",
        t.prepare_ms + t.store_ms + t.kernel_ms,
        t.prepare_ms,
        t.store_ms,
        t.kernel_ms
    );
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
                s.kind.clone(),
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
            "KIND",
            "ENTRIES",
            "LAST SUCCESS (UTC)",
            "LAST ERROR",
            "DROPPED",
            "FROM",
        ],
        rows,
    )
}

/// A one-line progress display on stderr (only on a terminal): a bar while reading the file,
/// then elapsed time while the daemon parses, filters, aggregates and loads.
struct Progress {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn stderr_is_tty() -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(2) == 1 }
}

impl Progress {
    fn start(what: String) -> Self {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !stderr_is_tty() {
            eprintln!("{what} ...");
            return Self { done, thread: None };
        }
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let spin = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                eprint!(
                    "\r{} {what} ({:.1} s)",
                    spin[i % 4],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            eprintln!(
                "\r{what}: done in {:.1} s   ",
                started.elapsed().as_secs_f64()
            );
        });
        Self {
            done,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a list file, drawing a bar of the bytes read on a terminal.
fn read_with_progress(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let tty = stderr_is_tty();
    let mut bytes = Vec::with_capacity(total as usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        if tty {
            let pct = (bytes.len() as u64 * 100 / total).min(100) as usize;
            eprint!("\rreading [{:<40}] {pct:>3}%", "#".repeat(pct * 40 / 100));
        }
    }
    if tty {
        eprintln!();
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
}
