//! Detection end to end: lines appended to a followed log file make the real daemon ban their
//! source, and packets from it are dropped by the real XDP program on a veth pair.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    io::Write,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use ips_tests::{Lab, packet::Frame};

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
}

fn failures(src: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!("Nov 27 10:00:{i:02} web1 sshd[4242]: Failed password for root from {src} port {} ssh2", 40000 + i)
        })
        .collect()
}

/// Sends a packet from `src` every 20 ms until one is dropped; returns how long that took.
fn wait_for_drop(lab: &Lab, src: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut id = 1000;
    while started.elapsed() < within {
        id += 1;
        if lab
            .exchange_quick(&[Frame::udp(src, id).build()])
            .is_empty()
        {
            return Some(started.elapsed());
        }
    }
    None
}

fn detection_lab(tag: &str) -> (Lab, std::path::PathBuf) {
    let lab = Lab::new(tag);
    let log = lab.dir.join("auth.log");
    std::fs::write(&log, "").unwrap();
    lab.write_config(&format!(
        "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n",
        log.display()
    ));
    (lab, log)
}

#[test]
fn brute_force_in_a_followed_file_is_dropped_at_xdp() {
    let (mut lab, log) = detection_lab("det");
    lab.start_daemon();
    // Under capacity: nothing happens.
    append(&log, &failures("203.0.113.50", 5));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lab.exchange(&[Frame::udp("203.0.113.50", 1).build()]),
        vec![1]
    );
    // The sixth overflows ssh-bf: the source is banned and dropped.
    append(&log, &failures("203.0.113.50", 1));
    let took = wait_for_drop(&lab, "203.0.113.50", Duration::from_secs(3));
    assert!(
        took.is_some(),
        "not dropped; daemon log:\n{}",
        lab.daemon_log()
    );
    // A clean source still passes.
    assert_eq!(
        lab.exchange(&[Frame::udp("203.0.113.51", 2).build()]),
        vec![2]
    );
    let alerts = lab.ips_json(&["alerts", "list"]);
    assert_eq!(alerts[0]["scenario"], "ssh-bf");
    assert_eq!(alerts[0]["outcome"], "ban");
    assert_eq!(alerts[0]["value"], "203.0.113.50");
    let id = alerts[0]["id"].as_i64().unwrap().to_string();
    let one = lab.ips_json(&["alerts", "inspect", &id]);
    assert!(!one["evidence"].as_array().unwrap().is_empty());
    let decisions = lab.ips_json(&["decisions", "list", "--value", "203.0.113.50"]);
    assert_eq!(decisions[0]["origin"], "detection");
    assert_eq!(decisions[0]["reason"], "ssh-bf");
    let deadline = Instant::now() + Duration::from_secs(3);
    while lab.ips_json(&["status"])["detection"]["sources"][0]["events"] != 6 {
        assert!(Instant::now() < deadline, "events never counted");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rotation_in_the_middle_loses_no_line() {
    let (mut lab, log) = detection_lab("rot");
    lab.start_daemon();
    append(&log, &failures("203.0.113.60", 3));
    thread::sleep(Duration::from_millis(300));
    // Rotate by rename; the rest of the attack lands in the new file.
    std::fs::rename(&log, lab.dir.join("auth.log.1")).unwrap();
    append(&log, &failures("203.0.113.60", 3));
    assert!(
        wait_for_drop(&lab, "203.0.113.60", Duration::from_secs(5)).is_some(),
        "3 + 3 lines across a rotation did not ban; daemon log:\n{}",
        lab.daemon_log()
    );
    // copytruncate: the file is cut to zero and written again.
    std::fs::write(&log, "").unwrap();
    thread::sleep(Duration::from_millis(300));
    append(&log, &failures("203.0.113.61", 6));
    assert!(wait_for_drop(&lab, "203.0.113.61", Duration::from_secs(5)).is_some());
}

#[test]
fn restart_resumes_at_the_saved_offset() {
    let (mut lab, log) = detection_lab("resume");
    lab.start_daemon();
    append(&log, &failures("203.0.113.70", 3));
    thread::sleep(Duration::from_millis(500));
    lab.stop_daemon();
    // Written while the daemon is down: must be read after the restart, and the three lines
    // before must not be read again.
    append(&log, &failures("203.0.113.71", 6));
    lab.start_daemon();
    assert!(
        wait_for_drop(&lab, "203.0.113.71", Duration::from_secs(5)).is_some(),
        "lines written while down were not read; daemon log:\n{}",
        lab.daemon_log()
    );
    // Counters are published every 200 ms: wait for them, then check nothing was read twice.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut lines = 0;
    while Instant::now() < deadline {
        lines = lab.ips_json(&["status"])["detection"]["sources"][0]["lines"]
            .as_u64()
            .unwrap_or(0);
        if lines >= 6 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(500));
    let status = lab.ips_json(&["status"]);
    assert_eq!(lines, 6);
    assert_eq!(status["detection"]["sources"][0]["lines"], 6, "{status}");
}

/// Corrupt lines (a multi-byte character where a timestamp is read, binary junk) are skipped
/// and counted; they never stop detection.
#[test]
fn corrupt_lines_are_skipped_and_detection_goes_on() {
    let (mut lab, log) = detection_lab("corrupt");
    lab.start_daemon();
    let junk = [
        "Nov 3\u{2bd} 16:02:44 web01 sshd[1]: Failed password for root from 203.0.113.80 port 1 ssh2",
        "Nov 30 1\u{2bd}:02:44 web01 sshd[1]: Failed password for root from 203.0.113.80 port 1 ssh2",
        "2026-11-3\u{2bd}T16:02:44+00:00 web01 sshd[1]: Invalid user a from 203.0.113.80",
        "\u{1}\u{7f}\u{fffd}\u{fffd} [",
    ];
    append(&log, &junk.map(str::to_owned));
    append(&log, &failures("203.0.113.81", 6));
    assert!(
        wait_for_drop(&lab, "203.0.113.81", Duration::from_secs(5)).is_some(),
        "detection stopped after corrupt lines; daemon log:\n{}",
        lab.daemon_log()
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = lab.ips_json(&["status"]);
        let source = &status["detection"]["sources"][0];
        let skipped: u64 = source["skipped"].as_object().map_or(0, |m| {
            m.values().filter_map(serde_json::Value::as_u64).sum()
        });
        if source["lines"] == 10 && skipped == 4 {
            assert_eq!(source["events"], 6, "{status}");
            assert_eq!(status["detection"]["restarts"], 0, "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        thread::sleep(Duration::from_millis(100));
    }
}
