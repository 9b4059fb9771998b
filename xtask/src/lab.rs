//! `cargo xtask run` with no arguments: a lab that is safe on any machine. It makes two network
//! namespaces joined by a veth pair, runs the daemon attached to one end, bans a demo prefix,
//! sends traffic from a banned and a clean source, shows what got through and the counters,
//! and removes everything on Ctrl-C (or after `--seconds`).
use std::{
    collections::BTreeMap,
    fs::File,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::workspace;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Lab {
    a: String,
    b: String,
    a_if: String,
    b_if: String,
    dir: PathBuf,
    pin_dir: PathBuf,
    ips: PathBuf,
    daemon: Option<Child>,
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    fn new() -> Self {
        let id = std::process::id() % 10_000_000;
        Self {
            a: format!("ips-lab-{id}-a"),
            b: format!("ips-lab-{id}-b"),
            a_if: format!("ipsl{id}a"),
            b_if: format!("ipsl{id}b"),
            dir: std::env::temp_dir().join(format!("ips-lab-{id}")),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/ips-lab-{id}")),
            ips: workspace().join("target/release/ips"),
            daemon: None,
        }
    }

    fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.auth_log(), "")?;
        sh(&["ip", "netns", "add", &self.a])?;
        sh(&["ip", "netns", "add", &self.b])?;
        sh(&[
            "ip", "link", "add", &self.a_if, "netns", &self.a, "type", "veth", "peer", "name",
            &self.b_if, "netns", &self.b,
        ])?;
        for (ns, ifname) in [(&self.a, &self.a_if), (&self.b, &self.b_if)] {
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
        }
        let (a, b, ai, bi) = (&self.a, &self.b, &self.a_if, &self.b_if);
        sh(&["ip", "-n", a, "addr", "add", "10.78.0.1/24", "dev", ai])?;
        sh(&[
            "ip",
            "-n",
            a,
            "addr",
            "add",
            "fd78::1/64",
            "dev",
            ai,
            "nodad",
        ])?;
        sh(&["ip", "-n", b, "addr", "add", "10.78.0.2/24", "dev", bi])?;
        sh(&[
            "ip",
            "-n",
            b,
            "addr",
            "add",
            "fd78::2/64",
            "dev",
            bi,
            "nodad",
        ])?;
        // Sources the demo sends from: one banned, one clean, per family.
        sh(&["ip", "-n", b, "addr", "add", "203.0.113.7/32", "dev", bi])?;
        sh(&["ip", "-n", b, "addr", "add", "192.0.2.10/32", "dev", bi])?;
        sh(&[
            "ip",
            "-n",
            b,
            "addr",
            "add",
            "2001:db8:bad::7/128",
            "dev",
            bi,
            "nodad",
        ])?;
        sh(&["ip", "-n", a, "route", "add", "203.0.113.0/24", "dev", ai])?;
        sh(&["ip", "-n", a, "route", "add", "192.0.2.0/24", "dev", ai])?;
        // The source the detection demo catches brute-forcing SSH.
        sh(&["ip", "-n", b, "addr", "add", "198.51.100.99/32", "dev", bi])?;
        sh(&["ip", "-n", a, "route", "add", "198.51.100.0/24", "dev", ai])?;
        sh(&["ip", "-n", a, "route", "add", "2001:db8::/32", "dev", ai])?;
        // A static neighbour entry: otherwise the neighbour solicitation for fd78::1 may leave
        // from the banned source address, be dropped, and starve the clean flow too.
        let out = Command::new("ip")
            .args(["-n", a, "-br", "link", "show", "dev", ai])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mac = text
            .split_whitespace()
            .nth(2)
            .context("cannot read the lab interface's MAC address")?;
        sh(&[
            "ip", "-n", b, "neigh", "replace", "fd78::1", "lladdr", mac, "dev", bi,
        ])?;
        std::fs::write(
            self.dir.join("ips.toml"),
            format!(
                "[api]\nsocket = \"{}\"\n[store]\npath = \"{}\"\n[enforcer]\ninterfaces = [\"{}\"]\npin_dir = \"{}\"\n\
                 [[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n",
                self.dir.join("ips.sock").display(),
                self.dir.join("ips.db").display(),
                self.a_if,
                self.pin_dir.display(),
                self.auth_log().display()
            ),
        )?;
        Ok(())
    }

    fn auth_log(&self) -> PathBuf {
        self.dir.join("auth.log")
    }

    fn ips_cmd(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.a))
            .arg(&self.ips)
            .arg("--config")
            .arg(self.dir.join("ips.toml"));
        c
    }

    fn ips(&self, args: &[&str]) -> Result<String> {
        let out = self.ips_cmd().args(args).output()?;
        if !out.status.success() {
            bail!(
                "ips {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start_daemon(&mut self) -> Result<()> {
        let log = File::create(self.dir.join("daemon.log"))?;
        self.daemon = Some(
            self.ips_cmd()
                .arg("run")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start ips run")?,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(s) = self.ips(&["-o", "json", "status"])
                && s.contains("\"daemon_running\": true")
            {
                return Ok(());
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "ips run exited with {status}:\n{}",
                    std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!("ips run did not answer within 30 s")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let _ = self.ips(&["detach", "--iface", &self.a_if]);
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!(
            "lab removed: namespaces, veth pair, pins and {}",
            self.dir.display()
        );
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || -> Result<T> {
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        // SAFETY: a namespace fd; only this thread changes namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// Sends `count` datagrams from each source in namespace `b` to port 9999 in `a` and counts
/// what arrives per source.
fn traffic(lab: &Lab, count: usize) -> Result<Vec<(String, usize, usize)>> {
    let receivers = in_netns(&lab.a, || -> std::io::Result<Vec<UdpSocket>> {
        let v4 = UdpSocket::bind("10.78.0.1:9999")?;
        let v6 = UdpSocket::bind("[fd78::1]:9999")?;
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
        }
        Ok(vec![v4, v6])
    })??;
    let sources = [
        "203.0.113.7",
        "192.0.2.10",
        "2001:db8:bad::7",
        "fd78::2",
        "198.51.100.99",
    ];
    in_netns(&lab.b, move || -> std::io::Result<()> {
        for src in sources {
            let v6 = src.contains(':');
            let bind: SocketAddr = if v6 {
                format!("[{src}]:0")
            } else {
                format!("{src}:0")
            }
            .parse()
            .expect("literal");
            let to = if v6 {
                "[fd78::1]:9999"
            } else {
                "10.78.0.1:9999"
            };
            let s = UdpSocket::bind(bind)?;
            for i in 0..count {
                s.send_to(format!("ips lab packet {i}").as_bytes(), to)?;
                thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })??;
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let mut buf = [0u8; 256];
    for r in &receivers {
        while let Ok((_, from)) = r.recv_from(&mut buf) {
            *got.entry(from.ip().to_string()).or_default() += 1;
        }
    }
    Ok(sources
        .iter()
        .map(|s| ((*s).to_owned(), count, got.get(*s).copied().unwrap_or(0)))
        .collect())
}

/// Runs the lab until Ctrl-C or `seconds`.
pub fn run(seconds: Option<u64>) -> Result<()> {
    crate::setup::require_root("the lab creates network namespaces and loads XDP")?;
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut lab = Lab::new();
    lab.create()?;
    println!(
        "lab: namespaces {} (ips on {}) and {} (traffic from {})",
        lab.a, lab.a_if, lab.b, lab.b_if
    );
    lab.start_daemon()?;
    println!("lab: ips run is attached to {}\n", lab.a_if);
    print!(
        "{}",
        lab.ips(&[
            "decisions",
            "add",
            "203.0.113.0/24",
            "2001:db8:bad::/48",
            "--duration",
            "1h",
            "--reason",
            "lab demo"
        ])?
    );
    println!();
    let rows = traffic(&lab, 20)?;
    println!("{:<18} {:>5} {:>9}", "SOURCE", "SENT", "RECEIVED");
    for (src, sent, got) in rows {
        let note = if got == 0 { "dropped by ips" } else { "passed" };
        println!("{src:<18} {sent:>5} {got:>9}  {note}");
    }
    println!();
    // Detection: an SSH brute force from 198.51.100.99 lands in the followed auth.log.
    println!(
        "detection: writing 6 failed SSH logins from 198.51.100.99 to {}",
        lab.auth_log().display()
    );
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(lab.auth_log())?;
        for i in 0..6 {
            writeln!(
                f,
                "Nov 27 10:00:0{i} lab sshd[4242]: Failed password for root from 198.51.100.99 port 5{i}000 ssh2"
            )?;
        }
    }
    thread::sleep(Duration::from_millis(300));
    print!("{}", lab.ips(&["alerts", "list"])?);
    let after = traffic(&lab, 20)?;
    if let Some((src, sent, got)) = after.iter().find(|(s, _, _)| s == "198.51.100.99") {
        println!("after the alert: {src} sent {sent}, received {got}");
    }
    println!();
    print!("{}", lab.ips(&["status"])?);
    println!(
        "\nTry it (another terminal):\n  nsenter --net=/run/netns/{} {} --config {} decisions list",
        lab.a,
        lab.ips.display(),
        lab.dir.join("ips.toml").display()
    );
    match seconds {
        Some(s) => println!("\nlab: stopping in {s} s"),
        None => println!("\nlab: Ctrl-C removes the lab"),
    }
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    while !STOP.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
