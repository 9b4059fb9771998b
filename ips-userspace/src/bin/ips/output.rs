//! Printing: aligned tables for people, JSON for programs.
use serde::Serialize;

use crate::Format;

/// Prints `value` as JSON, or `rows` under `header` as a table.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Table => print!("{}", table(header, &rows)),
    }
    Ok(())
}

/// `s` with control characters escaped (`\u{1b}`, `\n`): stored text (reasons, log lines)
/// can hold anything, and must not reach the terminal raw.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Longest cell a table shows; longer ones are cut with an ellipsis (`-o json` has all).
const MAX_CELL: usize = 200;

fn cell(s: &str) -> String {
    let s = clean(s);
    if s.chars().count() <= MAX_CELL {
        return s;
    }
    s.chars().take(MAX_CELL - 1).chain(['…']).collect()
}

/// Formats rows under a header with columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: i64) -> String {
    ips::calendar::format(ms, 1000, ' ', 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_000_000_000), "2026-11-18 11:06:40");
    }

    #[test]
    fn table_pads_columns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    #[test]
    fn cells_are_escaped_and_cut() {
        let t = table(
            &["A", "B"],
            &[vec!["x\u{1b}[31my\n".into(), "z".repeat(70_000)]],
        );
        assert!(t.contains("x\\u{1b}[31my\\n"), "{t}");
        assert!(!t.contains('\u{1b}'));
        assert!(t.len() < 1000);
    }
}
