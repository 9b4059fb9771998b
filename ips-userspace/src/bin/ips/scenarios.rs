//! `ips scenarios list|import`: the scenarios that run, and CrowdSec's scenario YAML in ips's
//! format.
use std::path::PathBuf;

use crate::{Ctx, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// The scenarios the config runs: built-in (not disabled) and from scenario files.
    List,
    /// Translate CrowdSec scenario YAML files into an ips scenario file (for
    /// `[detection] scenario_files`); what cannot be kept is listed with the reason.
    Import {
        /// CrowdSec scenario files (`.yaml`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the scenarios here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the hub's data files are (`dest_file` of each scenario's `data`), downloaded
        /// beforehand: scenarios that read one are translated with its lines.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

pub fn exec(cmd: Command, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        Command::List => {
            let all = ctx.config.detection.scenarios()?;
            if ctx.format == Format::Json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name,
                            "description": s.description,
                            "signatures": s.signatures.len(),
                            "ban": s.ban.map(ips::duration::format),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for s in &all {
                let sigs = if s.signatures.is_empty() {
                    String::new()
                } else {
                    format!(" ({} signatures)", s.signatures.len())
                };
                println!("{:<30} {}{sigs}", s.name, s.description);
            }
            Ok(())
        }
        Command::Import { files, out, data } => {
            let mut toml = String::new();
            let mut translated = Vec::new();
            let mut skipped = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
                let t = ips::scenarios::crowdsec::translate(&text, data.as_deref());
                toml.push_str(&t.toml);
                translated.extend(t.translated);
                skipped.extend(t.skipped.into_iter().map(|(name, why)| {
                    let name = if name.is_empty() {
                        f.display().to_string()
                    } else {
                        name
                    };
                    (name, why)
                }));
            }
            match &out {
                Some(path) => std::fs::write(path, &toml)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                None if ctx.format == Format::Table => print!("{toml}"),
                None => {}
            }
            if ctx.format == Format::Json {
                let skipped: Vec<_> = skipped
                    .iter()
                    .map(|(n, why)| serde_json::json!({"name": n, "reason": why}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "translated": translated,
                        "skipped": skipped,
                        "toml": if out.is_none() { Some(&toml) } else { None },
                    }))?
                );
            } else {
                eprintln!(
                    "{} scenario(s) translated, {} left out",
                    translated.len(),
                    skipped.len()
                );
                for (n, why) in &skipped {
                    eprintln!("  left out {n}: {why}");
                }
            }
            Ok(())
        }
    }
}
