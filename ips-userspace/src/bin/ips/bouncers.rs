//! `ips bouncers add|list|delete`: API keys for CrowdSec bouncers that read `ips` decisions.
use ips::{api::BouncerRequest, decisions::Bouncer};

use crate::{Ctx, Format, output};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Register a bouncer and print its API key (shown once).
    Add {
        /// Name.
        name: String,
    },
    /// List bouncers and their last pull.
    List,
    /// Remove a bouncer (its key stops working).
    Delete {
        /// Name.
        name: String,
    },
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client();
    match cmd {
        Command::Add { name } => {
            let r: serde_json::Value = client.post("/v1/ips/bouncers", &BouncerRequest { name })?;
            match ctx.format {
                Format::Json => println!("{r}"),
                Format::Table => {
                    println!(
                        "API key for {}:\n\n  {}\n",
                        r["name"],
                        r["api_key"].as_str().unwrap_or("")
                    );
                    println!("It is stored hashed and cannot be shown again.");
                    match ctx.config.api.listen {
                        Some(listen) => {
                            println!("Point the bouncer at http://{listen}/ with this key.");
                        }
                        None => println!(
                            "Bouncers reach ips over TCP: set [api] listen (e.g. \"127.0.0.1:8080\") and restart."
                        ),
                    }
                }
            }
            Ok(())
        }
        Command::List => {
            let list: Vec<Bouncer> = client.get("/v1/ips/bouncers")?;
            let rows = list
                .iter()
                .map(|b| {
                    vec![
                        b.name.clone(),
                        output::time(b.created_ms),
                        if b.last_pull_ms == 0 {
                            "never".into()
                        } else {
                            output::time(b.last_pull_ms)
                        },
                    ]
                })
                .collect();
            output::print(
                ctx.format,
                &list,
                &["NAME", "ADDED (UTC)", "LAST PULL (UTC)"],
                rows,
            )
        }
        Command::Delete { name } => {
            let r: serde_json::Value = client.delete(&format!(
                "/v1/ips/bouncers?name={}",
                ips::api::client::encode(&name)
            ))?;
            match ctx.format {
                Format::Json => println!("{r}"),
                Format::Table if r["deleted"] == true => println!("removed bouncer {name}"),
                Format::Table => println!("no bouncer named {name}"),
            }
            Ok(())
        }
    }
}
