//! `identity` owns what the app is told about the signed-in user: the signed
//! JWT (claims, keys, JWKS) and the optional plain headers. Minting happens
//! once per session and is reused until 30 s before expiry, so the hot path
//! only copies prepared header values. It knows nothing about sessions'
//! storage or about pingora.

pub mod keys;
mod principal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{encode, Header};
use serde::Serialize;

pub use principal::Principal;

use crate::config::{Config, Problem};
use keys::{jwt_algorithm, Keyset};

/// A JWT is re-minted when it has less than this left.
pub const REMINT_BEFORE: Duration = Duration::from_secs(30);

/// The claims of `X-Portcullis-Jwt-Assertion`.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub sid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// Header values prepared for one session, valid until `refresh_after_ms`.
pub struct Minted {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub refresh_after_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("signing the identity JWT failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("identity value cannot be sent as a header: {0}")]
    Header(String),
}

/// Plain header names, present only when `[identity.headers] enabled`.
struct PlainHeaders {
    user: HeaderName,
    email: HeaderName,
    groups: HeaderName,
    name: HeaderName,
}

/// Mints identity headers. Built once from config.
pub struct Minter {
    keys: Arc<Keyset>,
    header: Header,
    jwt_header: HeaderName,
    plain: Option<PlainHeaders>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl Minter {
    pub fn new(cfg: &Config, keys: Arc<Keyset>) -> Result<Self, MintError> {
        let name = |s: &str| {
            HeaderName::from_bytes(s.as_bytes()).map_err(|e| MintError::Header(e.to_string()))
        };
        let id = &cfg.identity;
        let plain = if id.headers.enabled {
            Some(PlainHeaders {
                user: name(&id.headers.user)?,
                email: name(&id.headers.email)?,
                groups: name(&id.headers.groups)?,
                name: name(&id.headers.name)?,
            })
        } else {
            None
        };
        let origin = cfg.server.public_url.origin();
        let mut header = Header::new(jwt_algorithm(keys.signer().algorithm()));
        header.kid = Some(keys.signer().kid().to_string());
        Ok(Self {
            header,
            jwt_header: name(&id.header)?,
            plain,
            issuer: id.issuer.clone().unwrap_or_else(|| origin.clone()),
            audience: id.audience.clone().unwrap_or(origin),
            ttl: id.ttl.get(),
            keys,
        })
    }

    pub fn keys(&self) -> &Arc<Keyset> {
        &self.keys
    }

    pub fn jwt_header_name(&self) -> &HeaderName {
        &self.jwt_header
    }

    /// Every header name this minter may set (stripped from inbound requests).
    pub fn header_names(&self) -> Vec<HeaderName> {
        let mut v = vec![self.jwt_header.clone()];
        if let Some(p) = &self.plain {
            v.extend([
                p.user.clone(),
                p.email.clone(),
                p.groups.clone(),
                p.name.clone(),
            ]);
        }
        v
    }

    pub fn claims(&self, p: &Principal, sid: &str, now_s: u64) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: p.sub.clone(),
            email: p.email.clone(),
            name: p.name.clone(),
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            groups: p.groups.clone(),
            roles: p.roles.clone(),
            tenant: p.tenant.clone(),
            idp: p.idp.clone(),
            sid: sid.to_string(),
            iat: now_s,
            nbf: now_s.saturating_sub(5),
            exp: now_s + self.ttl.as_secs(),
        }
    }

    /// Signs a JWT for `p` and prepares every identity header.
    pub fn mint(&self, p: &Principal, sid: &str, now_ms: u64) -> Result<Minted, MintError> {
        let claims = self.claims(p, sid, now_ms / 1000);
        let token = encode(&self.header, &claims, self.keys.signer().encoding_key())?;
        let value =
            |s: &str| HeaderValue::from_str(s).map_err(|e| MintError::Header(e.to_string()));
        let mut headers = vec![(self.jwt_header.clone(), value(&token)?)];
        if let Some(h) = &self.plain {
            // Values that cannot travel as a header (control characters) are
            // left out rather than failing the request; the JWT carries them.
            let mut push = |name: &HeaderName, v: &str| {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.push((name.clone(), v));
                }
            };
            push(&h.user, &p.sub);
            if let Some(e) = &p.email {
                push(&h.email, e);
            }
            push(&h.groups, &p.groups.join(","));
            if let Some(n) = &p.name {
                push(&h.name, n);
            }
        }
        let exp_ms = claims.exp * 1000;
        Ok(Minted {
            headers,
            refresh_after_ms: exp_ms.saturating_sub(REMINT_BEFORE.as_millis() as u64),
        })
    }
}

/// `[identity]` keys: each configured key file loads (or, with
/// `generate_if_missing`, can be created) and the signing key has the
/// configured algorithm. `config` checks the rest of the section.
pub fn validate_config(cfg: &Config, p: &mut Vec<Problem>) {
    let id = &cfg.identity;
    let generating = id.generate_if_missing && !id.signing_key.exists();
    if generating {
        let parent = id
            .signing_key
            .parent()
            .filter(|x| !x.as_os_str().is_empty());
        if parent.is_some_and(|d| !d.exists() && std::fs::create_dir_all(d).is_err()) {
            p.push(Problem::new(
                "identity.signing_key",
                format!("cannot create directory for {}", id.signing_key.display()),
            ));
        }
    }
    let mut paths: Vec<(String, &PathBuf)> = Vec::new();
    if !generating {
        paths.push(("identity.signing_key".into(), &id.signing_key));
    }
    for (i, k) in id.additional_keys.iter().enumerate() {
        paths.push((format!("identity.additional_keys[{i}]"), k));
    }
    for (key, path) in paths {
        match keys::SigningKey::from_pem_file(path) {
            Ok(k) => {
                if key == "identity.signing_key" {
                    if let Some(want) = id.algorithm {
                        if k.algorithm() != want {
                            p.push(Problem::new(
                                "identity.algorithm",
                                format!(
                                    "is {want} but {} holds a {} key",
                                    path.display(),
                                    k.algorithm()
                                ),
                            ));
                        }
                    }
                }
            }
            Err(e) => p.push(Problem::new(key, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    fn cfg(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "[server]\npublic_url = \"https://gw.example\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n{extra}"
        ))
        .unwrap()
    }

    fn keyset(alg: crate::config::JwtAlgorithm) -> Arc<Keyset> {
        let pem = keys::generate_pem(alg).unwrap();
        Arc::new(Keyset::new(
            keys::SigningKey::from_pem(pem.as_bytes(), "t").unwrap(),
            vec![],
        ))
    }

    fn alice() -> Principal {
        Principal {
            sub: "u-1".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice Doe".into()),
            groups: vec!["admins".into(), "staff".into()],
            roles: vec!["admin".into()],
            tenant: Some("acme".into()),
            idp: Some("jumpcloud".into()),
            ..Default::default()
        }
    }

    #[test]
    fn minted_jwt_verifies_against_the_published_jwks() {
        use crate::config::JwtAlgorithm::*;
        for alg in [ES256, EdDSA, RS256] {
            let m = Minter::new(&cfg(""), keyset(alg)).unwrap();
            let minted = m.mint(&alice(), "sid-1", crate::clock::now_ms()).unwrap();
            let token = minted.headers[0].1.to_str().unwrap();
            let jwks: jsonwebtoken::jwk::JwkSet =
                serde_json::from_slice(&m.keys().jwks_json()).unwrap();
            let header = jsonwebtoken::decode_header(token).unwrap();
            let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
            let mut v = Validation::new(header.alg);
            v.set_audience(&["https://gw.example"]);
            v.set_issuer(&["https://gw.example"]);
            let data = decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
            assert_eq!(data.claims.sub, "u-1");
            assert_eq!(data.claims.groups, vec!["admins", "staff"]);
            assert_eq!(data.claims.tenant.as_deref(), Some("acme"));
            assert_eq!(data.claims.exp - data.claims.iat, 300);
        }
    }

    #[test]
    fn plain_headers_only_when_enabled() {
        let ks = keyset(crate::config::JwtAlgorithm::ES256);
        let off = Minter::new(&cfg(""), ks.clone())
            .unwrap()
            .mint(&alice(), "s", 0)
            .unwrap();
        assert_eq!(off.headers.len(), 1);
        let on = Minter::new(&cfg("[identity.headers]\nenabled = true\n"), ks)
            .unwrap()
            .mint(&alice(), "s", 0)
            .unwrap();
        let names: Vec<&str> = on.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-portcullis-jwt-assertion",
                "x-portcullis-user",
                "x-portcullis-email",
                "x-portcullis-groups",
                "x-portcullis-name"
            ]
        );
        assert_eq!(on.headers[3].1, "admins,staff");
    }

    #[test]
    fn refresh_is_due_thirty_seconds_before_expiry() {
        let m = Minter::new(&cfg(""), keyset(crate::config::JwtAlgorithm::ES256)).unwrap();
        let minted = m.mint(&alice(), "s", 1_000_000).unwrap();
        assert_eq!(minted.refresh_after_ms, (1_000 + 300 - 30) * 1000);
    }
}
