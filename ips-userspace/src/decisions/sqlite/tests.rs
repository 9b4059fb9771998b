use ips_common::origin;
use rusqlite::Connection;

use super::SqliteStore;
use crate::decisions::{PgStore, Store};
use crate::{
    decisions::{
        AlertQuery, AllowStore, BouncerStore, BouncerStream, DecisionStore, ListStore, LocalState,
        NewDecision, Origin, Outcome, Role, StoreError, StoredAlert, lists,
    },
    prefix::Prefix,
};

/// Runs `test` on a fresh SQLite store and, when `IPS_TEST_POSTGRES` names a server (as
/// `cargo xtask test` does), on a fresh PostgreSQL store in a schema of its own: the two
/// backends keep the same contract.
fn each_store(test: impl Fn(&mut dyn Store)) {
    test(&mut SqliteStore::in_memory().unwrap());
    on_postgres(|url| test(&mut PgStore::connect(url, "test").unwrap()));
}

/// Runs `test` with the URL of a fresh PostgreSQL schema, if `IPS_TEST_POSTGRES` is set.
fn on_postgres(test: impl Fn(&str)) {
    let Ok(url) = std::env::var("IPS_TEST_POSTGRES") else {
        eprintln!("IPS_TEST_POSTGRES is not set: the PostgreSQL store is not tested here");
        return;
    };
    let schema = format!(
        "t{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let scoped = if url.starts_with("postgres") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}")
    } else {
        format!("{url} options=-csearch_path={schema}")
    };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&scoped)));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn o(s: &str) -> Origin {
    s.parse().unwrap()
}

fn ban(value: &str, origin: &str, secs: i64) -> NewDecision {
    NewDecision {
        value: p(value),
        origin: o(origin),
        reason: "test".to_owned(),
        duration_ms: secs * 1000,
    }
}

#[test]
fn adding_an_existing_decision_extends_it() {
    each_store(|s| {
        let a = s
            .upsert(&[ban("203.0.113.7", "manual", 60)], 1_000)
            .unwrap()
            .0;
        let b = s
            .upsert(&[ban("203.0.113.7", "manual", 600)], 2_000)
            .unwrap()
            .0;
        assert_eq!(a[0].id, b[0].id);
        assert_eq!(b[0].expires_ms, 2_000 + 600_000);
        // A shorter one does not shorten it.
        let c = s
            .upsert(&[ban("203.0.113.7", "manual", 1)], 3_000)
            .unwrap()
            .0;
        assert_eq!(c[0].expires_ms, 2_000 + 600_000);
        assert_eq!(s.list(3_000, None).unwrap().len(), 1);
        assert_eq!(s.count_active(3_000).unwrap(), 1);
        assert_eq!(s.count_active(3_000_000).unwrap(), 0);
    });
}

#[test]
fn effective_origin_is_the_longest_lasting() {
    each_store(|s| {
        s.upsert(&[ban("198.51.100.0/24", "manual", 60)], 0)
            .unwrap();
        s.upsert(&[ban("198.51.100.0/24", "list:firehol", 600)], 0)
            .unwrap();
        let list_id = s.origin_id(&o("list:firehol")).unwrap();
        assert!(list_id >= origin::FIRST_LIST);
        let e = s.effective(&[p("198.51.100.0/24")], 1).unwrap();
        assert_eq!(e, vec![(p("198.51.100.0/24"), Some(list_id))]);
        let mut seen = Vec::new();
        s.for_each_active(1, &mut |v, o, _| seen.push((v, o)))
            .unwrap();
        assert_eq!(seen, vec![(p("198.51.100.0/24"), list_id)]);
    });
}

#[test]
fn expiry_takes_only_what_expired() {
    each_store(|s| {
        let mut batch: Vec<_> = (0..2000)
            .map(|i| ban(&format!("10.{}.{}.1", i / 250, i % 250), "manual", 10))
            .collect();
        batch.push(ban("192.0.2.1", "manual", 100));
        s.upsert(&batch, 0).unwrap();
        let gone = s.take_expired(10_000).unwrap();
        assert_eq!(gone.delete.len(), 2000);
        let left = s.list(10_000, None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].value, p("192.0.2.1"));
    });
}

#[test]
fn allowlisted_values_are_refused_and_cleared() {
    each_store(|s| {
        s.upsert(&[ban("192.0.2.9", "manual", 60)], 0).unwrap();
        let covered = s
            .allow_add(&p("192.0.2.0/28"), "office", "manual", 0)
            .unwrap()
            .0;
        assert_eq!(covered, vec![p("192.0.2.9")]);
        let err = s.upsert(&[ban("192.0.2.3", "manual", 60)], 0).unwrap_err();
        assert!(err.to_string().contains("allowlisted"), "{err}");
        // A wider ban around the allowlisted range is fine: the kernel checks the allowlist first.
        s.upsert(&[ban("192.0.2.0/24", "manual", 60)], 0).unwrap();
        assert!(s.allow_delete(&p("192.0.2.0/28")).unwrap());
        s.upsert(&[ban("192.0.2.3", "manual", 60)], 0).unwrap();
    });
}

#[test]
fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/ips.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.upsert(&[ban("2001:db8::/64", "manual", 60)], 0).unwrap();
        s.allow_add(&p("2001:db8:1::1"), "me", "config", 0).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.list(1, None).unwrap()[0].value, p("2001:db8::/64"));
    assert_eq!(s.allow_list().unwrap()[0].source, "config");
}

#[test]
fn alerts_and_escalation_counts() {
    each_store(|s| {
        let mut a = StoredAlert {
            id: 0,
            scenario: "ssh-bf".into(),
            source: "203.0.113.5".parse().unwrap(),
            group: p("203.0.113.5"),
            first_ms: 1,
            last_ms: 1000,
            events: 6,
            outcome: Outcome::Ban {
                value: p("203.0.113.5"),
                duration_ms: 60_000,
            },
            evidence: vec!["line 1".into()],
            labels: [("ban".to_owned(), "4h".to_owned())].into(),
            machine: String::new(),
        };
        let id = s.add_alert(&a).unwrap();
        a.last_ms = 5000;
        s.add_alert(&a).unwrap();
        a.outcome = Outcome::Simulated {
            value: p("203.0.113.5"),
            duration_ms: 60_000,
        };
        s.add_alert(&a).unwrap();
        assert_eq!(s.previous_bans(&p("203.0.113.5"), 0).unwrap(), 2);
        assert_eq!(s.previous_bans(&p("203.0.113.5"), 2000).unwrap(), 1);
        let got = s.alert(id).unwrap().unwrap();
        assert_eq!(got.evidence, vec!["line 1"]);
        assert_eq!(got.labels["ban"], "4h");
        let query = |scenario: Option<&str>, source: Option<&str>| AlertQuery {
            limit: 10,
            scenario: scenario.map(str::to_owned),
            source: source.map(|s| s.parse().unwrap()),
            machine: None,
        };
        assert_eq!(s.alerts(&query(Some("ssh-bf"), None)).unwrap().len(), 3);
        assert_eq!(s.alerts(&query(None, Some("192.0.2.1"))).unwrap().len(), 0);
        assert!(matches!(
            got.outcome,
            Outcome::Ban {
                duration_ms: 60_000,
                ..
            }
        ));
    });
}

#[test]
fn replacing_a_list_adds_renews_and_removes() {
    each_store(|s| {
        let (a, r) = s
            .replace_list(
                &o("list:x"),
                vec![p("1.2.3.4"), p("5.6.0.0/16"), p("1.2.3.4")],
                1000,
                0,
            )
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert_eq!((a.len(), r.len()), (2, 0));
        let (a, r) = s
            .replace_list(&o("list:x"), vec![p("5.6.0.0/16"), p("9.9.9.9")], 5000, 100)
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert_eq!(a, vec![p("9.9.9.9")]);
        assert_eq!(r, vec![p("1.2.3.4")]);
        let list = s.list(200, None).unwrap();
        assert_eq!(list.len(), 2);
        // Every entry ends with the list's lease, and is listed since the first import.
        assert!(list.iter().all(|d| d.expires_ms == 5100
            && d.created_ms == 0
            && d.origin == o("list:x")
            && d.id >= 1 << 52));
        assert_eq!(s.list(200, Some(&p("9.9.9.9"))).unwrap().len(), 1);
        assert!(s.list(200, Some(&p("9.9.9.8"))).unwrap().is_empty());
        // Renewing moves the lease, never back.
        assert!(s.renew_list(&o("list:x"), 5000, 4000).unwrap());
        assert!(s.renew_list(&o("list:x"), 10, 4000).unwrap());
        assert!(!s.renew_list(&o("list:nope"), 5000, 4000).unwrap());
        assert!(
            s.list(4100, None)
                .unwrap()
                .iter()
                .all(|d| d.expires_ms == 9000)
        );
        assert_eq!(s.count_active(8999).unwrap(), 2);
        // Past the lease the entries are no longer active, then gone from the store.
        let mut active = 0;
        s.for_each_active(9000, &mut |_, _, _| active += 1).unwrap();
        assert_eq!((s.count_active(9000).unwrap(), active), (0, 0));
        assert_eq!(s.effective(&[p("9.9.9.9")], 9000).unwrap()[0].1, None);
        let gone = s.take_expired(9000).unwrap().delete;
        assert_eq!(gone, vec![p("5.6.0.0/16"), p("9.9.9.9")]);
        assert!(s.list_values(&o("list:x")).unwrap().is_empty());
        assert!(!s.renew_list(&o("list:x"), 5000, 9100).unwrap());
        // Replaced after its lease lapsed but before the expiry tick: every entry is banned
        // again, and what left the list is removed.
        s.replace_list(&o("list:y"), vec![p("7.7.7.7"), p("8.8.8.8")], 100, 0)
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert!(!s.renew_list(&o("list:y"), 100, 200).unwrap());
        let (a, r) = s
            .replace_list(&o("list:y"), vec![p("8.8.8.8"), p("9.9.9.8")], 100, 200)
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert_eq!(
            (a, r),
            (vec![p("8.8.8.8"), p("9.9.9.8")], vec![p("7.7.7.7")])
        );
        assert!(s.take_expired(250).unwrap().is_empty());
        assert_eq!(s.count_active(250).unwrap(), 2);
        s.replace_list(&o("list:y"), vec![], 100, 260)
            .map(|c| (c.added, c.removed))
            .unwrap();
        // Another origin's decision on the same value is untouched.
        let (a, _) = s
            .replace_list(&o("list:x"), vec![p("9.9.9.9")], 1000, 9100)
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert_eq!(a, vec![p("9.9.9.9")]);
        s.upsert(&[ban("9.9.9.9", "manual", 60)], 9100).unwrap();
        let (_, r) = s
            .replace_list(&o("list:x"), vec![], 1000, 9200)
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert_eq!(r, vec![p("9.9.9.9")]);
        let left = s.list(9300, None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].origin, Origin::Manual);
        let mut kernel = Vec::new();
        s.for_each_active(9300, &mut |v, o, _| kernel.push((v, o)))
            .unwrap();
        assert_eq!(kernel, vec![(p("9.9.9.9"), origin::MANUAL)]);
    });
}

#[test]
fn rows_and_lists_merge_into_one_kernel_view() {
    each_store(|s| {
        s.upsert(
            &[
                ban("1.1.1.1", "manual", 100),
                ban("5.5.5.5", "manual", 10),
                ban("2001:db8::1", "manual", 100),
                ban("2001:db8::/32", "manual", 10),
                // Sorts after the IPv6 rows in the index (0x2d > 0x20).
                ban("45.0.0.1", "manual", 100),
            ],
            0,
        )
        .unwrap();
        s.replace_list(
            &o("list:a"),
            vec![p("3.3.3.3"), p("5.5.5.5"), p("45.0.0.2")],
            50_000,
            0,
        )
        .map(|c| (c.added, c.removed))
        .unwrap();
        s.replace_list(
            &o("list:b"),
            vec![p("0.0.0.0/1"), p("2001:db8::/32")],
            60_000,
            0,
        )
        .map(|c| (c.added, c.removed))
        .unwrap();
        let a = s.origin_id(&o("list:a")).unwrap();
        let b = s.origin_id(&o("list:b")).unwrap();
        let mut seen = Vec::new();
        s.for_each_active(1, &mut |v, o, _| seen.push((v.to_string(), o)))
            .unwrap();
        let want = [
            ("0.0.0.0/1", b),
            ("1.1.1.1", origin::MANUAL),
            ("3.3.3.3", a),
            // The list lasts longer than the hand-made ban.
            ("5.5.5.5", a),
            ("45.0.0.1", origin::MANUAL),
            ("45.0.0.2", a),
            // The list lasts longer than the hand-made ban.
            ("2001:db8::/32", b),
            ("2001:db8::1", origin::MANUAL),
        ];
        let mut want: Vec<(String, u32)> = want.iter().map(|(v, o)| (v.to_string(), *o)).collect();
        // The order of the calls is not part of the contract; each value comes once.
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(s.count_active(1).unwrap(), 10);
        assert_eq!(s.list_values(&o("list:b")).unwrap().len(), 2);
        // Deleting a listed value takes it out of the list; an allowlist entry too.
        assert_eq!(s.delete(&p("3.3.3.3"), None, 0).unwrap().0, 1);
        assert_eq!(
            s.list_values(&o("list:a")).unwrap(),
            vec![p("5.5.5.5"), p("45.0.0.2")]
        );
        let covered = s
            .allow_add(&p("5.5.5.0/24"), "ours", "manual", 2)
            .unwrap()
            .0;
        assert_eq!(covered, vec![p("5.5.5.5")]);
        assert_eq!(s.list_values(&o("list:a")).unwrap(), vec![p("45.0.0.2")]);
    });
}

#[test]
fn effective_reads_the_same_one_by_one_and_in_bulk() {
    each_store(|s| {
        let values: Vec<Prefix> = (0..300u32)
            .map(|i| Prefix::v4(0x0a00_0000 | i, 32))
            .collect();
        let batch: Vec<NewDecision> = values[..100]
            .iter()
            .map(|v| NewDecision {
                value: *v,
                origin: Origin::Manual,
                reason: "t".into(),
                duration_ms: 1000,
            })
            .collect();
        s.upsert(&batch, 0).unwrap();
        s.replace_list(&o("list:z"), values[50..150].to_vec(), 5000, 0)
            .map(|c| (c.added, c.removed))
            .unwrap();
        let z = s.origin_id(&o("list:z")).unwrap();
        // 300 values: the bulk path; one at a time: the per-value path.
        let bulk = s.effective(&values, 10).unwrap();
        for (i, (v, o)) in bulk.iter().enumerate() {
            assert_eq!(s.effective(&[*v], 10).unwrap(), vec![(*v, *o)]);
            let want = match i {
                0..50 => Some(origin::MANUAL),
                50..150 => Some(z),
                _ => None,
            };
            assert_eq!(*o, want, "{v}");
        }
    });
}

#[test]
fn list_snapshots_survive_reopening_and_feed_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ips.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.replace_list(
            &o("list:l"),
            vec![p("192.0.2.1"), p("192.0.2.2")],
            10_000,
            100,
        )
        .map(|c| (c.added, c.removed))
        .unwrap();
        s.replace_list(
            &o("list:l"),
            vec![p("192.0.2.2"), p("192.0.2.3")],
            10_000,
            200,
        )
        .map(|c| (c.added, c.removed))
        .unwrap();
        // The same entries again, in another order: only the lease moves.
        let (a, r) = s
            .replace_list(
                &o("list:l"),
                vec![p("192.0.2.3"), p("192.0.2.2")],
                20_000,
                250,
            )
            .map(|c| (c.added, c.removed))
            .unwrap();
        assert!(a.is_empty() && r.is_empty());
    }
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.list_values(&o("list:l")).unwrap(),
        vec![p("192.0.2.2"), p("192.0.2.3")]
    );
    let new: Vec<String> = s
        .created_since(150, 300)
        .unwrap()
        .iter()
        .map(|d| d.value.to_string())
        .collect();
    assert_eq!(new, ["192.0.2.3"]);
    assert_eq!(s.created_since(0, 300).unwrap().len(), 2);
    assert!(
        s.list(15_000, None)
            .unwrap()
            .iter()
            .all(|d| d.expires_ms == 20_250)
    );
    assert_eq!(s.count_active(15_000).unwrap(), 2);
    let gone = s.deleted_since(150).unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].value, p("192.0.2.1"));
    assert_eq!(gone[0].origin, o("list:l"));
    assert_eq!(
        gone[0].id,
        lists::entry_id(s.origin_id(&o("list:l")).unwrap(), &p("192.0.2.1"))
    );
    s.prune_tombstones(250).unwrap();
    assert!(s.deleted_since(0).unwrap().is_empty());
}

#[test]
fn a_version_1_store_migrates_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE origins (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
             CREATE TABLE decisions (
                 id INTEGER PRIMARY KEY, value TEXT NOT NULL, addr BLOB NOT NULL,
                 plen INTEGER NOT NULL, type TEXT NOT NULL DEFAULT 'ban',
                 origin_id INTEGER NOT NULL REFERENCES origins(id), reason TEXT NOT NULL,
                 created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
                 UNIQUE (value, origin_id));
             CREATE INDEX decisions_addr ON decisions (addr);
             INSERT INTO origins VALUES (0, 'manual'), (16, 'list:old');
             INSERT INTO decisions VALUES
                 (1, '192.0.2.1', x'c0000201', 32, 'ban', 0, 'm', 0, 5000),
                 (2, '198.51.100.0/24', x'c6336400', 24, 'ban', 16, 'l', 0, 7000),
                 (3, '198.51.101.1', x'c6336501', 32, 'ban', 16, 'l', 0, 6000);",
        )
        .unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    let all = s.list(0, None).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter().map(|d| d.expires_ms).collect::<Vec<_>>(),
        [5000, 7000, 6000]
    );
    // The list's next import takes over; its old rows end as they would have.
    s.replace_list(&o("list:old"), vec![p("198.51.100.0/24")], 100_000, 1000)
        .map(|c| (c.added, c.removed))
        .unwrap();
    assert_eq!(s.count_active(6500).unwrap(), 2);
    assert_eq!(s.count_active(8000).unwrap(), 1);
    drop(s);
    // Opening again does not migrate twice.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.count_active(8000).unwrap(), 1);
}

#[test]
fn tombstones_record_every_way_out() {
    each_store(|s| {
        s.upsert(
            &[
                ban("192.0.2.1", "manual", 10),
                ban("192.0.2.2", "manual", 1000),
            ],
            0,
        )
        .unwrap();
        s.replace_list(&o("list:l"), vec![p("198.51.100.1")], 1000, 0)
            .map(|c| (c.added, c.removed))
            .unwrap();
        s.take_expired(10_000).unwrap();
        s.delete(&p("192.0.2.2"), None, 0).unwrap();
        s.replace_list(&o("list:l"), vec![], 1000, 20_000)
            .map(|c| (c.added, c.removed))
            .unwrap();
        let gone: Vec<String> = s
            .deleted_since(-1)
            .unwrap()
            .iter()
            .map(|t| t.value.to_string())
            .collect();
        assert_eq!(gone.len(), 3, "{gone:?}");
        for v in ["192.0.2.1", "192.0.2.2", "198.51.100.1"] {
            assert!(gone.contains(&v.to_owned()), "{v}");
        }
        // Two decision tombstones and the list's two logged changes (its import, its lapse).
        assert_eq!(s.prune_tombstones(i64::MAX).unwrap(), 4);
        assert!(s.deleted_since(-1).unwrap().is_empty());
    });
}

#[test]
fn bouncers_by_key_hash() {
    each_store(|s| {
        s.add_bouncer("nginx", "abc", Role::Bouncer, 1).unwrap();
        assert!(matches!(
            s.add_bouncer("nginx", "def", Role::Admin, 1),
            Err(StoreError::BouncerExists(_))
        ));
        assert_eq!(s.bouncer_by_key("abc").unwrap().unwrap().name, "nginx");
        assert!(s.bouncer_by_key("nope").unwrap().is_none());
        s.set_bouncer_pull("nginx", 42).unwrap();
        assert_eq!(s.bouncers().unwrap()[0].last_pull_ms, 42);
        s.add_bouncer("web01", "ghi", Role::Machine, 2).unwrap();
        s.set_seen("web01", 50, "0.1.0").unwrap();
        let m = s.bouncer_by_key("ghi").unwrap().unwrap();
        assert_eq!(
            (m.role, m.last_pull_ms, m.seen_ms, m.version.as_str()),
            (Role::Machine, 0, 50, "0.1.0")
        );
        assert!(s.delete_bouncer("nginx").unwrap());
    });
}

#[test]
fn a_version_4_store_gets_key_roles_and_keeps_its_bouncers() {
    let dir = std::env::temp_dir().join(format!("ips-v4-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v4.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE bouncers (name TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE,
                 last_pull_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);
             INSERT INTO bouncers (name, key_sha256, created_ms) VALUES ('fw', 'abc', 7);
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let fw = s.bouncer_by_key("abc").unwrap().unwrap();
    assert_eq!(
        (fw.name.as_str(), fw.role, fw.created_ms),
        ("fw", Role::Bouncer, 7)
    );
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn local_state_rows_round_trip() {
    each_store(|s| {
        let row = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        s.save_state("read-offset", &[row("/var/log/auth.log", "1:2:3")])
            .unwrap();
        s.save_state("read-offset", &[row("/var/log/auth.log", "1:2:9")])
            .unwrap();
        s.save_state("interface", &[row("eth1", "native")]).unwrap();
        assert_eq!(
            s.state("read-offset").unwrap(),
            [row("/var/log/auth.log", "1:2:9")]
        );
        s.delete_state("interface", "eth1").unwrap();
        assert!(s.state("interface").unwrap().is_empty());
    });
}

#[test]
fn a_version_2_store_keeps_its_offsets_and_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        // Version 2 had the two tables of its own.
        s.conn
            .execute_batch(
                "CREATE TABLE offsets (path TEXT PRIMARY KEY, dev INTEGER NOT NULL,
                     ino INTEGER NOT NULL, offset INTEGER NOT NULL);
                 INSERT INTO offsets VALUES ('/var/log/auth.log', 7, 8, 900);
                 CREATE TABLE interfaces (name TEXT PRIMARY KEY, mode TEXT NOT NULL);
                 INSERT INTO interfaces VALUES ('eth1', 'generic');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.state("read-offset").unwrap(),
        [("/var/log/auth.log".to_owned(), "7:8:900".to_owned())]
    );
    assert_eq!(
        s.state("interface").unwrap(),
        [("eth1".to_owned(), "generic".to_owned())]
    );
}

#[test]
fn decision_ids_are_never_reused() {
    each_store(|s| {
        let (a, _) = s.upsert(&[ban("192.0.2.1", "manual", 60)], 0).unwrap();
        let (b, _) = s.upsert(&[ban("192.0.2.2", "manual", 60)], 0).unwrap();
        s.delete(&p("192.0.2.2"), None, 0).unwrap();
        let (c, _) = s.upsert(&[ban("192.0.2.3", "manual", 60)], 0).unwrap();
        assert!(a[0].id < b[0].id && b[0].id < c[0].id, "{a:?} {b:?} {c:?}");
    });
}

#[test]
fn a_version_3_store_keeps_its_rows_and_never_reuses_an_old_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE origins (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, lease_ms INTEGER);
             CREATE TABLE decisions (
                 id INTEGER PRIMARY KEY, value TEXT NOT NULL, addr BLOB NOT NULL,
                 plen INTEGER NOT NULL, type TEXT NOT NULL DEFAULT 'ban',
                 origin_id INTEGER NOT NULL REFERENCES origins(id), reason TEXT NOT NULL,
                 created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
                 UNIQUE (addr, plen, origin_id));
             CREATE INDEX decisions_expires ON decisions (expires_ms);
             CREATE TABLE tombstones (decision_id INTEGER NOT NULL, value TEXT NOT NULL,
                 origin TEXT NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,
                 deleted_ms INTEGER NOT NULL);
             INSERT INTO origins VALUES (0, 'manual', NULL);
             INSERT INTO decisions VALUES (3, '192.0.2.1', x'c0000201', 32, 'ban', 0, 'm', 0, 5000);
             INSERT INTO tombstones VALUES (9, '192.0.2.9', 'manual', 'ban', 'm', 1);
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.list(0, None).unwrap()[0].id, 3);
    let (d, _) = s.upsert(&[ban("192.0.2.2", "manual", 60)], 0).unwrap();
    assert_eq!(d[0].id, 10, "past the deleted id 9");
}

#[test]
fn unopenable_store_is_a_clear_error() {
    let err = SqliteStore::open(std::path::Path::new("/proc/nope/ips.db"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/proc/nope/ips.db"), "{err}");
}

#[test]
fn pages_cover_every_active_decision_once() {
    each_store(|s| {
        for i in 0..7 {
            s.upsert(&[ban(&format!("203.0.113.{i}"), "manual", 60)], 0)
                .unwrap();
        }
        // One expired row is not listed.
        s.upsert(&[ban("203.0.113.99", "manual", 1)], 0).unwrap();
        s.replace_list(
            &o("list:a"),
            (0..5).map(|i| p(&format!("198.51.100.{i}"))).collect(),
            60_000,
            0,
        )
        .unwrap();
        s.replace_list(
            &o("list:b"),
            vec![p("2001:db8::/48"), p("192.0.2.1")],
            60_000,
            0,
        )
        .unwrap();
        let now = 2_000;
        let all = s.list(now, None).unwrap();
        assert_eq!(all.len(), 7 + 5 + 2);
        for limit in [1, 3, 7, 13, 14, 100] {
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let page = s.page(now, cursor.as_ref(), limit, None).unwrap();
                assert!(page.decisions.len() <= limit);
                seen.extend(page.decisions);
                pages += 1;
                match page.next {
                    Some(c) => cursor = Some(c.parse::<crate::decisions::Cursor>().unwrap()),
                    None => break,
                }
                assert!(pages < 100, "paging does not end");
            }
            assert_eq!(seen, all, "limit {limit}");
        }
        // A list entry removed between two pages does not restart or repeat the walk.
        let first = s.page(now, None, 9, None).unwrap();
        let cursor: crate::decisions::Cursor = first.next.unwrap().parse().unwrap();
        s.replace_list(
            &o("list:a"),
            vec![p("198.51.100.0"), p("198.51.100.4")],
            60_000,
            now,
        )
        .unwrap();
        let rest = s.page(now, Some(&cursor), 100, None).unwrap();
        let values: Vec<String> = rest.decisions.iter().map(|d| d.value.to_string()).collect();
        assert_eq!(values, ["198.51.100.4", "192.0.2.1", "2001:db8::/48"]);
        // One origin's: its rows, or its list's entries.
        let of = |origin: &str| {
            s.page(now, None, 100, Some(&o(origin)))
                .unwrap()
                .decisions
                .len()
        };
        assert_eq!(
            (of("manual"), of("list:a"), of("list:b"), of("detection")),
            (7, 2, 2, 0)
        );
        assert!("x1".parse::<crate::decisions::Cursor>().is_err());
        assert!("l1-notaprefix".parse::<crate::decisions::Cursor>().is_err());
    });
}

#[test]
fn origin_ids_are_taken_back_when_nothing_refers_to_them() {
    each_store(|s| {
        let room = (origin::MAX - origin::FIRST_LIST) as usize;
        // A list with logged changes and a decision that lasts keep their origins.
        s.replace_list(&o("list:kept"), vec![p("192.0.2.1")], 600_000, 0)
            .unwrap();
        s.upsert(&[ban("192.0.2.2", "lapi:lasting", 600)], 0)
            .unwrap();
        let kept = s.origin_id(&o("list:kept")).unwrap();
        let lasting = s.origin_id(&o("lapi:lasting")).unwrap();
        assert_eq!(s.take_new_origins(), [kept, lasting]);
        // Short-lived decisions of junk origins fill every other id.
        for i in 0..room - 2 {
            s.upsert(&[ban("192.0.2.3", &format!("list:junk{i}"), 1)], 0)
                .unwrap();
        }
        assert_eq!(s.take_new_origins().len(), room - 2);
        let full = s.upsert(&[ban("192.0.2.4", "list:one-more", 60)], 0);
        assert!(
            matches!(full, Err(StoreError::TooManyOrigins { .. })),
            "{full:?}"
        );
        // Once the junk expires, its ids are free again; the lasting ones are not touched.
        s.take_expired(5_000).unwrap();
        s.upsert(&[ban("192.0.2.4", "list:one-more", 60)], 5_000)
            .unwrap();
        let reused = s.origin_id(&o("list:one-more")).unwrap();
        assert!((origin::FIRST_LIST..origin::MAX).contains(&reused));
        assert_eq!(s.take_new_origins(), [reused]);
        assert_eq!(s.origin_id(&o("list:kept")).unwrap(), kept);
        assert_eq!(s.origin_id(&o("lapi:lasting")).unwrap(), lasting);
        assert!(s.take_new_origins().is_empty());
        let names: Vec<String> = s.origins().unwrap().into_iter().map(|(_, n)| n).collect();
        assert!(
            !names.iter().any(|n| n.starts_with("list:junk")),
            "{names:?}"
        );
    });
}

#[test]
fn a_mass_expiry_goes_in_steps_with_a_tombstone_for_each_row() {
    each_store(|s| {
        let batch: Vec<NewDecision> = (0..12)
            .map(|i| ban(&format!("198.51.100.{i}"), "manual", 1))
            .collect();
        s.upsert(&batch, 0).unwrap();
        s.upsert(&[ban("198.51.100.200", "manual", 600)], 0)
            .unwrap();
        s.upsert(&[ban("198.51.100.3", "list:x", 600)], 0).unwrap();
        let mut steps = Vec::new();
        loop {
            let (diff, more) = s.take_expired_at_most(5_000, 5).unwrap();
            steps.push((diff.delete.len(), diff.upsert.len()));
            if !more {
                break;
            }
        }
        // 198.51.100.3 stays banned by the list: re-attributed, not deleted.
        assert_eq!(steps.iter().map(|s| s.0 + s.1).sum::<usize>(), 12);
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert_eq!(steps.iter().map(|s| s.1).sum::<usize>(), 1);
        assert_eq!(s.count_active(5_000).unwrap(), 2);
        assert_eq!(s.deleted_since(0).unwrap().len(), 12);
    });
}

#[test]
fn central_nodes_sharing_postgresql_see_each_others_writes() {
    use crate::decisions::Transactions;
    on_postgres(|url| {
        let mut a = PgStore::connect(url, "central-a").unwrap();
        let mut b = PgStore::connect(url, "central-b").unwrap();
        assert!(!b.refresh().unwrap(), "nothing written yet");
        // A ban on one node is a row the other reads at once.
        a.begin().unwrap();
        a.upsert(&[ban("45.1.2.3", "manual", 60)], 1_000).unwrap();
        a.commit().unwrap();
        assert_eq!(b.list(1_000, None).unwrap().len(), 1);
        // A list and an allowlist entry are in memory: the other node reads them again once it
        // sees the revision move, and says so (its kernel is to follow).
        a.begin().unwrap();
        a.replace_list(&o("list:fleet"), vec![p("45.9.0.0/16")], 60_000, 1_000)
            .unwrap();
        a.allow_add(&p("45.1.0.0/16"), "office", "test", 1_000)
            .unwrap();
        a.commit().unwrap();
        assert!(
            b.list_values(&o("list:fleet")).unwrap().is_empty(),
            "not read yet"
        );
        assert!(b.refresh().unwrap());
        assert!(!b.refresh().unwrap(), "said once");
        assert_eq!(
            b.list_values(&o("list:fleet")).unwrap(),
            vec![p("45.9.0.0/16")]
        );
        let err = b
            .upsert(&[ban("45.1.9.9", "manual", 60)], 2_000)
            .unwrap_err();
        assert!(matches!(err, StoreError::Allowlisted { .. }), "{err}");
        assert!(
            b.list(2_000, None)
                .unwrap()
                .iter()
                .all(|d| d.value != p("45.1.2.3"))
        );
        // A unit locks the store: the other node's unit waits, then sees the first one's
        // writes (here: an entry that the first removed).
        a.begin().unwrap();
        a.delete(&p("45.9.0.0/16"), None, 3_000).unwrap();
        let waiter = std::thread::spawn({
            let url = url.to_owned();
            move || {
                let mut c = PgStore::connect(&url, "central-c").unwrap();
                c.begin().unwrap();
                let seen = c.list_values(&o("list:fleet")).unwrap();
                c.commit().unwrap();
                seen
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiter.is_finished(), "the second unit waits for the first");
        a.commit().unwrap();
        assert!(waiter.join().unwrap().is_empty());
        // Local state is each node's own.
        a.save_state(
            "read-offset",
            &[("/var/log/auth.log".into(), "1:2:3".into())],
        )
        .unwrap();
        assert!(b.state("read-offset").unwrap().is_empty());
        assert_eq!(a.state("read-offset").unwrap().len(), 1);
    });
}

#[test]
fn a_postgresql_store_connects_again_after_the_server_drops_it() {
    use crate::decisions::Transactions;
    on_postgres(|url| {
        let mut s = PgStore::connect(url, "central-a").unwrap();
        s.upsert(&[ban("45.1.2.3", "manual", 60)], 1_000).unwrap();
        // The server ends this store's connection, as a restart or failover would.
        let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&s.backend_pid()])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        // A read in between fails; the next unit (or tick) connects again and nothing is lost.
        let _ = s.list(1_000, None);
        assert!(
            s.refresh().unwrap(),
            "the node is told to reconcile its kernel"
        );
        s.upsert(&[ban("45.1.2.4", "manual", 60)], 2_000).unwrap();
        let values: Vec<String> = s
            .list(2_000, None)
            .unwrap()
            .iter()
            .map(|d| d.value.to_string())
            .collect();
        assert_eq!(values, ["45.1.2.3", "45.1.2.4"]);
    });
}
