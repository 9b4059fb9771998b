//! Any bytes as a blocklist (the first byte picks the format, or detection), and as a CrowdSec
//! stream answer: nothing may panic, and no prefix that comes out is shorter than the minimum
//! or touches a private range.
#![no_main]
use std::sync::OnceLock;

use ips::{
    blocklists::{Format, allowing, lapi, prepare},
    decisions::Allowlist,
    prefix::Prefix,
};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Option<Format>; 6] = [
    None,
    Some(Format::Plain),
    Some(Format::SpamhausDrop),
    Some(Format::SpamhausJson),
    Some(Format::AbuseChCsv),
    Some(Format::CrowdsecStream),
];

fn fixed() -> &'static (Allowlist, Vec<Prefix>) {
    static FIXED: OnceLock<(Allowlist, Vec<Prefix>)> = OnceLock::new();
    FIXED.get_or_init(|| (allowing(&[]), ips::prefix::private_ranges().collect()))
}

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (allow, private) = fixed();
    let list = prepare(&text, FORMATS[usize::from(*first) % FORMATS.len()], allow);
    for p in &list.prefixes {
        assert!(allow.min.allows(p), "{p} is shorter than the minimum");
        assert!(
            !private.iter().any(|r| r.contains(p) || p.contains(r)),
            "{p} touches a private range"
        );
    }
    if *first == 0 {
        let _ = lapi::parse_stream(&text);
    }
});
