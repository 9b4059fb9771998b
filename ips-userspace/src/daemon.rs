//! `ips run`: opens the store, attaches the XDP program, reconciles the kernel with the store,
//! then serves the local API while an enforcer thread applies changes and expiries.
//!
//! The enforcer runs on its own thread and owns the [`Enforcer`]; API handlers send it
//! [`Request`]s and await the reply, so every map write happens in one place, in order.
use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::{
    api::{self, ApiError, InterfaceStatus, OriginStatus, Status},
    config::Config,
    decisions::{AllowEntry, Decision, NewDecision, SqliteStore},
    enforcer::{Enforcer, EnforcerError, KernelMaps, loader},
    prefix::Prefix,
};

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Enforcer setup failed.
    #[error(transparent)]
    Enforcer(#[from] EnforcerError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::decisions::StoreError),
    /// The API could not listen.
    #[error("cannot listen on {addr}: {source} (is another `ips run` running?)")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The scenarios could not be loaded.
    #[error("detection: {0}")]
    Detection(String),
    /// No interface to attach to.
    #[error("no interface to attach to: pass --iface IF or set enforcer.interfaces in the config")]
    NoInterface,
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A request to the enforcer thread.
pub enum Request {
    /// Ban.
    Add(Vec<NewDecision>, Reply<Vec<Decision>>),
    /// Unban a value (all origins, or one).
    Delete(Prefix, Option<String>, Reply<usize>),
    /// List active decisions.
    List(Option<Prefix>, Reply<Vec<Decision>>),
    /// Add to the allowlist.
    AllowAdd(Prefix, String, Reply<usize>),
    /// Remove from the allowlist.
    AllowDelete(Prefix, Reply<bool>),
    /// The allowlist.
    AllowList(Reply<Vec<AllowEntry>>),
    /// Status and counters.
    Status(Reply<Status>),
    /// Detach from an interface.
    Detach(String, Reply<bool>),
    /// An alert from the detection pipeline.
    Alert(crate::scenarios::Alert),
    /// Read positions to save.
    SaveOffsets(Vec<crate::acquisition::Position>),
    /// Stored alerts, newest first: (limit, scenario, source).
    Alerts(
        usize,
        Option<String>,
        Option<String>,
        Reply<Vec<crate::decisions::StoredAlert>>,
    ),
    /// One stored alert.
    AlertById(i64, Reply<Option<crate::decisions::StoredAlert>>),
    /// The bouncer with this API key hash.
    BouncerByKey(String, Reply<Option<String>>),
    /// A bouncer's stream: (name, startup) -> (new, deleted); records the pull.
    Stream(
        String,
        bool,
        Reply<(Vec<Decision>, Vec<crate::decisions::Tombstone>)>,
    ),
    /// Active decisions whose value covers a prefix.
    Covering(Prefix, Reply<Vec<Decision>>),
    /// Register a bouncer: (name, key hash).
    AddBouncer(String, String, Reply<()>),
    /// Bouncers.
    Bouncers(Reply<Vec<crate::decisions::Bouncer>>),
    /// Remove a bouncer.
    DeleteBouncer(String, Reply<bool>),
    /// Renew an unchanged blocklist's decisions: (name, duration ms).
    RenewList(String, i64, Reply<bool>),
    /// Replace a blocklist's decisions with a list prepared off this thread: (name, list, the
    /// allowlist it was filtered with, duration ms).
    Import(
        String,
        crate::blocklists::Prepared,
        Vec<Prefix>,
        i64,
        Reply<crate::enforcer::ImportReport>,
    ),
}

/// The handle API handlers use to reach the enforcer thread.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    /// Default ban duration.
    pub default_duration: Duration,
    /// Detection counters, updated by the pipeline.
    pub detection: std::sync::Arc<std::sync::Mutex<crate::pipeline::DetectionStats>>,
    /// Blocklist source status, updated by their thread.
    pub lists: std::sync::Arc<std::sync::Mutex<Vec<crate::blocklists::source::SourceStatus>>>,
}

impl Handle {
    /// Sends a request built around a reply channel and waits for the answer.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| ApiError::internal("the enforcer has stopped"))?;
        rx.await
            .map_err(|_| ApiError::internal("the enforcer dropped the request"))?
    }
}

/// Runs the daemon until SIGINT or SIGTERM. The XDP program stays attached afterwards (its link
/// is pinned); `ips detach` removes it.
pub fn run(config: Config, extra_interfaces: &[String]) -> Result<(), DaemonError> {
    let mut interfaces = config.enforcer.interfaces.clone();
    for i in extra_interfaces {
        if !interfaces.contains(i) {
            interfaces.push(i.clone());
        }
    }
    if interfaces.is_empty() {
        return Err(DaemonError::NoInterface);
    }
    let dir = config.enforcer.pin_dir.clone();
    loader::require_root()?;
    for iface in &interfaces {
        loader::require_interface(iface)?;
    }
    let store = SqliteStore::open(&config.store.path)?;
    let ebpf = loader::load(
        &dir,
        loader::Capacity {
            hosts: config.enforcer.max_hosts,
            nets: config.enforcer.max_prefixes,
        },
    )?;
    let maps = KernelMaps::open(&dir)?;
    let mut enforcer = Enforcer::new(Box::new(store), maps);
    // Maps first, then attach: a freshly attached program starts with every ban in place.
    enforcer.sync_config_allowlist(&config.allowlist.entries, now_ms())?;
    enforcer.reconcile(now_ms())?;
    let attachment = loader::attach(ebpf, &dir, &interfaces, config.enforcer.mode)?;
    let scenarios = config
        .detection
        .scenarios()
        .map_err(|e| DaemonError::Detection(e.to_string()))?;
    let profiles = crate::decisions::profiles::Profiles::new(
        config.profiles.clone(),
        &crate::decisions::profiles::local_addresses(),
    );
    let saved_offsets = enforcer.store().offsets()?;
    for (name, mode) in &attachment.interfaces {
        // A reused link keeps the mode recorded when it was first attached.
        if mode != "reused" {
            enforcer.store_mut().set_interface(name, Some(mode))?;
        }
    }

    let (tx, rx) = mpsc::channel();
    let expiry = config.enforcer.expiry_interval;
    let stop = crate::acquisition::Stop::default();
    let (hub_tx, pusher) = match config.hub.clone() {
        Some(h) => {
            let (t, j) = crate::hub::spawn_pusher(h, stop.clone())?;
            (Some(t), Some(j))
        }
        None => (None, None),
    };
    let worker = thread::Builder::new()
        .name("ips-enforcer".into())
        .spawn(move || enforcer_loop(enforcer, rx, expiry, attachment, profiles, hub_tx))?;
    let detection_stats = std::sync::Arc::new(std::sync::Mutex::new(
        crate::pipeline::DetectionStats::default(),
    ));
    let pipeline = if config.acquisition.is_empty() {
        None
    } else {
        info!(
            sources = config.acquisition.len(),
            scenarios = scenarios.len(),
            "Detection on."
        );
        Some(crate::pipeline::spawn(
            config.acquisition.clone(),
            crate::scenarios::Engine::new(scenarios, config.detection.max_buckets),
            saved_offsets,
            tx.clone(),
            stop.clone(),
            detection_stats.clone(),
        )?)
    };

    let list_status = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lists = if config.blocklist.is_empty() {
        None
    } else {
        Some(crate::blocklists::source::spawn(
            config.blocklist.clone(),
            tx.clone(),
            stop.clone(),
            list_status.clone(),
        )?)
    };
    let lapis = if config.crowdsec.is_empty() {
        None
    } else {
        Some(crate::blocklists::lapi::spawn(
            config.crowdsec.clone(),
            tx.clone(),
            stop.clone(),
        )?)
    };
    let handle = Handle {
        tx,
        default_duration: config.decisions.default_duration,
        detection: detection_stats,
        lists: list_status,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listen = config.api.listen;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| DaemonError::Bind {
                addr: listen,
                source,
            })?;
        info!(%listen, "Local API listening.");
        axum::serve(listener, api::router(handle))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(DaemonError::Runtime)
    });
    // Stop the sources; the pipeline saves its read positions and lets go of the enforcer.
    stop.stop();
    if let Some(p) = pipeline
        && p.join().is_err()
    {
        error!("The detection thread panicked.");
    }
    for (what, t) in [("blocklist", lists), ("LAPI", lapis), ("hub", pusher)] {
        if let Some(t) = t
            && t.join().is_err()
        {
            error!(what, "A source thread panicked.");
        }
    }
    // The router (and with it every Handle) is gone: the enforcer loop ends on its own.
    if worker.join().is_err() {
        error!("The enforcer thread panicked.");
    }
    info!("Stopped; the XDP program stays attached and keeps enforcing.");
    served
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot watch SIGTERM.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("Shutting down.");
}

fn enforcer_loop(
    mut enforcer: Enforcer,
    rx: mpsc::Receiver<Request>,
    expiry: Duration,
    mut attachment: loader::Attachment,
    profiles: crate::decisions::profiles::Profiles,
    hub: Option<mpsc::Sender<crate::hub::Signal>>,
) {
    let mut next_expiry = Instant::now() + expiry;
    loop {
        let wait = next_expiry.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(req) => handle(&mut enforcer, &mut attachment, &profiles, hub.as_ref(), req),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_expiry {
            if let Err(e) = enforcer.expire(now_ms()) {
                error!(error = %e, "Expiry failed; will retry.");
            }
            // Bouncers that have not pulled for a week start over with startup=true anyway.
            let _ = enforcer
                .store_mut()
                .prune_tombstones(now_ms() - 7 * 86_400_000);
            next_expiry = Instant::now() + expiry;
        }
    }
}

fn handle(
    enforcer: &mut Enforcer,
    attachment: &mut loader::Attachment,
    profiles: &crate::decisions::profiles::Profiles,
    hub: Option<&mpsc::Sender<crate::hub::Signal>>,
    req: Request,
) {
    let now = now_ms();
    match req {
        Request::Add(batch, reply) => {
            let _ = reply.send(enforcer.add(&batch, now).map_err(ApiError::from));
        }
        Request::Delete(value, origin, reply) => {
            let _ = reply.send(
                enforcer
                    .delete(&value, origin.as_deref(), now)
                    .map_err(ApiError::from),
            );
        }
        Request::List(value, reply) => {
            let _ = reply.send(
                enforcer
                    .store()
                    .list(now, value.as_ref())
                    .map_err(|e| ApiError::from(EnforcerError::from(e))),
            );
        }
        Request::AllowAdd(value, reason, reply) => {
            let _ = reply.send(
                enforcer
                    .allow_add(&value, &reason, "manual", now)
                    .map_err(ApiError::from),
            );
        }
        Request::AllowDelete(value, reply) => {
            let _ = reply.send(enforcer.allow_delete(&value).map_err(ApiError::from));
        }
        Request::AllowList(reply) => {
            let _ = reply.send(
                enforcer
                    .store()
                    .allow_list()
                    .map_err(|e| ApiError::from(EnforcerError::from(e))),
            );
        }
        Request::Status(reply) => {
            let _ = reply.send(status(enforcer, now).map_err(ApiError::from));
        }
        Request::Alert(alert) => {
            match enforcer.handle_alert(&alert, profiles, now) {
                Ok(stored) => {
                    // Bans are shared with the hub: the source and the scenario, no log lines.
                    if let (Some(hub), "ban", Some(value)) =
                        (hub, stored.outcome.as_str(), stored.value.as_deref())
                        && let Ok(value) = value.parse()
                    {
                        let _ = hub.send(crate::hub::Signal {
                            value,
                            scenario: alert.scenario.clone(),
                            time_ms: alert.last_ms,
                        });
                    }
                }
                Err(e) => {
                    error!(error = %e, scenario = %alert.scenario, source = %alert.source, "Cannot act on alert.");
                }
            }
        }
        Request::SaveOffsets(positions) => {
            if let Err(e) = enforcer.store_mut().save_offsets(&positions) {
                error!(error = %e, "Cannot save read positions.");
            }
        }
        Request::Alerts(limit, scenario, source, reply) => {
            let _ = reply.send(
                enforcer
                    .store()
                    .alerts(limit, scenario.as_deref(), source.as_deref())
                    .map_err(|e| ApiError::from(EnforcerError::from(e))),
            );
        }
        Request::AlertById(id, reply) => {
            let _ = reply.send(
                enforcer
                    .store()
                    .alert(id)
                    .map_err(|e| ApiError::from(EnforcerError::from(e))),
            );
        }
        Request::BouncerByKey(hash, reply) => {
            let r = enforcer
                .store()
                .bouncer_by_key(&hash)
                .map(|b| b.map(|b| b.name));
            let _ = reply.send(r.map_err(|e| ApiError::from(EnforcerError::from(e))));
        }
        Request::Stream(name, startup, reply) => {
            let r = (|| {
                let store = enforcer.store_mut();
                let last = store
                    .bouncers()?
                    .into_iter()
                    .find(|b| b.name == name)
                    .map_or(0, |b| b.last_pull_ms);
                let (new, deleted) = if startup || last == 0 {
                    (store.list(now, None)?, Vec::new())
                } else {
                    (store.created_since(last, now)?, store.deleted_since(last)?)
                };
                store.set_bouncer_pull(&name, now)?;
                Ok::<_, crate::decisions::StoreError>((new, deleted))
            })();
            let _ = reply.send(r.map_err(|e| ApiError::from(EnforcerError::from(e))));
        }
        Request::Covering(p, reply) => {
            let r = (|| {
                let max = if p.is_v4() { 32 } else { 128 };
                let mut out = Vec::new();
                for len in 0..=p.prefix_len().min(max) {
                    if let Ok(wider) = Prefix::new(p.addr(), len) {
                        out.extend(enforcer.store().list(now, Some(&wider))?);
                    }
                }
                Ok::<_, crate::decisions::StoreError>(out)
            })();
            let _ = reply.send(r.map_err(|e| ApiError::from(EnforcerError::from(e))));
        }
        Request::AddBouncer(name, hash, reply) => {
            let r = enforcer.store_mut().add_bouncer(&name, &hash, now);
            let _ = reply.send(r.map_err(|e| ApiError::from(EnforcerError::from(e))));
        }
        Request::Bouncers(reply) => {
            let r = enforcer.store().bouncers();
            let _ = reply.send(r.map_err(|e| ApiError::from(EnforcerError::from(e))));
        }
        Request::DeleteBouncer(name, reply) => {
            let r = enforcer.store_mut().delete_bouncer(&name);
            let _ = reply.send(r.map_err(|e| ApiError::from(EnforcerError::from(e))));
        }
        Request::RenewList(name, duration_ms, reply) => {
            let r = enforcer.renew_list(&name, duration_ms, now);
            let _ = reply.send(r.map_err(ApiError::from));
        }
        Request::Import(name, prepared, allow, duration_ms, reply) => {
            let _ = reply.send(
                enforcer
                    .import_prepared(&name, prepared, &allow, duration_ms, now)
                    .map_err(ApiError::from),
            );
        }
        Request::Detach(iface, reply) => {
            let dir = enforcer.maps().dir().to_owned();
            let result = loader::detach(&dir, &iface).and_then(|existed| {
                enforcer.store_mut().set_interface(&iface, None)?;
                attachment.interfaces.retain(|(n, _)| *n != iface);
                Ok(existed)
            });
            let _ = reply.send(result.map_err(ApiError::from));
        }
    }
}

/// Builds the status report from the store and the pinned maps.
pub fn status(enforcer: &Enforcer, now: i64) -> Result<Status, EnforcerError> {
    let store = enforcer.store();
    let maps = enforcer.maps();
    status_from(store, maps, now, true)
}

/// Status from a store and maps, with or without a running daemon.
pub fn status_from(
    store: &dyn crate::decisions::Store,
    maps: &KernelMaps,
    now: i64,
    daemon_running: bool,
) -> Result<Status, EnforcerError> {
    let recorded = store.interfaces()?;
    let interfaces = loader::pinned_interfaces(maps.dir())
        .into_iter()
        .map(|name| {
            let mode = recorded
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(|| "unknown".to_owned(), |(_, m)| m.clone());
            InterfaceStatus { name, mode }
        })
        .collect();
    let counters = maps.counters()?;
    let names = store.origins()?;
    let origins = counters
        .origin_drops
        .iter()
        .map(|(id, v4, v6)| OriginStatus {
            id: *id,
            name: names
                .iter()
                .find(|(i, _)| i == id)
                .map_or_else(|| format!("origin-{id}"), |(_, n)| n.clone()),
            dropped_v4: *v4,
            dropped_v6: *v6,
        })
        .collect();
    Ok(Status {
        daemon_running,
        pin_dir: maps.dir().display().to_string(),
        interfaces,
        maps: maps.fill()?,
        decisions: store.count_active(now)?,
        allowlist: store.allow_list()?.len() as u64,
        counters: counters.packets.into_iter().collect(),
        origins,
        detection: crate::pipeline::DetectionStats::default(),
    })
}
