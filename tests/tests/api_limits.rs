//! Hostile API clients: thousands of held-open connections, trickled heads and bodies, deep
//! JSON, oversized bodies, bad values. Each gets a clear error; the daemon's memory stays
//! bounded and it keeps answering once they are gone.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use ips_tests::{Lab, in_netns};

const API: &str = "127.0.0.1:8080";

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Lets this process hold a few thousand sockets.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 4096,
        "need 4096 descriptors, have {}",
        lim.rlim_cur
    );
}

/// Sends `request` on a new TCP connection and reads until the daemon closes it (or 20 s
/// pass).
fn exchange(ns: &str, request: Vec<u8>) -> String {
    in_netns(ns, move || {
        let mut s = TcpStream::connect(API).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // The daemon may answer (and close) before the whole body is sent.
        let _ = s.write_all(&request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn held_open_connections_are_capped_and_closed() {
    raise_nofile();
    let mut lab = Lab::new("conns");
    lab.write_config_api(
        "max_connections = 64\nheader_timeout = \"2s\"\nrequest_timeout = \"3s\"\n",
        "",
    );
    lab.start_daemon();
    let pid = lab.daemon_pid().unwrap();
    let before = rss_kib(pid);

    // 2,000 connections: half idle, half trickling a request head they never finish.
    let conns = in_netns(&lab.a, || {
        (0..2000)
            .map(|i| {
                let mut s = TcpStream::connect(API).unwrap();
                if i % 2 == 1 {
                    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                        .unwrap();
                }
                s
            })
            .collect::<Vec<_>>()
    });
    // While they are held, the operator's socket has its own cap: the CLI works.
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["daemon_running"], true);
    let during = rss_kib(pid);

    // Past the cap: answered 503 at once. Within it: closed when the head does not come.
    let (mut refused, mut closed) = (0, 0);
    for mut s in conns {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .expect("the daemon closes every held connection");
        let text = String::from_utf8_lossy(&out);
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("too many connections"), "{text}");
            refused += 1;
        } else {
            // hyper closes a connection whose head times out, with or without a 408.
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
            closed += 1;
        }
    }
    // Connections the kernel queued until a served one was closed are served in their turn.
    assert_eq!(refused + closed, 2000);
    assert!(refused >= 1000, "{refused} refused, {closed} served");
    assert!(
        during < before + 64 * 1024,
        "2,000 connections took the daemon from {before} KiB to {during} KiB"
    );

    // A keep-alive connection that idles after its request is closed too.
    let idle = in_netns(&lab.a, || {
        let mut s = TcpStream::connect(API).unwrap();
        s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    assert!(idle.contains("\"ok\":true"), "{idle}");

    // And the daemon serves as before.
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["daemon_running"], true);
    assert!(
        lab.daemon_log().contains("API connection cap reached"),
        "{}",
        lab.daemon_log()
    );
}

#[test]
fn hostile_bodies_get_clear_errors() {
    let mut lab = Lab::new("bodies");
    lab.write_config_api("request_timeout = \"3s\"\n", "");
    lab.start_daemon();
    let pid = lab.daemon_pid().unwrap();
    let before = rss_kib(pid);

    // Deep JSON: refused by the parser's depth limit, not a stack overflow.
    let nested = |open: &[u8], close: &[u8]| {
        let mut v = Vec::new();
        for _ in 0..100_000 {
            v.extend_from_slice(open);
        }
        for _ in 0..100_000 {
            v.extend_from_slice(close);
        }
        v
    };
    for deep in [
        nested(b"[", b"]"),
        nested(b"{\"values\":", b"}"),
        [
            b"{\"values\":[\"192.0.2.9\"],\"reason\":".as_slice(),
            &nested(b"[", b"]"),
            b"}",
        ]
        .concat(),
        [
            b"{\"values\":[\"192.0.2.9\"],\"junk\":".as_slice(),
            &nested(b"[", b"]"),
            b"}",
        ]
        .concat(),
    ] {
        let a = lab.socket_http(&post("/v1/ips/decisions", &deep));
        assert!(status_line(&a).contains("400"), "{a:.300}");
        assert!(a.contains("bad request body"), "{a:.300}");
    }

    // Bodies over the limits: 2 MiB for commands, 64 MiB for imports.
    let big = vec![b' '; 3 << 20];
    let a = lab.socket_http(&post("/v1/ips/decisions", &big));
    assert!(status_line(&a).contains("413"), "{a:.300}");
    let huge = format!(
        "POST /v1/ips/blocklists/import HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        65u64 << 20
    );
    let a = lab.socket_http(&huge.into_bytes());
    assert!(status_line(&a).contains("413"), "{a:.300}");

    // A body that never arrives in full: 408 after request_timeout.
    let mut slow = b"POST /v1/ips/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n".to_vec();
    slow.extend_from_slice(b"{\"values\":");
    let a = lab.socket_http(&slow);
    assert!(status_line(&a).contains("408"), "{a:.300}");

    // Bad values and names.
    let a = lab.socket_http(&post("/v1/ips/decisions", br#"{"values":["300.1.2.3"]}"#));
    assert!(status_line(&a).contains("400"), "{a}");
    assert!(a.contains("300.1.2.3"), "{a}");
    let a = lab.socket_http(&post(
        "/v1/ips/bouncers",
        "{\"name\":\"fw\\u001b[31m\"}".as_bytes(),
    ));
    assert!(status_line(&a).contains("400"), "{a}");
    let a = lab.socket_http(&post(
        "/v1/ips/blocklists/import",
        "{\"name\":\"x\\u0007y\",\"text\":\"192.0.2.1\\n\"}".as_bytes(),
    ));
    assert!(status_line(&a).contains("400"), "{a}");
    let a = lab.socket_http(&post(
        "/v1/ips/decisions",
        br#"{"values":["192.0.2.9"],"origin":"list:a/../../b"}"#,
    ));
    assert!(status_line(&a).contains("400"), "{a}");
    let a = lab.socket_http(
        b"GET /v1/ips/decisions?limit=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&a).contains("400"), "{a}");
    let a = lab.socket_http(
        b"GET /v1/ips/decisions?cursor=zz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&a).contains("400"), "{a}");
    assert!(a.contains("bad cursor"), "{a}");

    // Over TCP only what bouncers read is served, never from a web page or a foreign Host.
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{extra}Connection: close\r\n\r\n")
            .into_bytes()
    };
    let a = exchange(
        &lab.a,
        post("/v1/ips/decisions", br#"{"values":["192.0.2.9"]}"#),
    );
    assert!(status_line(&a).contains("403"), "{a}");
    assert!(a.contains("unix socket"), "{a}");
    for path in ["/v1/status", "/v1/ips/decisions", "/v1/ips/bouncers"] {
        let a = exchange(&lab.a, get(path, ""));
        assert!(status_line(&a).contains("403"), "{path}: {a}");
    }
    let a = exchange(&lab.a, get("/v1/health", ""));
    assert!(status_line(&a).contains("200"), "{a}");
    let a = exchange(&lab.a, get("/v1/health", "Origin: http://evil.example\r\n"));
    assert!(status_line(&a).contains("403"), "{a}");
    assert!(a.contains("web pages"), "{a}");
    let a = exchange(
        &lab.a,
        b"GET /v1/decisions/stream HTTP/1.1\r\nHost: rebind.evil.example:8080\r\nConnection: close\r\n\r\n".to_vec(),
    );
    assert!(status_line(&a).contains("403"), "{a}");
    assert!(a.contains("Host"), "{a}");
    let a = exchange(
        &lab.a,
        b"POST /v1/ips/detach HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 34\r\nConnection: close\r\n\r\n{\"iface\":\"../../other/links/x\"}".to_vec(),
    );
    assert!(status_line(&a).contains("403"), "{a}");
    // On the socket, an interface name that is a path is refused as such.
    let a = lab.socket_http(&post(
        "/v1/ips/detach",
        br#"{"iface":"../../other/links/x"}"#,
    ));
    assert!(!status_line(&a).contains("200"), "{a}");
    assert!(a.contains("unknown interface"), "{a}");

    // Nothing was banned by any of it, and memory stays bounded.
    assert_eq!(lab.ips_json(&["decisions", "list"]), serde_json::json!([]));
    let after = rss_kib(pid);
    assert!(
        after < before + 96 * 1024,
        "hostile bodies took the daemon from {before} KiB to {after} KiB"
    );
}
