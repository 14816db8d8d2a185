//! Small value types that parse themselves during deserialization, so a bad
//! value is reported by figment with the key path it came from.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way operators write it: `"90s"`, `"5m"`, `"8h"`, `"1h 30m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("invalid duration {s:?} ({e}); write it like \"90s\", \"5m\" or \"8h\"")
        })?;
        Ok(Self(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An absolute URL, checked at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsUrl(pub url::Url);

impl AbsUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    /// `scheme://host[:port]` without a trailing slash.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

impl FromStr for AbsUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let u = url::Url::parse(s.trim()).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        if u.host_str().is_none() {
            return Err(format!("invalid URL {s:?}: it has no host"));
        }
        Ok(Self(u))
    }
}

impl<'de> Deserialize<'de> for AbsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for AbsUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A listening address `host:port`; `host` must be an IP literal so the
/// collision check between listeners is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub std::net::SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let normalized = match raw.trim().strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => raw.trim().to_string(),
        };
        normalized
            .parse::<std::net::SocketAddr>()
            .map(ListenAddr)
            .map_err(|_| {
                format!(
                    "invalid listen address {raw:?}: write it as IP:PORT, e.g. \"0.0.0.0:8080\""
                )
            })
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operator_durations() {
        assert_eq!(
            "8h".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(8 * 3600)
        );
        assert_eq!(
            "90s".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(90)
        );
        assert_eq!(
            "1h 30m".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(5400)
        );
        assert!("8 hours please".parse::<HumanDuration>().is_err());
        assert!("".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn refuses_relative_urls() {
        assert!("/just/a/path".parse::<AbsUrl>().is_err());
        assert!("http://127.0.0.1:3000".parse::<AbsUrl>().is_ok());
    }
}
