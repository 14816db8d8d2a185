//! Single logout over the HTTP-Redirect and HTTP-POST bindings: the
//! LogoutRequest we send when a user signs out here, the LogoutResponse we
//! answer to an IdP's LogoutRequest, and the verification of an incoming
//! LogoutRequest (signed with a configured IdP certificate, nothing else).

use std::io::{Read, Write};

use base64::Engine;
use samael::crypto::{AllowedSignatureAlgorithm, Crypto, CryptoProvider, ReduceMode, UrlVerifier};

use super::idp::{Idp, SpSettings};
use super::SamlError;
use crate::html::escape;

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// What single logout needs to name an IdP session.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SsoLink {
    pub idp: String,
    pub name_id: String,
    #[serde(default)]
    pub name_id_format: Option<String>,
    #[serde(default)]
    pub session_index: Option<String>,
    /// Groups the IdP asserted at sign-in (kept when the directory changes).
    #[serde(default)]
    pub asserted_groups: Vec<String>,
}

/// Largest inflated SAML message accepted on the redirect binding.
const MAX_INFLATED: u64 = 256 * 1024;

/// Signature algorithms accepted on the redirect binding (checked before
/// samael's verifier, which panics on some unknown values).
const REDIRECT_SIGALGS: [&str; 2] = [
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
];

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_id() -> String {
    let b = crate::secret::random_bytes::<16>();
    format!("_{}", hex::encode(b))
}

/// `base` + `?param=<deflated base64 xml>[&RelayState=]`, signed when the SP has a key.
fn redirect(
    base: &str,
    param: &str,
    xml: &str,
    relay: Option<&str>,
    sp: &SpSettings,
) -> Result<String, SamlError> {
    let mut deflated = Vec::new();
    {
        let mut enc =
            flate2::write::DeflateEncoder::new(&mut deflated, flate2::Compression::default());
        enc.write_all(xml.as_bytes())
            .map_err(|e| SamlError::Other(e.to_string()))?;
    }
    let mut url = url::Url::parse(base).map_err(|e| SamlError::Other(format!("SLO URL: {e}")))?;
    url.query_pairs_mut().append_pair(
        param,
        &base64::engine::general_purpose::STANDARD.encode(deflated),
    );
    if let Some(r) = relay.filter(|r| !r.is_empty()) {
        url.query_pairs_mut().append_pair("RelayState", r);
    }
    if let Some(key) = &sp.key {
        url = samael::crypto::sign_url(url, key)
            .map_err(|e| SamlError::Other(format!("signing: {e}")))?;
    }
    Ok(url.to_string())
}

/// Where to send the browser to end the IdP session too (None: the IdP has no SLO).
pub fn logout_request_url(
    sp: &SpSettings,
    idp: &Idp,
    link: &SsoLink,
) -> Result<Option<String>, SamlError> {
    let Some(slo) = &idp.slo_url else {
        return Ok(None);
    };
    let format = link
        .name_id_format
        .as_deref()
        .map(|f| format!(" Format=\"{}\"", escape(f)))
        .unwrap_or_default();
    let index = link
        .session_index
        .as_deref()
        .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(i)))
        .unwrap_or_default();
    let xml = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" ID=\"{}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\">\
<saml:Issuer>{}</saml:Issuer><saml:NameID{format}>{}</saml:NameID>{index}</samlp:LogoutRequest>",
        new_id(),
        now(),
        escape(slo),
        escape(&sp.entity_id),
        escape(&link.name_id),
    );
    redirect(slo, "SAMLRequest", &xml, None, sp).map(Some)
}

/// The LogoutResponse answering an IdP's LogoutRequest.
pub fn logout_response_url(
    sp: &SpSettings,
    idp: &Idp,
    in_response_to: &str,
    relay: Option<&str>,
) -> Result<Option<String>, SamlError> {
    let Some(slo) = &idp.slo_url else {
        return Ok(None);
    };
    let xml = format!(
        "<samlp:LogoutResponse xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" ID=\"{}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" InResponseTo=\"{}\">\
<saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status></samlp:LogoutResponse>",
        new_id(),
        now(),
        escape(slo),
        escape(in_response_to),
        escape(&sp.entity_id),
    );
    redirect(slo, "SAMLResponse", &xml, relay, sp).map(Some)
}

/// A verified LogoutRequest from an IdP.
#[derive(Debug)]
pub struct IdpLogout {
    pub id: String,
    pub issuer: String,
    pub name_id: String,
    pub session_indexes: Vec<String>,
    pub destination: Option<String>,
    pub issue_instant: Option<chrono::DateTime<chrono::Utc>>,
    pub not_on_or_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl IdpLogout {
    /// Checks what the signature cannot: it is addressed to us and fresh.
    /// (Single use is checked by the caller against the shared store.)
    /// `Destination` is required: a LogoutRequest the IdP sent to another
    /// SP of the same user must not end sessions here.
    pub fn check_fresh(
        &self,
        sp: &SpSettings,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), SamlError> {
        if self.id.is_empty() {
            return Err(SamlError::Malformed("LogoutRequest has no ID".into()));
        }
        match &self.destination {
            Some(d) if *d == sp.slo_url => {}
            Some(d) => return Err(SamlError::Destination(d.clone())),
            None => {
                return Err(SamlError::Destination(
                    "missing (a LogoutRequest must name our SLO endpoint)".into(),
                ))
            }
        }
        let skew = chrono::Duration::from_std(sp.clock_skew).unwrap_or_default();
        if let Some(t) = self.not_on_or_after {
            if t + skew <= now {
                return Err(SamlError::Expired(t.to_rfc3339()));
            }
        }
        let window = skew + chrono::Duration::minutes(5);
        match self.issue_instant {
            Some(t) if t > now + window => Err(SamlError::NotYetValid(t.to_rfc3339())),
            Some(t) if t + window < now => Err(SamlError::Expired(t.to_rfc3339())),
            Some(_) => Ok(()),
            None => Err(SamlError::Malformed(
                "LogoutRequest has no IssueInstant".into(),
            )),
        }
    }
}

/// A verified LogoutResponse (the IdP's answer to our LogoutRequest).
#[derive(Debug)]
pub struct LogoutAck {
    pub issuer: String,
    pub in_response_to: Option<String>,
    pub issue_instant: Option<chrono::DateTime<chrono::Utc>>,
    pub success: bool,
}

/// Decodes a redirect-binding message (base64 of raw DEFLATE), bounded.
pub fn inflate(b64: &str) -> Result<String, SamlError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| SamlError::Malformed("not base64".into()))?;
    let mut xml = Vec::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .take(MAX_INFLATED)
        .read_to_end(&mut xml)
        .map_err(|_| SamlError::Malformed("not DEFLATE-compressed".into()))?;
    super::shape::document_text(xml)
}

/// Decodes a POST-binding message (base64), bounded like the redirect one.
pub fn decode_post(b64: &str) -> Result<String, SamlError> {
    let compact = super::shape::base64_without_whitespace(b64);
    if compact.len() as u64 > MAX_INFLATED * 4 / 3 + 4 {
        return Err(SamlError::TooLarge);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| SamlError::Malformed("not base64".into()))?;
    super::shape::document_text(raw)
}

fn time_attr(n: roxmltree::Node, name: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    n.attribute(name)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn child_text(n: roxmltree::Node, ns: &str, name: &str) -> Option<String> {
    n.children()
        .find(|c| c.has_tag_name((ns, name)))
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

fn parse_logout_request(xml: &str) -> Result<IdpLogout, SamlError> {
    let doc = super::shape::parse(xml)?;
    let root = doc.root_element();
    if !root.has_tag_name((NS_PROTOCOL, "LogoutRequest")) {
        return Err(SamlError::Malformed("not a LogoutRequest".into()));
    }
    Ok(IdpLogout {
        id: root.attribute("ID").unwrap_or_default().to_string(),
        issuer: child_text(root, NS_ASSERTION, "Issuer").unwrap_or_default(),
        name_id: child_text(root, NS_ASSERTION, "NameID").ok_or(SamlError::NoSubject)?,
        session_indexes: root
            .children()
            .filter(|n| n.has_tag_name((NS_PROTOCOL, "SessionIndex")))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect(),
        destination: root.attribute("Destination").map(str::to_string),
        issue_instant: time_attr(root, "IssueInstant"),
        not_on_or_after: time_attr(root, "NotOnOrAfter"),
    })
}

fn parse_logout_response(xml: &str) -> Result<(LogoutAck, Option<String>), SamlError> {
    let doc = super::shape::parse(xml)?;
    let root = doc.root_element();
    if !root.has_tag_name((NS_PROTOCOL, "LogoutResponse")) {
        return Err(SamlError::Malformed("not a LogoutResponse".into()));
    }
    let success = root
        .children()
        .find(|n| n.has_tag_name((NS_PROTOCOL, "Status")))
        .and_then(|s| {
            s.children()
                .find(|n| n.has_tag_name((NS_PROTOCOL, "StatusCode")))
        })
        .and_then(|c| c.attribute("Value"))
        == Some("urn:oasis:names:tc:SAML:2.0:status:Success");
    Ok((
        LogoutAck {
            issuer: child_text(root, NS_ASSERTION, "Issuer").unwrap_or_default(),
            in_response_to: root.attribute("InResponseTo").map(str::to_string),
            issue_instant: time_attr(root, "IssueInstant"),
            success,
        },
        root.attribute("Destination").map(str::to_string),
    ))
}

/// The issuer of an (unverified) LogoutRequest or LogoutResponse: which
/// IdP's keys to try. Nothing else of the unverified message is used.
pub fn issuer_of(xml: &str) -> Result<String, SamlError> {
    super::shape::refuse_unsafe_xml(xml)?;
    let doc = super::shape::parse(xml)?;
    let root = doc.root_element();
    if !(root.has_tag_name((NS_PROTOCOL, "LogoutRequest"))
        || root.has_tag_name((NS_PROTOCOL, "LogoutResponse")))
    {
        return Err(SamlError::Malformed(
            "not a LogoutRequest or LogoutResponse".into(),
        ));
    }
    Ok(child_text(root, NS_ASSERTION, "Issuer").unwrap_or_default())
}

/// The redirect binding's detached signature over the query string
/// (`param` is SAMLRequest or SAMLResponse).
fn verify_redirect_signature(idp: &Idp, url: &url::Url, param: &str) -> Result<(), SamlError> {
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    // samael verifies the *last* of repeated parameters while we read the
    // first: a repeated one could pair a forged message with a real signature.
    for k in [
        "SAMLRequest",
        "SAMLResponse",
        "RelayState",
        "SigAlg",
        "Signature",
    ] {
        if pairs.iter().filter(|(n, _)| n == k).count() > 1 {
            return Err(SamlError::Malformed(format!("{k} appears more than once")));
        }
    }
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let what = if param == "SAMLRequest" {
        "LogoutRequest"
    } else {
        "LogoutResponse"
    };
    let sigalg = get("SigAlg").ok_or(SamlError::Unsigned(what))?;
    if get("Signature").is_none() {
        return Err(SamlError::Unsigned(what));
    }
    if !REDIRECT_SIGALGS.contains(&sigalg) {
        return Err(if sigalg.contains("sha1") {
            SamlError::Sha1
        } else {
            SamlError::Signature
        });
    }
    let ok = idp.certs.iter().any(|c| {
        UrlVerifier::from_x509(c)
            .ok()
            .and_then(|v| {
                if param == "SAMLRequest" {
                    v.verify_signed_request_url(url).ok()
                } else {
                    v.verify_signed_response_url(url).ok()
                }
            })
            .unwrap_or(false)
    });
    if !ok {
        return Err(SamlError::Signature);
    }
    Ok(())
}

/// The POST binding's enveloped signature: checked for shape, verified,
/// and reduced to the signed element, which is all the caller reads.
fn verify_post_signature(idp: &Idp, xml: &str) -> Result<String, SamlError> {
    super::shape::refuse_unsafe_xml(xml)?;
    super::shape::check_signatures(&super::shape::parse(xml)?, false)?;
    use AllowedSignatureAlgorithm::*;
    let allowed = [
        RsaSha256,
        RsaSha384,
        RsaSha512,
        EcdsaSha256,
        EcdsaSha384,
        EcdsaSha512,
    ];
    let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &idp.certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(&allowed),
    )
    .map_err(|_| SamlError::Signature)?;
    Ok(super::xmlenc::strip_xml_decl(&reduced).to_string())
}

fn same_issuer(idp: &Idp, issuer: &str) -> Result<(), SamlError> {
    if issuer != idp.entity_id {
        return Err(SamlError::Issuer(issuer.to_string()));
    }
    Ok(())
}

/// Verifies a redirect-binding LogoutRequest: `url` is the full request URL.
pub fn verify_redirect(idp: &Idp, url: &url::Url, xml: &str) -> Result<IdpLogout, SamlError> {
    super::shape::refuse_unsafe_xml(xml)?;
    verify_redirect_signature(idp, url, "SAMLRequest")?;
    let logout = parse_logout_request(xml)?;
    same_issuer(idp, &logout.issuer)?;
    Ok(logout)
}

/// Verifies a POST-binding LogoutRequest (enveloped XML signature).
pub fn verify_post(idp: &Idp, xml: &str) -> Result<IdpLogout, SamlError> {
    let reduced = verify_post_signature(idp, xml)?;
    let logout = parse_logout_request(&reduced)?;
    same_issuer(idp, &logout.issuer)?;
    Ok(logout)
}

/// Verifies a LogoutResponse on either binding (`url` for the redirect
/// binding, `None` for POST): signed by the IdP, addressed to our SLO
/// endpoint when it says where, and answering some request.
pub fn verify_logout_response(
    idp: &Idp,
    sp: &SpSettings,
    url: Option<&url::Url>,
    xml: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<LogoutAck, SamlError> {
    let (ack, destination) = match url {
        Some(u) => {
            super::shape::refuse_unsafe_xml(xml)?;
            verify_redirect_signature(idp, u, "SAMLResponse")?;
            parse_logout_response(xml)?
        }
        None => parse_logout_response(&verify_post_signature(idp, xml)?)?,
    };
    same_issuer(idp, &ack.issuer)?;
    match destination {
        Some(d) if d == sp.slo_url => {}
        Some(d) => return Err(SamlError::Destination(d)),
        None => {
            return Err(SamlError::Destination(
                "missing (a LogoutResponse must name our SLO endpoint)".into(),
            ))
        }
    }
    if ack.in_response_to.is_none() {
        return Err(SamlError::InResponseTo);
    }
    let window = chrono::Duration::from_std(sp.clock_skew).unwrap_or_default()
        + chrono::Duration::minutes(5);
    match ack.issue_instant {
        Some(t) if t > now + window => Err(SamlError::NotYetValid(t.to_rfc3339())),
        Some(t) if t + window < now => Err(SamlError::Expired(t.to_rfc3339())),
        Some(_) => Ok(ack),
        None => Err(SamlError::Malformed(
            "LogoutResponse has no IssueInstant".into(),
        )),
    }
}
