//! Loading the XDP program, attaching it to interfaces and pinning maps and links under the pin
//! directory, so that enforcement goes on while the daemon is stopped, and detaching it again.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
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
    let c =
        CString::new(base.as_os_str().as_encoded_bytes()).map_err(|_| EnforcerError::NoBpfFs {
            path: base.to_owned(),
        })?;
    // SAFETY: `statfs` writes into `buf`, a zeroed struct of the right type.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `buf` a valid out pointer.
    let ok = unsafe { libc::statfs(c.as_ptr(), &mut buf) } == 0;
    if !ok || buf.f_type as i64 != BPF_FS_MAGIC {
        return Err(EnforcerError::NoBpfFs {
            path: base.to_owned(),
        });
    }
    Ok(())
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

/// Loads the XDP program into the kernel without attaching it, pinning its maps in `dir` (or
/// reusing those already pinned there). Used by `attach`, and by tests and benches that run the
/// program with `BPF_PROG_RUN`.
pub fn load(dir: &Path, capacity: Capacity) -> Result<Ebpf, EnforcerError> {
    load_with(dir, capacity, ips_common::features::ALL)
}

/// [`load`] with only some of the program's [`ips_common::features`] on: the bench measures what
/// each costs per packet.
pub fn load_with(dir: &Path, capacity: Capacity, features: u32) -> Result<Ebpf, EnforcerError> {
    require_root()?;
    require_bpffs(dir)?;
    std::fs::create_dir_all(dir.join("links")).map_err(|source| EnforcerError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(dir)
        .map_max_entries(names::HOST_V4, capacity.hosts)
        .map_max_entries(names::HOST_V6, capacity.hosts)
        .map_max_entries(names::NET_V4, capacity.nets)
        .map_max_entries(names::NET_V6, capacity.nets)
        .override_global(ips_common::features::GLOBAL, &features, true)
        .load(PROGRAM)
        .map_err(|e| EnforcerError::Load(e.to_string()))?;
    xdp_program(&mut ebpf)?
        .load()
        .map_err(|e| EnforcerError::Load(format!("the kernel refused the program: {e}")))?;
    Ok(ebpf)
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
    let program = xdp_program(&mut ebpf)?;
    let mut attached = Vec::new();
    let mut links = Vec::new();
    for iface in interfaces {
        let pin = link_path(dir, iface);
        if pin.exists() {
            let link = PinnedLink::from_pin(&pin).map_err(|e| EnforcerError::Attach {
                iface: iface.clone(),
                reason: format!("cannot open pinned link {}: {e}", pin.display()),
            })?;
            let link =
                XdpLink::try_from(FdLink::from(link)).map_err(|e| EnforcerError::Attach {
                    iface: iface.clone(),
                    reason: e.to_string(),
                })?;
            let id = program
                .attach_to_link(link)
                .map_err(|e| EnforcerError::Attach {
                    iface: iface.clone(),
                    reason: format!("cannot replace the program on the pinned link: {e}"),
                })?;
            // Held (not detached) for as long as the daemon runs; the pin keeps it after.
            let link = program
                .take_link(id)
                .map_err(|e| e.to_string())
                .and_then(|l: XdpLink| FdLink::try_from(l).map_err(|e| e.to_string()))
                .map_err(|reason| EnforcerError::Attach {
                    iface: iface.clone(),
                    reason,
                })?;
            links.push((iface.clone(), link, spare(&pin)));
            info!(%iface, "Reused the pinned XDP link and swapped in the new program.");
            attached.push((iface.clone(), "reused".to_owned()));
            continue;
        }
        let tries: &[(XdpMode, &str)] = match mode {
            AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
            AttachMode::Native => &[(XdpMode::Driver, "native")],
            AttachMode::Generic => &[(XdpMode::Skb, "generic")],
        };
        let mut last_err = String::new();
        let mut done = None;
        for (xdp_mode, label) in tries {
            match program.attach(iface, *xdp_mode) {
                Ok(id) => {
                    done = Some((id, *label));
                    break;
                }
                Err(e) => {
                    last_err = e.to_string();
                    if tries.len() > 1 {
                        warn!(%iface, error = %e, "Native XDP attach failed; falling back to generic mode.");
                    }
                }
            }
        }
        let Some((id, label)) = done else {
            return Err(EnforcerError::Attach {
                iface: iface.clone(),
                reason: last_err,
            });
        };
        let link = program.take_link(id).map_err(|e| EnforcerError::Attach {
            iface: iface.clone(),
            reason: e.to_string(),
        })?;
        let fd_link = FdLink::try_from(link).map_err(|e| EnforcerError::Attach {
            iface: iface.clone(),
            reason: format!("the kernel gave no bpf_link, so it cannot be pinned: {e}"),
        })?;
        let pinned = fd_link.pin(&pin).map_err(|e| EnforcerError::Attach {
            iface: iface.clone(),
            reason: format!("cannot pin link at {}: {e}", pin.display()),
        })?;
        // Keep our own fd too, so the link outlives its pin while the daemon runs.
        links.push((iface.clone(), FdLink::from(pinned), spare(&pin)));
        info!(%iface, mode = label, "Attached XDP program.");
        attached.push((iface.clone(), label.to_owned()));
    }
    Ok(Attachment {
        _ebpf: ebpf,
        links,
        interfaces: attached,
    })
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
    for name in names::ALL {
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
