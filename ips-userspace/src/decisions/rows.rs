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

/// One address family's side of a walk of every active value: list entries not merged yet,
/// and the value being gathered with the decision that ends last (value, origin, end).
pub(crate) struct Merge {
    listed: std::iter::Peekable<std::vec::IntoIter<(Prefix, u32, i64)>>,
    current: Option<(Prefix, u32, i64)>,
}

impl Merge {
    /// Both families' merges over the active lists' entries.
    pub(crate) fn pair(lists: &BTreeMap<u32, List>, now_ms: i64) -> (Self, Self) {
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
    pub(crate) fn row(&mut self, item: (Prefix, u32, i64), each: &mut dyn FnMut(Prefix, u32, i64)) {
        while let Some(l) = self.listed.next_if(|l| l.0 <= item.0) {
            self.take(l, each);
        }
        self.take(item, each);
    }

    /// The entries left, and the last value.
    pub(crate) fn finish(mut self, each: &mut dyn FnMut(Prefix, u32, i64)) {
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
