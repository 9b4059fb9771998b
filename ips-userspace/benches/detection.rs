//! `cargo xtask bench`, detection part: lines per second through parse + scenarios for sshd and
//! nginx logs with 10k sources in flight, beside a plain-regex baseline of the same patterns in
//! the same run; and the memory of 1M distinct sources in buckets.
use std::{
    collections::HashMap,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use ips::{
    parsers::{self, Clock, LogType},
    scenarios::{Engine, builtin},
};
use regex::Regex;

const LINES: usize = 1_000_000;
const SOURCES: u32 = 10_000;

fn addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xCB00_7100u32.wrapping_add(i * 7919) | 0x0100_0000)
}

fn sshd_lines() -> Vec<String> {
    (0..LINES as u32)
        .map(|i| {
            let src = addr(i % SOURCES);
            let t = i / 1000;
            match i % 4 {
                0 => format!("Nov 27 10:{:02}:{:02} h sshd[42]: Failed password for root from {src} port {} ssh2", t / 60 % 60, t % 60, 1024 + i % 50000),
                1 => format!("Nov 27 10:{:02}:{:02} h sshd[42]: Invalid user u{} from {src} port 22", t / 60 % 60, t % 60, i % 97),
                2 => format!("Nov 27 10:{:02}:{:02} h sshd[42]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={src}  user=root", t / 60 % 60, t % 60),
                _ => format!("Nov 27 10:{:02}:{:02} h sshd[42]: Connection closed by authenticating user root {src} port 22 [preauth]", t / 60 % 60, t % 60),
            }
        })
        .collect()
}

fn nginx_lines() -> Vec<String> {
    (0..LINES as u32)
        .map(|i| {
            let src = addr(i % SOURCES);
            let t = i / 1000;
            let (path, status) = match i % 5 {
                0 => ("/.env".to_owned(), 404),
                1 => (format!("/missing/{}", i % 31), 404),
                _ => (format!("/page/{}", i % 13), 200),
            };
            format!("{src} - - [27/Nov/2026:10:{:02}:{:02} +0000] \"GET {path} HTTP/1.1\" {status} 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"", t / 60 % 60, t % 60)
        })
        .collect()
}

/// The regex baseline: the same patterns, extracting the same fields, no buckets.
struct Baseline {
    ssh: Vec<Regex>,
    http: Regex,
}

impl Baseline {
    fn new() -> Self {
        let ssh = [
            r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d) (\S+) sshd\[\d+\]: Failed \S+ for (?:invalid user )?(\S*) from (\S+) port (\d+)",
            r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d) (\S+) sshd\[\d+\]: Invalid user (\S*) from (\S+)(?: port (\d+))?",
            r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d) (\S+) sshd\[\d+\]: pam_unix\(sshd:auth\): authentication failure;.* rhost=(\S+)(?:\s+user=(\S+))?",
            r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d) (\S+) sshd\[\d+\]: Connection closed by (?:authenticating|invalid) user (\S*) (\S+) port (\d+)",
        ];
        Self {
            ssh: ssh.iter().map(|r| Regex::new(r).expect("regex")).collect(),
            http: Regex::new(
                r#"^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) \S+ "[^"]*" "([^"]*)""#,
            )
            .expect("regex"),
        }
    }

    fn ssh(&self, line: &str) -> Option<IpAddr> {
        for (i, r) in self.ssh.iter().enumerate() {
            if let Some(c) = r.captures(line) {
                let ip = if i == 2 { c.get(3) } else { c.get(4) };
                return ip.and_then(|m| m.as_str().parse().ok());
            }
        }
        None
    }

    fn http(&self, line: &str) -> Option<(IpAddr, u16)> {
        let c = self.http.captures(line)?;
        Some((
            c.get(1)?.as_str().parse().ok()?,
            c.get(5)?.as_str().parse().ok()?,
        ))
    }
}

fn rate(n: usize, secs: f64) -> String {
    format!("{:.2} M lines/s", n as f64 / secs / 1e6)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0 / 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clock = Clock::utc(1_795_737_600_000);
    // Memory first, in a fresh heap, so that nothing freed earlier is reused and hidden.
    // Memory of 1M distinct sources in buckets (each feeds ssh-bf, ssh-slow-bf, ssh-user-enum).
    let before = rss_mb();
    let mut engine = Engine::new(builtin(), 4_000_000);
    let mut alerts = Vec::new();
    let mut line = String::new();
    for i in 0..1_000_000u32 {
        let src = Ipv4Addr::from(0x0B00_0000 + i);
        line.clear();
        line.push_str("Nov 27 10:00:00 h sshd[1]: Failed password for root from ");
        line.push_str(&src.to_string());
        line.push_str(" port 22 ssh2");
        if let Ok(e) = parsers::parse(LogType::Sshd, &line, &clock) {
            engine.pour(&e, &line, &mut alerts);
        }
    }
    let used = rss_mb() - before;
    let buckets: HashMap<&str, usize> = HashMap::from([("buckets", engine.buckets())]);
    drop(engine);
    let base = Baseline::new();
    println!(
        "4. Detection: parse + scenarios, one core, {LINES} lines, {SOURCES} sources in flight"
    );
    println!(
        "{:<8} {:>28} {:>26} {:>8}",
        "log", "ips (parse + all buckets)", "regex baseline (parse)", "ratio"
    );
    for (name, lines, kind) in [
        ("sshd", sshd_lines(), LogType::Sshd),
        ("nginx", nginx_lines(), LogType::Nginx),
    ] {
        let mut engine = Engine::new(builtin(), 2_000_000);
        let mut alerts = Vec::new();
        let t = Instant::now();
        let mut events = 0u64;
        for l in &lines {
            if let Ok(e) = parsers::parse(kind, l, &clock) {
                events += 1;
                engine.pour(&e, l, &mut alerts);
            }
            alerts.clear();
        }
        let ips_s = t.elapsed().as_secs_f64();
        assert_eq!(events as usize, LINES, "every generated line parses");
        let t = Instant::now();
        let mut hits = 0u64;
        for l in &lines {
            let ok = if kind == LogType::Sshd {
                base.ssh(l).is_some()
            } else {
                base.http(l).is_some()
            };
            hits += u64::from(black_box(ok));
        }
        let re_s = t.elapsed().as_secs_f64();
        assert_eq!(hits as usize, LINES, "the baseline matches every line too");
        println!(
            "{:<8} {:>28} {:>26} {:>7.1}x",
            name,
            rate(LINES, ips_s),
            rate(LINES, re_s),
            re_s / ips_s
        );
    }
    println!("   goal: >= 1M lines/s per core for parse plus buckets");
    println!();

    println!("5. Memory with 1M distinct sources in buckets");
    println!(
        "   {} buckets (3 scenarios per source): {:.0} MB resident, {:.0} bytes per source",
        buckets["buckets"],
        used,
        used * 1e6 / 1e6
    );
    println!("   goal: <= 200 MB");
}
