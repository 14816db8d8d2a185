//! The gateway's own endpoints under the reserved prefix, as plain async
//! functions from a [`LocalRequest`] to a [`LocalResponse`]: no pingora
//! types, so each is testable without a socket. Also the refusals the proxy
//! path answers itself (login redirect, 401, 403, 400, 503).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use super::pages;
use super::Snapshot;
use crate::session::{cookie, LiveSession, SessionId};

/// A request for a local endpoint, with the body already read (capped).
pub struct LocalRequest {
    pub method: Method,
    /// Normalized path.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub session_id: Option<SessionId>,
    pub session: Option<Arc<LiveSession>>,
}

/// A complete response to write.
#[derive(Debug)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Bytes,
}

impl LocalResponse {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![
                (http::header::CONTENT_TYPE, content_type.to_string()),
                (http::header::CACHE_CONTROL, "no-store".to_string()),
            ],
            body: body.into(),
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Self::new(status, "application/json", v.to_string())
    }

    pub fn html(status: u16, html: String) -> Self {
        let mut r = Self::new(status, "text/html; charset=utf-8", html);
        r.headers
            .push((http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()));
        r.headers
            .push((http::header::X_FRAME_OPTIONS, "DENY".into()));
        r.headers.push((
            http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'".into(),
        ));
        r
    }

    pub fn redirect(location: &str) -> Self {
        let mut r = Self::new(302, "text/plain; charset=utf-8", "");
        r.headers
            .push((http::header::LOCATION, location.to_string()));
        r
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        // A later value of a single-valued header replaces the earlier one.
        if name != http::header::SET_COOKIE {
            self.headers.retain(|(n, _)| *n != name);
        }
        self.headers.push((name, value.into()));
        self
    }
}

/// Does the client want a page (a browser) rather than a status (an API)?
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// No session where one is needed: browsers go to the login page with the
/// original target, API clients get a 401.
pub fn unauthenticated(
    app: &Snapshot,
    headers: &HeaderMap,
    method: &Method,
    target: &str,
) -> LocalResponse {
    if wants_html(headers) && (method == Method::GET || method == Method::HEAD) {
        let rd = utf8_percent_encode(target, NON_ALPHANUMERIC);
        LocalResponse::redirect(&format!("{}/login?rd={rd}", app.prefix))
    } else {
        LocalResponse::json(
            401,
            &json!({"error": "unauthenticated", "message": format!("sign in at {}/login", app.prefix)}),
        )
    }
}

pub fn forbidden(headers: &HeaderMap, reference: &str) -> LocalResponse {
    if wants_html(headers) {
        LocalResponse::html(403, pages::forbidden_page(reference))
    } else {
        LocalResponse::json(403, &json!({"error": "forbidden", "reference": reference}))
    }
}

pub fn bad_request(headers: &HeaderMap, reason: &str, reference: &str) -> LocalResponse {
    if wants_html(headers) {
        LocalResponse::html(400, pages::error_page("Bad request", reason, reference))
    } else {
        LocalResponse::json(
            400,
            &json!({"error": "bad_request", "message": reason, "reference": reference}),
        )
    }
}

/// The store cannot be reached: refuse (never pass through unauthenticated).
pub fn unavailable(headers: &HeaderMap, reference: &str) -> LocalResponse {
    let r = if wants_html(headers) {
        LocalResponse::html(
            503,
            pages::error_page(
                "Temporarily unavailable",
                "The sign-in service cannot reach its session store. Please try again in a moment.",
                reference,
            ),
        )
    } else {
        LocalResponse::json(
            503,
            &json!({"error": "unavailable", "reference": reference}),
        )
    };
    r.with_header(http::header::RETRY_AFTER, "5")
}

pub fn too_large(limit: usize) -> LocalResponse {
    LocalResponse::json(
        413,
        &json!({"error": "payload_too_large", "limit_bytes": limit}),
    )
}

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

/// First value of `name` in a query string, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A same-origin path we may redirect to: `/x`, never `//host`, `/\host`,
/// a scheme, or control characters.
pub fn is_local_target(t: &str) -> bool {
    t.starts_with('/')
        && !t.starts_with("//")
        && !t.starts_with("/\\")
        && !t.chars().any(|c| c.is_control() || c == '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_redirect_targets() {
        assert!(is_local_target("/app?x=1"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "",
        ] {
            assert!(!is_local_target(bad), "{bad:?}");
        }
    }

    #[test]
    fn browsers_are_recognized_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(
            http::header::ACCEPT,
            "text/html,application/xhtml+xml".parse().unwrap(),
        );
        assert!(wants_html(&h));
    }
}
