//! The HTML pages the gateway itself shows: errors (400/403/502/503/504),
//! sign-out, and the sign-in placeholder. Small, accessible, no JavaScript,
//! every interpolated value escaped.

use crate::html::escape;

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
background:#f4f5f7;color:#1f2933}main{max-width:28rem;margin:12vh auto;padding:2rem 2.25rem;background:#fff;\
border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}h1{font-size:1.35rem;\
margin:0 0 .75rem}p{margin:.5rem 0}.muted{color:#52606d;font-size:.875rem}code{background:#f0f2f5;\
padding:.1rem .3rem;border-radius:4px}a.button,button{display:inline-block;margin-top:1rem;padding:.6rem 1.1rem;\
border-radius:8px;border:0;background:#2457d6;color:#fff;text-decoration:none;font:inherit;cursor:pointer}\
a.button:focus,button:focus{outline:3px solid #9bb8ff;outline-offset:2px}.brand{font-weight:600;color:#2457d6;\
letter-spacing:.02em;font-size:.8rem;text-transform:uppercase;margin-bottom:1rem}";

/// A complete page. `body_html` must already be escaped.
pub fn page(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{t}</title><style>{STYLE}</style></head>\
<body><main role=\"main\"><div class=\"brand\" aria-hidden=\"true\">Portcullis</div><h1>{t}</h1>{body_html}</main></body></html>",
        t = escape(title)
    )
}

/// An error page with a reference id the operator can find in the log.
pub fn error_page(title: &str, message: &str, reference: &str) -> String {
    page(
        title,
        &format!(
            "<p>{}</p><p class=\"muted\">Reference: <code>{}</code></p>",
            escape(message),
            escape(reference)
        ),
    )
}

pub fn forbidden_page(reference: &str) -> String {
    error_page(
        "Access denied",
        "You are signed in, but your account is not allowed to open this page. Ask your administrator for access.",
        reference,
    )
}

pub fn signed_out_page(login_url: &str) -> String {
    page(
        "You are signed out",
        &format!(
            "<p>Your session has ended.</p><a class=\"button\" href=\"{}\">Sign in again</a>",
            escape(login_url)
        ),
    )
}

/// A fresh reference id for an error (logged next to the details).
pub fn reference_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::secret::random_bytes::<9>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_interpolated() {
        let p = error_page("<x>", "\"'><script>alert(1)</script>", "r&f");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;x&gt;"));
        assert!(p.contains("r&amp;f"));
    }
}
