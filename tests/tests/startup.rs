//! What a new user meets at start: `ip netns exec` (a fresh /sys, where pins would vanish) is
//! refused with how to run instead; a daemon with no log source says nothing is detected;
//! `ips config init` writes a config for the services it finds.
use std::process::Command;

use ips_tests::{Lab, ips_bin};

#[test]
fn ip_netns_exec_is_refused_with_how_to_run_instead() {
    let lab = Lab::new("netnsexec");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.a])
        .arg(ips_bin())
        .arg("--config")
        .arg(&lab.config)
        .args(["run", "--iface", &lab.a_if])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("ip netns exec {}", lab.a))
            && err.contains(&format!("nsenter --net=/run/netns/{} ips run", lab.a)),
        "{err}"
    );
    assert!(
        !lab.pin_dir.exists(),
        "nothing was pinned, nothing attached"
    );
}

#[test]
fn no_log_source_is_said_in_json_lines() {
    let mut lab = Lab::new("nosource");
    lab.write_config("[log]\nformat = \"json\"\n");
    lab.start_daemon();
    lab.stop_daemon();
    let log = lab.daemon_log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"].as_str().is_some_and(
                |m| m.starts_with("No log source ([[acquisition]]): nothing is being detected")
            ) && l["level"] == "WARN"),
        "{log}"
    );
}

#[test]
fn config_init_writes_a_config_for_what_it_finds() {
    let root = std::env::temp_dir().join(format!("ips-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("var/log/apache2")).unwrap();
    std::fs::write(root.join("var/log/auth.log"), "").unwrap();
    let out_file = root.join("etc/ips/ips.toml");
    let run = |extra: &[&str]| {
        Command::new(ips_bin())
            .arg("--config")
            .arg(&out_file)
            .args(["config", "init", "--root"])
            .arg(&root)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("sshd: /var/log/auth.log") && said.contains("apache"),
        "{said}"
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.contains("paths = [\"/var/log/auth.log\"]"), "{text}");
    assert!(text.contains("/var/log/apache2/*access.log"), "{text}");
    let check = Command::new(ips_bin())
        .arg("--config")
        .arg(&out_file)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(check.status.success());
    // An existing file is kept unless --force.
    let again = run(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
    let _ = std::fs::remove_dir_all(&root);
}
