//! The kernel side of `ips`: packet parsing and the ban lookup, shared by the XDP program
//! (`src/main.rs`) and the bench programs (`src/bin/bench.rs`) so that both run the same code.
//!
//! [`parse::source`] finds a packet's source address; [`lookup::v4`] and [`lookup::v6`] decide
//! on it from the maps in [`maps`].
#![no_std]

pub mod judge;
pub mod lookup;
pub mod maps;
pub mod parse;

/// Both programs' panic handler: the verifier rejects any path that could reach it.
#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The licence section the kernel reads (GPL-compatible, for GPL-only helpers).
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
#[used]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
