//! The decision for one source address: single-address bans (a hash lookup), then prefix bans
//! (an LPM trie); the allowlist only for a source that a ban matched, so clean traffic never
//! pays for it, and an allowlisted source is still never dropped. A family with no ban costs
//! one read, and the allowlist trie is only asked where an allowlisted prefix may lie (see
//! [`ips_common::hints`]).
//!
//! For IPv4 the /24 summary comes before both and decides which of them to make: none for most
//! clean sources, the host hash only where a single-address ban lies in the /24, the trie only
//! where a /25 to /31 ban touches it; a /24 wholly inside a ban of /24 or shorter is dropped
//! from the summary alone, with the origin from the cover array.
use aya_ebpf::maps::lpm_trie::Key;
use ips_common::{Ban, hints, hosttab, sampling};

use crate::maps::{
    IPS_ALLOW_V4, IPS_ALLOW_V6, IPS_COVER_V4, IPS_HOST_V4, IPS_HOST_V6, IPS_HOSTTAB_V4, IPS_NET_V4,
    IPS_NET_V6, IPS_PART_V4, IPS_SUMMARY_V4, allow_none, hosttab_bits, no_ban,
};

/// What the maps say about a source address.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// Banned, but in the allowlist: never dropped.
    Allowed,
    /// Banned, by the given origin, found in the given kind of map (see
    /// [`ips_common::sampling`]).
    Banned(u32, u8),
    /// Neither.
    Clean,
}

#[inline(always)]
fn banned(ban: &Ban, kind: u8) -> Verdict {
    Verdict::Banned(ban.origin, kind)
}

/// Looks an IPv4 source up.
#[inline(always)]
pub fn v4(addr: [u8; 4]) -> Verdict {
    v4_with(addr, host_v4)
}

/// [`v4`] with single addresses asked of the kernel's hash map alone, not the host table:
/// what `cargo xtask bench` measures the host table against. The same verdicts.
#[inline(always)]
pub fn v4_without_host_table(addr: [u8; 4]) -> Verdict {
    v4_with(addr, host_v4_hash)
}

#[inline(always)]
fn v4_with(addr: [u8; 4], host: fn([u8; 4]) -> Option<u32>) -> Verdict {
    if no_ban(hints::NO_BAN_V4) {
        return Verdict::Clean;
    }
    let key = Key::new(32, addr);
    match ban_v4(addr, &key, host) {
        Verdict::Banned(..) if allowed_v4(addr, &key) => Verdict::Allowed,
        v => v,
    }
}

/// The allowlist, asked only when a prefix it holds may contain `addr`.
#[inline(always)]
fn allowed_v4(addr: [u8; 4], key: &Key<[u8; 4]>) -> bool {
    let (word, bit) = hints::allow_v4(addr[0], addr[1]);
    !allow_none(word, bit) && IPS_ALLOW_V4.get(key).is_some()
}

#[inline(always)]
fn ban_v4(addr: [u8; 4], key: &Key<[u8; 4]>, host: fn([u8; 4]) -> Option<u32>) -> Verdict {
    let n = u32::from_be_bytes(addr) >> 8;
    let bit = 1u64 << (n & 63);
    let Some(summary) = IPS_SUMMARY_V4.get(n >> 6) else {
        // Cannot happen (the index is in range); look everything up rather than guess.
        return v4_full(addr, key);
    };
    if summary.hosts & bit != 0
        && let Some(origin) = host(addr)
    {
        return Verdict::Banned(origin, sampling::KIND_HOST);
    }
    // A /25 to /31 ban is more specific than any covering one: ask the /24's record first,
    // or the trie when it has none.
    if summary.part & bit != 0 {
        // SAFETY: a plain value that the program only reads.
        match unsafe { IPS_PART_V4.get(n) } {
            Some(part) => {
                let i = usize::from(addr[3]);
                if part.banned[i >> 6] & (1u64 << (i & 63)) != 0 {
                    return Verdict::Banned(u32::from(part.origins[i]), sampling::KIND_NET);
                }
            }
            None => {
                if let Some(ban) = IPS_NET_V4.get(key) {
                    return banned(ban, sampling::KIND_NET);
                }
            }
        }
    }
    if summary.cover & bit != 0 {
        let origin = IPS_COVER_V4
            .get(n >> 3)
            .map_or(0, |w| u32::from(w[(n & 7) as usize]));
        return Verdict::Banned(origin, sampling::KIND_COVER);
    }
    Verdict::Clean
}

/// A single-address IPv4 ban: one bucket of the host table (one cache line), and the hash map
/// only when that bucket overflowed.
#[inline(always)]
fn host_v4(addr: [u8; 4]) -> Option<u32> {
    let hash = || host_v4_hash(addr);
    let bits = hosttab_bits();
    if !(hosttab::MIN_BITS..=hosttab::MAX_BITS).contains(&bits) {
        // Never loaded so: a tag would not name one address. Ask the hash map.
        return hash();
    }
    let (index, tag) = hosttab::place(u32::from_be_bytes(addr), bits);
    let Some(bucket) = IPS_HOSTTAB_V4.get(index) else {
        return hash();
    };
    for slot in 0..hosttab::SLOTS {
        if bucket.tags[slot] == tag {
            return Some(u32::from(bucket.origins[slot]));
        }
    }
    if bucket.flags & hosttab::OVERFLOW != 0 {
        return hash();
    }
    None
}

/// A single-address IPv4 ban in the kernel's hash map (two dependent misses at scale).
#[inline(always)]
fn host_v4_hash(addr: [u8; 4]) -> Option<u32> {
    // SAFETY: the value is a plain `u32` that the program only reads.
    unsafe { IPS_HOST_V4.get(addr) }.map(|b| b.origin)
}

#[inline(always)]
fn v4_full(addr: [u8; 4], key: &Key<[u8; 4]>) -> Verdict {
    // SAFETY: as above.
    if let Some(ban) = unsafe { IPS_HOST_V4.get(addr) } {
        return banned(ban, sampling::KIND_HOST);
    }
    match IPS_NET_V4.get(key) {
        Some(ban) => banned(ban, sampling::KIND_NET),
        None => Verdict::Clean,
    }
}

/// Looks an IPv6 source up.
#[inline(always)]
pub fn v6(addr: [u8; 16]) -> Verdict {
    if no_ban(hints::NO_BAN_V6) {
        return Verdict::Clean;
    }
    let key = Key::new(128, addr);
    // SAFETY: as in `v4`.
    let verdict = if let Some(ban) = unsafe { IPS_HOST_V6.get(addr) } {
        banned(ban, sampling::KIND_HOST)
    } else {
        match IPS_NET_V6.get(&key) {
            Some(ban) => banned(ban, sampling::KIND_NET),
            None => Verdict::Clean,
        }
    };
    let (word, bit) = hints::allow_v6(addr[0], addr[1]);
    match verdict {
        Verdict::Banned(..) if !allow_none(word, bit) && IPS_ALLOW_V6.get(&key).is_some() => {
            Verdict::Allowed
        }
        v => v,
    }
}
