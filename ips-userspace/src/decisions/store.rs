//! The store's traits, one per concern, and [`Store`], which is all of them. SQLite implements
//! them ([`super::SqliteStore`]), and PostgreSQL for central nodes sharing one database
//! ([`super::PgStore`]).
//!
//! Writes that change what the kernel should hold return the [`Diff`] they made, computed in
//! the same transaction: callers never read back what they just wrote.
use super::{
    AllowEntry, Bouncer, Decision, Diff, Effective, NewDecision, Origin, StoreError, StoredAlert,
    Tombstone,
};
use crate::prefix::Prefix;

/// Decisions kept as rows: bans by hand, by detection, from a LAPI.
pub trait DecisionStore: Send {
    /// The numeric id of an origin (drop counters are indexed by it), allocating one if new.
    fn origin_id(&mut self, origin: &Origin) -> Result<u32, StoreError>;
    /// The origin ids given out (new, or taken back from an origin gone) since the last call:
    /// their drop counters in the kernel start again from zero.
    fn take_new_origins(&mut self) -> Vec<u32>;
    /// All origins with their ids, by name as stored.
    fn origins(&self) -> Result<Vec<(u32, String)>, StoreError>;
    /// Adds or extends decisions in one transaction. Refuses the whole batch if one value is
    /// allowlisted. Returns the decisions and what the kernel should now hold for their values.
    fn upsert(
        &mut self,
        batch: &[NewDecision],
        now_ms: i64,
    ) -> Result<(Vec<Decision>, Diff), StoreError>;
    /// Removes every decision on `value` (of any origin, or of one). Returns how many, and what
    /// the kernel should now hold for the value (another origin may still ban it).
    fn delete(
        &mut self,
        value: &Prefix,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<(usize, Diff), StoreError>;
    /// Decisions not yet expired, optionally only those on one value.
    fn list(&self, now_ms: i64, value: Option<&Prefix>) -> Result<Vec<Decision>, StoreError>;
    /// Active decisions whose value covers `value` (equal or wider).
    fn covering(&self, value: &Prefix, now_ms: i64) -> Result<Vec<Decision>, StoreError> {
        let mut out = Vec::new();
        for len in 0..=value.prefix_len() {
            if let Ok(wider) = Prefix::new(value.addr(), len) {
                out.extend(self.list(now_ms, Some(&wider))?);
            }
        }
        Ok(out)
    }
    /// One page of the active decisions (of one origin, or all): rows by id, then each list's
    /// entries in order; at most `limit`, after `after`. Bounded work per call, so a listing of
    /// millions never holds the service's thread for long.
    fn page(
        &self,
        now_ms: i64,
        after: Option<&Cursor>,
        limit: usize,
        origin: Option<&Origin>,
    ) -> Result<Page, StoreError>;
    /// How many decisions are not yet expired.
    fn count_active(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// Deletes expired decisions (and lists whose lease ended); returns what the kernel should
    /// now hold for the values they were on.
    fn take_expired(&mut self, now_ms: i64) -> Result<Diff, StoreError> {
        Ok(self.take_expired_at_most(now_ms, usize::MAX)?.0)
    }
    /// [`DecisionStore::take_expired`] for at most `limit` decision rows (those that ended
    /// first), so that a mass expiry is done in steps with other work between them. The bool
    /// says whether more expired rows are left.
    fn take_expired_at_most(
        &mut self,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Diff, bool), StoreError>;
}

/// Where a page of decisions ends: the last row id, or the last entry of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After the decision row with this id.
    Row(i64),
    /// After this entry of the list with this origin id.
    Entry(u32, Prefix),
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Row(id) => write!(f, "r{id}"),
            Self::Entry(origin, p) => write!(f, "l{origin}-{p}"),
        }
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad cursor {s:?}: pass the `next` of the page before");
        if let Some(id) = s.strip_prefix('r') {
            return id.parse().map(Self::Row).map_err(|_| bad());
        }
        let (origin, value) = s
            .strip_prefix('l')
            .and_then(|rest| rest.split_once('-'))
            .ok_or_else(bad)?;
        Ok(Self::Entry(
            origin.parse().map_err(|_| bad())?,
            value.parse().map_err(|_| bad())?,
        ))
    }
}

/// A page of decisions and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Page {
    /// The decisions.
    pub decisions: Vec<Decision>,
    /// The cursor for the next page.
    pub next: Option<String>,
}

/// What replacing a list did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListChange {
    /// Values newly on the list.
    pub added: Vec<Prefix>,
    /// Values no longer on it.
    pub removed: Vec<Prefix>,
    /// What the kernel should now hold for both.
    pub kernel: Diff,
}

/// One stored list, for `ips blocklist status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListSummary {
    /// Its origin.
    pub origin: Origin,
    /// Entries.
    pub entries: u64,
    /// First imported (Unix ms).
    pub since_ms: i64,
    /// Its lease ends (Unix ms).
    pub lease_ms: i64,
}

/// Blocklists: one sorted snapshot per list under a lease, and a log of their changes.
pub trait ListStore: Send {
    /// The lists whose lease has not ended.
    fn lists(&self, now_ms: i64) -> Vec<ListSummary>;
    /// The entries of a list (sorted), empty if it has none.
    fn list_values(&self, origin: &Origin) -> Result<Vec<Prefix>, StoreError>;
    /// Makes a list's entries exactly `values` under a lease that ends `duration_ms` from now,
    /// in one transaction; the change is logged for the stream's deltas. No allowlist check
    /// here: filter before.
    fn replace_list(
        &mut self,
        origin: &Origin,
        values: Vec<Prefix>,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<ListChange, StoreError>;
    /// Extends a list's lease to end `duration_ms` from now (a list that did not change, or
    /// could not be fetched). Returns whether the list is active.
    fn renew_list(
        &mut self,
        origin: &Origin,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
}

/// The allowlist: addresses no decision may cover.
pub trait AllowStore: Send {
    /// Adds an entry and deletes the decisions that lie inside it. Returns those values and
    /// what the kernel should now hold for them.
    fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<(Vec<Prefix>, Diff), StoreError>;
    /// Removes an entry. Returns whether it existed.
    fn allow_delete(&mut self, value: &Prefix) -> Result<bool, StoreError>;
    /// The allowlist.
    fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError>;
}

/// Rows and lists merged into what the kernel should hold.
pub trait KernelView {
    /// What the kernel should hold for each of `values`: the origin of the decision that lasts
    /// longest, or nothing.
    fn effective(&self, values: &[Prefix], now_ms: i64) -> Result<Vec<Effective>, StoreError>;
    /// Calls `each` with every value that should be in the kernel, the origin to attribute it
    /// to and when its longest-lasting decision ends (Unix ms), without loading all decisions in
    /// memory.
    fn for_each_active(
        &self,
        now_ms: i64,
        each: &mut dyn FnMut(Prefix, u32, i64),
    ) -> Result<(), StoreError>;
}

/// Registered bouncers (CrowdSec API keys, stored as SHA-256).
pub trait BouncerStore: Send {
    /// Registers a bouncer by the SHA-256 of its key; fails if the name exists.
    fn add_bouncer(
        &mut self,
        name: &str,
        key_sha256: &str,
        role: super::Role,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Records that a machine was heard from, and the version it runs.
    fn set_seen(&mut self, name: &str, now_ms: i64, version: &str) -> Result<(), StoreError>;
    /// The bouncer with this key hash.
    fn bouncer_by_key(&self, key_sha256: &str) -> Result<Option<Bouncer>, StoreError>;
    /// Records a bouncer's stream pull.
    fn set_bouncer_pull(&mut self, name: &str, now_ms: i64) -> Result<(), StoreError>;
    /// All bouncers.
    fn bouncers(&self) -> Result<Vec<Bouncer>, StoreError>;
    /// Removes a bouncer; returns whether it existed.
    fn delete_bouncer(&mut self, name: &str) -> Result<bool, StoreError>;
}

/// The CrowdSec stream's deltas: what was created and removed since a time.
pub trait BouncerStream: DecisionStore + BouncerStore {
    /// Decisions created after `since_ms` and still active at `now_ms`.
    fn created_since(&self, since_ms: i64, now_ms: i64) -> Result<Vec<Decision>, StoreError>;
    /// Decisions removed after `since_ms`.
    fn deleted_since(&self, since_ms: i64) -> Result<Vec<Tombstone>, StoreError>;
    /// Forgets tombstones and logged list changes older than `before_ms`; returns how many.
    fn prune_tombstones(&mut self, before_ms: i64) -> Result<usize, StoreError>;
    /// A bouncer's stream pull (and records it): on `startup` (or its first pull) every active
    /// decision; else every active decision on a value that got a new decision since its last
    /// pull, the decisions removed since, and what is still active on the removed values (a
    /// value still banned gets no delete). The API filters and keeps one decision per value.
    fn stream(
        &mut self,
        bouncer: &str,
        startup: bool,
        now_ms: i64,
    ) -> Result<StreamDelta, StoreError> {
        let last = self
            .bouncers()?
            .into_iter()
            .find(|b| b.name == bouncer)
            .map_or(0, |b| b.last_pull_ms);
        let delta = if startup || last == 0 {
            StreamDelta {
                active: std::sync::Arc::new(self.list(now_ms, None)?),
                ..StreamDelta::default()
            }
        } else {
            let on = |values: std::collections::BTreeSet<Prefix>| {
                let mut out = Vec::new();
                for v in values {
                    out.extend(self.list(now_ms, Some(&v))?);
                }
                Ok::<_, StoreError>(out)
            };
            let created = self.created_since(last, now_ms)?;
            let active = on(created.iter().map(|d| d.value).collect())?;
            let deleted = self.deleted_since(last)?;
            let still_active = on(deleted.iter().map(|t| t.value).collect())?;
            StreamDelta {
                active: std::sync::Arc::new(active),
                deleted,
                still_active,
            }
        };
        self.set_bouncer_pull(bouncer, now_ms)?;
        Ok(delta)
    }
}

/// What a bouncer's pull is made of (see [`BouncerStream::stream`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamDelta {
    /// Active decisions on the values to send as new (several per value possible); shared, as
    /// the whole set a startup pull gets is made once for every bouncer that asks.
    pub active: std::sync::Arc<Vec<Decision>>,
    /// Decisions removed since the last pull.
    pub deleted: Vec<Tombstone>,
    /// Active decisions on the removed values.
    pub still_active: Vec<Decision>,
}

/// Which alerts [`AlertLog::alerts`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertQuery {
    /// At most this many, newest first.
    pub limit: usize,
    /// Only this scenario.
    pub scenario: Option<String>,
    /// Only this source address.
    pub source: Option<std::net::IpAddr>,
    /// Only those of this agent (on a central node); `Some("")` for this host's own.
    pub machine: Option<String>,
}

/// Alerts with their evidence and outcome.
pub trait AlertLog: Send {
    /// Stores an alert; returns its id.
    fn add_alert(&mut self, alert: &StoredAlert) -> Result<i64, StoreError>;
    /// The newest alerts first.
    fn alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;
    /// One alert.
    fn alert(&self, id: i64) -> Result<Option<StoredAlert>, StoreError>;
    /// This host's own alerts (not pushed by an agent) with an id above `after`, oldest first.
    fn alerts_after(&self, after: i64, limit: usize) -> Result<Vec<StoredAlert>, StoreError>;
    /// Bans of `value` decided since `since_ms` (for escalation).
    fn previous_bans(&self, value: &Prefix, since_ms: i64) -> Result<u32, StoreError>;
}

/// State of this host's daemon that is not a decision, kept as opaque rows: read offsets of
/// followed files (the acquisition module encodes them), how interfaces were attached.
pub trait LocalState: Send {
    /// Sets rows of `kind` (key, value), replacing those with the same key.
    fn save_state(&mut self, kind: &str, rows: &[(String, String)]) -> Result<(), StoreError>;
    /// The rows of `kind`, by key.
    fn state(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Removes one row.
    fn delete_state(&mut self, kind: &str, key: &str) -> Result<(), StoreError>;
}

/// One decision as one unit: every write between [`Transactions::begin`] and
/// [`Transactions::commit`] lands together, or none does after [`Transactions::rollback`]
/// (which also brings what the store keeps in memory back to what is stored). The decision
/// service's worker commits only once the kernel took the change.
pub trait Transactions: Send {
    /// Opens the unit.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Makes it stick.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Undoes it.
    fn rollback(&mut self) -> Result<(), StoreError>;
    /// Reads in what other nodes sharing the store wrote (a PostgreSQL store shared by central
    /// nodes). True if something changed since the last call: the caller brings the kernel in
    /// line with the store. A store only this daemon writes has nothing to read.
    fn refresh(&mut self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// The whole store.
pub trait Store:
    DecisionStore
    + ListStore
    + AllowStore
    + KernelView
    + BouncerStream
    + AlertLog
    + LocalState
    + Transactions
{
}

impl<T> Store for T where
    T: DecisionStore
        + ListStore
        + AllowStore
        + KernelView
        + BouncerStream
        + AlertLog
        + LocalState
        + Transactions
{
}

/// Row kind of read offsets in [`LocalState`].
pub const STATE_OFFSETS: &str = "read-offset";
/// Row kind of attach modes in [`LocalState`].
pub const STATE_INTERFACES: &str = "interface";
/// [`LocalState`] kind of an agent's push to its central node (the last alert id sent).
pub const STATE_CENTRAL: &str = "central";
