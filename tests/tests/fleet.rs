//! One central `ips` and three agents, each in its own network namespaces with its own XDP
//! program on its own veth pair, joined to the central node by links of their own (TLS with a
//! certificate from `ips tls generate`, machine keys from `ips machines add`). A ban made
//! centrally drops packets on every agent; an alert raised on one agent is listed centrally and
//! its ban enforced by the others; an agent cut off keeps enforcing what it had and converges
//! once the link is back. Run once with the central store on SQLite and once on the real
//! PostgreSQL, with a second central node sharing the database.
#![expect(
    clippy::unwrap_used,
    reason = "the shared body fails the test by panicking"
)]
use std::{
    io::Write,
    time::{Duration, Instant},
};

use ips_tests::{Lab, PgSchema, packet::Frame, sh};

/// Polls until a frame from `src` is dropped (`true`) or passes (`false`) on `lab`, for at
/// most `within`.
fn becomes(lab: &Lab, src: &str, dropped: bool, within: Duration) -> bool {
    let started = Instant::now();
    let mut id = 0;
    while started.elapsed() < within {
        id += 1;
        let passed = !lab
            .exchange_quick(&[Frame::udp(src, id).build()])
            .is_empty();
        if passed != dropped {
            return true;
        }
    }
    false
}

const CONVERGE: Duration = Duration::from_secs(20);

#[test]
fn a_central_node_steers_three_agents() {
    fleet(None);
}

/// The same fleet with the central store on the real PostgreSQL, and a second central node
/// sharing it: a ban made on either reaches every agent and both central kernels.
#[test]
fn central_nodes_sharing_postgresql_steer_three_agents() {
    let pg = PgSchema::new("fleet");
    fleet(Some(&pg));
}

fn fleet(pg: Option<&PgSchema>) {
    let mut central = Lab::new("central");
    if let Some(pg) = pg {
        central.store = format!("url = {:?}\nnode = \"central1\"\n", pg.url);
    }
    let tag = format!("{}", std::process::id() % 10_000);
    let (cert, key) = (central.dir.join("cert.pem"), central.dir.join("key.pem"));
    let names: Vec<String> = (1..=3).map(|n| format!("10.99.{n}.1")).collect();
    let mut args = vec![
        "tls".to_owned(),
        "generate".into(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    for n in &names {
        args.extend(["--name".into(), n.clone()]);
    }
    central.ips(&args.iter().map(String::as_str).collect::<Vec<_>>());
    central.write_config_api(
        &format!(
            "listen = \"0.0.0.0:8443\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        "",
    );
    central.start_daemon();

    let mut agents = Vec::new();
    for n in 1..=3 {
        let mut agent = Lab::new(&format!("agent{n}"));
        // A link of its own between the agent's namespace and the central node's.
        let (c_if, a_if) = (format!("ipc{tag}{n}c"), format!("ipc{tag}{n}a"));
        sh(&[
            "ip", "link", "add", &c_if, "netns", &central.a, "type", "veth", "peer", "name", &a_if,
            "netns", &agent.a,
        ]);
        sh(&[
            "ip",
            "-n",
            &central.a,
            "addr",
            "add",
            &format!("10.99.{n}.1/24"),
            "dev",
            &c_if,
        ]);
        sh(&[
            "ip",
            "-n",
            &agent.a,
            "addr",
            "add",
            &format!("10.99.{n}.2/24"),
            "dev",
            &a_if,
        ]);
        sh(&["ip", "-n", &central.a, "link", "set", &c_if, "up"]);
        sh(&["ip", "-n", &agent.a, "link", "set", &a_if, "up"]);
        let machine = central.ips_json(&["machines", "add", &format!("agent{n}")]);
        let machine_key = machine["api_key"].as_str().unwrap();
        let log = agent.dir.join("auth.log");
        std::fs::write(&log, "").unwrap();
        agent.write_config(&format!(
            "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n\
             [central]\nurl = \"https://10.99.{n}.1:8443\"\nkey = \"{machine_key}\"\nca = \"{}\"\ninterval = \"300ms\"\n",
            log.display(),
            cert.display()
        ));
        agent.start_daemon();
        agents.push((agent, c_if, log));
    }

    // A ban made centrally is dropped by every agent.
    central.ips(&["decisions", "add", "45.67.89.10", "--reason", "fleet"]);
    for (agent, _, _) in &agents {
        assert!(
            becomes(agent, "45.67.89.10", true, CONVERGE),
            "a central ban never reached {}: {}",
            agent.a,
            agent.daemon_log()
        );
    }

    // An attack seen by agent 1 is banned there, listed centrally, and dropped by the others.
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&agents[0].2)
            .unwrap();
        for i in 0..6 {
            writeln!(
                f,
                "Nov 27 10:00:{i:02} web1 sshd[4242]: Failed password for root from 45.67.89.50 port {} ssh2",
                40000 + i
            )
            .unwrap();
        }
    }
    for (agent, _, _) in &agents {
        assert!(
            becomes(agent, "45.67.89.50", true, CONVERGE),
            "agent 1's ban never reached {}: {}",
            agent.a,
            central.daemon_log()
        );
    }
    let alerts = central.ips_json(&["alerts", "list", "--machine", "agent1"]);
    assert_eq!(alerts[0]["scenario"], "ssh-bf", "{alerts}");
    assert_eq!(alerts[0]["source"], "45.67.89.50", "{alerts}");
    assert_eq!(alerts[0]["machine"], "agent1", "{alerts}");
    let d = central.ips_json(&["decisions", "list", "--value", "45.67.89.50"]);
    assert_eq!(d[0]["origin"], "machine:agent1", "{d}");
    let mine = central.ips_json(&["decisions", "list", "--origin", "machine:agent1"]);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["value"], "45.67.89.50", "{mine}");
    let none = central.ips_json(&["decisions", "list", "--origin", "machine:agent2"]);
    assert_eq!(none, serde_json::json!([]));
    if let Some(pg) = pg {
        // A second central node on the same database: what it bans is enforced by the agents
        // (which pull from the first), and each central kernel follows the other's writes.
        let mut other = Lab::new("central2");
        other.store = format!("url = {:?}\nnode = \"central2\"\n", pg.url);
        other.write_config("");
        other.start_daemon();
        assert!(
            becomes(&other, "45.67.89.50", true, CONVERGE),
            "the second central node does not drop what the first banned: {}",
            other.daemon_log()
        );
        other.ips(&[
            "decisions",
            "add",
            "45.67.89.30",
            "--reason",
            "from central2",
        ]);
        for lab in agents.iter().map(|(a, _, _)| a).chain([&central]) {
            assert!(
                becomes(lab, "45.67.89.30", true, CONVERGE),
                "a ban made on the second central node never reached {}: {}",
                lab.a,
                central.daemon_log()
            );
        }
        let listed = central.ips_json(&["machines", "list"]);
        assert_eq!(
            listed.as_array().unwrap().len(),
            3,
            "one key table: {listed}"
        );
        other.ips(&["decisions", "delete", "45.67.89.30"]);
        for lab in agents.iter().map(|(a, _, _)| a).chain([&central]) {
            assert!(becomes(lab, "45.67.89.30", false, CONVERGE), "{}", lab.a);
        }
    }
    let machines = central.ips_json(&["machines", "list"]);
    assert_eq!(machines.as_array().unwrap().len(), 3, "{machines}");
    for m in machines.as_array().unwrap() {
        assert!(m["seen_ms"].as_i64().unwrap() > 0, "{m}");
        assert_eq!(m["version"], env!("CARGO_PKG_VERSION"), "{m}");
    }

    // Agent 3 is cut off: it keeps enforcing what it has (fail-static) while the fleet moves on.
    let (cut, cut_if) = (&agents[2].0, agents[2].1.clone());
    sh(&["ip", "-n", &central.a, "link", "set", &cut_if, "down"]);
    central.ips(&["decisions", "delete", "45.67.89.10"]);
    central.ips(&["decisions", "add", "45.67.89.20"]);
    for (agent, _, _) in &agents[..2] {
        assert!(becomes(agent, "45.67.89.20", true, CONVERGE));
        assert!(becomes(agent, "45.67.89.10", false, CONVERGE));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        cut.exchange(&[
            Frame::udp("45.67.89.10", 1).build(),
            Frame::udp("45.67.89.50", 2).build(),
            Frame::udp("45.67.89.20", 3).build()
        ]) == vec![3],
        "the cut-off agent did not keep what it had"
    );
    // The link is back: it converges.
    sh(&["ip", "-n", &central.a, "link", "set", &cut_if, "up"]);
    assert!(
        becomes(cut, "45.67.89.20", true, CONVERGE),
        "{}",
        cut.daemon_log()
    );
    assert!(becomes(cut, "45.67.89.10", false, CONVERGE));
}
