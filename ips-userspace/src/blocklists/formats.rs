//! List formats: plain (one address or CIDR a line, `#` and `;` comments), FireHOL netsets,
//! Spamhaus DROP (text `CIDR ; SBL...` and NDJSON with a trailing metadata line), abuse.ch CSV
//! and plain lists, and a CrowdSec LAPI decision stream.
use std::{collections::BTreeMap, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

/// A list format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One address or CIDR a line; `#` and `;` start comments (FireHOL netsets too).
    Plain,
    /// Spamhaus DROP/EDROP text: `CIDR ; SBL123`.
    SpamhausDrop,
    /// Spamhaus DROP NDJSON: `{"cidr":..,"sblid":..}` lines and a `{"type":"metadata"}` line.
    SpamhausJson,
    /// abuse.ch CSV (Feodo Tracker, ThreatFox IP lists): the first field that is an address.
    AbuseChCsv,
    /// A CrowdSec LAPI `/v1/decisions/stream` answer (`{"new":[..],"deleted":[..]}`).
    CrowdsecStream,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plain" | "netset" | "firehol" => Ok(Self::Plain),
            "spamhaus" | "spamhaus-drop" => Ok(Self::SpamhausDrop),
            "spamhaus-json" | "ndjson" => Ok(Self::SpamhausJson),
            "abusech" | "abuse.ch" | "abuse-ch-csv" | "csv" => Ok(Self::AbuseChCsv),
            "crowdsec" | "crowdsec-stream" | "lapi" => Ok(Self::CrowdsecStream),
            other => Err(format!(
                "unknown list format {other:?} (plain, spamhaus, spamhaus-json, abusech, crowdsec)"
            )),
        }
    }
}

/// Read from the names [`FromStr`] takes (the config's and the CLI's), which include the
/// names it is written as.
impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Entries read and what was rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Good entries, in file order.
    pub entries: Vec<Prefix>,
    /// Rejected entries by reason.
    pub rejected: BTreeMap<String, u64>,
}

/// Guesses the format from the first meaningful lines.
pub fn detect(text: &str) -> Format {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') && (trimmed.contains("\"new\"") || trimmed.contains("\"deleted\""))
    {
        return Format::CrowdsecStream;
    }
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(50)
    {
        if line.starts_with('{') && line.contains("\"cidr\"") {
            return Format::SpamhausJson;
        }
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.contains(" ; SBL") || line.contains(";SBL") {
            return Format::SpamhausDrop;
        }
        if line.contains(',') {
            return Format::AbuseChCsv;
        }
        return Format::Plain;
    }
    Format::Plain
}

/// Reads a list.
pub fn parse(text: &str, format: Format) -> Parsed {
    let mut entries = Vec::new();
    let mut rejected = BTreeMap::new();
    read_each(text, format, &mut rejected, &mut |e: Entry| {
        entries.push(e.prefix())
    });
    Parsed { entries, rejected }
}

/// A list entry as read: IPv4 in its plain spelling as integers (the bulk of every list, kept
/// that way on its way to aggregation), anything else as a prefix.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry {
    /// Address and length (at most 32), host bits not yet cleared.
    V4(u32, u8),
    /// Any other entry.
    Net(Prefix),
}

impl Entry {
    pub(crate) fn prefix(self) -> Prefix {
        match self {
            Entry::V4(addr, len) => Prefix::v4(addr, len),
            Entry::Net(p) => p,
        }
    }
}

/// The first field of a plain or Spamhaus line: what comes before whitespace, `#` or `;`
/// ("1.2.3.4 # why", "1.2.3.4\t12", "1.10.16.0/20 ; SBL256894"). Empty for comments.
fn first_field(line: &str) -> &str {
    let b = line.as_bytes();
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let len = b[start..]
        .iter()
        .position(|c| c.is_ascii_whitespace() || *c == b'#' || *c == b';')
        .unwrap_or(b.len() - start);
    // Both ends sit next to ASCII bytes, so they are character boundaries.
    &line[start..start + len]
}

/// Calls `each` with every entry of a list in file order, and counts rejected ones by reason.
pub(crate) fn read_each(
    text: &str,
    format: Format,
    rejected: &mut BTreeMap<String, u64>,
    each: &mut impl FnMut(Entry),
) {
    let mut reject = |why: &str| *rejected.entry(why.to_owned()).or_default() += 1;
    match format {
        Format::Plain | Format::SpamhausDrop => {
            let bytes = text.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                let line_end = |from: usize| {
                    memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i)
                };
                // A line that starts with an IPv4 address or network is read in one pass; what
                // may follow it is what ends a first field (see `first_field`).
                if let Some((addr, len, n)) = crate::prefix::parse_v4_at(&bytes[at..]) {
                    match bytes.get(at + n) {
                        None | Some(b'\n') => {
                            each(Entry::V4(addr, len));
                            at += n + 1;
                            continue;
                        }
                        Some(c) if c.is_ascii_whitespace() || *c == b'#' || *c == b';' => {
                            each(Entry::V4(addr, len));
                            at = line_end(at + n) + 1;
                            continue;
                        }
                        _ => {}
                    }
                }
                let end = line_end(at);
                // `\n` is ASCII: both ends are character boundaries.
                let token = first_field(&text[at..end]);
                at = end + 1;
                if token.is_empty() {
                    continue;
                }
                match token.parse::<Prefix>() {
                    Ok(p) => each(Entry::Net(p)),
                    Err(_) => reject("not an address or prefix"),
                }
            }
        }
        Format::SpamhausJson => {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    reject("not JSON");
                    continue;
                };
                if v.get("type").and_then(|t| t.as_str()) == Some("metadata") {
                    continue;
                }
                match v
                    .get("cidr")
                    .and_then(|c| c.as_str())
                    .map(str::parse::<Prefix>)
                {
                    Some(Ok(p)) => each(Entry::Net(p)),
                    Some(Err(_)) => reject("not an address or prefix"),
                    None => reject("no cidr field"),
                }
            }
        }
        Format::AbuseChCsv => {
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let found = line
                    .split(',')
                    .map(|f| f.trim().trim_matches('"'))
                    .find_map(|f| f.parse::<Prefix>().ok());
                match found {
                    Some(p) => each(Entry::Net(p)),
                    // The header row names the columns.
                    None if line.contains("ip") || line.contains("first_seen") => {}
                    None => reject("no address field"),
                }
            }
        }
        Format::CrowdsecStream => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => {
                // `null` instead of `[]`, scope in either case, `/32` on Ip values,
                // `simulation:ban` types: all seen in the wild.
                if let Some(new) = v.get("new").and_then(|n| n.as_array()) {
                    for d in new {
                        let kind = d.get("type").and_then(|t| t.as_str()).unwrap_or("ban");
                        if !kind.eq_ignore_ascii_case("ban") {
                            reject("not a ban (simulation or captcha)");
                            continue;
                        }
                        let scope = d
                            .get("scope")
                            .and_then(|s| s.as_str())
                            .unwrap_or("ip")
                            .to_ascii_lowercase();
                        if scope != "ip" && scope != "range" {
                            reject("scope is not ip or range");
                            continue;
                        }
                        match d
                            .get("value")
                            .and_then(|s| s.as_str())
                            .map(str::parse::<Prefix>)
                        {
                            Some(Ok(p)) => each(Entry::Net(p)),
                            _ => reject("not an address or prefix"),
                        }
                    }
                }
            }
            Err(_) => reject("not JSON"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: &Parsed) -> Vec<String> {
        p.entries.iter().map(Prefix::to_string).collect()
    }

    #[test]
    fn plain_and_firehol() {
        let text = "# FireHOL level1\n#\n1.10.16.0/20\n5.188.10.0/23 ; comment\n\n  8.8.8.8  \nnot-an-ip\n2a00:1::/32 # v6\n";
        assert_eq!(detect(text), Format::Plain);
        let p = parse(text, Format::Plain);
        assert_eq!(
            values(&p),
            ["1.10.16.0/20", "5.188.10.0/23", "8.8.8.8", "2a00:1::/32"]
        );
        assert_eq!(p.rejected["not an address or prefix"], 1);
    }

    #[test]
    fn line_ends_and_trailing_bytes() {
        let p = parse(
            "1.2.3.4\r\n5.6.7.0/24\r\n9.9.9.9x\n8.8.8.8/8/8\n7.7.7.7",
            Format::Plain,
        );
        assert_eq!(values(&p), ["1.2.3.4", "5.6.7.0/24", "7.7.7.7"]);
        assert_eq!(p.rejected["not an address or prefix"], 2);
        let p = parse("1.2.3.4x", Format::Plain);
        assert!(p.entries.is_empty());
        let p = parse("1.2.3.4\r", Format::Plain);
        assert_eq!(values(&p), ["1.2.3.4"]);
    }

    #[test]
    fn spamhaus_text_and_json() {
        let text = "; Spamhaus DROP List 2024/01/01\n; https://www.spamhaus.org/drop/drop.txt\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16 ; SBL434604\n";
        assert_eq!(detect(text), Format::SpamhausDrop);
        assert_eq!(
            values(&parse(text, Format::SpamhausDrop)),
            ["1.10.16.0/20", "1.19.0.0/16"]
        );
        let json = "{\"cidr\":\"1.10.16.0/20\",\"sblid\":\"SBL256894\",\"rir\":\"apnic\"}\n{\"cidr\":\"2a06:e480::/29\",\"sblid\":\"SBL1\",\"rir\":\"ripencc\"}\n{\"type\":\"metadata\",\"timestamp\":1704067200,\"size\":2,\"records\":2,\"copyright\":\"(c) 2024 The Spamhaus Project SLU\"}\n";
        assert_eq!(detect(json), Format::SpamhausJson);
        let p = parse(json, Format::SpamhausJson);
        assert_eq!(values(&p), ["1.10.16.0/20", "2a06:e480::/29"]);
        assert!(p.rejected.is_empty());
    }

    #[test]
    fn abusech_csv() {
        let text = "################################################################\n# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)\n################################################################\n\"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n\"2021-01-17 07:30:05\",\"51.75.171.136\",\"443\",\"online\",\"2024-01-01\",\"QakBot\"\n\"2021-01-17 07:30:05\",\"nope\",\"443\",\"online\",\"2024-01-01\",\"QakBot\"\n";
        assert_eq!(detect(text), Format::AbuseChCsv);
        let p = parse(text, Format::AbuseChCsv);
        assert_eq!(values(&p), ["51.75.171.136"]);
        assert_eq!(p.rejected["no address field"], 1);
    }

    #[test]
    fn crowdsec_stream_quirks() {
        let text = r#"{"new":[
            {"id":1,"origin":"CAPI","type":"ban","scope":"Ip","value":"1.2.3.4/32","duration":"1h","scenario":"x"},
            {"id":2,"origin":"CAPI","type":"ban","scope":"range","value":"5.6.0.0/16","duration":"1h","scenario":"x"},
            {"id":3,"origin":"cscli","type":"simulation:ban","scope":"Ip","value":"9.9.9.9","duration":"1h"},
            {"id":4,"origin":"cscli","type":"ban","scope":"Ip","value":"2001:db8::1","duration":"1h"},
            {"id":5,"origin":"cscli","type":"ban","scope":"Country","value":"FR","duration":"1h"}
        ],"deleted":null}"#;
        assert_eq!(detect(text), Format::CrowdsecStream);
        let p = parse(text, Format::CrowdsecStream);
        assert_eq!(values(&p), ["1.2.3.4", "5.6.0.0/16", "2001:db8::1"]);
        assert_eq!(p.rejected.values().sum::<u64>(), 2);
        let empty = parse(r#"{"new":null,"deleted":null}"#, Format::CrowdsecStream);
        assert!(empty.entries.is_empty() && empty.rejected.is_empty());
    }
}
