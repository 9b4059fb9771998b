//! Reads CrowdSec scenario YAML and writes the same scenarios in ips's format, for the subset
//! that has the same meaning: `type` leaky, trigger or counter; `filter` a conjunction of tests
//! on the web fields (`evt.Meta.http_path`, `evt.Meta.http_status`, `evt.Parsed.verb`,
//! `evt.Meta.http_user_agent`, `evt.Parsed.file_name`, `evt.Parsed.static_ressource`,
//! `evt.Meta.log_type`, `evt.Meta.service`) with `==`, `in`, `contains`, `matches`,
//! `startsWith`, `endsWith` (and `Upper`/`Lower`, as ips's tests ignore case), where an `or`
//! joins tests of one field; `any(File(..), {..})` and `RegexpInFile` over the hub's data
//! files (given as a directory); `groupby` the source address; `distinct` the path, query or
//! user agent; `capacity`,
//! `leakspeed`, `duration`, `blackhole` and `labels`. A scenario outside it (data files, other
//! event fields, `conditional` buckets) is left out with the reason.
use std::fmt::Write as _;

use serde::Deserialize;

/// One YAML document as CrowdSec writes it (fields this reader does not use are ignored).
#[derive(Debug, Default, Deserialize)]
struct Yaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    groupby: Option<String>,
    #[serde(default)]
    distinct: Option<String>,
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    leakspeed: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    blackhole: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, serde_norway::Value>,
}

/// What a translation made of a file.
#[derive(Debug, Default)]
pub struct Translation {
    /// The scenarios in ips's format (a scenario file for `[detection] scenario_files`).
    pub toml: String,
    /// Names translated.
    pub translated: Vec<String>,
    /// Names left out, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Translates every YAML document of `text`. `data` is where the hub's data files are (the
/// `dest_file` of a scenario's `data` section, downloaded beforehand): `any(File(...), ...)`
/// and `RegexpInFile(...)` read their lines from there.
pub fn translate(text: &str, data: Option<&std::path::Path>) -> Translation {
    let mut out = Translation::default();
    for doc in serde_norway::Deserializer::from_str(text) {
        let y = match Yaml::deserialize(doc) {
            Ok(y) => y,
            Err(e) => {
                out.skipped
                    .push((String::new(), format!("not a scenario: {e}")));
                continue;
            }
        };
        if y.name.is_empty() {
            continue;
        }
        match scenario(&y, data) {
            Ok(toml) => {
                // What is written must be what ips reads.
                match super::definition::parse(&toml) {
                    Ok(_) => {
                        out.toml.push_str(&toml);
                        out.translated.push(y.name.clone());
                    }
                    Err(e) => out.skipped.push((y.name.clone(), e.to_string())),
                }
            }
            Err(reason) => out.skipped.push((y.name.clone(), reason)),
        }
    }
    out
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// A Go duration (`10s`, `0.5s`, `1m30s`) in a form ips reads.
fn duration(field: &str, s: &str) -> Result<String, String> {
    let s = s.trim();
    if crate::duration::parse(s).is_ok() {
        return Ok(s.to_owned());
    }
    if let Some(secs) = s.strip_suffix('s').and_then(|n| n.parse::<f64>().ok())
        && secs > 0.0
    {
        return Ok(format!("{}ms", (secs * 1000.0).round() as u64));
    }
    Err(format!("{field} {s:?} is not a duration ips reads"))
}

fn scenario(y: &Yaml, data: Option<&std::path::Path>) -> Result<String, String> {
    let kind = match y.kind.as_str() {
        "leaky" | "trigger" | "counter" => y.kind.as_str(),
        other => return Err(format!("type {other:?}: only leaky, trigger and counter")),
    };
    let filter = filter(&y.filter, data)?;
    let groupby = match y.groupby.as_deref().map(str::trim) {
        None | Some("evt.Meta.source_ip") => "source",
        Some(g) if g.starts_with("evt.Meta.source_ip +") && g.contains("target_fqdn") => "source",
        Some(g) => return Err(format!("groupby {g:?}: only the source address")),
    };
    let mut t = String::from("[[scenario]]\n");
    let _ = writeln!(t, "name = {}", q(&y.name));
    let _ = writeln!(t, "description = {}", q(y.description.trim()));
    let _ = writeln!(t, "type = {}", q(kind));
    let _ = writeln!(t, "filter = {filter}");
    let _ = writeln!(t, "groupby = {}", q(groupby));
    match y.distinct.as_deref().map(str::trim) {
        None => {}
        Some("evt.Meta.http_path" | "evt.Parsed.file_name" | "evt.Parsed.request") => {
            t.push_str("distinct = \"path\"\n");
        }
        Some("evt.Parsed.http_args") => t.push_str("distinct = \"query\"\n"),
        Some("evt.Parsed.http_user_agent" | "evt.Meta.http_user_agent") => {
            t.push_str("distinct = \"user_agent\"\n");
        }
        Some(d) => {
            return Err(format!(
                "distinct {d:?}: only the path, query or user agent"
            ));
        }
    }
    if kind == "leaky" {
        let _ = writeln!(t, "capacity = {}", y.capacity.unwrap_or(1).max(1));
    } else if let Some(c) = y.capacity {
        let _ = writeln!(t, "capacity = {}", c.max(0));
    }
    if let Some(l) = &y.leakspeed {
        let _ = writeln!(t, "leakspeed = {}", q(&duration("leakspeed", l)?));
    }
    if let Some(d) = &y.duration {
        let _ = writeln!(t, "duration = {}", q(&duration("duration", d)?));
    }
    if let Some(b) = &y.blackhole {
        let _ = writeln!(t, "blackhole = {}", q(&duration("blackhole", b)?));
    }
    let labels: Vec<String> = y
        .labels
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                serde_norway::Value::String(s) => s.clone(),
                serde_norway::Value::Bool(b) => b.to_string(),
                serde_norway::Value::Number(n) => n.to_string(),
                serde_norway::Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => return None,
            };
            Some(format!("{} = {}", q(k), q(&text)))
        })
        .chain(std::iter::once(format!(
            "\"origin\" = {}",
            q("crowdsec-hub")
        )))
        .collect();
    let _ = writeln!(t, "labels = {{ {} }}\n", labels.join(", "));
    Ok(t)
}

/// A token of CrowdSec's filter language (expr).
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    Open,
    Close,
    OpenList,
    CloseList,
    OpenBrace,
    CloseBrace,
    Hash,
    Comma,
}

fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'#' | b',' => {
                out.push(match c {
                    b'(' => Tok::Open,
                    b')' => Tok::Close,
                    b'[' => Tok::OpenList,
                    b']' => Tok::CloseList,
                    b'{' => Tok::OpenBrace,
                    b'}' => Tok::CloseBrace,
                    b'#' => Tok::Hash,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            b'\'' | b'"' | b'`' => {
                let mut v = Vec::new();
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' && i + 1 < b.len() {
                        i += 1;
                        match b[i] {
                            b'n' => v.push(b'\n'),
                            b't' => v.push(b'\t'),
                            // A regex escape such as `\.` stays one.
                            x if x != c && x != b'\\' => v.extend([b'\\', x]),
                            x => v.push(x),
                        }
                    } else {
                        v.push(b[i]);
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err("a string is not closed".into());
                }
                i += 1;
                out.push(Tok::Str(String::from_utf8_lossy(&v).into_owned()));
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Tok::Num(s[start..i].to_owned()));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                let word = &s[start..i];
                out.push(match word {
                    "and" => Tok::Op("&&"),
                    "or" => Tok::Op("||"),
                    "not" => Tok::Op("not"),
                    "in" => Tok::Op("in"),
                    "contains" => Tok::Op("contains"),
                    "matches" => Tok::Op("matches"),
                    "startsWith" => Tok::Op("startsWith"),
                    "endsWith" => Tok::Op("endsWith"),
                    _ => Tok::Ident(word.to_owned()),
                });
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or("");
                let op = match two {
                    "&&" => "&&",
                    "||" => "||",
                    "==" => "==",
                    "!=" => "!=",
                    ">=" => ">=",
                    "<=" => "<=",
                    _ => "",
                };
                if op.is_empty() {
                    return Err(format!("{:?} (expressions beyond tests)", c as char));
                }
                out.push(Tok::Op(op));
                i += 2;
            }
        }
    }
    Ok(out)
}

/// A test on one field: the field, the operator, the values.
#[derive(Clone, Debug)]
struct Test {
    field: String,
    op: &'static str,
    values: Vec<String>,
}

/// A parsed filter: a conjunction of disjunctions of tests.
struct Parser<'d> {
    toks: Vec<Tok>,
    at: usize,
    data: Option<&'d std::path::Path>,
}

impl Parser<'_> {
    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == *want => Ok(()),
            other => Err(format!("{what}: found {other:?}")),
        }
    }

    /// The lines of data file `name` (empty lines and `#` comments left out).
    fn data_file(&self, name: &str) -> Result<Vec<String>, String> {
        let dir = self
            .data
            .ok_or_else(|| format!("the data file {name} (give the directory with --data)"))?;
        if name.contains('/') || name.contains("..") {
            return Err(format!("the data file name {name:?}"));
        }
        let text = std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("the data file {name}: {e}"))?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            return Err(format!("the data file {name} is empty"));
        }
        Ok(lines)
    }

    /// `any(File("name"), { FIELD op # })`: the test with the file's lines as values.
    fn any_file(&mut self) -> Result<Test, String> {
        self.next();
        self.expect(&Tok::Open, "any(")?;
        self.expect(&Tok::Ident("File".into()), "any(File(")?;
        self.expect(&Tok::Open, "File(")?;
        let name = match self.next() {
            Some(Tok::Str(n)) => n,
            other => return Err(format!("File({other:?})")),
        };
        self.expect(&Tok::Close, "File(...)")?;
        self.expect(&Tok::Comma, "any(File(...),")?;
        self.expect(&Tok::OpenBrace, "any(File(...), {")?;
        let field = self.field()?;
        let op = match self.next() {
            Some(Tok::Op(op @ ("==" | "contains" | "matches" | "startsWith" | "endsWith"))) => op,
            other => return Err(format!("the operator {other:?} on {field}")),
        };
        // `#`, or `Upper(#)` / `Lower(#)`.
        match self.next() {
            Some(Tok::Hash) => {}
            Some(Tok::Ident(f)) if f == "Upper" || f == "Lower" => {
                self.expect(&Tok::Open, "Upper(")?;
                self.expect(&Tok::Hash, "Upper(#")?;
                self.expect(&Tok::Close, "Upper(#)")?;
            }
            other => return Err(format!("{other:?} where the file's line goes")),
        }
        self.expect(&Tok::CloseBrace, "}")?;
        self.expect(&Tok::Close, "any(...)")?;
        Ok(Test {
            field,
            op,
            values: self.data_file(&name)?,
        })
    }

    /// `RegexpInFile(FIELD, "name")`: the field matches one of the file's regexes.
    fn regexp_in_file(&mut self) -> Result<Test, String> {
        self.next();
        self.expect(&Tok::Open, "RegexpInFile(")?;
        let field = self.field()?;
        self.expect(&Tok::Comma, "RegexpInFile(field,")?;
        let name = match self.next() {
            Some(Tok::Str(n)) => n,
            other => return Err(format!("RegexpInFile(.., {other:?})")),
        };
        self.expect(&Tok::Close, "RegexpInFile(...)")?;
        Ok(Test {
            field,
            op: "matches",
            values: self.data_file(&name)?,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    /// `or` of `and`s: returns the conjunction of disjunctions, or refuses a form it cannot
    /// keep (an `or` across different fields, a negation).
    fn expr(&mut self) -> Result<Vec<Vec<Test>>, String> {
        let mut alternatives = vec![self.conjunction()?];
        while self.peek() == Some(&Tok::Op("||")) {
            self.next();
            alternatives.push(self.conjunction()?);
        }
        if alternatives.len() == 1 {
            return Ok(alternatives.remove(0));
        }
        // `A or B` is kept when each side is one test: one disjunction.
        let mut any = Vec::new();
        for a in alternatives {
            match a.as_slice() {
                [one] => any.extend(one.iter().cloned()),
                _ => return Err("an `or` of conjunctions".into()),
            }
        }
        Ok(vec![any])
    }

    fn conjunction(&mut self) -> Result<Vec<Vec<Test>>, String> {
        let mut all = self.term()?;
        while self.peek() == Some(&Tok::Op("&&")) {
            self.next();
            all.extend(self.term()?);
        }
        Ok(all)
    }

    fn term(&mut self) -> Result<Vec<Vec<Test>>, String> {
        match self.peek() {
            Some(Tok::Open) => {
                self.next();
                let inner = self.expr()?;
                if self.next() != Some(Tok::Close) {
                    return Err("unbalanced parentheses".into());
                }
                Ok(inner)
            }
            Some(Tok::Op("not")) | Some(Tok::Op("!=")) => Err("a negation".into()),
            Some(Tok::Ident(f)) if f == "any" => Ok(vec![vec![self.any_file()?]]),
            Some(Tok::Ident(f)) if f == "RegexpInFile" => Ok(vec![vec![self.regexp_in_file()?]]),
            _ => Ok(vec![vec![self.test()?]]),
        }
    }

    /// The field, unwrapping `Upper(...)` and `Lower(...)`.
    fn field(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(f)) if f == "Upper" || f == "Lower" => {
                if self.next() != Some(Tok::Open) {
                    return Err(format!("{f} without its argument"));
                }
                let inner = self.field()?;
                if self.next() != Some(Tok::Close) {
                    return Err(format!("{f}( not closed"));
                }
                Ok(inner)
            }
            Some(Tok::Ident(f)) if self.peek() == Some(&Tok::Open) => Err(format!(
                "the function {f}() (data files and helpers are not read)"
            )),
            Some(Tok::Ident(f)) => Ok(f),
            other => Err(format!("a test starting with {other:?}")),
        }
    }

    fn test(&mut self) -> Result<Test, String> {
        let field = self.field()?;
        let op = match self.next() {
            Some(Tok::Op(
                op @ ("==" | "in" | "contains" | "matches" | "startsWith" | "endsWith"),
            )) => op,
            other => return Err(format!("the operator {other:?} on {field}")),
        };
        let mut values = Vec::new();
        if op == "in" {
            if self.next() != Some(Tok::OpenList) {
                return Err(format!("`in` on {field} without a list"));
            }
            loop {
                match self.next() {
                    Some(Tok::Str(s) | Tok::Num(s)) => values.push(s),
                    Some(Tok::CloseList) => break,
                    other => return Err(format!("{other:?} in a list")),
                }
                match self.next() {
                    Some(Tok::Comma) => {}
                    Some(Tok::CloseList) => break,
                    other => return Err(format!("{other:?} in a list")),
                }
            }
        } else {
            match self.next() {
                Some(Tok::Str(s) | Tok::Num(s)) => values.push(s),
                other => return Err(format!("the value {other:?} for {field}")),
            }
        }
        Ok(Test { field, op, values })
    }
}

/// The filter in ips's form (an inline TOML table).
fn filter(expr: &str, data: Option<&std::path::Path>) -> Result<String, String> {
    let mut p = Parser {
        toks: tokens(expr)?,
        at: 0,
        data,
    };
    let groups = p.expr()?;
    if p.at < p.toks.len() {
        return Err(format!("{:?} after the filter", p.toks[p.at]));
    }
    let mut f = Filter::default();
    for group in groups {
        f.add(&group)?;
    }
    f.toml()
}

/// The fields of an ips filter, as translated.
#[derive(Default)]
struct Filter {
    http: bool,
    status: Option<Vec<String>>,
    method: Option<Vec<String>>,
    ignore_static: bool,
    path_contains: Option<Vec<String>>,
    uri_regex: Option<Vec<String>>,
    path_regex: Option<Vec<String>>,
    path_suffix: Option<Vec<String>>,
    query_regex: Option<Vec<String>>,
    proxy: bool,
    user_agent_contains: Option<Vec<String>>,
    user_agent_regex: Option<Vec<String>>,
}

/// Sets a list field once: a second `and` on the same field cannot be kept (ips ORs a list).
fn set(slot: &mut Option<Vec<String>>, what: &str, v: Vec<String>) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("two tests on {what} joined by `and`"));
    }
    *slot = Some(v);
    Ok(())
}

impl Filter {
    /// Adds one disjunction (tests of one field and kind, any of which may hold).
    fn add(&mut self, any: &[Test]) -> Result<(), String> {
        // `verb == 'CONNECT' || request matches '^http[s]?://'`: a proxy request.
        if any.len() == 2
            && any
                .iter()
                .any(|t| t.field == "evt.Parsed.verb" && t.values == ["CONNECT"])
            && any.iter().any(|t| {
                t.op == "matches"
                    && matches!(
                        t.field.as_str(),
                        "evt.Parsed.request" | "evt.Meta.http_path"
                    )
                    && t.values.iter().all(|v| v.starts_with("^http"))
            })
        {
            self.proxy = true;
            return Ok(());
        }
        let first = any.first().ok_or("an empty test")?;
        let (field, op) = (first.field.as_str(), first.op);
        let values: Vec<String> = any.iter().flat_map(|t| t.values.clone()).collect();
        let same = any
            .iter()
            .all(|t| t.field == field && kind(t.op) == kind(op));
        if !same {
            return Err(format!("an `or` across fields or tests ({field})"));
        }
        let esc = |v: &str| regex::escape(v);
        match (field, kind(op)) {
            ("evt.Meta.log_type", "eq") => {
                if values.iter().all(|v| v.starts_with("http_")) {
                    self.http = true;
                } else {
                    return Err(format!("log_type {values:?}: only web access logs"));
                }
            }
            ("evt.Meta.service", "eq") if values == ["http"] => self.http = true,
            ("evt.Meta.http_status", "eq") => set(&mut self.status, "the status", values)?,
            ("evt.Parsed.verb", "eq") => set(&mut self.method, "the method", values)?,
            ("evt.Parsed.static_ressource", "eq") if values == ["false"] => {
                self.ignore_static = true;
            }
            ("evt.Parsed.file_name", "eq") => set(
                &mut self.path_regex,
                "the file name",
                values.iter().map(|v| format!("(^|/){}$", esc(v))).collect(),
            )?,
            ("evt.Parsed.file_name", "endsWith") => {
                set(&mut self.path_suffix, "the file name", values)?;
            }
            ("evt.Parsed.file_name", "contains") => set(
                &mut self.path_regex,
                "the file name",
                values.iter().map(|v| format!("{}[^/]*$", esc(v))).collect(),
            )?,
            ("evt.Parsed.http_args", "contains") => set(
                &mut self.query_regex,
                "the query",
                values.iter().map(|v| esc(v)).collect(),
            )?,
            ("evt.Parsed.http_args", "matches") => set(&mut self.query_regex, "the query", values)?,
            ("evt.Meta.http_path" | "evt.Parsed.request", "contains") => {
                set(&mut self.path_contains, "the path", values)?;
            }
            ("evt.Meta.http_path" | "evt.Parsed.request", "matches") => {
                set(&mut self.uri_regex, "the path", values)?;
            }
            ("evt.Meta.http_path" | "evt.Parsed.request", "startsWith") => set(
                &mut self.uri_regex,
                "the path",
                values.iter().map(|v| format!("^{}", esc(v))).collect(),
            )?,
            ("evt.Meta.http_path" | "evt.Parsed.request", "endsWith") => set(
                &mut self.uri_regex,
                "the path",
                values.iter().map(|v| format!("{}$", esc(v))).collect(),
            )?,
            ("evt.Meta.http_path" | "evt.Parsed.request", "eq") => set(
                &mut self.uri_regex,
                "the path",
                values.iter().map(|v| format!("^{}$", esc(v))).collect(),
            )?,
            ("evt.Meta.http_user_agent" | "evt.Parsed.http_user_agent", "contains") => {
                set(&mut self.user_agent_contains, "the user agent", values)?;
            }
            ("evt.Meta.http_user_agent" | "evt.Parsed.http_user_agent", "matches") => {
                set(&mut self.user_agent_regex, "the user agent", values)?;
            }
            _ => return Err(format!("the test `{field} {op}` (ips has no such field)")),
        }
        Ok(())
    }

    fn toml(&self) -> Result<String, String> {
        let mut parts = Vec::new();
        if !self.http {
            return Err("not a web scenario (no http log type or service)".into());
        }
        parts.push("service = \"http\"".to_owned());
        if let Some(s) = &self.status {
            let n: Vec<String> = s
                .iter()
                .map(|v| v.parse::<u16>().map(|n| n.to_string()))
                .collect::<Result<_, _>>()
                .map_err(|_| format!("status {s:?}"))?;
            parts.push(format!("status = [{}]", n.join(", ")));
        }
        let lists = [
            ("method", &self.method),
            ("path_contains", &self.path_contains),
            ("path_suffix", &self.path_suffix),
            ("path_regex", &self.path_regex),
            ("query_regex", &self.query_regex),
            ("uri_regex", &self.uri_regex),
            ("user_agent_contains", &self.user_agent_contains),
            ("user_agent_regex", &self.user_agent_regex),
        ];
        for (name, v) in lists {
            if let Some(v) = v {
                parts.push(format!("{name} = {}", list(v)));
            }
        }
        if self.ignore_static {
            parts.push("ignore_static = true".into());
        }
        if self.proxy {
            parts.push("proxy = true".into());
        }
        Ok(format!("{{ {} }}", parts.join(", ")))
    }
}

/// Operators grouped by what they test: equality (`==`, `in`) or one of the string tests.
fn kind(op: &str) -> &str {
    match op {
        "==" | "in" => "eq",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_forms_translate_and_run() {
        let t = translate(
            r#"
type: leaky
name: crowdsecurity/http-bf-wordpress_bf
description: "Detect WordPress bruteforce on admin interface"
filter: "evt.Meta.log_type == 'http_access-log' && evt.Parsed.file_name == 'wp-login.php' && evt.Parsed.verb == 'POST' && evt.Meta.http_status == '200'"
groupby: evt.Meta.source_ip
capacity: 5
leakspeed: 10s
blackhole: 5m
labels:
  classification:
    - attack.T1110
  remediation: true
---
type: trigger
name: crowdsecurity/http-cve-2021-41773
filter: |
  evt.Meta.log_type in ["http_access-log", "http_error-log"] and
    (Upper(evt.Meta.http_path) contains "/.%2E/.%2E/"
      or
     Upper(evt.Meta.http_path) contains "/%2E%2E/%2E%2E")
groupby: "evt.Meta.source_ip"
blackhole: 2m
---
type: leaky
name: crowdsecurity/http-crawl-non_statics
filter: "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && evt.Parsed.static_ressource == 'false' && evt.Parsed.verb in ['GET', 'HEAD']"
distinct: "evt.Parsed.file_name"
leakspeed: 0.5s
capacity: 40
groupby: "evt.Meta.source_ip + '/' + evt.Parsed.target_fqdn"
---
type: leaky
name: crowdsecurity/http-bad-user-agent
filter: 'evt.Meta.log_type in ["http_access-log", "http_error-log"] && RegexpInFile(evt.Parsed.http_user_agent, "bad_user_agents.regex.txt")'
capacity: 1
leakspeed: 1m
---
type: trigger
name: crowdsecurity/http-open-proxy
filter: "evt.Meta.log_type == 'http_access-log' && evt.Meta.http_status in ['400','405'] && (evt.Parsed.verb == 'CONNECT' || evt.Parsed.request matches '^http[s]?://')"
"#,
            None,
        );
        assert_eq!(
            t.translated,
            [
                "crowdsecurity/http-bf-wordpress_bf",
                "crowdsecurity/http-cve-2021-41773",
                "crowdsecurity/http-crawl-non_statics",
                "crowdsecurity/http-open-proxy"
            ],
            "{:?}",
            t.skipped
        );
        assert_eq!(t.skipped.len(), 1);
        assert!(t.skipped[0].1.contains("--data"), "{:?}", t.skipped);
        assert!(t.toml.contains("proxy = true"), "{}", t.toml);
        // The translation runs: a WordPress flood overflows, the traversal triggers.
        let scenarios = crate::scenarios::definition::parse(&t.toml).expect("parses");
        let mut engine = crate::scenarios::Engine::new(scenarios, 1000);
        let mut out = Vec::new();
        let clock = crate::parsers::Clock::utc(0);
        for i in 0..6 {
            let line = format!(
                "45.1.1.1 - - [01/Jan/2026:00:00:0{i} +0000] \"POST /wp-login.php HTTP/1.1\" 200 1 \"-\" \"x\""
            );
            let e = crate::parsers::http::parse(&line, &clock).expect("line");
            engine.pour(&e, &line, &mut out);
        }
        let line = "45.1.1.2 - - [01/Jan/2026:00:00:09 +0000] \"GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1\" 400 1 \"-\" \"x\"";
        let e = crate::parsers::http::parse(line, &clock).expect("line");
        engine.pour(&e, line, &mut out);
        let names: Vec<&str> = out.iter().map(|a| a.scenario.as_str()).collect();
        assert_eq!(
            names,
            [
                "crowdsecurity/http-bf-wordpress_bf",
                "crowdsecurity/http-cve-2021-41773"
            ]
        );
        assert_eq!(out[0].labels["classification"], "attack.T1110");
    }

    #[test]
    fn data_files_are_read_from_the_given_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("admin_interfaces.txt"),
            "# admin pages\n/wp-admin\n/phpmyadmin\n\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad_user_agents.regex.txt"),
            "(?i)sqlmap\nNikto\n",
        )
        .unwrap();
        let yaml = r#"
type: leaky
name: crowdsecurity/http-admin-interface-probing
filter: |
  evt.Meta.service == 'http' and
  evt.Meta.log_type in ['http_access-log', 'http_error-log'] and
  evt.Meta.http_status in ['404', '403'] and
  any(File("admin_interfaces.txt"), { Lower(evt.Meta.http_path) contains #})
groupby: evt.Meta.source_ip
distinct: "evt.Meta.http_path"
capacity: 2
leakspeed: "10s"
---
type: leaky
name: crowdsecurity/http-bad-user-agent
filter: 'evt.Meta.log_type in ["http_access-log", "http_error-log"] && RegexpInFile(evt.Parsed.http_user_agent, "bad_user_agents.regex.txt")'
capacity: 1
leakspeed: 1m
---
type: leaky
name: evil/escape
filter: 'evt.Meta.log_type == "http_access-log" && any(File("../etc/passwd"), { evt.Meta.http_path contains #})'
capacity: 1
leakspeed: 1m
"#;
        let t = translate(yaml, Some(dir.path()));
        assert_eq!(
            t.translated,
            [
                "crowdsecurity/http-admin-interface-probing",
                "crowdsecurity/http-bad-user-agent"
            ],
            "{:?}",
            t.skipped
        );
        assert!(t.skipped[0].1.contains("data file name"), "{:?}", t.skipped);
        assert!(
            t.toml
                .contains("path_contains = [\"/wp-admin\", \"/phpmyadmin\"]"),
            "{}",
            t.toml
        );
        assert!(
            t.toml
                .contains("user_agent_regex = [\"(?i)sqlmap\", \"Nikto\"]"),
            "{}",
            t.toml
        );
    }
}
