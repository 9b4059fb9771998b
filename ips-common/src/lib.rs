//! Types and map names shared by the XDP program (`ips-ebpf`) and the controller (`ips-userspace`).
//!
//! Everything here is `#[repr(C)]` with no implicit padding, so the kernel and userspace agree on
//! the bytes. Addresses in map keys are in network byte order (the order they have on the wire), so
//! the program can copy them straight out of the packet.
#![no_std]

/// Names of the BPF maps, used by `#[map(name = ...)]` in the program and by the loader.
///
/// Kernel map names are limited to 15 bytes; each of these fits.
pub mod maps {
    /// `LpmTrie<[u8; 4], u32>`: allowlisted IPv4 prefixes. Checked first, never dropped.
    pub const ALLOW_V4: &str = "IPS_ALLOW_V4";
    /// `LpmTrie<[u8; 16], u32>`: allowlisted IPv6 prefixes.
    pub const ALLOW_V6: &str = "IPS_ALLOW_V6";
    /// `HashMap<[u8; 4], Ban>`: banned single IPv4 addresses (/32), the common case.
    pub const HOST_V4: &str = "IPS_HOST_V4";
    /// `HashMap<[u8; 16], Ban>`: banned single IPv6 addresses (/128).
    pub const HOST_V6: &str = "IPS_HOST_V6";
    /// `LpmTrie<[u8; 4], Ban>`: banned IPv4 prefixes shorter than /32.
    pub const NET_V4: &str = "IPS_NET_V4";
    /// `LpmTrie<[u8; 16], Ban>`: banned IPv6 prefixes shorter than /128.
    pub const NET_V6: &str = "IPS_NET_V6";
    /// `Array<Summary24>` (mmapable): three bits per IPv4 /24 (see [`crate::Summary24`]), read
    /// before any other IPv4 ban lookup.
    pub const SUMMARY_V4: &str = "IPS_SUMMARY_V4";
    /// `Array<[u8; 8]>` (mmapable): byte `n` (byte `n % 8` of entry `n / 8`) is the origin of
    /// the longest ban of /24 or shorter covering /24 number `n`.
    pub const COVER_V4: &str = "IPS_COVER_V4";
    /// `PerCpuArray<u64>` indexed by [`crate::counters`].
    pub const COUNTERS: &str = "IPS_COUNTERS";
    /// `PerCpuArray<u64>` indexed by [`crate::origin_drop_index`]: drops per origin and family.
    pub const ORIGIN_DROPS: &str = "IPS_ORIGIN_DROP";
    /// `PerCpuArray<u64>` indexed by [`crate::counters`]: bytes of the packets each counter counts.
    pub const BYTES: &str = "IPS_BYTES";
    /// `PerCpuArray<u64>` indexed by [`crate::origin_drop_index`]: bytes dropped per origin and
    /// family.
    pub const ORIGIN_BYTES: &str = "IPS_ORIGIN_BYTE";
    /// `RingBuf` of [`crate::DropSample`]: a rate-limited sample of dropped packets, read by the
    /// enforcer for the top dropped sources and prefixes.
    pub const DROP_SAMPLES: &str = "IPS_DROP_SAMPLE";
    /// `PerCpuArray<SamplerState>` (one entry): each CPU's sampling window, see
    /// [`crate::sampling`].
    pub const SAMPLER: &str = "IPS_SAMPLER";
    /// `Array<HostBucket4>` (mmapable): the single-address IPv4 bans again, in buckets of one
    /// cache line, so that a lookup costs one cache miss, see [`crate::hosttab`].
    pub const HOSTTAB_V4: &str = "IPS_HOSTTAB4";
    /// `HashMap<u32, PartV4>` (not preallocated): for an IPv4 /24 (key: the address `>> 8`)
    /// that /25 to /31 bans touch, which of its 256 addresses they ban and with which origin,
    /// see [`crate::PartV4`].
    pub const PART_V4: &str = "IPS_PART_V4";
    /// `Array<u32>` (one entry): which families hold no ban at all, see [`crate::hints`].
    pub const EMPTY: &str = "IPS_EMPTY";
    /// `Array<u64>` of [`crate::hints::ALLOW_NONE_WORDS`] bits: the /16s (IPv4) and first 16
    /// bits (IPv6) that no allowlisted prefix touches, see [`crate::hints`].
    pub const ALLOW_NONE: &str = "IPS_ALLOW_NONE";

    /// Every map that the daemon pins, in one list for the loader and `ips detach`.
    pub const ALL: [&str; 18] = [
        SUMMARY_V4,
        COVER_V4,
        ALLOW_V4,
        ALLOW_V6,
        HOST_V4,
        HOST_V6,
        NET_V4,
        NET_V6,
        COUNTERS,
        ORIGIN_DROPS,
        BYTES,
        ORIGIN_BYTES,
        DROP_SAMPLES,
        SAMPLER,
        HOSTTAB_V4,
        EMPTY,
        ALLOW_NONE,
        PART_V4,
    ];

    /// Pins of maps that earlier versions made and this one does not read: removed on load and
    /// by `ips detach`. `IPS_HOSTTAB_V4` held the host table with 4-byte keys.
    pub const RETIRED: [&str; 1] = ["IPS_HOSTTAB_V4"];

    /// Bench only: `LpmTrie<[u8; 4], Ban>` holding every ban, hosts and prefixes alike, for the
    /// LPM-only baseline.
    pub const BENCH_LPM_V4: &str = "BENCH_LPM_V4";
    /// Bench only: `Array<[u8; 4]>` of source addresses the bench programs look up in turn.
    pub const BENCH_KEYS_V4: &str = "BENCH_KEYS_V4";
    /// Bench only: `PerCpuArray<u64>`: 0 is the cursor into the keys, 1 counts hits, 2 is the
    /// ring mask (ring size - 1).
    pub const BENCH_STATE: &str = "BENCH_STATE";
}

/// Default capacities; the loader can raise them from the config.
pub mod capacity {
    /// Single-address bans per family.
    pub const HOSTS: u32 = 1_000_000;
    /// Prefix bans per family.
    pub const NETS: u32 = 500_000;
    /// Allowlist entries per family.
    pub const ALLOW: u32 = 65_536;
    /// IPv4 /24s with a record of their /25 to /31 bans ([`crate::maps::PART_V4`]); a /24
    /// beyond them is looked up in the prefix trie.
    pub const PARTS_V4: u32 = 65_536;
    /// Entries of the IPv4 summary: 64 /24s each.
    pub const SUMMARY_V4_WORDS: u32 = 1 << 18;
    /// Entries of the IPv4 cover-origin array: 8 /24s each.
    pub const COVER_V4_WORDS: u32 = 1 << 21;
    /// Keys in the bench program's lookup ring (a power of two).
    pub const BENCH_KEYS: u32 = 1 << 20;
    /// Lookups a bench program makes per run.
    pub const BENCH_BATCH: u32 = 128;
}

/// Three bits for each of 64 consecutive IPv4 /24s: /24 number `n` is bit `n % 64` of entry
/// `n / 64` of [`maps::SUMMARY_V4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary24 {
    /// A single-address ban may lie in the /24: look in the host hash.
    pub hosts: u64,
    /// A ban of /24 or shorter covers the whole /24: drop (origin in [`maps::COVER_V4`]).
    pub cover: u64,
    /// A /25 to /31 ban may touch the /24: look in the prefix trie.
    pub part: u64,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, three `u64`, no padding.
unsafe impl aya::Pod for Summary24 {}

/// The /25 to /31 bans inside one IPv4 /24, as one record: the program reads one bit and one
/// byte of it where it would otherwise walk the prefix trie.
///
/// Update protocol: the enforcer writes a /24's record (a whole-value replace, which readers see
/// entirely old or entirely new) after the trie holds a new ban and before the trie loses one.
/// A /24 whose `part` bit is set in [`maps::SUMMARY_V4`] but has no record (the record map was
/// full) is looked up in the trie: a record, when there is one, holds every /25-/31 ban of its
/// /24.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartV4 {
    /// Bit `i` (of word `i / 64`): address `i` of the /24 is banned.
    pub banned: [u64; 4],
    /// The origin of the longest ban covering each address.
    pub origins: [u8; 256],
}

impl Default for PartV4 {
    fn default() -> Self {
        Self {
            banned: [0; 4],
            origins: [0; 256],
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: 32 + 256 bytes, no padding.
unsafe impl aya::Pod for PartV4 {}

/// The value stored with each ban: which origin put it there, so drops can be attributed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ban {
    /// Index into the origin table (see [`origin`]); below [`origin::MAX`].
    pub origin: u32,
}

#[cfg(feature = "user")]
// SAFETY: `Ban` is `#[repr(C)]`, holds only a `u32` and has no padding.
unsafe impl aya::Pod for Ban {}

/// Origin ids. Fixed ones are listed here; blocklists are given ids from [`origin::FIRST_LIST`] up.
pub mod origin {
    /// Added by hand with `ips decisions add` or the API.
    pub const MANUAL: u32 = 0;
    /// Taken by the detection pipeline (scenarios).
    pub const DETECTION: u32 = 1;
    /// From the CrowdSec LAPI or community hub.
    pub const CROWD: u32 = 2;
    /// First id handed to a named blocklist.
    pub const FIRST_LIST: u32 = 8;
    /// Number of origin ids the drop counters have room for.
    pub const MAX: u32 = 256;
}

/// What the XDP program does besides judging, chosen when it is loaded (the `IPS_FEATURES`
/// global, read-only: the verifier removes the code of a feature that is off). The daemon turns
/// everything on; the bench loads each variant to measure what a feature costs per packet.
pub mod features {
    /// Count bytes beside packets ([`crate::maps::BYTES`], [`crate::maps::ORIGIN_BYTES`]).
    pub const BYTES: u32 = 1;
    /// Sample dropped packets into [`crate::maps::DROP_SAMPLES`].
    pub const SAMPLE_DROPS: u32 = 2;
    /// Everything.
    pub const ALL: u32 = BYTES | SAMPLE_DROPS;
    /// The name of the global in the program.
    pub const GLOBAL: &str = "IPS_FEATURES";
}

/// The drop sampler's budget: each CPU sends at most [`sampling::PER_WINDOW`] samples per
/// window of [`sampling::WINDOW_NS`]; every sample carries the drops its CPU made since its
/// previous sample, so the sum of weights is every drop (as sFlow's sample pool) and a flood
/// costs the ring at most `PER_WINDOW` entries per CPU per window.
pub mod sampling {
    /// Samples per CPU per window.
    pub const PER_WINDOW: u32 = 32;
    /// Window length: 100 ms (so at most 320 samples per second per CPU).
    pub const WINDOW_NS: u64 = 100_000_000;
    /// Ring buffer size in bytes (a power of two multiple of the page size): room for about
    /// 5,000 samples, over a second of the budget on 16 CPUs.
    pub const RING_BYTES: u32 = 256 * 1024;
    /// The ban came from the single-address hash map: the banned prefix is the address itself.
    pub const KIND_HOST: u8 = 0;
    /// The ban came from a prefix trie.
    pub const KIND_NET: u8 = 1;
    /// The ban came from the IPv4 /24 summary (a ban of /24 or shorter covers the /24).
    pub const KIND_COVER: u8 = 2;
}

/// One sampled dropped packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropSample {
    /// Source address: 16 bytes for IPv6, the first 4 for IPv4.
    pub addr: [u8; 16],
    /// Bytes dropped on this CPU since its previous sample, this packet included.
    pub bytes: u64,
    /// Packets dropped on this CPU since its previous sample, this packet included.
    pub packets: u32,
    /// Origin of the ban that dropped it.
    pub origin: u16,
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
    /// Which map banned it, see [`sampling`].
    pub kind: u8,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: 16 + 8 + 4 + 2 + 1 + 1 bytes, no padding.
unsafe impl aya::Pod for DropSample {}

/// One CPU's sampling state, see [`sampling`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerState {
    /// When the current window began (`bpf_ktime_get_ns`).
    pub window_start: u64,
    /// Bytes dropped since the last sample.
    pub bytes: u64,
    /// Packets dropped since the last sample.
    pub packets: u32,
    /// Samples sent in the current window.
    pub taken: u32,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: 8 + 8 + 4 + 4 bytes, no padding.
unsafe impl aya::Pod for SamplerState {}

/// Hints that let the program skip a lookup it knows would find nothing. Each bit says
/// "nothing there", so a map that is new (all zeros) makes the program look everything up: a
/// hint can only make it skip work, never a ban or an allowlist entry.
///
/// - [`maps::EMPTY`]: [`hints::NO_BAN_V4`] / [`hints::NO_BAN_V6`] set when the family has no
///   ban in any map; the program then passes the packet without another read. The enforcer
///   clears the bit before it writes the family's first ban, and sets it after a delete that
///   left the family's maps empty.
/// - [`maps::ALLOW_NONE`]: one bit per IPv4 /16 (words 0 to 1023) and per value of an IPv6
///   address's first 16 bits (words 1024 to 2047), set when no allowlisted prefix overlaps
///   it; a source a ban matched is looked up in the allowlist trie only when its bit is clear.
///   The enforcer clears bits before it adds allowlist entries and sets them after it removed
///   entries.
pub mod hints {
    /// [`crate::maps::EMPTY`] bit: no IPv4 ban.
    pub const NO_BAN_V4: u32 = 1;
    /// [`crate::maps::EMPTY`] bit: no IPv6 ban.
    pub const NO_BAN_V6: u32 = 2;
    /// Words of [`crate::maps::ALLOW_NONE`].
    pub const ALLOW_NONE_WORDS: u32 = 2048;

    /// Word and bit of [`crate::maps::ALLOW_NONE`] for the IPv4 /16 whose first two bytes are
    /// `a`, `b`.
    #[inline(always)]
    pub const fn allow_v4(a: u8, b: u8) -> (u32, u64) {
        let n = ((a as u32) << 8) | b as u32;
        (n >> 6, 1 << (n & 63))
    }

    /// Word and bit for IPv6 addresses beginning with bytes `a`, `b`.
    #[inline(always)]
    pub const fn allow_v6(a: u8, b: u8) -> (u32, u64) {
        let (word, bit) = allow_v4(a, b);
        (word + ALLOW_NONE_WORDS / 2, bit)
    }
}

/// The IPv4 host table: the single-address bans of [`maps::HOST_V4`] again, in buckets of one
/// cache line ([`HostBucket4`]), so that looking an address up reads one line.
///
/// Address `a` (as a big-endian `u32`) is hashed by multiplication, `h = a * MULTIPLIER`
/// (a bijection on `u32`). The top `bits` of `h` pick its bucket; the other `32 - bits` (at most
/// 15, as `bits` is at least [`hosttab::MIN_BITS`]) with [`hosttab::USED`] set are its 2-byte
/// tag, which with the bucket names the address exactly ([`hosttab::place`]). A tag of 0 is an
/// empty slot. Two-byte tags fit [`hosttab::SLOTS`] (20) addresses in a line, so the table is
/// half the size that 4-byte keys would need for the same room: at capacity a bucket holds about
/// eight addresses, and the whole table (8 MB for 1M bans) stays closer to the CPU's caches.
///
/// The hash map stays the whole truth: a bucket whose [`hosttab::OVERFLOW`] flag is set may hold
/// fewer of its addresses than the hash map does, and a lookup that misses it asks the hash map.
///
/// Update protocol (one writer, the enforcer, through a shared mapping; the program reads):
/// - add: the hash map first; then, if the bucket has a free slot, the origin byte, then the
///   tag (a 2-byte store); else the bucket's `OVERFLOW` flag.
/// - remove: the tag set to 0 first, then the hash map entry.
/// - rewrite a bucket (on a rebuild): `OVERFLOW` set first, so that readers ask the hash map
///   meanwhile; slots written; then the flag as it should be.
///
/// A reader thus never misses a ban the hash map holds, and never finds one it does not.
/// A reader racing a slot's reuse may read the old origin byte with the new tag (on CPUs that
/// reorder stores): a drop attributed to the previous origin, never a wrong verdict.
pub mod hosttab {
    /// Slots per bucket.
    pub const SLOTS: usize = 20;
    /// `flags` bit: some of this bucket's addresses are only in the hash map.
    pub const OVERFLOW: u32 = 1;
    /// Set in every used slot's tag.
    pub const USED: u16 = 0x8000;
    /// Fibonacci hashing (odd, so the hash is a bijection).
    pub const MULTIPLIER: u32 = 0x9E37_79B1;
    /// The program's global holding the table's size as a power of two.
    pub const GLOBAL_BITS: &str = "IPS_HOSTTAB_BITS";
    /// Fewest buckets (log2): the hash's remaining bits then fit a tag's 15.
    pub const MIN_BITS: u32 = 17;
    /// Most buckets (log2).
    pub const MAX_BITS: u32 = 24;

    /// log2 of the buckets for `hosts` single-address bans: about eight addresses a bucket at
    /// capacity (20 slots), so that almost none overflows; at least [`MIN_BITS`].
    pub const fn bits_for(hosts: u32) -> u32 {
        let want = hosts / 8;
        let bits = if want < 2 {
            1
        } else {
            32 - (want - 1).leading_zeros()
        };
        if bits < MIN_BITS {
            MIN_BITS
        } else if bits > MAX_BITS {
            MAX_BITS
        } else {
            bits
        }
    }

    /// The bucket and the tag of address `addr` in a table of `1 << bits` buckets (`bits`
    /// taken into [`MIN_BITS`]..=[`MAX_BITS`]).
    #[inline(always)]
    pub const fn place(addr: u32, bits: u32) -> (u32, u16) {
        let bits = if bits < MIN_BITS {
            MIN_BITS
        } else if bits > MAX_BITS {
            MAX_BITS
        } else {
            bits
        };
        let h = addr.wrapping_mul(MULTIPLIER);
        let rest = 32 - bits;
        (h >> rest, (h & ((1 << rest) - 1)) as u16 | USED)
    }

    /// The bucket of address `addr`, see [`place`].
    #[inline(always)]
    pub const fn bucket(addr: u32, bits: u32) -> u32 {
        place(addr, bits).0
    }
}

/// One bucket of [`maps::HOSTTAB_V4`]: one cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostBucket4 {
    /// Tags of the addresses ([`hosttab::place`]), 0 for an empty slot.
    pub tags: [u16; hosttab::SLOTS],
    /// The origin of each slot's ban.
    pub origins: [u8; hosttab::SLOTS],
    /// [`hosttab::OVERFLOW`].
    pub flags: u32,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: 40 + 20 + 4 bytes, no padding, 64 in all.
unsafe impl aya::Pod for HostBucket4 {}

/// Address family index used by the per-origin counters.
pub mod family {
    /// IPv4, including IPv4-mapped IPv6 sources.
    pub const V4: u32 = 0;
    /// IPv6.
    pub const V6: u32 = 1;
}

/// Index into [`maps::ORIGIN_DROPS`] for an origin and a family.
#[inline(always)]
pub const fn origin_drop_index(origin: u32, family: u32) -> u32 {
    (origin % origin::MAX) * 2 + family
}

/// Indexes into [`maps::COUNTERS`]. One counter moves per packet; "seen" is the sum of a family's
/// passed and dropped, which saves a map update per packet.
pub mod counters {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed.
    pub const NON_IP: u32 = 0;
    /// Truncated or malformed headers: passed (fail open).
    pub const MALFORMED: u32 = 1;
    /// IPv4 not banned: passed.
    pub const V4_PASSED: u32 = 2;
    /// IPv4 source banned: dropped.
    pub const V4_DROPPED: u32 = 3;
    /// IPv4 source allowlisted: passed without looking at bans.
    pub const V4_ALLOWED: u32 = 4;
    /// IPv6 not banned: passed.
    pub const V6_PASSED: u32 = 5;
    /// IPv6 source banned: dropped.
    pub const V6_DROPPED: u32 = 6;
    /// IPv6 source allowlisted: passed.
    pub const V6_ALLOWED: u32 = 7;
    /// Number of counters.
    pub const COUNT: u32 = 8;
    /// Names in index order, for `ips status` and metrics.
    pub const NAMES: [&str; COUNT as usize] = [
        "non_ip",
        "malformed",
        "v4_passed",
        "v4_dropped",
        "v4_allowed",
        "v6_passed",
        "v6_dropped",
        "v6_allowed",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in maps::ALL {
            assert!(name.len() <= 15, "{name} is longer than 15 bytes");
        }
    }

    #[test]
    fn origin_drop_indexes_are_distinct_and_in_range() {
        let a = origin_drop_index(origin::MANUAL, family::V4);
        let b = origin_drop_index(origin::MANUAL, family::V6);
        let c = origin_drop_index(origin::DETECTION, family::V4);
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert!(origin_drop_index(origin::MAX - 1, family::V6) < origin::MAX * 2);
    }

    #[test]
    fn ban_has_no_padding() {
        assert_eq!(core::mem::size_of::<Ban>(), 4);
        assert_eq!(core::mem::size_of::<DropSample>(), 32);
        assert_eq!(core::mem::size_of::<SamplerState>(), 24);
        assert_eq!(core::mem::size_of::<HostBucket4>(), 64);
        assert_eq!(core::mem::size_of::<PartV4>(), 288);
    }

    #[test]
    fn host_table_sizes_and_buckets() {
        // Never fewer than MIN_BITS buckets, so that a tag holds the rest of the hash.
        assert_eq!(hosttab::bits_for(1), hosttab::MIN_BITS);
        assert_eq!(hosttab::bits_for(capacity::HOSTS), 17);
        assert_eq!(hosttab::bits_for(4 << 20), 19);
        assert_eq!(hosttab::bits_for(u32::MAX), hosttab::MAX_BITS);
        for a in [0u32, 1, 0xffff_ffff, 0x2d10_0002] {
            for bits in [hosttab::MIN_BITS, 18, hosttab::MAX_BITS] {
                let (b, tag) = hosttab::place(a, bits);
                assert!(b < 1 << bits);
                assert!(tag & hosttab::USED != 0);
                assert!(u32::from(tag & !hosttab::USED) < 1 << (32 - bits));
            }
        }
    }
}
