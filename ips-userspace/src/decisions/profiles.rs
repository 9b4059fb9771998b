//! Profiles: what to do about an alert. Ban its source (IPv6 as a /64 by default) for the
//! scenario's duration, doubled for each earlier ban within the escalation window up to a
//! maximum; or only record it (simulation); or refuse because the source is allowlisted
//! (loopback, this host's addresses, private ranges by default, configured entries).
use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{prefix::Prefix, scenarios::Alert};

/// `[profiles]` in `ips.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilesConfig {
    /// Ban duration for scenarios without a `ban` label.
    #[serde(with = "crate::config::human_duration")]
    pub default_ban: Duration,
    /// Double the duration for each earlier ban of the same value within the window.
    pub escalation: bool,
    /// How far back earlier bans count.
    #[serde(with = "crate::config::human_duration")]
    pub escalation_window: Duration,
    /// Longest ban escalation can reach.
    #[serde(with = "crate::config::human_duration")]
    pub max_ban: Duration,
    /// Prefix length of IPv6 bans (64: the whole /64 of the source).
    pub ipv6_prefix: u8,
    /// Never ban private, link-local and CGNAT ranges.
    pub allow_private: bool,
    /// Alert, never ban.
    pub simulation: bool,
    /// Scenarios that alert but never ban.
    pub simulated: Vec<String>,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            default_ban: Duration::from_secs(4 * 3600),
            escalation: true,
            escalation_window: Duration::from_secs(24 * 3600),
            max_ban: Duration::from_secs(7 * 86_400),
            ipv6_prefix: 64,
            allow_private: true,
            simulation: false,
            simulated: Vec::new(),
        }
    }
}

/// What a profile decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// Ban `value` for `duration_ms`.
    Ban {
        /// What to ban.
        value: Prefix,
        /// For how long.
        duration_ms: i64,
    },
    /// What would have been banned, in simulation.
    Simulated {
        /// What would be banned.
        value: Prefix,
        /// For how long.
        duration_ms: i64,
    },
    /// Not banned: the source is allowlisted.
    Allowlisted {
        /// Which entry or range.
        reason: String,
    },
    /// To be banned, but the kernel could not hold it (a full map): not banned, and not
    /// listed as banned.
    Refused {
        /// What would have been banned.
        value: Prefix,
        /// Why the kernel refused.
        reason: String,
    },
}

impl Outcome {
    /// `ban`, `simulated` or `allowlisted`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ban { .. } => "ban",
            Self::Simulated { .. } => "simulated",
            Self::Allowlisted { .. } => "allowlisted",
            Self::Refused { .. } => "refused",
        }
    }

    /// What was (or would have been) banned.
    pub fn value(&self) -> Option<Prefix> {
        match self {
            Self::Ban { value, .. }
            | Self::Simulated { value, .. }
            | Self::Refused { value, .. } => Some(*value),
            Self::Allowlisted { .. } => None,
        }
    }

    /// For how long, in milliseconds.
    pub fn duration_ms(&self) -> Option<i64> {
        match self {
            Self::Ban { duration_ms, .. } | Self::Simulated { duration_ms, .. } => {
                Some(*duration_ms)
            }
            Self::Allowlisted { .. } | Self::Refused { .. } => None,
        }
    }

    /// Why not banned.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Allowlisted { reason } | Self::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// The decision rules, with the addresses that are never banned.
#[derive(Clone, Debug)]
pub struct Profiles {
    config: ProfilesConfig,
    never: Vec<(Prefix, &'static str)>,
}

impl Profiles {
    /// Rules from the config; `local` are this host's own addresses.
    pub fn new(config: ProfilesConfig, local: &[IpAddr]) -> Self {
        let mut never: Vec<(Prefix, &'static str)> = local
            .iter()
            .map(|a| (Prefix::host(*a), "an address of this host"))
            .collect();
        for (p, why) in [("127.0.0.0/8", "loopback"), ("::1", "loopback")] {
            if let Ok(p) = p.parse() {
                never.push((p, why));
            }
        }
        if config.allow_private {
            never.extend(
                crate::prefix::private_ranges()
                    .map(|p| (p, "a private range (profiles.allow_private)")),
            );
        }
        Self { config, never }
    }

    /// The configuration.
    pub fn config(&self) -> &ProfilesConfig {
        &self.config
    }

    /// The ban value for a source.
    pub fn value_for(&self, source: IpAddr) -> Prefix {
        let host = Prefix::host(source);
        if host.is_v4() {
            return host;
        }
        Prefix::new(source, self.config.ipv6_prefix.min(128)).unwrap_or(host)
    }

    /// Decides on an alert. `allowlisted` is the store's allowlist entry covering the source,
    /// if any; `previous_bans` the earlier bans of the same value within the window.
    pub fn decide(
        &self,
        alert: &Alert,
        previous_bans: u32,
        allowlisted: Option<Prefix>,
    ) -> Outcome {
        let host = Prefix::host(alert.source);
        if let Some((p, why)) = self.never.iter().find(|(p, _)| p.contains(&host)) {
            return Outcome::Allowlisted {
                reason: format!("{} is {why} ({p})", alert.source),
            };
        }
        if let Some(p) = allowlisted {
            return Outcome::Allowlisted {
                reason: format!("{} is in the allowlist ({p})", alert.source),
            };
        }
        let base = alert.ban.unwrap_or(self.config.default_ban);
        let factor = if self.config.escalation {
            1u32.checked_shl(previous_bans.min(30)).unwrap_or(u32::MAX)
        } else {
            1
        };
        let duration = base
            .checked_mul(factor)
            .unwrap_or(self.config.max_ban)
            .min(self.config.max_ban.max(base));
        let value = self.value_for(alert.source);
        let duration_ms = duration.as_millis().min(i64::MAX as u128) as i64;
        if self.config.simulation || self.config.simulated.contains(&alert.scenario) {
            Outcome::Simulated { value, duration_ms }
        } else {
            Outcome::Ban { value, duration_ms }
        }
    }
}

/// This host's addresses (for the never-ban list).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family is AF_INET.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: family is AF_INET6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing what getifaddrs allocated.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alert(src: &str, scenario: &str) -> Alert {
        let source: IpAddr = src.parse().unwrap();
        Alert {
            scenario: scenario.into(),
            source,
            group: Prefix::host(source),
            first_ms: 0,
            last_ms: 0,
            events: 6,
            evidence: vec![],
            labels: BTreeMap::new(),
            ban: None,
        }
    }

    #[test]
    fn bans_with_escalation_up_to_the_maximum() {
        let p = Profiles::new(ProfilesConfig::default(), &[]);
        let h4 = 4 * 3_600_000;
        let ban = |prev| match p.decide(&alert("203.0.113.5", "ssh-bf"), prev, None) {
            Outcome::Ban { duration_ms, value } => {
                assert_eq!(value.to_string(), "203.0.113.5");
                duration_ms
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(ban(0), h4);
        assert_eq!(ban(1), 2 * h4);
        assert_eq!(ban(2), 4 * h4);
        assert_eq!(ban(10), 7 * 86_400_000);
        assert_eq!(ban(100), 7 * 86_400_000);
    }

    #[test]
    fn ipv6_sources_are_banned_by_slash64() {
        let p = Profiles::new(ProfilesConfig::default(), &[]);
        match p.decide(&alert("2001:db8:1:2:3:4:5:6", "ssh-bf"), 0, None) {
            Outcome::Ban { value, .. } => assert_eq!(value.to_string(), "2001:db8:1:2::/64"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_bans_loopback_private_own_or_allowlisted() {
        let me: IpAddr = "198.51.100.1".parse().unwrap();
        let p = Profiles::new(ProfilesConfig::default(), &[me]);
        for src in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "fe80::1",
            "198.51.100.1",
        ] {
            assert!(
                matches!(
                    p.decide(&alert(src, "x"), 0, None),
                    Outcome::Allowlisted { .. }
                ),
                "{src}"
            );
        }
        let allow: Prefix = "203.0.113.0/24".parse().unwrap();
        let out = p.decide(&alert("203.0.113.5", "x"), 0, Some(allow));
        assert!(
            matches!(out, Outcome::Allowlisted { reason } if reason.contains("203.0.113.0/24"))
        );
        let open = Profiles::new(
            ProfilesConfig {
                allow_private: false,
                ..ProfilesConfig::default()
            },
            &[],
        );
        assert!(matches!(
            open.decide(&alert("10.1.2.3", "x"), 0, None),
            Outcome::Ban { .. }
        ));
    }

    #[test]
    fn simulation_global_and_per_scenario() {
        let p = Profiles::new(
            ProfilesConfig {
                simulated: vec!["http-crawl".into()],
                ..ProfilesConfig::default()
            },
            &[],
        );
        assert!(matches!(
            p.decide(&alert("203.0.113.5", "http-crawl"), 0, None),
            Outcome::Simulated { .. }
        ));
        assert!(matches!(
            p.decide(&alert("203.0.113.5", "ssh-bf"), 0, None),
            Outcome::Ban { .. }
        ));
        let all = Profiles::new(
            ProfilesConfig {
                simulation: true,
                ..ProfilesConfig::default()
            },
            &[],
        );
        assert!(matches!(
            all.decide(&alert("203.0.113.5", "ssh-bf"), 0, None),
            Outcome::Simulated { .. }
        ));
    }

    #[test]
    fn scenario_duration_wins_over_default() {
        let p = Profiles::new(ProfilesConfig::default(), &[]);
        let mut a = alert("203.0.113.5", "x");
        a.ban = Some(Duration::from_secs(60));
        match p.decide(&a, 0, None) {
            Outcome::Ban { duration_ms, .. } => assert_eq!(duration_ms, 60_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_loopback_among_local_addresses() {
        let local = local_addresses();
        assert!(local.iter().any(IpAddr::is_loopback), "{local:?}");
    }
}
