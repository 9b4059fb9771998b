//! Removing what a blocklist must never ban: bogon, private and reserved ranges, and
//! allowlisted addresses. An entry inside such a range is dropped; an entry around one (a /8
//! that contains a private /16, say) is cut into the parts outside it. Everything removed is
//! counted by reason.
use serde::{Deserialize, Serialize};

use super::aggregate::{from_range, range};
use crate::{
    decisions::{Allowlist, MinPrefix},
    prefix::Prefix,
};

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
    /// Entries shorter than the minimum prefix length (`0.0.0.0/0` and the like): rejected
    /// whole, never cut into pieces that would cover the internet.
    #[serde(default)]
    pub too_short: u64,
    /// Entries inside this host's addresses or a management range (`[decisions] management`).
    #[serde(default)]
    pub protected: u64,
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
    Protected,
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

/// What a list may not ban, with a quick test for entries far from all of it.
pub(crate) struct Holes {
    /// The shortest prefixes allowed.
    min: MinPrefix,
    /// (prefix, its range, why), most important reason first.
    holes: Vec<(Prefix, (bool, u128, u128), Why)>,
    /// IPv4 /16s that some hole touches, for entries of /16 or longer.
    touched16: Vec<bool>,
    /// First bytes that some hole touches, per family (IPv6, IPv4), for /8 to /15.
    touched8: [[bool; 256]; 2],
}

impl Holes {
    pub(crate) fn new(allow: &Allowlist) -> Self {
        let allowlist = &allow.prefixes;
        let mut holes: Vec<(Prefix, Why)> = crate::prefix::private_ranges()
            .map(|p| (p, Why::Private))
            .collect();
        holes.extend(
            RESERVED
                .iter()
                .filter_map(|s| s.parse().ok())
                .map(|p| (p, Why::Reserved)),
        );
        holes.extend(allowlist.iter().map(|p| (*p, Why::Allow)));
        holes.extend(allow.protected.iter().map(|p| (*p, Why::Protected)));
        let mut touched16 = vec![false; 1 << 16];
        let mut touched8 = [[false; 256]; 2];
        for (hole, _) in &holes {
            let (v4, start, end) = range(hole);
            let shift = if v4 { 24 } else { 120 };
            touched8[usize::from(v4)][(start >> shift) as usize..=(end >> shift) as usize]
                .fill(true);
            if v4 {
                touched16[(start >> 16) as usize..=(end >> 16) as usize].fill(true);
            }
        }
        Self {
            min: allow.min,
            holes: holes.into_iter().map(|(p, w)| (p, range(&p), w)).collect(),
            touched16,
            touched8,
        }
    }

    /// False when IPv4 `addr`/`len` (host bits set or not) cannot meet a hole: it is a /16 or
    /// longer in a /16 that no hole touches.
    pub(crate) fn v4_clear(&self, addr: u32, len: u8) -> bool {
        len >= 16 && len >= self.min.v4 && !self.touched16[(addr >> 16) as usize]
    }

    /// False when `p` cannot meet a hole: it lies in a /16 (IPv4) or first byte that no hole
    /// touches. Most entries of a list do.
    pub(crate) fn may_touch(&self, p: &Prefix) -> bool {
        if !self.min.allows(p) {
            return true;
        }
        match p.addr() {
            std::net::IpAddr::V4(a) if p.prefix_len() >= 16 => {
                !self.v4_clear(u32::from(a), p.prefix_len())
            }
            std::net::IpAddr::V4(a) if p.prefix_len() >= 8 => {
                self.touched8[1][usize::from(a.octets()[0])]
            }
            std::net::IpAddr::V6(a) if p.prefix_len() >= 8 => {
                self.touched8[0][usize::from(a.octets()[0])]
            }
            _ => true,
        }
    }

    /// Filters entries; returns what is left (in order) and what was removed.
    pub(crate) fn filter(&self, entries: Vec<Prefix>) -> (Vec<Prefix>, FilterReport) {
        let mut report = FilterReport::default();
        let mut out = Vec::with_capacity(entries.len());
        let mut work = entries;
        work.reverse();
        while let Some(p) = work.pop() {
            if !self.may_touch(&p) {
                out.push(p);
                continue;
            }
            if !self.min.allows(&p) {
                report.too_short += 1;
                continue;
            }
            let (v4, start, end) = range(&p);
            let mut keep = true;
            for (hole, (hv4, hs, he), why) in &self.holes {
                if *hv4 != v4 || *he < start || end < *hs {
                    continue;
                }
                if *hs <= start && end <= *he {
                    match why {
                        Why::Private => report.private += 1,
                        Why::Reserved => report.reserved += 1,
                        Why::Allow => report.allowlisted += 1,
                        Why::Protected => report.protected += 1,
                    }
                } else {
                    // Prefixes that overlap nest: this one holds the hole.
                    report.split += 1;
                    let mut parts = Vec::new();
                    subtract(&p, hole, &mut parts);
                    work.extend(parts);
                }
                keep = false;
                break;
            }
            if keep {
                out.push(p);
            }
        }
        (out, report)
    }
}

/// Filters entries with the published allowlist and minimum lengths; returns what is left and
/// what was removed.
pub fn filter(entries: Vec<Prefix>, allow: &Allowlist) -> (Vec<Prefix>, FilterReport) {
    Holes::new(allow).filter(entries)
}

/// Filters decisions from a source as list entries are filtered: each value that the filter
/// cuts becomes a decision per piece, with the same duration and reason.
pub fn filter_decisions(
    batch: Vec<crate::decisions::NewDecision>,
    allow: &Allowlist,
) -> (Vec<crate::decisions::NewDecision>, FilterReport) {
    let holes = Holes::new(allow);
    let mut report = FilterReport::default();
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        if !holes.may_touch(&d.value) {
            out.push(d);
            continue;
        }
        let (pieces, r) = holes.filter(vec![d.value]);
        report.private += r.private;
        report.reserved += r.reserved;
        report.allowlisted += r.allowlisted;
        report.split += r.split;
        report.too_short += r.too_short;
        out.extend(
            pieces
                .into_iter()
                .map(|value| crate::decisions::NewDecision { value, ..d.clone() }),
        );
    }
    (out, report)
}

/// An allowlist of `prefixes` with the default minimum lengths (tests, offline tools).
pub fn allowing(prefixes: &[Prefix]) -> Allowlist {
    Allowlist {
        version: 0,
        prefixes: prefixes.to_vec(),
        min: MinPrefix::default(),
        protected: Vec::new(),
    }
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
            &allowing(&[p("1.1.1.0/24")]),
        );
        let kept: Vec<String> = kept.iter().map(Prefix::to_string).collect();
        assert_eq!(kept, ["8.8.8.8", "2a00::1"]);
        assert_eq!((r.private, r.reserved, r.allowlisted), (2, 1, 1));
    }

    #[test]
    fn firehol_level1_style_entries_never_cover_private_space() {
        // FireHOL level1 lists 10.0.0.0/8 and wide ranges around private ones.
        let (kept, r) = filter(vec![p("10.0.0.0/8"), p("172.0.0.0/8")], &allowing(&[]));
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
    fn allowlist_entries_anywhere_are_honoured() {
        // The shortcut for entries far from every hole must still see allowlist entries.
        let (kept, r) = filter(
            vec![
                p("45.0.1.2"),
                p("46.0.0.1"),
                p("45.0.0.0/15"),
                p("2a01::1"),
                p("4.0.0.0/6"),
            ],
            // A /6 is under the default minimum: this list's operator lowered it.
            &Allowlist {
                min: MinPrefix { v4: 6, v6: 16 },
                ..allowing(&[p("45.0.0.0/16"), p("2a01::/16"), p("5.6.7.8")])
            },
        );
        let kept: Vec<String> = kept.iter().map(Prefix::to_string).collect();
        assert_eq!(r.allowlisted, 2);
        assert_eq!(r.split, 2);
        assert!(kept.contains(&"46.0.0.1".to_owned()));
        assert!(kept.contains(&"45.1.0.0/16".to_owned()));
        assert!(
            !kept
                .iter()
                .any(|k| k.starts_with("45.0.") || k == "2a01::1")
        );
        let inside = |a: &str| kept.iter().any(|k| p(k).contains(&p(a)));
        assert!(!inside("5.6.7.8"));
        assert!(inside("5.6.7.9") && inside("4.0.0.1") && inside("7.255.255.255"));
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

    #[test]
    fn entries_shorter_than_the_minimum_are_rejected_whole_not_cut() {
        let (kept, r) = filter(
            vec![
                p("0.0.0.0/0"),
                p("::/0"),
                p("::ffff:0:0/96"),
                p("4.0.0.0/6"),
                p("2a00::/12"),
                p("5.0.0.0/8"),
            ],
            &allowing(&[]),
        );
        assert_eq!(kept, [p("5.0.0.0/8")]);
        assert_eq!((r.too_short, r.split, r.private), (5, 0, 0));
        let list = crate::blocklists::prepare("0.0.0.0/0\n::/0\n8.8.8.8\n", None, &allowing(&[]));
        assert_eq!(list.prefixes, [p("8.8.8.8")]);
        assert_eq!(list.filtered.too_short, 2);
        // Decisions from a source: left out and counted, or cut around what they hold.
        let d = |v: &str| crate::decisions::NewDecision {
            value: p(v),
            origin: crate::decisions::Origin::Lapi("l".into()),
            reason: "x".into(),
            duration_ms: 1000,
        };
        let (kept, r) = filter_decisions(
            vec![
                d("0.0.0.0/0"),
                d("10.1.1.1"),
                d("172.0.0.0/8"),
                d("8.8.8.8"),
            ],
            &allowing(&[p("8.8.8.8")]),
        );
        assert_eq!(
            (r.too_short, r.private, r.allowlisted, r.split),
            (1, 1, 1, 1)
        );
        assert!(
            kept.iter()
                .all(|k| k.duration_ms == 1000 && !k.value.contains(&p("172.16.0.1")))
        );
        assert!(kept.iter().any(|k| k.value.contains(&p("172.32.0.1"))));
    }
}
