//! `gateway` is the pingora adapter: it owns the listeners, the process
//! lifecycle and the request path (route, authenticate, authorize, rewrite
//! headers, forward). Everything it decides is delegated to the pure cores
//! (`policy`, `session`, `identity`, the local endpoint handlers in
//! `local`); this module only moves values between them and the wire.

pub mod admin;
pub mod local;
pub mod proxy;
pub mod reload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

use crate::config::Config;
use crate::identity::keys::Keyset;
use crate::session::{SessionSettings, Sessions};

pub use crate::app::{
    Runtime, Snapshot, StartError, Upstream, RESERVED_HEADER_PREFIX, UPSTREAM_RESOLVE_EVERY,
};

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
