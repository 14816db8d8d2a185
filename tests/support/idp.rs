//! A test SAML IdP: its own RSA key and certificate (made here), signed
//! Responses built from templates so every malformed case can be produced,
//! and a reader for the gateway's HTTP-Redirect AuthnRequests.
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
    pub fn idp_toml(&self, id: &str, cert: &Path, extra: &str) -> String {
        format!(
            "[[saml.idp]]\nid = \"{id}\"\nentity_id = \"{}\"\nsso_url = \"https://idp.example.test/sso/{id}\"\ncertificate = \"{}\"\n{extra}\n",
            self.entity_id,
            cert.display()
        )
    }

    fn signature_template(&self, id: &str, sha1: bool) -> String {
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

    fn sign(&self, xml: &str) -> String {
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
<saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\">{audience}</saml:Conditions>\
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
        );
        if o.sign_assertion {
            signer.sign(&xml)
        } else {
            xml
        }
    }

    /// A complete Response XML, signed as `o` says.
    pub fn response_xml(&self, o: &ResponseOpts) -> String {
        let assertion = self.assertion(o);
        self.wrap(o, &assertion)
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
        }
    }
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
