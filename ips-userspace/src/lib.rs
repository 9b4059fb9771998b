//! The `ips` controller as a library; the `ips` binary is a thin CLI over it.
//!
//! Data flows one way through the modules:
//! producers ([`acquisition`] -> [`parsers`] -> [`scenarios`] in the [`pipeline`];
//! [`blocklists`] sources and CrowdSec LAPI pulls on the [`schedule`]r; the [`api`]) speak the
//! [`service`] protocol to the decision service ([`decisions`]: profiles, allowlist, the
//! [`decisions::Store`]), whose every write returns the [`decisions::Changes`] it made; the
//! [`enforcer`], the only code that writes BPF maps, mirrors those changes into the kernel.
//! [`daemon`] starts and stops it all for `ips run`; [`config`] reads `ips.toml`.

pub mod acquisition;
pub mod api;
pub mod blocklists;
pub mod calendar;
pub mod central;
pub mod config;
pub mod daemon;
pub mod decisions;
pub mod duration;
pub mod enforcer;
pub mod http;
pub mod hub;
pub mod notify;
pub mod parsers;
pub mod pipeline;
pub mod prefix;
pub mod reload;
pub mod replay;
pub mod scenarios;
pub mod schedule;
pub mod service;
pub mod setup;
pub mod systemd;
pub mod web;
