//! A stand-in "legacy app" for the demo and for trying Portcullis locally.
//!
//! It knows nothing about SAML or sessions: it reads the
//! `X-Portcullis-Jwt-Assertion` header, verifies it against the gateway's
//! JWKS (fetched once, refetched when an unknown `kid` shows up), and shows
//! who is signed in. This is all an app behind Portcullis has to do.
//!
//! Environment: `APP_LISTEN` (default 127.0.0.1:3000), `GATEWAY_URL`
//! (default http://127.0.0.1:8080), `APP_AUDIENCE` (default demo-app).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

struct AppState {
    gateway: String,
    audience: String,
    jwks: RwLock<JwkSet>,
    http: reqwest::Client,
}

impl AppState {
    async fn refresh_jwks(&self) -> Result<(), String> {
        let url = format!("{}/.portcullis/jwks.json", self.gateway);
        let set: JwkSet = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("parsing {url}: {e}"))?;
        *self.jwks.write().await = set;
        Ok(())
    }

    /// Verifies the identity JWT; returns its claims.
    async fn verify(&self, token: &str) -> Result<Value, String> {
        let header = decode_header(token).map_err(|e| e.to_string())?;
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA
        ) {
            return Err(format!("unexpected algorithm {:?}", header.alg));
        }
        let kid = header.kid.ok_or("token has no kid")?;
        if self.jwks.read().await.find(&kid).is_none() {
            self.refresh_jwks().await?;
        }
        let jwks = self.jwks.read().await;
        let jwk = jwks.find(&kid).ok_or("unknown signing key")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.gateway]);
        Ok(decode::<Value>(token, &key, &v)
            .map_err(|e| e.to_string())?
            .claims)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(st): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let token = headers
        .get("x-portcullis-jwt-assertion")
        .and_then(|v| v.to_str().ok());
    let (status, body) = match token {
        None => (
            StatusCode::OK,
            "<p>No identity header: this page is public, or you reached the app without the gateway.</p>".to_string(),
        ),
        Some(t) => match st.verify(t).await {
            Ok(claims) => {
                let name = claims["name"].as_str().or(claims["sub"].as_str()).unwrap_or("?");
                let pretty = serde_json::to_string_pretty(&claims).unwrap_or_default();
                (
                    StatusCode::OK,
                    format!(
                        "<p>Signed in as <strong>{}</strong>. The gateway's JWT verified against its JWKS.</p>\
                         <h2>Claims</h2><pre>{}</pre><p><a href=\"/.portcullis/logout\">Sign out</a></p>",
                        esc(name),
                        esc(&pretty)
                    ),
                )
            }
            Err(e) => (StatusCode::UNAUTHORIZED, format!("<p>Identity header rejected: {}</p>", esc(&e))),
        },
    };
    let plain: Vec<String> = headers
        .iter()
        .filter(|(n, _)| {
            n.as_str().starts_with("x-portcullis-") && n.as_str() != "x-portcullis-jwt-assertion"
        })
        .map(|(n, v)| format!("{}: {}", n, esc(v.to_str().unwrap_or("?"))))
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Legacy app</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}}\
         pre{{background:#f4f5f7;padding:1rem;overflow:auto}}</style></head><body><h1>Legacy app</h1>{body}\
         <h2>Plain identity headers</h2><pre>{}</pre></body></html>",
        if plain.is_empty() { "(none)".to_string() } else { plain.join("\n") }
    );
    (status, Html(html))
}

#[tokio::main]
async fn main() {
    let listen = std::env::var("APP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let state = Arc::new(AppState {
        gateway: std::env::var("GATEWAY_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
        audience: std::env::var("APP_AUDIENCE").unwrap_or_else(|_| "demo-app".into()),
        jwks: RwLock::new(JwkSet { keys: vec![] }),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new()
        .route("/", get(page))
        // Cheap endpoint for load tests: measures the proxy, not this page.
        .route("/healthz", get(|| async { "ok" }))
        .fallback(get(page))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind APP_LISTEN");
    eprintln!("example app listening on http://{listen}");
    axum::serve(listener, app).await.expect("serve");
}
