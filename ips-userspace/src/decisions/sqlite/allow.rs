//! The allowlist: kept in a table and in memory (it is small and checked on every upsert).
use rusqlite::params;

use super::{SqliteStore, TOMBSTONE, kernel::effective_in, prefix_of};
use crate::{
    decisions::{AllowEntry, AllowStore, Diff, StoreError, rows::parse_value},
    prefix::Prefix,
};

impl AllowStore for SqliteStore {
    fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<(Vec<Prefix>, Diff), StoreError> {
        let tx = self.conn.savepoint()?;
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
        // Nothing inside an allowlist entry is left in the store: every covered value goes.
        let kernel = Diff::from_effective(effective_in(&self.conn, &self.lists, &covered, now_ms)?);
        Ok((covered, kernel))
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
}
