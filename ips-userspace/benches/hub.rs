//! `cargo xtask bench`, hub part: 1,000 simulated agents pushing signals over HTTP on loopback
//! to one hub; signals ingested per second, and the delay from the report that reaches K to the
//! address appearing in the consensus list. Then a hub with 100,000 values listed: the cost of
//! one decay tick (reports aging out) beside re-deciding every listed value (what a tick cost
//! before), and how long an enrolment takes while the ticks run.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ips::hub::{HubConfig, HubStore, server};

const AGENTS: usize = 1000;
const PUSHES_PER_AGENT: usize = 5;
const SIGNALS_PER_PUSH: usize = 20;

/// K = 3 over an hour; agents reach full trust over `ramp_ms`.
fn config(ramp_ms: i64) -> HubConfig {
    HubConfig {
        token: "bench-token-0123456789".into(),
        k: 3.0,
        window_ms: 3_600_000,
        allowlist: vec![],
        min: Default::default(),
        ramp_ms,
        // The bench measures ingest, not the per-agent limit.
        signals_per_minute: u64::MAX,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ips-bench-hub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("hub.db");
    let store = HubStore::open(&db, config(0)).expect("store");
    let addr = server::spawn(store, "127.0.0.1:0".parse().expect("addr")).expect("hub");
    let hub = format!("http://{addr}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let keys: Vec<String> = (0..AGENTS)
        .map(|i| {
            let mut r = agent
                .post(&format!("{hub}/v1/hub/enroll"))
                .send_json(
                    serde_json::json!({"token": "bench-token-0123456789", "name": format!("a{i}")}),
                )
                .expect("enrol");
            let v: serde_json::Value = r.body_mut().read_json().expect("json");
            v["api_key"].as_str().expect("key").to_owned()
        })
        .collect();
    let keys = Arc::new(keys);
    // Each agent reports addresses from a shared pool of 20k, so many cross K.
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let (keys, hub) = (keys.clone(), hub.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                let now = ips::calendar::now_ms();
                for a in (w..AGENTS).step_by(4) {
                    for p in 0..PUSHES_PER_AGENT {
                        let body: Vec<_> = (0..SIGNALS_PER_PUSH)
                            .map(|s| {
                                let n = (a * 7919 + p * 104_729 + s * 31) % 20_000;
                                serde_json::json!({
                                    "value": format!("100.{}.{}.{}", 128 + n / 65_536 % 64, n / 256 % 256, n % 256),
                                    "scenario": "ssh-bf",
                                    "time_ms": now
                                })
                            })
                            .collect();
                        agent
                            .post(&format!("{hub}/v1/hub/signals"))
                            .header("X-Api-Key", &keys[a])
                            .send_json(body)
                            .expect("push");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }
    let took = t.elapsed();
    let total = AGENTS * PUSHES_PER_AGENT * SIGNALS_PER_PUSH;
    // Consensus delay: two agents report a fresh address, the third report is timed until the
    // address is in the list.
    let mut delays = Vec::new();
    for i in 0..20u32 {
        let value = format!("198.18.1.{i}");
        let push = |k: &str| {
            agent
                .post(&format!("{hub}/v1/hub/signals"))
                .header("X-Api-Key", k)
                .send_json(serde_json::json!([{ "value": value, "scenario": "x", "time_ms": ips::calendar::now_ms() }]))
                .expect("push");
        };
        push(&keys[0]);
        push(&keys[1]);
        let t = Instant::now();
        push(&keys[2]);
        loop {
            let list = agent
                .get(&format!("{hub}/v1/hub/list"))
                .header("X-Api-Key", &keys[0])
                .call()
                .expect("list")
                .body_mut()
                .read_to_string()
                .expect("body");
            if list.lines().any(|l| l == value) {
                delays.push(t.elapsed());
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "never listed");
        }
    }
    delays.sort();
    let _ = std::fs::remove_dir_all(&dir);
    println!("8. Hub: {AGENTS} agents, {total} signals over HTTP on loopback (4 client threads)");
    println!(
        "   ingest: {:.0} signals/s ({:.1} s)   consensus delay (K-th report -> listed): p50 {:.1} ms, max {:.1} ms",
        total as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        delays[delays.len() / 2].as_secs_f64() * 1e3,
        delays.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    large_list();
}

/// A hub with 100,000 values listed by three approved agents.
fn large_list() {
    const LISTED: u32 = 100_000;
    let dir = std::env::temp_dir().join(format!("ips-bench-hub-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut store = HubStore::open(&dir.join("hub.db"), config(7 * 86_400_000)).expect("store");
    let now = ips::calendar::now_ms();
    let signals: Vec<ips::hub::Signal> = (0..LISTED)
        .map(|i| ips::hub::Signal {
            value: ips::prefix::Prefix::host(std::net::Ipv4Addr::from(0x2D00_0000 + i).into()),
            scenario: "ssh-bf".into(),
            time_ms: now,
        })
        .collect();
    for i in 0..3 {
        let (id, _) = store
            .enrol("bench-token-0123456789", &format!("trusted{i}"), now)
            .expect("enrol");
        store.approve(&format!("trusted{i}")).expect("approve");
        store.push(id, &signals, now).expect("push");
    }
    assert_eq!(store.listed().expect("listed").len(), LISTED as usize);
    store.decay(now).expect("first decay");
    let t = Instant::now();
    store.decay(now + 1000).expect("decay");
    let tick = t.elapsed();
    let all = store.listed().expect("listed");
    let t = Instant::now();
    store.update(&all, now + 1000).expect("re-decide");
    let baseline = t.elapsed();
    let addr = server::spawn(store, "127.0.0.1:0".parse().expect("addr")).expect("hub");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut enrol = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let r = agent
            .post(&format!("http://{addr}/v1/hub/enroll"))
            .send_json(
                serde_json::json!({"token": "bench-token-0123456789", "name": format!("late{i}")}),
            )
            .expect("enrol");
        assert_eq!(r.status().as_u16(), 201);
        enrol.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    enrol.sort();
    let _ = std::fs::remove_dir_all(&dir);
    println!("   with {LISTED} values listed:");
    println!(
        "   decay tick: {:.2} ms   baseline, re-deciding every listed value: {:.0} ms ({:.0}x)",
        tick.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        baseline.as_secs_f64() / tick.as_secs_f64().max(1e-9)
    );
    println!(
        "   enrolment while the ticks run: p50 {:.1} ms, max {:.1} ms (was 0.7-1.2 s when each tick re-decided the list)",
        enrol[enrol.len() / 2].as_secs_f64() * 1e3,
        enrol.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}
