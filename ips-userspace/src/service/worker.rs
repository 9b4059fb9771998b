//! The service's worker: one thread that owns the decision service and the enforcer and runs
//! commands in order. Each command that decides something gets [`Changes`] back from the
//! decision service and hands them to the enforcer; nothing is read back.
use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use tracing::{error, warn};

use super::{Command, Handle, ImportList, ServiceError, millis, status::status_from};
use crate::{
    calendar::now_ms,
    decisions::{Changes, DecisionService, Outcome, STATE_INTERFACES},
    enforcer::{Enforcer, loader},
    hub::Signal,
};

/// What the worker owns.
pub struct Worker {
    decisions: DecisionService,
    enforcer: Enforcer,
    attachment: Option<loader::Attachment>,
    hub: Option<mpsc::Sender<Signal>>,
    expiry: Duration,
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
            expiry,
        }
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
                match self.decisions.expire(now) {
                    Ok(changes) => {
                        if let Err(e) = self.enforcer.apply(&changes) {
                            error!(error = %e, "Cannot remove expired bans from the kernel.");
                        }
                    }
                    Err(e) => error!(error = %e, "Expiry failed; will retry."),
                }
                if let Err(e) = self.decisions.prune(now) {
                    warn!(error = %e, "Cannot prune the bouncer stream's history.");
                }
                next_expiry = Instant::now() + self.expiry;
            }
        }
    }

    /// Mirrors `changes` into the kernel and passes `value` on.
    fn apply<T>(&mut self, (value, changes): (T, Changes)) -> Result<T, ServiceError> {
        self.enforcer.apply(&changes)?;
        Ok(value)
    }

    fn handle(&mut self, cmd: Command) {
        let now = now_ms();
        let d = &mut self.decisions;
        match cmd {
            Command::Ban(ban, reply) => {
                let r = d
                    .ban(ban.decisions, ban.mode, now)
                    .map_err(ServiceError::from);
                let _ = reply.send(r.and_then(|x| self.apply(x)));
            }
            Command::Unban(u, reply) => {
                let r = d.unban(&u.value, u.origin.as_ref(), now);
                let _ = reply.send(r.map_err(ServiceError::from).and_then(|x| self.apply(x)));
            }
            Command::Decisions(value, reply) => {
                let _ = reply.send(d.store().list(now, value.as_ref()).map_err(Into::into));
            }
            Command::Covering(value, reply) => {
                let _ = reply.send(d.store().covering(&value, now).map_err(Into::into));
            }
            Command::Allow(value, reason, reply) => {
                let r = d.allow_add(&value, &reason, now);
                let _ = reply.send(r.map_err(ServiceError::from).and_then(|x| self.apply(x)));
            }
            Command::Disallow(value, reply) => {
                let r = d.allow_delete(&value);
                let _ = reply.send(r.map_err(ServiceError::from).and_then(|x| self.apply(x)));
            }
            Command::AllowEntries(reply) => {
                let _ = reply.send(d.store().allow_list().map_err(Into::into));
            }
            Command::Status(reply) => {
                let r = status_from(d.store(), self.enforcer.maps(), now, true);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Alert(alert) => match d.on_alert(&alert, now) {
                Ok((stored, changes)) => {
                    if let Err(e) = self.enforcer.apply(&changes) {
                        error!(error = %e, scenario = %alert.scenario, source = %alert.source, "Cannot write a detection ban to the kernel.");
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
                let r = d.store().bouncer_by_key(&hash).map(|b| b.map(|b| b.name));
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Stream(pull, reply) => {
                let r = d.records().stream(&pull.bouncer, pull.startup, now);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::AddBouncer(name, hash, reply) => {
                let r = d.records().add_bouncer(&name, &hash, now);
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
            Command::ImportList(list, reply) => {
                let ImportList {
                    name,
                    prepared,
                    allow_version,
                    duration,
                } = *list;
                let r = d
                    .replace_list(&name, prepared, allow_version, millis(duration), now)
                    .map_err(ServiceError::from)
                    .and_then(|(mut report, changes)| {
                        let started = Instant::now();
                        self.enforcer.apply(&changes)?;
                        report.took.kernel_ms = started.elapsed().as_millis() as u64;
                        Ok(report)
                    });
                let _ = reply.send(r);
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
