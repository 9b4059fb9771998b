//! The IPv4 host table's writer (see [`ips_common::hosttab`] for the layout and the update
//! protocol): the single-address bans of the hash map again, in buckets of one cache line,
//! written through a shared mapping of the `BPF_F_MMAPABLE` array.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering},
};

use ips_common::hosttab::{self, OVERFLOW, SLOTS};

use super::summary::Region;

/// Bytes of a bucket: 20 two-byte tags, 20 origin bytes, the flags word.
const BUCKET: usize = 64;
const ORIGINS_BYTE: usize = 2 * SLOTS;
/// The flags, as the bucket's 16th `u32`.
const FLAGS: usize = 15;

/// The table, mapped.
pub struct HostTable {
    region: Region,
    bits: u32,
}

impl HostTable {
    /// The table in `region` (`1 << bits` buckets), made to hold exactly `bans` (address as a
    /// big-endian `u32` -> origin): buckets that differ are rewritten, under their `OVERFLOW`
    /// flag.
    pub fn new(region: Region, bits: u32, bans: &HashMap<u32, u8>) -> Self {
        let mut t = Self { region, bits };
        t.sync(bans);
        t
    }

    fn buckets(&self) -> usize {
        1 << self.bits
    }

    fn flags(&self, b: usize) -> &AtomicU32 {
        &self.region.u32s()[b * BUCKET / 4 + FLAGS]
    }

    fn tags(&self, b: usize) -> &[AtomicU16] {
        &self.region.u16s()[b * BUCKET / 2..b * BUCKET / 2 + SLOTS]
    }

    fn origin(&self, b: usize, slot: usize) -> &AtomicU8 {
        &self.region.u8s()[b * BUCKET + ORIGINS_BYTE + slot]
    }

    /// The bucket and the tag of `key`.
    fn place(&self, key: u32) -> (usize, u16) {
        let (b, tag) = hosttab::place(key, self.bits);
        (b as usize, tag)
    }

    /// Adds or re-attributes `key` (after the hash map has it). False when its bucket was full:
    /// the bucket is then flagged and the hash map answers for it.
    pub fn insert(&mut self, key: u32, origin: u8) -> bool {
        let (b, tag) = self.place(key);
        let tags = self.tags(b);
        if let Some(slot) = (0..SLOTS).find(|s| tags[*s].load(Ordering::Relaxed) == tag) {
            self.origin(b, slot).store(origin, Ordering::Release);
            return true;
        }
        match (0..SLOTS).find(|s| tags[*s].load(Ordering::Relaxed) == 0) {
            Some(slot) => {
                self.origin(b, slot).store(origin, Ordering::Release);
                tags[slot].store(tag, Ordering::Release);
                true
            }
            None => {
                self.flags(b).fetch_or(OVERFLOW, Ordering::Release);
                false
            }
        }
    }

    /// Removes `key` (before the hash map loses it).
    pub fn remove(&mut self, key: u32) {
        let (b, tag) = self.place(key);
        for t in self.tags(b) {
            if t.load(Ordering::Relaxed) == tag {
                t.store(0, Ordering::Release);
            }
        }
    }

    /// Makes the table hold exactly `bans`, clearing overflow flags that are no longer needed.
    pub fn sync(&mut self, bans: &HashMap<u32, u8>) {
        let mut want: Vec<Vec<(u16, u8)>> = vec![Vec::new(); self.buckets()];
        for (&key, &origin) in bans {
            let (b, tag) = self.place(key);
            want[b].push((tag, origin));
        }
        for (b, entries) in want.iter_mut().enumerate() {
            entries.sort_unstable();
            let overflow = entries.len() > SLOTS;
            let (tags, flags) = (self.tags(b), self.flags(b));
            let same = (0..SLOTS).all(|s| {
                let tag = tags[s].load(Ordering::Relaxed);
                match entries.get(s) {
                    Some(&(t, o)) => tag == t && self.origin(b, s).load(Ordering::Relaxed) == o,
                    None => tag == 0,
                }
            }) && (flags.load(Ordering::Relaxed) & OVERFLOW != 0) == overflow;
            if same {
                continue;
            }
            // Readers ask the hash map while the slots change.
            flags.fetch_or(OVERFLOW, Ordering::Release);
            for (s, slot) in tags.iter().enumerate() {
                match entries.get(s) {
                    Some(&(t, o)) => {
                        slot.store(0, Ordering::Release);
                        self.origin(b, s).store(o, Ordering::Release);
                        slot.store(t, Ordering::Release);
                    }
                    None => slot.store(0, Ordering::Release),
                }
            }
            if !overflow {
                flags.fetch_and(!OVERFLOW, Ordering::Release);
            }
        }
    }

    /// What a lookup of `key` finds, as the program does it. For tests.
    pub fn lookup(&self, key: u32) -> Probe {
        let (b, tag) = self.place(key);
        if let Some(s) = (0..SLOTS).find(|s| self.tags(b)[*s].load(Ordering::Acquire) == tag) {
            return Probe::Banned(self.origin(b, s).load(Ordering::Acquire));
        }
        if self.flags(b).load(Ordering::Acquire) & OVERFLOW != 0 {
            return Probe::AskTheHash;
        }
        Probe::NotBanned
    }
}

/// What one bucket says of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// In a slot, with this origin.
    Banned(u8),
    /// Not in the bucket, which did not overflow.
    NotBanned,
    /// Not in the bucket, which overflowed: the hash map knows.
    AskTheHash,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that fall in the same bucket as `first` in a table of `bits`.
    fn same_bucket(bits: u32, first: u32, n: usize) -> Vec<u32> {
        let b = hosttab::bucket(first, bits);
        (first..)
            .filter(|k| hosttab::bucket(*k, bits) == b)
            .take(n)
            .collect()
    }

    #[test]
    fn inserts_overflows_removes_and_syncs() {
        let bits = hosttab::MIN_BITS;
        let region = Region::anonymous(BUCKET << bits).unwrap();
        let mut t = HostTable::new(region, bits, &HashMap::new());
        let keys = same_bucket(bits, 0x2d10_0000, SLOTS + 2);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.insert(*k, i as u8), i < SLOTS, "slot {i}");
        }
        assert_eq!(t.lookup(keys[0]), Probe::Banned(0));
        assert_eq!(
            t.lookup(keys[SLOTS]),
            Probe::AskTheHash,
            "overflowed: ask the hash"
        );
        // Re-attribution in place.
        assert!(t.insert(keys[1], 9));
        assert_eq!(t.lookup(keys[1]), Probe::Banned(9));
        t.remove(keys[0]);
        assert_eq!(
            t.lookup(keys[0]),
            Probe::AskTheHash,
            "the flag stays until a sync"
        );
        // A sync to the bans that remain fits them in the bucket and clears the flag.
        let left: HashMap<u32, u8> = keys[1..=SLOTS].iter().map(|k| (*k, 3)).collect();
        t.sync(&left);
        for k in &keys[1..=SLOTS] {
            assert_eq!(t.lookup(*k), Probe::Banned(3));
        }
        assert_eq!(t.lookup(keys[0]), Probe::NotBanned);
        assert_eq!(t.lookup(keys[SLOTS + 1]), Probe::NotBanned);
        // Address 0 is an address like any other (its tag is not 0).
        assert!(t.insert(0, 1));
        assert_eq!(t.lookup(0), Probe::Banned(1));
    }

    #[test]
    fn a_bucket_and_a_tag_name_one_address() {
        // Every address of a /12 and a spread of the rest: no two share a (bucket, tag).
        let addrs: std::collections::HashSet<u32> = (0x2d10_0000u32..0x2d20_0000)
            .chain((0..1u32 << 20).map(|i| i.wrapping_mul(4093)))
            .collect();
        for bits in [hosttab::MIN_BITS, 20, hosttab::MAX_BITS] {
            let mut places = std::collections::HashSet::new();
            for &a in &addrs {
                let (b, tag) = hosttab::place(a, bits);
                assert!(b < 1 << bits && tag & hosttab::USED != 0);
                places.insert((b, tag));
            }
            assert_eq!(places.len(), addrs.len(), "bits {bits}");
        }
    }
}
