//! `ips replay FILE`: the detection pipeline offline, printing alerts and the decisions it
//! would take. `ips explain LINE`: how one line parses and which scenarios it feeds.
use std::{fs::File, io::BufReader, path::PathBuf};

use ips::{
    decisions::profiles::{Outcome, Profiles},
    parsers::{self, Clock, LogType},
    replay,
    scenarios::definition::Match,
};

use crate::{Ctx, Format, output};

/// `ips replay` flags.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Log file (`-` for stdin).
    file: PathBuf,
    /// Log type: sshd, nginx, syslog or auto.
    #[arg(short = 't', long = "type", default_value = "auto")]
    log_type: LogType,
}

/// `ips explain` flags.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The log line.
    line: String,
    /// Log type: sshd, nginx, syslog or auto.
    #[arg(short = 't', long = "type", default_value = "auto")]
    log_type: LogType,
}

fn now_for(file: &PathBuf) -> i64 {
    // RFC 3164 lines have no year: date them against the file's modification time.
    std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(ips::calendar::now_ms, |d| d.as_millis() as i64)
}

pub fn replay(args: ReplayArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let scenarios = ctx.config.detection.scenarios()?;
    let profiles = Profiles::new(ctx.config.profiles.clone(), &[]);
    let clock = Clock::utc(now_for(&args.file));
    let allow = &ctx.config.allowlist.entries;
    let report = if args.file.as_os_str() == "-" {
        replay::run(
            std::io::stdin().lock(),
            args.log_type,
            scenarios,
            &profiles,
            allow,
            clock,
        )?
    } else {
        let f = File::open(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()))?;
        replay::run(
            BufReader::new(f),
            args.log_type,
            scenarios,
            &profiles,
            allow,
            clock,
        )?
    };
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report
        .alerts
        .iter()
        .map(|(a, o)| {
            let (decision, value) = match o {
                Outcome::Ban { value, duration_ms } => (
                    format!(
                        "ban {}",
                        ips::duration::format(std::time::Duration::from_millis(
                            *duration_ms as u64
                        ))
                    ),
                    value.to_string(),
                ),
                Outcome::Simulated { value, .. } => ("simulated".into(), value.to_string()),
                Outcome::Allowlisted { reason } => (format!("none: {reason}"), "-".into()),
                Outcome::Refused { value, reason } => {
                    (format!("refused: {reason}"), value.to_string())
                }
            };
            vec![
                output::time(a.last_ms),
                a.scenario.clone(),
                a.source.to_string(),
                a.events.to_string(),
                value,
                decision,
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "TIME (UTC)",
                "SCENARIO",
                "SOURCE",
                "EVENTS",
                "VALUE",
                "DECISION"
            ],
            &rows
        )
    );
    println!(
        "\n{} lines, {} events, {} alerts, {} values banned",
        report.lines,
        report.events,
        report.alerts.len(),
        report.banned().len()
    );
    for (reason, n) in &report.skipped {
        println!("skipped {n} lines: {reason}");
    }
    Ok(())
}

pub fn explain(args: ExplainArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let clock = Clock::utc(ips::calendar::now_ms());
    let scenarios = ctx.config.detection.scenarios()?;
    match parsers::parse(args.log_type, &args.line, &clock) {
        Ok(e) => {
            let request = ips::scenarios::request::Request::of(&e);
            let feeds: Vec<String> = scenarios
                .iter()
                .filter_map(|s| match s.matches(&e, &request) {
                    Match::No => None,
                    Match::Yes => Some(s.name.clone()),
                    Match::Signature(n) => Some(format!(
                        "{} (signature {})",
                        s.name,
                        s.signatures.get(n).map_or("?", |g| g.name.as_str())
                    )),
                })
                .collect();
            if ctx.format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "event": e, "scenarios": feeds })
                    )?
                );
            } else {
                println!("event:");
                println!("  time:       {} UTC", output::time(e.time_ms));
                println!("  source:     {}", e.source);
                println!("  service:    {}", e.service.name());
                println!("  kind:       {}", e.kind);
                for (k, v) in [
                    ("user", e.user),
                    ("method", e.method),
                    ("path", e.path),
                    ("user agent", e.user_agent),
                ] {
                    if let Some(v) = v {
                        println!("  {:<11} {v}", format!("{k}:"));
                    }
                }
                if let Some(p) = e.port {
                    println!("  port:       {p}");
                }
                if let Some(s) = e.status {
                    println!("  status:     {s}");
                }
                if feeds.is_empty() {
                    println!("feeds no scenario");
                } else {
                    println!("feeds: {}", feeds.join(", "));
                }
            }
        }
        Err(skip) => {
            if ctx.format == Format::Json {
                println!("{}", serde_json::json!({ "skipped": skip.name() }));
            } else {
                println!("no event: {} (counted, not an error)", skip.name());
            }
        }
    }
    Ok(())
}
