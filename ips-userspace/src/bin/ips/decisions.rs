//! `ips decisions add|delete|list`.
use std::time::Duration;

use ips::{
    api::{AddRequest, client::encode},
    decisions::{Decision, Origin},
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
    /// List active bans.
    List {
        /// Only decisions on this value.
        #[arg(long)]
        value: Option<String>,
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
        Command::List { value } => {
            let path = match value {
                Some(v) => format!(
                    "/v1/ips/decisions?value={}",
                    encode(&check(&v)?.to_string())
                ),
                None => "/v1/ips/decisions".to_owned(),
            };
            let list: Vec<Decision> = client.get(&path)?;
            print(ctx, &list)
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
