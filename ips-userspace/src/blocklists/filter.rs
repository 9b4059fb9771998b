//! Removing what a blocklist must never ban: bogon, private and reserved ranges, and
//! allowlisted addresses. An entry inside such a range is dropped; an entry around one (a /8
//! that contains a private /16, say) is cut into the parts outside it. Everything removed is
//! counted by reason.
use serde::{Deserialize, Serialize};

use super::aggregate::{from_range, range};
use crate::prefix::Prefix;

/// What the filter removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterReport {
    /// Entries inside private ranges (RFC 1918, CGNAT, ULA, link-local, loopback).
    pub private: u64,
    /// Entries inside reserved, documentation, multicast or unspecified ranges.
    pub reserved: u64,
    /// Entries inside an allowlist entry.
    pub allowlisted: u64,
    /// Entries cut around such a range (the parts outside are kept).
    pub split: u64,
}

const RESERVED: &[&str] = &[
    "0.0.0.0/8",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "100::/64",
    "2001:db8::/32",
    "ff00::/8",
];

#[derive(Clone, Copy)]
enum Why {
    Private,
    Reserved,
    Allow,
}

/// `p` without `hole` (which lies strictly inside it): the halves that miss it, level by level.
fn subtract(p: &Prefix, hole: &Prefix, out: &mut Vec<Prefix>) {
    let (v4, _, _) = range(p);
    let bits: u32 = if v4 { 32 } else { 128 };
    let (_, hole_start, _) = range(hole);
    let (_, mut start, _) = range(p);
    for len in p.prefix_len() + 1..=hole.prefix_len() {
        let half = 1u128 << (bits - u32::from(len));
        let (left, right) = (start, start + half);
        // Keep the half that does not hold the hole; descend into the other.
        if hole_start >= right {
            if let Some(x) = from_range(v4, left, len) {
                out.push(x);
            }
            start = right;
        } else {
            if let Some(x) = from_range(v4, right, len) {
                out.push(x);
            }
            start = left;
        }
    }
}

/// Filters entries; returns what is left and what was removed.
pub fn filter(entries: Vec<Prefix>, allowlist: &[Prefix]) -> (Vec<Prefix>, FilterReport) {
    let mut holes: Vec<(Prefix, Why)> = Vec::new();
    for (list, why) in [
        (crate::prefix::PRIVATE_RANGES, Why::Private),
        (RESERVED, Why::Reserved),
    ] {
        holes.extend(list.iter().filter_map(|s| s.parse().ok()).map(|p| (p, why)));
    }
    holes.extend(allowlist.iter().map(|p| (*p, Why::Allow)));
    let mut report = FilterReport::default();
    let mut out = Vec::with_capacity(entries.len());
    let mut work = entries;
    while let Some(p) = work.pop() {
        let mut keep = true;
        for (hole, why) in &holes {
            if hole.contains(&p) {
                match why {
                    Why::Private => report.private += 1,
                    Why::Reserved => report.reserved += 1,
                    Why::Allow => report.allowlisted += 1,
                }
                keep = false;
                break;
            }
            if p.contains(hole) {
                report.split += 1;
                let mut parts = Vec::new();
                subtract(&p, hole, &mut parts);
                work.extend(parts);
                keep = false;
                break;
            }
        }
        if keep {
            out.push(p);
        }
    }
    out.reverse();
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn drops_private_reserved_and_allowlisted() {
        let (kept, r) = filter(
            vec![
                p("10.1.2.3"),
                p("8.8.8.8"),
                p("192.0.2.1"),
                p("1.1.1.0/24"),
                p("fe80::1"),
                p("2a00::1"),
            ],
            &[p("1.1.1.0/24")],
        );
        let kept: Vec<String> = kept.iter().map(Prefix::to_string).collect();
        assert_eq!(kept, ["8.8.8.8", "2a00::1"]);
        assert_eq!((r.private, r.reserved, r.allowlisted), (2, 1, 1));
    }

    #[test]
    fn firehol_level1_style_entries_never_cover_private_space() {
        // FireHOL level1 lists 10.0.0.0/8 and wide ranges around private ones.
        let (kept, r) = filter(vec![p("10.0.0.0/8"), p("172.0.0.0/8")], &[]);
        assert_eq!(r.private, 1);
        assert_eq!(r.split, 1);
        let inside = |a: &str| kept.iter().any(|k| k.contains(&p(a)));
        assert!(!inside("10.1.1.1"));
        assert!(!inside("172.16.5.5"));
        assert!(!inside("172.31.255.255"));
        assert!(inside("172.15.0.1"));
        assert!(inside("172.32.0.1"));
        assert!(inside("172.255.0.1"));
    }

    #[test]
    fn subtract_keeps_everything_but_the_hole() {
        let mut out = Vec::new();
        subtract(&p("10.0.0.0/24"), &p("10.0.0.7"), &mut out);
        assert_eq!(out.len(), 8);
        for last in 0..=255u8 {
            let a = p(&format!("10.0.0.{last}"));
            let covered = out.iter().any(|o| o.contains(&a));
            assert_eq!(covered, last != 7, "10.0.0.{last}");
        }
    }
}
