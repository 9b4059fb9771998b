//! The local HTTP API (loopback only) that the `ips` CLI talks to. JSON in, JSON out; errors
//! are `{"error": "..."}` with a 4xx or 5xx status.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | GET | `/v1/health` | | `{"ok":true}` |
//! | GET | `/v1/status` | | [`Status`] |
//! | GET | `/v1/ips/decisions` | `?value=` | `[Decision]` |
//! | POST | `/v1/ips/decisions` | [`AddRequest`] | `[Decision]` |
//! | DELETE | `/v1/ips/decisions` | `?value=&origin=` | `{"deleted":n}` |
//! | GET | `/v1/ips/allowlist` | | `[AllowEntry]` |
//! | POST | `/v1/ips/allowlist` | [`AllowRequest`] | `{"removed_decisions":n}` |
//! | DELETE | `/v1/ips/allowlist` | `?value=` | `{"deleted":bool}` |
//! | POST | `/v1/ips/detach` | `{"iface":..}` | `{"detached":bool}` |
//! | POST | `/v1/ips/blocklists/import` | [`ImportRequest`] | `ImportReport` |
//! | GET | `/v1/ips/blocklists` | | `[SourceStatus]` |
//! | GET, POST, DELETE | `/v1/ips/bouncers` | `{"name":..}` / `?name=` | key once on POST |
//! | GET | `/v1/decisions/stream`, `/v1/decisions` | CrowdSec LAPI, `X-Api-Key` | see [`crowdsec`] |
//! | GET | `/v1/ips/alerts` | `?limit=&scenario=&source=` | `[StoredAlert]` |
//! | GET | `/v1/ips/alerts/{id}` | | `StoredAlert` |
use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use crate::{
    daemon::{Handle, Request},
    decisions::{NewDecision, ORIGIN_MANUAL, StoreError},
    enforcer::{EnforcerError, MapFill},
    prefix::Prefix,
};

pub mod client;
pub mod crowdsec;
pub use client::Client;

/// An API error: a status code and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What went wrong.
    pub error: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: msg.into(),
        }
    }

    /// 500.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self {
            status: 500,
            error: msg.into(),
        }
    }
}

impl From<EnforcerError> for ApiError {
    fn from(e: EnforcerError) -> Self {
        let status = match &e {
            EnforcerError::Store(StoreError::Allowlisted { .. } | StoreError::BouncerExists(_)) => {
                409
            }
            EnforcerError::Store(
                StoreError::BadDuration(_) | StoreError::TooManyOrigins { .. },
            )
            | EnforcerError::UnknownInterface { .. } => 400,
            _ => 500,
        };
        Self {
            status,
            error: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// An attached interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// Name.
    pub name: String,
    /// `native`, `generic` or `unknown`.
    pub mode: String,
}

/// Drops attributed to one origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStatus {
    /// Origin id in the kernel.
    pub id: u32,
    /// Origin name.
    pub name: String,
    /// IPv4 packets dropped.
    pub dropped_v4: u64,
    /// IPv6 packets dropped.
    pub dropped_v6: u64,
}

/// `ips status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// False when read straight from the pins with no daemon.
    pub daemon_running: bool,
    /// Pin directory.
    pub pin_dir: String,
    /// Attached interfaces.
    pub interfaces: Vec<InterfaceStatus>,
    /// Entries per map.
    pub maps: MapFill,
    /// Active decisions in the store.
    pub decisions: u64,
    /// Allowlist entries in the store.
    pub allowlist: u64,
    /// Packet counters by name.
    pub counters: BTreeMap<String, u64>,
    /// Drops per origin.
    pub origins: Vec<OriginStatus>,
    /// Detection pipeline counters (empty without `[[acquisition]]`).
    #[serde(default)]
    pub detection: crate::pipeline::DetectionStats,
}

/// Body of `POST /v1/ips/decisions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRequest {
    /// Addresses or prefixes.
    pub values: Vec<String>,
    /// `4h`, `30m`...; the configured default if absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Origin name; `manual` if absent.
    #[serde(default)]
    pub origin: Option<String>,
}

/// Body of `POST /v1/ips/allowlist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRequest {
    /// Address or prefix.
    pub value: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /v1/ips/detach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    /// Interface.
    pub iface: String,
}

/// `?value=&origin=`.
#[derive(Debug, Default, Deserialize)]
struct ValueQuery {
    value: Option<String>,
    origin: Option<String>,
}

fn parse_prefix(s: &str) -> Result<Prefix, ApiError> {
    s.parse()
        .map_err(|e: crate::prefix::PrefixError| ApiError::bad_request(e.to_string()))
}

fn required_value(q: &ValueQuery) -> Result<Prefix, ApiError> {
    parse_prefix(
        q.value
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("?value= is required"))?,
    )
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::bad_request(format!("bad request body: {}", e.body_text())))
}

/// The router, served by `ips run`.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/v1/status", get(status))
        .route(
            "/v1/ips/decisions",
            get(list_decisions)
                .post(add_decisions)
                .delete(delete_decision),
        )
        .route(
            "/v1/ips/allowlist",
            get(list_allow).post(add_allow).delete(delete_allow),
        )
        .route("/v1/ips/detach", post(detach))
        .route(
            "/v1/ips/blocklists/import",
            post(import_list).layer(axum::extract::DefaultBodyLimit::max(1 << 30)),
        )
        .route("/v1/ips/blocklists", get(list_status))
        .route("/v1/decisions/stream", get(crowdsec::stream))
        .route("/v1/decisions", get(crowdsec::decisions))
        .route(
            "/v1/ips/bouncers",
            get(list_bouncers).post(add_bouncer).delete(delete_bouncer),
        )
        .route("/v1/ips/alerts", get(list_alerts))
        .route("/v1/ips/alerts/{id}", get(get_alert))
        .with_state(handle)
}

async fn status(State(h): State<Handle>) -> Result<Json<Status>, ApiError> {
    let mut status = h.call(Request::Status).await?;
    if let Ok(d) = h.detection.lock() {
        status.detection = d.clone();
    }
    Ok(Json(status))
}

/// Body of `POST /v1/ips/blocklists/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequest {
    /// List name; its decisions have origin `list:<name>`.
    pub name: String,
    /// The list's text.
    pub text: String,
    /// Format; detected when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// How long the entries last unless the list is imported again (default 24h).
    #[serde(default)]
    pub duration: Option<String>,
}

async fn import_list(
    State(h): State<Handle>,
    b: Result<Json<ImportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    if req.name.is_empty()
        || req.name.len() > 48
        || !req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ApiError::bad_request(
            "list name: 1 to 48 letters, digits, '-', '_' or '.'",
        ));
    }
    let format = req
        .format
        .as_deref()
        .map(str::parse::<crate::blocklists::Format>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let duration = crate::duration::parse(req.duration.as_deref().unwrap_or("24h"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if duration.is_zero() {
        return Err(ApiError::bad_request("duration must be above 0"));
    }
    let ms = duration.as_millis().min(i64::MAX as u128) as i64;
    // Read, filter and aggregate here, not on the enforcer thread, which bans meanwhile.
    let allow: Vec<Prefix> = h
        .call(Request::AllowList)
        .await?
        .into_iter()
        .map(|a| a.value)
        .collect();
    let started = std::time::Instant::now();
    let (prepared, allow) = tokio::task::spawn_blocking(move || {
        let prepared = crate::blocklists::prepare(&req.text, format, &allow);
        (prepared, allow)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let prepare_ms = started.elapsed().as_millis() as u64;
    let mut report = h
        .call(|r| Request::Import(req.name, prepared, allow, ms, r))
        .await?;
    report.took.prepare_ms = prepare_ms;
    Ok(Json(report).into_response())
}

/// Body of `POST /v1/ips/bouncers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BouncerRequest {
    /// Bouncer name.
    pub name: String,
}

async fn add_bouncer(
    State(h): State<Handle>,
    b: Result<Json<BouncerRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    if req.name.is_empty() || req.name.len() > 64 || req.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bouncer name: 1 to 64 printable characters",
        ));
    }
    let key = crowdsec::new_key().map_err(|e| ApiError::internal(e.to_string()))?;
    let hash = crowdsec::key_hash(&key);
    let name = req.name.clone();
    h.call(|r| Request::AddBouncer(name, hash, r)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "name": req.name, "api_key": key })),
    )
        .into_response())
}

async fn list_bouncers(State(h): State<Handle>) -> Result<Response, ApiError> {
    Ok(Json(h.call(Request::Bouncers).await?).into_response())
}

/// `?name=`.
#[derive(Debug, Default, Deserialize)]
struct NameQuery {
    name: Option<String>,
}

async fn delete_bouncer(
    State(h): State<Handle>,
    Query(q): Query<NameQuery>,
) -> Result<Response, ApiError> {
    let name = q
        .name
        .ok_or_else(|| ApiError::bad_request("?name= is required"))?;
    let existed = h.call(|r| Request::DeleteBouncer(name, r)).await?;
    Ok(Json(serde_json::json!({ "deleted": existed })).into_response())
}

async fn list_status(State(h): State<Handle>) -> Result<Response, ApiError> {
    let status = h.call(Request::Status).await?;
    let mut lists = h.lists.lock().map(|l| l.clone()).unwrap_or_default();
    for l in &mut lists {
        let origin = format!("list:{}", l.name);
        l.dropped = status
            .origins
            .iter()
            .filter(|o| o.name == origin)
            .map(|o| o.dropped_v4 + o.dropped_v6)
            .sum();
    }
    Ok(Json(lists).into_response())
}

/// `?limit=&scenario=&source=`.
#[derive(Debug, Default, Deserialize)]
struct AlertQuery {
    limit: Option<usize>,
    scenario: Option<String>,
    source: Option<String>,
}

async fn list_alerts(
    State(h): State<Handle>,
    Query(q): Query<AlertQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(50).min(10_000);
    let alerts = h
        .call(|r| Request::Alerts(limit, q.scenario, q.source, r))
        .await?;
    Ok(Json(alerts).into_response())
}

async fn get_alert(
    State(h): State<Handle>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Response, ApiError> {
    match h.call(|r| Request::AlertById(id, r)).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(ApiError {
            status: 404,
            error: format!("no alert {id}"),
        }),
    }
}

async fn list_decisions(
    State(h): State<Handle>,
    Query(q): Query<ValueQuery>,
) -> Result<Response, ApiError> {
    let value = q.value.as_deref().map(parse_prefix).transpose()?;
    Ok(Json(h.call(|r| Request::List(value, r)).await?).into_response())
}

async fn add_decisions(
    State(h): State<Handle>,
    b: Result<Json<AddRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    if req.values.is_empty() {
        return Err(ApiError::bad_request("no value given"));
    }
    let duration = match &req.duration {
        Some(d) => crate::duration::parse(d).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => h.default_duration,
    };
    if duration.is_zero() {
        return Err(ApiError::bad_request("duration must be above 0"));
    }
    let origin = req.origin.unwrap_or_else(|| ORIGIN_MANUAL.to_owned());
    if origin.is_empty() || origin.len() > 64 || origin.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "origin must be 1 to 64 printable characters",
        ));
    }
    let reason = req.reason.unwrap_or_else(|| "manual".to_owned());
    let batch = req
        .values
        .iter()
        .map(|v| {
            Ok(NewDecision {
                value: parse_prefix(v)?,
                origin: origin.clone(),
                reason: reason.clone(),
                duration_ms: duration.as_millis().min(i64::MAX as u128) as i64,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let added = h.call(|r| Request::Add(batch, r)).await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

async fn delete_decision(
    State(h): State<Handle>,
    Query(q): Query<ValueQuery>,
) -> Result<Response, ApiError> {
    let value = required_value(&q)?;
    let n = h.call(|r| Request::Delete(value, q.origin, r)).await?;
    Ok(Json(serde_json::json!({ "deleted": n })).into_response())
}

async fn list_allow(State(h): State<Handle>) -> Result<Response, ApiError> {
    Ok(Json(h.call(Request::AllowList).await?).into_response())
}

async fn add_allow(
    State(h): State<Handle>,
    b: Result<Json<AllowRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    let value = parse_prefix(&req.value)?;
    let reason = req.reason.unwrap_or_else(|| "manual".to_owned());
    let n = h.call(|r| Request::AllowAdd(value, reason, r)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "value": value, "removed_decisions": n })),
    )
        .into_response())
}

async fn delete_allow(
    State(h): State<Handle>,
    Query(q): Query<ValueQuery>,
) -> Result<Response, ApiError> {
    let value = required_value(&q)?;
    let existed = h.call(|r| Request::AllowDelete(value, r)).await?;
    Ok(Json(serde_json::json!({ "deleted": existed })).into_response())
}

async fn detach(
    State(h): State<Handle>,
    b: Result<Json<DetachRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    let existed = h.call(|r| Request::Detach(req.iface, r)).await?;
    Ok(Json(serde_json::json!({ "detached": existed })).into_response())
}
