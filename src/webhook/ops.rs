//! Operator actions on the webhook outbox, served by the admin API and
//! driven by `portcullis webhooks ...`: queue status, dead letters, replay,
//! and backfill (the current directory as `*.created` events for a target
//! added later).

use serde_json::{json, Value};

use super::event::{EventType, Source};
use super::outbox::OutboxStore;
use super::outbox::{Emit, OutboxEvent};
use super::Webhooks;
use crate::config::Config;
use crate::directory::DirectoryStore;
use crate::store_error::StoreError;

/// Events appended per store write during a backfill.
const BACKFILL_CHUNK: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no webhook target named {0:?}")]
    UnknownTarget(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("directory: {0}")]
    Directory(#[from] crate::directory::DirectoryError),
}

/// Every tenant the config can put users in: SCIM clients', IdPs', the
/// default one.
pub fn known_tenants(cfg: &Config) -> Vec<String> {
    let mut out = vec![crate::directory::DEFAULT_TENANT.to_string()];
    if let Some(s) = &cfg.scim {
        out.extend(s.client.iter().map(|c| c.tenant.clone()));
    }
    if let Some(s) = &cfg.saml {
        out.extend(s.idp.iter().filter_map(|i| i.tenant.clone()));
    }
    out.sort();
    out.dedup();
    out
}

fn chosen(hooks: &Webhooks, target: Option<&str>) -> Result<Vec<String>, OpsError> {
    match target {
        Some(t) if hooks.target(t).is_none() => Err(OpsError::UnknownTarget(t.into())),
        Some(t) => Ok(vec![t.to_string()]),
        None => Ok(hooks.names()),
    }
}

pub async fn status<S: OutboxStore + DirectoryStore + ?Sized>(
    hooks: &Webhooks,
    store: &S,
) -> Result<Value, OpsError> {
    let list = store.status(&hooks.names()).await?;
    let targets: Vec<Value> = list
        .into_iter()
        .map(|s| {
            let t = hooks.target(&s.target);
            json!({
                "target": s.target,
                "url": t.map(|t| t.cfg.url.as_str().to_string()),
                "mode": t.map(|t| format!("{:?}", t.cfg.mode).to_lowercase()),
                "pending": s.pending,
                "oldest_pending_seconds": s.oldest_pending_ms / 1000,
                "retrying": s.retrying,
                "dead_letters": s.dead_letters,
                "delivered": s.delivered,
                "failed_attempts": s.failed_attempts,
                "last_error": s.last_error,
            })
        })
        .collect();
    Ok(json!({ "targets": targets }))
}

pub async fn dead_letters<S: OutboxStore + DirectoryStore + ?Sized>(
    hooks: &Webhooks,
    store: &S,
    target: Option<&str>,
) -> Result<Value, OpsError> {
    let list = store.dead_letters(&chosen(hooks, target)?).await?;
    Ok(json!({ "dead_letters": list }))
}

/// Re-queues dead letters (all targets unless one is named).
pub async fn replay<S: OutboxStore + DirectoryStore + ?Sized>(
    hooks: &Webhooks,
    store: &S,
    target: Option<&str>,
    ids: &[String],
    since_ms: Option<u64>,
) -> Result<usize, OpsError> {
    let mut n = 0;
    for t in chosen(hooks, target)? {
        let k = store.replay(&t, ids, since_ms).await?;
        if k > 0 {
            tracing::info!(target = %t, replayed = k, "dead letters re-queued");
        }
        n += k;
    }
    Ok(n)
}

/// Drops dead letters for good (all targets unless one is named).
pub async fn discard<S: OutboxStore + DirectoryStore + ?Sized>(
    hooks: &Webhooks,
    store: &S,
    target: Option<&str>,
    ids: &[String],
    before_ms: Option<u64>,
) -> Result<usize, OpsError> {
    let mut n = 0;
    for t in chosen(hooks, target)? {
        let k = store.discard(&t, ids, before_ms).await?;
        if k > 0 {
            tracing::warn!(target = %t, discarded = k, "dead letters discarded by an operator");
        }
        n += k;
    }
    Ok(n)
}

/// Queues the whole directory (every tenant the target accepts) for one
/// target: users first, then groups with their members, as `*.created`.
pub async fn backfill<S: OutboxStore + DirectoryStore + ?Sized>(
    cfg: &Config,
    hooks: &Webhooks,
    store: &S,
    target: &str,
) -> Result<usize, OpsError> {
    let t = hooks
        .target(target)
        .ok_or_else(|| OpsError::UnknownTarget(target.into()))?;
    let mut total = 0;
    let mut batch = Emit::none();
    for tenant in known_tenants(cfg) {
        if t.cfg.tenant.as_deref().is_some_and(|x| x != tenant) {
            continue;
        }
        let mut events = Vec::new();
        if t.wants(EventType::UserCreated, &tenant) {
            for u in store.list_users(&tenant).await? {
                events.push(
                    OutboxEvent::new(EventType::UserCreated, &tenant, Source::Admin, "backfill")
                        .with_user(&u),
                );
            }
        }
        if t.wants(EventType::GroupCreated, &tenant) {
            for g in store.list_groups(&tenant).await? {
                events.push(
                    OutboxEvent::new(EventType::GroupCreated, &tenant, Source::Admin, "backfill")
                        .with_group(&g),
                );
            }
        }
        for ev in events {
            batch.push(ev, vec![target.to_string()]);
            total += 1;
            if batch.events.len() >= BACKFILL_CHUNK {
                store.append_events(std::mem::take(&mut batch)).await?;
            }
        }
    }
    store.append_events(batch).await?;
    tracing::info!(target = %target, events = total, "webhook backfill queued");
    Ok(total)
}

/// A `session.revoked` event's facts.
pub struct Revoked<'a> {
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub user_name: Option<&'a str>,
    pub sessions: usize,
    pub reason: &'a str,
    pub actor: &'a str,
    pub source: Source,
}

/// Queues `session.revoked` for the targets that asked for it.
pub async fn session_revoked<S: OutboxStore + DirectoryStore + ?Sized>(
    hooks: &Webhooks,
    store: &S,
    r: Revoked<'_>,
) {
    let mut ev = OutboxEvent::new(EventType::SessionRevoked, r.tenant, r.source, r.actor);
    ev.extra = Some(json!({
        "user_id": r.user_id,
        "user_name": r.user_name,
        "sessions": r.sessions,
        "reason": r.reason,
    }));
    let emit = hooks.plan(vec![ev]);
    if emit.is_empty() {
        return;
    }
    if let Err(e) = store.append_events(emit).await {
        tracing::error!(user = %r.user_id, error = %e, "could not queue session.revoked");
    }
}
