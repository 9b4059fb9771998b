//! Blocklist sources in `ips.toml`: a URL or a file, refreshed on an interval with conditional
//! requests (ETag, If-Modified-Since). A failed or garbled fetch keeps the last good list (and
//! renews it), so enforcement never empties because a mirror is down. Each source is a
//! [`Task`] on the daemon's scheduler that hands new lists to a [`Sink`].
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Format, Prepared, Sink};
use crate::{calendar::now_ms, decisions::check_name, schedule::Task};

/// `[[blocklist]]` in `ips.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name; decisions get origin `list:<name>`.
    pub name: String,
    /// `http://` or `https://` URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Or a local file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Format (detected when absent).
    #[serde(default)]
    pub format: Option<Format>,
    /// How often to fetch.
    #[serde(default = "hour", with = "crate::config::human_duration")]
    pub refresh: Duration,
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}

impl SourceConfig {
    /// How long imported entries last: three refreshes, so one or two missed fetches never
    /// lift a ban, while a list that disappears for good does expire.
    pub fn entry_duration(&self) -> Duration {
        self.refresh.saturating_mul(3).max(Duration::from_secs(60))
    }

    /// Checks the entry; the message names the list.
    pub fn validate(&self) -> Result<(), String> {
        check_name(&self.name).map_err(|e| format!("blocklist {e}"))?;
        match (&self.url, &self.path) {
            (Some(u), None) if u.starts_with("http://") || u.starts_with("https://") => {}
            (Some(u), None) => {
                return Err(format!("blocklist {}: url {u:?} is not http(s)", self.name));
            }
            (None, Some(_)) => {}
            _ => {
                return Err(format!(
                    "blocklist {}: give exactly one of url and path",
                    self.name
                ));
            }
        }
        if self.refresh < Duration::from_secs(1) {
            return Err(format!(
                "blocklist {}: refresh must be at least 1s",
                self.name
            ));
        }
        Ok(())
    }
}

/// What one fetch gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// New content, read, filtered and aggregated, to import.
    New(Prepared),
    /// Unchanged since the last fetch (304, or the same bytes and allowlist).
    Unchanged,
}

/// Why a fetch gave nothing usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Network or HTTP error.
    #[error("fetch failed: {0}")]
    Failed(String),
    /// The body does not look like the list (an error page, a truncated file...).
    #[error("garbled list: {0}")]
    Garbled(String),
}

/// Fetch state of one source: validators for conditional requests and the last good list.
#[derive(Debug, Default)]
pub struct Fetcher {
    etag: Option<String>,
    last_modified: Option<String>,
    /// Hash of the last good body and of the allowlist it was filtered with.
    last_hash: Option<u64>,
    /// The allowlist of the last fetch: when it changes, the list is fetched in full again.
    last_allow: Option<Arc<crate::decisions::Allowlist>>,
    /// The last list that passed the sanity check, prepared.
    pub last_good: Option<Prepared>,
    /// Number of fetches that sent a conditional request and got 304.
    pub not_modified: u64,
}

/// A list is garbled if most of its meaningful lines are rejected, or it has no entry at all
/// while the last good list had some.
pub fn sanity(list: &Prepared, had_entries: bool) -> Result<(), FetchError> {
    let rejected: u64 = list.rejected.values().sum();
    let good = list.read;
    if good == 0 && (had_entries || rejected > 0) {
        return Err(FetchError::Garbled(format!(
            "no valid entry ({rejected} rejected lines)"
        )));
    }
    if rejected > good {
        return Err(FetchError::Garbled(format!(
            "{rejected} rejected lines against {good} valid entries"
        )));
    }
    Ok(())
}

impl Fetcher {
    /// Fetches `source` once with `agent` and prepares it with `allow` (on the source's
    /// thread, not the service's).
    pub fn fetch(
        &mut self,
        agent: &ureq::Agent,
        source: &SourceConfig,
        allow: &Arc<crate::decisions::Allowlist>,
    ) -> Result<Fetched, FetchError> {
        if self
            .last_allow
            .as_ref()
            .is_none_or(|a| a.prefixes != allow.prefixes || a.min != allow.min)
        {
            // Entries the old allowlist left out may be in: a 304 would hide them.
            self.etag = None;
            self.last_modified = None;
            self.last_allow = Some(allow.clone());
        }
        let (body, validators) = match (&source.url, &source.path) {
            (Some(url), _) => {
                let mut req = agent.get(url);
                if let Some(e) = &self.etag {
                    req = req.header("If-None-Match", e);
                }
                if let Some(m) = &self.last_modified {
                    req = req.header("If-Modified-Since", m);
                }
                let mut resp = req.call().map_err(|e| FetchError::Failed(e.to_string()))?;
                let status = resp.status().as_u16();
                if status == 304 {
                    self.not_modified += 1;
                    return Ok(Fetched::Unchanged);
                }
                if status != 200 {
                    return Err(FetchError::Failed(format!("HTTP {status}")));
                }
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let validators = (header("etag"), header("last-modified"));
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 30)
                    .read_to_string()
                    .map_err(|e| FetchError::Failed(e.to_string()))?;
                (body, Some(validators))
            }
            (None, Some(path)) => {
                let body = std::fs::read_to_string(path)
                    .map_err(|e| FetchError::Failed(format!("{}: {e}", path.display())))?;
                (body, None)
            }
            (None, None) => return Err(FetchError::Failed("no url or path".into())),
        };
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut h);
            allow.prefixes.hash(&mut h);
            allow.min.hash(&mut h);
            h.finish()
        };
        if self.last_hash == Some(hash) {
            return Ok(Fetched::Unchanged);
        }
        let prepared = super::prepare(&body, source.format, allow);
        sanity(
            &prepared,
            self.last_good.as_ref().is_some_and(|l| l.read > 0),
        )?;
        if let Some((etag, modified)) = validators {
            self.etag = etag;
            self.last_modified = modified;
        }
        self.last_hash = Some(hash);
        self.last_good = Some(prepared.clone());
        Ok(Fetched::New(prepared))
    }
}

/// Status of one source for `ips blocklist status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Name.
    pub name: String,
    /// `list` (configured), `import` (`ips blocklist import`), `lapi` or `hub`.
    #[serde(default)]
    pub kind: String,
    /// Where from.
    pub from: String,
    /// Prefixes banned after filtering and aggregation.
    pub entries: u64,
    /// Last successful fetch (Unix ms), if any.
    pub last_success_ms: Option<i64>,
    /// Last error, if the last fetch failed.
    pub last_error: Option<String>,
    /// Fetches answered 304 Not Modified.
    pub not_modified: u64,
    /// Packets dropped under this list's origin (IPv4 + IPv6).
    pub dropped: u64,
}

/// One configured list on the scheduler: fetch when due, hand new content to the sink, renew
/// the last good list when a fetch fails or nothing changed.
pub struct ListTask<S> {
    source: SourceConfig,
    fetcher: Fetcher,
    agent: ureq::Agent,
    sink: S,
    status: Arc<Mutex<Vec<SourceStatus>>>,
    index: usize,
    /// Set while the last import did not fit in the kernel's maps.
    degraded: Option<String>,
}

/// Adds a source's entry to `status`; returns its index there.
pub fn register(status: &Arc<Mutex<Vec<SourceStatus>>>, entry: SourceStatus) -> usize {
    let mut s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    s.push(entry);
    s.len() - 1
}

/// Updates entry `index` of `status`.
pub fn report(
    status: &Arc<Mutex<Vec<SourceStatus>>>,
    index: usize,
    f: impl FnOnce(&mut SourceStatus),
) {
    let mut s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = s.get_mut(index) {
        f(s);
    }
}

/// The tasks of `sources`, reporting into `status` (an entry each, added here).
pub fn tasks<S: Sink + Clone>(
    sources: Vec<SourceConfig>,
    sink: &S,
    status: &Arc<Mutex<Vec<SourceStatus>>>,
) -> Vec<Box<dyn Task>> {
    sources
        .into_iter()
        .map(|source| {
            let index = register(
                status,
                SourceStatus {
                    name: source.name.clone(),
                    kind: "list".into(),
                    from: source
                        .url
                        .clone()
                        .or_else(|| source.path.as_ref().map(|p| p.display().to_string()))
                        .unwrap_or_default(),
                    ..SourceStatus::default()
                },
            );
            Box::new(ListTask {
                source,
                fetcher: Fetcher::default(),
                agent: crate::http::agent(Duration::from_secs(120)),
                sink: sink.clone(),
                status: status.clone(),
                index,
                degraded: None,
            }) as Box<dyn Task>
        })
        .collect()
}

impl<S: Sink> Task for ListTask<S> {
    fn interval(&self) -> Duration {
        self.source.refresh
    }

    fn run(&mut self) {
        let name = self.source.name.clone();
        let duration = self.source.entry_duration();
        let allow = self.sink.allowlist();
        let (mut list, error) = match self.fetcher.fetch(&self.agent, &self.source, &allow) {
            Ok(Fetched::New(list)) => (Some(list), None),
            Ok(Fetched::Unchanged) => (None, None),
            Err(e) => {
                warn!(list = %name, error = %e, "Blocklist fetch failed; keeping the last good list.");
                (None, Some(e.to_string()))
            }
        };
        if list.is_none() {
            // Unchanged, or the fetch failed: what is listed stays listed.
            match self.sink.renew_list(&name, duration) {
                // The lease lapsed (the thread was held up for three refreshes): the last good
                // list goes in again.
                Ok(false) => list = self.fetcher.last_good.clone(),
                Ok(true) => {}
                Err(e) => warn!(list = %name, error = %e, "Cannot renew the blocklist."),
            }
        }
        let mut entries = None;
        if let Some(list) = list {
            match self.sink.replace_list(&name, list, allow.version, duration) {
                Ok(r) if r.not_fitted > 0 => {
                    warn!(list = %name, entries = r.entries, not_fitted = r.not_fitted, "Blocklist degraded: the kernel's maps are full.");
                    entries = Some(r.entries);
                    self.degraded = Some(format!(
                        "degraded: {} entries did not fit in the kernel's maps (raise enforcer.max_hosts or max_prefixes)",
                        r.not_fitted
                    ));
                }
                Ok(r) => {
                    info!(list = %name, entries = r.entries, added = r.added, removed = r.removed, "Blocklist refreshed.");
                    entries = Some(r.entries);
                    self.degraded = None;
                }
                Err(e) => warn!(list = %name, error = %e, "Blocklist import failed."),
            }
        }
        let (degraded, not_modified) = (self.degraded.clone(), self.fetcher.not_modified);
        report(&self.status, self.index, |s| {
            if let Some(n) = entries {
                s.entries = n;
            }
            if error.is_none() {
                s.last_success_ms = Some(now_ms());
            }
            s.last_error = error.or(degraded);
            s.not_modified = not_modified;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix::Prefix;

    #[test]
    fn sanity_rejects_error_pages_and_empty_replacements() {
        let none = crate::blocklists::allowing(&[]);
        let check = |text: &str, had| sanity(&crate::blocklists::prepare(text, None, &none), had);
        assert!(check("1.2.3.4\n5.6.7.0/24\n", false).is_ok());
        assert!(matches!(
            check("<html><body>502 Bad Gateway</body></html>\n", true),
            Err(FetchError::Garbled(_))
        ));
        assert!(matches!(
            check("# empty\n", true),
            Err(FetchError::Garbled(_))
        ));
        assert!(check("# empty\n", false).is_ok());
    }

    #[test]
    fn config_validation_names_the_list() {
        let mut c = SourceConfig {
            name: "x".into(),
            url: Some("ftp://x".into()),
            path: None,
            format: None,
            refresh: Duration::from_secs(60),
        };
        assert!(c.validate().unwrap_err().contains("ftp"));
        c.url = Some("https://example.org/list.txt".into());
        assert_eq!(c.validate(), Ok(()));
        c.name = "a b".into();
        assert!(c.validate().unwrap_err().contains("a b"));
        assert_eq!(c.entry_duration(), Duration::from_secs(180));
    }

    fn file_source(path: std::path::PathBuf, refresh_secs: u64) -> SourceConfig {
        SourceConfig {
            name: "f".into(),
            url: None,
            path: Some(path),
            format: None,
            refresh: Duration::from_secs(refresh_secs),
        }
    }

    /// A sink that records what it is asked and answers renewals with `renewed`.
    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<String>>>,
        lists: Arc<Mutex<Vec<Vec<Prefix>>>>,
        renewed: bool,
    }

    impl Sink for Recorder {
        type Error = String;

        fn allowlist(&self) -> Arc<crate::decisions::Allowlist> {
            Arc::default()
        }

        fn replace_list(
            &self,
            name: &str,
            prepared: Prepared,
            _: u64,
            duration: Duration,
        ) -> Result<crate::decisions::ImportReport, String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("import {name} {duration:?}"));
            self.lists.lock().unwrap().push(prepared.prefixes.clone());
            Ok(crate::decisions::ImportReport {
                name: name.to_owned(),
                entries: prepared.prefixes.len() as u64,
                prepared,
                added: 1,
                removed: 0,
                took: crate::decisions::ImportTimes::default(),
                not_fitted: 0,
            })
        }

        fn renew_list(&self, name: &str, duration: Duration) -> Result<bool, String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("renew {name} {duration:?}"));
            Ok(self.renewed)
        }

        fn ban(&self, _: Vec<crate::decisions::NewDecision>) -> Result<(), String> {
            Err("not for lists".into())
        }

        fn unban(&self, _: Prefix, _: crate::decisions::Origin) -> Result<(), String> {
            Err("not for lists".into())
        }
    }

    #[test]
    fn a_lapsed_lease_brings_the_last_good_list_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.txt");
        std::fs::write(&path, "1.2.3.4\n").unwrap();
        let src = file_source(path, 1);
        let status = Arc::new(Mutex::new(Vec::new()));
        // The store answers renewals that the lease had lapsed.
        let sink = Recorder::default();
        let mut tasks = tasks(vec![src], &sink, &status);
        assert_eq!(tasks[0].interval(), Duration::from_secs(1));
        // First fetch: imported.
        tasks[0].run();
        // Same bytes: renewed, and the store answers that the lease had lapsed, so the last
        // good list is imported again.
        tasks[0].run();
        assert_eq!(
            *sink.calls.lock().unwrap(),
            ["import f 60s", "renew f 60s", "import f 60s"]
        );
        let one: Vec<Prefix> = vec!["1.2.3.4".parse().unwrap()];
        assert_eq!(*sink.lists.lock().unwrap(), [one.clone(), one]);
        assert_eq!(status.lock().unwrap()[0].entries, 1);
        // A live lease is only renewed.
        let live = Recorder {
            renewed: true,
            ..Recorder::default()
        };
        let mut tasks = super::tasks(
            vec![file_source(dir.path().join("l.txt"), 1)],
            &live,
            &status,
        );
        tasks[0].run();
        tasks[0].run();
        assert_eq!(*live.calls.lock().unwrap(), ["import f 60s", "renew f 60s"]);
    }

    #[test]
    fn last_modified_makes_the_next_request_conditional() {
        use std::io::{BufRead, BufReader, Write};
        // A list server on loopback that knows only Last-Modified, as many mirrors do.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/list.txt", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().unwrap();
                let mut since = None;
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("if-modified-since")
                    {
                        since = Some(value.trim().to_owned());
                    }
                }
                let stamp = "Wed, 25 Nov 2026 10:00:00 GMT";
                let answer = if since.as_deref() == Some(stamp) {
                    "HTTP/1.1 304 Not Modified\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                        .to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nLast-Modified: {stamp}\r\nContent-Length: 8\r\n\r\n1.2.3.4\n"
                    )
                };
                conn.write_all(answer.as_bytes()).unwrap();
                asked.push(since);
            }
            asked
        });
        let src = SourceConfig {
            name: "m".into(),
            url: Some(url),
            path: None,
            format: None,
            refresh: Duration::from_secs(60),
        };
        let mut f = Fetcher::default();
        let agent = crate::http::agent(Duration::from_secs(10));
        let none = Arc::new(crate::blocklists::allowing(&[]));
        assert!(matches!(f.fetch(&agent, &src, &none), Ok(Fetched::New(_))));
        assert_eq!(f.fetch(&agent, &src, &none), Ok(Fetched::Unchanged));
        assert_eq!(f.not_modified, 1);
        let asked = server.join().unwrap();
        assert_eq!(
            asked,
            [None, Some("Wed, 25 Nov 2026 10:00:00 GMT".to_owned())]
        );
    }

    #[test]
    fn a_failed_file_read_keeps_the_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.txt");
        std::fs::write(&path, "1.2.3.4\n").unwrap();
        let src = file_source(path.clone(), 60);
        let mut f = Fetcher::default();
        let agent = crate::http::agent(Duration::from_secs(10));
        let none = Arc::new(crate::blocklists::allowing(&[]));
        let one = crate::blocklists::prepare("1.2.3.4\n", None, &none);
        assert_eq!(f.fetch(&agent, &src, &none), Ok(Fetched::New(one.clone())));
        assert_eq!(f.fetch(&agent, &src, &none), Ok(Fetched::Unchanged));
        // The same bytes under another allowlist are prepared again.
        let allow = Arc::new(crate::blocklists::allowing(&["1.2.3.0/24"
            .parse()
            .unwrap()]));
        match f.fetch(&agent, &src, &allow) {
            Ok(Fetched::New(l)) => {
                assert!(l.prefixes.is_empty());
                assert_eq!(l.filtered.allowlisted, 1);
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "garbage\nmore garbage\n").unwrap();
        assert!(matches!(
            f.fetch(&agent, &src, &none),
            Err(FetchError::Garbled(_))
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            f.fetch(&agent, &src, &none),
            Err(FetchError::Failed(_))
        ));
        assert_eq!(f.last_good.map(|l| l.read), Some(1));
    }
}
