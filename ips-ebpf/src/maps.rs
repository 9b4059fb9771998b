//! The maps the XDP program reads. Pinned by name, so a restarted daemon (and `ips status`)
//! find the same maps under the pin directory and enforcement never depends on the daemon.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use ips_common::{Ban, Summary24, capacity, counters, origin};

/// Three bits per IPv4 /24, see [`ips_common::Summary24`].
#[map(name = "IPS_SUMMARY_V4")]
pub static IPS_SUMMARY_V4: Array<Summary24> = Array::pinned(
    capacity::SUMMARY_V4_WORDS,
    aya_ebpf::bindings::BPF_F_MMAPABLE,
);
/// Origin byte per IPv4 /24 covered by a ban of /24 or shorter, see
/// [`ips_common::maps::COVER_V4`].
#[map(name = "IPS_COVER_V4")]
pub static IPS_COVER_V4: Array<[u8; 8]> =
    Array::pinned(capacity::COVER_V4_WORDS, aya_ebpf::bindings::BPF_F_MMAPABLE);
/// Allowlisted IPv4 prefixes.
#[map(name = "IPS_ALLOW_V4")]
pub static IPS_ALLOW_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(capacity::ALLOW, 0);
/// Allowlisted IPv6 prefixes.
#[map(name = "IPS_ALLOW_V6")]
pub static IPS_ALLOW_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(capacity::ALLOW, 0);
/// Banned single IPv4 addresses.
#[map(name = "IPS_HOST_V4")]
pub static IPS_HOST_V4: HashMap<[u8; 4], Ban> = HashMap::pinned(capacity::HOSTS, 0);
/// Banned single IPv6 addresses.
#[map(name = "IPS_HOST_V6")]
pub static IPS_HOST_V6: HashMap<[u8; 16], Ban> = HashMap::pinned(capacity::HOSTS, 0);
/// Banned IPv4 prefixes.
#[map(name = "IPS_NET_V4")]
pub static IPS_NET_V4: LpmTrie<[u8; 4], Ban> = LpmTrie::pinned(capacity::NETS, 0);
/// Banned IPv6 prefixes.
#[map(name = "IPS_NET_V6")]
pub static IPS_NET_V6: LpmTrie<[u8; 16], Ban> = LpmTrie::pinned(capacity::NETS, 0);
/// Packet counters, see [`ips_common::counters`].
#[map(name = "IPS_COUNTERS")]
pub static IPS_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counters::COUNT, 0);
/// Drops per origin and family, see [`ips_common::origin_drop_index`].
#[map(name = "IPS_ORIGIN_DROP")]
pub static IPS_ORIGIN_DROP: PerCpuArray<u64> = PerCpuArray::pinned(origin::MAX * 2, 0);

/// Bytes of the packets each counter counts, see [`ips_common::counters`].
#[map(name = "IPS_BYTES")]
pub static IPS_BYTES: PerCpuArray<u64> = PerCpuArray::pinned(counters::COUNT, 0);
/// Bytes dropped per origin and family, see [`ips_common::origin_drop_index`].
#[map(name = "IPS_ORIGIN_BYTE")]
pub static IPS_ORIGIN_BYTES: PerCpuArray<u64> = PerCpuArray::pinned(origin::MAX * 2, 0);

/// Adds `n` to a counter of this CPU.
#[inline(always)]
pub fn add(map: &PerCpuArray<u64>, index: u32, n: u64) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU's program touches it while it runs.
        unsafe { *slot += n };
    }
}

/// Counts one packet of `len` bytes under counter `index`.
#[inline(always)]
pub fn count(index: u32, len: u64) {
    bump(&IPS_COUNTERS, index);
    add(&IPS_BYTES, index, len);
}

/// Adds one to a counter of this CPU.
#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU's program touches it while it runs.
        unsafe { *slot += 1 };
    }
}
