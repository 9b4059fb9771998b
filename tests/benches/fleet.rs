//! `cargo xtask bench`, a fleet on one central node: 100 agents (threads speaking the agents'
//! protocol over loopback, each with its own machine key) against the real release daemon.
//!
//! 1. Alerts per second that the central node takes from agents pushing batches of 100 alerts,
//!    each with a ban of its own address (stored, and banned fleet-wide in the kernel): 100
//!    agents at once, beside one agent alone.
//! 2. How long until every agent enforces a ban made centrally, with each agent pulling the
//!    bouncer stream every second (so about half a second is the floor), over 10 bans.
//!
//! Both run twice: with the central store on SQLite, then on PostgreSQL (the server
//! `cargo xtask bench` starts), with the ratio printed.
use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use ips::{
    api::{Client, Push},
    decisions::{Outcome, StoredAlert},
};
use ips_tests::{Lab, PgSchema, in_netns};

const AGENTS: usize = 100;
const API: &str = "http://127.0.0.1:8080";

fn alert(n: u32) -> StoredAlert {
    let addr = std::net::Ipv4Addr::from(0x2D00_0000 + 2 * n);
    let value = ips::prefix::Prefix::host(addr.into());
    StoredAlert {
        id: 0,
        scenario: "ssh-bf".into(),
        source: addr.into(),
        group: value,
        first_ms: 0,
        last_ms: 0,
        events: 6,
        outcome: Outcome::Ban {
            value,
            duration_ms: 3_600_000,
        },
        evidence: vec!["Failed password for root".into()],
        labels: Default::default(),
        machine: String::new(),
    }
}

/// Each of `keys` pushes `batches` pushes of 100 alerts at once; returns alerts per second.
fn push_rate(ns: &str, keys: Vec<String>, batches: u32, first: u32) -> f64 {
    in_netns(ns, move || {
        let start = Arc::new(Barrier::new(keys.len() + 1));
        let workers: Vec<_> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let start = start.clone();
                std::thread::spawn(move || {
                    let agent = ips::http::agent(Duration::from_secs(60));
                    start.wait();
                    for b in 0..batches {
                        let base = first + ((i as u32) * batches + b) * 100;
                        let push = Push {
                            version: "bench".into(),
                            alerts: (base..base + 100).map(alert).collect(),
                        };
                        let r = agent
                            .post(format!("{API}/v1/ips/agent/push"))
                            .header("Authorization", format!("Bearer {key}"))
                            .send_json(&push)
                            .expect("push");
                        assert_eq!(r.status().as_u16(), 200);
                    }
                })
            })
            .collect();
        let n = workers.len() as u32;
        start.wait();
        let t0 = Instant::now();
        for w in workers {
            w.join().expect("agent thread");
        }
        f64::from(n * batches * 100) / t0.elapsed().as_secs_f64()
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sqlite = run("SQLite", None);
    let pg = PgSchema::new("fleetbench");
    let postgres = run("PostgreSQL", Some(&pg));
    println!("   PostgreSQL vs SQLite (central store), same run:");
    println!(
        "   alerts/s {:.0} vs {:.0} ({:.2}x); central ban to every agent p99 {:.0} ms vs {:.0} ms",
        postgres.alerts_per_s,
        sqlite.alerts_per_s,
        postgres.alerts_per_s / sqlite.alerts_per_s,
        postgres.p99.as_secs_f64() * 1e3,
        sqlite.p99.as_secs_f64() * 1e3
    );
}

/// What one run measured.
struct Figures {
    alerts_per_s: f64,
    p99: Duration,
}

/// The whole bench on a central node whose store is SQLite (`pg` unset) or PostgreSQL.
fn run(store: &str, pg: Option<&PgSchema>) -> Figures {
    let mut lab = Lab::new("fleet");
    if let Some(pg) = pg {
        lab.store = format!("url = {:?}\n", pg.url);
    }
    lab.write_config("max_hosts = 2000000\n");
    lab.start_daemon();
    let client = Client::new(&lab.socket());
    let keys: Vec<String> = (0..AGENTS)
        .map(|i| {
            let r: serde_json::Value = client
                .post(
                    "/v1/ips/bouncers",
                    &serde_json::json!({"name": format!("agent{i}"), "role": "machine"}),
                )
                .expect("machine key");
            r["api_key"].as_str().expect("key").to_owned()
        })
        .collect();

    // 1. Push rate: one agent alone, then all of them.
    let one = push_rate(&lab.a, keys[..1].to_vec(), 20, 0);
    let all = push_rate(&lab.a, keys.clone(), 5, 1_000_000);
    let status: serde_json::Value = client.get("/v1/status").expect("status");
    println!("7. A fleet on one central node: {AGENTS} agents over loopback ({store} store)");
    println!("   alerts pushed (each with a ban), {AGENTS} agents at once: {all:>8.0} alerts/s");
    println!(
        "   baseline, one agent alone:                     {one:>8.0} alerts/s ({:.1}x)",
        all / one
    );
    println!(
        "   bans held after the pushes: {} (store), {} (kernel)",
        status["decisions"], status["maps"]["hosts_v4"]
    );

    // One startup pull alone: the central node's answer (read to its end), then the agent's
    // parse of it.
    let key0 = keys[0].clone();
    let (serve, parse, size) = in_netns(&lab.a, move || {
        let agent = ips::http::agent(Duration::from_secs(60));
        let t = Instant::now();
        let mut r = agent
            .get(format!("{API}/v1/decisions/stream?startup=true"))
            .header("X-Api-Key", &key0)
            .call()
            .expect("pull");
        let text = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .expect("body");
        let serve = t.elapsed();
        let t = Instant::now();
        let delta = ips::blocklists::lapi::parse_stream(&text).expect("parse");
        assert_eq!(delta.new.len(), 52_000);
        (serve, t.elapsed(), text.len())
    });
    println!(
        "   one startup pull of {:.1} MB alone: answered in {:.0} ms, parsed by the agent in {:.0} ms",
        size as f64 / 1e6,
        serve.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e3
    );

    // 2. Propagation: every agent pulls the stream every second.
    let pull_every = Duration::from_secs(1);
    let bans: Vec<String> = (0..10).map(|i| format!("46.1.2.{}", i + 1)).collect();
    let ns = lab.a.clone();
    let socket = lab.socket();
    let samples = in_netns(&ns, move || {
        let started = Instant::now();
        let made: Arc<std::sync::Mutex<Vec<(String, Instant)>>> = Arc::default();
        // Every agent has had its startup pull (the whole set) before the first ban.
        let ready = Arc::new(Barrier::new(AGENTS + 1));
        let agents: Vec<_> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let made = made.clone();
                let bans = bans.clone();
                let ready = ready.clone();
                std::thread::spawn(move || {
                    let agent = ips::http::agent(Duration::from_secs(120));
                    let mut seen: Vec<Option<Instant>> = vec![None; bans.len()];
                    ips::blocklists::lapi::pull(&agent, API, &key, true).expect("startup pull");
                    ready.wait();
                    // Spread the agents over the interval, as real ones are.
                    std::thread::sleep(pull_every * i as u32 / AGENTS as u32);
                    let mut startup = false;
                    while seen.iter().any(Option::is_none)
                        && started.elapsed() < Duration::from_secs(60)
                    {
                        let delta =
                            ips::blocklists::lapi::pull(&agent, API, &key, startup).expect("pull");
                        startup = false;
                        let at = Instant::now();
                        for (p, _, _) in &delta.new {
                            if let Some(k) = bans.iter().position(|b| *b == p.to_string()) {
                                seen[k].get_or_insert(at);
                            }
                        }
                        std::thread::sleep(pull_every);
                    }
                    let made = made.lock().expect("made").clone();
                    seen.iter()
                        .zip(&bans)
                        .filter_map(|(s, b)| {
                            let t0 = made.iter().find(|(v, _)| v == b)?.1;
                            Some(s.map(|s| s.saturating_duration_since(t0)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let client = Client::new(&socket);
        let t = Instant::now();
        ready.wait();
        let startup = t.elapsed();
        std::thread::sleep(pull_every);
        for b in &bans {
            let t0 = Instant::now();
            made.lock().expect("made").push((b.clone(), t0));
            let _: serde_json::Value = client
                .post("/v1/ips/decisions", &serde_json::json!({"values": [b]}))
                .expect("ban");
            std::thread::sleep(Duration::from_millis(700));
        }
        let samples = agents
            .into_iter()
            .flat_map(|a| a.join().expect("agent"))
            .collect::<Vec<_>>();
        (samples, startup)
    });
    let (samples, startup) = samples;
    println!(
        "   {AGENTS} startup pulls of the whole set at once: {:.1} s (the simulated agents parse on the same 2 cores)",
        startup.as_secs_f64()
    );
    let missed = samples.iter().filter(|s| s.is_none()).count();
    let mut got: Vec<Duration> = samples.into_iter().flatten().collect();
    got.sort();
    let pct = |p: f64| got[((got.len() as f64 * p) as usize).min(got.len() - 1)];
    println!(
        "   a central ban until the agent has it, {} (agent, ban) pairs, pulls every {:?}:",
        got.len(),
        pull_every
    );
    println!(
        "   p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms   (floor: the pull interval, {} ms; missed {missed})",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        got.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        pull_every.as_millis()
    );
    Figures {
        alerts_per_s: all,
        p99: pct(0.99),
    }
}
