//! Changing the configuration of a running gateway. A reload (SIGHUP,
//! `POST /admin/reload` behind `portcullis reload`, or a change of the file
//! when `[server] watch_config` is on) reads the file and the environment
//! again, validates them exactly as `portcullis check` does, builds a whole
//! new `Snapshot` and swaps it in. A file that does not validate, or that
//! changes what only a restart can change, is refused with every problem
//! named, and the current snapshot keeps serving. Requests in flight finish
//! on the snapshot they started with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Gateway, Snapshot, StartError};
use crate::config::{Config, Problem};
use crate::identity::keys::Keyset;

/// Keys bound when the process starts: the listeners and the process
/// around them, the store connection and the log subscriber. A reload that
/// changes one of them is refused (not half-applied).
///
/// The session cookie's name (`session.cookie_name`, and `server.public_url`,
/// whose scheme decides the `__Host-` prefix) is here too: under a new name
/// the old cookie would be neither read nor removed, and a live session
/// credential would reach the app.
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.public_url",
    "session.cookie_name",
    "server.tls",
    "server.http2_cleartext",
    "server.threads",
    "server.grace_period",
    "server.runtime_dir",
    "admin.enabled",
    "admin.listen",
    "upstream.url",
    "upstream.ca_file",
    "store",
    "log",
];

/// How often `watch_config` looks at the file.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why a reload was refused. The current configuration keeps serving.
#[derive(Debug)]
pub enum ReloadError {
    /// The file (with the environment) does not validate.
    Invalid(Vec<Problem>),
    /// It changes keys that take effect only at a restart.
    RestartRequired(Vec<Problem>),
    /// The gateway was not started from a file.
    NoFile,
}

impl ReloadError {
    /// The `result` label of `portcullis_config_reload_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) | Self::NoFile => "invalid",
            Self::RestartRequired(_) => "restart_required",
        }
    }

    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::Invalid(p) | Self::RestartRequired(p) => p.clone(),
            Self::NoFile => vec![Problem::new(
                "config",
                "the gateway was not started from a file; there is nothing to re-read",
            )],
        }
    }
}

/// A reload that took effect.
#[derive(Debug)]
pub struct Reloaded {
    /// The new snapshot's generation (the start is 0).
    pub generation: u64,
    /// Top-level sections whose contents differ from the previous snapshot
    /// (key files that changed on disk under the same path are reloaded
    /// too, but are not listed).
    pub changed: Vec<String>,
}

/// The restart-only keys whose values differ. Values are not shown: a
/// store URL can carry a password.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<Problem> {
    let (a, b) = (as_json(old), as_json(new));
    RESTART_ONLY
        .iter()
        .filter(|key| {
            let pointer = format!("/{}", key.replace('.', "/"));
            a.pointer(&pointer) != b.pointer(&pointer)
        })
        .map(|key| {
            Problem::new(
                *key,
                "changed, but takes effect only when the gateway restarts; \
                 restore it to reload the rest, or restart",
            )
        })
        .collect()
}

/// The top-level sections whose contents differ.
pub fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (as_json(old), as_json(new));
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn as_json(cfg: &Config) -> serde_json::Value {
    serde_json::to_value(cfg).unwrap_or_default()
}

/// Files read once at start (the TLS certificate and key, the upstream CA
/// bundle), by the key that names them, with a digest of their contents:
/// replacing one under the same path needs a restart too, and a reload
/// must say so rather than report success.
pub fn bound_files(cfg: &Config) -> Vec<(String, std::path::PathBuf, Option<[u8; 32]>)> {
    let mut v = Vec::new();
    if let Some(t) = &cfg.server.tls {
        v.push(("server.tls.cert".to_string(), t.cert.clone()));
        v.push(("server.tls.key".to_string(), t.key.clone()));
    }
    if let Some(ca) = &cfg.upstream.ca_file {
        v.push(("upstream.ca_file".to_string(), ca.clone()));
    }
    v.into_iter()
        .map(|(k, p)| {
            let digest = std::fs::read(&p).ok().map(|b| {
                use sha2::Digest;
                sha2::Sha256::digest(b).into()
            });
            (k, p, digest)
        })
        .collect()
}

/// The start-bound files whose contents changed since the start.
fn changed_bound_files(
    at_start: &[(String, std::path::PathBuf, Option<[u8; 32]>)],
    cfg: &Config,
) -> Vec<Problem> {
    let now = bound_files(cfg);
    at_start
        .iter()
        .filter(|(key, _, digest)| {
            now.iter()
                .find(|(k, _, _)| k == key)
                .is_some_and(|(_, _, d)| d != digest)
        })
        .map(|(key, path, _)| {
            Problem::new(
                key.clone(),
                format!(
                    "{} changed on disk, but is read only when the gateway starts; restart to use it",
                    path.display()
                ),
            )
        })
        .collect()
}

/// A build failure, as the config problems it amounts to.
fn problems_of(e: StartError) -> Vec<Problem> {
    match e {
        StartError::Config(c) => c.0,
        StartError::Saml(key, message) => vec![Problem::new(key, message)],
        StartError::Keys(e) => vec![Problem::new("identity.signing_key", e.to_string())],
        StartError::Mint(e) => vec![Problem::new("identity", e.to_string())],
        StartError::Policy(e) => vec![Problem::new("policy", e.to_string())],
        other => vec![Problem::new("config", other.to_string())],
    }
}

/// The IdP metadata of `old` that may stand in for a failed fetch under
/// `new`: only for IdPs whose `metadata_url` did not change (a copy from
/// another URL must never vouch for an IdP).
fn carried_over(old: &Snapshot, new: &Config) -> HashMap<String, String> {
    let url_of = |cfg: &Config, id: &str| {
        cfg.saml
            .as_ref()
            .and_then(|s| s.idp.iter().find(|i| i.id == id))
            .and_then(|i| i.metadata_url.clone())
    };
    old.remote
        .lock()
        .iter()
        .filter(|(id, _)| url_of(&old.cfg, id).is_some() && url_of(&old.cfg, id) == url_of(new, id))
        .map(|(id, xml)| (id.clone(), xml.clone()))
        .collect()
}

impl Gateway {
    /// Reloads the configuration (one reload at a time) and logs and counts
    /// the result; `trigger` names what asked (`sighup`, `admin`, `watch`).
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().await;
        let result = self.reload_now().await;
        match &result {
            Ok(done) => {
                crate::telemetry::CONFIG_RELOADS
                    .with_label_values(&["ok"])
                    .inc();
                tracing::info!(
                    trigger,
                    generation = done.generation,
                    changed = %done.changed.join(","),
                    "configuration reloaded"
                );
            }
            Err(e) => {
                crate::telemetry::CONFIG_RELOADS
                    .with_label_values(&[e.label()])
                    .inc();
                let problems: Vec<String> = e.problems().iter().map(|p| p.to_string()).collect();
                tracing::error!(
                    trigger,
                    result = e.label(),
                    problems = %problems.join("; "),
                    "configuration reload refused; the previous configuration keeps serving"
                );
            }
        }
        result
    }

    async fn reload_now(&self) -> Result<Reloaded, ReloadError> {
        let path = self.config_path.as_deref().ok_or(ReloadError::NoFile)?;
        let cfg =
            crate::validate::load_and_validate(path).map_err(|e| ReloadError::Invalid(e.0))?;
        let old = self.snapshot();
        let mut restart = needs_restart(&old.cfg, &cfg);
        restart.extend(changed_bound_files(&self.bound_files, &cfg));
        if !restart.is_empty() {
            return Err(ReloadError::RestartRequired(restart));
        }
        let keys = Keyset::load(&cfg.identity)
            .map_err(|e| ReloadError::Invalid(problems_of(StartError::Keys(e))))?;
        let remote = match &cfg.saml {
            Some(s) if crate::saml::remote::any_remote(s) => {
                let previous = carried_over(&old, &cfg);
                crate::saml::remote::fetch_all(&cfg, s, Some(&previous)).await
            }
            _ => HashMap::new(),
        };
        let changed = changed_sections(&old.cfg, &cfg);
        let generation = old.generation + 1;
        let next = Snapshot::build(self.rt.clone(), generation, cfg, Arc::new(keys), &remote)
            .map_err(|e| ReloadError::Invalid(problems_of(e)))?;
        self.install(next);
        Ok(Reloaded {
            generation,
            changed,
        })
    }

    /// Reloads on every SIGHUP, for the life of the process.
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let _enter = self.state.enter();
        let mut hup = signal(SignalKind::hangup())?;
        let gw = self.clone();
        self.state.spawn(async move {
            while hup.recv().await.is_some() {
                let _ = gw.reload("sighup").await;
            }
        });
        Ok(())
    }

    /// With `[server] watch_config = true` (read from the current snapshot,
    /// so it can be switched by a reload), reloads when the file's contents
    /// change. Compares contents, not times: a Kubernetes ConfigMap update
    /// swaps a symlink and keeps old timestamps. A refused file is not
    /// retried until it changes again.
    pub fn watch_config_file(self: &Arc<Self>) {
        let Some(path) = self.config_path.clone() else {
            return;
        };
        let gw = self.clone();
        self.state.spawn(async move {
            let mut seen = std::fs::read(&path).ok();
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let now = std::fs::read(&path).ok();
                if now == seen || now.is_none() {
                    continue;
                }
                seen = now;
                if gw.snapshot().cfg.server.watch_config {
                    let _ = gw.reload("watch").await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"http://localhost:8080\"\n\
             [upstream]\nurl = \"http://127.0.0.1:3000\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn live_keys_need_no_restart_and_are_listed_as_changed() {
        let a = cfg("[[policy]]\npath = \"/public/*\"\nallow = \"public\"\n");
        let b = cfg("[[policy]]\npath = \"/open/*\"\nallow = \"public\"\n[session]\nidle_timeout = \"1h\"\n");
        assert!(needs_restart(&a, &b).is_empty());
        assert_eq!(changed_sections(&a, &b), vec!["policy", "session"]);
        assert!(changed_sections(&a, &a).is_empty());
    }

    #[test]
    fn every_restart_only_key_is_named() {
        let a = cfg("");
        let mut b = cfg("[store]\nkind = \"redis\"\nurl = \"redis://:secret@127.0.0.1:6379\"\n[log]\nlevel = \"debug\"\n");
        b.server.listen = "127.0.0.1:8081".parse().unwrap();
        b.admin.listen = "127.0.0.1:9191".parse().unwrap();
        b.server.threads = 7;
        b.session.cookie_name = "other".into();
        let keys: Vec<String> = needs_restart(&a, &b).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "session.cookie_name",
                "server.threads",
                "admin.listen",
                "store",
                "log"
            ]
        );
        // The store URL's password is not in any message.
        assert!(needs_restart(&a, &b)
            .iter()
            .all(|p| !p.message.contains("secret")));
    }
}
