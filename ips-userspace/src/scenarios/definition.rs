//! Scenario definitions: the TOML format (CrowdSec's field names where the idea is the same)
//! and its validation into [`Scenario`], the form the engine runs.
use std::{collections::BTreeMap, time::Duration};

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

use crate::parsers::{Event, Kind, Service};

/// The built-in scenarios, shipped as a data file.
pub const BUILTIN: &str = include_str!("../../scenarios/builtin.toml");

/// A scenario file: `[[scenario]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    scenario: Vec<Raw>,
}

/// One `[[scenario]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "type", default = "leaky")]
    kind: String,
    #[serde(default)]
    filter: Filter,
    #[serde(default = "source")]
    groupby: String,
    #[serde(default)]
    distinct: Option<String>,
    #[serde(default)]
    capacity: u32,
    #[serde(default)]
    leakspeed: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    blackhole: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn leaky() -> String {
    "leaky".into()
}

fn source() -> String {
    "source".into()
}

/// Which events a scenario looks at. Every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `ssh`, `http`, `firewall`.
    #[serde(default)]
    pub service: Option<String>,
    /// Event kinds (any of).
    #[serde(default)]
    pub kind: Vec<String>,
    /// HTTP statuses (any of).
    #[serde(default)]
    pub status: Vec<u16>,
    /// Substrings of the HTTP path (any of; case-insensitive).
    #[serde(default)]
    pub path_contains: Vec<String>,
    /// Substrings of the user agent (any of; case-insensitive).
    #[serde(default)]
    pub user_agent_contains: Vec<String>,
    /// Target ports (any of).
    #[serde(default)]
    pub port: Vec<u16>,
}

/// The bucket type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketType {
    /// Overflows when it would hold more than `capacity`; leaks one event per `leakspeed`.
    Leaky,
    /// Overflows on the first matching event.
    Trigger,
    /// Counts for `duration`, then alerts if the count passed `capacity`.
    Counter,
}

/// What a bucket is keyed by besides the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The source address (IPv6 by /64).
    Source,
    /// The source and the user name.
    SourceUser,
}

/// The event field whose distinct values are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distinct {
    /// User names.
    User,
    /// Ports.
    Port,
    /// HTTP paths.
    Path,
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name, e.g. `ssh-bf`.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Bucket type.
    pub bucket: BucketType,
    /// Event filter.
    service: Option<Service>,
    kinds: Vec<Kind>,
    status: Vec<u16>,
    path_contains: Option<AhoCorasick>,
    user_agent_contains: Option<AhoCorasick>,
    ports: Vec<u16>,
    /// Grouping.
    pub groupby: GroupBy,
    /// Distinct field.
    pub distinct: Option<Distinct>,
    /// Capacity.
    pub capacity: u32,
    /// Time for one event to leak (leaky) or the window (counter), in ms.
    pub leak_ms: i64,
    /// Silence after an overflow, in ms.
    pub blackhole_ms: i64,
    /// Free labels, copied to alerts.
    pub labels: BTreeMap<String, String>,
    /// The ban duration from the `ban` label, parsed at load; the profile's default if none.
    pub ban: Option<std::time::Duration>,
}

/// A scenario file that does not validate.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, or unknown keys.
    #[error("scenario file: {0}")]
    Toml(String),
    /// A field has a bad value.
    #[error("scenario {name:?}: {message}")]
    Invalid {
        /// Scenario name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

fn dur(name: &str, field: &str, v: &Option<String>) -> Result<Option<i64>, ScenarioError> {
    v.as_deref()
        .map(|s| {
            crate::duration::parse(s)
                .map(|d| d.as_millis() as i64)
                .map_err(|e| ScenarioError::Invalid {
                    name: name.to_owned(),
                    message: format!("{field}: {e}"),
                })
        })
        .transpose()
}

impl Scenario {
    /// True if the event passes the filter.
    pub fn matches(&self, e: &Event<'_>) -> bool {
        if self.service.is_some_and(|s| s != e.service) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return false;
        }
        if !self.status.is_empty() && !e.status.is_some_and(|s| self.status.contains(&s)) {
            return false;
        }
        if !self.ports.is_empty() && !e.port.is_some_and(|p| self.ports.contains(&p)) {
            return false;
        }
        if let Some(ac) = &self.path_contains
            && !e.path.is_some_and(|p| ac.is_match(p))
        {
            return false;
        }
        if let Some(ac) = &self.user_agent_contains
            && !e.user_agent.is_some_and(|u| ac.is_match(u))
        {
            return false;
        }
        true
    }

    /// Ban duration from the `ban` label, if set and valid.
    pub fn ban_duration(&self) -> Option<Duration> {
        self.labels
            .get("ban")
            .and_then(|s| crate::duration::parse(s).ok())
    }
}

/// One automaton for a list of substrings, matched case-insensitively in a single pass.
fn substrings(
    name: &str,
    field: &str,
    needles: &[String],
) -> Result<Option<AhoCorasick>, ScenarioError> {
    if needles.is_empty() {
        return Ok(None);
    }
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(needles)
        .map(Some)
        .map_err(|e| ScenarioError::Invalid {
            name: name.to_owned(),
            message: format!("{field}: {e}"),
        })
}

/// Parses and validates a scenario file.
pub fn parse(text: &str) -> Result<Vec<Scenario>, ScenarioError> {
    let file: File = toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
    let mut out: Vec<Scenario> = Vec::new();
    for r in file.scenario {
        let invalid = |message: String| ScenarioError::Invalid {
            name: r.name.clone(),
            message,
        };
        if r.name.is_empty() || out.iter().any(|s| s.name == r.name) {
            return Err(invalid("empty or duplicate name".into()));
        }
        let bucket = match r.kind.as_str() {
            "leaky" => BucketType::Leaky,
            "trigger" => BucketType::Trigger,
            "counter" => BucketType::Counter,
            other => {
                return Err(invalid(format!(
                    "type {other:?}: expected leaky, trigger or counter"
                )));
            }
        };
        let service = match r.filter.service.as_deref() {
            None => None,
            Some("ssh") => Some(Service::Ssh),
            Some("http") => Some(Service::Http),
            Some("firewall") => Some(Service::Firewall),
            Some(other) => {
                return Err(invalid(format!(
                    "filter.service {other:?}: expected ssh, http or firewall"
                )));
            }
        };
        let kinds = r
            .filter
            .kind
            .iter()
            .map(|k| {
                Kind::ALL
                    .into_iter()
                    .find(|x| x.name() == k)
                    .ok_or_else(|| invalid(format!("filter.kind {k:?} is not an event kind")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let groupby = match r.groupby.as_str() {
            "source" => GroupBy::Source,
            "source+user" => GroupBy::SourceUser,
            other => {
                return Err(invalid(format!(
                    "groupby {other:?}: expected source or source+user"
                )));
            }
        };
        let distinct = match r.distinct.as_deref() {
            None => None,
            Some("user") => Some(Distinct::User),
            Some("port") => Some(Distinct::Port),
            Some("path") => Some(Distinct::Path),
            Some(other) => {
                return Err(invalid(format!(
                    "distinct {other:?}: expected user, port or path"
                )));
            }
        };
        let leak = dur(&r.name, "leakspeed", &r.leakspeed)?;
        let window = dur(&r.name, "duration", &r.duration)?;
        let leak_ms = match bucket {
            BucketType::Leaky => leak
                .filter(|l| *l > 0)
                .ok_or_else(|| invalid("a leaky bucket needs a leakspeed above 0".into()))?,
            BucketType::Counter => window
                .filter(|l| *l > 0)
                .ok_or_else(|| invalid("a counter needs a duration above 0".into()))?,
            BucketType::Trigger => 0,
        };
        if bucket == BucketType::Leaky && r.capacity == 0 {
            return Err(invalid(
                "a leaky bucket needs a capacity above 0 (use type = \"trigger\")".into(),
            ));
        }
        let ban = r
            .labels
            .get("ban")
            .map(|b| crate::duration::parse(b).map_err(|e| invalid(format!("labels.ban: {e}"))))
            .transpose()?;
        out.push(Scenario {
            name: r.name.clone(),
            description: r.description.clone(),
            bucket,
            service,
            kinds,
            status: r.filter.status.clone(),
            path_contains: substrings(&r.name, "filter.path_contains", &r.filter.path_contains)?,
            user_agent_contains: substrings(
                &r.name,
                "filter.user_agent_contains",
                &r.filter.user_agent_contains,
            )?,
            ports: r.filter.port.clone(),
            groupby,
            distinct,
            capacity: r.capacity,
            leak_ms,
            blackhole_ms: dur(&r.name, "blackhole", &r.blackhole)?.unwrap_or(0),
            labels: r.labels.clone(),
            ban,
        });
    }
    Ok(out)
}

/// The built-in scenarios.
pub fn builtin() -> Vec<Scenario> {
    match parse(BUILTIN) {
        Ok(s) => s,
        // The file ships with the binary and a unit test parses it.
        Err(e) => unreachable!("built-in scenarios do not parse: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        let all = builtin();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "ssh-bf",
            "ssh-slow-bf",
            "ssh-user-enum",
            "http-probing",
            "http-sensitive-files",
            "http-bad-user-agent",
            "http-crawl",
            "http-admin-interface-probing",
            "port-scan",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
    }

    #[test]
    fn errors_name_the_scenario_and_field() {
        let e = parse("[[scenario]]\nname = \"x\"\ntype = \"leaky\"\ncapacity = 1\n").unwrap_err();
        assert!(e.to_string().contains("leakspeed"), "{e}");
        let e = parse("[[scenario]]\nname = \"x\"\ntype = \"bucket\"\n").unwrap_err();
        assert!(e.to_string().contains("bucket"), "{e}");
        let e = parse(
            "[[scenario]]\nname = \"x\"\ntype = \"trigger\"\nfilter = { kind = [\"nope\"] }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = parse("[[scenario]]\nname = \"x\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn case_insensitive_contains() {
        let ac = substrings("x", "f", &["sqlmap".into()]).unwrap().unwrap();
        assert!(ac.is_match("Mozilla SQLMap/1.0"));
        assert!(!ac.is_match("curl"));
    }
}
