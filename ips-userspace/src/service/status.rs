//! `ips status`: the store's counts and the pinned maps' fill and counters, with or without a
//! running daemon.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    decisions::{STATE_INTERFACES, Store},
    enforcer::{EnforcerError, KernelMaps, MapCapacity, MapFill, loader},
};

/// An attached interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// Name.
    pub name: String,
    /// `native`, `generic` or `unknown`.
    pub mode: String,
}

/// Drops attributed to one origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStatus {
    /// Origin id in the kernel.
    pub id: u32,
    /// Origin name.
    pub name: String,
    /// IPv4 packets dropped.
    pub dropped_v4: u64,
    /// IPv6 packets dropped.
    pub dropped_v6: u64,
    /// Bytes of the IPv4 packets dropped.
    #[serde(default)]
    pub dropped_bytes_v4: u64,
    /// Bytes of the IPv6 packets dropped.
    #[serde(default)]
    pub dropped_bytes_v6: u64,
}

/// `ips status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// False when read straight from the pins with no daemon.
    pub daemon_running: bool,
    /// Pin directory.
    pub pin_dir: String,
    /// Attached interfaces.
    pub interfaces: Vec<InterfaceStatus>,
    /// Entries per map.
    pub maps: MapFill,
    /// What each ban map can hold.
    #[serde(default)]
    pub capacity: MapCapacity,
    /// Active decisions the kernel could not hold at the daemon's start (its maps were
    /// full): not enforced. 0 when all is well.
    #[serde(default)]
    pub not_enforced: u64,
    /// Active decisions in the store.
    pub decisions: u64,
    /// Allowlist entries in the store.
    pub allowlist: u64,
    /// Packet counters by name.
    pub counters: BTreeMap<String, u64>,
    /// Bytes of the packets each counter counts, by the same names.
    #[serde(default)]
    pub bytes: BTreeMap<String, u64>,
    /// Drops per origin.
    pub origins: Vec<OriginStatus>,
    /// Detection pipeline counters (empty without `[[acquisition]]`).
    #[serde(default)]
    pub detection: crate::pipeline::DetectionStats,
    /// The most dropped sources and banned prefixes, from the program's sample of drops (empty
    /// without a daemon).
    #[serde(default)]
    pub top: crate::enforcer::sampler::TopReport,
}

/// Status from a store and maps, with or without a running daemon.
pub fn status_from(
    store: &dyn Store,
    maps: &KernelMaps,
    now: i64,
    daemon_running: bool,
) -> Result<Status, EnforcerError> {
    let recorded = store.state(STATE_INTERFACES)?;
    let interfaces = loader::pinned_interfaces(maps.dir())
        .into_iter()
        .map(|name| {
            let mode = recorded
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(|| "unknown".to_owned(), |(_, m)| m.clone());
            InterfaceStatus { name, mode }
        })
        .collect();
    let counters = maps.counters()?;
    let names = store.origins()?;
    let origins = counters
        .origin_drops
        .iter()
        .map(|(id, v4, v6)| {
            let bytes = counters
                .origin_bytes
                .iter()
                .find(|(o, _, _)| o == id)
                .map_or((0, 0), |(_, b4, b6)| (*b4, *b6));
            OriginStatus {
                id: *id,
                name: names
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or_else(|| format!("origin-{id}"), |(_, n)| n.clone()),
                dropped_v4: *v4,
                dropped_v6: *v6,
                dropped_bytes_v4: bytes.0,
                dropped_bytes_v6: bytes.1,
            }
        })
        .collect();
    Ok(Status {
        daemon_running,
        pin_dir: maps.dir().display().to_string(),
        interfaces,
        maps: maps.fill()?,
        capacity: maps.capacity(),
        not_enforced: 0,
        decisions: store.count_active(now)?,
        allowlist: store.allow_list()?.len() as u64,
        counters: counters.packets.into_iter().collect(),
        bytes: counters.bytes.into_iter().collect(),
        origins,
        detection: crate::pipeline::DetectionStats::default(),
        top: crate::enforcer::sampler::TopReport::default(),
    })
}

/// The ban maps above 90% of their capacity: (what, fill, capacity).
pub fn nearly_full(fill: &MapFill, capacity: &MapCapacity) -> Vec<(&'static str, u64, u64)> {
    [
        (
            "IPv4 addresses (enforcer.max_hosts)",
            fill.hosts_v4,
            capacity.hosts_v4,
        ),
        (
            "IPv4 prefixes (enforcer.max_prefixes)",
            fill.nets_v4,
            capacity.nets_v4,
        ),
        (
            "IPv6 addresses (enforcer.max_hosts)",
            fill.hosts_v6,
            capacity.hosts_v6,
        ),
        (
            "IPv6 prefixes (enforcer.max_prefixes)",
            fill.nets_v6,
            capacity.nets_v6,
        ),
    ]
    .into_iter()
    .filter(|(_, n, cap)| *cap > 0 && n * 10 > cap * 9)
    .collect()
}
