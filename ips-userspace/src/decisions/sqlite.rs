//! [`SqliteStore`]: the decision store in one SQLite file (WAL mode).
use std::{collections::BTreeSet, path::Path};

use ips_common::origin;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AllowEntry, Bouncer, Decision, Effective, NewDecision, ORIGIN_CROWD, ORIGIN_DETECTION,
    ORIGIN_MANUAL, Store, StoreError, StoredAlert, Tombstone,
};
use crate::prefix::Prefix;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS origins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
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
    UNIQUE (value, origin_id)
);
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions (expires_ms);
CREATE INDEX IF NOT EXISTS decisions_addr ON decisions (addr);
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
CREATE TABLE IF NOT EXISTS interfaces (
    name TEXT PRIMARY KEY,
    mode TEXT NOT NULL
);
";

/// The SQLite decision store.
pub struct SqliteStore {
    conn: Connection,
    /// The allowlist, kept in memory: it is small and checked on every upsert.
    allow: Vec<Prefix>,
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
        conn.execute_batch(SCHEMA)?;
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
        };
        store.allow = store.allow_list()?.into_iter().map(|a| a.value).collect();
        Ok(store)
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

const SELECT_DECISION: &str = "SELECT d.id, d.value, d.type, o.name, d.reason, d.created_ms, \
     d.expires_ms FROM decisions d JOIN origins o ON o.id = d.origin_id";

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
                 ON CONFLICT (value, origin_id) DO UPDATE SET
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

    fn replace_origin(
        &mut self,
        origin: &str,
        values: &[Prefix],
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<(Vec<Prefix>, Vec<Prefix>), StoreError> {
        if duration_ms <= 0 {
            return Err(StoreError::BadDuration(duration_ms));
        }
        let origin_id = Self::origin_id_in(&self.conn, origin)?;
        let expires = now_ms.saturating_add(duration_ms);
        let tx = self.conn.transaction()?;
        let existing: std::collections::HashSet<(Vec<u8>, u8)> = {
            let mut stmt = tx.prepare("SELECT addr, plen FROM decisions WHERE origin_id = ?1")?;
            stmt.query_map([origin_id], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u8>(1)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut wanted = std::collections::HashSet::with_capacity(values.len());
        let mut added = Vec::new();
        {
            let mut insert = tx.prepare(
                "INSERT INTO decisions (value, addr, plen, origin_id, reason, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (value, origin_id) DO UPDATE SET expires_ms = excluded.expires_ms",
            )?;
            for v in values {
                let key = (v.octets(), v.prefix_len());
                if !wanted.insert(key.clone()) {
                    continue;
                }
                if !existing.contains(&key) {
                    insert.execute(params![
                        v.to_string(),
                        key.0,
                        key.1,
                        origin_id,
                        origin,
                        now_ms,
                        expires
                    ])?;
                    added.push(*v);
                }
            }
        }
        // Renew lazily: only entries past half their life, so a refresh that changes little
        // rewrites little. Every entry still has at least half a duration left afterwards.
        tx.execute(
            "UPDATE decisions SET expires_ms = ?1 WHERE origin_id = ?2 AND expires_ms < ?3",
            params![expires, origin_id, now_ms.saturating_add(duration_ms / 2)],
        )?;
        let mut removed = Vec::new();
        {
            let mut tomb = tx.prepare(&format!(
                "{TOMBSTONE} d.origin_id = ?2 AND d.addr = ?3 AND d.plen = ?4"
            ))?;
            let mut delete = tx.prepare(
                "DELETE FROM decisions WHERE origin_id = ?1 AND addr = ?2 AND plen = ?3",
            )?;
            for (addr, plen) in existing.iter().filter(|k| !wanted.contains(*k)) {
                tomb.execute(params![now_ms, origin_id, addr, plen])?;
                delete.execute(params![origin_id, addr, plen])?;
                if let Ok(p) = Prefix::from_octets(addr, *plen) {
                    removed.push(p);
                }
            }
        }
        tx.commit()?;
        Ok((added, removed))
    }

    fn renew_origin(
        &mut self,
        origin: &str,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE decisions SET expires_ms = ?1
             WHERE origin_id = (SELECT id FROM origins WHERE name = ?2) AND expires_ms < ?3",
            params![
                now_ms.saturating_add(duration_ms),
                origin,
                now_ms.saturating_add(duration_ms / 2)
            ],
        )?)
    }

    fn delete(&mut self, value: &Prefix, origin: Option<&str>) -> Result<usize, StoreError> {
        let now = wall_ms();
        let tx = self.conn.transaction()?;
        let n = match origin {
            None => {
                tx.execute(
                    &format!("{TOMBSTONE} d.value = ?2"),
                    params![now, value.to_string()],
                )?;
                tx.execute(
                    "DELETE FROM decisions WHERE value = ?1",
                    [value.to_string()],
                )?
            }
            Some(o) => {
                tx.execute(
                    &format!("{TOMBSTONE} d.value = ?2 AND o.name = ?3"),
                    params![now, value.to_string(), o],
                )?;
                tx.execute(
                    "DELETE FROM decisions WHERE value = ?1
                     AND origin_id = (SELECT id FROM origins WHERE name = ?2)",
                    params![value.to_string(), o],
                )?
            }
        };
        tx.commit()?;
        Ok(n)
    }

    fn list(&self, now_ms: i64, value: Option<&Prefix>) -> Result<Vec<Decision>, StoreError> {
        let rows = match value {
            None => {
                let mut stmt = self.conn.prepare(&format!(
                    "{SELECT_DECISION} WHERE d.expires_ms > ?1 ORDER BY d.id"
                ))?;
                stmt.query_map([now_ms], row_to_decision)?
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(v) => {
                let mut stmt = self.conn.prepare(&format!(
                    "{SELECT_DECISION} WHERE d.expires_ms > ?1 AND d.value = ?2 ORDER BY d.id"
                ))?;
                stmt.query_map(params![now_ms, v.to_string()], row_to_decision)?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        finish(rows)
    }

    fn count_active(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM decisions WHERE expires_ms > ?1",
            [now_ms],
            |r| r.get(0),
        )?)
    }

    fn effective(&self, values: &[Prefix], now_ms: i64) -> Result<Vec<Effective>, StoreError> {
        // The origin of the decision that lasts longest is the one drops are attributed to.
        let mut stmt = self.conn.prepare_cached(
            "SELECT origin_id FROM decisions WHERE value = ?1 AND expires_ms > ?2
             ORDER BY expires_ms DESC LIMIT 1",
        )?;
        values
            .iter()
            .map(|v| {
                let origin = stmt
                    .query_row(params![v.to_string(), now_ms], |r| r.get::<_, u32>(0))
                    .optional()?;
                Ok((*v, origin))
            })
            .collect()
    }

    fn for_each_active(
        &self,
        now_ms: i64,
        each: &mut dyn FnMut(Prefix, u32),
    ) -> Result<(), StoreError> {
        // One row per value; SQLite takes the bare columns from the row with the MAX. Grouping
        // by `value` walks the UNIQUE (value, origin_id) index: no temporary sort of every row.
        let mut stmt = self.conn.prepare(
            "SELECT addr, plen, origin_id, MAX(expires_ms) FROM decisions
             WHERE expires_ms > ?1 GROUP BY value",
        )?;
        let mut rows = stmt.query([now_ms])?;
        while let Some(row) = rows.next()? {
            let addr = row.get_ref(0)?.as_blob().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
            })?;
            let plen: u8 = row.get(1)?;
            let origin: u32 = row.get(2)?;
            let value = Prefix::from_octets(addr, plen).map_err(|reason| StoreError::BadRow {
                value: format!("{addr:?}/{plen}"),
                reason: reason.to_owned(),
            })?;
            each(value, origin);
        }
        Ok(())
    }

    fn take_expired(&mut self, now_ms: i64) -> Result<Vec<Prefix>, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!("{TOMBSTONE} d.expires_ms <= ?2"),
            params![now_ms, now_ms],
        )?;
        let values: BTreeSet<String> = {
            let mut stmt =
                tx.prepare_cached("DELETE FROM decisions WHERE expires_ms <= ?1 RETURNING value")?;
            stmt.query_map([now_ms], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        tx.commit()?;
        values.into_iter().map(parse_value).collect()
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
                "SELECT DISTINCT value FROM decisions
                 WHERE addr >= ?1 AND addr <= ?2 AND length(addr) = ?3 AND plen >= ?4",
            )?;
            let inside = stmt
                .query_map(params![first, last, first.len(), value.prefix_len()], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            inside
                .into_iter()
                .map(parse_value)
                .collect::<Result<Vec<_>, _>>()?
        };
        for p in &covered {
            tx.execute(
                &format!("{TOMBSTONE} d.value = ?2"),
                params![now_ms, p.to_string()],
            )?;
            tx.execute("DELETE FROM decisions WHERE value = ?1", [p.to_string()])?;
        }
        tx.commit()?;
        if !self.allow.contains(value) {
            self.allow.push(*value);
        }
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
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT_DECISION} WHERE d.created_ms > ?1 AND d.expires_ms > ?2 ORDER BY d.id"
        ))?;
        let rows = stmt
            .query_map(params![since_ms, now_ms], row_to_decision)?
            .collect::<Result<Vec<_>, _>>()?;
        finish(rows)
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
        rows.into_iter()
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
            .collect()
    }

    fn prune_tombstones(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM tombstones WHERE deleted_ms < ?1", [before_ms])?)
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
                &[p("1.2.3.4"), p("5.6.0.0/16"), p("1.2.3.4")],
                1000,
                0,
            )
            .unwrap();
        assert_eq!((a.len(), r.len()), (2, 0));
        let (a, r) = s
            .replace_origin("list:x", &[p("5.6.0.0/16"), p("9.9.9.9")], 5000, 100)
            .unwrap();
        assert_eq!(a, vec![p("9.9.9.9")]);
        assert_eq!(r, vec![p("1.2.3.4")]);
        let list = s.list(200, None).unwrap();
        assert_eq!(list.len(), 2);
        assert!(
            list.iter()
                .all(|d| d.expires_ms == 5100 && d.origin == "list:x")
        );
        // A refresh soon after leaves entries with more than half their life alone...
        s.replace_origin("list:x", &[p("5.6.0.0/16"), p("9.9.9.9")], 5000, 200)
            .unwrap();
        assert!(
            s.list(300, None)
                .unwrap()
                .iter()
                .all(|d| d.expires_ms == 5100)
        );
        // ...and so does a renewal of an unchanged list, until they pass half their life.
        assert_eq!(s.renew_origin("list:x", 5000, 250).unwrap(), 0);
        assert_eq!(s.renew_origin("list:x", 5000, 4000).unwrap(), 2);
        assert!(
            s.list(4100, None)
                .unwrap()
                .iter()
                .all(|d| d.expires_ms == 9000)
        );
        // Another origin's decision on the same value is untouched.
        s.upsert(&[ban("9.9.9.9", "manual", 60)], 0).unwrap();
        s.replace_origin("list:x", &[], 1000, 300).unwrap();
        assert_eq!(s.list(400, None).unwrap().len(), 1);
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
        s.replace_origin("list:l", &[p("198.51.100.1")], 1000, 0)
            .unwrap();
        s.take_expired(10_000).unwrap();
        s.delete(&p("192.0.2.2"), None).unwrap();
        s.replace_origin("list:l", &[], 1000, 20_000).unwrap();
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
        assert_eq!(s.prune_tombstones(i64::MAX).unwrap(), 3);
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
