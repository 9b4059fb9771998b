//! Records that are not decisions: alerts with their evidence, registered bouncers, and this
//! host's local state as opaque rows.
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::{
    decisions::{
        AlertLog, AlertQuery, Bouncer, BouncerStore, LocalState, Role, StoreError, StoredAlert,
        rows::{ALERT_COLUMNS, AlertRow},
    },
    prefix::Prefix,
};

const SELECT_ALERT: &str = "SELECT id, scenario, source, grp, first_ms, last_ms, events, \
     outcome, value, duration_ms, reason, evidence, labels, machine FROM alerts";

fn row_to_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
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
        evidence: r.get(11)?,
        labels: r.get(12)?,
        machine: r.get(13)?,
    })
}

impl AlertLog for SqliteStore {
    fn add_alert(&mut self, a: &StoredAlert) -> Result<i64, StoreError> {
        let r = AlertRow::of(a);
        self.conn.execute(
            &format!(
                "INSERT INTO alerts ({ALERT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ),
            params![
                r.scenario,
                r.source,
                r.group,
                r.first_ms,
                r.last_ms,
                r.events,
                r.outcome,
                r.value,
                r.duration_ms,
                r.reason,
                r.evidence,
                r.labels,
                r.machine,
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "{SELECT_ALERT} WHERE (?1 IS NULL OR scenario = ?1) AND (?2 IS NULL OR source = ?2)
                 AND (?4 IS NULL OR machine = ?4)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let source = q.source.map(|s| s.to_string());
        let rows = stmt
            .query_map(
                params![q.scenario, source, q.limit as i64, q.machine],
                row_to_alert,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(AlertRow::into_alert).collect()
    }

    fn alert(&self, id: i64) -> Result<Option<StoredAlert>, StoreError> {
        self.conn
            .query_row(&format!("{SELECT_ALERT} WHERE id = ?1"), [id], row_to_alert)
            .optional()?
            .map(AlertRow::into_alert)
            .transpose()
    }

    fn alerts_after(&self, after: i64, limit: usize) -> Result<Vec<StoredAlert>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SELECT_ALERT} WHERE id > ?1 AND machine = '' ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![after, limit as i64], row_to_alert)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(AlertRow::into_alert).collect()
    }

    fn previous_bans(&self, value: &Prefix, since_ms: i64) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM alerts WHERE value = ?1 AND outcome = 'ban' AND last_ms >= ?2",
            params![value.to_string(), since_ms],
            |r| r.get(0),
        )?)
    }
}

const SELECT_KEY: &str =
    "SELECT name, last_pull_ms, created_ms, role, version, seen_ms FROM bouncers";

/// A row of [`SELECT_KEY`]; a role this version does not know reads as the least one.
fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Bouncer> {
    let role: String = r.get(3)?;
    Ok(Bouncer {
        name: r.get(0)?,
        role: role.parse().unwrap_or_default(),
        last_pull_ms: r.get(1)?,
        created_ms: r.get(2)?,
        version: r.get(4)?,
        seen_ms: r.get(5)?,
    })
}

impl BouncerStore for SqliteStore {
    fn add_bouncer(
        &mut self,
        name: &str,
        key_sha256: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self.conn.execute(
            "INSERT INTO bouncers (name, key_sha256, created_ms, role) VALUES (?1, ?2, ?3, ?4)",
            params![name, key_sha256, now_ms, role.as_str()],
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
                &format!("{SELECT_KEY} WHERE key_sha256 = ?1"),
                [key_sha256],
                key_row,
            )
            .optional()?)
    }

    fn set_seen(&mut self, name: &str, now_ms: i64, version: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE bouncers SET seen_ms = ?1, version = ?2 WHERE name = ?3",
            params![now_ms, version, name],
        )?;
        Ok(())
    }

    fn set_bouncer_pull(&mut self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE bouncers SET last_pull_ms = ?1 WHERE name = ?2",
            params![now_ms, name],
        )?;
        Ok(())
    }

    fn bouncers(&self) -> Result<Vec<Bouncer>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("{SELECT_KEY} ORDER BY name"))?;
        let rows = stmt
            .query_map([], key_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn delete_bouncer(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM bouncers WHERE name = ?1", [name])?
            > 0)
    }
}

impl LocalState for SqliteStore {
    fn save_state(&mut self, kind: &str, rows: &[(String, String)]) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO local_state (kind, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in rows {
                stmt.execute(params![kind, key, value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn state(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM local_state WHERE kind = ?1 ORDER BY key")?;
        let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_state(&mut self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM local_state WHERE kind = ?1 AND key = ?2",
            params![kind, key],
        )?;
        Ok(())
    }
}
