//! The pingora `ProxyHttp` implementation: a thin adapter that reads the
//! request, asks the cores what to do, and writes or forwards. The phases in
//! order: `request_filter` (normalize, session, local endpoints, policy),
//! `upstream_peer`, `upstream_request_filter` (strip spoofable headers, add
//! identity and X-Forwarded-*), `fail_to_proxy` (branded 502/504).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{COOKIE, HOST};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use super::local::{self, LocalRequest, LocalResponse};
use super::{Gateway, Snapshot};
use crate::identity::Minted;
use crate::policy::{normalize_path, Decision, Policy};
use crate::session::{cookie, now_ms, LiveSession};
use crate::telemetry::{self, access, Outcome};
use crate::web::pages;

pub struct Proxy {
    gateway: Arc<Gateway>,
}

impl Proxy {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

/// Per-request state.
pub struct Ctx {
    /// The configuration snapshot this request is served with, from the
    /// first phase to the last (a reload meanwhile does not split it).
    app: Arc<Snapshot>,
    started: Instant,
    session: Option<Arc<LiveSession>>,
    /// Normalized path + query when it differs from what the client sent.
    rewrite: Option<String>,
    tls: bool,
    client_ip: Option<IpAddr>,
    /// `client_ip` as text, for X-Forwarded-For and the access log.
    client_text: Option<HeaderValue>,
    outcome: Outcome,
}

/// The client address as a header value. Consecutive requests on a worker
/// mostly come from one address (keep-alive, or the one load balancer in
/// front), so the last one is kept per thread: formatting an address costs
/// ~1k instructions and an allocation, the cached value a reference count.
fn client_text(ip: IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((cached, v)) if *cached == ip => v.clone(),
            _ => {
                let v = HeaderValue::from_str(&ip.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static(""));
                *last = Some((ip, v.clone()));
                v
            }
        }
    })
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static SPOOFABLE_FORWARDING: [HeaderName; 4] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// A forwarding header only a trusted hop may set. (X-Forwarded-For is
/// not here: it is always rewritten, from this hop's view when untrusted.)
/// CGI-style stacks read `_` as `-`, so `X_Forwarded_Proto` counts too.
fn is_forwarding(name: &HeaderName) -> bool {
    let n = name.as_str();
    [&X_FORWARDED_PROTO, &X_FORWARDED_HOST]
        .into_iter()
        .chain(&SPOOFABLE_FORWARDING)
        .any(|f| {
            let f = f.as_str();
            n.len() == f.len()
                && n.bytes()
                    .zip(f.bytes())
                    .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
        })
}

/// Writes a complete local response.
async fn write_local(session: &mut Session, resp: LocalResponse) -> Result<bool> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut h = ResponseHeader::build(resp.status, Some(resp.headers.len() + 1))?;
    for (name, value) in resp.headers {
        h.append_header(name, value)?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, resp.body.len().to_string())?;
    let no_body = head_only || resp.body.is_empty();
    session.write_response_header(Box::new(h), no_body).await?;
    if !no_body {
        session.write_response_body(Some(resp.body), true).await?;
    }
    Ok(true)
}

/// Reads the request body up to `limit` bytes; `None` if it is larger, an
/// error if the client's framing is broken (bad chunk, truncated body).
async fn read_body_capped(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// The identity headers for a session, minted at most once per JWT
/// lifetime and configuration: a token minted under another snapshot
/// (another key, audience or header set) is minted again.
fn identity_headers(app: &Snapshot, live: &LiveSession) -> Result<Arc<Minted>> {
    let now = now_ms();
    let mut slot = live.minted.lock();
    if let Some((generation, m)) = slot.as_ref() {
        if *generation == app.generation && now < m.refresh_after_ms {
            return Ok(m.clone());
        }
    }
    let minted = app
        .minter
        .mint(live.principal(), live.key.sid(), now)
        .map_err(|e| Error::because(InternalError, "minting identity JWT", e))?;
    let minted = Arc::new(minted);
    *slot = Some((app.generation, minted.clone()));
    telemetry::JWT_MINTED.inc();
    Ok(minted)
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            app: self.gateway.snapshot(),
            started: Instant::now(),
            session: None,
            rewrite: None,
            tls: false,
            client_ip: None,
            client_text: None,
            outcome: Outcome::Proxied,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let app = ctx.app.clone();
        let app = &*app;
        ctx.tls = session
            .digest()
            .map(|d| d.ssl_digest.is_some())
            .unwrap_or(false);
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client_text = ctx.client_ip.map(client_text);

        let req = session.req_header();
        let method = req.method.clone();
        let raw_path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);

        let norm = match normalize_path(&raw_path) {
            Ok(n) => n,
            Err(e) => {
                let reference = pages::reference_id();
                tracing::info!(reference, path = %raw_path, reason = %e, "refused unnormalizable path");
                ctx.outcome = Outcome::BadPath;
                let reason = format!("The request path is not acceptable: {e}.");
                let resp = if app.scim.as_ref().is_some_and(|s| s.owns(&raw_path)) {
                    crate::scim::server::refused(400, &reason, &reference)
                } else {
                    local::bad_request(&req.headers, &reason, &reference)
                };
                return write_local(session, resp).await;
            }
        };

        let settings = app.rt.sessions.settings();
        let sid = cookie::find_session_id(
            req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes()),
            &settings.cookie_name,
        );
        let live = match &sid {
            Some(id) => match app.rt.sessions.lookup(id).await {
                Ok(s) => s,
                Err(e) => {
                    let reference = pages::reference_id();
                    tracing::error!(reference, error = %e, "session store unavailable; refusing request");
                    ctx.outcome = Outcome::StoreUnavailable;
                    let resp = local::unavailable(&session.req_header().headers, &reference);
                    return write_local(session, resp).await;
                }
            },
            None => None,
        };

        if app.is_local(&norm.matched) {
            ctx.outcome = Outcome::Local;
            let has_body = !matches!(
                method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            );
            let body = if has_body {
                match read_body_capped(session, app.cfg.server.max_body_bytes).await {
                    Ok(Some(b)) => b,
                    Err(e) => {
                        // Framing the client broke: answer (the connection
                        // is not reused) rather than let pingora send a 500.
                        let reference = pages::reference_id();
                        tracing::info!(reference, path = %norm.matched, error = %e, "refused unreadable request body");
                        ctx.outcome = Outcome::BadBody;
                        let reason = "The request body could not be read (malformed or truncated).";
                        let resp = if app.scim.as_ref().is_some_and(|s| s.owns(&norm.matched)) {
                            crate::scim::server::refused(400, reason, &reference)
                        } else {
                            local::bad_request(&session.req_header().headers, reason, &reference)
                        };
                        session.set_keepalive(None);
                        return write_local(session, resp).await;
                    }
                    Ok(None) => {
                        let limit = app.cfg.server.max_body_bytes;
                        let resp = if app.scim.as_ref().is_some_and(|s| s.owns(&norm.matched)) {
                            crate::scim::server::too_large(limit)
                        } else {
                            local::too_large(limit)
                        };
                        return write_local(session, resp).await;
                    }
                }
            } else {
                Bytes::new()
            };
            let req = LocalRequest {
                method,
                path: norm.matched,
                query,
                headers: session.req_header().headers.clone(),
                body,
                session_id: sid,
                session: live,
            };
            // Boxed: the local handlers (SCIM, SAML, admin pages) make a
            // future of tens of KB, which would otherwise be part of every
            // proxied request's future and copied with it (callgrind: ~13k
            // instructions of memcpy per proxied request).
            let resp = Box::pin(local::handle(app, req)).await;
            return write_local(session, resp).await;
        }

        let access = app.policy.access(&method, &norm.matched);
        let target = match &query {
            Some(q) => format!("{}?{q}", norm.forward),
            None => norm.forward.clone(),
        };
        match Policy::decide(access, live.as_ref().map(|s| s.principal())) {
            Decision::Allow => {
                if norm.forward != raw_path {
                    ctx.rewrite = Some(target);
                }
                ctx.session = live;
                Ok(false)
            }
            // Only "authenticated" paths open up: group rules still need a sign-in.
            Decision::NeedLogin
                if app.sso_optional
                    && live.is_none()
                    && *access == crate::policy::Access::Authenticated =>
            {
                // SSO is optional: the app's own login keeps working, without identity.
                if norm.forward != raw_path {
                    ctx.rewrite = Some(target);
                }
                ctx.outcome = Outcome::Anonymous;
                Ok(false)
            }
            Decision::NeedLogin => {
                ctx.outcome = Outcome::Unauthenticated;
                let resp = local::unauthenticated(
                    &app.prefix,
                    &session.req_header().headers,
                    &method,
                    &target,
                );
                write_local(session, resp).await
            }
            Decision::Forbidden => {
                let reference = pages::reference_id();
                let sub = live
                    .as_ref()
                    .map(|s| s.principal().sub.clone())
                    .unwrap_or_default();
                tracing::info!(reference, %sub, path = %norm.matched, "access denied by policy");
                ctx.outcome = Outcome::Forbidden;
                let resp = local::forbidden(&session.req_header().headers, &reference);
                write_local(session, resp).await
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let up = &ctx.app.rt.upstream;
        let cfg = &ctx.app.cfg.upstream;
        let addr = up
            .resolve()
            .await
            .map_err(|e| Error::because(ConnectNoRoute, "resolving upstream", e))?;
        let mut peer = HttpPeer::new(addr, up.tls, up.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(cfg.connect_timeout.get());
        o.total_connection_timeout = Some(cfg.connect_timeout.get() * 2);
        o.read_timeout = Some(cfg.read_timeout.get());
        o.write_timeout = Some(cfg.write_timeout.get());
        o.idle_timeout = Some(cfg.idle_timeout.get());
        o.verify_cert = cfg.tls_verify;
        o.verify_hostname = cfg.tls_verify;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let app = ctx.app.clone();
        let app = &*app;
        // 1. Nothing the client sent may pose as identity, nor (unless the
        // hop before is trusted) as forwarding information. One pass over
        // the headers; removals only for what is there.
        let trust = app.cfg.server.trust_forwarded_headers;
        let spoofed: Vec<HeaderName> = req
            .headers
            .keys()
            .filter(|n| app.must_strip(n) || (!trust && is_forwarding(n)))
            .cloned()
            .collect();
        for name in &spoofed {
            req.remove_header(name);
        }
        // 2. The session cookie is a credential for the gateway, not the app.
        let cookies: Vec<u8> = req
            .headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if !cookies.is_empty() {
            req.remove_header(&COOKIE);
            if let Some(rest) =
                cookie::strip_session_cookie(&cookies, &app.rt.sessions.settings().cookie_name)
            {
                req.insert_header(COOKIE, rest)?;
            }
        }
        // 3. Forwarding headers, from what this hop saw. Names go in as
        // prepared `Bytes` (pingora would otherwise title-case a copy of
        // each) and values are shared, not copied, where they can be.
        let client = ctx
            .client_text
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static(""));
        let prev = req
            .headers
            .get(&X_FORWARDED_FOR)
            .filter(|p| trust && !p.is_empty());
        let xff = match prev {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + client.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(client.as_bytes());
                HeaderValue::from_bytes(&v).unwrap_or(client)
            }
            None => client,
        };
        let host = match req.headers.get(HOST) {
            Some(h) => Some(h.clone()),
            None => session
                .req_header()
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        req.insert_header(Bytes::from_static(b"X-Forwarded-For"), xff)?;
        if req.headers.get(&X_FORWARDED_PROTO).is_none() {
            let proto = if ctx.tls { "https" } else { "http" };
            req.insert_header(
                Bytes::from_static(b"X-Forwarded-Proto"),
                HeaderValue::from_static(proto),
            )?;
        }
        if req.headers.get(&X_FORWARDED_HOST).is_none() {
            if let Some(h) = host {
                req.insert_header(Bytes::from_static(b"X-Forwarded-Host"), h)?;
            }
        }
        if !app.cfg.upstream.preserve_host {
            req.insert_header(HOST, app.rt.upstream.authority_value.clone())?;
        }
        // 4. The path the policy judged is the path the app gets.
        if let Some(target) = ctx.rewrite.take() {
            let uri = http::Uri::builder()
                .path_and_query(target)
                .build()
                .map_err(|e| Error::because(InternalError, "rewriting path", e))?;
            req.set_uri(uri);
        }
        // 5. Identity.
        if let Some(live) = &ctx.session {
            let minted = identity_headers(app, live)?;
            for (name, value) in &minted.headers {
                req.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
        use pingora::ErrorType::*;
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                if e.esource() == &pingora::ErrorSource::Upstream {
                    504
                } else {
                    0
                }
            }
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => 502,
                pingora::ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if code > 0 {
            let reference = pages::reference_id();
            tracing::warn!(reference, status = code, error = %e, "request failed");
            ctx.outcome = Outcome::UpstreamError;
            let (title, msg) = match code {
                502 => ("Application unavailable", "The application behind this gateway is not answering. Please try again shortly."),
                504 => ("Application timed out", "The application behind this gateway took too long to answer."),
                400 => ("Bad request", "The request could not be processed."),
                _ => ("Something went wrong", "The gateway could not complete this request."),
            };
            let body = Bytes::from(pages::error_page(title, msg, &reference));
            if let Ok(mut h) = ResponseHeader::build(code, Some(4)) {
                let _ = h.insert_header(http::header::CONTENT_TYPE, "text/html; charset=utf-8");
                let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
                let _ = h.insert_header(http::header::CACHE_CONTROL, "no-store");
                if let Err(err) = session.write_error_response(h, body).await {
                    tracing::debug!(error = %err, "could not send error page");
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&pingora::Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        telemetry::observe_request(ctx.outcome, status, elapsed);
        if access::enabled() {
            let req = session.req_header();
            access::log(&access::Record {
                method: req.method.as_str(),
                path: req.uri.path(),
                status,
                outcome: ctx.outcome,
                sub: ctx.session.as_ref().map(|s| s.principal().sub.as_str()),
                client: ctx.client_text.as_ref().and_then(|v| v.to_str().ok()),
                elapsed,
            });
        }
    }
}
