//! `cargo xtask package`: the Debian package, built with `dpkg-deb` (Debian's own tool, on
//! every Debian host) from the release binary and `packaging/`: `/usr/bin/ips`, the systemd
//! unit, `/etc/ips/ips.toml` (a conffile), bash/zsh/fish completions and man pages (made by
//! the binary itself, `clap_complete` and `clap_mangen`), and the maintainer scripts.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::workspace;

fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to).with_context(|| format!("{} -> {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(to: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(to, bytes).with_context(|| to.display().to_string())
}

/// The package's version: ips-userspace's.
fn version() -> Result<String> {
    let manifest = fs::read_to_string(workspace().join("ips-userspace/Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_owned)
        .context("no version in ips-userspace/Cargo.toml")
}

/// Builds `target/debian/ips_VERSION_ARCH.deb` and returns its path.
pub fn package() -> Result<PathBuf> {
    crate::setup::package_tools()?;
    crate::build(true)?;
    let ws = workspace();
    let bin = ws.join("target/release/ips");
    let out_dir = ws.join("target/debian");
    let root = out_dir.join("staging");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    let arch = String::from_utf8(run(Command::new("dpkg").arg("--print-architecture"))?)?
        .trim()
        .to_owned();
    let version = version()?;

    copy(&bin, &root.join("usr/bin/ips"), 0o755)?;
    let pkg = ws.join("packaging");
    copy(
        &pkg.join("ips.service"),
        &root.join("lib/systemd/system/ips.service"),
        0o644,
    )?;
    copy(&pkg.join("ips.toml"), &root.join("etc/ips/ips.toml"), 0o644)?;
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/ips"),
        ("zsh", "usr/share/zsh/vendor-completions/_ips"),
        ("fish", "usr/share/fish/vendor_completions.d/ips.fish"),
    ] {
        let text = run(Command::new(&bin).args(["completions", shell]))?;
        write(&root.join(path), &text)?;
    }
    let man = root.join("usr/share/man/man1");
    run(Command::new(&bin).arg("man").arg(&man))?;
    for page in fs::read_dir(&man)? {
        run(Command::new("gzip").args(["-9n"]).arg(page?.path()))?;
    }
    write(
        &root.join("usr/share/doc/ips/copyright"),
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
          Upstream-Name: ips\n\n\
          Files: *\n\
          License: MIT or Apache-2.0\n",
    )?;

    let debian = root.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        copy(&pkg.join(script), &debian.join(script), 0o755)?;
    }
    write(&debian.join("conffiles"), b"/etc/ips/ips.toml\n")?;
    let size_kb = String::from_utf8(run(Command::new("du").args(["-sk"]).arg(&root))?)?
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .to_owned();
    let control = format!(
        "Package: ips\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: ips developers <ips@localhost>\n\
         Installed-Size: {size_kb}\n\
         Depends: libc6 (>= 2.34), passwd\n\
         Recommends: systemd\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://github.com/ips-project/ips\n\
         Description: intrusion prevention that drops banned sources at XDP\n \
         ips reads sshd and web server logs, bans what attacks them, syncs community\n \
         blocklists, and drops every packet from a banned prefix in an XDP program on\n \
         the NIC's ingress, before the network stack. IPv4 and IPv6, CIDR-correct,\n \
         state kept across restarts, CrowdSec bouncer API compatible.\n"
    );
    write(&debian.join("control"), control.as_bytes())?;
    let deb = out_dir.join(format!("ips_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&root)
        .arg(&deb))?;
    println!("xtask package: {}", deb.display());
    Ok(deb)
}
