//! nginx and Apache combined access logs:
//! `ADDR - USER [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 404 2326 "referer" "agent"`.
//! The common log format (no referer and agent) parses too.
use super::{Clock, Event, Kind, Service, Skip, ip, syslog::days_from_civil};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A cheap guess: an address, then ` - `.
pub fn looks_like(line: &str) -> bool {
    line.split_once(' ')
        .is_some_and(|(a, rest)| ip(a).is_some() && rest.contains(" [") && rest.contains('"'))
}

/// `10/Oct/2000:13:55:36 -0700` -> Unix ms.
fn clf_time(s: &str) -> Result<i64, Skip> {
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return Err(Skip::BadTime);
    }
    // Checked ranges: the bytes around the separators may be anything.
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or(Skip::BadTime)
    };
    let d = num(0..2)?;
    let mo = MONTHS
        .iter()
        .position(|m| s.get(3..6) == Some(*m))
        .ok_or(Skip::BadTime)? as u32
        + 1;
    let y = num(7..11)?;
    let (h, mi, sec) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(Skip::BadTime),
    };
    let off = num(22..24)? * 3600 + num(24..26)? * 60;
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(Skip::BadTime);
    }
    Ok((days_from_civil(y, mo, d as u32) * 86_400 + h * 3600 + mi * 60 + sec - sign * off) * 1000)
}

/// The next `"..."` field (with `\"` escapes) and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// The `[10/Oct/2000:13:55:36 -0700]` field: the first `[` that opens a well-formed time
/// followed by `]` (the user field before it may hold brackets of its own), its time, and
/// what follows. `BadTime` if a `[` is there but no time parses.
fn time_field(s: &str) -> Result<(i64, &str), Skip> {
    let mut found = false;
    for (open, _) in s.match_indices('[') {
        found = true;
        let Some(inside) = s.get(open + 1..open + 27) else {
            continue;
        };
        if s.as_bytes().get(open + 27) != Some(&b']') {
            continue;
        }
        if let Ok(t) = clf_time(inside) {
            return Ok((t, &s[open + 28..]));
        }
    }
    Err(if found {
        Skip::BadTime
    } else {
        Skip::BadFormat
    })
}

/// Parses one access log line.
pub fn parse<'a>(line: &'a str, _clock: &Clock) -> Result<Event<'a>, Skip> {
    let (addr, rest) = line.split_once(' ').ok_or(Skip::BadFormat)?;
    let source = ip(addr).ok_or(Skip::BadFormat)?;
    let (time_ms, rest) = time_field(rest)?;
    let (request, rest) = quoted(rest).ok_or(Skip::BadFormat)?;
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status: u16 = fields
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Skip::BadFormat)?;
    let _size = fields.next();
    let after = fields.next().unwrap_or("");
    let user_agent = quoted(after)
        .and_then(|(_referer, rest)| quoted(rest))
        .map(|(ua, _)| ua);
    let mut parts = request.split(' ');
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (Some(m), Some(p)),
        _ => (None, None), // "-" or a garbage request line: still a request from ADDR
    };
    let mut e = Event::new(time_ms, source, Service::Http, Kind::HttpRequest);
    e.method = method;
    e.path = path;
    e.status = Some(status);
    e.user_agent = user_agent.filter(|u| *u != "-");
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsers::syslog::iso8601;

    fn p(line: &str) -> Result<Event<'_>, Skip> {
        parse(line, &Clock::utc(0))
    }

    #[test]
    fn combined() {
        let e = p(r#"203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /wp-login.php?x=1 HTTP/1.1" 404 2326 "http://x/" "Mozilla/5.0 (sqlmap)""#).unwrap();
        assert_eq!(e.status, Some(404));
        assert_eq!(e.path, Some("/wp-login.php?x=1"));
        assert_eq!(e.method, Some("GET"));
        assert_eq!(e.user_agent, Some("Mozilla/5.0 (sqlmap)"));
        assert_eq!(e.time_ms, iso8601("2000-10-10T20:55:36Z").unwrap());
    }

    #[test]
    fn ipv6_common_and_odd_requests() {
        let e = p(r#"2001:db8::9 - - [01/Jan/2024:00:00:00 +0000] "POST /api HTTP/2.0" 200 1"#)
            .unwrap();
        assert_eq!(e.source.to_string(), "2001:db8::9");
        assert_eq!(e.user_agent, None);
        let e = p(r#"192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "\x16\x03\x01" 400 150 "-" "-""#)
            .unwrap();
        assert_eq!((e.status, e.path), (Some(400), None));
        let e =
            p(r#"192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "GET /a\"b HTTP/1.1" 200 1 "-" "ua""#)
                .unwrap();
        assert_eq!(e.user_agent, Some("ua"));
    }

    #[test]
    fn a_user_field_with_brackets_is_still_a_request() {
        let e = p(
            r#"203.0.113.9 - a[b] [10/Oct/2000:13:55:36 -0700] "GET /.env HTTP/1.1" 404 1 "-" "x""#,
        )
        .unwrap();
        assert_eq!((e.path, e.status), (Some("/.env"), Some(404)));
        let e =
            p(r#"203.0.113.9 - [x [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#).unwrap();
        assert_eq!(e.time_ms, iso8601("2000-10-10T20:55:36Z").unwrap());
    }

    #[test]
    fn garbage() {
        assert_eq!(p("hello world"), Err(Skip::BadFormat));
        assert_eq!(
            p(r#"192.0.2.1 - - [01/Foo/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1"#),
            Err(Skip::BadTime)
        );
        assert_eq!(
            p(r#"192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" abc 1"#),
            Err(Skip::BadFormat)
        );
        assert!(!looks_like("Jun 14 15:16:01 combo sshd[1]: x"));
    }
}
