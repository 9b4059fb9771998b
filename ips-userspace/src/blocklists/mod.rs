//! Blocklists: community lists turned into decisions. [`formats`] reads the common list formats
//! (skipping bad entries with a counted reason), [`filter`] removes bogon, private and reserved
//! ranges and allowlisted addresses so that a list can never lock out a private network, and
//! [`aggregate`] merges contained and adjacent prefixes into the fewest that cover exactly the
//! same addresses.
pub mod aggregate;
pub mod filter;
pub mod formats;
pub mod lapi;
pub mod source;

pub use aggregate::aggregate;
pub use filter::{FilterReport, filter};
pub use formats::{Format, Parsed, parse};

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

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
pub fn prepare(text: &str, format: Option<Format>, allowlist: &[Prefix]) -> Prepared {
    let format = format.unwrap_or_else(|| formats::detect(text));
    let holes = filter::Holes::new(allowlist);
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
