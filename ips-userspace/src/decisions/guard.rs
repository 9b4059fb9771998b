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
    /// Covers (or lies in) this host's address or a management range.
    #[error(
        "refusing to ban {value}: it covers {protected}, this host's own address or a management range (decisions.management); --force to ban it anyway"
    )]
    Protected {
        /// The value.
        value: Prefix,
        /// What it covers.
        protected: Prefix,
    },
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

/// Checks one value an operator asked to ban. `force` lifts the minimum length and the
/// protected ranges (`protected`: this host's addresses, management ranges), never the
/// catch-all.
pub fn check(
    value: &Prefix,
    min: &MinPrefix,
    protected: &[Prefix],
    force: bool,
) -> Result<(), GuardError> {
    if value.prefix_len() == 0 {
        return Err(GuardError::CatchAll(*value));
    }
    if force {
        return Ok(());
    }
    if let Some(p) = protected
        .iter()
        .find(|p| value.contains(p) || p.contains(value))
    {
        return Err(GuardError::Protected {
            value: *value,
            protected: *p,
        });
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
                check(&p(v), &min, &[], true),
                Err(GuardError::CatchAll(_))
            ));
        }
        let e = check(&p("5.0.0.0/7"), &min, &[], false).unwrap_err();
        assert!(e.to_string().contains("min_prefix_v4"), "{e}");
        assert!(check(&p("2a00::/15"), &min, &[], false).is_err());
        assert!(check(&p("5.0.0.0/7"), &min, &[], true).is_ok());
        assert!(check(&p("5.0.0.0/8"), &min, &[], false).is_ok());
        assert!(check(&p("2a00::/16"), &min, &[], false).is_ok());
        // An internal host is the operator's call.
        assert!(check(&p("10.1.2.3"), &min, &[], false).is_ok());
    }

    #[test]
    fn this_hosts_addresses_and_management_ranges_need_force() {
        let min = MinPrefix::default();
        let protected = [p("10.77.0.1"), p("45.33.12.0/24")];
        for v in [
            "10.77.0.1",
            "10.77.0.0/24",
            "45.33.12.9",
            "45.33.0.0/16",
            "45.0.0.0/8",
        ] {
            let e = check(&p(v), &min, &protected, false).unwrap_err();
            assert!(matches!(e, GuardError::Protected { .. }), "{v}: {e}");
            assert!(e.to_string().contains("--force"), "{e}");
            assert!(check(&p(v), &min, &protected, true).is_ok(), "{v}");
        }
        for v in ["10.77.0.2", "45.33.13.0/24", "45.34.0.0/16"] {
            assert!(check(&p(v), &min, &protected, false).is_ok(), "{v}");
        }
    }
}
