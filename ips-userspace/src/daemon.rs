//! `ips run`: startup and shutdown. Opens the store, loads the program, reconciles the maps with
//! the store, attaches, then starts the decision service's worker, the producers (detection,
//! list sources, LAPI pulls, the hub pusher) and the local API; on SIGINT or SIGTERM it stops
//! them in that order. The protocol they speak is [`crate::service`].
use std::thread;

use tracing::{error, info, warn};

use crate::{
    acquisition::{Position, Stop},
    api,
    calendar::now_ms,
    config::Config,
    decisions::{
        DecisionService, STATE_INTERFACES, STATE_OFFSETS,
        profiles::{Profiles, local_addresses},
    },
    enforcer::{Enforcer, EnforcerError, KernelMaps, loader},
    schedule,
    service::Worker,
};

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
    /// The TLS pair did not load.
    #[error("api.cert / api.key: {0}")]
    Tls(String),
    /// The operator's socket could not be made.
    #[error("cannot listen on {}: {source}", path.display())]
    Socket {
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The scenarios or a source could not be set up.
    #[error("detection: {0}")]
    Detection(String),
    /// No interface to attach to.
    #[error(
        "no interface to attach to: pass --iface IF, or set enforcer.interfaces in the config (\"auto\" picks the default route's interface)"
    )]
    NoInterface,
    /// Another daemon runs with this store.
    #[error(
        "another `ips run` uses this store ({path} is locked{by}); stop it first, or give this one its own [store] path"
    )]
    Locked {
        /// The lock file.
        path: String,
        /// `, by pid N` when the file says.
        by: String,
    },
}

/// Takes the daemon's lock, next to the store (`ips.db` -> `ips.db.lock`), before anything
/// touches the kernel: a second daemon with the same config stops here. Held until the file is
/// closed (the daemon exits, however it exits).
fn lock(store: &std::path::Path) -> Result<std::fs::File, DaemonError> {
    use std::{io::Write, os::fd::AsRawFd};

    let path = std::path::PathBuf::from(format!("{}.lock", store.display()));
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // SAFETY: flock on an fd we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        let pid = pid.trim();
        return Err(DaemonError::Locked {
            path: path.display().to_string(),
            by: if pid.is_empty() {
                String::new()
            } else {
                format!(", by pid {pid}")
            },
        });
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Runs the daemon until SIGINT or SIGTERM. The XDP program stays attached afterwards (its link
/// is pinned); `ips detach` removes it.
pub fn run(
    config: Config,
    config_path: &std::path::Path,
    extra_interfaces: &[String],
) -> Result<(), DaemonError> {
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
    loader::ensure_bpffs(&dir)?;
    let interfaces = loader::resolve_interfaces(&interfaces)?;
    let _lock = lock(&config.store.path)?;
    for iface in &interfaces {
        loader::require_interface(iface)?;
    }
    let store = crate::decisions::open_store(&config.store)?;
    let ebpf = loader::load(
        &dir,
        loader::Capacity {
            hosts: config.enforcer.max_hosts,
            nets: config.enforcer.max_prefixes,
        },
    )?;
    let mut enforcer = Enforcer::new(KernelMaps::open(&dir)?);
    let local = local_addresses();
    let profiles = Profiles::new(config.profiles.clone(), &local);
    let mut protected: Vec<crate::prefix::Prefix> = local
        .iter()
        .map(|a| crate::prefix::Prefix::host(*a))
        .collect();
    protected.extend(&config.decisions.management);
    // An agent never bans the way to its central node.
    protected.extend(
        config
            .central
            .as_ref()
            .and_then(crate::central::CentralConfig::address)
            .map(crate::prefix::Prefix::host),
    );
    let mut decisions =
        DecisionService::new(store, profiles)?.with_guard(config.decisions.min_prefix(), protected);
    // Maps first, then attach: a freshly attached program starts with every ban in place. The
    // reconcile below sets the whole kernel, so these two calls' changes are not applied.
    decisions.sync_config_allowlist(&config.allowlist.entries, now_ms())?;
    decisions.expire(now_ms(), usize::MAX)?;
    let allow = decisions.current_allowlist();
    let reconciled = enforcer.reconcile(decisions.store(), &allow.prefixes, now_ms())?;
    let fill = enforcer.maps().fill()?;
    for (what, n, cap) in crate::service::nearly_full(&fill, &enforcer.maps().capacity()) {
        warn!(
            map = what,
            fill = n,
            capacity = cap,
            "A ban map is over 90% full."
        );
    }
    let attachment = loader::attach(ebpf, &dir, &interfaces, config.enforcer.mode)?;
    let scenarios = config
        .detection
        .scenarios()
        .map_err(|e| DaemonError::Detection(e.to_string()))?;
    let saved_offsets: Vec<Position> = decisions
        .store()
        .state(STATE_OFFSETS)?
        .iter()
        .filter_map(|(k, v)| Position::from_row(k, v))
        .collect();
    // A reused link keeps the mode recorded when it was first attached.
    let modes: Vec<(String, String)> = attachment
        .interfaces
        .iter()
        .filter(|(_, mode)| mode != "reused")
        .cloned()
        .collect();
    decisions.records().save_state(STATE_INTERFACES, &modes)?;

    let stop = Stop::default();
    let mut fixed = Vec::new();
    // What every source reports, for `ips blocklist status`.
    let sources = std::sync::Arc::default();
    let hub = config.hub.clone().map(|h| {
        let (pusher, tx) = crate::hub::Pusher::new(h, &sources);
        fixed.push((
            "ips-hub-push",
            vec![Box::new(pusher) as Box<dyn schedule::Task>],
        ));
        tx
    });
    let live = crate::web::Live::default();
    let worker = Worker::new(
        decisions,
        enforcer,
        Some(attachment),
        hub,
        config.enforcer.expiry_interval,
    )
    .with_not_enforced(reconciled.not_fitted as u64)
    .with_notifiers(crate::notify::Notifiers::start(&config.notification))
    .with_live(live.clone());
    let (mut handle, worker) = worker.spawn(config.decisions.default_duration)?;
    handle.lists = sources;
    if config.acquisition.is_empty() {
        warn!(
            "No log source ([[acquisition]]): nothing is being detected; only lists and the API ban. `ips config init` writes one for the services of this host."
        );
    }
    let producers = Producers {
        detection: start_detection(&config, &handle, scenarios, saved_offsets, None)?
            .map(|(d, _)| d),
        lists: start_lists(&config, &handle)?,
    };
    if let Some(central) = &config.central {
        let push = crate::central::PushTask::new(central.clone(), handle.clone())
            .map_err(|e| DaemonError::Detection(format!("[central]: {e}")))?;
        info!(url = %central.url, "Reporting to a central node.");
        fixed.push(("ips-central", vec![Box::new(push)]));
    }
    let mut threads = Vec::new();
    for (name, tasks) in fixed {
        threads.push((name, schedule::spawn(name, tasks, stop.clone())?));
    }
    // Reloads (SIGHUP, `ips reload`) are done on a thread of their own that owns the
    // producers; the API's handle carries the way to it.
    let (reload_tx, reload_rx) = std::sync::mpsc::channel();
    let reloader = Reloader {
        path: config_path.to_owned(),
        running: config.clone(),
        producers,
        handle: handle.clone(),
        local,
    };
    let reloader = thread::Builder::new()
        .name("ips-reload".into())
        .spawn(move || reloader.serve(&reload_rx))?;
    handle.reload = Some(reload_tx.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let limits = api::serve::Limits::from(&config.api);
    let api_config = config.api.clone();
    let web = config.web.address().map_err(DaemonError::Detection)?;
    let served = runtime.block_on(async move {
        use api::serve::{Listener, Operators, bind_socket, serve};
        let operators = Operators::new(api_config.group.clone());
        let socket = api_config.socket.clone();
        let unix = bind_socket(&socket, &operators).map_err(|source| DaemonError::Socket {
            path: socket.clone(),
            source,
        })?;
        info!(socket = %socket.display(), group = %api_config.group, "Operator API listening.");
        let mut listeners = vec![Listener::Unix(unix, socket.clone(), operators)];
        if let Some(listen) = api_config.listen {
            let tls = match (&api_config.cert, &api_config.key) {
                (Some(cert), Some(key)) => Some(
                    api::tls::acceptor(cert, key)
                        .map_err(|e| DaemonError::Tls(e.to_string()))?,
                ),
                _ => None,
            };
            let tcp = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| DaemonError::Bind {
                    addr: listen,
                    source,
                })?;
            info!(%listen, tls = tls.is_some(), "TCP API listening (bouncers, agents, admin tokens).");
            listeners.push(Listener::Tcp(tcp, tls));
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            crate::systemd::notify("STOPPING=1");
            let _ = stop_tx.send(true);
        });
        tokio::spawn(reload_on_sighup(reload_tx, stop_rx.clone()));
        let mut servers = Vec::new();
        if let Some(addr) = web {
            // `/metrics` on its own listener; a port taken is said and the rest goes on.
            match tokio::net::TcpListener::bind(addr).await {
                Ok(tcp) => {
                    info!(listen = %addr, "Dashboard at /, metrics at /metrics.");
                    let mut stop = stop_rx.clone();
                    let stopped = async move { drop(stop.wait_for(|s| *s).await) };
                    let history = crate::web::History::default();
                    let mut stop = stop_rx.clone();
                    let sampling_stopped = async move { drop(stop.wait_for(|s| *s).await) };
                    tokio::spawn(crate::web::sample(
                        handle.clone(),
                        history.clone(),
                        sampling_stopped,
                    ));
                    let router = crate::web::router(handle.clone(), history, live);
                    servers.push(tokio::spawn(serve(
                        Listener::Tcp(tcp, None),
                        router,
                        limits,
                        stopped,
                    )));
                }
                Err(e) => warn!(listen = %addr, error = %e, "Cannot serve metrics ([web] listen)."),
            }
        }
        let router = api::router(handle, api_config.server_names.clone());
        servers.extend(listeners.into_iter().map(|l| {
            let mut stop = stop_rx.clone();
            let stopped = async move { drop(stop.wait_for(|s| *s).await) };
            tokio::spawn(serve(l, router.clone(), limits, stopped))
        }));
        crate::systemd::notify("READY=1\nSTATUS=Enforcing; API listening.");
        for s in servers {
            let _ = s.await;
        }
        let _ = std::fs::remove_file(&socket);
        Ok(())
    });
    // Every task of the runtime goes (with the API's handles and the SIGHUP task, the ways to
    // the reloader, which then hands the producers back).
    drop(runtime);
    // Stop the producers; the pipeline saves its read positions and lets go of the service.
    stop.stop();
    match reloader.join() {
        Ok(producers) => producers.stop(),
        Err(_) => error!("The reload thread panicked."),
    }
    join_all(threads);
    // The router (and with it every Handle) is gone: the worker ends on its own.
    if worker.join().is_err() {
        error!("The decision service's thread panicked.");
    }
    info!("Stopped; the XDP program stays attached and keeps enforcing.");
    served
}

fn join_all(threads: Vec<(&str, thread::JoinHandle<()>)>) {
    for (name, t) in threads {
        if t.join().is_err() {
            error!(name, "A scheduler thread panicked.");
        }
    }
}

/// Detection: the sources and the pipeline thread, with a stop of their own (a reload stops
/// and starts them without stopping the rest).
struct Detection {
    stop: Stop,
    thread: thread::JoinHandle<crate::scenarios::Engine>,
}

/// Blocklist and LAPI sources, with a stop of their own.
struct Lists {
    stop: Stop,
    threads: Vec<(&'static str, thread::JoinHandle<()>)>,
}

/// What a reload may stop and start again.
struct Producers {
    detection: Option<Detection>,
    lists: Option<Lists>,
}

impl Producers {
    fn stop(self) {
        if let Some(d) = self.detection {
            d.stop.stop();
            if d.thread.join().is_err() {
                error!("The detection thread panicked.");
            }
        }
        if let Some(l) = self.lists {
            l.stop.stop();
            join_all(l.threads);
        }
    }
}

/// Starts the detection pipeline if there are log sources; `carried` is the engine of the one
/// it replaces, whose buckets of unchanged scenarios carry over. Returns it and how many
/// buckets were kept.
fn start_detection(
    config: &Config,
    handle: &crate::service::Handle,
    scenarios: Vec<crate::scenarios::Scenario>,
    saved: Vec<Position>,
    carried: Option<crate::scenarios::Engine>,
) -> Result<Option<(Detection, usize)>, DaemonError> {
    if config.acquisition.is_empty() {
        return Ok(None);
    }
    info!(
        sources = config.acquisition.len(),
        scenarios = scenarios.len(),
        "Detection on."
    );
    let mut engine = crate::scenarios::Engine::new(scenarios, config.detection.max_buckets);
    let kept = carried.map_or(0, |old| engine.carry_over(old));
    let stop = Stop::default();
    let thread = crate::pipeline::spawn(
        config.acquisition.clone(),
        engine,
        saved,
        handle.clone(),
        stop.clone(),
        handle.detection.clone(),
    )?;
    Ok(Some((Detection { stop, thread }, kept)))
}

/// Named groups of scheduled tasks, one thread each.
type TaskGroups = Vec<(&'static str, Vec<Box<dyn schedule::Task>>)>;

/// The blocklist and LAPI (and central pull) tasks of `config`, made before anything is
/// stopped, so that a config they refuse leaves the running ones alone.
fn list_tasks(config: &Config, handle: &crate::service::Handle) -> Result<TaskGroups, DaemonError> {
    let mut groups = Vec::new();
    if !config.blocklist.is_empty() {
        let tasks =
            crate::blocklists::source::tasks(config.blocklist.clone(), handle, &handle.lists);
        groups.push(("ips-blocklists", tasks));
    }
    // The central node's decisions are pulled like a LAPI's.
    let mut lapis = config.crowdsec.clone();
    lapis.extend(
        config
            .central
            .as_ref()
            .map(crate::central::CentralConfig::pull),
    );
    if !lapis.is_empty() {
        let tasks = crate::blocklists::lapi::tasks(lapis, handle, &handle.lists)
            .map_err(|e| DaemonError::Detection(format!("[[crowdsec]] / [central]: {e}")))?;
        groups.push(("ips-lapi", tasks));
    }
    Ok(groups)
}

fn spawn_lists(groups: TaskGroups) -> Result<Option<Lists>, DaemonError> {
    if groups.is_empty() {
        return Ok(None);
    }
    let stop = Stop::default();
    let mut threads = Vec::new();
    for (name, tasks) in groups {
        threads.push((name, schedule::spawn(name, tasks, stop.clone())?));
    }
    Ok(Some(Lists { stop, threads }))
}

fn start_lists(
    config: &Config,
    handle: &crate::service::Handle,
) -> Result<Option<Lists>, DaemonError> {
    spawn_lists(list_tasks(config, handle)?)
}

/// The reload thread's state: the file, what runs, and the parts a reload restarts.
struct Reloader {
    path: std::path::PathBuf,
    running: Config,
    producers: Producers,
    handle: crate::service::Handle,
    local: Vec<std::net::IpAddr>,
}

impl Reloader {
    /// Serves reload requests until every sender is gone; hands the producers back.
    fn serve(
        mut self,
        requests: &std::sync::mpsc::Receiver<crate::service::ReloadRequest>,
    ) -> Producers {
        while let Ok(reply) = requests.recv() {
            crate::systemd::reloading();
            let result = self.reload();
            match &result {
                Ok(r) => info!(
                    path = %self.path.display(),
                    applied = ?r.applied,
                    need_restart = ?r.need_restart,
                    buckets_kept = r.buckets_kept,
                    "Reloaded the config."
                ),
                Err(e) => error!(
                    path = %self.path.display(),
                    error = %e,
                    "The new config has errors: refused, the running one is kept."
                ),
            }
            crate::systemd::notify("READY=1");
            let _ = reply.send(result);
        }
        self.producers
    }

    fn reload(&mut self) -> Result<crate::reload::ReloadReport, String> {
        let new = Config::load(&self.path, false).map_err(|e| e.to_string())?;
        let plan = crate::reload::plan(&self.running, &new);
        for section in &plan.need_restart {
            warn!(
                section,
                "This section changed but is read only at start: restart ips to apply it."
            );
        }
        let new = crate::reload::effective(&self.running, new);
        // Everything that can refuse the new config is made before anything is stopped.
        let scenarios = if plan.detection {
            Some(new.detection.scenarios().map_err(|e| e.to_string())?)
        } else {
            None
        };
        let lists = if plan.lists {
            Some(list_tasks(&new, &self.handle).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let mut report = crate::reload::ReloadReport {
            applied: plan.applied.clone(),
            need_restart: plan.need_restart.clone(),
            buckets_kept: 0,
        };
        if plan.service {
            let profiles = Profiles::new(new.profiles.clone(), &self.local);
            let notifiers = crate::notify::Notifiers::start(&new.notification);
            let reload = crate::service::Reload {
                profiles,
                allowlist: new.allowlist.entries.clone(),
                notifiers,
            };
            self.handle
                .call_blocking(|r| crate::service::Command::Reload(Box::new(reload), r))
                .map_err(|e| e.to_string())?;
        }
        if let Some(scenarios) = scenarios {
            let old = self.producers.detection.take().and_then(|d| {
                d.stop.stop();
                d.thread.join().ok()
            });
            // The old pipeline saved its read positions on the way out (the service takes
            // commands in order), so the new sources resume where it stopped.
            let saved: Vec<Position> = self
                .handle
                .call_blocking(|r| crate::service::Command::State(STATE_OFFSETS, r))
                .map_err(|e| e.to_string())?
                .iter()
                .filter_map(|(k, v)| Position::from_row(k, v))
                .collect();
            match start_detection(&new, &self.handle, scenarios, saved, old)
                .map_err(|e| e.to_string())?
            {
                Some((d, kept)) => {
                    self.producers.detection = Some(d);
                    report.buckets_kept = kept as u64;
                }
                None => {
                    warn!("No log source ([[acquisition]]): nothing is being detected any more.")
                }
            }
        }
        if let Some(groups) = lists {
            if let Some(l) = self.producers.lists.take() {
                l.stop.stop();
                join_all(l.threads);
            }
            self.producers.lists = spawn_lists(groups).map_err(|e| e.to_string())?;
        }
        self.running = new;
        Ok(report)
    }
}

/// Sends a reload request for every SIGHUP, until the daemon stops.
async fn reload_on_sighup(
    reload: std::sync::mpsc::Sender<crate::service::ReloadRequest>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot watch SIGHUP: reload with `ips reload`.");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = async { drop(stop.wait_for(|s| *s).await) } => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                info!("SIGHUP: reloading the config.");
                let (reply, answer) = tokio::sync::oneshot::channel();
                if reload.send(reply).is_err() {
                    return;
                }
                let _ = answer.await;
            }
        }
    }
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
