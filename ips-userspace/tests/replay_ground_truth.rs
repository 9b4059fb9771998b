//! `ips replay` against generated logs whose ground truth is known by construction: attackers
//! that must be banned, and legitimate traffic that must not be.
use ips::{
    decisions::profiles::{Outcome, Profiles, ProfilesConfig},
    parsers::{Clock, LogType},
    prefix::Prefix,
    replay,
    scenarios::builtin,
};

/// 2026-11-27 00:00:00 UTC.
const NOW: i64 = 1_795_737_600_000;

fn syslog_time(secs: u32) -> String {
    format!(
        "Nov 20 {:02}:{:02}:{:02}",
        8 + secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn mixed_ssh_and_web_logs() {
    let mut ssh = Vec::new();
    // Legitimate users: a typo now and then, minutes apart, and successful logins.
    for (i, src) in ["198.51.100.10", "198.51.100.11", "2001:db8:aa::1"]
        .iter()
        .enumerate()
    {
        for k in 0..4u32 {
            let t = k * 600 + i as u32;
            ssh.push((
                t,
                format!(
                    "{} h sshd[1]: Failed password for alice from {src} port 5000 ssh2",
                    syslog_time(t)
                ),
            ));
            ssh.push((
                t + 5,
                format!(
                    "{} h sshd[1]: Accepted password for alice from {src} port 5000 ssh2",
                    syslog_time(t + 5)
                ),
            ));
        }
    }
    // Brute force: 20 failures in 20 s.
    for k in 0..20u32 {
        ssh.push((
            100 + k,
            format!(
                "{} h sshd[1]: Failed password for root from 203.0.113.1 port 1 ssh2",
                syslog_time(100 + k)
            ),
        ));
    }
    // User enumeration: 8 user names, 30 s apart (too slow for ssh-bf, caught by distinct).
    for (k, user) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().enumerate() {
        let t = 2000 + k as u32 * 2;
        ssh.push((
            t,
            format!(
                "{} h sshd[1]: Invalid user {user} from 203.0.113.2 port 1",
                syslog_time(t)
            ),
        ));
    }
    // An IPv6 attacker rotating addresses inside one /64.
    for k in 0..10u32 {
        ssh.push((
            3000 + k,
            format!(
                "{} h sshd[1]: Failed password for root from 2001:db8:bad:1::{:x} port 1 ssh2",
                syslog_time(3000 + k),
                k + 1
            ),
        ));
    }
    // A hostname source: counted and skipped, never banned.
    for k in 0..10u32 {
        ssh.push((4000 + k, format!("{} h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=scanner.example.net  user=root", syslog_time(4000 + k))));
    }
    // An attacker from a private range: alerted, not banned.
    for k in 0..10u32 {
        ssh.push((
            5000 + k,
            format!(
                "{} h sshd[1]: Failed password for root from 10.0.0.99 port 1 ssh2",
                syslog_time(5000 + k)
            ),
        ));
    }
    ssh.sort_by_key(|(t, _)| *t);
    let mut log: String = ssh.into_iter().map(|(_, l)| l + "\n").collect();

    // Web: normal browsing, a .env prober, a sqlmap user agent, a 404 storm.
    let web = |src: &str, sec: u32, path: &str, status: u16, ua: &str| {
        format!(
            "{src} - - [20/Nov/2026:09:{:02}:{:02} +0000] \"GET {path} HTTP/1.1\" {status} 100 \"-\" \"{ua}\"\n",
            sec / 60,
            sec % 60
        )
    };
    for k in 0..30u32 {
        log += &web(
            "192.0.2.20",
            k * 10,
            &format!("/page/{}", k % 5),
            200,
            "Mozilla/5.0",
        );
    }
    for (k, path) in ["/.env", "/.git/config", "/wp-config.php.bak"]
        .iter()
        .enumerate()
    {
        log += &web("203.0.113.3", 600 + k as u32, path, 404, "curl/8.0");
    }
    log += &web(
        "203.0.113.4",
        700,
        "/index.php?id=1",
        200,
        "sqlmap/1.7.2#stable",
    );
    for k in 0..15u32 {
        log += &web(
            "203.0.113.5",
            800 + k,
            &format!("/missing/{k}"),
            404,
            "Go-http-client/1.1",
        );
    }

    let profiles = Profiles::new(ProfilesConfig::default(), &[]);
    let report = replay::run(
        log.as_bytes(),
        LogType::Auto,
        builtin(),
        &profiles,
        &[],
        Clock::utc(NOW),
    )
    .unwrap();
    let mut banned: Vec<String> = report.banned().iter().map(Prefix::to_string).collect();
    banned.sort();
    assert_eq!(
        banned,
        [
            "2001:db8:bad:1::/64",
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.3",
            "203.0.113.4",
            "203.0.113.5",
        ]
    );
    let scenario_of = |src: &str| -> Vec<&str> {
        report
            .alerts
            .iter()
            .filter(|(a, _)| a.source.to_string() == src)
            .map(|(a, _)| a.scenario.as_str())
            .collect()
    };
    assert!(scenario_of("203.0.113.1").contains(&"ssh-bf"));
    assert!(scenario_of("203.0.113.2").contains(&"ssh-user-enum"));
    assert!(scenario_of("203.0.113.3").contains(&"http-sensitive-files"));
    assert!(scenario_of("203.0.113.4").contains(&"http-bad-user-agent"));
    assert!(scenario_of("203.0.113.5").contains(&"http-probing"));
    // The private source raised alerts that were kept, not acted on.
    let private: Vec<_> = report
        .alerts
        .iter()
        .filter(|(a, _)| a.source.to_string() == "10.0.0.99")
        .collect();
    assert!(!private.is_empty());
    assert!(
        private
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Allowlisted { .. }))
    );
    assert_eq!(report.skipped["hostname_source"], 10);
}

#[test]
fn firewall_logged_port_scan() {
    let mut log = String::new();
    for port in 1..=30u32 {
        log += &format!(
            "Nov 20 10:00:{:02} gw kernel: [12345.678] DROP IN=eth0 OUT= MAC=aa SRC=203.0.113.6 DST=192.0.2.1 LEN=44 PROTO=TCP SPT=40000 DPT={port} SYN\n",
            port / 3
        );
    }
    // One host hitting the same port again and again is not a scan.
    for k in 0..30u32 {
        log += &format!(
            "Nov 20 10:01:{:02} gw kernel: DROP IN=eth0 OUT= SRC=203.0.113.7 DST=192.0.2.1 LEN=44 PROTO=TCP SPT=1 DPT=443 SYN\n",
            k
        );
    }
    let profiles = Profiles::new(ProfilesConfig::default(), &[]);
    let report = replay::run(
        log.as_bytes(),
        LogType::Syslog,
        builtin(),
        &profiles,
        &[],
        Clock::utc(NOW),
    )
    .unwrap();
    let banned: Vec<String> = report.banned().iter().map(Prefix::to_string).collect();
    assert_eq!(banned, ["203.0.113.6"]);
    assert_eq!(report.alerts[0].0.scenario, "port-scan");
}
