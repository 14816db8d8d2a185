//! A gateway with one test IdP (`testidp`, tenant `acme`, domain
//! example.com) in front of a recording app, and the SAML steps tests take
//! against it: start a sign-in, post a response, read the refusal reason
//! logged next to the page's reference id.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::idp::*;
use super::*;

pub struct Env {
    pub app: RecordingApp,
    pub gw: Gateway,
    pub idp: TestIdp,
    pub acs: String,
    pub entity: String,
    pub _dir: tempfile::TempDir,
}

pub fn env_with(idp_extra: &str, saml_extra: &str) -> Env {
    env_on(idp_extra, saml_extra, None)
}

/// With `redis_prefix`, the gateway keeps its directory in Redis, where the
/// test can read and change it while the gateway runs.
pub fn env_on(idp_extra: &str, saml_extra: &str, redis_prefix: Option<String>) -> Env {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let cert = idp.write_cert(dir.path(), "idp.pem");
    let mut o = GatewayOpts::new(&app.url());
    o.redis_prefix = redis_prefix;
    o.extra = format!(
        "[saml]\n{saml_extra}\n{}",
        idp.idp_toml(
            "testidp",
            &cert,
            &format!("domains = [\"example.com\"]\ntenant = \"acme\"\n{idp_extra}")
        )
    );
    let gw = Gateway::start(o);
    let entity = format!("http://localhost:{}", gw.port);
    Env {
        acs: format!("{entity}/.portcullis/saml/acs"),
        entity,
        app,
        gw,
        idp,
        _dir: dir,
    }
}

pub fn env() -> Env {
    env_with("", "")
}

pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

impl Env {
    pub fn opts(&self, in_response_to: Option<&str>) -> ResponseOpts<'_> {
        ResponseOpts::new(&self.acs, &self.entity, in_response_to)
    }

    /// Starts a sign-in; returns (AuthnRequest id, login binding cookie).
    pub async fn begin(&self, rd: &str) -> (String, String) {
        let url = format!("{}?rd={}", self.gw.url("/.portcullis/login"), urlencode(rd));
        let r = client().get(url).send().await.unwrap();
        assert_eq!(r.status(), 302, "login redirects to the IdP");
        let location = r.headers()[LOCATION].to_str().unwrap().to_string();
        assert!(
            location.starts_with("https://idp.example.test/sso/testidp?SAMLRequest="),
            "{location}"
        );
        let binding = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("portcullis_login="))
            .expect("login binding cookie");
        assert!(
            binding.contains("SameSite=None")
                && binding.contains("Secure")
                && binding.contains("HttpOnly"),
            "{binding}"
        );
        let (id, xml) = authn_request_from_url(&location);
        assert!(xml.contains(&self.acs), "AuthnRequest names our ACS: {xml}");
        assert!(id.len() >= 33, "128-bit request id: {id}");
        (id, cookie_pair(&binding))
    }

    pub async fn post(
        &self,
        b64: &str,
        cookie: Option<&str>,
        relay: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("SAMLResponse", b64.to_string())];
        if let Some(r) = relay {
            form.push(("RelayState", r.to_string()));
        }
        let mut rb = client()
            .post(self.gw.url("/.portcullis/saml/acs"))
            .form(&form);
        if let Some(c) = cookie {
            rb = rb.header(COOKIE, c);
        }
        rb.send().await.unwrap()
    }

    /// Posts and expects a refusal with `status`; returns the logged reason.
    pub async fn refused(&self, b64: &str, cookie: Option<&str>, status: u16) -> String {
        let r = self.post(b64, cookie, None).await;
        assert_eq!(r.status(), status);
        assert!(r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("portcullis_session=")));
        let page = r.text().await.unwrap();
        assert!(page.contains("Sign-in failed"), "{page}");
        logged_reason(&self.gw, &page).await
    }

    /// A fresh pending request and the response to it, refused with `reason`.
    pub async fn assert_refused(&self, edit: impl FnOnce(&mut ResponseOpts), reason: &str) {
        let (id, cookie) = self.begin("/").await;
        let mut o = self.opts(Some(&id));
        edit(&mut o);
        let got = self
            .refused(&self.idp.response_b64(&o), Some(&cookie), 400)
            .await;
        assert_eq!(got, reason);
        assert_eq!(self.app.count(), 0);
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A minimal gateway config in `dir` (signing key made there) with `saml`
/// as its `[saml]` body; returns its path.
pub fn write_config(dir: &std::path::Path, public_url: &str, saml: &str) -> std::path::PathBuf {
    let key = dir.join("k.pem");
    portcullis::identity::keys::generate_to_file(portcullis::config::JwtAlgorithm::ES256, &key)
        .unwrap();
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"{public_url}\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[store]\npath = \"{}\"\n[identity]\nsigning_key = \"{}\"\n[saml]\n{saml}",
            dir.join("state").display(),
            key.display(),
        ),
    )
    .unwrap();
    config
}

/// The IdP registry exactly as `run` builds it, for library-level tests
/// (no gateway process): `idp` as `testidp` with `idp_extra`, plus
/// `saml_extra` in `[saml]`, for the SP at `entity`.
pub fn registry_in(
    dir: &std::path::Path,
    idp: &TestIdp,
    entity: &str,
    idp_extra: &str,
    saml_extra: &str,
) -> portcullis::saml::idp::Registry {
    let cert = idp.write_cert(dir, "idp.pem");
    let config = write_config(
        dir,
        entity,
        &format!(
            "{saml_extra}\n{}",
            idp.idp_toml("testidp", &cert, idp_extra)
        ),
    );
    let cfg = portcullis::config::Config::load(&config).unwrap();
    let saml = cfg.saml.clone().unwrap();
    portcullis::saml::idp::Registry::build(&cfg, &saml, None).unwrap()
}

/// The `reason=` logged next to the reference id an error page shows.
pub async fn logged_reason(gw: &Gateway, page: &str) -> String {
    let reference = page
        .split("<code>")
        .nth(1)
        .and_then(|s| s.split("</code>").next())
        .expect("reference id on the page")
        .to_string();
    for _ in 0..50 {
        if let Some(line) = gw
            .log()
            .lines()
            .find(|l| l.contains(&reference) && l.contains("reason="))
        {
            return line
                .split("reason=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .trim_matches('"')
                .to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no log line for reference {reference}:\n{}", gw.log());
}
