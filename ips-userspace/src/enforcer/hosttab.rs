//! The IPv4 host table's writer (see [`ips_common::hosttab`] for the layout and the update
//! protocol): the single-address bans of the hash map again, in buckets of one cache line,
//! written through a shared mapping of the `BPF_F_MMAPABLE` array.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU8, AtomicU32, Ordering},
};

use ips_common::hosttab::{self, OVERFLOW, SLOTS};

use super::summary::Region;

/// Bytes of a bucket.
const BUCKET: usize = 64;
/// `u32` words of a bucket: 12 keys, 3 words of origin bytes, the flags.
const KEYS: usize = 0;
const ORIGINS_BYTE: usize = 48;
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

    fn words(&self, b: usize) -> &[AtomicU32] {
        &self.region.u32s()[b * BUCKET / 4..(b + 1) * BUCKET / 4]
    }

    fn origin(&self, b: usize, slot: usize) -> &AtomicU8 {
        &self.region.u8s()[b * BUCKET + ORIGINS_BYTE + slot]
    }

    fn bucket_of(&self, key: u32) -> usize {
        hosttab::bucket(key, self.bits) as usize
    }

    /// Adds or re-attributes `key` (after the hash map has it). False when its bucket was full:
    /// the bucket is then flagged and the hash map answers for it.
    pub fn insert(&mut self, key: u32, origin: u8) -> bool {
        let b = self.bucket_of(key);
        let w = self.words(b);
        if key == 0 {
            w[FLAGS].fetch_or(OVERFLOW, Ordering::Release);
            return false;
        }
        if let Some(slot) = (0..SLOTS).find(|s| w[KEYS + s].load(Ordering::Relaxed) == key) {
            self.origin(b, slot).store(origin, Ordering::Release);
            return true;
        }
        match (0..SLOTS).find(|s| w[KEYS + s].load(Ordering::Relaxed) == 0) {
            Some(slot) => {
                self.origin(b, slot).store(origin, Ordering::Release);
                w[KEYS + slot].store(key, Ordering::Release);
                true
            }
            None => {
                w[FLAGS].fetch_or(OVERFLOW, Ordering::Release);
                false
            }
        }
    }

    /// Removes `key` (before the hash map loses it).
    pub fn remove(&mut self, key: u32) {
        if key == 0 {
            return;
        }
        let w = self.words(self.bucket_of(key));
        for s in 0..SLOTS {
            if w[KEYS + s].load(Ordering::Relaxed) == key {
                w[KEYS + s].store(0, Ordering::Release);
            }
        }
    }

    /// Makes the table hold exactly `bans`, clearing overflow flags that are no longer needed.
    pub fn sync(&mut self, bans: &HashMap<u32, u8>) {
        let mut want: Vec<Vec<(u32, u8)>> = vec![Vec::new(); self.buckets()];
        let mut zero = None;
        for (&key, &origin) in bans {
            if key == 0 {
                zero = Some(self.bucket_of(0));
                continue;
            }
            want[self.bucket_of(key)].push((key, origin));
        }
        for (b, entries) in want.iter_mut().enumerate() {
            entries.sort_unstable();
            let overflow = entries.len() > SLOTS || zero == Some(b);
            let w = self.words(b);
            let same = (0..SLOTS).all(|s| {
                let key = w[KEYS + s].load(Ordering::Relaxed);
                match entries.get(s) {
                    Some(&(k, o)) => key == k && self.origin(b, s).load(Ordering::Relaxed) == o,
                    None => key == 0,
                }
            }) && (w[FLAGS].load(Ordering::Relaxed) & OVERFLOW != 0) == overflow;
            if same {
                continue;
            }
            // Readers ask the hash map while the slots change.
            w[FLAGS].fetch_or(OVERFLOW, Ordering::Release);
            for s in 0..SLOTS {
                match entries.get(s) {
                    Some(&(k, o)) => {
                        w[KEYS + s].store(0, Ordering::Release);
                        self.origin(b, s).store(o, Ordering::Release);
                        w[KEYS + s].store(k, Ordering::Release);
                    }
                    None => w[KEYS + s].store(0, Ordering::Release),
                }
            }
            if overflow {
                continue;
            }
            w[FLAGS].fetch_and(!OVERFLOW, Ordering::Release);
        }
    }

    /// What a lookup of `key` finds, as the program does it. For tests.
    pub fn lookup(&self, key: u32) -> Probe {
        let b = self.bucket_of(key);
        let w = self.words(b);
        if key != 0
            && let Some(s) = (0..SLOTS).find(|s| w[KEYS + s].load(Ordering::Acquire) == key)
        {
            return Probe::Banned(self.origin(b, s).load(Ordering::Acquire));
        }
        if key == 0 || w[FLAGS].load(Ordering::Acquire) & OVERFLOW != 0 {
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
        let bits = 4;
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
        // Address 0 never goes in a slot.
        assert!(!t.insert(0, 1));
        assert_eq!(t.lookup(0), Probe::AskTheHash);
    }
}
