//! Helpers for the integration tests: a lab of two network namespaces joined by a veth pair,
//! the real `ips` daemon attached to one end, crafted frames sent from the other end, and a
//! packet socket behind XDP that sees exactly what the program let through.
//!
//! Everything a [`Lab`] creates (namespaces, veth, pins, daemon, temp files) is removed when it
//! is dropped, also when the test panics.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

pub mod hub;
pub mod packet;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The `ips` binary under test: `$IPS_BIN`, else `target/debug/ips`.
pub fn ips_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IPS_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/ips")
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `f` on a thread that has entered network namespace `ns`, and returns its result.
/// Sockets created there stay in that namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: a valid namespace fd; this thread alone changes namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// A raw packet socket bound to an interface (in whatever namespace it was made in).
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a packet socket on `iface` of namespace `ns`.
    pub fn open(ns: &str, iface: &str) -> Self {
        let iface = iface.to_owned();
        in_netns(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2).
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: fd is a fresh socket we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = CString::new(iface.clone()).unwrap();
            // SAFETY: valid C string.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(index != 0, "no interface {iface}");
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: sll is a valid sockaddr_ll of the given size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            Self { fd }
        })
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: frame is a valid buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Calls `each` with the test id of every incoming frame for up to `wait`; stops early when
    /// `each` returns true.
    fn recv_ids(&self, wait: Duration, mut each: impl FnMut(u32) -> bool) {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if ready <= 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is a valid out buffer.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffers and lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some(id) = packet::find_id(&buf[..n as usize])
                && each(id)
            {
                return;
            }
        }
    }

    /// Receives incoming frames for `wait`, returning the test ids found in them.
    pub fn received_ids(&self, wait: Duration) -> Vec<u32> {
        let mut ids = Vec::new();
        self.recv_ids(wait, |id| {
            ids.push(id);
            false
        });
        ids
    }

    /// Waits up to `wait` for the frame with test id `id`; returns as soon as it is seen.
    pub fn saw(&self, id: u32, wait: Duration) -> bool {
        let mut seen = false;
        self.recv_ids(wait, |got| {
            seen = got == id;
            seen
        });
        seen
    }

    /// Throws away whatever is queued.
    pub fn drain(&self) {
        let _ = self.received_ids(Duration::from_millis(50));
    }
}

/// Two namespaces joined by a veth pair; the daemon runs in `a` attached to `a_if`, frames come
/// from `b_if` in `b`.
pub struct Lab {
    /// Namespace where the XDP program is attached and the daemon runs.
    pub a: String,
    /// Namespace the traffic comes from.
    pub b: String,
    /// The XDP end.
    pub a_if: String,
    /// The sending end.
    pub b_if: String,
    /// Temp dir for the store and config.
    pub dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// Pin directory on bpffs.
    pub pin_dir: PathBuf,
    /// More veth pairs between the same namespaces: (end in `a`, end in `b`).
    pub extra: Vec<(String, String)>,
    /// More lines for the config's `[store]` (a PostgreSQL `url`, a `node` name).
    pub store: String,
    /// More environment for the daemon (`NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    daemon: Option<Child>,
}

impl Lab {
    /// Creates the namespaces, the veth pair, a config and a pin dir, all with unique names.
    pub fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{}{}", pid % 100_000, n);
        let a = format!("ipst-{tag}-{id}-a");
        let b = format!("ipst-{tag}-{id}-b");
        let a_if = format!("ipx{id}a");
        let b_if = format!("ipx{id}b");
        assert!(a_if.len() <= 15);
        let dir = std::env::temp_dir().join(format!("ips-test-{tag}-{id}"));
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/ips-test-{tag}-{id}"));
        let mut lab = Self {
            a,
            b,
            a_if,
            b_if,
            config: dir.join("ips.toml"),
            dir,
            pin_dir,
            extra: Vec::new(),
            store: String::new(),
            env: Vec::new(),
            daemon: None,
        };
        lab.setup();
        lab
    }

    fn setup(&mut self) {
        ensure_bpffs();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).unwrap();
        sh(&["ip", "netns", "add", &self.a]);
        sh(&["ip", "netns", "add", &self.b]);
        sh(&[
            "ip", "link", "add", &self.a_if, "netns", &self.a, "type", "veth", "peer", "name",
            &self.b_if, "netns", &self.b,
        ]);
        for (ns, ifname) in [(&self.a, &self.a_if), (&self.b, &self.b_if)] {
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        sh(&[
            "ip",
            "-n",
            &self.a,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &self.a_if,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.b,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            &self.b_if,
        ]);
        self.write_config("");
    }

    /// Adds another veth pair between the namespaces; the daemon attaches to its `a` end too.
    pub fn add_pair(&mut self) -> (String, String) {
        let n = self.extra.len() + 1;
        let a_if = format!("{}{n}", &self.a_if[..self.a_if.len() - 1]);
        let b_if = format!("{}{n}", &self.b_if[..self.b_if.len() - 1]);
        let (a_if, b_if) = (format!("{a_if}x"), format!("{b_if}y"));
        sh(&[
            "ip", "link", "add", &a_if, "netns", &self.a, "type", "veth", "peer", "name", &b_if,
            "netns", &self.b,
        ]);
        sh(&["ip", "-n", &self.a, "link", "set", &a_if, "up"]);
        sh(&["ip", "-n", &self.b, "link", "set", &b_if, "up"]);
        self.extra.push((a_if.clone(), b_if.clone()));
        (a_if, b_if)
    }

    /// Writes the config, with `extra` TOML appended (keys of `[enforcer]`, then other
    /// sections). The program goes to native XDP (`mode = "native"`), in front of the packet
    /// socket that tells which frames passed; the TC hook has tests of its own. The operator socket is in the lab's folder; TCP (for bouncers) on
    /// 127.0.0.1:8080 in namespace `a`.
    pub fn write_config(&self, extra: &str) {
        self.write_config_api("", extra);
    }

    /// [`Lab::write_config`] with more keys of `[api]`.
    pub fn write_config_api(&self, api: &str, extra: &str) {
        let text = format!(
            "[api]\nsocket = \"{}\"\n{}{api}\n\
             [store]\npath = \"{}\"\n{}[enforcer]\npin_dir = \"{}\"\nmode = \"native\"\nexpiry_interval = \"100ms\"\n{extra}",
            self.socket().display(),
            if api.contains("listen =") {
                ""
            } else {
                "listen = \"127.0.0.1:8080\"\n"
            },
            self.dir.join("ips.db").display(),
            self.store,
            self.pin_dir.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Sets `enforcer.mode` in the written config (the lab writes `native`).
    pub fn set_mode(&self, mode: &str) {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let cfg: Vec<String> = cfg
            .lines()
            .map(|l| {
                if l.starts_with("mode = ") {
                    format!("mode = \"{mode}\"")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&self.config, cfg.join("\n") + "\n").unwrap();
    }

    /// The daemon's operator socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ips.sock")
    }

    /// Sends a raw HTTP request on the operator socket and reads the answer to its end.
    pub fn socket_http(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // The daemon may answer (and close) before the whole body is sent.
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The store file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("ips.db")
    }

    /// Starts `ips run` in namespace `a` and waits until its API answers.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.a))
            .arg(ips_bin())
            .arg("--config")
            .arg(&self.config)
            .args(["run", "--iface", &self.a_if])
            .args(self.extra.iter().flat_map(|(a, _)| ["--iface", a.as_str()]))
            .env("IPS_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ips run");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // `ips status` also answers from the pins with no daemon: wait for the daemon itself.
            let out = self.ips_raw(&["-o", "json", "status"]);
            if out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|s| s["daemon_running"] == true)
            {
                return;
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("daemon exited with {status}: {}", self.daemon_log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not come up: {}",
                self.daemon_log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running daemon's process id.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (no cleanup of its own).
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Runs the `ips` CLI in namespace `a` with this lab's config.
    pub fn ips_raw(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.a))
            .arg(ips_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run ips")
    }

    /// Runs the `ips` CLI and returns its stdout, panicking if it fails.
    pub fn ips(&self, args: &[&str]) -> String {
        let out = self.ips_raw(args);
        assert!(
            out.status.success(),
            "ips {args:?} failed: {}{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ips -o json ARGS` parsed.
    pub fn ips_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.ips(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("bad JSON from ips {args:?}: {e}: {out}"))
    }

    /// A packet counter from `ips status`.
    pub fn counter(&self, name: &str) -> u64 {
        self.ips_json(&["status"])["counters"][name]
            .as_u64()
            .unwrap_or(0)
    }

    /// Opens the receiving socket (behind XDP, on `a_if`) and the sending one (on `b_if`).
    pub fn sockets(&self) -> (PacketSocket, PacketSocket) {
        let rx = PacketSocket::open(&self.a, &self.a_if);
        let tx = PacketSocket::open(&self.b, &self.b_if);
        rx.drain();
        (tx, rx)
    }

    /// Like [`Lab::exchange`] with a short wait, for polling loops.
    pub fn exchange_quick(&self, frames: &[Vec<u8>]) -> Vec<u32> {
        let (tx, rx) = self.sockets();
        for f in frames {
            tx.send(f);
        }
        rx.received_ids(Duration::from_millis(60))
    }

    /// Sends frames over another pair (see [`Lab::add_pair`]) and returns the ids that passed.
    pub fn exchange_on(&self, a_if: &str, b_if: &str, frames: &[Vec<u8>]) -> Vec<u32> {
        let rx = PacketSocket::open(&self.a, a_if);
        let tx = PacketSocket::open(&self.b, b_if);
        rx.drain();
        for f in frames {
            tx.send(f);
        }
        let mut ids = rx.received_ids(Duration::from_millis(400));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Sends each frame once and returns the ids that made it through XDP.
    pub fn exchange(&self, frames: &[Vec<u8>]) -> Vec<u32> {
        self.exchange_on(&self.a_if, &self.b_if, frames)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_daemon();
        // Removing the namespace removes the veth pair, which detaches the program; then the
        // pins can go.
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
        let links = self.pin_dir.join("links");
        if let Ok(entries) = std::fs::read_dir(&links) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = ips::enforcer::loader::remove_pins(&self.pin_dir);
        if std::env::var_os("IPS_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Mounts bpffs at /sys/fs/bpf if nothing is mounted there (as `cargo xtask setup` does).
pub fn ensure_bpffs() {
    if ips::enforcer::loader::require_bpffs(Path::new("/sys/fs/bpf/x")).is_err() {
        sh(&["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"]);
    }
}

/// A tiny HTTP server on 127.0.0.1 inside a namespace, for sources the daemon fetches from.
/// `answer` gets the request head (lowercased) and returns status, extra headers and body.
pub fn http_stub(
    ns: &str,
    answer: impl Fn(&str) -> (u16, Vec<(String, String)>, String) + Send + 'static,
) -> u16 {
    use std::{
        io::{Read, Write},
        net::TcpListener,
    };
    let listener = in_netns(ns, || TcpListener::bind("127.0.0.1:0").expect("bind"));
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let (status, headers, body) = answer(&head);
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out += &format!("{k}: {v}\r\n");
            }
            out += "\r\n";
            out += &body;
            let _ = conn.write_all(out.as_bytes());
        }
    });
    port
}

/// A schema of its own on the PostgreSQL server `cargo xtask test` starts (`IPS_TEST_POSTGRES`),
/// dropped with everything in it when this goes out of scope.
pub struct PgSchema {
    server: String,
    name: String,
    /// A connection string whose search path is the schema (by the server's unix socket, for
    /// daemons in their own network namespaces).
    pub url: String,
}

impl PgSchema {
    /// Creates the schema; panics with the reason if the server is not there.
    pub fn new(tag: &str) -> Self {
        let server = std::env::var("IPS_TEST_POSTGRES").expect(
            "IPS_TEST_POSTGRES is not set: run the tests with `cargo xtask test`, which starts PostgreSQL",
        );
        let name = format!(
            "{tag}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut c =
            postgres::Client::connect(&server, postgres::NoTls).expect("connect to PostgreSQL");
        c.batch_execute(&format!("CREATE SCHEMA {name}")).unwrap();
        // Daemons run in namespaces of their own: they reach the server by its unix socket.
        let local = std::env::var("IPS_TEST_POSTGRES_UNIX").unwrap_or_else(|_| server.clone());
        let url = format!("{local} options=-csearch_path={name}");
        Self { server, name, url }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// Sends one raw HTTP/1.1 `request` (closed after the answer) to `addr` from inside namespace
/// `ns` and returns the whole answer, head and body.
pub fn http_in_netns(ns: &str, addr: &str, request: String) -> String {
    use std::io::{Read, Write};
    let addr = addr.to_owned();
    in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        s.write_all(request.as_bytes()).expect("send the request");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}
