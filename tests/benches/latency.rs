//! `cargo xtask bench`, detection-to-drop latency: from the write of the log line that
//! overflows a bucket to the first packet from that source dropped by XDP, with the real
//! daemon following a real file and real packets on a veth pair. 100 trials.
use std::{
    io::Write,
    time::{Duration, Instant},
};

use ips_tests::{Lab, packet::Frame};

fn line(src: &str, i: usize) -> String {
    format!(
        "Nov 27 10:00:{i:02} web1 sshd[4242]: Failed password for root from {src} port 4000{i} ssh2\n"
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut lab = Lab::new("lat");
    let log = lab.dir.join("auth.log");
    std::fs::write(&log, "").expect("log");
    lab.write_config(&format!(
        "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n",
        log.display()
    ));
    lab.start_daemon();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    let (tx, rx) = lab.sockets();
    let mut samples = Vec::new();
    let mut id = 0u32;
    for trial in 0..100u32 {
        let src = format!("198.18.{}.{}", trial / 200, trial % 200 + 1);
        for i in 0..5 {
            file.write_all(line(&src, i).as_bytes()).expect("write");
        }
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(30));
        rx.drain();
        let t0 = Instant::now();
        file.write_all(line(&src, 5).as_bytes()).expect("write");
        file.flush().expect("flush");
        let dropped_at = loop {
            id += 1;
            let sent = t0.elapsed();
            tx.send(&Frame::udp(&src, id).build());
            if !rx.saw(id, Duration::from_millis(1)) {
                break Some(sent);
            }
            if t0.elapsed() > Duration::from_secs(2) {
                break None;
            }
            // Pace the probes (resolution ~0.1 ms) so they do not starve the daemon of CPU.
            std::thread::sleep(Duration::from_micros(100));
        };
        match dropped_at {
            Some(d) => samples.push(d),
            None => eprintln!("trial {trial}: not dropped within 2 s"),
        }
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "6. Detection-to-drop latency (line written -> first packet dropped), {} trials",
        samples.len()
    );
    println!(
        "   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!("   goal: p99 <= 10 ms (CrowdSec's bouncers poll every 10 s by default)");
}
