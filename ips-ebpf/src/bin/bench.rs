//! Bench-only XDP programs for `cargo xtask bench`. Each run looks up `BENCH_BATCH` source
//! addresses taken in turn from a ring of random keys, so the cost measured is that of lookups
//! spread over a large set, not of one hot packet.
//!
//! `BENCH_STATE` slot 0 is the cursor, 1 the hit count, 2 the ring mask. It is one array, not
//! per CPU: `BPF_PROG_RUN` may move to another CPU between repeats, and a per-CPU cursor would
//! then skip or revisit part of the ring, so the two programs would not see the same sources.
//!
//! `ips_bench_hybrid` calls the very lookup the real program uses (hash for single addresses,
//! LPM trie for prefixes); `ips_bench_lpm` is the baseline with every ban in one LPM trie.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::{Array, LpmTrie, lpm_trie::Key},
        programs::XdpContext,
    };
    use ips_common::{Ban, capacity};
    use ips_ebpf::lookup::{self, Verdict};

    #[map(name = "BENCH_LPM_V4")]
    static BENCH_LPM_V4: LpmTrie<[u8; 4], Ban> =
        LpmTrie::with_max_entries(capacity::HOSTS + capacity::NETS, 0);
    #[map(name = "BENCH_KEYS_V4")]
    static BENCH_KEYS_V4: Array<[u8; 4]> = Array::with_max_entries(capacity::BENCH_KEYS, 0);
    #[map(name = "BENCH_STATE")]
    static BENCH_STATE: Array<u64> = Array::with_max_entries(3, 0);

    #[inline(always)]
    fn run(check: fn([u8; 4]) -> bool) -> u32 {
        let Some(cursor) = BENCH_STATE.get_ptr_mut(0) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: a valid slot; the bench runs one program at a time.
        let start = unsafe { *cursor } as u32;
        // Slot 2 holds the ring mask, so one ring can be walked as 64k or 1M sources.
        let mask = BENCH_STATE
            .get(2)
            .map_or(capacity::BENCH_KEYS - 1, |m| *m as u32);
        let mut hits = 0u64;
        for i in 0..capacity::BENCH_BATCH {
            let index = (start + i) & mask & (capacity::BENCH_KEYS - 1);
            if let Some(addr) = BENCH_KEYS_V4.get(index)
                && check(*addr)
            {
                hits += 1;
            }
        }
        // SAFETY: valid slots; the bench runs one program at a time.
        unsafe {
            *cursor = u64::from(start + capacity::BENCH_BATCH);
            if let Some(total) = BENCH_STATE.get_ptr_mut(1) {
                *total += hits;
            }
        }
        xdp_action::XDP_PASS
    }

    #[inline(always)]
    fn hybrid(addr: [u8; 4]) -> bool {
        matches!(lookup::v4(addr), Verdict::Banned(..))
    }

    #[inline(always)]
    fn lpm_only(addr: [u8; 4]) -> bool {
        // As the real program: the allowlist only for a source a ban matched.
        let key = Key::new(32, addr);
        BENCH_LPM_V4.get(&key).is_some() && ips_ebpf::maps::IPS_ALLOW_V4.get(&key).is_none()
    }

    #[xdp]
    pub fn ips_bench_hybrid(_ctx: XdpContext) -> u32 {
        run(hybrid)
    }

    #[inline(always)]
    fn hash_map(addr: [u8; 4]) -> bool {
        matches!(lookup::v4_without_host_table(addr), Verdict::Banned(..))
    }

    /// The same lookup with the kernel's hash map in place of the host table.
    #[xdp]
    pub fn ips_bench_hash(_ctx: XdpContext) -> u32 {
        run(hash_map)
    }

    #[xdp]
    pub fn ips_bench_lpm(_ctx: XdpContext) -> u32 {
        run(lpm_only)
    }

    /// The walk of the ring alone (each address read, no lookup): what a lookup costs on top.
    #[inline(always)]
    fn nothing(addr: [u8; 4]) -> bool {
        addr[0] == 0
    }

    /// The empty program: what `BPF_PROG_RUN` costs per packet with no work at all.
    #[xdp]
    pub fn ips_bench_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[xdp]
    pub fn ips_bench_empty(_ctx: XdpContext) -> u32 {
        run(nothing)
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
