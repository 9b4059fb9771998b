//! Decision rows: bans by hand, by detection, from a LAPI.
use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params};

use super::{
    SqliteStore, TOMBSTONE, finish, kernel::effective_in, prefix_of, row_to_decision,
    select_decision,
};
use crate::{
    decisions::{
        Cursor, Decision, DecisionStore, Diff, NewDecision, Origin, Page, StoreError, rows,
    },
    prefix::Prefix,
};

/// Upserts from this many on skip the cross-origin attribution lookup.
const BULK_BATCH: usize = 1024;

impl DecisionStore for SqliteStore {
    fn origin_id(&mut self, origin: &Origin) -> Result<u32, StoreError> {
        Self::origin_id_in(&self.conn, &origin.to_string(), &mut self.new_origins)
    }

    fn take_new_origins(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new_origins)
    }

    fn origins(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM origins ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn upsert(
        &mut self,
        batch: &[NewDecision],
        now_ms: i64,
    ) -> Result<(Vec<Decision>, Diff), StoreError> {
        for d in batch {
            if let Some(by) = self.allowlisted_by(&d.value) {
                return Err(StoreError::Allowlisted { value: d.value, by });
            }
            if d.duration_ms <= 0 {
                return Err(StoreError::BadDuration(d.duration_ms));
            }
        }
        let tx = self.conn.savepoint()?;
        let mut out = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        {
            let mut origin_cache: Vec<(&Origin, u32)> = Vec::new();
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decisions (value, addr, plen, origin_id, reason, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (addr, plen, origin_id) DO UPDATE SET
                     expires_ms = MAX(expires_ms, excluded.expires_ms),
                     reason = excluded.reason
                 RETURNING id, created_ms, expires_ms",
            )?;
            for d in batch {
                let origin_id = match origin_cache.iter().find(|(o, _)| **o == d.origin) {
                    Some((_, id)) => *id,
                    None => {
                        let id =
                            Self::origin_id_in(&tx, &d.origin.to_string(), &mut self.new_origins)?;
                        origin_cache.push((&d.origin, id));
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
                ids.push(origin_id);
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
        // A value banned by several origins is attributed to the one that lasts longest. A large
        // batch (a LAPI's startup pull) is attributed to its own origins without that lookup,
        // as the kernel's cost is what matters there: the value is banned either way, and the
        // attribution is set right when one of its decisions ends or at the next reconcile.
        let kernel = if out.len() >= BULK_BATCH {
            Diff {
                upsert: out.iter().zip(&ids).map(|(d, id)| (d.value, *id)).collect(),
                delete: Vec::new(),
            }
        } else {
            let values: Vec<Prefix> = out.iter().map(|d| d.value).collect();
            Diff::from_effective(effective_in(&tx, &self.lists, &values, now_ms)?)
        };
        tx.commit()?;
        Ok((out, kernel))
    }

    fn delete(
        &mut self,
        value: &Prefix,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<(usize, Diff), StoreError> {
        let now = now_ms;
        let from_lists = self.remove_from_lists(&|p| p == value, origin, now)?.len();
        let tx = self.conn.savepoint()?;
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
                let o = o.to_string();
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
        let kernel = Diff::from_effective(effective_in(&tx, &self.lists, &[*value], now)?);
        tx.commit()?;
        Ok((n + from_lists, kernel))
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
        rows::listed(&self.lists, now_ms, value, &mut out);
        Ok(out)
    }

    fn page(
        &self,
        now_ms: i64,
        after: Option<&Cursor>,
        limit: usize,
        origin: Option<&Origin>,
    ) -> Result<Page, StoreError> {
        let origin_name = origin.map(ToString::to_string);
        let mut out = Vec::new();
        // Rows first, unless the cursor is in the lists already.
        let (rows_after, lists_from) = rows::page_start(after);
        if let Some(after_id) = rows_after {
            let mut stmt = self.conn.prepare_cached(&select_decision(
                "d.expires_ms > ?1 AND d.id > ?2 AND (?4 IS NULL OR o.name = ?4)
                 ORDER BY d.id LIMIT ?3",
            ))?;
            let rows = stmt
                .query_map(
                    params![now_ms, after_id, limit as i64, origin_name],
                    row_to_decision,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            out = finish(rows)?;
        }
        Ok(rows::page(
            &self.lists,
            now_ms,
            out,
            lists_from,
            origin,
            limit,
        ))
    }

    fn count_active(&self, now_ms: i64) -> Result<u64, StoreError> {
        let rows: u64 = self.conn.query_row(
            "SELECT COUNT(*) FROM decisions WHERE expires_ms > ?1",
            [now_ms],
            |r| r.get(0),
        )?;
        Ok(rows + rows::listed_count(&self.lists, now_ms))
    }

    fn take_expired_at_most(
        &mut self,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Diff, bool), StoreError> {
        let tx = self.conn.savepoint()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // The first `limit` expired rows in the index's order (ties broken by id): the same
        // rows for the tombstones and the delete, in one transaction. Both statements take
        // (now, now, limit); the delete leaves ?1 unused.
        let first = "d.id IN (SELECT id FROM decisions WHERE expires_ms <= ?2
                     ORDER BY expires_ms, id LIMIT ?3)";
        tx.execute(
            &format!("{TOMBSTONE} {first}"),
            params![now_ms, now_ms, limit],
        )?;
        let mut values: BTreeSet<Prefix> = BTreeSet::new();
        let mut taken = 0i64;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "DELETE FROM decisions AS d WHERE {first} RETURNING addr, plen"
            ))?;
            let mut rows = stmt.query(params![now_ms, now_ms, limit])?;
            while let Some(row) = rows.next()? {
                values.insert(prefix_of(row)?);
                taken += 1;
            }
        }
        let more = taken == limit
            && tx
                .query_row(
                    "SELECT 1 FROM decisions WHERE expires_ms <= ?1 LIMIT 1",
                    [now_ms],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
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
        for id in &lapsed {
            if let Some(l) = self.lists.get(id) {
                values.extend(l.entries.iter().copied());
            }
        }
        let values: Vec<Prefix> = values.into_iter().collect();
        // Lapsed lists are no longer active at `now_ms`, so they take no part in the view.
        let kernel = Diff::from_effective(effective_in(&tx, &self.lists, &values, now_ms)?);
        tx.commit()?;
        for id in lapsed {
            self.lists.remove(&id);
        }
        Ok((kernel, more))
    }
}
