//! Faults with real parts: the store's filesystem fills up under the running daemon.
use std::path::PathBuf;

use ips_tests::{Lab, packet::Frame, sh};

/// Unmounts a tmpfs when the test ends, however it ends (before the lab removes its folder).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_bans_keeps_enforcing_and_recovers() {
    let mut lab = Lab::new("diskfull");
    // The lab's folder (store, config, daemon log) on a small tmpfs of its own.
    let config = std::fs::read(&lab.config).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=4m",
        "ipstest",
        lab.dir.to_str().unwrap(),
    ]);
    let _unmount = Unmount(lab.dir.clone());
    std::fs::write(&lab.config, config).unwrap();
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    // Fill the disk.
    let filler = lab.dir.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // Bans are refused with the reason, and never half done.
    let mut refused = None;
    for i in 0..2000u32 {
        let value = std::net::Ipv4Addr::from(0x0501_0000 + 2 * i).to_string();
        let out = lab.ips_raw(&["decisions", "add", &value]);
        if !out.status.success() {
            refused = Some((value, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (value, err) = refused.expect("a full disk never refused a ban");
    assert!(err.contains("full"), "{err}");
    assert!(
        lab.ips_json(&["decisions", "list", "--value", &value])
            .as_array()
            .unwrap()
            .is_empty(),
        "{value} listed though refused"
    );
    let got = lab.exchange(&[
        Frame::udp(&value, 1).build(),
        Frame::udp("203.0.113.7", 2).build(),
    ]);
    assert_eq!(
        got,
        vec![1],
        "the refused ban reached the kernel, or the old one left it"
    );
    // Space comes back: bans work again, and the store is whole.
    std::fs::remove_file(&filler).unwrap();
    lab.ips(&["decisions", "add", &value]);
    assert!(
        lab.exchange(&[Frame::udp(&value, 3).build()]).is_empty(),
        "{}",
        lab.daemon_log()
    );
    lab.stop_daemon();
    let check = lab.ips_raw(&["-o", "json", "store", "check"]);
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(check["integrity"][0], "ok", "{check}");
    assert_eq!(check["bad_rows"], 0, "{check}");
}

/// `n` IPv4 addresses from `base` on, two apart (a list of them never aggregates).
fn spaced(base: u32, n: u32) -> impl Iterator<Item = std::net::Ipv4Addr> {
    (0..n).map(move |i| std::net::Ipv4Addr::from(base + 2 * i))
}

/// A million entries (with room for them and a manual ban in the maps).
const LIST: u32 = 1_000_000;

#[test]
fn a_daemon_killed_during_a_million_entry_import_agrees_with_the_kernel_after_restart() {
    let mut lab = Lab::new("killimport");
    lab.write_config("max_hosts = 1100000\n");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    let list = lab.dir.join("big.txt");
    let mut text = String::with_capacity(15 << 20);
    for a in spaced(0x0B00_0000, LIST) {
        text.push_str(&a.to_string());
        text.push('\n');
    }
    std::fs::write(&list, text).unwrap();
    let import = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.a))
        .arg(ips_tests::ips_bin())
        .arg("--config")
        .arg(&lab.config)
        .args(["blocklist", "import", "--name", "big"])
        .arg(&list)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed as soon as the service starts on it: in the store's transaction or the maps.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lab.daemon_log().contains("Importing a list") {
        assert!(std::time::Instant::now() < deadline, "{}", lab.daemon_log());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    lab.kill_daemon();
    let out = import.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the import finished before the kill: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // After a restart the store and the maps agree: all of the list or none of it, plus the
    // manual ban, in both.
    lab.start_daemon();
    let status = lab.ips_json(&["status"]);
    let stored = status["decisions"].as_u64().unwrap();
    assert!(stored == 1 || stored == u64::from(LIST) + 1, "{status}");
    assert_eq!(
        status["maps"]["hosts_v4"].as_u64(),
        Some(stored),
        "{status}"
    );
    assert_eq!(status["not_enforced"], 0, "{status}");
    let listed = stored > 1;
    let sample: Vec<Vec<u8>> = spaced(0x0B00_0000, LIST)
        .step_by(99_991)
        .enumerate()
        .map(|(i, a)| Frame::udp(&a.to_string(), i as u32 + 1).build())
        .chain([Frame::udp("203.0.113.7", 100).build()])
        .collect();
    let passed = lab.exchange(&sample);
    if listed {
        assert!(passed.is_empty(), "{passed:?}");
    } else {
        assert_eq!(passed.len(), sample.len() - 1, "{passed:?}");
    }
    // And the list can be imported whole now.
    let r = lab.ips_json(&[
        "blocklist",
        "import",
        "--name",
        "big",
        list.to_str().unwrap(),
    ]);
    assert_eq!(r["entries"], LIST, "{r}");
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["maps"]["hosts_v4"], LIST + 1, "{status}");
    lab.stop_daemon();
    let check = lab.ips_raw(&["-o", "json", "store", "check"]);
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(check["integrity"][0], "ok", "{check}");
}

#[test]
fn fifty_thousand_bans_expiring_at_once_let_no_long_banned_packet_through() {
    use ips::decisions::{DecisionStore, NewDecision, Origin, SqliteStore};
    use std::time::{Duration, Instant};
    let mut lab = Lab::new("expiry");
    let now = ips::calendar::now_ms();
    let expiring_in = 12_000;
    {
        let mut store = SqliteStore::open(&lab.db_path()).unwrap();
        let ban = |a: std::net::Ipv4Addr, ms: i64| NewDecision {
            value: a.to_string().parse().unwrap(),
            origin: Origin::Manual,
            reason: "test".into(),
            duration_ms: ms,
        };
        let short: Vec<_> = spaced(0x0C00_0000, 50_000)
            .map(|a| ban(a, expiring_in))
            .collect();
        store.upsert(&short, now).unwrap();
        let long: Vec<_> = spaced(0x0D00_0000, 1_000)
            .map(|a| ban(a, 3_600_000))
            .collect();
        store.upsert(&long, now).unwrap();
    }
    lab.start_daemon();
    assert_eq!(lab.ips_json(&["status"])["maps"]["hosts_v4"], 51_000);
    let expires_at = Instant::now()
        + Duration::from_millis((now + expiring_in - ips::calendar::now_ms()).max(0) as u64);
    let window = (
        expires_at - Duration::from_millis(1500),
        expires_at + Duration::from_millis(2500),
    );
    std::thread::sleep(window.0.saturating_duration_since(Instant::now()));

    // Through the window: frames from the long-banned sources, and status calls that go
    // through the decision service's thread.
    let (tx, rx) = lab.sockets();
    let sources: Vec<String> = spaced(0x0D00_0000, 1_000).map(|a| a.to_string()).collect();
    let socket = lab.socket();
    let prober = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        while Instant::now() < window.1 {
            let started = Instant::now();
            let answer = ips::api::Client::new(&socket).get::<serde_json::Value>("/v1/status");
            latencies.push(started.elapsed());
            if let Err(e) = answer {
                failures.push(e.to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (latencies, failures)
    });
    let mut sent = 0u32;
    while Instant::now() < window.1 {
        for s in sources.iter().step_by(7) {
            sent += 1;
            tx.send(&Frame::udp(s, sent).build());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let passed = rx.received_ids(Duration::from_millis(300));
    let (latencies, failures) = prober.join().unwrap();
    assert!(sent > 10_000, "{sent}");
    assert!(
        passed.is_empty(),
        "{} of {sent} frames from long-banned sources passed during the expiry",
        passed.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    let slowest = latencies.iter().max().unwrap();
    eprintln!(
        "{} status calls during the expiry, slowest {slowest:?}",
        latencies.len()
    );

    // The 50,000 are gone from the store and the kernel; the 1,000 stay.
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["decisions"], 1_000, "{status}");
    assert_eq!(status["maps"]["hosts_v4"], 1_000, "{status}");
    let expired = spaced(0x0C00_0000, 50_000).nth(777).unwrap().to_string();
    assert_eq!(
        lab.exchange(&[
            Frame::udp(&expired, 1).build(),
            Frame::udp(&sources[999], 2).build()
        ]),
        vec![1]
    );
}
