//! Real CrowdSec clients against the real daemon: Debian's `crowdsec-firewall-bouncer` (ipset
//! mode, in the test's own network namespace, never the host's) and PyPI's `pycrowdsec`, with
//! overlapping decisions, deletes, a list refresh and expiry. What they hold must be what ips
//! bans. `cargo xtask test` installs both.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use ips_tests::Lab;

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ns(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", lab.a)).args(args);
    c
}

fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < within, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn key(lab: &Lab, name: &str) -> String {
    lab.ips_json(&["bouncers", "add", name])["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The firewall bouncer on the lab's API, managing two ipsets of its own.
fn firewall_bouncer(lab: &Lab, key: &str) -> Running {
    let config = lab.dir.join("fw.yaml");
    std::fs::write(
        &config,
        format!(
            "mode: ipset\npid_dir: {dir}\nupdate_frequency: 1s\ndaemonize: false\nlog_mode: file\n\
             log_dir: {dir}\nlog_level: debug\napi_url: http://127.0.0.1:8080/\napi_key: {key}\n\
             insecure_skip_verify: false\ndisable_ipv6: false\ndeny_action: DROP\ndeny_log: false\n\
             supported_decisions_types:\n  - ban\nblacklists_ipv4: ipstest4\n\
             blacklists_ipv6: ipstest6\nipset_type: nethash\niptables_chains: []\n\
             prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n",
            dir = lab.dir.display()
        ),
    )
    .unwrap();
    // The sets the bouncer fills, in the lab's namespace.
    for (set, family) in [("ipstest4", "inet"), ("ipstest6", "inet6")] {
        let out = in_ns(
            lab,
            &[
                "ipset", "create", set, "hash:net", "family", family, "timeout", "0", "-exist",
            ],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    Running(
        in_ns(lab, &["crowdsec-firewall-bouncer", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("crowdsec-firewall-bouncer (cargo xtask test installs it)"),
    )
}

fn in_set(lab: &Lab, set: &str, value: &str) -> bool {
    in_ns(lab, &["ipset", "test", set, value])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

const PYCROWDSEC: &str = r#"
import json, os, sys, time
from pycrowdsec.client import StreamClient
key, out = sys.argv[1], sys.argv[2]
origins = tuple(o for o in sys.argv[3:] if o)
c = StreamClient(api_key=key, lapi_url="http://127.0.0.1:8080/", interval=1,
                 only_include_decisions_from=origins)
c.run()
while True:
    with open(out + ".tmp", "w") as f:
        json.dump(c.get_current_decisions(), f)
    os.replace(out + ".tmp", out)
    time.sleep(0.2)
"#;

/// A pycrowdsec stream client writing what it holds to a file.
fn pycrowdsec(lab: &Lab, key: &str, name: &str, origins: &str) -> (Running, std::path::PathBuf) {
    let script = lab.dir.join("client.py");
    std::fs::write(&script, PYCROWDSEC).unwrap();
    let out = lab.dir.join(format!("{name}.json"));
    let child = in_ns(lab, &["python3"])
        .arg(&script)
        .args([key, out.to_str().unwrap(), origins])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with pycrowdsec (cargo xtask test installs it)");
    (Running(child), out)
}

fn held(file: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
        .unwrap_or_default()
}

/// Waits until the client writing `file` holds exactly `want`.
fn wait_held(what: &str, file: &std::path::Path, want: &BTreeSet<String>) {
    let started = Instant::now();
    loop {
        let got = held(file);
        if got == *want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting until {what}: holds {got:?}, want {want:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn the_firewall_bouncer_and_pycrowdsec_hold_what_ips_bans() {
    let mut lab = Lab::new("bouncer");
    lab.start_daemon();
    // Before the bouncers start: a manual ban, and a list with a manual ban on one of its
    // entries (it lasts shorter than the list's).
    lab.ips(&[
        "decisions",
        "add",
        "45.1.1.1",
        "2a00:5::1",
        "--duration",
        "1h",
    ]);
    let list = lab.dir.join("l.txt");
    std::fs::write(&list, "45.2.2.2\n45.2.2.4\n").unwrap();
    lab.ips(&["blocklist", "import", list.to_str().unwrap(), "--name", "l"]);
    lab.ips(&["decisions", "add", "45.2.2.2", "--duration", "30m"]);

    let _fw = firewall_bouncer(&lab, &key(&lab, "fw"));
    let (_py, py) = pycrowdsec(&lab, &key(&lab, "py"), "py", "");
    let (_cscli, cscli) = pycrowdsec(&lab, &key(&lab, "cscli"), "cscli", "cscli");
    let long = Duration::from_secs(20);
    wait_until("the firewall bouncer holds the startup set", long, || {
        ["45.1.1.1", "45.2.2.2", "45.2.2.4"]
            .iter()
            .all(|v| in_set(&lab, "ipstest4", v))
            && in_set(&lab, "ipstest6", "2a00:5::1")
    });
    let all = set(&["45.1.1.1/32", "45.2.2.2/32", "45.2.2.4/32", "2a00:5::1/128"]);
    wait_held("pycrowdsec holds the startup set", &py, &all);
    // Only the manual decisions (CrowdSec's `cscli` origin).
    let manual = set(&["45.1.1.1/32", "45.2.2.2/32", "2a00:5::1/128"]);
    wait_held("the filtered client holds cscli's", &cscli, &manual);

    // The manual ban on a listed value goes: the value stays banned for everyone that takes
    // the list. 45.1.1.1 goes for good.
    lab.ips(&["decisions", "delete", "45.2.2.2", "--origin", "manual"]);
    lab.ips(&["decisions", "delete", "45.1.1.1"]);
    wait_until("the firewall bouncer lets 45.1.1.1 go", long, || {
        !in_set(&lab, "ipstest4", "45.1.1.1")
    });
    assert!(
        in_set(&lab, "ipstest4", "45.2.2.2"),
        "unbanned while listed"
    );
    let left = set(&["45.2.2.2/32", "45.2.2.4/32", "2a00:5::1/128"]);
    wait_held("pycrowdsec lets 45.1.1.1 go", &py, &left);
    wait_held(
        "the filtered client lets both go",
        &cscli,
        &set(&["2a00:5::1/128"]),
    );

    // A list refresh sends its change; a short ban comes and expires.
    std::fs::write(&list, "45.2.2.2\n").unwrap();
    lab.ips(&["blocklist", "import", list.to_str().unwrap(), "--name", "l"]);
    lab.ips(&["decisions", "add", "45.3.3.3", "--duration", "3s"]);
    wait_until(
        "the firewall bouncer drops the refreshed entry",
        long,
        || !in_set(&lab, "ipstest4", "45.2.2.4") && in_set(&lab, "ipstest4", "45.3.3.3"),
    );
    wait_until(
        "the short ban expires at the firewall bouncer",
        long,
        || !in_set(&lab, "ipstest4", "45.3.3.3"),
    );
    let end = set(&["45.2.2.2/32", "2a00:5::1/128"]);
    wait_held("pycrowdsec ends where ips is", &py, &end);
    assert!(in_set(&lab, "ipstest4", "45.2.2.2"));
    assert!(in_set(&lab, "ipstest6", "2a00:5::1"));
}
