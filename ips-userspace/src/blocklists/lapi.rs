//! `ips` as a bouncer of an existing CrowdSec installation: it pulls a LAPI's
//! `/v1/decisions/stream` (everything on startup, deltas after) and turns it into decisions,
//! tolerating the shapes seen in the wild: `null` instead of `[]`, scope in either case (`Ip`,
//! `ip`, `Range`), `/32` on Ip values, negative durations on deleted entries, `simulation:ban`
//! types, IPv6 and ranges.
use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use std::sync::{Arc, Mutex};

use super::{Sink, source::SourceStatus};
use crate::{
    decisions::{NewDecision, Origin},
    prefix::Prefix,
    schedule::Task,
};

/// `[[crowdsec]]` in `ips.toml`: a LAPI to pull decisions from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LapiConfig {
    /// Name; decisions get origin `lapi:<name>`.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The bouncer API key (`cscli bouncers add ips`).
    pub api_key: String,
    /// How often to pull.
    #[serde(default = "ten_seconds", with = "crate::config::human_duration")]
    pub interval: Duration,
    /// The LAPI's certificate or CA (PEM), when the system does not trust it.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

/// One pull's changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Bans to add: value, milliseconds left, scenario.
    pub new: Vec<(Prefix, i64, String)>,
    /// Values to unban.
    pub deleted: Vec<Prefix>,
    /// Entries skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// A Go duration (`3h59m58.123s`, `-1h2m`, `300ms`, `1.5h`) in milliseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..u] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 6e4,
            "h" => 3.6e6,
            _ => return None,
        };
        total += value * ms;
        rest = &rest[u..];
    }
    let ms = total.round() as i64;
    Some(if neg { -ms } else { ms })
}

fn entries<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    // `null` and a missing key both mean "none".
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Reads a stream answer.
pub fn parse_stream(text: &str) -> Result<Delta, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let mut d = Delta::default();
    let skip = |d: &mut Delta, why: &str| *d.skipped.entry(why.to_owned()).or_default() += 1;
    for (key, is_new) in [("new", true), ("deleted", false)] {
        for e in entries(&v, key) {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or("ban");
            if !kind.eq_ignore_ascii_case("ban") {
                skip(&mut d, "not a ban (simulation or captcha)");
                continue;
            }
            let scope = e
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("ip")
                .to_ascii_lowercase();
            if scope != "ip" && scope != "range" {
                skip(&mut d, "scope is not ip or range");
                continue;
            }
            let Some(Ok(value)) = e
                .get("value")
                .and_then(Value::as_str)
                .map(str::parse::<Prefix>)
            else {
                skip(&mut d, "not an address or prefix");
                continue;
            };
            if is_new {
                let left = e
                    .get("duration")
                    .and_then(Value::as_str)
                    .and_then(parse_go_duration);
                match left {
                    Some(ms) if ms > 0 => {
                        let scenario = e
                            .get("scenario")
                            .and_then(Value::as_str)
                            .unwrap_or("crowdsec")
                            .to_owned();
                        d.new.push((value, ms, scenario));
                    }
                    Some(_) => skip(&mut d, "already expired"),
                    None => skip(&mut d, "bad duration"),
                }
            } else {
                d.deleted.push(value);
            }
        }
    }
    Ok(d)
}

/// Pulls the stream once.
pub fn pull(agent: &ureq::Agent, url: &str, api_key: &str, startup: bool) -> Result<Delta, String> {
    let full = format!(
        "{}/v1/decisions/stream?startup={startup}",
        url.trim_end_matches('/')
    );
    let mut resp = agent
        .get(&full)
        .header("X-Api-Key", api_key)
        .header("User-Agent", "ips-bouncer/0.1")
        .call()
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!("HTTP {status} from {full}"));
    }
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    parse_stream(&text)
}

/// One configured LAPI on the scheduler: startup first, then deltas; bans and unbans go to the
/// sink with origin `lapi:<name>`.
pub struct LapiTask<S> {
    config: LapiConfig,
    origin: Origin,
    agent: ureq::Agent,
    sink: S,
    started: bool,
    status: Arc<Mutex<Vec<SourceStatus>>>,
    index: usize,
}

/// The tasks of `sources`, reporting into `status` (an entry each, added here). A name that
/// breaks the naming rule is an error naming it.
pub fn tasks<S: Sink + Clone>(
    sources: Vec<LapiConfig>,
    sink: &S,
    status: &Arc<Mutex<Vec<SourceStatus>>>,
) -> Result<Vec<Box<dyn Task>>, String> {
    sources
        .into_iter()
        .map(|config| {
            let origin = Origin::lapi(&config.name).map_err(|e| e.to_string())?;
            let timeout = Duration::from_secs(60);
            let agent = match &config.ca {
                Some(ca) => crate::http::agent_trusting(timeout, ca)
                    .map_err(|e| format!("{}: {e}", config.name))?,
                None => crate::http::agent(timeout),
            };
            let index = super::source::register(
                status,
                SourceStatus {
                    name: config.name.clone(),
                    kind: "lapi".into(),
                    from: config.url.clone(),
                    ..SourceStatus::default()
                },
            );
            Ok(Box::new(LapiTask {
                origin,
                config,
                agent,
                sink: sink.clone(),
                started: false,
                status: status.clone(),
                index,
            }) as Box<dyn Task>)
        })
        .collect()
}

impl<S> LapiTask<S> {
    fn report(&self, f: impl FnOnce(&mut SourceStatus)) {
        super::source::report(&self.status, self.index, f);
    }
}

impl<S: Sink> Task for LapiTask<S> {
    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn run(&mut self) {
        let src = &self.config;
        let delta = match pull(&self.agent, &src.url, &src.api_key, !self.started) {
            Ok(d) => d,
            Err(e) => {
                warn!(lapi = %src.name, error = %e, "LAPI pull failed; keeping current decisions.");
                self.report(|s| s.last_error = Some(e));
                return;
            }
        };
        let startup = !self.started;
        self.started = true;
        // Values unban first, so a value deleted and re-added in one pull stays.
        for value in &delta.deleted {
            if let Err(e) = self.sink.unban(*value, self.origin.clone()) {
                warn!(lapi = %src.name, %value, error = %e, "Cannot remove a LAPI decision.");
            }
        }
        if !delta.new.is_empty() {
            let batch: Vec<NewDecision> = delta
                .new
                .iter()
                .map(|(value, ms, scenario)| NewDecision {
                    value: *value,
                    origin: self.origin.clone(),
                    reason: scenario.clone(),
                    duration_ms: *ms,
                })
                .collect();
            if let Err(e) = self.sink.ban(batch) {
                warn!(lapi = %src.name, error = %e, "Some LAPI decisions were refused.");
            }
        }
        info!(lapi = %src.name, new = delta.new.len(), deleted = delta.deleted.len(), "Pulled LAPI decisions.");
        let (new, deleted) = (delta.new.len() as u64, delta.deleted.len() as u64);
        self.report(|s| {
            // Decisions pulled and standing, as far as the deltas tell.
            s.entries = if startup {
                new
            } else {
                (s.entries + new).saturating_sub(deleted)
            };
            s.last_success_ms = Some(crate::calendar::now_ms());
            s.last_error = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("3h59m58.123s"), Some(14_398_123));
        assert_eq!(parse_go_duration("-1h2m"), Some(-3_720_000));
        assert_eq!(parse_go_duration("300ms"), Some(300));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("4x"), None);
        assert_eq!(parse_go_duration(""), Some(0));
    }

    #[test]
    fn quirks_of_real_lapis() {
        // Shapes from CrowdSec's documentation and from LAPIs in the field.
        let text = r#"{
          "new": [
            {"duration":"3h59m55.756182786s","id":1,"origin":"CAPI","scenario":"crowdsecurity/ssh-bf","scope":"Ip","type":"ban","value":"1.2.3.4"},
            {"duration":"23h59m","id":2,"origin":"cscli","scenario":"manual","scope":"ip","type":"ban","value":"5.6.7.8/32"},
            {"duration":"1h","id":3,"origin":"lists","scenario":"firehol","scope":"Range","type":"ban","value":"9.9.0.0/16"},
            {"duration":"1h","id":4,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"simulation:ban","value":"4.4.4.4"},
            {"duration":"1h","id":5,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"ban","value":"2001:db8::1"},
            {"duration":"-5m","id":6,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"ban","value":"8.8.4.4"}
          ],
          "deleted": [
            {"duration":"-3h58m","id":9,"origin":"CAPI","scenario":"x","scope":"Ip","type":"ban","value":"7.7.7.7"}
          ]
        }"#;
        let d = parse_stream(text).unwrap();
        let new: Vec<String> = d.new.iter().map(|(p, _, _)| p.to_string()).collect();
        assert_eq!(new, ["1.2.3.4", "5.6.7.8", "9.9.0.0/16", "2001:db8::1"]);
        assert_eq!(d.deleted[0].to_string(), "7.7.7.7");
        assert_eq!(d.skipped["not a ban (simulation or captcha)"], 1);
        assert_eq!(d.skipped["already expired"], 1);
        let empty = parse_stream(r#"{"new":null,"deleted":null}"#).unwrap();
        assert_eq!(empty, Delta::default());
        assert!(parse_stream("[]").is_err());
        assert!(parse_stream("<html>").is_err());
    }
}
