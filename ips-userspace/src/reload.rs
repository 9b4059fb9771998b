//! Reloading `ips.toml` in a running daemon (SIGHUP, `ips reload`): what changed, and which
//! part of the daemon takes it.
//!
//! - the decision service takes the allowlist, the profiles and the notifications at once
//!   (one command on its thread, so a reload lands between two decisions);
//! - the detection pipeline is stopped and started again when `[[acquisition]]` or
//!   `[detection]` changed: file sources resume at their saved offsets, and the buckets of
//!   scenarios that did not change carry over;
//! - blocklist and LAPI sources are started again when `[[blocklist]]` or `[[crowdsec]]`
//!   changed;
//! - everything else (`[api]`, `[store]`, `[enforcer]`, `[decisions]`, `[web]`, `[hub]`,
//!   `[central]`, `[log]`) is only read at start: a change there is reported as needing a restart and
//!   the running value is kept.
//!
//! A file that does not parse or validate (or whose scenarios do not compile) is refused as a
//! whole and the running config kept.
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Sections taken live, by name (`allowlist`, `profiles`, `notification`, `acquisition`,
    /// `detection`, `blocklist`, `crowdsec`).
    pub applied: Vec<String>,
    /// Sections that changed but are only read at start: the running value is kept until a
    /// restart.
    pub need_restart: Vec<String>,
    /// Buckets kept across the restart of the detection pipeline.
    pub buckets_kept: u64,
}

/// Which parts a new config touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The decision service's part: allowlist, profiles, notifications.
    pub service: bool,
    /// The detection pipeline: sources or scenarios.
    pub detection: bool,
    /// Blocklist and LAPI sources.
    pub lists: bool,
    /// Sections taken live.
    pub applied: Vec<String>,
    /// Sections that need a restart.
    pub need_restart: Vec<String>,
}

/// Compares the running config with a new one.
pub fn plan(old: &Config, new: &Config) -> Plan {
    let mut p = Plan::default();
    let mut live = |name: &str, changed: bool, part: &mut bool| {
        if changed {
            *part = true;
            p.applied.push(name.to_owned());
        }
    };
    let (mut service, mut detection, mut lists) = (false, false, false);
    live("allowlist", old.allowlist != new.allowlist, &mut service);
    live("profiles", old.profiles != new.profiles, &mut service);
    live(
        "notification",
        old.notification != new.notification,
        &mut service,
    );
    live(
        "acquisition",
        old.acquisition != new.acquisition,
        &mut detection,
    );
    live("detection", old.detection != new.detection, &mut detection);
    live("blocklist", old.blocklist != new.blocklist, &mut lists);
    live("crowdsec", old.crowdsec != new.crowdsec, &mut lists);
    (p.service, p.detection, p.lists) = (service, detection, lists);
    let restart = [
        ("api", old.api != new.api),
        ("store", old.store != new.store),
        ("enforcer", old.enforcer != new.enforcer),
        ("decisions", old.decisions != new.decisions),
        ("web", old.web != new.web),
        ("hub", old.hub != new.hub),
        ("central", old.central != new.central),
        ("log", old.log != new.log),
    ];
    p.need_restart = restart
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_owned())
        .collect();
    p
}

/// `new` with the sections that need a restart set back to `running`'s: what the daemon runs
/// after a reload, and what the next reload compares with.
pub fn effective(running: &Config, new: Config) -> Config {
    Config {
        api: running.api.clone(),
        store: running.store.clone(),
        enforcer: running.enforcer.clone(),
        decisions: running.decisions.clone(),
        web: running.web.clone(),
        hub: running.hub.clone(),
        central: running.central.clone(),
        log: running.log.clone(),
        ..new
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml, Path::new("test.toml")).expect("valid")
    }

    #[test]
    fn sorts_changes_into_live_and_restart() {
        let old = config("[allowlist]\nentries = [\"192.0.2.1\"]\n");
        let new = config(
            "[allowlist]\nentries = [\"192.0.2.2\"]\n[detection]\ndisabled = [\"ssh-bf\"]\n[store]\npath = \"/tmp/other.db\"\n",
        );
        let p = plan(&old, &new);
        assert!(p.service && p.detection && !p.lists);
        assert_eq!(p.applied, ["allowlist", "detection"]);
        assert_eq!(p.need_restart, ["store"]);
        let running = effective(&old, new.clone());
        assert_eq!(running.store, old.store, "the store stays until a restart");
        assert_eq!(running.allowlist, new.allowlist);
        assert_eq!(plan(&running, &running), Plan::default());
    }
}
