//! Decision rows, and the kernel view that merges them with the lists.
use std::collections::{BTreeSet, HashMap};

use postgres::fallible_iterator::FallibleIterator;

use super::{PgStore, TOMBSTONE, decisions_of, id32, key, prefix_at, select_decision};
use crate::{
    decisions::{
        Cursor, Decision, DecisionStore, Diff, Effective, KernelView, NewDecision, Origin, Page,
        StoreError, rows,
    },
    prefix::Prefix,
};

/// Upserts from this many on skip the cross-origin attribution lookup (as in SQLite).
const BULK_BATCH: usize = 1024;

impl PgStore {
    /// What the kernel should hold for each of `values` (inside the unit that changed them, or
    /// not).
    pub(super) fn effective_now(
        &self,
        values: &[Prefix],
        now_ms: i64,
    ) -> Result<Vec<Effective>, StoreError> {
        // One round trip for all of them: the rows on any of the values, the longest-lasting
        // per value kept here.
        let (addrs, plens): (Vec<Vec<u8>>, Vec<i64>) = values.iter().map(key).unzip();
        let mut best: HashMap<Prefix, (u32, i64)> = HashMap::new();
        for r in self.query(
            "SELECT d.addr, d.plen, d.origin_id, d.expires_ms FROM decisions d
             JOIN UNNEST($1::BYTEA[], $2::BIGINT[]) AS v(addr, plen)
                 ON d.addr = v.addr AND d.plen = v.plen
             WHERE d.expires_ms > $3",
            &[&addrs, &plens, &now_ms],
        )? {
            let (v, o, e) = (prefix_at(&r, 0)?, id32(r.get(2)), r.get::<_, i64>(3));
            let b = best.entry(v).or_insert((o, e));
            if e > b.1 {
                *b = (o, e);
            }
        }
        Ok(values
            .iter()
            .map(|v| rows::with_lists(&self.lists, now_ms, v, best.get(v).copied()))
            .collect())
    }

    /// Tombstones and deletes the rows on `value` (of one origin, or all); returns how many.
    pub(super) fn delete_rows(
        &self,
        value: &Prefix,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let (addr, plen) = key(value);
        Ok(match origin {
            None => {
                self.exec(
                    &format!("{TOMBSTONE} d.addr = $2 AND d.plen = $3"),
                    &[&now_ms, &addr, &plen],
                )?;
                self.exec(
                    "DELETE FROM decisions WHERE addr = $1 AND plen = $2",
                    &[&addr, &plen],
                )?
            }
            Some(o) => {
                let o = o.to_string();
                self.exec(
                    &format!("{TOMBSTONE} d.addr = $2 AND d.plen = $3 AND o.name = $4"),
                    &[&now_ms, &addr, &plen, &o],
                )?;
                self.exec(
                    "DELETE FROM decisions WHERE addr = $1 AND plen = $2
                     AND origin_id = (SELECT id FROM origins WHERE name = $3)",
                    &[&addr, &plen, &o],
                )?
            }
        })
    }
}

impl DecisionStore for PgStore {
    fn origin_id(&mut self, origin: &Origin) -> Result<u32, StoreError> {
        let name = origin.to_string();
        self.unit(|s| s.origin_id_of(&name))
    }

    fn take_new_origins(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new_origins)
    }

    fn origins(&self) -> Result<Vec<(u32, String)>, StoreError> {
        Ok(self
            .query("SELECT id, name FROM origins ORDER BY id", &[])?
            .iter()
            .map(|r| (id32(r.get(0)), r.get(1)))
            .collect())
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
        self.unit(|s| {
            s.dirty = true;
            let mut origin_ids: Vec<(&Origin, u32)> = Vec::new();
            for d in batch {
                if !origin_ids.iter().any(|(o, _)| **o == d.origin) {
                    origin_ids.push((&d.origin, s.origin_id_of(&d.origin.to_string())?));
                }
            }
            let mut out = Vec::with_capacity(batch.len());
            let mut ids = Vec::with_capacity(batch.len());
            {
                let mut client = s.client.borrow_mut();
                let stmt = s.prepared(
                    &mut client,
                    "INSERT INTO decisions
                         (value, addr, plen, origin_id, reason, created_ms, expires_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (addr, plen, origin_id) DO UPDATE SET
                         expires_ms = GREATEST(decisions.expires_ms, excluded.expires_ms),
                         reason = excluded.reason
                     RETURNING id, created_ms, expires_ms",
                )?;
                for d in batch {
                    let origin_id = origin_ids
                        .iter()
                        .find(|(o, _)| **o == d.origin)
                        .map_or(0, |(_, id)| *id);
                    let (addr, plen) = key(&d.value);
                    let r = client.query_one(
                        &stmt,
                        &[
                            &d.value.to_string(),
                            &addr,
                            &plen,
                            &i64::from(origin_id),
                            &d.reason,
                            &now_ms,
                            &now_ms.saturating_add(d.duration_ms),
                        ],
                    )?;
                    ids.push(origin_id);
                    out.push(Decision {
                        id: r.get(0),
                        value: d.value,
                        scope: d.value.scope().to_owned(),
                        kind: "ban".to_owned(),
                        origin: d.origin.clone(),
                        reason: d.reason.clone(),
                        created_ms: r.get(1),
                        expires_ms: r.get(2),
                    });
                }
            }
            // As in SQLite: a large batch is attributed to its own origins.
            let kernel = if out.len() >= BULK_BATCH {
                Diff {
                    upsert: out.iter().zip(&ids).map(|(d, id)| (d.value, *id)).collect(),
                    delete: Vec::new(),
                }
            } else {
                let values: Vec<Prefix> = out.iter().map(|d| d.value).collect();
                Diff::from_effective(s.effective_now(&values, now_ms)?)
            };
            Ok((out, kernel))
        })
    }

    fn delete(
        &mut self,
        value: &Prefix,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<(usize, Diff), StoreError> {
        self.unit(|s| {
            s.dirty = true;
            let from_lists = s.remove_from_lists(&|p| p == value, origin, now_ms)?.len();
            let n = s.delete_rows(value, origin, now_ms)?;
            let kernel = Diff::from_effective(s.effective_now(&[*value], now_ms)?);
            Ok((
                usize::try_from(n).unwrap_or(usize::MAX) + from_lists,
                kernel,
            ))
        })
    }

    fn list(&self, now_ms: i64, value: Option<&Prefix>) -> Result<Vec<Decision>, StoreError> {
        let rows = match value {
            None => self.query(
                &select_decision("d.expires_ms > $1 ORDER BY d.id"),
                &[&now_ms],
            )?,
            Some(v) => {
                let (addr, plen) = key(v);
                self.query(
                    &select_decision(
                        "d.expires_ms > $1 AND d.addr = $2 AND d.plen = $3 ORDER BY d.id",
                    ),
                    &[&now_ms, &addr, &plen],
                )?
            }
        };
        let mut out = decisions_of(rows)?;
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
        let (rows_after, lists_from) = rows::page_start(after);
        if let Some(after_id) = rows_after {
            let rows = self.query(
                &select_decision(
                    "d.expires_ms > $1 AND d.id > $2
                         AND ($4::TEXT IS NULL OR o.name = $4::TEXT)
                     ORDER BY d.id LIMIT $3",
                ),
                &[
                    &now_ms,
                    &after_id,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                    &origin_name,
                ],
            )?;
            out = decisions_of(rows)?;
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
        let rows: i64 = self
            .query(
                "SELECT COUNT(*) FROM decisions WHERE expires_ms > $1",
                &[&now_ms],
            )?
            .first()
            .map_or(0, |r| r.get(0));
        Ok(u64::try_from(rows).unwrap_or(0) + rows::listed_count(&self.lists, now_ms))
    }

    fn take_expired_at_most(
        &mut self,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Diff, bool), StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.unit(|s| {
            let first = "d.id IN (SELECT id FROM decisions WHERE expires_ms <= $1
                         ORDER BY expires_ms, id LIMIT $2)";
            s.exec(
                &format!(
                    "INSERT INTO tombstones (decision_id, value, origin, type, reason, deleted_ms)
                     SELECT d.id, d.value, o.name, d.type, d.reason, $1 FROM decisions d
                     JOIN origins o ON o.id = d.origin_id WHERE {first}"
                ),
                &[&now_ms, &limit],
            )?;
            let gone = s.query(
                &format!("DELETE FROM decisions AS d WHERE {first} RETURNING addr, plen"),
                &[&now_ms, &limit],
            )?;
            let mut values: BTreeSet<Prefix> = BTreeSet::new();
            for r in &gone {
                values.insert(prefix_at(r, 0)?);
            }
            let taken = i64::try_from(gone.len()).unwrap_or(i64::MAX);
            let more = taken == limit
                && s.opt(
                    "SELECT 1 FROM decisions WHERE expires_ms <= $1 LIMIT 1",
                    &[&now_ms],
                )?
                .is_some();
            let lapsed: Vec<u32> = s
                .lists
                .iter()
                .filter(|(_, l)| l.lease_ms <= now_ms)
                .map(|(id, _)| *id)
                .collect();
            for id in &lapsed {
                if let Some(l) = s.lists.get(id) {
                    s.log_change(*id, &[], &l.entries, now_ms)?;
                    s.exec("DELETE FROM lists WHERE origin_id = $1", &[&i64::from(*id)])?;
                    s.exec(
                        "UPDATE origins SET lease_ms = NULL WHERE id = $1",
                        &[&i64::from(*id)],
                    )?;
                    values.extend(l.entries.iter().copied());
                }
            }
            if taken > 0 || !lapsed.is_empty() {
                s.dirty = true;
            }
            let values: Vec<Prefix> = values.into_iter().collect();
            let kernel = Diff::from_effective(s.effective_now(&values, now_ms)?);
            for id in lapsed {
                s.lists.remove(&id);
            }
            Ok((kernel, more))
        })
    }
}

impl KernelView for PgStore {
    fn effective(&self, values: &[Prefix], now_ms: i64) -> Result<Vec<Effective>, StoreError> {
        self.effective_now(values, now_ms)
    }

    fn for_each_active(
        &self,
        now_ms: i64,
        each: &mut dyn FnMut(Prefix, u32, i64),
    ) -> Result<(), StoreError> {
        // PostgreSQL orders BYTEA as SQLite orders blobs (bytes, then length): the same walk.
        let mut client = self.client.borrow_mut();
        let mut rows = client.query_raw(
            "SELECT addr, plen, origin_id, expires_ms FROM decisions
             WHERE expires_ms > $1 ORDER BY addr, plen",
            [&now_ms],
        )?;
        rows::walk(
            &self.lists,
            now_ms,
            &mut || match rows.next()? {
                Some(row) => Ok(Some((prefix_at(&row, 0)?, id32(row.get(2)), row.get(3)))),
                None => Ok(None),
            },
            each,
        )
    }
}
