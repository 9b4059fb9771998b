//! The community hub on both of its stores, with five agents over HTTP on loopback.
use ips::hub::{HubConfig, HubStore};
use ips_tests::hub::{TOKEN, five_agents, sybil};

fn config() -> HubConfig {
    HubConfig {
        token: TOKEN.into(),
        k: 3.0,
        window_ms: 3_600_000,
        allowlist: vec![],
        min: Default::default(),
        // These agents are as trusted as if they had been approved.
        ramp_ms: 0,
        signals_per_minute: ips::hub::signals_per_minute(),
    }
}

/// K = 3 over 30 days; agents reach full trust over 7 days unless approved.
fn ramping() -> HubConfig {
    HubConfig {
        window_ms: 30 * 86_400_000,
        ramp_ms: 7 * 86_400_000,
        ..config()
    }
}

#[test]
fn hub_on_sqlite() {
    five_agents(HubStore::open(std::path::Path::new(":memory:"), config()).expect("store"));
    sybil(HubStore::open(std::path::Path::new(":memory:"), ramping()).expect("store"));
}

/// `cargo xtask test` starts a PostgreSQL server on loopback and sets `IPS_TEST_POSTGRES`.
#[test]
fn hub_on_postgresql() {
    let url = std::env::var("IPS_TEST_POSTGRES")
        .expect("IPS_TEST_POSTGRES is not set: run the tests with `cargo xtask test`, which starts PostgreSQL");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect to PostgreSQL");
    c.batch_execute("DROP TABLE IF EXISTS agents, signals, listed, changes")
        .expect("reset");
    drop(c);
    five_agents(HubStore::postgres(&url, config()).expect("store"));
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect to PostgreSQL");
    c.batch_execute("DROP TABLE IF EXISTS agents, signals, listed, changes")
        .expect("reset");
    drop(c);
    sybil(HubStore::postgres(&url, ramping()).expect("store"));
}

/// An agent's backlog larger than one request body goes in batches the hub takes.
#[test]
fn a_large_backlog_is_pushed_in_batches() {
    use ips::schedule::Task;
    let addr = ips::hub::server::spawn(
        HubStore::open(std::path::Path::new(":memory:"), config()).expect("store"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("hub up");
    let url = format!("http://{addr}");
    let mut r = ureq::post(&format!("{url}/v1/hub/enroll"))
        .send_json(serde_json::json!({"token": ips_tests::hub::TOKEN, "name": "a"}))
        .expect("enrol");
    let v: serde_json::Value = r.body_mut().read_json().expect("key");
    let status = std::sync::Arc::default();
    let (mut pusher, tx) = ips::hub::Pusher::new(
        ips::hub::AgentConfig {
            url,
            api_key: v["api_key"].as_str().expect("key").to_owned(),
        },
        &status,
    );
    // 60,000 signals: some 5 MB as one body, over the hub's 2 MB limit.
    for i in 0..60_000u32 {
        tx.send(ips::hub::Signal {
            value: ips::prefix::Prefix::host(std::net::Ipv4Addr::from(0x2D00_0000 + i).into()),
            scenario: "ssh-bf".into(),
            time_ms: 0,
        })
        .expect("send");
    }
    pusher.run();
    let s = status.lock().expect("status")[0].clone();
    assert_eq!(s.entries, 60_000, "{s:?}");
    assert_eq!(s.last_error, None);
}

/// An agent pushing more than its budget a minute gets 429; another agent is not held back.
#[test]
fn an_agent_over_its_signal_budget_is_told_to_wait() {
    let addr = ips::hub::server::spawn(
        HubStore::open(
            std::path::Path::new(":memory:"),
            HubConfig {
                signals_per_minute: 10,
                ..config()
            },
        )
        .expect("store"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("hub up");
    let url = format!("http://{addr}");
    let key = |name: &str| -> String {
        let mut r = ureq::post(&format!("{url}/v1/hub/enroll"))
            .send_json(serde_json::json!({"token": ips_tests::hub::TOKEN, "name": name}))
            .expect("enrol");
        let v: serde_json::Value = r.body_mut().read_json().expect("key");
        v["api_key"].as_str().expect("key").to_owned()
    };
    let push = |key: &str, n: u32| -> u16 {
        let signals: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "value": std::net::Ipv4Addr::from(0x2D00_0000 + i).to_string(),
                    "scenario": "ssh-bf",
                    "time_ms": 0
                })
            })
            .collect();
        ureq::post(&format!("{url}/v1/hub/signals"))
            .header("X-Api-Key", key)
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(&signals)
            .expect("push")
            .status()
            .as_u16()
    };
    let (a, b) = (key("a"), key("b"));
    assert_eq!(push(&a, 8), 200);
    assert_eq!(push(&a, 3), 429, "11 signals in a minute, over 10");
    assert_eq!(
        push(&a, 2),
        200,
        "a refused push takes nothing from the budget"
    );
    assert_eq!(push(&a, 1), 429);
    assert_eq!(push(&b, 10), 200, "each agent has its own budget");
}
