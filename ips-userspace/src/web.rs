//! The `[web]` listener (127.0.0.1:6060 by default): `/metrics` in the Prometheus text format.
//!
//! Packet counters carry the CrowdSec firewall bouncer's names and labels
//! (`fw_bouncer_dropped_packets{origin, ip_type}`, `fw_bouncer_processed_packets{ip_type}`,
//! `fw_bouncer_banned_ips{origin, ip_type}`), so dashboards made for it read ips; ips's own
//! figures are `ips_*`. Every figure comes from the same [`Status`] that `ips status` shows.
use std::net::SocketAddr;

use axum::{
    Router,
    extract::State,
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

/// The Prometheus text of `s`.
pub fn render(s: &Status) -> String {
    let mut r = Registry::default();
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

async fn metrics(State(handle): State<Handle>) -> Response {
    match handle.status().await {
        Ok(s) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            render(&s),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The `[web]` router.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(handle)
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
            origins: vec![OriginStatus {
                id: 0,
                name: "manual".into(),
                dropped_v4: 7,
                dropped_v6: 0,
            }],
            detection: crate::pipeline::DetectionStats::default(),
        };
        let text = render(&s);
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
            text.contains("ips_map_capacity{map=\"hosts_v4\"} 100"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
