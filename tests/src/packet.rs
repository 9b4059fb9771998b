//! Crafted Ethernet frames carrying a test id, so a receiver can tell which got through.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MARK: &[u8; 8] = b"IPSTEST!";

/// A frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    /// VLAN tags, outermost first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    /// Source address (an IPv4-mapped IPv6 address makes an IPv6 packet).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Test id.
    pub id: u32,
    /// IPv4 only: option words (IHL = 5 + options).
    pub ipv4_options: u8,
    /// IPv4 only: override IHL (to make a malformed header).
    pub ihl_override: Option<u8>,
    /// IPv4 only: fragment offset in 8-byte units and the more-fragments flag.
    pub fragment: Option<(u16, bool)>,
    /// IPv6 only: put a hop-by-hop and a destination-options header before UDP.
    pub ipv6_ext: bool,
}

impl Frame {
    /// A UDP packet from `src` to a destination of the same family.
    pub fn udp(src: &str, id: u32) -> Self {
        let src: IpAddr = src.parse().expect("test address");
        let dst = match src {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            IpAddr::V6(_) => IpAddr::V6("fd77::1".parse::<Ipv6Addr>().expect("v6")),
        };
        Self {
            vlans: Vec::new(),
            src,
            dst,
            id,
            ipv4_options: 0,
            ihl_override: None,
            fragment: None,
            ipv6_ext: false,
        }
    }

    /// Adds a VLAN tag (outermost first).
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.vlans.push((tpid, vid));
        self
    }

    /// The wire bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0x77, 0x02]);
        for (tpid, vid) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        let mut payload = Vec::new();
        payload.extend_from_slice(MARK);
        payload.extend_from_slice(&self.id.to_be_bytes());
        let mut udp = Vec::new();
        udp.extend_from_slice(&40000u16.to_be_bytes());
        udp.extend_from_slice(&9u16.to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&payload);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let ihl = self.ihl_override.unwrap_or(5 + self.ipv4_options);
                let hlen = (5 + self.ipv4_options) as usize * 4;
                let total = (hlen + udp.len()) as u16;
                let mut h = vec![0x40 | (ihl & 0x0f), 0];
                h.extend_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&(self.id as u16).to_be_bytes());
                let (off, mf) = self.fragment.unwrap_or((0, false));
                let flags = off | if mf { 0x2000 } else { 0 };
                h.extend_from_slice(&flags.to_be_bytes());
                h.extend_from_slice(&[64, 17, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                for _ in 0..self.ipv4_options {
                    h.extend_from_slice(&[1, 1, 1, 1]); // NOP options
                }
                let sum = checksum(&h);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (src, dst) => {
                let s = match src {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                };
                let d = match dst {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                };
                f.extend_from_slice(&0x86DDu16.to_be_bytes());
                let mut ext = Vec::new();
                let mut next = 17u8;
                if self.ipv6_ext {
                    // Hop-by-hop (0) -> destination options (60) -> UDP, each 8 bytes of PadN.
                    ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
                    ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
                    next = 0;
                }
                let plen = (ext.len() + udp.len()) as u16;
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&plen.to_be_bytes());
                f.extend_from_slice(&[next, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                f.extend_from_slice(&ext);
            }
        }
        f.extend_from_slice(&udp);
        f
    }
}

fn checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The test id in a received frame, if it is one of ours.
pub fn find_id(frame: &[u8]) -> Option<u32> {
    let at = frame.windows(MARK.len()).position(|w| w == MARK)?;
    let id = frame.get(at + MARK.len()..at + MARK.len() + 4)?;
    Some(u32::from_be_bytes(id.try_into().ok()?))
}

/// An ARP request (not IP).
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x77, 0x02, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x77, 0x02, 10, 77, 0, 2]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 77, 0, 1]);
    f
}
