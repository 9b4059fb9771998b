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

/// Aggregates prefixes of both families.
pub fn aggregate(prefixes: Vec<Prefix>) -> Vec<Prefix> {
    let mut ranges: Vec<(bool, u128, u128)> = prefixes.iter().map(range).collect();
    // IPv4 first, then by start.
    ranges.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::with_capacity(ranges.len());
    let mut cur: Option<(bool, u128, u128)> = None;
    for r in ranges {
        cur = match cur {
            Some((fam, s, e))
                if fam == r.0 && (r.1 <= e || r.1 == e.wrapping_add(1) && e != u128::MAX) =>
            {
                Some((fam, s, e.max(r.2)))
            }
            Some((fam, s, e)) => {
                cover(fam, s, e, &mut out);
                Some(r)
            }
            None => Some(r),
        };
    }
    if let Some((fam, s, e)) = cur {
        cover(fam, s, e, &mut out);
    }
    out
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
