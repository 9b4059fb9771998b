//! [`DecisionService`]: where detection, lists, LAPIs and the operator's requests are decided.
//! It owns the store, the profiles and the allowlist; each call writes the store and returns
//! the [`Changes`] it made, which the caller hands to the enforcer (or, offline, drops).
//!
//! ```text
//! Alert ──on_alert──┐
//! Prepared list ─replace_list─┤                      ┌─> Changes ─> enforcer ─> maps
//! ban / unban / allow ────────┴─> profiles, allowlist ─> Store ─┘
//! ```
use std::{sync::Arc, time::Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::{
    Allowlist, AllowlistWatch, Changes, Decision, Diff, MinPrefix, NewDecision, Origin, Store,
    StoreError, StoredAlert, allowlist::Publisher, guard, profiles::Profiles,
};
use crate::{
    blocklists::{self, Prepared},
    prefix::Prefix,
    scenarios::Alert,
};

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// List name (origin `list:<name>`).
    pub name: String,
    /// Parse and filter counts (prefixes left out).
    pub prepared: Prepared,
    /// Prefixes after aggregation.
    pub entries: u64,
    /// Values newly banned.
    pub added: u64,
    /// Values no longer on the list.
    pub removed: u64,
    /// Where the time went, in milliseconds.
    #[serde(default)]
    pub took: ImportTimes,
    /// Entries left out because the kernel's maps are full (the list is degraded).
    #[serde(default)]
    pub not_fitted: u64,
}

/// Wall time of an import's steps, in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportTimes {
    /// Read, filter and aggregate (where that ran: the daemon does it off the service thread).
    pub prepare_ms: u64,
    /// Diff against what is stored, and write the changes to the store.
    pub store_ms: u64,
    /// Write the changes to the kernel maps.
    pub kernel_ms: u64,
}

/// Who asks for a ban, which decides what the guard does with a value it refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanMode {
    /// The operator (CLI, API): a refused value refuses the whole request, with the reason;
    /// `force` lifts the minimum length.
    Operator {
        /// Ban what the guard would refuse (never a catch-all, never the allowlist).
        force: bool,
    },
    /// A source (a LAPI, the hub): refused values are left out and counted, the rest banned;
    /// entries around a private range are cut around it, as a list's are.
    Source,
}

/// The decision service.
pub struct DecisionService {
    store: Box<dyn Store>,
    profiles: Profiles,
    allow: Publisher,
}

impl DecisionService {
    /// The service over `store`, publishing the store's allowlist.
    pub fn new(store: Box<dyn Store>, profiles: Profiles) -> Result<Self, StoreError> {
        let prefixes = store.allow_list()?.into_iter().map(|a| a.value).collect();
        Ok(Self {
            store,
            profiles,
            allow: Publisher::new(prefixes, MinPrefix::default(), Vec::new()),
        })
    }

    /// Sets the shortest prefixes any source may ban (`[decisions] min_prefix_v4`, `_v6`) and
    /// what no ban may cover without `--force` (this host's addresses, management ranges).
    #[must_use]
    pub fn with_guard(mut self, min: MinPrefix, protected: Vec<Prefix>) -> Self {
        let current = self.allow.current();
        self.allow = Publisher::new(current.prefixes.clone(), min, protected);
        self
    }

    /// Replaces the profiles (a reload): the next alerts are decided by these.
    pub fn set_profiles(&mut self, profiles: Profiles) {
        self.profiles = profiles;
    }

    /// The store, for reads.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The store, for records that change nothing in the kernel (bouncers, alerts, local state).
    pub fn records(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// Where list preparers read the allowlist from.
    pub fn allowlist(&self) -> AllowlistWatch {
        self.allow.watch()
    }

    /// The allowlist now.
    pub fn current_allowlist(&self) -> Arc<Allowlist> {
        self.allow.current()
    }

    /// Opens one decision's unit of work in the store (see [`super::Transactions`]).
    pub fn begin(&mut self) -> Result<(), StoreError> {
        self.store.begin()
    }

    /// Makes the unit stick.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.store.commit()
    }

    /// Reads in what other nodes sharing the store wrote (see [`super::Transactions::refresh`])
    /// and publishes the allowlist as it is stored. True if anything changed: the kernel is to
    /// be reconciled with the store.
    pub fn refresh(&mut self) -> Result<bool, StoreError> {
        if !self.store.refresh()? {
            return Ok(false);
        }
        self.republish()?;
        Ok(true)
    }

    /// Undoes the unit, and publishes the allowlist as it is stored again.
    pub fn rollback(&mut self) -> Result<(), StoreError> {
        self.store.rollback()?;
        self.republish()?;
        Ok(())
    }

    /// Records an alert whose ban the kernel refused (a full map): not banned, and said so.
    pub fn refused_alert(
        &mut self,
        alert: &Alert,
        reason: String,
    ) -> Result<StoredAlert, StoreError> {
        let outcome = super::Outcome::Refused {
            value: self.profiles.value_for(alert.source),
            reason,
        };
        self.record(alert, outcome)
    }

    /// Publishes the store's allowlist; returns it if it changed.
    fn republish(&self) -> Result<Option<Arc<Allowlist>>, StoreError> {
        let before = self.allow.current().version;
        let prefixes = self
            .store
            .allow_list()?
            .into_iter()
            .map(|a| a.value)
            .collect();
        let now = self.allow.publish(prefixes);
        Ok((now.version != before).then_some(now))
    }

    /// Makes the allowlist entries from `ips.toml` exactly `entries` (removing the decisions
    /// inside them).
    pub fn sync_config_allowlist(
        &mut self,
        entries: &[Prefix],
        now_ms: i64,
    ) -> Result<Changes, StoreError> {
        for a in self.store.allow_list()? {
            if a.source == "config" && !entries.contains(&a.value) {
                self.store.allow_delete(&a.value)?;
            }
        }
        let mut bans = Diff::default();
        for e in entries {
            let (covered, diff) = self.store.allow_add(e, "from ips.toml", "config", now_ms)?;
            if !covered.is_empty() {
                info!(allow = %e, removed = covered.len(), "Removed decisions inside a configured allowlist entry.");
            }
            bans.extend(diff);
        }
        Ok(Changes {
            bans,
            allowlist: Some(self.republish()?.unwrap_or_else(|| self.allow.current())),
            new_origins: Vec::new(),
        })
    }

    /// Adds or extends bans, after the guard (see [`BanMode`]). An operator's batch is refused
    /// whole if a value is refused or allowlisted.
    pub fn ban(
        &mut self,
        batch: Vec<NewDecision>,
        mode: BanMode,
        now_ms: i64,
    ) -> Result<(Vec<Decision>, Changes), StoreError> {
        // No ban lasts longer than `profiles.max_ban`, whoever asks.
        let max_ms = self
            .profiles
            .config()
            .max_ban
            .as_millis()
            .min(i64::MAX as u128) as i64;
        let mut batch = batch;
        for d in &mut batch {
            d.duration_ms = d.duration_ms.min(max_ms);
        }
        let batch = match mode {
            BanMode::Operator { force } => {
                let allow = self.allow.current();
                for d in &batch {
                    guard::check(&d.value, &allow.min, &allow.protected, force)?;
                }
                batch
            }
            BanMode::Source => {
                let (kept, report) = blocklists::filter_decisions(batch, &self.allow.current());
                if report != blocklists::FilterReport::default() {
                    info!(?report, "Left out decisions the guard refuses.");
                }
                kept
            }
        };
        let (added, bans) = self.store.upsert(&batch, now_ms)?;
        debug!(count = added.len(), "Banned.");
        Ok((added, bans.into()))
    }

    /// Removes every decision on `value` (or only `origin`'s); the value stays banned if
    /// another origin still bans it.
    pub fn unban(
        &mut self,
        value: &Prefix,
        origin: Option<&Origin>,
        now_ms: i64,
    ) -> Result<(usize, Changes), StoreError> {
        let (n, bans) = self.store.delete(value, origin, now_ms)?;
        Ok((n, bans.into()))
    }

    /// Adds an allowlist entry by hand; decisions inside it are removed.
    pub fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        now_ms: i64,
    ) -> Result<(usize, Changes), StoreError> {
        let (covered, bans) = self.store.allow_add(value, reason, "manual", now_ms)?;
        let allowlist = self.republish()?;
        Ok((
            covered.len(),
            Changes {
                bans,
                allowlist,
                new_origins: Vec::new(),
            },
        ))
    }

    /// Removes an allowlist entry.
    pub fn allow_delete(&mut self, value: &Prefix) -> Result<(bool, Changes), StoreError> {
        let existed = self.store.allow_delete(value)?;
        let allowlist = self.republish()?;
        Ok((
            existed,
            Changes {
                bans: Diff::default(),
                allowlist,
                new_origins: Vec::new(),
            },
        ))
    }

    /// Runs an alert through the profiles: a ban (with escalation), a simulated decision, or
    /// nothing for an allowlisted source. The alert is stored with what was decided.
    pub fn on_alert(
        &mut self,
        alert: &Alert,
        now_ms: i64,
    ) -> Result<(StoredAlert, Changes), StoreError> {
        let value = self.profiles.value_for(alert.source);
        let window = self.profiles.config().escalation_window.as_millis() as i64;
        let previous = self
            .store
            .previous_bans(&value, now_ms.saturating_sub(window))?;
        let allow = self.allow.current().covering(&Prefix::host(alert.source));
        let outcome = self.profiles.decide(alert, previous, allow);
        let mut changes = Changes::default();
        match &outcome {
            super::Outcome::Ban { value, duration_ms } => {
                let (_, bans) = self.store.upsert(
                    &[NewDecision {
                        value: *value,
                        origin: Origin::Detection,
                        reason: alert.scenario.clone(),
                        duration_ms: *duration_ms,
                    }],
                    now_ms,
                )?;
                changes.bans = bans;
                info!(%value, scenario = %alert.scenario, duration_ms, previous, "Banned by detection.");
            }
            super::Outcome::Simulated { value, .. } => {
                info!(%value, scenario = %alert.scenario, "Alert in simulation: not banned.");
            }
            super::Outcome::Allowlisted { reason } | super::Outcome::Refused { reason, .. } => {
                info!(source = %alert.source, scenario = %alert.scenario, %reason, "Alert on an allowlisted source: not banned.");
            }
        }
        Ok((self.record(alert, outcome)?, changes))
    }

    /// Stores `alert` with what was decided about it.
    fn record(
        &mut self,
        alert: &Alert,
        outcome: super::Outcome,
    ) -> Result<StoredAlert, StoreError> {
        let mut stored = StoredAlert {
            id: 0,
            scenario: alert.scenario.clone(),
            source: alert.source,
            group: alert.group,
            first_ms: alert.first_ms,
            last_ms: alert.last_ms,
            events: alert.events,
            outcome,
            evidence: alert.evidence.clone(),
            labels: alert.labels.clone(),
            machine: String::new(),
        };
        stored.id = self.store.add_alert(&stored)?;
        Ok(stored)
    }

    /// Replaces list `name`'s entries with a prepared list that was filtered with allowlist
    /// version `allow_version`; filters again first if the allowlist moved since. The store
    /// gets the diff against its snapshot; the changes hold the values added and removed.
    pub fn replace_list(
        &mut self,
        name: &str,
        mut prepared: Prepared,
        allow_version: u64,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<(ImportReport, Changes), StoreError> {
        let origin = Origin::list(name)?;
        let started = Instant::now();
        let mut new = std::mem::take(&mut prepared.prefixes);
        let current = self.allow.current();
        if current.version != allow_version {
            let (kept, again) = blocklists::filter(new, &current);
            prepared.filtered.allowlisted += again.allowlisted;
            prepared.filtered.split += again.split;
            new = blocklists::aggregate(kept);
        }
        let entries = new.len() as u64;
        let change = self.store.replace_list(&origin, new, duration_ms, now_ms)?;
        info!(
            list = name,
            entries,
            added = change.added.len(),
            removed = change.removed.len(),
            "Imported blocklist."
        );
        let report = ImportReport {
            name: name.to_owned(),
            prepared,
            entries,
            added: change.added.len() as u64,
            removed: change.removed.len() as u64,
            took: ImportTimes {
                prepare_ms: 0,
                store_ms: started.elapsed().as_millis() as u64,
                kernel_ms: 0,
            },
            not_fitted: 0,
        };
        Ok((report, change.kernel.into()))
    }

    /// Extends a list's lease: it did not change, or could not be fetched. Returns whether the
    /// list has entries under a lease (false: it lapsed, and must be imported again).
    pub fn renew_list(
        &mut self,
        name: &str,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.store
            .renew_list(&Origin::list(name)?, duration_ms, now_ms)
    }

    /// Removes what expired; the bool says whether expired decisions are left (at most
    /// `limit` rows go per call).
    pub fn expire(&mut self, now_ms: i64, limit: usize) -> Result<(Changes, bool), StoreError> {
        let (bans, more) = self.store.take_expired_at_most(now_ms, limit)?;
        if !bans.is_empty() {
            debug!(
                unbanned = bans.delete.len(),
                reattributed = bans.upsert.len(),
                more,
                "Expired decisions."
            );
        }
        Ok((bans.into(), more))
    }

    /// Forgets what the bouncer stream no longer needs: tombstones and list changes older than
    /// a week (a bouncer that has not pulled for that long starts over with `startup=true`).
    pub fn prune(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        self.store.prune_tombstones(now_ms - 7 * 86_400_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::{Outcome, SqliteStore, profiles::ProfilesConfig};

    fn service() -> DecisionService {
        let profiles = Profiles::new(ProfilesConfig::default(), &[]);
        DecisionService::new(Box::new(SqliteStore::in_memory().unwrap()), profiles).unwrap()
    }

    fn alert(src: &str) -> Alert {
        let source: std::net::IpAddr = src.parse().unwrap();
        Alert {
            scenario: "ssh-bf".into(),
            source,
            group: Prefix::host(source),
            first_ms: 0,
            last_ms: 1000,
            events: 6,
            evidence: vec!["line".into()],
            labels: Default::default(),
            ban: Some(std::time::Duration::from_secs(60)),
        }
    }

    #[test]
    fn an_alert_bans_and_says_so_in_its_changes_and_escalates() {
        let mut s = service();
        let (stored, changes) = s.on_alert(&alert("203.0.113.9"), 1000).unwrap();
        let value: Prefix = "203.0.113.9".parse().unwrap();
        assert_eq!(
            stored.outcome,
            Outcome::Ban {
                value,
                duration_ms: 60_000
            }
        );
        assert_eq!(
            changes.bans.upsert,
            [(value, ips_common::origin::DETECTION)]
        );
        assert!(stored.id > 0);
        // The second ban within the window lasts twice as long.
        let (stored, _) = s.on_alert(&alert("203.0.113.9"), 2000).unwrap();
        assert!(matches!(
            stored.outcome,
            Outcome::Ban {
                duration_ms: 120_000,
                ..
            }
        ));
    }

    #[test]
    fn the_allowlist_is_published_with_a_new_version_and_blocks_alerts() {
        let mut s = service();
        let watch = s.allowlist();
        let v0 = watch.current().version;
        let (_, changes) = s
            .allow_add(&"198.51.100.0/24".parse().unwrap(), "office", 0)
            .unwrap();
        let published = changes.allowlist.expect("the allowlist moved");
        assert_eq!(published.version, v0 + 1);
        assert_eq!(watch.current(), published);
        let (stored, changes) = s.on_alert(&alert("198.51.100.7"), 1000).unwrap();
        assert!(matches!(stored.outcome, Outcome::Allowlisted { .. }));
        assert!(changes.is_empty());
    }

    #[test]
    fn a_list_prepared_under_an_older_allowlist_is_filtered_again() {
        let mut s = service();
        let allow = s.current_allowlist();
        let prepared = blocklists::prepare("5.6.7.0/24\n8.8.4.4\n", None, &allow);
        s.allow_add(&"5.6.7.128/25".parse().unwrap(), "ours", 0)
            .unwrap();
        let (report, changes) = s
            .replace_list("l", prepared, allow.version, 60_000, 0)
            .unwrap();
        let values: Vec<String> = changes
            .bans
            .upsert
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(values, ["5.6.7.0/25", "8.8.4.4"]);
        assert_eq!(report.prepared.filtered.split, 1);
        assert!(
            s.replace_list("bad name", Prepared::default(), 0, 1, 0)
                .is_err()
        );
    }
}
