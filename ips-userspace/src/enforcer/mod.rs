//! The enforcer: the only code that writes BPF maps. It loads and pins the XDP program
//! ([`loader`]), owns the maps ([`maps::KernelMaps`]) and mirrors the decision store into them:
//! a full reconcile at start ([`Enforcer::reconcile`], from the store's [`KernelView`]), then
//! the [`Changes`] each decision made ([`Enforcer::apply`]). It reads nothing back from the
//! store after a write and knows nothing of detection or blocklists.
use std::{collections::HashMap, path::PathBuf, time::Instant};

use tracing::{error, info};

use crate::{
    decisions::{Changes, KernelView, StoreError},
    prefix::Prefix,
};

pub mod hints;
pub mod hosttab;
pub mod loader;
pub mod maps;
pub mod model;
pub mod parts;
pub mod sampler;
pub mod summary;
#[doc(hidden)]
pub mod sys;

pub use maps::{Counters, Diff, KernelMaps, MapCapacity, MapFill};

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
    /// The BPF filesystem here is not the host's: pins would vanish with this process.
    #[error(
        "running under `ip netns exec {netns}`, which gives ips a fresh /sys of its own: the host's BPF filesystem ({path}) is hidden, and pins made there would vanish, with the attached program, when ips exits. Enter only the network namespace instead: `nsenter --net=/run/netns/{netns} ips run`"
    )]
    PrivateBpfFs {
        /// The pin directory's parent.
        path: PathBuf,
        /// The network namespace's name.
        netns: String,
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
    /// A ban map is full: the kernel refused the write.
    #[error("{setting} = {capacity} reached for {what} (map {map} is full): raise it, or ban less")]
    Full {
        /// Map name.
        map: &'static str,
        /// What it holds.
        what: &'static str,
        /// The setting that sizes it.
        setting: &'static str,
        /// Its capacity.
        capacity: u32,
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
    /// Entries the maps could not hold (the store has more than their capacity).
    pub not_fitted: usize,
}

/// The kernel maps, kept in step with the store.
pub struct Enforcer {
    maps: KernelMaps,
    /// The sample of dropped packets (none if the ring is not pinned: a program older than
    /// sampling).
    samples: Option<sampler::DropSampler>,
    top: sampler::TopDrops,
}

/// Samples read from the ring per call of [`Enforcer::read_drop_samples`]: more than the
/// program sends in a second on 16 CPUs.
const SAMPLES_PER_READ: usize = 8_192;

impl Enforcer {
    /// Takes the maps. Call [`Enforcer::reconcile`] before relying on the kernel.
    pub fn new(maps: KernelMaps) -> Self {
        let samples = match sampler::DropSampler::open(maps.dir()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "No sample of dropped packets: the top dropped sources stay empty.");
                None
            }
        };
        Self {
            maps,
            samples,
            top: sampler::TopDrops::default(),
        }
    }

    /// Reads the dropped packets sampled since the last call into [`Enforcer::top_drops`].
    pub fn read_drop_samples(&mut self, now_ms: i64) -> usize {
        let Some(samples) = &mut self.samples else {
            return 0;
        };
        let top = &mut self.top;
        samples.drain(SAMPLES_PER_READ, |s| top.add(s, now_ms))
    }

    /// The top dropped sources, from the samples read so far.
    pub fn top_drops(&self) -> &sampler::TopDrops {
        &self.top
    }

    /// The same, to record which ban drops a source.
    pub fn top_drops_mut(&mut self) -> &mut sampler::TopDrops {
        &mut self.top
    }

    /// The maps, for reads (counters, fill).
    pub fn maps(&self) -> &KernelMaps {
        &self.maps
    }

    /// Makes the kernel match `store`: removes what the store lacks, adds what is missing,
    /// fixes attributions, and sets the allowlist. If the store holds more than the maps can,
    /// the kernel gets what fits (the removals first) and the report says how much did not.
    pub fn reconcile(
        &mut self,
        store: &dyn KernelView,
        allowlist: &[Prefix],
        now_ms: i64,
    ) -> Result<ReconcileReport, EnforcerError> {
        let started = Instant::now();
        self.maps.set_allowlist(allowlist)?;
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
        // Once a map is full, the rest waits until the removals are done.
        let mut waiting: Vec<(Prefix, u32)> = Vec::new();
        store.for_each_active(now_ms, &mut |p, o, _| {
            if kernel.remove(&p) == Some(o) {
                report.unchanged += 1;
                return;
            }
            if failed.is_some() || !waiting.is_empty() {
                waiting.push((p, o));
                return;
            }
            batch.upsert.push((p, o));
            if batch.upsert.len() >= RECONCILE_BATCH {
                match maps.apply(&batch) {
                    Ok(()) => report.upserted += batch.upsert.len(),
                    Err(EnforcerError::Full { .. }) => waiting.append(&mut batch.upsert),
                    Err(e) => failed = Some(e),
                }
                batch.upsert.clear();
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let deletes = Diff {
            upsert: Vec::new(),
            delete: kernel.into_keys().collect(),
        };
        report.deleted = deletes.delete.len();
        self.maps.apply(&deletes)?;
        drop(deletes);
        waiting.append(&mut batch.upsert);
        drop(batch);
        let full = self.add_what_fits(waiting, &mut report)?;
        if full.iter().any(|f| *f) {
            self.keep_the_best(store, now_ms, full)?;
        }
        self.maps.rebuild_summary()?;
        self.maps.sync_hints()?;
        release_freed_memory();
        if report.not_fitted > 0 {
            error!(
                not_fitted = report.not_fitted,
                "The store holds more bans than the kernel's maps: these are NOT enforced. Raise enforcer.max_hosts or enforcer.max_prefixes."
            );
        }
        info!(
            upserted = report.upserted,
            deleted = report.deleted,
            unchanged = report.unchanged,
            not_fitted = report.not_fitted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Reconciled kernel maps with the store."
        );
        Ok(report)
    }

    /// With more bans than a full map holds, the ones it keeps are the most specific, then the
    /// longest-lasting: the store is walked again (only in this case) for the values of the full
    /// maps, and the kernel's entries of those maps are swapped for the best as many.
    fn keep_the_best(
        &mut self,
        store: &dyn KernelView,
        now_ms: i64,
        full: [bool; 4],
    ) -> Result<(), EnforcerError> {
        let mut wanted: [Vec<(Prefix, u32, i64)>; 4] = Default::default();
        store.for_each_active(now_ms, &mut |p, o, ends| {
            if full[map_class(&p)] {
                wanted[map_class(&p)].push((p, o, ends));
            }
        })?;
        let mut held: [HashMap<Prefix, u32>; 4] = Default::default();
        self.maps.for_each_ban(&mut |p, o| {
            if full[map_class(&p)] {
                held[map_class(&p)].insert(p, o);
            }
        })?;
        for (class, mut wanted) in wanted.into_iter().enumerate() {
            if !full[class] {
                continue;
            }
            let room = held[class].len();
            // Ties keep what the map holds already (no churn), then go by value.
            wanted.sort_unstable_by_key(|(p, _, ends)| {
                (
                    std::cmp::Reverse(p.prefix_len()),
                    std::cmp::Reverse(*ends),
                    !held[class].contains_key(p),
                    *p,
                )
            });
            wanted.truncate(room);
            let keep: HashMap<Prefix, u32> = wanted.into_iter().map(|(p, o, _)| (p, o)).collect();
            let diff = Diff {
                delete: held[class]
                    .keys()
                    .filter(|p| !keep.contains_key(p))
                    .copied()
                    .collect(),
                upsert: keep
                    .iter()
                    .filter(|(p, o)| held[class].get(p) != Some(o))
                    .map(|(p, o)| (*p, *o))
                    .collect(),
            };
            if !diff.is_empty() {
                info!(
                    swapped = diff.delete.len(),
                    "A full map keeps the most specific and longest-lasting bans."
                );
                // Deletes go first, so the adds fit.
                self.maps.apply(&Diff {
                    upsert: Vec::new(),
                    delete: diff.delete,
                })?;
                self.maps.apply(&Diff {
                    upsert: diff.upsert,
                    delete: Vec::new(),
                })?;
            }
        }
        Ok(())
    }

    /// Adds `entries` in batches; when a map is full, its entries go one at a time until one
    /// is refused, and the rest of that map's are counted as not fitted. Returns which maps
    /// (by [`map_class`]) are full.
    fn add_what_fits(
        &mut self,
        mut entries: Vec<(Prefix, u32)>,
        report: &mut ReconcileReport,
    ) -> Result<[bool; 4], EnforcerError> {
        // Per map: IPv4 hosts, IPv4 prefixes, IPv6 hosts, IPv6 prefixes.
        // Stable: within a map, the store's order.
        entries.sort_by_key(|(p, _)| (!p.is_v4(), !p.is_host()));
        let mut full = [false; 4];
        let class = map_class;
        for chunk in entries.chunks(RECONCILE_BATCH) {
            let open: Vec<(Prefix, u32)> = chunk
                .iter()
                .filter(|(p, _)| !full[class(p)])
                .copied()
                .collect();
            report.not_fitted += chunk.len() - open.len();
            let batch = Diff {
                upsert: open,
                delete: Vec::new(),
            };
            match self.maps.apply(&batch) {
                Ok(()) => report.upserted += batch.upsert.len(),
                Err(EnforcerError::Full { .. }) => {
                    for one in batch.upsert {
                        if full[class(&one.0)] {
                            report.not_fitted += 1;
                            continue;
                        }
                        let single = Diff {
                            upsert: vec![one],
                            delete: Vec::new(),
                        };
                        match self.maps.apply(&single) {
                            Ok(()) => report.upserted += 1,
                            Err(EnforcerError::Full { .. }) => {
                                full[class(&one.0)] = true;
                                report.not_fitted += 1;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(full)
    }

    /// Mirrors what a decision changed: the allowlist first (when it moved), then the bans.
    pub fn apply(&mut self, changes: &Changes) -> Result<(), EnforcerError> {
        if let Some(allow) = &changes.allowlist {
            self.maps.set_allowlist(&allow.prefixes)?;
        }
        for origin in &changes.new_origins {
            self.maps.reset_origin_drops(*origin)?;
        }
        if !changes.bans.is_empty() {
            self.maps.apply(&changes.bans)?;
        }
        Ok(())
    }
}

/// Which map a value goes to: 0 IPv4 hosts, 1 IPv4 prefixes, 2 IPv6 hosts, 3 IPv6 prefixes.
pub fn map_class(p: &Prefix) -> usize {
    usize::from(!p.is_v4()) * 2 + usize::from(!p.is_host())
}
