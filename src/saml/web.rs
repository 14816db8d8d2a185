//! The sign-in endpoints: login page and home-realm discovery, the
//! HTTP-Redirect AuthnRequest, the ACS, and the SP metadata document.
//! Handlers take a `LocalRequest` and return a `LocalResponse`; state that
//! must hold across replicas (pending requests, used assertions) is in the
//! store, so any replica can finish a sign-in another one started.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::idp::{Idp, Registry};
use super::response::{inspect, verify, Login};
use super::SamlError;
use crate::app::Snapshot;
use crate::html::escape;
use crate::identity::Principal;
use crate::session::cookie;
use crate::web::pages;
use crate::web::{is_local_target, query_param, LocalRequest, LocalResponse};

/// Cookie binding a pending AuthnRequest to the browser that started it.
/// `SameSite=None; Secure`: the IdP's POST to the ACS is cross-site.
pub const LOGIN_COOKIE: &str = "portcullis_login";

const NS_AUTHN: &str = "authn";
const NS_ASSERTION: &str = "assertion";

/// What we remember about an AuthnRequest until its response arrives.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    idp: String,
    rd: String,
    /// SHA-256 of the login cookie value, when bound to the browser.
    binding: Option<String>,
}

fn registry(app: &Snapshot) -> Option<Arc<Registry>> {
    app.saml.load_full()
}

fn safe_target(rd: Option<String>) -> String {
    rd.filter(|t| is_local_target(t))
        .unwrap_or_else(|| "/".to_string())
}

/// `GET /.portcullis/login[?rd=][&idp=][&email=]`
pub async fn login(app: &Snapshot, req: &LocalRequest) -> LocalResponse {
    let rd = safe_target(query_param(req.query.as_deref(), "rd"));
    if req.session.is_some() {
        return LocalResponse::redirect(&rd);
    }
    let Some(reg) = registry(app) else {
        let reference = pages::reference_id();
        tracing::warn!(
            reference,
            "login requested but no identity provider is configured"
        );
        return LocalResponse::html(
            503,
            pages::error_page(
                "Sign-in is not configured",
                "No identity provider is configured for this application yet. Contact your administrator.",
                &reference,
            ),
        );
    };
    let reg: &Registry = &reg;
    if let Some(id) = query_param(req.query.as_deref(), "idp") {
        return match reg.by_id(&id) {
            Some(idp) => start(app, reg, idp.clone(), rd, req).await,
            None => login_page(app, reg, &rd, None, Some("Unknown identity provider."), 404),
        };
    }
    if let Some(email) = query_param(req.query.as_deref(), "email").filter(|e| !e.trim().is_empty())
    {
        return match reg.by_email(&email) {
            Some(idp) => start(app, reg, idp.clone(), rd, req).await,
            None => login_page(
                app,
                reg,
                &rd,
                Some(&email),
                Some("Domain not configured: single sign-on is not set up for this email domain. Check the address or contact your administrator."),
                200,
            ),
        };
    }
    if reg.idps.len() == 1 {
        return start(app, reg, reg.idps[0].clone(), rd, req).await;
    }
    login_page(app, reg, &rd, None, None, 200)
}

/// The home-realm page: work email first, IdP buttons as an alternative.
fn login_page(
    app: &Snapshot,
    reg: &Registry,
    rd: &str,
    email: Option<&str>,
    error: Option<&str>,
    status: u16,
) -> LocalResponse {
    let action = format!("{}/login", app.prefix);
    let err = error
        .map(|e| {
            format!(
                "<p role=\"alert\" style=\"color:#b42318\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let mut buttons = String::new();
    for idp in &reg.idps {
        let href = format!(
            "{action}?idp={}&rd={}",
            url::form_urlencoded::byte_serialize(idp.id.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        buttons.push_str(&format!(
            "<li><a class=\"button\" style=\"background:#fff;color:#2457d6;border:1px solid #c5d3f6\" href=\"{}\">{}</a></li>",
            escape(&href),
            escape(&idp.display_name)
        ));
    }
    let body = format!(
        "{err}<form method=\"get\" action=\"{}\"><label for=\"email\">Work email</label><br>\
<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required value=\"{}\" \
style=\"width:100%;box-sizing:border-box;padding:.6rem;margin:.4rem 0;border:1px solid #cbd2d9;border-radius:8px;font:inherit\">\
<input type=\"hidden\" name=\"rd\" value=\"{}\"><button type=\"submit\">Continue</button></form>\
<p class=\"muted\" style=\"margin-top:1.5rem\">Or sign in with your organization:</p>\
<ul style=\"list-style:none;padding:0;margin:0\">{buttons}</ul>",
        escape(&action),
        escape(email.unwrap_or_default()),
        escape(rd),
    );
    LocalResponse::html(status, pages::page("Sign in", &body))
}

fn random_b64(n: usize) -> String {
    let bytes = crate::secret::random_bytes::<32>();
    URL_SAFE_NO_PAD.encode(&bytes[..n.min(32)])
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Sends the browser to the IdP with an AuthnRequest remembered in the store.
async fn start(
    app: &Snapshot,
    reg: &Registry,
    idp: Arc<Idp>,
    rd: String,
    req: &LocalRequest,
) -> LocalResponse {
    let sp = &reg.sp;
    let (request_id, url) = match authn_request(&idp, sp) {
        Ok(v) => v,
        Err(e) => {
            return failure(
                app,
                Some(&idp.id),
                &SamlError::Other(format!("AuthnRequest: {e}")),
                None,
            )
        }
    };
    // Always a fresh nonce: a value planted by a sibling subdomain must not
    // become the binding (login CSRF).
    let nonce = sp.bind_to_browser.then(|| random_b64(32));
    let pending = Pending {
        idp: idp.id.clone(),
        rd,
        binding: nonce
            .as_ref()
            .map(|n| crate::secret::sha256_hex(n.as_bytes())),
    };
    let value = serde_json::to_vec(&pending).unwrap_or_default();
    match app
        .rt
        .store
        .put_state_once(NS_AUTHN, &request_id, &value, sp.request_ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return failure(
                app,
                Some(&idp.id),
                &SamlError::Other("request id collision".into()),
                None,
            )
        }
        Err(e) => {
            let reference = pages::reference_id();
            tracing::error!(reference, error = %e, "cannot store the pending AuthnRequest");
            return crate::web::unavailable(&req.headers, &reference);
        }
    }
    tracing::info!(idp = %idp.id, %request_id, "redirecting to IdP");
    let mut resp = LocalResponse::redirect(&url);
    if let Some(n) = nonce {
        resp = resp.with_header(
            http::header::SET_COOKIE,
            format!(
                "{LOGIN_COOKIE}={n}; Path={}/saml/acs; Max-Age={}; HttpOnly; Secure; SameSite=None",
                app.prefix,
                sp.request_ttl.as_secs()
            ),
        );
    }
    resp
}

/// A new AuthnRequest (128-bit id; samael's default has 32 random bits) and
/// the HTTP-Redirect URL carrying it, signed when the SP has a key.
fn authn_request(idp: &Idp, sp: &super::idp::SpSettings) -> Result<(String, String), String> {
    let mut authn = idp
        .sp
        .make_authentication_request(&idp.sso_url)
        .map_err(|e| e.to_string())?;
    authn.id = format!("_{}", hex(&crate::secret::random_bytes::<16>()));
    let url = match &sp.key {
        Some(k) => authn.signed_redirect("", k),
        None => authn.redirect(""),
    }
    .map_err(|e| e.to_string())?
    .ok_or_else(|| "IdP has no SSO URL".to_string())?;
    Ok((authn.id, url.to_string()))
}

fn cookie_value(req: &LocalRequest, name: &str) -> Option<String> {
    for h in req.headers.get_all(http::header::COOKIE) {
        let Ok(text) = h.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k.trim() == name {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// Logs a refusal with a reference id and renders the error page.
fn failure(app: &Snapshot, idp: Option<&str>, e: &SamlError, xml: Option<&str>) -> LocalResponse {
    let reference = pages::reference_id();
    let debug = app.saml.load().as_ref().is_some_and(|r| r.sp.debug);
    tracing::warn!(reference, reason = e.reason(), idp = idp.unwrap_or("-"), detail = %e, "SAML sign-in refused");
    if debug {
        if let Some(x) = xml {
            tracing::info!(reference, saml_response = %x, "SAML debug: refused message");
        }
    }
    crate::telemetry::SAML_LOGINS
        .with_label_values(&[e.reason()])
        .inc();
    let msg = match e {
        SamlError::Deactivated(_) => "Your account is deactivated. Contact your administrator.",
        SamlError::NotProvisioned(_) => "Your account has not been set up for this application. Contact your administrator.",
        _ => "The sign-in response from your identity provider could not be accepted. Try again, or contact your administrator with the reference below.",
    };
    LocalResponse::html(
        e.status(),
        pages::error_page("Sign-in failed", msg, &reference),
    )
}

/// `POST /.portcullis/saml/acs`
pub async fn acs(app: &Snapshot, req: &LocalRequest) -> LocalResponse {
    let Some(reg) = registry(app) else {
        return LocalResponse::json(404, &serde_json::json!({"error": "SAML is not configured"}));
    };
    let reg: &Registry = &reg;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let Some(saml_response) = field("SAMLResponse") else {
        return failure(
            app,
            None,
            &SamlError::Malformed("no SAMLResponse form field".into()),
            None,
        );
    };
    match accept(app, reg, req, &saml_response, field("RelayState")).await {
        Ok(resp) => resp,
        Err((idp, e, xml)) => {
            if matches!(e, SamlError::Store(_)) {
                let reference = pages::reference_id();
                tracing::error!(reference, detail = %e, "SAML sign-in could not reach the store");
                return crate::web::unavailable(&req.headers, &reference);
            }
            failure(app, idp.as_deref(), &e, xml.as_deref())
        }
    }
}

type AcsError = (Option<String>, SamlError, Option<String>);

async fn accept(
    app: &Snapshot,
    reg: &Registry,
    req: &LocalRequest,
    saml_response: &str,
    relay_state: Option<String>,
) -> Result<LocalResponse, AcsError> {
    let sp = &reg.sp;
    let msg = inspect(saml_response, sp.max_response_bytes, sp.allow_sha1)
        .map_err(|e| (None, e, None))?;
    let xml = || Some(msg.xml.clone());
    let issuer = msg.issuer.clone().unwrap_or_default();
    let idp = reg
        .by_entity_id(&issuer)
        .cloned()
        .ok_or_else(|| (None, SamlError::UnknownIssuer(issuer.clone()), xml()))?;
    let idp_id = Some(idp.id.clone());
    let store_err =
        |e: crate::store_error::StoreError| (idp_id.clone(), SamlError::Store(e.to_string()), None);

    let (request_id, target) = match &msg.in_response_to {
        Some(id) => {
            let raw = app
                .rt
                .store
                // Only looked at here; consumed once the response has verified,
                // so a forged response cannot burn a real request.
                .peek_state(NS_AUTHN, id)
                .await
                .map_err(store_err)?;
            let pending: Pending = raw
                .and_then(|r| serde_json::from_slice(&r).ok())
                .ok_or_else(|| (idp_id.clone(), SamlError::InResponseTo, xml()))?;
            if pending.idp != idp.id {
                return Err((idp_id.clone(), SamlError::InResponseTo, xml()));
            }
            if let Some(want) = &pending.binding {
                let have = cookie_value(req, LOGIN_COOKIE)
                    .map(|v| crate::secret::sha256_hex(v.as_bytes()));
                let ok = have.is_some_and(|h| {
                    subtle::ConstantTimeEq::ct_eq(h.as_bytes(), want.as_bytes()).into()
                });
                if !ok {
                    return Err((idp_id.clone(), SamlError::BrowserBinding, xml()));
                }
            }
            (Some(id.clone()), pending.rd)
        }
        None => {
            if !idp.allow_idp_initiated {
                return Err((idp_id.clone(), SamlError::IdpInitiatedNotAllowed, xml()));
            }
            (None, safe_target(relay_state))
        }
    };

    let verify_idp = idp.clone();
    let msg2 = msg.clone();
    let registry = app.saml.load_full();
    let login = tokio::task::spawn_blocking(move || {
        let reg = registry.ok_or(SamlError::Other("SAML registry missing".into()))?;
        verify(&verify_idp, &reg.sp, &msg2, request_id.as_deref())
    })
    .await
    .map_err(|e| {
        (
            idp_id.clone(),
            SamlError::Other(format!("verification task: {e}")),
            None,
        )
    })?
    .map_err(|e| (idp_id.clone(), e, xml()))?;

    // The request is single-use: of two valid responses to it, one wins.
    if let Some(id) = &msg.in_response_to {
        let taken = app
            .rt
            .store
            .take_state(NS_AUTHN, id)
            .await
            .map_err(store_err)?;
        if taken.is_none() {
            return Err((idp_id.clone(), SamlError::InResponseTo, xml()));
        }
    }
    // Single use: the assertion id is remembered until it could no longer be accepted.
    let now = chrono::Utc::now();
    let until = login
        .not_on_or_after
        .unwrap_or(now + chrono::Duration::minutes(5))
        + chrono::Duration::from_std(sp.clock_skew).unwrap_or_default();
    let ttl = (until - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_secs(1), Duration::from_secs(86_400));
    let replay_key = format!("{}:{}", idp.id, login.assertion_id);
    let fresh = app
        .rt
        .store
        .put_state_once(NS_ASSERTION, &replay_key, b"1", ttl)
        .await
        .map_err(store_err)?;
    if !fresh {
        return Err((idp_id.clone(), SamlError::Replay, xml()));
    }

    if msg.in_response_to.is_none() && idp.idp_initiated_confirm {
        return ask_to_continue(app, &idp, &login, target)
            .await
            .map_err(|e| (idp_id.clone(), e, None));
    }
    finish_sign_in(app, req, &idp, &login, target)
        .await
        .map_err(|e| (idp_id.clone(), e, None))
}

/// Cookie binding an unsolicited sign-in's confirmation page to the browser
/// it was shown in. `SameSite=Strict`: never sent with a cross-site request,
/// so only a POST from our own page carries it.
pub const CONFIRM_COOKIE: &str = "portcullis_confirm";
const NS_CONFIRM: &str = "idpinit";
/// How long a confirmation page stays good.
const CONFIRM_TTL: Duration = Duration::from_secs(120);

/// A verified unsolicited sign-in waiting for the browser to confirm it.
#[derive(Serialize, Deserialize)]
struct PendingConfirm {
    idp: String,
    target: String,
    /// SHA-256 of the confirmation cookie's value.
    binding: String,
    login: Login,
}

/// The "continue as …" page for a verified unsolicited response: the
/// sign-in is kept in the store under a nonce that only this page knows,
/// bound to a SameSite=Strict cookie set with it.
async fn ask_to_continue(
    app: &Snapshot,
    idp: &Idp,
    login: &Login,
    target: String,
) -> Result<LocalResponse, SamlError> {
    let nonce = random_b64(32);
    let secret = random_b64(32);
    let pending = PendingConfirm {
        idp: idp.id.clone(),
        target,
        binding: crate::secret::sha256_hex(secret.as_bytes()),
        login: login.clone(),
    };
    let value = serde_json::to_vec(&pending).map_err(|e| SamlError::Other(e.to_string()))?;
    let key = crate::secret::sha256_hex(nonce.as_bytes());
    match app
        .rt
        .store
        .put_state_once(NS_CONFIRM, &key, &value, CONFIRM_TTL)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(SamlError::Other("confirmation nonce collision".into())),
        Err(e) => return Err(SamlError::Store(e.to_string())),
    }
    tracing::info!(idp = %idp.id, name_id = %login.name_id, "unsolicited sign-in verified; waiting for the browser to confirm");
    let who = login.email.clone().unwrap_or_else(|| login.name_id.clone());
    let action = format!("{}/saml/continue", app.prefix);
    let body = format!(
        "<p>Your identity provider <strong>{}</strong> is signing you in as <strong>{}</strong>.</p>\
<p class=\"muted\">Continue only if you just chose this application in your identity provider's portal.</p>\
<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"nonce\" value=\"{}\">\
<button type=\"submit\">Continue</button></form><p><a href=\"/\">Cancel</a></p>",
        escape(&idp.display_name),
        escape(&who),
        escape(&action),
        escape(&nonce),
    );
    let secure = if app.cfg.is_https() { "; Secure" } else { "" };
    Ok(
        LocalResponse::html(200, pages::page("Continue signing in", &body))
            .with_header(
                http::header::SET_COOKIE,
                format!(
                    "{CONFIRM_COOKIE}={secret}; Path={action}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                    CONFIRM_TTL.as_secs()
                ),
            )
            .with_header(http::header::X_FRAME_OPTIONS, "DENY")
            .with_header(
                http::header::CONTENT_SECURITY_POLICY,
                "frame-ancestors 'none'",
            )
            .with_header(http::header::CACHE_CONTROL, "no-store"),
    )
}

/// `POST /.portcullis/saml/continue`: the browser confirms an unsolicited
/// sign-in. Refused unless the POST is same-origin (Origin or
/// Sec-Fetch-Site, when the browser sends them), carries the page's nonce
/// and the SameSite=Strict cookie set with it; single use.
pub async fn continue_idp_initiated(app: &Snapshot, req: &LocalRequest) -> LocalResponse {
    let refuse = |why: &str| failure(app, None, &SamlError::Unconfirmed(why.to_string()), None);
    let origin = app.cfg.server.public_url.origin();
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    if header("origin").is_some_and(|o| o != origin) {
        return refuse("cross-origin confirmation");
    }
    if header("sec-fetch-site").is_some_and(|s| s != "same-origin") {
        return refuse("cross-site confirmation");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let Some(nonce) = form.iter().find(|(k, _)| k == "nonce").map(|(_, v)| v) else {
        return refuse("no nonce");
    };
    let Some(secret) = cookie_value(req, CONFIRM_COOKIE) else {
        return refuse("confirmation cookie missing (another browser, or expired)");
    };
    let key = crate::secret::sha256_hex(nonce.as_bytes());
    let pending = match app.rt.store.peek_state(NS_CONFIRM, &key).await {
        Ok(Some(raw)) => match serde_json::from_slice::<PendingConfirm>(&raw) {
            Ok(p) => p,
            Err(_) => return refuse("unreadable pending sign-in"),
        },
        Ok(None) => return refuse("unknown or expired confirmation"),
        Err(e) => {
            let reference = pages::reference_id();
            tracing::error!(reference, error = %e, "confirmation could not reach the store");
            return crate::web::unavailable(&req.headers, &reference);
        }
    };
    let have = crate::secret::sha256_hex(secret.as_bytes());
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        have.as_bytes(),
        pending.binding.as_bytes(),
    )) {
        return refuse("confirmation cookie does not match");
    }
    // Single use: of two confirmations, one wins.
    match app.rt.store.take_state(NS_CONFIRM, &key).await {
        Ok(Some(_)) => {}
        Ok(None) => return refuse("already confirmed"),
        Err(e) => {
            let reference = pages::reference_id();
            tracing::error!(reference, error = %e, "confirmation could not reach the store");
            return crate::web::unavailable(&req.headers, &reference);
        }
    }
    let Some(reg) = registry(app) else {
        return refuse("SAML is not configured");
    };
    let Some(idp) = reg.by_id(&pending.idp).cloned() else {
        return refuse("the IdP is no longer configured");
    };
    let clear = format!(
        "{CONFIRM_COOKIE}=; Path={}/saml/continue; Max-Age=0; HttpOnly; SameSite=Strict",
        app.prefix
    );
    match finish_sign_in(app, req, &idp, &pending.login, pending.target).await {
        Ok(r) => r.with_header(http::header::SET_COOKIE, clear),
        Err(SamlError::Store(e)) => {
            let reference = pages::reference_id();
            tracing::error!(reference, detail = %e, "SAML sign-in could not reach the store");
            crate::web::unavailable(&req.headers, &reference)
        }
        Err(e) => failure(app, Some(&idp.id), &e, None),
    }
}

/// The directory user, a new session (a fresh id: never the one the
/// browser came with) and the redirect to where the user was going.
async fn finish_sign_in(
    app: &Snapshot,
    req: &LocalRequest,
    idp: &Idp,
    login: &Login,
    target: String,
) -> Result<LocalResponse, SamlError> {
    let sp_debug = registry(app).is_some_and(|r| r.sp.debug);
    let principal = resolve_principal(app, idp, login).await?;
    let link = crate::session::SsoLink {
        idp: idp.id.clone(),
        name_id: login.name_id.clone(),
        name_id_format: login.name_id_format.clone(),
        session_index: login.session_index.clone(),
        asserted_groups: login.groups.clone(),
    };
    let (id, live) = app
        .rt
        .sessions
        .create_linked(principal, "saml", req.session_id.as_ref(), Some(link))
        .await
        .map_err(|e| SamlError::Store(e.to_string()))?;
    if sp_debug {
        tracing::info!(idp = %idp.id, attributes = ?login.attributes, "SAML debug: accepted assertion attributes");
    }
    tracing::info!(idp = %idp.id, sub = %live.principal().sub, sid = live.key.sid(), "signed in");
    crate::telemetry::SAML_LOGINS
        .with_label_values(&["ok"])
        .inc();
    let clear_login = format!(
        "{LOGIN_COOKIE}=; Path={}/saml/acs; Max-Age=0; HttpOnly; Secure; SameSite=None",
        app.prefix
    );
    let mut resp = LocalResponse::redirect(&target)
        .with_header(
            http::header::SET_COOKIE,
            cookie::set_cookie(&app.rt.sessions.settings(), &id),
        )
        .with_header(http::header::SET_COOKIE, clear_login);
    resp.status = 303;
    Ok(resp)
}

/// Tenant used when an IdP names none.
pub use crate::directory::DEFAULT_TENANT;

fn dir_err(e: crate::directory::DirectoryError) -> SamlError {
    match e {
        crate::directory::DirectoryError::Store(s) => SamlError::Store(s.to_string()),
        other => SamlError::Other(format!("directory: {other}")),
    }
}

fn full_name(login: &Login) -> Option<String> {
    login
        .display_name
        .clone()
        .or_else(|| match (&login.given_name, &login.family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(g), None) => Some(g.clone()),
            (None, Some(f)) => Some(f.clone()),
            (None, None) => None,
        })
}

/// The directory user for a verified login: found by userName (the NameID)
/// or email, created when JIT is on, refreshed when `update_on_login`,
/// refused when deactivated. Groups are the assertion's plus the
/// directory's; `sub` is the directory id, stable across IdP attribute changes.
///
/// The IdP must own the user (`directory::trust`: its JIT user, a user of a
/// SCIM client tied to it, or an unowned user it may claim) and may vouch
/// only for identifiers in its domains: the NameID, the email attribute,
/// and the matched user's userName and primary email. Look-alike
/// identifiers (`rules::check_identifier`) are refused before any lookup.
async fn resolve_principal(
    app: &Snapshot,
    idp: &Idp,
    login: &Login,
) -> Result<Principal, SamlError> {
    use crate::directory::trust::Verdict;
    use crate::directory::{rules, DirectoryError, MultiValue, Name, ProvisionedVia, User};
    let asserted: Vec<&str> = std::iter::once(login.name_id.as_str())
        .chain(login.email.as_deref())
        .collect();
    for v in &asserted {
        rules::check_identifier("asserted identifier", v).map_err(|e| {
            SamlError::Identifier(match e {
                DirectoryError::Invalid(m) => m,
                other => other.to_string(),
            })
        })?;
    }
    let dir = &app.rt.store;
    let tenant = idp
        .tenant
        .clone()
        .unwrap_or_else(|| DEFAULT_TENANT.to_string());
    let user_name = login.name_id.clone();
    let mut user = dir
        .user_by_user_name(&tenant, &user_name)
        .await
        .map_err(dir_err)?;
    if user.is_none() {
        if let Some(email) = &login.email {
            user = dir
                .users_by_email(&tenant, email)
                .await
                .map_err(dir_err)?
                .into_iter()
                .find(|u| !u.deleted);
        }
    }
    // Ownership first: a user that is not this IdP's is refused as such.
    let verdict = user.as_ref().map(|u| app.trust.sign_in(&idp.id, u));
    if let (Some(u), Some(v)) = (&user, &verdict) {
        refuse_unowned(u, v)?;
    }
    // An IdP vouches only for identifiers in its domains (or, without
    // domains, for none routed to another IdP): every identifier used to
    // match, and those the principal will carry.
    let mut vouched = asserted;
    if let Some(u) = &user {
        vouched.push(&u.user_name);
        vouched.extend(u.primary_email());
    }
    for v in vouched {
        app.trust
            .may_vouch_for(&idp.id, v)
            .map_err(SamlError::ForeignEmail)?;
    }
    let wanted_name = Name {
        formatted: full_name(login),
        given_name: login.given_name.clone(),
        family_name: login.family_name.clone(),
        ..Name::default()
    };
    let wanted_emails: Vec<MultiValue> = login
        .email
        .iter()
        .map(|e| MultiValue {
            value: e.clone(),
            kind: Some("work".into()),
            primary: Some(true),
            ..MultiValue::default()
        })
        .collect();
    let user = match user {
        Some(u) if !u.active => return Err(SamlError::Deactivated(u.user_name)),
        Some(mut u) => {
            // Recorded so the user is this IdP's from now on; an owned
            // user's owner never changes at sign-in.
            let claim = verdict == Some(Verdict::Claim);
            let stale = u.name.given_name != wanted_name.given_name
                || u.name.family_name != wanted_name.family_name
                || (login.display_name.is_some() && u.display_name != login.display_name)
                || (login.email.is_some() && u.primary_email() != login.email.as_deref());
            let refresh = idp.jit.update_on_login && stale;
            if refresh || claim {
                let before = u.clone();
                let version = u.meta.version;
                if refresh {
                    u.name.given_name = wanted_name.given_name.clone();
                    u.name.family_name = wanted_name.family_name.clone();
                    u.name.formatted = wanted_name.formatted.clone();
                    if login.display_name.is_some() {
                        u.display_name = login.display_name.clone();
                    }
                    if let Some(e) = &login.email {
                        if u.primary_email() != Some(e.as_str()) {
                            u.emails.retain(|m| !m.value.eq_ignore_ascii_case(e));
                            for m in &mut u.emails {
                                if m.primary.is_some() {
                                    m.primary = Some(false);
                                }
                            }
                            u.emails.insert(0, wanted_emails[0].clone());
                        }
                    }
                }
                if claim {
                    u.idp = Some(idp.id.clone());
                }
                u.name_id.get_or_insert_with(|| login.name_id.clone());
                let emit = jit_outbox(app, Some(&before), &u, &idp.id);
                match dir
                    .replace_user_emit(&tenant, u.clone(), Some(version), emit)
                    .await
                {
                    Ok(updated) => updated,
                    // Changed concurrently (by SCIM, which may have adopted
                    // it away, or claimed by another IdP): sign in with what
                    // is stored, if it is still this IdP's.
                    Err(DirectoryError::VersionMismatch { .. }) => {
                        stored_if_owned(app, &tenant, &idp.id, &u.id).await?
                    }
                    Err(e) => return Err(dir_err(e)),
                }
            } else {
                u
            }
        }
        None if !idp.jit.enabled => return Err(SamlError::NotProvisioned(user_name)),
        // Deleted by SCIM: JIT must not bring the user back.
        None if crate::provisioning::is_deprovisioned(&app.provisioning(), &tenant, &user_name)
            .await
            .map_err(SamlError::Store)? =>
        {
            return Err(SamlError::Deactivated(user_name))
        }
        None => {
            let new = User {
                name: wanted_name,
                display_name: login.display_name.clone().or_else(|| full_name(login)),
                emails: wanted_emails,
                role: idp.jit.default_role.clone(),
                provisioned_via: ProvisionedVia::SamlJit,
                idp: Some(idp.id.clone()),
                name_id: Some(login.name_id.clone()),
                ..User::new(user_name.clone())
            };
            let emit = jit_outbox(
                app,
                None,
                &crate::directory::User {
                    tenant: tenant.clone(),
                    ..new.clone()
                },
                &idp.id,
            );
            match dir.create_user_emit(&tenant, new, emit).await {
                Ok(u) => {
                    tracing::info!(idp = %idp.id, %tenant, user = %u.id, user_name = %u.user_name, "JIT-provisioned user");
                    u
                }
                // Created concurrently by another sign-in or by SCIM: use
                // that one, if it is this IdP's.
                Err(DirectoryError::Conflict { .. }) => {
                    let u = dir
                        .user_by_user_name(&tenant, &user_name)
                        .await
                        .map_err(dir_err)?
                        .ok_or_else(|| SamlError::Other("user vanished after a conflict".into()))?;
                    stored_if_owned(app, &tenant, &idp.id, &u.id).await?
                }
                Err(e) => return Err(dir_err(e)),
            }
        }
    };
    let dir_groups: Vec<String> = dir
        .groups_of_user(&tenant, &user.id)
        .await
        .map_err(dir_err)?
        .into_iter()
        .map(|g| g.display_name)
        .collect();
    let src = crate::provisioning::Sources {
        directory_groups: &dir_groups,
        asserted_groups: &login.groups,
        idp: Some(idp.id.clone()),
        fallback_email: login.email.clone(),
        default_role: &idp.jit.default_role,
    };
    Ok(crate::provisioning::compose(
        &app.provisioning(),
        &tenant,
        &user,
        src,
    ))
}

/// The refusal for a user the IdP does not own (`Owned` and `Claim` pass).
fn refuse_unowned(
    user: &crate::directory::User,
    verdict: &crate::directory::trust::Verdict,
) -> Result<(), SamlError> {
    use crate::directory::trust::Verdict;
    match verdict {
        Verdict::Owned | Verdict::Claim => Ok(()),
        // A user that signed in through another IdP is not this IdP's to assert.
        Verdict::OtherIdp(other) => Err(SamlError::WrongIdp(user.user_name.clone(), other.clone())),
        Verdict::NotOwned(why) => Err(SamlError::NotOwned(user.user_name.clone(), why.clone())),
    }
}

/// The stored user `id`, re-read after a concurrent write, if this IdP owns
/// it now and it is active; never claimed on this path (a user that is
/// unowned again is refused once: the next sign-in decides afresh).
async fn stored_if_owned(
    app: &Snapshot,
    tenant: &str,
    idp: &str,
    id: &str,
) -> Result<crate::directory::User, SamlError> {
    use crate::directory::trust::Verdict;
    let u = app
        .rt
        .store
        .get_user(tenant, id)
        .await
        .map_err(dir_err)?
        .filter(|u| !u.deleted)
        .ok_or_else(|| SamlError::Other("user vanished during sign-in".into()))?;
    match app.trust.sign_in(idp, &u) {
        Verdict::Owned => {}
        Verdict::Claim => {
            return Err(SamlError::Other(
                "user changed during sign-in; try again".into(),
            ))
        }
        v => refuse_unowned(&u, &v)?,
    }
    if !u.active {
        return Err(SamlError::Deactivated(u.user_name));
    }
    Ok(u)
}

/// Where `/.portcullis/logout` sends the browser after ending a SAML
/// session: the IdP's SLO endpoint with a LogoutRequest, when it has one.
pub fn idp_logout_redirect(app: &Snapshot, link: &crate::session::SsoLink) -> Option<String> {
    let reg = registry(app)?;
    let idp = reg.by_id(&link.idp)?;
    match super::slo::logout_request_url(&reg.sp, idp, link) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(idp = %idp.id, error = %e, "cannot build the LogoutRequest; signing out locally only");
            None
        }
    }
}

/// `GET|POST /.portcullis/saml/slo`: an IdP's LogoutRequest (end that
/// user's sessions here, answer a LogoutResponse) or its LogoutResponse to ours.
pub async fn slo(app: &Snapshot, req: &LocalRequest) -> LocalResponse {
    let Some(reg) = registry(app) else {
        return LocalResponse::json(404, &serde_json::json!({"error": "SAML is not configured"}));
    };
    let reg: &Registry = &reg;
    let post = req.method == http::Method::POST;
    let params: Vec<(String, String)> = if post {
        url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect()
    } else {
        url::form_urlencoded::parse(req.query.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect()
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let signed_out = || {
        LocalResponse::html(
            200,
            pages::signed_out_page(&format!("{}/login", app.prefix)),
        )
        .with_header(
            http::header::SET_COOKIE,
            cookie::clear_cookie(&app.rt.sessions.settings()),
        )
    };
    let (message, is_response) = match (get("SAMLRequest"), get("SAMLResponse")) {
        (Some(m), None) => (m, false),
        (None, Some(m)) => (m, true),
        _ => {
            return failure(
                app,
                None,
                &SamlError::Malformed("expected exactly one of SAMLRequest or SAMLResponse".into()),
                None,
            )
        }
    };
    if is_response {
        return logout_response(app, reg, req, post, &message).await;
    }
    let (idp, xml, url) = match decode_slo(reg, req, post, &message) {
        Ok(v) => v,
        Err((idp, e, xml)) => return failure(app, idp.as_deref(), &e, xml.as_deref()),
    };
    // Signature work off the async workers, like the ACS's.
    let (vidp, vxml, vurl) = (idp.clone(), xml.clone(), url.clone());
    let verified = tokio::task::spawn_blocking(move || match &vurl {
        None => super::slo::verify_post(&vidp, &vxml),
        Some(u) => super::slo::verify_redirect(&vidp, u, &vxml),
    })
    .await
    .unwrap_or_else(|e| Err(SamlError::Other(format!("verification task: {e}"))));
    let logout = match verified {
        Ok(l) => l,
        Err(e) => return failure(app, Some(&idp.id), &e, Some(&xml)),
    };
    if let Err(e) = logout.check_fresh(&reg.sp, chrono::Utc::now()) {
        return failure(app, Some(&idp.id), &e, Some(&xml));
    }
    match app
        .rt
        .store
        .put_state_once(
            "logout",
            &format!("{}:{}", idp.id, logout.id),
            b"1",
            std::time::Duration::from_secs(3600),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return failure(app, Some(&idp.id), &SamlError::Replay, Some(&xml)),
        Err(e) => {
            let reference = pages::reference_id();
            tracing::error!(reference, error = %e, "IdP logout could not reach the store");
            return crate::web::unavailable(&req.headers, &reference);
        }
    }
    let revoked = match end_idp_sessions(app, &idp, &logout).await {
        Ok(n) => n,
        Err(e) => {
            let reference = pages::reference_id();
            tracing::error!(reference, error = %e, "IdP logout could not reach the store");
            return crate::web::unavailable(&req.headers, &reference);
        }
    };
    tracing::info!(idp = %idp.id, name_id = %logout.name_id, revoked, "IdP-initiated logout");
    match super::slo::logout_response_url(&reg.sp, &idp, &logout.id, get("RelayState").as_deref()) {
        Ok(Some(url)) => LocalResponse::redirect(&url).with_header(
            http::header::SET_COOKIE,
            cookie::clear_cookie(&app.rt.sessions.settings()),
        ),
        Ok(None) => signed_out(),
        Err(e) => failure(app, Some(&idp.id), &e, None),
    }
}

type SloMessage = (Arc<Idp>, String, Option<url::Url>);

/// Decodes an SLO message on either binding and finds the IdP it claims to
/// come from (its keys verify it next); `url` is the full request URL on
/// the redirect binding, whose signature covers the query string.
fn decode_slo(
    reg: &Registry,
    req: &LocalRequest,
    post: bool,
    message: &str,
) -> Result<SloMessage, AcsError> {
    let decoded = if post {
        super::slo::decode_post(message)
    } else {
        super::slo::inflate(message)
    };
    let xml = decoded.map_err(|e| (None, e, None))?;
    let issuer = super::slo::issuer_of(&xml).map_err(|e| (None, e, Some(xml.clone())))?;
    let idp = reg
        .by_entity_id(&issuer)
        .cloned()
        .ok_or_else(|| (None, SamlError::UnknownIssuer(issuer), Some(xml.clone())))?;
    let url = if post {
        None
    } else {
        let u = url::Url::parse(&format!(
            "http://gateway.invalid{}?{}",
            req.path,
            req.query.as_deref().unwrap_or_default()
        ))
        .map_err(|e| {
            (
                Some(idp.id.clone()),
                SamlError::Malformed(e.to_string()),
                None,
            )
        })?;
        Some(u)
    };
    Ok((idp, xml, url))
}

/// The IdP confirms our LogoutRequest: the session here ended before the
/// browser was sent there, so a LogoutResponse never ends a live session
/// (however well signed: a captured one would otherwise sign out whoever
/// follows a link to it). With no live session the browser lands on the
/// signed-out page and its dead cookie is cleared; the message is still
/// verified, for the log.
async fn logout_response(
    app: &Snapshot,
    reg: &Registry,
    req: &LocalRequest,
    post: bool,
    message: &str,
) -> LocalResponse {
    if req.session.is_some() {
        let idp = decode_slo(reg, req, post, message)
            .ok()
            .map(|(idp, ..)| idp.id.clone());
        return failure(
            app,
            idp.as_deref(),
            &SamlError::UnexpectedLogoutResponse,
            None,
        );
    }
    let verified = match decode_slo(reg, req, post, message) {
        Ok((idp, xml, url)) => {
            let sp_now = chrono::Utc::now();
            let reg = registry(app);
            tokio::task::spawn_blocking(move || {
                let reg = reg.ok_or(SamlError::Other("SAML registry missing".into()))?;
                super::slo::verify_logout_response(&idp, &reg.sp, url.as_ref(), &xml, sp_now)
                    .map(|ack| (idp.id.clone(), ack))
            })
            .await
            .unwrap_or_else(|e| Err(SamlError::Other(format!("verification task: {e}"))))
        }
        Err((_, e, _)) => Err(e),
    };
    match verified {
        Ok((idp, ack)) => {
            tracing::info!(%idp, in_response_to = ?ack.in_response_to, success = ack.success, "IdP confirmed the logout")
        }
        Err(e) => {
            tracing::info!(reason = e.reason(), detail = %e, "unverified LogoutResponse with no live session; nothing to end")
        }
    }
    LocalResponse::html(
        200,
        pages::signed_out_page(&format!("{}/login", app.prefix)),
    )
    .with_header(
        http::header::SET_COOKIE,
        cookie::clear_cookie(&app.rt.sessions.settings()),
    )
}

/// Revokes the sessions an IdP LogoutRequest names (all of the user's
/// sessions from that IdP, or only those with the given SessionIndex).
async fn end_idp_sessions(
    app: &Snapshot,
    idp: &Idp,
    logout: &super::slo::IdpLogout,
) -> Result<usize, String> {
    let tenant = idp
        .tenant
        .clone()
        .unwrap_or_else(|| DEFAULT_TENANT.to_string());
    // The user may have been matched by userName (the NameID) or by email
    // at sign-in; the session's own link then says whether it is this IdP
    // session.
    let mut candidates: Vec<String> = Vec::new();
    if let Some(u) = app
        .rt
        .store
        .user_by_user_name(&tenant, &logout.name_id)
        .await
        .map_err(|e| e.to_string())?
    {
        candidates.push(u.id);
    }
    if logout.name_id.contains('@') {
        for u in app
            .rt
            .store
            .users_by_email(&tenant, &logout.name_id)
            .await
            .map_err(|e| e.to_string())?
        {
            if !candidates.contains(&u.id) {
                candidates.push(u.id);
            }
        }
    }
    let mut sessions = Vec::new();
    for id in &candidates {
        sessions.extend(
            app.rt
                .sessions
                .list_user(id)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut n = 0;
    for (key, rec) in sessions {
        let Some(link) = &rec.sso else { continue };
        if link.name_id != logout.name_id {
            continue;
        }
        let index_matches = logout.session_indexes.is_empty()
            || link
                .session_index
                .as_ref()
                .is_some_and(|i| logout.session_indexes.contains(i));
        if link.idp == idp.id && index_matches {
            app.rt
                .sessions
                .revoke(&key)
                .await
                .map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    Ok(n)
}

/// `GET /.portcullis/saml/metadata`
pub fn metadata(app: &Snapshot) -> LocalResponse {
    match registry(app) {
        Some(reg) => LocalResponse::new(
            200,
            "application/samlmetadata+xml",
            super::metadata::sp_metadata(&reg.sp),
        ),
        None => LocalResponse::json(404, &serde_json::json!({"error": "SAML is not configured"})),
    }
}

/// Outbox entries for a JIT write (never waits for sync targets: a sign-in
/// is not held hostage by the app's webhook endpoint).
fn jit_outbox(
    app: &Snapshot,
    before: Option<&crate::directory::User>,
    after: &crate::directory::User,
    idp: &str,
) -> crate::webhook::outbox::Emit {
    let Some(hooks) = &app.webhooks else {
        return crate::webhook::outbox::Emit::none();
    };
    let events =
        crate::webhook::user_event(before, after, crate::webhook::event::Source::SamlJit, idp);
    hooks.plan(events.into_iter().collect())
}
