//! The top dropped sources and prefixes, from the XDP program's sample of dropped packets.
//!
//! The program sends at most [`ips_common::sampling::PER_WINDOW`] samples per CPU per 100 ms to
//! a ring buffer, each carrying how many packets (and bytes) its CPU dropped since its previous
//! sample, so the weights add up to every drop while a flood costs a bounded number of samples.
//! [`DropSampler`] reads the ring (the enforcer's, as every map), [`TopDrops`] keeps a bounded
//! table of sources with a decaying rate, and groups them by the ban that drops them.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{Map, MapData, RingBuf};
use ips_common::{DropSample, family, maps as names, sampling};
use serde::{Deserialize, Serialize};

use super::EnforcerError;
use crate::prefix::Prefix;

/// Reads the pinned sample ring.
pub struct DropSampler {
    ring: RingBuf<MapData>,
}

impl DropSampler {
    /// Opens the ring pinned in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EnforcerError> {
        let path = dir.join(names::DROP_SAMPLES);
        let data = MapData::from_pin(&path).map_err(|e| EnforcerError::OpenMap {
            path: path.clone(),
            source: e,
        })?;
        let ring = RingBuf::try_from(Map::RingBuf(data))
            .map_err(|source| EnforcerError::OpenMap { path, source })?;
        Ok(Self { ring })
    }

    /// Hands every sample waiting in the ring to `f`, at most `max`. Returns how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&DropSample)) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = self.ring.next() else { break };
            if item.len() >= size_of::<DropSample>() {
                // SAFETY: the program writes whole `DropSample`s; the item is at least that
                // long and `read_unaligned` needs no alignment.
                let sample =
                    unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropSample>()) };
                f(&sample);
            }
            n += 1;
        }
        n
    }
}

/// A source among the most dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopSource {
    /// The source address.
    pub source: String,
    /// The ban that drops it, once known (`None` for a while after it is first seen).
    pub prefix: Option<String>,
    /// Origin of that ban.
    pub origin: String,
    /// Packets dropped per minute, averaged over the last minutes (estimated from samples).
    pub per_minute: u64,
    /// Packets dropped since the daemon started (estimated from samples).
    pub packets: u64,
    /// Bytes dropped since the daemon started (estimated from samples).
    pub bytes: u64,
}

/// A banned prefix among the most dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopPrefix {
    /// The banned value.
    pub prefix: String,
    /// Origin of the ban.
    pub origin: String,
    /// Distinct sources seen dropped by it.
    pub sources: u64,
    /// Packets dropped per minute, averaged over the last minutes.
    pub per_minute: u64,
    /// Packets dropped since the daemon started.
    pub packets: u64,
    /// Bytes dropped since the daemon started.
    pub bytes: u64,
}

/// The top dropped sources and prefixes, for `ips status` and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopReport {
    /// Most dropped sources first (by recent rate).
    pub sources: Vec<TopSource>,
    /// Most dropped banned prefixes first (by recent rate).
    pub prefixes: Vec<TopPrefix>,
    /// Samples read since the start.
    pub samples: u64,
}

#[derive(Debug, Clone)]
struct Tracked {
    /// Decayed packet count as of `at_ms`.
    recent: f64,
    at_ms: i64,
    packets: u64,
    bytes: u64,
    origin: u32,
    kind: u8,
    prefix: Option<Prefix>,
}

/// Sources seen dropped, with a decaying rate: bounded to `cap` entries (the slowest go first).
pub struct TopDrops {
    sources: HashMap<IpAddr, Tracked>,
    cap: usize,
    half_life_ms: f64,
    samples: u64,
}

impl Default for TopDrops {
    fn default() -> Self {
        Self::new(4_096, 300_000)
    }
}

impl TopDrops {
    /// Keeps at most `cap` sources; a rate halves every `half_life_ms` without drops.
    pub fn new(cap: usize, half_life_ms: u64) -> Self {
        Self {
            sources: HashMap::new(),
            cap: cap.max(1),
            half_life_ms: half_life_ms.max(1) as f64,
            samples: 0,
        }
    }

    fn decayed(&self, t: &Tracked, now_ms: i64) -> f64 {
        let dt = (now_ms - t.at_ms).max(0) as f64;
        t.recent * (-dt / self.half_life_ms * std::f64::consts::LN_2).exp()
    }

    /// Counts one sample.
    pub fn add(&mut self, s: &DropSample, now_ms: i64) {
        let source = if u32::from(s.family) == family::V4 {
            IpAddr::V4(Ipv4Addr::new(s.addr[0], s.addr[1], s.addr[2], s.addr[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(s.addr))
        };
        self.samples += 1;
        let origin = u32::from(s.origin);
        let host = (s.kind == sampling::KIND_HOST).then(|| Prefix::host(source));
        let decayed = self.sources.get(&source).map(|t| self.decayed(t, now_ms));
        let t = self.sources.entry(source).or_insert(Tracked {
            recent: 0.0,
            at_ms: now_ms,
            packets: 0,
            bytes: 0,
            origin,
            kind: s.kind,
            prefix: host,
        });
        t.recent = decayed.unwrap_or(0.0) + f64::from(s.packets);
        t.at_ms = now_ms;
        t.packets += u64::from(s.packets);
        t.bytes += s.bytes;
        if t.origin != origin || t.kind != s.kind {
            // Another ban drops it now: find which again.
            t.origin = origin;
            t.kind = s.kind;
            t.prefix = host;
        }
        if self.sources.len() > self.cap {
            self.shrink(now_ms);
        }
    }

    /// Drops the slowest quarter of the table.
    fn shrink(&mut self, now_ms: i64) {
        let mut rates: Vec<f64> = self
            .sources
            .values()
            .map(|t| self.decayed(t, now_ms))
            .collect();
        let keep = self.cap * 3 / 4;
        let cut = rates.len() - keep.max(1);
        rates.select_nth_unstable_by(cut, f64::total_cmp);
        let threshold = rates[cut];
        let half_life = self.half_life_ms;
        let mut kept = 0;
        self.sources.retain(|_, t| {
            let dt = (now_ms - t.at_ms).max(0) as f64;
            let r = t.recent * (-dt / half_life * std::f64::consts::LN_2).exp();
            let keep_it = r >= threshold && kept < keep;
            kept += usize::from(keep_it);
            keep_it
        });
    }

    /// Sources whose ban is not known yet, most dropped first, at most `n`.
    pub fn unresolved(&self, n: usize, now_ms: i64) -> Vec<IpAddr> {
        let mut v: Vec<(f64, IpAddr)> = self
            .sources
            .iter()
            .filter(|(_, t)| t.prefix.is_none())
            .map(|(a, t)| (self.decayed(t, now_ms), *a))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        v.into_iter().take(n).map(|(_, a)| a).collect()
    }

    /// Records which ban drops `source` (the most specific covering one). `None` when no
    /// decision covers it any more: it is then shown as its own address.
    pub fn resolve(&mut self, source: IpAddr, prefix: Option<Prefix>) {
        if let Some(t) = self.sources.get_mut(&source) {
            t.prefix = Some(prefix.unwrap_or_else(|| Prefix::host(source)));
        }
    }

    /// The `n` most dropped sources and prefixes; `origin_name` names an origin id.
    pub fn report(&self, n: usize, now_ms: i64, origin_name: &dyn Fn(u32) -> String) -> TopReport {
        // Per minute, from a count decaying with the half-life: count * ln 2 / half-life.
        let per_minute = std::f64::consts::LN_2 / (self.half_life_ms / 60_000.0);
        let mut sources: Vec<(f64, IpAddr, &Tracked)> = self
            .sources
            .iter()
            .map(|(a, t)| (self.decayed(t, now_ms), *a, t))
            .collect();
        sources.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut by_ban: HashMap<Prefix, (f64, TopPrefix)> = HashMap::new();
        for (r, _, t) in &sources {
            if let Some(p) = t.prefix {
                let (rate, e) = by_ban.entry(p).or_insert_with(|| {
                    (
                        0.0,
                        TopPrefix {
                            prefix: p.to_string(),
                            origin: origin_name(t.origin),
                            sources: 0,
                            per_minute: 0,
                            packets: 0,
                            bytes: 0,
                        },
                    )
                });
                *rate += r;
                e.sources += 1;
                e.packets += t.packets;
                e.bytes += t.bytes;
            }
        }
        let mut prefixes: Vec<(f64, Prefix, TopPrefix)> =
            by_ban.into_iter().map(|(p, (r, e))| (r, p, e)).collect();
        prefixes.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        TopReport {
            sources: sources
                .into_iter()
                .take(n)
                .map(|(r, a, t)| TopSource {
                    source: a.to_string(),
                    prefix: t.prefix.map(|p| p.to_string()),
                    origin: origin_name(t.origin),
                    per_minute: (r * per_minute).round() as u64,
                    packets: t.packets,
                    bytes: t.bytes,
                })
                .collect(),
            prefixes: prefixes
                .into_iter()
                .take(n)
                .map(|(r, _, mut e)| {
                    e.per_minute = (r * per_minute).round() as u64;
                    e
                })
                .collect(),
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(addr: [u8; 4], packets: u32, kind: u8) -> DropSample {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        DropSample {
            addr: a,
            bytes: u64::from(packets) * 60,
            packets,
            origin: 0,
            family: family::V4 as u8,
            kind,
        }
    }

    #[test]
    fn ranks_sources_and_groups_them_by_their_ban() {
        let mut top = TopDrops::new(100, 60_000);
        let net: Prefix = "198.51.100.0/24".parse().expect("prefix");
        for i in 1..=5u8 {
            top.add(&sample([198, 51, 100, i], 10, sampling::KIND_COVER), 0);
        }
        top.add(&sample([203, 0, 113, 7], 30, sampling::KIND_HOST), 0);
        let unresolved = top.unresolved(10, 0);
        assert_eq!(unresolved.len(), 5, "the host ban is known at once");
        for a in unresolved {
            top.resolve(a, Some(net));
        }
        let r = top.report(3, 0, &|o| format!("o{o}"));
        assert_eq!(r.sources.len(), 3);
        assert_eq!(r.sources[0].source, "203.0.113.7");
        assert_eq!(r.sources[0].prefix.as_deref(), Some("203.0.113.7"));
        assert_eq!(r.sources[0].packets, 30);
        assert_eq!(r.prefixes[0].prefix, "198.51.100.0/24");
        assert_eq!(r.prefixes[0].sources, 5);
        assert_eq!(r.prefixes[0].packets, 50);
        assert_eq!(r.prefixes[0].bytes, 3_000);
        assert_eq!(r.prefixes[1].prefix, "203.0.113.7");
        assert_eq!(r.samples, 6);
    }

    #[test]
    fn rates_decay_and_the_table_stays_bounded() {
        let mut top = TopDrops::new(8, 1_000);
        top.add(&sample([192, 0, 2, 1], 100, sampling::KIND_HOST), 0);
        // Ten half-lives later the old flood weighs 100/1024 packets; a new one of 1 beats it.
        top.add(&sample([192, 0, 2, 2], 1, sampling::KIND_HOST), 10_000);
        let r = top.report(2, 10_000, &|_| String::new());
        assert_eq!(r.sources[0].source, "192.0.2.2");
        assert_eq!(r.sources[1].packets, 100, "totals do not decay");
        for i in 0..100u8 {
            top.add(
                &sample([10, 0, 0, i], u32::from(i) + 1, sampling::KIND_HOST),
                10_000,
            );
        }
        assert!(top.sources.len() <= 8);
        let r = top.report(1, 10_000, &|_| String::new());
        assert_eq!(
            r.sources[0].source, "10.0.0.99",
            "the busiest source is kept"
        );
    }
}
