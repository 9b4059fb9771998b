//! iptables and nftables `LOG` lines: `IN=eth0 OUT= MAC=.. SRC=A DST=B LEN=60 .. PROTO=TCP
//! SPT=40000 DPT=22 ..`, usually behind a kernel syslog header and an optional prefix.
use super::{Event, Kind, Service, Skip, ip, word_after};

/// Parses the message part of a kernel log line.
pub fn parse(msg: &str, time_ms: i64) -> Result<Event<'_>, Skip> {
    let src = word_after(msg, "SRC=").ok_or(Skip::NotInteresting)?;
    if !msg.contains(" DST=") {
        return Err(Skip::NotInteresting);
    }
    let source = ip(src).ok_or(Skip::BadAddress)?;
    let mut e = Event::new(time_ms, source, Service::Firewall, Kind::PacketLogged);
    e.port = word_after(msg, " DPT=").and_then(|p| p.parse().ok());
    e.method = word_after(msg, " PROTO=");
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_log_line() {
        let e = parse("[ 1234.5678] IPTABLES-DROP: IN=eth0 OUT= MAC=00:11 SRC=203.0.113.50 DST=192.0.2.1 LEN=44 TOS=0x00 PREC=0x00 TTL=242 ID=54321 PROTO=TCP SPT=41234 DPT=3389 WINDOW=1024 RES=0x00 SYN URGP=0", 0).unwrap();
        assert_eq!(e.source.to_string(), "203.0.113.50");
        assert_eq!(e.port, Some(3389));
        assert_eq!(e.method, Some("TCP"));
    }

    #[test]
    fn nftables_ipv6_and_icmp() {
        let e = parse("nft-drop IN=eth0 OUT= SRC=2001:db8::66 DST=2001:db8::1 LEN=80 TC=0 HOPLIMIT=53 FLOWLBL=0 PROTO=TCP SPT=1 DPT=22 SYN", 0).unwrap();
        assert_eq!(e.source.to_string(), "2001:db8::66");
        let e = parse(
            "IN=eth0 OUT= SRC=198.51.100.1 DST=192.0.2.1 LEN=84 PROTO=ICMP TYPE=8 CODE=0",
            0,
        )
        .unwrap();
        assert_eq!(e.port, None);
        assert_eq!(parse("usb 1-1: new device", 0), Err(Skip::NotInteresting));
        assert_eq!(parse("IN=eth0 SRC=nope DST=x", 0), Err(Skip::BadAddress));
    }
}
