//! `ips allow add|delete|list`.
use ips::{
    api::{AllowRequest, client::encode},
    decisions::AllowEntry,
    prefix::Prefix,
};

use crate::{Ctx, output};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Never ban this address or prefix (removes bans inside it).
    Add {
        /// Address or CIDR prefix.
        value: String,
        /// Why.
        #[arg(short, long)]
        reason: Option<String>,
    },
    /// Remove an allowlist entry.
    Delete {
        /// Address or CIDR prefix.
        value: String,
    },
    /// List the allowlist.
    List,
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client();
    match cmd {
        Command::Add { value, reason } => {
            let p: Prefix = value.parse()?;
            let r: serde_json::Value = client.post(
                "/v1/ips/allowlist",
                &AllowRequest {
                    value: p.to_string(),
                    reason,
                },
            )?;
            match ctx.format {
                crate::Format::Json => println!("{r}"),
                crate::Format::Table => println!(
                    "allowlisted {p} (removed {} decision(s) inside it)",
                    r["removed_decisions"].as_u64().unwrap_or(0)
                ),
            }
        }
        Command::Delete { value } => {
            let p: Prefix = value.parse()?;
            let r: serde_json::Value = client.delete(&format!(
                "/v1/ips/allowlist?value={}",
                encode(&p.to_string())
            ))?;
            match ctx.format {
                crate::Format::Json => println!("{r}"),
                crate::Format::Table if r["deleted"] == true => println!("removed {p}"),
                crate::Format::Table => println!("{p} was not in the allowlist"),
            }
        }
        Command::List => {
            let list: Vec<AllowEntry> = client.get("/v1/ips/allowlist")?;
            let rows = list
                .iter()
                .map(|a| {
                    vec![
                        a.value.to_string(),
                        a.source.clone(),
                        a.reason.clone(),
                        output::time(a.created_ms),
                    ]
                })
                .collect();
            output::print(
                ctx.format,
                &list,
                &["VALUE", "SOURCE", "REASON", "ADDED (UTC)"],
                rows,
            )?;
        }
    }
    Ok(())
}
