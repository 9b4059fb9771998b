//! Faults with real parts: the store's filesystem fills up under the running daemon.
use std::path::PathBuf;

use ips_tests::{Lab, packet::Frame, sh};

/// Unmounts a tmpfs when the test ends, however it ends (before the lab removes its folder).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_bans_keeps_enforcing_and_recovers() {
    let mut lab = Lab::new("diskfull");
    // The lab's folder (store, config, daemon log) on a small tmpfs of its own.
    let config = std::fs::read(&lab.config).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=4m",
        "ipstest",
        lab.dir.to_str().unwrap(),
    ]);
    let _unmount = Unmount(lab.dir.clone());
    std::fs::write(&lab.config, config).unwrap();
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7"]);
    // Fill the disk.
    let filler = lab.dir.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // Bans are refused with the reason, and never half done.
    let mut refused = None;
    for i in 0..2000u32 {
        let value = std::net::Ipv4Addr::from(0x0501_0000 + 2 * i).to_string();
        let out = lab.ips_raw(&["decisions", "add", &value]);
        if !out.status.success() {
            refused = Some((value, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (value, err) = refused.expect("a full disk never refused a ban");
    assert!(err.contains("full"), "{err}");
    assert!(
        lab.ips_json(&["decisions", "list", "--value", &value])
            .as_array()
            .unwrap()
            .is_empty(),
        "{value} listed though refused"
    );
    let got = lab.exchange(&[
        Frame::udp(&value, 1).build(),
        Frame::udp("203.0.113.7", 2).build(),
    ]);
    assert_eq!(
        got,
        vec![1],
        "the refused ban reached the kernel, or the old one left it"
    );
    // Space comes back: bans work again, and the store is whole.
    std::fs::remove_file(&filler).unwrap();
    lab.ips(&["decisions", "add", &value]);
    assert!(
        lab.exchange(&[Frame::udp(&value, 3).build()]).is_empty(),
        "{}",
        lab.daemon_log()
    );
    lab.stop_daemon();
    let check = lab.ips_raw(&["-o", "json", "store", "check"]);
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(check["integrity"][0], "ok", "{check}");
    assert_eq!(check["bad_rows"], 0, "{check}");
}
