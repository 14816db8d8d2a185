//! `webhook` owns provisioning webhooks to the app: the event model
//! (`event`), Standard Webhooks signing (`signing`), the outbox contract the
//! stores implement (`outbox`), and delivery (`deliver`).
//!
//! Producers (SCIM handlers, SAML JIT) describe a change as `OutboxEvent`s
//! and call [`Webhooks::prepare`]: `mode = "sync"` targets are asked first
//! (the change is committed only if they all answer 2xx, so a refusal leaves
//! the directory untouched), and the returned `Emit` goes into the directory
//! write, which appends it to the outbox atomically. Workers deliver from
//! there.

pub mod deliver;
pub mod event;
pub mod ops;
pub mod outbox;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, Problem, WebhookConfig, WebhookMode};
use crate::directory::User;
use event::{EventFilter, EventType, Source};
use outbox::{Emit, OutboxEvent};
use signing::Secret;

/// Before a sync send: waits (up to the target's `timeout`) until the events
/// already queued for this user or group in the target's lane (a JIT update,
/// a `session.revoked`, a retry) are delivered, so the sync event does not
/// overtake them. It never refuses: a lane the app will not drain (it keeps
/// rejecting an older event) must not block a deactivation or a deletion,
/// so past the wait the event goes out anyway, and the receiver's
/// `meta.version` check orders the two.
async fn wait_for_lane(store: &dyn outbox::OutboxStore, t: &Target, lane: &str) {
    let deadline = tokio::time::Instant::now() + t.cfg.timeout.get();
    loop {
        let waiting = store.lane_len(t.name(), lane).await;
        if matches!(waiting, Ok(0)) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            match waiting {
                Ok(n) => {
                    tracing::warn!(target = %t.name(), queued = n, "sync webhook sent ahead of older queued events of the same resource")
                }
                Err(e) => {
                    tracing::warn!(target = %t.name(), error = %e, "cannot read the webhook lane; sync webhook sent without waiting")
                }
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One configured target, parsed.
pub struct Target {
    pub cfg: WebhookConfig,
    pub filter: EventFilter,
    pub secrets: Vec<Secret>,
}

impl Target {
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Whether this target wants `kind` events of `tenant`.
    pub fn wants(&self, kind: EventType, tenant: &str) -> bool {
        self.filter.matches(kind) && self.cfg.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

/// Why a sync target refused a change; becomes the SCIM error.
#[derive(Debug, thiserror::Error)]
#[error("webhook target {target:?} refused the change: {reason}")]
pub struct Refusal {
    pub target: String,
    /// The app's status, when it answered.
    pub status: Option<u16>,
    pub reason: String,
    pub timed_out: bool,
}

impl Refusal {
    /// The status the SCIM client gets. An app's 400/403/409 pass through;
    /// other 4xx become 400 (a 404 or 412 would tell the IdP the resource
    /// or its version is wrong); 5xx and unreachable 502, timeout 504.
    pub fn scim_status(&self) -> u16 {
        match self.status {
            Some(s @ (400 | 403 | 409)) => s,
            Some(400..=499) => 400,
            _ if self.timed_out => 504,
            _ => 502,
        }
    }
}

/// The configured targets and the HTTP client that reaches them.
pub struct Webhooks {
    pub targets: Vec<Arc<Target>>,
    http: reqwest::Client,
    /// SCIM base URL for `meta.location` in event data.
    pub scim_base: String,
    /// This replica's consumer name (stable across restarts of one pod).
    pub consumer: String,
}

/// Checks every `[[webhook]]` (names, URLs, secrets, filters, timings).
pub fn validate_config(cfg: &Config, p: &mut Vec<Problem>) {
    let mut names = std::collections::HashSet::new();
    for (i, w) in cfg.webhook.iter().enumerate() {
        let key = |k: &str| format!("webhook[{i}].{k}");
        if w.name.is_empty()
            || w.name.len() > 64
            || !w
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.push(Problem::new(
                key("name"),
                "must be 1-64 letters, digits, '-' or '_'",
            ));
        } else if !names.insert(w.name.clone()) {
            p.push(Problem::new(
                key("name"),
                format!("{:?} is used by two targets", w.name),
            ));
        }
        if !matches!(w.url.0.scheme(), "http" | "https") {
            p.push(Problem::new(
                key("url"),
                "must be an http:// or https:// URL",
            ));
        }
        match w.all_secrets() {
            Err(e) => p.push(Problem::new(key("secrets_file"), e)),
            Ok(list) if list.is_empty() => p.push(Problem::new(
                key("secrets"),
                "at least one whsec_ secret is required (make one with `portcullis webhooks secret`)",
            )),
            Ok(list) => {
                for (j, s) in list.iter().enumerate() {
                    if let Err(e) = Secret::parse(s) {
                        p.push(Problem::new(format!("webhook[{i}].secrets[{j}]"), e.to_string()));
                    }
                }
            }
        }
        if let Err(e) = EventFilter::parse(&w.events) {
            p.push(Problem::new(key("events"), e.to_string()));
        }
        if w.events.is_empty() {
            p.push(Problem::new(
                key("events"),
                "must name at least one event type",
            ));
        }
        if w.timeout.get() < Duration::from_millis(100)
            || w.timeout.get() > Duration::from_secs(300)
        {
            p.push(Problem::new(key("timeout"), "must be between 100ms and 5m"));
        }
        if w.max_age.get() < w.timeout.get() {
            p.push(Problem::new(key("max_age"), "must be at least `timeout`"));
        }
        if w.retry_initial.get().is_zero() || w.retry_max.get() < w.retry_initial.get() {
            p.push(Problem::new(
                key("retry_max"),
                "retry_initial must be > 0 and retry_max >= retry_initial",
            ));
        }
        if !(1..=256).contains(&w.concurrency) {
            p.push(Problem::new(
                key("concurrency"),
                "must be between 1 and 256",
            ));
        }
        if w.reclaim_after.is_some_and(|r| r.get() <= w.timeout.get()) {
            p.push(Problem::new(
                key("reclaim_after"),
                "must be longer than `timeout`, or a slow delivery is sent twice",
            ));
        }
    }
}

impl Webhooks {
    /// The targets of a (validated) config; `None` when there are none.
    pub fn from_config(cfg: &Config) -> Result<Option<Arc<Self>>, String> {
        if cfg.webhook.is_empty() {
            return Ok(None);
        }
        let mut targets = Vec::new();
        for w in &cfg.webhook {
            let secrets = w
                .all_secrets()?
                .iter()
                .map(|s| Secret::parse(s).map_err(|e| format!("webhook {}: {e}", w.name)))
                .collect::<Result<Vec<_>, _>>()?;
            let filter = EventFilter::parse(&w.events).map_err(|e| e.to_string())?;
            targets.push(Arc::new(Target {
                cfg: w.clone(),
                filter,
                secrets,
            }));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let base_path = cfg
            .scim
            .as_ref()
            .map(|s| s.base_path.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "/scim/v2".into());
        Ok(Some(Arc::new(Self {
            targets,
            http,
            scim_base: format!("{}{}", cfg.server.public_url.origin(), base_path),
            consumer: consumer_name(cfg),
        })))
    }

    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name() == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name().to_string()).collect()
    }

    /// Asks the sync targets about SCIM events (in order), then returns the
    /// outbox entries for everyone else. A refusal stops everything: the
    /// caller must not write.
    pub async fn prepare(
        &self,
        store: &dyn outbox::OutboxStore,
        events: Vec<OutboxEvent>,
    ) -> Result<Emit, Refusal> {
        let mut emit = Emit::none();
        for ev in events {
            if ev.is_empty() {
                continue;
            }
            let mut queued = Vec::new();
            for t in &self.targets {
                if !t.wants(ev.kind, &ev.tenant) {
                    continue;
                }
                if t.cfg.mode == WebhookMode::Sync && ev.source == Source::Scim {
                    wait_for_lane(store, t, &ev.lane()).await;
                    self.send_sync(t, &ev).await?;
                } else {
                    queued.push(t.name().to_string());
                }
            }
            emit.push(ev, queued);
        }
        Ok(emit)
    }

    /// The outbox entries for events that no one waits for (JIT, admin).
    pub fn plan(&self, events: Vec<OutboxEvent>) -> Emit {
        let mut emit = Emit::none();
        for ev in events {
            let targets = self
                .targets
                .iter()
                .filter(|t| t.wants(ev.kind, &ev.tenant))
                .map(|t| t.name().to_string())
                .collect();
            emit.push(ev, targets);
        }
        emit
    }

    async fn send_sync(&self, t: &Target, ev: &OutboxEvent) -> Result<(), Refusal> {
        let started = std::time::Instant::now();
        let r = self.send(t, ev).await;
        let result = if r.is_ok() { "delivered" } else { "failed" };
        crate::telemetry::observe_webhook_attempt(t.name(), "sync", result, started.elapsed());
        r.map_err(|e| Refusal {
            target: t.name().to_string(),
            status: e.status,
            reason: e.reason,
            timed_out: e.timed_out,
        })
    }

    /// One signed POST of `ev` to `t`. Ok on 2xx.
    pub async fn send(&self, t: &Target, ev: &OutboxEvent) -> Result<(), AttemptError> {
        let body = ev.render(&self.scim_base).body();
        let ts = crate::clock::now_ms() / 1000;
        let sig = signing::signature_header(&t.secrets, &ev.id, ts, &body)
            .map_err(|e| AttemptError::local(e.to_string()))?;
        let resp = self
            .http
            .post(t.cfg.url.as_str())
            .timeout(t.cfg.timeout.get())
            .header("content-type", "application/json")
            .header(signing::HEADER_ID, &ev.id)
            .header(signing::HEADER_TIMESTAMP, ts.to_string())
            .header(signing::HEADER_SIGNATURE, sig)
            .body(body)
            .send()
            .await
            .map_err(|e| AttemptError {
                status: None,
                timed_out: e.is_timeout(),
                reason: if e.is_timeout() {
                    format!("no answer within {:?}", t.cfg.timeout.get())
                } else {
                    format!(
                        "cannot reach {}: {}",
                        crate::config::redact_url(t.cfg.url.as_str()),
                        root_cause(&e)
                    )
                },
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = tokio::time::timeout(Duration::from_secs(2), resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let snippet: String = text.trim().chars().take(200).collect();
        Err(AttemptError {
            status: Some(status.as_u16()),
            timed_out: false,
            reason: if snippet.is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                format!("HTTP {}: {snippet}", status.as_u16())
            },
        })
    }
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub status: Option<u16>,
    pub timed_out: bool,
    pub reason: String,
}

impl AttemptError {
    fn local(reason: String) -> Self {
        Self {
            status: None,
            timed_out: false,
            reason,
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// `<hostname>:<listen port>`: stable across restarts of one pod or unit,
/// distinct for replicas (so Redis hands a restarted replica back what it
/// held) — two replicas on one host differ by port.
fn consumer_name(cfg: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into());
    format!("{host}:{}", cfg.server.listen.0.port())
}

/// The event a user write produces, or `None` when nothing a receiver sees
/// changed. `before` is `None` for a creation.
pub fn user_event(
    before: Option<&User>,
    after: &User,
    source: Source,
    actor: &str,
) -> Option<OutboxEvent> {
    let kind = match before {
        None => EventType::UserCreated,
        Some(b) if b.active && !after.active => EventType::UserDeactivated,
        Some(b) if !b.active && after.active => EventType::UserReactivated,
        Some(_) => EventType::UserUpdated,
    };
    let mut ev = OutboxEvent::new(kind, &after.tenant, source, actor).with_user(after);
    if let Some(b) = before {
        ev.changed = changed_attributes(b, after);
        if ev.changed.is_empty() {
            return None;
        }
    }
    Some(ev)
}

/// SCIM attribute names whose values differ (extension attributes as
/// `urn:...:User:department`); `meta` never counts.
pub fn changed_attributes(before: &User, after: &User) -> Vec<String> {
    let a = crate::scim::resource::user_to_json(before, &[], "");
    let b = crate::scim::resource::user_to_json(after, &[], "");
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        if k == "meta" || k == "schemas" {
            continue;
        }
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        if k.starts_with("urn:") {
            let inner =
                |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
            let (xa, yb) = (inner(x), inner(y));
            let mut sub: Vec<&String> = xa.keys().chain(yb.keys()).collect();
            sub.sort();
            sub.dedup();
            for s in sub {
                if xa.get(s) != yb.get(s) {
                    out.push(format!("{k}:{s}"));
                }
            }
        } else {
            out.push(k.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_events_name_what_changed() {
        let mut a = User::new("a@x.test");
        a.id = "u1".into();
        a.tenant = "t".into();
        a.active = true;
        let created = user_event(None, &a, Source::Scim, "jc").unwrap();
        assert_eq!(created.kind, EventType::UserCreated);
        assert!(created.changed.is_empty());
        assert!(user_event(Some(&a), &a, Source::Scim, "jc").is_none());
        let mut b = a.clone();
        b.display_name = Some("A".into());
        b.enterprise.department = Some("R&D".into());
        b.meta.version = 9;
        let up = user_event(Some(&a), &b, Source::Scim, "jc").unwrap();
        assert_eq!(up.kind, EventType::UserUpdated);
        assert_eq!(
            up.changed,
            vec![
                "displayName".to_string(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".into()
            ]
        );
        let mut c = b.clone();
        c.active = false;
        let off = user_event(Some(&b), &c, Source::Scim, "jc").unwrap();
        assert_eq!(off.kind, EventType::UserDeactivated);
        assert_eq!(off.changed, vec!["active".to_string()]);
        let on = user_event(Some(&c), &b, Source::Scim, "jc").unwrap();
        assert_eq!(on.kind, EventType::UserReactivated);
    }
}
