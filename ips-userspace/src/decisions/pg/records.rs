//! The bouncer stream's deltas, alerts, keys and this node's local state.
use std::collections::BTreeMap;

use super::{PgStore, decisions_of, parse_origin, parse_value, select_decision};
use crate::{
    decisions::{
        AlertLog, AlertQuery, Bouncer, BouncerStore, BouncerStream, Decision, DecisionStore,
        LocalState, Role, StoreError, StoredAlert, Tombstone,
        rows::{self, ALERT_COLUMNS, AlertRow},
    },
    prefix::Prefix,
};

impl BouncerStream for PgStore {
    fn created_since(&self, since_ms: i64, now_ms: i64) -> Result<Vec<Decision>, StoreError> {
        let mut out = decisions_of(self.query(
            &select_decision("d.created_ms > $1 AND d.expires_ms > $2 ORDER BY d.id"),
            &[&since_ms, &now_ms],
        )?)?;
        rows::added_entries(&self.lists, self.list_changes(since_ms)?, now_ms, &mut out);
        Ok(out)
    }

    fn deleted_since(&self, since_ms: i64) -> Result<Vec<Tombstone>, StoreError> {
        let mut out = self
            .query(
                "SELECT decision_id, value, origin, type, reason, deleted_ms FROM tombstones
                 WHERE deleted_ms > $1 ORDER BY deleted_ms",
                &[&since_ms],
            )?
            .iter()
            .map(|r| {
                Ok(Tombstone {
                    id: r.get(0),
                    value: parse_value(r.get(1))?,
                    origin: parse_origin(r.get(2))?,
                    kind: r.get(3),
                    reason: r.get(4),
                    deleted_ms: r.get(5),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let names: BTreeMap<u32, String> = self.origins()?.into_iter().collect();
        rows::removed_entries(&names, self.list_changes(since_ms)?, &mut out)?;
        Ok(out)
    }

    fn prune_tombstones(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        let n = self.exec(
            "DELETE FROM tombstones WHERE deleted_ms < $1",
            &[&before_ms],
        )? + self.exec("DELETE FROM list_changes WHERE at_ms < $1", &[&before_ms])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

fn alert_of(r: &postgres::Row) -> Result<StoredAlert, StoreError> {
    AlertRow {
        id: r.get(0),
        scenario: r.get(1),
        source: r.get(2),
        group: r.get(3),
        first_ms: r.get(4),
        last_ms: r.get(5),
        events: u32::try_from(r.get::<_, i64>(6)).unwrap_or(u32::MAX),
        outcome: r.get(7),
        value: r.get(8),
        duration_ms: r.get(9),
        reason: r.get(10),
        evidence: r.get(11),
        labels: r.get(12),
        machine: r.get(13),
    }
    .into_alert()
}

fn select_alert(filter: &str) -> String {
    format!("SELECT id, {ALERT_COLUMNS} FROM alerts WHERE {filter}")
}

impl AlertLog for PgStore {
    fn add_alert(&mut self, a: &StoredAlert) -> Result<i64, StoreError> {
        let r = AlertRow::of(a);
        let row = self.client.borrow_mut().query_one(
            &format!(
                "INSERT INTO alerts ({ALERT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id"
            ),
            &[
                &r.scenario,
                &r.source,
                &r.group,
                &r.first_ms,
                &r.last_ms,
                &i64::from(r.events),
                &r.outcome,
                &r.value,
                &r.duration_ms,
                &r.reason,
                &r.evidence,
                &r.labels,
                &r.machine,
            ],
        )?;
        Ok(row.get(0))
    }

    fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let source = q.source.map(|s| s.to_string());
        self.query(
            &select_alert(
                "($1::TEXT IS NULL OR scenario = $1::TEXT) AND ($2::TEXT IS NULL OR source = $2::TEXT)
                     AND ($4::TEXT IS NULL OR machine = $4::TEXT)
                 ORDER BY id DESC LIMIT $3",
            ),
            &[
                &q.scenario,
                &source,
                &i64::try_from(q.limit).unwrap_or(i64::MAX),
                &q.machine,
            ],
        )?
        .iter()
        .map(alert_of)
        .collect()
    }

    fn alert(&self, id: i64) -> Result<Option<StoredAlert>, StoreError> {
        self.opt(&select_alert("id = $1"), &[&id])?
            .as_ref()
            .map(alert_of)
            .transpose()
    }

    fn alerts_after(&self, after: i64, limit: usize) -> Result<Vec<StoredAlert>, StoreError> {
        self.query(
            &select_alert("id > $1 AND machine = '' ORDER BY id LIMIT $2"),
            &[&after, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )?
        .iter()
        .map(alert_of)
        .collect()
    }

    fn previous_bans(&self, value: &Prefix, since_ms: i64) -> Result<u32, StoreError> {
        let n: i64 = self
            .query(
                "SELECT COUNT(*) FROM alerts WHERE value = $1 AND outcome = 'ban' AND last_ms >= $2",
                &[&value.to_string(), &since_ms],
            )?
            .first()
            .map_or(0, |r| r.get(0));
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

const SELECT_KEY: &str =
    "SELECT name, last_pull_ms, created_ms, role, version, seen_ms FROM bouncers";

fn key_of(r: &postgres::Row) -> Bouncer {
    let role: String = r.get(3);
    Bouncer {
        name: r.get(0),
        role: role.parse().unwrap_or_default(),
        last_pull_ms: r.get(1),
        created_ms: r.get(2),
        version: r.get(4),
        seen_ms: r.get(5),
    }
}

impl BouncerStore for PgStore {
    fn add_bouncer(
        &mut self,
        name: &str,
        key_sha256: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let n = self.exec(
            "INSERT INTO bouncers (name, key_sha256, created_ms, role) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&name, &key_sha256, &now_ms, &role.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::BouncerExists(name.to_owned()));
        }
        Ok(())
    }

    fn set_seen(&mut self, name: &str, now_ms: i64, version: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE bouncers SET seen_ms = $1, version = $2 WHERE name = $3",
            &[&now_ms, &version, &name],
        )?;
        Ok(())
    }

    fn bouncer_by_key(&self, key_sha256: &str) -> Result<Option<Bouncer>, StoreError> {
        Ok(self
            .opt(
                &format!("{SELECT_KEY} WHERE key_sha256 = $1"),
                &[&key_sha256],
            )?
            .as_ref()
            .map(key_of))
    }

    fn set_bouncer_pull(&mut self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE bouncers SET last_pull_ms = $1 WHERE name = $2",
            &[&now_ms, &name],
        )?;
        Ok(())
    }

    fn bouncers(&self) -> Result<Vec<Bouncer>, StoreError> {
        Ok(self
            .query(&format!("{SELECT_KEY} ORDER BY name"), &[])?
            .iter()
            .map(key_of)
            .collect())
    }

    fn delete_bouncer(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.exec("DELETE FROM bouncers WHERE name = $1", &[&name])? > 0)
    }
}

impl LocalState for PgStore {
    fn save_state(&mut self, kind: &str, rows: &[(String, String)]) -> Result<(), StoreError> {
        self.unit(|s| {
            let node = s.node.clone();
            let mut client = s.client.borrow_mut();
            let stmt = s.prepared(
                &mut client,
                "INSERT INTO local_state (node, kind, key, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node, kind, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in rows {
                client.execute(&stmt, &[&node, &kind, key, value])?;
            }
            Ok(())
        })
    }

    fn state(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .query(
                "SELECT key, value FROM local_state WHERE node = $1 AND kind = $2 ORDER BY key",
                &[&self.node, &kind],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn delete_state(&mut self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM local_state WHERE node = $1 AND kind = $2 AND key = $3",
            &[&self.node, &kind, &key],
        )?;
        Ok(())
    }
}
