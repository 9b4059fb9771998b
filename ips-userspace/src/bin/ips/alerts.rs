//! `ips alerts list|inspect`.
use ips::decisions::StoredAlert;

use crate::{Ctx, Format, output};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Newest alerts first.
    List {
        /// Only this scenario.
        #[arg(long)]
        scenario: Option<String>,
        /// Only this source address.
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        /// Only those an agent pushed to this central node ("local" for this host's own).
        #[arg(long)]
        machine: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One alert with its evidence.
    Inspect {
        /// Alert id.
        id: i64,
    },
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client();
    match cmd {
        Command::List {
            scenario,
            source,
            machine,
            limit,
        } => {
            let mut path = format!("/v1/ips/alerts?limit={limit}");
            if let Some(s) = scenario {
                path += &format!("&scenario={}", ips::api::client::encode(&s));
            }
            if let Some(s) = source {
                path += &format!("&source={}", ips::api::client::encode(&s.to_string()));
            }
            if let Some(m) = machine {
                let m = if m == "local" { String::new() } else { m };
                path += &format!("&machine={}", ips::api::client::encode(&m));
            }
            let list: Vec<StoredAlert> = client.get(&path)?;
            let rows = list
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        output::time(a.last_ms),
                        if a.machine.is_empty() {
                            "local".into()
                        } else {
                            a.machine.clone()
                        },
                        a.scenario.clone(),
                        a.source.to_string(),
                        a.events.to_string(),
                        a.outcome.name().to_owned(),
                        a.outcome
                            .value()
                            .map_or_else(|| "-".into(), |v| v.to_string()),
                    ]
                })
                .collect();
            output::print(
                ctx.format,
                &list,
                &[
                    "ID",
                    "TIME (UTC)",
                    "MACHINE",
                    "SCENARIO",
                    "SOURCE",
                    "EVENTS",
                    "OUTCOME",
                    "VALUE",
                ],
                rows,
            )
        }
        Command::Inspect { id } => {
            let a: StoredAlert = client.get(&format!("/v1/ips/alerts/{id}"))?;
            if ctx.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(());
            }
            println!("alert {}: {} from {}", a.id, a.scenario, a.source);
            println!("  group:    {}", a.group);
            println!("  first:    {} UTC", output::time(a.first_ms));
            println!("  last:     {} UTC", output::time(a.last_ms));
            println!("  events:   {}", a.events);
            println!("  outcome:  {}", a.outcome.name());
            if let Some(v) = a.outcome.value() {
                println!("  value:    {v}");
            }
            if let Some(d) = a.outcome.duration_ms() {
                println!(
                    "  duration: {}",
                    ips::duration::format(std::time::Duration::from_millis(d.max(0) as u64))
                );
            }
            if let Some(r) = a.outcome.reason() {
                println!("  reason:   {}", output::clean(r));
            }
            for (k, v) in &a.labels {
                println!("  label:    {} = {}", output::clean(k), output::clean(v));
            }
            println!("  evidence:");
            for l in &a.evidence {
                println!("    {}", output::clean(l));
            }
            Ok(())
        }
    }
}
