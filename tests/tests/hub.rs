//! The community hub on both of its stores, with five agents over HTTP on loopback.
use ips::hub::{HubConfig, HubStore};
use ips_tests::hub::{TOKEN, five_agents};

fn config() -> HubConfig {
    HubConfig {
        token: TOKEN.into(),
        k: 3.0,
        window_ms: 3_600_000,
        allowlist: vec![],
    }
}

#[test]
fn hub_on_sqlite() {
    five_agents(HubStore::open(std::path::Path::new(":memory:"), config()).expect("store"));
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
}
