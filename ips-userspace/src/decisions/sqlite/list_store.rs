//! Blocklists: one sorted snapshot per list under a lease (see `decisions::lists`), and a log
//! of each refresh's added and removed entries for the stream's deltas.
use rusqlite::params;

use super::{SqliteStore, kernel::effective_in};
use crate::{
    decisions::{
        ListChange, ListStore, ListSummary, Origin, StoreError, lists,
        rows::{self, LoggedChanges, Refresh},
    },
    prefix::Prefix,
};

impl SqliteStore {
    pub(super) fn write_list(
        tx: &rusqlite::Connection,
        origin_id: u32,
        entries: &[Prefix],
        added: &[Prefix],
        removed: &[Prefix],
        since_ms: i64,
        now_ms: i64,
    ) -> Result<(), rusqlite::Error> {
        tx.execute(
            "INSERT INTO lists (origin_id, entries, count, since_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (origin_id) DO UPDATE SET entries = excluded.entries,
                 count = excluded.count",
            params![origin_id, lists::encode(entries), entries.len(), since_ms],
        )?;
        Self::log_change(tx, origin_id, added, removed, now_ms)
    }

    /// Appends a list's change to the log the stream's deltas read (nothing if it is empty).
    pub(super) fn log_change(
        tx: &rusqlite::Connection,
        origin_id: u32,
        added: &[Prefix],
        removed: &[Prefix],
        now_ms: i64,
    ) -> Result<(), rusqlite::Error> {
        if !added.is_empty() || !removed.is_empty() {
            tx.execute(
                "INSERT INTO list_changes (origin_id, at_ms, added, removed)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    origin_id,
                    now_ms,
                    lists::encode(added),
                    lists::encode(removed)
                ],
            )?;
        }
        Ok(())
    }

    /// Removes the entries that `gone` picks from every list (of one origin, or all), in the
    /// store and in memory. Returns the removed entries.
    pub(super) fn remove_from_lists(
        &mut self,
        gone: &dyn Fn(&Prefix) -> bool,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<Vec<Prefix>, StoreError> {
        let changed = rows::split_lists(&self.lists, gone, origin);
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.conn.savepoint()?;
        for (id, kept, out) in &changed {
            let since = self.lists.get(id).map_or(now_ms, |l| l.since_ms);
            Self::write_list(&tx, *id, kept, &[], out, since, now_ms)?;
        }
        tx.commit()?;
        let mut removed = Vec::new();
        for (id, kept, out) in changed {
            removed.extend(out);
            if let Some(l) = self.lists.get_mut(&id) {
                l.entries = kept;
            }
        }
        Ok(removed)
    }

    /// Logged list changes after `since_ms`, by origin id: (added, removed, when).
    pub(super) fn list_changes(&self, since_ms: i64) -> Result<LoggedChanges, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT origin_id, added, removed, at_ms FROM list_changes
             WHERE at_ms > ?1 ORDER BY at_ms",
        )?;
        let mut rows = stmt.query([since_ms])?;
        let mut out = LoggedChanges::new();
        while let Some(r) = rows.next()? {
            let blob = |i| -> Result<Vec<Prefix>, StoreError> {
                rows::decode_list(r.get_ref(i)?.as_blob().unwrap_or_default(), "a list change")
            };
            let change = (blob(1)?, blob(2)?, r.get(3)?);
            out.entry(r.get(0)?).or_default().push(change);
        }
        Ok(out)
    }
}

impl ListStore for SqliteStore {
    fn lists(&self, now_ms: i64) -> Vec<ListSummary> {
        rows::summaries(&self.lists, now_ms)
    }

    fn list_values(&self, origin: &Origin) -> Result<Vec<Prefix>, StoreError> {
        Ok(rows::values_of(&self.lists, origin))
    }

    fn replace_list(
        &mut self,
        origin: &Origin,
        values: Vec<Prefix>,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<ListChange, StoreError> {
        let new = Refresh::entries(values, duration_ms)?;
        let origin_id = Self::origin_id_in(&self.conn, &origin.to_string(), &mut self.new_origins)?;
        let lease_ms = now_ms.saturating_add(duration_ms);
        let r = Refresh::against(&self.lists, origin_id, new, now_ms);
        let tx = self.conn.savepoint()?;
        if !r.unchanged {
            // The same entries in other bytes (comments, order) only move the lease.
            Self::write_list(
                &tx, origin_id, &r.new, &r.added, &r.removed, r.since_ms, now_ms,
            )?;
        }
        tx.execute(
            "UPDATE origins SET lease_ms = ?1 WHERE id = ?2",
            params![lease_ms, origin_id],
        )?;
        tx.commit()?;
        let done = r.install(&mut self.lists, origin_id, origin, lease_ms);
        let removed = effective_in(&self.conn, &self.lists, &done.removed, now_ms)?;
        Ok(done.change(removed))
    }

    fn renew_list(
        &mut self,
        origin: &Origin,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let lease_ms = now_ms.saturating_add(duration_ms);
        let Some((id, list)) = self
            .lists
            .iter_mut()
            .find(|(_, l)| l.origin == *origin && l.lease_ms > now_ms)
        else {
            return Ok(false);
        };
        if lease_ms > list.lease_ms {
            self.conn.execute(
                "UPDATE origins SET lease_ms = ?1 WHERE id = ?2",
                params![lease_ms, id],
            )?;
            list.lease_ms = lease_ms;
        }
        Ok(true)
    }
}
