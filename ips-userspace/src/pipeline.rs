//! The detection pipeline of a running daemon: sources -> parsers -> scenario engine, on one
//! thread fed by the acquisition threads; each alert goes to the decision service, which runs
//! the profiles and bans. Live mode stamps events with their arrival time (see [`process`]).
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{
    acquisition::{self, CHANNEL_CHUNKS, Chunk, Position, SourceConfig, Stop, file::FileSource},
    calendar::now_ms,
    decisions::STATE_OFFSETS,
    parsers::{self, Clock},
    scenarios::Engine,
    service::{Command, Handle},
};

/// Line counts of one source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// What the source reads.
    pub name: String,
    /// Lines read.
    pub lines: u64,
    /// Lines that gave an event.
    pub events: u64,
    /// Lines that gave none, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// Counters of the pipeline, for `ips status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionStats {
    /// Per source.
    pub sources: Vec<SourceStats>,
    /// Alerts raised.
    pub alerts: u64,
    /// Buckets in memory.
    pub buckets: u64,
    /// Buckets evicted to stay within `detection.max_buckets`.
    pub evicted: u64,
    /// Times the detection loop failed and was started again (0 when all is well).
    #[serde(default)]
    pub restarts: u64,
}

/// Skip reason of a line that made a parser or the engine fail.
pub const LINE_FAILED: &str = "failed";

/// How often read positions are saved while lines flow.
const SAVE_EVERY: Duration = Duration::from_millis(200);

fn source_name(s: &SourceConfig) -> String {
    match s {
        SourceConfig::File { paths, .. } => paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
        SourceConfig::Journald { args, .. } => format!("journald {}", args.join(" ")),
        SourceConfig::Stdin { .. } => "stdin".into(),
    }
}

/// Parses a chunk's lines, pours their events and notes the chunk's read position.
///
/// Events are stamped `now`, their arrival time, not the time the parser read from the line:
/// the engine's buckets leak, and its counters close, on the ticks of this thread's wall clock,
/// and line times would disagree with it. RFC 3164 stamps carry neither a year nor a zone (on a
/// host that logs in local time they are off by its UTC offset, hours either way), most have
/// one-second resolution, and a clock step on the logging host would move them too. Lines
/// arrive within milliseconds of being written (inotify), so arrival time is the line's time
/// except for a backlog read after the daemon was down: that is judged as if it came at once,
/// which can only make a bucket fuller, never hide an attack. `ips replay` uses line times.
fn process(
    engine: &mut Engine,
    stats: &mut [SourceStats],
    types: &[crate::parsers::LogType],
    chunk: Chunk,
    now: i64,
    alerts: &mut Vec<crate::scenarios::Alert>,
    positions: &mut HashMap<PathBuf, Position>,
) {
    let clock = Clock::utc(now);
    let kind = types.get(chunk.source).copied().unwrap_or_default();
    let last = stats.len().saturating_sub(1);
    let source = chunk.source;
    let Some(st) = stats.get_mut(source.min(last)) else {
        return;
    };
    for line in chunk.text.lines() {
        st.lines += 1;
        // A line that makes a parser or the engine fail is skipped and counted; it never takes
        // detection down with it.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match parsers::parse(kind, line, &clock) {
                    Ok(mut e) => {
                        e.time_ms = now;
                        engine.pour(&e, line, alerts);
                        None
                    }
                    Err(skip) => Some(skip.name()),
                }
            }));
        match outcome {
            Ok(None) => st.events += 1,
            Ok(Some(skip)) => *st.skipped.entry(skip.to_owned()).or_default() += 1,
            Err(_) => {
                *st.skipped.entry(LINE_FAILED.to_owned()).or_default() += 1;
                warn!(
                    source,
                    line = %line.escape_debug().to_string().chars().take(200).collect::<String>(),
                    "A log line made detection fail; skipped."
                );
            }
        }
    }
    if let Some(p) = chunk.position {
        positions.insert(p.path.clone(), p);
    }
}

/// Starts the sources and the pipeline thread. It ends after `stop`, having saved the read
/// positions of every line it processed, and hands back its engine (a reload carries the
/// buckets over, see [`Engine::carry_over`]).
pub fn spawn(
    sources: Vec<SourceConfig>,
    mut engine: Engine,
    saved: Vec<Position>,
    service: Handle,
    stop: Stop,
    stats: Arc<Mutex<DetectionStats>>,
) -> std::io::Result<thread::JoinHandle<Engine>> {
    let (tx, rx) = mpsc::sync_channel::<Chunk>(CHANNEL_CHUNKS);
    let saved: HashMap<PathBuf, Position> =
        saved.into_iter().map(|p| (p.path.clone(), p)).collect();
    // A reload starts a new pipeline: the counters of sources it keeps, and the alert count,
    // go on from where they were.
    let mut raised = 0u64;
    let mut carried = Vec::new();
    if let Ok(mut s) = stats.lock() {
        raised = s.alerts;
        s.sources = sources
            .iter()
            .map(|c| {
                let name = source_name(c);
                s.sources
                    .iter()
                    .find(|o| o.name == name)
                    .cloned()
                    .unwrap_or(SourceStats {
                        name,
                        ..SourceStats::default()
                    })
            })
            .collect();
        carried = s.sources.clone();
    }
    for (i, source) in sources.iter().enumerate() {
        let (tx, stop) = (tx.clone(), stop.clone());
        let builder = thread::Builder::new().name(format!("ips-source-{i}"));
        match source.clone() {
            SourceConfig::File {
                paths,
                from_beginning,
                ..
            } => {
                let fs = FileSource {
                    source: i,
                    patterns: paths,
                    from_beginning,
                    saved: saved.clone(),
                };
                builder.spawn(move || fs.run(tx, stop))?;
            }
            SourceConfig::Journald { args, .. } => {
                builder.spawn(move || acquisition::journal::run(i, args, tx, stop))?;
            }
            SourceConfig::Stdin { .. } => {
                builder.spawn(move || acquisition::run_stdin(i, tx, stop))?;
            }
        }
    }
    drop(tx);
    let types: Vec<_> = sources.iter().map(SourceConfig::log_type).collect();
    thread::Builder::new()
        .name("ips-detection".into())
        .spawn(move || {
            let mut alerts = Vec::new();
            let mut positions: HashMap<PathBuf, Position> = HashMap::new();
            let mut last_save = Instant::now();
            let mut local: Vec<SourceStats> = carried;
            local.resize(types.len(), SourceStats::default());
            let save = |positions: &mut HashMap<PathBuf, Position>| {
                if !positions.is_empty() {
                    let rows = positions.drain().map(|(_, p)| p.to_row()).collect();
                    let _ = service.notify(Command::SaveState(STATE_OFFSETS, rows));
                }
            };
            // The loop, restarted if it ever fails (per-line failures are caught in `process`);
            // the state it keeps (buckets, positions, counters) carries over.
            let mut run = || {
                loop {
                    let chunk = match rx.recv_timeout(Duration::from_millis(250)) {
                        Ok(c) => Some(c),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let now = now_ms();
                    if let Some(chunk) = chunk {
                        process(
                            &mut engine,
                            &mut local,
                            &types,
                            chunk,
                            now,
                            &mut alerts,
                            &mut positions,
                        );
                    } else {
                        engine.tick(now, &mut alerts);
                    }
                    for a in alerts.drain(..) {
                        raised += 1;
                        if service.notify(Command::Alert(Box::new(a))).is_err() {
                            warn!("The decision service has stopped; dropping alert.");
                        }
                    }
                    if last_save.elapsed() >= SAVE_EVERY || stop.stopped() {
                        save(&mut positions);
                        last_save = Instant::now();
                        if let Ok(mut s) = stats.lock() {
                            for (dst, src) in s.sources.iter_mut().zip(&local) {
                                dst.lines = src.lines;
                                dst.events = src.events;
                                dst.skipped = src.skipped.clone();
                            }
                            s.alerts = raised;
                            s.buckets = engine.buckets() as u64;
                            s.evicted = engine.stats().evicted;
                        }
                    }
                    if stop.stopped() {
                        // Take what is already queued, then stop.
                        while let Ok(c) = rx.try_recv() {
                            process(
                                &mut engine,
                                &mut local,
                                &types,
                                c,
                                now,
                                &mut alerts,
                                &mut positions,
                            );
                        }
                        for a in alerts.drain(..) {
                            let _ = service.notify(Command::Alert(Box::new(a)));
                        }
                        save(&mut positions);
                        break;
                    }
                }
            };
            while std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut run)).is_err() {
                tracing::error!("The detection loop failed; starting it again.");
                stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .restarts += 1;
            }
            save(&mut positions);
            engine
        })
}
