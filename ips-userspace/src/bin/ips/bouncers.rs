//! Keys for TCP clients, one command per role: `ips bouncers` (CrowdSec bouncers that read
//! decisions), `ips machines` (ips agents that also push their alerts and decisions) and `ips
//! tokens` (admin tokens: the whole API). Each key is shown once and stored hashed.
use ips::{
    api::BouncerRequest,
    decisions::{Bouncer, Role},
};

use crate::{Ctx, Format, output};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Register one and print its key (shown once).
    Add {
        /// Name.
        name: String,
        /// Use this key instead of a generated one (16 to 256 printable characters), as
        /// bouncer packages do at install.
        #[arg(short = 'k', long)]
        key: Option<String>,
    },
    /// List them, with when they were last heard from.
    List,
    /// Remove one (its key stops working at once).
    Delete {
        /// Name.
        name: String,
    },
}

fn noun(role: Role) -> &'static str {
    match role {
        Role::Bouncer => "bouncer",
        Role::Machine => "machine",
        Role::Admin => "token",
    }
}

pub fn exec(cmd: Command, role: Role, ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client();
    let noun = noun(role);
    match cmd {
        Command::Add { name, key } => {
            let r: serde_json::Value = client.post(
                "/v1/ips/bouncers",
                &BouncerRequest {
                    name,
                    key,
                    role: Some(role),
                },
            )?;
            match ctx.format {
                Format::Json => println!("{r}"),
                Format::Table => {
                    println!(
                        "Key for {noun} {}:\n\n  {}\n",
                        r["name"],
                        r["api_key"].as_str().unwrap_or("")
                    );
                    println!("It is stored hashed and cannot be shown again.");
                    let scheme = if ctx.config.api.cert.is_some() {
                        "https"
                    } else {
                        "http"
                    };
                    match (ctx.config.api.listen, role) {
                        (None, _) => println!(
                            "It is used over TCP: set [api] listen (and cert/key off loopback), then restart."
                        ),
                        (Some(listen), Role::Bouncer) => {
                            println!("Point the bouncer at {scheme}://{listen}/ with this key.");
                        }
                        (Some(listen), Role::Machine) => println!(
                            "On the agent: [central] url = \"{scheme}://{listen}\" and this key as its token."
                        ),
                        (Some(listen), Role::Admin) => println!(
                            "Send it as `Authorization: Bearer KEY` to {scheme}://{listen}/."
                        ),
                    }
                }
            }
            Ok(())
        }
        Command::List => {
            let list: Vec<Bouncer> = client.get("/v1/ips/bouncers")?;
            let list: Vec<Bouncer> = list.into_iter().filter(|b| b.role == role).collect();
            let seen = |ms: i64| {
                if ms == 0 {
                    "never".into()
                } else {
                    output::time(ms)
                }
            };
            let rows = list
                .iter()
                .map(|b| match role {
                    Role::Machine => vec![
                        b.name.clone(),
                        output::time(b.created_ms),
                        seen(b.seen_ms),
                        b.version.clone(),
                    ],
                    _ => vec![
                        b.name.clone(),
                        output::time(b.created_ms),
                        seen(b.last_pull_ms),
                    ],
                })
                .collect();
            let header: &[&str] = match role {
                Role::Machine => &["NAME", "ADDED (UTC)", "LAST HEARTBEAT (UTC)", "VERSION"],
                Role::Bouncer => &["NAME", "ADDED (UTC)", "LAST PULL (UTC)"],
                Role::Admin => &["NAME", "ADDED (UTC)", "LAST USED (UTC)"],
            };
            output::print(ctx.format, &list, header, rows)
        }
        Command::Delete { name } => {
            let r: serde_json::Value = client.delete(&format!(
                "/v1/ips/bouncers?name={}",
                ips::api::client::encode(&name)
            ))?;
            match ctx.format {
                Format::Json => println!("{r}"),
                Format::Table if r["deleted"] == true => println!("removed {noun} {name}"),
                Format::Table => println!("no {noun} named {name}"),
            }
            Ok(())
        }
    }
}
