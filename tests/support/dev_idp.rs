//! A development SAML IdP with a web UI: it reads the gateway's
//! AuthnRequest, asks who to sign in as, and posts a signed Response back
//! to the ACS. Used by `make demo` (examples/dev_idp.rs) and the browser
//! test. It lives outside the gateway binary on purpose: the gateway cannot
//! be configured to trust it except by an operator pointing an IdP entry at
//! its certificate.
#![allow(dead_code)]

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Form;
use serde::Deserialize;

use super::idp::{authn_request_from_url, TestIdp};

pub struct DevIdp {
    pub idp: TestIdp,
    /// The IdP's own base URL, e.g. http://localhost:8081.
    pub base_url: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;background:#f6f3ff;margin:0}main{max-width:26rem;margin:10vh auto;\
background:#fff;padding:2rem;border-radius:12px;box-shadow:0 8px 24px rgba(0,0,0,.08)}label{display:block;margin-top:.8rem}\
input{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #ccc;border-radius:6px;font:inherit}\
button{margin-top:1.2rem;padding:.6rem 1.2rem;border:0;border-radius:8px;background:#6b3fd4;color:#fff;font:inherit}";

#[derive(Deserialize)]
struct SsoQuery {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// GET /sso — the sign-in form for one AuthnRequest.
async fn sso(State(dev): State<Arc<DevIdp>>, Query(q): Query<SsoQuery>) -> impl IntoResponse {
    let mut url = url::Url::parse(&format!("{}/sso", dev.base_url)).expect("base url");
    url.query_pairs_mut()
        .append_pair("SAMLRequest", &q.saml_request);
    let (id, xml) = authn_request_from_url(url.as_str());
    let doc = roxmltree::Document::parse(&xml).expect("AuthnRequest XML");
    let root = doc.root_element();
    let acs = root
        .attribute("AssertionConsumerServiceURL")
        .unwrap_or_default()
        .to_string();
    let sp = root
        .children()
        .find(|n| n.tag_name().name() == "Issuer")
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dev IdP sign-in</title><style>{STYLE}</style></head>\
<body><main><h1>Dev IdP</h1><p>Sign in to <code>{sp_e}</code> as:</p><form method=\"post\" action=\"/sso/login\">\
<input type=\"hidden\" name=\"request_id\" value=\"{id}\"><input type=\"hidden\" name=\"acs\" value=\"{acs_e}\">\
<input type=\"hidden\" name=\"sp\" value=\"{sp_e}\"><input type=\"hidden\" name=\"relay_state\" value=\"{rs}\">\
<label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" value=\"ada@example.com\" required>\
<label for=\"first\">First name</label><input id=\"first\" name=\"first\" value=\"Ada\">\
<label for=\"last\">Last name</label><input id=\"last\" name=\"last\" value=\"Lovelace\">\
<label for=\"groups\">Groups (comma-separated)</label><input id=\"groups\" name=\"groups\" value=\"staff\">\
<button id=\"signin\" type=\"submit\">Sign in</button></form></main></body></html>",
        id = esc(&id),
        acs_e = esc(&acs),
        sp_e = esc(&sp),
        rs = esc(q.relay_state.as_deref().unwrap_or_default()),
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    request_id: String,
    acs: String,
    sp: String,
    relay_state: String,
    email: String,
    first: String,
    last: String,
    groups: String,
}

/// POST /sso/login — signs a Response and posts it to the ACS.
async fn login(State(dev): State<Arc<DevIdp>>, Form(f): Form<LoginForm>) -> impl IntoResponse {
    let mut o = super::idp::ResponseOpts::new(&f.acs, &f.sp, Some(&f.request_id));
    o.name_id = esc(&f.email);
    let groups: Vec<String> = f
        .groups
        .split(',')
        .map(|g| esc(g.trim()))
        .filter(|g| !g.is_empty())
        .collect();
    o.attributes = vec![
        ("email".into(), vec![esc(&f.email)]),
        ("firstName".into(), vec![esc(&f.first)]),
        ("lastName".into(), vec![esc(&f.last)]),
        ("memberOf".into(), groups),
    ];
    let b64 = dev.idp.response_b64(&o);
    let relay = if f.relay_state.is_empty() {
        String::new()
    } else {
        format!(
            "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">",
            esc(&f.relay_state)
        )
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Continue</title><style>{STYLE}</style></head>\
<body onload=\"document.forms[0].submit()\"><main><form method=\"post\" action=\"{acs}\">\
<input type=\"hidden\" name=\"SAMLResponse\" value=\"{b64}\">{relay}<p>Signed in. Returning to the application…</p>\
<button id=\"continue\" type=\"submit\">Continue</button></form></main></body></html>",
        acs = esc(&f.acs),
    ))
}

/// GET /metadata — IdP metadata with the signing certificate.
async fn metadata(State(dev): State<Arc<DevIdp>>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/samlmetadata+xml")],
        format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{e}\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
<ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"{b}/sso\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
            e = esc(&dev.idp.entity_id),
            c = dev.idp.cert_b64,
            b = esc(&dev.base_url),
        ),
    )
}

pub fn router(dev: Arc<DevIdp>) -> axum::Router {
    axum::Router::new()
        .route("/sso", get(sso))
        .route("/sso/login", post(login))
        .route("/metadata", get(metadata))
        .with_state(dev)
}
