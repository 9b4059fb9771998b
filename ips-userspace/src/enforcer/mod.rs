//! The enforcer: the only code that writes BPF maps. It loads and pins the XDP program
//! ([`loader`]), owns the maps ([`maps::KernelMaps`]) and keeps them in step with the decision
//! store: a full reconcile at start, then a diff per change and per expiry tick.
//!
//! [`Enforcer`] pairs a [`Store`] with the maps. Every change is written to the store first, then
//! the values it touched are looked up again and the kernel is set to match, so the kernel can
//! never hold something the store does not.
use std::{collections::HashMap, path::PathBuf, time::Instant};

use tracing::{debug, info};

use crate::{
    decisions::{
        AllowEntry, Decision, NewDecision, ORIGIN_DETECTION, Store, StoreError, StoredAlert,
        profiles::{Outcome, Profiles},
    },
    prefix::Prefix,
    scenarios::Alert,
};

pub mod loader;
pub mod maps;
pub mod summary;
#[doc(hidden)]
pub mod sys;

pub use maps::{Counters, Diff, KernelMaps, MapFill};

/// Errors of the enforcer.
#[derive(Debug, thiserror::Error)]
pub enum EnforcerError {
    /// Loading programs and writing maps needs root.
    #[error(
        "must run as root (loading XDP programs and writing BPF maps needs CAP_BPF and CAP_NET_ADMIN)"
    )]
    NotRoot,
    /// The pin directory is not on a BPF filesystem.
    #[error("no BPF filesystem at {path}: mount one with `mount -t bpf bpf /sys/fs/bpf`")]
    NoBpfFs {
        /// The directory that should be on bpffs.
        path: PathBuf,
    },
    /// No such interface.
    #[error("unknown interface {name:?} (see `ip link`)")]
    UnknownInterface {
        /// The name given.
        name: String,
    },
    /// The object did not load.
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    /// Attaching failed.
    #[error("cannot attach to {iface}: {reason}")]
    Attach {
        /// The interface.
        iface: String,
        /// Why.
        reason: String,
    },
    /// A pinned map is missing or not ours.
    #[error("cannot open pinned map {path}: {source} (is `ips run` attached?)")]
    OpenMap {
        /// Where it should be.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// A map write failed.
    #[error("cannot write map {map}: {source}")]
    MapWrite {
        /// Map name.
        map: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A map read failed.
    #[error("cannot read map {map}: {source}")]
    MapRead {
        /// Map name.
        map: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading counters failed.
    #[error("cannot read counters from {map}: {source}")]
    Counters {
        /// Map name.
        map: &'static str,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Upserts sent to the kernel at a time during a reconcile.
const RECONCILE_BATCH: usize = 65_536;

/// Hands memory freed after a large reconcile back to the OS (glibc keeps it otherwise).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What a reconcile did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Entries added or re-attributed.
    pub upserted: usize,
    /// Entries removed because the store no longer has them.
    pub deleted: usize,
    /// Entries already right.
    pub unchanged: usize,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    /// List name (origin `list:<name>`).
    pub name: String,
    /// Parse and filter counts (prefixes left out).
    pub prepared: crate::blocklists::Prepared,
    /// Prefixes after aggregation.
    pub entries: u64,
    /// Values newly banned.
    pub added: u64,
    /// Values no longer on the list.
    pub removed: u64,
    /// Where the time went, in milliseconds.
    #[serde(default)]
    pub took: ImportTimes,
}

/// Wall time of an import's steps, in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportTimes {
    /// Read, filter and aggregate (where that ran: the daemon does it off the enforcer thread).
    pub prepare_ms: u64,
    /// Diff against what is stored, and write the changes to the store.
    pub store_ms: u64,
    /// Write the changes to the kernel maps.
    pub kernel_ms: u64,
}

/// The store and the kernel maps, kept in step.
pub struct Enforcer {
    store: Box<dyn Store>,
    maps: KernelMaps,
}

impl Enforcer {
    /// Pairs a store with the maps. Call [`Enforcer::reconcile`] before relying on the kernel.
    pub fn new(store: Box<dyn Store>, maps: KernelMaps) -> Self {
        Self { store, maps }
    }

    /// The store, for reads.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The store, for writes that do not change the kernel (interfaces, origins).
    pub fn store_mut(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// The maps, for reads (counters, fill).
    pub fn maps(&self) -> &KernelMaps {
        &self.maps
    }

    /// Makes the kernel match the store: removes what the store lacks, adds what is missing,
    /// fixes attributions, and sets the allowlist.
    pub fn reconcile(&mut self, now_ms: i64) -> Result<ReconcileReport, EnforcerError> {
        let started = Instant::now();
        self.store.take_expired(now_ms)?;
        let allow: Vec<Prefix> = self.allow_values()?;
        self.maps.set_allowlist(&allow)?;
        // What the kernel holds now (empty on a fresh boot), then the store streamed against it:
        // only one of the two sets is ever in memory, and upserts go out in batches.
        let mut kernel: HashMap<Prefix, u32> = HashMap::new();
        self.maps.for_each_ban(&mut |p, o| {
            kernel.insert(p, o);
        })?;
        let maps = &mut self.maps;
        let mut report = ReconcileReport::default();
        let mut batch = Diff::default();
        let mut failed = None;
        self.store.for_each_active(now_ms, &mut |p, o| {
            if kernel.remove(&p) == Some(o) {
                report.unchanged += 1;
                return;
            }
            batch.upsert.push((p, o));
            if batch.upsert.len() >= RECONCILE_BATCH && failed.is_none() {
                report.upserted += batch.upsert.len();
                if let Err(e) = maps.apply(&batch) {
                    failed = Some(e);
                }
                batch.upsert.clear();
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        report.upserted += batch.upsert.len();
        batch.delete = kernel.into_keys().collect();
        report.deleted = batch.delete.len();
        self.maps.apply(&batch)?;
        drop(batch);
        self.maps.rebuild_summary()?;
        release_freed_memory();
        info!(
            upserted = report.upserted,
            deleted = report.deleted,
            unchanged = report.unchanged,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Reconciled kernel maps with the store."
        );
        Ok(report)
    }

    /// Sets the kernel entry of each value to what the store now says.
    fn sync_values(&mut self, values: &[Prefix], now_ms: i64) -> Result<Diff, EnforcerError> {
        let mut diff = Diff::default();
        for (p, origin) in self.store.effective(values, now_ms)? {
            match origin {
                Some(o) => diff.upsert.push((p, o)),
                None => diff.delete.push(p),
            }
        }
        self.maps.apply(&diff)?;
        Ok(diff)
    }

    /// Adds or extends decisions, store first, then kernel.
    pub fn add(
        &mut self,
        batch: &[NewDecision],
        now_ms: i64,
    ) -> Result<Vec<Decision>, EnforcerError> {
        let added = self.store.upsert(batch, now_ms)?;
        let mut diff = Diff::default();
        let mut ids: HashMap<&str, u32> = HashMap::new();
        for d in &added {
            let id = match ids.get(d.origin.as_str()) {
                Some(id) => *id,
                None => {
                    let id = self.store.origin_id(&d.origin)?;
                    ids.insert(&d.origin, id);
                    id
                }
            };
            diff.upsert.push((d.value, id));
        }
        // When a value has decisions from several origins, attribute it to the longest lasting.
        if added.len() < 1024 {
            let values: Vec<Prefix> = added.iter().map(|d| d.value).collect();
            self.sync_values(&values, now_ms)?;
        } else {
            self.maps.apply(&diff)?;
        }
        debug!(count = added.len(), "Banned.");
        Ok(added)
    }

    /// Deletes every decision on `value` (or only `origin`'s) and unbans it if none is left.
    pub fn delete(
        &mut self,
        value: &Prefix,
        origin: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, EnforcerError> {
        let n = self.store.delete(value, origin)?;
        self.sync_values(&[*value], now_ms)?;
        Ok(n)
    }

    /// Removes expired decisions from the store and the kernel. Only the values that expired
    /// are touched, however many expire at once.
    pub fn expire(&mut self, now_ms: i64) -> Result<usize, EnforcerError> {
        let expired = self.store.take_expired(now_ms)?;
        if expired.is_empty() {
            return Ok(0);
        }
        let diff = self.sync_values(&expired, now_ms)?;
        debug!(
            expired = expired.len(),
            unbanned = diff.delete.len(),
            "Expired decisions."
        );
        Ok(expired.len())
    }

    /// Runs an alert through the profiles: bans (store, then kernel), or records it as simulated
    /// or allowlisted. The alert is stored with what was decided.
    pub fn handle_alert(
        &mut self,
        alert: &Alert,
        profiles: &Profiles,
        now_ms: i64,
    ) -> Result<StoredAlert, EnforcerError> {
        let value = profiles.value_for(alert.source);
        let window = profiles.config().escalation_window.as_millis() as i64;
        let previous = self
            .store
            .previous_bans(&value.to_string(), now_ms.saturating_sub(window))?;
        let allow = self.store.allow_covering(&Prefix::host(alert.source));
        let scenario_ban = alert
            .labels
            .get("ban")
            .and_then(|d| crate::duration::parse(d).ok());
        let outcome = profiles.decide(alert, scenario_ban, previous, allow);
        let mut stored = StoredAlert {
            id: 0,
            scenario: alert.scenario.clone(),
            source: alert.source.to_string(),
            group: alert.group.to_string(),
            first_ms: alert.first_ms,
            last_ms: alert.last_ms,
            events: alert.events,
            outcome: String::new(),
            value: None,
            duration_ms: None,
            reason: None,
            evidence: alert.evidence.clone(),
            labels: alert.labels.clone(),
        };
        match outcome {
            Outcome::Ban { value, duration_ms } => {
                self.add(
                    &[NewDecision {
                        value,
                        origin: ORIGIN_DETECTION.to_owned(),
                        reason: alert.scenario.clone(),
                        duration_ms,
                    }],
                    now_ms,
                )?;
                info!(%value, scenario = %alert.scenario, duration_ms, previous, "Banned by detection.");
                stored.outcome = "ban".into();
                stored.value = Some(value.to_string());
                stored.duration_ms = Some(duration_ms);
            }
            Outcome::Simulated { value, duration_ms } => {
                info!(%value, scenario = %alert.scenario, "Alert in simulation: not banned.");
                stored.outcome = "simulated".into();
                stored.value = Some(value.to_string());
                stored.duration_ms = Some(duration_ms);
            }
            Outcome::Allowlisted { reason } => {
                info!(source = %alert.source, scenario = %alert.scenario, %reason, "Alert on an allowlisted source: not banned.");
                stored.outcome = "allowlisted".into();
                stored.reason = Some(reason);
            }
        }
        stored.id = self.store.add_alert(&stored)?;
        Ok(stored)
    }

    /// Replaces list `name`'s decisions (origin `list:<name>`) with `text`: read, filter and
    /// aggregate it here, then [`Enforcer::import_prepared`]. The daemon prepares lists off
    /// this thread instead.
    pub fn import_list(
        &mut self,
        name: &str,
        text: &str,
        format: Option<crate::blocklists::Format>,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<ImportReport, EnforcerError> {
        let started = Instant::now();
        let allow: Vec<Prefix> = self.allow_values()?;
        let prepared = crate::blocklists::prepare(text, format, &allow);
        let prepare_ms = started.elapsed().as_millis() as u64;
        let mut report = self.import_prepared(name, prepared, &allow, duration_ms, now_ms)?;
        report.took.prepare_ms = prepare_ms;
        Ok(report)
    }

    /// Replaces list `name`'s decisions with a prepared list, filtered with `allow`: the store
    /// gets the diff against its snapshot, the kernel the values added and removed. Should the
    /// allowlist have changed since, the list is filtered again first.
    pub fn import_prepared(
        &mut self,
        name: &str,
        mut prepared: crate::blocklists::Prepared,
        allow: &[Prefix],
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<ImportReport, EnforcerError> {
        let started = Instant::now();
        let ms = |t: Instant| t.elapsed().as_millis() as u64;
        let mut new = std::mem::take(&mut prepared.prefixes);
        let current = self.allow_values()?;
        if current != allow {
            let (kept, again) = crate::blocklists::filter(new, &current);
            prepared.filtered.allowlisted += again.allowlisted;
            prepared.filtered.split += again.split;
            new = crate::blocklists::aggregate(kept);
        }
        let origin = format!("list:{name}");
        let entries = new.len() as u64;
        let (added, removed) = self
            .store
            .replace_origin(&origin, new, duration_ms, now_ms)?;
        let origin_id = self.store.origin_id(&origin)?;
        let store_ms = ms(started);
        let kernel = Instant::now();
        let diff = Diff {
            upsert: added.iter().map(|p| (*p, origin_id)).collect(),
            delete: Vec::new(),
        };
        self.maps.apply(&diff)?;
        // A removed value may still be banned by another origin.
        self.sync_values(&removed, now_ms)?;
        let took = ImportTimes {
            prepare_ms: 0,
            store_ms,
            kernel_ms: ms(kernel),
        };
        info!(
            list = name,
            entries,
            added = added.len(),
            removed = removed.len(),
            "Imported blocklist."
        );
        Ok(ImportReport {
            name: name.to_owned(),
            prepared,
            entries,
            added: added.len() as u64,
            removed: removed.len() as u64,
            took,
        })
    }

    /// Extends a list's lease: it did not change, or could not be fetched. Returns whether the
    /// list has entries under a lease.
    pub fn renew_list(
        &mut self,
        name: &str,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<bool, EnforcerError> {
        Ok(self
            .store
            .renew_origin(&format!("list:{name}"), duration_ms, now_ms)?)
    }

    /// Adds an allowlist entry; decisions inside it are removed from store and kernel.
    pub fn allow_add(
        &mut self,
        value: &Prefix,
        reason: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<usize, EnforcerError> {
        let covered = self.store.allow_add(value, reason, source, now_ms)?;
        self.push_allowlist()?;
        self.sync_values(&covered, now_ms)?;
        Ok(covered.len())
    }

    /// Removes an allowlist entry.
    pub fn allow_delete(&mut self, value: &Prefix) -> Result<bool, EnforcerError> {
        let existed = self.store.allow_delete(value)?;
        self.push_allowlist()?;
        Ok(existed)
    }

    /// Makes the store's `config` allowlist entries exactly `entries` (from `ips.toml`).
    pub fn sync_config_allowlist(
        &mut self,
        entries: &[Prefix],
        now_ms: i64,
    ) -> Result<(), EnforcerError> {
        let current: Vec<AllowEntry> = self.store.allow_list()?;
        for a in current.iter().filter(|a| a.source == "config") {
            if !entries.contains(&a.value) {
                self.store.allow_delete(&a.value)?;
            }
        }
        for e in entries {
            let covered = self.store.allow_add(e, "from ips.toml", "config", now_ms)?;
            if !covered.is_empty() {
                info!(allow = %e, removed = covered.len(), "Removed decisions inside a configured allowlist entry.");
            }
        }
        self.push_allowlist()
    }

    fn allow_values(&self) -> Result<Vec<Prefix>, EnforcerError> {
        Ok(self
            .store
            .allow_list()?
            .into_iter()
            .map(|a| a.value)
            .collect())
    }

    fn push_allowlist(&mut self) -> Result<(), EnforcerError> {
        let allow: Vec<Prefix> = self.allow_values()?;
        self.maps.set_allowlist(&allow)
    }
}
