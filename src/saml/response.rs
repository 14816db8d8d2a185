//! Validation of a SAML Response posted to the ACS, in two pure steps:
//!
//! 1. [`inspect`] reads the raw message before any signature work: size,
//!    base64, UTF-8 only, no DTD/entities, comments or processing
//!    instructions, signatures of the SAML shape only (`shape`), one
//!    Response with exactly one Assertion or exactly one EncryptedAssertion
//!    (never both), no SHA-1 unless allowed, and which elements carry a
//!    signature of their own.
//! 2. [`verify`] verifies every signature once against the configured
//!    certificates (XSW-safe reduction to the signed content), then reads
//!    every fact from that verified document: which elements were signed,
//!    InResponseTo and Destination (`check_binding`), and samael's checks
//!    (issuer, destination, recipient, times, InResponseTo, status); then
//!    what samael leaves to the caller: every AudienceRestriction, the
//!    configured signature requirement, and the attribute mapping.
//!
//! An EncryptedAssertion takes a detour before samael's checks (see
//! [`verify`]): the Response's signature, if any, is verified first and only
//! the signed ciphertext is decrypted, with the SP key (`xmlenc`); the
//! plaintext gets the checks of step 1, its own signature is verified
//! against the IdP's certificates (XSW-safe, as above), and the Response is
//! rebuilt around the verified assertion for samael's remaining checks.
//!
//! Replay and InResponseTo bookkeeping need the store and live in `web`.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use samael::crypto::{Crypto, CryptoProvider, ReduceMode};

use super::idp::{Idp, SpSettings};
use super::{shape, xmlenc, SamlError};
use crate::config::SignatureRequirement;

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// What the raw message says about itself, before verification.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub xml: String,
    pub response_id: String,
    /// ID of the plain Assertion (None for an EncryptedAssertion).
    pub assertion_id: Option<String>,
    /// InResponseTo of the Response or of a SubjectConfirmationData.
    pub in_response_to: Option<String>,
    /// Issuer of the Response, or of the Assertion when the Response has none.
    pub issuer: Option<String>,
    pub response_signed: bool,
    /// Always false for an EncryptedAssertion: known only after decryption.
    pub assertion_signed: bool,
    pub encrypted: bool,
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, SamlError> {
    shape::parse(xml)
}

/// SHA-1 as a signature or digest algorithm anywhere. The OAEP digest of an
/// EncryptedKey (`xenc:EncryptionMethod/ds:DigestMethod`, SHA-1 by default
/// at most IdPs) is not a signature: OAEP needs no collision resistance.
fn refuse_sha1(doc: &roxmltree::Document) -> Result<(), SamlError> {
    const SHA1: [&str; 3] = [
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
        "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
    ];
    let oaep_digest = |n: &roxmltree::Node| {
        n.has_tag_name((NS_DSIG, "DigestMethod"))
            && n.parent_element()
                .is_some_and(|p| p.has_tag_name((xmlenc::NS_XMLENC, "EncryptionMethod")))
    };
    let sha1 = doc.descendants().filter(|n| n.is_element()).any(|n| {
        n.attributes().any(|a| {
            let v = a.value().trim();
            SHA1.iter().any(|s| v.eq_ignore_ascii_case(s))
        }) && !oaep_digest(&n)
    });
    if sha1 {
        return Err(SamlError::Sha1);
    }
    Ok(())
}

/// Whether `el` carries an enveloped signature of its own (a direct
/// ds:Signature child with a Reference to `#ID`).
fn signed_by_own_signature(el: roxmltree::Node) -> bool {
    let Some(id) = el.attribute("ID") else {
        return false;
    };
    el.children()
        .filter(|n| n.has_tag_name((NS_DSIG, "Signature")))
        .any(|sig| {
            sig.descendants()
                .filter(|n| n.has_tag_name((NS_DSIG, "Reference")))
                .any(|r| r.attribute("URI") == Some(format!("#{id}").as_str()))
        })
}

/// Decodes and inspects the `SAMLResponse` form value.
pub fn inspect(
    saml_response_b64: &str,
    max_bytes: usize,
    allow_sha1: bool,
) -> Result<Inspected, SamlError> {
    if saml_response_b64.len() > max_bytes {
        return Err(SamlError::TooLarge);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(shape::base64_without_whitespace(saml_response_b64))
        .map_err(|_| SamlError::Malformed("SAMLResponse is not base64".into()))?;
    let xml = shape::document_text(raw)?;
    shape::refuse_unsafe_xml(&xml)?;
    let doc = parse(&xml)?;
    if !allow_sha1 {
        refuse_sha1(&doc)?;
    }
    shape::check_signatures(&doc, allow_sha1)?;
    let root = doc.root_element();
    if !(root.has_tag_name((NS_PROTOCOL, "Response"))) {
        return Err(SamlError::Malformed(
            "root element is not a samlp:Response".into(),
        ));
    }
    let response_id = root.attribute("ID").unwrap_or_default().to_string();
    if response_id.is_empty() {
        return Err(SamlError::Malformed("Response has no ID".into()));
    }
    let assertions: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name((NS_ASSERTION, "Assertion")))
        .collect();
    let all_encrypted = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ASSERTION, "EncryptedAssertion")))
        .count();
    let encrypted = all_encrypted > 0;
    let all_assertions = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ASSERTION, "Assertion")))
        .count();
    if encrypted {
        if all_assertions > 0 {
            return Err(SamlError::MixedAssertions);
        }
        let direct = root
            .children()
            .filter(|n| n.has_tag_name((NS_ASSERTION, "EncryptedAssertion")))
            .count();
        if direct != 1 || all_encrypted != 1 {
            return Err(SamlError::Malformed(format!(
                "expected exactly one EncryptedAssertion, found {all_encrypted} ({direct} directly in the Response)"
            )));
        }
    } else if assertions.len() != 1 || all_assertions != 1 {
        return Err(SamlError::Malformed(format!(
            "expected exactly one Assertion, found {all_assertions} ({} directly in the Response)",
            assertions.len()
        )));
    }
    let response_signed = signed_by_own_signature(root);
    let assertion_signed = assertions
        .first()
        .is_some_and(|a| signed_by_own_signature(*a));
    let scd_in_response_to = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ASSERTION, "SubjectConfirmationData")))
        .find_map(|n| n.attribute("InResponseTo"));
    let in_response_to = root
        .attribute("InResponseTo")
        .or(scd_in_response_to)
        .map(str::to_string);
    let issuer_of = |el: roxmltree::Node| {
        el.children()
            .find(|n| n.has_tag_name((NS_ASSERTION, "Issuer")))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    };
    let issuer = issuer_of(root).or_else(|| assertions.first().and_then(|a| issuer_of(*a)));
    let assertion_id = assertions
        .first()
        .and_then(|a| a.attribute("ID"))
        .map(str::to_string);
    Ok(Inspected {
        xml,
        response_id,
        assertion_id,
        in_response_to,
        issuer,
        response_signed,
        assertion_signed,
        encrypted,
    })
}

/// A verified sign-in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Login {
    pub idp: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub assertion_id: String,
    /// When the assertion stops being acceptable (replay cache lifetime).
    pub not_on_or_after: Option<DateTime<Utc>>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// Verifies an inspected response for `idp`. `request_id` is the pending
/// AuthnRequest it answers, or `None` for an IdP-initiated response.
pub fn verify(
    idp: &Idp,
    sp: &SpSettings,
    msg: &Inspected,
    request_id: Option<&str>,
) -> Result<Login, SamlError> {
    let assertion = if msg.encrypted {
        verify_encrypted(idp, sp, msg, request_id)?
    } else {
        verify_plain(idp, msg, request_id)?
    };
    // samael checks the Audience only when present, and ORs several
    // restrictions: SAML Core §2.5.1.4 says each must hold. One at least.
    let restrictions = assertion
        .conditions
        .as_ref()
        .and_then(|c| c.audience_restrictions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let all_hold = !restrictions.is_empty()
        && restrictions
            .iter()
            .all(|r| r.audience.contains(&sp.entity_id));
    if !all_hold {
        return Err(SamlError::Audience(
            restrictions
                .iter()
                .map(|r| r.audience.join(" | "))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let subject = assertion.subject.as_ref().ok_or(SamlError::NoSubject)?;
    let name_id = subject.name_id.as_ref().ok_or(SamlError::NoSubject)?;
    let name_id_value = name_id.value.trim().to_string();
    if name_id_value.is_empty() {
        return Err(SamlError::NoSubject);
    }
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for st in assertion.attribute_statements.iter().flatten() {
        for a in &st.attributes {
            let names = [a.name.as_deref(), a.friendly_name.as_deref()];
            let values: Vec<String> = a
                .values
                .iter()
                .filter_map(|v| v.value.clone())
                .map(|v| v.trim().to_string())
                .collect();
            for n in names.into_iter().flatten() {
                attributes
                    .entry(n.to_string())
                    .or_default()
                    .extend(values.iter().cloned());
            }
        }
    }
    let first = |key: &str| {
        attributes
            .get(key)
            .and_then(|v| v.iter().find(|s| !s.is_empty()))
            .cloned()
    };
    let map = &idp.attributes;
    let is_email_format = name_id
        .format
        .as_deref()
        .is_some_and(|f| f.ends_with(":emailAddress"));
    let email = first(&map.email).or_else(|| {
        (is_email_format || name_id_value.contains('@')).then(|| name_id_value.clone())
    });
    let not_on_or_after = assertion
        .conditions
        .as_ref()
        .and_then(|c| c.not_on_or_after)
        .into_iter()
        .chain(
            subject
                .subject_confirmations
                .iter()
                .flatten()
                .filter_map(|c| {
                    c.subject_confirmation_data
                        .as_ref()
                        .and_then(|d| d.not_on_or_after)
                }),
        )
        .max();
    let mut groups: Vec<String> = attributes.get(&map.groups).cloned().unwrap_or_default();
    groups.retain(|g| !g.is_empty());
    groups.sort();
    groups.dedup();
    Ok(Login {
        idp: idp.id.clone(),
        name_id: name_id_value,
        name_id_format: name_id.format.clone(),
        session_index: assertion
            .authn_statements
            .iter()
            .flatten()
            .find_map(|s| s.session_index.clone()),
        assertion_id: assertion.id.clone(),
        not_on_or_after,
        email: email.map(|e| e.to_ascii_lowercase()),
        given_name: first(&map.given_name),
        family_name: first(&map.family_name),
        display_name: first(&map.display_name),
        groups,
        attributes,
    })
}

/// A plain (unencrypted) Response: every signature is verified once, and
/// every later check reads the verified document (xmlsec's own tree,
/// reduced to what the signatures cover), never the message as posted:
/// 1. the signature requirement is first judged on the inspected message
///    (a cheap refusal), then again on the verified document, and the two
///    views must agree on which elements are signed and on InResponseTo;
/// 2. the binding rules ([`check_binding`]) on the verified document;
/// 3. samael's checks (issuer, destination, recipient, times,
///    InResponseTo, status) on the verified document, without a second
///    signature pass (`Idp::checks_only`).
fn verify_plain(
    idp: &Idp,
    msg: &Inspected,
    request_id: Option<&str>,
) -> Result<samael::schema::Assertion, SamlError> {
    check_requirement(idp, msg.response_signed, msg.assertion_signed)?;
    let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        &msg.xml,
        &idp.certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        idp.sp.allowed_signature_algorithms.as_deref(),
    )
    .map_err(|_| SamlError::Signature)?;
    let reduced = xmlenc::strip_xml_decl(&reduced).to_string();
    let doc = parse(&reduced)?;
    let root = doc.root_element();
    let response_signed = if root.has_tag_name((NS_PROTOCOL, "Response")) {
        if root.attribute("ID") != Some(msg.response_id.as_str()) {
            return Err(SamlError::Signature);
        }
        true
    } else if root.has_tag_name((NS_ASSERTION, "Assertion")) {
        false
    } else {
        return Err(SamlError::Signature);
    };
    let assertions: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ASSERTION, "Assertion")))
        .collect();
    let [assertion] = assertions[..] else {
        return Err(SamlError::Differential(format!(
            "{} assertions in the verified document",
            assertions.len()
        )));
    };
    if assertion.attribute("ID") != msg.assertion_id.as_deref() {
        return Err(SamlError::Differential("assertion ID".into()));
    }
    // Root Assertion: only its own signature can have selected it (every
    // Reference points at its parent). Inside a signed Response: its own
    // signature survives reduction only as signed content of the Response.
    let assertion_signed = !response_signed || signed_by_own_signature(assertion);
    if (response_signed, assertion_signed) != (msg.response_signed, msg.assertion_signed) {
        return Err(SamlError::Differential(format!(
            "signed elements: inspected response={} assertion={}, verified response={response_signed} assertion={assertion_signed}",
            msg.response_signed, msg.assertion_signed
        )));
    }
    check_requirement(idp, response_signed, assertion_signed)?;
    check_binding(&doc, response_signed, msg, request_id)?;
    let provider = match request_id {
        Some(_) => &idp.checks_only,
        None => &idp.checks_only_unsolicited,
    };
    let ids = request_id.map(|id| vec![id]);
    if response_signed {
        provider
            .parse_xml_response(&reduced, ids.as_deref())
            .map_err(SamlError::from_samael)
    } else {
        let assertion: samael::schema::Assertion = reduced
            .parse()
            .map_err(|e| SamlError::Malformed(format!("assertion: {e}")))?;
        provider
            .validate_assertion(&assertion, ids.as_deref())
            .map_err(SamlError::from_samael)?;
        Ok(assertion)
    }
}

/// Binding rules read from the verified document `doc` (a reduced or
/// rebuilt Response, or a bare verified Assertion):
/// - InResponseTo: the value the ACS routed on (the pending request, or
///   none for the unsolicited path) must be exactly what the verified
///   content says, in the signed Response and in every
///   SubjectConfirmationData. A solicited response whose InResponseTo the
///   inspecting parser could not see never takes the unsolicited path.
/// - A signed Response must name its Destination (SAML Bindings §3.5.5.2).
fn check_binding(
    doc: &roxmltree::Document,
    response_signed: bool,
    msg: &Inspected,
    request_id: Option<&str>,
) -> Result<(), SamlError> {
    let root = doc.root_element();
    let mut verified: Vec<&str> = Vec::new();
    if response_signed {
        if root.attribute("Destination").is_none() {
            return Err(SamlError::Destination(
                "missing (required on a signed Response)".into(),
            ));
        }
        verified.extend(root.attribute("InResponseTo"));
    }
    verified.extend(
        doc.descendants()
            .filter(|n| n.has_tag_name((NS_ASSERTION, "SubjectConfirmationData")))
            .filter_map(|n| n.attribute("InResponseTo")),
    );
    if request_id != msg.in_response_to.as_deref() {
        return Err(SamlError::InResponseTo);
    }
    match request_id {
        None if !verified.is_empty() => Err(SamlError::Differential(
            "the verified message answers a request, but none was seen when it was inspected"
                .into(),
        )),
        Some(id) if verified.is_empty() || verified.iter().any(|v| *v != id) => {
            Err(SamlError::InResponseTo)
        }
        _ => Ok(()),
    }
}

/// The configured signature requirement, from which elements carry a
/// signature of their own (verified later, by samael or `verify_encrypted`).
fn check_requirement(
    idp: &Idp,
    response_signed: bool,
    assertion_signed: bool,
) -> Result<(), SamlError> {
    match idp.require_signature {
        SignatureRequirement::Response if !response_signed => Err(SamlError::Unsigned("Response")),
        SignatureRequirement::Assertion if !assertion_signed => {
            Err(SamlError::Unsigned("Assertion"))
        }
        _ if !response_signed && !assertion_signed => {
            Err(SamlError::Unsigned("Response or Assertion"))
        }
        _ => Ok(()),
    }
}

/// Verifies every signature in `xml` against the IdP's certificates and
/// returns the XSW-safe reduction to the signed content, rooted at the
/// element named `(ns, name)` with this `id` (else the signature covered
/// something else, and the message is refused).
fn reduce_to_signed(
    idp: &Idp,
    xml: &str,
    ns: &str,
    name: &str,
    id: &str,
) -> Result<String, SamlError> {
    let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &idp.certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        idp.sp.allowed_signature_algorithms.as_deref(),
    )
    .map_err(|_| SamlError::Signature)?;
    let reduced = xmlenc::strip_xml_decl(&reduced).to_string();
    let doc = parse(&reduced)?;
    let root = doc.root_element();
    if !root.has_tag_name((ns, name)) || root.attribute("ID") != Some(id) {
        return Err(SamlError::Signature);
    }
    Ok(reduced)
}

/// An EncryptedAssertion, in this order:
/// 1. no SP key → refused; the Response's own signature, when it has one,
///    is verified and the message reduced to what it signs, so only signed
///    ciphertext is decrypted (a signature is required here when
///    `require_signature = "response"`);
/// 2. the one EncryptedAssertion is decrypted with the SP key;
/// 3. the plaintext is checked like a plain message (no DTD, comments or
///    SHA-1; exactly one Assertion), then the signature requirement is
///    applied with the inner assertion's own signature, which is verified
///    against the IdP's certificates and reduced like the Response's;
/// 4. the Response is rebuilt with the verified assertion in place of the
///    EncryptedAssertion and given to samael's checks without signature
///    verification (`Idp::checks_only`): everything in it was verified
///    above, or is an unsigned Response shell whose assertion is signed
///    (as for a plain message with only the assertion signed).
fn verify_encrypted(
    idp: &Idp,
    sp: &SpSettings,
    msg: &Inspected,
    request_id: Option<&str>,
) -> Result<samael::schema::Assertion, SamlError> {
    let key = sp.key.as_ref().ok_or(SamlError::NoSpKey)?;
    if idp.require_signature == SignatureRequirement::Response && !msg.response_signed {
        return Err(SamlError::Unsigned("Response"));
    }
    let shell = if msg.response_signed {
        reduce_to_signed(idp, &msg.xml, NS_PROTOCOL, "Response", &msg.response_id)?
    } else {
        msg.xml.clone()
    };
    let doc = parse(&shell)?;
    // Whatever namespace: samael's parser goes by local names.
    let named = |local: &str| {
        doc.descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == local)
            .count()
    };
    if named("Assertion") > 0 {
        return Err(SamlError::MixedAssertions);
    }
    let encrypted: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name((NS_ASSERTION, "EncryptedAssertion")))
        .collect();
    let [ea] = encrypted[..] else {
        return Err(SamlError::Malformed(
            "expected exactly one EncryptedAssertion".into(),
        ));
    };
    if named("EncryptedAssertion") != 1 {
        return Err(SamlError::Malformed(
            "expected exactly one EncryptedAssertion".into(),
        ));
    }
    let plaintext = xmlenc::decrypt_assertion(ea, key)?;

    shape::refuse_unsafe_xml(&plaintext)?;
    shape::prescan(&plaintext)?;
    let inner = roxmltree::Document::parse_with_options(
        &plaintext,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..Default::default()
        },
    )
    .map_err(|e| SamlError::Decrypt(format!("decrypted content is not XML: {e}")))?;
    if !sp.allow_sha1 {
        refuse_sha1(&inner)?;
    }
    shape::check_signatures(&inner, sp.allow_sha1)?;
    let root = inner.root_element();
    if !root.has_tag_name((NS_ASSERTION, "Assertion")) {
        return Err(SamlError::Decrypt(
            "decrypted content is not a saml:Assertion".into(),
        ));
    }
    let nested = inner.descendants().filter(|n| {
        n.is_element()
            && *n != root
            && matches!(n.tag_name().name(), "Assertion" | "EncryptedAssertion")
    });
    if nested.count() > 0 {
        return Err(SamlError::Malformed(
            "the decrypted Assertion contains another assertion".into(),
        ));
    }
    let assertion_id = root
        .attribute("ID")
        .ok_or_else(|| SamlError::Malformed("Assertion has no ID".into()))?
        .to_string();
    let inner_signed = signed_by_own_signature(root);
    check_requirement(idp, msg.response_signed, inner_signed)?;
    let has_signature = inner
        .descendants()
        .any(|n| n.has_tag_name((NS_DSIG, "Signature")));
    let assertion_xml = if has_signature {
        reduce_to_signed(idp, &plaintext, NS_ASSERTION, "Assertion", &assertion_id)?
    } else {
        plaintext.clone()
    };
    drop(inner);

    let range = ea.range();
    let rebuilt = format!(
        "{}{}{}",
        &shell[..range.start],
        assertion_xml.trim_end(),
        &shell[range.end..]
    );
    check_binding(&parse(&rebuilt)?, msg.response_signed, msg, request_id)?;
    let (provider, ids) = match request_id {
        Some(id) => (&idp.checks_only, Some(vec![id])),
        None => (&idp.checks_only_unsolicited, None),
    };
    provider
        .parse_xml_response(&rebuilt, ids.as_deref())
        .map_err(SamlError::from_samael)
}
