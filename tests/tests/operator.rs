//! Only the operator steers ips: a real unprivileged user, created by the test, is refused on
//! the unix socket (by its file mode, and by the daemon's peer-credential check when the mode
//! lets it connect) and over TCP; a member of the operators' group is let in.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{os::unix::fs::MetadataExt, process::Command};

use ips_tests::{Lab, ips_bin, packet::Frame, sh};

/// A system user or group that exists for the test's length.
struct Account {
    kind: &'static str,
    name: String,
}

impl Account {
    fn group(name: &str) -> Self {
        sh(&["groupadd", "--system", name]);
        Self {
            kind: "groupdel",
            name: name.to_owned(),
        }
    }

    fn user(name: &str, groups: Option<&str>) -> Self {
        let mut args = vec![
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ];
        if let Some(g) = groups {
            args.extend(["-G", g]);
        }
        args.push(name);
        sh(&args);
        Self {
            kind: "userdel",
            name: name.to_owned(),
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new(self.kind).arg(&self.name).status();
    }
}

/// Runs `args` as `user` (its own groups only), in the lab's namespace `a`.
fn run_as(lab: &Lab, user: &str, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.a))
        .args([
            "setpriv",
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            "--",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn ips_as(lab: &Lab, user: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec![lab.dir.join("ips").to_string_lossy().into_owned()];
    all.extend(["--config".into(), lab.config.to_string_lossy().into_owned()]);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run_as(lab, user, &refs)
}

fn said(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn only_root_and_the_operators_group_steer_the_daemon() {
    let tag = format!("{}", std::process::id() % 100_000);
    let group = format!("ipsop{tag}");
    let outsider = format!("ipsout{tag}");
    let member = format!("ipsmem{tag}");
    let _g = Account::group(&group);
    let _u = Account::user(&outsider, None);
    let _m = Account::user(&member, Some(&group));
    let mut lab = Lab::new("operator");
    lab.write_config_api(&format!("group = \"{group}\"\n"), "");
    // The test users run a copy of the binary in the lab's folder: the build's folder may be
    // under a home they cannot enter.
    std::fs::copy(ips_bin(), lab.dir.join("ips")).unwrap();
    lab.start_daemon();
    let meta = std::fs::metadata(lab.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);

    // Outside the group: the socket's mode refuses, with a clear message.
    let out = ips_as(&lab, &outsider, &["decisions", "add", "203.0.113.9"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("permission denied"), "{}", said(&out));
    let out = ips_as(&lab, &outsider, &["allow", "add", "203.0.113.0/24"]);
    assert!(!out.status.success(), "{}", said(&out));

    // In the group: it works, and the packets are dropped.
    let out = ips_as(&lab, &member, &["decisions", "add", "203.0.113.9"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        lab.exchange(&[Frame::udp("203.0.113.9", 1).build()])
            .is_empty()
    );

    // A mode that lets anyone connect: the daemon's own credential check refuses.
    sh(&["chmod", "0666", lab.socket().to_str().unwrap()]);
    let out = ips_as(&lab, &outsider, &["decisions", "delete", "203.0.113.9"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("permission denied"), "{}", said(&out));
    assert!(
        lab.exchange(&[Frame::udp("203.0.113.9", 2).build()])
            .is_empty(),
        "an outsider unbanned"
    );
    assert!(
        lab.daemon_log().contains("Refused a local process"),
        "{}",
        lab.daemon_log()
    );

    // Over TCP: the admin API is not there at all.
    let raw = "exec 3<>/dev/tcp/127.0.0.1/8080; printf 'DELETE /v1/ips/decisions?value=203.0.113.9 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3; cat <&3";
    let out = run_as(&lab, &outsider, &["bash", "-c", raw]);
    let answer = said(&out);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        lab.exchange(&[Frame::udp("203.0.113.9", 3).build()])
            .is_empty(),
        "unbanned over TCP"
    );
    // Root still steers it.
    lab.ips(&["decisions", "delete", "203.0.113.9"]);
    assert_eq!(
        lab.exchange(&[Frame::udp("203.0.113.9", 4).build()]),
        vec![4]
    );
}

#[test]
fn bans_covering_this_host_or_a_management_range_need_force_and_lists_leave_them_out() {
    let mut lab = Lab::new("lockout");
    lab.write_config("[decisions]\nmanagement = [\"45.33.12.0/24\"]\n");
    lab.start_daemon();
    // The daemon's own address (10.77.0.1 on its veth) and the management range.
    for v in ["10.77.0.0/24", "45.33.12.7", "45.0.0.0/8"] {
        let out = lab.ips_raw(&["decisions", "add", v]);
        assert!(!out.status.success(), "{v} was banned");
        let err = said(&out);
        assert!(
            err.contains("management range") && err.contains("--force"),
            "{err}"
        );
    }
    assert_eq!(lab.ips_json(&["decisions", "list"]), serde_json::json!([]));
    lab.ips(&["decisions", "add", "45.33.12.7", "--force"]);
    assert!(
        lab.exchange(&[Frame::udp("45.33.12.7", 1).build()])
            .is_empty()
    );
    // A list never bans them: an entry inside is left out, one around is cut around them.
    let list = lab.dir.join("list.txt");
    std::fs::write(&list, "45.33.0.0/16\n45.33.12.5\n8.8.4.4\n").unwrap();
    let r = lab.ips_json(&["blocklist", "import", "--name", "l", list.to_str().unwrap()]);
    assert_eq!(r["prepared"]["filtered"]["protected"], 1, "{r}");
    assert_eq!(r["prepared"]["filtered"]["split"], 1, "{r}");
    assert_eq!(
        lab.exchange(&[
            Frame::udp("45.33.12.9", 2).build(),
            Frame::udp("45.33.13.1", 3).build(),
            Frame::udp("8.8.4.4", 4).build(),
        ]),
        vec![2]
    );
}

#[test]
fn tls_on_loopback_with_a_key_per_role() {
    let mut lab = Lab::new("tls");
    let (cert, key) = (lab.dir.join("cert.pem"), lab.dir.join("key.pem"));
    lab.ips(&[
        "tls",
        "generate",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--name",
        "127.0.0.1",
        "--name",
        "ips.test",
    ]);
    lab.write_config_api(
        &format!(
            "listen = \"127.0.0.1:8443\"\ncert = \"{}\"\nkey = \"{}\"\nserver_names = [\"ips.test\"]\n",
            cert.display(),
            key.display()
        ),
        "",
    );
    lab.start_daemon();
    let key_of = |args: &[&str]| -> String {
        let r = lab.ips_json(args);
        r["api_key"].as_str().unwrap().to_owned()
    };
    let bouncer = key_of(&["bouncers", "add", "fw"]);
    let admin = key_of(&["tokens", "add", "ops"]);
    let machine = key_of(&["machines", "add", "web01"]);
    let chosen = "k3y-chosen-by-a-package-0123456789";
    assert_eq!(key_of(&["bouncers", "add", "pkg", "-k", chosen]), chosen);
    let short = lab.ips_raw(&["bouncers", "add", "bad", "-k", "short"]);
    assert!(!short.status.success());

    let ca = cert.clone();
    let results = ips_tests::in_netns(&lab.a, move || {
        let agent = ips::http::agent_trusting(std::time::Duration::from_secs(10), &ca).unwrap();
        let url = |p: &str| format!("https://127.0.0.1:8443{p}");
        let stream = |key: &str| {
            agent
                .get(url("/v1/decisions/stream?startup=true"))
                .header("X-Api-Key", key)
                .call()
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        };
        let ban = |auth: Option<&str>| {
            let mut req = agent.post(url("/v1/ips/decisions"));
            if let Some(a) = auth {
                req = req.header("Authorization", format!("Bearer {a}"));
            }
            req.send_json(serde_json::json!({"values": ["203.0.113.77"]}))
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        };
        let host = |h: &str| {
            agent
                .get(url("/v1/health"))
                .header("Host", h)
                .call()
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        };
        let by_name = [host("ips.test:8443"), host("evil.example:8443")];
        let untrusting = ips::http::agent(std::time::Duration::from_secs(10))
            .get(url("/v1/health"))
            .call()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        let plain = ips::http::agent(std::time::Duration::from_secs(10))
            .get("http://127.0.0.1:8443/v1/health")
            .call()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        (
            [
                stream(&bouncer),
                stream(chosen),
                stream("not-a-key-not-a-key"),
            ],
            [
                ban(None),
                ban(Some(&bouncer)),
                ban(Some(&machine)),
                ban(Some(&admin)),
            ],
            by_name,
            untrusting,
            plain,
        )
    });
    let (streams, bans, by_name, untrusting, plain) = results;
    assert_eq!(streams, [Ok(200), Ok(200), Ok(403)], "{streams:?}");
    assert_eq!(bans, [Ok(403), Ok(403), Ok(403), Ok(201)], "{bans:?}");
    // The certificate's name (api.server_names) is a Host the API answers; another is not.
    assert_eq!(by_name, [Ok(200), Ok(403)], "{by_name:?}");
    assert!(
        untrusting.is_err(),
        "a client that does not trust the certificate got through"
    );
    assert!(plain != Ok(200), "plain HTTP on the TLS port answered");
    assert!(
        lab.exchange(&[Frame::udp("203.0.113.77", 1).build()])
            .is_empty(),
        "the admin token's ban is not enforced"
    );
    // Each role's list shows its own.
    let names = |what: &str| -> Vec<String> {
        lab.ips_json(&[what, "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("bouncers"), ["fw", "pkg"]);
    assert_eq!(names("machines"), ["web01"]);
    assert_eq!(names("tokens"), ["ops"]);
}
