//! The records of [`ips_common::maps::PART_V4`]: for each IPv4 /24 that /25 to /31 bans touch,
//! which of its addresses they ban and the origin of the longest ban over each. Pure, so that
//! the records can be checked without a kernel; [`super::KernelMaps`] writes them.
use ips_common::PartV4;

use crate::prefix::Prefix;

/// True for the bans a record holds: IPv4 /25 to /31 (each inside one /24).
pub fn is_part(p: &Prefix) -> bool {
    p.is_v4() && (25..=31).contains(&p.prefix_len())
}

/// The /24 number (address `>> 8`) a part ban lies in.
pub fn slash24(p: &Prefix) -> u32 {
    let o = p.octets();
    u32::from_be_bytes([o[0], o[1], o[2], o[3]]) >> 8
}

/// The record of one /24 from its part bans (prefix, origin id).
pub fn record(bans: &[(Prefix, u32)]) -> PartV4 {
    let mut rec = PartV4::default();
    let mut best = [0u8; 256];
    for (p, origin) in bans {
        let size = 1usize << (32 - p.prefix_len());
        let first = usize::from(p.octets()[3]) & !(size - 1);
        for (i, len) in best.iter_mut().enumerate().skip(first).take(size) {
            // The longest ban names the origin.
            if p.prefix_len() > *len {
                *len = p.prefix_len();
                rec.banned[i >> 6] |= 1 << (i & 63);
                rec.origins[i] = (origin % ips_common::origin::MAX) as u8;
            }
        }
    }
    rec
}

/// The record as the bytes the map stores.
pub fn bytes(rec: &PartV4) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of::<PartV4>());
    for w in rec.banned {
        out.extend_from_slice(&w.to_ne_bytes());
    }
    out.extend_from_slice(&rec.origins);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_ban_names_each_address() {
        let p = |s: &str| s.parse::<Prefix>().expect("prefix");
        let bans = [(p("192.0.2.128/25"), 3), (p("192.0.2.192/27"), 9)];
        assert!(
            bans.iter()
                .all(|(b, _)| is_part(b) && slash24(b) == 0x00c0_0002)
        );
        assert!(!is_part(&p("192.0.2.0/24")) && !is_part(&p("192.0.2.1/32")));
        let rec = record(&bans);
        let banned = |i: usize| rec.banned[i >> 6] & (1 << (i & 63)) != 0;
        assert!((0..128).all(|i| !banned(i)));
        assert!((128..256).all(banned));
        assert_eq!(rec.origins[128], 3);
        assert_eq!(rec.origins[191], 3);
        assert_eq!(rec.origins[192], 9);
        assert_eq!(rec.origins[223], 9);
        assert_eq!(rec.origins[224], 3);
        assert_eq!(bytes(&rec).len(), 288);
        assert_eq!(record(&[]), PartV4::default());
    }
}
