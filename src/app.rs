//! The parts the request path reads, built in one place: the long-lived
//! `Runtime` (store, session cache, upstream, webhook workers) and the
//! `Snapshot` derived from one validated `Config`. No pingora here: the web
//! handlers take these values, and `gateway` adapts them to the wire.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::config::Config;
use crate::identity::keys::Keyset;
use crate::identity::Minter;
use crate::policy::Policy;
use crate::session::Sessions;
use crate::store::Backend;

/// Inbound headers with this prefix never reach the app.
pub const RESERVED_HEADER_PREFIX: &str = "x-portcullis-";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("identity keys: {0}")]
    Keys(#[from] crate::identity::keys::KeyError),
    #[error("identity: {0}")]
    Mint(#[from] crate::identity::MintError),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("runtime: {0}")]
    Runtime(String),
    /// A bad `[saml]` or `[scim]` key, found at start.
    #[error("{0}: {1}")]
    Saml(String, String),
}

/// How often an upstream given by host name is looked up again.
pub const UPSTREAM_RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// Where and how requests are forwarded.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// `host[:port]` as the app expects it when Host is not preserved.
    pub authority: String,
    /// `authority` as a header value, made once.
    pub authority_value: http::HeaderValue,
    /// The address requests go to: fixed for an IP literal; for a host name
    /// the last successful lookup, refreshed in the background
    /// (`UPSTREAM_RESOLVE_EVERY`) so no request waits on DNS. Shared by clones.
    resolved: Arc<arc_swap::ArcSwapOption<SocketAddr>>,
}

impl Upstream {
    pub(crate) fn from_config(cfg: &Config) -> Self {
        Self::from_url(&cfg.upstream.url.0)
    }

    fn from_url(u: &url::Url) -> Self {
        let tls = u.scheme() == "https";
        let host = u
            .host_str()
            .unwrap_or("127.0.0.1")
            .trim_matches(['[', ']'])
            .to_string();
        let port = u
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let authority = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        let fixed = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| Arc::new(SocketAddr::new(ip, port)));
        let authority_value = http::HeaderValue::from_str(&authority)
            .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
        Self {
            host,
            port,
            tls,
            authority,
            authority_value,
            resolved: Arc::new(arc_swap::ArcSwapOption::new(fixed)),
        }
    }

    /// True when the upstream is a host name (looked up, and refreshed).
    pub fn needs_lookup(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_err()
    }

    /// The upstream's address: the kept one, or a lookup when none has
    /// succeeded yet.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Some(addr) = self.resolved.load().as_deref() {
            return Ok(*addr);
        }
        self.refresh().await
    }

    /// Looks the host name up again and keeps the answer; a failed lookup
    /// keeps the previous address (the app has not moved because DNS blinked).
    pub async fn refresh(&self) -> std::io::Result<SocketAddr> {
        let found = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "upstream host has no address")
            })?;
        let previous = self.resolved.swap(Some(Arc::new(found)));
        if previous.as_deref().is_some_and(|p| *p != found) {
            tracing::info!(host = %self.host, address = %found, "upstream address changed");
        }
        Ok(found)
    }
}

/// What lives as long as the process, whatever the configuration says:
/// the store connections, the session cache, the upstream address and the
/// webhook delivery workers. Built once at start; a reload re-points parts
/// of it (session settings, worker targets) but never replaces it.
pub struct Runtime {
    pub store: Arc<dyn Backend>,
    pub sessions: Arc<Sessions>,
    pub upstream: Upstream,
    /// One delivery worker per `[[webhook]]` target, re-pointed on reload.
    pub webhook_workers: crate::webhook::deliver::Workers,
}

/// Everything derived from one validated `Config`, and nothing else: the
/// request path reads one snapshot per request (`Gateway::snapshot`), so a
/// reload swaps all of it at once and a request in flight finishes on the
/// snapshot it started with. It reaches the long-lived parts through `rt`.
pub struct Snapshot {
    pub rt: Arc<Runtime>,
    /// Counts reloads (0 = the config the process started with); an
    /// identity JWT minted under another generation is minted again.
    pub generation: u64,
    pub cfg: Arc<Config>,
    pub minter: Minter,
    pub policy: Policy,
    /// Exact inbound header names to remove (configured + our own).
    /// (foldhash: looked up for every inbound header; the set is fixed per
    /// snapshot, so there is nothing for a flood of chosen names to grow.)
    pub strip: HashSet<HeaderName, foldhash::fast::RandomState>,
    pub prefix: String,
    pub admin_token: Option<crate::secret::TokenHash>,
    /// The IdP registry; swapped when fetched IdP metadata changes.
    pub saml: arc_swap::ArcSwapOption<crate::saml::idp::Registry>,
    /// The fetched IdP metadata (by IdP id) `saml` was built from.
    pub remote: parking_lot::Mutex<std::collections::HashMap<String, String>>,
    /// `[saml] mode = "optional"`: no session still reaches the app, without identity.
    pub sso_optional: bool,
    pub scim: Option<crate::scim::server::Scim>,
    /// Provisioning webhook targets; `None` when none is configured (then
    /// directory writes append nothing to the outbox).
    pub webhooks: Option<Arc<crate::webhook::Webhooks>>,
    /// Who may vouch for whom: IdP ownership of users, domains, SCIM ties.
    pub trust: crate::directory::trust::Trust,
}

impl Snapshot {
    /// The provisioning service over this snapshot's trust rules and role
    /// maps and the runtime's store and sessions.
    pub fn provisioning(&self) -> crate::provisioning::Provisioning<'_> {
        crate::provisioning::Provisioning {
            store: &*self.rt.store,
            sessions: &self.rt.sessions,
            trust: &self.trust,
            scim: self.scim.as_ref(),
        }
    }

    /// Builds a snapshot from a validated config and already opened parts.
    pub fn build(
        rt: Arc<Runtime>,
        generation: u64,
        cfg: Config,
        keys: Arc<Keyset>,
        remote_metadata: &std::collections::HashMap<String, String>,
    ) -> Result<Self, StartError> {
        let minter = Minter::new(&cfg, keys)?;
        // Emergency bypass paths come first: they must win over every rule.
        let mut rules: Vec<crate::config::PolicyRuleConfig> = cfg
            .saml
            .iter()
            .flat_map(|s| s.bypass.iter())
            .map(|p| crate::config::PolicyRuleConfig {
                path: p.clone(),
                methods: vec![],
                allow: Some("public".into()),
                groups: None,
                tenant: None,
            })
            .collect();
        rules.extend(cfg.policy.iter().cloned());
        let policy = if cfg.server.case_insensitive_paths {
            Policy::compile_case_insensitive(&rules)?
        } else {
            Policy::compile(&rules)?
        };
        let saml = match &cfg.saml {
            Some(s) => Some(Arc::new(
                crate::saml::idp::Registry::build(&cfg, s, Some(remote_metadata))
                    .map_err(|(k, m)| StartError::Saml(k, m))?,
            )),
            None => None,
        };
        let scim = match &cfg.scim {
            Some(s) => Some(
                crate::scim::server::Scim::from_config(s)
                    .map_err(|(k, m)| StartError::Saml(k, m))?,
            ),
            None => None,
        };
        let sso_optional = cfg
            .saml
            .as_ref()
            .is_some_and(|s| s.mode == crate::config::SsoMode::Optional);
        let mut strip: HashSet<HeaderName, foldhash::fast::RandomState> =
            minter.header_names().into_iter().collect();
        for h in &cfg.identity.strip_headers {
            if let Ok(n) = HeaderName::from_bytes(h.replace('_', "-").as_bytes()) {
                strip.insert(n);
            }
        }
        let admin_token = cfg
            .admin
            .token_hash
            .as_deref()
            .and_then(|h| crate::secret::TokenHash::parse(h).ok());
        let webhooks = crate::webhook::Webhooks::from_config(&cfg)
            .map_err(|m| StartError::Saml("webhook".into(), m))?;
        let trust = crate::directory::trust::Trust::from_config(&cfg);
        Ok(Self {
            rt,
            generation,
            webhooks,
            trust,
            prefix: cfg.server.reserved_prefix.clone(),
            cfg: Arc::new(cfg),
            minter,
            policy,
            strip,
            admin_token,
            saml: arc_swap::ArcSwapOption::new(saml),
            remote: parking_lot::Mutex::new(remote_metadata.clone()),
            sso_optional,
            scim,
        })
    }

    /// True if `path` (normalized) is one of the gateway's own endpoints
    /// (the reserved prefix, or the SCIM base path when SCIM is on).
    pub fn is_local(&self, path: &str) -> bool {
        self.scim.as_ref().is_some_and(|s| s.owns(path))
            || path == self.prefix
            || (path.starts_with(&self.prefix)
                && path.as_bytes().get(self.prefix.len()) == Some(&b'/'))
    }

    /// Should this inbound header be removed before forwarding?
    /// Names are compared with `_` read as `-`: CGI-style stacks (PHP,
    /// WSGI, Rack) map both spellings to the same variable, so
    /// `X_Portcullis_User` would otherwise pose as `X-Portcullis-User`.
    pub fn must_strip(&self, name: &HeaderName) -> bool {
        let n = name.as_str();
        if !n.contains('_') {
            return n.starts_with(RESERVED_HEADER_PREFIX) || self.strip.contains(name);
        }
        let dashed = n.replace('_', "-");
        dashed.starts_with(RESERVED_HEADER_PREFIX)
            || self.strip.iter().any(|s| s.as_str() == dashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::from_url(&url.parse().unwrap())
    }

    #[tokio::test]
    async fn an_ip_upstream_is_never_looked_up() {
        let u = upstream("http://127.0.0.1:9");
        assert!(!u.needs_lookup());
        assert_eq!(u.resolve().await.unwrap(), "127.0.0.1:9".parse().unwrap());
        let v6 = upstream("http://[::1]:8080");
        assert!(!v6.needs_lookup());
        assert_eq!(v6.resolve().await.unwrap(), "[::1]:8080".parse().unwrap());
    }

    #[tokio::test]
    async fn a_host_name_is_kept_and_a_failed_lookup_keeps_the_last_address() {
        let u = upstream("http://localhost:9");
        assert!(u.needs_lookup());
        let first = u.resolve().await.unwrap();
        assert!(first.ip().is_loopback() && first.port() == 9);
        // A clone shares the kept address; point it at a name that cannot
        // resolve (RFC 6761 .invalid): the refresh fails, the address stays.
        let mut broken = u.clone();
        broken.host = "no-such-host.invalid".into();
        assert!(broken.refresh().await.is_err());
        assert_eq!(broken.resolve().await.unwrap(), first);
        assert_eq!(u.resolve().await.unwrap(), first);
    }
}
