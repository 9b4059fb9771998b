//! Capacity is an outcome, not a silent split: with small maps, the real daemon refuses what the
//! kernel cannot hold (and never lists it as banned), imports what fits of a list, and starts
//! with more decisions than fit, saying so.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use ips_tests::{Lab, packet::Frame};

const SMALL: &str = "max_hosts = 100\nmax_prefixes = 50\n";

/// `n` single IPv4 addresses from the `first`-th on, two apart (so a list of them never
/// aggregates into prefixes): 5.1.0.0, 5.1.0.2, ...
fn v4_hosts(first: u32, n: u32) -> Vec<String> {
    (first..first + n)
        .map(|i| std::net::Ipv4Addr::from(0x0501_0000 + 2 * i).to_string())
        .collect()
}

fn add(lab: &Lab, values: &[String]) -> std::process::Output {
    let mut args = vec!["decisions", "add"];
    args.extend(values.iter().map(String::as_str));
    lab.ips_raw(&args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bans the first `n` of [`v4_hosts`] for an hour, in the lab's store, with no daemon.
fn ban_offline(lab: &Lab, n: u32) {
    use ips::decisions::{DecisionStore, NewDecision, Origin, SqliteStore};
    let mut store = SqliteStore::open(&lab.db_path()).unwrap();
    let batch: Vec<NewDecision> = v4_hosts(0, n)
        .iter()
        .map(|v| NewDecision {
            value: v.parse().unwrap(),
            origin: Origin::Manual,
            reason: "offline".into(),
            duration_ms: 3_600_000,
        })
        .collect();
    store.upsert(&batch, ips::calendar::now_ms()).unwrap();
}

/// What the store lists as banned, and what each map holds.
fn counts(lab: &Lab) -> (u64, serde_json::Value) {
    let status = lab.ips_json(&["status"]);
    (
        status["decisions"].as_u64().unwrap(),
        status["maps"].clone(),
    )
}

#[test]
fn each_full_map_refuses_the_next_ban_and_the_store_never_lists_it() {
    let mut lab = Lab::new("cap");
    lab.write_config(SMALL);
    lab.start_daemon();
    let v6_hosts: Vec<String> = (0..100).map(|i| format!("2a00:1::{i:x}")).collect();
    let v4_nets: Vec<String> = (0..50).map(|i| format!("5.2.{i}.0/24")).collect();
    let v6_nets: Vec<String> = (0..50).map(|i| format!("2a00:2:{i:x}::/64")).collect();
    for (full, next, what) in [
        (
            v4_hosts(0, 100),
            "5.1.9.9",
            "enforcer.max_hosts = 100 reached for IPv4 single addresses",
        ),
        (
            v6_hosts,
            "2a00:1::ffff",
            "enforcer.max_hosts = 100 reached for IPv6 single addresses",
        ),
        (
            v4_nets,
            "5.3.0.0/24",
            "enforcer.max_prefixes = 50 reached for IPv4 prefixes",
        ),
        (
            v6_nets,
            "2a00:3::/64",
            "enforcer.max_prefixes = 50 reached for IPv6 prefixes",
        ),
    ] {
        let out = add(&lab, &full);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = add(&lab, &[next.to_owned()]);
        assert!(!out.status.success(), "{next} was accepted into a full map");
        assert!(stderr(&out).contains(what), "{next}: {}", stderr(&out));
        assert!(
            lab.ips_json(&["decisions", "list", "--value", next])
                .as_array()
                .unwrap()
                .is_empty(),
            "{next} is listed as banned"
        );
    }
    let (decisions, maps) = counts(&lab);
    assert_eq!(decisions, 300);
    assert_eq!(
        (
            &maps["hosts_v4"],
            &maps["hosts_v6"],
            &maps["nets_v4"],
            &maps["nets_v6"]
        ),
        (&100.into(), &100.into(), &50.into(), &50.into())
    );
    // A batch that does not fit is refused whole: nothing of it is stored, and what the
    // kernel took before it refused is taken back.
    lab.ips(&["decisions", "delete", "5.1.0.0"]);
    lab.ips(&["decisions", "delete", "5.1.0.2"]);
    let out = add(&lab, &v4_hosts(1000, 5));
    assert!(!out.status.success());
    let (decisions, maps) = counts(&lab);
    assert_eq!((decisions, &maps["hosts_v4"]), (298, &98.into()), "{maps}");
    // Packets: a refused value passes, a banned one is dropped.
    let got = lab.exchange(&[
        Frame::udp("5.1.7.208", 1).build(), // the 1000th: refused
        Frame::udp("5.1.0.4", 2).build(),   // banned
        Frame::udp("5.1.0.0", 3).build(),   // deleted
    ]);
    assert_eq!(got, vec![1, 3], "{}", lab.daemon_log());
}

#[test]
fn a_list_larger_than_the_map_is_imported_up_to_capacity_and_said_so() {
    let mut lab = Lab::new("caplist");
    lab.write_config(SMALL);
    lab.start_daemon();
    lab.ips(&["decisions", "add", "5.9.9.9"]);
    let list = lab.dir.join("big.txt");
    std::fs::write(&list, v4_hosts(0, 300).join("\n")).unwrap();
    let report = lab.ips_json(&[
        "blocklist",
        "import",
        list.to_str().unwrap(),
        "--name",
        "big",
    ]);
    assert_eq!(report["not_fitted"], 201, "{report}");
    assert_eq!(report["entries"], 99, "{report}");
    // The store lists exactly what the kernel holds.
    let (decisions, maps) = counts(&lab);
    assert_eq!((decisions, &maps["hosts_v4"]), (100, &100.into()), "{maps}");
    // Refreshed with the first 50: fits, and frees room.
    std::fs::write(&list, v4_hosts(0, 50).join("\n")).unwrap();
    let report = lab.ips_json(&[
        "blocklist",
        "import",
        list.to_str().unwrap(),
        "--name",
        "big",
    ]);
    assert_eq!(
        (&report["not_fitted"], &report["entries"]),
        (&0.into(), &50.into())
    );
    let (decisions, maps) = counts(&lab);
    assert_eq!((decisions, &maps["hosts_v4"]), (51, &51.into()));
}

#[test]
fn a_daemon_with_more_decisions_than_capacity_starts_and_says_what_is_not_enforced() {
    let mut lab = Lab::new("capstart");
    lab.write_config(SMALL);
    ban_offline(&lab, 150);
    lab.start_daemon();
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["maps"]["hosts_v4"], 100, "{status}");
    assert_eq!(status["not_enforced"], 50, "{status}");
    assert!(
        lab.daemon_log().contains("NOT enforced"),
        "{}",
        lab.daemon_log()
    );
    let text = lab.ips(&["status"]);
    assert!(
        text.contains("NOT enforced") && text.contains("over 90% full"),
        "{text}"
    );
    // What fits is enforced.
    assert_eq!(
        lab.exchange(&[
            Frame::udp("5.1.0.0", 1).build(),
            Frame::udp("5.2.0.1", 2).build()
        ]),
        vec![2]
    );
}

#[test]
fn store_check_says_what_does_not_fit_and_repair_removes_what_does_not_parse() {
    let lab = Lab::new("capcheck");
    lab.write_config(SMALL);
    ban_offline(&lab, 120);
    let out = lab.ips_raw(&["store", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("20 banned values do not fit"), "{text}");
    // A row edited by hand into nonsense: found, and removed by repair.
    assert!(corrupt_one_row(&lab.db_path()), "could not edit the store");
    let check = store_check(&lab);
    assert_eq!(check["bad_rows"], 1, "{check}");
    lab.ips(&["store", "repair"]);
    let check = store_check(&lab);
    assert_eq!(check["bad_rows"], 0, "{check}");
    assert_eq!(check["kernel_values"][0], 119, "{check}");
}

/// `ips -o json store check`, which exits non-zero when it finds a problem.
fn store_check(lab: &Lab) -> serde_json::Value {
    let out = lab.ips_raw(&["-o", "json", "store", "check"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes a nonsense value into one decision row, as a hand edit or damage would (Python's
/// sqlite3, a client of its own).
fn corrupt_one_row(db: &std::path::Path) -> bool {
    std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect('{}'); c.execute(\"UPDATE decisions SET value = 'not-an-address' WHERE id = (SELECT MIN(id) FROM decisions)\"); c.commit()",
            db.display()
        ))
        .status()
        .is_ok_and(|s| s.success())
}

fn dropped_v4(lab: &Lab, origin: &str) -> u64 {
    let status = lab.ips_json(&["status"]);
    status["origins"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == origin))
        .map_or(0, |o| o["dropped_v4"].as_u64().unwrap())
}

#[test]
fn origin_ids_are_reused_once_free_and_their_drop_counts_start_over() {
    use ips::decisions::{DecisionStore, NewDecision, SqliteStore};
    let mut lab = Lab::new("origins");
    lab.start_daemon();
    lab.ips(&[
        "decisions",
        "add",
        "198.51.100.7",
        "--origin",
        "list:old",
        "--duration",
        "2s",
    ]);
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|i| Frame::udp("198.51.100.7", i).build())
        .collect();
    assert!(lab.exchange(&frames).is_empty());
    assert_eq!(dropped_v4(&lab, "list:old"), 3);
    // It expires; list:old is referred to by nothing any more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab.ips_json(&["decisions", "list", "--value", "198.51.100.7"]) != serde_json::json!([]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the ban did not expire"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    lab.stop_daemon();
    // Every other origin id is taken by an origin with a lasting decision.
    {
        let mut store = SqliteStore::open(&lab.db_path()).unwrap();
        let now = ips::calendar::now_ms();
        for i in 0..(ips_common::origin::MAX - ips_common::origin::FIRST_LIST - 1) {
            let d = NewDecision {
                value: v4_hosts(i, 1)[0].parse().unwrap(),
                origin: format!("lapi:fill{i}").parse().unwrap(),
                reason: "fill".into(),
                duration_ms: 3_600_000,
            };
            store.upsert(&[d], now).unwrap();
        }
    }
    lab.start_daemon();
    // A new origin gets list:old's id back, and its drops count from zero.
    lab.ips(&["decisions", "add", "198.51.100.9", "--origin", "list:new"]);
    assert_eq!(dropped_v4(&lab, "list:new"), 0);
    let frames: Vec<Vec<u8>> = (4..=5)
        .map(|i| Frame::udp("198.51.100.9", i).build())
        .collect();
    assert!(lab.exchange(&frames).is_empty());
    assert_eq!(dropped_v4(&lab, "list:new"), 2);
    // With every id in use, one more origin is refused with a clear error.
    let out = lab.ips_raw(&["decisions", "add", "198.51.100.10", "--origin", "list:more"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("origins"), "{}", stderr(&out));
}

#[test]
fn over_capacity_the_maps_keep_the_most_specific_and_longest_lasting_bans() {
    use ips::decisions::{DecisionStore, NewDecision, Origin, SqliteStore};
    let mut lab = Lab::new("capbest");
    lab.write_config(SMALL);
    let now = ips::calendar::now_ms();
    let ban = |value: String, hours: i64| NewDecision {
        value: value.parse().unwrap(),
        origin: Origin::Manual,
        reason: "offline".into(),
        duration_ms: hours * 3_600_000,
    };
    {
        let mut store = SqliteStore::open(&lab.db_path()).unwrap();
        // 150 hosts: the first 130 for an hour, the last 20 (last in the store's order too) for
        // a day.
        let hosts = v4_hosts(0, 150);
        let batch: Vec<NewDecision> = hosts
            .iter()
            .enumerate()
            .map(|(i, v)| ban(v.clone(), if i >= 130 { 24 } else { 1 }))
            .collect();
        store.upsert(&batch, now).unwrap();
        // 60 prefixes for a day: 55 /16s, then 5 /28s (more specific, shorter-lived).
        let mut nets: Vec<NewDecision> =
            (0..55).map(|i| ban(format!("60.{i}.0.0/16"), 24)).collect();
        nets.extend((0..5).map(|i| ban(format!("70.0.0.{}/28", i * 16), 1)));
        store.upsert(&nets, now).unwrap();
    }
    lab.start_daemon();
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["maps"]["hosts_v4"], 100, "{status}");
    assert_eq!(status["maps"]["nets_v4"], 50, "{status}");
    assert_eq!(status["not_enforced"], 60, "{status}");
    let hosts = v4_hosts(0, 150);
    let mut frames = Vec::new();
    // The 20 day-long host bans and the 5 /28s are all enforced.
    for (i, h) in hosts[130..].iter().enumerate() {
        frames.push(Frame::udp(h, i as u32).build());
    }
    for i in 0..5u32 {
        frames.push(Frame::udp(&format!("70.0.0.{}", i * 16 + 3), 100 + i).build());
    }
    assert_eq!(lab.exchange(&frames), Vec::<u32>::new());
    assert!(
        lab.daemon_log()
            .contains("most specific and longest-lasting"),
        "{}",
        lab.daemon_log()
    );
}
