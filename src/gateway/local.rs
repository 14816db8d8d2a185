//! The gateway's own endpoints under the reserved prefix, as plain async
//! functions from a [`LocalRequest`] to a [`LocalResponse`]: no pingora
//! types, so each is testable without a socket.

use std::time::Duration;

use http::Method;
use serde_json::json;

use super::Snapshot;
use crate::session::cookie;
use crate::web::pages;
pub use crate::web::{
    bad_request, forbidden, is_local_target, query_param, too_large, unauthenticated, unavailable,
    wants_html, LocalRequest, LocalResponse,
};

/// Routes a request under the reserved prefix.
pub async fn handle(app: &Snapshot, req: LocalRequest) -> LocalResponse {
    if let Some(scim) = app.scim.as_ref().filter(|s| s.owns(&req.path)) {
        return crate::scim::server::handle(app, scim, &req).await;
    }
    let sub = &req.path[app.prefix.len()..];
    let get_like = req.method == Method::GET || req.method == Method::HEAD;
    match sub {
        "/healthz" if get_like => LocalResponse::json(200, &json!({"status": "ok"})),
        "/readyz" if get_like => readyz(app).await,
        "/jwks.json" if get_like => jwks(app),
        "/userinfo" if get_like => userinfo(&req),
        "/login" if get_like => crate::saml::web::login(app, &req).await,
        "/saml/acs" if req.method == Method::POST => crate::saml::web::acs(app, &req).await,
        "/saml/metadata" if get_like => crate::saml::web::metadata(app),
        "/saml/slo" if get_like || req.method == Method::POST => {
            crate::saml::web::slo(app, &req).await
        }
        "/saml/continue" if req.method == Method::POST => {
            crate::saml::web::continue_idp_initiated(app, &req).await
        }
        "/saml/acs" => acs_not_posted(app, &req),
        "/saml/continue" => method_not_allowed("POST"),
        "/saml/metadata" => method_not_allowed("GET, HEAD"),
        "/logout" if get_like || req.method == Method::POST => logout(app, &req).await,
        "/healthz" | "/readyz" | "/jwks.json" | "/userinfo" | "/login" => {
            method_not_allowed("GET, HEAD")
        }
        "/logout" => method_not_allowed("GET, HEAD, POST"),
        _ => LocalResponse::json(404, &json!({"error": "not_found"})),
    }
}

/// A browser that GETs the ACS (back button, bookmark, a reload after the
/// sign-in) gets the readable page with a reference id and a way back in.
fn acs_not_posted(app: &Snapshot, req: &LocalRequest) -> LocalResponse {
    let reference = pages::reference_id();
    tracing::warn!(reference, method = %req.method, reason = "acs_not_posted", "SAML sign-in refused: the ACS only accepts the IdP's POST");
    let r = if wants_html(&req.headers) {
        LocalResponse::html(
            405,
            pages::error_page(
                "Sign-in link expired",
                &format!(
                    "This address only receives sign-in responses from your identity provider. Start again from the application, or go to {}/login.",
                    app.prefix
                ),
                &reference,
            ),
        )
    } else {
        LocalResponse::json(
            405,
            &json!({"error": "method_not_allowed", "message": "the ACS accepts only the IdP's POST", "reference": reference}),
        )
    };
    r.with_header(http::header::ALLOW, "POST")
}

fn method_not_allowed(allow: &str) -> LocalResponse {
    LocalResponse::json(405, &json!({"error": "method_not_allowed"}))
        .with_header(http::header::ALLOW, allow)
}

fn jwks(app: &Snapshot) -> LocalResponse {
    let mut r = LocalResponse::new(
        200,
        "application/jwk-set+json",
        app.minter.keys().jwks_json(),
    );
    r = r.with_header(http::header::CACHE_CONTROL, "public, max-age=300");
    r
}

/// Ready when the store answers and the upstream accepts a connection.
pub async fn readyz(app: &Snapshot) -> LocalResponse {
    let store = match tokio::time::timeout(Duration::from_secs(2), app.rt.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let connect_limit = app
        .cfg
        .upstream
        .connect_timeout
        .get()
        .min(Duration::from_secs(2));
    let upstream = async {
        let addr = app.rt.upstream.resolve().await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(connect_limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".to_string()),
        }
    }
    .await;
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let ready = store.is_ok() && upstream.is_ok();
    LocalResponse::json(
        if ready { 200 } else { 503 },
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "store": show(&store),
            "upstream": show(&upstream),
        }),
    )
}

fn userinfo(req: &LocalRequest) -> LocalResponse {
    match &req.session {
        Some(s) => {
            let p = s.principal();
            LocalResponse::json(
                200,
                &json!({
                    "sub": p.sub, "email": p.email, "name": p.name,
                    "given_name": p.given_name, "family_name": p.family_name,
                    "groups": p.groups, "roles": p.roles, "tenant": p.tenant, "idp": p.idp,
                    "sid": s.key.sid(),
                    "session_expires_at": s.record.expires_ms / 1000,
                }),
            )
        }
        None => LocalResponse::json(401, &json!({"error": "unauthenticated"})),
    }
}

async fn logout(app: &Snapshot, req: &LocalRequest) -> LocalResponse {
    let mut idp_redirect = None;
    if let Some(s) = &req.session {
        match app.rt.sessions.revoke(&s.key).await {
            Ok(_) => {
                tracing::info!(sid = s.key.sid(), sub = %s.principal().sub, "signed out");
                idp_redirect = s
                    .record
                    .sso
                    .as_ref()
                    .and_then(|l| crate::saml::web::idp_logout_redirect(app, l));
            }
            Err(e) => {
                let reference = pages::reference_id();
                tracing::error!(reference, error = %e, "sign-out could not reach the session store");
                return unavailable(&req.headers, &reference);
            }
        }
    }
    let clear = cookie::clear_cookie(&app.rt.sessions.settings());
    match idp_redirect {
        // Single logout: the IdP ends its session and sends the browser back to /saml/slo.
        Some(url) => LocalResponse::redirect(&url).with_header(http::header::SET_COOKIE, clear),
        None => LocalResponse::html(
            200,
            pages::signed_out_page(&format!("{}/login", app.prefix)),
        )
        .with_header(http::header::SET_COOKIE, clear),
    }
}
