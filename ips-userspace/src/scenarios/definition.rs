//! Scenario definitions: the TOML format (CrowdSec's field names where the idea is the same)
//! and its validation into [`Scenario`], the form the engine runs.
use std::{collections::BTreeMap, time::Duration};

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

use super::request::Request;
use crate::parsers::{Event, Kind, Service};

/// The built-in scenarios, shipped as data files: SSH and port scans, then the web.
pub const BUILTIN: [&str; 2] = [
    include_str!("../../scenarios/builtin.toml"),
    include_str!("../../scenarios/web.toml"),
];

/// A scenario file: `[[scenario]]` tables, and `[[signature]]` tables that name the scenario
/// they belong to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    scenario: Vec<Raw>,
    #[serde(default)]
    signature: Vec<RawSignature>,
}

/// One `[[signature]]`: a known attack recognised by a regex on one field of a request. A
/// scenario with signatures matches an event when its filter does and one of them does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    /// Short name, shown in the alert's `signature` label.
    name: String,
    /// The scenario it belongs to.
    scenario: String,
    /// A CVE or other reference.
    reference: String,
    /// `uri` (decoded path and query), `path`, `query` or `user_agent`.
    #[serde(default = "uri")]
    field: String,
    /// The regex (case-insensitive).
    regex: String,
}

fn uri() -> String {
    "uri".into()
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

/// Which events a scenario looks at. Every field given must match; within a list, any entry.
/// Regexes are case-insensitive and see the request percent-decoded (twice when the first pass
/// leaves escapes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `ssh`, `http`, `firewall`.
    #[serde(default)]
    pub service: Option<String>,
    /// Event kinds (any of).
    #[serde(default)]
    pub kind: Vec<String>,
    /// HTTP statuses (any of): numbers, or ranges as `"400-499"`.
    #[serde(default)]
    pub status: Vec<Status>,
    /// HTTP methods (any of).
    #[serde(default)]
    pub method: Vec<String>,
    /// Substrings of the HTTP target as logged, path and query (any of; case-insensitive).
    #[serde(default)]
    pub path_contains: Vec<String>,
    /// The path (before `?`) ends with one of these (case-insensitive): `[".php"]`.
    #[serde(default)]
    pub path_suffix: Vec<String>,
    /// Skip static assets: images, style sheets, scripts, fonts, the favicon.
    #[serde(default)]
    pub ignore_static: bool,
    /// Regexes on the decoded path (any of).
    #[serde(default)]
    pub path_regex: Vec<String>,
    /// Regexes on the decoded query (any of).
    #[serde(default)]
    pub query_regex: Vec<String>,
    /// Regexes on the decoded path and query (any of).
    #[serde(default)]
    pub uri_regex: Vec<String>,
    /// Substrings of the user agent (any of; case-insensitive).
    #[serde(default)]
    pub user_agent_contains: Vec<String>,
    /// Regexes on the user agent (any of).
    #[serde(default)]
    pub user_agent_regex: Vec<String>,
    /// Skip events whose user agent holds one of these (case-insensitive).
    #[serde(default)]
    pub user_agent_not_contains: Vec<String>,
    /// Only requests whose request line is malformed (`true`) or well formed (`false`).
    #[serde(default)]
    pub malformed: Option<bool>,
    /// Only proxy requests (`true`: an absolute URL, or CONNECT), or only others (`false`).
    #[serde(default)]
    pub proxy: Option<bool>,
    /// Target ports (any of).
    #[serde(default)]
    pub port: Vec<u16>,
}

/// An HTTP status or a range of them, as written in a filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Status {
    /// One status.
    One(u16),
    /// `"400-499"`.
    Range(String),
}

impl Status {
    /// The inclusive range.
    fn range(&self) -> Result<(u16, u16), String> {
        match self {
            Self::One(s) => Ok((*s, *s)),
            Self::Range(r) => {
                let bad =
                    || format!("status {r:?}: expected a number or a range such as \"400-499\"");
                let (lo, hi) = r.split_once('-').ok_or_else(bad)?;
                let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
                let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(bad());
                }
                Ok((lo, hi))
            }
        }
    }
}

/// The request field a regex looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Decoded path and query.
    Uri,
    /// Decoded path.
    Path,
    /// Decoded query.
    Query,
    /// User agent.
    UserAgent,
}

impl Field {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uri" => Self::Uri,
            "path" => Self::Path,
            "query" => Self::Query,
            "user_agent" => Self::UserAgent,
            _ => return None,
        })
    }

    fn of<'r>(self, e: &Event<'r>, r: &'r Request<'_>) -> Option<&'r str> {
        match self {
            Self::Uri => e.path.map(|_| r.decoded_uri()),
            Self::Path => e.path.map(|_| r.decoded_path()),
            Self::Query => e.path.map(|_| r.decoded_query()),
            Self::UserAgent => e.user_agent,
        }
    }
}

/// A known attack, from a `[[signature]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Short name.
    pub name: String,
    /// CVE or other reference.
    pub reference: String,
    /// The field its regex looks at.
    pub field: Field,
    /// The regex.
    pub regex: String,
}

/// Regexes on one field, any of which may match.
#[derive(Clone, Debug)]
struct Patterns {
    field: Field,
    set: regex::RegexSet,
}

impl Patterns {
    fn new(name: &str, field: Field, regexes: &[String]) -> Result<Option<Self>, ScenarioError> {
        if regexes.is_empty() {
            return Ok(None);
        }
        regex::RegexSetBuilder::new(regexes)
            .case_insensitive(true)
            .size_limit(64 << 20)
            .build()
            .map(|set| Some(Self { field, set }))
            .map_err(|e| ScenarioError::Invalid {
                name: name.to_owned(),
                message: format!("regex: {e}"),
            })
    }

    fn is_match(&self, e: &Event<'_>, r: &Request<'_>) -> bool {
        self.field.of(e, r).is_some_and(|h| self.set.is_match(h))
    }
}

/// Every scenario's `uri` signatures in one set, so that a request target is scanned once for
/// all of them.
#[derive(Clone, Debug)]
pub struct UriSignatures {
    set: Option<regex::RegexSet>,
    /// Per pattern of `set`: (scenario index, signature index).
    owners: Vec<(usize, usize)>,
}

impl UriSignatures {
    /// The set of `scenarios`' `uri` signatures (their regexes compiled before, so they build).
    pub fn new(scenarios: &[Scenario]) -> Self {
        let mut owners = Vec::new();
        let mut regexes = Vec::new();
        for (i, s) in scenarios.iter().enumerate() {
            for (n, sig) in s.signatures.iter().enumerate() {
                if sig.field == Field::Uri {
                    owners.push((i, n));
                    regexes.push(sig.regex.as_str());
                }
            }
        }
        let set = (!regexes.is_empty())
            .then(|| {
                regex::RegexSetBuilder::new(regexes)
                    .case_insensitive(true)
                    .size_limit(256 << 20)
                    .build()
                    .ok()
            })
            .flatten();
        if set.is_none() {
            owners.clear();
        }
        Self { set, owners }
    }

    /// True if the set was built (else each scenario scans its own).
    pub fn built(&self) -> bool {
        self.set.is_some()
    }

    /// The (scenario, signature) pairs whose regex matches `r`'s decoded target.
    pub fn hits(&self, r: &Request<'_>) -> Vec<(usize, usize)> {
        match &self.set {
            Some(set) if set.is_match(r.decoded_uri()) => set
                .matches(r.decoded_uri())
                .iter()
                .filter_map(|i| self.owners.get(i).copied())
                .collect(),
            _ => Vec::new(),
        }
    }
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
    /// The source and the HTTP path (before `?`): one login form hammered.
    SourcePath,
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
    /// HTTP queries (after `?`).
    Query,
    /// User agents.
    UserAgent,
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
    methods: Vec<String>,
    status_ranges: Vec<(u16, u16)>,
    path_contains: Option<Needles>,
    path_suffix: Vec<String>,
    ignore_static: bool,
    malformed: Option<bool>,
    proxy: Option<bool>,
    regexes: Vec<Patterns>,
    /// The path regexes as written (to add login paths to).
    path_regex: Vec<String>,
    user_agent_contains: Option<Needles>,
    user_agent_not_contains: Option<Needles>,
    /// Signatures, and per field the set of their regexes with the signature of each.
    pub signatures: Vec<Signature>,
    signature_sets: Vec<(Patterns, Vec<usize>)>,
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
    /// A hash of the definition as written (and of the login paths added to it): a reload
    /// keeps the buckets of a scenario whose name and fingerprint did not change.
    pub fingerprint: u64,
}

/// A stable hash of anything `Debug` (the std hasher with its fixed keys).
fn fingerprint(of: &dyn std::fmt::Debug) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    format!("{of:?}").hash(&mut h);
    h.finish()
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

/// What the user-agent part of a filter said of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserAgentVerdict {
    /// The agent passes the filter's agent conditions.
    pub pass: bool,
    /// A signature on the agent matched (an index into [`Scenario::signatures`]).
    pub signature: Option<usize>,
}

/// What the target part of a filter said of a request target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetVerdict {
    /// The target passes the filter's path, query and suffix conditions.
    pub pass: bool,
    /// A signature on the target matched (an index into [`Scenario::signatures`]).
    pub signature: Option<usize>,
}

/// What a filter said of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// It does not pass.
    No,
    /// It passes.
    Yes,
    /// It passes by this signature (an index into [`Scenario::signatures`]).
    Signature(usize),
}

impl Scenario {
    /// True if the event passes the filter (`r` is the event's request view).
    pub fn matches(&self, e: &Event<'_>, r: &Request<'_>) -> Match {
        self.matches_with(
            e,
            r,
            self.user_agent_verdict(r.lower_user_agent()),
            &mut |s| s.target_verdict(e, r, None),
        )
    }

    /// What the user-agent part of the filter says of `lower` (the agent in lower case, if the
    /// line has one). It depends on nothing else, so an engine computes it once per agent.
    pub fn user_agent_verdict(&self, lower: Option<&str>) -> UserAgentVerdict {
        let mut v = UserAgentVerdict {
            pass: true,
            signature: None,
        };
        if let Some(n) = &self.user_agent_contains {
            v.pass &= lower.is_some_and(|u| n.is_match(u));
        }
        if let Some(n) = &self.user_agent_not_contains {
            v.pass &= !lower.is_some_and(|u| n.is_match(u));
        }
        for p in self.regexes.iter().filter(|p| p.field == Field::UserAgent) {
            v.pass &= lower.is_some_and(|u| p.set.is_match(u));
        }
        if v.pass
            && let Some(u) = lower
        {
            for (p, of) in self
                .signature_sets
                .iter()
                .filter(|(p, _)| p.field == Field::UserAgent)
            {
                if p.set.is_match(u)
                    && let Some(i) = p.set.matches(u).iter().next()
                {
                    v.signature = Some(of[i]);
                    break;
                }
            }
        }
        v
    }

    /// [`Scenario::matches`] with the user-agent part given (see
    /// [`Scenario::user_agent_verdict`]); `target` computes the part that depends on the
    /// request target only (see [`Scenario::target_verdict`]), which an engine may cache.
    pub fn matches_with(
        &self,
        e: &Event<'_>,
        r: &Request<'_>,
        ua: UserAgentVerdict,
        target: &mut dyn FnMut(&Self) -> TargetVerdict,
    ) -> Match {
        if self.service.is_some_and(|s| s != e.service) || !ua.pass {
            return Match::No;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return Match::No;
        }
        if !self.status_ranges.is_empty()
            && !e.status.is_some_and(|s| {
                self.status_ranges
                    .iter()
                    .any(|(lo, hi)| (*lo..=*hi).contains(&s))
            })
        {
            return Match::No;
        }
        if !self.ports.is_empty() && !e.port.is_some_and(|p| self.ports.contains(&p)) {
            return Match::No;
        }
        if !self.methods.is_empty()
            && !e
                .method
                .is_some_and(|m| self.methods.iter().any(|x| x.eq_ignore_ascii_case(m)))
        {
            return Match::No;
        }
        if let Some(want) = self.malformed
            && (e.service != Service::Http || r.is_malformed() != want)
        {
            return Match::No;
        }
        if let Some(want) = self.proxy
            && (e.service != Service::Http || r.is_proxy() != want)
        {
            return Match::No;
        }
        if !self.looks_at_target() {
            return if self.signature_sets.is_empty() {
                Match::Yes
            } else {
                ua.signature.map_or(Match::No, Match::Signature)
            };
        }
        let t = target(self);
        if !t.pass {
            return Match::No;
        }
        if self.signature_sets.is_empty() {
            return Match::Yes;
        }
        t.signature
            .or(ua.signature)
            .map_or(Match::No, Match::Signature)
    }

    /// True if the filter looks at the request target (path, query).
    fn looks_at_target(&self) -> bool {
        self.ignore_static
            || !self.path_suffix.is_empty()
            || self.path_contains.is_some()
            || self.regexes.iter().any(|p| p.field != Field::UserAgent)
            || self
                .signature_sets
                .iter()
                .any(|(p, _)| p.field != Field::UserAgent)
    }

    /// What the parts of the filter that look at the request target say of `e`'s. `shared` is
    /// this scenario's index and the target's hits in [`UriSignatures`] (all scenarios' `uri`
    /// signatures scanned once), used instead of this scenario's own `uri` signature set.
    pub fn target_verdict(
        &self,
        e: &Event<'_>,
        r: &Request<'_>,
        shared: Option<(usize, &[(usize, usize)])>,
    ) -> TargetVerdict {
        let no = TargetVerdict {
            pass: false,
            signature: None,
        };
        if self.ignore_static && r.is_static() {
            return no;
        }
        if !self.path_suffix.is_empty()
            && (e.path.is_none() || !r.path_ends_with(&self.path_suffix))
        {
            return no;
        }
        if let Some(n) = &self.path_contains
            && !(e.path.is_some() && n.is_match(r.lower_target()))
        {
            return no;
        }
        if !self
            .regexes
            .iter()
            .filter(|p| p.field != Field::UserAgent)
            .all(|p| p.is_match(e, r))
        {
            return no;
        }
        let mut signature = shared.and_then(|(me, hits)| {
            hits.iter()
                .find(|(scenario, _)| *scenario == me)
                .map(|(_, sig)| *sig)
        });
        let own = |f: Field| f != Field::UserAgent && !(shared.is_some() && f == Field::Uri);
        for (p, of) in self.signature_sets.iter().filter(|(p, _)| own(p.field)) {
            if signature.is_some() {
                break;
            }
            // Most requests match none: the set's own prefilter answers that, and only a match
            // pays for finding which signature it was.
            if let Some(h) = p.field.of(e, r)
                && p.set.is_match(h)
                && let Some(i) = p.set.matches(h).iter().next()
            {
                signature = Some(of[i]);
                break;
            }
        }
        TargetVerdict {
            pass: true,
            signature,
        }
    }

    /// Adds login forms (`[detection] login_paths`) to a login scenario's paths: each matches
    /// that exact path, with or without a trailing `/`.
    pub fn add_login_paths(&mut self, paths: &[String]) -> Result<(), ScenarioError> {
        if paths.is_empty() {
            return Ok(());
        }
        self.path_regex.extend(
            paths
                .iter()
                .map(|p| format!("^{}/?$", regex::escape(p.trim_end_matches('/')))),
        );
        self.regexes.retain(|p| p.field != Field::Path);
        self.regexes
            .extend(Patterns::new(&self.name, Field::Path, &self.path_regex)?);
        self.fingerprint = fingerprint(&(self.fingerprint, paths));
        Ok(())
    }

    /// True for the login brute-force scenarios (label `login = "true"`).
    pub fn is_login(&self) -> bool {
        self.labels.get("login").is_some_and(|v| v == "true")
    }

    /// Ban duration from the `ban` label, if set and valid.
    pub fn ban_duration(&self) -> Option<Duration> {
        self.labels
            .get("ban")
            .and_then(|s| crate::duration::parse(s).ok())
    }
}

/// Substrings matched case-insensitively in one pass: the needles are kept in lower case and
/// matched against lower-cased text (which lets the automaton use its vectorised prefilter).
#[derive(Clone, Debug)]
pub struct Needles(AhoCorasick);

impl Needles {
    /// True if `lower` (lower-cased text) contains a needle.
    pub fn is_match(&self, lower: &str) -> bool {
        self.0.is_match(lower)
    }
}

fn substrings(
    name: &str,
    field: &str,
    needles: &[String],
) -> Result<Option<Needles>, ScenarioError> {
    if needles.is_empty() {
        return Ok(None);
    }
    AhoCorasick::new(needles.iter().map(|n| n.to_ascii_lowercase()))
        .map(|ac| Some(Needles(ac)))
        .map_err(|e| ScenarioError::Invalid {
            name: name.to_owned(),
            message: format!("{field}: {e}"),
        })
}

/// Parses and validates a scenario file.
pub fn parse(text: &str) -> Result<Vec<Scenario>, ScenarioError> {
    let file: File = toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
    let mut out: Vec<Scenario> = Vec::new();
    for sig in &file.signature {
        if !file.scenario.iter().any(|s| s.name == sig.scenario) {
            return Err(ScenarioError::Invalid {
                name: sig.scenario.clone(),
                message: format!("signature {:?} names no scenario of this file", sig.name),
            });
        }
    }
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
            "source+path" => GroupBy::SourcePath,
            other => {
                return Err(invalid(format!(
                    "groupby {other:?}: expected source, source+user or source+path"
                )));
            }
        };
        let distinct = match r.distinct.as_deref() {
            None => None,
            Some("user") => Some(Distinct::User),
            Some("port") => Some(Distinct::Port),
            Some("path") => Some(Distinct::Path),
            Some("query") => Some(Distinct::Query),
            Some("user_agent") => Some(Distinct::UserAgent),
            Some(other) => {
                return Err(invalid(format!(
                    "distinct {other:?}: expected user, port, path, query or user_agent"
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
        let status_ranges = r
            .filter
            .status
            .iter()
            .map(Status::range)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid(format!("filter.{m}")))?;
        let mut regexes = Vec::new();
        for (field, list) in [
            (Field::Path, &r.filter.path_regex),
            (Field::Query, &r.filter.query_regex),
            (Field::Uri, &r.filter.uri_regex),
            (Field::UserAgent, &r.filter.user_agent_regex),
        ] {
            regexes.extend(Patterns::new(&r.name, field, list)?);
        }
        let mut signatures = Vec::new();
        for sig in file.signature.iter().filter(|s| s.scenario == r.name) {
            let field = Field::parse(&sig.field).ok_or_else(|| {
                invalid(format!(
                    "signature {:?}: field {:?}: expected uri, path, query or user_agent",
                    sig.name, sig.field
                ))
            })?;
            if sig.reference.trim().is_empty() {
                return Err(invalid(format!(
                    "signature {:?} needs a reference (a CVE or a URL)",
                    sig.name
                )));
            }
            signatures.push(Signature {
                name: sig.name.clone(),
                reference: sig.reference.clone(),
                field,
                regex: sig.regex.clone(),
            });
        }
        let mut signature_sets = Vec::new();
        for field in [Field::Uri, Field::Path, Field::Query, Field::UserAgent] {
            let of: Vec<usize> = (0..signatures.len())
                .filter(|i| signatures[*i].field == field)
                .collect();
            let list: Vec<String> = of.iter().map(|i| signatures[*i].regex.clone()).collect();
            if let Some(p) = Patterns::new(&r.name, field, &list)? {
                signature_sets.push((p, of));
            }
        }
        let ban = r
            .labels
            .get("ban")
            .map(|b| crate::duration::parse(b).map_err(|e| invalid(format!("labels.ban: {e}"))))
            .transpose()?;
        let fingerprint = fingerprint(&(&r, &signatures));
        out.push(Scenario {
            name: r.name.clone(),
            description: r.description.clone(),
            bucket,
            service,
            kinds,
            methods: r.filter.method.clone(),
            status_ranges,
            path_contains: substrings(&r.name, "filter.path_contains", &r.filter.path_contains)?,
            path_suffix: r
                .filter
                .path_suffix
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            ignore_static: r.filter.ignore_static,
            malformed: r.filter.malformed,
            proxy: r.filter.proxy,
            regexes,
            path_regex: r.filter.path_regex.clone(),
            user_agent_contains: substrings(
                &r.name,
                "filter.user_agent_contains",
                &r.filter.user_agent_contains,
            )?,
            user_agent_not_contains: substrings(
                &r.name,
                "filter.user_agent_not_contains",
                &r.filter.user_agent_not_contains,
            )?,
            signatures,
            signature_sets,
            ports: r.filter.port.clone(),
            groupby,
            distinct,
            capacity: r.capacity,
            leak_ms,
            blackhole_ms: dur(&r.name, "blackhole", &r.blackhole)?.unwrap_or(0),
            labels: r.labels.clone(),
            ban,
            fingerprint,
        });
    }
    Ok(out)
}

/// The built-in scenarios.
pub fn builtin() -> Vec<Scenario> {
    BUILTIN
        .iter()
        .flat_map(|text| match parse(text) {
            Ok(s) => s,
            // The files ship with the binary and a unit test parses them.
            Err(e) => unreachable!("built-in scenarios do not parse: {e}"),
        })
        .collect()
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
        let n = substrings("x", "f", &["SQLmap".into()]).unwrap().unwrap();
        assert!(n.is_match(&"Mozilla SQLMap/1.0".to_ascii_lowercase()));
        assert!(!n.is_match("curl"));
    }
}
