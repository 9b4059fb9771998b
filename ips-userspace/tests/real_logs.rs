//! The parsers against real log lines (`tests/data/Linux_2k.log`, from the project's shared
//! samples), with counts established independently by grep.
use std::collections::HashMap;

use ips::parsers::{self, Clock, Kind, LogType, Skip};

#[test]
fn linux_2k_auth_failures() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/Linux_2k.log"
    ))
    .expect("fixture");
    // 2026-11-27: the file's dates (June, July) fall in 2026.
    let clock = Clock::utc(1_795_737_600_000);
    let mut events = 0;
    let mut by_source: HashMap<String, usize> = HashMap::new();
    let mut skips: HashMap<Skip, usize> = HashMap::new();
    for line in text.lines() {
        match parsers::parse(LogType::Syslog, line, &clock) {
            Ok(e) => {
                assert_eq!(e.kind, Kind::AuthFailed, "{line}");
                events += 1;
                *by_source.entry(e.source.to_string()).or_default() += 1;
            }
            Err(s) => *skips.entry(s).or_default() += 1,
        }
    }
    // grep -c "sshd(pam_unix).*authentication failure.*rhost=[0-9.]* "
    assert_eq!(events, 300);
    // grep -c "sshd(pam_unix).*authentication failure.*rhost=[^ ]*[a-z]"
    assert_eq!(skips[&Skip::HostnameSource], 189);
    assert_eq!(by_source["150.183.249.110"], 80);
    assert_eq!(by_source["207.243.167.114"], 23);
    assert_eq!(text.lines().count(), events + skips.values().sum::<usize>());
}
