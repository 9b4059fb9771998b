//! The IPv4 /24 index: what the XDP program reads first for an IPv4 source, so that most
//! packets need at most one ban lookup and packets inside a banned prefix of /24 or shorter need
//! none.
//!
//! For each /24 the kernel holds three bits (in [`ips_common::Summary24`] entries) and one byte:
//! - `hosts`: a single-address ban may lie in this /24 (look in the host hash);
//! - `part`: a /25 to /31 prefix ban may touch it (look in the LPM trie);
//! - `cover`: a ban of /24 or shorter covers all of it: drop, attributing to the origin byte,
//!   which belongs to the longest such prefix.
//!
//! `hosts` and `part` may be stale after a delete (costing a lookup that misses) until a
//! rebuild; `cover` and the origin bytes are always exact, because they drop by themselves.
//!
//! Both arrays are `BPF_F_MMAPABLE`: [`Slash24Index`] writes them through a shared mapping with
//! atomic stores, no syscall per change. An origin byte is always stored before the `cover` bit
//! that makes it count.
use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd, BorrowedFd},
    sync::atomic::{AtomicU8, AtomicU64, Ordering},
};

use ips_common::capacity::{COVER_V4_WORDS, SUMMARY_V4_WORDS};

use crate::prefix::Prefix;

const SLASH24S: usize = 1 << 24;
const NONE: u8 = u8::MAX;
/// Bytes of the summary array: three `u64` per entry.
pub const SUMMARY_BYTES: usize = SUMMARY_V4_WORDS as usize * 24;
/// Bytes of the cover-origin array: one byte per /24.
pub const COVER_BYTES: usize = COVER_V4_WORDS as usize * 8;

/// A shared memory region: a BPF array map mapped into this process, or anonymous memory.
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the region is only accessed through atomics.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    fn mmap(fd: Option<BorrowedFd<'_>>, len: usize) -> io::Result<Self> {
        let (flags, raw) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping of `len` bytes; the kernel checks the fd and the size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Maps `len` bytes of a `BPF_F_MMAPABLE` array map.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        Self::mmap(Some(fd), len)
    }

    /// Zeroed anonymous memory (for tests and dry runs).
    pub fn anonymous(len: usize) -> io::Result<Self> {
        Self::mmap(None, len)
    }

    fn u64s(&self) -> &[AtomicU64] {
        // SAFETY: page-aligned, `len` bytes mapped for our lifetime, accessed only atomically.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len / 8) }
    }

    pub(crate) fn u8s(&self) -> &[AtomicU8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }

    pub(crate) fn u16s(&self) -> &[std::sync::atomic::AtomicU16] {
        // SAFETY: as above (page-aligned, so 2-byte aligned).
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len / 2) }
    }

    pub(crate) fn u32s(&self) -> &[std::sync::atomic::AtomicU32] {
        // SAFETY: as above (page-aligned, so 4-byte aligned).
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len / 4) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping what `mmap` returned.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Bookkeeping for the kernel's /24 index, writing it as bans come and go.
pub struct Slash24Index {
    summary: Region,
    origins: Region,
    /// Length of the longest covering prefix per /24 ([`NONE`] if none).
    best_len: Vec<u8>,
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

const HOSTS: usize = 0;
const COVER: usize = 1;
const PART: usize = 2;

impl Slash24Index {
    /// An index over two regions (the kernel's arrays, or anonymous memory), rebuilt from
    /// `bans`: every word that differs from what `bans` need is rewritten.
    pub fn new(
        summary: Region,
        origins: Region,
        bans: impl IntoIterator<Item = (Prefix, u32)>,
    ) -> Self {
        let mut index = Self {
            summary,
            origins,
            best_len: vec![NONE; SLASH24S],
            covers: HashMap::new(),
        };
        index.rebuild(bans);
        index
    }

    /// An index in anonymous memory (no kernel), for tests.
    pub fn in_memory() -> io::Result<Self> {
        Ok(Self::new(
            Region::anonymous(SUMMARY_BYTES)?,
            Region::anonymous(COVER_BYTES)?,
            [],
        ))
    }

    fn word(&self, n: u32, kind: usize) -> &AtomicU64 {
        &self.summary.u64s()[(n >> 6) as usize * 3 + kind]
    }

    fn set(&self, n: u32, kind: usize) {
        let bit = 1u64 << (n & 63);
        let w = self.word(n, kind);
        if w.load(Ordering::Relaxed) & bit == 0 {
            w.fetch_or(bit, Ordering::Release);
        }
    }

    fn clear_cover(&self, n: u32) {
        self.word(n, COVER)
            .fetch_and(!(1u64 << (n & 63)), Ordering::Release);
    }

    fn set_origin(&self, n: u32, origin: u32) {
        let o = (origin % ips_common::origin::MAX) as u8;
        self.origins.u8s()[n as usize].store(o, Ordering::Release);
    }

    /// Records a ban that is about to be written to the kernel.
    pub fn add(&mut self, p: &Prefix, origin: u32) {
        let Some(addr) = v4(p) else { return };
        let len = p.prefix_len();
        let first = addr >> 8;
        if len == 32 {
            self.set(first, HOSTS);
        } else if len > 24 {
            self.set(first, PART);
        } else {
            self.covers.insert((len, addr), origin);
            for n in first..first + (1u32 << (24 - len)) {
                let best = self.best_len[n as usize];
                if best == NONE || len >= best {
                    self.best_len[n as usize] = len;
                    // Origin byte before the cover bit: the bit is what makes the kernel drop.
                    self.set_origin(n, origin);
                    self.set(n, COVER);
                }
            }
        }
    }

    /// Records a ban that is about to be removed from the kernel. Only `cover` bits and
    /// origins change; `hosts` and `part` bits stay until [`Slash24Index::rebuild`].
    pub fn remove(&mut self, p: &Prefix) {
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
                    self.set_origin(n, o);
                }
                None => {
                    self.best_len[n as usize] = NONE;
                    self.clear_cover(n);
                }
            }
        }
    }

    /// Makes the index exactly what `bans` need, clearing stale `hosts` and `part` bits.
    /// Computed aside, then written word by word where different, origins before bits.
    pub fn rebuild(&mut self, bans: impl IntoIterator<Item = (Prefix, u32)>) {
        let mut words = vec![0u64; SUMMARY_V4_WORDS as usize * 3];
        let mut origins = vec![0u8; SLASH24S];
        let mut best_len = vec![NONE; SLASH24S];
        let mut covers = HashMap::new();
        let mut sets = |n: u32, kind: usize| words[(n >> 6) as usize * 3 + kind] |= 1 << (n & 63);
        for (p, origin) in bans {
            let Some(addr) = v4(&p) else { continue };
            let len = p.prefix_len();
            let first = addr >> 8;
            if len == 32 {
                sets(first, HOSTS);
            } else if len > 24 {
                sets(first, PART);
            } else {
                covers.insert((len, addr), origin);
                for n in first..first + (1u32 << (24 - len)) {
                    let best = best_len[n as usize];
                    if best == NONE || len >= best {
                        best_len[n as usize] = len;
                        origins[n as usize] = (origin % ips_common::origin::MAX) as u8;
                        sets(n, COVER);
                    }
                }
            }
        }
        for (cell, want) in self.origins.u8s().iter().zip(&origins) {
            if cell.load(Ordering::Relaxed) != *want {
                cell.store(*want, Ordering::Release);
            }
        }
        for (cell, want) in self.summary.u64s().iter().zip(&words) {
            if cell.load(Ordering::Relaxed) != *want {
                cell.store(*want, Ordering::Release);
            }
        }
        self.best_len = best_len;
        self.covers = covers;
    }

    /// What the index alone says of `addr`: the origin if a covering ban drops it, and whether
    /// the host hash and the trie would be asked.
    pub fn probe(&self, addr: [u8; 4]) -> (Option<u8>, bool, bool) {
        let n = u32::from_be_bytes(addr) >> 8;
        let bit = 1u64 << (n & 63);
        let has = |kind| self.word(n, kind).load(Ordering::Relaxed) & bit != 0;
        let cover = has(COVER).then(|| self.origins.u8s()[n as usize].load(Ordering::Relaxed));
        (cover, has(HOSTS), has(PART))
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
        let mut i = Slash24Index::in_memory().unwrap();
        i.add(&p("203.0.113.7"), 1);
        i.add(&p("198.51.100.128/25"), 2);
        assert_eq!(i.probe([203, 0, 113, 200]), (None, true, false));
        assert_eq!(i.probe([198, 51, 100, 1]), (None, false, true));
        assert_eq!(i.probe([203, 0, 114, 7]), (None, false, false));
    }

    #[test]
    fn covering_prefixes_drop_with_the_longest_origin() {
        let mut i = Slash24Index::in_memory().unwrap();
        i.add(&p("10.0.0.0/8"), 8);
        i.add(&p("10.1.2.0/24"), 9);
        i.add(&p("10.1.0.0/16"), 10);
        assert_eq!(i.probe([10, 1, 2, 3]).0, Some(9));
        assert_eq!(i.probe([10, 1, 3, 3]).0, Some(10));
        assert_eq!(i.probe([10, 200, 0, 1]).0, Some(8));
        assert_eq!(i.probe([11, 0, 0, 1]).0, None);
        // Removing the /16 hands its /24s back to the /8, but not the /24 it did not own.
        i.remove(&p("10.1.0.0/16"));
        assert_eq!(i.probe([10, 1, 3, 3]).0, Some(8));
        assert_eq!(i.probe([10, 1, 2, 3]).0, Some(9));
        // Removing the /8 clears everything but the /24.
        i.remove(&p("10.0.0.0/8"));
        assert_eq!(i.probe([10, 1, 3, 3]).0, None);
        assert_eq!(i.probe([10, 1, 2, 3]).0, Some(9));
    }

    #[test]
    fn re_adding_a_prefix_re_attributes_it() {
        let mut i = Slash24Index::in_memory().unwrap();
        i.add(&p("192.0.2.0/24"), 3);
        i.add(&p("192.0.2.0/24"), 4);
        assert_eq!(i.probe([192, 0, 2, 1]).0, Some(4));
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut i = Slash24Index::in_memory().unwrap();
        i.add(&p("192.0.2.0/24"), 3);
        i.remove(&p("192.0.3.0/24"));
        i.remove(&p("2001:db8::/32"));
        assert_eq!(i.probe([192, 0, 2, 1]).0, Some(3));
    }

    #[test]
    fn the_whole_space() {
        let mut i = Slash24Index::in_memory().unwrap();
        i.add(&p("0.0.0.0/0"), 5);
        assert_eq!(i.probe([255, 255, 255, 255]).0, Some(5));
        i.remove(&p("0.0.0.0/0"));
        assert_eq!(i.probe([1, 2, 3, 4]).0, None);
    }

    #[test]
    fn origin_bytes_sit_at_the_slash24_number() {
        let mut i = Slash24Index::in_memory().unwrap();
        // 0.0.1.0/24 is /24 number 1: byte 1 of the array.
        i.add(&p("0.0.1.0/24"), 7);
        assert_eq!(i.origins.u8s()[1].load(Ordering::Relaxed), 7);
        assert_eq!(i.origins.u8s()[0].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rebuild_matches_incremental_and_clears_stale_bits() {
        let bans = [
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("192.0.2.7", 3),
            ("198.51.100.0/26", 4),
        ];
        let mut inc = Slash24Index::in_memory().unwrap();
        for (b, o) in bans {
            inc.add(&p(b), o);
        }
        inc.add(&p("203.0.113.9"), 5);
        inc.remove(&p("203.0.113.9"));
        assert!(
            inc.probe([203, 0, 113, 9]).1,
            "host bit stays until a rebuild"
        );
        let mut fresh = Slash24Index::in_memory().unwrap();
        fresh.rebuild(bans.iter().map(|(b, o)| (p(b), *o)));
        inc.rebuild(bans.iter().map(|(b, o)| (p(b), *o)));
        for a in [
            [10, 1, 0, 1],
            [10, 9, 0, 1],
            [192, 0, 2, 1],
            [198, 51, 100, 200],
            [8, 8, 8, 8],
            [203, 0, 113, 9],
        ] {
            assert_eq!(inc.probe(a), fresh.probe(a), "{a:?}");
        }
        assert!(!inc.probe([203, 0, 113, 9]).1);
    }
}
