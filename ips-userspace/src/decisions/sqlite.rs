//! [`SqliteStore`]: the decision store in one SQLite file (WAL mode).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use ips_common::origin;
use rusqlite::{Connection, OptionalExtension, params};

use super::lists::{self, List};
use super::{
    AllowEntry, Bouncer, Decision, Effective, NewDecision, ORIGIN_CROWD, ORIGIN_DETECTION,
    ORIGIN_MANUAL, Store, StoreError, StoredAlert, Tombstone,
};
use crate::prefix::Prefix;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS origins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    lease_ms INTEGER
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    value TEXT NOT NULL,
    addr BLOB NOT NULL,
    plen INTEGER NOT NULL,
    type TEXT NOT NULL DEFAULT 'ban',
    origin_id INTEGER NOT NULL REFERENCES origins(id),
    reason TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    UNIQUE (addr, plen, origin_id)
);
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions (expires_ms);
CREATE TABLE IF NOT EXISTS allowlist (
    value TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    scenario TEXT NOT NULL,
    source TEXT NOT NULL,
    grp TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    events INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    value TEXT,
    duration_ms INTEGER,
    reason TEXT,
    evidence TEXT NOT NULL,
    labels TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_value ON alerts (value, last_ms);
CREATE TABLE IF NOT EXISTS offsets (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    decision_id INTEGER NOT NULL,
    value TEXT NOT NULL,
    origin TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    deleted_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_time ON tombstones (deleted_ms);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions (created_ms);
CREATE TABLE IF NOT EXISTS bouncers (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    last_pull_ms INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lists (
    origin_id INTEGER PRIMARY KEY REFERENCES origins(id),
    entries BLOB NOT NULL,
    count INTEGER NOT NULL,
    since_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS list_changes (
    origin_id INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    added BLOB NOT NULL,
    removed BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS list_changes_time ON list_changes (at_ms);
CREATE TABLE IF NOT EXISTS interfaces (
    name TEXT PRIMARY KEY,
    mode TEXT NOT NULL
);
";

/// Version 2 keys decisions by (addr, plen, origin), keeps blocklists as snapshots under a
/// lease, and logs their changes.
const SCHEMA_VERSION: i64 = 2;

/// Creates the schema, bringing a store written by an older `ips` to [`SCHEMA_VERSION`] on the
/// way and keeping every row.
fn create_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_decisions: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'",
        [],
        |r| r.get(0),
    )?;
    if version >= SCHEMA_VERSION || !has_decisions {
        return conn.execute_batch(SCHEMA);
    }
    // Version 1: decisions unique on (value, origin_id), origins without a lease. The old table
    // steps aside (its indexes dropped, their names reused), SCHEMA creates the new one, and
    // the rows move over. A list's rows stay rows and expire as they would have; its next
    // refresh writes a snapshot.
    conn.execute_batch(
        "BEGIN;
         ALTER TABLE origins ADD COLUMN lease_ms INTEGER;
         DROP INDEX IF EXISTS decisions_addr;
         DROP INDEX IF EXISTS decisions_expires;
         DROP INDEX IF EXISTS decisions_created;
         ALTER TABLE decisions RENAME TO decisions_v1;",
    )
    .and_then(|()| conn.execute_batch(SCHEMA))
    .and_then(|()| {
        conn.execute_batch(
            "INSERT OR IGNORE INTO decisions
                     SELECT id, value, addr, plen, type, origin_id, reason, created_ms, expires_ms
                     FROM decisions_v1;
                 DROP TABLE decisions_v1;
                 COMMIT;",
        )
    })
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// The SQLite decision store.
pub struct SqliteStore {
    conn: Connection,
    /// The allowlist, kept in memory: it is small and checked on every upsert.
    allow: Vec<Prefix>,
    /// Blocklist snapshots by origin id, as stored, decoded once.
    lists: BTreeMap<u32, List>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, creating the parent directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", dir.display())),
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        Self::with_allowlist(Self::init(conn).map_err(open_err)?)
    }

    /// An in-memory store, for tests and `ips replay`.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_allowlist(Self::init(Connection::open_in_memory()?)?)
    }

    fn init(conn: Connection) -> Result<Connection, rusqlite::Error> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        create_schema(&conn)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        for (id, name) in [
            (origin::MANUAL, ORIGIN_MANUAL),
            (origin::DETECTION, ORIGIN_DETECTION),
            (origin::CROWD, ORIGIN_CROWD),
        ] {
            conn.execute(
                "INSERT OR IGNORE INTO origins (id, name) VALUES (?1, ?2)",
                params![id, name],
            )?;
        }
        Ok(conn)
    }

    fn with_allowlist(conn: Connection) -> Result<Self, StoreError> {
        let mut store = Self {
            conn,
            allow: Vec::new(),
            lists: BTreeMap::new(),
        };
        store.allow = store.allow_list()?.into_iter().map(|a| a.value).collect();
        store.lists = store.load_lists()?;
        Ok(store)
    }

    fn load_lists(&self) -> Result<BTreeMap<u32, List>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT l.origin_id, o.name, l.entries, COALESCE(o.lease_ms, 0), l.since_ms
             FROM lists l JOIN origins o ON o.id = l.origin_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = BTreeMap::new();
        while let Some(r) = rows.next()? {
            let origin: String = r.get(1)?;
            let entries =
                lists::decode(r.get_ref(2)?.as_blob().unwrap_or_default()).map_err(|reason| {
                    StoreError::BadRow {
                        value: format!("snapshot of {origin}"),
                        reason: reason.to_owned(),
                    }
                })?;
            let list = List {
                origin,
                entries,
                lease_ms: r.get(3)?,
                since_ms: r.get(4)?,
            };
            out.insert(r.get(0)?, list);
        }
        Ok(out)
    }

    /// Active lists with their origin ids.
    fn active_lists(&self, now_ms: i64) -> impl Iterator<Item = (u32, &List)> {
        self.lists
            .iter()
            .filter(move |(_, l)| l.lease_ms > now_ms)
            .map(|(id, l)| (*id, l))
    }

    /// A list entry as a decision.
    fn list_decision(id: u32, list: &List, value: Prefix) -> Decision {
        Decision {
            id: lists::entry_id(id, &value),
            value,
            scope: value.scope().to_owned(),
            kind: "ban".to_owned(),
            origin: list.origin.clone(),
            reason: list.origin.clone(),
            created_ms: list.since_ms,
            expires_ms: list.lease_ms,
        }
    }

    /// Writes `entries` as the snapshot of list `origin_id` and logs the change, in `tx`.
    fn write_list(
        tx: &rusqlite::Transaction<'_>,
        origin_id: u32,
        entries: &[Prefix],
        added: &[Prefix],
        removed: &[Prefix],
        since_ms: i64,
        now_ms: i64,
    ) -> Result<(), rusqlite::Error> {
        tx.execute(
            "INSERT INTO lists (origin_id, entries, count, since_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (origin_id) DO UPDATE SET entries = excluded.entries,
                 count = excluded.count",
            params![origin_id, lists::encode(entries), entries.len(), since_ms],
        )?;
        Self::log_change(tx, origin_id, added, removed, now_ms)
    }

    /// Appends a list's change to the log the stream's deltas read (nothing if it is empty).
    fn log_change(
        tx: &rusqlite::Transaction<'_>,
        origin_id: u32,
        added: &[Prefix],
        removed: &[Prefix],
        now_ms: i64,
    ) -> Result<(), rusqlite::Error> {
        if !added.is_empty() || !removed.is_empty() {
            tx.execute(
                "INSERT INTO list_changes (origin_id, at_ms, added, removed)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    origin_id,
                    now_ms,
                    lists::encode(added),
                    lists::encode(removed)
                ],
            )?;
        }
        Ok(())
    }

    /// Removes the entries that `gone` picks from every list (of one origin, or all), in the
    /// store and in memory. Returns the removed entries.
    fn remove_from_lists(
        &mut self,
        gone: &dyn Fn(&Prefix) -> bool,
        origin: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Prefix>, StoreError> {
        let mut changed = Vec::new();
        for (id, l) in &self.lists {
            if origin.is_some_and(|o| o != l.origin) {
                continue;
            }
            let (out, kept): (Vec<Prefix>, Vec<Prefix>) = l.entries.iter().partition(|p| gone(p));
            if !out.is_empty() {
                changed.push((*id, kept, out));
            }
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.conn.transaction()?;
        for (id, kept, out) in &changed {
            let since = self.lists.get(id).map_or(now_ms, |l| l.since_ms);
            Self::write_list(&tx, *id, kept, &[], out, since, now_ms)?;
        }
        tx.commit()?;
        let mut removed = Vec::new();
        for (id, kept, out) in changed {
            removed.extend(out);
            if let Some(l) = self.lists.get_mut(&id) {
                l.entries = kept;
            }
        }
        Ok(removed)
    }

    /// Logged list changes after `since_ms`, by origin id: (added, removed, when).
    #[allow(clippy::type_complexity)]
    fn list_changes(
        &self,
        since_ms: i64,
    ) -> Result<BTreeMap<u32, Vec<(Vec<Prefix>, Vec<Prefix>, i64)>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT origin_id, added, removed, at_ms FROM list_changes
             WHERE at_ms > ?1 ORDER BY at_ms",
        )?;
        let mut rows = stmt.query([since_ms])?;
        let mut out: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        while let Some(r) = rows.next()? {
            let blob = |i| -> Result<Vec<Prefix>, StoreError> {
                lists::decode(r.get_ref(i)?.as_blob().unwrap_or_default()).map_err(|reason| {
                    StoreError::BadRow {
                        value: "a list change".to_owned(),
                        reason: reason.to_owned(),
                    }
                })
            };
            let change = (blob(1)?, blob(2)?, r.get(3)?);
            out.entry(r.get(0)?).or_default().push(change);
        }
        Ok(out)
    }

    fn allowlisted_by(&self, value: &Prefix) -> Option<Prefix> {
        self.allow.iter().find(|a| a.contains(value)).copied()
    }

    fn origin_id_in(conn: &Connection, name: &str) -> Result<u32, StoreError> {
        if let Some(id) = conn
            .query_row("SELECT id FROM origins WHERE name = ?1", [name], |r| {
                r.get::<_, u32>(0)
            })
            .optional()?
        {
            return Ok(id);
        }
        let next: u32 = conn.query_row(
            "SELECT MAX(?1, COALESCE(MAX(id) + 1, 0)) FROM origins",
            [origin::FIRST_LIST],
            |r| r.get(0),
        )?;
        if next >= origin::MAX {
            return Err(StoreError::TooManyOrigins {
                name: name.to_owned(),
                max: origin::MAX,
            });
        }
        conn.execute(
            "INSERT INTO origins (id, name) VALUES (?1, ?2)",
            params![next, name],
        )?;
        Ok(next)
    }
}

/// Copies the decisions matched by `filter` (a WHERE clause over `d`) into the tombstones.
const TOMBSTONE: &str =
    "INSERT INTO tombstones (decision_id, value, origin, type, reason, deleted_ms)
     SELECT d.id, d.value, o.name, d.type, d.reason, ?1 FROM decisions d
     JOIN origins o ON o.id = d.origin_id WHERE ";

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn parse_value(value: String) -> Result<Prefix, StoreError> {
    value
        .parse()
        .map_err(|e: crate::prefix::PrefixError| StoreError::BadRow {
            value,
            reason: e.reason.to_owned(),
        })
}

fn row_to_decision(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Decision, String)> {
    let value: String = r.get(1)?;
    let d = Decision {
        id: r.get(0)?,
        // Filled in below, once the text is known to parse.
        value: Prefix::host(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        scope: String::new(),
        kind: r.get(2)?,
        origin: r.get(3)?,
        reason: r.get(4)?,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
    };
    Ok((d, value))
}

/// One address family's side of [`Store::for_each_active`]: list entries not merged yet, and the
/// value being gathered with the decision that ends last (value, origin, end).
struct Merge {
    listed: std::iter::Peekable<std::vec::IntoIter<(Prefix, u32, i64)>>,
    current: Option<(Prefix, u32, i64)>,
}

impl Merge {
    fn new(listed: Vec<(Prefix, u32, i64)>) -> Self {
        Self {
            listed: listed.into_iter().peekable(),
            current: None,
        }
    }

    fn take(&mut self, item: (Prefix, u32, i64), each: &mut dyn FnMut(Prefix, u32)) {
        self.current = match self.current {
            Some(c) if c.0 == item.0 => Some(if item.2 > c.2 { item } else { c }),
            Some(c) => {
                each(c.0, c.1);
                Some(item)
            }
            None => Some(item),
        };
    }

    /// A row, after the list entries that sort before or with it.
    fn row(&mut self, item: (Prefix, u32, i64), each: &mut dyn FnMut(Prefix, u32)) {
        while let Some(l) = self.listed.next_if(|l| l.0 <= item.0) {
            self.take(l, each);
        }
        self.take(item, each);
    }

    fn finish(mut self, each: &mut dyn FnMut(Prefix, u32)) {
        while let Some(l) = self.listed.next() {
            self.take(l, each);
        }
        if let Some(c) = self.current {
            each(c.0, c.1);
        }
    }
}

/// The prefix in a row's first two columns (`addr`, `plen`).
fn prefix_of(row: &rusqlite::Row<'_>) -> Result<Prefix, StoreError> {
    let addr = row.get_ref(0)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
    })?;
    let plen: u8 = row.get(1)?;
    Prefix::from_octets(addr, plen).map_err(|reason| StoreError::BadRow {
        value: format!("{addr:?}/{plen}"),
        reason: reason.to_owned(),
    })
}

fn finish(rows: Vec<(Decision, String)>) -> Result<Vec<Decision>, StoreError> {
    rows.into_iter()
        .map(|(mut d, value)| {
            d.value = parse_value(value)?;
            d.scope = d.value.scope().to_owned();
            Ok(d)
        })
        .collect()
}

const SELECT_ALERT: &str = "SELECT id, scenario, source, grp, first_ms, last_ms, events, \
     outcome, value, duration_ms, reason, evidence, labels FROM alerts";

fn row_to_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAlert> {
    Ok(StoredAlert {
        id: r.get(0)?,
        scenario: r.get(1)?,
        source: r.get(2)?,
        group: r.get(3)?,
        first_ms: r.get(4)?,
        last_ms: r.get(5)?,
        events: r.get(6)?,
        outcome: r.get(7)?,
        value: r.get(8)?,
        duration_ms: r.get(9)?,
        reason: r.get(10)?,
        evidence: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
        labels: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
    })
}

mod erased {
    /// JSON text of a serializable value (for the TEXT columns).
    pub trait Json {
        fn json(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".into())
        }
    }
}

/// Decisions with their origin's name.
fn select_decision(filter: &str) -> String {
    format!(
        "SELECT d.id, d.value, d.type, o.name, d.reason, d.created_ms, d.expires_ms \
         FROM decisions d JOIN origins o ON o.id = d.origin_id WHERE {filter}"
    )
}

impl Store for SqliteStore {
    fn origin_id(&mut self, name: &str) -> Result<u32, StoreError> {
        Self::origin_id_in(&self.conn, name)
    }

    fn origins(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM origins ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn upsert(&mut self, batch: &[NewDecision], now_ms: i64) -> Result<Vec<Decision>, StoreError> {
        for d in batch {
            if let Some(by) = self.allowlisted_by(&d.value) {
                return Err(StoreError::Allowlisted { value: d.value, by });
            }
            if d.duration_ms <= 0 {
                return Err(StoreError::BadDuration(d.duration_ms));
            }
        }
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut origin_cache: Vec<(String, u32)> = Vec::new();
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decisions (value, addr, plen, origin_id, reason, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (addr, plen, origin_id) DO UPDATE SET
                     expires_ms = MAX(expires_ms, excluded.expires_ms),
                     reason = excluded.reason
                 RETURNING id, created_ms, expires_ms",
            )?;
            for d in batch {
                let origin_id = match origin_cache.iter().find(|(n, _)| *n == d.origin) {
                    Some((_, id)) => *id,
                    None => {
                        let id = Self::origin_id_in(&tx, &d.origin)?;
                        origin_cache.push((d.origin.clone(), id));
                        id
                    }
                };
                let value = d.value.to_string();
                let (id, created_ms, expires_ms) = stmt.query_row(
                    params![
                        value,
                        d.value.octets(),
                        d.value.prefix_len(),
                        origin_id,
                        d.reason,
                        now_ms,
                        now_ms.saturating_add(d.duration_ms)
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                out.push(Decision {
                    id,
                    value: d.value,
                    scope: d.value.scope().to_owned(),
                    kind: "ban".to_owned(),
                    origin: d.origin.clone(),
                    reason: d.reason.clone(),
                    created_ms,
                    expires_ms,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn origin_values(&self, origin: &str) -> Result<Vec<Prefix>, StoreError> {
        Ok(self
            .lists
            .values()
            .find(|l| l.origin == origin)
            .map(|l| l.entries.clone())
            .unwrap_or_default())
    }

    fn replace_origin(
        &mut self,
        origin: &str,
        values: Vec<Prefix>,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<(Vec<Prefix>, Vec<Prefix>), StoreError> {
        if duration_ms <= 0 {
            return Err(StoreError::BadDuration(duration_ms));
        }
        let mut new = values;
        if !new.is_sorted() {
            new.sort_unstable();
        }
        new.dedup();
        let origin_id = Self::origin_id_in(&self.conn, origin)?;
        let lease_ms = now_ms.saturating_add(duration_ms);
        // The diff is against the stored snapshot even if its lease lapsed a moment ago and the
        // expiry tick has not dropped it yet: what the kernel may still hold.
        let (old, since_ms, lapsed) = match self.lists.get(&origin_id) {
            Some(l) => (l.entries.as_slice(), l.since_ms, l.lease_ms <= now_ms),
            None => (&[][..], now_ms, false),
        };
        let (mut added, removed) = super::sorted_diff(old, &new);
        let unchanged =
            added.is_empty() && removed.is_empty() && self.lists.contains_key(&origin_id);
        let tx = self.conn.transaction()?;
        if !unchanged {
            // The same entries in other bytes (comments, order) only move the lease.
            Self::write_list(&tx, origin_id, &new, &added, &removed, since_ms, now_ms)?;
        }
        tx.execute(
            "UPDATE origins SET lease_ms = ?1 WHERE id = ?2",
            params![lease_ms, origin_id],
        )?;
        tx.commit()?;
        if lapsed {
            // While lapsed the entries were not active, and may have left the kernel: all of
            // them are to be banned again.
            added.clone_from(&new);
        }
        self.lists.insert(
            origin_id,
            List {
                origin: origin.to_owned(),
                entries: new,
                lease_ms,
                since_ms,
            },
        );
        Ok((added, removed))
    }

    fn renew_origin(
        &mut self,
        origin: &str,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let lease_ms = now_ms.saturating_add(duration_ms);
        let Some((id, list)) = self
            .lists
            .iter_mut()
            .find(|(_, l)| l.origin == origin && l.lease_ms > now_ms)
        else {
            return Ok(false);
        };
        if lease_ms > list.lease_ms {
            self.conn.execute(
                "UPDATE origins SET lease_ms = ?1 WHERE id = ?2",
                params![lease_ms, id],
            )?;
            list.lease_ms = lease_ms;
        }
        Ok(true)
    }

    fn delete(&mut self, value: &Prefix, origin: Option<&str>) -> Result<usize, StoreError> {
        let now = wall_ms();
        let from_lists = self.remove_from_lists(&|p| p == value, origin, now)?.len();
        let tx = self.conn.transaction()?;
        let (addr, plen) = (value.octets(), value.prefix_len());
        let n = match origin {
            None => {
                tx.execute(
                    &format!("{TOMBSTONE} d.addr = ?2 AND d.plen = ?3"),
                    params![now, addr, plen],
                )?;
                tx.execute(
                    "DELETE FROM decisions WHERE addr = ?1 AND plen = ?2",
                    params![addr, plen],
                )?
            }
            Some(o) => {
                tx.execute(
                    &format!("{TOMBSTONE} d.addr = ?2 AND d.plen = ?3 AND o.name = ?4"),
                    params![now, addr, plen, o],
                )?;
                tx.execute(
                    "DELETE FROM decisions WHERE addr = ?1 AND plen = ?2
                     AND origin_id = (SELECT id FROM origins WHERE name = ?3)",
                    params![addr, plen, o],
                )?
            }
        };
        tx.commit()?;
        Ok(n + from_lists)
    }

    fn list(&self, now_ms: i64, value: Option<&Prefix>) -> Result<Vec<Decision>, StoreError> {
        let rows = match value {
            None => {
                let mut stmt = self
                    .conn
                    .prepare(&select_decision("d.expires_ms > ?1 ORDER BY d.id"))?;
                stmt.query_map([now_ms], row_to_decision)?
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(v) => {
                let mut stmt = self.conn.prepare(&select_decision(
                    "d.expires_ms > ?1 AND d.addr = ?2 AND d.plen = ?3 ORDER BY d.id",
                ))?;
                stmt.query_map(params![now_ms, v.octets(), v.prefix_len()], row_to_decision)?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let mut out = finish(rows)?;
        for (id, l) in self.active_lists(now_ms) {
            match value {
                Some(v) if l.contains(v) => out.push(Self::list_decision(id, l, *v)),
                Some(_) => {}
                None => out.extend(l.entries.iter().map(|v| Self::list_decision(id, l, *v))),
            }
        }
        Ok(out)
    }

    fn count_active(&self, now_ms: i64) -> Result<u64, StoreError> {
        let rows: u64 = self.conn.query_row(
            "SELECT COUNT(*) FROM decisions WHERE expires_ms > ?1",
            [now_ms],
            |r| r.get(0),
        )?;
        let listed: usize = self
            .active_lists(now_ms)
            .map(|(_, l)| l.entries.len())
            .sum();
        Ok(rows + listed as u64)
    }

    fn effective(&self, values: &[Prefix], now_ms: i64) -> Result<Vec<Effective>, StoreError> {
        // The origin of the decision that lasts longest is the one drops are attributed to.
        let with_lists = |v: &Prefix, mut best: Option<(u32, i64)>| {
            for (id, l) in self.active_lists(now_ms) {
                if best.is_none_or(|(_, e)| l.lease_ms > e) && l.contains(v) {
                    best = Some((id, l.lease_ms));
                }
            }
            (*v, best.map(|(o, _)| o))
        };
        // Many values (a list refresh's removals) against few rows: read the rows once.
        if values.len() >= 256 {
            let active: usize = self.conn.query_row(
                "SELECT COUNT(*) FROM decisions WHERE expires_ms > ?1",
                [now_ms],
                |r| r.get(0),
            )?;
            if active <= values.len() * 4 {
                let mut rows: std::collections::HashMap<Prefix, (u32, i64)> =
                    std::collections::HashMap::with_capacity(active);
                let mut stmt = self.conn.prepare_cached(
                    "SELECT addr, plen, origin_id, expires_ms FROM decisions WHERE expires_ms > ?1",
                )?;
                let mut all = stmt.query([now_ms])?;
                while let Some(r) = all.next()? {
                    let (v, o, e) = (prefix_of(r)?, r.get(2)?, r.get(3)?);
                    let best = rows.entry(v).or_insert((o, e));
                    if e > best.1 {
                        *best = (o, e);
                    }
                }
                return Ok(values
                    .iter()
                    .map(|v| with_lists(v, rows.get(v).copied()))
                    .collect());
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT origin_id, expires_ms FROM decisions
             WHERE addr = ?1 AND plen = ?2 AND expires_ms > ?3
             ORDER BY expires_ms DESC LIMIT 1",
        )?;
        values
            .iter()
            .map(|v| {
                let best = stmt
                    .query_row(params![v.octets(), v.prefix_len(), now_ms], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                Ok(with_lists(v, best))
            })
            .collect()
    }

    fn for_each_active(
        &self,
        now_ms: i64,
        each: &mut dyn FnMut(Prefix, u32),
    ) -> Result<(), StoreError> {
        // One walk of the unique index: within a family, rows come in address order (the order
        // of `Prefix`), so a value's decisions are consecutive and the lists' sorted entries
        // merge in. The families interleave in the walk (the blobs differ in length), so each
        // has its own merge. The decision that ends last names the origin.
        let (mut v4, mut v6): (Vec<_>, Vec<_>) = self
            .active_lists(now_ms)
            .flat_map(|(id, l)| l.entries.iter().map(move |p| (*p, id, l.lease_ms)))
            .partition(|(p, _, _)| p.is_v4());
        if self.lists.len() > 1 {
            v4.sort_unstable_by_key(|a| a.0);
            v6.sort_unstable_by_key(|a| a.0);
        }
        let mut v4 = Merge::new(v4);
        let mut v6 = Merge::new(v6);
        let mut stmt = self.conn.prepare(
            "SELECT addr, plen, origin_id, expires_ms FROM decisions
             WHERE expires_ms > ?1 ORDER BY addr, plen",
        )?;
        let mut rows = stmt.query([now_ms])?;
        while let Some(row) = rows.next()? {
            let item = (prefix_of(row)?, row.get(2)?, row.get(3)?);
            if item.0.is_v4() {
                v4.row(item, each);
            } else {
                v6.row(item, each);
            }
        }
        v4.finish(each);
        v6.finish(each);
        Ok(())
    }

    fn take_expired(&mut self, now_ms: i64) -> Result<Vec<Prefix>, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!("{TOMBSTONE} d.expires_ms <= ?2"),
            params![now_ms, now_ms],
        )?;
        let mut values: BTreeSet<Prefix> = BTreeSet::new();
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM decisions WHERE expires_ms <= ?1 RETURNING addr, plen",
            )?;
            let mut rows = stmt.query([now_ms])?;
            while let Some(row) = rows.next()? {
                values.insert(prefix_of(row)?);
            }
        }
        // Lists whose lease ran out (no longer renewed): their entries go, logged as removed.
        let lapsed: Vec<u32> = self
            .lists
            .iter()
            .filter(|(_, l)| l.lease_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &lapsed {
            if let Some(l) = self.lists.get(id) {
                Self::log_change(&tx, *id, &[], &l.entries, now_ms)?;
                tx.execute("DELETE FROM lists WHERE origin_id = ?1", [id])?;
                tx.execute("UPDATE origins SET lease_ms = NULL WHERE id = ?1", [id])?;
            }
        }
        tx.commit()?;
        for id in lapsed {
            if let Some(l) = self.lists.remove(&id) {
                values.extend(l.entries);
            }
        }
        Ok(values.into_iter().collect())
    }

    fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<Vec<Prefix>, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO allowlist (value, reason, source, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (value) DO UPDATE SET reason = excluded.reason, source = excluded.source",
            params![value.to_string(), reason, source, now_ms],
        )?;
        // Decisions inside the new entry can never drop anything again: remove them.
        let covered: Vec<Prefix> = {
            // Addresses are stored as big-endian blobs, which SQLite compares byte by byte: the
            // decisions inside `value` are a range scan of the addr index.
            let first = value.octets();
            let last = value.last_octets();
            let mut stmt = tx.prepare(
                "SELECT DISTINCT addr, plen FROM decisions
                 WHERE addr >= ?1 AND addr <= ?2 AND length(addr) = ?3 AND plen >= ?4",
            )?;
            let mut rows = stmt.query(params![first, last, first.len(), value.prefix_len()])?;
            let mut inside = Vec::new();
            while let Some(row) = rows.next()? {
                inside.push(prefix_of(row)?);
            }
            inside
        };
        for p in &covered {
            let (addr, plen) = (p.octets(), p.prefix_len());
            tx.execute(
                &format!("{TOMBSTONE} d.addr = ?2 AND d.plen = ?3"),
                params![now_ms, addr, plen],
            )?;
            tx.execute(
                "DELETE FROM decisions WHERE addr = ?1 AND plen = ?2",
                params![addr, plen],
            )?;
        }
        tx.commit()?;
        if !self.allow.contains(value) {
            self.allow.push(*value);
        }
        let mut covered = covered;
        covered.extend(self.remove_from_lists(&|p| value.contains(p), None, now_ms)?);
        covered.sort_unstable();
        covered.dedup();
        Ok(covered)
    }

    fn allow_delete(&mut self, value: &Prefix) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM allowlist WHERE value = ?1",
            [value.to_string()],
        )?;
        self.allow.retain(|a| a != value);
        Ok(n > 0)
    }

    fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT value, reason, source, created_ms FROM allowlist ORDER BY created_ms, value",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(value, reason, source, created_ms)| {
                Ok(AllowEntry {
                    value: parse_value(value)?,
                    reason,
                    source,
                    created_ms,
                })
            })
            .collect()
    }

    fn allow_covering(&self, value: &Prefix) -> Option<Prefix> {
        self.allowlisted_by(value)
    }

    fn add_alert(&mut self, a: &StoredAlert) -> Result<i64, StoreError> {
        let json = |v: &dyn erased::Json| v.json();
        self.conn.execute(
            "INSERT INTO alerts (scenario, source, grp, first_ms, last_ms, events, outcome, value,
                 duration_ms, reason, evidence, labels)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                a.scenario,
                a.source,
                a.group,
                a.first_ms,
                a.last_ms,
                a.events,
                a.outcome,
                a.value,
                a.duration_ms,
                a.reason,
                json(&a.evidence),
                json(&a.labels),
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn alerts(
        &self,
        limit: usize,
        scenario: Option<&str>,
        source: Option<&str>,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT_ALERT} WHERE (?1 IS NULL OR scenario = ?1) AND (?2 IS NULL OR source = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(params![scenario, source, limit as i64], row_to_alert)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn alert(&self, id: i64) -> Result<Option<StoredAlert>, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("{SELECT_ALERT} WHERE id = ?1"), [id], row_to_alert)
            .optional()?)
    }

    fn previous_bans(&self, value: &str, since_ms: i64) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM alerts WHERE value = ?1 AND outcome = 'ban' AND last_ms >= ?2",
            params![value, since_ms],
            |r| r.get(0),
        )?)
    }

    fn save_offsets(
        &mut self,
        positions: &[crate::acquisition::Position],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO offsets (path, dev, ino, offset) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET dev = excluded.dev, ino = excluded.ino,
                     offset = excluded.offset",
            )?;
            for p in positions {
                stmt.execute(params![
                    p.path.to_string_lossy(),
                    p.dev as i64,
                    p.ino as i64,
                    p.offset as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn offsets(&self) -> Result<Vec<crate::acquisition::Position>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, dev, ino, offset FROM offsets ORDER BY path")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(crate::acquisition::Position {
                    path: std::path::PathBuf::from(r.get::<_, String>(0)?),
                    dev: r.get::<_, i64>(1)? as u64,
                    ino: r.get::<_, i64>(2)? as u64,
                    offset: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn created_since(&self, since_ms: i64, now_ms: i64) -> Result<Vec<Decision>, StoreError> {
        let mut stmt = self.conn.prepare(&select_decision(
            "d.created_ms > ?1 AND d.expires_ms > ?2 ORDER BY d.id",
        ))?;
        let rows = stmt
            .query_map(params![since_ms, now_ms], row_to_decision)?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = finish(rows)?;
        // List entries added since, and still listed.
        for (id, changes) in self.list_changes(since_ms)? {
            let Some(l) = self.lists.get(&id).filter(|l| l.lease_ms > now_ms) else {
                continue;
            };
            let mut added: Vec<Prefix> = changes.into_iter().flat_map(|(a, _, _)| a).collect();
            added.sort_unstable();
            added.dedup();
            out.extend(
                added
                    .into_iter()
                    .filter(|v| l.contains(v))
                    .map(|v| Self::list_decision(id, l, v)),
            );
        }
        Ok(out)
    }

    fn deleted_since(&self, since_ms: i64) -> Result<Vec<Tombstone>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT decision_id, value, origin, type, reason, deleted_ms FROM tombstones
             WHERE deleted_ms > ?1 ORDER BY deleted_ms",
        )?;
        let rows = stmt
            .query_map([since_ms], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = rows
            .into_iter()
            .map(|(id, value, origin, kind, reason, deleted_ms)| {
                Ok(Tombstone {
                    id,
                    value: parse_value(value)?,
                    origin,
                    kind,
                    reason,
                    deleted_ms,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let names: BTreeMap<u32, String> = self.origins()?.into_iter().collect();
        for (id, changes) in self.list_changes(since_ms)? {
            let origin = names.get(&id).cloned().unwrap_or_default();
            for (_, removed, at_ms) in changes {
                out.extend(removed.into_iter().map(|value| Tombstone {
                    id: lists::entry_id(id, &value),
                    value,
                    origin: origin.clone(),
                    kind: "ban".to_owned(),
                    reason: origin.clone(),
                    deleted_ms: at_ms,
                }));
            }
        }
        Ok(out)
    }

    fn prune_tombstones(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        let tombstones = self
            .conn
            .execute("DELETE FROM tombstones WHERE deleted_ms < ?1", [before_ms])?;
        let changes = self
            .conn
            .execute("DELETE FROM list_changes WHERE at_ms < ?1", [before_ms])?;
        Ok(tombstones + changes)
    }

    fn add_bouncer(&mut self, name: &str, key_sha256: &str, now_ms: i64) -> Result<(), StoreError> {
        match self.conn.execute(
            "INSERT INTO bouncers (name, key_sha256, created_ms) VALUES (?1, ?2, ?3)",
            params![name, key_sha256, now_ms],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::BouncerExists(name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn bouncer_by_key(&self, key_sha256: &str) -> Result<Option<Bouncer>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, last_pull_ms, created_ms FROM bouncers WHERE key_sha256 = ?1",
                [key_sha256],
                |r| {
                    Ok(Bouncer {
                        name: r.get(0)?,
                        last_pull_ms: r.get(1)?,
                        created_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn set_bouncer_pull(&mut self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE bouncers SET last_pull_ms = ?1 WHERE name = ?2",
            params![now_ms, name],
        )?;
        Ok(())
    }

    fn bouncers(&self) -> Result<Vec<Bouncer>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, last_pull_ms, created_ms FROM bouncers ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Bouncer {
                    name: r.get(0)?,
                    last_pull_ms: r.get(1)?,
                    created_ms: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn delete_bouncer(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM bouncers WHERE name = ?1", [name])?
            > 0)
    }

    fn set_interface(&mut self, name: &str, mode: Option<&str>) -> Result<(), StoreError> {
        match mode {
            Some(mode) => self.conn.execute(
                "INSERT INTO interfaces (name, mode) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET mode = excluded.mode",
                params![name, mode],
            )?,
            None => self
                .conn
                .execute("DELETE FROM interfaces WHERE name = ?1", [name])?,
        };
        Ok(())
    }

    fn interfaces(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, mode FROM interfaces ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ban(value: &str, origin: &str, secs: i64) -> NewDecision {
        NewDecision {
            value: p(value),
            origin: origin.to_owned(),
            reason: "test".to_owned(),
            duration_ms: secs * 1000,
        }
    }

    #[test]
    fn adding_an_existing_decision_extends_it() {
        let mut s = SqliteStore::in_memory().unwrap();
        let a = s
            .upsert(&[ban("203.0.113.7", "manual", 60)], 1_000)
            .unwrap();
        let b = s
            .upsert(&[ban("203.0.113.7", "manual", 600)], 2_000)
            .unwrap();
        assert_eq!(a[0].id, b[0].id);
        assert_eq!(b[0].expires_ms, 2_000 + 600_000);
        // A shorter one does not shorten it.
        let c = s.upsert(&[ban("203.0.113.7", "manual", 1)], 3_000).unwrap();
        assert_eq!(c[0].expires_ms, 2_000 + 600_000);
        assert_eq!(s.list(3_000, None).unwrap().len(), 1);
        assert_eq!(s.count_active(3_000).unwrap(), 1);
        assert_eq!(s.count_active(3_000_000).unwrap(), 0);
    }

    #[test]
    fn effective_origin_is_the_longest_lasting() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.upsert(&[ban("198.51.100.0/24", "manual", 60)], 0)
            .unwrap();
        s.upsert(&[ban("198.51.100.0/24", "list:firehol", 600)], 0)
            .unwrap();
        let list_id = s.origin_id("list:firehol").unwrap();
        assert!(list_id >= origin::FIRST_LIST);
        let e = s.effective(&[p("198.51.100.0/24")], 1).unwrap();
        assert_eq!(e, vec![(p("198.51.100.0/24"), Some(list_id))]);
        let mut seen = Vec::new();
        s.for_each_active(1, &mut |v, o| seen.push((v, o))).unwrap();
        assert_eq!(seen, vec![(p("198.51.100.0/24"), list_id)]);
    }

    #[test]
    fn expiry_takes_only_what_expired() {
        let mut s = SqliteStore::in_memory().unwrap();
        let mut batch: Vec<_> = (0..2000)
            .map(|i| ban(&format!("10.{}.{}.1", i / 250, i % 250), "manual", 10))
            .collect();
        batch.push(ban("192.0.2.1", "manual", 100));
        s.upsert(&batch, 0).unwrap();
        let gone = s.take_expired(10_000).unwrap();
        assert_eq!(gone.len(), 2000);
        let left = s.list(10_000, None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].value, p("192.0.2.1"));
    }

    #[test]
    fn allowlisted_values_are_refused_and_cleared() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.upsert(&[ban("192.0.2.9", "manual", 60)], 0).unwrap();
        let covered = s
            .allow_add(&p("192.0.2.0/28"), "office", "manual", 0)
            .unwrap();
        assert_eq!(covered, vec![p("192.0.2.9")]);
        let err = s.upsert(&[ban("192.0.2.3", "manual", 60)], 0).unwrap_err();
        assert!(err.to_string().contains("allowlisted"), "{err}");
        // A wider ban around the allowlisted range is fine: the kernel checks the allowlist first.
        s.upsert(&[ban("192.0.2.0/24", "manual", 60)], 0).unwrap();
        assert!(s.allow_delete(&p("192.0.2.0/28")).unwrap());
        s.upsert(&[ban("192.0.2.3", "manual", 60)], 0).unwrap();
    }

    #[test]
    fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ips.db");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            s.upsert(&[ban("2001:db8::/64", "manual", 60)], 0).unwrap();
            s.allow_add(&p("2001:db8:1::1"), "me", "config", 0).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list(1, None).unwrap()[0].value, p("2001:db8::/64"));
        assert_eq!(s.allow_list().unwrap()[0].source, "config");
    }

    #[test]
    fn alerts_and_escalation_counts() {
        let mut s = SqliteStore::in_memory().unwrap();
        let mut a = StoredAlert {
            id: 0,
            scenario: "ssh-bf".into(),
            source: "203.0.113.5".into(),
            group: "203.0.113.5".into(),
            first_ms: 1,
            last_ms: 1000,
            events: 6,
            outcome: "ban".into(),
            value: Some("203.0.113.5".into()),
            duration_ms: Some(60_000),
            reason: None,
            evidence: vec!["line 1".into()],
            labels: [("ban".to_owned(), "4h".to_owned())].into(),
        };
        let id = s.add_alert(&a).unwrap();
        a.last_ms = 5000;
        s.add_alert(&a).unwrap();
        a.outcome = "simulated".into();
        s.add_alert(&a).unwrap();
        assert_eq!(s.previous_bans("203.0.113.5", 0).unwrap(), 2);
        assert_eq!(s.previous_bans("203.0.113.5", 2000).unwrap(), 1);
        let got = s.alert(id).unwrap().unwrap();
        assert_eq!(got.evidence, vec!["line 1"]);
        assert_eq!(got.labels["ban"], "4h");
        assert_eq!(s.alerts(10, Some("ssh-bf"), None).unwrap().len(), 3);
        assert_eq!(s.alerts(10, None, Some("192.0.2.1")).unwrap().len(), 0);
    }

    #[test]
    fn replacing_a_list_adds_renews_and_removes() {
        let mut s = SqliteStore::in_memory().unwrap();
        let (a, r) = s
            .replace_origin(
                "list:x",
                vec![p("1.2.3.4"), p("5.6.0.0/16"), p("1.2.3.4")],
                1000,
                0,
            )
            .unwrap();
        assert_eq!((a.len(), r.len()), (2, 0));
        let (a, r) = s
            .replace_origin("list:x", vec![p("5.6.0.0/16"), p("9.9.9.9")], 5000, 100)
            .unwrap();
        assert_eq!(a, vec![p("9.9.9.9")]);
        assert_eq!(r, vec![p("1.2.3.4")]);
        let list = s.list(200, None).unwrap();
        assert_eq!(list.len(), 2);
        // Every entry ends with the list's lease, and is listed since the first import.
        assert!(list.iter().all(|d| d.expires_ms == 5100
            && d.created_ms == 0
            && d.origin == "list:x"
            && d.id >= 1 << 52));
        assert_eq!(s.list(200, Some(&p("9.9.9.9"))).unwrap().len(), 1);
        assert!(s.list(200, Some(&p("9.9.9.8"))).unwrap().is_empty());
        // Renewing moves the lease, never back.
        assert!(s.renew_origin("list:x", 5000, 4000).unwrap());
        assert!(s.renew_origin("list:x", 10, 4000).unwrap());
        assert!(!s.renew_origin("list:nope", 5000, 4000).unwrap());
        assert!(
            s.list(4100, None)
                .unwrap()
                .iter()
                .all(|d| d.expires_ms == 9000)
        );
        assert_eq!(s.count_active(8999).unwrap(), 2);
        // Past the lease the entries are no longer active, then gone from the store.
        let mut active = 0;
        s.for_each_active(9000, &mut |_, _| active += 1).unwrap();
        assert_eq!((s.count_active(9000).unwrap(), active), (0, 0));
        assert_eq!(s.effective(&[p("9.9.9.9")], 9000).unwrap()[0].1, None);
        let gone = s.take_expired(9000).unwrap();
        assert_eq!(gone, vec![p("5.6.0.0/16"), p("9.9.9.9")]);
        assert!(s.origin_values("list:x").unwrap().is_empty());
        assert!(!s.renew_origin("list:x", 5000, 9100).unwrap());
        // Replaced after its lease lapsed but before the expiry tick: every entry is banned
        // again, and what left the list is removed.
        s.replace_origin("list:y", vec![p("7.7.7.7"), p("8.8.8.8")], 100, 0)
            .unwrap();
        assert!(!s.renew_origin("list:y", 100, 200).unwrap());
        let (a, r) = s
            .replace_origin("list:y", vec![p("8.8.8.8"), p("9.9.9.8")], 100, 200)
            .unwrap();
        assert_eq!(
            (a, r),
            (vec![p("8.8.8.8"), p("9.9.9.8")], vec![p("7.7.7.7")])
        );
        assert!(s.take_expired(250).unwrap().is_empty());
        assert_eq!(s.count_active(250).unwrap(), 2);
        s.replace_origin("list:y", vec![], 100, 260).unwrap();
        // Another origin's decision on the same value is untouched.
        let (a, _) = s
            .replace_origin("list:x", vec![p("9.9.9.9")], 1000, 9100)
            .unwrap();
        assert_eq!(a, vec![p("9.9.9.9")]);
        s.upsert(&[ban("9.9.9.9", "manual", 60)], 9100).unwrap();
        let (_, r) = s.replace_origin("list:x", vec![], 1000, 9200).unwrap();
        assert_eq!(r, vec![p("9.9.9.9")]);
        let left = s.list(9300, None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].origin, "manual");
        let mut kernel = Vec::new();
        s.for_each_active(9300, &mut |v, o| kernel.push((v, o)))
            .unwrap();
        assert_eq!(kernel, vec![(p("9.9.9.9"), origin::MANUAL)]);
    }

    #[test]
    fn rows_and_lists_merge_into_one_kernel_view() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.upsert(
            &[
                ban("1.1.1.1", "manual", 100),
                ban("5.5.5.5", "manual", 10),
                ban("2001:db8::1", "manual", 100),
                ban("2001:db8::/32", "manual", 10),
                // Sorts after the IPv6 rows in the index (0x2d > 0x20).
                ban("45.0.0.1", "manual", 100),
            ],
            0,
        )
        .unwrap();
        s.replace_origin(
            "list:a",
            vec![p("3.3.3.3"), p("5.5.5.5"), p("45.0.0.2")],
            50_000,
            0,
        )
        .unwrap();
        s.replace_origin(
            "list:b",
            vec![p("0.0.0.0/1"), p("2001:db8::/32")],
            60_000,
            0,
        )
        .unwrap();
        let a = s.origin_id("list:a").unwrap();
        let b = s.origin_id("list:b").unwrap();
        let mut seen = Vec::new();
        s.for_each_active(1, &mut |v, o| seen.push((v.to_string(), o)))
            .unwrap();
        let want = [
            ("0.0.0.0/1", b),
            ("1.1.1.1", origin::MANUAL),
            ("3.3.3.3", a),
            // The list lasts longer than the hand-made ban.
            ("5.5.5.5", a),
            ("45.0.0.1", origin::MANUAL),
            ("45.0.0.2", a),
            // The list lasts longer than the hand-made ban.
            ("2001:db8::/32", b),
            ("2001:db8::1", origin::MANUAL),
        ];
        let mut want: Vec<(String, u32)> = want.iter().map(|(v, o)| (v.to_string(), *o)).collect();
        // The order of the calls is not part of the contract; each value comes once.
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(s.count_active(1).unwrap(), 10);
        assert_eq!(s.origin_values("list:b").unwrap().len(), 2);
        // Deleting a listed value takes it out of the list; an allowlist entry too.
        assert_eq!(s.delete(&p("3.3.3.3"), None).unwrap(), 1);
        assert_eq!(
            s.origin_values("list:a").unwrap(),
            vec![p("5.5.5.5"), p("45.0.0.2")]
        );
        let covered = s.allow_add(&p("5.5.5.0/24"), "ours", "manual", 2).unwrap();
        assert_eq!(covered, vec![p("5.5.5.5")]);
        assert_eq!(s.origin_values("list:a").unwrap(), vec![p("45.0.0.2")]);
    }

    #[test]
    fn effective_reads_the_same_one_by_one_and_in_bulk() {
        let mut s = SqliteStore::in_memory().unwrap();
        let values: Vec<Prefix> = (0..300u32)
            .map(|i| Prefix::v4(0x0a00_0000 | i, 32))
            .collect();
        let batch: Vec<NewDecision> = values[..100]
            .iter()
            .map(|v| NewDecision {
                value: *v,
                origin: "manual".into(),
                reason: "t".into(),
                duration_ms: 1000,
            })
            .collect();
        s.upsert(&batch, 0).unwrap();
        s.replace_origin("list:z", values[50..150].to_vec(), 5000, 0)
            .unwrap();
        let z = s.origin_id("list:z").unwrap();
        // 300 values: the bulk path; one at a time: the per-value path.
        let bulk = s.effective(&values, 10).unwrap();
        for (i, (v, o)) in bulk.iter().enumerate() {
            assert_eq!(s.effective(&[*v], 10).unwrap(), vec![(*v, *o)]);
            let want = match i {
                0..50 => Some(origin::MANUAL),
                50..150 => Some(z),
                _ => None,
            };
            assert_eq!(*o, want, "{v}");
        }
    }

    #[test]
    fn list_snapshots_survive_reopening_and_feed_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ips.db");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            s.replace_origin("list:l", vec![p("192.0.2.1"), p("192.0.2.2")], 10_000, 100)
                .unwrap();
            s.replace_origin("list:l", vec![p("192.0.2.2"), p("192.0.2.3")], 10_000, 200)
                .unwrap();
            // The same entries again, in another order: only the lease moves.
            let (a, r) = s
                .replace_origin("list:l", vec![p("192.0.2.3"), p("192.0.2.2")], 20_000, 250)
                .unwrap();
            assert!(a.is_empty() && r.is_empty());
        }
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.origin_values("list:l").unwrap(),
            vec![p("192.0.2.2"), p("192.0.2.3")]
        );
        let new: Vec<String> = s
            .created_since(150, 300)
            .unwrap()
            .iter()
            .map(|d| d.value.to_string())
            .collect();
        assert_eq!(new, ["192.0.2.3"]);
        assert_eq!(s.created_since(0, 300).unwrap().len(), 2);
        assert!(
            s.list(15_000, None)
                .unwrap()
                .iter()
                .all(|d| d.expires_ms == 20_250)
        );
        assert_eq!(s.count_active(15_000).unwrap(), 2);
        let gone = s.deleted_since(150).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].value, p("192.0.2.1"));
        assert_eq!(gone[0].origin, "list:l");
        assert_eq!(
            gone[0].id,
            lists::entry_id(s.origin_id("list:l").unwrap(), &p("192.0.2.1"))
        );
        s.prune_tombstones(250).unwrap();
        assert!(s.deleted_since(0).unwrap().is_empty());
    }

    #[test]
    fn a_version_1_store_migrates_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE origins (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                 CREATE TABLE decisions (
                     id INTEGER PRIMARY KEY, value TEXT NOT NULL, addr BLOB NOT NULL,
                     plen INTEGER NOT NULL, type TEXT NOT NULL DEFAULT 'ban',
                     origin_id INTEGER NOT NULL REFERENCES origins(id), reason TEXT NOT NULL,
                     created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
                     UNIQUE (value, origin_id));
                 CREATE INDEX decisions_addr ON decisions (addr);
                 INSERT INTO origins VALUES (0, 'manual'), (16, 'list:old');
                 INSERT INTO decisions VALUES
                     (1, '192.0.2.1', x'c0000201', 32, 'ban', 0, 'm', 0, 5000),
                     (2, '198.51.100.0/24', x'c6336400', 24, 'ban', 16, 'l', 0, 7000),
                     (3, '198.51.101.1', x'c6336501', 32, 'ban', 16, 'l', 0, 6000);",
            )
            .unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        let all = s.list(0, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter().map(|d| d.expires_ms).collect::<Vec<_>>(),
            [5000, 7000, 6000]
        );
        // The list's next import takes over; its old rows end as they would have.
        s.replace_origin("list:old", vec![p("198.51.100.0/24")], 100_000, 1000)
            .unwrap();
        assert_eq!(s.count_active(6500).unwrap(), 2);
        assert_eq!(s.count_active(8000).unwrap(), 1);
        drop(s);
        // Opening again does not migrate twice.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.count_active(8000).unwrap(), 1);
    }

    #[test]
    fn tombstones_record_every_way_out() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.upsert(
            &[
                ban("192.0.2.1", "manual", 10),
                ban("192.0.2.2", "manual", 1000),
            ],
            0,
        )
        .unwrap();
        s.replace_origin("list:l", vec![p("198.51.100.1")], 1000, 0)
            .unwrap();
        s.take_expired(10_000).unwrap();
        s.delete(&p("192.0.2.2"), None).unwrap();
        s.replace_origin("list:l", vec![], 1000, 20_000).unwrap();
        let gone: Vec<String> = s
            .deleted_since(-1)
            .unwrap()
            .iter()
            .map(|t| t.value.to_string())
            .collect();
        assert_eq!(gone.len(), 3, "{gone:?}");
        for v in ["192.0.2.1", "192.0.2.2", "198.51.100.1"] {
            assert!(gone.contains(&v.to_owned()), "{v}");
        }
        // Two decision tombstones and the list's two logged changes (its import, its lapse).
        assert_eq!(s.prune_tombstones(i64::MAX).unwrap(), 4);
        assert!(s.deleted_since(-1).unwrap().is_empty());
    }

    #[test]
    fn bouncers_by_key_hash() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.add_bouncer("nginx", "abc", 1).unwrap();
        assert!(matches!(
            s.add_bouncer("nginx", "def", 1),
            Err(StoreError::BouncerExists(_))
        ));
        assert_eq!(s.bouncer_by_key("abc").unwrap().unwrap().name, "nginx");
        assert!(s.bouncer_by_key("nope").unwrap().is_none());
        s.set_bouncer_pull("nginx", 42).unwrap();
        assert_eq!(s.bouncers().unwrap()[0].last_pull_ms, 42);
        assert!(s.delete_bouncer("nginx").unwrap());
    }

    #[test]
    fn offsets_round_trip() {
        let mut s = SqliteStore::in_memory().unwrap();
        let p = crate::acquisition::Position {
            path: "/var/log/auth.log".into(),
            dev: 1,
            ino: 2,
            offset: 3,
        };
        s.save_offsets(std::slice::from_ref(&p)).unwrap();
        s.save_offsets(&[crate::acquisition::Position {
            offset: 9,
            ..p.clone()
        }])
        .unwrap();
        assert_eq!(s.offsets().unwrap()[0].offset, 9);
    }

    #[test]
    fn unopenable_store_is_a_clear_error() {
        let err = SqliteStore::open(Path::new("/proc/nope/ips.db"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/proc/nope/ips.db"), "{err}");
    }
}
