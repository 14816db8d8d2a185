//! The admin listener (default 127.0.0.1:9090): Prometheus `/metrics`,
//! `/healthz`, and the token-protected session API under `/admin/`:
//!
//! - `GET    /admin/users/{sub}/sessions`  list a user's sessions
//! - `DELETE /admin/users/{sub}/sessions`  revoke them all (every replica)
//! - `DELETE /admin/sessions/{key}`        revoke one session by its key
//! - `POST   /admin/sessions`              mint a session for a principal
//!   (only with `allow_impersonation = true`; logged at warn)
//! - `GET    /admin/webhooks`               outbox status per target
//! - `GET    /admin/webhooks/dead-letters[?target=]`
//! - `POST   /admin/webhooks/replay`        `{"target"?, "ids"?, "since_ms"?}`
//! - `POST   /admin/webhooks/discard`       `{"target"?, "ids"?, "before_ms"?}`
//! - `POST   /admin/webhooks/backfill`      `{"target"}`
//! - `POST   /admin/reload`                 re-read and swap the configuration
//!   (200 with what changed; 422 with every problem when it is refused)
//!
//! Routing and handling are pure (`route`); the pingora `ServeHttp` impl
//! only reads the request and writes the response.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use super::local::LocalResponse;
use super::{Gateway, Snapshot};
use crate::identity::Principal;
use crate::session::{cookie, SessionKey};

pub struct Admin {
    gateway: Arc<Gateway>,
}

impl Admin {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

/// Handles one admin request. `auth` is the `Authorization` header value.
pub async fn route(
    gw: &Gateway,
    method: &Method,
    path: &str,
    query: Option<&str>,
    auth: Option<&http::HeaderValue>,
    body: &[u8],
) -> LocalResponse {
    let app = &*gw.snapshot();
    // On the admin listener, `/.portcullis/admin/...` is accepted as an alias
    // of `/admin/...` (the public listener never serves the admin API).
    let path = match path.strip_prefix(app.prefix.as_str()) {
        Some(rest) if rest.starts_with("/admin/") => rest,
        _ => path,
    };
    match (method, path) {
        (&Method::GET, "/metrics") => LocalResponse::new(
            200,
            "text/plain; version=0.0.4",
            crate::telemetry::render_metrics(),
        ),
        (&Method::GET, "/healthz") => LocalResponse::json(200, &json!({"status": "ok"})),
        (_, p) if p.starts_with("/admin/") => {
            let Some(hash) = &app.admin_token else {
                return LocalResponse::json(
                    404,
                    &json!({"error": "admin API disabled: set admin.token_hash"}),
                );
            };
            match crate::secret::bearer_token(auth) {
                Some(t) if hash.verify(t) => {}
                _ => {
                    return LocalResponse::json(401, &json!({"error": "unauthorized"})).with_header(
                        http::header::WWW_AUTHENTICATE,
                        "Bearer realm=\"portcullis-admin\"",
                    )
                }
            }
            if (method, p) == (&Method::POST, "/admin/reload") {
                return reload(gw).await;
            }
            admin_api(app, method, &p["/admin".len()..], query, body).await
        }
        _ => LocalResponse::json(404, &json!({"error": "not_found"})),
    }
}

/// `POST /admin/reload`, run on the gateway's long-lived runtime.
async fn reload(gw: &Gateway) -> LocalResponse {
    match gw.reload("admin").await {
        Ok(done) => LocalResponse::json(
            200,
            &json!({"status": "reloaded", "generation": done.generation, "changed": done.changed}),
        ),
        Err(e) => {
            let problems: Vec<_> = e
                .problems()
                .into_iter()
                .map(|p| json!({"key": p.key, "message": p.message}))
                .collect();
            LocalResponse::json(
                422,
                &json!({"status": "refused", "result": e.label(), "problems": problems}),
            )
        }
    }
}

async fn admin_api(
    app: &Snapshot,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> LocalResponse {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let store_error = |e: crate::session::SessionError| {
        tracing::error!(error = %e, "admin API: session store error");
        LocalResponse::json(503, &json!({"error": "store_unavailable"}))
            .with_header(http::header::RETRY_AFTER, "5")
    };
    match (method, segs.as_slice()) {
        (&Method::GET, ["users", sub, "sessions"]) => {
            let sub = decode(sub);
            match app.rt.sessions.list_user(&sub).await {
                Ok(list) => {
                    let items: Vec<_> = list
                        .iter()
                        .map(|(k, r)| {
                            json!({"key": k.0, "sid": k.sid(), "created_ms": r.created_ms,
                                   "last_seen_ms": r.last_seen_ms, "expires_ms": r.expires_ms, "via": r.via})
                        })
                        .collect();
                    LocalResponse::json(200, &json!({"sub": sub, "sessions": items}))
                }
                Err(e) => store_error(e),
            }
        }
        (&Method::DELETE, ["users", sub, "sessions"]) => {
            let sub = decode(sub);
            // Who they were (tenant, email), for the session.revoked event.
            let principal = app
                .rt
                .sessions
                .list_user(&sub)
                .await
                .ok()
                .and_then(|l| l.into_iter().next())
                .map(|(_, r)| r.principal);
            match app.rt.sessions.revoke_user(&sub).await {
                Ok(n) => {
                    tracing::info!(%sub, revoked = n, "admin revoked all sessions of user");
                    if let (Some(hooks), Some(p), true) = (&app.webhooks, &principal, n > 0) {
                        let tenant = p
                            .tenant
                            .as_deref()
                            .unwrap_or(crate::saml::web::DEFAULT_TENANT);
                        let revoked = crate::webhook::ops::Revoked {
                            tenant,
                            user_id: &sub,
                            user_name: p.email.as_deref(),
                            sessions: n,
                            reason: "revoked by an operator",
                            actor: "admin",
                            source: crate::webhook::event::Source::Admin,
                        };
                        crate::webhook::ops::session_revoked(hooks, app.rt.store.as_ref(), revoked)
                            .await;
                    }
                    LocalResponse::json(200, &json!({"sub": sub, "revoked": n}))
                }
                Err(e) => store_error(e),
            }
        }
        (&Method::GET, ["scim-log"]) => {
            let param = |k: &str| super::local::query_param(query, k);
            let limit = param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100)
                .min(10_000);
            let client = param("client");
            match app
                .rt
                .store
                .recent_scim_log(if client.is_some() { 10_000 } else { limit })
                .await
            {
                Ok(raw) => {
                    let entries: Vec<serde_json::Value> = raw
                        .iter()
                        .filter_map(|b| {
                            serde_json::from_slice::<crate::scim::log::LogEntry>(b).ok()
                        })
                        .filter(|e| client.as_ref().is_none_or(|c| &e.client == c))
                        .take(limit)
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect();
                    LocalResponse::json(200, &json!({"entries": entries}))
                }
                Err(e) => {
                    tracing::error!(error = %e, "admin API: provisioning log unreadable");
                    LocalResponse::json(503, &json!({"error": "store_unavailable"}))
                }
            }
        }
        (&Method::DELETE, ["sessions", key]) => {
            if !SessionKey::is_well_formed(key) {
                return LocalResponse::json(
                    400,
                    &json!({"error": "session key must be 64 lowercase hex digits"}),
                );
            }
            match app.rt.sessions.revoke(&SessionKey(key.to_string())).await {
                Ok(true) => LocalResponse::json(200, &json!({"revoked": 1})),
                Ok(false) => LocalResponse::json(404, &json!({"error": "no such session"})),
                Err(e) => store_error(e),
            }
        }
        (&Method::POST, ["sessions"]) => {
            if !app.cfg.admin.allow_impersonation {
                return LocalResponse::json(
                    403,
                    &json!({"error": "impersonation disabled: set admin.allow_impersonation"}),
                );
            }
            let principal: Principal = match serde_json::from_slice(body) {
                Ok(p) => p,
                Err(e) => {
                    return LocalResponse::json(
                        400,
                        &json!({"error": format!("invalid principal: {e}")}),
                    )
                }
            };
            if principal.sub.trim().is_empty() {
                return LocalResponse::json(
                    400,
                    &json!({"error": "principal.sub must not be empty"}),
                );
            }
            match app
                .rt
                .sessions
                .create(principal.clone(), "admin", None)
                .await
            {
                Ok((id, live)) => {
                    tracing::warn!(sub = %principal.sub, sid = live.key.sid(), "admin minted a session (impersonation)");
                    let settings = app.rt.sessions.settings();
                    LocalResponse::json(
                        201,
                        &json!({
                            "key": live.key.0, "sid": live.key.sid(),
                            "cookie_name": settings.cookie_name, "cookie_value": id.as_str(),
                            "set_cookie": cookie::set_cookie(&settings, &id),
                            "expires_ms": live.record.expires_ms,
                        }),
                    )
                }
                Err(e) => store_error(e),
            }
        }
        (m, ["webhooks", rest @ ..]) => webhooks_api(app, m, rest, query, body).await,
        _ => LocalResponse::json(404, &json!({"error": "not_found"})),
    }
}

/// `/admin/webhooks/...`; 404 when no target is configured.
async fn webhooks_api(
    app: &Snapshot,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    body: &[u8],
) -> LocalResponse {
    use crate::webhook::ops;
    let Some(hooks) = app.webhooks.as_deref() else {
        return LocalResponse::json(
            404,
            &json!({"error": "no [[webhook]] target is configured"}),
        );
    };
    let store = app.rt.store.as_ref();
    let param = |k: &str| {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let args: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return LocalResponse::json(
                    400,
                    &json!({"error": format!("body is not JSON: {e}")}),
                )
            }
        }
    };
    let result = match (method, rest) {
        (&Method::GET, []) => ops::status(hooks, store).await,
        (&Method::GET, ["dead-letters"]) => {
            ops::dead_letters(hooks, store, param("target").as_deref()).await
        }
        (&Method::POST, ["replay"]) => {
            let ids = strings(&args["ids"]);
            ops::replay(
                hooks,
                store,
                args["target"].as_str(),
                &ids,
                args["since_ms"].as_u64(),
            )
            .await
            .map(|n| json!({"replayed": n}))
        }
        (&Method::POST, ["discard"]) => {
            let ids = strings(&args["ids"]);
            if ids.is_empty() && args["before_ms"].as_u64().is_none() && args["all"] != true {
                return LocalResponse::json(
                    400,
                    &json!({"error": "name ids, before_ms, or all: true"}),
                );
            }
            ops::discard(
                hooks,
                store,
                args["target"].as_str(),
                &ids,
                args["before_ms"].as_u64(),
            )
            .await
            .map(|n| json!({"discarded": n}))
        }
        (&Method::POST, ["backfill"]) => match args["target"].as_str() {
            Some(t) => ops::backfill(&app.cfg, hooks, store, t)
                .await
                .map(|n| json!({"queued": n})),
            None => return LocalResponse::json(400, &json!({"error": "target is required"})),
        },
        _ => return LocalResponse::json(404, &json!({"error": "not_found"})),
    };
    match result {
        Ok(v) => LocalResponse::json(200, &v),
        Err(e @ ops::OpsError::UnknownTarget(_)) => {
            LocalResponse::json(404, &json!({"error": e.to_string()}))
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook admin action failed");
            LocalResponse::json(503, &json!({"error": e.to_string()}))
        }
    }
}

/// The strings of a JSON array (anything else: none).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let limit = self.gateway.snapshot().cfg.server.max_body_bytes;
        let mut body = Vec::new();
        let mut too_large = false;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        too_large = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let req = session.req_header();
        let resp = if too_large {
            super::local::too_large(limit)
        } else {
            route(
                &self.gateway,
                &req.method,
                req.uri.path(),
                req.uri.query(),
                req.headers.get(http::header::AUTHORIZATION),
                &body,
            )
            .await
        };
        to_http(resp)
    }
}

fn to_http(resp: LocalResponse) -> Response<Vec<u8>> {
    let mut b = Response::builder().status(resp.status);
    for (n, v) in &resp.headers {
        b = b.header(n, v.as_str());
    }
    b = b.header(http::header::CONTENT_LENGTH, resp.body.len());
    b.body(resp.body.to_vec()).unwrap_or_else(|_| {
        let mut r = Response::new(b"internal error".to_vec());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
