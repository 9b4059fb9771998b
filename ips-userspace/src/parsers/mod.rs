//! Parsers: one file per log format, all producing the same [`Event`].
//!
//! Parsing borrows from the line: an [`Event`] holds `&str` slices of it, so the per-line path
//! allocates nothing. A line that is not for us is a [`Skip`] with a reason, which the caller
//! counts; it is never an error.
//!
//! - [`syslog`]: RFC 3164, RFC 5424 and ISO 8601 (rsyslog, journald) headers.
//! - [`sshd`]: OpenSSH 6 to 9.x messages, `sshd` and `sshd-session`, and pam_unix.
//! - [`http`]: nginx and Apache combined access logs.
//! - [`firewall`]: iptables/nftables `LOG` lines (`SRC= DST= PROTO= DPT=`).
use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

pub mod firewall;
pub mod http;
pub mod sshd;
pub mod syslog;

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A password, public key or other method was refused.
    AuthFailed,
    /// An unknown user tried to log in.
    InvalidUser,
    /// The connection closed during authentication.
    PreauthClosed,
    /// `maximum authentication attempts exceeded`.
    MaxAuthAttempts,
    /// Key exchange failed: `Unable to negotiate`.
    NegotiationFailed,
    /// `Did not receive identification string` and banner-exchange errors: scanners.
    NoIdentification,
    /// A successful login.
    AuthSuccess,
    /// An HTTP request (with status, path, user agent).
    HttpRequest,
    /// A packet logged by the firewall.
    PacketLogged,
}

impl Kind {
    /// Every kind, for docs and `ips explain`.
    pub const ALL: [Kind; 9] = [
        Kind::AuthFailed,
        Kind::InvalidUser,
        Kind::PreauthClosed,
        Kind::MaxAuthAttempts,
        Kind::NegotiationFailed,
        Kind::NoIdentification,
        Kind::AuthSuccess,
        Kind::HttpRequest,
        Kind::PacketLogged,
    ];

    /// The snake_case name used in scenario filters.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AuthFailed => "auth_failed",
            Kind::InvalidUser => "invalid_user",
            Kind::PreauthClosed => "preauth_closed",
            Kind::MaxAuthAttempts => "max_auth_attempts",
            Kind::NegotiationFailed => "negotiation_failed",
            Kind::NoIdentification => "no_identification",
            Kind::AuthSuccess => "auth_success",
            Kind::HttpRequest => "http_request",
            Kind::PacketLogged => "packet_logged",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The service an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// OpenSSH.
    Ssh,
    /// A web server.
    Http,
    /// The packet filter.
    Firewall,
}

impl Service {
    /// The name used in scenario filters.
    pub fn name(self) -> &'static str {
        match self {
            Service::Ssh => "ssh",
            Service::Http => "http",
            Service::Firewall => "firewall",
        }
    }
}

/// One thing that happened, as a parser saw it. Borrows from the line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event<'a> {
    /// When, in Unix milliseconds (from the line when it says; else the caller's clock).
    pub time_ms: i64,
    /// Who.
    pub source: IpAddr,
    /// Where.
    pub service: Service,
    /// What.
    pub kind: Kind,
    /// The user name tried, if any.
    pub user: Option<&'a str>,
    /// Target port (SSH port, firewall destination port).
    pub port: Option<u16>,
    /// HTTP path.
    pub path: Option<&'a str>,
    /// HTTP method.
    pub method: Option<&'a str>,
    /// HTTP status.
    pub status: Option<u16>,
    /// HTTP user agent.
    pub user_agent: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// An event with only the required fields.
    pub fn new(time_ms: i64, source: IpAddr, service: Service, kind: Kind) -> Self {
        Self {
            time_ms,
            source,
            service,
            kind,
            user: None,
            port: None,
            path: None,
            method: None,
            status: None,
            user_agent: None,
        }
    }
}

/// Why a line gave no event. Counted per reason, never an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// The line does not have the format's shape (no syslog header, not a combined log line).
    BadFormat,
    /// The format is right but the message is not one we look at.
    NotInteresting,
    /// The source is a host name (`rhost=` with reverse DNS): never resolved on the hot path.
    HostnameSource,
    /// A field that must be an address is not one.
    BadAddress,
    /// The timestamp does not parse.
    BadTime,
}

impl Skip {
    /// Every reason, for counters.
    pub const ALL: [Skip; 5] = [
        Skip::BadFormat,
        Skip::NotInteresting,
        Skip::HostnameSource,
        Skip::BadAddress,
        Skip::BadTime,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Skip::BadFormat => "bad_format",
            Skip::NotInteresting => "not_interesting",
            Skip::HostnameSource => "hostname_source",
            Skip::BadAddress => "bad_address",
            Skip::BadTime => "bad_time",
        }
    }
}

/// Which parser to run on a source's lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    /// Syslog lines from sshd (auth.log, secure).
    Sshd,
    /// nginx or Apache combined access log.
    Nginx,
    /// Any syslog: sshd and firewall messages are picked out by program name.
    Syslog,
    /// Guess per line.
    #[default]
    Auto,
}

impl FromStr for LogType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sshd" | "ssh" | "auth" => Ok(Self::Sshd),
            "nginx" | "apache" | "http" | "combined" => Ok(Self::Nginx),
            "syslog" => Ok(Self::Syslog),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown log type {other:?} (expected sshd, nginx, syslog or auto)"
            )),
        }
    }
}

/// Context a parser needs besides the line.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Unix milliseconds used when a line has no time, and to infer the year of RFC 3164
    /// timestamps (a date in the future means last year).
    pub now_ms: i64,
    /// Seconds east of UTC for timestamps without a zone (RFC 3164).
    pub utc_offset_s: i32,
}

impl Clock {
    /// A clock at `now_ms`, UTC.
    pub fn utc(now_ms: i64) -> Self {
        Self {
            now_ms,
            utc_offset_s: 0,
        }
    }
}

/// Parses one line of the given type.
pub fn parse<'a>(kind: LogType, line: &'a str, clock: &Clock) -> Result<Event<'a>, Skip> {
    let line = line.trim_end_matches(['\n', '\r']);
    match kind {
        LogType::Nginx => http::parse(line, clock),
        LogType::Sshd | LogType::Syslog => syslog_message(line, clock),
        LogType::Auto => {
            if http::looks_like(line) {
                http::parse(line, clock)
            } else {
                syslog_message(line, clock)
            }
        }
    }
}

/// A syslog line: the header, then the message by program name.
fn syslog_message<'a>(line: &'a str, clock: &Clock) -> Result<Event<'a>, Skip> {
    let h = syslog::parse(line, clock)?;
    if sshd::is_sshd(h.program) {
        sshd::parse(h.message, h.time_ms)
    } else if h.program == "kernel" || h.message.contains(" SRC=") {
        firewall::parse(h.message, h.time_ms)
    } else {
        Err(Skip::NotInteresting)
    }
}

/// Parses an address token, dropping brackets and a trailing `:` or `,`.
pub fn ip(token: &str) -> Option<IpAddr> {
    let t = token.trim_matches(|c| c == '[' || c == ']' || c == ',' || c == ';');
    let t = t.strip_suffix(':').unwrap_or(t);
    t.parse().ok()
}

/// The word after `key` in `s` (up to the next space).
pub fn word_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let at = s.find(key)? + key.len();
    let rest = &s[at..];
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// A port after ` port `.
pub fn port_after(s: &str) -> Option<u16> {
    word_after(s, " port ").and_then(|p| p.trim_end_matches(':').parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of every format, with a multi-byte character put at every byte position, cut at
    /// every position, and random bytes: no parser may panic, whatever the line holds.
    #[test]
    fn no_line_makes_a_parser_panic() {
        let lines = [
            "Nov 30 16:02:44 web01 sshd[1]: Failed password for root from 203.0.113.9 port 22 ssh2",
            "<34>1 2026-11-30T16:02:44.123+01:00 web01 sshd 1 - - Invalid user a from 203.0.113.9",
            "2026-11-30T16:02:44+00:00 web01 sshd-session[9]: Connection closed by 2001:db8::1 port 1",
            "2026-11-30 16:02:44 web01 kernel: IN=eth0 SRC=203.0.113.9 DST=192.0.2.1 PROTO=TCP DPT=22",
            r#"203.0.113.9 - a[b] [30/Nov/2026:16:02:44 +0000] "GET /a\"b HTTP/1.1" 404 1 "-" "ua""#,
        ];
        let clock = Clock::utc(1_795_737_600_000);
        let kinds = [
            LogType::Auto,
            LogType::Sshd,
            LogType::Nginx,
            LogType::Syslog,
        ];
        let check = |line: &str| {
            for k in kinds {
                let _ = parse(k, line, &clock);
            }
        };
        for line in lines {
            for at in 0..=line.len() {
                if !line.is_char_boundary(at) {
                    continue;
                }
                check(&line[..at]);
                for ch in ["\u{2bd}", "\u{20ac}", "\u{1f600}", "\u{0}"] {
                    let mut l = line.to_owned();
                    l.insert_str(at, ch);
                    check(&l);
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut bytes = Vec::new();
        for _ in 0..20_000 {
            bytes.clear();
            for _ in 0..(x % 120) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly the characters the formats are made of, some anything.
                let b = b"0123456789:[]/ -\"<>.TZ+NovJan".as_slice();
                bytes.push(if x.is_multiple_of(4) {
                    (x >> 8) as u8
                } else {
                    b[(x >> 8) as usize % b.len()]
                });
            }
            check(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn auto_tells_formats_apart() {
        let c = Clock::utc(1_700_000_000_000);
        let web = r#"203.0.113.9 - - [10/Oct/2023:13:55:36 +0000] "GET /.env HTTP/1.1" 404 12 "-" "curl/8""#;
        assert_eq!(
            parse(LogType::Auto, web, &c).unwrap().service,
            Service::Http
        );
        let ssh = "Oct 10 13:55:36 host sshd[42]: Invalid user admin from 203.0.113.9 port 5555";
        assert_eq!(
            parse(LogType::Auto, ssh, &c).unwrap().kind,
            Kind::InvalidUser
        );
        let other = "Oct 10 13:55:36 host cron[1]: (root) CMD (true)";
        assert_eq!(parse(LogType::Auto, other, &c), Err(Skip::NotInteresting));
        assert_eq!(parse(LogType::Auto, "garbage", &c), Err(Skip::BadFormat));
    }

    #[test]
    fn log_type_names() {
        assert_eq!("sshd".parse::<LogType>().unwrap(), LogType::Sshd);
        assert!("xml".parse::<LogType>().is_err());
    }
}
