//! Acquisition: where log lines come from. Each source runs on its own thread and sends
//! [`Chunk`]s (many lines in one buffer: one allocation per read, not per line) over a bounded
//! channel, so a burst of a million lines waits for the parser instead of filling memory.
//!
//! - [`file::FileSource`]: files and `*` globs, followed like `tail -F` (rename and
//!   copytruncate rotation, truncation, files that appear later), resuming at saved offsets.
//! - [`journal`]: the systemd journal through `journalctl -f -o json`.
//! - stdin.
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
    },
};

use serde::{Deserialize, Serialize};

use crate::parsers::LogType;

pub mod file;
pub mod journal;

/// Chunks in flight between the sources and the parser.
pub const CHANNEL_CHUNKS: usize = 256;

/// `[[acquisition]]` in `ips.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files or globs (`*` in the file name).
    File {
        /// Paths or globs.
        paths: Vec<PathBuf>,
        /// Parser.
        #[serde(default)]
        log_type: LogType,
        /// Read files that exist at start from the beginning instead of the end (when no
        /// offset was saved for them).
        #[serde(default)]
        from_beginning: bool,
    },
    /// The systemd journal.
    Journald {
        /// Extra `journalctl` arguments, e.g. `["-u", "ssh.service"]`.
        #[serde(default)]
        args: Vec<String>,
        /// Parser.
        #[serde(default)]
        log_type: LogType,
    },
    /// Standard input.
    Stdin {
        /// Parser.
        #[serde(default)]
        log_type: LogType,
    },
}

impl SourceConfig {
    /// The parser for this source's lines.
    pub fn log_type(&self) -> LogType {
        match self {
            Self::File { log_type, .. }
            | Self::Journald { log_type, .. }
            | Self::Stdin { log_type } => *log_type,
        }
    }
}

/// Lines read from one file (or stream), and where reading stopped.
#[derive(Debug)]
pub struct Chunk {
    /// Index of the source in the config.
    pub source: usize,
    /// Complete lines, each ending in `\n`.
    pub text: String,
    /// For files: the position after the last line, to save as the resume offset.
    pub position: Option<Position>,
}

/// A resume point in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The path followed.
    pub path: PathBuf,
    /// Device and inode of the file read, so a rotated file is not resumed at a stale offset.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Byte offset after the last complete line sent.
    pub offset: u64,
}

impl Position {
    /// The position as a local-state row of the store: the path, and `dev:ino:offset`.
    pub fn to_row(&self) -> (String, String) {
        (
            self.path.to_string_lossy().into_owned(),
            format!("{}:{}:{}", self.dev, self.ino, self.offset),
        )
    }

    /// Reads a row written by [`Position::to_row`]; `None` if it does not parse.
    pub fn from_row(key: &str, value: &str) -> Option<Self> {
        let mut parts = value.split(':').map(str::parse::<u64>);
        let (Some(Ok(dev)), Some(Ok(ino)), Some(Ok(offset)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            path: PathBuf::from(key),
            dev,
            ino,
            offset,
        })
    }
}

/// Shared stop flag for source threads.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Asks every source to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once stop was asked.
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Reads stdin line by line until it closes or `stop`.
pub fn run_stdin(source: usize, tx: SyncSender<Chunk>, stop: Stop) {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut text = String::new();
    while !stop.stopped() {
        text.clear();
        match lock.read_line(&mut text) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if tx
                    .send(Chunk {
                        source,
                        text: std::mem::take(&mut text),
                        position: None,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn positions_round_trip_through_store_rows() {
        let p = Position {
            path: "/var/log/auth.log".into(),
            dev: 2049,
            ino: 77,
            offset: 123_456,
        };
        let (k, v) = p.to_row();
        assert_eq!(Position::from_row(&k, &v), Some(p));
        assert_eq!(Position::from_row("x", "1:2"), None);
        assert_eq!(Position::from_row("x", "1:2:x"), None);
    }
}
