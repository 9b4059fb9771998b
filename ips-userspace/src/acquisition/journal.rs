//! The systemd journal, through `journalctl -f -o json`. Each entry becomes an ISO 8601 syslog
//! line (`TIME HOST IDENT[PID]: MESSAGE`) for the usual parsers.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc::SyncSender,
};

use serde_json::Value;
use tracing::warn;

use super::{Chunk, Stop};

/// Turns one `journalctl -o json` line into a syslog line, or `None` if it has no message.
pub fn to_syslog_line(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    let message = match v.get("MESSAGE")? {
        Value::String(s) => s.clone(),
        // Non-UTF-8 messages come as byte arrays.
        Value::Array(bytes) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|x| x.as_u64().map(|n| n as u8))
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => return None,
    };
    let micros: i64 = text("__REALTIME_TIMESTAMP")?.parse().ok()?;
    let ident = text("SYSLOG_IDENTIFIER")
        .or(text("_COMM"))
        .unwrap_or("unknown");
    let host = text("_HOSTNAME").unwrap_or("localhost");
    let pid = text("_PID").or(text("SYSLOG_PID"));
    let tag = match pid {
        Some(p) => format!("{ident}[{p}]"),
        None => ident.to_owned(),
    };
    Some(format!(
        "{}Z {host} {tag}: {}\n",
        crate::calendar::format(micros, 1_000_000, 'T', 6),
        message.replace('\n', " ")
    ))
}

/// Runs `journalctl -f -o json -n 0 ARGS` until `stop` or its end.
pub fn run(source: usize, args: Vec<String>, tx: SyncSender<Chunk>, stop: Stop) {
    let child = Command::new("journalctl")
        .args(["-f", "-o", "json", "-n", "0", "--no-pager"])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "Cannot run journalctl; the journald source is off.");
            return;
        }
    };
    let Some(out) = child.stdout.take() else {
        return;
    };
    for line in BufReader::new(out).lines() {
        if stop.stopped() {
            break;
        }
        let Ok(line) = line else { break };
        if let Some(text) = to_syslog_line(&line)
            && tx
                .send(Chunk {
                    source,
                    text,
                    position: None,
                })
                .is_err()
        {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsers::{self, Clock, Kind, LogType};

    #[test]
    fn journal_entries_become_parsable_syslog_lines() {
        let json = r#"{"__REALTIME_TIMESTAMP":"1700000000123456","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd-session","_PID":"4242","MESSAGE":"Invalid user bob from 203.0.113.4 port 2222"}"#;
        let line = to_syslog_line(json).unwrap();
        assert_eq!(
            line,
            "2023-11-14T22:13:20.123456Z web1 sshd-session[4242]: Invalid user bob from 203.0.113.4 port 2222\n"
        );
        let e = parsers::parse(LogType::Sshd, &line, &Clock::utc(0)).unwrap();
        assert_eq!(e.kind, Kind::InvalidUser);
        assert_eq!(e.time_ms, 1_700_000_000_123);
        let bytes = r#"{"__REALTIME_TIMESTAMP":"0","MESSAGE":[104,105]}"#;
        assert!(to_syslog_line(bytes).unwrap().ends_with("unknown: hi\n"));
        assert_eq!(to_syslog_line("not json"), None);
    }
}
