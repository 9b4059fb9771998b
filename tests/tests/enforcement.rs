//! Real packets through the real XDP program on a veth pair, with the real daemon and CLI.
use std::{thread, time::Duration};

use ips_tests::{Lab, packet::Frame};

const QINQ: u16 = 0x88A8;
const DOT1Q: u16 = 0x8100;

fn ids(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames.iter().map(Frame::build).collect()
}

#[test]
fn ipv4_host_and_prefix_bans_drop_and_clean_sources_pass() {
    let mut lab = Lab::new("v4");
    lab.start_daemon();
    lab.ips(&[
        "decisions",
        "add",
        "203.0.113.7",
        "--duration",
        "1h",
        "--reason",
        "test",
    ]);
    lab.ips(&["decisions", "add", "198.51.100.0/24", "--duration", "1h"]);
    let got = lab.exchange(&ids(&[
        Frame::udp("203.0.113.7", 1),  // banned /32
        Frame::udp("203.0.113.8", 2),  // its neighbour: clean
        Frame::udp("198.51.100.1", 3), // inside the /24
        Frame::udp("198.51.100.254", 4),
        Frame::udp("198.51.101.1", 5), // just outside
    ]));
    assert_eq!(got, vec![2, 5], "{}", lab.daemon_log());
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["counters"]["v4_dropped"], 3);
    assert_eq!(status["maps"]["hosts_v4"], 1);
    assert_eq!(status["maps"]["nets_v4"], 1);
    assert_eq!(status["origins"][0]["name"], "manual");
    assert_eq!(status["origins"][0]["dropped_v4"], 3);
}

#[test]
fn ipv6_host_and_prefix_bans() {
    let mut lab = Lab::new("v6");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "2001:db8::7", "2001:db8:1:2::/64"]);
    let got = lab.exchange(&ids(&[
        Frame::udp("2001:db8::7", 1),
        Frame::udp("2001:db8::8", 2),
        Frame::udp("2001:db8:1:2:ffff::1", 3),
        Frame::udp("2001:db8:1:3::1", 4),
    ]));
    assert_eq!(got, vec![2, 4]);
    assert_eq!(lab.counter("v6_dropped"), 2);
}

#[test]
fn vlan_tagged_frames_single_and_double() {
    let mut lab = Lab::new("vlan");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7", "2001:db8::7"]);
    let got = lab.exchange(&ids(&[
        Frame::udp("203.0.113.7", 1).vlan(DOT1Q, 100),
        Frame::udp("203.0.113.7", 2)
            .vlan(QINQ, 200)
            .vlan(DOT1Q, 100),
        Frame::udp("2001:db8::7", 3)
            .vlan(QINQ, 200)
            .vlan(DOT1Q, 100),
        Frame::udp("203.0.113.9", 4).vlan(DOT1Q, 100),
        Frame::udp("203.0.113.9", 5)
            .vlan(QINQ, 200)
            .vlan(DOT1Q, 100),
    ]));
    assert_eq!(got, vec![4, 5]);
}

#[test]
fn ipv4_mapped_ipv6_source_is_matched_as_ipv4() {
    let mut lab = Lab::new("mapped");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.0/24"]);
    let before = lab.counter("v4_dropped");
    let got = lab.exchange(&ids(&[
        Frame::udp("::ffff:203.0.113.50", 1),
        Frame::udp("::ffff:192.0.2.50", 2),
    ]));
    // The kernel's IPv6 stack itself discards mapped sources later, but the packet socket sees
    // what XDP passed: the clean one.
    assert_eq!(got, vec![2]);
    assert_eq!(lab.counter("v4_dropped"), before + 1);
    // Banning the mapped spelling bans the IPv4 address.
    lab.ips(&["decisions", "add", "::ffff:192.0.2.50"]);
    let list = lab.ips_json(&["decisions", "list", "--value", "192.0.2.50"]);
    assert_eq!(list[0]["value"], "192.0.2.50");
    assert!(
        lab.exchange(&ids(&[Frame::udp("::ffff:192.0.2.50", 3)]))
            .is_empty()
    );
}

#[test]
fn allowlisted_address_inside_a_banned_prefix_passes() {
    let mut lab = Lab::new("allow");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.0/24"]);
    lab.ips(&["allow", "add", "203.0.113.9", "--reason", "office"]);
    let got = lab.exchange(&ids(&[
        Frame::udp("203.0.113.9", 1),
        Frame::udp("203.0.113.10", 2),
    ]));
    assert_eq!(got, vec![1]);
    assert_eq!(lab.counter("v4_allowed"), 1);
    // Banning an allowlisted address is refused with a clear error.
    let out = lab.ips_raw(&["decisions", "add", "203.0.113.9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowlisted"));
    // Removing the entry lets the /24 drop it again.
    lab.ips(&["allow", "delete", "203.0.113.9"]);
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.9", 3)]))
            .is_empty()
    );
}

#[test]
fn delete_unbans() {
    let mut lab = Lab::new("del");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7", "2001:db8::/64"]);
    assert!(
        lab.exchange(&ids(&[
            Frame::udp("203.0.113.7", 1),
            Frame::udp("2001:db8::1", 2)
        ]))
        .is_empty()
    );
    lab.ips(&["decisions", "delete", "203.0.113.7"]);
    lab.ips(&["decisions", "delete", "2001:db8::/64"]);
    let got = lab.exchange(&ids(&[
        Frame::udp("203.0.113.7", 3),
        Frame::udp("2001:db8::1", 4),
    ]));
    assert_eq!(got, vec![3, 4]);
    assert_eq!(lab.ips_json(&["decisions", "list"]), serde_json::json!([]));
}

#[test]
fn expiry_unbans_within_a_second_and_spares_the_rest() {
    let mut lab = Lab::new("expiry");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7", "--duration", "2s"]);
    lab.ips(&["decisions", "add", "203.0.113.8", "--duration", "1h"]);
    let added = lab.ips_json(&["decisions", "list", "--value", "203.0.113.7"]);
    let expires_ms = added[0]["expires_ms"].as_i64().unwrap();
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 1)]))
            .is_empty()
    );
    // Poll until it passes; it must pass within 1 s of its expiry.
    let mut passed_at = None;
    for i in 0..40 {
        if lab.exchange(&ids(&[Frame::udp("203.0.113.7", 100 + i)])) == vec![100 + i] {
            passed_at = Some(ips::calendar::now_ms());
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let passed_at = passed_at.expect("the expired ban was never lifted");
    assert!(
        passed_at <= expires_ms + 1000 + 400,
        "lifted {} ms after expiry",
        passed_at - expires_ms
    );
    // The other ban is untouched.
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.8", 2)]))
            .is_empty()
    );
}

#[test]
fn killed_daemon_keeps_dropping_and_restart_reconciles() {
    let mut lab = Lab::new("kill");
    lab.start_daemon();
    lab.ips(&[
        "decisions",
        "add",
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::/64",
    ]);
    lab.kill_daemon();
    // No daemon: the pinned program and maps keep enforcing.
    let got = lab.exchange(&ids(&[
        Frame::udp("203.0.113.7", 1),
        Frame::udp("198.51.100.3", 2),
        Frame::udp("2001:db8::3", 3),
        Frame::udp("192.0.2.1", 4),
    ]));
    assert_eq!(got, vec![4]);
    // `ips status` works from the pins with the daemon down.
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["daemon_running"], false);
    assert_eq!(status["maps"]["hosts_v4"], 1);

    // While it is down, the store changes (a ban is lifted, another added) and a stray entry
    // appears in the kernel: the restarted daemon makes the kernel match the store.
    {
        use ips::decisions::{DecisionStore, NewDecision, Origin, SqliteStore};
        let mut store = SqliteStore::open(&lab.db_path()).unwrap();
        store
            .delete(
                &"198.51.100.0/24".parse().unwrap(),
                None,
                ips::calendar::now_ms(),
            )
            .unwrap();
        store
            .upsert(
                &[NewDecision {
                    value: "192.0.2.99".parse().unwrap(),
                    origin: Origin::Manual,
                    reason: "offline".into(),
                    duration_ms: 3_600_000,
                }],
                ips::calendar::now_ms(),
            )
            .unwrap();
        let mut maps = ips::enforcer::KernelMaps::open(&lab.pin_dir).unwrap();
        let mut stray = ips::enforcer::Diff::default();
        stray.upsert.push(("192.0.2.200".parse().unwrap(), 0));
        maps.apply(&stray).unwrap();
    }
    lab.start_daemon();
    let got = lab.exchange(&ids(&[
        Frame::udp("203.0.113.7", 5),
        Frame::udp("198.51.100.3", 6),
        Frame::udp("2001:db8::3", 7),
        Frame::udp("192.0.2.99", 8),
        Frame::udp("192.0.2.200", 9),
    ]));
    assert_eq!(got, vec![6, 9]);
    let maps = ips::enforcer::KernelMaps::open(&lab.pin_dir).unwrap();
    let mut kernel = Vec::new();
    maps.for_each_ban(&mut |p, _| kernel.push(p.to_string()))
        .unwrap();
    kernel.sort();
    assert_eq!(kernel, vec!["192.0.2.99", "2001:db8::/64", "203.0.113.7"]);
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["daemon_running"], true);
    assert_eq!(status["interfaces"][0]["mode"], "native");
}

#[test]
fn detach_removes_program_and_pins() {
    let mut lab = Lab::new("detach");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    lab.stop_daemon();
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 1)]))
            .is_empty()
    );
    let out = lab.ips(&["detach", "--iface", &lab.a_if.clone()]);
    assert!(out.contains("detached"), "{out}");
    assert!(!lab.pin_dir.exists(), "pins left behind");
    assert_eq!(lab.exchange(&ids(&[Frame::udp("203.0.113.7", 2)])), vec![2]);
}

#[test]
fn several_interfaces_in_forced_generic_mode() {
    let mut lab = Lab::new("multi");
    let (a2, b2) = lab.add_pair();
    lab.write_config("");
    lab.set_mode("generic");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    let f = ids(&[Frame::udp("203.0.113.7", 1), Frame::udp("192.0.2.1", 2)]);
    assert_eq!(lab.exchange(&f), vec![2]);
    assert_eq!(lab.exchange_on(&a2, &b2, &f), vec![2]);
    let status = lab.ips_json(&["status"]);
    let ifaces = status["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 2, "{status}");
    assert!(ifaces.iter().all(|i| i["mode"] == "generic"), "{status}");
    // Detaching one leaves the other enforcing, and the pins in place.
    lab.ips(&["detach", "--iface", &a2]);
    assert_eq!(lab.exchange_on(&a2, &b2, &f), vec![1, 2]);
    assert_eq!(lab.exchange(&f), vec![2]);
    assert!(lab.pin_dir.exists());
}

#[test]
fn detach_with_the_daemon_running_takes_the_program_off_also_a_reused_link() {
    let mut lab = Lab::new("detachrun");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    // The second start reuses the pinned link (and swaps the program in).
    lab.stop_daemon();
    lab.start_daemon();
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 1)]))
            .is_empty()
    );
    let out = lab.ips(&["detach", "--iface", &lab.a_if.clone()]);
    assert!(out.contains("detached"), "{out}");
    // At once, with the daemon still running: nothing is dropped any more.
    assert_eq!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 2)])),
        vec![2],
        "{}",
        lab.daemon_log()
    );
    assert!(!lab.pin_dir.exists(), "pins left behind");
}

#[test]
fn catch_all_and_too_wide_bans_are_refused() {
    let mut lab = Lab::new("guard");
    lab.start_daemon();
    for v in ["0.0.0.0/0", "::/0", "::ffff:0:0/96"] {
        let out = lab.ips_raw(&["decisions", "add", v, "--force"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{v} was accepted");
        assert!(err.contains("covers every address"), "{v}: {err}");
    }
    let out = lab.ips_raw(&["decisions", "add", "5.0.0.0/7"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("min_prefix_v4"),
        "{err}"
    );
    let out = lab.ips_raw(&["decisions", "add", "2a00::/15"]);
    assert!(!out.status.success());
    // Nothing of that reached the store or the kernel.
    let status = lab.ips_json(&["status"]);
    assert_eq!(
        (
            status["decisions"].as_u64(),
            status["maps"]["nets_v4"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        lab.exchange(&ids(&[
            Frame::udp("5.1.2.3", 1),
            Frame::udp("192.0.2.1", 2)
        ])),
        vec![1, 2]
    );
    // The operator can force a wide prefix, never a catch-all.
    lab.ips(&["decisions", "add", "5.0.0.0/7", "--force"]);
    assert_eq!(
        lab.exchange(&ids(&[
            Frame::udp("5.1.2.3", 3),
            Frame::udp("192.0.2.1", 4)
        ])),
        vec![4]
    );
}

#[test]
fn a_second_daemon_with_the_same_config_stops_before_touching_the_kernel() {
    use std::process::{Command, Stdio};
    let mut lab = Lab::new("twice");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    let mut second = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.a))
        .arg(ips_tests::ips_bin())
        .arg("--config")
        .arg(&lab.config)
        .args(["run", "--iface", &lab.a_if])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = second.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second daemon did not stop");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success());
    assert!(err.contains("another `ips run`"), "{err}");
    // The first one is untouched: it answers and still drops.
    assert_eq!(lab.ips_json(&["status"])["daemon_running"], true);
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 1)]))
            .is_empty()
    );
    // It stopped before loading, reconciling or attaching anything.
    assert!(
        !err.contains("Reconciled") && !err.contains("Attached") && !err.contains("Reused"),
        "{err}"
    );
}

#[test]
fn cli_and_api_limits() {
    let mut lab = Lab::new("limits");
    lab.start_daemon();
    // A reason is at most 1024 characters; control characters never reach the terminal raw.
    let long = "r".repeat(1100);
    let out = lab.ips_raw(&["decisions", "add", "203.0.113.7", "--reason", &long]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 1024"));
    lab.ips(&[
        "decisions",
        "add",
        "203.0.113.7",
        "--reason",
        "a\u{1b}[31mred\nline",
    ]);
    let table = lab.ips(&["decisions", "list"]);
    assert!(
        !table.contains('\u{1b}') && table.contains("\\u{1b}[31mred\\nline"),
        "{table}"
    );
    // No ban lasts longer than profiles.max_ban (7 days by default).
    lab.ips(&[
        "decisions",
        "add",
        "203.0.113.8",
        "--duration",
        "9999999999d",
    ]);
    let d = lab.ips_json(&["decisions", "list", "--value", "203.0.113.8"]);
    let left = d[0]["expires_ms"].as_i64().unwrap_or(0) - d[0]["created_ms"].as_i64().unwrap_or(0);
    assert!(left <= 7 * 86_400_000 && left > 6 * 86_400_000, "{d}");
    // Output cut short ends quietly.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "nsenter --net=/run/netns/{} {} --config {} status | head -1",
            lab.a,
            ips_tests::ips_bin().display(),
            lab.config.display()
        ))
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// `rm -rf` of the pin directory while the daemon runs: the program stays attached (the daemon
/// holds the link), the pins come back, and enforcement again outlives the daemon.
#[test]
fn removed_pins_come_back_and_nothing_passes_meanwhile() {
    let mut lab = Lab::new("pins");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    std::fs::remove_dir_all(&lab.pin_dir).expect("rm -rf pins");
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 1)]))
            .is_empty(),
        "the program left with its pins"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lab.pin_dir.join("links").join(&lab.a_if).exists() {
        assert!(std::time::Instant::now() < deadline, "pins not restored");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(lab.daemon_log().contains("pinned them again"));
    lab.kill_daemon();
    assert!(
        lab.exchange(&ids(&[Frame::udp("203.0.113.7", 2)]))
            .is_empty(),
        "enforcement did not outlive the daemon"
    );
}
