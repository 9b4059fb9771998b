//! `ips store check|repair`: the decision store, offline (the daemon may be stopped).
use ips::decisions::{SqliteStore, sqlite::Check};

use crate::{Ctx, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check the file, its rows, and whether the kernel's maps can hold what it bans.
    Check,
    /// Remove rows that do not parse, expired rows and lapsed lists; compact the file.
    /// Stop the daemon first.
    Repair,
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    let path = &ctx.config.store.path;
    if ctx.config.store.url.is_some() {
        anyhow::bail!(
            "ips store check|repair work on a SQLite store; this one is PostgreSQL ([store] url): check it with PostgreSQL's tools"
        );
    }
    if !path.exists() {
        anyhow::bail!("no store at {} (store.path in the config)", path.display());
    }
    let mut store = SqliteStore::open(path)?;
    let now = ips::calendar::now_ms();
    match cmd {
        Command::Check => {
            let check = store.check(now)?;
            let problems = report(&check, ctx)?;
            if problems > 0 {
                anyhow::bail!("{problems} problem(s) in {}", path.display());
            }
            Ok(())
        }
        Command::Repair => {
            let (bad, expired) = store.repair(now)?;
            println!(
                "{}: removed {bad} rows that did not parse and {expired} expired values",
                path.display()
            );
            report(&store.check(now)?, ctx).map(drop)
        }
    }
}

/// Prints the check; returns how many problems it shows.
fn report(check: &Check, ctx: &Ctx) -> anyhow::Result<usize> {
    let e = &ctx.config.enforcer;
    let capacity = [e.max_hosts, e.max_prefixes, e.max_hosts, e.max_prefixes].map(u64::from);
    let names = [
        "IPv4 addresses (enforcer.max_hosts)",
        "IPv4 prefixes (enforcer.max_prefixes)",
        "IPv6 addresses (enforcer.max_hosts)",
        "IPv6 prefixes (enforcer.max_prefixes)",
    ];
    let mut problems = 0;
    if check.integrity != ["ok"] {
        problems += 1;
    }
    problems += usize::from(check.bad_rows > 0);
    let over: Vec<(&str, u64, u64)> = names
        .iter()
        .zip(check.kernel_values.iter().zip(capacity))
        .filter(|(_, (n, cap))| *n > cap)
        .map(|(name, (n, cap))| (*name, *n, cap))
        .collect();
    problems += over.len();
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(check)?);
        return Ok(problems);
    }
    println!("integrity:  {}", check.integrity.join("; "));
    println!("bad rows:   {}", check.bad_rows);
    println!(
        "expired:    {} (removed by the daemon's next tick, or by repair)",
        check.expired
    );
    for (name, (n, cap)) in names.iter().zip(check.kernel_values.iter().zip(capacity)) {
        println!("{name:<40} {n} of {cap}");
    }
    for (name, n, cap) in over {
        println!(
            "PROBLEM: {name}: {} banned values do not fit; the daemon enforces what fits and says so",
            n - cap
        );
    }
    Ok(problems)
}
