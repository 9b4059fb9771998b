//! `cargo xtask setup`: checks each prerequisite and installs what is missing. Safe to run again.
use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

fn ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask setup: {what}");
    let status = cmd
        .status()
        .with_context(|| format!("setup step '{what}': cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("setup step '{what}' failed ({status}): {cmd:?}");
    }
    Ok(())
}

/// True if we are root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fails with a message naming what needs root.
pub fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("run as root: {why}");
    }
    Ok(())
}

/// Runs every step.
pub fn setup() -> Result<()> {
    if !ok(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        bail!(
            "setup: the nightly toolchain is missing; it builds the eBPF crate. Install it with \
             `rustup toolchain install nightly --component rust-src`"
        );
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]));
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        step(
            "adding rust-src to nightly (to build core for the BPF target)",
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        )?;
    }
    let llvm_config = format!("{LLVM_PREFIX}/bin/llvm-config");
    if !Path::new(&llvm_config).exists() {
        require_root("installing llvm-22-dev with apt-get")?;
        step(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        step(
            "installing llvm-22-dev (bpf-linker links against LLVM 22, as nightly rustc does)",
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "llvm-22-dev"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let linker = output(Command::new("bpf-linker").arg("--version"));
    if !linker.contains(BPF_LINKER_VERSION) {
        step(
            "building bpf-linker for LLVM 22 (about a minute)",
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--locked",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
    }
    for (tool, package) in [("ip", "iproute2"), ("nsenter", "util-linux")] {
        if !ok(Command::new("sh").args(["-c", &format!("command -v {tool}")])) {
            require_root(&format!("installing {package} with apt-get"))?;
            step(
                &format!("installing {package} (for {tool})"),
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", package])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
    }
    if is_root() && !bpffs_mounted() {
        step(
            "mounting the BPF filesystem at /sys/fs/bpf",
            Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]),
        )?;
    }
    Ok(())
}

/// Installs nftables for the bench's `nft -f` baseline, if missing.
pub fn bench_tools() -> Result<()> {
    if !ok(Command::new("sh").args(["-c", "command -v nft"])) {
        require_root("installing nftables with apt-get")?;
        step(
            "installing nftables (the bench compares with nft -f)",
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "nftables"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
        })
        .unwrap_or(false)
}
