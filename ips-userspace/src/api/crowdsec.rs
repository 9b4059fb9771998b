//! The CrowdSec LAPI bouncer endpoints, so that existing CrowdSec bouncers (nginx, firewall,
//! cloudflare) enforce `ips` decisions:
//!
//! - `GET /v1/decisions/stream?startup=true|false`: `{"new":[..],"deleted":[..]}` since the
//!   bouncer's last pull (everything active on startup);
//! - `GET /v1/decisions?ip=A` (or `?value=`): the decisions covering an address;
//!
//! both authenticated by `X-Api-Key` (keys from `ips bouncers add`, stored as SHA-256), 403
//! otherwise. Empty lists are `null`, as CrowdSec sends them.
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
    decisions::{Decision, Origin, Tombstone},
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
        scenario: if let Origin::List(_) = d.origin {
            d.origin.to_string()
        } else {
            d.reason.clone()
        },
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
        scenario: t.reason.clone(),
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
    let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let hash = key_hash(key.trim());
    Ok(h.bouncer_by_key(hash).await?)
}

/// `?startup=`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    startup: Option<String>,
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
    let (new, deleted) = h.stream(name, startup).await?;
    let now = now_ms();
    Ok(Json(Stream {
        new: non_empty(new.iter().map(|d| from_decision(d, now)).collect()),
        deleted: non_empty(deleted.iter().map(from_tombstone).collect()),
    })
    .into_response())
}

/// `?ip=` / `?value=`.
#[derive(Debug, Default, Deserialize)]
pub struct DecisionsQuery {
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    range: Option<String>,
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
    let list: Vec<LapiDecision> = found.iter().map(|d| from_decision(d, now)).collect();
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
}
