//! The session cookie on the wire: finding it among the request's cookies,
//! removing it before the request reaches the app, and the `Set-Cookie`
//! values that set and clear it.

use std::time::Duration;

use super::{SessionId, SessionSettings};

/// Finds our session id among the values of every `Cookie` header. A
/// malformed id counts as absent.
pub fn find_session_id<'a>(
    cookie_headers: impl Iterator<Item = &'a [u8]>,
    name: &str,
) -> Option<SessionId> {
    for header in cookie_headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                if let Some(id) = SessionId::parse(v.trim().trim_matches('"')) {
                    return Some(id);
                }
            }
        }
    }
    None
}

/// The `Cookie` header value without our session cookie (and without the
/// unprefixed or prefixed twin), or `None` when nothing else is left.
pub fn strip_session_cookie(value: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let bare = name.strip_prefix("__Host-").unwrap_or(name);
    let ours = |k: &str| k == name || k == bare || k.strip_prefix("__Host-") == Some(bare);
    let mut kept = String::new();
    for pair in text.split(';').map(str::trim) {
        let k = pair.split_once('=').map(|(k, _)| k.trim()).unwrap_or(pair);
        if pair.is_empty() || ours(k) {
            continue;
        }
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    (!kept.is_empty()).then_some(kept)
}

/// `Set-Cookie` that installs a session. No `Max-Age`: the cookie ends with
/// the browser session, the server enforces idle and absolute expiry.
pub fn set_cookie(settings: &SessionSettings, id: &SessionId) -> String {
    let mut v = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax",
        settings.cookie_name,
        id.as_str()
    );
    if settings.secure {
        v.push_str("; Secure");
    }
    v
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(settings: &SessionSettings) -> String {
    let mut v = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        settings.cookie_name
    );
    if settings.secure {
        v.push_str("; Secure");
    }
    v
}

/// Settings for tests and tools that need a cookie without a config file.
pub fn test_settings(secure: bool) -> SessionSettings {
    SessionSettings {
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(7200),
        cookie_name: if secure {
            "__Host-portcullis_session".into()
        } else {
            "portcullis_session".into()
        },
        secure,
        touch_interval: Duration::from_secs(60),
        cache_ttl: Duration::from_secs(30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_among_other_cookies_and_headers() {
        let id = SessionId::generate();
        let h1 = b"theme=dark; lang=en".as_slice();
        let h2 = format!("a=1; portcullis_session={}; b=2", id.as_str());
        let found = find_session_id([h1, h2.as_bytes()].into_iter(), "portcullis_session");
        assert_eq!(found, Some(id));
    }

    #[test]
    fn ignores_malformed_session_values() {
        let found = find_session_id(
            [b"portcullis_session=../../etc".as_slice()].into_iter(),
            "portcullis_session",
        );
        assert!(found.is_none());
    }

    #[test]
    fn strips_only_the_session_cookie() {
        let v = b"a=1; __Host-portcullis_session=xyz; portcullis_session=abc; b=2";
        assert_eq!(
            strip_session_cookie(v, "__Host-portcullis_session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            strip_session_cookie(b"portcullis_session=abc", "portcullis_session"),
            None
        );
    }

    #[test]
    fn secure_cookie_is_host_prefixed_httponly_lax() {
        let s = test_settings(true);
        let c = set_cookie(&s, &SessionId::generate());
        assert!(c.starts_with("__Host-portcullis_session="));
        for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(
            !c.contains("Domain"),
            "__Host- cookies must not carry Domain"
        );
        assert!(!set_cookie(&test_settings(false), &SessionId::generate()).contains("Secure"));
    }
}
