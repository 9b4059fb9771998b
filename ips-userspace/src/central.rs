//! An agent's side of a central `ips` (`[central]`): it enforces the union of its own
//! decisions and the central node's (pulled like a LAPI, as `lapi:central`, through the same
//! guard as any source), and pushes its own alerts there with a heartbeat, so that a ban one
//! agent decides is enforced by the whole fleet and the central node lists every agent's
//! alerts. Cut off from the central node, an agent keeps enforcing what it has (fail-static)
//! and its backlog of alerts waits; once back, it catches up in batches of [`MAX_PUSH`].
use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{
    api::{MAX_PUSH, Push},
    blocklists::lapi::LapiConfig,
    decisions::STATE_CENTRAL,
    schedule::Task,
    service::{Command, Handle},
};

/// `[central]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralConfig {
    /// The central node's TCP API, e.g. `https://10.0.0.5:8443`.
    pub url: String,
    /// This agent's machine key (`ips machines add NAME` on the central node).
    pub key: String,
    /// The central node's certificate or CA (PEM), when it is not one the system trusts.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// How often to pull decisions and push alerts.
    #[serde(default = "five_seconds", with = "crate::config::human_duration")]
    pub interval: Duration,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl CentralConfig {
    /// The central node's decisions, pulled as a LAPI source named `central`.
    pub fn pull(&self) -> LapiConfig {
        LapiConfig {
            name: "central".into(),
            url: self.url.clone(),
            api_key: self.key.clone(),
            interval: self.interval,
            ca: self.ca.clone(),
        }
    }

    /// The central node's address, when its URL names it by address (a host name is not
    /// resolved here).
    pub fn address(&self) -> Option<std::net::IpAddr> {
        let rest = self.url.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split_once(']')?.0.parse().ok();
        }
        authority.split(':').next()?.parse().ok()
    }

    /// Checks what can be checked before starting.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!("central.url {:?}: http:// or https://", self.url));
        }
        if self.key.trim().is_empty() {
            return Err("central.key is empty (ips machines add NAME on the central node)".into());
        }
        if self.interval.is_zero() {
            return Err("central.interval must be above 0".into());
        }
        Ok(())
    }
}

/// The push: a heartbeat each interval, with this host's alerts since the last one the central
/// node took.
pub struct PushTask {
    config: CentralConfig,
    agent: ureq::Agent,
    handle: Handle,
    /// The id of the last alert pushed, once read from the store.
    pushed: Option<i64>,
    failures: u64,
}

/// Most batches sent in one run: a long backlog drains over a few intervals.
const BATCHES_PER_RUN: usize = 20;

impl PushTask {
    /// The task, with its HTTP client (trusting `ca` if given).
    pub fn new(config: CentralConfig, handle: Handle) -> Result<Self, String> {
        let timeout = Duration::from_secs(30);
        let agent = match &config.ca {
            Some(ca) => crate::http::agent_trusting(timeout, ca).map_err(|e| e.to_string())?,
            None => crate::http::agent(timeout),
        };
        Ok(Self {
            config,
            agent,
            handle,
            pushed: None,
            failures: 0,
        })
    }

    fn send(&self, push: &Push) -> Result<(), String> {
        let url = format!(
            "{}/v1/ips/agent/push",
            self.config.url.trim_end_matches('/')
        );
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.config.key))
            .send_json(push)
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Err(format!("HTTP {status} from {url}: {body}"))
    }
}

impl Task for PushTask {
    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn run(&mut self) {
        let mut pushed = match self.pushed {
            Some(p) => p,
            None => match self
                .handle
                .call_blocking(|r| Command::State(STATE_CENTRAL, r))
            {
                Ok(rows) => rows
                    .iter()
                    .find(|(k, _)| k == "pushed")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0),
                Err(e) => {
                    warn!(error = %e, "Cannot read which alerts went to the central node.");
                    return;
                }
            },
        };
        self.pushed = Some(pushed);
        for _ in 0..BATCHES_PER_RUN {
            let alerts = match self
                .handle
                .call_blocking(|r| Command::AlertsAfter(pushed, MAX_PUSH, r))
            {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "Cannot read alerts to push.");
                    return;
                }
            };
            let last = alerts.last().map(|a| a.id);
            let full = alerts.len() == MAX_PUSH;
            let push = Push {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                alerts,
            };
            if let Err(e) = self.send(&push) {
                self.failures += 1;
                if self.failures.is_power_of_two() {
                    warn!(error = %e, failures = self.failures, "Cannot reach the central node; enforcing what this host has.");
                }
                return;
            }
            if self.failures > 0 {
                info!(after = self.failures, "The central node answers again.");
                self.failures = 0;
            }
            if let Some(id) = last {
                pushed = id;
                self.pushed = Some(id);
                let _ = self.handle.notify(Command::SaveState(
                    STATE_CENTRAL,
                    vec![("pushed".into(), id.to_string())],
                ));
            }
            if !full {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn central(url: &str) -> CentralConfig {
        CentralConfig {
            url: url.into(),
            key: "k".into(),
            ca: None,
            interval: five_seconds(),
        }
    }

    #[test]
    fn the_central_address_is_read_from_its_url() {
        let a = |u: &str| central(u).address().map(|a| a.to_string());
        assert_eq!(a("https://10.0.0.5:8443").as_deref(), Some("10.0.0.5"));
        assert_eq!(a("http://10.0.0.5/").as_deref(), Some("10.0.0.5"));
        assert_eq!(
            a("https://[2001:db8::5]:8443/x").as_deref(),
            Some("2001:db8::5")
        );
        assert_eq!(a("https://central.example:8443"), None);
        assert!(central("ftp://x").validate().is_err());
        assert!(central("https://10.0.0.5:8443").validate().is_ok());
    }
}
