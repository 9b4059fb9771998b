//! A blocklist's entries as the store keeps them: one sorted snapshot per list (a compact blob
//! in SQLite, decoded in memory) under a lease, and a log of what each refresh added and
//! removed, from which the CrowdSec stream's deltas are read.
//!
//! A row per entry would make a refresh that changes 1% of a million random entries touch
//! most pages of the table and of each index; a snapshot is one blob of a few MB, rewritten.
use super::Origin;
use crate::prefix::Prefix;

/// One list in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct List {
    /// The list's origin.
    pub origin: Origin,
    /// The entries, sorted, without repeats.
    pub entries: Vec<Prefix>,
    /// When the lease ends (Unix ms): the entries are active until then.
    pub lease_ms: i64,
    /// When the list was first imported (Unix ms), shown as its entries' creation time.
    pub since_ms: i64,
}

impl List {
    /// True if `value` is an entry.
    pub fn contains(&self, value: &Prefix) -> bool {
        self.entries.binary_search(value).is_ok()
    }
}

/// Bytes per entry: family (4 or 6), length, address.
fn width(p: &Prefix) -> usize {
    if p.is_v4() { 6 } else { 18 }
}

/// The blob of `entries`: per entry the family (4 or 6), the length and the address bytes.
pub(crate) fn encode(entries: &[Prefix]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(width).sum());
    for p in entries {
        out.push(if p.is_v4() { 4 } else { 6 });
        out.push(p.prefix_len());
        match p.addr() {
            std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out
}

/// Reads a blob written by [`encode`].
pub(crate) fn decode(blob: &[u8]) -> Result<Vec<Prefix>, &'static str> {
    let mut out = Vec::with_capacity(blob.len() / 6);
    let mut rest = blob;
    while let [family, len, tail @ ..] = rest {
        let n = match family {
            4 => 4,
            6 => 16,
            _ => return Err("unknown address family in a list snapshot"),
        };
        if tail.len() < n {
            return Err("list snapshot cut short");
        }
        out.push(Prefix::from_octets(&tail[..n], *len)?);
        rest = &tail[n..];
    }
    if !rest.is_empty() {
        return Err("list snapshot cut short");
    }
    Ok(out)
}

/// A stable id for a list entry in the CrowdSec stream: list entries have no row, so the id is
/// a hash of the origin and value (FNV-1a) placed in [2^52, 2^53), above any row id and still
/// exact as a JSON number.
pub(crate) fn entry_id(origin_id: u32, p: &Prefix) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = origin_id
        .to_be_bytes()
        .into_iter()
        .chain([p.prefix_len()])
        .chain(p.octets());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((1u64 << 52) | (h & ((1u64 << 52) - 1))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn snapshots_round_trip_and_bad_blobs_are_errors() {
        let entries = vec![
            p("0.0.0.0/0"),
            p("1.2.3.4"),
            p("10.0.0.0/8"),
            p("2001:db8::/32"),
            p("2001:db8::1"),
        ];
        let blob = encode(&entries);
        assert_eq!(blob.len(), 3 * 6 + 2 * 18);
        assert_eq!(decode(&blob).unwrap(), entries);
        assert!(decode(&blob[..blob.len() - 1]).is_err());
        assert!(decode(&[5, 1, 0, 0, 0, 0]).is_err());
        assert!(decode(&[4, 33, 1, 2, 3, 4]).is_err());
        assert!(decode(&[]).unwrap().is_empty());
    }

    #[test]
    fn entry_ids_are_stable_distinct_and_json_safe() {
        let a = entry_id(16, &p("1.2.3.4"));
        assert_eq!(a, entry_id(16, &p("1.2.3.4")));
        assert_ne!(a, entry_id(17, &p("1.2.3.4")));
        assert_ne!(a, entry_id(16, &p("1.2.3.0/24")));
        for id in [a, entry_id(0, &p("::/0"))] {
            assert!((1i64 << 52..1i64 << 53).contains(&id));
        }
    }
}
