//! Loading the XDP program, attaching it to interfaces and pinning maps and links under the pin
//! directory, so that enforcement goes on while the daemon is stopped, and detaching it again.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkType, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use ips_common::maps as names;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::EnforcerError;

/// The XDP program object, built by `build.rs` from `ips-ebpf`.
pub static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ips-xdp"));
/// The bench programs, built alongside.
pub static BENCH_PROGRAM: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ips-bench"));
/// The program's function name.
pub const PROGRAM_NAME: &str = "ips_xdp";
/// The same judge at the TC (clsact ingress) hook.
pub const TC_PROGRAM_NAME: &str = "ips_tc";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// How to attach: `auto` tries native (driver) mode and falls back to generic with a warning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native, else generic.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
    /// The TC (clsact ingress) hook: no copy of the frame on virtual interfaces.
    Tc,
}

/// Drivers whose native XDP copies every frame that lacks headroom (veth: whatever the peer's
/// stack sends), or that have no native XDP at all: `mode = "auto"` puts ips at the TC hook
/// on these, where the skb is judged as it is.
pub const TC_DRIVERS: [&str; 14] = [
    "veth",
    "tun",
    "macvlan",
    "macvtap",
    "ipvlan",
    "vxlan",
    "geneve",
    "bridge",
    "wireguard",
    "dummy",
    "gre",
    "ipip",
    "sit",
    "vrf",
];

/// The driver of `iface` (`ETHTOOL_GDRVINFO`), if it says.
pub fn driver(iface: &str) -> Option<String> {
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if iface.len() >= 16 {
        return None;
    }
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReq {
        name: [0; 16],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: a datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL reads the name and writes `info` through the pointer in `req`,
    // both valid for the call.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) };
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    String::from_utf8(info.driver[..end].to_vec()).ok()
}

/// Where the program goes on one interface, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    Tc,
}

/// The hook `mode` picks for `iface`, and what to say about it.
fn hook_for(mode: AttachMode, iface: &str) -> (Hook, String) {
    match mode {
        AttachMode::Tc => (Hook::Tc, "tc".into()),
        AttachMode::Native | AttachMode::Generic => (Hook::Xdp, String::new()),
        AttachMode::Auto => match driver(iface) {
            Some(d) if TC_DRIVERS.contains(&d.as_str()) => (
                Hook::Tc,
                format!("tc ({d}: native XDP would copy every frame)"),
            ),
            _ => (Hook::Xdp, String::new()),
        },
    }
}

/// Map capacities, from the config.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Single-address bans per family.
    pub hosts: u32,
    /// Prefix bans per family.
    pub nets: u32,
}

/// The loaded program and the interfaces it is attached to.
pub struct Attachment {
    /// Kept alive for as long as the daemon runs.
    _ebpf: Ebpf,
    /// Every link's fd, by interface, held while the daemon runs: a link stays attached while
    /// the daemon holds it even if its pin is removed, and is closed (not detached: the pin
    /// holds it) when the daemon stops. [`Attachment::release`] lets one go. The second fd of
    /// the same link is spent (and comes back) when [`Attachment::repin`] pins it again: pinning
    /// consumes the fd it is given, and the first must never go.
    links: Vec<(String, FdLink, Option<FdLink>)>,
    /// Interface name and how it is attached (`native`, `generic`, `reused`).
    pub interfaces: Vec<(String, String)>,
}

impl Attachment {
    /// Lets go of `iface`'s link (after its pin was removed: the program then leaves it).
    pub fn release(&mut self, iface: &str) {
        self.links.retain(|(name, _, _)| name != iface);
        self.interfaces.retain(|(name, _)| name != iface);
    }

    /// Pins again every link whose pin was removed (`rm -rf` of the pin directory): the
    /// program stays attached meanwhile, as the daemon holds it. Returns the interfaces
    /// re-pinned.
    pub fn repin(&mut self, dir: &Path) -> Result<Vec<String>, EnforcerError> {
        let mut done = Vec::new();
        for (iface, _, spare) in &mut self.links {
            let pin = link_path(dir, iface);
            if pin.exists() {
                continue;
            }
            if let Some(parent) = pin.parent() {
                std::fs::create_dir_all(parent).map_err(|source| EnforcerError::Io {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            let Some(link) = spare.take() else {
                continue;
            };
            let pinned = link.pin(&pin).map_err(|e| EnforcerError::Attach {
                iface: iface.clone(),
                reason: format!("cannot pin link at {} again: {e}", pin.display()),
            })?;
            *spare = Some(FdLink::from(pinned));
            done.push(iface.clone());
        }
        Ok(done)
    }
}

/// A second fd of the link pinned at `pin`, for [`Attachment::repin`].
fn spare(pin: &Path) -> Option<FdLink> {
    PinnedLink::from_pin(pin).ok().map(FdLink::from)
}

/// Fails with a clear error unless we are root.
pub fn require_root() -> Result<(), EnforcerError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(EnforcerError::NotRoot);
    }
    Ok(())
}

/// Fails with a clear error unless `dir`'s parent is on a BPF filesystem.
pub fn require_bpffs(dir: &Path) -> Result<(), EnforcerError> {
    let base = dir.parent().unwrap_or(dir);
    if !is_bpffs(base) {
        return Err(EnforcerError::NoBpfFs {
            path: base.to_owned(),
        });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` writes into `buf`, a zeroed struct of the right type.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `buf` a valid out pointer.
    (unsafe { libc::statfs(c.as_ptr(), &mut buf) } == 0) && buf.f_type as i64 == BPF_FS_MAGIC
}

/// The network namespace named in `/run/netns` whose `ip netns exec` this process runs under,
/// from `mountinfo` (the text of `/proc/self/mountinfo`): `ip netns exec NAME` gives the
/// command a mount namespace of its own with a fresh sysfs on `/sys`, mounted with `NAME` as
/// its source.
pub fn ip_netns_exec_name(mountinfo: &str, named: &dyn Fn(&str) -> bool) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        let (fstype, source) = (r.next()?, r.next()?);
        (mount_point == "/sys" && fstype == "sysfs" && source != "sysfs" && named(source))
            .then(|| source.to_owned())
    })
}

/// Makes sure the pin directory's parent is a BPF filesystem that outlives this process: when
/// `/sys/fs/bpf` has none in the host's mount namespace, one is mounted; in a mount namespace
/// of its own made by `ip netns exec` (a fresh `/sys`: a BPF filesystem mounted there is not
/// the host's), it refuses and says how to run instead (pins made there would vanish with the
/// process, and the program with them).
pub fn ensure_bpffs(dir: &Path) -> Result<(), EnforcerError> {
    let base = dir.parent().unwrap_or(dir);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(name) = ip_netns_exec_name(&mountinfo, &|n| {
        !n.contains('/') && Path::new("/run/netns").join(n).exists()
    }) {
        return Err(EnforcerError::PrivateBpfFs {
            path: base.to_owned(),
            netns: name,
        });
    }
    if is_bpffs(base) {
        return Ok(());
    }
    if base == Path::new("/sys/fs/bpf") {
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let (src, target, fstype) = (c("bpf"), c("/sys/fs/bpf"), c("bpf"));
        // SAFETY: valid C strings; no data argument.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            info!("Mounted the BPF filesystem at /sys/fs/bpf (it was missing).");
        } else {
            warn!(error = %std::io::Error::last_os_error(), "Cannot mount the BPF filesystem at /sys/fs/bpf.");
        }
    }
    require_bpffs(dir)
}

/// Fails with a clear error if no interface has this name.
pub fn require_interface(name: &str) -> Result<u32, EnforcerError> {
    let unknown = || EnforcerError::UnknownInterface {
        name: name.to_owned(),
    };
    let c = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: `c` is a valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(unknown());
    }
    Ok(index)
}

/// The interfaces of the default routes (IPv4 from `route`, the text of `/proc/net/route`, and
/// IPv6 from `ipv6_route`, that of `/proc/net/ipv6_route`), IPv4's first, without duplicates.
pub fn default_route_interfaces(route: &str, ipv6_route: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; RTF_UP is 0x1.
        if f.len() >= 8
            && f[1] == "00000000"
            && f[7] == "00000000"
            && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & 1 != 0)
            && !out.iter().any(|i| i == f[0])
        {
            out.push(f[0].to_owned());
        }
    }
    for line in ipv6_route.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // dest plen src splen gateway metric refcnt use flags iface
        if f.len() >= 10
            && f[0].bytes().all(|b| b == b'0')
            && f[1] == "00"
            && f[9] != "lo"
            && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & 1 != 0)
            && !out.iter().any(|i| i == f[9])
        {
            out.push(f[9].to_owned());
        }
    }
    out
}

/// `enforcer.interfaces` with `auto` replaced by the interfaces of this network namespace's
/// default routes. Fails when `auto` finds none.
pub fn resolve_interfaces(configured: &[String]) -> Result<Vec<String>, EnforcerError> {
    let mut out: Vec<String> = Vec::new();
    for name in configured {
        if name == "auto" {
            let found = default_route_interfaces(
                &std::fs::read_to_string("/proc/net/route").unwrap_or_default(),
                &std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default(),
            );
            if found.is_empty() {
                return Err(EnforcerError::UnknownInterface {
                    name: "auto (no default route in this network namespace: name the interfaces in enforcer.interfaces)".into(),
                });
            }
            info!(interfaces = ?found, "enforcer.interfaces = auto: attaching to the default route's interface.");
            for f in found {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        } else if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// Loads the XDP program into the kernel without attaching it, pinning its maps in `dir` (or
/// reusing those already pinned there). Used by `attach`, and by tests and benches that run the
/// program with `BPF_PROG_RUN`.
pub fn load(dir: &Path, capacity: Capacity) -> Result<Ebpf, EnforcerError> {
    load_with(dir, capacity, ips_common::features::ALL)
}

/// Pins of host tables the program must not read: one of another size than `1 << bits` (the
/// program hashes with `bits`; `max_hosts` changed), and one in an older layout under its older
/// name. Unlinked, so that loading makes a new table, which the enforcer fills from the hash map
/// before the program is attached; a program still attached keeps the table it had.
fn replace_stale_host_table(dir: &Path, bits: u32) -> Result<(), EnforcerError> {
    let remove = |path: std::path::PathBuf| match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EnforcerError::Io { path, source }),
    };
    for old in names::RETIRED {
        remove(dir.join(old))?;
    }
    let path = dir.join(names::HOSTTAB_V4);
    if let Ok(map) = aya::maps::MapData::from_pin(&path)
        && map.info().map_or(0, |i| i.max_entries()) != 1 << bits
    {
        remove(path)?;
    }
    Ok(())
}

/// [`load`] with only some of the program's [`ips_common::features`] on: the bench measures what
/// each costs per packet.
pub fn load_with(dir: &Path, capacity: Capacity, features: u32) -> Result<Ebpf, EnforcerError> {
    require_root()?;
    let bits = ips_common::hosttab::bits_for(capacity.hosts);
    require_bpffs(dir)?;
    std::fs::create_dir_all(dir.join("links")).map_err(|source| EnforcerError::Io {
        path: dir.to_owned(),
        source,
    })?;
    replace_stale_host_table(dir, bits)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(dir)
        .map_max_entries(names::HOST_V4, capacity.hosts)
        .map_max_entries(names::HOST_V6, capacity.hosts)
        .map_max_entries(names::NET_V4, capacity.nets)
        .map_max_entries(names::NET_V6, capacity.nets)
        .map_max_entries(names::HOSTTAB_V4, 1 << bits)
        // Not preallocated: room for a record per prefix ban costs nothing until used.
        .map_max_entries(names::PART_V4, capacity.nets)
        .override_global(ips_common::hosttab::GLOBAL_BITS, &bits, true)
        .override_global(ips_common::features::GLOBAL, &features, true)
        .load(PROGRAM)
        .map_err(|e| EnforcerError::Load(e.to_string()))?;
    xdp_program(&mut ebpf)?
        .load()
        .map_err(|e| EnforcerError::Load(format!("the kernel refused the program: {e}")))?;
    tc_program(&mut ebpf)?
        .load()
        .map_err(|e| EnforcerError::Load(format!("the kernel refused the TC program: {e}")))?;
    Ok(ebpf)
}

/// The `ips_tc` program of a loaded object.
pub fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, EnforcerError> {
    ebpf.program_mut(TC_PROGRAM_NAME)
        .ok_or_else(|| EnforcerError::Load(format!("no program {TC_PROGRAM_NAME} in the object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| EnforcerError::Load(e.to_string()))
}

/// The `ips_xdp` program of a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, EnforcerError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or_else(|| EnforcerError::Load(format!("no program {PROGRAM_NAME} in the object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| EnforcerError::Load(e.to_string()))
}

fn link_path(dir: &Path, iface: &str) -> PathBuf {
    dir.join("links").join(iface)
}

/// Refuses what cannot be an interface name (Linux: 1 to 15 bytes, no `/`, no white space, not
/// `.` or `..`), so that a name never walks out of the links folder.
pub fn check_iface_name(name: &str) -> Result<(), EnforcerError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(EnforcerError::UnknownInterface {
            name: name.to_owned(),
        })
    }
}

/// Swaps `$program` into the pinned `$link` (an [`FdLink`] of type `$link_ty`) and hands back
/// our fd of it, held (not detached) for as long as the daemon runs; the pin keeps it after.
/// A macro because XDP and TC programs and links share no trait for this.
macro_rules! swap_into {
    ($program:expr, $link_ty:ty, $link:expr, $err:expr) => {{
        let program = $program;
        let link = <$link_ty>::try_from($link).map_err(|e| $err(e.to_string()))?;
        let id = program.attach_to_link(link).map_err(|e| {
            $err(format!(
                "cannot replace the program on the pinned link: {e}"
            ))
        })?;
        program
            .take_link(id)
            .map_err(|e| e.to_string())
            .and_then(|l: $link_ty| FdLink::try_from(l).map_err(|e| e.to_string()))
            .map_err($err)?
    }};
}

/// Attaches a program loaded by [`load`] to each interface and pins the links in `dir`. An
/// interface that already has a pinned link gets the new program swapped in atomically.
///
/// Reconcile the maps before calling this, so that a newly attached program never passes a
/// packet that the store bans.
pub fn attach(
    mut ebpf: Ebpf,
    dir: &Path,
    interfaces: &[String],
    mode: AttachMode,
) -> Result<Attachment, EnforcerError> {
    for iface in interfaces {
        require_interface(iface)?;
    }
    let mut attached = Vec::new();
    let mut links = Vec::new();
    for iface in interfaces {
        let attach_err = |reason: String| EnforcerError::Attach {
            iface: iface.clone(),
            reason,
        };
        let (hook, tc_label) = hook_for(mode, iface);
        let pin = link_path(dir, iface);
        // A link pinned by an earlier run: the new program is swapped into it when it is at
        // the hook wanted now; at another hook, it is replaced once the new one is attached.
        let mut replaced: Option<FdLink> = None;
        if pin.exists() {
            let link = PinnedLink::from_pin(&pin).map(FdLink::from).map_err(|e| {
                attach_err(format!("cannot open pinned link {}: {e}", pin.display()))
            })?;
            let kind = link.info().and_then(|i| i.link_type()).ok();
            let swapped = match (hook, kind) {
                (Hook::Xdp, Some(LinkType::Xdp)) => Some(swap_into!(
                    xdp_program(&mut ebpf)?,
                    XdpLink,
                    link,
                    attach_err
                )),
                (Hook::Tc, Some(LinkType::Tcx)) => Some(swap_into!(
                    tc_program(&mut ebpf)?,
                    SchedClassifierLink,
                    link,
                    attach_err
                )),
                _ => {
                    replaced = Some(link);
                    None
                }
            };
            if let Some(link) = swapped {
                links.push((iface.clone(), link, spare(&pin)));
                info!(%iface, "Reused the pinned link and swapped in the new program.");
                attached.push((iface.clone(), "reused".to_owned()));
                continue;
            }
        }
        let (fd_link, label) = match hook {
            Hook::Xdp => attach_xdp(&mut ebpf, iface, mode)?,
            Hook::Tc => {
                let program = tc_program(&mut ebpf)?;
                // clsact is where TC programs hang; TCX links (kernel 6.6+) need none, an
                // older kernel does. Already there is fine.
                let _ = aya::programs::tc::qdisc_add_clsact(iface);
                let id = program
                    .attach(iface, TcAttachType::Ingress)
                    .map_err(|e| attach_err(e.to_string()))?;
                let link = program
                    .take_link(id)
                    .map_err(|e| attach_err(e.to_string()))?;
                let link = FdLink::try_from(link).map_err(|e| {
                    attach_err(format!(
                        "the kernel gave no TCX link, so it cannot be pinned (TC needs kernel 6.6 or later): {e}"
                    ))
                })?;
                (link, tc_label)
            }
        };
        if let Some(old) = replaced {
            // The new hook judges already; now the old one goes.
            std::fs::remove_file(&pin).map_err(|source| EnforcerError::Io {
                path: pin.clone(),
                source,
            })?;
            drop(old);
            info!(%iface, "Moved from the pinned link's hook to the one the mode picks now.");
        }
        let pinned = fd_link
            .pin(&pin)
            .map_err(|e| attach_err(format!("cannot pin link at {}: {e}", pin.display())))?;
        // Keep our own fd too, so the link outlives its pin while the daemon runs.
        links.push((iface.clone(), FdLink::from(pinned), spare(&pin)));
        info!(%iface, mode = %label, "Attached the program.");
        attached.push((iface.clone(), label));
    }
    Ok(Attachment {
        _ebpf: ebpf,
        links,
        interfaces: attached,
    })
}

/// Attaches the XDP program to `iface` (native, then generic in `auto`).
fn attach_xdp(
    ebpf: &mut Ebpf,
    iface: &str,
    mode: AttachMode,
) -> Result<(FdLink, String), EnforcerError> {
    let attach_err = |reason: String| EnforcerError::Attach {
        iface: iface.to_owned(),
        reason,
    };
    let program = xdp_program(ebpf)?;
    let tries: &[(XdpMode, &str)] = match mode {
        AttachMode::Native => &[(XdpMode::Driver, "native")],
        AttachMode::Generic => &[(XdpMode::Skb, "generic")],
        AttachMode::Auto | AttachMode::Tc => {
            &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")]
        }
    };
    let mut last_err = String::new();
    for (xdp_mode, label) in tries {
        match program.attach(iface, *xdp_mode) {
            Ok(id) => {
                let link = program
                    .take_link(id)
                    .map_err(|e| attach_err(e.to_string()))?;
                let link = FdLink::try_from(link).map_err(|e| {
                    attach_err(format!(
                        "the kernel gave no bpf_link, so it cannot be pinned: {e}"
                    ))
                })?;
                return Ok((link, (*label).to_owned()));
            }
            Err(e) => {
                last_err = e.to_string();
                if tries.len() > 1 {
                    warn!(%iface, error = %e, "Native XDP attach failed; falling back to generic mode.");
                }
            }
        }
    }
    Err(attach_err(last_err))
}

/// Interfaces with a pinned link in `dir`.
pub fn pinned_interfaces(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("links"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// Detaches the program from `iface` by removing its pinned link. When no interface is left,
/// the pinned maps and the directory go too. Returns whether anything was attached.
pub fn detach(dir: &Path, iface: &str) -> Result<bool, EnforcerError> {
    check_iface_name(iface)?;
    require_root()?;
    let pin = link_path(dir, iface);
    let existed = pin.exists();
    if existed {
        let link = PinnedLink::from_pin(&pin).map_err(|e| EnforcerError::Attach {
            iface: iface.to_owned(),
            reason: format!("cannot open pinned link {}: {e}", pin.display()),
        })?;
        link.unpin().map_err(|source| EnforcerError::Io {
            path: pin.clone(),
            source,
        })?;
        info!(%iface, "Detached XDP program.");
    }
    if pinned_interfaces(dir).is_empty() {
        remove_pins(dir)?;
    }
    Ok(existed)
}

/// Removes the pinned maps and the pin directory (no link may be left in it).
pub fn remove_pins(dir: &Path) -> Result<(), EnforcerError> {
    for name in names::ALL.iter().chain(&names::RETIRED) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EnforcerError::Io { path, source }),
        }
    }
    for path in [dir.join("links"), dir.to_owned()] {
        match std::fs::remove_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EnforcerError::Io { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_routes_interfaces() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(default_route_interfaces(route, v6), ["eth0", "wlan0"]);
        assert!(default_route_interfaces("Iface\n", "").is_empty());
    }

    #[test]
    fn tells_ip_netns_exec_by_its_sysfs() {
        let host = "23 27 0:22 / /sys rw,relatime - sysfs sysfs rw\n42 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw\n";
        let exec = "49 46 0:40 / /sys rw,relatime - sysfs blue rw\n";
        let named = |n: &str| n == "blue";
        assert_eq!(ip_netns_exec_name(host, &named), None);
        assert_eq!(ip_netns_exec_name(exec, &named).as_deref(), Some("blue"));
        assert_eq!(ip_netns_exec_name(exec, &|_| false), None);
    }
}
