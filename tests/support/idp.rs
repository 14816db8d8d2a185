//! A test SAML IdP: its own RSA key and certificate (made here), signed
//! Responses built from templates so every malformed case can be produced,
//! assertions encrypted for the SP the way IdPs do (XML Encryption by the
//! `xmlsec1` CLI, an implementation independent of the gateway's), and a
//! reader for the gateway's HTTP-Redirect AuthnRequests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use samael::crypto::{Crypto, CryptoProvider};

pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

pub struct TestIdp {
    pub entity_id: String,
    key: openssl::pkey::PKey<openssl::pkey::Private>,
    key_der: Vec<u8>,
    pub cert_pem: String,
    pub cert_b64: String,
}

fn rand_id() -> String {
    let b = portcullis::secret::random_bytes::<12>();
    format!(
        "_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl TestIdp {
    pub fn new(entity_id: &str) -> Self {
        use openssl::asn1::Asn1Time;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        use openssl::x509::{X509NameBuilder, X509};
        let rsa = Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test-idp").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = openssl::bn::BigNum::from_u32(rand::random::<u32>())
            .unwrap()
            .to_asn1_integer()
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let der = cert.to_der().unwrap();
        Self {
            entity_id: entity_id.to_string(),
            key_der: key.rsa().unwrap().private_key_to_der().unwrap(),
            key,
            cert_pem: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
            cert_b64: base64::engine::general_purpose::STANDARD.encode(der),
        }
    }

    /// The private key as PKCS#8 PEM (for using a TestIdp key pair as an SP key).
    pub fn private_key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap()
    }

    pub fn write_cert(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.cert_pem).unwrap();
        p
    }

    /// TOML for a `[[saml.idp]]` pointing at this IdP.
    /// Most tests post unsolicited responses, so they opt in to IdP-initiated
    /// sign-in (off by default) without the confirmation page, unless
    /// `extra` says otherwise or holds the marker `DEFAULTS`.
    pub fn idp_toml(&self, id: &str, cert: &Path, extra: &str) -> String {
        let extra = if extra.contains("allow_idp_initiated") {
            extra.to_string()
        } else if extra.contains("DEFAULTS") {
            extra.replace("DEFAULTS", "")
        } else {
            format!("allow_idp_initiated = true\nidp_initiated_confirm = false\n{extra}")
        };
        format!(
            "[[saml.idp]]\nid = \"{id}\"\nentity_id = \"{}\"\nsso_url = \"https://idp.example.test/sso/{id}\"\ncertificate = \"{}\"\n{extra}\n",
            self.entity_id,
            cert.display()
        )
    }

    pub fn signature_template(&self, id: &str, sha1: bool) -> String {
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
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
<ds:SignatureMethod Algorithm=\"{sig}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
<ds:DigestMethod Algorithm=\"{dig}\"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>\
<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate>\
</ds:X509Data></ds:KeyInfo></ds:Signature>",
            self.cert_b64
        )
    }

    /// Signs `xml` (enveloped; the template must be in place) with this IdP's key.
    pub fn sign(&self, xml: &str) -> String {
        let signed = Crypto::sign_xml(xml, &self.key_der).expect("xmlsec signs");
        strip_decl(&signed)
    }

    /// The assertion alone (signed when `o.sign_assertion`).
    pub fn assertion(&self, o: &ResponseOpts) -> String {
        let signer = o.signer.unwrap_or(self);
        let irt = o
            .in_response_to
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let mut attrs = String::new();
        for (name, values) in &o.attributes {
            attrs.push_str(&format!("<saml:Attribute Name=\"{name}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">"));
            for v in values {
                attrs.push_str(&format!("<saml:AttributeValue>{v}</saml:AttributeValue>"));
            }
            attrs.push_str("</saml:Attribute>");
        }
        let audience = o
            .audience
            .as_ref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{a}</saml:Audience></saml:AudienceRestriction>"))
            .unwrap_or_default();
        let sig = if o.sign_assertion {
            signer.signature_template(&o.assertion_id, o.sha1)
        } else {
            String::new()
        };
        let xml = format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{aid}\" IssueInstant=\"{ii}\" Version=\"2.0\">\
<saml:Issuer>{issuer}</saml:Issuer>{sig}<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{nameid}</saml:NameID>\
<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"><saml:SubjectConfirmationData{irt} NotOnOrAfter=\"{noa}\" Recipient=\"{rcpt}\"/></saml:SubjectConfirmation></saml:Subject>\
<saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\">{audience}{extra}</saml:Conditions>\
<saml:AuthnStatement AuthnInstant=\"{ii}\" SessionIndex=\"{sidx}\"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>\
<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>",
            aid = o.assertion_id,
            ii = ts(o.issue_instant),
            issuer = o.issuer.clone().unwrap_or_else(|| self.entity_id.clone()),
            nameid = o.name_id,
            noa = ts(o.not_on_or_after),
            nb = ts(o.not_before),
            rcpt = o.recipient,
            sidx = o.session_index,
            extra = o.extra_conditions,
        );
        if o.sign_assertion {
            signer.sign(&xml)
        } else {
            xml
        }
    }

    /// A complete Response XML, signed as `o` says; with `o.encrypt_for`,
    /// the assertion (signed or not) is encrypted before the Response is
    /// signed, as IdPs do.
    pub fn response_xml(&self, o: &ResponseOpts) -> String {
        let assertion = self.assertion(o);
        match &o.encrypt_for {
            Some(enc) => self.wrap(o, &encrypt_assertion(&assertion, enc)),
            None => self.wrap(o, &assertion),
        }
    }

    /// Wraps any assertion XML in a Response (signed when `o.sign_response`).
    pub fn wrap(&self, o: &ResponseOpts, assertion: &str) -> String {
        let signer = o.signer.unwrap_or(self);
        let irt = o
            .in_response_to
            .as_ref()
            .map(|i| format!(" InResponseTo=\"{i}\""))
            .unwrap_or_default();
        let dest = o
            .destination
            .as_ref()
            .map(|d| format!(" Destination=\"{d}\""))
            .unwrap_or_default();
        let sig = if o.sign_response {
            signer.signature_template(&o.response_id, o.sha1)
        } else {
            String::new()
        };
        let xml = format!(
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{ii}\"{dest}{irt}>\
<saml:Issuer>{issuer}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion}</samlp:Response>",
            rid = o.response_id,
            ii = ts(o.issue_instant),
            issuer = o.issuer.clone().unwrap_or_else(|| self.entity_id.clone()),
            status = o.status,
        );
        if o.sign_response {
            signer.sign(&xml)
        } else {
            xml
        }
    }

    /// Base64 of a signed Response, as the IdP POSTs it.
    pub fn response_b64(&self, o: &ResponseOpts) -> String {
        b64(&self.response_xml(o))
    }
}

impl TestIdp {
    fn logout_request_xml(
        &self,
        id: &str,
        destination: &str,
        name_id: &str,
        session_index: Option<&str>,
        signed: bool,
    ) -> String {
        let idx = session_index
            .map(|i| format!("<samlp:SessionIndex>{i}</samlp:SessionIndex>"))
            .unwrap_or_default();
        let sig = if signed {
            self.signature_template(id, false)
        } else {
            String::new()
        };
        format!(
            "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{destination}\">\
<saml:Issuer>{}</saml:Issuer>{sig}<saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{name_id}</saml:NameID>{idx}</samlp:LogoutRequest>",
            ts(Utc::now()),
            self.entity_id
        )
    }

    /// An IdP-initiated LogoutRequest on the redirect binding, signed
    /// (SigAlg + Signature) unless `signed` is false. Returns (request id, path+query).
    pub fn logout_redirect(
        &self,
        slo_path: &str,
        name_id: &str,
        session_index: Option<&str>,
        signed: bool,
    ) -> (String, String) {
        use std::io::Write;
        let id = rand_id();
        let xml = self.logout_request_xml(&id, slo_path, name_id, session_index, false);
        let mut deflated = Vec::new();
        {
            let mut enc =
                flate2::write::DeflateEncoder::new(&mut deflated, flate2::Compression::default());
            enc.write_all(xml.as_bytes()).unwrap();
        }
        let mut url = url::Url::parse(slo_path).unwrap();
        url.query_pairs_mut()
            .append_pair(
                "SAMLRequest",
                &base64::engine::general_purpose::STANDARD.encode(deflated),
            )
            .append_pair("RelayState", "back-to-idp");
        if signed {
            url = samael::crypto::sign_url(url, &self.key).unwrap();
        }
        (id, format!("{}?{}", url.path(), url.query().unwrap()))
    }

    /// Any SLO message XML on the redirect binding as `param` (SAMLRequest
    /// or SAMLResponse), signed unless `signed` is false; returns path+query.
    pub fn redirect_message(&self, slo_url: &str, param: &str, xml: &str, signed: bool) -> String {
        use std::io::Write;
        let mut deflated = Vec::new();
        {
            let mut enc =
                flate2::write::DeflateEncoder::new(&mut deflated, flate2::Compression::default());
            enc.write_all(xml.as_bytes()).unwrap();
        }
        let mut url = url::Url::parse(slo_url).unwrap();
        url.query_pairs_mut().append_pair(
            param,
            &base64::engine::general_purpose::STANDARD.encode(deflated),
        );
        if signed {
            url = samael::crypto::sign_url(url, &self.key).unwrap();
        }
        format!("{}?{}", url.path(), url.query().unwrap())
    }

    /// An IdP-initiated LogoutRequest on the POST binding (enveloped signature).
    pub fn logout_post_b64(&self, destination: &str, name_id: &str) -> (String, String) {
        let id = rand_id();
        let xml = self.logout_request_xml(&id, destination, name_id, None, true);
        (id.clone(), b64(&self.sign(&xml)))
    }
}

pub fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml.as_bytes())
}

pub fn strip_decl(xml: &str) -> String {
    let t = xml.trim_start();
    match t.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start().to_string())
            .unwrap_or_default(),
        None => t.to_string(),
    }
}

/// Everything a Response can vary in; `ResponseOpts::new` is a valid one.
pub struct ResponseOpts<'a> {
    pub acs: String,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub attributes: Vec<(String, Vec<String>)>,
    pub sign_response: bool,
    pub sign_assertion: bool,
    pub destination: Option<String>,
    pub recipient: String,
    pub issue_instant: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_on_or_after: DateTime<Utc>,
    pub status: String,
    pub assertion_id: String,
    pub response_id: String,
    pub session_index: String,
    pub sha1: bool,
    /// Sign with another IdP's key (an attacker's).
    pub signer: Option<&'a TestIdp>,
    /// Send the assertion as an EncryptedAssertion for this SP certificate.
    pub encrypt_for: Option<Encryption>,
    /// Raw XML appended inside the assertion's Conditions.
    pub extra_conditions: String,
}

impl<'a> ResponseOpts<'a> {
    /// A valid response for `acs`/`audience` answering `in_response_to`.
    pub fn new(acs: &str, audience: &str, in_response_to: Option<&str>) -> Self {
        let now = Utc::now();
        Self {
            acs: acs.to_string(),
            audience: Some(audience.to_string()),
            issuer: None,
            in_response_to: in_response_to.map(str::to_string),
            name_id: "alice@example.com".into(),
            attributes: vec![
                ("email".into(), vec!["alice@example.com".into()]),
                ("firstName".into(), vec!["Alice".into()]),
                ("lastName".into(), vec!["Doe".into()]),
                ("memberOf".into(), vec!["staff".into(), "admins".into()]),
            ],
            sign_response: true,
            sign_assertion: true,
            destination: Some(acs.to_string()),
            recipient: acs.to_string(),
            issue_instant: now,
            not_before: now - Duration::seconds(30),
            not_on_or_after: now + Duration::minutes(5),
            status: SUCCESS.into(),
            assertion_id: rand_id(),
            response_id: rand_id(),
            session_index: rand_id(),
            sha1: false,
            signer: None,
            encrypt_for: None,
            extra_conditions: String::new(),
        }
    }
}

const XMLENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// XML Encryption content algorithm of an EncryptedAssertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCipher {
    Aes128Cbc,
    Aes256Cbc,
    Aes128Gcm,
    Aes256Gcm,
}

impl ContentCipher {
    pub const ALL: [ContentCipher; 4] = [
        Self::Aes128Cbc,
        Self::Aes256Cbc,
        Self::Aes128Gcm,
        Self::Aes256Gcm,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            Self::Aes128Cbc => "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            Self::Aes256Cbc => "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
            Self::Aes128Gcm => "http://www.w3.org/2009/xmlenc11#aes128-gcm",
            Self::Aes256Gcm => "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        }
    }

    fn session_key(self) -> &'static str {
        match self {
            Self::Aes128Cbc | Self::Aes128Gcm => "aes-128",
            Self::Aes256Cbc | Self::Aes256Gcm => "aes-256",
        }
    }
}

/// RSA-OAEP (MGF1 and digest SHA-1), what ADFS, Entra ID and Okta send.
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
/// RSA PKCS#1 v1.5 key transport (refused by the gateway).
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// How an assertion is encrypted for the SP.
#[derive(Clone, Debug)]
pub struct Encryption {
    /// The certificate (PEM) whose RSA key the content key is encrypted to.
    pub cert_pem: String,
    pub cipher: ContentCipher,
    /// Key transport algorithm URI.
    pub key_transport: &'static str,
    /// The EncryptedKey beside the EncryptedData, referenced from its
    /// KeyInfo (Shibboleth's layout) rather than inside that KeyInfo.
    pub detached_key: bool,
}

impl Encryption {
    /// AES-256-CBC with RSA-OAEP inside the KeyInfo: the common IdP default.
    pub fn new(cert_pem: &str) -> Self {
        Self {
            cert_pem: cert_pem.to_string(),
            cipher: ContentCipher::Aes256Cbc,
            key_transport: RSA_OAEP_MGF1P,
            detached_key: false,
        }
    }
}

/// `<saml:EncryptedAssertion>` holding `assertion_xml` encrypted as `enc`
/// says, by `xmlsec1 encrypt` (a fresh content key each time, the key
/// transported to `enc.cert_pem`, whose certificate goes in the KeyInfo).
pub fn encrypt_assertion(assertion_xml: &str, enc: &Encryption) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sp.crt");
    let data = dir.path().join("assertion.xml");
    let template = dir.path().join("template.xml");
    std::fs::write(&cert, &enc.cert_pem).unwrap();
    std::fs::write(&data, assertion_xml).unwrap();
    let oaep_digest = if enc.key_transport == RSA_OAEP_MGF1P {
        format!("<ds:DigestMethod Algorithm=\"{DSIG}sha1\"/>")
    } else {
        String::new()
    };
    std::fs::write(
        &template,
        format!(
            "<xenc:EncryptedData xmlns:xenc=\"{XMLENC}\" xmlns:ds=\"{DSIG}\" Type=\"{XMLENC}Element\">\
<xenc:EncryptionMethod Algorithm=\"{}\"/><ds:KeyInfo><xenc:EncryptedKey>\
<xenc:EncryptionMethod Algorithm=\"{}\">{oaep_digest}</xenc:EncryptionMethod>\
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo><xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>\
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>",
            enc.cipher.uri(),
            enc.key_transport
        ),
    )
    .unwrap();
    let out = std::process::Command::new("xmlsec1")
        .arg("encrypt")
        .arg("--pubkey-cert-pem")
        .arg(&cert)
        .args(["--session-key", enc.cipher.session_key()])
        .arg("--binary-data")
        .arg(&data)
        .arg(&template)
        .output()
        .expect("xmlsec1 runs (Debian package xmlsec1, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "xmlsec1 encrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut encrypted_data = strip_decl(&String::from_utf8(out.stdout).unwrap())
        .trim_end()
        .to_string();
    let mut beside = String::new();
    if enc.detached_key {
        let start = encrypted_data.find("<xenc:EncryptedKey>").unwrap();
        let end =
            encrypted_data.find("</xenc:EncryptedKey>").unwrap() + "</xenc:EncryptedKey>".len();
        let key = encrypted_data[start..end].replacen(
            "<xenc:EncryptedKey>",
            &format!("<xenc:EncryptedKey xmlns:xenc=\"{XMLENC}\" xmlns:ds=\"{DSIG}\" Id=\"_ek1\">"),
            1,
        );
        encrypted_data.replace_range(
            start..end,
            &format!("<ds:RetrievalMethod Type=\"{XMLENC}EncryptedKey\" URI=\"#_ek1\"/>"),
        );
        beside = key;
    }
    format!(
        "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">{encrypted_data}{beside}</saml:EncryptedAssertion>"
    )
}

/// `xml` with one byte of the encrypted assertion's ciphertext (its
/// EncryptedData CipherValue) flipped, `from_end` bytes before its end.
pub fn tamper_ciphertext(xml: &str, from_end: usize) -> String {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let data = doc
        .descendants()
        .find(|n| n.has_tag_name((XMLENC, "EncryptedData")))
        .expect("an EncryptedData");
    let value = data
        .children()
        .find(|n| n.has_tag_name((XMLENC, "CipherData")))
        .and_then(|d| {
            d.children()
                .find(|n| n.has_tag_name((XMLENC, "CipherValue")))
        })
        .unwrap();
    let range = value.first_child().unwrap().range();
    let text: String = xml[range.clone()]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(text).unwrap();
    let i = bytes.len() - 1 - from_end;
    bytes[i] ^= 0x01;
    format!(
        "{}{}{}",
        &xml[..range.start],
        engine.encode(bytes),
        &xml[range.end..]
    )
}

/// The AuthnRequest carried by an HTTP-Redirect URL: (ID, full XML).
pub fn authn_request_from_url(location: &str) -> (String, String) {
    let url = url::Url::parse(location).expect("absolute IdP URL");
    let req = url
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .map(|(_, v)| v.into_owned())
        .expect("SAMLRequest parameter");
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(req)
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let id = doc.root_element().attribute("ID").unwrap().to_string();
    (id, xml)
}
