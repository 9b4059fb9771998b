//! The IPv4 summary: one bit per /24, set when a ban may cover part of that /24, so the XDP
//! program can pass most clean sources after reading one word of a 2 MiB array.
//!
//! Bits are set before the bans they cover reach the kernel, and only cleared by a rebuild from
//! the bans actually present, so the kernel's summary may over-approximate (costing a lookup) but
//! never misses a ban.
use ips_common::capacity::SUMMARY_V4_WORDS;

use crate::prefix::Prefix;

/// A userspace mirror of the kernel's summary bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct Summary {
    words: Vec<u64>,
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

/// The /24s an IPv4 prefix touches: the first /24 number and how many.
fn slash24s(p: &Prefix) -> (u32, u32) {
    let o = p.octets();
    let first = u32::from_be_bytes([o[0], o[1], o[2], o[3]]) >> 8;
    let len = u32::from(p.prefix_len());
    let count = if len >= 24 { 1 } else { 1u32 << (24 - len) };
    (first, count)
}

impl Summary {
    /// All bits clear.
    pub fn new() -> Self {
        Self {
            words: vec![0; SUMMARY_V4_WORDS as usize],
        }
    }

    /// A mirror of words read from the kernel (missing words are clear).
    pub fn from_words(mut words: Vec<u64>) -> Self {
        words.resize(SUMMARY_V4_WORDS as usize, 0);
        Self { words }
    }

    /// Sets the bits of every /24 that `p` touches (IPv4 only; IPv6 is ignored) and appends the
    /// index of each word that changed to `changed` (possibly more than once).
    pub fn mark(&mut self, p: &Prefix, changed: &mut Vec<u32>) {
        if !p.is_v4() {
            return;
        }
        let (first, count) = slash24s(p);
        let mut bit = first;
        let end = first + count;
        while bit < end {
            let w = (bit >> 6) as usize;
            let lo = bit & 63;
            let n = (64 - lo).min(end - bit);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << lo
            };
            if self.words[w] & mask != mask {
                self.words[w] |= mask;
                changed.push(w as u32);
            }
            bit += n;
        }
    }

    /// True if the bit of `addr`'s /24 is set.
    pub fn covers(&self, addr: [u8; 4]) -> bool {
        let n = u32::from_be_bytes(addr) >> 8;
        self.words[(n >> 6) as usize] >> (n & 63) & 1 == 1
    }

    /// One word.
    pub fn word(&self, index: u32) -> u64 {
        self.words[index as usize]
    }

    /// Number of /24s marked.
    pub fn marked(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_and_long_prefixes_mark_one_slash24() {
        let mut s = Summary::new();
        let mut changed = Vec::new();
        s.mark(&p("203.0.113.7"), &mut changed);
        s.mark(&p("198.51.100.128/25"), &mut changed);
        assert_eq!(s.marked(), 2);
        assert!(s.covers([203, 0, 113, 200]));
        assert!(s.covers([198, 51, 100, 1]));
        assert!(!s.covers([203, 0, 114, 7]));
        assert_eq!(changed.len(), 2);
    }

    #[test]
    fn short_prefixes_mark_every_slash24_they_cover() {
        let mut s = Summary::new();
        let mut changed = Vec::new();
        s.mark(&p("10.0.0.0/8"), &mut changed);
        assert_eq!(s.marked(), 1 << 16);
        assert!(s.covers([10, 255, 255, 255]));
        assert!(!s.covers([11, 0, 0, 0]));
        assert!(!s.covers([9, 255, 255, 255]));
        s.mark(&p("172.16.4.0/22"), &mut changed);
        assert_eq!(s.marked(), (1 << 16) + 4);
        // Marking again changes nothing.
        changed.clear();
        s.mark(&p("10.1.0.0/16"), &mut changed);
        assert!(changed.is_empty());
        let mut all = Summary::new();
        all.mark(&p("0.0.0.0/0"), &mut changed);
        assert_eq!(all.marked(), 1 << 24);
    }

    #[test]
    fn ipv6_is_ignored() {
        let mut s = Summary::new();
        let mut changed = Vec::new();
        s.mark(&p("2001:db8::/32"), &mut changed);
        assert_eq!(s.marked(), 0);
    }
}
