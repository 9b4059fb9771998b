//! The `[web]` listener (127.0.0.1:6060 by default): `/metrics` in the Prometheus text format,
//! and the dashboard at `/` with the JSON it reads (`/api/...`). Reading is open to loopback
//! peers; anything else, and every change (`POST /api/unban`), needs an admin token of the
//! authenticated API (`Authorization: Bearer`).
//!
//! Packet counters carry the CrowdSec firewall bouncer's names and labels
//! (`fw_bouncer_dropped_packets{origin, ip_type}`, `fw_bouncer_processed_packets{ip_type}`,
//! `fw_bouncer_banned_ips{origin, ip_type}`), so dashboards made for it read ips; ips's own
//! figures are `ips_*`. Every figure comes from the same [`Status`] that `ips status` shows.
use std::net::SocketAddr;

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::{Deserialize, Serialize};

use crate::service::{Handle, Status};

/// `[web]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Where to serve `/metrics`; `""` turns it off. Reading needs no credential: keep it on
    /// loopback or behind a proxy.
    pub listen: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6060".into(),
        }
    }
}

impl WebConfig {
    /// The address to listen on, if any.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen.trim().is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|e| format!("web.listen {:?}: {e}", self.listen))
    }
}

type Labels = Vec<(String, String)>;

/// API requests by transport and answer class, counted by the API's router.
static API_REQUESTS: std::sync::LazyLock<Family<Labels, Counter>> =
    std::sync::LazyLock::new(Family::default);

/// Counts one API request.
pub fn api_request(transport: &str, class: &str) {
    API_REQUESTS
        .get_or_create(&labels(&[("transport", transport), ("class", class)]))
        .inc();
}

/// Figures the decision service records as it goes (not kept anywhere else): alerts per
/// scenario and outcome, and how long from an alert to its ban in the kernel.
#[derive(Clone, Debug)]
pub struct Live {
    /// Alerts decided, by scenario and outcome.
    pub alerts: Family<Labels, Counter>,
    /// From the overflowing line's arrival to the ban committed in the store and the kernel.
    pub detection_to_ban: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            alerts: Family::default(),
            detection_to_ban: prometheus_client::metrics::histogram::Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        }
    }
}

impl Live {
    /// Records one decided alert, `latency_s` after its last line arrived (bans only).
    pub fn alert(&self, scenario: &str, outcome: &str, latency_s: Option<f64>) {
        self.alerts
            .get_or_create(&labels(&[("scenario", scenario), ("outcome", outcome)]))
            .inc();
        if let Some(l) = latency_s {
            self.detection_to_ban.observe(l.max(0.0));
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Registers a counter family and sets each of `values` (labels, total) on it.
fn counters(r: &mut Registry, name: &str, help: &str, values: &[(Labels, u64)]) {
    let family = Family::<Labels, Counter>::default();
    for (l, v) in values {
        family.get_or_create(l).inc_by(*v);
    }
    r.register(name, help, family);
}

/// Registers a gauge family and sets each of `values` on it.
fn gauges(r: &mut Registry, name: &str, help: &str, values: &[(Labels, i64)]) {
    let family = Family::<Labels, Gauge>::default();
    for (l, v) in values {
        family.get_or_create(l).set(*v);
    }
    r.register(name, help, family);
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The Prometheus text of `s`, `live` and the sources' health.
pub fn render(
    s: &Status,
    live: &Live,
    sources: &[crate::blocklists::source::SourceStatus],
) -> String {
    let mut r = Registry::default();
    r.register(
        "ips_alerts_decided",
        "Alerts decided, by scenario and outcome",
        live.alerts.clone(),
    );
    r.register(
        "ips_api_requests",
        "Requests to the API, by transport and answer class",
        API_REQUESTS.clone(),
    );
    r.register(
        "ips_detection_to_ban_seconds",
        "From the arrival of the line that overflowed a bucket to the ban in the kernel",
        live.detection_to_ban.clone(),
    );
    let health: Vec<(Labels, i64)> = sources
        .iter()
        .map(|l| {
            (
                labels(&[("source", &l.name), ("kind", &l.kind)]),
                i64::from(l.last_error.is_none() && l.last_success_ms.is_some()),
            )
        })
        .collect();
    gauges(
        &mut r,
        "ips_source_up",
        "1 if the blocklist or LAPI source's last fetch worked",
        &health,
    );
    let last: Vec<(Labels, i64)> = sources
        .iter()
        .filter_map(|l| {
            Some((
                labels(&[("source", &l.name), ("kind", &l.kind)]),
                l.last_success_ms? / 1000,
            ))
        })
        .collect();
    gauges(
        &mut r,
        "ips_source_last_success_timestamp_seconds",
        "When the source was last fetched whole",
        &last,
    );
    let entries: Vec<(Labels, i64)> = sources
        .iter()
        .map(|l| {
            (
                labels(&[("source", &l.name), ("kind", &l.kind)]),
                gauge(l.entries),
            )
        })
        .collect();
    gauges(
        &mut r,
        "ips_source_entries",
        "Entries the source holds",
        &entries,
    );
    let c = |name: &str| s.counters.get(name).copied().unwrap_or(0);
    let mut dropped = Vec::new();
    for o in &s.origins {
        dropped.push((
            labels(&[("origin", &o.name), ("ip_type", "ipv4")]),
            o.dropped_v4,
        ));
        dropped.push((
            labels(&[("origin", &o.name), ("ip_type", "ipv6")]),
            o.dropped_v6,
        ));
    }
    // The firewall bouncer's figures are gauges holding totals, under its names and labels.
    let dropped: Vec<(Labels, i64)> = dropped.into_iter().map(|(l, v)| (l, gauge(v))).collect();
    let mut dropped_bytes = Vec::new();
    for o in &s.origins {
        dropped_bytes.push((
            labels(&[("origin", &o.name), ("ip_type", "ipv4")]),
            gauge(o.dropped_bytes_v4),
        ));
        dropped_bytes.push((
            labels(&[("origin", &o.name), ("ip_type", "ipv6")]),
            gauge(o.dropped_bytes_v6),
        ));
    }
    gauges(
        &mut r,
        "fw_bouncer_dropped_bytes",
        "Bytes dropped at the NIC, by the origin of the decision that banned their source",
        &dropped_bytes,
    );
    let b = |name: &str| s.bytes.get(name).copied().unwrap_or(0);
    gauges(
        &mut r,
        "ips_processed_bytes",
        "Bytes of the IP packets the XDP program judged",
        &[
            (
                labels(&[("ip_type", "ipv4")]),
                gauge(b("v4_passed") + b("v4_dropped") + b("v4_allowed")),
            ),
            (
                labels(&[("ip_type", "ipv6")]),
                gauge(b("v6_passed") + b("v6_dropped") + b("v6_allowed")),
            ),
        ],
    );
    gauges(
        &mut r,
        "fw_bouncer_dropped_packets",
        "Packets dropped at the NIC, by the origin of the decision that banned their source",
        &dropped,
    );
    gauges(
        &mut r,
        "fw_bouncer_processed_packets",
        "IP packets the XDP program judged",
        &[
            (
                labels(&[("ip_type", "ipv4")]),
                gauge(c("v4_passed") + c("v4_dropped") + c("v4_allowed")),
            ),
            (
                labels(&[("ip_type", "ipv6")]),
                gauge(c("v6_passed") + c("v6_dropped") + c("v6_allowed")),
            ),
        ],
    );
    let packets: Vec<(Labels, u64)> = s
        .counters
        .iter()
        .map(|(k, v)| (labels(&[("verdict", k)]), *v))
        .collect();
    counters(
        &mut r,
        "ips_packets",
        "Packets by the XDP program's verdict",
        &packets,
    );
    gauges(
        &mut r,
        "fw_bouncer_banned_ips",
        "Banned values in the kernel's maps",
        &[
            (
                labels(&[("origin", "all"), ("ip_type", "ipv4")]),
                gauge(s.maps.hosts_v4 + s.maps.nets_v4),
            ),
            (
                labels(&[("origin", "all"), ("ip_type", "ipv6")]),
                gauge(s.maps.hosts_v6 + s.maps.nets_v6),
            ),
        ],
    );
    let maps = [
        ("hosts_v4", s.maps.hosts_v4, s.capacity.hosts_v4),
        ("nets_v4", s.maps.nets_v4, s.capacity.nets_v4),
        ("hosts_v6", s.maps.hosts_v6, s.capacity.hosts_v6),
        ("nets_v6", s.maps.nets_v6, s.capacity.nets_v6),
    ];
    gauges(
        &mut r,
        "ips_map_entries",
        "Entries in each ban map",
        &maps
            .iter()
            .map(|(m, n, _)| (labels(&[("map", m)]), gauge(*n)))
            .collect::<Vec<_>>(),
    );
    gauges(
        &mut r,
        "ips_map_capacity",
        "What each ban map can hold",
        &maps
            .iter()
            .map(|(m, _, cap)| (labels(&[("map", m)]), gauge(*cap)))
            .collect::<Vec<_>>(),
    );
    gauges(
        &mut r,
        "ips_decisions_active",
        "Active decisions in the store",
        &[(Vec::new(), gauge(s.decisions))],
    );
    gauges(
        &mut r,
        "ips_decisions_not_enforced",
        "Active decisions the kernel's maps could not hold",
        &[(Vec::new(), gauge(s.not_enforced))],
    );
    gauges(
        &mut r,
        "ips_allowlist_entries",
        "Allowlist entries",
        &[(Vec::new(), gauge(s.allowlist))],
    );
    let d = &s.detection;
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    for src in &d.sources {
        lines.push((labels(&[("source", &src.name)]), src.lines));
        for (reason, n) in &src.skipped {
            skipped.push((labels(&[("source", &src.name), ("reason", reason)]), *n));
        }
    }
    counters(
        &mut r,
        "ips_parser_lines",
        "Log lines read, by source",
        &lines,
    );
    counters(
        &mut r,
        "ips_parser_skipped",
        "Log lines that gave no event, by source and reason",
        &skipped,
    );
    counters(
        &mut r,
        "ips_alerts",
        "Alerts raised by the scenarios",
        &[(Vec::new(), d.alerts)],
    );
    gauges(
        &mut r,
        "ips_buckets",
        "Scenario buckets in memory",
        &[(Vec::new(), gauge(d.buckets))],
    );
    gauges(
        &mut r,
        "ips_daemon_running",
        "1 when the figures come from a running daemon",
        &[(Vec::new(), i64::from(s.daemon_running))],
    );
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// One sample of the drop counters (for the dashboard's chart): when, and total drops per
/// origin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Unix ms.
    pub t_ms: i64,
    /// Origin -> packets dropped so far (IPv4 + IPv6).
    pub dropped: std::collections::BTreeMap<String, u64>,
}

/// The last hour of samples, one every [`SAMPLE_EVERY`].
pub type History = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Sample>>>;

/// How often the drop counters are sampled.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Samples the drop counters into `history` (an hour's worth kept) until `stopped` resolves;
/// then it lets go of its [`Handle`], so that the service can end.
pub async fn sample(
    handle: Handle,
    history: History,
    stopped: impl std::future::Future<Output = ()> + Send,
) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = every.tick() => {}
        }
        let Ok(s) = handle.status().await else {
            continue;
        };
        let dropped = s
            .origins
            .iter()
            .map(|o| (o.name.clone(), o.dropped_v4 + o.dropped_v6))
            .collect();
        let mut h = history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.push_back(Sample {
            t_ms: crate::calendar::now_ms(),
            dropped,
        });
        while h.len() > 360 {
            h.pop_front();
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Web {
    handle: Handle,
    history: History,
    live: Live,
}

async fn metrics(State(web): State<Web>) -> Response {
    let handle = web.handle;
    let sources = handle.lists.lock().map(|l| l.clone()).unwrap_or_default();
    match handle.status().await {
        Ok(s) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            render(&s, &web.live, &sources),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn json<T: Serialize>(r: Result<T, crate::service::ServiceError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
            ),
        ],
        include_str!("web/dashboard.html"),
    )
        .into_response()
}

async fn status(State(web): State<Web>) -> Response {
    json(web.handle.status().await)
}

async fn samples(State(web): State<Web>) -> Response {
    let h: Vec<Sample> = web
        .history
        .lock()
        .map(|h| h.iter().cloned().collect())
        .unwrap_or_default();
    axum::Json(h).into_response()
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    q: Option<String>,
}

async fn alerts(State(web): State<Web>, Query(l): Query<Limit>) -> Response {
    json(
        web.handle
            .alerts(crate::decisions::AlertQuery {
                limit: l.limit.unwrap_or(20).min(200),
                ..Default::default()
            })
            .await,
    )
}

/// Active decisions (the first 10,000), those whose value, origin or reason hold `q`.
async fn decisions(State(web): State<Web>, Query(l): Query<Limit>) -> Response {
    let page = web.handle.page(None, 10_000, None).await;
    let q = l.q.unwrap_or_default().to_lowercase();
    json(page.map(|p| {
        p.decisions
            .into_iter()
            .filter(|d| {
                q.is_empty()
                    || d.value.to_string().contains(&q)
                    || d.origin.to_string().to_lowercase().contains(&q)
                    || d.reason.to_lowercase().contains(&q)
            })
            .take(l.limit.unwrap_or(100).min(1000))
            .collect::<Vec<_>>()
    }))
}

async fn blocklists(State(web): State<Web>) -> Response {
    match crate::api::list_status(State(web.handle)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct UnbanBody {
    value: String,
}

/// `POST /api/unban {"value"}`: needs an admin token (checked by [`access`]).
async fn unban(State(web): State<Web>, axum::Json(b): axum::Json<UnbanBody>) -> Response {
    let Ok(value) = b.value.parse::<crate::prefix::Prefix>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{:?} is not an address or prefix", b.value),
        )
            .into_response();
    };
    json(
        web.handle
            .unban(value, None)
            .await
            .map(|n| serde_json::json!({ "removed": n })),
    )
}

/// Reading from loopback needs nothing; reading from elsewhere, and any change, needs an admin
/// token.
async fn access(
    State(web): State<Web>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let loopback = match req.extensions().get::<crate::api::serve::Caller>() {
        Some(crate::api::serve::Caller::Network(a)) => a.ip().is_loopback(),
        Some(crate::api::serve::Caller::Operator { .. }) => true,
        None => false,
    };
    let reading = req.method() == axum::http::Method::GET;
    if !(reading && loopback) {
        let admin = crate::api::crowdsec::key_of(&web.handle, req.headers())
            .await
            .ok()
            .flatten()
            .is_some_and(|k| k.role == crate::decisions::Role::Admin);
        if !admin {
            return (
                StatusCode::FORBIDDEN,
                "an admin token is needed (ips tokens add NAME), as Authorization: Bearer",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// The `[web]` router: `history` is what [`sample`] fills, `live` what the service records.
pub fn router(handle: Handle, history: History, live: Live) -> Router {
    let web = Web {
        handle,
        history,
        live,
    };
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/history", get(samples))
        .route("/api/alerts", get(alerts))
        .route("/api/decisions", get(decisions))
        .route("/api/blocklists", get(blocklists))
        .route("/api/unban", axum::routing::post(unban))
        .layer(axum::middleware::from_fn_with_state(web.clone(), access))
        .with_state(web)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::OriginStatus;

    #[test]
    fn figures_under_the_bouncer_names() {
        let s = Status {
            daemon_running: true,
            pin_dir: "/sys/fs/bpf/ips".into(),
            interfaces: vec![],
            maps: crate::enforcer::MapFill {
                hosts_v4: 3,
                ..Default::default()
            },
            capacity: crate::enforcer::MapCapacity {
                hosts_v4: 100,
                ..Default::default()
            },
            not_enforced: 0,
            decisions: 3,
            allowlist: 2,
            counters: [("v4_dropped".to_owned(), 7), ("v4_passed".to_owned(), 5)]
                .into_iter()
                .collect(),
            bytes: [("v4_dropped".to_owned(), 7 * 60)].into_iter().collect(),
            origins: vec![OriginStatus {
                id: 0,
                name: "manual".into(),
                dropped_v4: 7,
                dropped_v6: 0,
                dropped_bytes_v4: 7 * 60,
                dropped_bytes_v6: 0,
            }],
            detection: crate::pipeline::DetectionStats::default(),
            top: Default::default(),
        };
        let live = Live::default();
        live.alert("ssh-bf", "ban", Some(0.0007));
        let text = render(&s, &live, &[]);
        assert!(
            text.contains("fw_bouncer_dropped_packets{origin=\"manual\",ip_type=\"ipv4\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("fw_bouncer_processed_packets{ip_type=\"ipv4\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("fw_bouncer_banned_ips{origin=\"all\",ip_type=\"ipv4\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("fw_bouncer_dropped_bytes{origin=\"manual\",ip_type=\"ipv4\"} 420")
                && text.contains("ips_map_capacity{map=\"hosts_v4\"} 100"),
            "{text}"
        );
        assert!(
            text.contains("ips_alerts_decided_total{scenario=\"ssh-bf\",outcome=\"ban\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ips_detection_to_ban_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
