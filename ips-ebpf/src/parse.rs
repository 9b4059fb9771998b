//! Finding a packet's source address: Ethernet, up to two VLAN tags (802.1Q, 802.1ad), then
//! IPv4 or IPv6. An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`) is reported as IPv4.
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

/// A packet's source address.
pub enum Source {
    /// IPv4, or an IPv4-mapped IPv6 address.
    V4([u8; 4]),
    /// IPv6.
    V6([u8; 16]),
}

/// Why no source was found.
pub enum Skip {
    /// Not IP: ARP, LLDP, more than two VLAN tags, ...
    NonIp,
    /// Headers cut short or inconsistent.
    Malformed,
}

/// The packet's bytes: from `start` to `end` (`data` and `data_end` of an XDP or TC context).
#[derive(Clone, Copy)]
pub struct Packet {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// Returns a pointer to a `T` at `offset` into the packet, or `Malformed` if it does not fit.
#[inline(always)]
fn ptr_at<T>(ctx: &Packet, offset: usize) -> Result<*const T, Skip> {
    let start = ctx.start;
    let end = ctx.end;
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Skip::Malformed);
    }
    Ok((start + offset) as *const T)
}

/// Reads the source address of the packet in `ctx`.
#[inline(always)]
pub fn source(ctx: &Packet) -> Result<Source, Skip> {
    let eth: *const [u8; ETH_HLEN] = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked the bounds.
    let eth = unsafe { &*eth };
    let mut proto = u16::from_be_bytes([eth[12], eth[13]]);
    let mut offset = ETH_HLEN;
    // At most two tags: 802.1ad outer + 802.1Q inner, or one of either.
    for _ in 0..2 {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag: *const [u8; VLAN_HLEN] = ptr_at(ctx, offset)?;
        // SAFETY: bounds checked.
        let tag = unsafe { &*tag };
        proto = u16::from_be_bytes([tag[2], tag[3]]);
        offset += VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => {
            let ip: *const [u8; IPV4_MIN_HLEN] = ptr_at(ctx, offset)?;
            // SAFETY: bounds checked.
            let ip = unsafe { &*ip };
            let version = ip[0] >> 4;
            let ihl = (ip[0] & 0x0f) as usize * 4;
            if version != 4 || ihl < IPV4_MIN_HLEN {
                return Err(Skip::Malformed);
            }
            Ok(Source::V4([ip[12], ip[13], ip[14], ip[15]]))
        }
        ETH_P_IPV6 => {
            let ip: *const [u8; IPV6_HLEN] = ptr_at(ctx, offset)?;
            // SAFETY: bounds checked.
            let ip = unsafe { &*ip };
            if ip[0] >> 4 != 6 {
                return Err(Skip::Malformed);
            }
            let mut src = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            if is_v4_mapped(&src) {
                return Ok(Source::V4([src[12], src[13], src[14], src[15]]));
            }
            Ok(Source::V6(src))
        }
        ETH_P_8021Q | ETH_P_8021AD => Err(Skip::NonIp),
        _ => Err(Skip::NonIp),
    }
}

/// `::ffff:0:0/96`.
#[inline(always)]
fn is_v4_mapped(src: &[u8; 16]) -> bool {
    src[..10].iter().all(|b| *b == 0) && src[10] == 0xff && src[11] == 0xff
}
