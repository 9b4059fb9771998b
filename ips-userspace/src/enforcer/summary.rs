//! The IPv4 /24 index: what the XDP program reads first for an IPv4 source, so that most
//! packets need at most one ban lookup and packets inside a banned prefix of /24 or shorter need
//! none.
//!
//! For each /24 the kernel holds three bits (in [`ips_common::Summary24`] words) and one byte:
//! - `hosts`: a single-address ban may lie in this /24 (look in the host hash);
//! - `part`: a /25 to /31 prefix ban may touch it (look in the LPM trie);
//! - `cover`: a ban of /24 or shorter covers all of it: drop, attributing to the origin byte,
//!   which belongs to the longest such prefix.
//!
//! `hosts` and `part` may be stale after a delete (costing a lookup that misses) until a
//! rebuild; `cover` and the origin bytes are always exact, because they drop by themselves.
//! [`Slash24Index`] is the userspace mirror that computes what to write.
use std::collections::HashMap;

use ips_common::{Summary24, capacity::SUMMARY_V4_WORDS};

use crate::prefix::Prefix;

const SLASH24S: usize = 1 << 24;
const NONE: u8 = u8::MAX;

/// Summary and origin words that changed, to be written to the kernel.
#[derive(Debug, Default)]
pub struct Changed {
    /// Indexes into the summary array.
    pub summary: Vec<u32>,
    /// Indexes into the cover-origin array (8 origins a word).
    pub origins: Vec<u32>,
}

impl Changed {
    /// Sorts and removes repeats.
    pub fn dedup(&mut self) {
        for v in [&mut self.summary, &mut self.origins] {
            v.sort_unstable();
            v.dedup();
        }
    }
}

/// The userspace mirror of the kernel's /24 index.
pub struct Slash24Index {
    words: Vec<Summary24>,
    /// Length of the longest covering prefix per /24 ([`NONE`] if none).
    best_len: Vec<u8>,
    /// Its origin.
    origin: Vec<u8>,
    /// Every IPv4 ban of /24 or shorter: (length, network as u32) -> origin.
    covers: HashMap<(u8, u32), u32>,
}

fn v4(p: &Prefix) -> Option<u32> {
    let o = p.octets();
    (o.len() == 4).then(|| u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl Default for Slash24Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Slash24Index {
    /// Nothing banned.
    pub fn new() -> Self {
        Self {
            words: vec![Summary24::default(); SUMMARY_V4_WORDS as usize],
            best_len: vec![NONE; SLASH24S],
            origin: vec![0; SLASH24S],
            covers: HashMap::new(),
        }
    }

    /// The summary word at `index`.
    pub fn word(&self, index: u32) -> Summary24 {
        self.words[index as usize]
    }

    /// The cover-origin word at `index` (origins of /24s `8 * index .. 8 * index + 8`).
    pub fn origin_word(&self, index: u32) -> u64 {
        let base = index as usize * 8;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.origin[base..base + 8]);
        u64::from_le_bytes(bytes)
    }

    fn set(&mut self, n: u32, which: fn(&mut Summary24) -> &mut u64, changed: &mut Changed) {
        let bit = 1u64 << (n & 63);
        let w = which(&mut self.words[(n >> 6) as usize]);
        if *w & bit == 0 {
            *w |= bit;
            changed.summary.push(n >> 6);
        }
    }

    fn clear_cover(&mut self, n: u32, changed: &mut Changed) {
        let bit = 1u64 << (n & 63);
        let w = &mut self.words[(n >> 6) as usize].cover;
        if *w & bit != 0 {
            *w &= !bit;
            changed.summary.push(n >> 6);
        }
    }

    fn set_origin(&mut self, n: u32, origin: u32, changed: &mut Changed) {
        let o = (origin % ips_common::origin::MAX) as u8;
        if self.origin[n as usize] != o {
            self.origin[n as usize] = o;
            changed.origins.push(n >> 3);
        }
    }

    /// Records a ban that is about to be written to the kernel.
    pub fn add(&mut self, p: &Prefix, origin: u32, changed: &mut Changed) {
        let Some(addr) = v4(p) else { return };
        let len = p.prefix_len();
        let first = addr >> 8;
        if len == 32 {
            self.set(first, |s| &mut s.hosts, changed);
        } else if len > 24 {
            self.set(first, |s| &mut s.part, changed);
        } else {
            self.covers.insert((len, addr), origin);
            let count = 1u32 << (24 - len);
            for n in first..first + count {
                let best = self.best_len[n as usize];
                if best == NONE || len >= best {
                    self.best_len[n as usize] = len;
                    // Origin byte before the cover bit: the bit is what makes the kernel drop.
                    self.set_origin(n, origin, changed);
                    self.set(n, |s| &mut s.cover, changed);
                }
            }
        }
    }

    /// Records a ban that is about to be removed from the kernel. Only `cover` bits and
    /// origins change; `hosts` and `part` bits stay until [`Slash24Index::rebuild`].
    pub fn remove(&mut self, p: &Prefix, changed: &mut Changed) {
        let Some(addr) = v4(p) else { return };
        let len = p.prefix_len();
        if len > 24 || self.covers.remove(&(len, addr)).is_none() {
            return;
        }
        let first = addr >> 8;
        for n in first..first + (1u32 << (24 - len)) {
            if self.best_len[n as usize] != len {
                continue; // a longer prefix still covers it and keeps its origin
            }
            let ip = n << 8;
            let next = (0..len)
                .rev()
                .find_map(|l| self.covers.get(&(l, ip & mask(l))).map(|o| (l, *o)));
            match next {
                Some((l, o)) => {
                    self.best_len[n as usize] = l;
                    self.set_origin(n, o, changed);
                }
                None => {
                    self.best_len[n as usize] = NONE;
                    self.clear_cover(n, changed);
                }
            }
        }
    }

    /// An exact index of these bans (as read back from the kernel maps).
    pub fn rebuild(bans: impl IntoIterator<Item = (Prefix, u32)>) -> Self {
        let mut index = Self::new();
        let mut ignored = Changed::default();
        for (p, o) in bans {
            index.add(&p, o, &mut ignored);
        }
        index
    }

    /// What the kernel would decide from the index alone for `addr`: `Some(origin)` if a
    /// covering ban drops it, else which lookups it would make (hosts, part).
    pub fn probe(&self, addr: [u8; 4]) -> (Option<u8>, bool, bool) {
        let n = u32::from_be_bytes(addr) >> 8;
        let w = self.words[(n >> 6) as usize];
        let bit = 1u64 << (n & 63);
        let cover = (w.cover & bit != 0).then(|| self.origin[n as usize]);
        (cover, w.hosts & bit != 0, w.part & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_and_long_prefixes_only_ask_for_a_lookup() {
        let mut i = Slash24Index::new();
        let mut c = Changed::default();
        i.add(&p("203.0.113.7"), 1, &mut c);
        i.add(&p("198.51.100.128/25"), 2, &mut c);
        assert_eq!(i.probe([203, 0, 113, 200]), (None, true, false));
        assert_eq!(i.probe([198, 51, 100, 1]), (None, false, true));
        assert_eq!(i.probe([203, 0, 114, 7]), (None, false, false));
    }

    #[test]
    fn covering_prefixes_drop_with_the_longest_origin() {
        let mut i = Slash24Index::new();
        let mut c = Changed::default();
        i.add(&p("10.0.0.0/8"), 8, &mut c);
        i.add(&p("10.1.2.0/24"), 9, &mut c);
        i.add(&p("10.1.0.0/16"), 10, &mut c);
        assert_eq!(i.probe([10, 1, 2, 3]).0, Some(9));
        assert_eq!(i.probe([10, 1, 3, 3]).0, Some(10));
        assert_eq!(i.probe([10, 200, 0, 1]).0, Some(8));
        assert_eq!(i.probe([11, 0, 0, 1]).0, None);
        // Removing the /16 hands its /24s back to the /8, but not the /24 it did not own.
        let mut c = Changed::default();
        i.remove(&p("10.1.0.0/16"), &mut c);
        assert_eq!(i.probe([10, 1, 3, 3]).0, Some(8));
        assert_eq!(i.probe([10, 1, 2, 3]).0, Some(9));
        assert!(!c.origins.is_empty());
        assert!(c.summary.is_empty(), "no cover bit had to change");
        // Removing the /8 clears everything but the /24.
        let mut c = Changed::default();
        i.remove(&p("10.0.0.0/8"), &mut c);
        assert_eq!(i.probe([10, 1, 3, 3]).0, None);
        assert_eq!(i.probe([10, 1, 2, 3]).0, Some(9));
        assert!(!c.summary.is_empty());
    }

    #[test]
    fn re_adding_a_prefix_re_attributes_it() {
        let mut i = Slash24Index::new();
        let mut c = Changed::default();
        i.add(&p("192.0.2.0/24"), 3, &mut c);
        i.add(&p("192.0.2.0/24"), 4, &mut c);
        assert_eq!(i.probe([192, 0, 2, 1]).0, Some(4));
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut i = Slash24Index::new();
        let mut c = Changed::default();
        i.remove(&p("192.0.2.0/24"), &mut c);
        i.remove(&p("2001:db8::/32"), &mut c);
        assert!(c.summary.is_empty() && c.origins.is_empty());
    }

    #[test]
    fn the_whole_space() {
        let mut i = Slash24Index::new();
        let mut c = Changed::default();
        i.add(&p("0.0.0.0/0"), 5, &mut c);
        assert_eq!(i.probe([255, 255, 255, 255]).0, Some(5));
        c.dedup();
        assert_eq!(c.summary.len(), SUMMARY_V4_WORDS as usize);
        i.remove(&p("0.0.0.0/0"), &mut Changed::default());
        assert_eq!(i.probe([1, 2, 3, 4]).0, None);
    }

    #[test]
    fn origin_words_pack_eight_slash24s_little_endian() {
        let mut i = Slash24Index::new();
        let mut c = Changed::default();
        // 0.0.1.0/24 is /24 number 1: byte 1 of word 0.
        i.add(&p("0.0.1.0/24"), 7, &mut c);
        assert_eq!(i.origin_word(0), 7 << 8);
        assert_eq!(c.origins, vec![0]);
    }

    #[test]
    fn rebuild_matches_incremental() {
        let bans = [
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("192.0.2.7", 3),
            ("198.51.100.0/26", 4),
        ];
        let mut inc = Slash24Index::new();
        for (b, o) in bans {
            inc.add(&p(b), o, &mut Changed::default());
        }
        let rebuilt = Slash24Index::rebuild(bans.iter().map(|(b, o)| (p(b), *o)));
        for a in [
            [10, 1, 0, 1],
            [10, 9, 0, 1],
            [192, 0, 2, 1],
            [198, 51, 100, 200],
            [8, 8, 8, 8],
        ] {
            assert_eq!(inc.probe(a), rebuilt.probe(a));
        }
    }
}
