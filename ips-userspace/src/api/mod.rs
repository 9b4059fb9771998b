//! The daemon's HTTP API. The operator (the `ips` CLI) reaches all of it on the unix socket;
//! TCP, when configured, serves CrowdSec bouncers only (see [`serve`] and `authorize`). JSON in,
//! JSON out; errors are `{"error": "..."}` with a 4xx or 5xx status.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | GET | `/v1/health` | | `{"ok":true}` |
//! | GET | `/v1/status` | | [`Status`] |
//! | GET | `/v1/ips/decisions` | `?value=` or `?limit=&cursor=` | `{"decisions":[Decision],"next":cursor}` |
//! | POST | `/v1/ips/decisions` | [`AddRequest`] | `[Decision]` |
//! | DELETE | `/v1/ips/decisions` | `?value=&origin=` | `{"deleted":n}` |
//! | GET | `/v1/ips/allowlist` | | `[AllowEntry]` |
//! | POST | `/v1/ips/allowlist` | [`AllowRequest`] | `{"removed_decisions":n}` |
//! | DELETE | `/v1/ips/allowlist` | `?value=` | `{"deleted":bool}` |
//! | POST | `/v1/ips/detach` | `{"iface":..}` | `{"detached":bool}` |
//! | POST | `/v1/ips/blocklists/import` | [`ImportRequest`] | `ImportReport` |
//! | GET | `/v1/ips/blocklists` | | `[SourceStatus]` |
//! | DELETE | `/v1/ips/blocklists` | `?name=` | `{"removed":n}` |
//! | GET, POST, DELETE | `/v1/ips/bouncers` | `{"name":..}` / `?name=` | key once on POST |
//! | GET | `/v1/decisions/stream`, `/v1/decisions` | CrowdSec LAPI, `X-Api-Key` | see [`crowdsec`] |
//! | GET | `/v1/ips/alerts` | `?limit=&scenario=&source=` | `[StoredAlert]` |
//! | GET | `/v1/ips/alerts/{id}` | | `StoredAlert` |
use axum::{
    Json, Router,
    extract::{Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    blocklists::Format,
    decisions::{AlertQuery, Cursor, NewDecision, Origin, Page, Role, check_name},
    prefix::Prefix,
    service::{ErrorKind, Handle, ImportList, ServiceError},
};

pub mod client;
pub mod crowdsec;
pub mod serve;
pub mod tls;
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

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Capacity => 507,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
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

pub use crate::service::{InterfaceStatus, OriginStatus, Status};

/// Body of `POST /v1/ips/decisions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// Addresses or prefixes.
    pub values: Vec<String>,
    /// `4h`, `30m`...; the configured default if absent.
    #[serde(default, with = "crate::config::human_duration_opt")]
    pub duration: Option<std::time::Duration>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who decides; `manual` if absent.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// Ban prefixes shorter than the minimum length.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /v1/ips/allowlist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRequest {
    /// Address or prefix.
    pub value: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /v1/ips/detach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Largest list import body: 64 MiB (some 4M IPv4 lines).
pub const MAX_IMPORT: usize = 64 << 20;

/// Largest body of any other request: axum's default, 2 MiB.
pub const MAX_BODY: usize = 2 << 20;

/// Answers 413 at once to a request whose declared length is over its route's limit, before a
/// byte of the body is read.
async fn declared_length(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let limit = if req.uri().path() == "/v1/ips/blocklists/import" {
        MAX_IMPORT
    } else {
        MAX_BODY
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => ApiError {
            status: 413,
            error: format!("request body of {n} bytes: at most {limit} here"),
        }
        .into_response(),
        _ => next.run(req).await,
    }
}

/// What a caller may reach. The operator (the unix socket) reaches everything. Over TCP, a
/// request from a web page (an `Origin` header) or for a `Host` that is not an address,
/// `localhost` or one of `api.server_names` is refused, so neither a cross-site request nor
/// DNS rebinding reaches the daemon from a browser; then an admin token (`Authorization:
/// Bearer`) reaches everything, a machine's key also what agents send (`/v1/ips/agent/...`),
/// and anyone the health check and what CrowdSec bouncers read with GET (their key is checked
/// there).
async fn authorize(
    State((h, server_names)): State<(Handle, Arc<Vec<String>>)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let forbidden = |error: String| ApiError { status: 403, error }.into_response();
    match req.extensions().get::<serve::Caller>() {
        Some(serve::Caller::Operator { .. }) => next.run(req).await,
        Some(serve::Caller::Network(_)) => {
            let headers = req.headers();
            if headers.contains_key(axum::http::header::ORIGIN) {
                return forbidden("requests from web pages are refused".into());
            }
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !host_is_an_address(host) && !server_names.iter().any(|n| host_is(host, n)) {
                return forbidden(format!(
                    "Host {host:?} is not this API's address or one of api.server_names"
                ));
            }
            let path = req.uri().path();
            let read = matches!(
                path,
                "/v1/health" | "/v1/decisions" | "/v1/decisions/stream"
            ) && req.method() == axum::http::Method::GET;
            if read {
                return next.run(req).await;
            }
            let role = match crowdsec::key_of(&h, req.headers()).await {
                Ok(key) => key.map(|k| k.role),
                Err(e) => return e.into_response(),
            };
            match role {
                Some(Role::Admin) => next.run(req).await,
                Some(Role::Machine) if path.starts_with("/v1/ips/agent/") => next.run(req).await,
                Some(_) => forbidden(format!("this key may not use {path}")),
                None => forbidden(
                    "over TCP the admin API needs an admin token (ips tokens add); the operator's unix socket needs none"
                        .into(),
                ),
            }
        }
        None => forbidden("unknown caller".into()),
    }
}

/// True if `host` (with or without a port) is the name `name`.
fn host_is(host: &str, name: &str) -> bool {
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => host,
    };
    bare.eq_ignore_ascii_case(name)
}

/// True for `localhost`, an IPv4 address or a bracketed IPv6 address, with or without a port.
fn host_is_an_address(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty()
                        || port
                            .strip_prefix(':')
                            .is_some_and(|p| p.parse::<u16>().is_ok()));
            }
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Longest reason a decision or allowlist entry may carry.
pub const MAX_REASON: usize = 1024;

fn reason(r: Option<String>) -> Result<String, ApiError> {
    let r = r.unwrap_or_else(|| "manual".to_owned());
    if r.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "reason: at most {MAX_REASON} characters"
        )));
    }
    Ok(r)
}

fn parse_prefix(s: &str) -> Result<Prefix, ApiError> {
    s.parse()
        .map_err(|e: crate::prefix::PrefixError| ApiError::bad_request(e.to_string()))
}

/// `?origin=`, if given.
fn parse_origin(origin: Option<&str>) -> Result<Option<Origin>, ApiError> {
    origin
        .map(str::parse::<Origin>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn required_value(q: &ValueQuery) -> Result<Prefix, ApiError> {
    parse_prefix(
        q.value
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("?value= is required"))?,
    )
}

/// The body, or why not: 413 over the size limit, 400 otherwise.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| ApiError {
        status: match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => 413,
            _ => 400,
        },
        error: format!("bad request body: {}", e.body_text()),
    })
}

/// The router, served by `ips run`; `server_names` are the host names TCP clients may use
/// besides addresses and `localhost` (`api.server_names`).
pub fn router(handle: Handle, server_names: Vec<String>) -> Router {
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
        .route("/v1/ips/reload", post(reload))
        .route(
            "/v1/ips/blocklists/import",
            post(import_list).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT)),
        )
        .route("/v1/ips/blocklists", get(list_status).delete(delete_list))
        .route("/v1/decisions/stream", get(crowdsec::stream))
        .route("/v1/decisions", get(crowdsec::decisions))
        .route(
            "/v1/ips/bouncers",
            get(list_bouncers).post(add_bouncer).delete(delete_bouncer),
        )
        .route("/v1/ips/alerts", get(list_alerts))
        .route("/v1/ips/agent/push", post(agent_push))
        .route("/v1/ips/alerts/{id}", get(get_alert))
        .layer(axum::middleware::from_fn(declared_length))
        .layer(axum::middleware::from_fn_with_state(
            (handle.clone(), Arc::new(server_names)),
            authorize,
        ))
        .layer(axum::middleware::from_fn(count_request))
        .with_state(handle)
}

/// Counts every request by transport (socket or TCP) and answer class, for `/metrics`
/// (`ips_api_requests_total`).
async fn count_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let transport = match req.extensions().get::<serve::Caller>() {
        Some(serve::Caller::Operator { .. }) => "socket",
        _ => "tcp",
    };
    let r = next.run(req).await;
    let class = match r.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    crate::web::api_request(transport, class);
    r
}

async fn status(State(h): State<Handle>) -> Result<Json<Status>, ApiError> {
    Ok(Json(h.status().await?))
}

/// Body of `POST /v1/ips/blocklists/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// List name; its decisions have origin `list:<name>`.
    pub name: String,
    /// The list's text.
    pub text: String,
    /// Format; detected when absent.
    #[serde(default)]
    pub format: Option<Format>,
    /// How long the entries last unless the list is imported again (default 24h).
    #[serde(default, with = "crate::config::human_duration_opt")]
    pub duration: Option<std::time::Duration>,
}

async fn import_list(
    State(h): State<Handle>,
    b: Result<Json<ImportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    check_name(&req.name).map_err(|e| ApiError::bad_request(format!("list {e}")))?;
    let duration = req
        .duration
        .unwrap_or(std::time::Duration::from_secs(24 * 3600));
    if duration.is_zero() {
        return Err(ApiError::bad_request("duration must be above 0"));
    }
    // Read, filter and aggregate here, with the allowlist the service publishes, not on the
    // service's thread, which bans meanwhile.
    let allow = h.allowlist();
    let allow_version = allow.version;
    let started = std::time::Instant::now();
    let (text, format) = (req.text, req.format);
    let prepared =
        tokio::task::spawn_blocking(move || crate::blocklists::prepare(&text, format, &allow))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    // The garbled-list guard of list sources, on imports too: an error page or a file of junk
    // never replaces a list (`ips blocklist delete` removes one).
    crate::blocklists::source::sanity(&prepared, true).map_err(|e| {
        ApiError::bad_request(format!(
            "{e}: not imported (to remove list {}, use `ips blocklist delete`)",
            req.name
        ))
    })?;
    let prepare_ms = started.elapsed().as_millis() as u64;
    let mut report = h
        .import_list(ImportList {
            name: req.name,
            prepared,
            allow_version,
            duration,
        })
        .await?;
    report.took.prepare_ms = prepare_ms;
    Ok(Json(report).into_response())
}

/// Body of `POST /v1/ips/bouncers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BouncerRequest {
    /// Its name.
    pub name: String,
    /// The key, when the caller chose it (`ips bouncers add NAME -k KEY`, as packages do);
    /// generated otherwise.
    #[serde(default)]
    pub key: Option<String>,
    /// What the key may do; a bouncer's if absent.
    #[serde(default)]
    pub role: Option<Role>,
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
    let key = match req.key {
        Some(k) => {
            if !(16..=256).contains(&k.len()) || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ApiError::bad_request(
                    "key: 16 to 256 printable ASCII characters, no spaces",
                ));
            }
            k
        }
        None => crowdsec::new_key().map_err(|e| ApiError::internal(e.to_string()))?,
    };
    let role = req.role.unwrap_or_default();
    if role == Role::Machine {
        // A machine's name is in the origin of what it pushes (`machine:<name>`).
        check_name(&req.name).map_err(|e| ApiError::bad_request(format!("machine {e}")))?;
    }
    h.add_bouncer(req.name.clone(), crowdsec::key_hash(&key), role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "name": req.name, "role": role, "api_key": key })),
    )
        .into_response())
}

async fn list_bouncers(State(h): State<Handle>) -> Result<Response, ApiError> {
    Ok(Json(h.bouncers().await?).into_response())
}

/// `?name=`.
#[derive(Debug, Default, Deserialize)]
struct NameQuery {
    name: Option<String>,
}

impl NameQuery {
    fn required(self) -> Result<String, ApiError> {
        self.name
            .ok_or_else(|| ApiError::bad_request("?name= is required"))
    }
}

async fn delete_bouncer(
    State(h): State<Handle>,
    Query(q): Query<NameQuery>,
) -> Result<Response, ApiError> {
    let name = q.required()?;
    let existed = h.delete_bouncer(name).await?;
    Ok(Json(serde_json::json!({ "deleted": existed })).into_response())
}

pub(crate) async fn list_status(State(h): State<Handle>) -> Result<Response, ApiError> {
    let status = h.status().await?;
    let mut lists = h.lists.lock().map(|l| l.clone()).unwrap_or_default();
    // Lists in the store that no configured source fetches: imported by hand.
    for l in h.stored_lists().await? {
        if let Origin::List(name) = &l.origin
            && !lists.iter().any(|s| s.kind == "list" && s.name == *name)
        {
            lists.push(crate::blocklists::source::SourceStatus {
                name: name.clone(),
                kind: "import".into(),
                from: "ips blocklist import".into(),
                entries: l.entries,
                last_success_ms: Some(l.since_ms),
                ..Default::default()
            });
        }
    }
    for l in &mut lists {
        let origin = match l.kind.as_str() {
            "lapi" => Origin::Lapi(l.name.clone()).to_string(),
            _ => Origin::List(l.name.clone()).to_string(),
        };
        l.dropped = status
            .origins
            .iter()
            .filter(|o| o.name == origin)
            .map(|o| o.dropped_v4 + o.dropped_v6)
            .sum();
    }
    Ok(Json(lists).into_response())
}

async fn delete_list(
    State(h): State<Handle>,
    Query(q): Query<NameQuery>,
) -> Result<Response, ApiError> {
    let name = q.required()?;
    let allow = h.allowlist();
    let report = h
        .import_list(ImportList {
            name,
            prepared: crate::blocklists::Prepared::default(),
            allow_version: allow.version,
            duration: std::time::Duration::from_secs(60),
        })
        .await?;
    Ok(Json(serde_json::json!({ "removed": report.removed })).into_response())
}

/// Body of `POST /v1/ips/agent/push`: an agent's heartbeat, with its alerts since the last
/// push (at most [`MAX_PUSH`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// The agent's `ips` version.
    pub version: String,
    /// Its alerts, oldest first; those with a ban are banned fleet-wide as `machine:<name>`.
    #[serde(default)]
    pub alerts: Vec<crate::decisions::StoredAlert>,
}

/// Most alerts in one push.
pub const MAX_PUSH: usize = 500;

async fn agent_push(
    State(h): State<Handle>,
    headers: axum::http::HeaderMap,
    b: Result<Json<Push>, JsonRejection>,
) -> Result<Response, ApiError> {
    let machine = match crowdsec::key_of(&h, &headers).await? {
        Some(k) if k.role == Role::Machine => k.name,
        _ => {
            return Err(ApiError {
                status: 403,
                error: "a machine key is needed (ips machines add)".into(),
            });
        }
    };
    let mut push = body(b)?;
    if push.alerts.len() > MAX_PUSH || push.version.len() > 64 {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PUSH} alerts per push, and a version of at most 64 characters"
        )));
    }
    for a in &mut push.alerts {
        a.id = 0;
        a.machine = machine.clone();
        a.evidence.truncate(20);
        for line in &mut a.evidence {
            if line.len() > 2048 {
                let mut cut = 2048;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
        }
    }
    let report = h.agent_push(machine, push.version, push.alerts).await?;
    Ok(Json(report).into_response())
}

/// `?limit=&scenario=&source=&machine=`.
#[derive(Debug, Default, Deserialize)]
struct AlertParams {
    limit: Option<usize>,
    scenario: Option<String>,
    source: Option<std::net::IpAddr>,
    machine: Option<String>,
}

async fn list_alerts(
    State(h): State<Handle>,
    Query(q): Query<AlertParams>,
) -> Result<Response, ApiError> {
    let alerts = h
        .alerts(AlertQuery {
            limit: q.limit.unwrap_or(50).min(10_000),
            scenario: q.scenario,
            source: q.source,
            machine: q.machine,
        })
        .await?;
    Ok(Json(alerts).into_response())
}

async fn get_alert(
    State(h): State<Handle>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Response, ApiError> {
    match h.alert(id).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(ApiError {
            status: 404,
            error: format!("no alert {id}"),
        }),
    }
}

/// Decisions per page unless `?limit=` says otherwise.
pub const PAGE: usize = 1000;

/// Most decisions on one page.
pub const MAX_PAGE: usize = 10_000;

/// `?value=&limit=&cursor=&origin=`.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    value: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    origin: Option<String>,
}

async fn list_decisions(
    State(h): State<Handle>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    if let Some(v) = q.value.as_deref() {
        // The decisions on one value: one per origin at most, one page.
        let decisions = h.decisions(Some(parse_prefix(v)?)).await?;
        return Ok(Json(Page {
            decisions,
            next: None,
        })
        .into_response());
    }
    let limit = q.limit.unwrap_or(PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: 1 to {MAX_PAGE} decisions per page"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let origin = parse_origin(q.origin.as_deref())?;
    Ok(Json(h.page(after, limit, origin).await?).into_response())
}

async fn add_decisions(
    State(h): State<Handle>,
    b: Result<Json<AddRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    if req.values.is_empty() {
        return Err(ApiError::bad_request("no value given"));
    }
    let duration = req.duration.unwrap_or(h.default_duration);
    if duration.is_zero() {
        return Err(ApiError::bad_request("duration must be above 0"));
    }
    let origin = req.origin.unwrap_or(Origin::Manual);
    let reason = reason(req.reason)?;
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
    let added = h.ban(batch, req.force).await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

async fn delete_decision(
    State(h): State<Handle>,
    Query(q): Query<ValueQuery>,
) -> Result<Response, ApiError> {
    let value = required_value(&q)?;
    let origin = parse_origin(q.origin.as_deref())?;
    let n = h.unban(value, origin).await?;
    Ok(Json(serde_json::json!({ "deleted": n })).into_response())
}

async fn list_allow(State(h): State<Handle>) -> Result<Response, ApiError> {
    Ok(Json(h.allow_entries().await?).into_response())
}

async fn add_allow(
    State(h): State<Handle>,
    b: Result<Json<AllowRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    let value = parse_prefix(&req.value)?;
    let reason = reason(req.reason)?;
    let n = h.allow(value, reason).await?;
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
    let existed = h.disallow(value).await?;
    Ok(Json(serde_json::json!({ "deleted": existed })).into_response())
}

async fn reload(State(h): State<Handle>, _body: axum::body::Bytes) -> Result<Response, ApiError> {
    Ok(Json(h.reload().await?).into_response())
}

async fn detach(
    State(h): State<Handle>,
    b: Result<Json<DetachRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(b)?;
    let existed = h.detach(req.iface).await?;
    Ok(Json(serde_json::json!({ "detached": existed })).into_response())
}
