//! The CrowdSec LAPI bouncer endpoints, so that existing CrowdSec bouncers (nginx, firewall,
//! cloudflare) enforce `ips` decisions:
//!
//! - `GET /v1/decisions/stream?startup=true|false`: `{"new":[..],"deleted":[..]}` since the
//!   bouncer's last pull (everything active on startup);
//! - `GET /v1/decisions?ip=A` (or `?value=`): the decisions covering an address;
//!
//! both authenticated by `X-Api-Key` (keys from `ips bouncers add`, stored as SHA-256), 403
//! otherwise. Empty lists are `null`, as CrowdSec sends them.
//!
//! As CrowdSec's LAPI does: one decision per value (the one that lasts longest), a value in
//! `deleted` only when no active decision bans it any more, and the filters `scopes`,
//! `origins`, `scenarios_containing` and `scenarios_not_containing` (comma-separated) on both.
use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::{
    calendar::now_ms,
    decisions::{Decision, Origin, StreamDelta, Tombstone},
    prefix::Prefix,
    service::Handle,
};

/// A decision as CrowdSec's LAPI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LapiDecision {
    /// Id.
    pub id: i64,
    /// `crowdsec` (detection), `cscli` (manual), `lists` (blocklists), `CAPI`.
    pub origin: String,
    /// `ban`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Ip` or `Range`.
    pub scope: String,
    /// Address or CIDR.
    pub value: String,
    /// Time left, Go style (`3h59m58s`); `0s` on deleted entries.
    pub duration: String,
    /// Scenario or reason.
    pub scenario: String,
}

/// The stream answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// Decisions to add.
    pub new: Option<Vec<LapiDecision>>,
    /// Decisions to remove.
    pub deleted: Option<Vec<LapiDecision>>,
}

/// A stored decision in LAPI shape, with the time left at `now_ms`.
pub fn from_decision(d: &Decision, now_ms: i64) -> LapiDecision {
    let left = std::time::Duration::from_millis((d.expires_ms - now_ms).max(0) as u64);
    LapiDecision {
        id: d.id,
        origin: d.origin.crowdsec_name(),
        kind: d.kind.clone(),
        scope: d.scope.clone(),
        value: d.value.to_string(),
        duration: crate::duration::format(left),
        scenario: scenario_of(&d.origin, &d.reason),
    }
}

fn from_tombstone(t: &Tombstone) -> LapiDecision {
    LapiDecision {
        id: t.id,
        origin: t.origin.crowdsec_name(),
        kind: t.kind.clone(),
        scope: t.value.scope().to_owned(),
        value: t.value.to_string(),
        duration: "0s".into(),
        scenario: scenario_of(&t.origin, &t.reason),
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// SHA-256 of an API key, hex.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random API key (32 bytes from the kernel, hex).
pub fn new_key() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "message": "access forbidden" })),
    )
        .into_response()
}

async fn bouncer(h: &Handle, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    Ok(key_of(h, headers).await?.map(|b| b.name))
}

/// The key a request carries, in `X-Api-Key` (CrowdSec's bouncers) or as an `Authorization:
/// Bearer` token, if it is a registered one.
pub async fn key_of(
    h: &Handle,
    headers: &HeaderMap,
) -> Result<Option<crate::decisions::Bouncer>, ApiError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(h.bouncer_by_key(key_hash(key.trim())).await?)
}

/// `?startup=` and the filters.
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    startup: Option<String>,
    #[serde(flatten)]
    filter: FilterQuery,
}

/// The filters CrowdSec's bouncers send, comma-separated.
#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    scopes: Option<String>,
    #[serde(default)]
    origins: Option<String>,
    #[serde(default)]
    scenarios_containing: Option<String>,
    #[serde(default)]
    scenarios_not_containing: Option<String>,
}

/// Which decisions a bouncer asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    scopes: Vec<String>,
    origins: Vec<String>,
    containing: Vec<String>,
    not_containing: Vec<String>,
}

fn list(s: Option<&String>, lower: bool) -> Vec<String> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| {
                if lower {
                    x.to_lowercase()
                } else {
                    x.to_owned()
                }
            })
            .collect()
    })
    .unwrap_or_default()
}

impl From<&FilterQuery> for Filter {
    fn from(q: &FilterQuery) -> Self {
        Self {
            scopes: list(q.scopes.as_ref(), true),
            origins: list(q.origins.as_ref(), false),
            containing: list(q.scenarios_containing.as_ref(), false),
            not_containing: list(q.scenarios_not_containing.as_ref(), false),
        }
    }
}

impl Filter {
    /// True if a decision with this scope, origin and scenario is asked for. An origin matches
    /// by its CrowdSec name (`cscli`, `crowdsec`, `lists`) or its own (`list:firehol`).
    fn wants(&self, scope: &str, origin: &Origin, scenario: &str) -> bool {
        (self.scopes.is_empty() || self.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope)))
            && (self.origins.is_empty()
                || self
                    .origins
                    .iter()
                    .any(|o| *o == origin.crowdsec_name() || *o == origin.to_string()))
            && (self.containing.is_empty() || self.containing.iter().any(|c| scenario.contains(c)))
            && !self.not_containing.iter().any(|c| scenario.contains(c))
    }

    fn wants_decision(&self, d: &Decision) -> bool {
        self.wants(&d.scope, &d.origin, &scenario_of(&d.origin, &d.reason))
    }
}

/// The scenario a decision shows: the list for list entries, else its reason.
fn scenario_of(origin: &Origin, reason: &str) -> String {
    if let Origin::List(_) = origin {
        origin.to_string()
    } else {
        reason.to_owned()
    }
}

/// One item per value, the one `later_than` prefers, in the order the values first come
/// (rows as decided, then list entries, as the store gives them).
fn one_per_value<'a, T>(
    items: impl Iterator<Item = &'a T>,
    value: impl Fn(&T) -> Prefix,
    later_than: impl Fn(&T, &T) -> bool,
) -> Vec<&'a T> {
    let mut order: Vec<Prefix> = Vec::new();
    let mut best: std::collections::HashMap<Prefix, &T> = std::collections::HashMap::new();
    for item in items {
        match best.entry(value(item)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if later_than(item, e.get()) {
                    e.insert(item);
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                order.push(value(item));
                e.insert(item);
            }
        }
    }
    order.iter().filter_map(|v| best.get(v).copied()).collect()
}

/// Of `decisions`, those `filter` wants, one per value: the one that lasts longest.
fn longest_per_value<'a>(decisions: &'a [Decision], filter: &Filter) -> Vec<&'a Decision> {
    one_per_value(
        decisions.iter().filter(|d| filter.wants_decision(d)),
        |d| d.value,
        |a, b| a.expires_ms > b.expires_ms,
    )
}

/// The stream answer for a pull: new decisions one per value, and a delete for each removed
/// value that nothing the bouncer asked for still bans.
pub fn answer(delta: &StreamDelta, filter: &Filter, now_ms: i64) -> Stream {
    // A shared startup set may be a moment old: what ended since is not sent.
    let new: Vec<LapiDecision> = longest_per_value(&delta.active, filter)
        .into_iter()
        .filter(|d| d.expires_ms > now_ms)
        .map(|d| from_decision(d, now_ms))
        .collect();
    let banned: std::collections::BTreeSet<Prefix> = longest_per_value(&delta.still_active, filter)
        .into_iter()
        .map(|d| d.value)
        .collect();
    // The latest removal of each value nothing asked-for still bans.
    let gone = one_per_value(
        delta.deleted.iter().filter(|t| {
            !banned.contains(&t.value)
                && filter.wants(
                    t.value.scope(),
                    &t.origin,
                    &scenario_of(&t.origin, &t.reason),
                )
        }),
        |t| t.value,
        |a, b| a.deleted_ms > b.deleted_ms,
    );
    Stream {
        new: non_empty(new),
        deleted: non_empty(gone.into_iter().map(from_tombstone).collect()),
    }
}

/// `GET /v1/decisions/stream`.
pub async fn stream(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let Some(name) = bouncer(&h, &headers).await? else {
        return Ok(forbidden());
    };
    let startup = q.startup.as_deref() == Some("true");
    let delta = h.stream(name, startup).await?;
    let filter = Filter::from(&q.filter);
    if !startup || filter != Filter::default() {
        return Ok(Json(answer(&delta, &filter, now_ms())).into_response());
    }
    // The whole set, unfiltered: what every bouncer and agent starting together asks for. Its
    // JSON is made once per snapshot and second (the durations in it count down).
    let body = {
        let mut cached = STARTUP_ANSWER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cached {
            Some((set, made, body))
                if std::sync::Arc::ptr_eq(set, &delta.active)
                    && made.elapsed() < std::time::Duration::from_secs(1) =>
            {
                body.clone()
            }
            _ => {
                let body = axum::body::Bytes::from(
                    serde_json::to_vec(&answer(&delta, &filter, now_ms()))
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                );
                *cached = Some((
                    delta.active.clone(),
                    std::time::Instant::now(),
                    body.clone(),
                ));
                body
            }
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The last unfiltered answer to a pull of a whole snapshot: the snapshot, when it was made,
/// and its JSON.
type StartupAnswer = Option<(
    std::sync::Arc<Vec<Decision>>,
    std::time::Instant,
    axum::body::Bytes,
)>;

static STARTUP_ANSWER: std::sync::Mutex<StartupAnswer> = std::sync::Mutex::new(None);

/// `?ip=` / `?value=`.
#[derive(Debug, Default, Deserialize)]
pub struct DecisionsQuery {
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    range: Option<String>,
    #[serde(flatten)]
    filter: FilterQuery,
}

/// `GET /v1/decisions`.
pub async fn decisions(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<DecisionsQuery>,
) -> Result<Response, ApiError> {
    if bouncer(&h, &headers).await?.is_none() {
        return Ok(forbidden());
    }
    // Without a filter, every active decision, as CrowdSec answers.
    let found = match q.ip.or(q.value).or(q.range) {
        Some(v) => {
            let p: crate::prefix::Prefix = v
                .parse()
                .map_err(|e: crate::prefix::PrefixError| ApiError::bad_request(e.to_string()))?;
            h.covering(p).await?
        }
        None => h.decisions(None).await?,
    };
    let now = now_ms();
    let list: Vec<LapiDecision> = longest_per_value(&found, &Filter::from(&q.filter))
        .into_iter()
        .map(|d| from_decision(d, now))
        .collect();
    Ok(Json(non_empty(list)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_crowdsec() {
        let d = Decision {
            id: 7,
            value: "1.2.3.4".parse().unwrap(),
            scope: "Ip".into(),
            kind: "ban".into(),
            origin: Origin::Detection,
            reason: "ssh-bf".into(),
            created_ms: 0,
            expires_ms: 3_600_000,
        };
        let j = serde_json::to_value(from_decision(&d, 1000)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"id":7,"origin":"crowdsec","type":"ban","scope":"Ip","value":"1.2.3.4","duration":"0h59m59s","scenario":"ssh-bf"})
        );
        let empty = serde_json::to_string(&Stream {
            new: None,
            deleted: None,
        })
        .unwrap();
        assert_eq!(empty, r#"{"new":null,"deleted":null}"#);
        assert_eq!(key_hash("abc").len(), 64);
        assert_ne!(new_key().unwrap(), new_key().unwrap());
    }

    fn decision(id: i64, value: &str, origin: Origin, reason: &str, expires_ms: i64) -> Decision {
        let value: crate::prefix::Prefix = value.parse().unwrap();
        Decision {
            id,
            value,
            scope: value.scope().to_owned(),
            kind: "ban".into(),
            origin,
            reason: reason.into(),
            created_ms: 0,
            expires_ms,
        }
    }

    fn tombstone(id: i64, value: &str, origin: Origin, deleted_ms: i64) -> Tombstone {
        Tombstone {
            id,
            value: value.parse().unwrap(),
            origin,
            kind: "ban".into(),
            reason: "x".into(),
            deleted_ms,
        }
    }

    #[test]
    fn one_decision_per_value_and_no_delete_while_still_banned() {
        let list = Origin::List("l".into());
        let delta = StreamDelta {
            active: std::sync::Arc::new(vec![
                decision(1, "5.6.7.8", Origin::Manual, "manual", 1000),
                decision(2, "5.6.7.8", list.clone(), "list:l", 9000),
                decision(3, "2001:db8::/64", Origin::Detection, "ssh-bf", 5000),
            ]),
            deleted: vec![
                tombstone(4, "5.6.7.9", Origin::Manual, 10),
                tombstone(5, "5.6.7.9", Origin::Detection, 20),
                tombstone(6, "9.9.9.9", Origin::Manual, 30),
            ],
            // 9.9.9.9 is still banned by the list: no delete for it.
            still_active: vec![decision(7, "9.9.9.9", list, "list:l", 9000)],
        };
        let s = answer(&delta, &Filter::default(), 0);
        let new = s.new.unwrap();
        assert_eq!(
            new.iter()
                .map(|d| (d.value.as_str(), d.id))
                .collect::<Vec<_>>(),
            [("5.6.7.8", 2), ("2001:db8::/64", 3)]
        );
        let deleted = s.deleted.unwrap();
        assert_eq!(
            deleted
                .iter()
                .map(|d| (d.value.as_str(), d.id))
                .collect::<Vec<_>>(),
            [("5.6.7.9", 5)]
        );
        // Filters: only cscli, only ranges; and a scenario left out.
        let only = |q: FilterQuery| answer(&delta, &Filter::from(&q), 0);
        let s = only(FilterQuery {
            origins: Some("cscli".into()),
            ..FilterQuery::default()
        });
        let new = s.new.unwrap();
        assert_eq!((new.len(), new[0].id), (1, 1));
        // The list's ban on 9.9.9.9 is not asked for: the manual delete goes out.
        let deleted: Vec<String> = s.deleted.unwrap().into_iter().map(|d| d.value).collect();
        assert_eq!(deleted, ["5.6.7.9", "9.9.9.9"]);
        let s = only(FilterQuery {
            scopes: Some("Range".into()),
            ..FilterQuery::default()
        });
        assert_eq!(s.new.unwrap()[0].value, "2001:db8::/64");
        assert!(s.deleted.is_none());
        let s = only(FilterQuery {
            scenarios_not_containing: Some("ssh".into()),
            scenarios_containing: Some("list,manual".into()),
            ..FilterQuery::default()
        });
        assert_eq!(s.new.unwrap().len(), 1);
    }
}
