//! The XDP program's contract, restated in plain Rust: what it must do with a frame, given
//! which sources are banned. Tests and the `xdp` fuzz target run the real program through
//! `BPF_PROG_RUN` and compare its verdict with this one; nothing in the daemon uses it.
//!
//! The contract: read Ethernet, up to two VLAN tags (802.1Q or 802.1ad), then the IPv4 or IPv6
//! header; anything else passes. A header that is cut short or says an impossible version or
//! IPv4 header length passes as malformed (fail open). The source of an IPv6 packet that is an
//! IPv4-mapped address is checked as that IPv4 address. A banned source is dropped.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;

/// What the program does with a frame: its return value and the counter it moves (one of
/// [`ips_common::counters::NAMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// [`XDP_PASS`] or [`XDP_DROP`].
    pub action: u32,
    /// The counter that moves.
    pub counter: &'static str,
}

const fn pass(counter: &'static str) -> Verdict {
    Verdict {
        action: XDP_PASS,
        counter,
    }
}

/// The source address the program checks, or the verdict it reaches before one.
pub fn source(frame: &[u8]) -> Result<IpAddr, Verdict> {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let malformed = pass("malformed");
    let mut proto = be16(12).ok_or(malformed)?;
    let mut off = 14;
    for _ in 0..2 {
        if proto != 0x8100 && proto != 0x88A8 {
            break;
        }
        proto = be16(off + 2).ok_or(malformed)?;
        off += 4;
    }
    match proto {
        0x0800 => {
            let ip = frame.get(off..off + 20).ok_or(malformed)?;
            if ip[0] >> 4 != 4 || usize::from(ip[0] & 0x0f) * 4 < 20 {
                return Err(malformed);
            }
            let a: [u8; 4] = [ip[12], ip[13], ip[14], ip[15]];
            Ok(IpAddr::V4(Ipv4Addr::from(a)))
        }
        0x86DD => {
            let ip = frame.get(off..off + 40).ok_or(malformed)?;
            if ip[0] >> 4 != 6 {
                return Err(malformed);
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let v6 = Ipv6Addr::from(a);
            Ok(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => Err(pass("non_ip")),
    }
}

/// What the program must do with `frame` when `banned` says which sources are banned (and
/// nothing is allowlisted).
pub fn verdict(frame: &[u8], banned: impl Fn(IpAddr) -> bool) -> Verdict {
    let src = match source(frame) {
        Ok(src) => src,
        Err(v) => return v,
    };
    let counter = match (banned(src), src.is_ipv4()) {
        (true, true) => "v4_dropped",
        (true, false) => "v6_dropped",
        (false, true) => return pass("v4_passed"),
        (false, false) => return pass("v6_passed"),
    };
    Verdict {
        action: XDP_DROP,
        counter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tagged_and_mapped_frames() {
        let banned = |a: IpAddr| a == IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(verdict(&[0; 13], banned).counter, "malformed");
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[12..16].copy_from_slice(&[203, 0, 113, 7]);
        f.extend_from_slice(&ip);
        assert_eq!(verdict(&f, banned).action, XDP_DROP);
        f[18] = 0x44;
        assert_eq!(verdict(&f, banned).counter, "malformed");
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xDD]);
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[18..24].copy_from_slice(&[0xff, 0xff, 203, 0, 113, 7]);
        f.extend_from_slice(&ip);
        assert_eq!(verdict(&f, banned).counter, "v4_dropped");
        f.truncate(40);
        assert_eq!(verdict(&f, banned).counter, "malformed");
        assert_eq!(verdict(&[0; 20], banned).counter, "non_ip");
    }
}
