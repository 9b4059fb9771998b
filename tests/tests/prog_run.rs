//! The verdict of the real XDP program on crafted and malformed input, through the kernel's
//! `BPF_PROG_RUN` (no interface needed), with the counters checked after each case.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]
use std::path::PathBuf;

use aya::programs::{TestRun, TestRunOptions};
use ips::enforcer::{
    Diff, KernelMaps, loader,
    model::{Verdict, verdict},
};
use ips_tests::packet::{Frame, arp};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

struct Harness {
    ebpf: aya::Ebpf,
    maps: KernelMaps,
    dir: PathBuf,
}

impl Harness {
    fn new(tag: &str) -> Self {
        ips_tests::ensure_bpffs();
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/ips-test-run-{tag}-{}",
            std::process::id()
        ));
        let _ = loader::remove_pins(&dir);
        let ebpf = loader::load(
            &dir,
            loader::Capacity {
                hosts: 1024,
                nets: 1024,
            },
        )
        .unwrap();
        let mut maps = KernelMaps::open(&dir).unwrap();
        let mut diff = Diff::default();
        for v in [
            "203.0.113.7",
            "198.51.100.0/24",
            "2001:db8::7",
            "2001:db8:1::/48",
        ] {
            diff.upsert.push((v.parse().unwrap(), 9));
        }
        maps.apply(&diff).unwrap();
        Self { ebpf, maps, dir }
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        let prog = loader::xdp_program(&mut self.ebpf).unwrap();
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        prog.test_run(opts).unwrap().return_value
    }

    fn counter(&self, name: &str) -> u64 {
        self.maps.counters().unwrap().get(name)
    }

    /// Runs `frame`, checks the verdict and that `counter` moved by exactly one.
    fn expect(&mut self, what: &str, frame: &[u8], verdict: u32, counter: &str) {
        let before = self.counter(counter);
        assert_eq!(self.run(frame), verdict, "{what}: wrong verdict");
        assert_eq!(
            self.counter(counter),
            before + 1,
            "{what}: {counter} did not move"
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = loader::remove_pins(&self.dir);
    }
}

#[test]
fn well_formed_packets() {
    let mut h = Harness::new("ok");
    h.expect(
        "banned v4 host",
        &Frame::udp("203.0.113.7", 1).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "banned v4 prefix",
        &Frame::udp("198.51.100.9", 1).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "clean v4",
        &Frame::udp("192.0.2.1", 1).build(),
        XDP_PASS,
        "v4_passed",
    );
    h.expect(
        "banned v6 host",
        &Frame::udp("2001:db8::7", 1).build(),
        XDP_DROP,
        "v6_dropped",
    );
    h.expect(
        "banned v6 /48",
        &Frame::udp("2001:db8:1:ff::1", 1).build(),
        XDP_DROP,
        "v6_dropped",
    );
    h.expect(
        "clean v6",
        &Frame::udp("2001:db8:2::1", 1).build(),
        XDP_PASS,
        "v6_passed",
    );
    let drops = h.maps.counters().unwrap().origin_drops;
    assert_eq!(drops, vec![(9, 2, 2)], "drops attributed to origin 9");
}

#[test]
fn ipv4_options_fragments_and_short_headers() {
    let mut h = Harness::new("v4");
    let mut with_options = Frame::udp("203.0.113.7", 1);
    with_options.ipv4_options = 3;
    h.expect(
        "IPv4 with options",
        &with_options.build(),
        XDP_DROP,
        "v4_dropped",
    );

    let mut first = Frame::udp("203.0.113.7", 2);
    first.fragment = Some((0, true));
    h.expect("first fragment", &first.build(), XDP_DROP, "v4_dropped");
    let mut later = Frame::udp("198.51.100.1", 3);
    later.fragment = Some((185, false));
    h.expect("non-first fragment", &later.build(), XDP_DROP, "v4_dropped");
    let mut clean = Frame::udp("192.0.2.1", 4);
    clean.fragment = Some((185, true));
    h.expect("clean fragment", &clean.build(), XDP_PASS, "v4_passed");

    let mut short = Frame::udp("203.0.113.7", 5);
    short.ihl_override = Some(4);
    h.expect("IHL 4 (< 20 bytes)", &short.build(), XDP_PASS, "malformed");

    let full = Frame::udp("203.0.113.7", 6).build();
    h.expect(
        "IPv4 cut at 12 bytes",
        &full[..14 + 12],
        XDP_PASS,
        "malformed",
    );

    let mut wrong_version = Frame::udp("203.0.113.7", 7).build();
    wrong_version[14] = 0x65;
    h.expect(
        "IPv4 ethertype, version 6",
        &wrong_version,
        XDP_PASS,
        "malformed",
    );
}

#[test]
fn ipv6_extension_headers_and_truncation() {
    let mut h = Harness::new("v6");
    let mut ext = Frame::udp("2001:db8::7", 1);
    ext.ipv6_ext = true;
    h.expect(
        "IPv6 with extension headers",
        &ext.build(),
        XDP_DROP,
        "v6_dropped",
    );
    let full = Frame::udp("2001:db8::7", 2).build();
    h.expect(
        "IPv6 cut at 30 bytes",
        &full[..14 + 30],
        XDP_PASS,
        "malformed",
    );
    h.expect(
        "mapped source",
        &Frame::udp("::ffff:203.0.113.7", 3).build(),
        XDP_DROP,
        "v4_dropped",
    );
}

#[test]
fn non_ip_and_broken_ethernet() {
    let mut h = Harness::new("l2");
    h.expect("ARP", &arp(), XDP_PASS, "non_ip");
    let three_tags = Frame::udp("203.0.113.7", 1)
        .vlan(0x88A8, 1)
        .vlan(0x8100, 2)
        .vlan(0x8100, 3)
        .build();
    h.expect("three VLAN tags", &three_tags, XDP_PASS, "non_ip");
    // The kernel refuses frames under 14 bytes for BPF_PROG_RUN (and a NIC would not deliver
    // them); the shortest broken Ethernet is a header announcing a VLAN tag that is not there.
    let mut no_tag = Frame::udp("203.0.113.7", 2).build();
    no_tag.truncate(14);
    no_tag[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    h.expect("VLAN ethertype, no tag", &no_tag, XDP_PASS, "malformed");
    let mut short_tag = Frame::udp("203.0.113.7", 3).vlan(0x8100, 5).build();
    short_tag.truncate(16);
    h.expect("half a VLAN tag", &short_tag, XDP_PASS, "malformed");
    let ether_only = &Frame::udp("203.0.113.7", 4).build()[..14];
    h.expect("Ethernet header only", ether_only, XDP_PASS, "malformed");
}

#[test]
fn allowlist_wins_over_bans() {
    let mut h = Harness::new("allow");
    h.maps
        .set_allowlist(&[
            "198.51.100.9".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ])
        .unwrap();
    h.expect(
        "allowlisted in banned /24",
        &Frame::udp("198.51.100.9", 1).build(),
        XDP_PASS,
        "v4_allowed",
    );
    h.expect(
        "allowlisted banned v6 host",
        &Frame::udp("2001:db8::7", 2).build(),
        XDP_PASS,
        "v6_allowed",
    );
    h.expect(
        "neighbour still banned",
        &Frame::udp("198.51.100.10", 3).build(),
        XDP_DROP,
        "v4_dropped",
    );
}

#[test]
fn summary_bits_never_hide_a_ban_and_stale_bits_never_drop() {
    let mut h = Harness::new("summary");
    // A ban added after load sets its /24 bit before the entry lands.
    let mut add = Diff::default();
    add.upsert.push(("192.0.2.77".parse().unwrap(), 3));
    add.upsert.push(("10.20.0.0/16".parse().unwrap(), 3));
    h.maps.apply(&add).unwrap();
    h.expect(
        "new host ban",
        &Frame::udp("192.0.2.77", 1).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "inside new /16",
        &Frame::udp("10.20.255.1", 2).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "same /24, clean",
        &Frame::udp("192.0.2.78", 3).build(),
        XDP_PASS,
        "v4_passed",
    );
    // Deleting leaves the bits set until a rebuild; the packet passes all the same.
    let mut del = Diff::default();
    del.delete.push("192.0.2.77".parse().unwrap());
    del.delete.push("10.20.0.0/16".parse().unwrap());
    h.maps.apply(&del).unwrap();
    h.expect(
        "deleted host",
        &Frame::udp("192.0.2.77", 4).build(),
        XDP_PASS,
        "v4_passed",
    );
    h.maps.rebuild_summary().unwrap();
    h.expect(
        "after rebuild",
        &Frame::udp("10.20.0.1", 5).build(),
        XDP_PASS,
        "v4_passed",
    );
    h.expect(
        "old bans intact",
        &Frame::udp("203.0.113.7", 6).build(),
        XDP_DROP,
        "v4_dropped",
    );
}

#[test]
fn nested_prefixes_drop_with_the_most_specific_origin() {
    let mut h = Harness::new("nested");
    let mut add = Diff::default();
    add.upsert.push(("10.0.0.0/8".parse().unwrap(), 20));
    add.upsert.push(("10.1.2.0/24".parse().unwrap(), 21));
    add.upsert.push(("10.1.3.128/25".parse().unwrap(), 22));
    add.upsert.push(("10.1.3.1".parse().unwrap(), 23));
    h.maps.apply(&add).unwrap();
    for (src, origin) in [
        ("10.1.2.9", 21),
        ("10.9.9.9", 20),
        ("10.1.3.200", 22),
        ("10.1.3.1", 23),
    ] {
        let before = h.maps.counters().unwrap().origin_drops;
        h.expect(src, &Frame::udp(src, 1).build(), XDP_DROP, "v4_dropped");
        let after = h.maps.counters().unwrap().origin_drops;
        let count =
            |v: &[(u32, u64, u64)]| v.iter().find(|(o, _, _)| *o == origin).map_or(0, |e| e.1);
        assert_eq!(
            count(&after),
            count(&before) + 1,
            "{src} not attributed to origin {origin}"
        );
    }
    // Lifting the /8 keeps the /24 and the /25 and frees the rest.
    let mut del = Diff::default();
    del.delete.push("10.0.0.0/8".parse().unwrap());
    h.maps.apply(&del).unwrap();
    h.expect(
        "freed",
        &Frame::udp("10.9.9.9", 2).build(),
        XDP_PASS,
        "v4_passed",
    );
    h.expect(
        "/24 kept",
        &Frame::udp("10.1.2.9", 3).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "/25 kept",
        &Frame::udp("10.1.3.129", 4).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "beside the /25",
        &Frame::udp("10.1.3.2", 5).build(),
        XDP_PASS,
        "v4_passed",
    );
}

/// Random frames, built from the parts the parser reads (Ethernet types, up to three tags,
/// IPv4 and IPv6 headers with good and bad version and length fields, sources in, next to and
/// far from the bans, IPv4-mapped ones) and cut at random lengths, through the real program:
/// each verdict must be the model's, and the counters must add up to the model's tally.
#[test]
fn random_frames_get_the_models_verdict() {
    let mut h = Harness::new("model");
    let bans: Vec<ips::prefix::Prefix> = [
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::7",
        "2001:db8:1::/48",
    ]
    .iter()
    .map(|v| v.parse().unwrap())
    .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let v4_sources: [[u8; 4]; 6] = [
        [203, 0, 113, 7],
        [203, 0, 113, 8],
        [198, 51, 100, 200],
        [198, 51, 101, 1],
        [8, 8, 8, 8],
        [0, 0, 0, 0],
    ];
    let v6_sources: [[u16; 8]; 5] = [
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 7],
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 8],
        [0x2001, 0xdb8, 1, 0xffff, 0, 0, 0, 1],
        [0x2001, 0xdb8, 2, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x7107], // ::ffff:203.0.113.7
    ];
    let counters = [
        "non_ip",
        "malformed",
        "v4_passed",
        "v4_dropped",
        "v6_passed",
        "v6_dropped",
    ];
    let before: Vec<u64> = counters.iter().map(|c| h.counter(c)).collect();
    let mut tally = std::collections::HashMap::<&str, u64>::new();
    let runs = 100_000;
    for i in 0..runs {
        let mut f = vec![0u8; 12];
        f.iter_mut().for_each(|b| *b = next() as u8);
        let types = [0x0800u16, 0x86DD, 0x8100, 0x88A8, 0x0806, next() as u16];
        let tags = next() % 4;
        for _ in 0..tags {
            let tpid = [0x8100u16, 0x88A8][(next() % 2) as usize];
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(next() as u16).to_be_bytes());
        }
        let proto = types[(next() % types.len() as u64) as usize];
        f.extend_from_slice(&proto.to_be_bytes());
        match next() % 3 {
            0 => {
                let version = if next() % 8 == 0 {
                    (next() % 16) as u8
                } else {
                    4
                };
                let ihl = if next() % 8 == 0 {
                    (next() % 16) as u8
                } else {
                    5
                };
                let mut ip = [0u8; 20];
                ip[0] = version << 4 | ihl;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&v4_sources[(next() % 6) as usize]);
                ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
                f.extend_from_slice(&ip);
            }
            1 => {
                let version = if next() % 8 == 0 {
                    (next() % 16) as u8
                } else {
                    6
                };
                let mut ip = [0u8; 40];
                ip[0] = version << 4;
                ip[6] = 17;
                let src = v6_sources[(next() % 5) as usize];
                for (k, w) in src.iter().enumerate() {
                    ip[8 + 2 * k..10 + 2 * k].copy_from_slice(&w.to_be_bytes());
                }
                f.extend_from_slice(&ip);
            }
            _ => f.extend((0..(next() % 64)).map(|_| next() as u8)),
        }
        f.extend_from_slice(&[0u8; 8]);
        // Most frames whole, some cut anywhere (never below the Ethernet header: the kernel
        // refuses shorter test input).
        if next() % 4 == 0 {
            let len = 14 + (next() as usize) % (f.len() - 13);
            f.truncate(len);
        }
        let host = |a| {
            bans.iter()
                .any(|b| b.contains(&ips::prefix::Prefix::host(a)))
        };
        let Verdict {
            action: want,
            counter,
        } = verdict(&f, host);
        assert_eq!(h.run(&f), want, "frame {i}: {f:02x?} ({counter})");
        *tally.entry(counter).or_default() += 1;
    }
    for (c, b) in counters.iter().zip(before) {
        assert_eq!(
            h.counter(c) - b,
            tally.get(c).copied().unwrap_or(0),
            "counter {c}"
        );
    }
    // Every class of input was exercised.
    for c in counters {
        assert!(tally.get(c).copied().unwrap_or(0) > 100, "{c}: {tally:?}");
    }
}

/// The host table: addresses that share one bucket past its 12 slots are all dropped (the
/// overflow asks the hash map), a neighbour in the same bucket that is not banned passes, and
/// after deletes and a rebuild the bucket answers alone again.
#[test]
fn a_full_host_bucket_overflows_to_the_hash_map() {
    let mut h = Harness::new("bucket");
    let bits = ips_common::hosttab::bits_for(1024);
    let first = u32::from(std::net::Ipv4Addr::new(45, 16, 0, 1));
    let bucket = ips_common::hosttab::bucket(first, bits);
    let same: Vec<std::net::Ipv4Addr> = (first..)
        .filter(|a| ips_common::hosttab::bucket(*a, bits) == bucket)
        .take(ips_common::hosttab::SLOTS + 4)
        .map(std::net::Ipv4Addr::from)
        .collect();
    let (banned, free) = same.split_at(ips_common::hosttab::SLOTS + 3);
    let diff = Diff {
        upsert: banned
            .iter()
            .map(|a| (a.to_string().parse().unwrap(), 7))
            .collect(),
        ..Diff::default()
    };
    h.maps.apply(&diff).unwrap();
    for (i, a) in banned.iter().enumerate() {
        h.expect(
            &format!("bucket mate {i}"),
            &Frame::udp(&a.to_string(), 1).build(),
            XDP_DROP,
            "v4_dropped",
        );
    }
    h.expect(
        "same bucket, not banned",
        &Frame::udp(&free[0].to_string(), 2).build(),
        XDP_PASS,
        "v4_passed",
    );
    // Three leave; a rebuild fits the rest in the bucket; all still dropped, the three pass.
    let diff = Diff {
        delete: banned[..3]
            .iter()
            .map(|a| a.to_string().parse().unwrap())
            .collect(),
        ..Diff::default()
    };
    h.maps.apply(&diff).unwrap();
    h.maps.rebuild_summary().unwrap();
    for a in &banned[3..] {
        h.expect(
            "kept",
            &Frame::udp(&a.to_string(), 3).build(),
            XDP_DROP,
            "v4_dropped",
        );
    }
    for a in &banned[..3] {
        h.expect(
            "deleted",
            &Frame::udp(&a.to_string(), 4).build(),
            XDP_PASS,
            "v4_passed",
        );
    }
}

/// The skip hints (`ips_common::hints`) as the enforcer writes them, and the program reading
/// them: a family with no ban is skipped and one with a ban never is; the allowlist trie is
/// asked exactly where an allowlisted prefix lies.
#[test]
fn skip_hints_follow_the_maps_and_never_hide_a_ban() {
    use std::os::fd::AsFd;

    use ips::enforcer::sys;
    use ips_common::{hints, maps as names};

    let mut h = Harness::new("hints");
    let map = |name: &str| aya::maps::MapData::from_pin(h.dir.join(name)).unwrap();
    let (empty, allow_none) = (map(names::EMPTY), map(names::ALLOW_NONE));
    let read = |m: &aya::maps::MapData, i: u32, out: &mut [u8]| {
        sys::lookup(m.fd().as_fd(), &i.to_ne_bytes(), out).unwrap();
    };
    let no_ban = || {
        let mut v = [0u8; 4];
        read(&empty, 0, &mut v);
        u32::from_ne_bytes(v)
    };
    let allow_word = |a: u8, b: u8| {
        let (word, bit) = hints::allow_v4(a, b);
        let mut v = [0u8; 8];
        read(&allow_none, word, &mut v);
        (word, bit, u64::from_ne_bytes(v))
    };
    assert_eq!(no_ban(), 0, "both families hold bans");

    // Every IPv4 ban goes: IPv4 is skipped, IPv6 still looked up.
    let v4: Vec<ips::prefix::Prefix> = ["203.0.113.7", "198.51.100.0/24"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    h.maps
        .apply(&Diff {
            delete: v4.clone(),
            ..Diff::default()
        })
        .unwrap();
    assert_eq!(no_ban(), hints::NO_BAN_V4);
    h.expect(
        "no IPv4 ban",
        &Frame::udp("203.0.113.7", 1).build(),
        XDP_PASS,
        "v4_passed",
    );
    h.expect(
        "IPv6 still banned",
        &Frame::udp("2001:db8::7", 2).build(),
        XDP_DROP,
        "v6_dropped",
    );
    // The first IPv4 ban clears the hint before it lands.
    h.maps
        .apply(&Diff {
            upsert: vec![(v4[0], 9)],
            ..Diff::default()
        })
        .unwrap();
    assert_eq!(no_ban(), 0);
    h.expect(
        "banned again",
        &Frame::udp("203.0.113.7", 3).build(),
        XDP_DROP,
        "v4_dropped",
    );
    // A new hint map (all zeros) skips nothing.
    sys::update(empty.fd().as_fd(), &0u32.to_ne_bytes(), &0u32.to_ne_bytes()).unwrap();
    h.expect(
        "zero hint",
        &Frame::udp("203.0.113.7", 4).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.maps.sync_hints().unwrap();
    assert_eq!(no_ban(), 0);

    // The allowlist: only the /16 of its entry is asked.
    h.maps
        .set_allowlist(&["203.0.113.7".parse().unwrap()])
        .unwrap();
    let (_, bit, word) = allow_word(203, 0);
    assert_eq!(word & bit, 0, "203.0/16 holds an allowlisted address");
    let (_, bit, word) = allow_word(198, 51);
    assert_ne!(word & bit, 0, "nothing allowlisted in 198.51/16");
    h.expect(
        "allowlisted",
        &Frame::udp("203.0.113.7", 5).build(),
        XDP_PASS,
        "v4_allowed",
    );
    // The program reads the hint: one that wrongly says "nothing allowlisted here" would drop
    // the address (the enforcer never writes that; set here only to show the hint is read).
    let (index, _, _) = allow_word(203, 0);
    sys::update(
        allow_none.fd().as_fd(),
        &index.to_ne_bytes(),
        &u64::MAX.to_ne_bytes(),
    )
    .unwrap();
    assert_eq!(
        h.run(&Frame::udp("203.0.113.7", 6).build()),
        XDP_DROP,
        "the hint is what the program reads"
    );
    h.maps
        .set_allowlist(&["203.0.113.7".parse().unwrap()])
        .unwrap();
    h.expect(
        "restored",
        &Frame::udp("203.0.113.7", 7).build(),
        XDP_PASS,
        "v4_allowed",
    );
    // Removed from the allowlist: dropped again, and its /16 skipped.
    h.maps.set_allowlist(&[]).unwrap();
    let (_, bit, word) = allow_word(203, 0);
    assert_ne!(word & bit, 0);
    h.expect(
        "no longer allowlisted",
        &Frame::udp("203.0.113.7", 8).build(),
        XDP_DROP,
        "v4_dropped",
    );
}

/// The /25-/31 records (`ips_common::PartV4`): each /24 that such bans touch gets one, written
/// with the bans, shrunk and dropped with them; the program reads it instead of the trie, asks
/// the trie when a /24 has none, and a rebuild rewrites a stale one.
#[test]
fn part_records_follow_the_trie_and_the_trie_answers_without_one() {
    use std::os::fd::AsFd;

    use ips::enforcer::sys;
    use ips_common::maps as names;

    let mut h = Harness::new("parts");
    let records = aya::maps::MapData::from_pin(h.dir.join(names::PART_V4)).unwrap();
    let n = u32::from(std::net::Ipv4Addr::new(10, 1, 3, 0)) >> 8;
    let record = || {
        let mut v = [0u8; 288];
        sys::lookup(records.fd().as_fd(), &n.to_ne_bytes(), &mut v)
            .unwrap()
            .then_some(v)
    };
    let mut add = Diff::default();
    add.upsert.push(("10.1.3.128/25".parse().unwrap(), 22));
    add.upsert.push(("10.1.3.240/29".parse().unwrap(), 24));
    h.maps.apply(&add).unwrap();
    let rec = record().expect("a record for 10.1.3.0/24");
    assert_eq!(rec[32 + 200], 22, "origin of .200: the /25");
    assert_eq!(rec[32 + 241], 24, "origin of .241: the /29");
    for (src, verdict, counter) in [
        ("10.1.3.200", XDP_DROP, "v4_dropped"),
        ("10.1.3.241", XDP_DROP, "v4_dropped"),
        ("10.1.3.127", XDP_PASS, "v4_passed"),
    ] {
        h.expect(src, &Frame::udp(src, 1).build(), verdict, counter);
    }
    // The record is what the program reads: one with no bit set lets the /25 through.
    let empty = ips::enforcer::parts::bytes(&ips_common::PartV4::default());
    sys::update(records.fd().as_fd(), &n.to_ne_bytes(), &empty).unwrap();
    assert_eq!(h.run(&Frame::udp("10.1.3.200", 2).build()), XDP_PASS);
    // A rebuild writes it again from the trie.
    h.maps.rebuild_summary().unwrap();
    h.expect(
        "rewritten",
        &Frame::udp("10.1.3.200", 3).build(),
        XDP_DROP,
        "v4_dropped",
    );
    // No record (a full record map): the trie answers.
    sys::delete(records.fd().as_fd(), &n.to_ne_bytes()).unwrap();
    h.expect(
        "no record",
        &Frame::udp("10.1.3.200", 4).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.maps.rebuild_summary().unwrap();
    // The /25 lifted: the record keeps the /29 only; the /29 lifted: no record.
    h.maps
        .apply(&Diff {
            delete: vec!["10.1.3.128/25".parse().unwrap()],
            ..Diff::default()
        })
        .unwrap();
    let rec = record().expect("the /29 is left");
    assert_eq!(rec[0] & 1, 0);
    h.expect(
        "/25 lifted",
        &Frame::udp("10.1.3.200", 5).build(),
        XDP_PASS,
        "v4_passed",
    );
    h.expect(
        "/29 kept",
        &Frame::udp("10.1.3.241", 6).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.maps
        .apply(&Diff {
            delete: vec!["10.1.3.240/29".parse().unwrap()],
            ..Diff::default()
        })
        .unwrap();
    assert!(record().is_none(), "no part ban left in the /24");
    h.expect(
        "all lifted",
        &Frame::udp("10.1.3.241", 7).build(),
        XDP_PASS,
        "v4_passed",
    );
}

/// A host table pinned at another size (`max_hosts` changed) is replaced on load, and the
/// enforcer's rebuild (as at every start, before attaching) fills it from the hash map.
#[test]
fn a_host_table_of_another_size_is_replaced_and_refilled() {
    use ips_common::{hosttab, maps as names};

    let mut h = Harness::new("resize");
    let size = |dir: &std::path::Path| {
        aya::maps::MapData::from_pin(dir.join(names::HOSTTAB_V4))
            .unwrap()
            .info()
            .unwrap()
            .max_entries()
    };
    assert_eq!(size(&h.dir), 1 << hosttab::bits_for(1024));
    let hosts = 4 << 20;
    h.ebpf = loader::load(&h.dir, loader::Capacity { hosts, nets: 1024 }).unwrap();
    assert_eq!(size(&h.dir), 1 << hosttab::bits_for(hosts));
    assert_ne!(hosttab::bits_for(hosts), hosttab::bits_for(1024));
    h.maps = KernelMaps::open(&h.dir).unwrap();
    h.maps.rebuild_summary().unwrap();
    h.expect(
        "host ban, new table",
        &Frame::udp("203.0.113.7", 1).build(),
        XDP_DROP,
        "v4_dropped",
    );
    h.expect(
        "neighbour",
        &Frame::udp("203.0.113.8", 2).build(),
        XDP_PASS,
        "v4_passed",
    );
}
