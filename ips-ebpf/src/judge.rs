//! One packet judged, the same for the XDP and the TC program: its source found, looked up,
//! counted (packets, bytes, drops per origin, the drop sample); true when it must be dropped.
use ips_common::{counters, family, features, origin_drop_index};

use crate::{
    lookup::{self, Verdict},
    maps::{IPS_ORIGIN_BYTES, IPS_ORIGIN_DROP, add, bump, count, enabled, sample_drop},
    parse::{self, Packet, Skip, Source},
};

/// Judges the packet `packet`, `len` bytes on the wire. True: drop it.
#[inline(always)]
pub fn drop(packet: &Packet, len: u64) -> bool {
    let mut source = [0u8; 16];
    let (verdict, family) = match parse::source(packet) {
        Ok(Source::V4(addr)) => {
            let verdict = lookup::v4(addr);
            if matches!(verdict, Verdict::Banned(..)) && enabled(features::SAMPLE_DROPS) {
                source[..4].copy_from_slice(&addr);
            }
            (verdict, family::V4)
        }
        Ok(Source::V6(addr)) => {
            let verdict = lookup::v6(addr);
            if matches!(verdict, Verdict::Banned(..)) && enabled(features::SAMPLE_DROPS) {
                source = addr;
            }
            (verdict, family::V6)
        }
        Err(Skip::NonIp) => {
            count(counters::NON_IP, len);
            return false;
        }
        Err(Skip::Malformed) => {
            count(counters::MALFORMED, len);
            return false;
        }
    };
    let v4 = family == family::V4;
    match verdict {
        Verdict::Banned(origin, kind) => {
            count(
                if v4 {
                    counters::V4_DROPPED
                } else {
                    counters::V6_DROPPED
                },
                len,
            );
            let at = origin_drop_index(origin, family);
            bump(&IPS_ORIGIN_DROP, at);
            if enabled(features::BYTES) {
                add(&IPS_ORIGIN_BYTES, at, len);
            }
            if enabled(features::SAMPLE_DROPS) {
                sample_drop(&source, family, origin, kind, len);
            }
            true
        }
        Verdict::Allowed => {
            count(
                if v4 {
                    counters::V4_ALLOWED
                } else {
                    counters::V6_ALLOWED
                },
                len,
            );
            false
        }
        Verdict::Clean => {
            count(
                if v4 {
                    counters::V4_PASSED
                } else {
                    counters::V6_PASSED
                },
                len,
            );
            false
        }
    }
}
