//! [`SqliteStore`]: the decision store in one SQLite file (WAL mode).
//!
//! One file per concern: this one opens the file, creates and migrates the schema and holds
//! the helpers the others share; [`decisions`](self) rows, blocklist snapshots (`lists`), the
//! allowlist (`allow`), the kernel view that merges rows and lists (`kernel`), the bouncer
//! stream (`stream`), and the records that are not decisions (`records`: alerts, bouncers,
//! local state).
use std::{collections::BTreeMap, path::Path};

use ips_common::origin;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Decision, Origin, StoreError, Transactions,
    lists::List,
    rows::{decode_list, parse_origin, parse_value},
};
use crate::prefix::Prefix;

mod allow;
mod decisions;
mod kernel;
mod list_store;
mod records;
mod stream;
#[cfg(test)]
mod tests;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS origins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    lease_ms INTEGER
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    labels TEXT NOT NULL,
    machine TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_value ON alerts (value, last_ms);
CREATE TABLE IF NOT EXISTS local_state (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
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
    created_ms INTEGER NOT NULL,
    role TEXT NOT NULL DEFAULT 'bouncer',
    version TEXT NOT NULL DEFAULT '',
    seen_ms INTEGER NOT NULL DEFAULT 0
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
";

/// Version 2 keys decisions by (addr, plen, origin), keeps blocklists as snapshots under a
/// lease, and logs their changes. Version 3 keeps read offsets and interfaces as opaque rows of
/// `local_state`.
/// Version 4 never reuses a decision id (`AUTOINCREMENT`), as the bouncer stream needs.
/// Version 5 gives each key a role (bouncer, machine, admin) and machines a version, and each
/// alert the agent that raised it.
const SCHEMA_VERSION: i64 = 5;

/// True if `table` has a column named `column`.
pub(crate) fn has_column(
    conn: &Connection,
    table: &str,
    column: &str,
) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
}

/// Adds version 5's columns (keys' role, version and heartbeat; alerts' machine) to an older
/// store, if missing.
fn migrate_keys(conn: &Connection) -> Result<(), rusqlite::Error> {
    if !has_column(conn, "bouncers", "role")? {
        conn.execute_batch(
            "ALTER TABLE bouncers ADD COLUMN role TEXT NOT NULL DEFAULT 'bouncer';
             ALTER TABLE bouncers ADD COLUMN version TEXT NOT NULL DEFAULT '';
             ALTER TABLE bouncers ADD COLUMN seen_ms INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if !has_column(conn, "alerts", "machine")? {
        conn.execute_batch("ALTER TABLE alerts ADD COLUMN machine TEXT NOT NULL DEFAULT '';")?;
    }
    Ok(())
}

/// Moves version 2's `offsets` and `interfaces` tables into `local_state` (the encodings of
/// `acquisition::Position` and of an attach mode), if they are there.
fn migrate_local_state(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has = |table: &str| -> Result<bool, rusqlite::Error> {
        conn.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
    };
    if has("offsets")? {
        conn.execute_batch(
            "BEGIN;
             INSERT OR IGNORE INTO local_state (kind, key, value)
                 SELECT 'read-offset', path, dev || ':' || ino || ':' || offset FROM offsets;
             DROP TABLE offsets;
             COMMIT;",
        )?;
    }
    if has("interfaces")? {
        conn.execute_batch(
            "BEGIN;
             INSERT OR IGNORE INTO local_state (kind, key, value)
                 SELECT 'interface', name, mode FROM interfaces;
             DROP TABLE interfaces;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Starts the id sequence past every decision id handed out so far, in rows or tombstones.
const SEED_IDS: &str = "
    DELETE FROM sqlite_sequence WHERE name = 'decisions';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'decisions', COALESCE(MAX(m), 0) FROM (
        SELECT MAX(id) AS m FROM decisions UNION ALL SELECT MAX(decision_id) FROM tombstones);";

/// Creates the schema, bringing a store written by an older `ips` to [`SCHEMA_VERSION`] on the
/// way and keeping every row.
fn create_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_decisions: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'",
        [],
        |r| r.get(0),
    )?;
    if version >= 4 || !has_decisions {
        conn.execute_batch(SCHEMA)?;
        migrate_keys(conn)?;
        return migrate_local_state(conn);
    }
    if version >= 2 {
        // Versions 2 and 3: the same columns, ids that could be reused. The rows move into a
        // table whose ids only grow, past every id handed out before.
        rebuild_decisions(
            conn,
            "",
            "INSERT INTO decisions SELECT * FROM decisions_old",
        )?;
    } else {
        // Version 1: decisions unique on (value, origin_id), origins without a lease. A list's
        // rows stay rows and expire as they would have; its next refresh writes a snapshot.
        rebuild_decisions(
            conn,
            "ALTER TABLE origins ADD COLUMN lease_ms INTEGER;
             DROP INDEX IF EXISTS decisions_addr;",
            "INSERT OR IGNORE INTO decisions
                 SELECT id, value, addr, plen, type, origin_id, reason, created_ms, expires_ms
                 FROM decisions_old",
        )?;
    }
    migrate_keys(conn)?;
    migrate_local_state(conn)
}

/// Rebuilds the decisions table of an older store in one transaction: runs `before`, steps the
/// old table aside (its indexes dropped, their names reused), lets [`SCHEMA`] create the new
/// one, moves the rows over with `copy` (which reads `decisions_old`), and starts the id
/// sequence past every id handed out. Nothing changes if a step fails.
fn rebuild_decisions(conn: &Connection, before: &str, copy: &str) -> Result<(), rusqlite::Error> {
    conn.execute_batch(&format!(
        "BEGIN;
         {before}
         DROP INDEX IF EXISTS decisions_expires;
         DROP INDEX IF EXISTS decisions_created;
         ALTER TABLE decisions RENAME TO decisions_old;"
    ))
    .and_then(|()| conn.execute_batch(SCHEMA))
    .and_then(|()| {
        conn.execute_batch(&format!(
            "{copy};
             DROP TABLE decisions_old;
             {SEED_IDS}
             COMMIT;"
        ))
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
    /// Origin ids given out since [`DecisionStore::take_new_origins`] last asked.
    new_origins: Vec<u32>,
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
            (origin::MANUAL, Origin::Manual),
            (origin::DETECTION, Origin::Detection),
            (origin::CROWD, Origin::Crowd),
        ] {
            conn.execute(
                "INSERT OR IGNORE INTO origins (id, name) VALUES (?1, ?2)",
                params![id, name.to_string()],
            )?;
        }
        Ok(conn)
    }

    fn with_allowlist(conn: Connection) -> Result<Self, StoreError> {
        let mut store = Self {
            conn,
            allow: Vec::new(),
            lists: BTreeMap::new(),
            new_origins: Vec::new(),
        };
        store.allow = super::AllowStore::allow_list(&store)?
            .into_iter()
            .map(|a| a.value)
            .collect();
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
            let name: String = r.get(1)?;
            let origin = parse_origin(name)?;
            let entries = decode_list(
                r.get_ref(2)?.as_blob().unwrap_or_default(),
                &format!("snapshot of {origin}"),
            )?;
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

    /// The allowlist entry that covers `value`, if any.
    fn allowlisted_by(&self, value: &Prefix) -> Option<Prefix> {
        self.allow.iter().find(|a| a.contains(value)).copied()
    }

    /// The id of origin `name`, giving out a free one (noted in `new`) if it has none. Ids are
    /// few (the kernel's per-origin counters are indexed by them): when none is free, those of
    /// origins nothing refers to any more are taken back first.
    fn origin_id_in(conn: &Connection, name: &str, new: &mut Vec<u32>) -> Result<u32, StoreError> {
        if let Some(id) = conn
            .query_row("SELECT id FROM origins WHERE name = ?1", [name], |r| {
                r.get::<_, u32>(0)
            })
            .optional()?
        {
            return Ok(id);
        }
        // The lowest id from FIRST_LIST on that no origin holds.
        let free = |conn: &Connection| {
            conn.query_row(
                "SELECT MIN(c) FROM (SELECT ?1 AS c UNION ALL
                     SELECT id + 1 FROM origins WHERE id >= ?1)
                 WHERE c NOT IN (SELECT id FROM origins)",
                [origin::FIRST_LIST],
                |r| r.get::<_, u32>(0),
            )
        };
        let mut next = free(conn)?;
        if next >= origin::MAX {
            let reclaimed = Self::reclaim_origins(conn)?;
            if reclaimed > 0 {
                tracing::info!(
                    reclaimed,
                    "Origin ids taken back from origins nothing refers to."
                );
            }
            next = free(conn)?;
        }
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
        new.push(next);
        Ok(next)
    }

    /// Deletes the list and LAPI origins that no decision row, no list and no logged list change
    /// (which bouncers still read) refers to. Returns how many.
    fn reclaim_origins(conn: &Connection) -> Result<usize, rusqlite::Error> {
        conn.execute(
            "DELETE FROM origins WHERE id >= ?1
               AND NOT EXISTS (SELECT 1 FROM lists l WHERE l.origin_id = origins.id)
               AND NOT EXISTS (SELECT 1 FROM list_changes c WHERE c.origin_id = origins.id)
               AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.origin_id = origins.id)",
            [origin::FIRST_LIST],
        )
    }
}

/// What `ips store check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// SQLite's own integrity check: `ok`, or what is wrong.
    pub integrity: Vec<String>,
    /// Decision rows whose value or origin does not parse.
    pub bad_rows: u64,
    /// Values that should be in the kernel, per map: IPv4 hosts, IPv4 prefixes, IPv6 hosts,
    /// IPv6 prefixes.
    pub kernel_values: [u64; 4],
    /// Rows and lists whose time is up (the daemon removes them on its next tick).
    pub expired: u64,
}

impl SqliteStore {
    /// Checks the file and its rows, without changing anything.
    pub fn check(&self, now_ms: i64) -> Result<Check, StoreError> {
        let mut check = Check::default();
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        check.integrity = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        check.bad_rows = self.bad_rows()?.len() as u64;
        check.expired = self.conn.query_row(
            "SELECT COUNT(*) FROM decisions WHERE expires_ms <= ?1",
            [now_ms],
            |r| r.get(0),
        )?;
        check.expired += self.lists.values().filter(|l| l.lease_ms <= now_ms).count() as u64;
        if check.bad_rows == 0 {
            super::KernelView::for_each_active(self, now_ms, &mut |p, _, _| {
                let class = usize::from(!p.is_v4()) * 2 + usize::from(!p.is_host());
                check.kernel_values[class] += 1;
            })?;
        }
        Ok(check)
    }

    /// Ids of the decision rows whose value or origin does not parse.
    fn bad_rows(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT d.id, d.value, o.name FROM decisions d
             LEFT JOIN origins o ON o.id = d.origin_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut bad = Vec::new();
        while let Some(r) = rows.next()? {
            let value: String = r.get(1)?;
            let origin: Option<String> = r.get(2)?;
            if value.parse::<Prefix>().is_err()
                || origin.is_none_or(|o| o.parse::<Origin>().is_err())
            {
                bad.push(r.get(0)?);
            }
        }
        Ok(bad)
    }

    /// Removes decision rows whose value or origin does not parse (a hand-edited or damaged
    /// file), expired rows and lapsed lists, and compacts the file. Returns how many bad rows
    /// went, and how many values expired.
    pub fn repair(&mut self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let bad = self.bad_rows()?;
        for id in &bad {
            self.conn
                .execute("DELETE FROM decisions WHERE id = ?1", [id])?;
        }
        let expired = super::DecisionStore::take_expired(self, now_ms)?;
        self.conn.execute_batch("VACUUM")?;
        Ok((bad.len() as u64, expired.delete.len() as u64))
    }
}

impl Transactions for SqliteStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        // The writes updated the in-memory lists and allowlist too: read them again.
        self.lists = self.load_lists()?;
        self.allow = super::AllowStore::allow_list(self)?
            .into_iter()
            .map(|a| a.value)
            .collect();
        Ok(())
    }
}

/// Copies the decisions matched by `filter` (a WHERE clause over `d`) into the tombstones.
const TOMBSTONE: &str =
    "INSERT INTO tombstones (decision_id, value, origin, type, reason, deleted_ms)
     SELECT d.id, d.value, o.name, d.type, d.reason, ?1 FROM decisions d
     JOIN origins o ON o.id = d.origin_id WHERE ";

/// A decision row with its value and origin still as text: [`finish`] parses them.
type RawDecision = (Decision, String, String);

fn row_to_decision(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawDecision> {
    let value: String = r.get(1)?;
    let origin: String = r.get(3)?;
    let d = Decision {
        id: r.get(0)?,
        // Filled in by `finish`, once the texts are known to parse.
        value: Prefix::host(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        scope: String::new(),
        kind: r.get(2)?,
        origin: Origin::Manual,
        reason: r.get(4)?,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
    };
    Ok((d, value, origin))
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

fn finish(rows: Vec<RawDecision>) -> Result<Vec<Decision>, StoreError> {
    rows.into_iter()
        .map(|(mut d, value, origin)| {
            d.value = parse_value(value)?;
            d.scope = d.value.scope().to_owned();
            d.origin = parse_origin(origin)?;
            Ok(d)
        })
        .collect()
}

/// Decisions with their origin's name.
fn select_decision(filter: &str) -> String {
    format!(
        "SELECT d.id, d.value, d.type, o.name, d.reason, d.created_ms, d.expires_ms \
         FROM decisions d JOIN origins o ON o.id = d.origin_id WHERE {filter}"
    )
}
