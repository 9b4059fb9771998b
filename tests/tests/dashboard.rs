//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, which
//! `cargo xtask test` installs) loads `/` from a running daemon in its namespace, runs the
//! page's script, and the figures it shows must be those of `ips status`. Screenshots at
//! desktop and phone width are taken too (a page that does not render makes none).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{io::Write, process::Command};

use ips_tests::{Lab, http_in_netns, packet::Frame};

/// Runs headless Chromium in namespace `ns` with `args` and the dashboard's URL; its stdout.
fn chromium(ns: &str, profile: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args([
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg("http://127.0.0.1:6060/")
        .output()
        .expect("chromium (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with id `id` in `dom`.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    &rest[start..end]
}

fn number(s: &str) -> u64 {
    s.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{s:?} is not a number"))
}

#[test]
fn the_dashboard_shows_what_ips_status_says() {
    let mut lab = Lab::new("dash");
    let log = lab.dir.join("auth.log");
    std::fs::write(&log, "").unwrap();
    lab.write_config(&format!(
        "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n",
        log.display()
    ));
    lab.start_daemon();
    lab.ips(&["decisions", "add", "45.88.0.1", "--reason", "dashboard"]);
    lab.ips(&[
        "decisions",
        "add",
        "2001:db8:45::/64",
        "--reason",
        "dashboard",
    ]);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..6 {
        writeln!(
            f,
            "Nov 27 10:00:0{i} web1 sshd[1]: Failed password for root from 45.88.0.9 port {} ssh2",
            40000 + i
        )
        .unwrap();
    }
    drop(f);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| Frame::udp("45.88.0.1", i).build()).collect();
    // Wait for the detection ban, then drop some frames from the manual one.
    let started = std::time::Instant::now();
    while lab.ips_json(&["status"])["decisions"].as_u64().unwrap() < 3
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(lab.exchange(&frames).is_empty());

    let profile = lab.dir.join("chromium");
    let dom = chromium(&lab.a, &profile, &["--dump-dom"]);
    let status = lab.ips_json(&["status"]);
    assert!(
        dom.contains("data-loaded=\"yes\""),
        "the script did not finish:\n{dom}"
    );
    assert_eq!(
        number(text_of(&dom, "decisions")),
        status["decisions"].as_u64().unwrap()
    );
    assert_eq!(
        number(text_of(&dom, "dropped-v4")),
        status["counters"]["v4_dropped"].as_u64().unwrap()
    );
    assert_eq!(
        number(text_of(&dom, "map-hosts_v4")),
        status["maps"]["hosts_v4"].as_u64().unwrap()
    );
    assert_eq!(
        number(text_of(&dom, "map-nets_v6")),
        status["maps"]["nets_v6"].as_u64().unwrap()
    );
    assert!(dom.contains("ssh-bf"), "the alert is listed:\n{dom}");
    let top = &dom[dom.find("id=\"top-sources\"").unwrap()..];
    let top = &top[..top.find("</tbody>").unwrap()];
    assert!(
        top.contains(">45.88.0.1<"),
        "the dropped source is among the top ones:\n{top}"
    );
    assert!(dom.contains("45.88.0.9"), "its source is listed:\n{dom}");
    assert!(
        dom.contains(">unban<"),
        "decisions have an unban button:\n{dom}"
    );

    // Screenshots at desktop and phone width.
    for (name, size) in [("desktop", "1280,800"), ("phone", "390,844")] {
        let shot = lab.dir.join(format!("{name}.png"));
        chromium(
            &lab.a,
            &profile,
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={size}"),
            ],
        );
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: {} bytes",
            png.len()
        );
        if let Ok(dir) = std::env::var("IPS_SCREENSHOTS") {
            std::fs::copy(
                &shot,
                std::path::Path::new(&dir).join(format!("dashboard-{name}.png")),
            )
            .unwrap();
        }
    }

    // Unbanning from the page needs an admin token of the API.
    let unban = |token: Option<&str>| {
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = r#"{"value":"45.88.0.1"}"#;
        let out = http_in_netns(
            &lab.a,
            "127.0.0.1:6060",
            format!(
                "POST /api/unban HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        out.lines().next().unwrap_or("").to_owned()
    };
    assert!(unban(None).contains(" 403"), "an unban without a token");
    let token = lab.ips_json(&["tokens", "add", "dash"]);
    let token = token["api_key"].as_str().unwrap();
    assert!(unban(Some(token)).contains(" 200"));
    assert_eq!(
        lab.exchange(&frames).len(),
        5,
        "unbanned from the page: the frames pass"
    );
}
