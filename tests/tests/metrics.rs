//! `/metrics` of a running daemon, read over HTTP on the loopback of its namespace: after frames
//! from a manually banned source were dropped by the real XDP program, the firewall bouncer's
//! dropped-packets gauge for `origin="manual"` counts them, the map fill matches `ips status`,
//! and `ips metrics` shows the same.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::io::{Read, Write};

use ips_tests::{Lab, in_netns, packet::Frame};

/// `GET path` on 127.0.0.1:6060 of namespace `ns`: (head, body).
fn get(ns: &str, path: &'static str) -> (String, String) {
    in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect("127.0.0.1:6060").unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    })
}

/// The value of the sample `name{labels}` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_count_what_the_kernel_dropped() {
    let mut lab = Lab::new("metrics");
    lab.write_config("");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "45.66.1.2", "--reason", "metrics"]);
    let passed = lab.exchange(&[
        Frame::udp("45.66.1.2", 1).build(),
        Frame::udp("45.66.1.2", 2).build(),
        Frame::udp("45.66.1.2", 3).build(),
        Frame::udp("45.66.1.3", 4).build(),
    ]);
    assert_eq!(passed, vec![4]);
    let (head, body) = get(&lab.a, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    let dropped = sample(
        &body,
        "fw_bouncer_dropped_packets{origin=\"manual\",ip_type=\"ipv4\"}",
    )
    .unwrap_or(0.0);
    assert!(dropped >= 3.0, "{body}");
    let status = lab.ips_json(&["status"]);
    let hosts = status["maps"]["hosts_v4"].as_u64().unwrap() as f64;
    assert_eq!(
        sample(&body, "ips_map_entries{map=\"hosts_v4\"}"),
        Some(hosts),
        "{body}"
    );
    assert_eq!(
        sample(&body, "ips_decisions_active"),
        Some(status["decisions"].as_u64().unwrap() as f64),
        "{body}"
    );
    // The same figures on a terminal.
    let table = lab.ips(&["metrics"]);
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("manual") && l.contains('3')),
        "{table}"
    );
    let json = lab.ips_json(&["metrics"]);
    assert_eq!(json["decisions"], status["decisions"]);
    let (head, _) = get(&lab.a, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
