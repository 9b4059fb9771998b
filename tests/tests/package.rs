//! The Debian package that `cargo xtask package` builds (`cargo xtask test` builds it and
//! passes its path in `IPS_DEB`): unpacked into a scratch root, it holds the binary, the unit,
//! the conffile, completions and man pages; its unit passes `systemd-analyze verify` and gets
//! a `systemd-analyze security` score; and the packaged binary runs on the packaged config
//! with only the unit's capabilities, each of which it needs.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ips_tests::{Lab, packet::Frame, sh};

fn deb() -> PathBuf {
    PathBuf::from(
        std::env::var("IPS_DEB")
            .expect("IPS_DEB: run through `cargo xtask test`, which builds the package"),
    )
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package unpacked under a fresh directory.
fn unpack(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("ips-pkg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    output(Command::new("dpkg").arg("-x").arg(deb()).arg(&root));
    root
}

#[test]
fn the_package_holds_what_a_service_needs() {
    let root = unpack("files");
    for path in [
        "usr/bin/ips",
        "lib/systemd/system/ips.service",
        "etc/ips/ips.toml",
        "usr/share/bash-completion/completions/ips",
        "usr/share/zsh/vendor-completions/_ips",
        "usr/share/fish/vendor_completions.d/ips.fish",
        "usr/share/man/man1/ips.1.gz",
        "usr/share/man/man1/ips-run.1.gz",
        "usr/share/man/man1/ips-reload.1.gz",
    ] {
        assert!(root.join(path).exists(), "{path} is in the package");
    }
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/ips")).unwrap();
    assert!(
        bash.contains("decisions") && bash.contains("reload"),
        "{bash}"
    );
    let control = root.join("DEBIAN-control");
    output(Command::new("dpkg-deb").arg("-e").arg(deb()).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/ips/ips.toml");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("groupadd --system ips"));
    assert!(postinst.contains("install -d -m 0750 /var/lib/ips"));
    assert!(
        !postinst.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with("echo")
                && (l.contains("systemctl start") || l.contains("systemctl enable"))
        }),
        "a fresh install starts nothing: {postinst}"
    );
    let fields = output(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb())
            .args(["Package", "Version"]),
    );
    assert!(fields.contains("Package: ips"), "{fields}");

    // The packaged binary accepts the packaged config.
    let ips = root.join("usr/bin/ips");
    let config = root.join("etc/ips/ips.toml");
    let check = output(
        Command::new(&ips)
            .arg("--config")
            .arg(&config)
            .args(["config", "check"]),
    );
    assert!(check.contains(": ok"), "{check}");
    let shown = output(
        Command::new(&ips)
            .arg("--config")
            .arg(&config)
            .args(["-o", "json", "config", "show"]),
    );
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["enforcer"]["interfaces"][0], "auto");
    assert_eq!(shown["acquisition"][0]["type"], "journald");

    // A closed pipe ends the CLI quietly (SIGPIPE), not with a panic.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{} completions bash | head -1", ips.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_unit_verifies_and_is_scored() {
    let root = unpack("unit");
    // What the unit refers to besides the package: systemd's targets and /bin/kill.
    let units = root.join("lib/systemd/system");
    for t in std::fs::read_dir("/usr/lib/systemd/system")
        .unwrap()
        .flatten()
    {
        let name = t.file_name();
        if name.to_string_lossy().ends_with(".target") {
            let _ = std::fs::copy(t.path(), units.join(&name));
        }
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    let unit = units.join("ips.service");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .split("Overall exposure level for ips.service:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score: {text}"));
    println!("systemd-analyze security: exposure {score} (0 safest, 10 unsafe)");
    assert!(score <= 5.0, "the unit is hardened: {score}\n{text}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The unit's `CapabilityBoundingSet`, for `setpriv`: `+bpf,+perfmon,...`.
fn unit_capabilities(root: &Path) -> Vec<String> {
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ips.service")).unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// Starts the packaged binary on `config` in the lab's namespace with only `caps`.
fn start(lab: &Lab, ips: &Path, config: &Path, caps: &[String], log: &Path) -> Child {
    let bounding = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.a))
        .args(["setpriv", "--bounding-set", &bounding, "--inh-caps", "-all"])
        .arg(ips)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The packaged binary on `config` in the lab's namespace, with `args`.
fn ips_in_lab(lab: &Lab, ips: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.a))
        .arg(ips)
        .arg("--config")
        .arg(config)
        .args(args);
    cmd
}

/// Waits for the daemon to answer (true) or to exit (false).
fn comes_up(lab: &Lab, ips: &Path, config: &Path, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let out = ips_in_lab(lab, ips, config, &["-o", "json", "status"])
            .output()
            .unwrap();
        if serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|s| s["daemon_running"] == true)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("neither up nor down after 20 s");
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

#[test]
fn the_packaged_binary_runs_the_packaged_config_with_only_the_units_capabilities() {
    let root = unpack("caps");
    let ips = root.join("usr/bin/ips");
    let lab = Lab::new("pkg");
    // `interfaces = ["auto"]` finds the lab's veth through a default route in its namespace.
    sh(&[
        "ip",
        "-n",
        &lab.a,
        "route",
        "add",
        "default",
        "via",
        "10.77.0.2",
    ]);
    let packaged = std::fs::read_to_string(root.join("etc/ips/ips.toml")).unwrap();
    let config = lab.dir.join("packaged.toml");
    let text = packaged
        .replace(
            "/var/lib/ips/ips.db",
            &lab.dir.join("ips.db").display().to_string(),
        )
        .replace(
            "socket = \"/run/ips/ips.sock\"",
            &format!(
                "socket = \"{}\"\ngroup = \"nogroup\"",
                lab.socket().display()
            ),
        )
        .replace(
            "mode = \"auto\"",
            &format!("mode = \"auto\"\npin_dir = \"{}\"", lab.pin_dir.display()),
        );
    assert_ne!(text, packaged);
    std::fs::write(&config, text).unwrap();
    let caps = unit_capabilities(&root);
    assert_eq!(caps.len(), 4, "{caps:?}");

    let log = lab.dir.join("run.log");
    let mut child = start(&lab, &ips, &config, &caps, &log);
    assert!(
        comes_up(&lab, &ips, &config, &mut child),
        "up with the unit's capabilities: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    output(&mut ips_in_lab(
        &lab,
        &ips,
        &config,
        &["decisions", "add", "198.51.100.44"],
    ));
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|i| Frame::udp("198.51.100.44", i).build())
        .collect();
    // On a veth, `auto` picks the TC hook, which runs after packet sockets see a frame: the
    // kernel's counters say what it dropped (tests/tests/tc.rs shows it with real sockets).
    let _ = lab.exchange(&frames);
    let status = output(&mut ips_in_lab(
        &lab,
        &ips,
        &config,
        &["-o", "json", "status"],
    ));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["counters"]["v4_dropped"], 3, "{status:#}");
    let mode = status["interfaces"][0]["mode"].as_str().unwrap().to_owned();
    assert!(mode.starts_with("tc (veth"), "{mode}");
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("attaching to the default route's interface") && text.contains(&lab.a_if),
        "auto is said, never silent: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file: {text}"
    );

    // Each capability is needed: without it the daemon does not come up.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let log = lab.dir.join(format!("without-{missing}.log"));
        let mut child = start(&lab, &ips, &config, &fewer, &log);
        let up = comes_up(&lab, &ips, &config, &mut child);
        stop(child);
        assert!(
            !up,
            "up without CAP_{}: the unit grants more than it needs",
            missing.to_ascii_uppercase()
        );
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&root);
}
