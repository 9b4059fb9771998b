//! The kernel view: decision rows and list snapshots merged into what the kernel should hold,
//! one value at a time ([`KernelView::effective`]) or all of them in one walk
//! ([`KernelView::for_each_active`]).
use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, prefix_of};
use crate::{
    decisions::{Effective, KernelView, StoreError, lists::List},
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
    let with_lists = |v: &Prefix, mut best: Option<(u32, i64)>| {
        for (id, l) in SqliteStore::active_in(lists, now_ms) {
            if best.is_none_or(|(_, e)| l.lease_ms > e) && l.contains(v) {
                best = Some((id, l.lease_ms));
            }
        }
        (*v, best.map(|(o, _)| o))
    };
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

/// One address family's side of [`KernelView::for_each_active`]: list entries not merged yet, and the
/// value being gathered with the decision that ends last (value, origin, end).
struct Merge {
    listed: std::iter::Peekable<std::vec::IntoIter<(Prefix, u32, i64)>>,
    current: Option<(Prefix, u32, i64)>,
}

impl Merge {
    fn new(listed: Vec<(Prefix, u32, i64)>) -> Self {
        Self {
            listed: listed.into_iter().peekable(),
            current: None,
        }
    }

    fn take(&mut self, item: (Prefix, u32, i64), each: &mut dyn FnMut(Prefix, u32, i64)) {
        self.current = match self.current {
            Some(c) if c.0 == item.0 => Some(if item.2 > c.2 { item } else { c }),
            Some(c) => {
                each(c.0, c.1, c.2);
                Some(item)
            }
            None => Some(item),
        };
    }

    /// A row, after the list entries that sort before or with it.
    fn row(&mut self, item: (Prefix, u32, i64), each: &mut dyn FnMut(Prefix, u32, i64)) {
        while let Some(l) = self.listed.next_if(|l| l.0 <= item.0) {
            self.take(l, each);
        }
        self.take(item, each);
    }

    fn finish(mut self, each: &mut dyn FnMut(Prefix, u32, i64)) {
        while let Some(l) = self.listed.next() {
            self.take(l, each);
        }
        if let Some(c) = self.current {
            each(c.0, c.1, c.2);
        }
    }
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
        // One walk of the unique index: within a family, rows come in address order (the order
        // of `Prefix`), so a value's decisions are consecutive and the lists' sorted entries
        // merge in. The families interleave in the walk (the blobs differ in length), so each
        // has its own merge. The decision that ends last names the origin.
        let (mut v4, mut v6): (Vec<_>, Vec<_>) = self
            .active_lists(now_ms)
            .flat_map(|(id, l)| l.entries.iter().map(move |p| (*p, id, l.lease_ms)))
            .partition(|(p, _, _)| p.is_v4());
        if self.lists.len() > 1 {
            v4.sort_unstable_by_key(|a| a.0);
            v6.sort_unstable_by_key(|a| a.0);
        }
        let mut v4 = Merge::new(v4);
        let mut v6 = Merge::new(v6);
        let mut stmt = self.conn.prepare(
            "SELECT addr, plen, origin_id, expires_ms FROM decisions
             WHERE expires_ms > ?1 ORDER BY addr, plen",
        )?;
        let mut rows = stmt.query([now_ms])?;
        while let Some(row) = rows.next()? {
            let item = (prefix_of(row)?, row.get(2)?, row.get(3)?);
            if item.0.is_v4() {
                v4.row(item, each);
            } else {
                v6.row(item, each);
            }
        }
        v4.finish(each);
        v6.finish(each);
        Ok(())
    }
}
