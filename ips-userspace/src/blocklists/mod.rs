//! Blocklists: community lists turned into decisions. [`formats`] reads the common list formats
//! (skipping bad entries with a counted reason), [`filter`] removes bogon, private and reserved
//! ranges and allowlisted addresses so that a list can never lock out a private network, and
//! [`aggregate`] merges contained and adjacent prefixes into the fewest that cover exactly the
//! same addresses. [`source`] fetches configured lists and [`lapi`] pulls CrowdSec LAPIs on the
//! daemon's scheduler; both hand what they got to a [`Sink`] (the decision service) and never
//! touch the store or the kernel.
pub mod aggregate;
pub mod filter;
pub mod formats;
pub mod lapi;
pub mod source;

pub use aggregate::aggregate;
pub use filter::{FilterReport, allowing, filter, filter_decisions};
pub use formats::{Format, Parsed, parse};

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    decisions::{Allowlist, ImportReport, NewDecision, Origin},
    prefix::Prefix,
};

/// Where list and LAPI sources send what they fetched. In the daemon it is the decision
/// service's [`Handle`](crate::service::Handle); calls block until it answers.
pub trait Sink: Send + 'static {
    /// Why a call failed.
    type Error: std::fmt::Display;
    /// The allowlist to filter with, as published now.
    fn allowlist(&self) -> Arc<Allowlist>;
    /// Replaces list `name` with `prepared`, filtered with allowlist `allow_version`.
    fn replace_list(
        &self,
        name: &str,
        prepared: Prepared,
        allow_version: u64,
        duration: Duration,
    ) -> Result<ImportReport, Self::Error>;
    /// Renews list `name`'s lease; false if it had lapsed.
    fn renew_list(&self, name: &str, duration: Duration) -> Result<bool, Self::Error>;
    /// Adds or extends bans; values the guard refuses are left out (and counted).
    fn ban(&self, batch: Vec<NewDecision>) -> Result<(), Self::Error>;
    /// Removes `origin`'s decision on `value`.
    fn unban(&self, value: Prefix, origin: Origin) -> Result<(), Self::Error>;
}

/// A list made ready for the kernel, with what was left out and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The format read.
    pub format: Option<Format>,
    /// Entries read.
    pub read: u64,
    /// Entries rejected by the parser, by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Entries (or parts) removed by the filter.
    pub filtered: FilterReport,
    /// The aggregated prefixes to ban.
    pub prefixes: Vec<Prefix>,
}

/// Parse (format given or detected), filter and aggregate a list. Entries far from every
/// range the filter removes go straight to aggregation; only the others are filtered one by one.
pub fn prepare(text: &str, format: Option<Format>, allow: &Allowlist) -> Prepared {
    let format = format.unwrap_or_else(|| formats::detect(text));
    let holes = filter::Holes::new(allow);
    let mut ranges = aggregate::Ranges::with_capacity(text.len() / 14);
    let mut near = Vec::new();
    let mut read = 0u64;
    let mut rejected = std::collections::BTreeMap::new();
    formats::read_each(text, format, &mut rejected, &mut |e| {
        read += 1;
        match e {
            formats::Entry::V4(addr, len) if holes.v4_clear(addr, len) => {
                ranges.push_v4(addr, len);
            }
            e => {
                let p = e.prefix();
                if holes.may_touch(&p) {
                    near.push(p);
                } else {
                    ranges.push(&p);
                }
            }
        }
    });
    let (kept, filtered) = holes.filter(near);
    for p in &kept {
        ranges.push(p);
    }
    Prepared {
        format: Some(format),
        read,
        rejected,
        filtered,
        prefixes: ranges.aggregate(),
    }
}
