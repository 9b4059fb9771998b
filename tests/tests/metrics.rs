//! `/metrics` of a running daemon, read over HTTP on the loopback of its namespace: after frames
//! from a manually banned source were dropped by the real XDP program, the firewall bouncer's
//! dropped-packets gauge for `origin="manual"` counts them, the map fill matches `ips status`,
//! and `ips metrics` shows the same.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::io::Write;

use ips_tests::{Lab, http_in_netns, packet::Frame};

/// `GET path` on 127.0.0.1:6060 of namespace `ns`: (head, body).
fn get(ns: &str, path: &str) -> (String, String) {
    let out = http_in_netns(
        ns,
        "127.0.0.1:6060",
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"),
    );
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_count_what_the_kernel_dropped() {
    let mut lab = Lab::new("metrics");
    let log = lab.dir.join("auth.log");
    std::fs::write(&log, "").unwrap();
    lab.write_config(&format!(
        "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n",
        log.display()
    ));
    lab.start_daemon();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..6 {
        writeln!(
            f,
            "Nov 27 10:00:0{i} web1 sshd[1]: Failed password for root from 45.66.9.9 port {} ssh2",
            40000 + i
        )
        .unwrap();
    }
    drop(f);
    let started = std::time::Instant::now();
    while lab.ips_json(&["status"])["detection"]["alerts"].as_u64() != Some(1)
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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
    // Bytes too: the XDP program adds each dropped frame's length.
    let frame = Frame::udp("45.66.1.2", 1).build().len() as f64;
    assert_eq!(
        sample(
            &body,
            "fw_bouncer_dropped_bytes{origin=\"manual\",ip_type=\"ipv4\"}"
        ),
        Some(dropped * frame),
        "{body}"
    );
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
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("45.66.1.2") && l.contains("(manual)")),
        "the dropped source is among the top ones:\n{table}"
    );
    let json = lab.ips_json(&["metrics"]);
    assert_eq!(json["decisions"], status["decisions"]);
    // The alert, its outcome and how long until its ban was in the kernel.
    assert_eq!(
        sample(
            &body,
            "ips_alerts_decided_total{scenario=\"ssh-bf\",outcome=\"ban\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "ips_detection_to_ban_seconds_count"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("ips_parser_lines_total{{source=\"{}\"}}", log.display())
        ),
        Some(6.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "ips_api_requests_total{transport=\"socket\",class=\"2xx\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "the CLI's requests are counted: {body}"
    );
    let (head, _) = get(&lab.a, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
