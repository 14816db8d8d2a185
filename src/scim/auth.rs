//! SCIM clients: who may call the SCIM API, into which tenant, under which
//! provisioning policy and rate limit. Tokens are checked against stored
//! SHA-256 hashes in constant time; a second hash is accepted during rotation.

use std::time::{Duration, Instant};

use crate::config::{ScimClientConfig, ScimConfig};
use crate::secret::TokenHash;

/// A fixed-window request budget, e.g. 1000 per hour, per client and process.
pub struct RateLimit {
    limit: u32,
    window: Duration,
    state: parking_lot::Mutex<(Instant, u32)>,
}

impl RateLimit {
    /// Parses `"1000/h"` (units `s`, `m`, `h`, `d`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (n, unit) = spec
            .split_once('/')
            .ok_or_else(|| format!("{spec:?}: write it as COUNT/UNIT, e.g. \"1000/h\""))?;
        let limit: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{spec:?}: COUNT must be a positive integer"))?;
        if limit == 0 {
            return Err(format!("{spec:?}: COUNT must be positive"));
        }
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                return Err(format!(
                    "{spec:?}: unknown unit {other:?} (use s, m, h or d)"
                ))
            }
        };
        Ok(Self {
            limit,
            window,
            state: parking_lot::Mutex::new((Instant::now(), 0)),
        })
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Takes one request from the budget, or says how long until the window resets.
    pub fn take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock();
        let now = Instant::now();
        if now.duration_since(s.0) >= self.window {
            *s = (now, 0);
        }
        if s.1 >= self.limit {
            return Err(self
                .window
                .saturating_sub(now.duration_since(s.0))
                .max(Duration::from_secs(1)));
        }
        s.1 += 1;
        Ok(())
    }
}

pub struct Client {
    pub cfg: ScimClientConfig,
    hashes: Vec<TokenHash>,
    pub limit: Option<RateLimit>,
}

impl Client {
    fn accepts(&self, token: &str) -> bool {
        // Check every hash so the time taken does not say which one matched.
        self.hashes.iter().fold(false, |ok, h| h.verify(token) | ok)
    }
}

pub struct Clients(pub Vec<Client>);

impl Clients {
    /// Builds the clients; the first bad key is reported with its config path.
    pub fn from_config(cfg: &ScimConfig) -> Result<Self, (String, String)> {
        let mut out: Vec<Client> = Vec::new();
        for (i, c) in cfg.client.iter().enumerate() {
            let key = |k: &str| format!("scim.client[{i}].{k}");
            if c.name.trim().is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if out.iter().any(|o| o.cfg.name == c.name) {
                return Err((key("name"), format!("duplicate client name {:?}", c.name)));
            }
            let mut hashes = vec![TokenHash::parse(&c.token_hash).map_err(|e| {
                (
                    key("token_hash"),
                    format!("{e}: use the line printed by `portcullis scim-token create`"),
                )
            })?];
            if let Some(p) = &c.previous_token_hash {
                hashes.push(
                    TokenHash::parse(p).map_err(|e| (key("previous_token_hash"), e.to_string()))?,
                );
            }
            let tenant_ok = !c.tenant.is_empty()
                && c.tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !tenant_ok {
                return Err((
                    key("tenant"),
                    "letters, digits, '-', '_' and '.' only".into(),
                ));
            }
            let limit = c
                .rate_limit
                .as_deref()
                .map(RateLimit::parse)
                .transpose()
                .map_err(|e| (key("rate_limit"), e))?;
            out.push(Client {
                cfg: c.clone(),
                hashes,
                limit,
            });
        }
        Ok(Self(out))
    }

    /// The enabled client whose token this is.
    pub fn authenticate(&self, token: &str) -> Option<&Client> {
        let mut found = None;
        for c in &self.0 {
            if c.accepts(token) && found.is_none() {
                found = Some(c);
            }
        }
        found.filter(|c| c.cfg.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_and_refuse_over_budget() {
        let r = RateLimit::parse("2/h").unwrap();
        assert!(r.take().is_ok());
        assert!(r.take().is_ok());
        let wait = r.take().unwrap_err();
        assert!(wait > Duration::from_secs(3500));
        assert!(RateLimit::parse("1000").is_err());
        assert!(RateLimit::parse("0/h").is_err());
        assert!(RateLimit::parse("10/week").is_err());
    }
}
