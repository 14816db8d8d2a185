//! Writes the seed corpus (fuzz/seeds/<target>/) from the fixed test keys
//! in fuzz/keys/: `cargo run --release --bin seeds` (from fuzz/). Modelled
//! on tests/support/idp.rs (TestIdp): the same templates, signed with
//! samael's `Crypto::sign_xml`, plus the refusals the tests make. Every
//! timestamp is fixed (`FIXED_NOW`), so the output is reproducible except
//! for the random content keys of the encrypted seeds.
//!
//! Naming rule the harness's oracle relies on: whatever the IdP key signs
//! has IDs starting `_idp_signed_` and NameIDs from `SIGNED_NAME_IDS`;
//! unsigned or attacker-signed content uses `_evil_` and `mallory@`.

use std::io::Write;
use std::path::{Path, PathBuf};

use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use portcullis_fuzz::*;
use samael::crypto::{Crypto, CryptoProvider};

const XMLENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XMLENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

struct Signer {
    key: PKey<Private>,
    der: Vec<u8>,
    cert_b64: String,
}

fn signer(key_pem: &str, cert_pem: &str) -> Signer {
    let key = PKey::private_key_from_pem(key_pem.as_bytes()).unwrap();
    let der = key.rsa().unwrap().private_key_to_der().unwrap();
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).unwrap();
    Signer {
        key,
        der,
        cert_b64: b64(&cert.to_der().unwrap()),
    }
}

fn strip_decl(xml: &str) -> String {
    let t = xml.trim_start();
    match t.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start().to_string())
            .unwrap_or_default(),
        None => t.to_string(),
    }
}

impl Signer {
    fn template(&self, id: &str, sha1: bool) -> String {
        let (sig, dig) = if sha1 {
            (
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            )
        } else {
            (
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmlenc#sha256",
            )
        };
        format!(
            "<ds:Signature xmlns:ds=\"{DSIG}\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
<ds:SignatureMethod Algorithm=\"{sig}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
<ds:Transform Algorithm=\"{ENVELOPED}\"/>\
<ds:Transform Algorithm=\"{EXC_C14N}\"/></ds:Transforms>\
<ds:DigestMethod Algorithm=\"{dig}\"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>\
<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate>\
</ds:X509Data></ds:KeyInfo></ds:Signature>",
            self.cert_b64
        )
    }

    fn sign(&self, xml: &str) -> String {
        strip_decl(&Crypto::sign_xml(xml, &self.der).expect("xmlsec signs"))
    }
}

#[derive(Clone)]
struct Opts<'a> {
    signer: &'a Signer,
    response_id: String,
    assertion_id: String,
    name_id: String,
    issuer: String,
    audience: Option<String>,
    extra_conditions: String,
    destination: Option<String>,
    recipient: String,
    in_response_to: Option<String>,
    status: String,
    sign_response: bool,
    sign_assertion: bool,
    sha1: bool,
    issue_instant: String,
    not_before: String,
    not_on_or_after: String,
}

impl<'a> Opts<'a> {
    /// A valid, IdP-signed (Response and Assertion) unsolicited response.
    fn new(signer: &'a Signer, n: u32) -> Self {
        Self {
            signer,
            response_id: format!("{SIGNED_ID_PREFIX}r{n}"),
            assertion_id: format!("{SIGNED_ID_PREFIX}a{n}"),
            name_id: "alice@example.com".into(),
            issuer: IDP_ENTITY.into(),
            audience: Some(SP_ORIGIN.into()),
            extra_conditions: String::new(),
            destination: Some(ACS_URL.into()),
            recipient: ACS_URL.into(),
            in_response_to: None,
            status: SUCCESS.into(),
            sign_response: true,
            sign_assertion: true,
            sha1: false,
            issue_instant: FIXED_NOW.into(),
            not_before: "2026-11-30T23:59:00Z".into(),
            not_on_or_after: "2099-01-01T00:00:00Z".into(),
        }
    }

    /// Content nobody signed (or the attacker did): `_evil_` IDs, mallory.
    fn evil(mut self, n: u32) -> Self {
        self.response_id = format!("_evil_r{n}");
        self.assertion_id = format!("_evil_a{n}");
        self.name_id = "mallory@example.com".into();
        self
    }

    fn assertion(&self) -> String {
        let irt = self
            .in_response_to
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let audience = self
            .audience
            .as_ref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{a}</saml:Audience></saml:AudienceRestriction>"))
            .unwrap_or_default();
        let sig = if self.sign_assertion {
            self.signer.template(&self.assertion_id, self.sha1)
        } else {
            String::new()
        };
        let attrs = [
            ("email", vec![self.name_id.as_str()]),
            ("firstName", vec!["Alice"]),
            ("lastName", vec!["Doe"]),
            ("memberOf", vec!["staff", "admins"]),
        ]
        .iter()
        .map(|(n, vs)| {
            format!(
                "<saml:Attribute Name=\"{n}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">{}</saml:Attribute>",
                vs.iter()
                    .map(|v| format!("<saml:AttributeValue>{v}</saml:AttributeValue>"))
                    .collect::<String>()
            )
        })
        .collect::<String>();
        let xml = format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{aid}\" IssueInstant=\"{ii}\" Version=\"2.0\">\
<saml:Issuer>{issuer}</saml:Issuer>{sig}<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{nameid}</saml:NameID>\
<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"><saml:SubjectConfirmationData{irt} NotOnOrAfter=\"{noa}\" Recipient=\"{rcpt}\"/></saml:SubjectConfirmation></saml:Subject>\
<saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\">{audience}{extra}</saml:Conditions>\
<saml:AuthnStatement AuthnInstant=\"{ii}\" SessionIndex=\"_session_1\"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>\
<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>",
            aid = self.assertion_id,
            ii = self.issue_instant,
            issuer = self.issuer,
            nameid = self.name_id,
            noa = self.not_on_or_after,
            nb = self.not_before,
            rcpt = self.recipient,
            extra = self.extra_conditions,
        );
        if self.sign_assertion {
            self.signer.sign(&xml)
        } else {
            xml
        }
    }

    fn wrap(&self, assertion: &str) -> String {
        let irt = self
            .in_response_to
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let dest = self
            .destination
            .as_ref()
            .map(|d| format!(" Destination=\"{d}\""))
            .unwrap_or_default();
        let sig = if self.sign_response {
            self.signer.template(&self.response_id, self.sha1)
        } else {
            String::new()
        };
        let xml = format!(
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{ii}\"{dest}{irt}>\
<saml:Issuer>{issuer}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion}</samlp:Response>",
            rid = self.response_id,
            ii = self.issue_instant,
            issuer = self.issuer,
            status = self.status,
        );
        if self.sign_response {
            self.signer.sign(&xml)
        } else {
            xml
        }
    }

    fn response(&self) -> String {
        self.wrap(&self.assertion())
    }

    /// The assertion (signed as `sign_assertion` says) encrypted for the
    /// SP, in a Response signed as `sign_response` says.
    fn encrypted(&self, e: &Enc) -> String {
        let mut inner = self.clone();
        inner.sign_response = false;
        self.wrap(&encrypt(&inner.assertion(), e))
    }
}

/// How an assertion is encrypted (as xmlenc.rs's own tests do).
struct Enc {
    content: &'static str,
    key_transport: &'static str,
    md: &'static MdRef,
    mgf: &'static MdRef,
    detached: bool,
    keys: usize,
}

fn enc_default() -> Enc {
    Enc {
        content: "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        key_transport: "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        md: Md::sha1(),
        mgf: Md::sha1(),
        detached: false,
        keys: 1,
    }
}

fn encrypt(assertion: &str, e: &Enc) -> String {
    use openssl::symm::Cipher;
    let sp = openssl::x509::X509::from_pem(SP_CERT.as_bytes())
        .unwrap()
        .public_key()
        .unwrap();
    let (cipher, gcm) = match e.content {
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => (Cipher::aes_128_cbc(), false),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => (Cipher::aes_256_cbc(), false),
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => (Cipher::aes_128_gcm(), true),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => (Cipher::aes_256_gcm(), true),
        other => panic!("{other}"),
    };
    let mut k = vec![0u8; cipher.key_len()];
    openssl::rand::rand_bytes(&mut k).unwrap();
    let plain = assertion.as_bytes();
    let data = if gcm {
        let mut iv = [0u8; 12];
        openssl::rand::rand_bytes(&mut iv).unwrap();
        let mut tag = [0u8; 16];
        let ct = openssl::symm::encrypt_aead(cipher, &k, Some(&iv), &[], plain, &mut tag).unwrap();
        [iv.to_vec(), ct, tag.to_vec()].concat()
    } else {
        let mut iv = [0u8; 16];
        openssl::rand::rand_bytes(&mut iv).unwrap();
        let mut out = iv.to_vec();
        out.extend(openssl::symm::encrypt(cipher, &k, Some(&iv), plain).unwrap());
        out
    };
    let mut ctx = PkeyCtx::new(&sp).unwrap();
    ctx.encrypt_init().unwrap();
    let mut wrapped = Vec::new();
    if e.key_transport.ends_with("rsa-1_5") {
        ctx.set_rsa_padding(Padding::PKCS1).unwrap();
    } else {
        ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        ctx.set_rsa_oaep_md(e.md).unwrap();
        ctx.set_rsa_mgf1_md(e.mgf).unwrap();
    }
    ctx.encrypt_to_vec(&k, &mut wrapped).unwrap();
    let md_uri = if e.md.type_() == Md::sha256().type_() {
        "http://www.w3.org/2001/04/xmlenc#sha256"
    } else {
        "http://www.w3.org/2000/09/xmldsig#sha1"
    };
    let mgf_el = if e.mgf.type_() == Md::sha256().type_() {
        format!("<xenc11:MGF xmlns:xenc11=\"{XMLENC11}\" Algorithm=\"{XMLENC11}mgf1sha256\"/>")
    } else {
        String::new()
    };
    let method = if e.key_transport.ends_with("rsa-1_5") {
        String::new()
    } else {
        format!("<ds:DigestMethod xmlns:ds=\"{DSIG}\" Algorithm=\"{md_uri}\"/>{mgf_el}")
    };
    let ek = format!(
        "<xenc:EncryptedKey xmlns:xenc=\"{XMLENC}\"><xenc:EncryptionMethod Algorithm=\"{}\">{method}</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>",
        e.key_transport,
        b64(&wrapped)
    )
    .repeat(e.keys);
    let (inside, beside) = if e.detached {
        (
            format!("<ds:KeyInfo xmlns:ds=\"{DSIG}\"><ds:RetrievalMethod Type=\"{XMLENC}EncryptedKey\" URI=\"#_ek1\"/></ds:KeyInfo>"),
            ek.replacen("<xenc:EncryptedKey ", "<xenc:EncryptedKey Id=\"_ek1\" ", 1),
        )
    } else {
        (format!("<ds:KeyInfo xmlns:ds=\"{DSIG}\">{ek}</ds:KeyInfo>"), String::new())
    };
    format!(
        "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"><xenc:EncryptedData xmlns:xenc=\"{XMLENC}\" Type=\"{XMLENC}Element\"><xenc:EncryptionMethod Algorithm=\"{}\"/>{inside}<xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>{beside}</saml:EncryptedAssertion>",
        e.content,
        b64(&data)
    )
}

/// A signature nobody made (tests/saml_adversarial.rs `forged_signature`).
fn forged_signature(uri: &str, transforms: &str, object: &str) -> String {
    format!(
        "<ds:Signature xmlns:ds=\"{DSIG}\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
<ds:Reference URI=\"{uri}\"><ds:Transforms>{transforms}</ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference>\
</ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue>{object}</ds:Signature>"
    )
}

fn plain_transforms() -> String {
    format!("<ds:Transform Algorithm=\"{ENVELOPED}\"/><ds:Transform Algorithm=\"{EXC_C14N}\"/>")
}

fn xslt_fetching(url: &str) -> String {
    format!(
        "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\">\
<xsl:stylesheet xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" version=\"1.0\">\
<xsl:template match=\"/\"><xsl:copy-of select=\"document('{url}')\"/></xsl:template>\
</xsl:stylesheet></ds:Transform>"
    )
}

/// An unsigned (evil) Response carrying `sig(#response id)` after its Issuer.
fn unsigned_with(o: &Opts, sig: impl Fn(&str) -> String) -> String {
    let mut o = o.clone();
    o.sign_response = false;
    o.sign_assertion = false;
    let xml = o.response();
    xml.replacen(
        "</saml:Issuer>",
        &format!("</saml:Issuer>{}", sig(&format!("#{}", o.response_id))),
        1,
    )
}

/// tests/saml_adversarial.rs `to_utf7_hiding_in_response_to`.
fn to_utf7_hiding_in_response_to(xml: &str, id: &str) -> String {
    let mut s = xml.replace('+', "+-");
    let attr = format!("\" InResponseTo=\"{id}\"");
    assert!(s.contains(&attr));
    s = s.replacen(&attr, &format!("+ACI- InResponseTo=+ACI-{id}\""), 1);
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

struct Out {
    dir: PathBuf,
    n: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Self {
        let dir = root.join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir, n: 0 }
    }

    fn put(&mut self, name: &str, bytes: &[u8]) {
        self.n += 1;
        std::fs::write(self.dir.join(format!("{:02}-{name}", self.n)), bytes).unwrap();
    }

    /// An ACS input: flags (mode index << 1 | raw) + body.
    fn acs(&mut self, name: &str, mode: usize, raw: bool, body: &[u8]) {
        let mut v = vec![((mode as u8) << 1) | u8::from(raw)];
        v.extend_from_slice(body);
        self.put(name, &v);
    }
}

const EITHER: usize = 0;
const RESPONSE: usize = 1;
const ASSERTION: usize = 2;
const EITHER_SHA1: usize = 3;

fn acs_seeds(root: &Path, idp: &Signer, evil: &Signer) {
    let mut out = Out::new(root, "acs");
    let x = |s: String| s.into_bytes();
    // Valid in every signing mode.
    out.acs("both-signed", EITHER, false, &x(Opts::new(idp, 1).response()));
    let mut o = Opts::new(idp, 2);
    o.in_response_to = Some(REQUEST_ID.into());
    let solicited = o.response();
    out.acs("both-signed-solicited", EITHER, false, solicited.as_bytes());
    let mut o = Opts::new(idp, 3);
    o.sign_assertion = false;
    out.acs("response-signed", RESPONSE, false, &x(o.response()));
    let mut o = Opts::new(idp, 4);
    o.sign_response = false;
    o.name_id = "bob@example.com".into();
    let assertion_only = o.response();
    out.acs("assertion-signed", ASSERTION, false, assertion_only.as_bytes());
    let mut o = Opts::new(idp, 5);
    o.sha1 = true;
    out.acs("sha1-allowed", EITHER_SHA1, false, &x(o.response()));
    out.acs("sha1-refused", EITHER, false, &x(o.response()));
    // The same as posted: base64 with line breaks, as some IdPs send it.
    let wrapped: String = b64(solicited.as_bytes())
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    out.acs("raw-base64-lines", EITHER, true, wrapped.as_bytes());
    out.acs("raw-not-base64", EITHER, true, b"PHNhbWxwOlJlc3BvbnNl*==");
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    bom.extend_from_slice(Opts::new(idp, 6).response().as_bytes());
    out.acs("utf8-bom-declaration", EITHER, false, &bom);

    // Signature requirement refusals.
    let mut o = Opts::new(idp, 7).evil(7);
    o.sign_response = false;
    o.sign_assertion = false;
    out.acs("unsigned", EITHER, false, &x(o.response()));
    out.acs("assertion-only-response-required", RESPONSE, false, assertion_only.as_bytes());
    let mut o = Opts::new(idp, 8);
    o.sign_assertion = false;
    out.acs("response-only-assertion-required", ASSERTION, false, &x(o.response()));
    // Wrong key, tampering.
    let o = Opts::new(evil, 9).evil(9);
    out.acs("attacker-key", EITHER, false, &x(o.response()));
    let altered = Opts::new(idp, 10)
        .response()
        .replace("alice@example.com", "mallory@example.com");
    out.acs("altered-after-signing", EITHER, false, altered.as_bytes());

    // XSW shapes (tests/saml.rs).
    let mut signed = Opts::new(idp, 11);
    signed.sign_response = false;
    signed.in_response_to = Some(REQUEST_ID.into());
    let signed_assertion = signed.assertion();
    let mut e = Opts::new(idp, 12).evil(12);
    e.sign_response = false;
    e.sign_assertion = false;
    e.in_response_to = Some(REQUEST_ID.into());
    let evil_assertion = e.assertion();
    let xml = e.wrap(&evil_assertion).replacen(
        "<samlp:Status>",
        &format!("<samlp:Extensions>{signed_assertion}</samlp:Extensions><samlp:Status>"),
        1,
    );
    out.acs("xsw-signed-assertion-in-extensions", EITHER, false, xml.as_bytes());
    out.acs(
        "xsw-evil-before-signed",
        EITHER,
        false,
        &x(e.wrap(&format!("{evil_assertion}{signed_assertion}"))),
    );
    out.acs(
        "xsw-evil-after-signed",
        EITHER,
        false,
        &x(e.wrap(&format!("{signed_assertion}{evil_assertion}"))),
    );
    let mut g = Opts::new(idp, 13);
    g.sign_assertion = false;
    g.in_response_to = Some(REQUEST_ID.into());
    let genuine = g.response();
    out.acs(
        "xsw-signed-response-wrapped",
        EITHER,
        false,
        &x(e.wrap(&format!(
            "{evil_assertion}<samlp:Extensions>{genuine}</samlp:Extensions>"
        ))),
    );

    // What libxml2 must never see: comment, DTD, PI, other encodings.
    let mut o = Opts::new(idp, 14);
    o.name_id = "bob@example.com".into();
    let xml = o
        .response()
        .replace("bob@example.com</saml:NameID>", "bob@example.com<!---->.evil</saml:NameID>");
    out.acs("comment-in-name-id", EITHER, false, xml.as_bytes());
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>{}",
        Opts::new(idp, 15)
            .response()
            .replace("alice@example.com</saml:NameID>", "&b;</saml:NameID>")
    );
    out.acs("dtd-entity-bomb", EITHER, false, bomb.as_bytes());
    let pi = Opts::new(idp, 16)
        .response()
        .replacen("<saml:Issuer>", "<?php x?><saml:Issuer>", 1);
    out.acs("processing-instruction", EITHER, false, pi.as_bytes());
    let mut o = Opts::new(idp, 17);
    o.in_response_to = Some(REQUEST_ID.into());
    let utf7 = to_utf7_hiding_in_response_to(&o.response(), REQUEST_ID);
    out.acs("utf7-hidden-in-response-to", EITHER, false, utf7.as_bytes());
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16)
        .chain(Opts::new(idp, 18).response().encode_utf16())
        .flat_map(|u| u.to_le_bytes())
        .collect();
    out.acs("utf16-bom", EITHER, false, &utf16);
    let latin1 = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{}",
        Opts::new(idp, 19).response()
    );
    out.acs("latin1-declaration", EITHER, false, latin1.as_bytes());
    let base = unsigned_with(&Opts::new(idp, 20).evil(20), |r| {
        forged_signature(r, &plain_transforms(), "")
    })
    .replacen(" ID=\"_evil_r20\"", " ID=\"_evil_r20\" xml:base=\"http://x/\"", 1);
    out.acs("xml-base", EITHER, false, base.as_bytes());

    // Forged signatures aimed at the verifier (tests/saml_adversarial.rs).
    let o = Opts::new(idp, 21).evil(21);
    out.acs(
        "forged-external-reference",
        EITHER,
        false,
        &x(unsigned_with(&o, |_| {
            forged_signature("http://127.0.0.1:9/ssrf", &plain_transforms(), "")
        })),
    );
    out.acs(
        "forged-xslt-transform",
        EITHER,
        false,
        &x(unsigned_with(&o, |r| {
            forged_signature(r, &xslt_fetching("http://127.0.0.1:9/xslt"), "")
        })),
    );
    out.acs(
        "forged-manifest",
        EITHER,
        false,
        &x(unsigned_with(&o, |r| {
            forged_signature(
                r,
                &plain_transforms(),
                &format!("<ds:Object><ds:Manifest>{}</ds:Manifest></ds:Object>", forged_signature("file:///dev/zero", "", "")),
            )
        })),
    );

    // Bindings and samael's checks.
    let mut o = Opts::new(idp, 22);
    o.issuer = "https://evil.example/idp".into();
    out.acs("wrong-issuer", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 23);
    o.audience = Some("https://another-sp.example".into());
    out.acs("wrong-audience", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 24);
    o.extra_conditions = "<saml:AudienceRestriction><saml:Audience>https://another-sp.example</saml:Audience></saml:AudienceRestriction>".into();
    out.acs("second-audience-restriction", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 25);
    o.destination = None;
    out.acs("signed-response-no-destination", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 26);
    o.recipient = "https://evil.example/acs".into();
    out.acs("wrong-recipient", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 27);
    o.not_on_or_after = "2026-11-30T23:59:30Z".into();
    out.acs("expired", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 28);
    o.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".into();
    out.acs("failed-status", EITHER, false, &x(o.response()));
    let mut o = Opts::new(idp, 29);
    o.in_response_to = Some("_someone_elses_request".into());
    let xml = o.response().replacen(" InResponseTo=\"_someone_elses_request\"", "", 1);
    out.acs("in-response-to-only-in-assertion", EITHER, false, xml.as_bytes());

    // Encrypted assertions.
    out.acs(
        "encrypted-signed-response-aes256cbc",
        EITHER,
        false,
        &x(Opts::new(idp, 30).encrypted(&enc_default())),
    );
    let mut o = Opts::new(idp, 31);
    o.sign_response = false;
    o.in_response_to = Some(REQUEST_ID.into());
    let gcm = Enc {
        content: "http://www.w3.org/2009/xmlenc11#aes128-gcm",
        ..enc_default()
    };
    out.acs("encrypted-assertion-signed-aes128gcm", ASSERTION, false, &x(o.encrypted(&gcm)));
    let mut o = Opts::new(idp, 32);
    o.sign_response = false;
    let detached = Enc {
        content: "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        key_transport: "http://www.w3.org/2009/xmlenc11#rsa-oaep",
        md: Md::sha256(),
        mgf: Md::sha256(),
        detached: true,
        keys: 1,
    };
    out.acs("encrypted-detached-key-oaep256", EITHER, false, &x(o.encrypted(&detached)));
    let rsa15 = Enc {
        key_transport: "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
        ..enc_default()
    };
    out.acs("encrypted-rsa-1_5", EITHER, false, &x(Opts::new(idp, 33).encrypted(&rsa15)));
    let mut o = Opts::new(idp, 34);
    o.sign_assertion = false;
    out.acs(
        "encrypted-unsigned-inside-assertion-required",
        ASSERTION,
        false,
        &x(o.encrypted(&enc_default())),
    );
    let mut o = Opts::new(idp, 35);
    o.sign_response = false;
    o.sha1 = true;
    out.acs("encrypted-sha1-inside", EITHER, false, &x(o.encrypted(&enc_default())));
    let o = Opts::new(idp, 36);
    let mut m = Opts::new(idp, 37).evil(37);
    m.sign_assertion = false;
    let evil_enc = encrypt(&m.assertion(), &enc_default());
    out.acs(
        "mixed-plain-and-encrypted",
        EITHER,
        false,
        &x(o.wrap(&format!("{}{evil_enc}", o.assertion()))),
    );
    let mut g = Opts::new(idp, 38);
    g.in_response_to = Some(REQUEST_ID.into());
    let genuine = g.encrypted(&enc_default());
    let mut w = Opts::new(idp, 39).evil(39);
    w.sign_response = false;
    w.sign_assertion = false;
    w.in_response_to = Some(REQUEST_ID.into());
    out.acs(
        "encrypted-wrapped",
        EITHER,
        false,
        &x(w.wrap(&format!(
            "{evil_enc}<samlp:Extensions>{genuine}</samlp:Extensions>"
        ))),
    );
    let mut o = Opts::new(idp, 40);
    o.sign_response = false;
    o.sign_assertion = false;
    o.name_id = "bob@example.com".into();
    let plain = o
        .assertion()
        .replace("bob@example.com</saml:NameID>", "bob@example.com<!---->.evil</saml:NameID>");
    out.acs(
        "encrypted-comment-inside",
        EITHER,
        false,
        &x(o.wrap(&encrypt(&plain, &enc_default()))),
    );
    let flood = Enc {
        keys: 3,
        ..enc_default()
    };
    let mut o = Opts::new(idp, 41);
    o.sign_response = false;
    out.acs("encrypted-key-flood", EITHER, false, &x(o.encrypted(&flood)));
    let ciphertext_tampered = {
        let mut o = Opts::new(idp, 42);
        o.sign_response = false;
        let xml = o.encrypted(&Enc {
            content: "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            ..enc_default()
        });
        // A byte of the last CipherValue (the content) flipped.
        let at = xml.rfind("</xenc:CipherValue>").unwrap() - 8;
        let mut b = xml.into_bytes();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        b
    };
    out.acs("encrypted-ciphertext-tampered", EITHER, false, &ciphertext_tampered);
    println!("acs: {} seeds", out.n);
}

fn logout_request(o: &Opts, destination: Option<&str>, signed: bool) -> String {
    let sig = if signed {
        o.signer.template(&o.response_id, false)
    } else {
        String::new()
    };
    let dest = destination
        .map(|d| format!(" Destination=\"{d}\""))
        .unwrap_or_default();
    let xml = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{}\" Version=\"2.0\" IssueInstant=\"{FIXED_NOW}\"{dest} NotOnOrAfter=\"2026-12-01T00:05:00Z\">\
<saml:Issuer>{}</saml:Issuer>{sig}<saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{}</saml:NameID><samlp:SessionIndex>_session_1</samlp:SessionIndex></samlp:LogoutRequest>",
        o.response_id, o.issuer, o.name_id
    );
    if signed {
        o.signer.sign(&xml)
    } else {
        xml
    }
}

fn logout_response(o: &Opts, destination: &str, signed: bool) -> String {
    let sig = if signed {
        o.signer.template(&o.response_id, false)
    } else {
        String::new()
    };
    let xml = format!(
        "<samlp:LogoutResponse xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{}\" Version=\"2.0\" IssueInstant=\"{FIXED_NOW}\" Destination=\"{destination}\" InResponseTo=\"{REQUEST_ID}\">\
<saml:Issuer>{}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value=\"{SUCCESS}\"/></samlp:Status></samlp:LogoutResponse>",
        o.response_id, o.issuer
    );
    if signed {
        o.signer.sign(&xml)
    } else {
        xml
    }
}

/// An SLO input on the redirect binding built from parts, the query signed
/// by `signer` (as `samael::crypto::sign_url`, like the test IdP) unless None.
fn redirect_seed(response: bool, xml: &str, relay: &str, signer: Option<&Signer>, extra: &str) -> Vec<u8> {
    let param = if response { "SAMLResponse" } else { "SAMLRequest" };
    let unsigned = SloParts {
        xml: xml.as_bytes(),
        relay: relay.as_bytes(),
        sigalg: b"",
        signature: b"",
        extra: b"",
    };
    let (sigalg, signature) = match signer {
        Some(s) => {
            let url = url::Url::parse(&format!("{SLO_BASE}?{}", redirect_query(param, &unsigned))).unwrap();
            let signed = samael::crypto::sign_url(url, &s.key).unwrap();
            let get = |k: &str| {
                signed
                    .query_pairs()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.into_owned())
                    .unwrap()
            };
            (get("SigAlg"), get("Signature"))
        }
        None => (String::new(), String::new()),
    };
    let mut v = vec![if response { 4 } else { 0 }];
    for (i, part) in [xml, relay, &sigalg, &signature, extra].iter().enumerate() {
        if i > 0 {
            v.push(0);
        }
        v.extend_from_slice(part.as_bytes());
    }
    v
}

fn post_seed(response: bool, xml: &str) -> Vec<u8> {
    let mut v = vec![2 | if response { 4 } else { 0 }];
    v.extend_from_slice(xml.as_bytes());
    v
}

fn slo_seeds(root: &Path, idp: &Signer, evil: &Signer) {
    let mut out = Out::new(root, "slo");
    let o = Opts::new(idp, 100);
    let req = logout_request(&o, Some(SLO_URL), false);
    out.put("redirect-signed", &redirect_seed(false, &req, "", Some(idp), ""));
    out.put("redirect-signed-relay", &redirect_seed(false, &req, "back-to-idp", Some(idp), ""));
    out.put("redirect-unsigned", &redirect_seed(false, &req, "", None, ""));
    let mut sha1 = redirect_seed(false, &req, "", None, "");
    sha1.extend_from_slice(b"\0http://www.w3.org/2000/09/xmldsig#rsa-sha1\0AAAA");
    out.put("redirect-sha1-sigalg", &sha1);
    out.put(
        "redirect-duplicate-parameter",
        &redirect_seed(false, &req, "", Some(idp), "SAMLRequest=AAAA"),
    );
    let e = Opts::new(evil, 101).evil(101);
    out.put(
        "redirect-attacker-key",
        &redirect_seed(false, &logout_request(&e, Some(SLO_URL), false), "", Some(evil), ""),
    );
    let o2 = Opts::new(idp, 102);
    out.put(
        "redirect-no-destination",
        &redirect_seed(false, &logout_request(&o2, None, false), "", Some(idp), ""),
    );
    let o3 = Opts::new(idp, 103);
    let resp = logout_response(&o3, SLO_URL, false);
    out.put("redirect-logout-response", &redirect_seed(true, &resp, "", Some(idp), ""));
    out.put(
        "redirect-logout-response-wrong-destination",
        &redirect_seed(true, &logout_response(&o3, "https://evil.example/slo", false), "", Some(idp), ""),
    );
    // The same signed request as the raw query an IdP sends.
    let parts = redirect_seed(false, &req, "back-to-idp", Some(idp), "");
    let raw = redirect_query("SAMLRequest", &slo_parts(&parts[1..]));
    let mut v = vec![1u8];
    v.extend_from_slice(raw.as_bytes());
    out.put("redirect-raw-query", &v);
    // POST binding.
    let o4 = Opts::new(idp, 104);
    out.put("post-signed", &post_seed(false, &logout_request(&o4, Some(SLO_URL), true)));
    let e5 = Opts::new(idp, 105).evil(105);
    out.put("post-unsigned", &post_seed(false, &logout_request(&e5, Some(SLO_URL), false)));
    let forged = logout_request(&e5, Some(SLO_URL), false).replacen(
        "</saml:Issuer>",
        &format!(
            "</saml:Issuer>{}",
            forged_signature("#_evil_r105", &xslt_fetching("http://127.0.0.1:9/xslt"), "")
        ),
        1,
    );
    out.put("post-forged-xslt", &post_seed(false, &forged));
    let o6 = Opts::new(idp, 106);
    out.put("post-logout-response", &post_seed(true, &logout_response(&o6, SLO_URL, true)));
    let o7 = Opts::new(idp, 107);
    let body = format!(
        "SAMLRequest={}&RelayState=x",
        url::form_urlencoded::byte_serialize(b64(logout_request(&o7, Some(SLO_URL), true).as_bytes()).as_bytes())
            .collect::<String>()
    );
    let mut v = vec![3u8];
    v.extend_from_slice(body.as_bytes());
    out.put("post-raw-body", &v);
    let dtd = format!("<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}", req.replacen("_session_1", "&x;", 1));
    out.put("redirect-dtd", &redirect_seed(false, &dtd, "", None, ""));
    let comment = req.replacen("alice@example.com", "alice@example.com<!---->", 1);
    out.put("post-comment", &post_seed(false, &comment));
    println!("slo: {} seeds", out.n);
}

fn metadata_doc(cert_b64s: &[&str], sso_binding: &str, slo: bool, extra: &str) -> String {
    let keys: String = cert_b64s
        .iter()
        .map(|c| format!("<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"))
        .collect();
    let slo = if slo {
        format!("<md:SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"{IDP_SLO_URL}\"/>")
    } else {
        String::new()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{IDP_ENTITY}\" validUntil=\"2099-01-01T00:00:00Z\">\
<md:IDPSSODescriptor WantAuthnRequestsSigned=\"false\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}{slo}\
<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>\
<md:SingleSignOnService Binding=\"{sso_binding}\" Location=\"https://idp.example.test/sso\"/></md:IDPSSODescriptor>{extra}</md:EntityDescriptor>\n"
    )
}

fn metadata_seeds(root: &Path, idp: &Signer, evil: &Signer) {
    let mut out = Out::new(root, "metadata");
    let redirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
    let post = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
    out.put("idp", metadata_doc(&[&idp.cert_b64], redirect, true, "").as_bytes());
    out.put(
        "rollover-two-certs",
        metadata_doc(&[&idp.cert_b64, &evil.cert_b64], redirect, false, "").as_bytes(),
    );
    let org = "<md:Organization><md:OrganizationName xml:lang=\"en\">Example</md:OrganizationName><md:OrganizationDisplayName xml:lang=\"en\">Example</md:OrganizationDisplayName><md:OrganizationURL xml:lang=\"en\">https://example.test</md:OrganizationURL></md:Organization>\
<md:ContactPerson contactType=\"technical\"><md:EmailAddress>mailto:it@example.test</md:EmailAddress></md:ContactPerson>";
    out.put(
        "organization-contact-comment",
        metadata_doc(&[&idp.cert_b64], redirect, true, org)
            .replacen("<md:IDPSSODescriptor", "<!-- real metadata has comments --><md:IDPSSODescriptor", 1)
            .as_bytes(),
    );
    out.put("no-signing-cert", metadata_doc(&[], redirect, true, "").as_bytes());
    out.put("post-only-sso", metadata_doc(&[&idp.cert_b64], post, true, "").as_bytes());
    out.put("bad-certificate", metadata_doc(&["AAAA"], redirect, true, "").as_bytes());
    out.put(
        "dtd",
        format!("<!DOCTYPE md [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}", metadata_doc(&[&idp.cert_b64], redirect, true, "")).as_bytes(),
    );
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16)
        .chain(metadata_doc(&[&idp.cert_b64], redirect, true, "").encode_utf16())
        .flat_map(|u| u.to_le_bytes())
        .collect();
    out.put("utf16", &utf16);
    let sp = portcullis::saml::metadata::sp_metadata(&env().acs[0].sp);
    out.put("sp-metadata", sp.as_bytes());
    let mut o = Opts::new(idp, 200);
    o.response_id = format!("{SIGNED_ID_PREFIX}md");
    let signed = idp.sign(
        &metadata_doc(&[&idp.cert_b64], redirect, true, "")
            .replacen(" validUntil", &format!(" ID=\"{}\" validUntil", o.response_id), 1)
            .replacen(
                "<md:IDPSSODescriptor",
                &format!("{}<md:IDPSSODescriptor", idp.template(&o.response_id, false)),
                1,
            ),
    );
    out.put("signed", signed.as_bytes());
    println!("metadata: {} seeds", out.n);
}

fn return_url_seeds(root: &Path) {
    let mut out = Out::new(root, "return_url");
    for (name, t) in [
        ("path", "/app?x=1"),
        ("root", "/"),
        ("protocol-relative", "//evil.example"),
        ("backslash", "/\\evil.example"),
        ("absolute", "https://evil.example/"),
        ("javascript", "javascript:alert(1)"),
        ("newline", "/a\nb"),
        ("tab-slash", "/\t/evil.example"),
        ("encoded-slash", "/%2F%2Fevil.example"),
        ("dot-segments", "/./..//evil.example"),
        ("userinfo", "/@evil.example"),
        ("unicode", "/caf\u{e9}/\u{ff0f}\u{ff0f}evil"),
        ("rd-query", "rd=%2F%2Fevil.example&idp=x"),
        ("rd-query-ok", "rd=%2Fapp%3Fx%3D1"),
        ("relay-state-form", "SAMLResponse=AAAA&RelayState=%2F%5Cevil"),
        ("del", "/a\u{7f}b"),
        ("c1-control", "/a\u{85}b"),
    ] {
        out.put(name, t.as_bytes());
    }
    println!("return_url: {} seeds", out.n);
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let idp = signer(IDP_KEY, IDP_CERT);
    let evil = signer(ATTACKER_KEY, ATTACKER_CERT);
    acs_seeds(&root, &idp, &evil);
    slo_seeds(&root, &idp, &evil);
    metadata_seeds(&root, &idp, &evil);
    return_url_seeds(&root);
    // Self-check: the seeds meant to verify do, through the harness's own path.
    let _ = std::io::stdout().flush();
}
