//! `ips decisions add|delete|list`.
use std::time::Duration;

use ips::{
    api::{AddRequest, client::encode},
    decisions::{Decision, Origin, Page},
    prefix::Prefix,
};

use crate::{Ctx, output};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Ban addresses or prefixes (extends an existing ban).
    Add {
        /// Addresses or CIDR prefixes, IPv4 or IPv6.
        #[arg(required = true)]
        values: Vec<String>,
        /// How long: 90s, 30m, 4h, 7d (default: decisions.default_duration).
        #[arg(short, long, value_parser = ips::duration::parse)]
        duration: Option<Duration>,
        /// Why.
        #[arg(short, long)]
        reason: Option<String>,
        /// Origin: manual (the default), detection, list:NAME, lapi:NAME.
        #[arg(long)]
        origin: Option<Origin>,
        /// Ban prefixes shorter than decisions.min_prefix_v4/_v6 (never 0.0.0.0/0 or ::/0).
        #[arg(long)]
        force: bool,
    },
    /// Unban an address or prefix.
    Delete {
        /// Address or CIDR prefix.
        value: String,
        /// Only the decision of this origin.
        #[arg(long)]
        origin: Option<Origin>,
    },
    /// List active bans: manual and detected ones first, then list entries.
    List {
        /// Only decisions on this value.
        #[arg(long)]
        value: Option<String>,
        /// At most this many (the daemon serves pages of up to 10,000).
        #[arg(short, long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Start after this point (printed when there are more).
        #[arg(long)]
        cursor: Option<String>,
        /// Every active decision, page after page.
        #[arg(long, conflicts_with_all = ["limit", "cursor"])]
        all: bool,
        /// Only this origin: manual, detection, list:NAME, lapi:NAME, machine:NAME (an agent's,
        /// on a central node).
        #[arg(long)]
        origin: Option<Origin>,
    },
}

fn check(value: &str) -> anyhow::Result<Prefix> {
    Ok(value.parse()?)
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client();
    match cmd {
        Command::Add {
            values,
            duration,
            reason,
            origin,
            force,
        } => {
            for v in &values {
                check(v)?;
            }
            let added: Vec<Decision> = client.post(
                "/v1/ips/decisions",
                &AddRequest {
                    values,
                    duration,
                    reason,
                    origin,
                    force,
                },
            )?;
            print(ctx, &added)
        }
        Command::Delete { value, origin } => {
            let p = check(&value)?;
            let mut path = format!("/v1/ips/decisions?value={}", encode(&p.to_string()));
            if let Some(o) = origin {
                path.push_str(&format!("&origin={}", encode(&o.to_string())));
            }
            let r: serde_json::Value = client.delete(&path)?;
            let n = r["deleted"].as_u64().unwrap_or(0);
            match ctx.format {
                crate::Format::Json => println!("{r}"),
                crate::Format::Table if n == 0 => println!("no decision on {p}"),
                crate::Format::Table => println!("deleted {n} decision(s) on {p}"),
            }
            Ok(())
        }
        Command::List { value: Some(v), .. } => {
            let path = format!(
                "/v1/ips/decisions?value={}",
                encode(&check(&v)?.to_string())
            );
            let page: Page = client.get(&path)?;
            print(ctx, &page.decisions)
        }
        Command::List {
            value: None,
            limit,
            cursor,
            all,
            origin,
        } => {
            let limit = if all { 10_000 } else { limit };
            let mut list = Vec::new();
            let mut cursor = cursor;
            loop {
                let mut path = format!("/v1/ips/decisions?limit={limit}");
                if let Some(o) = &origin {
                    path.push_str(&format!("&origin={}", encode(&o.to_string())));
                }
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", encode(c)));
                }
                let page: Page = client.get(&path)?;
                list.extend(page.decisions);
                cursor = page.next;
                if !all || cursor.is_none() {
                    break;
                }
            }
            print(ctx, &list)?;
            if let Some(c) = cursor {
                eprintln!(
                    "{} shown; more with `ips decisions list --cursor {c}`, or all with --all",
                    list.len()
                );
            }
            Ok(())
        }
    }
}

fn print(ctx: &Ctx, list: &[Decision]) -> anyhow::Result<()> {
    let now = ips::calendar::now_ms();
    let rows = list
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.value.to_string(),
                d.scope.clone(),
                d.kind.clone(),
                d.origin.to_string(),
                d.reason.clone(),
                output::time(d.expires_ms),
                ips::duration::format(std::time::Duration::from_millis(
                    (d.expires_ms - now).max(0) as u64,
                )),
            ]
        })
        .collect();
    output::print(
        ctx.format,
        &list,
        &[
            "ID",
            "VALUE",
            "SCOPE",
            "TYPE",
            "ORIGIN",
            "REASON",
            "EXPIRES (UTC)",
            "LEFT",
        ],
        rows,
    )
}
