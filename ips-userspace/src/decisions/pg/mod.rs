//! [`PgStore`]: the decision store on PostgreSQL, which several central nodes can share.
//!
//! The tables are those of the SQLite store (`super::sqlite`), in PostgreSQL's types. What
//! differs is that other nodes write too:
//!
//! - Every unit of work ([`Transactions::begin`]) first locks the one row of `meta`, so the
//!   nodes' writes are serialized and each sees the others' committed work.
//! - `meta.rev` counts the units that changed decisions, lists or the allowlist. The blocklist
//!   snapshots and the allowlist are kept in memory as in SQLite; when `rev` moved without this
//!   node, they are read again (at `begin`, under the lock, and on [`Transactions::refresh`],
//!   which the service's tick calls so that the node's kernel follows the other nodes' writes).
//! - Local state (read offsets, attach modes) is per node (`[store] node`, the host name by
//!   default).
use std::{cell::RefCell, collections::BTreeMap};

use ips_common::origin;
use postgres::{Client, NoTls, Row, Statement, types::ToSql};

use super::{
    Decision, Origin, StoreError, Transactions,
    lists::List,
    rows::{decode_list, parse_origin, parse_value},
};
use crate::prefix::Prefix;

mod decisions;
mod lists;
mod records;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rev BIGINT NOT NULL,
    version BIGINT NOT NULL
);
INSERT INTO meta (id, rev, version) VALUES (1, 0, 5) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS origins (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    lease_ms BIGINT
);
CREATE TABLE IF NOT EXISTS decisions (
    id BIGSERIAL PRIMARY KEY,
    value TEXT NOT NULL,
    addr BYTEA NOT NULL,
    plen BIGINT NOT NULL,
    type TEXT NOT NULL DEFAULT 'ban',
    origin_id BIGINT NOT NULL REFERENCES origins(id),
    reason TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    UNIQUE (addr, plen, origin_id)
);
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions (expires_ms);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions (created_ms);
CREATE TABLE IF NOT EXISTS allowlist (
    value TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY,
    scenario TEXT NOT NULL,
    source TEXT NOT NULL,
    grp TEXT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    events BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    value TEXT,
    duration_ms BIGINT,
    reason TEXT,
    evidence TEXT NOT NULL,
    labels TEXT NOT NULL,
    machine TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_value ON alerts (value, last_ms);
CREATE TABLE IF NOT EXISTS local_state (
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (node, kind, key)
);
CREATE TABLE IF NOT EXISTS tombstones (
    decision_id BIGINT NOT NULL,
    value TEXT NOT NULL,
    origin TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    deleted_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_time ON tombstones (deleted_ms);
CREATE TABLE IF NOT EXISTS bouncers (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    last_pull_ms BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    role TEXT NOT NULL DEFAULT 'bouncer',
    version TEXT NOT NULL DEFAULT '',
    seen_ms BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lists (
    origin_id BIGINT PRIMARY KEY REFERENCES origins(id),
    entries BYTEA NOT NULL,
    count BIGINT NOT NULL,
    since_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS list_changes (
    origin_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    added BYTEA NOT NULL,
    removed BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS list_changes_time ON list_changes (at_ms);
";

/// Parameters of a statement.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The PostgreSQL decision store.
pub struct PgStore {
    client: RefCell<Client>,
    /// Where to connect again when the server closed the connection.
    url: String,
    /// Statements prepared on `client`, by their text.
    statements: RefCell<std::collections::HashMap<String, Statement>>,
    /// This node's name, for its local state.
    node: String,
    /// The allowlist, kept in memory: it is small and checked on every upsert.
    allow: Vec<Prefix>,
    /// Blocklist snapshots by origin id, as stored, decoded once.
    lists: BTreeMap<u32, List>,
    /// Origin ids given out since [`super::DecisionStore::take_new_origins`] last asked.
    new_origins: Vec<u32>,
    /// Inside a unit opened by [`Transactions::begin`].
    in_unit: bool,
    /// The unit changed decisions, lists or the allowlist: `meta.rev` moves at commit.
    dirty: bool,
    /// `meta.rev` as of this node's last read of the lists and allowlist.
    seen_rev: i64,
    /// Another node's writes were read in since [`Transactions::refresh`] last said so.
    foreign: bool,
}

/// An id as stored (BIGINT) as the kernel's origin index.
fn id32(id: i64) -> u32 {
    u32::try_from(id).unwrap_or(u32::MAX)
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or key=value string), creates the tables if
    /// needed, and reads the lists and allowlist. `node` names this host's local state.
    pub fn connect(url: &str, node: &str) -> Result<Self, StoreError> {
        let client = Self::open(url)?;
        let mut store = Self {
            client: RefCell::new(client),
            url: url.to_owned(),
            statements: RefCell::default(),
            node: node.to_owned(),
            allow: Vec::new(),
            lists: BTreeMap::new(),
            new_origins: Vec::new(),
            in_unit: false,
            dirty: false,
            seen_rev: -1,
            foreign: false,
        };
        store.seen_rev = store.rev()?;
        store.reload()?;
        store.foreign = false;
        Ok(store)
    }

    /// A connection to `url` with the tables created.
    fn open(url: &str) -> Result<Client, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(|e| StoreError::PgOpen {
            url: redact(url),
            source: e,
        })?;
        // Two nodes starting at once both create the tables: one waits for the other.
        // A commit does not wait for its WAL flush, as SQLite's WAL with synchronous=NORMAL: a
        // crash of the server may lose the last moments' writes, never corrupt the store (the
        // daemon reconciles the kernel with the store when it starts).
        client.batch_execute(&format!(
            "SET synchronous_commit = off;
             BEGIN; SELECT pg_advisory_xact_lock(7036546); {SCHEMA} COMMIT;"
        ))?;
        for (id, name) in [
            (origin::MANUAL, Origin::Manual),
            (origin::DETECTION, Origin::Detection),
            (origin::CROWD, Origin::Crowd),
        ] {
            client.execute(
                "INSERT INTO origins (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&i64::from(id), &name.to_string()],
            )?;
        }
        Ok(client)
    }

    /// The server process serving this store's connection (for tests that end it).
    #[cfg(test)]
    pub(crate) fn backend_pid(&self) -> i32 {
        self.opt("SELECT pg_backend_pid()", &[])
            .ok()
            .flatten()
            .map_or(0, |r| r.get(0))
    }

    /// Connects again if the server closed the connection (a restart, a failover, an
    /// administrator's `pg_terminate_backend`): the unit in progress, if any, was lost with it.
    /// The lists and allowlist are read again and the caller told, through
    /// [`Transactions::refresh`], to reconcile the kernel.
    fn reconnect_if_closed(&mut self) -> Result<(), StoreError> {
        if !self.client.borrow().is_closed() {
            return Ok(());
        }
        let client = Self::open(&self.url)?;
        tracing::warn!("The PostgreSQL connection was closed; connected again.");
        *self.client.borrow_mut() = client;
        self.statements.borrow_mut().clear();
        self.in_unit = false;
        self.dirty = false;
        self.seen_rev = self.rev()?;
        self.reload()
    }

    /// The prepared statement for `sql`, prepared once per connection (a round trip saved on
    /// every later use).
    fn prepared(&self, client: &mut Client, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let mut client = self.client.borrow_mut();
        let stmt = self.prepared(&mut client, sql)?;
        Ok(client.execute(&stmt, params)?)
    }

    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let mut client = self.client.borrow_mut();
        let stmt = self.prepared(&mut client, sql)?;
        Ok(client.query(&stmt, params)?)
    }

    fn opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let mut client = self.client.borrow_mut();
        let stmt = self.prepared(&mut client, sql)?;
        Ok(client.query_opt(&stmt, params)?)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.borrow_mut().batch_execute(sql)?)
    }

    fn rev(&self) -> Result<i64, StoreError> {
        Ok(self
            .opt("SELECT rev FROM meta WHERE id = 1", &[])?
            .map_or(0, |r| r.get(0)))
    }

    /// Reads the lists and the allowlist again.
    fn reload(&mut self) -> Result<(), StoreError> {
        self.lists = self.load_lists()?;
        self.allow = super::AllowStore::allow_list(self)?
            .into_iter()
            .map(|a| a.value)
            .collect();
        self.foreign = true;
        Ok(())
    }

    fn load_lists(&self) -> Result<BTreeMap<u32, List>, StoreError> {
        let rows = self.query(
            "SELECT l.origin_id, o.name, l.entries, COALESCE(o.lease_ms, 0), l.since_ms
             FROM lists l JOIN origins o ON o.id = l.origin_id",
            &[],
        )?;
        let mut out = BTreeMap::new();
        for r in rows {
            let origin = parse_origin(r.get(1))?;
            let entries = decode_list(r.get(2), &format!("snapshot of {origin}"))?;
            let list = List {
                origin,
                entries,
                lease_ms: r.get(3),
                since_ms: r.get(4),
            };
            out.insert(id32(r.get(0)), list);
        }
        Ok(out)
    }

    /// Runs `f` as one unit: a savepoint inside an open unit, else a unit of its own. On an
    /// error everything `f` wrote is undone.
    fn unit<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.in_unit {
            self.batch("SAVEPOINT unit")?;
            match f(self) {
                Ok(v) => {
                    self.batch("RELEASE SAVEPOINT unit")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = self.batch("ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit");
                    Err(e)
                }
            }
        } else {
            self.begin()?;
            match f(self) {
                Ok(v) => {
                    self.commit()?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = self.rollback();
                    Err(e)
                }
            }
        }
    }

    /// The allowlist entry that covers `value`, if any.
    fn allowlisted_by(&self, value: &Prefix) -> Option<Prefix> {
        self.allow.iter().find(|a| a.contains(value)).copied()
    }

    /// The id of origin `name`, giving out a free one if it has none; when none is free, those
    /// of origins nothing refers to any more are taken back first. Called inside a unit.
    fn origin_id_of(&mut self, name: &str) -> Result<u32, StoreError> {
        if let Some(r) = self.opt("SELECT id FROM origins WHERE name = $1", &[&name])? {
            return Ok(id32(r.get(0)));
        }
        let first = i64::from(origin::FIRST_LIST);
        let free = |s: &Self| -> Result<u32, StoreError> {
            Ok(s.opt(
                "SELECT MIN(c) FROM (SELECT $1::BIGINT AS c UNION ALL
                     SELECT id + 1 FROM origins WHERE id >= $1) AS f
                 WHERE c NOT IN (SELECT id FROM origins)",
                &[&first],
            )?
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map_or(u32::MAX, id32))
        };
        let mut next = free(self)?;
        if next >= origin::MAX {
            let reclaimed = self.exec(
                "DELETE FROM origins WHERE id >= $1
                   AND NOT EXISTS (SELECT 1 FROM lists l WHERE l.origin_id = origins.id)
                   AND NOT EXISTS (SELECT 1 FROM list_changes c WHERE c.origin_id = origins.id)
                   AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.origin_id = origins.id)",
                &[&first],
            )?;
            if reclaimed > 0 {
                tracing::info!(
                    reclaimed,
                    "Origin ids taken back from origins nothing refers to."
                );
            }
            next = free(self)?;
        }
        if next >= origin::MAX {
            return Err(StoreError::TooManyOrigins {
                name: name.to_owned(),
                max: origin::MAX,
            });
        }
        self.exec(
            "INSERT INTO origins (id, name) VALUES ($1, $2)",
            &[&i64::from(next), &name],
        )?;
        self.new_origins.push(next);
        Ok(next)
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url
            .split_whitespace()
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

impl Transactions for PgStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.reconnect_if_closed()?;
        self.batch("BEGIN")?;
        self.in_unit = true;
        self.dirty = false;
        let rev: i64 = match self.opt("SELECT rev FROM meta WHERE id = 1 FOR UPDATE", &[]) {
            Ok(r) => r.map_or(0, |r| r.get(0)),
            Err(e) => {
                let _ = self.rollback();
                return Err(e);
            }
        };
        if rev != self.seen_rev {
            // Another node wrote since: read its lists and allowlist, under the lock.
            self.reload()?;
            self.seen_rev = rev;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.dirty {
            let r = self.opt(
                "UPDATE meta SET rev = rev + 1 WHERE id = 1 RETURNING rev",
                &[],
            )?;
            self.seen_rev = r.map_or(self.seen_rev, |r| r.get(0));
        }
        self.batch("COMMIT")?;
        self.in_unit = false;
        self.dirty = false;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        if self.in_unit {
            self.batch("ROLLBACK")?;
        }
        self.in_unit = false;
        self.dirty = false;
        self.new_origins.clear();
        // The writes updated the in-memory lists and allowlist too: read them again.
        let foreign = self.foreign;
        self.reload()?;
        self.foreign = foreign;
        Ok(())
    }

    fn refresh(&mut self) -> Result<bool, StoreError> {
        self.reconnect_if_closed()?;
        if !self.in_unit {
            let rev = self.rev()?;
            if rev != self.seen_rev {
                self.reload()?;
                self.seen_rev = rev;
            }
        }
        Ok(std::mem::take(&mut self.foreign))
    }
}

/// Decisions with their origin's name, as [`row_to_decision`] reads them.
fn select_decision(filter: &str) -> String {
    format!(
        "SELECT d.id, d.value, d.type, o.name, d.reason, d.created_ms, d.expires_ms \
         FROM decisions d JOIN origins o ON o.id = d.origin_id WHERE {filter}"
    )
}

fn row_to_decision(r: &Row) -> Result<Decision, StoreError> {
    let value = parse_value(r.get(1))?;
    Ok(Decision {
        id: r.get(0),
        value,
        scope: value.scope().to_owned(),
        kind: r.get(2),
        origin: parse_origin(r.get(3))?,
        reason: r.get(4),
        created_ms: r.get(5),
        expires_ms: r.get(6),
    })
}

fn decisions_of(rows: Vec<Row>) -> Result<Vec<Decision>, StoreError> {
    rows.iter().map(row_to_decision).collect()
}

/// The prefix in a row's columns `at` (`addr`) and `at + 1` (`plen`).
fn prefix_at(row: &Row, at: usize) -> Result<Prefix, StoreError> {
    let addr: &[u8] = row.get(at);
    let plen: i64 = row.get(at + 1);
    Prefix::from_octets(addr, u8::try_from(plen).unwrap_or(u8::MAX)).map_err(|reason| {
        StoreError::BadRow {
            value: format!("{addr:?}/{plen}"),
            reason: reason.to_owned(),
        }
    })
}

/// Copies the decisions matched by a filter over `d` into the tombstones; `$1` is the time.
const TOMBSTONE: &str =
    "INSERT INTO tombstones (decision_id, value, origin, type, reason, deleted_ms)
     SELECT d.id, d.value, o.name, d.type, d.reason, $1 FROM decisions d
     JOIN origins o ON o.id = d.origin_id WHERE ";

/// A prefix's key columns as parameters.
fn key(p: &Prefix) -> (Vec<u8>, i64) {
    (p.octets(), i64::from(p.prefix_len()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://ips:secret@127.0.0.1:5432/ips"),
            "postgres://ips:***@127.0.0.1:5432/ips"
        );
        assert_eq!(
            super::redact("host=db user=ips password=secret"),
            "host=db user=ips password=***"
        );
    }
}
