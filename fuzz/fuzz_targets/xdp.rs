//! Any frame through the real XDP program (`BPF_PROG_RUN`, no interface): its verdict must be
//! the one `ips::enforcer::model` gives from the program's contract. Needs root and bpffs; the
//! program and its maps are loaded once, pinned under `/sys/fs/bpf/ips-fuzz-xdp` (which
//! `cargo xtask fuzz` removes afterwards).
#![no_main]
use std::{
    path::Path,
    sync::{LazyLock, Mutex},
};

use aya::programs::{TestRun, TestRunOptions};
use ips::{
    enforcer::{Diff, KernelMaps, loader, model},
    prefix::Prefix,
};
use libfuzzer_sys::fuzz_target;

/// Pin directory of the fuzzed program.
const DIR: &str = "/sys/fs/bpf/ips-fuzz-xdp";

/// Bans the inputs can hit: hosts and prefixes of both families, and an IPv4 one that an
/// IPv4-mapped IPv6 source reaches.
const BANS: [&str; 6] = [
    "203.0.113.7",
    "198.51.100.0/24",
    "10.0.0.0/8",
    "2001:db8::7",
    "2001:db8:1::/48",
    "::/1",
];

struct Harness {
    ebpf: aya::Ebpf,
    _maps: KernelMaps,
    bans: Vec<Prefix>,
}

static HARNESS: LazyLock<Mutex<Harness>> = LazyLock::new(|| {
    let dir = Path::new(DIR);
    let _ = loader::remove_pins(dir);
    let ebpf = loader::load(
        dir,
        loader::Capacity {
            hosts: 1024,
            nets: 1024,
        },
    )
    .expect("load the XDP program (root and bpffs needed)");
    let mut maps = KernelMaps::open(dir).expect("open the maps");
    let bans: Vec<Prefix> = BANS.iter().map(|b| b.parse().expect("a ban")).collect();
    let diff = Diff {
        upsert: bans.iter().map(|b| (*b, 9)).collect(),
        delete: Vec::new(),
    };
    maps.apply(&diff).expect("ban");
    Mutex::new(Harness {
        ebpf,
        _maps: maps,
        bans,
    })
});

fuzz_target!(|frame: &[u8]| {
    // The kernel refuses test input shorter than an Ethernet header, and longer than a page
    // less its headroom.
    if frame.len() < 14 || frame.len() > 3000 {
        return;
    }
    let mut h = HARNESS.lock().expect("harness");
    let bans = h.bans.clone();
    let want = model::verdict(frame, |a| bans.iter().any(|b| b.contains(&Prefix::host(a))));
    let prog = loader::xdp_program(&mut h.ebpf).expect("the program");
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    let got = prog.test_run(opts).expect("BPF_PROG_RUN").return_value;
    assert_eq!(got, want.action, "{want:?} for {frame:02x?}");
});
