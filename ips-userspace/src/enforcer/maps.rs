//! [`KernelMaps`]: typed access to the pinned maps the XDP program reads. The enforcer is its
//! only user; everything that changes what the kernel drops goes through [`KernelMaps::apply`].
use std::{
    collections::HashMap,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::maps::{Map, MapData, PerCpuArray};
use ips_common::{counters, hints, maps as names, origin, origin_drop_index};
use serde::{Deserialize, Serialize};

use super::{
    EnforcerError,
    summary::{COVER_BYTES, Region, SUMMARY_BYTES, Slash24Index},
    sys,
};
use crate::prefix::Prefix;

pub use crate::decisions::Diff;

/// How many entries each ban map can hold (`enforcer.max_hosts`, `enforcer.max_prefixes`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapCapacity {
    /// Single IPv4 addresses.
    pub hosts_v4: u64,
    /// IPv4 prefixes.
    pub nets_v4: u64,
    /// Single IPv6 addresses.
    pub hosts_v6: u64,
    /// IPv6 prefixes.
    pub nets_v6: u64,
}

/// Entries in each map.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFill {
    /// Single IPv4 addresses banned.
    pub hosts_v4: u64,
    /// IPv4 prefixes banned.
    pub nets_v4: u64,
    /// Single IPv6 addresses banned.
    pub hosts_v6: u64,
    /// IPv6 prefixes banned.
    pub nets_v6: u64,
    /// IPv4 allowlist entries.
    pub allow_v4: u64,
    /// IPv6 allowlist entries.
    pub allow_v6: u64,
}

/// Packet counters summed over CPUs.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// By name, see [`ips_common::counters::NAMES`].
    pub packets: Vec<(String, u64)>,
    /// Drops per origin id: (origin id, IPv4 drops, IPv6 drops), only origins with drops.
    pub origin_drops: Vec<(u32, u64, u64)>,
    /// Bytes of each packet counter, by the same names.
    pub bytes: Vec<(String, u64)>,
    /// Bytes dropped per origin id, for the origins of `origin_drops`.
    pub origin_bytes: Vec<(u32, u64, u64)>,
}

impl Counters {
    /// A counter by name, 0 if unknown.
    pub fn get(&self, name: &str) -> u64 {
        self.packets
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

/// Which of the four ban maps a prefix goes to, and its key bytes there.
enum Slot {
    HostV4,
    HostV6,
    NetV4,
    NetV6,
}

impl Slot {
    /// What the map holds, for errors.
    fn what(&self) -> &'static str {
        match self {
            Slot::HostV4 => "IPv4 single addresses",
            Slot::HostV6 => "IPv6 single addresses",
            Slot::NetV4 => "IPv4 prefixes",
            Slot::NetV6 => "IPv6 prefixes",
        }
    }

    /// The setting that sizes the map.
    fn setting(&self) -> &'static str {
        match self {
            Slot::HostV4 | Slot::HostV6 => "enforcer.max_hosts",
            Slot::NetV4 | Slot::NetV6 => "enforcer.max_prefixes",
        }
    }
}

fn slot(p: &Prefix) -> Slot {
    match (p.is_v4(), p.is_host()) {
        (true, true) => Slot::HostV4,
        (true, false) => Slot::NetV4,
        (false, true) => Slot::HostV6,
        (false, false) => Slot::NetV6,
    }
}

/// LPM trie key: prefix length (host order `u32`) then the address bytes.
fn lpm_key(p: &Prefix, out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::from(p.prefix_len()).to_ne_bytes());
    out.extend_from_slice(&p.octets());
}

fn from_lpm_key(key: &[u8]) -> Option<Prefix> {
    let len = u32::from_ne_bytes(key.get(..4)?.try_into().ok()?);
    Prefix::from_octets(&key[4..], u8::try_from(len).ok()?).ok()
}

/// IPv4 deletions after which the summary is rebuilt to clear `hosts` and `part` bits that
/// nothing needs any more.
const SUMMARY_REBUILD_AFTER: usize = 65_536;

/// Bytes of a [`ips_common::PartV4`].
const PART_BYTES: usize = std::mem::size_of::<ips_common::PartV4>();

/// Each IPv4 /24's /25-/31 bans (prefix, origin id), by /24 number.
type PartMirror = HashMap<u32, Vec<(Prefix, u32)>>;

/// The pinned maps, opened from the pin directory.
pub struct KernelMaps {
    dir: PathBuf,
    summary: MapData,
    cover: MapData,
    /// Mirror of the kernel's /24 index; built from the maps on first write.
    index: Option<Slash24Index>,
    /// IPv4 bans deleted since the summary was last rebuilt.
    stale: usize,
    host_v4: MapData,
    /// The one-cache-line buckets of the IPv4 host bans, and their writer (built from the hash
    /// map on first write).
    hosttab_map: MapData,
    hosttab: Option<super::hosttab::HostTable>,
    host_v6: MapData,
    net_v4: MapData,
    /// The /25-/31 records ([`super::parts`]), and their mirror: /24 -> its part bans (built
    /// from the trie on first write).
    part_v4: MapData,
    parts: Option<PartMirror>,
    net_v6: MapData,
    allow_v4: MapData,
    allow_v6: MapData,
    /// [`ips_common::hints`]: which families hold no ban.
    empty: MapData,
    /// [`ips_common::hints`]: where no allowlisted prefix lies.
    allow_none: MapData,
    counters: PerCpuArray<MapData, u64>,
    origin_drops: PerCpuArray<MapData, u64>,
    bytes: PerCpuArray<MapData, u64>,
    origin_bytes: PerCpuArray<MapData, u64>,
}

/// Keys and values of one map, gathered for one batch call.
#[derive(Default)]
struct Batch {
    keys: Vec<u8>,
    values: Vec<u8>,
    dels: Vec<u8>,
}

impl KernelMaps {
    /// Opens the maps pinned in `dir` (by a running or earlier daemon).
    pub fn open(dir: &Path) -> Result<Self, EnforcerError> {
        let open = |name: &str| {
            let path = dir.join(name);
            MapData::from_pin(&path).map_err(|source| EnforcerError::OpenMap {
                path: path.clone(),
                source,
            })
        };
        let per_cpu = |name: &str| -> Result<PerCpuArray<MapData, u64>, EnforcerError> {
            let data = open(name)?;
            PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|source| EnforcerError::OpenMap {
                path: dir.join(name),
                source,
            })
        };
        let maps = Self {
            dir: dir.to_owned(),
            summary: open(names::SUMMARY_V4)?,
            cover: open(names::COVER_V4)?,
            index: None,
            stale: 0,
            host_v4: open(names::HOST_V4)?,
            hosttab_map: open(names::HOSTTAB_V4)?,
            hosttab: None,
            host_v6: open(names::HOST_V6)?,
            net_v4: open(names::NET_V4)?,
            part_v4: open(names::PART_V4)?,
            parts: None,
            net_v6: open(names::NET_V6)?,
            allow_v4: open(names::ALLOW_V4)?,
            allow_v6: open(names::ALLOW_V6)?,
            empty: open(names::EMPTY)?,
            allow_none: open(names::ALLOW_NONE)?,
            counters: per_cpu(names::COUNTERS)?,
            origin_drops: per_cpu(names::ORIGIN_DROPS)?,
            bytes: per_cpu(names::BYTES)?,
            origin_bytes: per_cpu(names::ORIGIN_BYTES)?,
        };
        Ok(maps)
    }

    /// Sets the program's "no ban" hints ([`ips_common::hints`]) to what the maps hold now. For
    /// the writer only (the enforcer): a reader racing its writes could set a stale hint.
    pub fn sync_hints(&self) -> Result<(), EnforcerError> {
        self.refresh_no_ban(true, true)
    }

    /// The [`names::EMPTY`] word.
    fn no_ban_word(&self) -> Result<u32, EnforcerError> {
        let mut v = [0u8; 4];
        sys::lookup(self.empty.fd().as_fd(), &0u32.to_ne_bytes(), &mut v).map_err(|source| {
            EnforcerError::MapRead {
                map: names::EMPTY,
                source,
            }
        })?;
        Ok(u32::from_ne_bytes(v))
    }

    fn set_no_ban_word(&self, word: u32) -> Result<(), EnforcerError> {
        sys::update(
            self.empty.fd().as_fd(),
            &0u32.to_ne_bytes(),
            &word.to_ne_bytes(),
        )
        .map_err(|source| EnforcerError::MapWrite {
            map: names::EMPTY,
            source,
        })
    }

    /// Clears the "no ban" hint of the families `v4`/`v6` (before their bans are written).
    fn clear_no_ban(&self, v4: bool, v6: bool) -> Result<(), EnforcerError> {
        let word = self.no_ban_word()?;
        let mut want = word;
        if v4 {
            want &= !hints::NO_BAN_V4;
        }
        if v6 {
            want &= !hints::NO_BAN_V6;
        }
        if want != word {
            self.set_no_ban_word(want)?;
        }
        Ok(())
    }

    /// Sets the "no ban" hint of each family named (`v4`, `v6`) to whether its maps are empty.
    fn refresh_no_ban(&self, v4: bool, v6: bool) -> Result<(), EnforcerError> {
        let empty = |maps: [(&MapData, usize, &'static str); 2]| {
            for (map, key_size, name) in maps {
                let mut key = vec![0u8; key_size];
                // On an empty map this walks its buckets once; only after deletes.
                if sys::next_key(map.fd().as_fd(), None, &mut key)
                    .map_err(|source| EnforcerError::MapRead { map: name, source })?
                {
                    return Ok(false);
                }
            }
            Ok::<_, EnforcerError>(true)
        };
        let word = self.no_ban_word()?;
        let mut want = word;
        for (check, bit, maps) in [
            (
                v4,
                hints::NO_BAN_V4,
                [
                    (&self.net_v4, 8, names::NET_V4),
                    (&self.host_v4, 4, names::HOST_V4),
                ],
            ),
            (
                v6,
                hints::NO_BAN_V6,
                [
                    (&self.net_v6, 20, names::NET_V6),
                    (&self.host_v6, 16, names::HOST_V6),
                ],
            ),
        ] {
            if check {
                if empty(maps)? {
                    want |= bit;
                } else {
                    want &= !bit;
                }
            }
        }
        if want != word {
            self.set_no_ban_word(want)?;
        }
        Ok(())
    }

    /// Writes the [`names::ALLOW_NONE`] words, all in one batch (16 KB; a word written with
    /// the value it had changes nothing for a reader).
    fn write_allow_none(&self, words: &[u64]) -> Result<(), EnforcerError> {
        let keys: Vec<u8> = (0..words.len() as u32).flat_map(u32::to_ne_bytes).collect();
        let values: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        sys::update_batch(self.allow_none.fd().as_fd(), &keys, &values, 4, 8).map_err(|source| {
            EnforcerError::MapWrite {
                map: names::ALLOW_NONE,
                source,
            }
        })
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pins again every map whose pin was removed (`rm -rf` of the pin directory), so that
    /// enforcement still outlives the daemon. Returns how many were pinned again.
    pub fn repin(&self) -> Result<usize, EnforcerError> {
        use aya::maps::IterableMap;
        let mut n = 0;
        let maps: [(&str, &MapData); 16] = [
            (names::SUMMARY_V4, &self.summary),
            (names::HOSTTAB_V4, &self.hosttab_map),
            (names::COVER_V4, &self.cover),
            (names::HOST_V4, &self.host_v4),
            (names::HOST_V6, &self.host_v6),
            (names::NET_V4, &self.net_v4),
            (names::NET_V6, &self.net_v6),
            (names::ALLOW_V4, &self.allow_v4),
            (names::ALLOW_V6, &self.allow_v6),
            (names::EMPTY, &self.empty),
            (names::PART_V4, &self.part_v4),
            (names::ALLOW_NONE, &self.allow_none),
            (names::COUNTERS, self.counters.map()),
            (names::ORIGIN_DROPS, self.origin_drops.map()),
            (names::BYTES, self.bytes.map()),
            (names::ORIGIN_BYTES, self.origin_bytes.map()),
        ];
        for (name, map) in maps {
            let path = self.dir.join(name);
            if path.exists() {
                continue;
            }
            std::fs::create_dir_all(&self.dir).map_err(|source| EnforcerError::Io {
                path: self.dir.clone(),
                source,
            })?;
            map.pin(&path).map_err(|e| EnforcerError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Capacity of each ban map: (IPv4 hosts, IPv4 prefixes, IPv6 hosts, IPv6 prefixes).
    pub fn capacity(&self) -> MapCapacity {
        let max = |m: &MapData| u64::from(m.info().map_or(0, |i| i.max_entries()));
        MapCapacity {
            hosts_v4: max(&self.host_v4),
            nets_v4: max(&self.net_v4),
            hosts_v6: max(&self.host_v6),
            nets_v6: max(&self.net_v6),
        }
    }

    fn map(&self, slot: &Slot) -> (&MapData, usize, &'static str) {
        match slot {
            Slot::HostV4 => (&self.host_v4, 4, names::HOST_V4),
            Slot::HostV6 => (&self.host_v6, 16, names::HOST_V6),
            Slot::NetV4 => (&self.net_v4, 8, names::NET_V4),
            Slot::NetV6 => (&self.net_v6, 20, names::NET_V6),
        }
    }

    /// All IPv4 bans in the kernel.
    fn v4_bans(&self) -> Result<Vec<(Prefix, u32)>, EnforcerError> {
        let mut bans = Vec::new();
        for (map, key_size, name) in [
            (&self.host_v4, 4, names::HOST_V4),
            (&self.net_v4, 8, names::NET_V4),
        ] {
            sys::for_each(map.fd().as_fd(), key_size, 4, &mut |k, v| {
                let p = if key_size == 4 {
                    Prefix::from_octets(k, 32).ok()
                } else {
                    from_lpm_key(k)
                };
                if let Some(p) = p {
                    bans.push((p, u32::from_ne_bytes([v[0], v[1], v[2], v[3]])));
                }
            })
            .map_err(|source| EnforcerError::MapRead { map: name, source })?;
        }
        Ok(bans)
    }

    fn index(&mut self) -> Result<&mut Slash24Index, EnforcerError> {
        if self.index.is_none() {
            let region = |map: &MapData, len, name| {
                Region::map(map.fd().as_fd(), len)
                    .map_err(|source| EnforcerError::MapWrite { map: name, source })
            };
            let summary = region(&self.summary, SUMMARY_BYTES, names::SUMMARY_V4)?;
            let origins = region(&self.cover, COVER_BYTES, names::COVER_V4)?;
            let bans = self.v4_bans()?;
            self.stale = 0;
            return Ok(self.index.insert(Slash24Index::new(summary, origins, bans)));
        }
        match self.index.as_mut() {
            Some(index) => Ok(index),
            None => unreachable!("set above"),
        }
    }

    /// The single-address IPv4 bans of the hash map: address (big-endian `u32`) -> origin.
    fn host_v4_bans(&self) -> Result<HashMap<u32, u8>, EnforcerError> {
        let mut bans = HashMap::new();
        sys::for_each(self.host_v4.fd().as_fd(), 4, 4, &mut |k, v| {
            bans.insert(
                u32::from_be_bytes([k[0], k[1], k[2], k[3]]),
                u32::from_ne_bytes([v[0], v[1], v[2], v[3]]) as u8,
            );
        })
        .map_err(|source| EnforcerError::MapRead {
            map: names::HOST_V4,
            source,
        })?;
        Ok(bans)
    }

    fn hosttab(&mut self) -> Result<&mut super::hosttab::HostTable, EnforcerError> {
        if self.hosttab.is_none() {
            let entries = self.hosttab_map.info().map_or(0, |i| i.max_entries());
            let bits = entries.max(1).ilog2();
            let region =
                Region::map(self.hosttab_map.fd().as_fd(), 64 << bits).map_err(|source| {
                    EnforcerError::MapWrite {
                        map: names::HOSTTAB_V4,
                        source,
                    }
                })?;
            let bans = self.host_v4_bans()?;
            return Ok(self
                .hosttab
                .insert(super::hosttab::HostTable::new(region, bits, &bans)));
        }
        match self.hosttab.as_mut() {
            Some(t) => Ok(t),
            None => unreachable!("set above"),
        }
    }

    /// The mirror of the /25-/31 records, built from the trie on first use; the kernel's records
    /// are then made to match it (a daemon that stopped between a trie write and a record write
    /// left one stale).
    fn parts(&mut self) -> Result<&mut PartMirror, EnforcerError> {
        if self.parts.is_none() {
            let mut mirror = PartMirror::new();
            sys::for_each(self.net_v4.fd().as_fd(), 8, 4, &mut |k, v| {
                if let Some(p) = from_lpm_key(k).filter(super::parts::is_part) {
                    let o = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                    mirror
                        .entry(super::parts::slash24(&p))
                        .or_default()
                        .push((p, o));
                }
            })
            .map_err(|source| EnforcerError::MapRead {
                map: names::NET_V4,
                source,
            })?;
            let mut stale = Vec::new();
            sys::for_each(self.part_v4.fd().as_fd(), 4, PART_BYTES, &mut |k, _| {
                let n = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
                if !mirror.contains_key(&n) {
                    stale.push(n);
                }
            })
            .map_err(|source| EnforcerError::MapRead {
                map: names::PART_V4,
                source,
            })?;
            let all: Vec<u32> = mirror.keys().copied().chain(stale).collect();
            self.parts = Some(mirror);
            self.write_parts(all)?;
        }
        match self.parts.as_mut() {
            Some(p) => Ok(p),
            None => unreachable!("set above"),
        }
    }

    /// Writes the records of the /24s `touched` from the mirror: a /24 with no part ban loses
    /// its record; one whose record does not fit (the map is full) has none, so the program asks
    /// the trie for it.
    fn write_parts(&self, touched: impl IntoIterator<Item = u32>) -> Result<(), EnforcerError> {
        let Some(mirror) = self.parts.as_ref() else {
            return Ok(());
        };
        let fd = self.part_v4.fd().as_fd();
        let err = |source| EnforcerError::MapWrite {
            map: names::PART_V4,
            source,
        };
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for n in touched {
            let key = n.to_ne_bytes();
            match mirror.get(&n).filter(|b| !b.is_empty()) {
                None => sys::delete(fd, &key).map_err(err)?,
                Some(bans) => {
                    keys.extend_from_slice(&key);
                    values.extend_from_slice(&super::parts::bytes(&super::parts::record(bans)));
                }
            }
        }
        if keys.is_empty() || sys::update_batch(fd, &keys, &values, 4, PART_BYTES).is_ok() {
            return Ok(());
        }
        // One at a time, so that a full map leaves exactly the /24s that did not fit without a
        // record (the trie answers for them).
        for (key, value) in keys.chunks(4).zip(values.chunks(PART_BYTES)) {
            match sys::update(fd, key, value) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::E2BIG | libc::ENOMEM)) => {
                    sys::delete(fd, key).map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    /// The /25-/31 records are rewritten from the trie too.
    pub fn rebuild_summary(&mut self) -> Result<(), EnforcerError> {
        self.parts = None;
        self.parts()?;
        // The host table too: its overflow flags that deletes left behind go.
        if self.hosttab.is_some() {
            let bans = self.host_v4_bans()?;
            self.hosttab()?.sync(&bans);
        } else {
            self.hosttab()?;
        }
        if self.index.is_none() {
            return self.index().map(|_| ());
        }
        let bans = self.v4_bans()?;
        if let Some(index) = self.index.as_mut() {
            index.rebuild(bans);
        }
        self.stale = 0;
        Ok(())
    }

    /// Applies a diff. Deletes go first: the /24 index stops dropping them, then the entries
    /// go. Then upserts: the index learns them first (so no ban is ever skipped), then the
    /// entries land. Each map is written in batches.
    pub fn apply(&mut self, diff: &Diff) -> Result<(), EnforcerError> {
        // The program stops skipping a family before its first ban lands.
        self.clear_no_ban(
            diff.upsert.iter().any(|(p, _)| p.is_v4()),
            diff.upsert.iter().any(|(p, _)| !p.is_v4()),
        )?;
        if diff.delete.iter().any(Prefix::is_v4) {
            let index = self.index()?;
            for p in &diff.delete {
                index.remove(p);
            }
        }
        let host_key = |p: &Prefix| {
            let o = p.octets();
            (p.is_v4() && p.is_host()).then(|| u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
        };
        if diff.delete.iter().any(|p| host_key(p).is_some()) {
            let table = self.hosttab()?;
            for key in diff.delete.iter().filter_map(host_key) {
                table.remove(key);
            }
        }
        // A /24's record loses a part ban before the trie does.
        if diff.delete.iter().any(super::parts::is_part) {
            let mirror = self.parts()?;
            let mut touched = Vec::new();
            for p in diff.delete.iter().filter(|p| super::parts::is_part(p)) {
                let n = super::parts::slash24(p);
                if let Some(bans) = mirror.get_mut(&n) {
                    bans.retain(|(q, _)| q != p);
                    if bans.is_empty() {
                        mirror.remove(&n);
                    }
                }
                touched.push(n);
            }
            self.write_parts(touched)?;
        }
        self.write_entries(&[], &diff.delete)?;
        // Entries first, then the index that points at them: a write the kernel refuses (a
        // full map) leaves no index bit that drops for a ban that is not there. The index's
        // mirror is built (from the maps as they are) before the write, not after it.
        let v4 = diff.upsert.iter().any(|(p, _)| p.is_v4());
        if v4 {
            self.index()?;
        }
        if diff.upsert.iter().any(|(p, _)| host_key(p).is_some()) {
            // Built from the hash map as it is before the write.
            self.hosttab()?;
        }
        let parts = diff.upsert.iter().any(|(p, _)| super::parts::is_part(p));
        if parts {
            // Built from the trie as it is before the write.
            self.parts()?;
        }
        self.write_entries(&diff.upsert, &[])?;
        // The trie holds the new part bans: now their /24s' records.
        if parts {
            let mirror = self.parts()?;
            let mut touched = Vec::new();
            for (p, o) in diff.upsert.iter().filter(|(p, _)| super::parts::is_part(p)) {
                let n = super::parts::slash24(p);
                let bans = mirror.entry(n).or_default();
                match bans.iter_mut().find(|(q, _)| q == p) {
                    Some(entry) => entry.1 = *o,
                    None => bans.push((*p, *o)),
                }
                touched.push(n);
            }
            self.write_parts(touched)?;
        }
        if diff.upsert.iter().any(|(p, _)| host_key(p).is_some()) {
            let table = self.hosttab()?;
            for (p, o) in &diff.upsert {
                if let Some(key) = host_key(p) {
                    table.insert(key, (o % origin::MAX) as u8);
                }
            }
        }
        if v4 {
            let index = self.index()?;
            for (p, o) in &diff.upsert {
                index.add(p, *o);
            }
        }
        self.stale += diff.delete.iter().filter(|p| p.is_v4()).count();
        if self.stale >= SUMMARY_REBUILD_AFTER {
            self.rebuild_summary()?;
        }
        // A family whose last ban went is skipped from now on.
        self.refresh_no_ban(
            diff.delete.iter().any(Prefix::is_v4),
            diff.delete.iter().any(|p| !p.is_v4()),
        )
    }

    fn write_entries(
        &self,
        upsert: &[(Prefix, u32)],
        delete: &[Prefix],
    ) -> Result<(), EnforcerError> {
        let mut batches: [Batch; 4] = Default::default();
        let index = |s: &Slot| match s {
            Slot::HostV4 => 0,
            Slot::HostV6 => 1,
            Slot::NetV4 => 2,
            Slot::NetV6 => 3,
        };
        for p in delete {
            let s = slot(p);
            let b = &mut batches[index(&s)];
            match s {
                Slot::HostV4 | Slot::HostV6 => b.dels.extend_from_slice(&p.octets()),
                Slot::NetV4 | Slot::NetV6 => lpm_key(p, &mut b.dels),
            }
        }
        for (p, origin_id) in upsert {
            let s = slot(p);
            let b = &mut batches[index(&s)];
            match s {
                Slot::HostV4 | Slot::HostV6 => b.keys.extend_from_slice(&p.octets()),
                Slot::NetV4 | Slot::NetV6 => lpm_key(p, &mut b.keys),
            }
            b.values
                .extend_from_slice(&(origin_id % origin::MAX).to_ne_bytes());
        }
        for (s, b) in [Slot::HostV4, Slot::HostV6, Slot::NetV4, Slot::NetV6]
            .iter()
            .zip(&batches)
        {
            let (map, key_size, name) = self.map(s);
            let fd = map.fd().as_fd();
            let err = |source: std::io::Error| match source.raw_os_error() {
                // A full preallocated hash answers E2BIG, a full LPM trie ENOSPC.
                Some(libc::E2BIG | libc::ENOSPC) => EnforcerError::Full {
                    map: name,
                    what: s.what(),
                    setting: s.setting(),
                    capacity: map.info().map_or(0, |i| i.max_entries()),
                },
                _ => EnforcerError::MapWrite { map: name, source },
            };
            if !b.dels.is_empty() {
                sys::delete_batch(fd, &b.dels, key_size).map_err(err)?;
            }
            if !b.keys.is_empty() {
                sys::update_batch(fd, &b.keys, &b.values, key_size, 4).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Calls `each` with every ban in the kernel and its origin id.
    pub fn for_each_ban(&self, each: &mut dyn FnMut(Prefix, u32)) -> Result<(), EnforcerError> {
        for s in [Slot::HostV4, Slot::HostV6, Slot::NetV4, Slot::NetV6] {
            let (map, key_size, name) = self.map(&s);
            let host = matches!(s, Slot::HostV4 | Slot::HostV6);
            sys::for_each(map.fd().as_fd(), key_size, 4, &mut |k, v| {
                let prefix = if host {
                    Prefix::from_octets(k, (key_size * 8) as u8).ok()
                } else {
                    from_lpm_key(k)
                };
                let origin_id = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                if let Some(p) = prefix {
                    each(p, origin_id);
                }
            })
            .map_err(|source| EnforcerError::MapRead { map: name, source })?;
        }
        Ok(())
    }

    /// Makes the kernel allowlist exactly `want`. The program's hint stops skipping the /16s
    /// of new entries before they land, and skips those of removed ones only after they went.
    pub fn set_allowlist(&self, want: &[Prefix]) -> Result<(), EnforcerError> {
        let mut have = Vec::new();
        self.for_each_allowed(&mut |p| have.push(p))?;
        let both: Vec<Prefix> = have.iter().chain(want).copied().collect();
        self.write_allow_none(&super::hints::allow_none(&both))?;
        self.write_allowlist(want, &have)?;
        self.write_allow_none(&super::hints::allow_none(want))
    }

    fn for_each_allowed(&self, each: &mut dyn FnMut(Prefix)) -> Result<(), EnforcerError> {
        for (map, key_size, name) in [
            (&self.allow_v4, 8, names::ALLOW_V4),
            (&self.allow_v6, 20, names::ALLOW_V6),
        ] {
            sys::for_each(map.fd().as_fd(), key_size, 4, &mut |k, _| {
                if let Some(p) = from_lpm_key(k) {
                    each(p);
                }
            })
            .map_err(|source| EnforcerError::MapRead { map: name, source })?;
        }
        Ok(())
    }

    /// Makes the allowlist tries hold `want`, given that they hold `have`.
    fn write_allowlist(&self, want: &[Prefix], have: &[Prefix]) -> Result<(), EnforcerError> {
        for (map, v4, name) in [
            (&self.allow_v4, true, names::ALLOW_V4),
            (&self.allow_v6, false, names::ALLOW_V6),
        ] {
            let key_size = if v4 { 8 } else { 20 };
            let fd = map.fd().as_fd();
            let err = |source| EnforcerError::MapWrite { map: name, source };
            for p in want.iter().filter(|p| p.is_v4() == v4) {
                let mut key = Vec::with_capacity(key_size);
                lpm_key(p, &mut key);
                sys::update(fd, &key, &1u32.to_ne_bytes()).map_err(err)?;
            }
            for p in have.iter().filter(|p| p.is_v4() == v4 && !want.contains(p)) {
                let mut key = Vec::with_capacity(key_size);
                lpm_key(p, &mut key);
                sys::delete(fd, &key).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Counts the entries of each map.
    pub fn fill(&self) -> Result<MapFill, EnforcerError> {
        let count = |map: &MapData, key_size: usize, name: &'static str| {
            let mut n = 0u64;
            sys::for_each(map.fd().as_fd(), key_size, 4, &mut |_, _| n += 1)
                .map_err(|source| EnforcerError::MapRead { map: name, source })?;
            Ok::<_, EnforcerError>(n)
        };
        Ok(MapFill {
            hosts_v4: count(&self.host_v4, 4, names::HOST_V4)?,
            nets_v4: count(&self.net_v4, 8, names::NET_V4)?,
            hosts_v6: count(&self.host_v6, 16, names::HOST_V6)?,
            nets_v6: count(&self.net_v6, 20, names::NET_V6)?,
            allow_v4: count(&self.allow_v4, 8, names::ALLOW_V4)?,
            allow_v6: count(&self.allow_v6, 20, names::ALLOW_V6)?,
        })
    }

    /// Reads the packet counters, summed over CPUs.
    /// Zeroes the drop counters of `origin` (an id given to a new origin, perhaps reused).
    pub fn reset_origin_drops(&mut self, origin: u32) -> Result<(), EnforcerError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| EnforcerError::Counters {
            map: names::ORIGIN_DROPS,
            source: aya::maps::MapError::IoError(source),
        })?;
        let zeros = || {
            aya::maps::PerCpuValues::try_from(vec![0u64; cpus]).map_err(|source| {
                EnforcerError::Counters {
                    map: names::ORIGIN_DROPS,
                    source: aya::maps::MapError::IoError(source),
                }
            })
        };
        for family in [ips_common::family::V4, ips_common::family::V6] {
            self.origin_drops
                .set(origin_drop_index(origin, family), zeros()?, 0)
                .map_err(|source| EnforcerError::Counters {
                    map: names::ORIGIN_DROPS,
                    source,
                })?;
            self.origin_bytes
                .set(origin_drop_index(origin, family), zeros()?, 0)
                .map_err(|source| EnforcerError::Counters {
                    map: names::ORIGIN_BYTES,
                    source,
                })?;
        }
        Ok(())
    }

    pub fn counters(&self) -> Result<Counters, EnforcerError> {
        let read = |map: &PerCpuArray<MapData, u64>, i: u32, name: &'static str| {
            map.get(&i, 0)
                .map(|values| values.iter().sum::<u64>())
                .map_err(|source| EnforcerError::Counters { map: name, source })
        };
        let mut out = Counters::default();
        for (i, name) in counters::NAMES.iter().enumerate() {
            out.packets.push((
                (*name).to_owned(),
                read(&self.counters, i as u32, names::COUNTERS)?,
            ));
            out.bytes.push((
                (*name).to_owned(),
                read(&self.bytes, i as u32, names::BYTES)?,
            ));
        }
        for o in 0..origin::MAX {
            let v4 = read(
                &self.origin_drops,
                origin_drop_index(o, ips_common::family::V4),
                names::ORIGIN_DROPS,
            )?;
            let v6 = read(
                &self.origin_drops,
                origin_drop_index(o, ips_common::family::V6),
                names::ORIGIN_DROPS,
            )?;
            if v4 + v6 > 0 {
                out.origin_drops.push((o, v4, v6));
                let bytes = |family| {
                    read(
                        &self.origin_bytes,
                        origin_drop_index(o, family),
                        names::ORIGIN_BYTES,
                    )
                };
                out.origin_bytes.push((
                    o,
                    bytes(ips_common::family::V4)?,
                    bytes(ips_common::family::V6)?,
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpm_keys_are_length_then_network_order_bytes() {
        let p: Prefix = "203.0.113.0/24".parse().unwrap();
        let mut k = Vec::new();
        lpm_key(&p, &mut k);
        assert_eq!(k, [24, 0, 0, 0, 203, 0, 113, 0]);
        assert_eq!(from_lpm_key(&k), Some(p));
        let p6: Prefix = "2001:db8::/64".parse().unwrap();
        let mut k6 = Vec::new();
        lpm_key(&p6, &mut k6);
        assert_eq!(k6.len(), 20);
        assert_eq!(&k6[4..8], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(from_lpm_key(&k6), Some(p6));
    }
}
