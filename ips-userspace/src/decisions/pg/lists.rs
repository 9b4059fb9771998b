//! Blocklist snapshots and their change log, and the allowlist (as in SQLite).
use super::{PgStore, id32, key, parse_value, prefix_at};
use crate::{
    decisions::{
        AllowEntry, AllowStore, Diff, ListChange, ListStore, ListSummary, Origin, StoreError,
        lists,
        rows::{self, LoggedChanges, Refresh},
    },
    prefix::Prefix,
};

impl PgStore {
    fn write_list(
        &self,
        origin_id: u32,
        entries: &[Prefix],
        added: &[Prefix],
        removed: &[Prefix],
        since_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO lists (origin_id, entries, count, since_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (origin_id) DO UPDATE SET entries = excluded.entries,
                 count = excluded.count",
            &[
                &i64::from(origin_id),
                &lists::encode(entries),
                &i64::try_from(entries.len()).unwrap_or(i64::MAX),
                &since_ms,
            ],
        )?;
        self.log_change(origin_id, added, removed, now_ms)
    }

    /// Appends a list's change to the log the stream's deltas read (nothing if it is empty).
    pub(super) fn log_change(
        &self,
        origin_id: u32,
        added: &[Prefix],
        removed: &[Prefix],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if !added.is_empty() || !removed.is_empty() {
            self.exec(
                "INSERT INTO list_changes (origin_id, at_ms, added, removed)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &i64::from(origin_id),
                    &now_ms,
                    &lists::encode(added),
                    &lists::encode(removed),
                ],
            )?;
        }
        Ok(())
    }

    /// Removes the entries that `gone` picks from every list (of one origin, or all), in the
    /// store and in memory. Called inside a unit. Returns the removed entries.
    pub(super) fn remove_from_lists(
        &mut self,
        gone: &dyn Fn(&Prefix) -> bool,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<Vec<Prefix>, StoreError> {
        let changed = rows::split_lists(&self.lists, gone, origin);
        for (id, kept, out) in &changed {
            let since = self.lists.get(id).map_or(now_ms, |l| l.since_ms);
            self.write_list(*id, kept, &[], out, since, now_ms)?;
        }
        let mut removed = Vec::new();
        for (id, kept, out) in changed {
            removed.extend(out);
            if let Some(l) = self.lists.get_mut(&id) {
                l.entries = kept;
            }
        }
        Ok(removed)
    }

    /// Logged list changes after `since_ms`, by origin id.
    pub(super) fn list_changes(&self, since_ms: i64) -> Result<LoggedChanges, StoreError> {
        let mut out = LoggedChanges::new();
        for r in self.query(
            "SELECT origin_id, added, removed, at_ms FROM list_changes
             WHERE at_ms > $1 ORDER BY at_ms",
            &[&since_ms],
        )? {
            let added = rows::decode_list(r.get(1), "a list change")?;
            let removed = rows::decode_list(r.get(2), "a list change")?;
            out.entry(id32(r.get(0)))
                .or_default()
                .push((added, removed, r.get(3)));
        }
        Ok(out)
    }
}

impl ListStore for PgStore {
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
        self.unit(|s| {
            s.dirty = true;
            let origin_id = s.origin_id_of(&origin.to_string())?;
            let lease_ms = now_ms.saturating_add(duration_ms);
            let r = Refresh::against(&s.lists, origin_id, new, now_ms);
            if !r.unchanged {
                s.write_list(origin_id, &r.new, &r.added, &r.removed, r.since_ms, now_ms)?;
            }
            s.exec(
                "UPDATE origins SET lease_ms = $1 WHERE id = $2",
                &[&lease_ms, &i64::from(origin_id)],
            )?;
            let done = r.install(&mut s.lists, origin_id, origin, lease_ms);
            let removed = s.effective_now(&done.removed, now_ms)?;
            Ok(done.change(removed))
        })
    }

    fn renew_list(
        &mut self,
        origin: &Origin,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let lease_ms = now_ms.saturating_add(duration_ms);
        let Some((id, current)) = self
            .lists
            .iter()
            .find(|(_, l)| l.origin == *origin && l.lease_ms > now_ms)
            .map(|(id, l)| (*id, l.lease_ms))
        else {
            return Ok(false);
        };
        if lease_ms > current {
            self.unit(|s| {
                s.dirty = true;
                s.exec(
                    "UPDATE origins SET lease_ms = $1 WHERE id = $2",
                    &[&lease_ms, &i64::from(id)],
                )
            })?;
            if let Some(l) = self.lists.get_mut(&id) {
                l.lease_ms = lease_ms;
            }
        }
        Ok(true)
    }
}

impl AllowStore for PgStore {
    fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<(Vec<Prefix>, Diff), StoreError> {
        self.unit(|s| {
            s.dirty = true;
            s.exec(
                "INSERT INTO allowlist (value, reason, source, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (value) DO UPDATE SET reason = excluded.reason,
                     source = excluded.source",
                &[&value.to_string(), &reason, &source, &now_ms],
            )?;
            // BYTEA compares byte by byte, as SQLite's blobs: the decisions inside `value` are a
            // range scan of the unique index.
            let (first, plen) = key(value);
            let last = value.last_octets();
            let mut covered = Vec::new();
            for r in s.query(
                "SELECT DISTINCT addr, plen FROM decisions
                 WHERE addr >= $1 AND addr <= $2 AND length(addr) = $3 AND plen >= $4",
                &[
                    &first,
                    &last,
                    &i32::try_from(first.len()).unwrap_or(i32::MAX),
                    &plen,
                ],
            )? {
                covered.push(prefix_at(&r, 0)?);
            }
            for p in &covered {
                s.delete_rows(p, None, now_ms)?;
            }
            if !s.allow.contains(value) {
                s.allow.push(*value);
            }
            covered.extend(s.remove_from_lists(&|p| value.contains(p), None, now_ms)?);
            covered.sort_unstable();
            covered.dedup();
            let kernel = Diff::from_effective(s.effective_now(&covered, now_ms)?);
            Ok((covered, kernel))
        })
    }

    fn allow_delete(&mut self, value: &Prefix) -> Result<bool, StoreError> {
        let n = self.unit(|s| {
            s.dirty = true;
            s.exec(
                "DELETE FROM allowlist WHERE value = $1",
                &[&value.to_string()],
            )
        })?;
        self.allow.retain(|a| a != value);
        Ok(n > 0)
    }

    fn allow_list(&self) -> Result<Vec<AllowEntry>, StoreError> {
        self.query(
            "SELECT value, reason, source, created_ms FROM allowlist ORDER BY created_ms, value",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(AllowEntry {
                value: parse_value(r.get(0))?,
                reason: r.get(1),
                source: r.get(2),
                created_ms: r.get(3),
            })
        })
        .collect()
    }
}
