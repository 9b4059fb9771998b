//! Notifications: alerts and what was decided, sent to a webhook, a Slack-compatible chat or by
//! email (`[[notification]]` in ips.toml).
//!
//! The decision service hands each decided alert to [`Notifiers::notify`], which never waits:
//! every destination has its own thread and a bounded queue, and a full queue drops the notice
//! (counted) rather than hold up a ban. A destination gathers what comes within its `batch`
//! window into one message, sends at most `max_per_minute` messages (what comes meanwhile waits
//! for the next one), and retries a failed send with backoff before giving it up (counted).
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::decisions::{Outcome, StoredAlert};

/// One `[[notification]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// `webhook`, `slack` (Slack, Mattermost and Discord incoming webhooks) or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A name for logs (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// Where to POST (webhook, slack).
    #[serde(default)]
    pub url: Option<String>,
    /// More HTTP headers (webhook), e.g. an authorization.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Only these scenarios (empty: all).
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Only alerts of these origins: `detection` (this host's), `machine:<name>` or `machine`
    /// (any agent's, on a central node). Empty: all.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Alerts within this window go in one message.
    #[serde(default = "batch", with = "crate::config::human_duration")]
    pub batch: Duration,
    /// Messages per minute at most; alerts beyond wait for the next message.
    #[serde(default = "per_minute")]
    pub max_per_minute: u32,
    /// SMTP server (email).
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// SMTP port (email; 587 by default).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// `starttls` (required, the default), `tls` (implicit, port 465) or `none` (a relay on
    /// loopback only).
    #[serde(default)]
    pub security: Option<String>,
    /// SMTP user and password, if the server wants them.
    #[serde(default)]
    pub username: Option<String>,
    /// See `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// Sender address (email).
    #[serde(default)]
    pub from: Option<String>,
    /// Recipients (email).
    #[serde(default)]
    pub to: Vec<String>,
}

fn batch() -> Duration {
    Duration::from_secs(2)
}

fn per_minute() -> u32 {
    20
}

/// A notification config that does not hold together.
#[derive(Debug, thiserror::Error)]
#[error("[[notification]] {name}: {message}")]
pub struct NotifyError {
    name: String,
    message: String,
}

impl NotificationConfig {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.clone())
    }

    /// Checks that the fields the type needs are there.
    pub fn check(&self) -> Result<(), NotifyError> {
        let bad = |message: &str| NotifyError {
            name: self.name(),
            message: message.to_owned(),
        };
        match self.kind.as_str() {
            "webhook" | "slack" => {
                let url = self.url.as_deref().ok_or_else(|| bad("needs a url"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad("the url must be http:// or https://"));
                }
            }
            "email" => {
                if self.smtp_host.is_none() || self.from.is_none() || self.to.is_empty() {
                    return Err(bad("needs smtp_host, from and to"));
                }
                match self.security.as_deref() {
                    None | Some("starttls" | "tls") => {}
                    Some("none") if self.smtp_host.as_deref().is_some_and(is_loopback) => {}
                    Some("none") => {
                        return Err(bad("security = \"none\" is for a relay on loopback only"));
                    }
                    Some(other) => {
                        return Err(bad(&format!(
                            "security {other:?}: expected starttls, tls or none"
                        )));
                    }
                }
            }
            other => {
                return Err(bad(&format!(
                    "type {other:?}: expected webhook, slack or email"
                )));
            }
        }
        if self.max_per_minute == 0 {
            return Err(bad("max_per_minute must be above 0"));
        }
        Ok(())
    }

    /// True if `a` passes the scenario and origin filters.
    fn wants(&self, a: &StoredAlert) -> bool {
        let origin = if a.machine.is_empty() {
            "detection".to_owned()
        } else {
            format!("machine:{}", a.machine)
        };
        (self.scenarios.is_empty() || self.scenarios.contains(&a.scenario))
            && (self.origins.is_empty()
                || self
                    .origins
                    .iter()
                    .any(|o| *o == origin || (o == "machine" && origin.starts_with("machine:"))))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// What the destinations did, for `ips status`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages given up after their retries.
    pub failed: AtomicU64,
    /// Alerts dropped because a destination's queue was full.
    pub dropped: AtomicU64,
}

/// The destinations, each on its own thread.
pub struct Notifiers {
    destinations: Vec<(NotificationConfig, mpsc::SyncSender<StoredAlert>)>,
    /// Shared counters.
    pub counters: Arc<Counters>,
}

/// Alerts a destination's queue holds before it drops.
const QUEUE: usize = 4096;

impl Notifiers {
    /// Starts a thread per destination (configs already checked).
    pub fn start(configs: &[NotificationConfig]) -> Self {
        let counters = Arc::new(Counters::default());
        let mut destinations = Vec::new();
        for c in configs {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            let (config, counters) = (c.clone(), counters.clone());
            let spawned = thread::Builder::new()
                .name(format!("ips-notify-{}", c.kind))
                .spawn(move || Destination::new(config, counters).run(&rx));
            match spawned {
                Ok(_) => destinations.push((c.clone(), tx)),
                Err(e) => warn!(error = %e, name = %c.name(), "Cannot start a notifier."),
            }
        }
        Self {
            destinations,
            counters,
        }
    }

    /// Hands `a` to every destination that wants it, without waiting.
    pub fn notify(&self, a: &StoredAlert) {
        for (config, tx) in &self.destinations {
            if config.wants(a) && tx.try_send(a.clone()).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One destination's thread.
struct Destination {
    config: NotificationConfig,
    counters: Arc<Counters>,
    http: ureq::Agent,
    /// When the last messages were sent (the rate limit's window).
    sent: Vec<Instant>,
}

/// Waits between tries of one message.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

impl Destination {
    fn new(config: NotificationConfig, counters: Arc<Counters>) -> Self {
        Self {
            config,
            counters,
            http: crate::http::agent(Duration::from_secs(10)),
            sent: Vec::new(),
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<StoredAlert>) {
        let mut pending: Vec<StoredAlert> = Vec::new();
        let mut due: Option<Instant> = None;
        loop {
            let wait = due.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok(a) => {
                    pending.push(a);
                    due.get_or_insert_with(|| Instant::now() + self.config.batch);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if !pending.is_empty() {
                        self.deliver(&pending);
                    }
                    return;
                }
            }
            if pending.is_empty() {
                due = None;
                continue;
            }
            // The rate limit: over it, the batch grows until a slot frees.
            let now = Instant::now();
            self.sent
                .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            if self.sent.len() >= self.config.max_per_minute as usize {
                due = self.sent.first().map(|t| *t + Duration::from_secs(60));
                continue;
            }
            self.deliver(&pending);
            self.sent.push(Instant::now());
            pending.clear();
            due = None;
        }
    }

    /// Sends one message for `alerts`, with retries.
    fn deliver(&self, alerts: &[StoredAlert]) {
        let mut tries = 0;
        loop {
            match self.send(alerts) {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    info!(name = %self.config.name(), alerts = alerts.len(), "Notification sent.");
                    return;
                }
                Err(e) if tries < BACKOFF.len() => {
                    warn!(name = %self.config.name(), error = %e, "Notification failed; trying again.");
                    thread::sleep(BACKOFF[tries]);
                    tries += 1;
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(name = %self.config.name(), error = %e, alerts = alerts.len(), "Notification given up.");
                    return;
                }
            }
        }
    }

    fn send(&self, alerts: &[StoredAlert]) -> Result<(), String> {
        match self.config.kind.as_str() {
            "webhook" => self.post(&webhook_body(alerts)),
            "slack" => {
                let text = summary(alerts);
                self.post(&serde_json::json!({ "text": text, "content": text }))
            }
            "email" => self.email(alerts),
            other => Err(format!("unknown type {other}")),
        }
    }

    fn post(&self, body: &serde_json::Value) -> Result<(), String> {
        let url = self.config.url.as_deref().unwrap_or_default();
        let mut req = self.http.post(url);
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        let r = req.send_json(body).map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("{url} answered {status}"))
        }
    }

    fn email(&self, alerts: &[StoredAlert]) -> Result<(), String> {
        use lettre::{Message, SmtpTransport, Transport, message::header::ContentType};
        let c = &self.config;
        let host = c.smtp_host.as_deref().unwrap_or_default();
        let mut msg = Message::builder()
            .from(
                c.from
                    .as_deref()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| format!("from: {e}"))?,
            )
            .subject(subject(alerts))
            .header(ContentType::TEXT_PLAIN);
        for to in &c.to {
            msg = msg.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
        }
        let msg = msg.body(summary(alerts)).map_err(|e| e.to_string())?;
        let builder = match c.security.as_deref() {
            Some("none") => SmtpTransport::builder_dangerous(host),
            Some("tls") => SmtpTransport::relay(host).map_err(|e| e.to_string())?,
            _ => SmtpTransport::starttls_relay(host).map_err(|e| e.to_string())?,
        };
        let mut builder = builder.timeout(Some(Duration::from_secs(10)));
        if let Some(port) = c.smtp_port {
            builder = builder.port(port);
        }
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            builder = builder.credentials(
                lettre::transport::smtp::authentication::Credentials::new(u.clone(), p.clone()),
            );
        }
        builder
            .build()
            .send(&msg)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// What was decided for an alert, in words.
fn decided(a: &StoredAlert) -> String {
    match &a.outcome {
        Outcome::Ban { value, duration_ms } => format!(
            "banned {value} for {}",
            crate::duration::format(Duration::from_millis((*duration_ms).max(0) as u64))
        ),
        Outcome::Simulated { value, .. } => format!("would ban {value} (simulation)"),
        Outcome::Allowlisted { reason } => format!("not banned: allowlisted ({reason})"),
        Outcome::Refused { value, reason } => format!("could not ban {value}: {reason}"),
    }
}

fn subject(alerts: &[StoredAlert]) -> String {
    match alerts {
        [one] => format!("ips: {} from {}", one.scenario, one.source),
        many => format!("ips: {} alerts", many.len()),
    }
}

/// A plain-text account of `alerts`: a line each, then the first alert's evidence.
fn summary(alerts: &[StoredAlert]) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut out = format!("ips on {}: {} alert(s)\n", host.trim(), alerts.len());
    for a in alerts {
        let from = if a.machine.is_empty() {
            String::new()
        } else {
            format!(" (agent {})", a.machine)
        };
        out.push_str(&format!(
            "- {} from {}{from}: {} events, {}\n",
            a.scenario,
            a.source,
            a.events,
            decided(a)
        ));
    }
    if let Some(a) = alerts.first()
        && !a.evidence.is_empty()
    {
        out.push_str("\nEvidence:\n");
        for line in a.evidence.iter().take(10) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The webhook's JSON: every alert with its evidence and decision.
fn webhook_body(alerts: &[StoredAlert]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let decision = match &a.outcome {
                Outcome::Ban { value, duration_ms } => serde_json::json!({
                    "type": "ban", "value": value.to_string(), "duration_ms": duration_ms,
                }),
                Outcome::Simulated { value, duration_ms } => serde_json::json!({
                    "type": "simulated", "value": value.to_string(), "duration_ms": duration_ms,
                }),
                Outcome::Allowlisted { reason } => {
                    serde_json::json!({ "type": "allowlisted", "reason": reason })
                }
                Outcome::Refused { value, reason } => serde_json::json!({
                    "type": "refused", "value": value.to_string(), "reason": reason,
                }),
            };
            serde_json::json!({
                "id": a.id,
                "scenario": a.scenario,
                "source": a.source.to_string(),
                "group": a.group.to_string(),
                "events": a.events,
                "first_ms": a.first_ms,
                "last_ms": a.last_ms,
                "evidence": a.evidence,
                "labels": a.labels,
                "machine": a.machine,
                "decision": decision,
                "text": decided(a),
            })
        })
        .collect();
    serde_json::json!({
        "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
        "alerts": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> NotificationConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn configs_are_checked_and_filters_apply() {
        assert!(config("type = \"webhook\"").check().is_err());
        assert!(
            config("type = \"webhook\"\nurl = \"ftp://x\"")
                .check()
                .is_err()
        );
        assert!(
            config("type = \"pager\"\nurl = \"http://x\"")
                .check()
                .is_err()
        );
        assert!(
            config("type = \"email\"\nsmtp_host = \"mail.example\"\nfrom = \"a@b\"\nto = [\"c@d\"]\nsecurity = \"none\"")
                .check()
                .is_err(),
            "plain SMTP off loopback"
        );
        let c = config(
            "type = \"slack\"\nurl = \"https://hooks.example/x\"\nscenarios = [\"ssh-bf\"]\norigins = [\"detection\"]",
        );
        c.check().unwrap();
        let mut a = StoredAlert {
            id: 1,
            scenario: "ssh-bf".into(),
            source: "45.1.2.3".parse().unwrap(),
            group: "45.1.2.3".parse().unwrap(),
            first_ms: 0,
            last_ms: 0,
            events: 6,
            outcome: Outcome::Ban {
                value: "45.1.2.3".parse().unwrap(),
                duration_ms: 14_400_000,
            },
            evidence: vec!["Failed password for root".into()],
            labels: BTreeMap::new(),
            machine: String::new(),
        };
        assert!(c.wants(&a));
        a.machine = "web01".into();
        assert!(
            !c.wants(&a),
            "an agent's alert, and only this host's are wanted"
        );
        a.machine.clear();
        a.scenario = "http-probing".into();
        assert!(!c.wants(&a));
        assert!(summary(&[a.clone()]).contains("banned 45.1.2.3 for 4h"));
        assert_eq!(webhook_body(&[a])["alerts"][0]["decision"]["type"], "ban");
    }

    /// Alerts within the batch window go in one message; over the rate limit, the next ones
    /// wait (and gather) instead of going out.
    #[test]
    fn batches_and_the_rate_limit() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel::<serde_json::Value>();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let mut w = conn;
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or_default());
            }
        });
        let c = config(&format!(
            "type = \"webhook\"\nurl = \"http://127.0.0.1:{port}/\"\nbatch = \"300ms\"\nmax_per_minute = 1"
        ));
        c.check().unwrap();
        let n = Notifiers::start(&[c]);
        let alert = |i: u8| StoredAlert {
            id: i64::from(i),
            scenario: "ssh-bf".into(),
            source: std::net::IpAddr::from([45, 1, 1, i]),
            group: format!("45.1.1.{i}").parse().unwrap(),
            first_ms: 0,
            last_ms: 0,
            events: 6,
            outcome: Outcome::Ban {
                value: format!("45.1.1.{i}").parse().unwrap(),
                duration_ms: 1000,
            },
            evidence: vec![],
            labels: BTreeMap::new(),
            machine: String::new(),
        };
        for i in 1..=5 {
            n.notify(&alert(i));
        }
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first["alerts"].as_array().unwrap().len(), 5, "{first}");
        // One message a minute: the next alerts wait.
        n.notify(&alert(6));
        n.notify(&alert(7));
        assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
        assert_eq!(n.counters.sent.load(Ordering::Relaxed), 1);
        assert_eq!(n.counters.dropped.load(Ordering::Relaxed), 0);
    }
}
