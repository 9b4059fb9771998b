//! Syslog headers: RFC 3164 (`Jun 14 15:16:01 host prog[pid]: msg`, the year inferred),
//! RFC 5424 (`<34>1 2023-10-11T22:14:15.003Z host app pid msgid - msg`) and ISO 8601 as
//! rsyslog and journald write it (`2023-10-11T22:14:15.003+02:00 host prog[pid]: msg`).
use super::{Clock, Skip};

/// A parsed header and the message after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Host name field.
    pub host: &'a str,
    /// Program (`sshd`, `sshd-session`, `sshd(pam_unix)`, `kernel`...).
    pub program: &'a str,
    /// Process id, if given.
    pub pid: Option<u32>,
    /// The message.
    pub message: &'a str,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub use crate::calendar::{days_from_civil, year_of};

fn num<T: std::str::FromStr>(s: &str) -> Result<T, Skip> {
    s.parse().map_err(|_| Skip::BadTime)
}

fn hms(s: &str) -> Result<(u32, u32, u32), Skip> {
    let mut it = s.split(':');
    let (Some(h), Some(m), Some(sec), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Skip::BadTime);
    };
    let (h, m, sec): (u32, u32, u32) = (num(h)?, num(m)?, num(sec)?);
    if h > 23 || m > 59 || sec > 60 {
        return Err(Skip::BadTime);
    }
    Ok((h, m, sec))
}

/// The bytes `r` of `s`, if they lie on character boundaries (a line may hold anything).
fn part(s: &str, r: std::ops::Range<usize>) -> Result<&str, Skip> {
    s.get(r).ok_or(Skip::BadTime)
}

fn ms_of(y: i64, mo: u32, d: u32, (h, mi, s): (u32, u32, u32)) -> i64 {
    (days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s)) * 1000
}

/// `2023-10-11T22:14:15.003Z`, `...+02:00`, `... 22:14:15` (space) -> Unix ms.
pub fn iso8601(s: &str) -> Result<i64, Skip> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return Err(Skip::BadTime);
    }
    let (y, mo, d): (i64, u32, u32) = (
        num(part(s, 0..4)?)?,
        num(part(s, 5..7)?)?,
        num(part(s, 8..10)?)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(Skip::BadTime);
    }
    let t = hms(part(s, 11..19)?)?;
    let mut rest = part(s, 19..s.len())?;
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        let f = &r[..digits];
        let ms3: String = f.chars().chain("000".chars()).take(3).collect();
        frac_ms = num(&ms3)?;
        rest = &r[digits..];
    }
    let offset_s: i64 = match rest {
        "" | "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            let h: i64 = num(part(r, 1..3)?)?;
            let m: i64 = num(part(r, 4..6)?)?;
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(Skip::BadTime),
    };
    Ok(ms_of(y, mo, d, t) + frac_ms - offset_s * 1000)
}

/// Parses a syslog line's header.
pub fn parse<'a>(line: &'a str, clock: &Clock) -> Result<Header<'a>, Skip> {
    let mut s = line;
    // An optional <PRI>.
    if let Some(r) = s.strip_prefix('<') {
        let end = r.find('>').ok_or(Skip::BadFormat)?;
        s = &r[end + 1..];
        // RFC 5424: "1 TIMESTAMP HOST APP PROCID MSGID SD MSG".
        if let Some(r) = s.strip_prefix("1 ") {
            return rfc5424(r);
        }
    }
    if s.len() >= 19 && s.as_bytes()[4] == b'-' {
        let end = s.find(' ').ok_or(Skip::BadFormat)?;
        let time_ms = iso8601(&s[..end])?;
        return after_time(time_ms, &s[end + 1..]);
    }
    // RFC 3164: "Mmm dd HH:MM:SS " (day space-padded).
    if s.len() < 16 {
        return Err(Skip::BadFormat);
    }
    let month = MONTHS
        .iter()
        .position(|m| s.starts_with(m))
        .ok_or(Skip::BadFormat)? as u32
        + 1;
    let day: u32 = part(s, 4..6)?.trim().parse().map_err(|_| Skip::BadFormat)?;
    if s.as_bytes()[15] != b' ' {
        return Err(Skip::BadFormat);
    }
    let t = hms(part(s, 7..15)?)?;
    let mut year = year_of(clock.now_ms);
    let offset = i64::from(clock.utc_offset_s) * 1000;
    let mut time_ms = ms_of(year, month, day, t) - offset;
    // No year in the line: a date more than two days ahead of now is last year's.
    if time_ms > clock.now_ms + 2 * 86_400_000 {
        year -= 1;
        time_ms = ms_of(year, month, day, t) - offset;
    }
    after_time(time_ms, part(s, 16..s.len())?)
}

/// `host program[pid]: message`.
fn after_time(time_ms: i64, s: &str) -> Result<Header<'_>, Skip> {
    let (host, rest) = s.split_once(' ').ok_or(Skip::BadFormat)?;
    let colon = rest
        .find(": ")
        .or_else(|| rest.strip_suffix(':').map(|r| r.len()));
    let colon = colon.ok_or(Skip::BadFormat)?;
    let tag = &rest[..colon];
    if tag.contains(' ') {
        return Err(Skip::BadFormat);
    }
    let message = rest.get(colon + 2..).unwrap_or("");
    let (program, pid) = match tag.find('[') {
        Some(open) => {
            let pid = tag[open + 1..].trim_end_matches(']').parse().ok();
            (&tag[..open], pid)
        }
        None => (tag, None),
    };
    Ok(Header {
        time_ms,
        host,
        program,
        pid,
        message,
    })
}

fn rfc5424(s: &str) -> Result<Header<'_>, Skip> {
    let mut parts = s.splitn(6, ' ');
    let (Some(ts), Some(host), Some(app), Some(procid), Some(_msgid), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Skip::BadFormat);
    };
    let time_ms = iso8601(ts)?;
    // Structured data: "-" or one or more [..] elements.
    let message = if let Some(r) = rest.strip_prefix("- ") {
        r
    } else if rest == "-" {
        ""
    } else if rest.starts_with('[') {
        // SD elements; inside a quoted value `\]`, `\"` and `\\` are escapes.
        let bytes = rest.as_bytes();
        let (mut i, mut quoted, mut end) = (0, false, rest.len());
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted && bytes.get(i + 1) != Some(&b'[') => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        rest.get(end..).unwrap_or("").trim_start()
    } else {
        rest
    };
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    Ok(Header {
        time_ms,
        host,
        program: app,
        pid: procid.parse().ok(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-27 00:00:00 UTC
    const NOW: i64 = 1_795_737_600_000;

    #[test]
    fn rfc3164_with_inferred_year() {
        let h = parse(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; rhost=1.2.3.4",
            &Clock::utc(NOW),
        )
        .unwrap();
        assert_eq!(h.host, "combo");
        assert_eq!(h.program, "sshd(pam_unix)");
        assert_eq!(h.pid, Some(19939));
        assert_eq!(h.message, "authentication failure; rhost=1.2.3.4");
        assert_eq!(h.time_ms, iso8601("2026-06-14T15:16:01Z").unwrap());
        // December seen in November: last year.
        let h = parse("Dec 31 23:59:59 h sshd[1]: x", &Clock::utc(NOW)).unwrap();
        assert_eq!(year_of(h.time_ms), 2025);
        // Space-padded day, no pid.
        let h = parse("Jun  4 01:02:03 h kernel: [1.2] IN=eth0", &Clock::utc(NOW)).unwrap();
        assert_eq!(h.program, "kernel");
        assert_eq!(h.pid, None);
    }

    #[test]
    fn rfc3164_local_time_offset() {
        let clock = Clock {
            now_ms: NOW,
            utc_offset_s: 3600,
        };
        let h = parse("Jun 14 15:16:01 h sshd[1]: x", &clock).unwrap();
        assert_eq!(h.time_ms, iso8601("2026-06-14T14:16:01Z").unwrap());
    }

    #[test]
    fn iso8601_headers() {
        let h = parse(
            "2023-10-11T22:14:15.003456+02:00 web1 sshd-session[77]: Connection closed",
            &Clock::utc(NOW),
        )
        .unwrap();
        assert_eq!(h.program, "sshd-session");
        assert_eq!(h.time_ms, iso8601("2023-10-11T20:14:15.003Z").unwrap());
        assert_eq!(iso8601("1970-01-01T00:00:01Z").unwrap(), 1000);
    }

    #[test]
    fn rfc5424_headers() {
        let h = parse(
            "<38>1 2023-10-11T22:14:15.003Z host sshd 1234 - - Failed password for root from 203.0.113.1 port 22 ssh2",
            &Clock::utc(NOW),
        )
        .unwrap();
        assert_eq!(h.program, "sshd");
        assert_eq!(h.pid, Some(1234));
        assert!(h.message.starts_with("Failed password"));
        let h = parse(
            r#"<38>1 2023-10-11T22:14:15Z host sshd - ID47 [exampleSDID@32473 iut="3"][x@1 a="\]\""] Invalid user a from 203.0.113.1"#,
            &Clock::utc(NOW),
        )
        .unwrap();
        assert_eq!(h.message, "Invalid user a from 203.0.113.1");
    }

    #[test]
    fn garbage_is_skipped_with_a_reason() {
        let c = Clock::utc(NOW);
        assert_eq!(parse("", &c), Err(Skip::BadFormat));
        assert_eq!(parse("Foo 14 15:16:01 h p: m", &c), Err(Skip::BadFormat));
        assert_eq!(parse("Jun 14 25:16:01 h p: m", &c), Err(Skip::BadTime));
        assert_eq!(parse("2023-13-11T22:14:15Z h p: m", &c), Err(Skip::BadTime));
        assert_eq!(parse("<38>1 nonsense", &c), Err(Skip::BadFormat));
    }
}
