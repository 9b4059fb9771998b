//! Scenarios: leaky buckets that turn parsed events into alerts.
//!
//! [`definition`] reads scenario files (the built-ins are a data file); [`Engine`] pours each
//! [`crate::parsers::Event`] into the buckets of every scenario whose filter it passes, keyed
//! by scenario and source (IPv6 by /64), and reports an [`Alert`] when one overflows. The engine
//! is a pure function of its events and their times: replay uses the log's timestamps, live mode
//! the wall clock.
pub mod crowdsec;
pub mod definition;
mod engine;
pub mod request;

pub use definition::{Scenario, builtin};
pub use engine::{Alert, Engine, EngineStats};
