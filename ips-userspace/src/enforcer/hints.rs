//! The program's skip hints ([`ips_common::hints`]) computed from what the maps hold. Pure, so
//! that what the enforcer writes can be checked without a kernel.
use ips_common::hints::{self, ALLOW_NONE_WORDS};

use crate::prefix::Prefix;

/// The words of [`ips_common::maps::ALLOW_NONE`] for an allowlist: a bit set for every IPv4 /16
/// and every IPv6 first-16-bits value that no entry of `allowlist` overlaps.
pub fn allow_none(allowlist: &[Prefix]) -> Vec<u64> {
    let mut words = vec![u64::MAX; ALLOW_NONE_WORDS as usize];
    for p in allowlist {
        let o = p.octets();
        let first = u32::from(u16::from_be_bytes([o[0], o[1]]));
        // The values of the first 16 bits the prefix spans.
        let span = 1u32 << 16u32.saturating_sub(u32::from(p.prefix_len()));
        let first = first & !(span - 1);
        for n in first..first + span {
            let [a, b] = (n as u16).to_be_bytes();
            let (word, bit) = if p.is_v4() {
                hints::allow_v4(a, b)
            } else {
                hints::allow_v6(a, b)
            };
            words[word as usize] &= !bit;
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn touched(words: &[u64], addr: &str) -> bool {
        let ip: IpAddr = addr.parse().expect("address");
        let (word, bit) = match ip {
            IpAddr::V4(a) => {
                let o = a.octets();
                hints::allow_v4(o[0], o[1])
            }
            IpAddr::V6(a) => {
                let o = a.octets();
                hints::allow_v6(o[0], o[1])
            }
        };
        words[word as usize] & bit == 0
    }

    #[test]
    fn every_address_an_entry_holds_is_touched_and_nothing_else() {
        let list: Vec<Prefix> = ["127.0.0.0/8", "192.0.2.7/32", "10.1.0.0/17", "::1/128"]
            .iter()
            .map(|s| s.parse().expect("prefix"))
            .collect();
        let w = allow_none(&list);
        for hit in [
            "127.0.0.1",
            "127.255.255.255",
            "192.0.2.7",
            "192.0.200.1", // same /16: the hint is coarser than the entry
            "10.1.127.1",
            "::1",
            "0:1::",
        ] {
            assert!(touched(&w, hit), "{hit}");
        }
        for miss in [
            "126.255.0.1",
            "128.0.0.1",
            "192.1.2.7",
            "10.2.0.1",
            "2001:db8::1",
            "1::",
        ] {
            assert!(!touched(&w, miss), "{miss}");
        }
        // IPv4 and IPv6 halves apart: 127.0.0.0/8 says nothing of 7f00::/8.
        assert!(!touched(&w, "7f00::1"));
        // An empty allowlist touches nothing; everything touches with 0.0.0.0/0 and ::/0.
        assert!(allow_none(&[]).iter().all(|w| *w == u64::MAX));
        let all = allow_none(&["0.0.0.0/0".parse().expect("p"), "::/0".parse().expect("p")]);
        assert!(all.iter().all(|w| *w == 0));
    }
}
