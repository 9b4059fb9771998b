//! The maps the XDP program reads. Pinned by name, so a restarted daemon (and `ips status`)
//! find the same maps under the pin directory and enforcement never depends on the daemon.
use aya_ebpf::{
    Global,
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use ips_common::{
    Ban, DropSample, HostBucket4, PartV4, SamplerState, Summary24, capacity, counters, features,
    hints, hosttab, origin, sampling,
};

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
/// The same IPv4 addresses in buckets of one cache line, see [`ips_common::hosttab`].
#[map(name = "IPS_HOSTTAB4")]
pub static IPS_HOSTTAB_V4: Array<HostBucket4> = Array::pinned(
    1 << hosttab::bits_for(capacity::HOSTS),
    aya_ebpf::bindings::BPF_F_MMAPABLE,
);
/// The /25 to /31 bans of each IPv4 /24 they touch, see [`ips_common::PartV4`].
#[map(name = "IPS_PART_V4")]
pub static IPS_PART_V4: HashMap<u32, PartV4> =
    HashMap::pinned(capacity::PARTS_V4, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
/// Which families hold no ban, see [`ips_common::hints`].
#[map(name = "IPS_EMPTY")]
pub static IPS_EMPTY: Array<u32> = Array::pinned(1, 0);
/// The /16s no allowlisted prefix touches, see [`ips_common::hints`].
#[map(name = "IPS_ALLOW_NONE")]
pub static IPS_ALLOW_NONE: Array<u64> = Array::pinned(hints::ALLOW_NONE_WORDS, 0);

/// True when the enforcer said the family of `bit` ([`hints::NO_BAN_V4`] or
/// [`hints::NO_BAN_V6`]) has no ban.
#[inline(always)]
pub fn no_ban(bit: u32) -> bool {
    IPS_EMPTY.get(0).is_some_and(|v| *v & bit != 0)
}

/// True when the enforcer said no allowlisted prefix touches word `word`, bit `bit` of
/// [`IPS_ALLOW_NONE`].
#[inline(always)]
pub fn allow_none(word: u32, bit: u64) -> bool {
    IPS_ALLOW_NONE.get(word).is_some_and(|v| *v & bit != 0)
}

/// log2 of the host table's buckets (the loader sets it with the table's size).
#[unsafe(no_mangle)]
static IPS_HOSTTAB_BITS: Global<u32> = Global::new(hosttab::bits_for(capacity::HOSTS));

/// log2 of the host table's buckets.
#[inline(always)]
pub fn hosttab_bits() -> u32 {
    IPS_HOSTTAB_BITS.load()
}
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

/// A rate-limited sample of dropped packets, see [`ips_common::sampling`].
#[map(name = "IPS_DROP_SAMPLE")]
pub static IPS_DROP_SAMPLES: RingBuf = RingBuf::pinned(sampling::RING_BYTES, 0);
/// Each CPU's sampling window.
#[map(name = "IPS_SAMPLER")]
pub static IPS_SAMPLER: PerCpuArray<SamplerState> = PerCpuArray::pinned(1, 0);

/// What the program does besides judging, see [`ips_common::features`]. Read-only data: the
/// loader sets it and the verifier prunes what is off.
#[unsafe(no_mangle)]
static IPS_FEATURES: Global<u32> = Global::new(features::ALL);

/// True when the loader turned `feature` on.
#[inline(always)]
pub fn enabled(feature: u32) -> bool {
    IPS_FEATURES.load() & feature != 0
}

/// Offers one dropped packet to the sampler: it is sent to [`IPS_DROP_SAMPLES`] with the count
/// of drops since this CPU's previous sample, unless this CPU used its budget for the window.
///
/// The clock costs more than the rest of the sampler (~13 ns a call in `cargo xtask bench`), so
/// it is read once per window, and, once the budget is spent, only for the first drop after a
/// sample and then every 16th: a flood pays for it once in 16 drops, and a sparse source after
/// a burst is sampled again as soon as the window has passed.
#[inline(always)]
pub fn sample_drop(addr: &[u8; 16], family: u32, origin: u32, kind: u8, len: u64) {
    let Some(state) = IPS_SAMPLER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, only this CPU's program touches it while it runs.
    let state = unsafe { &mut *state };
    state.packets = state.packets.saturating_add(1);
    state.bytes += len;
    if state.taken >= sampling::PER_WINDOW {
        if state.packets != 1 && state.packets % 16 != 0 {
            return;
        }
        // SAFETY: no preconditions.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        if now.wrapping_sub(state.window_start) < sampling::WINDOW_NS {
            return;
        }
        state.window_start = now;
        state.taken = 0;
    } else if state.taken == 0 {
        // SAFETY: no preconditions.
        state.window_start = unsafe { bpf_ktime_get_coarse_ns() };
    }
    if let Some(mut entry) = IPS_DROP_SAMPLES.reserve::<DropSample>(0) {
        entry.write(DropSample {
            addr: *addr,
            bytes: state.bytes,
            packets: state.packets,
            origin: origin as u16,
            family: family as u8,
            kind,
        });
        // The enforcer polls the ring; no wake-up needed.
        entry.submit(aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64);
        state.packets = 0;
        state.bytes = 0;
    }
    // A full ring (no reader) spends the budget too, so that it is not retried every packet.
    state.taken += 1;
}

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
    if enabled(features::BYTES) {
        add(&IPS_BYTES, index, len);
    }
}

/// Adds one to a counter of this CPU.
#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU's program touches it while it runs.
        unsafe { *slot += 1 };
    }
}
