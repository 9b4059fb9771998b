//! Following files like `tail -F`.
//!
//! A [`Follower`] reads a path to its end, then checks the path again: a different inode means
//! the file was rotated by rename (the old one was read to its end first, so no line is lost) and
//! the new one is read from its start; a size below the offset means it was truncated or
//! copy-truncated, and reading starts over. A partial last line waits for its newline. Wake-ups
//! come from inotify on the directories, with a periodic check as a fallback.
//!
//! A file in a directory that someone other than root may write to is opened without
//! following a symlink: whoever can write there could otherwise swap the log for a link to
//! `/etc/shadow`, and the root daemon would read it (and matching lines would reach alert
//! evidence). Such a link is refused with a warning.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::mpsc::SyncSender,
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};

use super::{Chunk, Position, Stop};

/// Largest chunk sent at once.
const CHUNK_BYTES: usize = 256 * 1024;
/// A line longer than this is cut (and the rest skipped up to its newline).
const MAX_LINE: usize = 64 * 1024;

/// One followed path.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    dev: u64,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
    /// Where to start a file seen for the first time when no offset was saved.
    start_at_end: bool,
    /// The path is a symlink we will not follow (said once).
    refused: bool,
}

/// Opens a log for reading; in a directory that anyone but root may write to, a symlink is
/// not followed (the error is `ELOOP`).
pub fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let trusted =
        std::fs::metadata(dir).is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o022 == 0);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if !trusted {
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

impl Follower {
    /// Follows `path`. `saved` resumes at a recorded offset if it is for the same file.
    pub fn new(path: PathBuf, saved: Option<&Position>, start_at_end: bool) -> Self {
        let mut f = Self {
            path,
            file: None,
            dev: 0,
            ino: 0,
            offset: 0,
            partial: Vec::new(),
            start_at_end,
            refused: false,
        };
        if !f.open(saved) {
            // Not there yet: when it appears, it is new, so read it from its start.
            f.start_at_end = false;
        }
        f
    }

    fn open(&mut self, saved: Option<&Position>) -> bool {
        let file = match open_log(&self.path) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                if !self.refused {
                    warn!(path = %self.path.display(), "Not following a symlink in a directory that is not root's alone.");
                    self.refused = true;
                }
                return false;
            }
            Err(_) => return false,
        };
        self.refused = false;
        let Ok(meta) = file.metadata() else {
            return false;
        };
        let (dev, ino, size) = (meta.dev(), meta.ino(), meta.size());
        let offset = match saved {
            Some(p) if p.dev == dev && p.ino == ino && p.offset <= size => p.offset,
            Some(_) => 0, // the saved offset is for a file that has since been rotated away
            None if self.start_at_end => size,
            None => 0,
        };
        let mut file = file;
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return false;
        }
        debug!(path = %self.path.display(), offset, "Following file.");
        self.file = Some(file);
        (self.dev, self.ino, self.offset) = (dev, ino, offset);
        self.partial.clear();
        // Files that appear later are read from their start.
        self.start_at_end = false;
        true
    }

    /// The current resume point.
    pub fn position(&self) -> Position {
        Position {
            path: self.path.clone(),
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
        }
    }

    /// Appends complete new lines to `out`; returns whether anything was read.
    pub fn poll(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.file.is_none() && !self.open(None) {
            return Ok(false);
        }
        let mut any = self.drain(out)?;
        // Rotation or truncation?
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.dev() != self.dev || meta.ino() != self.ino => {
                // Renamed away: the old file was read to its end above.
                info!(path = %self.path.display(), "File rotated; following the new one.");
                self.file = None;
                self.partial.clear();
                if self.open(None) {
                    self.offset = 0;
                    if let Some(f) = self.file.as_mut() {
                        f.seek(SeekFrom::Start(0))?;
                    }
                    any |= self.drain(out)?;
                }
            }
            Ok(meta) if meta.size() < self.offset => {
                info!(path = %self.path.display(), "File truncated; reading from the start.");
                if let Some(f) = self.file.as_mut() {
                    f.seek(SeekFrom::Start(0))?;
                }
                self.offset = 0;
                self.partial.clear();
                any |= self.drain(out)?;
            }
            Ok(_) => {}
            Err(_) => {} // gone for now (between rename and create): keep the old fd
        }
        Ok(any)
    }

    fn drain(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let Some(file) = self.file.as_mut() else {
            return Ok(false);
        };
        let mut buf = [0u8; 64 * 1024];
        let mut any = false;
        while out.len() < CHUNK_BYTES {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            any = true;
            self.offset += n as u64;
            let mut rest = &buf[..n];
            while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                if self.partial.len() + nl <= MAX_LINE {
                    out.extend_from_slice(&self.partial);
                    out.extend_from_slice(&rest[..=nl]);
                } else {
                    warn!(path = %self.path.display(), "Line over 64 KiB cut.");
                    let keep = MAX_LINE.saturating_sub(self.partial.len()).min(nl);
                    out.extend_from_slice(&self.partial[..self.partial.len().min(MAX_LINE)]);
                    out.extend_from_slice(&rest[..keep]);
                    out.push(b'\n');
                }
                self.partial.clear();
                rest = &rest[nl + 1..];
            }
            if self.partial.len() < MAX_LINE {
                let room = MAX_LINE - self.partial.len();
                self.partial
                    .extend_from_slice(&rest[..rest.len().min(room)]);
            }
        }
        Ok(any)
    }

    /// The offset after the last complete line handed out.
    pub fn committed_offset(&self) -> u64 {
        self.offset - self.partial.len() as u64
    }
}

/// `*` matching within one path component.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// The files a path or glob names now (a plain path is returned even if it does not exist).
pub fn expand(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![pattern.to_owned()];
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// An inotify instance watching directories, used only to wake up early.
struct Inotify {
    fd: i32,
    watched: Vec<PathBuf>,
}

impl Inotify {
    fn new() -> Option<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        (fd >= 0).then(|| Self {
            fd,
            watched: Vec::new(),
        })
    }

    fn watch(&mut self, dir: &Path) {
        if self.watched.iter().any(|d| d == dir) {
            return;
        }
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
            return;
        };
        let mask = libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_DELETE
            | libc::IN_CLOSE_WRITE
            | libc::IN_ATTRIB;
        // SAFETY: valid fd and C string.
        if unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), mask) } >= 0 {
            self.watched.push(dir.to_owned());
        }
    }

    /// Waits for an event or `timeout`, then empties the queue.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a local buffer from our fd.
        while unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A file source: its patterns and their followers, run on one thread.
pub struct FileSource {
    /// Index in the config.
    pub source: usize,
    /// Paths or globs.
    pub patterns: Vec<PathBuf>,
    /// Read existing files from the start when no offset is saved.
    pub from_beginning: bool,
    /// Saved offsets, by path.
    pub saved: HashMap<PathBuf, Position>,
}

impl FileSource {
    /// Follows until `stop`, sending chunks; blocks when the channel is full.
    pub fn run(self, tx: SyncSender<Chunk>, stop: Stop) {
        let mut followers: HashMap<PathBuf, Follower> = HashMap::new();
        let mut inotify = Inotify::new();
        let mut last_scan = Instant::now() - Duration::from_secs(10);
        let mut first_scan = true;
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        while !stop.stopped() {
            if last_scan.elapsed() >= Duration::from_secs(1) {
                for pattern in &self.patterns {
                    if let (Some(ino), Some(dir)) = (inotify.as_mut(), pattern.parent()) {
                        ino.watch(dir);
                    }
                    for path in expand(pattern) {
                        followers.entry(path.clone()).or_insert_with(|| {
                            // Files there at start begin at the end (like tail -F) unless an
                            // offset was saved; files that appear later begin at the start.
                            let at_end = first_scan && !self.from_beginning;
                            Follower::new(path.clone(), self.saved.get(&path), at_end)
                        });
                    }
                }
                first_scan = false;
                last_scan = Instant::now();
            }
            let mut busy = false;
            for f in followers.values_mut() {
                loop {
                    buf.clear();
                    match f.poll(&mut buf) {
                        Ok(_) if buf.is_empty() => break,
                        Ok(_) => {
                            busy = true;
                            let text = String::from_utf8_lossy(&buf).into_owned();
                            let mut position = f.position();
                            position.offset = f.committed_offset();
                            let chunk = Chunk {
                                source: self.source,
                                text,
                                position: Some(position),
                            };
                            if tx.send(chunk).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            warn!(path = %f.path.display(), error = %e, "Cannot read.");
                            break;
                        }
                    }
                }
            }
            if !busy {
                match inotify.as_ref() {
                    Some(i) => i.wait(Duration::from_millis(250)),
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_symlink_in_a_directory_others_may_write_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("shadow");
        std::fs::write(&secret, "root:secret-hash:19000::::::\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        std::os::unix::fs::symlink(&secret, &log).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut f = Follower::new(log.clone(), None, false);
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        assert!(
            out.is_empty(),
            "read through the link: {}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(
            open_log(&log).err().and_then(|e| e.raw_os_error()),
            Some(libc::ELOOP)
        );
        // A directory only root writes to is trusted: an admin's symlink there is followed.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            assert!(open_log(&log).is_ok());
        }
    }

    #[test]
    fn follows_appends_and_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = Follower::new(path.clone(), None, true);
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        assert!(out.is_empty(), "started at the end");
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"one\ntw").unwrap();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["one"]);
        assert_eq!(f.committed_offset(), 8);
        w.write_all(b"o\n").unwrap();
        out.clear();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["two"]);
    }

    #[test]
    fn rename_rotation_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        std::fs::write(&path, "").unwrap();
        let mut f = Follower::new(path.clone(), None, true);
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"a\nb\n").unwrap();
        // Rotate: the writer still appends to the renamed file, then a new file appears.
        std::fs::rename(&path, dir.path().join("auth.log.1")).unwrap();
        w.write_all(b"c\n").unwrap();
        std::fs::write(&path, "d\n").unwrap();
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["a", "b", "c", "d"]);
    }

    #[test]
    fn copytruncate_and_truncation_restart_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "").unwrap();
        let mut f = Follower::new(path.clone(), None, false);
        std::fs::write(&path, "1\n2\n3\n").unwrap();
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["1", "2", "3"]);
        // copytruncate: copied away, then cut to zero, then new lines.
        std::fs::write(&path, "4\n").unwrap();
        out.clear();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["4"]);
    }

    #[test]
    fn resumes_at_saved_offset_only_for_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let saved = Position {
            path: path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            offset: 2,
        };
        let mut f = Follower::new(path.clone(), Some(&saved), true);
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["b", "c"]);
        let stale = Position {
            ino: meta.ino() + 1,
            ..saved
        };
        let mut f = Follower::new(path, Some(&stale), true);
        out.clear();
        f.poll(&mut out).unwrap();
        assert_eq!(
            lines(&out),
            ["a", "b", "c"],
            "a rotated file is read from its start"
        );
    }

    #[test]
    fn files_that_appear_later_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.log");
        let mut f = Follower::new(path.clone(), None, true);
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        std::fs::write(&path, "x\n").unwrap();
        f.poll(&mut out).unwrap();
        assert_eq!(lines(&out), ["x"]);
        std::fs::write(dir.path().join("b.log"), "").unwrap();
        std::fs::write(dir.path().join("c.txt"), "").unwrap();
        let found = expand(&dir.path().join("*.log"));
        assert_eq!(found.len(), 2);
        assert!(wildcard("access*.log", "access-2024.log"));
        assert!(!wildcard("access*.log", "error.log"));
    }
}
