//! The allowlist as the decision service publishes it: a version and the prefixes, shared
//! through a `tokio::sync::watch` channel. List preparers read the current one without asking
//! anybody, filter with it and tag what they prepared with its version; the service filters
//! again only if the version moved in between.
use std::sync::Arc;

use tokio::sync::watch;

use super::MinPrefix;
use crate::prefix::Prefix;

/// One version of the allowlist, with the shortest prefixes any source may ban: what every
/// source's entries are filtered with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Bumped by every change.
    pub version: u64,
    /// The allowed prefixes.
    pub prefixes: Vec<Prefix>,
    /// The minimum prefix lengths (from `[decisions]`, fixed while the daemon runs).
    pub min: MinPrefix,
    /// What no ban may cover unless the operator forces it, and no source ever: this host's
    /// own addresses and `[decisions] management` ranges (fixed while the daemon runs).
    pub protected: Vec<Prefix>,
}

impl Allowlist {
    /// The entry that covers `value`, if any.
    pub fn covering(&self, value: &Prefix) -> Option<Prefix> {
        self.prefixes.iter().find(|a| a.contains(value)).copied()
    }
}

/// Where to read the current allowlist from: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct AllowlistWatch(watch::Receiver<Arc<Allowlist>>);

impl AllowlistWatch {
    /// The current allowlist.
    pub fn current(&self) -> Arc<Allowlist> {
        self.0.borrow().clone()
    }
}

/// The sending side, held by the decision service.
#[derive(Debug)]
pub(crate) struct Publisher(watch::Sender<Arc<Allowlist>>);

impl Publisher {
    pub(crate) fn new(prefixes: Vec<Prefix>, min: MinPrefix, protected: Vec<Prefix>) -> Self {
        Self(watch::Sender::new(Arc::new(Allowlist {
            version: 1,
            prefixes,
            min,
            protected,
        })))
    }

    pub(crate) fn current(&self) -> Arc<Allowlist> {
        self.0.borrow().clone()
    }

    pub(crate) fn watch(&self) -> AllowlistWatch {
        AllowlistWatch(self.0.subscribe())
    }

    /// Publishes `prefixes` as the next version, if they differ; returns what is current.
    pub(crate) fn publish(&self, prefixes: Vec<Prefix>) -> Arc<Allowlist> {
        let current = self.current();
        if current.prefixes == prefixes {
            return current;
        }
        let next = Arc::new(Allowlist {
            version: current.version + 1,
            prefixes,
            min: current.min,
            protected: current.protected.clone(),
        });
        self.0.send_replace(next.clone());
        next
    }
}
