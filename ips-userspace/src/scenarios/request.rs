//! An HTTP request as the web scenarios look at it: the path and query apart, their
//! percent-decoded forms (decoded twice when the first pass leaves escapes, as double-encoding
//! attacks do), whether the path is a static asset, and whether the request line is malformed.
//! Decoding is lazy and done at most once per event, however many scenarios ask.
use std::{borrow::Cow, cell::OnceCell};

use crate::parsers::Event;

/// Suffixes of static assets (lower case): a page's images, styles, scripts and fonts. Probing
/// and crawl scenarios skip them, so that a reader whose page misses images is not a prober.
pub const STATIC_SUFFIXES: &[&str] = &[
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".svg", ".ico", ".bmp", ".css", ".js",
    ".mjs", ".map", ".woff", ".woff2", ".ttf", ".otf", ".eot",
];

/// The decoded forms.
struct Decoded {
    path: String,
    query: String,
    uri: String,
}

/// One request's view.
pub struct Request<'a> {
    /// The path as logged, before `?`.
    pub path: &'a str,
    /// The query as logged, after `?` (empty if none).
    pub query: &'a str,
    /// The whole target as logged.
    pub uri: &'a str,
    method: Option<&'a str>,
    user_agent: Option<&'a str>,
    decoded: OnceCell<Decoded>,
    lower_target: OnceCell<String>,
    lower_user_agent: OnceCell<Option<String>>,
}

impl<'a> Request<'a> {
    /// The view of `e` (an empty one for events without a path).
    pub fn of(e: &Event<'a>) -> Self {
        let uri = e.path.unwrap_or("");
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        Self {
            path,
            query,
            uri,
            method: e.method,
            user_agent: e.user_agent,
            decoded: OnceCell::new(),
            lower_target: OnceCell::new(),
            lower_user_agent: OnceCell::new(),
        }
    }

    /// The target as logged, in lower case (for substring filters).
    pub fn lower_target(&self) -> &str {
        self.lower_target
            .get_or_init(|| self.uri.to_ascii_lowercase())
    }

    /// The user agent in lower case, if the line has one.
    pub fn lower_user_agent(&self) -> Option<&str> {
        self.lower_user_agent
            .get_or_init(|| self.user_agent.map(str::to_ascii_lowercase))
            .as_deref()
    }

    fn decoded(&self) -> &Decoded {
        self.decoded.get_or_init(|| {
            let path = twice(self.path, false);
            let query = twice(self.query, true);
            let uri = if self.query.is_empty() && !self.uri.ends_with('?') {
                path.clone()
            } else {
                format!("{path}?{query}")
            };
            Decoded { path, query, uri }
        })
    }

    /// The path, percent-decoded (twice if needed).
    pub fn decoded_path(&self) -> &str {
        &self.decoded().path
    }

    /// The query, percent-decoded (twice if needed), `+` as a space.
    pub fn decoded_query(&self) -> &str {
        &self.decoded().query
    }

    /// Path and query, decoded.
    pub fn decoded_uri(&self) -> &str {
        &self.decoded().uri
    }

    /// True if the path ends with one of `suffixes` (lower case), ignoring case.
    pub fn path_ends_with(&self, suffixes: &[impl AsRef<str>]) -> bool {
        let p = self.path.as_bytes();
        suffixes.iter().any(|s| {
            let s = s.as_ref().as_bytes();
            p.len() >= s.len() && p[p.len() - s.len()..].eq_ignore_ascii_case(s)
        })
    }

    /// True for an image, style sheet, script, font or favicon.
    pub fn is_static(&self) -> bool {
        self.path_ends_with(STATIC_SUFFIXES)
    }

    /// True for a proxy request: an absolute URL (`GET http://example.com/`) or `CONNECT`.
    pub fn is_proxy(&self) -> bool {
        self.method == Some("CONNECT")
            || self.uri.starts_with("http://")
            || self.uri.starts_with("https://")
    }

    /// True if the request line was not `METHOD TARGET PROTOCOL`: empty (`"-"`), binary (a TLS
    /// handshake sent to a plain HTTP port, logged as `\x16\x03` or as raw bytes), or a method
    /// or target no client sends.
    pub fn is_malformed(&self) -> bool {
        let Some(method) = self.method else {
            return true;
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return true;
        }
        let target = self.uri;
        !(target.starts_with('/')
            || target == "*"
            || target.starts_with("http://")
            || target.starts_with("https://")
            || (method == "CONNECT" && !target.is_empty()))
            || target.contains("\\x")
            || target.contains(|c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER)
    }
}

/// `s` percent-decoded, and decoded again if that left escapes (`%252e` -> `%2e` -> `.`).
fn twice(s: &str, query: bool) -> String {
    let once = decode(s, query);
    if once.contains('%') {
        decode(&once, query).into_owned()
    } else {
        once.into_owned()
    }
}

/// `s` percent-decoded (invalid escapes kept as they are, bytes that are not UTF-8 replaced),
/// and in a query `+` as a space. Borrowed when there is nothing to decode.
pub fn decode(s: &str, query: bool) -> Cow<'_, str> {
    if !(s.contains('%') || (query && s.contains('+'))) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escape = (b[i] == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        match (escape, b[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (None, b'+') if query => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsers::{Kind, Service};

    fn req(method: Option<&'static str>, uri: &'static str) -> Request<'static> {
        let mut e = Event::new(
            0,
            "192.0.2.1".parse().unwrap(),
            Service::Http,
            Kind::HttpRequest,
        );
        e.method = method;
        e.path = (!uri.is_empty()).then_some(uri);
        Request::of(&e)
    }

    #[test]
    fn decodes_once_and_twice() {
        assert_eq!(decode("/a%20b", false), "/a b");
        assert_eq!(decode("a+b", true), "a b");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("%zz%4", false), "%zz%4");
        assert_eq!(decode("%", false), "%");
        let r = req(
            Some("GET"),
            "/cgi-bin/%252e%252e/%2e%2e/etc/passwd?x=%3Cscript%3E+1",
        );
        assert_eq!(r.decoded_path(), "/cgi-bin/../../etc/passwd");
        assert_eq!(r.decoded_query(), "x=<script> 1");
        assert_eq!(r.decoded_uri(), "/cgi-bin/../../etc/passwd?x=<script> 1");
        assert_eq!(r.path, "/cgi-bin/%252e%252e/%2e%2e/etc/passwd");
    }

    #[test]
    fn static_assets_and_malformed_lines() {
        assert!(req(Some("GET"), "/img/Logo.PNG?v=3").is_static());
        assert!(req(Some("GET"), "/favicon.ico").is_static());
        assert!(!req(Some("GET"), "/index.php").is_static());
        assert!(!req(Some("GET"), "/login.php?x=a.png").is_static());
        assert!(req(None, "").is_malformed());
        assert!(req(Some("\\x16\\x03\\x01"), "x").is_malformed());
        assert!(req(Some("get"), "/").is_malformed());
        assert!(req(Some("GET"), "index.html").is_malformed());
        assert!(!req(Some("GET"), "/").is_malformed());
        assert!(req(Some("GET"), "/\u{fffd}\u{2}\u{fffd}\u{2}").is_malformed());
        assert!(!req(Some("OPTIONS"), "*").is_malformed());
        assert!(!req(Some("CONNECT"), "example.com:443").is_malformed());
        assert!(!req(Some("GET"), "http://example.com/").is_malformed());
        assert!(req(Some("GET"), "http://example.com/").is_proxy());
        assert!(req(Some("CONNECT"), "example.com:443").is_proxy());
        assert!(!req(Some("GET"), "/http://x").is_proxy());
    }
}
