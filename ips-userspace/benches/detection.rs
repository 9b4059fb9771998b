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

/// A day of a web site's traffic: pages, assets, an API with queries, searches, 10% missing,
/// four user agents; of every ten lines, `new` ask for a target never seen before (a session
/// id in the query).
fn site_lines(new: u32) -> Vec<String> {
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1",
        "okhttp/4.12",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ];
    (0..LINES as u32)
        .map(|i| {
            let src = addr(i % SOURCES);
            let t = i / 100;
            let n = i % 500;
            let target = if i % 10 < new {
                format!("/item/{i}?session={:x}&q=red+shoes", i.wrapping_mul(7919))
            } else {
                match i % 9 {
                    0 => "/".to_owned(),
                    1 => format!("/blog/post-{n}"),
                    2 => "/static/app.js".to_owned(),
                    3 => "/static/site.css".to_owned(),
                    4 => format!("/img/p{n}.jpg"),
                    5 => format!("/api/v1/items?page={n}&sort=desc"),
                    6 => format!("/search?q=shoes+size+{n}"),
                    7 => format!("/product/{n}?ref=home"),
                    _ => "/index.html".to_owned(),
                }
            };
            let status = if i % 10 == 0 { 404 } else { 200 };
            format!(
                "{src} - - [27/Nov/2026:{:02}:{:02}:{:02} +0000] \"GET {target} HTTP/1.1\" {status} 512 \"-\" \"{}\"",
                10 + t / 3600,
                t / 60 % 60,
                t % 60,
                AGENTS[(i.wrapping_mul(2_654_435_761) >> 30) as usize]
            )
        })
        .collect()
}

/// `ips replay` of a 1M-line nginx file, reading included (the release binary, `IPS_BIN`),
/// beside the regex baseline reading the same file.
fn replay_end_to_end(base: &Baseline) {
    use std::io::{BufRead, Write};
    println!("4b. nginx end to end: `ips replay` of a 1M-line file (every built-in scenario)");
    println!(
        "{:<26} {:>20} {:>26} {:>8}",
        "traffic", "ips replay", "regex baseline (read+parse)", "ratio"
    );
    let Ok(bin) = std::env::var("IPS_BIN") else {
        println!("   (IPS_BIN not set: run it through `cargo xtask bench`)");
        return;
    };
    for (name, new) in [
        ("a site's day", 0),
        ("a third of targets new", 3),
        ("every target new", 10),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
            for l in site_lines(new) {
                writeln!(f, "{l}").expect("write");
            }
        }
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let out = std::process::Command::new(&bin)
                .args(["replay", "--type", "nginx"])
                .arg(&path)
                .output()
                .expect("ips replay");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("1000000 lines, 1000000 events"), "{text}");
            best = best.min(t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        let mut hits = 0u64;
        let reader = std::io::BufReader::new(std::fs::File::open(&path).expect("open"));
        for l in reader.lines() {
            hits += u64::from(black_box(base.http(&l.expect("line")).is_some()));
        }
        let re_s = t.elapsed().as_secs_f64();
        assert_eq!(hits as usize, LINES);
        println!(
            "{:<26} {:>20} {:>26} {:>7.1}x",
            name,
            rate(LINES, best),
            rate(LINES, re_s),
            re_s / best
        );
    }
    println!(
        "   goal: >= 1M lines/s per core end to end (best of 3 runs; one core: replay is one thread)"
    );
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
    replay_end_to_end(&base);
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
