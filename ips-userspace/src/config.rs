//! `ips.toml`: every key has a default, unknown keys are rejected with their name.
//!
//! ```toml
//! [api]
//! socket = "/run/ips/ips.sock"   # the CLI's way in: root and group ips
//! listen = "127.0.0.1:8080"      # off unless set: CrowdSec bouncers (with their keys)
//!
//! [store]
//! path = "/var/lib/ips/ips.db"
//!
//! [enforcer]
//! interfaces = ["eth1"]
//! mode = "auto"            # auto | native | generic
//! pin_dir = "/sys/fs/bpf/ips"
//!
//! [decisions]
//! default_duration = "4h"
//!
//! [allowlist]
//! entries = ["127.0.0.0/8", "::1", "192.0.2.0/24"]
//! ```
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    acquisition::SourceConfig, decisions::profiles::ProfilesConfig, enforcer::loader::AttachMode,
    prefix::Prefix,
};

/// Where `ips` looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/ips/ips.toml";

/// The whole config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The local HTTP API.
    pub api: ApiConfig,
    /// The decision store.
    pub store: StoreConfig,
    /// XDP attach and maps.
    pub enforcer: EnforcerConfig,
    /// Decision defaults.
    pub decisions: DecisionsConfig,
    /// Addresses that are never banned.
    pub allowlist: AllowlistConfig,
    /// Log sources (`[[acquisition]]`).
    pub acquisition: Vec<SourceConfig>,
    /// Scenarios.
    pub detection: DetectionConfig,
    /// What alerts turn into.
    pub profiles: ProfilesConfig,
    /// Blocklist sources (`[[blocklist]]`).
    pub blocklist: Vec<crate::blocklists::source::SourceConfig>,
    /// CrowdSec LAPIs to pull decisions from (`[[crowdsec]]`).
    pub crowdsec: Vec<crate::blocklists::lapi::LapiConfig>,
    /// A central `ips` this host reports to and enforces the decisions of (`[central]`).
    pub central: Option<crate::central::CentralConfig>,
    /// A community hub to push ban signals to (`[hub]`).
    pub hub: Option<crate::hub::AgentConfig>,
    /// Where alerts are sent (`[[notification]]`).
    pub notification: Vec<crate::notify::NotificationConfig>,
    /// `/metrics` (`[web]`).
    pub web: crate::web::WebConfig,
    /// The daemon's own log (`[log]`).
    pub log: LogConfig,
}

/// `[log]`: what the daemon writes to stderr (the journal under systemd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a filter such as `info,ips::api=debug`.
    /// `IPS_LOG` in the environment wins over it.
    pub level: String,
    /// `text` (one line per event; colours only on a terminal) or `json` (one object per line).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[log] format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// JSON objects, one per line.
    Json,
}

/// `[detection]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// Extra scenario files (same format as the built-ins).
    pub scenario_files: Vec<PathBuf>,
    /// Built-in scenarios to turn off, by name.
    pub disabled: Vec<String>,
    /// Most buckets held at once; the least recently fed are evicted past it.
    pub max_buckets: usize,
    /// Login forms of this site's own applications (paths such as `/my/login`), watched by
    /// the login brute-force scenarios besides the common applications' forms.
    pub login_paths: Vec<String>,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            scenario_files: Vec::new(),
            disabled: Vec::new(),
            max_buckets: 2_000_000,
            login_paths: Vec::new(),
        }
    }
}

impl DetectionConfig {
    /// The scenarios to run: the built-ins not disabled, then those of the extra files.
    pub fn scenarios(&self) -> Result<Vec<crate::scenarios::Scenario>, ConfigError> {
        let mut all: Vec<_> = crate::scenarios::builtin()
            .into_iter()
            .filter(|s| !self.disabled.contains(&s.name))
            .collect();
        for s in all.iter_mut().filter(|s| s.is_login()) {
            s.add_login_paths(&self.login_paths)
                .map_err(|e| ConfigError::Invalid {
                    path: PathBuf::from("[detection] login_paths"),
                    message: e.to_string(),
                })?;
        }
        for path in &self.scenario_files {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let more =
                crate::scenarios::definition::parse(&text).map_err(|e| ConfigError::Invalid {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            all.extend(more);
        }
        Ok(all)
    }
}

/// `[api]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The operator's unix socket: the CLI and the admin API.
    pub socket: PathBuf,
    /// Group whose members may use the socket besides root (0660 when it exists, else 0600).
    pub group: String,
    /// TCP address for bouncers, agents and admin tokens; off unless set. An address that is
    /// not loopback needs `cert` and `key` (TLS).
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for the TCP listener.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Host names TCP clients may use besides addresses and `localhost` (the certificate's).
    pub server_names: Vec<String>,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head within this is closed, whether it
    /// trickles headers or idles between requests.
    #[serde(with = "human_duration")]
    pub header_timeout: Duration,
    /// A request (its body included) not answered within this gets 408.
    #[serde(with = "human_duration")]
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/ips/ips.sock"),
            group: "ips".to_owned(),
            listen: None,
            cert: None,
            key: None,
            server_names: Vec::new(),
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file (with `url`: only its lock file, `<path>.lock`, is used).
    pub path: PathBuf,
    /// PostgreSQL (`postgres://user:password@host/db`, or `host=... dbname=...`): the store of
    /// a central node, which several central nodes can share. Unset: the SQLite file.
    pub url: Option<String>,
    /// This node's name in a shared store, for its own local state (read offsets, attach
    /// modes). Default: the host name.
    pub node: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/ips/ips.db"),
            url: None,
            node: None,
        }
    }
}

/// `[enforcer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforcerConfig {
    /// Interfaces to attach to (`ips run --iface` adds to these).
    pub interfaces: Vec<String>,
    /// `auto` (native, falling back to generic with a warning), `native` or `generic`.
    pub mode: AttachMode,
    /// Where maps and links are pinned (on a BPF filesystem).
    pub pin_dir: PathBuf,
    /// Capacity of each single-address ban map.
    pub max_hosts: u32,
    /// Capacity of each prefix ban map.
    pub max_prefixes: u32,
    /// How often expired decisions are looked for.
    #[serde(with = "human_duration")]
    pub expiry_interval: Duration,
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: AttachMode::Auto,
            pin_dir: PathBuf::from("/sys/fs/bpf/ips"),
            max_hosts: ips_common::capacity::HOSTS,
            max_prefixes: ips_common::capacity::NETS,
            expiry_interval: Duration::from_millis(250),
        }
    }
}

/// `[decisions]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionsConfig {
    /// Duration of a ban added without `--duration`.
    #[serde(with = "human_duration")]
    pub default_duration: Duration,
    /// The shortest IPv4 prefix any source may ban (`--force` lifts it for the operator).
    pub min_prefix_v4: u8,
    /// The shortest IPv6 prefix any source may ban.
    pub min_prefix_v6: u8,
    /// Ranges the host is managed from (an office, a bastion, the central API): no ban may
    /// cover them without `--force`, and no source bans them. This host's own addresses are
    /// protected the same way without being listed.
    pub management: Vec<Prefix>,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        let min = crate::decisions::MinPrefix::default();
        Self {
            default_duration: Duration::from_secs(4 * 3600),
            min_prefix_v4: min.v4,
            min_prefix_v6: min.v6,
            management: Vec::new(),
        }
    }
}

impl DecisionsConfig {
    /// The minimum prefix lengths.
    pub fn min_prefix(&self) -> crate::decisions::MinPrefix {
        crate::decisions::MinPrefix {
            v4: self.min_prefix_v4,
            v6: self.min_prefix_v6,
        }
    }
}

/// `[allowlist]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowlistConfig {
    /// Addresses and prefixes never banned: checked first in the kernel and refused by the store.
    pub entries: Vec<Prefix>,
}

impl Default for AllowlistConfig {
    fn default() -> Self {
        Self {
            entries: ["127.0.0.0/8", "::1"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What toml/serde said, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Parses a config from text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads `path`. When `explicit` is false and the file does not exist, the defaults are used.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        for n in &self.notification {
            n.check().map_err(|e| invalid(e.to_string()))?;
        }
        self.web.address().map_err(invalid)?;
        if self.enforcer.max_hosts == 0 || self.enforcer.max_prefixes == 0 {
            return Err(invalid(
                "enforcer.max_hosts and enforcer.max_prefixes must be above 0".into(),
            ));
        }
        if self.api.max_connections == 0
            || self.api.header_timeout.is_zero()
            || self.api.request_timeout.is_zero()
        {
            return Err(invalid(
                "api.max_connections, api.header_timeout and api.request_timeout must be above 0"
                    .into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(format!(
                "log.level {:?}: expected error, warn, info, debug, trace or a filter such as \"info,ips::api=debug\"",
                self.log.level
            )));
        }
        if self.enforcer.expiry_interval.is_zero() {
            return Err(invalid("enforcer.expiry_interval must be above 0".into()));
        }
        if self.decisions.default_duration.is_zero() {
            return Err(invalid("decisions.default_duration must be above 0".into()));
        }
        if !(1..=32).contains(&self.decisions.min_prefix_v4)
            || !(1..=128).contains(&self.decisions.min_prefix_v6)
        {
            return Err(invalid(
                "decisions.min_prefix_v4 must be 1 to 32 and decisions.min_prefix_v6 1 to 128 (a /0 ban is never allowed)".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.blocklist {
            b.validate().map_err(&invalid)?;
            if !names.insert(&b.name) {
                return Err(invalid(format!("blocklist {} is defined twice", b.name)));
            }
        }
        for l in &self.crowdsec {
            crate::decisions::check_name(&l.name).map_err(|e| invalid(format!("crowdsec {e}")))?;
            if l.name == "central" && self.central.is_some() {
                return Err(invalid(
                    "crowdsec name \"central\" is [central]'s; choose another".into(),
                ));
            }
        }
        if let Some(c) = &self.central {
            c.validate().map_err(&invalid)?;
        }
        if self.api.cert.is_some() != self.api.key.is_some() {
            return Err(invalid("api.cert and api.key go together".into()));
        }
        if let Some(listen) = self.api.listen
            && !listen.ip().is_loopback()
            && self.api.cert.is_none()
        {
            return Err(invalid(format!(
                "api.listen = {listen} is not a loopback address: set api.cert and api.key (TLS; `ips tls generate` makes a pair for a lab)"
            )));
        }
        Ok(())
    }
}

pub(crate) mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// [`human_duration`] for an optional duration (`null` or absent is `None`).
pub(crate) mod human_duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::human_duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::duration::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::from_toml("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.api.listen, None);
        assert_eq!(c.api.socket, Path::new("/run/ips/ips.sock"));
        assert_eq!(c.enforcer.mode, AttachMode::Auto);
    }

    #[test]
    fn full_file_parses() {
        let c = Config::from_toml(
            r#"
            [api]
            listen = "127.0.0.1:9999"
            [store]
            path = "/tmp/x.db"
            [enforcer]
            interfaces = ["veth0"]
            mode = "generic"
            pin_dir = "/sys/fs/bpf/t"
            expiry_interval = "100ms"
            [decisions]
            default_duration = "1h30m"
            [allowlist]
            entries = ["192.0.2.0/24", "::ffff:198.51.100.1"]
            "#,
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.enforcer.mode, AttachMode::Generic);
        assert_eq!(c.decisions.default_duration, Duration::from_secs(5400));
        assert_eq!(c.allowlist.entries[1].to_string(), "198.51.100.1");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("[enforcer]\ninterface = [\"x\"]\n", Path::new("x.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("interface"), "{e}");
        let e = Config::from_toml("[nope]\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e =
            Config::from_toml("[enforcer]\nmode = \"turbo\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("turbo"), "{e}");
        let e = Config::from_toml("[allowlist]\nentries = [\"10.0.0.0/33\"]\n", Path::new("x"))
            .unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        let e =
            Config::from_toml("[api]\nlisten = \"0.0.0.0:8080\"\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn blocklist_sources() {
        let c = Config::from_toml(
            "[[blocklist]]\nname = \"f1\"\nurl = \"https://example.org/l.netset\"\nrefresh = \"30m\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.blocklist[0].refresh, Duration::from_secs(1800));
        let e = Config::from_toml("[[blocklist]]\nname = \"f1\"\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("f1"), "{e}");
        // The format is read once, here, into its type; a bad one names itself.
        let c = Config::from_toml(
            "[[blocklist]]\nname = \"s\"\npath = \"/x\"\nformat = \"spamhaus\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(
            c.blocklist[0].format,
            Some(crate::blocklists::Format::SpamhausDrop)
        );
        let e = Config::from_toml(
            "[[blocklist]]\nname = \"s\"\npath = \"/x\"\nformat = \"nope\"\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = Config::from_toml(
            "[[crowdsec]]\nname = \"a/b\"\nurl = \"http://127.0.0.1:1\"\napi_key = \"k\"\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("a/b"), "{e}");
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_explicit_file_is_an_error() {
        let p = Path::new("/nonexistent/ips.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }
}
