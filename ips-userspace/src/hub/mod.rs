//! The community hub (`ips hub`): agents enrol with a token and push signals (source, scenario,
//! time; no log content); the hub publishes a consensus blocklist that agents pull as deltas
//! through the same CrowdSec-shaped stream they already read (`[[crowdsec]]` pointing at the
//! hub).
//!
//! Consensus: a value is listed when the agents that reported it within the window weigh at
//! least `k` in trust (each agent counts once however often it reports, so one agent can never
//! list anything alone), and leaves when old reports age out of the window. Trust is earned:
//! a new agent weighs nothing and grows to its full trust over `ramp_ms` (a week by default)
//! unless an operator approves it (`ips hub approve NAME`), so one holder of the enrolment
//! token who enrols many agents at once cannot reach `k` alone. The hub's own allowlist,
//! private ranges and prefixes shorter than the minimum are never listed.
//!
//! [`HubStore`] keeps agents, signals and the consensus log in SQLite.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

pub mod server;

/// Hub settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HubConfig {
    /// The enrolment token agents present.
    pub token: String,
    /// Trust weight needed to list a value (distinct agents at trust 1).
    pub k: f64,
    /// How long a report counts.
    pub window_ms: i64,
    /// Never listed.
    pub allowlist: Vec<Prefix>,
    /// The shortest prefixes a signal may carry; a shorter one (a catch-all such as
    /// `32.0.0.0/3`) is refused and counted, never listed.
    #[serde(default)]
    pub min: crate::decisions::MinPrefix,
    /// How long an agent that is not approved takes to reach its full trust (0: at once).
    #[serde(default = "a_week")]
    pub ramp_ms: i64,
    /// Signals one agent may push per minute; more are answered 429 (the agent keeps them and
    /// tries again).
    #[serde(default = "signals_per_minute")]
    pub signals_per_minute: u64,
}

fn a_week() -> i64 {
    7 * 86_400_000
}

/// The default of [`HubConfig::signals_per_minute`]: a backlog of this many drains in a minute.
pub fn signals_per_minute() -> u64 {
    100_000
}

/// One signal from an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The attacking address (or prefix).
    pub value: Prefix,
    /// Scenario that fired.
    pub scenario: String,
    /// When (Unix ms).
    pub time_ms: i64,
}

/// A consensus change, numbered for deltas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Sequence number.
    pub seq: i64,
    /// The value.
    pub value: Prefix,
    /// Listed (true) or removed.
    pub listed: bool,
}

/// Errors of the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// SQLite.
    #[error("hub store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL.
    #[error("hub store (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    /// Bad enrolment token.
    #[error("wrong enrolment token")]
    BadToken,
    /// No randomness for a key.
    #[error("cannot make an API key: {0}")]
    Key(std::io::Error),
}

/// What the consensus logic needs from a database. SQLite ([`sqlite::SqliteHub`]) for a single
/// node, PostgreSQL ([`pg::PgHub`]) for a fleet: the logic in [`HubStore`] is the same for both.
pub trait HubBackend: Send {
    /// Adds an agent; returns its id.
    fn add_agent(&mut self, name: &str, key_sha256: &str, now_ms: i64) -> Result<i64, HubError>;
    /// The agent with this key hash.
    fn agent_by_key(&mut self, key_sha256: &str) -> Result<Option<i64>, HubError>;
    /// Sets an agent's trust.
    fn set_trust(&mut self, agent: i64, trust: f64) -> Result<(), HubError>;
    /// Records signals (one row per value and agent: the latest time).
    fn upsert_signals(
        &mut self,
        agent: i64,
        signals: &[Signal],
        now_ms: i64,
    ) -> Result<(), HubError>;
    /// Sum of the trust of agents that reported `value` after `since_ms`, each agent that is
    /// not approved weighing its trust times the share of `ramp_ms` it has been enrolled at
    /// `now_ms`.
    fn weight(
        &mut self,
        value: &str,
        since_ms: i64,
        now_ms: i64,
        ramp_ms: i64,
    ) -> Result<f64, HubError>;
    /// Approves the agent named `name` (full trust at once); false if there is none.
    fn approve(&mut self, name: &str) -> Result<bool, HubError>;
    /// The values with a report timed in (`after_ms`, `until_ms`]: those whose weight changes
    /// when the window moves past them.
    fn reported_between(&mut self, after_ms: i64, until_ms: i64) -> Result<Vec<String>, HubError>;
    /// True if `value` is listed.
    fn is_listed(&mut self, value: &str) -> Result<bool, HubError>;
    /// Lists or unlists `value` and appends the change to the log.
    fn set_listed(&mut self, value: &str, listed: bool, now_ms: i64) -> Result<(), HubError>;
    /// Every listed value.
    fn listed(&mut self) -> Result<Vec<String>, HubError>;
    /// Changes after sequence number `seq`, in order.
    fn changes_since(&mut self, seq: i64) -> Result<Vec<(String, bool)>, HubError>;
    /// The last sequence number.
    fn max_seq(&mut self) -> Result<i64, HubError>;
    /// The last sequence number an agent pulled.
    fn agent_seq(&mut self, agent: i64) -> Result<i64, HubError>;
    /// Records an agent's pull.
    fn set_agent_seq(&mut self, agent: i64, seq: i64) -> Result<(), HubError>;
    /// Forgets signals at or before `ms`.
    fn forget_signals(&mut self, ms: i64) -> Result<(), HubError>;
}

pub mod pg;
pub mod sqlite;

/// The hub: consensus logic over a [`HubBackend`].
pub struct HubStore {
    backend: Box<dyn HubBackend>,
    config: HubConfig,
    /// What is never listed: the hub's allowlist and the private ranges.
    never: Vec<Prefix>,
    /// When reports were last aged out.
    last_decay_ms: Option<i64>,
}

impl HubStore {
    /// A hub on SQLite (`:memory:` for a throwaway one).
    pub fn open(path: &std::path::Path, config: HubConfig) -> Result<Self, HubError> {
        Ok(Self::with(Box::new(sqlite::SqliteHub::open(path)?), config))
    }

    /// A hub on PostgreSQL (`postgres://user:pass@host/db` or `host=.. user=..`).
    pub fn postgres(url: &str, config: HubConfig) -> Result<Self, HubError> {
        Ok(Self::with(Box::new(pg::PgHub::connect(url)?), config))
    }

    /// Signals one agent may push per minute.
    pub fn signals_per_minute(&self) -> u64 {
        self.config.signals_per_minute
    }

    fn with(backend: Box<dyn HubBackend>, config: HubConfig) -> Self {
        let never = config
            .allowlist
            .iter()
            .copied()
            .chain(crate::prefix::private_ranges())
            .collect();
        Self {
            backend,
            config,
            never,
            last_decay_ms: None,
        }
    }

    /// Approves agent `name`: it weighs its full trust at once.
    pub fn approve(&mut self, name: &str) -> Result<bool, HubError> {
        self.backend.approve(name)
    }

    /// Enrols an agent; returns (agent id, API key).
    pub fn enrol(
        &mut self,
        token: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<(i64, String), HubError> {
        if token != self.config.token {
            return Err(HubError::BadToken);
        }
        let key = crate::api::crowdsec::new_key().map_err(HubError::Key)?;
        let id = self
            .backend
            .add_agent(name, &crate::api::crowdsec::key_hash(&key), now_ms)?;
        Ok((id, key))
    }

    /// The agent with this API key.
    pub fn agent(&mut self, key: &str) -> Result<Option<i64>, HubError> {
        self.backend
            .agent_by_key(&crate::api::crowdsec::key_hash(key))
    }

    /// Sets an agent's trust weight.
    pub fn set_trust(&mut self, agent: i64, trust: f64) -> Result<(), HubError> {
        self.backend.set_trust(agent, trust)
    }

    /// Records signals from an agent and updates the consensus for the values they touch.
    /// Returns how many were refused: shorter than the minimum prefix, or never listable (the
    /// allowlist, private ranges).
    pub fn push(&mut self, agent: i64, signals: &[Signal], now_ms: i64) -> Result<usize, HubError> {
        let kept: Vec<Signal> = signals
            .iter()
            .filter(|s| self.config.min.allows(&s.value) && !self.allowed(&s.value))
            .cloned()
            .collect();
        self.backend.upsert_signals(agent, &kept, now_ms)?;
        let values: Vec<Prefix> = kept.iter().map(|s| s.value).collect();
        self.update(&values, now_ms)?;
        Ok(signals.len() - kept.len())
    }

    /// True if `value` may never be listed: it meets the allowlist or a private range.
    fn allowed(&self, value: &Prefix) -> bool {
        self.never
            .iter()
            .any(|a| a.contains(value) || value.contains(a))
    }

    /// Re-decides each value: listed iff its trust weight within the window reaches `k` and it
    /// is not allowlisted. Changes are logged for deltas.
    pub fn update(&mut self, values: &[Prefix], now_ms: i64) -> Result<(), HubError> {
        for v in values {
            let text = v.to_string();
            let want = !self.allowed(v)
                && self.config.min.allows(v)
                && self.backend.weight(
                    &text,
                    now_ms - self.config.window_ms,
                    now_ms,
                    self.config.ramp_ms,
                )? >= self.config.k;
            if want != self.backend.is_listed(&text)? {
                self.backend.set_listed(&text, want, now_ms)?;
            }
        }
        Ok(())
    }

    /// Ages out reports: re-decides the values whose reports left the window since the last
    /// decay, then forgets those reports. The work is proportional to what ages out, not to
    /// what is listed.
    pub fn decay(&mut self, now_ms: i64) -> Result<(), HubError> {
        let cutoff = now_ms - self.config.window_ms;
        let from = self
            .last_decay_ms
            .map_or(i64::MIN, |l| l - self.config.window_ms);
        let aged: Vec<Prefix> = self
            .backend
            .reported_between(from, cutoff)?
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        self.update(&aged, now_ms)?;
        self.backend.forget_signals(cutoff)?;
        self.last_decay_ms = Some(now_ms);
        Ok(())
    }

    /// The consensus list now.
    pub fn listed(&mut self) -> Result<Vec<Prefix>, HubError> {
        let mut out: Vec<Prefix> = self
            .backend
            .listed()?
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Changes an agent has not pulled yet (everything listed on startup); records the pull.
    pub fn pull(
        &mut self,
        agent: i64,
        startup: bool,
    ) -> Result<(Vec<Prefix>, Vec<Prefix>), HubError> {
        let last = self.backend.agent_seq(agent)?;
        let top = self.backend.max_seq()?;
        let out = if startup || last == 0 {
            (self.listed()?, Vec::new())
        } else {
            // The last change of a value wins.
            let mut state: HashMap<String, bool> = HashMap::new();
            for (v, l) in self.backend.changes_since(last)? {
                state.insert(v, l);
            }
            let mut new = Vec::new();
            let mut deleted = Vec::new();
            for (v, l) in state {
                if let Ok(p) = v.parse() {
                    if l { new.push(p) } else { deleted.push(p) }
                }
            }
            new.sort();
            deleted.sort();
            (new, deleted)
        };
        self.backend.set_agent_seq(agent, top)?;
        Ok(out)
    }

    /// The consensus window in milliseconds.
    pub fn window_ms(&self) -> i64 {
        self.config.window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// K = 3; agents weigh their full trust after `ramp_ms`.
    fn hub_with(window_ms: i64, ramp_ms: i64) -> HubStore {
        HubStore::open(
            std::path::Path::new(":memory:"),
            HubConfig {
                token: "t".into(),
                k: 3.0,
                window_ms,
                allowlist: vec!["198.51.100.0/24".parse().unwrap()],
                min: Default::default(),
                ramp_ms,
                signals_per_minute: signals_per_minute(),
            },
        )
        .unwrap()
    }

    fn hub() -> HubStore {
        hub_with(1000, 0)
    }

    fn sig(v: &str, t: i64) -> Signal {
        Signal {
            value: v.parse().unwrap(),
            scenario: "ssh-bf".into(),
            time_ms: t,
        }
    }

    #[test]
    fn k_of_n_poisoning_allowlist_and_decay() {
        let mut h = hub();
        assert!(matches!(h.enrol("wrong", "a", 0), Err(HubError::BadToken)));
        let agents: Vec<i64> = (0..5)
            .map(|i| h.enrol("t", &format!("a{i}"), 0).unwrap().0)
            .collect();
        h.push(agents[0], &[sig("203.0.113.9", 10)], 10).unwrap();
        h.push(agents[1], &[sig("203.0.113.9", 20)], 20).unwrap();
        assert!(h.listed().unwrap().is_empty(), "two of three");
        // One agent reporting a hundred times is still one agent.
        for t in 0..100 {
            h.push(agents[4], &[sig("192.0.2.66", t)], t).unwrap();
        }
        assert!(h.listed().unwrap().is_empty());
        h.push(agents[2], &[sig("203.0.113.9", 30)], 30).unwrap();
        assert_eq!(h.listed().unwrap(), vec!["203.0.113.9".parse().unwrap()]);
        // The allowlist and private ranges are never listed, however many report.
        for a in &agents {
            h.push(*a, &[sig("198.51.100.7", 40), sig("10.1.2.3", 40)], 40)
                .unwrap();
        }
        assert_eq!(h.listed().unwrap().len(), 1);
        // A trusted pair can list alone.
        h.set_trust(agents[3], 2.0).unwrap();
        h.push(agents[3], &[sig("192.0.2.66", 50)], 50).unwrap();
        assert_eq!(h.listed().unwrap().len(), 2);
        // Reports age out of the window: the entries leave.
        h.decay(1025).unwrap();
        assert_eq!(h.listed().unwrap(), vec!["192.0.2.66".parse().unwrap()]);
        h.decay(5000).unwrap();
        assert!(h.listed().unwrap().is_empty());
    }

    #[test]
    fn deltas_since_the_last_pull() {
        let mut h = hub();
        let a: Vec<i64> = (0..3)
            .map(|i| h.enrol("t", &format!("a{i}"), 0).unwrap().0)
            .collect();
        for x in &a {
            h.push(*x, &[sig("203.0.113.1", 0)], 0).unwrap();
        }
        let (new, del) = h.pull(a[0], true).unwrap();
        assert_eq!((new.len(), del.len()), (1, 0));
        assert_eq!(h.pull(a[0], false).unwrap(), (vec![], vec![]));
        for x in &a {
            h.push(*x, &[sig("203.0.113.2", 500)], 500).unwrap();
        }
        h.decay(1001).unwrap();
        let (new, del) = h.pull(a[0], false).unwrap();
        assert_eq!(new, vec!["203.0.113.2".parse().unwrap()]);
        assert_eq!(del, vec!["203.0.113.1".parse().unwrap()]);
    }

    #[test]
    fn decay_touches_only_what_ages_out() {
        let mut h = hub_with(30 * DAY, 7 * DAY);
        let agents: Vec<i64> = (0..3)
            .map(|i| h.enrol("t", &format!("a{i}"), 0).unwrap().0)
            .collect();
        for i in 0..3 {
            h.approve(&format!("a{i}")).unwrap();
        }
        for a in &agents {
            h.push(*a, &[sig("45.1.2.3", 10 * DAY)], 10 * DAY).unwrap();
            h.push(*a, &[sig("45.1.2.9", 20 * DAY)], 20 * DAY).unwrap();
        }
        h.decay(20 * DAY).unwrap();
        assert_eq!(h.listed().unwrap().len(), 2);
        // 45.1.2.3's reports leave the window first; 45.1.2.9 stays.
        h.decay(41 * DAY).unwrap();
        assert_eq!(h.listed().unwrap(), vec!["45.1.2.9".parse().unwrap()]);
        h.decay(51 * DAY).unwrap();
        assert!(h.listed().unwrap().is_empty());
    }
}

/// `[hub]` in an agent's `ips.toml`: where to push signals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The hub's base URL.
    pub url: String,
    /// This agent's key (from `/v1/hub/enroll`).
    pub api_key: String,
}

/// Most signals in one push: a backlog goes in pushes of this size, which the hub takes.
pub const PUSH_BATCH: usize = 5_000;

/// Sends ban signals to the hub in batches, four times a second; keeps (up to 100k) what
/// could not be sent for the next try, and sends a backlog in pushes of [`PUSH_BATCH`]. A task
/// on the daemon's scheduler.
pub struct Pusher {
    config: AgentConfig,
    url: String,
    agent: ureq::Agent,
    rx: std::sync::mpsc::Receiver<Signal>,
    pending: Vec<Signal>,
    status: Status,
    index: usize,
}

type Status = std::sync::Arc<std::sync::Mutex<Vec<crate::blocklists::source::SourceStatus>>>;

impl Pusher {
    /// The pusher and where the service sends it signals; it reports into `status` (for
    /// `ips blocklist status`: signals pushed, last success and error).
    pub fn new(config: AgentConfig, status: &Status) -> (Self, std::sync::mpsc::Sender<Signal>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let url = format!("{}/v1/hub/signals", config.url.trim_end_matches('/'));
        let index = crate::blocklists::source::register(
            status,
            crate::blocklists::source::SourceStatus {
                name: "hub".into(),
                kind: "hub".into(),
                from: config.url.clone(),
                ..Default::default()
            },
        );
        let pusher = Self {
            config,
            url,
            agent: crate::http::agent(std::time::Duration::from_secs(30)),
            rx,
            pending: Vec::new(),
            status: status.clone(),
            index,
        };
        (pusher, tx)
    }

    fn report(&self, f: impl FnOnce(&mut crate::blocklists::source::SourceStatus)) {
        crate::blocklists::source::report(&self.status, self.index, f);
    }
}

impl crate::schedule::Task for Pusher {
    fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(250)
    }

    fn run(&mut self) {
        self.pending.extend(self.rx.try_iter());
        while !self.pending.is_empty() {
            let batch = self.pending.len().min(PUSH_BATCH);
            if !self.push(batch) {
                return;
            }
        }
    }
}

impl Pusher {
    /// Sends the first `batch` pending signals; true if the hub took them.
    fn push(&mut self, batch: usize) -> bool {
        let sent = self
            .agent
            .post(&self.url)
            .header("X-Api-Key", &self.config.api_key)
            .send_json(&self.pending[..batch])
            .map(|r| r.status().is_success());
        match sent {
            Ok(true) => {
                let n = batch as u64;
                self.pending.drain(..batch);
                self.report(|s| {
                    // Signals pushed so far.
                    s.entries += n;
                    s.last_success_ms = Some(crate::calendar::now_ms());
                    s.last_error = None;
                });
                true
            }
            other => {
                let why = format!("{:?}", other.as_ref().map_err(ToString::to_string));
                self.report(|s| s.last_error = Some(format!("cannot push signals: {why}")));
                tracing::warn!(hub = %self.config.url, result = ?other.map_err(|e| e.to_string()), "Cannot push signals; will retry.");
                if self.pending.len() > 100_000 {
                    self.pending.drain(..self.pending.len() - 100_000);
                }
                false
            }
        }
    }
}
