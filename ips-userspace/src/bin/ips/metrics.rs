//! `ips metrics`: the figures of `/metrics` on a terminal.
use ips::api::Status;

use crate::{Ctx, Format};

pub fn exec(ctx: &Ctx) -> anyhow::Result<()> {
    let s: Status = ctx.client().get("/v1/status")?;
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let c = |name: &str| s.counters.get(name).copied().unwrap_or(0);
    println!("Packets judged at the NIC");
    println!(
        "  {:<10} {:>14} {:>14} {:>14}",
        "", "passed", "dropped", "allowlisted"
    );
    for (fam, p) in [("IPv4", "v4"), ("IPv6", "v6")] {
        println!(
            "  {fam:<10} {:>14} {:>14} {:>14}",
            c(&format!("{p}_passed")),
            c(&format!("{p}_dropped")),
            c(&format!("{p}_allowed"))
        );
    }
    println!();
    println!("Dropped by origin");
    println!("  {:<32} {:>14} {:>14}", "origin", "IPv4", "IPv6");
    for o in s.origins.iter().filter(|o| o.dropped_v4 + o.dropped_v6 > 0) {
        println!("  {:<32} {:>14} {:>14}", o.name, o.dropped_v4, o.dropped_v6);
    }
    if !s.top.sources.is_empty() {
        println!();
        println!("Top dropped sources (sampled, estimates)");
        println!(
            "  {:<40} {:<44} {:>10} {:>12}",
            "source", "banned by", "per min", "packets"
        );
        for t in &s.top.sources {
            let by = format!("{} ({})", t.prefix.as_deref().unwrap_or("…"), t.origin);
            println!(
                "  {:<40} {by:<44} {:>10} {:>12}",
                t.source, t.per_minute, t.packets
            );
        }
        println!();
        println!("Top dropped prefixes");
        println!(
            "  {:<44} {:<24} {:>8} {:>12}",
            "ban", "origin", "sources", "packets"
        );
        for t in &s.top.prefixes {
            println!(
                "  {:<44} {:<24} {:>8} {:>12}",
                t.prefix, t.origin, t.sources, t.packets
            );
        }
    }
    println!();
    println!("Maps");
    for (name, n, cap) in [
        ("IPv4 addresses", s.maps.hosts_v4, s.capacity.hosts_v4),
        ("IPv4 prefixes", s.maps.nets_v4, s.capacity.nets_v4),
        ("IPv6 addresses", s.maps.hosts_v6, s.capacity.hosts_v6),
        ("IPv6 prefixes", s.maps.nets_v6, s.capacity.nets_v6),
    ] {
        println!("  {name:<16} {n:>10} of {cap:<10}");
    }
    println!(
        "  decisions {} active ({} not enforced), allowlist {}",
        s.decisions, s.not_enforced, s.allowlist
    );
    if !s.detection.sources.is_empty() {
        println!();
        println!("Log sources");
        println!(
            "  {:<40} {:>12} {:>12}  skipped",
            "source", "lines", "events"
        );
        for src in &s.detection.sources {
            let skipped: Vec<String> = src
                .skipped
                .iter()
                .map(|(why, n)| format!("{why} {n}"))
                .collect();
            println!(
                "  {:<40} {:>12} {:>12}  {}",
                src.name,
                src.lines,
                src.events,
                skipped.join(", ")
            );
        }
        println!(
            "  alerts {}, buckets {}, evicted {}",
            s.detection.alerts, s.detection.buckets, s.detection.evicted
        );
    }
    Ok(())
}
