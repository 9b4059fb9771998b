//! What the two stores (SQLite, PostgreSQL) share and that needs no database: parsing stored
//! text, blocklist snapshots read as decisions, the merge of rows and lists into the kernel
//! view, and alerts as rows.
use std::collections::BTreeMap;

use super::{
    Decision, Origin, Outcome, StoreError, StoredAlert, Tombstone,
    lists::{self, List},
};
use crate::prefix::Prefix;

/// A value as stored.
pub(crate) fn parse_value(value: String) -> Result<Prefix, StoreError> {
    value
        .parse()
        .map_err(|e: crate::prefix::PrefixError| StoreError::BadRow {
            value,
            reason: e.reason.to_owned(),
        })
}

/// An origin name as stored.
pub(crate) fn parse_origin(name: String) -> Result<Origin, StoreError> {
    name.parse()
        .map_err(|e: super::OriginError| StoreError::BadRow {
            value: name,
            reason: e.to_string(),
        })
}

/// A snapshot or logged change that does not decode.
pub(crate) fn decode_list(blob: &[u8], what: &str) -> Result<Vec<Prefix>, StoreError> {
    lists::decode(blob).map_err(|reason| StoreError::BadRow {
        value: what.to_owned(),
        reason: reason.to_owned(),
    })
}

/// A list entry as a decision.
pub(crate) fn list_decision(id: u32, list: &List, value: Prefix) -> Decision {
    Decision {
        id: lists::entry_id(id, &value),
        value,
        scope: value.scope().to_owned(),
        kind: "ban".to_owned(),
        origin: list.origin.clone(),
        reason: list.origin.to_string(),
        created_ms: list.since_ms,
        expires_ms: list.lease_ms,
    }
}

/// The lists of `lists` whose lease has not ended at `now_ms`, with their origin ids.
pub(crate) fn active(
    lists: &BTreeMap<u32, List>,
    now_ms: i64,
) -> impl Iterator<Item = (u32, &List)> {
    lists
        .iter()
        .filter(move |(_, l)| l.lease_ms > now_ms)
        .map(|(id, l)| (*id, l))
}

/// How many list entries are active.
pub(crate) fn listed_count(lists: &BTreeMap<u32, List>, now_ms: i64) -> u64 {
    active(lists, now_ms)
        .map(|(_, l)| l.entries.len() as u64)
        .sum()
}

/// The best of `best` (the row decision that lasts longest: origin, end) and the active lists
/// holding `v`: what the kernel should hold for `v`.
pub(crate) fn with_lists(
    lists: &BTreeMap<u32, List>,
    now_ms: i64,
    v: &Prefix,
    mut best: Option<(u32, i64)>,
) -> super::Effective {
    for (id, l) in active(lists, now_ms) {
        if best.is_none_or(|(_, e)| l.lease_ms > e) && l.contains(v) {
            best = Some((id, l.lease_ms));
        }
    }
    (*v, best.map(|(o, _)| o))
}

/// Every decision of the active lists, or those on one value.
pub(crate) fn listed(
    lists: &BTreeMap<u32, List>,
    now_ms: i64,
    value: Option<&Prefix>,
    out: &mut Vec<Decision>,
) {
    for (id, l) in active(lists, now_ms) {
        match value {
            Some(v) if l.contains(v) => out.push(list_decision(id, l, *v)),
            Some(_) => {}
            None => out.extend(l.entries.iter().map(|v| list_decision(id, l, *v))),
        }
    }
}

/// The list part of a page: entries after `from` (list origin id, last entry) appended to
/// `out` up to `limit`. Returns the cursor of the last one taken, or `last` if none.
pub(crate) fn list_page(
    lists: &BTreeMap<u32, List>,
    now_ms: i64,
    from: Option<(u32, Prefix)>,
    origin: Option<&Origin>,
    limit: usize,
    out: &mut Vec<Decision>,
    mut last: Option<super::Cursor>,
) -> Option<super::Cursor> {
    for (id, l) in active(lists, now_ms) {
        if out.len() >= limit {
            break;
        }
        if origin.is_some_and(|o| *o != l.origin) {
            continue;
        }
        let start = match from {
            Some((origin, _)) if id < origin => continue,
            Some((origin, value)) if id == origin => l.entries.partition_point(|e| *e <= value),
            _ => 0,
        };
        let take = (limit - out.len()).min(l.entries.len() - start);
        out.extend(
            l.entries[start..start + take]
                .iter()
                .map(|v| list_decision(id, l, *v)),
        );
        if take > 0 {
            last = Some(super::Cursor::Entry(id, l.entries[start + take - 1]));
        }
    }
    last
}

/// A page from its rows (`rows`, after the cursor) and the lists' entries after them: at most
/// `limit`, with the cursor of the next page if this one is full.
pub(crate) fn page(
    lists: &BTreeMap<u32, List>,
    now_ms: i64,
    rows: Vec<Decision>,
    from: Option<(u32, Prefix)>,
    origin: Option<&Origin>,
    limit: usize,
) -> super::Page {
    let last = rows.last().map(|d| super::Cursor::Row(d.id));
    let mut out = rows;
    let last = list_page(lists, now_ms, from, origin, limit, &mut out, last);
    // A full page may be the last one; the next call then answers an empty page.
    let next = if out.len() >= limit { last } else { None };
    super::Page {
        decisions: out,
        next: next.map(|c| c.to_string()),
    }
}

/// The active lists, for `ips blocklist status`.
pub(crate) fn summaries(lists: &BTreeMap<u32, List>, now_ms: i64) -> Vec<super::ListSummary> {
    active(lists, now_ms)
        .map(|(_, l)| super::ListSummary {
            origin: l.origin.clone(),
            entries: l.entries.len() as u64,
            since_ms: l.since_ms,
            lease_ms: l.lease_ms,
        })
        .collect()
}

/// The entries of the list of `origin`, empty if there is none.
pub(crate) fn values_of(lists: &BTreeMap<u32, List>, origin: &Origin) -> Vec<Prefix> {
    lists
        .values()
        .find(|l| l.origin == *origin)
        .map(|l| l.entries.clone())
        .unwrap_or_default()
}

/// A list refresh worked out against the snapshot in memory, before it is written.
pub(crate) struct Refresh {
    /// The new entries, sorted, without repeats.
    pub new: Vec<Prefix>,
    /// Entries to ban (all of them if the lease had lapsed: they may have left the kernel).
    pub added: Vec<Prefix>,
    /// Entries no longer listed.
    pub removed: Vec<Prefix>,
    /// Same entries as stored: only the lease moves.
    pub unchanged: bool,
    /// When the list was first imported.
    pub since_ms: i64,
}

impl Refresh {
    /// Checks the duration and sorts the values; the diff comes with [`Refresh::against`].
    pub(crate) fn entries(
        values: Vec<Prefix>,
        duration_ms: i64,
    ) -> Result<Vec<Prefix>, StoreError> {
        if duration_ms <= 0 {
            return Err(StoreError::BadDuration(duration_ms));
        }
        let mut new = values;
        if !new.is_sorted() {
            new.sort_unstable();
        }
        new.dedup();
        Ok(new)
    }

    /// The refresh of list `origin_id` to `new` (from [`Refresh::entries`]). The diff is against
    /// the stored snapshot even if its lease lapsed a moment ago and the expiry tick has not
    /// dropped it yet: what the kernel may still hold.
    pub(crate) fn against(
        lists: &BTreeMap<u32, List>,
        origin_id: u32,
        new: Vec<Prefix>,
        now_ms: i64,
    ) -> Self {
        let (old, since_ms, lapsed) = match lists.get(&origin_id) {
            Some(l) => (l.entries.as_slice(), l.since_ms, l.lease_ms <= now_ms),
            None => (&[][..], now_ms, false),
        };
        let (mut added, removed) = super::sorted_diff(old, &new);
        let unchanged = added.is_empty() && removed.is_empty() && lists.contains_key(&origin_id);
        if lapsed {
            added.clone_from(&new);
        }
        Self {
            new,
            added,
            removed,
            unchanged,
            since_ms,
        }
    }

    /// Puts the new snapshot in memory, once it is written. The caller then reads what the
    /// kernel should hold for [`Installed::removed`] (with the new snapshot in place: another
    /// origin may still ban them) and makes the change with [`Installed::change`].
    pub(crate) fn install(
        self,
        lists: &mut BTreeMap<u32, List>,
        origin_id: u32,
        origin: &Origin,
        lease_ms: i64,
    ) -> Installed {
        lists.insert(
            origin_id,
            List {
                origin: origin.clone(),
                entries: self.new,
                lease_ms,
                since_ms: self.since_ms,
            },
        );
        Installed {
            origin_id,
            added: self.added,
            removed: self.removed,
        }
    }
}

/// A refresh whose snapshot is in memory.
pub(crate) struct Installed {
    origin_id: u32,
    added: Vec<Prefix>,
    /// Entries no longer listed.
    pub removed: Vec<Prefix>,
}

impl Installed {
    /// The change: added entries are this list's in the kernel; for removed ones, `removed`
    /// says what the kernel should now hold.
    pub(crate) fn change(self, removed: Vec<super::Effective>) -> super::ListChange {
        let mut kernel = super::Diff {
            upsert: self.added.iter().map(|p| (*p, self.origin_id)).collect(),
            delete: Vec::new(),
        };
        kernel.extend(super::Diff::from_effective(removed));
        super::ListChange {
            added: self.added,
            removed: self.removed,
            kernel,
        }
    }
}

/// Where a page's rows start: after this row id (`None`: the rows are done), and where its
/// list entries start.
pub(crate) fn page_start(after: Option<&super::Cursor>) -> (Option<i64>, Option<(u32, Prefix)>) {
    match after {
        None => (Some(0), None),
        Some(super::Cursor::Row(id)) => (Some(*id), None),
        Some(super::Cursor::Entry(origin, value)) => (None, Some((*origin, *value))),
    }
}

/// The entries that `gone` picks from each list (of one origin, or all): (id, kept, removed)
/// per list that changes.
pub(crate) fn split_lists(
    lists: &BTreeMap<u32, List>,
    gone: &dyn Fn(&Prefix) -> bool,
    origin: Option<&Origin>,
) -> Vec<(u32, Vec<Prefix>, Vec<Prefix>)> {
    let mut changed = Vec::new();
    for (id, l) in lists {
        if origin.is_some_and(|o| *o != l.origin) {
            continue;
        }
        let (out, kept): (Vec<Prefix>, Vec<Prefix>) = l.entries.iter().partition(|p| gone(p));
        if !out.is_empty() {
            changed.push((*id, kept, out));
        }
    }
    changed
}

/// Logged list changes by origin id: (added, removed, when).
pub(crate) type LoggedChanges = BTreeMap<u32, Vec<(Vec<Prefix>, Vec<Prefix>, i64)>>;

/// The entries added by `changes` that their list still holds, as decisions.
pub(crate) fn added_entries(
    lists: &BTreeMap<u32, List>,
    changes: LoggedChanges,
    now_ms: i64,
    out: &mut Vec<Decision>,
) {
    for (id, changes) in changes {
        let Some(l) = lists.get(&id).filter(|l| l.lease_ms > now_ms) else {
            continue;
        };
        let mut added: Vec<Prefix> = changes.into_iter().flat_map(|(a, _, _)| a).collect();
        added.sort_unstable();
        added.dedup();
        out.extend(
            added
                .into_iter()
                .filter(|v| l.contains(v))
                .map(|v| list_decision(id, l, v)),
        );
    }
}

/// The entries removed by `changes`, as tombstones (origin names by id from `names`).
pub(crate) fn removed_entries(
    names: &BTreeMap<u32, String>,
    changes: LoggedChanges,
    out: &mut Vec<Tombstone>,
) -> Result<(), StoreError> {
    for (id, changes) in changes {
        let Some(name) = names.get(&id) else {
            continue;
        };
        let origin = parse_origin(name.clone())?;
        for (_, removed, at_ms) in changes {
            out.extend(removed.into_iter().map(|value| Tombstone {
                id: lists::entry_id(id, &value),
                value,
                origin: origin.clone(),
                kind: "ban".to_owned(),
                reason: name.clone(),
                deleted_ms: at_ms,
            }));
        }
    }
    Ok(())
}

/// Calls `each` with every value that should be in the kernel: the active decision rows that
/// `next` gives (value, origin id, end) in the unique index's order (by address bytes, then
/// length), merged with the active lists' entries. Within a family the rows come in the order
/// of `Prefix`, so a value's decisions are consecutive and the lists' sorted entries merge in;
/// the families interleave in the walk (their addresses differ in length), so each has its own
/// merge. The decision that ends last names the origin.
pub(crate) fn walk(
    lists: &BTreeMap<u32, List>,
    now_ms: i64,
    next: &mut dyn FnMut() -> Result<Option<(Prefix, u32, i64)>, StoreError>,
    each: &mut dyn FnMut(Prefix, u32, i64),
) -> Result<(), StoreError> {
    let (mut v4, mut v6) = Merge::pair(lists, now_ms);
    while let Some(item) = next()? {
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

/// One address family's side of a walk of every active value: list entries not merged yet,
/// and the value being gathered with the decision that ends last (value, origin, end).
struct Merge {
    listed: std::iter::Peekable<std::vec::IntoIter<(Prefix, u32, i64)>>,
    current: Option<(Prefix, u32, i64)>,
}

impl Merge {
    /// Both families' merges over the active lists' entries.
    fn pair(lists: &BTreeMap<u32, List>, now_ms: i64) -> (Self, Self) {
        let (mut v4, mut v6): (Vec<_>, Vec<_>) = active(lists, now_ms)
            .flat_map(|(id, l)| l.entries.iter().map(move |p| (*p, id, l.lease_ms)))
            .partition(|(p, _, _)| p.is_v4());
        if lists.len() > 1 {
            v4.sort_unstable_by_key(|a| a.0);
            v6.sort_unstable_by_key(|a| a.0);
        }
        (Self::new(v4), Self::new(v6))
    }

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

    /// The entries left, and the last value.
    fn finish(mut self, each: &mut dyn FnMut(Prefix, u32, i64)) {
        while let Some(l) = self.listed.next() {
            self.take(l, each);
        }
        if let Some(c) = self.current {
            each(c.0, c.1, c.2);
        }
    }
}

/// An alert row as stored: its typed fields are parsed by [`AlertRow::into_alert`].
pub(crate) struct AlertRow {
    pub id: i64,
    pub scenario: String,
    pub source: String,
    pub group: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub events: u32,
    pub outcome: String,
    pub value: Option<String>,
    pub duration_ms: Option<i64>,
    pub reason: Option<String>,
    pub evidence: String,
    pub labels: String,
    pub machine: String,
}

/// The columns of an alert, in the order both stores select and insert them (after the id).
pub(crate) const ALERT_COLUMNS: &str = "scenario, source, grp, first_ms, last_ms, events, \
     outcome, value, duration_ms, reason, evidence, labels, machine";

impl AlertRow {
    /// The row for `a` (its id is the store's to give).
    pub(crate) fn of(a: &StoredAlert) -> Self {
        let (outcome, value, duration_ms, reason) = match &a.outcome {
            Outcome::Ban { value, duration_ms } => {
                ("ban", Some(value.to_string()), Some(*duration_ms), None)
            }
            Outcome::Simulated { value, duration_ms } => (
                "simulated",
                Some(value.to_string()),
                Some(*duration_ms),
                None,
            ),
            Outcome::Allowlisted { reason } => ("allowlisted", None, None, Some(reason.clone())),
            Outcome::Refused { value, reason } => (
                "refused",
                Some(value.to_string()),
                None,
                Some(reason.clone()),
            ),
        };
        fn json(v: &impl serde::Serialize) -> String {
            serde_json::to_string(v).unwrap_or_else(|_| "null".into())
        }
        Self {
            id: a.id,
            scenario: a.scenario.clone(),
            source: a.source.to_string(),
            group: a.group.to_string(),
            first_ms: a.first_ms,
            last_ms: a.last_ms,
            events: a.events,
            outcome: outcome.to_owned(),
            value,
            duration_ms,
            reason,
            evidence: json(&a.evidence),
            labels: json(&a.labels),
            machine: a.machine.clone(),
        }
    }

    /// The alert, with its typed fields parsed.
    pub(crate) fn into_alert(self) -> Result<StoredAlert, StoreError> {
        let bad = |value: String, reason: &str| StoreError::BadRow {
            value,
            reason: reason.to_owned(),
        };
        let source = self
            .source
            .parse()
            .map_err(|_| bad(self.source.clone(), "not an address"))?;
        let value = |v: Option<String>| match v {
            Some(v) => parse_value(v),
            None => Err(bad(String::new(), "a ban without a value")),
        };
        let outcome = match self.outcome.as_str() {
            "ban" => Outcome::Ban {
                value: value(self.value)?,
                duration_ms: self.duration_ms.unwrap_or(0),
            },
            "simulated" => Outcome::Simulated {
                value: value(self.value)?,
                duration_ms: self.duration_ms.unwrap_or(0),
            },
            "allowlisted" => Outcome::Allowlisted {
                reason: self.reason.unwrap_or_default(),
            },
            "refused" => Outcome::Refused {
                value: value(self.value)?,
                reason: self.reason.unwrap_or_default(),
            },
            other => return Err(bad(other.to_owned(), "unknown alert outcome")),
        };
        Ok(StoredAlert {
            id: self.id,
            scenario: self.scenario,
            source,
            group: parse_value(self.group)?,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            events: self.events,
            outcome,
            evidence: serde_json::from_str(&self.evidence).unwrap_or_default(),
            labels: serde_json::from_str(&self.labels).unwrap_or_default(),
            machine: self.machine,
        })
    }
}
