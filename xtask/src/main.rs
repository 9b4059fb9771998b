//! `cargo xtask`: setup, build, run (a lab on a veth pair), test, bench, lint and fuzz.
//!
//! Every command runs `setup` first, which installs what is missing and says clearly what
//! failed.
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod lab;
mod package;
mod setup;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install prerequisites (idempotent): nightly rust-src, llvm-22-dev, bpf-linker, bpffs.
    Setup,
    /// Build everything (the XDP program is built by ips-userspace's build.rs).
    Build {
        /// Release profile.
        #[arg(long)]
        release: bool,
    },
    /// Run ips. With no arguments: a lab in network namespaces, safe on any machine.
    /// With `-- --iface IF ...`: `ips run` on a real interface.
    Run {
        /// Stop the lab after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        seconds: Option<u64>,
        /// Arguments for `ips run` (e.g. `--iface eth1 --config /etc/ips/ips.toml`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Unit tests, then integration tests with the real program in the real kernel (root).
    Test,
    /// The Debian package, under target/debian/.
    Package,
    /// Benchmarks: per-packet cost, map loads, daemon memory. Prints a table.
    Bench,
    /// rustfmt check and clippy in two passes: host crates, then the eBPF crate for BPF.
    Lint,
    /// cargo-fuzz targets (log parsers, list formats, values, API bodies, the XDP program
    /// through BPF_PROG_RUN), each for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    setup::setup()?;
    match cli.command {
        Cmd::Setup => Ok(()),
        Cmd::Build { release } => build(release),
        Cmd::Run { seconds, args } => {
            build(true)?;
            if args.is_empty() {
                lab::run(seconds)
            } else {
                let status = Command::new(workspace().join("target/release/ips"))
                    .arg("run")
                    .args(&args)
                    .status()?;
                if !status.success() {
                    bail!("ips run exited with {status}");
                }
                Ok(())
            }
        }
        Cmd::Test => test(),
        Cmd::Package => package::package().map(drop),
        Cmd::Bench => bench(),
        Cmd::Lint => lint(),
        Cmd::Fuzz { seconds, target } => fuzz(seconds, target.as_deref()),
    }
}

/// The cargo-fuzz targets in `fuzz/`.
const FUZZ_TARGETS: [&str; 5] = ["parsers", "lists", "values", "api", "xdp"];

/// Runs each fuzz target for `seconds` (on the corpus it grew before, in `fuzz/corpus`) and
/// prints what each did. A crash fails with the input's path: keep it under
/// `fuzz/regressions/<target>/`, where a test replays it.
fn fuzz(seconds: u64, only: Option<&str>) -> Result<()> {
    setup::fuzz_tools()?;
    let dir = workspace().join("fuzz");
    let mut rows = Vec::new();
    for target in FUZZ_TARGETS
        .iter()
        .filter(|t| only.is_none_or(|o| o == **t))
    {
        eprintln!("xtask fuzz: {target} for {seconds} s");
        std::fs::create_dir_all(dir.join("corpus").join(target))?;
        let out = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "-O", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(&dir)
            .output()
            .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
        if *target == "xdp" {
            // The target pins its program and maps there; nothing else uses the folder.
            let _ = std::fs::remove_dir_all("/sys/fs/bpf/ips-fuzz-xdp");
        }
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("fuzz target {target} failed:\n{}", tail.join("\n"));
        }
        // libFuzzer ends with "Done N runs in M second(s)".
        let runs = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Done "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        rows.push((*target, runs));
    }
    println!(
        "{:<10} {:>12} {:>10} {:>12}",
        "target", "runs", "seconds", "runs/s"
    );
    for (target, runs) in rows {
        println!(
            "{target:<10} {runs:>12} {seconds:>10} {:>12}",
            runs / seconds.max(1)
        );
    }
    Ok(())
}

/// The workspace root.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs a command in the workspace, failing with its name if it fails.
pub fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(workspace());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run cargo {args:?}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn build(release: bool) -> Result<()> {
    if release {
        cargo(&["build", "--release", "-p", "ips-userspace"], &[])
    } else {
        cargo(&["build", "-p", "ips-userspace"], &[])
    }
}

fn test() -> Result<()> {
    build(false)?;
    setup::require_root("the integration tests load XDP programs")?;
    // The store's unit tests run on SQLite and on this real PostgreSQL server.
    let pg = setup::postgres()?;
    cargo(
        &[
            "test",
            "--workspace",
            "--exclude",
            "ips-tests",
            "--exclude",
            "ips-ebpf",
        ],
        &[("IPS_TEST_POSTGRES", &pg.tcp)],
    )?;
    setup::bouncer_tools()?;
    setup::browser()?;
    // The package test installs this into a scratch root.
    let deb = package::package()?;
    let deb = deb.to_str().context("non-UTF-8 workspace path")?;
    let bin = workspace().join("target/debug/ips");
    let bin = bin.to_str().context("non-UTF-8 workspace path")?;
    cargo(
        &[
            "test",
            "-p",
            "ips-tests",
            "--tests",
            "--",
            "--test-threads=1",
        ],
        &[
            ("IPS_BIN", bin),
            ("IPS_DEB", deb),
            ("IPS_TEST_POSTGRES", &pg.tcp),
            ("IPS_TEST_POSTGRES_UNIX", &pg.unix),
        ],
    )
}

fn lint() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--exclude",
            "ips-ebpf",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    let status = Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--lib",
            "--bins",
            "--",
            "-D",
            "warnings",
            "-C",
            "panic=abort",
        ])
        .current_dir(workspace().join("ips-ebpf"))
        .status()
        .context("cannot run clippy for the eBPF crate")?;
    if !status.success() {
        bail!("clippy on ips-ebpf (BPF target) failed ({status})");
    }
    Ok(())
}

fn bench() -> Result<()> {
    setup::require_root("the benches load XDP programs")?;
    setup::bench_tools()?;
    build(true)?;
    let bin = workspace().join("target/release/ips");
    let bin = bin.to_str().context("non-UTF-8 workspace path")?;
    cargo(
        &["bench", "-p", "ips-userspace", "--bench", "enforcement"],
        &[("IPS_BIN", bin)],
    )?;
    cargo(
        &["bench", "-p", "ips-userspace", "--bench", "detection"],
        &[("IPS_BIN", bin)],
    )?;
    cargo(&["bench", "-p", "ips-userspace", "--bench", "hub"], &[])?;
    // The latency and fleet benches drive the release daemon through the test lab.
    cargo(
        &["bench", "-p", "ips-tests", "--bench", "latency"],
        &[("IPS_BIN", bin)],
    )?;
    cargo(
        &["bench", "-p", "ips-tests", "--bench", "flood"],
        &[("IPS_BIN", bin)],
    )?;
    let pg = setup::postgres()?;
    cargo(
        &["bench", "-p", "ips-tests", "--bench", "fleet"],
        &[
            ("IPS_BIN", bin),
            ("IPS_TEST_POSTGRES", &pg.tcp),
            ("IPS_TEST_POSTGRES_UNIX", &pg.unix),
        ],
    )
}
