//! `ips status`: from the daemon, or straight from the pinned maps when it is not running.
use ips::{
    api::Status,
    enforcer::{KernelMaps, loader},
};

use crate::{Ctx, Format, output};

pub fn exec(ctx: &Ctx) -> anyhow::Result<()> {
    let status: Status = match ctx.client().get("/v1/status") {
        Ok(s) => s,
        Err(e) if e.is_not_running() => {
            loader::require_root()?;
            let dir = &ctx.config.enforcer.pin_dir;
            let maps = KernelMaps::open(dir)
                .map_err(|_| anyhow::anyhow!("{e}; and nothing is pinned at {}", dir.display()))?;
            let store = ips::decisions::open_store(&ctx.config.store)?;
            ips::service::status_from(store.as_ref(), &maps, ips::calendar::now_ms(), false)?
        }
        Err(e) => return Err(e.into()),
    };
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!(
        "daemon:      {}",
        if status.daemon_running {
            "running"
        } else {
            "not running (the pinned program keeps enforcing)"
        }
    );
    println!("pin dir:     {}", status.pin_dir);
    println!(
        "decisions:   {} active, {} allowlisted",
        status.decisions, status.allowlist
    );
    println!();
    let rows: Vec<Vec<String>> = status
        .interfaces
        .iter()
        .map(|i| vec![i.name.clone(), i.mode.clone()])
        .collect();
    print!("{}", output::table(&["INTERFACE", "MODE"], &rows));
    println!();
    let m = &status.maps;
    let cap = &status.capacity;
    let of = |n: u64, c: u64| match (n * 100).checked_div(c) {
        Some(pct) => format!("{n} / {c} ({pct}%)"),
        None => n.to_string(),
    };
    print!(
        "{}",
        output::table(
            &["MAP", "IPv4", "IPv6"],
            &[
                vec![
                    "banned addresses".into(),
                    of(m.hosts_v4, cap.hosts_v4),
                    of(m.hosts_v6, cap.hosts_v6)
                ],
                vec![
                    "banned prefixes".into(),
                    of(m.nets_v4, cap.nets_v4),
                    of(m.nets_v6, cap.nets_v6)
                ],
                vec![
                    "allowlist".into(),
                    m.allow_v4.to_string(),
                    m.allow_v6.to_string()
                ],
            ]
        )
    );
    for (what, n, c) in ips::service::nearly_full(m, cap) {
        println!("WARNING: {what} is over 90% full ({n} of {c})");
    }
    if status.not_enforced > 0 {
        println!(
            "WARNING: {} active decisions did not fit in the kernel's maps at start and are NOT enforced",
            status.not_enforced
        );
    }
    println!();
    let c = |k: &str| status.counters.get(k).copied().unwrap_or(0);
    print!(
        "{}",
        output::table(
            &["PACKETS", "IPv4", "IPv6"],
            &[
                vec![
                    "dropped".into(),
                    c("v4_dropped").to_string(),
                    c("v6_dropped").to_string()
                ],
                vec![
                    "passed".into(),
                    c("v4_passed").to_string(),
                    c("v6_passed").to_string()
                ],
                vec![
                    "allowlisted".into(),
                    c("v4_allowed").to_string(),
                    c("v6_allowed").to_string()
                ],
            ]
        )
    );
    println!(
        "non-IP passed: {}   malformed passed: {}",
        c("non_ip"),
        c("malformed")
    );
    if !status.origins.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = status
            .origins
            .iter()
            .map(|o| {
                vec![
                    o.name.clone(),
                    o.dropped_v4.to_string(),
                    o.dropped_v6.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["ORIGIN", "DROPPED IPv4", "DROPPED IPv6"], &rows)
        );
    }
    Ok(())
}
