//! [`Client`]: the CLI's side of the local API.
use std::{net::SocketAddr, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::ApiError;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens.
    #[error("the ips daemon is not running (nothing answers on {addr}); start it with `ips run`")]
    NotRunning {
        /// Where we looked.
        addr: SocketAddr,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Api(String),
    /// Anything else on the wire.
    #[error("talking to the daemon at {addr}: {message}")]
    Transport {
        /// Where.
        addr: SocketAddr,
        /// What happened.
        message: String,
    },
}

impl ClientError {
    /// True if the daemon is not running.
    pub fn is_not_running(&self) -> bool {
        matches!(self, Self::NotRunning { .. })
    }
}

/// A blocking client for the local API.
pub struct Client {
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the daemon listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let agent = crate::http::agent(Duration::from_secs(120));
        Self { addr, agent }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut resp = result.map_err(|e| match e {
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { addr: self.addr }
            }
            ureq::Error::ConnectionFailed => ClientError::NotRunning { addr: self.addr },
            other => ClientError::Transport {
                addr: self.addr,
                message: other.to_string(),
            },
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| ClientError::Transport {
                addr: self.addr,
                message: e.to_string(),
            })?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ApiError>(&text)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}: {text}"));
            return Err(ClientError::Api(msg));
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Transport {
            addr: self.addr,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// GET `path` (with its query string).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.finish(self.agent.get(&self.url(path)).call())
    }

    /// POST a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.finish(self.agent.post(&self.url(path)).send_json(body))
    }

    /// DELETE `path` (with its query string).
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.finish(self.agent.delete(&self.url(path)).call())
    }
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
