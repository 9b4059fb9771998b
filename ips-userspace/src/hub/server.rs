//! The hub's HTTP API: enrolment, signal push, and the consensus as a CrowdSec-shaped stream.
//!
//! | method | path | auth | body / answer |
//! |---|---|---|---|
//! | POST | `/v1/hub/enroll` | token in body | `{"token","name"}` -> `{"agent_id","api_key"}` |
//! | POST | `/v1/hub/signals` | `X-Api-Key` | `[Signal]` -> `{"accepted":n}` |
//! | GET | `/v1/decisions/stream?startup=` | `X-Api-Key` | `{"new":[..],"deleted":[..]}` |
//! | GET | `/v1/hub/list` | `X-Api-Key` | the consensus as a plain list |
//!
//! Wrong enrolment tokens are throttled per client address: after [`ENROL_TRIES`] wrong ones
//! in a minute, that address gets 429 until the minute is over. An agent may push
//! `signals_per_minute` signals a minute (`--max-signals-per-minute`); a push over that gets
//! 429, and the agent keeps its signals for a later try.
use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{HubError, HubStore, Signal};
use crate::api::crowdsec::{LapiDecision, Stream};

type Job = Box<dyn FnOnce(&mut HubStore) + Send>;

/// The store lives on its own thread (the PostgreSQL client blocks, and must not run on the
/// async workers); handlers send it closures and await the answer.
#[derive(Clone)]
pub struct Shared(std::sync::mpsc::Sender<Job>);

impl Shared {
    /// Moves `hub` to its own thread.
    pub fn new(mut hub: HubStore) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ips-hub-store".into())
            .spawn(move || {
                for job in rx {
                    job(&mut hub);
                }
            })?;
        Ok(Self(tx))
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut HubStore) -> T + Send + 'static,
    ) -> Result<T, (StatusCode, String)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gone = || {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the hub store stopped".to_owned(),
            )
        };
        self.0
            .send(Box::new(move |h| {
                let _ = tx.send(f(h));
            }))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "message": msg.into() }))).into_response()
}

/// The agent behind the request's `X-Api-Key`, or the status and message to answer with.
async fn agent(hub: &Shared, headers: &HeaderMap) -> Result<i64, (StatusCode, String)> {
    let forbidden = || (StatusCode::FORBIDDEN, "access forbidden".to_owned());
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(forbidden)?
        .to_owned();
    match hub.call(move |h| h.agent(&key)).await? {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(forbidden()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(Deserialize)]
struct Enrol {
    token: String,
    name: String,
}

/// Wrong enrolment tokens an address may send per minute.
pub const ENROL_TRIES: u32 = 5;

/// What each key (a client address, an agent) used in its current minute: (count, start of
/// the minute).
#[derive(Clone)]
pub struct PerMinute<K>(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<K, (u64, i64)>>>);

impl<K> Default for PerMinute<K> {
    fn default() -> Self {
        Self(std::sync::Arc::default())
    }
}

impl<K: std::hash::Hash + Eq + Copy> PerMinute<K> {
    /// What `key` used in its minute (minutes over are forgotten).
    fn used(&self, key: K, now_ms: i64) -> u64 {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.retain(|_, (_, start)| now_ms - *start < 60_000);
        m.get(&key).map_or(0, |(n, _)| *n)
    }

    fn add(&self, key: K, n: u64, now_ms: i64) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(key).or_insert((0, now_ms)).0 += n;
    }

    /// Takes `n` from `key`'s budget of `limit` a minute; false (nothing taken) if it would go
    /// over.
    fn take(&self, key: K, n: u64, limit: u64, now_ms: i64) -> bool {
        if self.used(key, now_ms).saturating_add(n) > limit {
            return false;
        }
        self.add(key, n, now_ms);
        true
    }
}

/// Wrong enrolment tokens per client address.
pub type Throttle = PerMinute<std::net::IpAddr>;

async fn enrol(
    State((hub, throttle)): State<(Shared, Throttle)>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    Json(req): Json<Enrol>,
) -> Response {
    let now = crate::calendar::now_ms();
    if throttle.used(peer.ip(), now) >= u64::from(ENROL_TRIES) {
        return err(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong enrolment tokens from this address; wait a minute",
        );
    }
    let result = hub.call(move |h| h.enrol(&req.token, &req.name, now)).await;
    if let Ok(Err(HubError::BadToken)) = &result {
        throttle.add(peer.ip(), 1, now);
    }
    match result {
        Ok(Ok((id, key))) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "agent_id": id, "api_key": key })),
        )
            .into_response(),
        Ok(Err(HubError::BadToken)) => err(StatusCode::FORBIDDEN, "wrong enrolment token"),
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err((status, msg)) => err(status, msg),
    }
}

async fn signals(
    State((hub, budget)): State<(Shared, (PerMinute<i64>, u64))>,
    headers: HeaderMap,
    Json(list): Json<Vec<Signal>>,
) -> Response {
    let id = match agent(&hub, &headers).await {
        Ok(id) => id,
        Err((status, msg)) => return err(status, msg),
    };
    if list.len() > 100_000 {
        return err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most 100000 signals a push",
        );
    }
    let n = list.len();
    let now = crate::calendar::now_ms();
    let (used, limit) = budget;
    if !used.take(id, n as u64, limit, now) {
        return err(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {limit} signals a minute per agent; try again later"),
        );
    }
    match hub.call(move |h| h.push(id, &list, now)).await {
        Ok(Ok(refused)) => {
            Json(serde_json::json!({ "accepted": n - refused, "refused": refused })).into_response()
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err((status, msg)) => err(status, msg),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    startup: Option<String>,
}

async fn stream(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    let id = match agent(&hub, &headers).await {
        Ok(id) => id,
        Err((status, msg)) => return err(status, msg),
    };
    let startup = q.startup.as_deref() == Some("true");
    let pulled = hub
        .call(move |h| h.pull(id, startup).map(|r| (r, h.window_ms())))
        .await;
    match pulled {
        Ok(Ok(((new, deleted), window))) => {
            let shape = |p: &crate::prefix::Prefix, left: i64| LapiDecision {
                id: 0,
                origin: "hub".into(),
                kind: "ban".into(),
                scope: p.scope().into(),
                value: p.to_string(),
                duration: crate::duration::format(Duration::from_millis(left.max(0) as u64)),
                scenario: "hub-consensus".into(),
            };
            let new: Vec<_> = new.iter().map(|p| shape(p, window)).collect();
            let deleted: Vec<_> = deleted.iter().map(|p| shape(p, 0)).collect();
            Json(Stream {
                new: (!new.is_empty()).then_some(new),
                deleted: (!deleted.is_empty()).then_some(deleted),
            })
            .into_response()
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err((status, msg)) => err(status, msg),
    }
}

async fn list(State(hub): State<Shared>, headers: HeaderMap) -> Response {
    if let Err((status, msg)) = agent(&hub, &headers).await {
        return err(status, msg);
    }
    match hub.call(|h| h.listed()).await {
        Ok(Ok(l)) => l
            .iter()
            .map(|p| format!("{p}\n"))
            .collect::<String>()
            .into_response(),
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err((status, msg)) => err(status, msg),
    }
}

/// The hub's router over a store running on its own thread; each agent may push
/// `signals_per_minute` signals a minute.
pub fn router(hub: Shared, signals_per_minute: u64) -> Router {
    Router::new()
        .route(
            "/v1/hub/enroll",
            post(enrol).with_state((hub.clone(), Throttle::default())),
        )
        .route(
            "/v1/hub/signals",
            post(signals).with_state((hub.clone(), (PerMinute::default(), signals_per_minute))),
        )
        .route("/v1/hub/list", get(list))
        .route("/v1/decisions/stream", get(stream))
        .with_state(hub)
}

/// Serves the hub until `shutdown` resolves, ageing reports out every second.
pub async fn serve(
    hub: HubStore,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let signals_per_minute = hub.signals_per_minute();
    let hub = Shared::new(hub)?;
    let ticker = hub.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let now = crate::calendar::now_ms();
            if ticker.call(move |h| h.decay(now)).await.is_err() {
                return;
            }
        }
    });
    axum::serve(
        listener,
        router(hub, signals_per_minute).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
/// Binds `listen`.
pub async fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

/// Runs a hub on its own thread and runtime (for tests, benches and embedding); returns the
/// address it listens on. It runs until the process ends.
pub fn spawn(hub: HubStore, listen: SocketAddr) -> std::io::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ips-hub".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match bind(listen).await {
                    Ok(l) => {
                        let _ = tx.send(l.local_addr());
                        let _ = serve(hub, l, std::future::pending()).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the hub thread ended before listening"))?
}
