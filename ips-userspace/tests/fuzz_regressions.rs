//! Inputs that once crashed or misled a fuzz target (`fuzz/regressions/<target>/`), replayed
//! through the same checks as the target on every test run.
#![expect(clippy::unwrap_used, reason = "a test fails by panicking")]
use std::path::Path;

use ips::{
    blocklists::{Format, allowing, lapi, prepare},
    parsers::{self, Clock, LogType},
    prefix::Prefix,
    scenarios::{Engine, builtin},
};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

#[test]
fn parser_inputs() {
    let mut engine = Engine::new(builtin(), 10_000);
    let clock = Clock::utc(1_795_737_600_000);
    for (_, data) in inputs("parsers") {
        let text = String::from_utf8_lossy(&data);
        for line in text.lines() {
            let mut alerts = Vec::new();
            for kind in [
                LogType::Auto,
                LogType::Sshd,
                LogType::Nginx,
                LogType::Syslog,
            ] {
                if let Ok(e) = parsers::parse(kind, line, &clock) {
                    engine.pour(&e, line, &mut alerts);
                }
            }
        }
    }
}

#[test]
fn list_inputs() {
    let allow = allowing(&[]);
    let private: Vec<Prefix> = ips::prefix::private_ranges().collect();
    for (name, data) in inputs("lists") {
        let text = String::from_utf8_lossy(&data);
        for format in [None, Some(Format::Plain), Some(Format::CrowdsecStream)] {
            for p in prepare(&text, format, &allow).prefixes {
                assert!(allow.min.allows(&p), "{name}: {p}");
                assert!(
                    !private.iter().any(|r| r.contains(&p) || p.contains(r)),
                    "{name}: {p}"
                );
            }
        }
        let _ = lapi::parse_stream(&text);
    }
}

#[test]
fn value_inputs() {
    for (_, data) in inputs("values") {
        let s = String::from_utf8_lossy(&data);
        if let Ok(p) = s.parse::<Prefix>() {
            assert_eq!(p.to_string().parse::<Prefix>().unwrap(), p);
        }
        let _ = ips::duration::parse(&s);
    }
}

#[test]
fn api_inputs() {
    for (_, data) in inputs("api") {
        let _ = serde_json::from_slice::<ips::api::AddRequest>(&data);
        let _ = serde_json::from_slice::<ips::api::ImportRequest>(&data);
    }
}
