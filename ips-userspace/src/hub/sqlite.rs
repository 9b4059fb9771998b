//! The hub on SQLite: one file, for a single node.
use rusqlite::{Connection, OptionalExtension, params};

use super::{HubBackend, HubError, Signal};

/// SQLite hub storage.
pub struct SqliteHub {
    conn: Connection,
}

impl SqliteHub {
    /// Opens (or creates) the database; `:memory:` for a throwaway one.
    pub fn open(path: &std::path::Path) -> Result<Self, HubError> {
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // As the decision store: durable across a crash of the hub process, while a power cut
        // may lose the last moments of pushes. No fsync per push.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS agents (
                 id INTEGER PRIMARY KEY, name TEXT NOT NULL, key_sha256 TEXT NOT NULL UNIQUE,
                 trust REAL NOT NULL DEFAULT 1.0, created_ms INTEGER NOT NULL,
                 last_seq INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS signals (
                 agent_id INTEGER NOT NULL, value TEXT NOT NULL, scenario TEXT NOT NULL,
                 time_ms INTEGER NOT NULL, PRIMARY KEY (value, agent_id));
             CREATE INDEX IF NOT EXISTS signals_time ON signals (time_ms);
             CREATE TABLE IF NOT EXISTS listed (value TEXT PRIMARY KEY, since_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS changes (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, value TEXT NOT NULL,
                 listed INTEGER NOT NULL);",
        )?;
        if !crate::decisions::sqlite::has_column(&conn, "agents", "approved")? {
            conn.execute_batch(
                "ALTER TABLE agents ADD COLUMN approved INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        Ok(Self { conn })
    }
}

impl HubBackend for SqliteHub {
    fn add_agent(&mut self, name: &str, key_sha256: &str, now_ms: i64) -> Result<i64, HubError> {
        self.conn.execute(
            "INSERT INTO agents (name, key_sha256, created_ms) VALUES (?1, ?2, ?3)",
            params![name, key_sha256, now_ms],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn agent_by_key(&mut self, key_sha256: &str) -> Result<Option<i64>, HubError> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM agents WHERE key_sha256 = ?1")?
            .query_row([key_sha256], |r| r.get(0))
            .optional()?)
    }

    fn set_trust(&mut self, agent: i64, trust: f64) -> Result<(), HubError> {
        self.conn.execute(
            "UPDATE agents SET trust = ?1 WHERE id = ?2",
            params![trust, agent],
        )?;
        Ok(())
    }

    fn upsert_signals(
        &mut self,
        agent: i64,
        signals: &[Signal],
        now_ms: i64,
    ) -> Result<(), HubError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO signals (agent_id, value, scenario, time_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (value, agent_id) DO UPDATE SET
                     time_ms = MAX(time_ms, excluded.time_ms), scenario = excluded.scenario",
            )?;
            for s in signals {
                // A report from the future counts from now.
                stmt.execute(params![
                    agent,
                    s.value.to_string(),
                    s.scenario,
                    s.time_ms.min(now_ms)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn weight(
        &mut self,
        value: &str,
        since_ms: i64,
        now_ms: i64,
        ramp_ms: i64,
    ) -> Result<f64, HubError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COALESCE(SUM(CASE WHEN a.approved = 1 OR ?4 <= 0 THEN a.trust
                     ELSE a.trust * MIN(1.0, MAX(0, ?3 - a.created_ms) * 1.0 / ?4) END), 0)
                 FROM signals s JOIN agents a ON a.id = s.agent_id
                 WHERE s.value = ?1 AND s.time_ms > ?2",
            )?
            .query_row(params![value, since_ms, now_ms, ramp_ms], |r| r.get(0))?)
    }

    fn approve(&mut self, name: &str) -> Result<bool, HubError> {
        Ok(self
            .conn
            .execute("UPDATE agents SET approved = 1 WHERE name = ?1", [name])?
            > 0)
    }

    fn reported_between(&mut self, after_ms: i64, until_ms: i64) -> Result<Vec<String>, HubError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT value FROM signals WHERE time_ms > ?1 AND time_ms <= ?2",
        )?;
        let rows = stmt
            .query_map(params![after_ms, until_ms], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn is_listed(&mut self, value: &str) -> Result<bool, HubError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM listed WHERE value = ?1")?
            .query_row([value], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn set_listed(&mut self, value: &str, listed: bool, now_ms: i64) -> Result<(), HubError> {
        let tx = self.conn.transaction()?;
        if listed {
            tx.execute(
                "INSERT OR IGNORE INTO listed (value, since_ms) VALUES (?1, ?2)",
                params![value, now_ms],
            )?;
        } else {
            tx.execute("DELETE FROM listed WHERE value = ?1", [value])?;
        }
        tx.execute(
            "INSERT INTO changes (value, listed) VALUES (?1, ?2)",
            params![value, listed],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn listed(&mut self) -> Result<Vec<String>, HubError> {
        let mut stmt = self.conn.prepare("SELECT value FROM listed")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn changes_since(&mut self, seq: i64) -> Result<Vec<(String, bool)>, HubError> {
        let mut stmt = self
            .conn
            .prepare("SELECT value, listed FROM changes WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn max_seq(&mut self) -> Result<i64, HubError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })?)
    }

    fn agent_seq(&mut self, agent: i64) -> Result<i64, HubError> {
        Ok(self
            .conn
            .query_row("SELECT last_seq FROM agents WHERE id = ?1", [agent], |r| {
                r.get(0)
            })?)
    }

    fn set_agent_seq(&mut self, agent: i64, seq: i64) -> Result<(), HubError> {
        self.conn.execute(
            "UPDATE agents SET last_seq = ?1 WHERE id = ?2",
            params![seq, agent],
        )?;
        Ok(())
    }

    fn forget_signals(&mut self, ms: i64) -> Result<(), HubError> {
        self.conn
            .execute("DELETE FROM signals WHERE time_ms <= ?1", [ms])?;
        Ok(())
    }
}
