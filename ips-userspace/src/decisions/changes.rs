//! What a decision changed, for the kernel: [`Diff`] (values to ban, with the origin drops are
//! attributed to, and values to unban) and, with it, [`Changes`] (the diff plus the allowlist
//! when it moved). The store computes them inside the write that caused them; the enforcer
//! mirrors them into the maps and reads nothing back.
use std::sync::Arc;

use super::Allowlist;
use crate::prefix::Prefix;

/// What the kernel should hold for one value: the origin to attribute drops to, or nothing.
pub type Effective = (Prefix, Option<u32>);

/// Changes to make in the kernel's ban maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Values to ban (or re-attribute), with their origin id.
    pub upsert: Vec<(Prefix, u32)>,
    /// Values to unban.
    pub delete: Vec<Prefix>,
}

impl Diff {
    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.delete.is_empty()
    }

    /// The diff that sets each value to what it should be.
    pub fn from_effective(values: impl IntoIterator<Item = Effective>) -> Self {
        let mut diff = Self::default();
        for (p, origin) in values {
            match origin {
                Some(o) => diff.upsert.push((p, o)),
                None => diff.delete.push(p),
            }
        }
        diff
    }

    /// Appends another diff (applied after this one's entries).
    pub fn extend(&mut self, other: Self) {
        self.upsert.extend(other.upsert);
        self.delete.extend(other.delete);
    }
}

/// Everything one decision changed for the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Bans to add, re-attribute or remove.
    pub bans: Diff,
    /// The whole allowlist, when it changed (set before the bans are applied).
    pub allowlist: Option<Arc<Allowlist>>,
    /// Origin ids given out (new, or an origin gone whose id is reused): their drop counters
    /// are zeroed before the bans are applied.
    pub new_origins: Vec<u32>,
}

impl From<Diff> for Changes {
    fn from(bans: Diff) -> Self {
        Self {
            bans,
            ..Self::default()
        }
    }
}

impl Changes {
    /// True if the kernel has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty() && self.allowlist.is_none() && self.new_origins.is_empty()
    }
}
