//! Any text as an address or prefix (what parses prints and parses back to itself), as a
//! duration, a Go duration, an origin and a list name: nothing may panic.
#![no_main]
use ips::{decisions::Origin, prefix::Prefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = s.parse::<Prefix>() {
        let again: Prefix = p.to_string().parse().expect("a printed prefix parses");
        assert_eq!(p, again);
    }
    let _ = ips::duration::parse(s);
    let _ = ips::blocklists::lapi::parse_go_duration(s);
    if let Ok(o) = s.parse::<Origin>() {
        assert_eq!(o.to_string().parse::<Origin>().ok(), Some(o));
    }
    let _ = ips::decisions::check_name(s);
});
