//! Decisions: what is banned, by whom, until when; and the allowlist that no decision may cover.
//!
//! The [`DecisionService`] is where every producer's request ends up: it owns the store, the
//! profiles and the allowlist, decides, writes the [`Store`] (SQLite by default, see
//! [`sqlite::SqliteStore`]), and hands back the [`Changes`] the write made, which the enforcer
//! mirrors into the kernel. Adding a decision that exists (same value, same origin) extends it
//! instead of adding a second one.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

mod allowlist;
mod changes;
mod guard;
mod lists;
mod origin;
pub mod pg;
pub mod profiles;
mod rows;
mod service;
pub mod sqlite;
mod store;

pub use allowlist::{Allowlist, AllowlistWatch};
pub use changes::{Changes, Diff, Effective};
pub use guard::{GuardError, MinPrefix};
pub use origin::{Origin, OriginError, check_name};
pub use pg::PgStore;
pub use profiles::Outcome;
pub use service::{BanMode, DecisionService, ImportReport, ImportTimes};
pub use sqlite::SqliteStore;
pub use store::{
    AlertLog, AlertQuery, AllowStore, BouncerStore, BouncerStream, Cursor, DecisionStore,
    KernelView, ListChange, ListStore, ListSummary, LocalState, Page, STATE_CENTRAL,
    STATE_INTERFACES, STATE_OFFSETS, Store, StreamDelta, Transactions,
};

/// Opens the store `[store]` names: PostgreSQL when it has a `url`, else the SQLite file.
pub fn open_store(config: &crate::config::StoreConfig) -> Result<Box<dyn Store>, StoreError> {
    match &config.url {
        Some(url) => {
            let node = config.node.clone().unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "ips".to_owned())
            });
            Ok(Box::new(PgStore::connect(url, &node)?))
        }
        None => Ok(Box::new(SqliteStore::open(&config.path)?)),
    }
}

/// A ban as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Row id.
    pub id: i64,
    /// The banned address or prefix.
    pub value: Prefix,
    /// `Ip` or `Range`, as CrowdSec names them.
    pub scope: String,
    /// Always `ban` for now.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who decided.
    pub origin: Origin,
    /// Why: free text, or the scenario name.
    pub reason: String,
    /// Unix time in milliseconds.
    pub created_ms: i64,
    /// Unix time in milliseconds.
    pub expires_ms: i64,
}

/// A ban to add.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDecision {
    /// The address or prefix.
    pub value: Prefix,
    /// Who decides.
    pub origin: Origin,
    /// Why.
    pub reason: String,
    /// How long, in milliseconds from now.
    pub duration_ms: i64,
}

/// An allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    /// The allowed address or prefix.
    pub value: Prefix,
    /// Why it is allowed.
    pub reason: String,
    /// `config` for entries from `ips.toml` (kept in step with it), `manual` otherwise.
    pub source: String,
    /// Unix time in milliseconds.
    pub created_ms: i64,
}

/// An alert as stored, with what was decided about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// Scenario name.
    pub scenario: String,
    /// The source address of the overflowing event.
    pub source: IpAddr,
    /// The bucket group (the address, or its /64).
    pub group: Prefix,
    /// First event (Unix ms).
    pub first_ms: i64,
    /// Overflowing event (Unix ms).
    pub last_ms: i64,
    /// Events in the bucket.
    pub events: u32,
    /// What was decided: banned (what, how long), simulated, or allowlisted (why not).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Sample of the log lines.
    pub evidence: Vec<String>,
    /// Scenario labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The agent that raised it, on a central node ("" for this host's own).
    #[serde(default)]
    pub machine: String,
}

/// A decision that was removed (deleted, expired, dropped from a list), kept for the CrowdSec
/// bouncer stream's `deleted` part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The decision's id.
    pub id: i64,
    /// Its value.
    pub value: Prefix,
    /// Its origin.
    pub origin: Origin,
    /// Its type.
    pub kind: String,
    /// Its reason or scenario.
    pub reason: String,
    /// When it was removed (Unix ms).
    pub deleted_ms: i64,
}

/// A registered bouncer (a consumer of the CrowdSec-compatible stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bouncer {
    /// Name.
    pub name: String,
    /// What its key may do over TCP.
    #[serde(default)]
    pub role: Role,
    /// Last stream pull (Unix ms), 0 if never.
    pub last_pull_ms: i64,
    /// A machine's last heartbeat (Unix ms), 0 if never.
    #[serde(default)]
    pub seen_ms: i64,
    /// When it was added.
    pub created_ms: i64,
    /// The `ips` version a machine last reported ("" if none).
    #[serde(default)]
    pub version: String,
}

/// What a key may do over TCP. Every role reads decisions (the CrowdSec bouncer endpoints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A CrowdSec bouncer: reads decisions.
    #[default]
    Bouncer,
    /// An `ips` agent: also pushes its alerts and decisions and sends heartbeats.
    Machine,
    /// An operator's token: everything the unix socket allows.
    Admin,
}

impl Role {
    /// Its name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bouncer => "bouncer",
            Self::Machine => "machine",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bouncer" => Ok(Self::Bouncer),
            "machine" => Ok(Self::Machine),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role {other:?}: bouncer, machine or admin")),
        }
    }
}

/// Errors of a decision store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the decision store at {path}: {source}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("decision store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The PostgreSQL store cannot be reached.
    #[error("cannot connect to the decision store at {url}: {source}")]
    PgOpen {
        /// Where (without the password).
        url: String,
        /// Why.
        #[source]
        source: postgres::Error,
    },
    /// A PostgreSQL query failed.
    #[error("decision store (PostgreSQL): {0}")]
    Pg(#[from] postgres::Error),
    /// A ban would cover an allowlisted address.
    #[error("{value} is allowlisted (by {by}): refusing to ban it")]
    Allowlisted {
        /// The refused value.
        value: Prefix,
        /// The allowlist entry that covers it.
        by: Prefix,
    },
    /// A bouncer name is taken.
    #[error("a key named {0:?} exists already")]
    BouncerExists(String),
    /// No origin ids left for drop attribution.
    #[error("too many origins: {name:?} cannot get an id below {max}")]
    TooManyOrigins {
        /// The origin that asked.
        name: String,
        /// The limit.
        max: u32,
    },
    /// A stored row does not parse: the file was edited by hand or is damaged.
    #[error("decision store holds a bad value {value:?}: {reason}")]
    BadRow {
        /// What is stored.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The duration is not positive.
    #[error("duration must be positive, got {0} ms")]
    BadDuration(i64),
    /// A bad list name or origin.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// A row the caller named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The guard refused a value (catch-all, too wide, private or reserved).
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// What `new` has that `old` lacks, and what `old` has that `new` lacks; both sorted and
/// without repeats.
pub fn sorted_diff(old: &[Prefix], new: &[Prefix]) -> (Vec<Prefix>, Vec<Prefix>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}
