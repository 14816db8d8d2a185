//! SAML input from an attacker who controls the bytes: what libxml2 and
//! xmlsec would do with a message before its signature is known to be good
//! (external references, XSLT, manifests, /dev/zero), parser differentials
//! (encodings), and the binding and logout rules that a valid signature
//! alone does not give. Each test names the issue-9 item it pins down.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use support::idp::*;
use support::saml_env::*;
use support::*;

/// A TCP listener that counts connections: any hit is a request the
/// gateway made on an attacker's behalf.
struct Canary {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Canary {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                h.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Self { port, hits }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/canary", self.port)
    }

    fn hits(&self) -> usize {
        // Give a fetch that was started a moment to arrive.
        std::thread::sleep(Duration::from_millis(200));
        self.hits.load(Ordering::SeqCst)
    }
}

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// A signature nobody made: the References and transforms are the attack,
/// the SignatureValue is garbage. `object` goes after SignatureValue.
fn forged_signature(uri: &str, transforms: &str, object: &str) -> String {
    forged_signature_refs(&[(uri, transforms)], object)
}

fn forged_signature_refs(refs: &[(&str, &str)], object: &str) -> String {
    let refs: String = refs
        .iter()
        .map(|(uri, transforms)| {
            format!(
                "<ds:Reference URI=\"{uri}\"><ds:Transforms>{transforms}</ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference>"
            )
        })
        .collect();
    format!(
        "<ds:Signature xmlns:ds=\"{DSIG}\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
{refs}</ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue>{object}</ds:Signature>"
    )
}

fn plain_transforms() -> String {
    format!("<ds:Transform Algorithm=\"{ENVELOPED}\"/><ds:Transform Algorithm=\"{EXC_C14N}\"/>")
}

/// An XSLT transform that makes the processor fetch `url`.
fn xslt_fetching(url: &str) -> String {
    format!(
        "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\">\
<xsl:stylesheet xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" version=\"1.0\">\
<xsl:template match=\"/\"><xsl:copy-of select=\"document('{url}')\"/></xsl:template>\
</xsl:stylesheet></ds:Transform>"
    )
}

/// An unsigned Response (Issuer = the configured IdP) carrying the
/// signature `make(response ID)` right after its Issuer, as a signed one would.
fn unsigned_with(e: &Env, make: impl Fn(&str) -> String) -> String {
    let mut o = e.opts(None);
    o.sign_response = false;
    o.sign_assertion = false;
    let xml = e.idp.response_xml(&o);
    xml.replacen(
        "</saml:Issuer>",
        &format!("</saml:Issuer>{}", make(&format!("#{}", o.response_id))),
        1,
    )
}

/// The reason logged for the refusal page in `r` (by its reference id).
async fn reason_of(e: &Env, r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let page = r.text().await.unwrap();
    (status, logged_reason(&e.gw, &page).await)
}

// ---- item 1: nothing is fetched, read or transformed before verification

#[tokio::test]
async fn an_unsigned_response_cannot_make_the_gateway_fetch_read_or_transform() {
    let e = env();
    let canary = Canary::start();
    let plain = plain_transforms();
    let xslt = xslt_fetching(&canary.url());
    let canary_url = canary.url();
    let manifest = format!(
        "<ds:Object><ds:Manifest><ds:Reference URI=\"{canary_url}\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:Manifest></ds:Object>"
    );
    let retrieval = format!("<ds:KeyInfo><ds:RetrievalMethod URI=\"{canary_url}\"/></ds:KeyInfo>");
    // Each signature also references the Response itself (after the attack:
    // xmlsec stops at the first Reference whose digest fails), so that it
    // looks signed to a check that only asks whether some Reference does.
    type MakeSignature<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let cases: Vec<MakeSignature> = vec![
        Box::new(|own| forged_signature_refs(&[(&canary_url, &plain), (own, &plain)], "")),
        Box::new(|own| forged_signature(own, &xslt, "")),
        Box::new(|own| forged_signature(own, &plain, &manifest)),
        Box::new(|own| forged_signature(own, &plain, &retrieval)),
        Box::new(|own| forged_signature_refs(&[("file:///etc/passwd", &plain), (own, &plain)], "")),
        Box::new(|own| forged_signature_refs(&[("#xpointer(/)", &plain), (own, &plain)], "")),
        Box::new(|own| forged_signature_refs(&[("file:///dev/zero", &plain), (own, &plain)], "")),
    ];
    for make in &cases {
        let xml = unsigned_with(&e, make);
        let got = tokio::time::timeout(Duration::from_secs(20), e.refused(&b64(&xml), None, 400))
            .await
            .unwrap_or_else(|_| panic!("no answer within 20 s to {xml}"));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(canary.hits.load(Ordering::SeqCst), 0, "fetched for {xml}");
        assert_eq!(got, "signature_shape", "{xml}");
    }
    assert_eq!(canary.hits(), 0, "the gateway fetched an attacker's URL");
    assert_eq!(e.app.count(), 0);
    // Still serving.
    assert_eq!(
        e.post(&e.idp.response_b64(&e.opts(None)), None, None)
            .await
            .status(),
        303
    );
}

/// The verifier itself (samael + xmlsec as patched), with the shape check
/// of `src/saml/shape.rs` bypassed: external references, XSLT, manifests
/// and /dev/zero are refused by xmlsec before any digest is computed.
#[test]
fn the_verifier_refuses_external_references_transforms_and_manifests_by_itself() {
    use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let der = base64::engine::general_purpose::STANDARD
        .decode(&idp.cert_b64)
        .unwrap();
    let canary = Canary::start();
    let response = |sig: &str| {
        format!(
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_r1\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\">{sig}<samlp:Status/></samlp:Response>"
        )
    };
    let manifest = format!(
        "<ds:Object><ds:Manifest><ds:Reference URI=\"{}\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:Manifest></ds:Object>",
        canary.url()
    );
    let cases = [
        response(&forged_signature(&canary.url(), &plain_transforms(), "")),
        response(&forged_signature("", &xslt_fetching(&canary.url()), "")),
        response(&forged_signature("#_r1", &plain_transforms(), &manifest)),
        response(&forged_signature(
            "file:///dev/zero",
            &plain_transforms(),
            "",
        )),
    ];
    for xml in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let cert = samael::crypto::CertificateDer::from(der.clone());
        std::thread::spawn(move || {
            let r = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                &xml,
                &[cert],
                ReduceMode::ValidateAndMarkNoAncestors,
                None,
            );
            let _ = tx.send(r.is_err());
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the verifier is still working on a forged signature after 10 s");
        assert!(refused);
    }
    assert_eq!(canary.hits(), 0, "xmlsec fetched an attacker's URL");
}

#[tokio::test]
async fn the_slo_post_binding_cannot_make_the_gateway_fetch_a_url() {
    let e = env();
    let canary = Canary::start();
    let slo = format!("{}/.portcullis/saml/slo", e.entity);
    let xml = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_l1\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{slo}\"><saml:Issuer>{}</saml:Issuer>{}<saml:NameID>alice@example.com</saml:NameID></samlp:LogoutRequest>",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        e.idp.entity_id,
        forged_signature(&canary.url(), &plain_transforms(), "")
    );
    let r = client()
        .post(e.gw.url("/.portcullis/saml/slo"))
        .form(&[("SAMLRequest", b64(&xml))])
        .send()
        .await
        .unwrap();
    assert_eq!(reason_of(&e, r).await, (400, "signature_shape".into()));
    assert_eq!(canary.hits(), 0);
}

// ---- item 2: one document for both parsers

/// UTF-7 as libxml2 reads it: `+` is `+-`, and `+ACI-` is a quote that
/// roxmltree (reading the bytes as UTF-8) does not see.
fn to_utf7_hiding_in_response_to(xml: &str, id: &str) -> String {
    let mut s = xml.replace('+', "+-");
    // The Response's InResponseTo into the Destination value before it.
    let attr = format!("\" InResponseTo=\"{id}\"");
    assert!(s.contains(&attr), "{s}");
    s = s.replacen(&attr, &format!("+ACI- InResponseTo=+ACI-{id}\""), 1);
    // The SubjectConfirmationData's: attribute order does not matter to
    // c14n, so it moves behind NotOnOrAfter and into its value.
    let scd = format!("<saml:SubjectConfirmationData InResponseTo=\"{id}\" NotOnOrAfter=\"");
    let start = s.find(&scd).expect("SubjectConfirmationData");
    let value_end = s[start + scd.len()..].find('"').unwrap() + start + scd.len();
    let value = s[start + scd.len()..value_end].to_string();
    s.replace_range(
        start..value_end,
        &format!(
            "<saml:SubjectConfirmationData NotOnOrAfter=\"{value}+ACI- InResponseTo=+ACI-{id}"
        ),
    );
    format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{s}")
}

#[tokio::test]
async fn a_solicited_response_reencoded_as_utf7_cannot_take_the_unsolicited_path() {
    // The worst case: IdP-initiated sign-in is on.
    let e = env_with(
        "allow_idp_initiated = true\nidp_initiated_confirm = false",
        "",
    );
    // The victim starts a sign-in; the IdP's response to it is captured.
    let (id, _victim_cookie) = e.begin("/").await;
    let xml = e.idp.response_xml(&e.opts(Some(&id)));
    let utf7 = to_utf7_hiding_in_response_to(&xml, &id);
    // The attacker posts it from another browser (no binding cookie).
    assert_eq!(e.refused(&b64(&utf7), None, 400).await, "encoding");
    assert_eq!(e.app.count(), 0);
    // A DOCTYPE smuggled the same way.
    let doctype = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x \"y\"+AD4-+AF0-+AD4-{}",
        e.idp.response_xml(&e.opts(None)).replace('+', "+-")
    );
    assert_eq!(e.refused(&b64(&doctype), None, 400).await, "encoding");
}

#[tokio::test]
async fn other_encodings_and_byte_order_marks_are_refused() {
    let e = env();
    let xml = e.idp.response_xml(&e.opts(None));
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16)
        .chain(xml.encode_utf16())
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let utf16_no_bom: Vec<u8> = xml.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let latin1 = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{xml}");
    for raw in [utf16, utf16_no_bom, latin1.into_bytes()] {
        let b = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert_eq!(e.refused(&b, None, 400).await, "encoding");
    }
    // A UTF-8 declaration and BOM are fine.
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>{}",
            e.idp.response_xml(&e.opts(None))
        )
        .as_bytes(),
    );
    let r = e
        .post(
            &base64::engine::general_purpose::STANDARD.encode(&bom),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
}

/// The second wall behind the encoding rule: whatever a parser missed, the
/// unsolicited path refuses a *verified* response that answers a request.
#[test]
fn the_unsolicited_path_refuses_a_verified_in_response_to() {
    use portcullis::saml::response::{inspect, verify};
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let entity = "http://localhost:8080";
    let reg = registry_in(dir.path(), &idp, entity, "allow_idp_initiated = true", "");
    let acs = format!("{entity}/.portcullis/saml/acs");
    for (sign_response, sign_assertion) in [(true, true), (true, false), (false, true)] {
        let mut o = ResponseOpts::new(&acs, entity, Some("_victims_request"));
        o.sign_response = sign_response;
        o.sign_assertion = sign_assertion;
        let b = idp.response_b64(&o);
        let mut msg = inspect(&b, 1 << 20, false).unwrap();
        assert_eq!(msg.in_response_to.as_deref(), Some("_victims_request"));
        // As answered to its request, it verifies.
        verify(&reg.idps[0], &reg.sp, &msg, Some("_victims_request")).unwrap();
        // A parser that did not see InResponseTo would route it here.
        msg.in_response_to = None;
        let err = verify(&reg.idps[0], &reg.sp, &msg, None).unwrap_err();
        assert_eq!(
            err.reason(),
            "parser_differential",
            "{sign_response}/{sign_assertion}: {err}"
        );
    }
}

// ---- item 6: EncryptedKey floods cost no RSA work

#[tokio::test]
async fn encrypted_key_floods_are_refused_before_any_rsa_work() {
    let dir = tempfile::tempdir().unwrap();
    let sp = TestIdp::new("sp-keypair");
    let key_path = dir.path().join("sp.key");
    std::fs::write(&key_path, sp.private_key_pem()).unwrap();
    let cert_path = sp.write_cert(dir.path(), "sp.crt");
    let e = env_with(
        "",
        &format!(
            "max_response_bytes = 1048576\nsp_key = \"{}\"\nsp_cert = \"{}\"",
            key_path.display(),
            cert_path.display()
        ),
    );
    let mut o = e.opts(None);
    o.sign_response = false;
    o.encrypt_for = Some(Encryption::new(&sp.cert_pem));
    let xml = e.idp.response_xml(&o);
    let start = xml.find("<xenc:EncryptedKey").expect("an EncryptedKey");
    let end = xml.find("</xenc:EncryptedKey>").unwrap() + "</xenc:EncryptedKey>".len();
    let one = xml[start..end].to_string();
    let flood = xml.replacen(&one, &one.repeat(361), 1);
    assert_eq!(e.refused(&b64(&flood), None, 400).await, "signature_shape");
    // One or two are fine.
    let two = xml.replacen(&one, &one.repeat(2), 1);
    let r = e.post(&b64(&two), None, None).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
}

// ---- item 7: IdP-initiated sign-in is off unless configured

#[tokio::test]
async fn idp_initiated_sign_in_is_off_by_default() {
    let e = env_with("DEFAULTS", "");
    let got = e
        .refused(&e.idp.response_b64(&e.opts(None)), None, 400)
        .await;
    assert_eq!(got, "idp_initiated_refused");
    // SP-initiated still works.
    let (id, cookie) = e.begin("/").await;
    let r = e
        .post(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), None)
        .await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
}

// ---- item 9: spec deviations

#[tokio::test]
async fn every_audience_restriction_must_hold() {
    let e = env();
    e.assert_refused(
        |o| {
            o.extra_conditions = "<saml:AudienceRestriction><saml:Audience>https://other-sp.example/</saml:Audience></saml:AudienceRestriction>".into();
        },
        "audience_mismatch",
    )
    .await;
    // Several audiences in one restriction: one of them ours is enough.
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.extra_conditions = format!(
        "<saml:AudienceRestriction><saml:Audience>https://other-sp.example/</saml:Audience><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>",
        e.entity
    );
    let r = e.post(&e.idp.response_b64(&o), Some(&cookie), None).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
}

#[tokio::test]
async fn a_signed_response_must_name_its_destination() {
    let e = env();
    e.assert_refused(|o| o.destination = None, "destination_mismatch")
        .await;
    // Only the assertion signed: the unsigned Response shell may omit it.
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.sign_response = false;
    o.destination = None;
    let r = e.post(&e.idp.response_b64(&o), Some(&cookie), None).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
}

async fn signed_in(e: &Env) -> String {
    let r = e.post(&e.idp.response_b64(&e.opts(None)), None, None).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("portcullis_session="))
        .map(|c| cookie_pair(&c))
        .expect("session cookie")
}

async fn still_signed_in(e: &Env, session: &str) -> bool {
    client()
        .get(e.gw.url("/.portcullis/userinfo"))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap()
        .status()
        == 200
}

fn clears_session_cookie(r: &reqwest::Response) -> bool {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("portcullis_session="))
}

#[tokio::test]
async fn an_unverified_logout_response_ends_no_session() {
    let e = env();
    let session = signed_in(&e).await;
    let slo = format!("{}/.portcullis/saml/slo", e.entity);
    let forged = format!(
        "<samlp:LogoutResponse xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_x\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{slo}\" InResponseTo=\"_y\"><saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status></samlp:LogoutResponse>",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        e.idp.entity_id
    );
    let unsigned = e.idp.redirect_message(&slo, "SAMLResponse", &forged, false);
    for path in [
        "/.portcullis/saml/slo?SAMLResponse=junk".to_string(),
        unsigned,
    ] {
        let r = client()
            .get(e.gw.url(&path))
            .header(COOKIE, &session)
            .send()
            .await
            .unwrap();
        assert!(!clears_session_cookie(&r), "{path}");
        let (status, _) = reason_of(&e, r).await;
        assert_eq!(status, 400, "{path}");
        assert!(still_signed_in(&e, &session).await, "{path}");
    }
    // POST binding likewise.
    let r = client()
        .post(e.gw.url("/.portcullis/saml/slo"))
        .header(COOKIE, &session)
        .form(&[("SAMLResponse", b64(&forged))])
        .send()
        .await
        .unwrap();
    assert!(!clears_session_cookie(&r));
    assert_eq!(reason_of(&e, r).await.0, 400);
    assert!(still_signed_in(&e, &session).await);
    // Nor a verified one, however well signed (review finding: a captured
    // LogoutResponse, even a year old, signed out whoever followed a link
    // to it): a LogoutResponse only ever follows our own logout.
    let old = (chrono::Utc::now() - chrono::Duration::days(365))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stale = forged.replacen(
        &forged
            .split("IssueInstant=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string(),
        &old,
        1,
    );
    for xml in [&forged, &stale] {
        let signed = e.idp.redirect_message(&slo, "SAMLResponse", xml, true);
        for _ in 0..3 {
            let r = client()
                .get(e.gw.url(&signed))
                .header(COOKIE, &session)
                .send()
                .await
                .unwrap();
            assert!(!clears_session_cookie(&r));
            assert_eq!(
                reason_of(&e, r).await,
                (400, "unexpected_logout_response".into())
            );
        }
    }
    assert!(still_signed_in(&e, &session).await);
    // After our own logout, the IdP's answer lands on the signed-out page.
    let r = client()
        .get(e.gw.url("/.portcullis/logout"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection() || r.status().is_success());
    let signed = e.idp.redirect_message(&slo, "SAMLResponse", &forged, true);
    let r = client()
        .get(e.gw.url(&signed))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
}

// ---- found by review: superlinear work before the signature is checked

/// An unsigned Response naming the configured IdP, with a signature of the
/// accepted shape (Reference to its own ID) and `extra` on the root.
fn shaped_bomb(e: &Env, root_extra: &str, transform: &str, body: &str) -> String {
    let mut o = e.opts(None);
    o.sign_response = false;
    o.sign_assertion = false;
    let xml = e.idp.response_xml(&o);
    let own = format!("#{}", o.response_id);
    let transforms = format!("<ds:Transform Algorithm=\"{ENVELOPED}\"/>{transform}");
    xml.replacen(
        " Version=\"2.0\"",
        &format!(" Version=\"2.0\"{root_extra}"),
        1,
    )
    .replacen(
        "</saml:Issuer>",
        &format!(
            "</saml:Issuer>{}<samlp:Extensions>{body}</samlp:Extensions>",
            forged_signature(&own, &transforms, "")
        ),
        1,
    )
}

#[tokio::test]
async fn c14n_and_parser_bombs_are_refused_before_any_parser_or_digest_work() {
    let e = env();
    let ns: String = (0..1000)
        .map(|i| format!(" xmlns:n{i}=\"urn:u\""))
        .collect();
    let attrs: String = (0..19000).map(|i| format!(" a{i}=\"\"")).collect();
    let prefixes: String = (0..1000).map(|i| format!("n{i} ")).collect();
    let incl = "<ds:Transform Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"/>";
    let exc_list = format!(
        "<ds:Transform Algorithm=\"{EXC_C14N}\"><ec:InclusiveNamespaces xmlns:ec=\"{EXC_C14N}\" PrefixList=\"{prefixes}\"/></ds:Transform>"
    );
    let deep = format!("{}{}", "<x>".repeat(200), "</x>".repeat(200));
    let cases = [
        (
            "1000 namespaces, inclusive c14n",
            shaped_bomb(&e, &ns, incl, &"<a/>".repeat(1000)),
        ),
        (
            "long PrefixList",
            shaped_bomb(&e, "", &exc_list, &"<a/>".repeat(1000)),
        ),
        ("19000 attributes", shaped_bomb(&e, &attrs, incl, "")),
        (
            "40000 elements",
            shaped_bomb(&e, "", incl, &"<a/>".repeat(40000)),
        ),
        ("200 deep", shaped_bomb(&e, "", incl, &deep)),
    ];
    for (label, xml) in cases {
        let b = b64(&xml);
        assert!(b.len() <= 256 * 1024, "{label}: {}", b.len());
        let started = std::time::Instant::now();
        assert_eq!(e.refused(&b, None, 400).await, "signature_shape", "{label}");
        // Generous for a loaded CI machine; unrefused, these took seconds.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{label}: {:?}",
            started.elapsed()
        );
    }
    // The SLO POST binding runs the same checks.
    let slo = format!("{}/.portcullis/saml/slo", e.entity);
    let xml = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"{ns} ID=\"_l1\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{slo}\"><saml:Issuer>{}</saml:Issuer>{}<saml:NameID>alice@example.com</saml:NameID></samlp:LogoutRequest>",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        e.idp.entity_id,
        forged_signature("#_l1", &format!("<ds:Transform Algorithm=\"{ENVELOPED}\"/>{incl}"), "")
    );
    let r = client()
        .post(e.gw.url("/.portcullis/saml/slo"))
        .form(&[("SAMLRequest", b64(&xml))])
        .send()
        .await
        .unwrap();
    assert_eq!(reason_of(&e, r).await, (400, "signature_shape".into()));
}

#[tokio::test]
async fn cdata_is_refused_before_the_reduction_can_backtrack_on_it() {
    let e = env();
    let mut o = e.opts(None);
    let mut values = vec!["staff".to_string(); 16];
    values.push("xy".into());
    o.attributes = vec![("memberOf".into(), values)];
    // Signed as it is; the CDATA split canonicalizes the same, so the
    // signature still verifies while libxml2's tree differs from the
    // signed fragment (samael's matcher then tried ~2^16 alignments).
    let xml = e.idp.response_xml(&o).replacen(
        "<saml:AttributeValue>xy</saml:AttributeValue>",
        "<saml:AttributeValue>x<![CDATA[y]]></saml:AttributeValue>",
        1,
    );
    let started = std::time::Instant::now();
    assert_eq!(e.refused(&b64(&xml), None, 400).await, "malformed");
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn logout_request(e: &Env, destination: Option<&str>, not_on_or_after: Option<&str>) -> String {
    let dest = destination
        .map(|d| format!(" Destination=\"{d}\""))
        .unwrap_or_default();
    let noa = not_on_or_after
        .map(|t| format!(" NotOnOrAfter=\"{t}\""))
        .unwrap_or_default();
    format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_{}\" Version=\"2.0\" IssueInstant=\"{}\"{dest}{noa}><saml:Issuer>{}</saml:Issuer><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">alice@example.com</saml:NameID></samlp:LogoutRequest>",
        rand_suffix(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        e.idp.entity_id
    )
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn logout_requests_must_name_our_endpoint_and_be_live() {
    let e = env();
    let session = signed_in(&e).await;
    let slo = format!("{}/.portcullis/saml/slo", e.entity);
    let past = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cases = [
        (logout_request(&e, None, None), "destination_mismatch"),
        (
            logout_request(&e, Some("https://other-sp.example/slo"), None),
            "destination_mismatch",
        ),
        (logout_request(&e, Some(&slo), Some(&past)), "expired"),
    ];
    for (xml, reason) in cases {
        let path = e.idp.redirect_message(&slo, "SAMLRequest", &xml, true);
        let r = client().get(e.gw.url(&path)).send().await.unwrap();
        assert_eq!(reason_of(&e, r).await, (400, reason.to_string()), "{xml}");
        assert!(still_signed_in(&e, &session).await);
    }
    // The POST binding: a LogoutRequest without Destination, enveloped-signed.
    let xml = logout_request(&e, None, None);
    let id = xml
        .split("ID=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let signed = e.idp.sign(&xml.replacen(
        "</saml:Issuer>",
        &format!("</saml:Issuer>{}", e.idp.signature_template(id, false)),
        1,
    ));
    let r = client()
        .post(e.gw.url("/.portcullis/saml/slo"))
        .form(&[("SAMLRequest", b64(&signed))])
        .send()
        .await
        .unwrap();
    assert_eq!(reason_of(&e, r).await, (400, "destination_mismatch".into()));
    assert!(still_signed_in(&e, &session).await);
    // Addressed to us and live, it ends the session.
    let xml = logout_request(&e, Some(&slo), None);
    let path = e.idp.redirect_message(&slo, "SAMLRequest", &xml, true);
    let r = client().get(e.gw.url(&path)).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    assert!(!still_signed_in(&e, &session).await);
}

#[tokio::test]
async fn a_browser_that_gets_the_acs_sees_the_readable_page() {
    let e = env();
    let r = client()
        .get(e.gw.url("/.portcullis/saml/acs"))
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert_eq!(reason_of(&e, r).await, (405, "acs_not_posted".into()));
}

// ---- item 5: metadata comes over https only

#[test]
fn metadata_url_must_be_https() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    portcullis::identity::keys::generate_to_file(portcullis::config::JwtAlgorithm::ES256, &key)
        .unwrap();
    let check = |saml_extra: &str, url: &str| {
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\npublic_url = \"https://app.example.com\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[store]\npath = \"{}\"\n[identity]\nsigning_key = \"{}\"\n[saml]\n{saml_extra}\n[[saml.idp]]\nid = \"x\"\nmetadata_url = \"{url}\"\n",
                dir.path().join("state").display(),
                key.display(),
            ),
        )
        .unwrap();
        let out = std::process::Command::new(bin())
            .args(["check", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for url in [
        "http://idp.example.com/metadata",
        "http://127.0.0.1:9/metadata",
        "ftp://idp.example.com/metadata",
    ] {
        let (code, out) = check("", url);
        assert_eq!(code, Some(1), "{url}: {out}");
        assert!(out.contains("saml.idp[0].metadata_url"), "{out}");
        assert!(out.contains("https"), "{out}");
    }
    assert_eq!(check("", "https://idp.example.com/metadata").0, Some(0));
    // The test-only key allows loopback http, and nothing else.
    let flag = "insecure_loopback_metadata_for_tests = true";
    assert_eq!(check(flag, "http://127.0.0.1:9/metadata").0, Some(0));
    assert_eq!(check(flag, "http://localhost:9/metadata").0, Some(0));
    assert_eq!(check(flag, "http://idp.example.com/metadata").0, Some(1));
}

// ---- item 7: with IdP-initiated sign-in on, a confirmation from this browser

fn confirm_nonce(page: &str) -> String {
    page.split("name=\"nonce\" value=\"")
        .nth(1)
        .and_then(|p| p.split('"').next())
        .expect("nonce on the confirmation page")
        .to_string()
}

#[tokio::test]
async fn an_unsolicited_response_signs_in_only_after_a_same_origin_confirmation() {
    let e = env_with("allow_idp_initiated = true", "");
    let r = e
        .post(&e.idp.response_b64(&e.opts(None)), None, Some("/dashboard"))
        .await;
    assert_eq!(r.status(), 200, "{}", e.gw.log());
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies
            .iter()
            .all(|c| !c.starts_with("portcullis_session=")),
        "no session before the confirmation: {cookies:?}"
    );
    let confirm = cookies
        .iter()
        .find(|c| c.starts_with("portcullis_confirm="))
        .expect("confirmation cookie");
    assert!(confirm.contains("SameSite=Strict") && confirm.contains("HttpOnly"));
    let confirm = cookie_pair(confirm);
    let page = r.text().await.unwrap();
    assert!(page.contains("alice@example.com"), "{page}");
    let nonce = confirm_nonce(&page);
    let cont = e.gw.url("/.portcullis/saml/continue");
    let post = |cookie: Option<&str>, origin: Option<&str>, nonce: &str| {
        let mut rb = client().post(&cont).form(&[("nonce", nonce)]);
        if let Some(c) = cookie {
            rb = rb.header(COOKIE, c);
        }
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        rb.send()
    };
    // An auto-posted confirmation from another site, or from a browser
    // without the cookie (the attacker's own nonce), signs nobody in.
    let r = post(Some(&confirm), Some("https://evil.example"), &nonce)
        .await
        .unwrap();
    assert_eq!(
        reason_of(&e, r).await,
        (400, "idp_initiated_unconfirmed".into())
    );
    let r = post(None, Some(&e.entity), &nonce).await.unwrap();
    assert_eq!(
        reason_of(&e, r).await,
        (400, "idp_initiated_unconfirmed".into())
    );
    let r = post(Some("portcullis_confirm=forged"), Some(&e.entity), &nonce)
        .await
        .unwrap();
    assert_eq!(
        reason_of(&e, r).await,
        (400, "idp_initiated_unconfirmed".into())
    );
    assert_eq!(e.app.count(), 0);
    // The page's own form, from the browser it was shown in: signed in.
    let r = post(Some(&confirm), Some(&e.entity), &nonce).await.unwrap();
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    assert_eq!(r.headers()["location"], "/dashboard");
    let session = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("portcullis_session="))
        .map(|c| cookie_pair(&c))
        .expect("session cookie");
    assert!(still_signed_in(&e, &session).await);
    // Once only.
    let r = post(Some(&confirm), Some(&e.entity), &nonce).await.unwrap();
    assert_eq!(
        reason_of(&e, r).await,
        (400, "idp_initiated_unconfirmed".into())
    );
}

// ---- found by fuzzing: memory kept per verified message

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// An assertion-only signature roots the verified document below the
/// message's root; samael's reduction (libxml 0.3.3 underneath) leaked the
/// whole unsigned remainder and the in-scope namespace list every time:
/// ~225 KB per 150 KB post, for any genuine assertion whose Response
/// signature was stripped, replayed at will (the leak came before the
/// replay check).
#[test]
fn verifying_an_assertion_signed_message_keeps_no_memory() {
    use portcullis::saml::response::{inspect, verify};
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let entity = "http://localhost:8080";
    let reg = registry_in(dir.path(), &idp, entity, "", "");
    let acs = format!("{entity}/.portcullis/saml/acs");
    let mut o = ResponseOpts::new(&acs, entity, None);
    o.sign_response = false;
    let xml = idp.response_xml(&o).replacen(
        "<samlp:Status>",
        &format!(
            "<samlp:Extensions>{}</samlp:Extensions><samlp:Status>",
            "p".repeat(150_000)
        ),
        1,
    );
    let b = b64(&xml);
    let run = |n: usize| {
        for _ in 0..n {
            let msg = inspect(&b, 1 << 20, false).unwrap();
            verify(&reg.idps[0], &reg.sp, &msg, None).unwrap();
        }
    };
    run(20); // warm up the allocator
    let before = rss_kib();
    run(300);
    let grown = rss_kib().saturating_sub(before);
    // Leaking, 300 runs kept ~65 MB.
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB over 300 verifications"
    );
}

/// Found by fuzzing: metadata whose signing certificate is not one (samael
/// only base64-decodes it) built an IdP that silently verified nothing.
#[test]
fn metadata_with_an_unreadable_signing_certificate_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md.xml");
    std::fs::write(
        &md,
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"https://idp.example/\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.example/sso\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "https://app.example.com",
        &format!(
            "[[saml.idp]]\nid = \"x\"\nmetadata_file = \"{}\"\n",
            md.display()
        ),
    );
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("saml.idp[0].certificate") && text.contains("unreadable"),
        "{text}"
    );
}

/// The reduction's own guard behind the CDATA refusal (bypassed here by
/// calling samael directly): a validly signed message whose tree differs
/// from its canonical form gets a bounded number of alignment attempts.
#[test]
fn the_reduction_gives_up_quickly_on_a_tree_that_differs_from_the_signed_form() {
    use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let der = base64::engine::general_purpose::STANDARD
        .decode(&idp.cert_b64)
        .unwrap();
    let mut o = ResponseOpts::new("http://localhost/acs", "http://localhost", None);
    o.sign_response = false;
    let mut values = vec!["staff".to_string(); 22];
    values.push("xy".into());
    o.attributes = vec![("memberOf".into(), values)];
    let xml = idp.response_xml(&o).replacen(
        "<saml:AttributeValue>xy</saml:AttributeValue>",
        "<saml:AttributeValue>x<![CDATA[y]]></saml:AttributeValue>",
        1,
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            &xml,
            &[samael::crypto::CertificateDer::from(der)],
            ReduceMode::ValidateAndMarkNoAncestors,
            None,
        );
        let _ = tx.send(r.is_err());
    });
    // 2^22 alignments took minutes before the budget.
    let refused = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the reduction is still matching after 10 s");
    assert!(refused);
}

/// ...and fetched metadata with such a certificate is a failed fetch: the
/// last good copy stays, in memory and in the on-disk cache a restart reads.
#[tokio::test]
async fn fetched_metadata_with_an_unreadable_certificate_keeps_the_last_good_copy() {
    let good_idp = TestIdp::new("https://idp.example.test/metadata");
    let metadata = |cert_b64: &str| {
        format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"https://idp.example.test/metadata\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
<ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.example.test/sso\"/></md:IDPSSODescriptor></md:EntityDescriptor>"
        )
    };
    let good = metadata(&good_idp.cert_b64);
    let broken = metadata("AAAA");
    let served = broken.clone();
    let port = serve_in_background(axum::Router::new().route(
        "/metadata",
        axum::routing::get(move || {
            let b = served.clone();
            async move { b }
        }),
    ));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("md-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("remote.xml"), &good).unwrap();
    let config = write_config(
        dir.path(),
        "https://app.example.com",
        &format!(
            "metadata_cache_dir = \"{}\"\ninsecure_loopback_metadata_for_tests = true\n[[saml.idp]]\nid = \"remote\"\nmetadata_url = \"http://127.0.0.1:{port}/metadata\"\n",
            cache.display()
        ),
    );
    let cfg = portcullis::config::Config::load(&config).unwrap();
    let saml = cfg.saml.clone().unwrap();
    let got = portcullis::saml::remote::fetch_all(&cfg, &saml, None).await;
    assert_eq!(
        got.get("remote"),
        Some(&good),
        "the broken document replaced the good one"
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("remote.xml")).unwrap(),
        good
    );
}

/// The on-disk copy stands in for a failed fetch only when it came from the
/// URL configured now: after `metadata_url` is changed (the IdP moved, or an
/// operator fixed a wrong one), a copy from the old URL never vouches for it.
#[tokio::test]
async fn cached_metadata_from_another_url_never_stands_in() {
    let good_idp = TestIdp::new("https://idp.example.test/metadata");
    let good = format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"https://idp.example.test/metadata\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
<ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.example.test/sso\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
        good_idp.cert_b64
    );
    // Nothing listens here: every fetch fails.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("md-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("remote.xml"), &good).unwrap();
    let url = format!("http://127.0.0.1:{port}/metadata");
    let config = write_config(
        dir.path(),
        "https://app.example.com",
        &format!(
            "metadata_cache_dir = \"{}\"\ninsecure_loopback_metadata_for_tests = true\n[[saml.idp]]\nid = \"remote\"\nmetadata_url = \"{url}\"\n",
            cache.display()
        ),
    );
    let cfg = portcullis::config::Config::load(&config).unwrap();
    let saml = cfg.saml.clone().unwrap();
    std::fs::write(
        cache.join("remote.url"),
        "https://old-idp.example.test/metadata",
    )
    .unwrap();
    let got = portcullis::saml::remote::fetch_all(&cfg, &saml, None).await;
    assert_eq!(got.get("remote"), None, "a copy from another URL was used");
    std::fs::write(cache.join("remote.url"), &url).unwrap();
    let got = portcullis::saml::remote::fetch_all(&cfg, &saml, None).await;
    assert_eq!(
        got.get("remote"),
        Some(&good),
        "the copy from this URL is kept"
    );
}
