//! The guard every decision passes, whatever its source: no catch-all ban, and no prefix
//! shorter than the configured minimum (an IPv4-mapped `::ffff:0:0/96` is IPv4 `0.0.0.0/0`)
//! unless the operator forces it; nothing allowlisted, ever (the store refuses it). Sources
//! (lists, LAPIs, the hub) are filtered further: their entries in private, bogon and reserved
//! ranges are left out (see `blocklists::filter`); the operator may ban an internal host.
use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

/// The shortest prefix any source may ban, per family (`[decisions] min_prefix_v4`, `_v6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MinPrefix {
    /// IPv4 (default /8).
    pub v4: u8,
    /// IPv6 (default /16).
    pub v6: u8,
}

impl Default for MinPrefix {
    fn default() -> Self {
        Self { v4: 8, v6: 16 }
    }
}

impl MinPrefix {
    /// True if `p` is long enough to be banned.
    pub fn allows(&self, p: &Prefix) -> bool {
        p.prefix_len() >= if p.is_v4() { self.v4 } else { self.v6 }
    }
}

/// Why the guard refused a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A ban of every address of a family.
    #[error("refusing to ban {0}: it covers every address, this host's management too")]
    CatchAll(Prefix),
    /// Shorter than the minimum.
    #[error(
        "refusing to ban {value}: shorter than /{min} (decisions.min_prefix_{family}); --force to ban it anyway"
    )]
    TooWide {
        /// The value.
        value: Prefix,
        /// The minimum length.
        min: u8,
        /// `v4` or `v6`.
        family: &'static str,
    },
}

/// Checks one value an operator asked to ban. `force` lifts the minimum length, never the
/// catch-all.
pub fn check(value: &Prefix, min: &MinPrefix, force: bool) -> Result<(), GuardError> {
    if value.prefix_len() == 0 {
        return Err(GuardError::CatchAll(*value));
    }
    if force {
        return Ok(());
    }
    if !min.allows(value) {
        let (min, family) = if value.is_v4() {
            (min.v4, "v4")
        } else {
            (min.v6, "v6")
        };
        return Err(GuardError::TooWide {
            value: *value,
            min,
            family,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn catch_alls_and_wide_prefixes_are_refused() {
        let min = MinPrefix::default();
        for v in ["0.0.0.0/0", "::/0", "::ffff:0:0/96"] {
            assert!(matches!(
                check(&p(v), &min, true),
                Err(GuardError::CatchAll(_))
            ));
        }
        let e = check(&p("5.0.0.0/7"), &min, false).unwrap_err();
        assert!(e.to_string().contains("min_prefix_v4"), "{e}");
        assert!(check(&p("2a00::/15"), &min, false).is_err());
        assert!(check(&p("5.0.0.0/7"), &min, true).is_ok());
        assert!(check(&p("5.0.0.0/8"), &min, false).is_ok());
        assert!(check(&p("2a00::/16"), &min, false).is_ok());
        // An internal host is the operator's call.
        assert!(check(&p("10.1.2.3"), &min, false).is_ok());
    }
}
