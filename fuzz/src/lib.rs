//! Fuzz harnesses for the gateway's SAML attack surface, shared by the
//! cargo-fuzz targets (`fuzz_targets/`), the replay timer (`bin/replay`)
//! and the seed generator (`bin/seeds`).
//!
//! Each harness drives the public library API the way `saml::web` does for
//! a request, from the raw bytes an attacker controls, and checks a few
//! properties on top of "no panic": whatever verifies must have been signed
//! by the test IdP key (see [`SIGNED_NAME_IDS`]), and a return URL that is
//! accepted stays on the gateway's origin.
//!
//! Input layouts (the first byte selects a mode; see each function):
//! - [`acs`]: `flags | body`
//! - [`slo`]: `flags | xml \0 relay \0 sigalg \0 signature \0 extra`
//! - [`metadata`]: the metadata document as fetched
//! - [`return_url`]: the candidate target (also read as a query with `rd=`)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use base64::Engine;
use portcullis::config::{Config, SamlConfig};
use portcullis::saml::idp::Registry;

pub const IDP_ENTITY: &str = "https://idp.example.test/metadata";
pub const SP_ORIGIN: &str = "https://sp.example.test";
pub const ACS_URL: &str = "https://sp.example.test/.portcullis/saml/acs";
pub const SLO_URL: &str = "https://sp.example.test/.portcullis/saml/slo";
pub const IDP_SLO_URL: &str = "https://idp.example.test/slo";
/// The redirect binding's URL as `saml::web::decode_slo` builds it.
pub const SLO_BASE: &str = "http://gateway.invalid/.portcullis/saml/slo";
/// The instant every seed was issued at; SLO freshness is judged at it.
pub const FIXED_NOW: &str = "2026-12-01T00:00:00Z";
/// The only request ID the gateway has "sent" (InResponseTo of solicited seeds).
pub const REQUEST_ID: &str = "_sp_request_1";

/// Test-only keys (fuzz/keys/, generated once with openssl, never used
/// anywhere else): the IdP's, the SP's (decryption, signing its own SLO
/// messages) and an attacker's.
pub const IDP_KEY: &str = include_str!("../keys/idp.key");
pub const IDP_CERT: &str = include_str!("../keys/idp.crt");
pub const SP_KEY: &str = include_str!("../keys/sp.key");
pub const SP_CERT: &str = include_str!("../keys/sp.crt");
pub const ATTACKER_KEY: &str = include_str!("../keys/attacker.key");
pub const ATTACKER_CERT: &str = include_str!("../keys/attacker.crt");

/// Every NameID the seed generator signs with the IdP key. A message that
/// verifies names one of these, whatever the fuzzer did to it: anything
/// else got past signature verification (the seeds sign nothing else, and
/// the unsigned/attacker-signed seeds use `mallory@example.com`).
pub const SIGNED_NAME_IDS: [&str; 2] = ["alice@example.com", "bob@example.com"];
/// Prefix of every ID (Response, Assertion, LogoutRequest) the IdP key signs.
pub const SIGNED_ID_PREFIX: &str = "_idp_signed_";

pub fn fixed_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(FIXED_NOW)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------- setup

/// The signature requirement and SHA-1 setting of each ACS registry; the
/// ACS input's flags pick one (`(flags >> 1) % 6`).
pub const ACS_MODES: [(&str, bool); 6] = [
    ("either", false),
    ("response", false),
    ("assertion", false),
    ("either", true),
    ("response", true),
    ("assertion", true),
];

pub struct Env {
    pub dir: PathBuf,
    /// One registry per [`ACS_MODES`] entry, all with the test IdP and the SP key.
    pub acs: Vec<Registry>,
    /// An IdP configured by `metadata_url` (its metadata is the fuzz input).
    pub md_cfg: Config,
    pub md_saml: SamlConfig,
}

static ENV: OnceLock<Env> = OnceLock::new();

pub fn env() -> &'static Env {
    ENV.get_or_init(build_env)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn config_toml(dir: &Path, saml: &str) -> String {
    format!(
        "[server]\npublic_url = \"{SP_ORIGIN}\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n\
[store]\npath = \"{}\"\n[identity]\nsigning_key = \"{}\"\n[saml]\n{saml}",
        dir.join("state").display(),
        dir.join("jwt.pem").display()
    )
}

fn load(dir: &Path, name: &str, toml: &str) -> (Config, SamlConfig) {
    let path = write(dir, name, toml);
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("fuzz config {name}: {e:?}"));
    let saml = cfg.saml.clone().expect("[saml]");
    (cfg, saml)
}

fn build_env() -> Env {
    let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    portcullis::identity::keys::generate_to_file(
        portcullis::config::JwtAlgorithm::ES256,
        &dir.join("jwt.pem"),
    )
    .unwrap();
    let idp_cert = write(&dir, "idp.crt", IDP_CERT);
    let sp_key = write(&dir, "sp.key", SP_KEY);
    let sp_cert = write(&dir, "sp.crt", SP_CERT);
    let mut acs = Vec::new();
    for (i, (req, sha1)) in ACS_MODES.iter().enumerate() {
        let saml = format!(
            "allow_sha1 = {sha1}\nsp_key = \"{}\"\nsp_cert = \"{}\"\n\
[[saml.idp]]\nid = \"testidp\"\nentity_id = \"{IDP_ENTITY}\"\nsso_url = \"https://idp.example.test/sso\"\n\
slo_url = \"{IDP_SLO_URL}\"\ncertificate = \"{}\"\nallow_idp_initiated = true\nrequire_signature = \"{req}\"\n",
            sp_key.display(),
            sp_cert.display(),
            idp_cert.display()
        );
        let (cfg, saml) = load(&dir, &format!("acs{i}.toml"), &config_toml(&dir, &saml));
        let mut reg = Registry::build(&cfg, &saml, None).expect("ACS registry");
        widen_issue_window(&mut reg);
        acs.push(reg);
    }
    let md = "[[saml.idp]]\nid = \"md\"\nmetadata_url = \"https://idp.example.test/md\"\n";
    let (md_cfg, md_saml) = load(&dir, "md.toml", &config_toml(&dir, md));
    Env {
        dir,
        acs,
        md_cfg,
        md_saml,
    }
}

/// The seeds are committed with a fixed IssueInstant ([`FIXED_NOW`]), and
/// samael judges it against the wall clock with a window of minutes
/// (`max_issue_delay`). Only that window is widened here, to 100 years, so
/// a seed that verifies keeps reaching the checks after samael's (audience,
/// subject, attribute mapping) instead of stopping at "expired"; every other
/// setting is the gateway's own.
fn widen_issue_window(reg: &mut Registry) {
    let long = chrono::Duration::days(36_500);
    for idp in &mut reg.idps {
        let idp = Arc::get_mut(idp).expect("the registry is not shared yet");
        for sp in [
            &mut idp.sp,
            &mut idp.sp_unsolicited,
            &mut idp.checks_only,
            &mut idp.checks_only_unsolicited,
        ] {
            sp.max_issue_delay = long;
        }
    }
}

// ---------------------------------------------------------------- timing

static SLOWEST_NS: AtomicU64 = AtomicU64::new(0);
static TARGET: OnceLock<&'static str> = OnceLock::new();
static SLOWEST_INPUT: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Where a fuzz target keeps its slowest input: fuzz/artifacts/<target>/.
pub fn artifacts_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(target)
}

extern "C" fn report_slowest() {
    if let Some(t) = TARGET.get() {
        let ns = SLOWEST_NS.load(Ordering::Relaxed);
        let dir = artifacts_dir(t);
        if let Some(input) = SLOWEST_INPUT.lock().ok().and_then(|g| g.clone()) {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("slowest-instrumented.input"), &input);
            let _ = std::fs::write(
                dir.join("slowest-instrumented.txt"),
                format!("{:.3} ms\n", ns as f64 / 1e6),
            );
        }
        eprintln!(
            "portcullis-fuzz[{t}]: slowest input in this (instrumented) run: {:.3} ms -> {}",
            ns as f64 / 1e6,
            dir.join("slowest-instrumented.input").display()
        );
    }
    if let Some(e) = ENV.get() {
        let _ = std::fs::remove_dir_all(&e.dir);
    }
}

/// Called from a fuzz target's `init`: builds the registries and makes the
/// process record its slowest input (written at exit).
pub fn init_target(target: &'static str) {
    env();
    if TARGET.set(target).is_ok() {
        unsafe {
            libc::atexit(report_slowest);
        }
    }
}

/// Runs `f` on `data`, keeping the wall time of the slowest input.
pub fn timed(data: &[u8], f: Harness) {
    let t = Instant::now();
    let _ = std::hint::black_box(f(data));
    let ns = t.elapsed().as_nanos() as u64;
    if ns > SLOWEST_NS.load(Ordering::Relaxed) {
        SLOWEST_NS.store(ns, Ordering::Relaxed);
        if let Ok(mut g) = SLOWEST_INPUT.lock() {
            *g = Some(data.to_vec());
        }
    }
}

/// A harness: what the gateway decided, in words (the replay tool prints it).
pub type Harness = fn(&[u8]) -> String;

/// The harness of each target, by name.
pub fn harness(target: &str) -> Option<Harness> {
    Some(match target {
        "acs" => acs,
        "slo" => slo,
        "metadata" => metadata,
        "return_url" => return_url,
        _ => return None,
    })
}

pub const TARGETS: [&str; 4] = ["acs", "slo", "metadata", "return_url"];

// ---------------------------------------------------------------- ACS

/// The ACS from the posted `SAMLResponse` to the sign-in decision, as
/// `saml::web::accept` runs it (minus the store): `inspect`, the IdP by
/// issuer, `verify` with the InResponseTo the message names.
///
/// `flags` bit 0: the body is the form value itself (base64 as posted,
/// whitespace and all) rather than the XML, which the harness encodes;
/// bits 1..: which registry ([`ACS_MODES`]).
pub fn acs(data: &[u8]) -> String {
    let Some((&flags, body)) = data.split_first() else {
        return "empty".into();
    };
    let env = env();
    let reg = &env.acs[usize::from(flags >> 1) % env.acs.len()];
    let form_value = if flags & 1 == 0 {
        b64(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let sp = &reg.sp;
    let msg =
        match portcullis::saml::response::inspect(&form_value, sp.max_response_bytes, sp.allow_sha1) {
            Ok(m) => m,
            Err(e) => return format!("inspect: {}", e.reason()),
        };
    let issuer = msg.issuer.clone().unwrap_or_default();
    let Some(idp) = reg.by_entity_id(&issuer) else {
        return "unknown_issuer".into();
    };
    let login =
        match portcullis::saml::response::verify(idp, sp, &msg, msg.in_response_to.as_deref()) {
            Ok(l) => l,
            Err(e) => return format!("verify: {}", e.reason()),
        };
    assert!(
        SIGNED_NAME_IDS.contains(&login.name_id.as_str()),
        "a sign-in verified for a NameID the IdP never signed: {login:?}"
    );
    assert!(
        login.assertion_id.starts_with(SIGNED_ID_PREFIX),
        "a sign-in verified with an assertion the IdP never signed: {login:?}"
    );
    if let Some(e) = &login.email {
        assert!(SIGNED_NAME_IDS.contains(&e.as_str()), "email {e:?}: {login:?}");
    }
    format!("signed in ({})", if msg.encrypted { "encrypted" } else { "plain" })
}

// ---------------------------------------------------------------- SLO

/// The parts of an SLO input after the flags byte, split on NUL (which no
/// accepted XML contains: `shape::document_text` refuses it).
pub struct SloParts<'a> {
    pub xml: &'a [u8],
    pub relay: &'a [u8],
    pub sigalg: &'a [u8],
    pub signature: &'a [u8],
    pub extra: &'a [u8],
}

pub fn slo_parts(rest: &[u8]) -> SloParts<'_> {
    let mut it = rest.splitn(5, |b| *b == 0);
    let mut next = || it.next().unwrap_or_default();
    SloParts {
        xml: next(),
        relay: next(),
        sigalg: next(),
        signature: next(),
        extra: next(),
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// The redirect binding's query as an IdP sends it: `param` = base64 of
/// the raw-DEFLATEd XML, then RelayState, SigAlg, Signature when not empty,
/// then `extra` verbatim (more parameters, duplicates).
pub fn redirect_query(param: &str, p: &SloParts) -> String {
    use std::io::Write;
    let mut deflated = Vec::new();
    {
        let mut enc =
            flate2::write::DeflateEncoder::new(&mut deflated, flate2::Compression::default());
        enc.write_all(p.xml).unwrap();
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair(param, &b64(&deflated));
    for (k, v) in [
        ("RelayState", p.relay),
        ("SigAlg", p.sigalg),
        ("Signature", p.signature),
    ] {
        if !v.is_empty() {
            q.append_pair(k, &lossy(v));
        }
    }
    let mut q = q.finish();
    if !p.extra.is_empty() {
        q.push('&');
        q.push_str(&lossy(p.extra));
    }
    q
}

/// A POST-binding form body: `param` = base64 of the XML, RelayState when
/// not empty, then `extra` verbatim.
pub fn post_body(param: &str, p: &SloParts) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair(param, &b64(p.xml));
    if !p.relay.is_empty() {
        q.append_pair("RelayState", &lossy(p.relay));
    }
    let mut q = q.finish();
    if !p.extra.is_empty() {
        q.push('&');
        q.push_str(&lossy(p.extra));
    }
    q
}

/// Single logout on both bindings, as `saml::web::slo` runs it (minus the
/// store): exactly one of SAMLRequest/SAMLResponse, `inflate` (redirect) or
/// `decode_post` (POST), `issuer_of`, the IdP by issuer, then
/// `verify_redirect`/`verify_post` + `check_fresh` + the LogoutResponse URL
/// for a request, `verify_logout_response` for a response.
///
/// `flags & 3`: 0 redirect built from the parts ([`redirect_query`]),
/// 1 redirect with the rest as the raw query string, 2 POST built from the
/// parts ([`post_body`]), 3 POST with the rest as the raw form body.
/// `flags & 4`: SAMLResponse instead of SAMLRequest (built modes).
pub fn slo(data: &[u8]) -> String {
    let Some((&flags, rest)) = data.split_first() else {
        return "empty".into();
    };
    let param = if flags & 4 != 0 {
        "SAMLResponse"
    } else {
        "SAMLRequest"
    };
    match flags & 3 {
        0 => slo_request(false, &redirect_query(param, &slo_parts(rest))),
        1 => slo_request(false, &lossy(rest)),
        2 => slo_request(true, &post_body(param, &slo_parts(rest))),
        _ => slo_request(true, &lossy(rest)),
    }
}

/// One request to `/.portcullis/saml/slo`: `params` is the query string
/// (redirect) or the form body (POST).
fn slo_request(post: bool, params: &str) -> String {
    use portcullis::saml::slo;
    let env = env();
    let reg = &env.acs[0];
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(params.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (message, is_response) = match (get("SAMLRequest"), get("SAMLResponse")) {
        (Some(m), None) => (m, false),
        (None, Some(m)) => (m, true),
        _ => return "not exactly one SAMLRequest/SAMLResponse".into(),
    };
    let decoded = if post {
        slo::decode_post(&message)
    } else {
        slo::inflate(&message)
    };
    let xml = match decoded {
        Ok(x) => x,
        Err(e) => return format!("decode: {}", e.reason()),
    };
    let issuer = match slo::issuer_of(&xml) {
        Ok(i) => i,
        Err(e) => return format!("issuer_of: {}", e.reason()),
    };
    let Some(idp) = reg.by_entity_id(&issuer) else {
        return "unknown_issuer".into();
    };
    let url = if post {
        None
    } else {
        match url::Url::parse(&format!("{SLO_BASE}?{params}")) {
            Ok(u) => Some(u),
            Err(_) => return "url".into(),
        }
    };
    if is_response {
        return match slo::verify_logout_response(idp, &reg.sp, url.as_ref(), &xml, fixed_now()) {
            Ok(ack) => {
                assert_eq!(
                    ack.in_response_to.as_deref(),
                    Some(REQUEST_ID),
                    "a LogoutResponse verified that the IdP never signed: {ack:?}"
                );
                "logout response verified".into()
            }
            Err(e) => format!("verify response: {}", e.reason()),
        };
    }
    let verified = match &url {
        None => slo::verify_post(idp, &xml),
        Some(u) => slo::verify_redirect(idp, u, &xml),
    };
    let logout = match verified {
        Ok(l) => l,
        Err(e) => return format!("verify request: {}", e.reason()),
    };
    assert!(
        SIGNED_NAME_IDS.contains(&logout.name_id.as_str())
            && logout.id.starts_with(SIGNED_ID_PREFIX),
        "a LogoutRequest verified that the IdP never signed: {logout:?}"
    );
    if let Err(e) = logout.check_fresh(&reg.sp, fixed_now()) {
        return format!("check_fresh: {}", e.reason());
    }
    let relay = get("RelayState");
    if let Ok(Some(u)) = slo::logout_response_url(&reg.sp, idp, &logout.id, relay.as_deref()) {
        let u = url::Url::parse(&u).expect("the LogoutResponse URL parses");
        assert_eq!(u.host_str(), Some("idp.example.test"), "{u}");
    }
    "logout request verified and answered".into()
}

// ---------------------------------------------------------------- metadata

/// Largest metadata document the gateway accepts (`saml::remote`).
const MAX_METADATA: usize = 1024 * 1024;

/// IdP metadata as the gateway takes it from `metadata_url` or a cache
/// (`saml::remote::fetch`): size cap, `shape::document_text`,
/// `shape::refuse_dtd`, samael's `EntityDescriptor` parser; then what
/// `Registry::build` makes of it (signing certificates, SSO/SLO locations,
/// the samael ServiceProvider) and the LogoutRequest URL built from it.
pub fn metadata(data: &[u8]) -> String {
    use portcullis::saml::shape;
    if data.len() > MAX_METADATA {
        return "too large".into();
    }
    let xml = match shape::document_text(data.to_vec()) {
        Ok(x) => x,
        Err(e) => return format!("document_text: {}", e.reason()),
    };
    if shape::refuse_dtd(&xml).is_err() {
        return "dtd".into();
    }
    if xml.parse::<samael::metadata::EntityDescriptor>().is_err() {
        return "not an EntityDescriptor".into();
    }
    let env = env();
    let map = HashMap::from([("md".to_string(), xml)]);
    let reg = match Registry::build(&env.md_cfg, &env.md_saml, Some(&map)) {
        Ok(r) => r,
        Err((key, msg)) => return format!("registry: {key}: {msg}"),
    };
    let idp = &reg.idps[0];
    assert!(!idp.certs.is_empty(), "an IdP without a signing certificate was accepted");
    assert!(!idp.entity_id.is_empty());
    url::Url::parse(&idp.sso_url).expect("the SSO URL was checked");
    let link = portcullis::session::SsoLink {
        idp: idp.id.clone(),
        name_id: "alice@example.com".into(),
        name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
        session_index: Some("_s1".into()),
        asserted_groups: vec![],
    };
    match portcullis::saml::slo::logout_request_url(&reg.sp, idp, &link) {
        Ok(Some(_)) => "IdP built (with SLO)".into(),
        Ok(None) => "IdP built".into(),
        Err(e) => format!("IdP built, LogoutRequest URL: {}", e.reason()),
    }
}

// ---------------------------------------------------------------- return URL

/// The return-URL check (`gateway::local::is_local_target`, used for the
/// login page's `rd` and the ACS's RelayState), on the input itself and on
/// the `rd` parameter of the input read as a query string. An accepted
/// target must be a path on the gateway's own origin.
pub fn return_url(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    let mut out = format!("as is: {}", check_target(&s));
    if let Some(rd) = portcullis::gateway::local::query_param(Some(&s), "rd") {
        out += &format!(", rd: {}", check_target(&rd));
    }
    for (k, v) in url::form_urlencoded::parse(data) {
        if k == "RelayState" {
            out += &format!(", RelayState: {}", check_target(&v));
        }
    }
    out
}

fn check_target(t: &str) -> &'static str {
    if !portcullis::gateway::local::is_local_target(t) {
        return "refused";
    }
    assert!(t.starts_with('/'), "{t:?}");
    assert!(!t.starts_with("//") && !t.starts_with("/\\"), "{t:?}");
    assert!(!t.chars().any(char::is_control), "{t:?}");
    assert!(
        matches!(url::Url::parse(t), Err(url::ParseError::RelativeUrlWithoutBase)),
        "{t:?} has a scheme"
    );
    let base = url::Url::parse("https://gw.example/.portcullis/saml/acs").unwrap();
    let joined = base.join(t).unwrap_or_else(|e| panic!("{t:?} does not resolve: {e}"));
    assert_eq!(joined.scheme(), "https", "{t:?} -> {joined}");
    assert_eq!(joined.host_str(), Some("gw.example"), "{t:?} -> {joined}");
    assert_eq!(joined.port(), None, "{t:?} -> {joined}");
    assert!(
        joined.username().is_empty() && joined.password().is_none(),
        "{t:?} -> {joined}"
    );
    // It becomes a Location header.
    http::HeaderValue::try_from(t).unwrap_or_else(|e| panic!("{t:?} as Location: {e}"));
    "local"
}
