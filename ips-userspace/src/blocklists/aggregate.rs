//! Aggregation: the fewest prefixes that cover exactly the same addresses. Contained prefixes
//! disappear, overlapping and adjacent ones merge (`10.0.0.0/25` + `10.0.0.128/25` =
//! `10.0.0.0/24`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::prefix::Prefix;

/// A prefix as an inclusive range of a family's address space (as u128).
pub(crate) fn range(p: &Prefix) -> (bool, u128, u128) {
    let bits: u32 = if p.is_v4() { 32 } else { 128 };
    let start = match p.addr() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let host_bits = bits - u32::from(p.prefix_len());
    let span = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (p.is_v4(), start, start + span)
}

pub(crate) fn from_range(v4: bool, start: u128, len: u8) -> Option<Prefix> {
    let addr = if v4 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(start).ok()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(start))
    };
    Prefix::new(addr, len).ok()
}

/// The CIDR blocks that cover `[start, end]` exactly.
fn cover(v4: bool, mut start: u128, end: u128, out: &mut Vec<Prefix>) {
    if v4 && start == end {
        // Most list entries: one address.
        out.push(Prefix::v4(start as u32, 32));
        return;
    }
    let bits: u32 = if v4 { 32 } else { 128 };
    loop {
        // The largest aligned block starting at `start` that stays within `end`.
        let mut host = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        while host > 0 {
            let last = if host == 128 {
                u128::MAX
            } else {
                start + ((1u128 << host) - 1)
            };
            if last <= end {
                break;
            }
            host -= 1;
        }
        if let Some(p) = from_range(v4, start, (bits - host) as u8) {
            out.push(p);
        }
        let last = if host == 128 {
            u128::MAX
        } else {
            start + ((1u128 << host) - 1)
        };
        if last >= end {
            return;
        }
        start = last + 1;
    }
}

/// Aggregates prefixes of both families. The result is sorted (IPv4 first, then by address).
pub fn aggregate(prefixes: Vec<Prefix>) -> Vec<Prefix> {
    let mut ranges = Ranges::default();
    for p in &prefixes {
        ranges.push(p);
    }
    drop(prefixes);
    ranges.aggregate()
}

/// Prefixes as address ranges, gathered for [`Ranges::aggregate`]. IPv4 ranges are one u64
/// each (start << 32 | end), so a million of them sort as plain integers.
#[derive(Default)]
pub(crate) struct Ranges {
    v4: Vec<u64>,
    v6: Vec<(u128, u128)>,
}

impl Ranges {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            v4: Vec::with_capacity(n),
            v6: Vec::new(),
        }
    }

    /// An IPv4 network by address and length (at most 32); host bits are cleared here.
    pub(crate) fn push_v4(&mut self, addr: u32, len: u8) {
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        let start = addr & !host;
        self.v4
            .push(u64::from(start) << 32 | u64::from(start | host));
    }

    pub(crate) fn push(&mut self, p: &Prefix) {
        match range(p) {
            (true, start, end) => self.v4.push((start as u64) << 32 | end as u64),
            (false, start, end) => self.v6.push((start, end)),
        }
    }

    /// The fewest prefixes that cover the same addresses, sorted.
    pub(crate) fn aggregate(self) -> Vec<Prefix> {
        let Self { mut v4, mut v6 } = self;
        radix_sort_by_start(&mut v4);
        v6.sort_unstable();
        let mut out = Vec::with_capacity(v4.len() + v6.len());
        let v4 = v4
            .into_iter()
            .map(|k| (u128::from((k >> 32) as u32), u128::from(k as u32)));
        merge(true, v4, &mut out);
        merge(false, v6.into_iter(), &mut out);
        out
    }
}

/// Sorts packed IPv4 ranges by their start (the high 32 bits): three stable counting passes of
/// 11 bits, a fraction of a comparison sort's time for a million entries. Ranges with the same
/// start may end up in any order, which merging does not mind.
fn radix_sort_by_start(keys: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    if keys.is_sorted() {
        // Many published lists are sorted already.
        return;
    }
    if keys.len() < 4096 {
        keys.sort_unstable();
        return;
    }
    let mut src = std::mem::take(keys);
    let mut dst = vec![0u64; src.len()];
    for pass in 0..3 {
        let shift = 32 + pass * BITS;
        let digit = |k: u64| ((k >> shift) as usize) & (BUCKETS - 1);
        let mut count = [0usize; BUCKETS];
        for &k in &src {
            count[digit(k)] += 1;
        }
        let mut at = 0;
        for c in &mut count {
            let n = *c;
            *c = at;
            at += n;
        }
        for &k in &src {
            let d = digit(k);
            dst[count[d]] = k;
            count[d] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    *keys = src;
}

/// Merges ranges sorted by start that overlap or touch, and covers each merged range.
fn merge(v4: bool, ranges: impl Iterator<Item = (u128, u128)>, out: &mut Vec<Prefix>) {
    let mut cur: Option<(u128, u128)> = None;
    for (start, end) in ranges {
        cur = match cur {
            Some((s, e)) if start <= e || start == e.wrapping_add(1) && e != u128::MAX => {
                Some((s, e.max(end)))
            }
            Some((s, e)) => {
                cover(v4, s, e, out);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = cur {
        cover(v4, s, e, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn agg(v: &[&str]) -> Vec<String> {
        aggregate(v.iter().map(|s| p(s)).collect())
            .iter()
            .map(Prefix::to_string)
            .collect()
    }

    #[test]
    fn merges_contained_and_adjacent() {
        assert_eq!(agg(&["10.0.0.0/25", "10.0.0.128/25"]), ["10.0.0.0/24"]);
        assert_eq!(
            agg(&["10.0.0.0/24", "10.0.0.7", "10.0.0.0/26"]),
            ["10.0.0.0/24"]
        );
        assert_eq!(agg(&["10.0.0.1", "10.0.0.2"]), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(agg(&["10.0.0.2", "10.0.0.3"]), ["10.0.0.2/31"]);
        assert_eq!(agg(&["0.0.0.0/1", "128.0.0.0/1"]), ["0.0.0.0/0"]);
        assert_eq!(
            agg(&["2001:db8::/33", "2001:db8:8000::/33", "1.2.3.4"]),
            ["1.2.3.4", "2001:db8::/32"]
        );
        assert_eq!(agg(&["::/0", "::1"]), ["::/0"]);
        assert_eq!(
            agg(&["255.255.255.255", "255.255.255.254"]),
            ["255.255.255.254/31"]
        );
        assert!(agg(&[]).is_empty());
    }

    #[test]
    fn radix_sort_orders_by_start() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut keys: Vec<u64> = (0..20_000).map(|_| rng.next()).collect();
        keys.extend([0, u64::MAX, 1 << 32, (1 << 32) - 1]);
        let mut expected: Vec<u32> = keys.iter().map(|k| (k >> 32) as u32).collect();
        expected.sort_unstable();
        let mut all = keys.clone();
        radix_sort_by_start(&mut keys);
        assert_eq!(
            keys.iter().map(|k| (k >> 32) as u32).collect::<Vec<_>>(),
            expected
        );
        // A permutation: nothing lost or duplicated.
        all.sort_unstable();
        keys.sort_unstable();
        assert_eq!(all, keys);
    }

    /// xorshift for the property test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn property_covers_exactly_the_same_addresses() {
        // Random prefixes inside 10.20.0.0/16; every one of its 65,536 addresses is checked.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            let n = 1 + (rng.next() % 60) as usize;
            let input: Vec<Prefix> = (0..n)
                .map(|_| {
                    let len = 18 + (rng.next() % 15) as u8;
                    let a = 0x0a14_0000u32 | (rng.next() as u32 & 0xffff);
                    Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap()
                })
                .collect();
            let out = aggregate(input.clone());
            assert!(out.len() <= input.len(), "round {round}: grew");
            let covered = |set: &[Prefix], a: u32| {
                let host = Prefix::host(IpAddr::V4(Ipv4Addr::from(a)));
                set.iter().any(|p| p.contains(&host))
            };
            for low in 0..=0xffffu32 {
                let a = 0x0a14_0000 | low;
                assert_eq!(
                    covered(&input, a),
                    covered(&out, a),
                    "round {round}: {a:#x}"
                );
            }
            // Minimal: no two outputs overlap or could merge.
            let mut again = aggregate(out.clone());
            again.sort();
            let mut sorted = out.clone();
            sorted.sort();
            assert_eq!(again, sorted, "round {round}: not a fixed point");
        }
    }
}
