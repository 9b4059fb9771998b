//! [`Client`]: the CLI's side of the operator API, over the daemon's unix socket. A small
//! HTTP/1.1 client: one request per connection, JSON in and out.
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};

use super::ApiError;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens.
    #[error(
        "the ips daemon is not running (nothing answers on {}); start it with `ips run`",
        socket.display()
    )]
    NotRunning {
        /// Where we looked.
        socket: PathBuf,
    },
    /// The socket is not ours to use.
    #[error(
        "permission denied on {}: the ips API is for root and the members of group ips",
        socket.display()
    )]
    Permission {
        /// The socket.
        socket: PathBuf,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Api(String),
    /// Anything else on the wire.
    #[error("talking to the daemon on {}: {message}", socket.display())]
    Transport {
        /// Where.
        socket: PathBuf,
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

/// Largest answer read: a page of decisions is far smaller.
const MAX_ANSWER: u64 = 1 << 30;

/// A blocking client for the operator API.
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for the daemon listening on the unix socket `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
            timeout: Duration::from_secs(120),
        }
    }

    fn transport(&self, message: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            socket: self.socket.clone(),
            message: message.to_string(),
        }
    }

    /// Sends one request; returns the status and the body.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    socket: self.socket.clone(),
                }
            }
            std::io::ErrorKind::PermissionDenied => ClientError::Permission {
                socket: self.socket.clone(),
            },
            _ => self.transport(e),
        })?;
        let io = |e: std::io::Error| self.transport(e);
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if method != "GET" && method != "DELETE" {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .map_err(io)?;
        parse_answer(&answer).map_err(|e| self.transport(e))
    }

    fn finish<T: DeserializeOwned>(
        &self,
        answer: Result<(u16, Vec<u8>), ClientError>,
    ) -> Result<T, ClientError> {
        let (status, body) = answer?;
        let text = String::from_utf8_lossy(&body);
        if !(200..300).contains(&status) {
            let msg = serde_json::from_str::<ApiError>(&text)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}: {text}"));
            return Err(ClientError::Api(msg));
        }
        serde_json::from_str(&text).map_err(|e| self.transport(format!("unexpected answer: {e}")))
    }

    /// GET `path` (with its query string).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.finish(self.exchange("GET", path, None))
    }

    /// POST a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| self.transport(e))?;
        self.finish(self.exchange("POST", path, Some(&body)))
    }

    /// DELETE `path` (with its query string).
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.finish(self.exchange("DELETE", path, None))
    }
}

/// The status and body of an HTTP/1.1 answer read to its end: by `Content-Length`, chunked, or
/// up to the close.
fn parse_answer(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the daemon closed the connection without an answer")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "answer head is not text")?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("answer without a status")?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        let mut body = Vec::new();
        let mut at = rest;
        loop {
            let end = at
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("cut chunk")?;
            let size = std::str::from_utf8(&at[..end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or("bad chunk size")?;
            at = &at[end + 2..];
            if size == 0 {
                return Ok((status, body));
            }
            body.extend_from_slice(at.get(..size).ok_or("cut chunk")?);
            at = at.get(size + 2..).ok_or("cut chunk")?;
        }
    }
    match length {
        Some(n) => Ok((status, rest.get(..n).ok_or("answer cut short")?.to_vec())),
        None => Ok((status, rest.to_vec())),
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

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn answers_by_length_chunks_and_close() {
        let a = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(a).unwrap(), (200, b"{}".to_vec()));
        let a = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(a).unwrap(), (404, b"abcde".to_vec()));
        let a = b"HTTP/1.1 200 OK\r\n\r\n[1]";
        assert_eq!(parse_answer(a).unwrap(), (200, b"[1]".to_vec()));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse_answer(b"").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }
}
