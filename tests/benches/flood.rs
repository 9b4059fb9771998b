//! `cargo xtask bench`, real packets: trafgen (netsniff-ng) floods a veth pair from namespace
//! `b`, one sending core, UDP from 1M sources of one /12 (random each packet), into namespace
//! `a`, which holds 1M bans: 500,000 of the /12's addresses (so about half the flood is
//! banned) and 500,000 elsewhere. Packets per second handled at the receiver, for: no filter,
//! an nftables set of the same bans in a prerouting hook, and ips in each mode (native XDP,
//! generic XDP, TC, auto), with the share of both CPUs busy during the flood.
use std::{
    fmt::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ips_tests::{Lab, sh};

/// Seconds of flood per row.
const SECONDS: u64 = 4;
/// The flood's /12: 45.16.0.0 - 45.31.255.255.
const BASE: u32 = 0x2d10_0000;
const SIZE: u32 = 1 << 20;

/// Busy and total jiffies of all CPUs.
fn cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The 1M bans, one per line.
fn bans() -> (String, Vec<u32>) {
    let mut text = String::with_capacity(16 * 1_000_000);
    let mut all = Vec::with_capacity(1_000_000);
    for i in 0..500_000u32 {
        all.push(BASE + 2 * i);
    }
    // Elsewhere: 500,000 distinct hosts of 60.0.0.0/8 and 61.0.0.0/8.
    let mut x = 0x9e37_79b9u32;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 500_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let a = 0x3c00_0000 | (x & 0x01ff_ffff);
        if seen.insert(a) {
            all.push(a);
        }
    }
    for a in &all {
        let _ = writeln!(text, "{}", std::net::Ipv4Addr::from(*a));
    }
    (text, all)
}

/// Floods from `b` for [`SECONDS`] on one core; returns (handled per second by `count`, CPU
/// busy share).
fn flood(lab: &Lab, count: &dyn Fn() -> u64) -> (f64, f64) {
    let conf = lab.dir.join("flood.cfg");
    std::fs::write(
        &conf,
        format!(
            "{{ eth(da=ff:ff:ff:ff:ff:ff), ipv4(sa=drnd({BASE:#x}, {:#x}), da=10.77.0.1, ttl=64), udp(sp=4000, dp=9), fill(0x00, 18) }}\n",
            BASE + SIZE - 1
        ),
    )
    .expect("trafgen config");
    let before = count();
    let (busy0, total0) = cpu();
    let started = Instant::now();
    let status = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.b))
        .args(["timeout", "-s", "INT", &SECONDS.to_string()])
        .args([
            "taskset", "-c", "1", "trafgen", "--cpus", "1", "-q", "--dev",
        ])
        .arg(&lab.b_if)
        .arg("--conf")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("trafgen (cargo xtask bench installs netsniff-ng)");
    let _ = status;
    // What is still queued at the receiver is handled within a moment.
    std::thread::sleep(Duration::from_millis(200));
    let elapsed = started.elapsed().as_secs_f64();
    let (busy1, total1) = cpu();
    let after = count();
    let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    ((after - before) as f64 / elapsed, busy)
}

/// The packets counted by the first rule of an nftables chain in namespace `a` (family, table,
/// chain).
fn nft_counter(lab: &Lab, chain: &[&str; 3]) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.a, "nft", "-j", "list", "chain"])
        .args(chain)
        .output()
        .expect("nft");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["nftables"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find_map(|e| e["rule"]["expr"][0]["counter"]["packets"].as_u64())
        })
        .unwrap_or(0)
}

fn rx_packets(lab: &Lab) -> u64 {
    let out = Command::new("ip")
        .args(["-n", &lab.a, "-s", "-j", "link", "show", "dev", &lab.a_if])
        .output()
        .expect("ip");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

fn ips_handled(lab: &Lab) -> u64 {
    let s = lab.ips_json(&["status"]);
    [
        "v4_passed",
        "v4_dropped",
        "v4_allowed",
        "non_ip",
        "malformed",
    ]
    .iter()
    .map(|k| s["counters"][k].as_u64().unwrap_or(0))
    .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut lab = Lab::new("flood");
    let (list, all) = bans();
    let list_path = lab.dir.join("bans.txt");
    std::fs::write(&list_path, &list).expect("list");
    let mut rows: Vec<(String, f64, f64)> = Vec::new();

    // No filter.
    let (pps, busy) = flood(&lab, &|| rx_packets(&lab));
    rows.push(("no filter".into(), pps, busy));

    // An nftables set of the same addresses, dropped in a prerouting hook.
    let nft = lab.dir.join("bans.nft");
    let mut text = String::from(
        "table ip ipsflood {\n  set banned { type ipv4_addr; size 1100000; elements = { ",
    );
    for (i, a) in all.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{}", std::net::Ipv4Addr::from(*a));
    }
    text.push_str(
        " } }\n  chain pre { type filter hook prerouting priority -300; counter; ip saddr @banned drop; }\n}\n",
    );
    std::fs::write(&nft, text).expect("nft file");
    let loaded = Command::new("ip")
        .args(["netns", "exec", &lab.a, "nft", "-f"])
        .arg(&nft)
        .status()
        .is_ok_and(|s| s.success());
    if loaded {
        let counter = || nft_counter(&lab, &["ip", "ipsflood", "pre"]);
        let (pps, busy) = flood(&lab, &counter);
        rows.push(("nftables set, prerouting".into(), pps, busy));
        sh(&[
            "ip", "netns", "exec", &lab.a, "nft", "delete", "table", "ip", "ipsflood",
        ]);
    } else {
        eprintln!("nft -f failed: no nftables row");
    }

    // The ceiling: every packet dropped at the ingress hook (where TC runs), no lookup at all.
    // What the sender and the receiver's driver cost per packet bounds every filter's row.
    let ingress = format!(
        "table netdev ipsceil {{ chain early {{ type filter hook ingress device \"{}\" priority -500; counter drop; }}; }}\n",
        lab.a_if
    );
    let ceil = lab.dir.join("ceiling.nft");
    std::fs::write(&ceil, ingress).expect("nft file");
    let loaded = Command::new("ip")
        .args(["netns", "exec", &lab.a, "nft", "-f"])
        .arg(&ceil)
        .status()
        .is_ok_and(|s| s.success());
    if loaded {
        let counter = || nft_counter(&lab, &["netdev", "ipsceil", "early"]);
        let (pps, busy) = flood(&lab, &counter);
        rows.push((
            "ceiling: every packet dropped at ingress, no lookup".into(),
            pps,
            busy,
        ));
        sh(&[
            "ip", "netns", "exec", &lab.a, "nft", "delete", "table", "netdev", "ipsceil",
        ]);
    } else {
        eprintln!("nft -f failed: no ceiling row");
    }

    // ips in each mode, the same 1M bans imported as a list.
    for mode in ["native", "generic", "tc", "auto"] {
        lab.write_config("max_hosts = 1100000\n");
        lab.set_mode(mode);
        lab.start_daemon();
        lab.ips(&[
            "blocklist",
            "import",
            list_path.to_str().expect("path"),
            "--name",
            "flood",
            "--duration",
            "24h",
        ]);
        let status = lab.ips_json(&["status"]);
        let hook = status["interfaces"][0]["mode"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let fill = status["maps"]["hosts_v4"].as_u64().unwrap_or(0);
        let (pps, busy) = flood(&lab, &|| ips_handled(&lab));
        let dropped = lab.counter("v4_dropped");
        rows.push((
            format!("ips {mode} ({hook}; {fill} bans; {dropped} dropped)"),
            pps,
            busy,
        ));
        lab.stop_daemon();
        lab.ips(&["detach", "--iface", &lab.a_if.clone()]);
    }

    let nft_pps = rows
        .iter()
        .find(|r| r.0.starts_with("nftables"))
        .map_or(0.0, |r| r.1);
    println!(
        "8. Real packets: trafgen floods a veth pair (one core, UDP from 1M sources of a /12, random; about half banned; 1M bans), {SECONDS} s a row"
    );
    println!(
        "{:<72} {:>12} {:>9} {:>9}",
        "", "packets/s", "vs nft", "CPU busy"
    );
    for (name, pps, busy) in &rows {
        println!(
            "{name:<72} {pps:>12.0} {:>8.2}x {:>8.0}%",
            if nft_pps > 0.0 { pps / nft_pps } else { 0.0 },
            busy * 100.0
        );
    }
    println!("   goal: ips in auto mode >= 1.5x the nftables set");
    let pps_of = |prefix: &str| {
        rows.iter()
            .find(|r| r.0.starts_with(prefix))
            .map_or(0.0, |r| r.1)
    };
    let (ceiling, open) = (pps_of("ceiling"), pps_of("no filter"));
    if ceiling > 0.0 && open > 0.0 && nft_pps > 0.0 {
        // Half the packets at the ceiling's cost, half at the cost of no filter.
        let best = 2.0 / (1.0 / ceiling + 1.0 / open);
        println!(
            "   a filter of no cost that drops the banned half at ingress would handle {best:.0} packets/s here: {:.2}x the nftables set",
            best / nft_pps
        );
    }
    drop(lab);
}
