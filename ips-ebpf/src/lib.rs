//! The kernel side of `ips`: packet parsing and the ban lookup, shared by the XDP program
//! (`src/main.rs`) and the bench programs (`src/bin/bench.rs`) so that both run the same code.
//!
//! [`parse::source`] finds a packet's source address; [`lookup::v4`] and [`lookup::v6`] decide
//! on it from the maps in [`maps`].
#![no_std]

pub mod lookup;
pub mod maps;
pub mod parse;
