//! `gateway` is the pingora adapter: it owns the listeners, the process
//! lifecycle and the request path (route, authenticate, authorize, rewrite
//! headers, forward). Everything it decides is delegated to the pure cores
//! (`policy`, `session`, `identity`, the local endpoint handlers in
//! `local`); this module only moves values between them and the wire.

pub mod admin;
pub mod identity_sync;
pub mod local;
pub mod proxy;
pub mod reload;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

use crate::config::Config;
use crate::identity::keys::Keyset;
use crate::identity::Minter;
use crate::policy::Policy;
use crate::session::{SessionSettings, Sessions};
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
    fn from_config(cfg: &Config) -> Self {
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

/// The running gateway: its runtime and the current snapshot. The proxy
/// and admin services hold this; everything else receives a `Snapshot`.
pub struct Gateway {
    pub rt: Arc<Runtime>,
    current: arc_swap::ArcSwap<Snapshot>,
    /// Where the configuration is read from again on reload (`None`: built
    /// from a value, nothing to re-read).
    config_path: Option<PathBuf>,
    /// Reloads run one at a time, each against the snapshot before it.
    reloading: tokio::sync::Mutex<()>,
    /// The long-lived runtime background work (reloads, workers) runs on.
    state: tokio::runtime::Handle,
    /// Files read once at start, with digests (`reload::bound_files`).
    bound_files: Vec<(String, PathBuf, Option<[u8; 32]>)>,
}

impl Gateway {
    /// Opens the runtime (store, session cache) and builds the first
    /// snapshot. Must run on a long-lived tokio runtime: backend connections
    /// spawn their drivers on it.
    pub async fn start(cfg: Config, config_path: Option<PathBuf>) -> Result<Arc<Self>, StartError> {
        let problems = crate::validate::validate(&cfg);
        if !problems.is_empty() {
            return Err(crate::config::ConfigError(problems).into());
        }
        let keys = Arc::new(Keyset::load(&cfg.identity)?);
        let store = crate::store::open(&cfg.store).await?;
        let remote = match &cfg.saml {
            Some(s) if crate::saml::remote::any_remote(s) => {
                crate::saml::remote::fetch_all(&cfg, s, None).await
            }
            _ => Default::default(),
        };
        let session_store: Arc<dyn crate::session::SessionStore> = store.clone();
        let rt = Arc::new(Runtime {
            sessions: Sessions::new(session_store, SessionSettings::from_config(&cfg)),
            upstream: Upstream::from_config(&cfg),
            webhook_workers: crate::webhook::deliver::Workers::new(
                tokio::runtime::Handle::current(),
            ),
            store,
        });
        let bound_files = reload::bound_files(&cfg);
        let first = Snapshot::build(rt.clone(), 0, cfg, keys, &remote)?;
        let webhooks = first.webhooks.clone();
        let gw = Arc::new(Self {
            current: arc_swap::ArcSwap::from_pointee(first),
            config_path,
            reloading: tokio::sync::Mutex::new(()),
            state: tokio::runtime::Handle::current(),
            bound_files,
            rt,
        });
        gw.rt
            .webhook_workers
            .reconcile(webhooks, gw.rt.store.clone());
        Ok(gw)
    }

    /// The snapshot to serve one request with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The path the configuration is re-read from.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// Makes `next` current and points the runtime's re-pointable parts
    /// (session settings, webhook workers) at it.
    fn install(&self, next: Snapshot) {
        self.rt
            .sessions
            .set_settings(SessionSettings::from_config(&next.cfg));
        let next = Arc::new(next);
        self.current.store(next.clone());
        self.rt
            .webhook_workers
            .reconcile(next.webhooks.clone(), self.rt.store.clone());
    }
}

impl Snapshot {
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

fn runtime_dir(cfg: &Config) -> PathBuf {
    cfg.server.runtime_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("portcullis-{}", cfg.server.listen.0.port()))
    })
}

/// Runs the gateway until a signal stops it. Never returns. `config_path`
/// is the file a reload reads again.
pub fn run(cfg: Config, config_path: Option<PathBuf>) -> Result<(), StartError> {
    // pingora's listener installs ring as well; doing it first means any
    // rustls client created before that (Redis over TLS) finds a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // State lives on its own runtime: pingora's service runtimes must not be
    // nested in another, and backend connection drivers need one that
    // outlives every request.
    let state_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("portcullis-state")
        .enable_all()
        .build()
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    let gw = state_rt.block_on(Gateway::start(cfg, config_path))?;
    crate::telemetry::register_metrics();
    spawn_maintenance(&state_rt, gw.clone());
    gw.reload_on_sighup()
        .map_err(|e| StartError::Runtime(format!("SIGHUP handler: {e}")))?;
    gw.watch_config_file();

    let app = gw.snapshot();
    let cfg = app.cfg.clone();
    let rt_dir = runtime_dir(&cfg);
    std::fs::create_dir_all(&rt_dir)
        .map_err(|e| StartError::Runtime(format!("{}: {e}", rt_dir.display())))?;
    let threads = if cfg.server.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        cfg.server.threads
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(cfg.server.grace_period.get().as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        pid_file: rt_dir.join("portcullis.pid").display().to_string(),
        upgrade_sock: rt_dir.join("upgrade.sock").display().to_string(),
        upstream_keepalive_pool_size: 128,
        ca_file: cfg
            .upstream
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut options = HttpServerOptions::default();
    options.h2c = cfg.server.tls.is_none() && cfg.server.http2_cleartext;
    let mut proxy = ProxyServiceBuilder::new(&server.configuration, proxy::Proxy::new(gw.clone()))
        .name("portcullis")
        .server_options(options)
        .build();
    let listen = cfg.server.listen.to_string();
    match &cfg.server.tls {
        Some(t) => {
            let ck = crate::tls::load_certified_key(&t.cert, &t.key)?;
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| StartError::Runtime(format!("tls settings: {e}")))?;
            settings.set_cert_resolver(Arc::new(crate::tls::SingleCert(ck)));
            settings.enable_h2();
            proxy.add_tls_with_settings(&listen, None, settings);
        }
        None => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);

    if cfg.admin.enabled {
        let mut admin = pingora::services::listening::Service::new(
            "portcullis-admin".into(),
            admin::Admin::new(gw.clone()),
        );
        admin.add_tcp(&cfg.admin.listen.to_string());
        server.add_service(admin);
    }

    tracing::info!(
        listen = %cfg.server.listen,
        public_url = %cfg.server.public_url.as_str(),
        upstream = %cfg.upstream.url.as_str(),
        store = app.rt.store.kind(),
        kid = app.minter.keys().signer().kid(),
        "portcullis started"
    );
    // Keep the state runtime alive for the life of the process.
    let _state_rt = state_rt;
    server.run_forever()
}

/// Background upkeep on the state runtime: upstream lookups, IdP metadata
/// refresh (of whichever snapshot is current) and expired-state sweeps.
fn spawn_maintenance(rt: &tokio::runtime::Runtime, gw: Arc<Gateway>) {
    if gw.rt.upstream.needs_lookup() {
        let upstream = gw.rt.upstream.clone();
        rt.spawn(async move {
            loop {
                if let Err(e) = upstream.refresh().await {
                    tracing::warn!(host = %upstream.host, error = %e, "upstream lookup failed; keeping the last address");
                }
                tokio::time::sleep(UPSTREAM_RESOLVE_EVERY).await;
            }
        });
    }
    let refresher = gw.clone();
    rt.spawn(async move {
        loop {
            let every = refresher
                .snapshot()
                .cfg
                .saml
                .as_ref()
                .and_then(crate::saml::remote::refresh_interval)
                .unwrap_or(Duration::from_secs(30));
            tokio::time::sleep(every).await;
            refresh_metadata(&refresher.snapshot()).await;
        }
    });
    let parts = gw.rt.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match parts.sessions.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired sessions removed"),
                Err(e) => tracing::warn!(error = %e, "session sweep failed"),
            }
            if let Err(e) = parts
                .store
                .purge_expired_state(crate::clock::now_ms())
                .await
            {
                tracing::warn!(error = %e, "state sweep failed");
            }
        }
    });
}

/// Fetches the URL-configured IdP metadata of `snap` again and, when it
/// changed and still builds a registry, swaps that snapshot's registry.
async fn refresh_metadata(snap: &Snapshot) {
    let Some(saml) = snap.cfg.saml.as_ref() else {
        return;
    };
    if !crate::saml::remote::any_remote(saml) {
        return;
    }
    let previous = snap.remote.lock().clone();
    let fresh = crate::saml::remote::fetch_all(&snap.cfg, saml, Some(&previous)).await;
    if fresh == previous {
        return;
    }
    match crate::saml::idp::Registry::build(&snap.cfg, saml, Some(&fresh)) {
        Ok(reg) => {
            snap.saml.store(Some(Arc::new(reg)));
            *snap.remote.lock() = fresh;
            tracing::info!("IdP registry updated from fetched metadata");
        }
        Err((key, msg)) => {
            tracing::error!(%key, %msg, "fetched IdP metadata is unusable; keeping the previous registry")
        }
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
