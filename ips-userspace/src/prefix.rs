//! [`Prefix`]: a banned or allowed network, normalized so that one network has one spelling.
//!
//! `203.0.113.7` is `203.0.113.7/32`; `203.0.113.7/24` is `203.0.113.0/24` (host bits cleared);
//! `::ffff:203.0.113.7` is the IPv4 address `203.0.113.7/32`, as the XDP program matches it.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Private, loopback, link-local and CGNAT ranges: never banned by detection (unless
/// `profiles.allow_private = false`) and never taken from a blocklist.
pub const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];

/// [`PRIVATE_RANGES`] parsed.
pub fn private_ranges() -> impl Iterator<Item = Prefix> {
    PRIVATE_RANGES.iter().filter_map(|s| s.parse().ok())
}

/// A normalized IPv4 or IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(IpNet);

/// Why a string is not an address or prefix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid address or prefix {input:?}: {reason}")]
pub struct PrefixError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Prefix {
    /// Builds a prefix from an address and a length, clearing host bits and turning an
    /// IPv4-mapped IPv6 network (`::ffff:0:0/96` and longer) into IPv4.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, &'static str> {
        let net = match addr {
            IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, len).map_err(|_| "IPv4 length over 32")?),
            IpAddr::V6(a) => {
                if let Some(v4) = a.to_ipv4_mapped()
                    && len >= 96
                {
                    IpNet::V4(Ipv4Net::new(v4, len - 96).map_err(|_| "length over 128")?)
                } else {
                    IpNet::V6(Ipv6Net::new(a, len).map_err(|_| "IPv6 length over 128")?)
                }
            }
        };
        Ok(Self(net.trunc()))
    }

    /// An IPv4 network from its address as an integer and a length of at most 32 (host bits
    /// cleared).
    pub(crate) fn v4(addr: u32, len: u8) -> Self {
        let len = len.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        // A length of at most 32 is always valid.
        let net = Ipv4Net::new(Ipv4Addr::from(addr & mask), len).unwrap_or_default();
        Self(IpNet::V4(net))
    }

    /// A single address (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => Self(IpNet::V4(Ipv4Net::from(a))),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Self(IpNet::V4(Ipv4Net::from(v4))),
                None => Self(IpNet::V6(Ipv6Net::from(a))),
            },
        }
    }

    /// The network.
    pub const fn net(&self) -> IpNet {
        self.0
    }

    /// The first address.
    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// True for /32 and /128: stored in the kernel's exact-match hash maps.
    pub fn is_host(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// True for IPv4.
    pub const fn is_v4(&self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }

    /// CrowdSec's scope name: `Ip` for a single address, `Range` otherwise.
    pub fn scope(&self) -> &'static str {
        if self.is_host() { "Ip" } else { "Range" }
    }

    /// True if `other` lies wholly inside this prefix.
    pub fn contains(&self, other: &Prefix) -> bool {
        self.0.contains(&other.0)
    }

    /// The address bytes in network order (4 or 16).
    pub fn octets(&self) -> Vec<u8> {
        match self.0 {
            IpNet::V4(n) => n.network().octets().to_vec(),
            IpNet::V6(n) => n.network().octets().to_vec(),
        }
    }

    /// The last address's bytes in network order.
    pub fn last_octets(&self) -> Vec<u8> {
        match self.0 {
            IpNet::V4(n) => n.broadcast().octets().to_vec(),
            IpNet::V6(n) => n.broadcast().octets().to_vec(),
        }
    }

    /// Rebuilds a prefix from the bytes [`Prefix::octets`] gives and a length.
    pub fn from_octets(bytes: &[u8], len: u8) -> Result<Self, &'static str> {
        let addr = match bytes.len() {
            4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(bytes);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return Err("address is neither 4 nor 16 bytes"),
        };
        Self::new(addr, len)
    }
}

/// `a.b.c.d` or `a.b.c.d/len` in its plain spelling (no leading zeros) at the start of `s`:
/// the bulk of every blocklist, read in one pass without the general parser. Returns the
/// address, the length and how many bytes it took; reading stops at the first byte that cannot
/// continue it. `None` when the start is not such an address (the general parser decides).
pub(crate) fn parse_v4_at(s: &[u8]) -> Option<(u32, u8, usize)> {
    let (mut addr, mut n, mut digits, mut dots) = (0u32, 0u32, 0u32, 0u32);
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'0'..=b'9' => {
                // No leading zeros ("01" is not an octet to std's parser either).
                if digits == 1 && n == 0 || digits == 3 {
                    return None;
                }
                n = n * 10 + u32::from(c - b'0');
                digits += 1;
            }
            b'.' if dots < 3 && digits > 0 && n <= 255 => {
                addr = addr << 8 | n;
                (n, digits, dots) = (0, 0, dots + 1);
            }
            _ => break,
        }
        i += 1;
    }
    if dots != 3 || digits == 0 || n > 255 {
        return None;
    }
    let addr = addr << 8 | n;
    if s.get(i) != Some(&b'/') {
        return Some((addr, 32, i));
    }
    let len = match s[i + 1..] {
        [d, e, ..] if (b'1'..=b'3').contains(&d) && e.is_ascii_digit() => {
            if s.get(i + 3).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            ((d - b'0') * 10 + (e - b'0'), 3)
        }
        [d, ..] if d.is_ascii_digit() => {
            if s.get(i + 2).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            (d - b'0', 2)
        }
        _ => return None,
    };
    (len.0 <= 32).then_some((addr, len.0, i + len.1))
}

/// [`parse_v4_at`] over the whole of `s`.
pub(crate) fn parse_v4(s: &[u8]) -> Option<(u32, u8)> {
    parse_v4_at(s).and_then(|(a, l, n)| (n == s.len()).then_some((a, l)))
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let parsed = match parse_v4(t.as_bytes()) {
            Some((addr, len)) => Ok(Prefix::v4(addr, len)),
            None => parse_general(t),
        };
        parsed.map_err(|reason| PrefixError {
            input: s.to_owned(),
            reason,
        })
    }
}

fn parse_general(t: &str) -> Result<Prefix, &'static str> {
    if t.is_empty() {
        return Err("empty");
    }
    match t.split_once('/') {
        None => t
            .parse::<IpAddr>()
            .map(Prefix::host)
            .map_err(|_| "not an IPv4 or IPv6 address"),
        Some((addr, len)) => {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| "not an IPv4 or IPv6 address before '/'")?;
            let len: u8 = len.parse().map_err(|_| "prefix length is not a number")?;
            Prefix::new(addr, len)
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn single_addresses_are_hosts() {
        assert!(p("203.0.113.7").is_host());
        assert_eq!(p("203.0.113.7").to_string(), "203.0.113.7");
        assert_eq!(p("203.0.113.7/32"), p("203.0.113.7"));
        assert!(p("2001:db8::1").is_host());
        assert_eq!(p("2001:db8::1/128").scope(), "Ip");
    }

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(p("203.0.113.7/24").to_string(), "203.0.113.0/24");
        assert_eq!(p("2001:db8:1:2:3::9/64").to_string(), "2001:db8:1:2::/64");
        assert_eq!(p("0.0.0.0/0").prefix_len(), 0);
    }

    #[test]
    fn v4_mapped_becomes_v4() {
        assert_eq!(p("::ffff:198.51.100.7"), p("198.51.100.7"));
        assert_eq!(p("::ffff:198.51.100.0/120"), p("198.51.100.0/24"));
        assert!(!p("::ffff:0:0/95").is_v4());
    }

    #[test]
    fn bad_input_is_an_error_that_names_it() {
        for bad in [
            "",
            "300.1.1.1",
            "1.2.3.4/33",
            "2001:db8::/129",
            "1.2.3.4/x",
            "example.com",
        ] {
            let e = bad.parse::<Prefix>().unwrap_err();
            assert_eq!(e.input, bad);
        }
    }

    #[test]
    fn the_ipv4_fast_path_agrees_with_the_general_parser() {
        for s in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0/0",
            "1.2.3.4/32",
            "10.1.2.3/8",
            "01.2.3.4",
            "1.2.3.4/08",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4/",
            "1..3.4",
            "256.1.1.1",
            "1.2.3.4/33",
            "1.2.3.4/3/2",
            "1.2.3.+4",
            "1.2.3.4 ",
            "1.2.3.4/0",
            "1.2.3.4/00",
            "1.2.3.4/123",
            "1.2.3.1000",
            "0.0.0.0",
            "10.0.0.0/7",
            "1.2.3.",
            ".1.2.3",
            "1.2.3.4/5x",
            "1.2.3.4/",
            "255.255.255.256",
            "1.2.3.4a",
        ] {
            let fast = parse_v4(s.as_bytes()).map(|(a, l)| Prefix::v4(a, l));
            if let Some(f) = fast {
                assert_eq!(Ok(f), parse_general(s), "{s}");
            }
            assert_eq!(
                s.parse::<Prefix>().ok(),
                parse_general(s.trim()).ok(),
                "{s}"
            );
        }
        assert!(parse_v4(b"1.2.3.4/24").is_some());
        assert!(parse_v4(b"01.2.3.4").is_none());
        // Reading stops where the address does.
        assert_eq!(parse_v4_at(b"1.2.3.4\n5"), Some((0x0102_0304, 32, 7)));
        assert_eq!(
            parse_v4_at(b"1.2.3.0/24 ; SBL1"),
            Some((0x0102_0300, 24, 10))
        );
        assert_eq!(parse_v4_at(b"1.2.3.4/245"), None);
        assert_eq!(parse_v4_at(b"1.2.3.4/3x"), Some((0x0102_0304, 3, 9)));
        assert_eq!(parse_v4_at(b"1.2.3"), None);
    }

    #[test]
    fn octets_round_trip() {
        for s in ["10.1.2.0/24", "2001:db8::/32", "192.0.2.1"] {
            let a = p(s);
            assert_eq!(Prefix::from_octets(&a.octets(), a.prefix_len()).unwrap(), a);
        }
    }

    #[test]
    fn last_address() {
        assert_eq!(p("10.1.2.0/23").last_octets(), vec![10, 1, 3, 255]);
        assert_eq!(p("10.1.2.3").last_octets(), vec![10, 1, 2, 3]);
        assert_eq!(p("2001:db8::/127").last_octets()[15], 1);
    }

    #[test]
    fn containment() {
        assert!(p("203.0.113.0/24").contains(&p("203.0.113.9")));
        assert!(!p("203.0.113.0/24").contains(&p("203.0.114.9")));
        assert!(!p("203.0.113.0/24").contains(&p("2001:db8::1")));
    }
}
