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
        apt_install(
            &["llvm-22-dev"],
            "bpf-linker links against LLVM 22, as nightly rustc does",
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
        if !have(tool) {
            apt_install(&[package], &format!("for {tool}"))?;
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

/// Installs, starts and prepares a PostgreSQL server on loopback for the hub's tests (idempotent);
/// returns the connection string.
pub fn postgres() -> Result<Postgres> {
    require_root("the hub's PostgreSQL tests install and start a PostgreSQL server")?;
    if !have("pg_lsclusters") {
        apt_install(
            &["postgresql"],
            "the hub's tests use a real server on loopback",
        )?;
    }
    let clusters = || output(Command::new("pg_lsclusters").arg("-h"));
    if clusters().trim().is_empty() {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .context("no /usr/lib/postgresql after installing postgresql")?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .context("no PostgreSQL version installed")?;
        step(
            "creating a PostgreSQL cluster",
            Command::new("pg_createcluster").args([&version, "main"]),
        )?;
    }
    let list = clusters();
    let fields: Vec<&str> = list
        .lines()
        .next()
        .context("pg_lsclusters shows no cluster")?
        .split_whitespace()
        .collect();
    let (version, name, port, state) = match fields.as_slice() {
        [v, n, p, s, ..] => (*v, *n, *p, *s),
        _ => bail!("cannot read pg_lsclusters output: {list:?}"),
    };
    if state != "online" {
        step(
            "starting PostgreSQL",
            Command::new("pg_ctlcluster").args([version, name, "start"]),
        )?;
    }
    let psql = |sql: &str| {
        output(Command::new("su").args([
            "-s",
            "/bin/sh",
            "postgres",
            "-c",
            &format!("psql -p {port} -tAc \"{sql}\""),
        ]))
    };
    if psql("SELECT 1 FROM pg_roles WHERE rolname = 'ips'").trim() != "1" {
        step(
            "creating the PostgreSQL role ips",
            Command::new("su").args([
                "-s",
                "/bin/sh",
                "postgres",
                "-c",
                &format!("psql -p {port} -c \"CREATE ROLE ips LOGIN PASSWORD 'ips'\""),
            ]),
        )?;
    }
    if psql("SELECT 1 FROM pg_database WHERE datname = 'ips_test'").trim() != "1" {
        step(
            "creating the PostgreSQL database ips_test",
            Command::new("su").args([
                "-s",
                "/bin/sh",
                "postgres",
                "-c",
                &format!("createdb -p {port} -O ips ips_test"),
            ]),
        )?;
    }
    // Daemons under test run in network namespaces of their own, where the server's loopback
    // port is out of reach: they connect through its unix socket, with the role's password.
    let hba = psql("SHOW hba_file");
    let hba = hba.trim();
    let line = "local ips_test ips scram-sha-256";
    let text = std::fs::read_to_string(hba).with_context(|| format!("cannot read {hba}"))?;
    if !text.lines().any(|l| l.trim() == line) {
        std::fs::write(hba, format!("{line}\n{text}"))
            .with_context(|| format!("cannot write {hba}"))?;
        step(
            "reloading PostgreSQL's client authentication",
            Command::new("pg_ctlcluster").args([version, name, "reload"]),
        )?;
    }
    let socket = psql("SHOW unix_socket_directories");
    let socket = socket
        .trim()
        .split(',')
        .next()
        .unwrap_or("/var/run/postgresql");
    Ok(Postgres {
        tcp: format!("host=127.0.0.1 port={port} user=ips password=ips dbname=ips_test"),
        unix: format!("host={socket} port={port} user=ips password=ips dbname=ips_test"),
    })
}

/// How to reach the test server.
pub struct Postgres {
    /// Over loopback TCP, from the host's own network namespace.
    pub tcp: String,
    /// Over its unix socket, from any network namespace.
    pub unix: String,
}

/// Installs Debian's `chromium`, if missing: the dashboard test loads the page in it headless.
pub fn browser() -> Result<()> {
    if !have("chromium") {
        apt_install(
            &["chromium"],
            "the dashboard test loads the page in it, headless",
        )?;
    }
    Ok(())
}

/// True when `tool` is on the `PATH`.
fn have(tool: &str) -> bool {
    ok(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
}

/// Installs Debian `packages` with apt-get (its index refreshed first); `why` is said in the
/// step's message.
fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    let names = packages.join(", ");
    require_root(&format!("installing {names} with apt-get"))?;
    step(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    step(
        &format!("installing {names} ({why})"),
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// What `cargo xtask package` and the package test use: `dpkg-deb` and `gzip` (on every
/// Debian host), `systemd-analyze` (package systemd, also where systemd is not running) and
/// `setpriv` (util-linux).
pub fn package_tools() -> Result<()> {
    let mut missing = Vec::new();
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("gzip", "gzip"),
        ("systemd-analyze", "systemd"),
        ("setpriv", "util-linux"),
    ] {
        if !have(tool) {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, "cargo xtask package and its test")
}

/// Installs what the benches run beside ips, if missing: nftables (the `nft -f` and flood
/// baselines) and netsniff-ng (trafgen, the flood's sender).
pub fn bench_tools() -> Result<()> {
    for (tool, package, why) in [
        ("nft", "nftables", "the benches compare with nftables"),
        (
            "trafgen",
            "netsniff-ng",
            "the real-packet bench floods a veth pair with trafgen",
        ),
    ] {
        if !have(tool) {
            apt_install(&[package], why)?;
        }
    }
    Ok(())
}

/// Installs the real CrowdSec clients the bouncer tests run against, if missing: Debian's
/// `crowdsec-firewall-bouncer` (with `ipset`) and PyPI's `pycrowdsec`. No service is started
/// while installing (a `policy-rc.d` says no): the tests run the bouncer in their own namespace.
pub fn bouncer_tools() -> Result<()> {
    let have = |cmd: &str| ok(Command::new("sh").args(["-c", cmd]));
    if !have("command -v crowdsec-firewall-bouncer && command -v ipset") {
        require_root("installing crowdsec-firewall-bouncer and ipset with apt-get")?;
        let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
        let ours = !policy.exists();
        if ours {
            std::fs::write(policy, "#!/bin/sh\nexit 101\n")
                .context("cannot write /usr/sbin/policy-rc.d")?;
            std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        let installed = step(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )
        .and_then(|()| {
            step(
                "installing crowdsec-firewall-bouncer and ipset (the bouncer tests run them)",
                Command::new("apt-get")
                    .args([
                        "install",
                        "-y",
                        "-qq",
                        "--no-install-recommends",
                        "crowdsec-firewall-bouncer",
                        "ipset",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        });
        if ours {
            let _ = std::fs::remove_file(policy);
        }
        installed?;
    }
    if !have("python3 -c 'import pycrowdsec'") {
        step(
            "installing pycrowdsec 0.0.5 from PyPI (the bouncer tests run it)",
            Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "pycrowdsec==0.0.5",
            ]),
        )?;
    }
    Ok(())
}

/// Installs cargo-fuzz (from crates.io) if missing.
pub fn fuzz_tools() -> Result<()> {
    if !ok(Command::new("cargo").args(["fuzz", "--version"])) {
        step(
            "installing cargo-fuzz (cargo xtask fuzz runs it)",
            Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]),
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
