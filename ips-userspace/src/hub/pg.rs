//! The hub on PostgreSQL: many hub nodes can share one database.
use postgres::{Client, NoTls};

use super::{HubBackend, HubError, Signal};

/// PostgreSQL hub storage.
pub struct PgHub {
    client: Client,
}

impl PgHub {
    /// Connects and creates the tables if needed.
    pub fn connect(url: &str) -> Result<Self, HubError> {
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS agents (
                 id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, key_sha256 TEXT NOT NULL UNIQUE,
                 trust DOUBLE PRECISION NOT NULL DEFAULT 1.0, created_ms BIGINT NOT NULL,
                 last_seq BIGINT NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS signals (
                 agent_id BIGINT NOT NULL, value TEXT NOT NULL, scenario TEXT NOT NULL,
                 time_ms BIGINT NOT NULL, PRIMARY KEY (value, agent_id));
             CREATE INDEX IF NOT EXISTS signals_time ON signals (time_ms);
             ALTER TABLE agents ADD COLUMN IF NOT EXISTS approved BOOLEAN NOT NULL DEFAULT FALSE;
             CREATE TABLE IF NOT EXISTS listed (value TEXT PRIMARY KEY, since_ms BIGINT NOT NULL);
             CREATE TABLE IF NOT EXISTS changes (
                 seq BIGSERIAL PRIMARY KEY, value TEXT NOT NULL, listed BOOLEAN NOT NULL);",
        )?;
        Ok(Self { client })
    }
}

impl HubBackend for PgHub {
    fn add_agent(&mut self, name: &str, key_sha256: &str, now_ms: i64) -> Result<i64, HubError> {
        let row = self.client.query_one(
            "INSERT INTO agents (name, key_sha256, created_ms) VALUES ($1, $2, $3) RETURNING id",
            &[&name, &key_sha256, &now_ms],
        )?;
        Ok(row.get(0))
    }

    fn agent_by_key(&mut self, key_sha256: &str) -> Result<Option<i64>, HubError> {
        Ok(self
            .client
            .query_opt(
                "SELECT id FROM agents WHERE key_sha256 = $1",
                &[&key_sha256],
            )?
            .map(|r| r.get(0)))
    }

    fn set_trust(&mut self, agent: i64, trust: f64) -> Result<(), HubError> {
        self.client.execute(
            "UPDATE agents SET trust = $1 WHERE id = $2",
            &[&trust, &agent],
        )?;
        Ok(())
    }

    fn upsert_signals(
        &mut self,
        agent: i64,
        signals: &[Signal],
        now_ms: i64,
    ) -> Result<(), HubError> {
        let mut tx = self.client.transaction()?;
        let stmt = tx.prepare(
            "INSERT INTO signals (agent_id, value, scenario, time_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (value, agent_id) DO UPDATE SET
                 time_ms = GREATEST(signals.time_ms, excluded.time_ms),
                 scenario = excluded.scenario",
        )?;
        for s in signals {
            let value = s.value.to_string();
            tx.execute(
                &stmt,
                &[&agent, &value, &s.scenario, &s.time_ms.min(now_ms)],
            )?;
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
        let row = self.client.query_one(
            "SELECT COALESCE(SUM(CASE WHEN a.approved OR $4::BIGINT <= 0 THEN a.trust
                 ELSE a.trust * LEAST(1.0,
                     GREATEST(0, $3::BIGINT - a.created_ms)::DOUBLE PRECISION / $4::BIGINT)
                 END), 0)::DOUBLE PRECISION
             FROM signals s JOIN agents a ON a.id = s.agent_id
             WHERE s.value = $1 AND s.time_ms > $2",
            &[&value, &since_ms, &now_ms, &ramp_ms],
        )?;
        Ok(row.get(0))
    }

    fn approve(&mut self, name: &str) -> Result<bool, HubError> {
        Ok(self.client.execute(
            "UPDATE agents SET approved = TRUE WHERE name = $1",
            &[&name],
        )? > 0)
    }

    fn reported_between(&mut self, after_ms: i64, until_ms: i64) -> Result<Vec<String>, HubError> {
        Ok(self
            .client
            .query(
                "SELECT DISTINCT value FROM signals WHERE time_ms > $1::BIGINT AND time_ms <= $2::BIGINT",
                &[&after_ms, &until_ms],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn is_listed(&mut self, value: &str) -> Result<bool, HubError> {
        Ok(self
            .client
            .query_opt("SELECT 1 FROM listed WHERE value = $1", &[&value])?
            .is_some())
    }

    fn set_listed(&mut self, value: &str, listed: bool, now_ms: i64) -> Result<(), HubError> {
        let mut tx = self.client.transaction()?;
        if listed {
            tx.execute(
                "INSERT INTO listed (value, since_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&value, &now_ms],
            )?;
        } else {
            tx.execute("DELETE FROM listed WHERE value = $1", &[&value])?;
        }
        tx.execute(
            "INSERT INTO changes (value, listed) VALUES ($1, $2)",
            &[&value, &listed],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn listed(&mut self) -> Result<Vec<String>, HubError> {
        Ok(self
            .client
            .query("SELECT value FROM listed", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn changes_since(&mut self, seq: i64) -> Result<Vec<(String, bool)>, HubError> {
        Ok(self
            .client
            .query(
                "SELECT value, listed FROM changes WHERE seq > $1 ORDER BY seq",
                &[&seq],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn max_seq(&mut self) -> Result<i64, HubError> {
        Ok(self
            .client
            .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM changes", &[])?
            .get(0))
    }

    fn agent_seq(&mut self, agent: i64) -> Result<i64, HubError> {
        Ok(self
            .client
            .query_one("SELECT last_seq FROM agents WHERE id = $1", &[&agent])?
            .get(0))
    }

    fn set_agent_seq(&mut self, agent: i64, seq: i64) -> Result<(), HubError> {
        self.client.execute(
            "UPDATE agents SET last_seq = $1 WHERE id = $2",
            &[&seq, &agent],
        )?;
        Ok(())
    }

    fn forget_signals(&mut self, ms: i64) -> Result<(), HubError> {
        self.client
            .execute("DELETE FROM signals WHERE time_ms <= $1", &[&ms])?;
        Ok(())
    }
}
