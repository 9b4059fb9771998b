//! The CrowdSec stream's deltas: decision rows created since a time, tombstones of removed
//! rows, and the logged changes of lists.
use std::collections::BTreeMap;

use rusqlite::params;

use super::{SqliteStore, finish, row_to_decision, select_decision};
use crate::decisions::{
    BouncerStream, Decision, DecisionStore, StoreError, Tombstone,
    rows::{self, parse_origin, parse_value},
};

impl BouncerStream for SqliteStore {
    fn created_since(&self, since_ms: i64, now_ms: i64) -> Result<Vec<Decision>, StoreError> {
        let mut stmt = self.conn.prepare(&select_decision(
            "d.created_ms > ?1 AND d.expires_ms > ?2 ORDER BY d.id",
        ))?;
        let rows = stmt
            .query_map(params![since_ms, now_ms], row_to_decision)?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = finish(rows)?;
        // List entries added since, and still listed.
        rows::added_entries(&self.lists, self.list_changes(since_ms)?, now_ms, &mut out);
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
                    origin: parse_origin(origin)?,
                    kind,
                    reason,
                    deleted_ms,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let names: BTreeMap<u32, String> = self.origins()?.into_iter().collect();
        rows::removed_entries(&names, self.list_changes(since_ms)?, &mut out)?;
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
}
