//! The TC hook: with `mode = "auto"` on a veth, ips attaches at clsact ingress (native XDP
//! would copy every frame there) and says so; real datagrams sent by the far namespace's stack
//! to real sockets show what it drops (the TC hook runs after packet sockets see a frame, so
//! those cannot tell). Its link is pinned and fail-static like the XDP one, is reused by a
//! restarted daemon, is swapped for XDP when the mode changes, and `ips detach` removes it.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use ips_tests::{Lab, in_netns, sh};

/// The receiving sockets in namespace `a`: IPv4 and IPv6.
fn receivers(lab: &Lab) -> (UdpSocket, UdpSocket) {
    in_netns(&lab.a, || {
        let v4 = UdpSocket::bind("10.77.0.1:7000").unwrap();
        let v6 = UdpSocket::bind("[fd77::1]:7000").unwrap();
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        (v4, v6)
    })
}

/// Sends one datagram from `from` (an address of namespace `b`) and says whether `rx` got it.
fn passes(lab: &Lab, rx: &UdpSocket, from: &str) -> bool {
    let mut buf = [0u8; 64];
    while rx.recv(&mut buf).is_ok() {}
    let to = if from.contains(':') {
        "[fd77::1]:7000"
    } else {
        "10.77.0.1:7000"
    };
    let bind = if from.contains(':') {
        format!("[{from}]:0")
    } else {
        format!("{from}:0")
    };
    let payload = format!("from {from}");
    let sent = payload.clone();
    in_netns(&lab.b, move || {
        let s = UdpSocket::bind(bind).unwrap();
        s.send_to(sent.as_bytes(), to).unwrap();
    });
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        if let Ok(n) = rx.recv(&mut buf)
            && &buf[..n] == payload.as_bytes()
        {
            return true;
        }
    }
    false
}

#[test]
fn tc_hook_on_a_veth_drops_real_traffic_and_stays_pinned() {
    let mut lab = Lab::new("tc");
    lab.set_mode("auto");
    for (ns, ifname, addrs) in [
        (&lab.a, &lab.a_if, vec!["fd77::1/64"]),
        (
            &lab.b,
            &lab.b_if,
            vec![
                "10.77.0.50/24",
                "10.77.0.51/24",
                "fd77::50/64",
                "fd77::51/64",
            ],
        ),
    ] {
        for addr in addrs {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", ifname, "nodad"]);
        }
    }
    lab.start_daemon();
    let status = lab.ips_json(&["status"]);
    let mode = status["interfaces"][0]["mode"].as_str().unwrap().to_owned();
    assert_eq!(
        mode, "tc (veth: native XDP would copy every frame)",
        "{status:#}"
    );
    assert!(lab.daemon_log().contains("Attached the program"));
    let (v4, v6) = receivers(&lab);
    // Clean sources first (neighbour discovery too), then the bans.
    assert!(passes(&lab, &v4, "10.77.0.51"));
    assert!(passes(&lab, &v6, "fd77::51"));
    assert!(passes(&lab, &v4, "10.77.0.50"), "not banned yet");
    lab.ips(&["decisions", "add", "10.77.0.50", "fd77::50"]);
    assert!(
        !passes(&lab, &v4, "10.77.0.50"),
        "banned IPv4 source dropped at TC"
    );
    assert!(
        !passes(&lab, &v6, "fd77::50"),
        "banned IPv6 source dropped at TC"
    );
    assert!(passes(&lab, &v4, "10.77.0.51"), "its neighbour passes");
    assert!(passes(&lab, &v6, "fd77::51"));
    assert!(lab.counter("v4_dropped") >= 1 && lab.counter("v6_dropped") >= 1);

    // Fail-static: the daemon stopped, the pinned link keeps dropping.
    lab.stop_daemon();
    assert!(
        !passes(&lab, &v4, "10.77.0.50"),
        "dropped with the daemon stopped"
    );
    assert!(passes(&lab, &v4, "10.77.0.51"));
    // A restarted daemon swaps its program into the pinned link.
    lab.start_daemon();
    assert!(
        lab.daemon_log()
            .contains("Reused the pinned link and swapped in the new program"),
        "{}",
        lab.daemon_log()
    );
    assert!(!passes(&lab, &v4, "10.77.0.50"));
    lab.ips(&["decisions", "delete", "10.77.0.50"]);
    assert!(passes(&lab, &v4, "10.77.0.50"), "unbanned at TC");
    lab.ips(&["decisions", "add", "10.77.0.50"]);

    // Another mode: XDP takes over from TC with no gap, and the TC link is gone.
    lab.stop_daemon();
    lab.set_mode("generic");
    lab.start_daemon();
    assert!(
        lab.daemon_log()
            .contains("Moved from the pinned link's hook")
    );
    let status = lab.ips_json(&["status"]);
    assert_eq!(status["interfaces"][0]["mode"], "generic", "{status:#}");
    assert!(!passes(&lab, &v4, "10.77.0.50"), "dropped at XDP now");
    assert!(!passes(&lab, &v6, "fd77::50"));
    // Detaching XDP lets everything through: no TC link was left behind.
    lab.ips(&["detach", "--iface", &lab.a_if.clone()]);
    assert!(passes(&lab, &v4, "10.77.0.50"), "nothing else drops it");
    assert!(passes(&lab, &v6, "fd77::50"));

    // Back to TC, then detach: everything passes.
    lab.stop_daemon();
    lab.set_mode("tc");
    lab.start_daemon();
    assert_eq!(lab.ips_json(&["status"])["interfaces"][0]["mode"], "tc");
    assert!(!passes(&lab, &v4, "10.77.0.50"));
    lab.ips(&["detach", "--iface", &lab.a_if.clone()]);
    assert!(passes(&lab, &v4, "10.77.0.50"), "detached: passes");
    assert!(passes(&lab, &v6, "fd77::50"));
}
