//! The `ips` controller as a library; the `ips` binary is a thin CLI over it.
//!
//! Data flows through the modules in this order:
//! [`decisions`] (what is banned, with its origin and expiry, kept in a [`decisions::Store`]),
//! [`enforcer`] (the only code that writes BPF maps: it loads and pins the XDP program and keeps
//! the kernel maps in step with the store), and [`api`] (the local HTTP API the CLI talks to).
//! [`daemon`] wires them together for `ips run`; [`config`] reads `ips.toml`.

pub mod acquisition;
pub mod api;
pub mod blocklists;
pub mod calendar;
pub mod config;
pub mod daemon;
pub mod decisions;
pub mod duration;
pub mod enforcer;
pub mod hub;
pub mod parsers;
pub mod pipeline;
pub mod prefix;
pub mod replay;
pub mod scenarios;
