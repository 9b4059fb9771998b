//! The kernel view: decision rows and list snapshots merged into what the kernel should hold,
//! one value at a time ([`KernelView::effective`]) or all of them in one walk
//! ([`KernelView::for_each_active`]).
use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, prefix_of};
use crate::{
    decisions::{Effective, KernelView, StoreError, lists::List, rows},
    prefix::Prefix,
};

/// What the kernel should hold for each of `values`, read through `conn` (the store's
/// connection, or the transaction of the write that changed them).
pub(super) fn effective_in(
    conn: &Connection,
    lists: &BTreeMap<u32, List>,
    values: &[Prefix],
    now_ms: i64,
) -> Result<Vec<Effective>, StoreError> {
    // The origin of the decision that lasts longest is the one drops are attributed to.
    let with_lists = |v: &Prefix, best| rows::with_lists(lists, now_ms, v, best);
    // Many values (a list refresh's removals) against few rows: read the rows once.
    if values.len() >= 256 {
        let active: usize = conn.query_row(
            "SELECT COUNT(*) FROM decisions WHERE expires_ms > ?1",
            [now_ms],
            |r| r.get(0),
        )?;
        if active <= values.len() * 4 {
            let mut rows: std::collections::HashMap<Prefix, (u32, i64)> =
                std::collections::HashMap::with_capacity(active);
            let mut stmt = conn.prepare_cached(
                "SELECT addr, plen, origin_id, expires_ms FROM decisions WHERE expires_ms > ?1",
            )?;
            let mut all = stmt.query([now_ms])?;
            while let Some(r) = all.next()? {
                let (v, o, e) = (prefix_of(r)?, r.get(2)?, r.get(3)?);
                let best = rows.entry(v).or_insert((o, e));
                if e > best.1 {
                    *best = (o, e);
                }
            }
            return Ok(values
                .iter()
                .map(|v| with_lists(v, rows.get(v).copied()))
                .collect());
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT origin_id, expires_ms FROM decisions
         WHERE addr = ?1 AND plen = ?2 AND expires_ms > ?3
         ORDER BY expires_ms DESC LIMIT 1",
    )?;
    values
        .iter()
        .map(|v| {
            let best = stmt
                .query_row(params![v.octets(), v.prefix_len(), now_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            Ok(with_lists(v, best))
        })
        .collect()
}

impl KernelView for SqliteStore {
    fn effective(&self, values: &[Prefix], now_ms: i64) -> Result<Vec<Effective>, StoreError> {
        effective_in(&self.conn, &self.lists, values, now_ms)
    }

    fn for_each_active(
        &self,
        now_ms: i64,
        each: &mut dyn FnMut(Prefix, u32, i64),
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT addr, plen, origin_id, expires_ms FROM decisions
             WHERE expires_ms > ?1 ORDER BY addr, plen",
        )?;
        let mut rows = stmt.query([now_ms])?;
        rows::walk(
            &self.lists,
            now_ms,
            &mut || match rows.next()? {
                Some(row) => Ok(Some((prefix_of(row)?, row.get(2)?, row.get(3)?))),
                None => Ok(None),
            },
            each,
        )
    }
}
