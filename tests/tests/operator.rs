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
