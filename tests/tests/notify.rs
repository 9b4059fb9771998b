//! Notifications from a real daemon to real receivers on the loopback of its namespace: a
//! webhook (whose first answer is a 500, so the retry is exercised), a Slack-compatible hook,
//! a filtered hook that must get nothing, and an SMTP sink that speaks enough SMTP to take a
//! message. Six failed SSH logins must reach the webhook within 5 s, naming the address.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::mpsc,
    time::{Duration, Instant},
};

use ips_tests::{Lab, in_netns};

/// One HTTP request as received: (path, body).
type Received = (String, String);

/// Serves HTTP on `listener`: every request is sent to `tx`; the first one to `fail_path` is
/// answered 500, the rest 200.
fn http_receiver(listener: TcpListener, tx: mpsc::Sender<Received>, fail_path: &'static str) {
    std::thread::spawn(move || {
        let mut failed = false;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split(' ').nth(1).unwrap_or("").to_owned();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let status = if path == fail_path && !failed {
                failed = true;
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let mut w = conn;
            let _ = write!(
                w,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send((path, String::from_utf8_lossy(&body).into_owned()));
        }
    });
}

/// A minimal SMTP sink: takes each message and sends its DATA to `tx`.
fn smtp_sink(listener: TcpListener, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            let _ = w.write_all(b"220 sink ESMTP\r\n");
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.to_ascii_uppercase();
                if cmd.starts_with("EHLO") {
                    let _ = w.write_all(b"250-sink\r\n250 8BITMIME\r\n");
                } else if cmd.starts_with("DATA") {
                    let _ = w.write_all(b"354 go on\r\n");
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    let _ = w.write_all(b"250 queued\r\n");
                    let _ = tx.send(data);
                } else if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    let _ = w.write_all(b"250 OK\r\n");
                }
            }
        }
    });
}

#[test]
fn a_ban_is_told_to_a_webhook_a_chat_and_by_email() {
    let mut lab = Lab::new("notify");
    // The receivers listen on the loopback of the daemon's namespace.
    let (http, smtp) = in_netns(&lab.a, || {
        (
            TcpListener::bind("127.0.0.1:9099").unwrap(),
            TcpListener::bind("127.0.0.1:2525").unwrap(),
        )
    });
    let (tx, rx) = mpsc::channel();
    http_receiver(http, tx, "/hook");
    let (mail_tx, mail_rx) = mpsc::channel();
    smtp_sink(smtp, mail_tx);

    let log = lab.dir.join("auth.log");
    std::fs::write(&log, "").unwrap();
    lab.write_config(&format!(
        "[[acquisition]]\ntype = \"file\"\npaths = [\"{}\"]\nlog_type = \"sshd\"\n\
         [[notification]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9099/hook\"\nheaders = {{ \"X-Token\" = \"t\" }}\n\
         [[notification]]\ntype = \"slack\"\nurl = \"http://127.0.0.1:9099/slack\"\n\
         [[notification]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9099/web-only\"\nscenarios = [\"http-probing\"]\n\
         [[notification]]\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\nsecurity = \"none\"\nfrom = \"ips@example.org\"\nto = [\"ops@example.org\"]\n",
        log.display()
    ));
    lab.start_daemon();

    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let written = Instant::now();
    for i in 0..6 {
        writeln!(
            f,
            "Nov 27 10:00:0{i} web1 sshd[4242]: Failed password for root from 45.77.10.20 port {} ssh2",
            40000 + i
        )
        .unwrap();
    }
    drop(f);

    // The webhook: refused once, then delivered on the retry; the chat gets its text.
    let mut got: Vec<(Received, Duration)> = Vec::new();
    while got.len() < 3 && written.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push((r, written.elapsed()));
        }
    }
    let hooks: Vec<&(Received, Duration)> = got.iter().filter(|((p, _), _)| p == "/hook").collect();
    assert_eq!(
        hooks.len(),
        2,
        "one refused, one retried: {got:?}\n{}",
        lab.daemon_log()
    );
    assert!(
        hooks[0].1 < Duration::from_secs(5),
        "the first webhook POST came {:?} after the lines",
        hooks[0].1
    );
    let body: serde_json::Value = serde_json::from_str(&hooks[1].0.1).unwrap();
    let alert = &body["alerts"][0];
    assert_eq!(alert["source"], "45.77.10.20", "{body}");
    assert_eq!(alert["scenario"], "ssh-bf", "{body}");
    assert_eq!(alert["decision"]["type"], "ban", "{body}");
    assert_eq!(alert["decision"]["value"], "45.77.10.20", "{body}");
    assert!(
        alert["evidence"][0]
            .as_str()
            .unwrap()
            .contains("Failed password"),
        "{body}"
    );
    let slack: Vec<&(Received, Duration)> =
        got.iter().filter(|((p, _), _)| p == "/slack").collect();
    assert_eq!(slack.len(), 1, "{got:?}");
    let text: serde_json::Value = serde_json::from_str(&slack[0].0.1).unwrap();
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .contains("banned 45.77.10.20"),
        "{text}"
    );

    // The email.
    let mail = mail_rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert!(
        mail.contains("Subject: ips: ssh-bf from 45.77.10.20"),
        "{mail}"
    );
    assert!(mail.contains("banned 45.77.10.20"), "{mail}");

    // The hook filtered to web scenarios got nothing.
    std::thread::sleep(Duration::from_secs(3));
    let late: Vec<Received> = rx.try_iter().collect();
    assert!(
        late.iter().all(|(p, _)| p != "/web-only"),
        "a filtered destination was told: {late:?}"
    );
    assert!(
        got.iter().all(|((p, _), _)| p != "/web-only"),
        "a filtered destination was told: {got:?}"
    );
}
