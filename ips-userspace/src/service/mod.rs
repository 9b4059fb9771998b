//! The protocol that producers speak to the decision service: named [`Command`]s, each with a
//! typed reply (`Result<T, ServiceError>`), a [`Handle`] with one method per command, and the
//! [`worker`] that owns the [`DecisionService`](crate::decisions::DecisionService) and the
//! [`Enforcer`](crate::enforcer::Enforcer) and runs the commands in order on one thread.
//!
//! The API maps [`ServiceError::kind`] to HTTP status codes; nothing here knows HTTP.
use std::{
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{
    blocklists::{Prepared, source::SourceStatus},
    decisions::{
        AlertQuery, AllowEntry, Allowlist, AllowlistWatch, BanMode, Bouncer, Cursor, Decision,
        ImportReport, NewDecision, Origin, Page, Role, StoreError, StoredAlert, StreamDelta,
    },
    enforcer::EnforcerError,
    pipeline::DetectionStats,
    prefix::Prefix,
    scenarios::Alert,
};

mod status;
pub mod worker;

pub use status::{InterfaceStatus, OriginStatus, Status, nearly_full, status_from};
pub use worker::Worker;

/// What kind of failure a [`ServiceError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is wrong: a bad value, duration, name.
    Invalid,
    /// What it names does not exist.
    NotFound,
    /// It contradicts the state: an allowlisted value, a name that is taken.
    Conflict,
    /// A limit is reached: map capacity, origin ids.
    Capacity,
    /// The service is not running (stopped, or stopping).
    Unavailable,
    /// Anything else: the store or the kernel failed.
    Internal,
}

/// A failed command: its kind and a one-line message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    kind: ErrorKind,
    message: String,
}

impl ServiceError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A bad request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    fn unavailable() -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "the decision service has stopped (is the daemon shutting down?)",
        )
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::new(Self::from_store_kind(&e), e.to_string())
    }
}

impl From<EnforcerError> for ServiceError {
    fn from(e: EnforcerError) -> Self {
        let kind = match &e {
            EnforcerError::UnknownInterface { .. } => ErrorKind::Invalid,
            EnforcerError::Full { .. } => ErrorKind::Capacity,
            EnforcerError::Store(s) => return Self::new(Self::from_store_kind(s), e.to_string()),
            _ => ErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

impl ServiceError {
    fn from_store_kind(e: &StoreError) -> ErrorKind {
        match e {
            StoreError::Allowlisted { .. } | StoreError::BouncerExists(_) => ErrorKind::Conflict,
            StoreError::BadDuration(_) | StoreError::Origin(_) | StoreError::Guard(_) => {
                ErrorKind::Invalid
            }
            StoreError::TooManyOrigins { .. } => ErrorKind::Capacity,
            StoreError::NotFound(_) => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        }
    }
}

/// A command's reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

/// Unban a value: every origin's decisions on it, or one origin's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unban {
    /// The value.
    pub value: Prefix,
    /// Only this origin's decisions.
    pub origin: Option<Origin>,
}

/// A bouncer's stream pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPull {
    /// The bouncer's name (it was authenticated by its key).
    pub bouncer: String,
    /// Everything active, not what changed since the last pull.
    pub startup: bool,
}

/// Replace a blocklist with a list prepared off the service thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportList {
    /// The list's name (origin `list:<name>`).
    pub name: String,
    /// Read, filtered and aggregated.
    pub prepared: Prepared,
    /// The allowlist version it was filtered with.
    pub allow_version: u64,
    /// How long its entries last unless imported or renewed again.
    pub duration: Duration,
}

/// Extend a blocklist's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewList {
    /// The list's name.
    pub name: String,
    /// The new lease, from now.
    pub duration: Duration,
}

/// Add or extend bans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The bans.
    pub decisions: Vec<NewDecision>,
    /// Who asks: what the guard does with a value it refuses.
    pub mode: BanMode,
}

/// An agent's push, as the central node takes it.
pub struct AgentPush {
    /// The machine (from its key).
    pub machine: String,
    /// Its version.
    pub version: String,
    /// Its alerts, `machine` set.
    pub alerts: Vec<StoredAlert>,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReport {
    /// Alerts stored.
    pub stored: usize,
    /// Bans applied fleet-wide.
    pub banned: usize,
}

/// The commands of the decision service.
pub enum Command {
    /// Add or extend bans.
    Ban(Ban, Reply<Vec<Decision>>),
    /// Remove bans.
    Unban(Unban, Reply<usize>),
    /// Active decisions, all or on one value.
    Decisions(Option<Prefix>, Reply<Vec<Decision>>),
    /// One page of the active decisions: (after, limit, only this origin).
    Page(Option<Cursor>, usize, Option<Origin>, Reply<Page>),
    /// Active decisions whose value covers a prefix.
    Covering(Prefix, Reply<Vec<Decision>>),
    /// Add to the allowlist: (value, reason).
    Allow(Prefix, String, Reply<usize>),
    /// Remove from the allowlist.
    Disallow(Prefix, Reply<bool>),
    /// The allowlist's entries.
    AllowEntries(Reply<Vec<AllowEntry>>),
    /// Status and counters.
    Status(Reply<Status>),
    /// Detach from an interface.
    Detach(String, Reply<bool>),
    /// An alert from the detection pipeline (no reply: the pipeline does not wait).
    Alert(Box<Alert>),
    /// Local state rows to save, of one kind (no reply).
    SaveState(&'static str, Vec<(String, String)>),
    /// Stored alerts, newest first.
    Alerts(AlertQuery, Reply<Vec<StoredAlert>>),
    /// One stored alert.
    AlertById(i64, Reply<Option<StoredAlert>>),
    /// The name of the bouncer with this API key hash.
    BouncerByKey(String, Reply<Option<Bouncer>>),
    /// A bouncer's stream: (new, deleted).
    Stream(StreamPull, Reply<StreamDelta>),
    /// Register a bouncer: (name, key hash).
    AddBouncer(String, String, Role, Reply<()>),
    /// A machine was heard from: (name, version).
    Seen(String, String, Reply<()>),
    /// An agent's push: its alerts stored, their bans applied as `machine:<name>`.
    AgentPush(AgentPush, Reply<PushReport>),
    /// This host's own alerts after an id, oldest first: (after, limit).
    AlertsAfter(i64, usize, Reply<Vec<StoredAlert>>),
    /// Local state rows of one kind.
    State(&'static str, Reply<Vec<(String, String)>>),
    /// Bouncers.
    Bouncers(Reply<Vec<Bouncer>>),
    /// Remove a bouncer.
    DeleteBouncer(String, Reply<bool>),
    /// Renew an unchanged list's lease.
    RenewList(RenewList, Reply<bool>),
    /// Replace a list's entries.
    ImportList(Box<ImportList>, Reply<ImportReport>),
    /// The stored lists.
    Lists(Reply<Vec<crate::decisions::ListSummary>>),
    /// A reload's part for the service: profiles, the config's allowlist, notifications.
    Reload(Box<Reload>, Reply<()>),
}

/// What a reload hands the service.
pub struct Reload {
    /// The new profiles.
    pub profiles: crate::decisions::profiles::Profiles,
    /// `[allowlist] entries`.
    pub allowlist: Vec<Prefix>,
    /// The new destinations (the old ones finish what they hold, then stop).
    pub notifiers: crate::notify::Notifiers,
}

/// A request to reload `ips.toml`, with where the answer goes.
pub type ReloadRequest = oneshot::Sender<Result<crate::reload::ReloadReport, String>>;

impl Command {
    /// True for the commands that may change which decisions are active, or their times.
    pub fn writes_decisions(&self) -> bool {
        matches!(
            self,
            Self::Ban(..)
                | Self::Unban(..)
                | Self::Allow(..)
                | Self::Disallow(..)
                | Self::Alert(..)
                | Self::AgentPush(..)
                | Self::RenewList(..)
                | Self::ImportList(..)
        )
    }
}

/// How producers reach the service: cheap to clone, one typed method per command. Async
/// methods for the API; the source threads use the blocking [`crate::blocklists::Sink`] side.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    allowlist: AllowlistWatch,
    /// Default ban duration of the API.
    pub default_duration: Duration,
    /// Detection counters, updated by the pipeline.
    pub detection: Arc<Mutex<DetectionStats>>,
    /// Blocklist source status, updated by their thread.
    pub lists: Arc<Mutex<Vec<SourceStatus>>>,
    /// Where reload requests go (`ips run` sets it; none in tests and tools).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

impl Handle {
    /// A handle that sends to `tx`; `allowlist` is the service's published allowlist.
    pub fn new(
        tx: mpsc::Sender<Command>,
        allowlist: AllowlistWatch,
        default_duration: Duration,
    ) -> Self {
        Self {
            tx,
            allowlist,
            default_duration,
            detection: Arc::default(),
            lists: Arc::default(),
            reload: None,
        }
    }

    /// Reloads `ips.toml` (as SIGHUP does) and says what changed.
    pub async fn reload(&self) -> Result<crate::reload::ReloadReport, ServiceError> {
        let Some(tx) = &self.reload else {
            return Err(ServiceError::invalid(
                "this daemon cannot reload its config",
            ));
        };
        let (reply, rx) = oneshot::channel();
        tx.send(reply).map_err(|_| ServiceError::unavailable())?;
        rx.await
            .map_err(|_| ServiceError::unavailable())?
            .map_err(ServiceError::invalid)
    }

    fn send<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<oneshot::Receiver<Result<T, ServiceError>>, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| ServiceError::unavailable())?;
        Ok(rx)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ServiceError> {
        self.send(make)?
            .await
            .map_err(|_| ServiceError::unavailable())?
    }

    /// The same, for threads outside the async runtime.
    pub fn call_blocking<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ServiceError> {
        self.send(make)?
            .blocking_recv()
            .map_err(|_| ServiceError::unavailable())?
    }

    /// Sends a command that has no reply.
    pub fn notify(&self, cmd: Command) -> Result<(), ServiceError> {
        self.tx.send(cmd).map_err(|_| ServiceError::unavailable())
    }

    /// The allowlist now, as published by the service.
    pub fn allowlist(&self) -> Arc<Allowlist> {
        self.allowlist.current()
    }

    /// Adds or extends bans for the operator; `force` lifts the minimum prefix length.
    pub async fn ban(
        &self,
        decisions: Vec<NewDecision>,
        force: bool,
    ) -> Result<Vec<Decision>, ServiceError> {
        let ban = Ban {
            decisions,
            mode: BanMode::Operator { force },
        };
        self.call(|r| Command::Ban(ban, r)).await
    }

    /// Removes the decisions on a value (of one origin, or all).
    pub async fn unban(
        &self,
        value: Prefix,
        origin: Option<Origin>,
    ) -> Result<usize, ServiceError> {
        self.call(|r| Command::Unban(Unban { value, origin }, r))
            .await
    }

    /// Active decisions, all or on one value.
    pub async fn decisions(&self, value: Option<Prefix>) -> Result<Vec<Decision>, ServiceError> {
        self.call(|r| Command::Decisions(value, r)).await
    }

    /// At most `limit` active decisions after `after` (`None`: from the start).
    pub async fn page(
        &self,
        after: Option<Cursor>,
        limit: usize,
        origin: Option<Origin>,
    ) -> Result<Page, ServiceError> {
        self.call(|r| Command::Page(after, limit, origin, r)).await
    }

    /// Active decisions whose value covers `value`.
    pub async fn covering(&self, value: Prefix) -> Result<Vec<Decision>, ServiceError> {
        self.call(|r| Command::Covering(value, r)).await
    }

    /// Adds an allowlist entry; returns how many decisions it removed.
    pub async fn allow(&self, value: Prefix, reason: String) -> Result<usize, ServiceError> {
        self.call(|r| Command::Allow(value, reason, r)).await
    }

    /// Removes an allowlist entry; returns whether it existed.
    pub async fn disallow(&self, value: Prefix) -> Result<bool, ServiceError> {
        self.call(|r| Command::Disallow(value, r)).await
    }

    /// The allowlist's entries.
    pub async fn allow_entries(&self) -> Result<Vec<AllowEntry>, ServiceError> {
        self.call(Command::AllowEntries).await
    }

    /// Status and counters.
    pub async fn status(&self) -> Result<Status, ServiceError> {
        let mut status = self.call(Command::Status).await?;
        if let Ok(d) = self.detection.lock() {
            status.detection = d.clone();
        }
        Ok(status)
    }

    /// Detaches the program from an interface.
    pub async fn detach(&self, iface: String) -> Result<bool, ServiceError> {
        self.call(|r| Command::Detach(iface, r)).await
    }

    /// Stored alerts.
    pub async fn alerts(&self, query: AlertQuery) -> Result<Vec<StoredAlert>, ServiceError> {
        self.call(|r| Command::Alerts(query, r)).await
    }

    /// One stored alert.
    pub async fn alert(&self, id: i64) -> Result<Option<StoredAlert>, ServiceError> {
        self.call(|r| Command::AlertById(id, r)).await
    }

    /// The key (bouncer, machine or admin) that hashes to `key_sha256`.
    pub async fn bouncer_by_key(
        &self,
        key_sha256: String,
    ) -> Result<Option<Bouncer>, ServiceError> {
        self.call(|r| Command::BouncerByKey(key_sha256, r)).await
    }

    /// Stores an agent's alerts and bans what they banned, fleet-wide.
    pub async fn agent_push(
        &self,
        machine: String,
        version: String,
        alerts: Vec<StoredAlert>,
    ) -> Result<PushReport, ServiceError> {
        self.call(|r| {
            Command::AgentPush(
                AgentPush {
                    machine,
                    version,
                    alerts,
                },
                r,
            )
        })
        .await
    }

    /// Records that machine `name` was heard from, running `version`.
    pub async fn seen(&self, name: String, version: String) -> Result<(), ServiceError> {
        self.call(|r| Command::Seen(name, version, r)).await
    }

    /// A bouncer's stream pull.
    pub async fn stream(
        &self,
        bouncer: String,
        startup: bool,
    ) -> Result<StreamDelta, ServiceError> {
        self.call(|r| Command::Stream(StreamPull { bouncer, startup }, r))
            .await
    }

    /// Registers a key by its hash, with what it may do.
    pub async fn add_bouncer(
        &self,
        name: String,
        key_sha256: String,
        role: Role,
    ) -> Result<(), ServiceError> {
        self.call(|r| Command::AddBouncer(name, key_sha256, role, r))
            .await
    }

    /// Registered bouncers.
    pub async fn bouncers(&self) -> Result<Vec<Bouncer>, ServiceError> {
        self.call(Command::Bouncers).await
    }

    /// Removes a bouncer.
    pub async fn delete_bouncer(&self, name: String) -> Result<bool, ServiceError> {
        self.call(|r| Command::DeleteBouncer(name, r)).await
    }

    /// The stored lists (configured and imported).
    pub async fn stored_lists(&self) -> Result<Vec<crate::decisions::ListSummary>, ServiceError> {
        self.call(Command::Lists).await
    }

    /// Replaces a list's entries with a prepared list.
    pub async fn import_list(&self, list: ImportList) -> Result<ImportReport, ServiceError> {
        self.call(|r| Command::ImportList(Box::new(list), r)).await
    }
}

/// The list and LAPI sources' side: blocking calls from their threads.
impl crate::blocklists::Sink for Handle {
    type Error = ServiceError;

    fn allowlist(&self) -> Arc<Allowlist> {
        self.allowlist.current()
    }

    fn replace_list(
        &self,
        name: &str,
        prepared: Prepared,
        allow_version: u64,
        duration: Duration,
    ) -> Result<ImportReport, ServiceError> {
        let list = ImportList {
            name: name.to_owned(),
            prepared,
            allow_version,
            duration,
        };
        self.call_blocking(|r| Command::ImportList(Box::new(list), r))
    }

    fn renew_list(&self, name: &str, duration: Duration) -> Result<bool, ServiceError> {
        let renew = RenewList {
            name: name.to_owned(),
            duration,
        };
        self.call_blocking(|r| Command::RenewList(renew, r))
    }

    fn ban(&self, decisions: Vec<NewDecision>) -> Result<(), ServiceError> {
        let ban = Ban {
            decisions,
            mode: BanMode::Source,
        };
        self.call_blocking(|r| Command::Ban(ban, r)).map(drop)
    }

    fn unban(&self, value: Prefix, origin: Origin) -> Result<(), ServiceError> {
        let unban = Unban {
            value,
            origin: Some(origin),
        };
        self.call_blocking(|r| Command::Unban(unban, r)).map(drop)
    }
}

/// Milliseconds of a duration, for the store (saturating).
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
