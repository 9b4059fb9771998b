//! [`Origin`]: who put a decision there. One type from the API to the store, so no layer builds
//! or takes apart `"list:<name>"` strings; the store keeps the text form ([`Origin`]'s
//! `Display`), which is also what `ips decisions list` and the API show.
use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Who decided a ban.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// By hand: `ips decisions add`, the API.
    Manual,
    /// The detection pipeline (a scenario overflowed).
    Detection,
    /// A CrowdSec decision without a named source (kept for stores written before `lapi:`).
    Crowd,
    /// A blocklist source or import (`list:<name>`).
    List(String),
    /// A CrowdSec LAPI or community hub pulled as a bouncer (`lapi:<name>`).
    Lapi(String),
    /// An `ips` agent that pushed it to this central node (`machine:<name>`).
    Machine(String),
}

/// Why a name or origin text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// A list or LAPI name breaks [`check_name`]'s rule.
    #[error("name {0:?}: 1 to 48 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// Not one of the origin forms.
    #[error(
        "unknown origin {0:?}: expected manual, detection, crowdsec, list:<name>, lapi:<name> or machine:<name>"
    )]
    Unknown(String),
}

/// The one rule for list and LAPI names: 1 to 48 ASCII letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), OriginError> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(OriginError::BadName(name.to_owned()))
    }
}

impl Origin {
    /// The origin of list `name`, checked against [`check_name`].
    pub fn list(name: &str) -> Result<Self, OriginError> {
        check_name(name)?;
        Ok(Self::List(name.to_owned()))
    }

    /// The origin of LAPI `name`, checked against [`check_name`].
    pub fn lapi(name: &str) -> Result<Self, OriginError> {
        check_name(name)?;
        Ok(Self::Lapi(name.to_owned()))
    }

    /// The origin of machine `name`, checked against [`check_name`].
    pub fn machine(name: &str) -> Result<Self, OriginError> {
        check_name(name)?;
        Ok(Self::Machine(name.to_owned()))
    }

    /// True for a blocklist (its entries are a snapshot under a lease, not rows).
    pub fn is_list(&self) -> bool {
        matches!(self, Self::List(_))
    }

    /// The name CrowdSec's bouncers know this origin by (`cscli`, `crowdsec`, `lists`, ...).
    pub fn crowdsec_name(&self) -> String {
        match self {
            Self::Manual => "cscli".into(),
            Self::Detection | Self::Crowd | Self::Machine(_) => "crowdsec".into(),
            Self::List(_) => "lists".into(),
            Self::Lapi(_) => self.to_string(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manual => f.write_str("manual"),
            Self::Detection => f.write_str("detection"),
            Self::Crowd => f.write_str("crowdsec"),
            Self::List(n) => write!(f, "list:{n}"),
            Self::Lapi(n) => write!(f, "lapi:{n}"),
            Self::Machine(n) => write!(f, "machine:{n}"),
        }
    }
}

impl FromStr for Origin {
    type Err = OriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manual" => Ok(Self::Manual),
            "detection" => Ok(Self::Detection),
            "crowdsec" => Ok(Self::Crowd),
            _ => match s.split_once(':') {
                Some(("list", name)) => Self::list(name),
                Some(("lapi", name)) => Self::lapi(name),
                Some(("machine", name)) => Self::machine(name),
                _ => Err(OriginError::Unknown(s.to_owned())),
            },
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip_and_names_follow_one_rule() {
        for s in [
            "manual",
            "detection",
            "crowdsec",
            "list:firehol1",
            "lapi:hub",
            "machine:web01",
        ] {
            assert_eq!(s.parse::<Origin>().unwrap().to_string(), s);
        }
        assert_eq!(
            "list:a b".parse::<Origin>(),
            Err(OriginError::BadName("a b".into()))
        );
        assert!(matches!(
            "cscli".parse::<Origin>(),
            Err(OriginError::Unknown(_))
        ));
        assert!(Origin::list(&"x".repeat(49)).is_err());
        assert!(Origin::lapi("up").is_ok());
        assert_eq!(
            serde_json::to_string(&Origin::List("l".into())).unwrap(),
            r#""list:l""#
        );
        assert_eq!(Origin::List("x".into()).crowdsec_name(), "lists");
    }
}
