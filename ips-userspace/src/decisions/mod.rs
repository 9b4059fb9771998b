//! Decisions: what is banned, by whom, until when; and the allowlist that no decision may cover.
//!
//! A [`Decision`] is kept in a [`Store`] (SQLite by default, see [`sqlite::SqliteStore`]), the
//! one truth that the enforcer mirrors into the kernel. Adding a decision that exists (same value,
//! same origin) extends it instead of adding a second row.
use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;

mod lists;
pub mod profiles;
pub mod sqlite;
pub use sqlite::SqliteStore;

/// Origin name of decisions added by hand.
pub const ORIGIN_MANUAL: &str = "manual";
/// Origin name of decisions taken by the detection pipeline.
pub const ORIGIN_DETECTION: &str = "detection";
/// Origin name of decisions from a CrowdSec LAPI or the community hub.
pub const ORIGIN_CROWD: &str = "crowdsec";

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
    /// Who decided: `manual`, `detection`, `crowdsec`, `list:<name>`.
    pub origin: String,
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
    pub origin: String,
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
    pub source: String,
    /// The bucket group (the address, or its /64).
    pub group: String,
    /// First event (Unix ms).
    pub first_ms: i64,
    /// Overflowing event (Unix ms).
    pub last_ms: i64,
    /// Events in the bucket.
    pub events: u32,
    /// `ban`, `simulated` or `allowlisted`.
    pub outcome: String,
    /// What was (or would have been) banned.
    pub value: Option<String>,
    /// For how long.
    pub duration_ms: Option<i64>,
    /// Why not banned, for allowlisted alerts.
    pub reason: Option<String>,
    /// Sample of the log lines.
    pub evidence: Vec<String>,
    /// Scenario labels.
    pub labels: std::collections::BTreeMap<String, String>,
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
    pub origin: String,
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
    /// Last stream pull (Unix ms), 0 if never.
    pub last_pull_ms: i64,
    /// When it was added.
    pub created_ms: i64,
}

/// What the kernel should hold for one value: the origin to attribute drops to, or nothing.
pub type Effective = (Prefix, Option<u32>);

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
    /// A ban would cover an allowlisted address.
    #[error("{value} is allowlisted (by {by}): refusing to ban it")]
    Allowlisted {
        /// The refused value.
        value: Prefix,
        /// The allowlist entry that covers it.
        by: Prefix,
    },
    /// A bouncer name is taken.
    #[error("a bouncer named {0:?} exists already")]
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

/// The decision store. SQLite is the default; the trait is the seam for a PostgreSQL backend.
pub trait Store: Send {
    /// The numeric id of an origin name (drop counters are indexed by it), allocating one if new.
    fn origin_id(&mut self, name: &str) -> Result<u32, StoreError>;
    /// All origins with their ids.
    fn origins(&self) -> Result<Vec<(u32, String)>, StoreError>;
    /// Adds or extends decisions in one transaction. Refuses the whole batch if one value is
    /// allowlisted.
    fn upsert(&mut self, batch: &[NewDecision], now_ms: i64) -> Result<Vec<Decision>, StoreError>;
    /// The entries of blocklist `origin` (sorted), empty if it has none.
    fn origin_values(&self, origin: &str) -> Result<Vec<Prefix>, StoreError>;
    /// Makes blocklist `origin`'s entries exactly `values` under a lease that ends
    /// `duration_ms` from now, in one transaction; the change is logged for the stream's
    /// deltas. Returns the values added and removed. No allowlist check here: filter before.
    fn replace_origin(
        &mut self,
        origin: &str,
        values: Vec<Prefix>,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<(Vec<Prefix>, Vec<Prefix>), StoreError>;
    /// Extends blocklist `origin`'s lease to end `duration_ms` from now (a list that did not
    /// change, or could not be fetched). Returns whether the list is active.
    fn renew_origin(
        &mut self,
        origin: &str,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Removes every decision on `value` (of any origin, or of one). Returns how many.
    fn delete(&mut self, value: &Prefix, origin: Option<&str>) -> Result<usize, StoreError>;
    /// Decisions not yet expired, optionally only those on one value.
    fn list(&self, now_ms: i64, value: Option<&Prefix>) -> Result<Vec<Decision>, StoreError>;
    /// How many decisions are not yet expired.
    fn count_active(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// What the kernel should hold for each of `values`.
    fn effective(&self, values: &[Prefix], now_ms: i64) -> Result<Vec<Effective>, StoreError>;
    /// Calls `each` with every value that should be in the kernel and the origin to attribute it
    /// to, without loading all decisions in memory.
    fn for_each_active(
        &self,
        now_ms: i64,
        each: &mut dyn FnMut(Prefix, u32),
    ) -> Result<(), StoreError>;
    /// Deletes expired decisions and returns the values they were on (each once).
    fn take_expired(&mut self, now_ms: i64) -> Result<Vec<Prefix>, StoreError>;
    /// Adds an allowlist entry and deletes the decisions that lie inside it. Returns those values.
    fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<Vec<Prefix>, StoreError>;
    /// Removes an allowlist entry. Returns whether it existed.
    fn allow_delete(&mut self, value: &Prefix) -> Result<bool, StoreError>;
    /// The allowlist.
    fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError>;
    /// The allowlist entry that covers `value`, if any.
    fn allow_covering(&self, value: &Prefix) -> Option<Prefix>;
    /// Stores an alert; returns its id.
    fn add_alert(&mut self, alert: &StoredAlert) -> Result<i64, StoreError>;
    /// The newest alerts first, optionally of one scenario or source.
    fn alerts(
        &self,
        limit: usize,
        scenario: Option<&str>,
        source: Option<&str>,
    ) -> Result<Vec<StoredAlert>, StoreError>;
    /// One alert.
    fn alert(&self, id: i64) -> Result<Option<StoredAlert>, StoreError>;
    /// Bans of `value` decided since `since_ms` (for escalation).
    fn previous_bans(&self, value: &str, since_ms: i64) -> Result<u32, StoreError>;
    /// Saves where a followed file was read up to.
    fn save_offsets(
        &mut self,
        positions: &[crate::acquisition::Position],
    ) -> Result<(), StoreError>;
    /// Saved read positions.
    fn offsets(&self) -> Result<Vec<crate::acquisition::Position>, StoreError>;
    /// Decisions created after `since_ms` and still active at `now_ms`.
    fn created_since(&self, since_ms: i64, now_ms: i64) -> Result<Vec<Decision>, StoreError>;
    /// Decisions removed after `since_ms`.
    fn deleted_since(&self, since_ms: i64) -> Result<Vec<Tombstone>, StoreError>;
    /// Forgets tombstones and logged list changes older than `before_ms`; returns how many.
    fn prune_tombstones(&mut self, before_ms: i64) -> Result<usize, StoreError>;
    /// Registers a bouncer by the SHA-256 of its key; fails if the name exists.
    fn add_bouncer(&mut self, name: &str, key_sha256: &str, now_ms: i64) -> Result<(), StoreError>;
    /// The bouncer with this key hash.
    fn bouncer_by_key(&self, key_sha256: &str) -> Result<Option<Bouncer>, StoreError>;
    /// Records a bouncer's stream pull.
    fn set_bouncer_pull(&mut self, name: &str, now_ms: i64) -> Result<(), StoreError>;
    /// All bouncers.
    fn bouncers(&self) -> Result<Vec<Bouncer>, StoreError>;
    /// Removes a bouncer; returns whether it existed.
    fn delete_bouncer(&mut self, name: &str) -> Result<bool, StoreError>;
    /// Records how an interface was attached, for `ips status` after a restart.
    fn set_interface(&mut self, name: &str, mode: Option<&str>) -> Result<(), StoreError>;
    /// Interfaces and their attach modes.
    fn interfaces(&self) -> Result<Vec<(String, String)>, StoreError>;
}
