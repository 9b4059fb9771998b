//! The service's worker: one thread that owns the decision service and the enforcer and runs
//! commands in order. Each command that decides something gets [`Changes`] back from the
//! decision service and hands them to the enforcer; nothing is read back.
use std::{
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use tracing::{debug, error, warn};

use super::{
    Command, ErrorKind, Handle, ImportList, ServiceError, StreamPull, millis, status::status_from,
};
use crate::{
    blocklists::Prepared,
    calendar::now_ms,
    decisions::{
        Changes, Decision, DecisionService, Diff, ImportReport, Origin, Outcome, STATE_INTERFACES,
        StoreError, StreamDelta,
    },
    enforcer::{Enforcer, MapCapacity, MapFill, loader, map_class},
    hub::Signal,
    prefix::Prefix,
};

/// Sources and prefixes in the status's top dropped lists.
const TOP_DROPS: usize = 10;

/// What the worker owns.
pub struct Worker {
    decisions: DecisionService,
    enforcer: Enforcer,
    attachment: Option<loader::Attachment>,
    hub: Option<mpsc::Sender<Signal>>,
    /// Where decided alerts are sent (`[[notification]]`); never waited for.
    notifiers: Option<crate::notify::Notifiers>,
    /// Alerts per scenario and outcome, detection-to-ban latency (for `/metrics`).
    live: crate::web::Live,
    expiry: Duration,
    /// Active decisions the start's reconcile could not put in the kernel.
    not_enforced: u64,
    /// Expiry failures not logged yet, and when one was last logged: a failure that repeats
    /// every tick (a full disk) is logged once a minute with its count.
    expiry_failures: (u64, Option<Instant>),
    /// Bumped by every decision that changed something.
    generation: u64,
    /// Every active decision as of a generation: what startup pulls get, made once for all the
    /// bouncers and agents that start together.
    everything: Option<(u64, Arc<Vec<Decision>>)>,
}

impl Worker {
    /// A worker over a reconciled enforcer. `attachment` keeps the program's links alive;
    /// `hub` receives a signal for every ban by detection.
    pub fn new(
        decisions: DecisionService,
        enforcer: Enforcer,
        attachment: Option<loader::Attachment>,
        hub: Option<mpsc::Sender<Signal>>,
        expiry: Duration,
    ) -> Self {
        Self {
            decisions,
            enforcer,
            attachment,
            hub,
            notifiers: None,
            live: crate::web::Live::default(),
            expiry,
            not_enforced: 0,
            expiry_failures: (0, None),
            generation: 0,
            everything: None,
        }
    }

    /// Records alerts and detection-to-ban latency into `live` (which `/metrics` shows).
    #[must_use]
    pub fn with_live(mut self, live: crate::web::Live) -> Self {
        self.live = live;
        self
    }

    /// Sends every decided alert to these destinations.
    #[must_use]
    pub fn with_notifiers(mut self, n: crate::notify::Notifiers) -> Self {
        self.notifiers = Some(n);
        self
    }

    /// Records what the start's reconcile could not put in the kernel (shown in `ips status`).
    #[must_use]
    pub fn with_not_enforced(mut self, n: u64) -> Self {
        self.not_enforced = n;
        self
    }

    /// Starts the worker thread; it ends when every [`Handle`] is gone.
    pub fn spawn(
        self,
        default_duration: Duration,
    ) -> std::io::Result<(Handle, thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let handle = Handle::new(tx, self.decisions.allowlist(), default_duration);
        let thread = thread::Builder::new()
            .name("ips-service".into())
            .spawn(move || self.run(&rx))?;
        Ok((handle, thread))
    }

    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        /// Decision rows expired per step.
        const EXPIRE_STEP: usize = 5_000;
        let mut next_expiry = Instant::now() + self.expiry;
        loop {
            let wait = next_expiry.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(cmd) => self.handle(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_expiry {
                let now = now_ms();
                self.follow_other_nodes(now);
                let mut more = false;
                match self.decide(now, |d| {
                    let (changes, more) = d.expire(now, EXPIRE_STEP)?;
                    Ok((more, changes))
                }) {
                    Ok(m) => more = m,
                    Err(e) => {
                        let (count, last) = &mut self.expiry_failures;
                        *count += 1;
                        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            error!(error = %e, failures = *count, "Expiry failed; will retry.");
                            *count = 0;
                            *last = Some(Instant::now());
                        }
                    }
                }
                if more {
                    // A mass expiry goes on at once, with what the queue holds served between
                    // its steps.
                    next_expiry = Instant::now();
                    continue;
                }
                if let Err(e) = self.decisions.prune(now) {
                    warn!(error = %e, "Cannot prune the bouncer stream's history.");
                }
                self.keep_pins();
                self.read_drop_samples(now);
                next_expiry = Instant::now() + self.expiry;
            }
        }
    }

    /// Runs one decision as a unit: its store writes commit only once the kernel took the
    /// changes they made. If the kernel refuses them (a full map), the store rolls back, every
    /// value the change touched is set in the kernel to what the store says again, and the
    /// caller gets the kernel's error: what the store calls banned is what the kernel drops.
    fn decide<T>(
        &mut self,
        now: i64,
        f: impl FnOnce(&mut DecisionService) -> Result<(T, Changes), StoreError>,
    ) -> Result<T, ServiceError> {
        self.decisions.begin()?;
        let (value, mut changes) = match f(&mut self.decisions) {
            Ok(done) => done,
            Err(e) => {
                if let Err(r) = self.decisions.rollback() {
                    error!(error = %r, "Cannot roll the store back.");
                }
                return Err(e.into());
            }
        };
        changes.new_origins = self.decisions.records().take_new_origins();
        if !changes.is_empty() {
            // An expiry that removed something, or any other change.
            self.generation += 1;
        }
        match self.enforcer.apply(&changes) {
            Ok(()) => match self.decisions.commit() {
                Ok(()) => Ok(value),
                Err(e) => {
                    // The store could not keep it (a full disk): neither does the kernel.
                    error!(error = %e, "The store cannot commit a decision; taking it back from the kernel.");
                    if let Err(r) = self.decisions.rollback() {
                        error!(error = %r, "Cannot roll the store back.");
                    }
                    self.restore(&changes, now);
                    Err(e.into())
                }
            },
            Err(e) => {
                warn!(error = %e, "The kernel refused a change; the store keeps what it had.");
                if let Err(r) = self.decisions.rollback() {
                    error!(error = %r, "Cannot roll the store back.");
                }
                self.restore(&changes, now);
                Err(e.into())
            }
        }
    }

    /// On a central node sharing its store with others (PostgreSQL): when they wrote, the
    /// kernel is reconciled with the store, and bouncers' startup pulls are made afresh.
    fn follow_other_nodes(&mut self, now: i64) {
        match self.decisions.refresh() {
            Ok(false) => {}
            Ok(true) => {
                self.generation += 1;
                let allow = self.decisions.current_allowlist();
                match self
                    .enforcer
                    .reconcile(self.decisions.store(), &allow.prefixes, now)
                {
                    Ok(r) => debug!(?r, "Other nodes wrote to the store; kernel reconciled."),
                    Err(e) => {
                        error!(error = %e, "Cannot reconcile the kernel with what other nodes wrote.");
                    }
                }
            }
            Err(e) => warn!(error = %e, "Cannot read what other nodes wrote to the store."),
        }
    }

    /// Reads the program's sample of dropped packets, and finds which ban drops the most
    /// dropped sources not looked up yet (a few per tick: each is a store lookup per prefix
    /// length).
    fn read_drop_samples(&mut self, now: i64) {
        /// Sources whose ban is looked up per tick.
        const RESOLVE_PER_TICK: usize = 16;
        self.enforcer.read_drop_samples(now);
        for source in self.enforcer.top_drops().unresolved(RESOLVE_PER_TICK, now) {
            let covering = match self.decisions.store().covering(&Prefix::host(source), now) {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "Cannot look up the ban of a dropped source.");
                    return;
                }
            };
            let most_specific = covering
                .iter()
                .map(|d| d.value)
                .max_by_key(Prefix::prefix_len);
            self.enforcer.top_drops_mut().resolve(source, most_specific);
        }
    }

    /// Pins the maps and links again if their pins were removed: enforcement must outlive the
    /// daemon, and `ips status` and `ips detach` find the program by its pins.
    fn keep_pins(&mut self) {
        // After `ips detach` of the last interface, the pins are gone on purpose.
        if self
            .attachment
            .as_ref()
            .is_none_or(|a| a.interfaces.is_empty())
        {
            return;
        }
        match self.enforcer.maps().repin() {
            Ok(0) => {}
            Ok(n) => warn!(maps = n, "The maps' pins were removed; pinned them again."),
            Err(e) => error!(error = %e, "The maps' pins were removed and cannot be restored."),
        }
        let dir = self.enforcer.maps().dir().to_owned();
        if let Some(a) = &mut self.attachment {
            match a.repin(&dir) {
                Ok(ifaces) if ifaces.is_empty() => {}
                Ok(ifaces) => warn!(
                    ?ifaces,
                    "The program's link pins were removed; pinned them again (it stayed attached)."
                ),
                Err(e) => {
                    error!(error = %e, "A link pin was removed and cannot be restored; the program stays attached while the daemon runs.")
                }
            }
        }
    }

    /// Sets every value that `changes` touched to what the store says (after a rollback):
    /// what reached the kernel before it refused the rest is taken back.
    fn restore(&mut self, changes: &Changes, now: i64) {
        let values: Vec<Prefix> = changes
            .bans
            .upsert
            .iter()
            .map(|(p, _)| *p)
            .chain(changes.bans.delete.iter().copied())
            .collect();
        let undo = self
            .decisions
            .store()
            .effective(&values, now)
            .map(|e| Changes {
                bans: Diff::from_effective(e),
                allowlist: changes
                    .allowlist
                    .as_ref()
                    .map(|_| self.decisions.current_allowlist()),
                new_origins: Vec::new(),
            });
        let restored = undo
            .map_err(ServiceError::from)
            .and_then(|undo| self.enforcer.apply(&undo).map_err(ServiceError::from));
        if let Err(e) = restored {
            error!(error = %e, "Cannot take a refused change back; reconciling the kernel with the store.");
            let allow = self.decisions.current_allowlist();
            if let Err(e) = self
                .enforcer
                .reconcile(self.decisions.store(), &allow.prefixes, now)
            {
                error!(error = %e, "Reconcile failed too.");
            }
        }
    }

    /// Replaces a list; if the kernel's maps cannot hold all of it, imports what fits (the
    /// entries the list has already, then new ones while there is room) and reports the rest.
    /// A bouncer's stream pull. A first pull gets every active decision, made once per
    /// generation; a later one its deltas.
    fn stream(&mut self, pull: &StreamPull, now: i64) -> Result<StreamDelta, ServiceError> {
        let d = &mut self.decisions;
        let first = pull.startup
            || d.store()
                .bouncers()?
                .iter()
                .find(|b| b.name == pull.bouncer)
                .is_none_or(|b| b.last_pull_ms == 0);
        if !first {
            return Ok(d.records().stream(&pull.bouncer, false, now)?);
        }
        let active = match &self.everything {
            Some((g, all)) if *g == self.generation => all.clone(),
            _ => {
                let all = Arc::new(d.store().list(now, None)?);
                self.everything = Some((self.generation, all.clone()));
                all
            }
        };
        d.records().set_bouncer_pull(&pull.bouncer, now)?;
        Ok(StreamDelta {
            active,
            ..StreamDelta::default()
        })
    }

    /// An agent's alerts are stored; the bans among them are applied as `machine:<name>`, as a
    /// source's are (the guard leaves out what no source may ban).
    fn agent_push(
        &mut self,
        push: crate::service::AgentPush,
        now: i64,
    ) -> Result<crate::service::PushReport, ServiceError> {
        let origin =
            Origin::machine(&push.machine).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let mut bans = Vec::new();
        for a in &push.alerts {
            self.decisions.records().add_alert(a)?;
            if let crate::decisions::Outcome::Ban { value, duration_ms } = a.outcome {
                bans.push(crate::decisions::NewDecision {
                    value,
                    origin: origin.clone(),
                    reason: a.scenario.clone(),
                    duration_ms,
                });
            }
        }
        // The alerts are kept even if the kernel cannot take the bans (a full map): the agent
        // does not send them again.
        let banned = if bans.is_empty() {
            0
        } else {
            match self.decide(now, |d| d.ban(bans, crate::decisions::BanMode::Source, now)) {
                Ok(added) => added.len(),
                Err(e) => {
                    warn!(machine = %push.machine, error = %e, "Cannot apply an agent's bans.");
                    0
                }
            }
        };
        if let Some(n) = &self.notifiers {
            for a in &push.alerts {
                n.notify(a);
            }
        }
        self.decisions
            .records()
            .set_seen(&push.machine, now, &push.version)?;
        Ok(crate::service::PushReport {
            stored: push.alerts.len(),
            banned,
        })
    }

    fn import(&mut self, list: ImportList, now: i64) -> Result<ImportReport, ServiceError> {
        let ImportList {
            name,
            prepared,
            allow_version,
            duration,
        } = list;
        let ms = millis(duration);
        let started = Instant::now();
        debug!(list = %name, "Importing a list.");
        let first = prepared.clone();
        let mut report = match self.decide(now, |d| {
            d.replace_list(&name, first, allow_version, ms, now)
        }) {
            Err(e) if e.kind() == ErrorKind::Capacity => {
                let (fitting, left_out) = self.fitting(&name, prepared)?;
                warn!(list = %name, left_out, error = %e, "The list does not fit in the kernel's maps; importing what fits.");
                let mut report = self.decide(now, |d| {
                    d.replace_list(&name, fitting, allow_version, ms, now)
                })?;
                report.not_fitted = left_out;
                report
            }
            other => other?,
        };
        report.took.kernel_ms =
            (started.elapsed().as_millis() as u64).saturating_sub(report.took.store_ms);
        Ok(report)
    }

    /// The part of `prepared` that fits in the kernel now, and how many entries were left
    /// out: the list's current entries stay, new ones go in while their map has room.
    fn fitting(&self, name: &str, mut prepared: Prepared) -> Result<(Prepared, u64), ServiceError> {
        let maps = self.enforcer.maps();
        let (fill, capacity) = (maps.fill()?, maps.capacity());
        let current = self
            .decisions
            .store()
            .list_values(&Origin::list(name).map_err(StoreError::from)?)?;
        let mut room = room(&fill, &capacity);
        // The list's entries that leave free their slots.
        for p in &current {
            if prepared.prefixes.binary_search(p).is_err() {
                room[map_class(p)] += 1;
            }
        }
        let mut left_out = 0u64;
        prepared.prefixes.retain(|p| {
            if current.binary_search(p).is_ok() {
                return true;
            }
            let r = &mut room[map_class(p)];
            if *r > 0 {
                *r -= 1;
                true
            } else {
                left_out += 1;
                false
            }
        });
        Ok((prepared, left_out))
    }

    fn handle(&mut self, cmd: Command) {
        let now = now_ms();
        if cmd.writes_decisions() {
            self.generation += 1;
        }
        let d = &mut self.decisions;
        match cmd {
            Command::Ban(ban, reply) => {
                let r = self.decide(now, |d| d.ban(ban.decisions, ban.mode, now));
                let _ = reply.send(r);
            }
            Command::Unban(u, reply) => {
                let r = self.decide(now, |d| d.unban(&u.value, u.origin.as_ref(), now));
                let _ = reply.send(r);
            }
            Command::Decisions(value, reply) => {
                let _ = reply.send(d.store().list(now, value.as_ref()).map_err(Into::into));
            }
            Command::Page(after, limit, origin, reply) => {
                let r = d.store().page(now, after.as_ref(), limit, origin.as_ref());
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Covering(value, reply) => {
                let _ = reply.send(d.store().covering(&value, now).map_err(Into::into));
            }
            Command::Allow(value, reason, reply) => {
                let r = self.decide(now, |d| d.allow_add(&value, &reason, now));
                let _ = reply.send(r);
            }
            Command::Disallow(value, reply) => {
                let r = self.decide(now, |d| d.allow_delete(&value));
                let _ = reply.send(r);
            }
            Command::AllowEntries(reply) => {
                let _ = reply.send(d.store().allow_list().map_err(Into::into));
            }
            Command::Status(reply) => {
                let r = status_from(d.store(), self.enforcer.maps(), now, true).map(|mut s| {
                    s.not_enforced = self.not_enforced;
                    let names = d.store().origins().unwrap_or_default();
                    let name = |id: u32| {
                        names
                            .iter()
                            .find(|(i, _)| *i == id)
                            .map_or_else(|| format!("origin-{id}"), |(_, n)| n.clone())
                    };
                    s.top = self.enforcer.top_drops().report(TOP_DROPS, now, &name);
                    s
                });
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Alert(alert) => match self.decide(now, |d| d.on_alert(&alert, now)) {
                Ok(stored) => {
                    let (outcome, latency) = match &stored.outcome {
                        Outcome::Ban { .. } => {
                            let since = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0.0, |d| d.as_secs_f64());
                            ("ban", Some(since - alert.last_ms as f64 / 1000.0))
                        }
                        Outcome::Simulated { .. } => ("simulated", None),
                        Outcome::Allowlisted { .. } => ("allowlisted", None),
                        Outcome::Refused { .. } => ("refused", None),
                    };
                    self.live.alert(&alert.scenario, outcome, latency);
                    // After the ban is in the store and the kernel: a notification never
                    // delays one.
                    if let Some(n) = &self.notifiers {
                        n.notify(&stored);
                    }
                    // Bans are shared with the hub: the source and the scenario, no log lines.
                    if let (Some(hub), Outcome::Ban { value, .. }) = (&self.hub, &stored.outcome) {
                        let _ = hub.send(Signal {
                            value: *value,
                            scenario: alert.scenario.clone(),
                            time_ms: alert.last_ms,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::Capacity => {
                    self.live.alert(&alert.scenario, "refused", None);
                    error!(error = %e, scenario = %alert.scenario, source = %alert.source, "Cannot ban: the kernel's map is full.");
                    if let Err(e) = self.decisions.refused_alert(&alert, e.to_string()) {
                        error!(error = %e, "Cannot record the alert.");
                    }
                }
                Err(e) => {
                    error!(error = %e, scenario = %alert.scenario, source = %alert.source, "Cannot act on alert.");
                }
            },
            Command::SaveState(kind, rows) => {
                if let Err(e) = d.records().save_state(kind, &rows) {
                    error!(error = %e, kind, "Cannot save local state.");
                }
            }
            Command::Alerts(query, reply) => {
                let _ = reply.send(d.store().alerts(&query).map_err(Into::into));
            }
            Command::AlertById(id, reply) => {
                let _ = reply.send(d.store().alert(id).map_err(Into::into));
            }
            Command::BouncerByKey(hash, reply) => {
                let r = d.store().bouncer_by_key(&hash);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Stream(pull, reply) => {
                let _ = reply.send(self.stream(&pull, now));
            }
            Command::AddBouncer(name, hash, role, reply) => {
                let r = d.records().add_bouncer(&name, &hash, role, now);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::AgentPush(push, reply) => {
                let r = self.agent_push(push, now);
                let _ = reply.send(r);
            }
            Command::AlertsAfter(after, limit, reply) => {
                let _ = reply.send(d.store().alerts_after(after, limit).map_err(Into::into));
            }
            Command::Reload(r, reply) => {
                let r = *r;
                d.set_profiles(r.profiles);
                self.notifiers = Some(r.notifiers);
                let done = self.decide(now, |d| {
                    Ok(((), d.sync_config_allowlist(&r.allowlist, now)?))
                });
                let _ = reply.send(done);
            }
            Command::State(kind, reply) => {
                let _ = reply.send(d.store().state(kind).map_err(Into::into));
            }
            Command::Seen(name, version, reply) => {
                let r = d.records().set_seen(&name, now, &version);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Bouncers(reply) => {
                let _ = reply.send(d.store().bouncers().map_err(Into::into));
            }
            Command::DeleteBouncer(name, reply) => {
                let _ = reply.send(d.records().delete_bouncer(&name).map_err(Into::into));
            }
            Command::RenewList(renew, reply) => {
                let r = d.renew_list(&renew.name, millis(renew.duration), now);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Lists(reply) => {
                let _ = reply.send(Ok(d.store().lists(now)));
            }
            Command::ImportList(list, reply) => {
                let _ = reply.send(self.import(*list, now));
            }
            Command::Detach(iface, reply) => {
                let dir = self.enforcer.maps().dir().to_owned();
                let r = loader::detach(&dir, &iface)
                    .map_err(ServiceError::from)
                    .and_then(|existed| {
                        d.records().delete_state(STATE_INTERFACES, &iface)?;
                        // The pin is gone; letting go of our fd takes the program off.
                        if let Some(a) = &mut self.attachment {
                            a.release(&iface);
                        }
                        Ok(existed)
                    });
                let _ = reply.send(r);
            }
        }
    }
}

/// Free entries in each ban map, in [`map_class`] order.
fn room(fill: &MapFill, capacity: &MapCapacity) -> [u64; 4] {
    [
        capacity.hosts_v4.saturating_sub(fill.hosts_v4),
        capacity.nets_v4.saturating_sub(fill.nets_v4),
        capacity.hosts_v6.saturating_sub(fill.hosts_v6),
        capacity.nets_v6.saturating_sub(fill.nets_v6),
    ]
}
