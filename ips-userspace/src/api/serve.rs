//! Serving the router with limits that `axum::serve` does not have: a cap on connections
//! (one more is answered 503 and closed, not queued), a deadline for each request head (a
//! connection that trickles headers or idles between requests is closed) and for each whole
//! request (body included: 408).
use std::{
    future::Future,
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
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tracing::{debug, warn};

/// The API's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
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

/// Connections turned away because the cap was reached, since start.
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

const BUSY: &str = "{\"error\":\"too many connections to the ips API; try again in a moment\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// (for at most `request_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop_seen) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut accept_errors = 0u64;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close rather than spin.
                accept_errors += 1;
                if accept_errors.is_power_of_two() {
                    warn!(error = %e, times = accept_errors, "Cannot accept an API connection.");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let stop_seen = stop_seen.clone();
                tokio::spawn(async move {
                    connection(stream, router, limits, stop_seen).await;
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
                tokio::spawn(refuse(stream));
            }
        }
    }
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.request_timeout, permits.acquire_many(all)).await;
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

/// Answers 503 and closes. The request head is read first (for at most half a second), as
/// clients expect, and what else the client sends is drained for a moment: closing with unread
/// data resets the connection before the answer is read.
async fn refuse(mut stream: TcpStream) {
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
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BUSY}",
            BUSY.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop_seen: watch::Receiver<bool>,
) {
    let timeout = limits.request_timeout;
    let service = router.layer(axum::middleware::from_fn_with_state(timeout, deadline));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
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
