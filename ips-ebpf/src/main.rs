//! The `ips` XDP program: drops every packet whose source address is banned and not
//! allowlisted; passes (and counts) everything else, including what it cannot parse.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use ips_common::{counters, family, features, origin_drop_index};
    use ips_ebpf::{
        lookup::{self, Verdict},
        maps::{IPS_ORIGIN_BYTES, IPS_ORIGIN_DROP, add, bump, count, enabled, sample_drop},
        parse::{self, Skip, Source},
    };

    #[xdp]
    pub fn ips_xdp(ctx: XdpContext) -> u32 {
        let len = (ctx.data_end() - ctx.data()) as u64;
        let mut source = [0u8; 16];
        let (verdict, family) = match parse::source(&ctx) {
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
                return xdp_action::XDP_PASS;
            }
            Err(Skip::Malformed) => {
                count(counters::MALFORMED, len);
                return xdp_action::XDP_PASS;
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
                xdp_action::XDP_DROP
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
                xdp_action::XDP_PASS
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
                xdp_action::XDP_PASS
            }
        }
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
