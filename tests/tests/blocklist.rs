//! Blocklist import end to end: a list file becomes drops at XDP under its own origin, without
//! the private ranges it contains, and a re-import applies only the difference.
use ips_tests::{Lab, packet::Frame};

fn frames(srcs: &[(&str, u32)]) -> Vec<Vec<u8>> {
    srcs.iter()
        .map(|(s, id)| Frame::udp(s, *id).build())
        .collect()
}

#[test]
fn import_filters_aggregates_and_replaces() {
    let mut lab = Lab::new("list");
    lab.start_daemon();
    let list = lab.dir.join("level1.netset");
    std::fs::write(
        &list,
        "# FireHOL-style list\n10.0.0.0/8\n1.2.3.0/24\n5.6.7.8\n5.6.7.9 ; adjacent\n2a00:1::/32\nbogus\n",
    )
    .expect("write list");
    let path = list.to_string_lossy().into_owned();
    let r = lab.ips_json(&["blocklist", "import", &path, "--name", "level1"]);
    assert_eq!(r["prepared"]["read"], 5);
    assert_eq!(r["prepared"]["filtered"]["private"], 1);
    assert_eq!(r["prepared"]["rejected"]["not an address or prefix"], 1);
    assert_eq!(r["entries"], 3, "5.6.7.8 and .9 merge into a /31: {r}");
    let got = lab.exchange(&frames(&[
        ("1.2.3.9", 1),
        ("5.6.7.9", 2),
        ("10.0.0.5", 3),
        ("2a00:1:ffff::1", 4),
        ("8.8.8.8", 5),
    ]));
    assert_eq!(
        got,
        vec![3, 5],
        "private range must not be banned by a list"
    );
    let status = lab.ips_json(&["status"]);
    let origin = status["origins"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "list:level1").cloned())
        .expect("drops attributed to the list");
    assert_eq!(origin["dropped_v4"], 2);
    assert_eq!(origin["dropped_v6"], 1);

    // The list changes: 1.2.3.0/24 leaves it, 9.9.9.0/24 joins.
    std::fs::write(&list, "5.6.7.8/31\n2a00:1::/32\n9.9.9.0/24\n").expect("write list");
    let r = lab.ips_json(&["blocklist", "import", &path, "--name", "level1"]);
    assert_eq!(
        (r["added"].as_u64(), r["removed"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let got = lab.exchange(&frames(&[("1.2.3.9", 6), ("9.9.9.9", 7), ("5.6.7.8", 8)]));
    assert_eq!(got, vec![6]);

    // The list is kept in the store: after the kernel lost its entries while the daemon was
    // down, a restart puts them back.
    lab.stop_daemon();
    {
        let mut maps = ips::enforcer::KernelMaps::open(&lab.pin_dir).expect("maps");
        let mut wipe = ips::enforcer::Diff::default();
        maps.for_each_ban(&mut |p, _| wipe.delete.push(p))
            .expect("read maps");
        maps.apply(&wipe).expect("wipe maps");
    }
    assert_eq!(lab.exchange(&frames(&[("9.9.9.9", 9)])), vec![9]);
    lab.start_daemon();
    let got = lab.exchange(&frames(&[
        ("9.9.9.9", 10),
        ("5.6.7.9", 11),
        ("1.2.3.9", 12),
        ("2a00:1::7", 13),
    ]));
    assert_eq!(got, vec![12]);
    let d = lab.ips_json(&["decisions", "list", "--value", "9.9.9.0/24"]);
    assert_eq!(d[0]["origin"], "list:level1", "{d}");
}

mod http_source {
    use std::{
        sync::{Arc, Mutex},
        thread,
        time::{Duration, Instant},
    };

    use ips_tests::{Lab, packet::Frame};

    /// What the test server answers: (status, etag, body).
    type Reply = Arc<Mutex<(u16, String, String)>>;
    /// Requests seen: (sent If-None-Match, answered status).
    type Log = Arc<Mutex<Vec<(bool, u16)>>>;

    /// A list server honouring ETag.
    fn serve(lab: &Lab, reply: Reply, log: Log) -> u16 {
        ips_tests::http_stub(&lab.a, move |head| {
            let inm = head
                .lines()
                .find_map(|l| l.strip_prefix("if-none-match:"))
                .map(|v| v.trim().to_owned());
            let (status, etag, body) = reply.lock().expect("reply").clone();
            if status == 200 && inm.as_deref() == Some(etag.to_ascii_lowercase().as_str()) {
                log.lock().expect("log").push((true, 304));
                return (304, vec![], String::new());
            }
            log.lock().expect("log").push((inm.is_some(), status));
            (status, vec![("ETag".into(), etag)], body)
        })
    }

    fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn dropped(lab: &Lab, src: &str, id: u32) -> bool {
        lab.exchange_quick(&[Frame::udp(src, id).build()])
            .is_empty()
    }

    #[test]
    fn http_source_with_etag_keeps_the_last_good_list() {
        let mut lab = Lab::new("http");
        let reply: Reply = Arc::new(Mutex::new((
            200,
            "\"v1\"".into(),
            "1.2.3.0/24\n10.0.0.0/8\n".into(),
        )));
        let log: Log = Arc::default();
        let port = serve(&lab, reply.clone(), log.clone());
        lab.write_config(&format!(
            "[[blocklist]]\nname = \"hub\"\nurl = \"http://127.0.0.1:{port}/list\"\nrefresh = \"1s\"\n"
        ));
        lab.start_daemon();
        until("list v1 enforced", Duration::from_secs(10), || {
            dropped(&lab, "1.2.3.9", 1)
        });
        assert!(
            !dropped(&lab, "10.0.0.5", 2),
            "a private range from a list must not be banned"
        );
        // Refreshes send the ETag back and get 304s.
        until(
            "a conditional request answered 304",
            Duration::from_secs(10),
            || {
                log.lock()
                    .expect("log")
                    .iter()
                    .any(|(c, s)| *c && *s == 304)
            },
        );
        // The list changes.
        *reply.lock().expect("reply") = (200, "\"v2\"".into(), "9.9.9.0/24\n".into());
        until("list v2 enforced", Duration::from_secs(10), || {
            dropped(&lab, "9.9.9.9", 3) && !dropped(&lab, "1.2.3.9", 4)
        });
        // The mirror fails, then serves an error page as 200: the last good list stays.
        *reply.lock().expect("reply") = (500, "\"e\"".into(), "oops".into());
        until("a failed fetch recorded", Duration::from_secs(10), || {
            lab.ips_json(&["blocklist", "status"])[0]["last_error"].is_string()
        });
        assert!(dropped(&lab, "9.9.9.9", 5));
        *reply.lock().expect("reply") = (
            200,
            "\"v3\"".into(),
            "<html><body>maintenance</body></html>\n".into(),
        );
        until("a garbled fetch recorded", Duration::from_secs(10), || {
            lab.ips_json(&["blocklist", "status"])[0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("garbled"))
        });
        assert!(dropped(&lab, "9.9.9.9", 6));
        let status = lab.ips_json(&["blocklist", "status"]);
        assert_eq!(status[0]["entries"], 1);
        assert!(status[0]["dropped"].as_u64().unwrap_or(0) >= 3, "{status}");
    }
}

/// The daemon prepares a list off the service thread; an allowlist entry added meanwhile still
/// keeps its addresses out of the store and the kernel.
#[test]
fn an_allowlist_entry_added_during_a_prepare_still_wins() {
    use ips::{
        decisions::{
            DecisionService, SqliteStore,
            profiles::{Profiles, ProfilesConfig},
        },
        enforcer::{Enforcer, KernelMaps},
    };
    let mut lab = Lab::new("listallow");
    lab.start_daemon();
    lab.stop_daemon();
    let now = ips::calendar::now_ms();
    let store = SqliteStore::open(&lab.db_path()).expect("store");
    let profiles = Profiles::new(ProfilesConfig::default(), &[]);
    let mut service = DecisionService::new(Box::new(store), profiles).expect("service");
    let mut enforcer = Enforcer::new(KernelMaps::open(&lab.pin_dir).expect("maps"));
    // Prepared with the allowlist of now...
    let allow = service.current_allowlist();
    let prepared = ips::blocklists::prepare("5.6.7.8\n5.6.8.8\n", None, &allow);
    // ...which moves before the list reaches the service.
    let (_, changes) = service
        .allow_add(&"5.6.7.0/24".parse().expect("prefix"), "ours", now)
        .expect("allow");
    enforcer.apply(&changes).expect("kernel");
    let (r, changes) = service
        .replace_list("late", prepared, allow.version, 3_600_000, now)
        .expect("import");
    enforcer.apply(&changes).expect("kernel");
    assert_eq!(
        (r.entries, r.prepared.filtered.allowlisted),
        (1, 1),
        "{r:?}"
    );
    assert_eq!(
        service
            .store()
            .list(now, None)
            .expect("list")
            .iter()
            .map(|d| d.value.to_string())
            .collect::<Vec<_>>(),
        ["5.6.8.8"]
    );
    let mut kernel = Vec::new();
    enforcer
        .maps()
        .for_each_ban(&mut |p, _| kernel.push(p.to_string()))
        .expect("maps");
    assert_eq!(kernel, ["5.6.8.8"]);
    drop((enforcer, service));
    let got = lab.exchange(&frames(&[("5.6.7.8", 1), ("5.6.8.8", 2)]));
    assert_eq!(got, vec![1]);
}

/// An imported list shows in `ips blocklist status`; a garbled file never replaces it, and
/// `ips blocklist delete` removes it.
#[test]
fn imported_lists_are_listed_guarded_and_deleted() {
    let mut lab = Lab::new("listdel");
    lab.start_daemon();
    let list = lab.dir.join("mine.txt");
    std::fs::write(&list, "5.6.7.8\n0.0.0.0/0\n").expect("write list");
    let path = list.to_string_lossy().into_owned();
    let r = lab.ips_json(&["blocklist", "import", &path, "--name", "mine"]);
    // The catch-all is rejected whole and counted, never cut into pieces.
    assert_eq!(
        (&r["entries"], &r["prepared"]["filtered"]["too_short"]),
        (&1.into(), &1.into()),
        "{r}"
    );
    let status = lab.ips_json(&["blocklist", "status"]);
    let mine = status
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "mine"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&mine["kind"], &mine["entries"]),
        (&"import".into(), &1.into()),
        "{status}"
    );
    // An error page instead of the list: refused, and the list stays.
    std::fs::write(&list, "<html><body>502 Bad Gateway</body></html>\n").expect("write");
    let out = lab.ips_raw(&["blocklist", "import", &path, "--name", "mine"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("garbled"), "{err}");
    assert!(lab.exchange(&frames(&[("5.6.7.8", 1)])).is_empty());
    let out = lab.ips(&["blocklist", "delete", "mine"]);
    assert!(out.contains("removed (1 entries)"), "{out}");
    assert_eq!(lab.exchange(&frames(&[("5.6.7.8", 2)])), vec![2]);
}
