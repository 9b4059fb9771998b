//! The top dropped sources and prefixes: real frames dropped by the real XDP program on a veth
//! pair are sampled into its ring buffer, read by the daemon's enforcer, and `ips status` names
//! the most dropped sources and the bans that dropped them (host hash, /24 summary, /25 trie,
//! IPv6 trie), with the counts the kernel counted.
use std::time::{Duration, Instant};

use ips_tests::{Lab, packet::Frame};
use serde_json::Value;

fn frames(src: &str, n: u32, first_id: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| Frame::udp(src, first_id + i).build())
        .collect()
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e[key] == value)
}

#[test]
fn top_dropped_sources_and_the_bans_that_drop_them() {
    let mut lab = Lab::new("top");
    lab.write_config("");
    lab.start_daemon();
    for ban in [
        "203.0.113.7",
        "198.51.100.0/24",
        "198.51.101.128/25",
        "2001:db8:77::/48",
        "192.0.2.0/24",
    ] {
        lab.ips(&["decisions", "add", ban, "--reason", "top"]);
    }
    // Bursts under the sampler's budget (32 per CPU per 100 ms; each exchange waits 400 ms),
    // so every drop is a sample of weight one and the counts are exact.
    let sent: [(&str, u32); 7] = [
        ("203.0.113.7", 25),
        ("198.51.100.1", 8),
        ("198.51.100.2", 8),
        ("198.51.100.3", 8),
        ("198.51.101.200", 5),
        ("2001:db8:77::1", 6),
        ("2001:db8:77:ffff::2", 6),
    ];
    for (i, (src, n)) in sent.iter().enumerate() {
        let passed = lab.exchange(&frames(src, *n, 1000 * i as u32));
        assert!(passed.is_empty(), "{src} is banned: {passed:?}");
    }
    let total: u64 = sent.iter().map(|(_, n)| u64::from(*n)).sum();
    let started = Instant::now();
    let status = loop {
        let s = lab.ips_json(&["status"]);
        let resolved = s["top"]["sources"]
            .as_array()
            .is_some_and(|v| v.len() == sent.len() && v.iter().all(|t| !t["prefix"].is_null()));
        if (s["top"]["samples"].as_u64() == Some(total) && resolved)
            || started.elapsed() > Duration::from_secs(10)
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let top = &status["top"];
    assert_eq!(top["samples"].as_u64(), Some(total), "{top:#}");
    let dropped = status["counters"]["v4_dropped"].as_u64().unwrap()
        + status["counters"]["v6_dropped"].as_u64().unwrap();
    assert_eq!(dropped, total, "the kernel dropped every frame");

    let first = &top["sources"][0];
    assert_eq!(first["source"], "203.0.113.7", "{top:#}");
    assert_eq!(first["packets"], 25);
    assert_eq!(first["prefix"], "203.0.113.7");
    assert_eq!(first["origin"], "manual");
    for (src, n) in sent {
        let t = find(&top["sources"], "source", src).unwrap_or_else(|| panic!("{src}: {top:#}"));
        assert_eq!(t["packets"].as_u64(), Some(u64::from(n)), "{src}");
        let len = Frame::udp(src, 0).build().len() as u64;
        assert_eq!(t["bytes"].as_u64(), Some(len * u64::from(n)), "{src}");
    }
    for (prefix, sources, packets) in [
        ("203.0.113.7", 1, 25),
        ("198.51.100.0/24", 3, 24),
        ("198.51.101.128/25", 1, 5),
        ("2001:db8:77::/48", 2, 12),
    ] {
        let p =
            find(&top["prefixes"], "prefix", prefix).unwrap_or_else(|| panic!("{prefix}: {top:#}"));
        assert_eq!(p["sources"].as_u64(), Some(sources), "{prefix}");
        assert_eq!(p["packets"].as_u64(), Some(packets), "{prefix}");
    }
    assert!(
        find(&top["prefixes"], "prefix", "192.0.2.0/24").is_none(),
        "a ban that dropped nothing is not listed"
    );
    let rates: Vec<u64> = top["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["per_minute"].as_u64().unwrap())
        .collect();
    assert!(
        rates.is_sorted_by(|a, b| a >= b),
        "most dropped first: {rates:?}"
    );

    // A flood is sampled within the budget; the samples it could not send are carried by the
    // next ones, so the estimates never exceed what the kernel dropped.
    let flood = 600;
    let _ = lab.exchange_quick(&frames("198.51.100.9", flood, 50_000));
    std::thread::sleep(Duration::from_millis(200));
    let _ = lab.exchange(&frames("198.51.100.10", 3, 60_000));
    std::thread::sleep(Duration::from_secs(1));
    let status = lab.ips_json(&["status"]);
    let top = &status["top"];
    let samples = top["samples"].as_u64().unwrap() - total;
    assert!(
        samples < u64::from(flood),
        "the flood was sampled, not copied: {samples} samples"
    );
    let flooded = find(&top["sources"], "source", "198.51.100.9").expect("the flood is listed");
    assert!(flooded["packets"].as_u64().unwrap() >= 32, "{flooded}");
    let estimated: u64 = top["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["packets"].as_u64().unwrap())
        .sum();
    let dropped = status["counters"]["v4_dropped"].as_u64().unwrap()
        + status["counters"]["v6_dropped"].as_u64().unwrap();
    assert!(
        estimated <= dropped,
        "estimates {estimated} within the {dropped} dropped"
    );
    assert_eq!(dropped, total + u64::from(flood) + 3);
}
