//! The plain request and response values every web handler (SAML, SCIM,
//! admin, the gateway's own endpoints) speaks: no pingora types, so each
//! handler is testable without a socket. Also the refusals answered without
//! a handler (login redirect, 401, 403, 400, 503, 413).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use super::pages;
use crate::session::{LiveSession, SessionId};

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
    prefix: &str,
    headers: &HeaderMap,
    method: &Method,
    target: &str,
) -> LocalResponse {
    if wants_html(headers) && (method == Method::GET || method == Method::HEAD) {
        let rd = utf8_percent_encode(target, NON_ALPHANUMERIC);
        LocalResponse::redirect(&format!("{}/login?rd={rd}", prefix))
    } else {
        LocalResponse::json(
            401,
            &json!({"error": "unauthenticated", "message": format!("sign in at {}/login", prefix)}),
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
