//! `ips replay`: the whole detection pipeline offline on a log file, with the log's own
//! timestamps, printing the alerts and the decisions it would take. No root, no kernel: the
//! alerts go through the daemon's [`DecisionService`] over an in-memory store, and the changes
//! it returns for the kernel are dropped.
use std::{collections::BTreeMap, io::BufRead};

use serde::{Deserialize, Serialize};

use crate::{
    decisions::{DecisionService, SqliteStore, StoreError, profiles::Outcome},
    parsers::{self, Clock, LogType},
    prefix::Prefix,
    scenarios::{Alert, Engine, Scenario},
};

/// What a replay found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Lines read.
    pub lines: u64,
    /// Lines that gave an event.
    pub events: u64,
    /// Lines that gave none, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Lines that were not valid UTF-8 (read lossily).
    pub invalid_utf8: u64,
    /// Each alert with its decision, in order.
    pub alerts: Vec<(Alert, Outcome)>,
}

impl Report {
    /// The values that would be banned, each once, in order of first ban.
    pub fn banned(&self) -> Vec<Prefix> {
        let mut out: Vec<Prefix> = Vec::new();
        for (_, o) in &self.alerts {
            if let Outcome::Ban { value, .. } = o
                && !out.contains(value)
            {
                out.push(*value);
            }
        }
        out
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the input failed.
    #[error("cannot read the log: {0}")]
    Read(#[from] std::io::Error),
    /// The in-memory store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs `input` through parsers, scenarios and profiles. `clock.now_ms` dates RFC 3164 lines
/// (their year is inferred against it); event times come from the lines, and each alert is
/// decided at its own time (escalation counts the replay's earlier bans).
pub fn run(
    input: impl BufRead,
    log_type: LogType,
    scenarios: Vec<Scenario>,
    profiles: &crate::decisions::profiles::Profiles,
    allowlist: &[Prefix],
    clock: Clock,
) -> Result<Report, ReplayError> {
    let mut engine = Engine::new(scenarios, 4_000_000);
    let mut report = Report::default();
    let mut service = DecisionService::new(Box::new(SqliteStore::in_memory()?), profiles.clone())?;
    for p in allowlist {
        service.allow_add(p, "replay --allow", 0)?;
    }
    let mut alerts = Vec::new();
    let mut last_ms = 0;
    let mut buf = Vec::new();
    let mut input = input;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        report.lines += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => {
                report.invalid_utf8 += 1;
                String::from_utf8_lossy(&buf)
            }
        };
        match parsers::parse(log_type, &line, &clock) {
            Ok(e) => {
                report.events += 1;
                last_ms = last_ms.max(e.time_ms);
                engine.pour(&e, line.trim_end(), &mut alerts);
            }
            Err(s) => *report.skipped.entry(s.name().to_owned()).or_default() += 1,
        }
        decide(&mut alerts, &mut service, &mut report)?;
    }
    // Close counter windows at the end of the log.
    engine.tick(last_ms + 86_400_000, &mut alerts);
    decide(&mut alerts, &mut service, &mut report)?;
    Ok(report)
}

fn decide(
    alerts: &mut Vec<Alert>,
    service: &mut DecisionService,
    report: &mut Report,
) -> Result<(), StoreError> {
    for a in alerts.drain(..) {
        let (stored, _changes) = service.on_alert(&a, a.last_ms)?;
        report.alerts.push((a, stored.outcome));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decisions::profiles::{Profiles, ProfilesConfig},
        scenarios::builtin,
    };

    #[test]
    fn a_known_brute_force_is_found_and_a_quiet_source_is_not() {
        let mut log = String::new();
        // 8 failures in 8 seconds from one source; 3 spread over an hour from another.
        for i in 0..8 {
            log += &format!(
                "Mar  1 10:00:0{i} h sshd[1]: Failed password for root from 203.0.113.66 port 22 ssh2\n"
            );
        }
        for m in [0, 20, 40] {
            log += &format!(
                "Mar  1 11:{m:02}:00 h sshd[1]: Failed password for bob from 198.51.100.3 port 22 ssh2\n"
            );
        }
        log += "Mar  1 12:00:00 h sshd[1]: Server listening on 0.0.0.0 port 22.\n";
        let profiles = Profiles::new(ProfilesConfig::default(), &[]);
        let r = run(
            log.as_bytes(),
            LogType::Auto,
            builtin(),
            &profiles,
            &[],
            Clock::utc(1_795_737_600_000),
        )
        .unwrap();
        assert_eq!(r.lines, 12);
        assert_eq!(r.events, 11);
        assert_eq!(r.skipped["not_interesting"], 1);
        assert_eq!(r.banned(), vec!["203.0.113.66".parse::<Prefix>().unwrap()]);
        assert_eq!(r.alerts[0].0.scenario, "ssh-bf");
    }

    #[test]
    fn a_user_field_with_brackets_does_not_hide_a_probe() {
        let log: String = (0..30)
            .map(|i| {
                format!(
                    "198.18.7.9 - a[b] [30/Nov/2026:16:02:{i:02} +0000] \"GET /probe{i}.php HTTP/1.1\" 404 12 \"-\" \"x\"\n"
                )
            })
            .collect();
        let profiles = Profiles::new(
            ProfilesConfig {
                allow_private: false,
                ..ProfilesConfig::default()
            },
            &[],
        );
        let r = run(
            log.as_bytes(),
            LogType::Nginx,
            builtin(),
            &profiles,
            &[],
            Clock::utc(1_795_737_600_000),
        )
        .unwrap();
        assert_eq!(r.events, 30, "{:?}", r.skipped);
        assert_eq!(r.banned(), vec!["198.18.7.9".parse::<Prefix>().unwrap()]);
    }
}
