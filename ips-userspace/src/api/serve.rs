//! Serving the router on its two listeners, with limits that `axum::serve` does not have.
//!
//! - The **unix socket** is the operator's way in (the CLI): its file is root's, mode 0660 with
//!   group `ips` when that group exists (0600 otherwise), and each connection's peer credentials
//!   (`SO_PEERCRED`) are checked as well: root, the daemon's own user, or a member of the group.
//!   Requests on it carry [`Caller::Operator`].
//! - The optional **TCP** listener carries [`Caller::Network`]: what it may reach is decided by
//!   [`super::authorize`].
//!
//! Each listener has its own cap on connections (one more is answered 503 and closed, not
//! queued, so a flood on TCP never locks the operator out of the socket), a deadline for each
//! request head (a connection that trickles headers or idles between requests is closed) and
//! one for each whole request (body included: 408).
use std::{
    ffi::CString,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, UnixListener},
    sync::{Semaphore, watch},
};
use tracing::{debug, warn};

/// The API's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once, per listener.
    pub max_connections: usize,
    /// Deadline for a request head, counted from when the connection waits for one.
    pub header_timeout: Duration,
    /// Deadline for a whole request.
    pub request_timeout: Duration,
}

impl From<&crate::config::ApiConfig> for Limits {
    fn from(c: &crate::config::ApiConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_timeout: c.header_timeout,
            request_timeout: c.request_timeout,
        }
    }
}

/// Who is calling, set on every request by the listener it came in on.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A local process on the unix socket whose credentials passed the check.
    Operator {
        /// Its user id.
        uid: u32,
    },
    /// A TCP peer.
    Network(SocketAddr),
}

/// Connections turned away because a cap was reached, since start.
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Who may use the unix socket besides root and the daemon's own user: the members of a group.
#[derive(Debug, Clone)]
pub struct Operators {
    group: String,
}

impl Operators {
    /// Members of `group` (when it exists) may steer the daemon.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
        }
    }

    /// The group's id, if the group exists.
    pub fn gid(&self) -> Option<u32> {
        group(&self.group).map(|(gid, _)| gid)
    }

    /// True if a process of `uid` with primary group `gid` may steer the daemon.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        // SAFETY: geteuid has no preconditions.
        if uid == 0 || uid == unsafe { libc::geteuid() } {
            return true;
        }
        let Some((group_gid, members)) = group(&self.group) else {
            return false;
        };
        gid == group_gid || user_name(uid).is_some_and(|name| members.contains(&name))
    }
}

/// A group's id and member names, read with the reentrant libc call.
fn group(name: &str) -> Option<(u32, Vec<String>)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: a zeroed `group` is a valid out parameter.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: valid pointers and the buffer's true length.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    let mut members = Vec::new();
    let mut at = grp.gr_mem;
    // SAFETY: gr_mem is a null-terminated array of C strings inside `buf`.
    unsafe {
        while !at.is_null() && !(*at).is_null() {
            members.push(std::ffi::CStr::from_ptr(*at).to_string_lossy().into_owned());
            at = at.add(1);
        }
    }
    Some((grp.gr_gid, members))
}

/// The login name of `uid`.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: a zeroed `passwd` is a valid out parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid pointers and the buffer's true length.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, null-terminated.
    Some(
        unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Creates the operator's socket at `path`: its folder if missing (0755), a stale socket file
/// removed (the caller holds the store's lock, so no other daemon of this config serves it),
/// then root's with mode 0660 and `operators`' group, or 0600 without the group.
pub fn bind_socket(path: &Path, operators: &Operators) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    // Nobody else may connect in the moment between bind and chmod.
    // SAFETY: umask has no preconditions; restored below.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound?;
    if let Some(gid) = operators.gid() {
        std::os::unix::fs::chown(path, Some(0), Some(gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    }
    Ok(listener)
}

/// A listener the API is served on.
pub enum Listener {
    /// TCP, for bouncers, agents and admin tokens; with TLS when an acceptor is given.
    Tcp(TcpListener, Option<tokio_rustls::TlsAcceptor>),
    /// The operator's socket, its path and who may use it.
    Unix(UnixListener, PathBuf, Operators),
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// (for at most `request_timeout`).
pub async fn serve(
    listener: Listener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop_seen) = watch::channel(false);
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        deadline,
    ));
    tokio::pin!(shutdown);
    let mut accept_errors = 0u64;
    let mut accept_failed = |e: std::io::Error| {
        // Out of descriptors, most likely: wait for some to close rather than spin.
        accept_errors += 1;
        if accept_errors.is_power_of_two() {
            warn!(error = %e, times = accept_errors, "Cannot accept an API connection.");
        }
    };
    loop {
        let spawn = |io, caller| {
            spawn_connection(io, caller, &router, &permits, limits, &stop_seen);
        };
        match &listener {
            Listener::Tcp(l, tls) => {
                let accepted = tokio::select! {
                    () = &mut shutdown => break,
                    a = l.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => match tls {
                        None => spawn(Io::Tcp(stream), Caller::Network(peer)),
                        Some(tls) => {
                            spawn(Io::Handshake(stream, tls.clone()), Caller::Network(peer))
                        }
                    },
                    Err(e) => {
                        accept_failed(e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Listener::Unix(l, path, operators) => {
                let accepted = tokio::select! {
                    () = &mut shutdown => break,
                    a = l.accept() => a,
                };
                match accepted {
                    Ok((stream, _)) => match stream.peer_cred() {
                        Ok(cred) if operators.allows(cred.uid(), cred.gid()) => {
                            spawn(Io::Unix(stream), Caller::Operator { uid: cred.uid() });
                        }
                        other => {
                            let who = other.as_ref().map(|c| (c.uid(), c.gid(), c.pid()));
                            warn!(peer = ?who, socket = %path.display(), "Refused a local process that is neither root nor in the operators' group.");
                            let message = format!(
                                "permission denied: the ips API on {} is for root and group {}",
                                path.display(),
                                operators.group
                            );
                            tokio::spawn(refuse(stream, 403, message));
                        }
                    },
                    Err(e) => {
                        accept_failed(e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.request_timeout, permits.acquire_many(all)).await;
}

/// A connection's stream, for one connection task type.
enum Io {
    Tcp(tokio::net::TcpStream),
    /// TCP whose TLS handshake is still to do (in the connection's task, under the header
    /// deadline).
    Handshake(tokio::net::TcpStream, tokio_rustls::TlsAcceptor),
    Unix(tokio::net::UnixStream),
}

fn spawn_connection(
    io: Io,
    caller: Caller,
    router: &Router,
    permits: &Arc<Semaphore>,
    limits: Limits,
    stop_seen: &watch::Receiver<bool>,
) {
    match permits.clone().try_acquire_owned() {
        Ok(permit) => {
            let router = router.clone().layer(axum::Extension(caller));
            let stop_seen = stop_seen.clone();
            tokio::spawn(async move {
                match io {
                    Io::Tcp(s) => connection(s, router, limits, stop_seen).await,
                    Io::Handshake(s, tls) => {
                        match tokio::time::timeout(limits.header_timeout, tls.accept(s)).await {
                            Ok(Ok(s)) => connection(s, router, limits, stop_seen).await,
                            Ok(Err(e)) => debug!(error = %e, "TLS handshake failed."),
                            Err(_) => debug!("TLS handshake not done in time."),
                        }
                    }
                    Io::Unix(s) => connection(s, router, limits, stop_seen).await,
                }
                drop(permit);
            });
        }
        Err(_) => {
            let n = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    max_connections = limits.max_connections,
                    refused = n,
                    "API connection cap reached: turning new connections away (api.max_connections)."
                );
            }
            let busy = "too many connections to the ips API; try again in a moment".to_owned();
            // Past the cap a TLS client just sees the connection close: no handshake is spent.
            match io {
                Io::Tcp(s) => tokio::spawn(refuse(s, 503, busy)),
                Io::Handshake(s, _) => tokio::spawn(async move { drop(s) }),
                Io::Unix(s) => tokio::spawn(refuse(s, 503, busy)),
            };
        }
    }
}

/// Answers 408 to a request (its body included) that is not done within `timeout`.
async fn deadline(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => axum::response::IntoResponse::into_response(super::ApiError {
            status: 408,
            error: format!("request not complete within {}s", timeout.as_secs()),
        }),
    }
}

/// Answers `status` with `message` and closes. The request head is read first (for at most
/// half a second), as clients expect, and what else the client sends is drained for a moment:
/// closing with unread data resets the connection before the answer is read.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: u16, message: String) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = serde_json::json!({ "error": message }).to_string();
    let reason = if status == 403 {
        "Forbidden"
    } else {
        "Service Unavailable"
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    router: Router,
    limits: Limits,
    mut stop_seen: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "API connection ended.");
            }
        }
        () = async { drop(stop_seen.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
