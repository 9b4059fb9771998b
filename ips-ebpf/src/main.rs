//! The `ips` programs: drop every packet whose source address is banned and not allowlisted;
//! pass (and count) everything else, including what they cannot parse. `ips_xdp` runs at the
//! NIC's XDP hook; `ips_tc` at the clsact ingress hook, for virtual interfaces where XDP would
//! copy every frame first. Both judge with the same code ([`ips_ebpf::judge`]).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use ips_ebpf::{judge, parse::Packet};

    #[xdp]
    pub fn ips_xdp(ctx: XdpContext) -> u32 {
        let packet = Packet {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        if judge::drop(&packet, (packet.end - packet.start) as u64) {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        }
    }

    /// Bytes the parser may read: Ethernet, two VLAN tags, an IPv6 header.
    const HEADERS: u32 = 14 + 2 * 4 + 40;

    #[classifier]
    pub fn ips_tc(ctx: TcContext) -> i32 {
        // Headers in the paged part of the skb are pulled into its linear part first.
        let len = ctx.len();
        let linear = (ctx.data_end() - ctx.data()) as u32;
        if linear < HEADERS && len > linear {
            let _ = ctx.pull_data(if len < HEADERS { len } else { HEADERS });
        }
        let packet = Packet {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        if judge::drop(&packet, u64::from(len)) {
            TC_ACT_SHOT
        } else {
            // Let any later program decide (TCX_NEXT).
            TC_ACT_UNSPEC
        }
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
