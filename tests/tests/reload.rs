//! Reloading `ips.toml` in a running daemon: SIGHUP and `ips reload` apply a new allowlist, log
//! source and scenarios without dropping enforcement or the buckets of unchanged scenarios; a
//! file with errors is refused and the running config kept; systemd hears READY, RELOADING and
//! STOPPING on its notify socket.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    io::Write,
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use ips_tests::{Lab, packet::Frame};

fn failed_logins(log: &std::path::Path, from: &str, n: u32, first: u32) {
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for i in first..first + n {
        writeln!(
            f,
            "Nov 27 10:00:{:02} web1 sshd[1]: Failed password for root from {from} port {} ssh2",
            i % 60,
            40000 + i
        )
        .unwrap();
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn banned(lab: &Lab, value: &str) -> bool {
    lab.ips_json(&["decisions", "list"])
        .as_array()
        .is_some_and(|v| v.iter().any(|d| d["value"] == value))
}

/// What systemd would read on its notify socket, until `want` arrives.
fn notified(rx: &UnixDatagram, want: &str) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = rx.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == want);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
    panic!("no {want} on the notify socket; got {got:?}");
}

#[test]
fn reload_applies_the_new_config_and_keeps_enforcement_and_buckets() {
    let mut lab = Lab::new("reload");
    let auth = lab.dir.join("auth.log");
    let auth2 = lab.dir.join("auth2.log");
    std::fs::write(&auth, "").unwrap();
    std::fs::write(&auth2, "").unwrap();
    let source = |path: &std::path::Path| {
        format!(
            "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n",
            path.display()
        )
    };
    lab.write_config(&format!(
        "[allowlist]\nentries = [\"192.0.2.10\"]\n{}",
        source(&auth)
    ));
    // The daemon's notify socket, as systemd would give it with Type=notify.
    let notify = lab.dir.join("notify.sock");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    lab.env
        .push(("NOTIFY_SOCKET".into(), notify.display().to_string()));
    lab.start_daemon();
    let ready = notified(&rx, "READY=1");
    assert!(ready.iter().any(|m| m.contains("READY=1")), "{ready:?}");

    lab.ips(&["decisions", "add", "198.51.100.77", "--reason", "reload"]);
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|i| Frame::udp("198.51.100.77", i).build())
        .collect();
    assert!(lab.exchange(&frames).is_empty());
    // Three of ssh-bf's six failures before the reload.
    failed_logins(&auth, "203.0.113.9", 3, 0);
    wait_for("three lines read", || {
        lab.ips_json(&["status"])["detection"]["sources"][0]["lines"].as_u64() == Some(3)
    });

    // A new allowlist entry, a second log source (so detection starts again), and a change
    // that only a restart applies.
    lab.write_config(&format!(
        "max_prefixes = 1000\n[allowlist]\nentries = [\"192.0.2.10\", \"192.0.2.11\"]\n{}{}",
        source(&auth),
        source(&auth2)
    ));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(lab.daemon_pid().unwrap() as i32, libc::SIGHUP) };
    let reloading = notified(&rx, "READY=1");
    assert!(
        reloading
            .iter()
            .any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    wait_for("the new allowlist entry", || {
        lab.ips(&["allow", "list"]).contains("192.0.2.11")
    });
    assert!(
        lab.exchange(&frames).is_empty(),
        "enforcement went on through the reload"
    );
    let log = lab.daemon_log();
    let kept: u64 = log
        .split("buckets_kept=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reload line: {log}"));
    assert!(kept >= 1, "the ssh buckets were kept: {kept}");
    assert!(
        lab.daemon_log()
            .contains("read only at start: restart ips to apply it"),
        "the [enforcer] change is said to need a restart"
    );
    // Three more failures: with the three from before the reload, ssh-bf overflows.
    failed_logins(&auth, "203.0.113.9", 3, 3);
    wait_for("the ban of 203.0.113.9", || banned(&lab, "203.0.113.9"));
    // The new source is read.
    failed_logins(&auth2, "203.0.113.10", 6, 0);
    wait_for("the ban from the new source", || {
        banned(&lab, "203.0.113.10")
    });
    // The first source's counters go on from before the reload.
    wait_for("six lines counted for the first source", || {
        lab.ips_json(&["status"])["detection"]["sources"][0]["lines"].as_u64() == Some(6)
    });

    // `ips reload` with nothing changed, then with errors.
    let out = lab.ips(&["reload"]);
    assert!(
        !out.contains("applied:") && out.contains("restart ips to apply): enforcer"),
        "only the pending restart is left: {out}"
    );
    let good = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(&lab.config, format!("{good}\n[allowlist]\nentries = 7\n")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(lab.daemon_pid().unwrap() as i32, libc::SIGHUP) };
    wait_for("the refusal in the log", || {
        lab.daemon_log()
            .contains("refused, the running one is kept")
    });
    // `ips reload` reads the file too, and says what is wrong without bothering the daemon.
    let refused = lab.ips_raw(&["reload"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("allowlist"),
        "the error names the problem: {err}"
    );
    std::fs::write(&lab.config, &good).unwrap();
    assert!(lab.ips(&["allow", "list"]).contains("192.0.2.11"));
    assert!(lab.exchange(&frames).is_empty());
    // A scenario file that does not compile is refused too.
    let bad = lab.dir.join("bad.toml");
    std::fs::write(&bad, "[[scenario]]\nname = \"x\"\ntype = \"sideways\"\n").unwrap();
    std::fs::write(
        &lab.config,
        format!(
            "{good}\n[detection]\nscenario_files = [\"{}\"]\n",
            bad.display()
        ),
    )
    .unwrap();
    let refused = lab.ips_raw(&["reload"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("sideways"));
    failed_logins(&auth, "203.0.113.12", 6, 10);
    wait_for("detection still running", || banned(&lab, "203.0.113.12"));

    lab.stop_daemon();
    notified(&rx, "STOPPING=1");
}
