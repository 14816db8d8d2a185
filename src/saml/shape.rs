//! What a SAML message may look like before libxml2 or xmlsec see it.
//!
//! xmlsec resolves every `<ds:Reference>` and runs its transforms before it
//! looks at `SignatureValue`, so anything it is allowed to do with a
//! message it does for an unauthenticated sender. The verifier itself is
//! restricted (vendor/samael `restrict_to_saml_profile`: same-document
//! references, the SAML transforms, no manifests); this module refuses the
//! rest of the attack surface first, on the same characters libxml2 will
//! read:
//!
//! - [`document_text`]: UTF-8 only. No byte-order mark but UTF-8's, no XML
//!   declaration naming another encoding (libxml2 honours it, roxmltree
//!   does not: two parsers, two documents), no NUL.
//! - [`refuse_unsafe_xml`]: no DTD or entity declaration, no comment, no
//!   processing instruction.
//! - [`check_signatures`]: at most [`MAX_SIGNATURES`] `ds:Signature`
//!   elements, each enveloped in the element it signs with exactly one
//!   Reference to that element's `ID`, only the transforms and algorithms
//!   of SAML Core §5.4, no `ds:Object`/`Manifest`/`RetrievalMethod`; no
//!   `xml:id` or `xml:base` anywhere (they change what a reference resolves
//!   to); at most [`MAX_ENCRYPTED_KEYS`] `xenc:EncryptedKey` (each one costs
//!   an RSA private operation).

use super::SamlError;

pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const NS_XMLENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
const NS_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// A Response and its Assertion each carry at most one signature.
pub const MAX_SIGNATURES: usize = 2;
/// One EncryptedKey per recipient; two allow a key rollover at the IdP.
pub const MAX_ENCRYPTED_KEYS: usize = 2;
/// enveloped-signature + one canonicalization.
const MAX_TRANSFORMS: usize = 2;

pub const C14N_METHODS: [&str; 3] = [
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
];
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const DIGESTS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const SIGNATURE_METHODS: [&str; 6] = [
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
const SHA1_DIGEST: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const SHA1_SIGNATURES: [&str; 2] = [
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
];

/// The bytes of base64 text without its ASCII whitespace (line breaks,
/// indentation), as every base64 field of a SAML message may carry it.
/// Byte by byte (whitespace is ASCII): filtering `char`s cost more than the
/// decoding on a 10+ KB message.
pub fn base64_without_whitespace(text: &str) -> Vec<u8> {
    text.bytes().filter(|b| !b.is_ascii_whitespace()).collect()
}

/// The message bytes as the one text both parsers will read: UTF-8 without
/// BOM, and an XML declaration (if any) that says UTF-8 or nothing.
pub fn document_text(raw: Vec<u8>) -> Result<String, SamlError> {
    let raw = match raw.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        Some(rest) => rest.to_vec(),
        None => raw,
    };
    if raw.starts_with(&[0xFE, 0xFF])
        || raw.starts_with(&[0xFF, 0xFE])
        || raw.starts_with(&[0, 0, 0xFE, 0xFF])
    {
        return Err(SamlError::Encoding(
            "byte-order mark of UTF-16/UTF-32".into(),
        ));
    }
    if raw.contains(&0) {
        return Err(SamlError::Encoding("NUL byte (UTF-16 or UTF-32?)".into()));
    }
    let text = String::from_utf8(raw).map_err(|_| SamlError::Encoding("not UTF-8".into()))?;
    check_declaration(&text)?;
    Ok(text)
}

/// Refuses an XML declaration whose `encoding` is not UTF-8.
fn check_declaration(text: &str) -> Result<(), SamlError> {
    let Some(rest) = text.strip_prefix("<?xml") else {
        return Ok(());
    };
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        // `<?xml-stylesheet …` and the like: a processing instruction,
        // refused by `refuse_unsafe_xml`.
        return Ok(());
    }
    let decl = rest
        .split_once("?>")
        .map(|(d, _)| d)
        .ok_or_else(|| SamlError::Encoding("unterminated XML declaration".into()))?;
    let Some(pos) = decl.find("encoding") else {
        return Ok(());
    };
    let after = decl[pos + "encoding".len()..].trim_start();
    let after = after
        .strip_prefix('=')
        .ok_or_else(|| SamlError::Encoding("malformed encoding declaration".into()))?
        .trim_start();
    let quote = after
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'')
        .ok_or_else(|| SamlError::Encoding("malformed encoding declaration".into()))?;
    let value = after[1..]
        .split(quote)
        .next()
        .ok_or_else(|| SamlError::Encoding("malformed encoding declaration".into()))?;
    if value.eq_ignore_ascii_case("utf-8") {
        Ok(())
    } else {
        Err(SamlError::Encoding(format!(
            "declared encoding {value:?}; only UTF-8 is accepted"
        )))
    }
}

/// Refuses DTDs and entity declarations (expansion, external entities).
/// All metadata gets is this and [`document_text`]: it is configuration the
/// operator chose, parsed but never signature-verified here, and real
/// metadata carries comments.
pub fn refuse_dtd(xml: &str) -> Result<(), SamlError> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(SamlError::Dtd);
    }
    Ok(())
}

/// Refuses what no IdP sends and attacks use: DTDs/entities (expansion,
/// external entities), comments (they defeat canonicalization and truncate
/// NameIDs) and processing instructions. Applied to every SAML message
/// before parsing.
pub fn refuse_unsafe_xml(xml: &str) -> Result<(), SamlError> {
    refuse_dtd(xml)?;
    if xml.contains("<!--") {
        return Err(SamlError::Comment);
    }
    // The XML declaration is the only `<?` allowed, and only at the start.
    let body = match xml.strip_prefix("<?xml") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_whitespace()) => {
            rest.split_once("?>").map(|(_, b)| b).unwrap_or_default()
        }
        _ => xml,
    };
    if body.contains("<?") {
        return Err(SamlError::Malformed(
            "processing instruction in SAML message".into(),
        ));
    }
    Ok(())
}

/// Most elements in one message. Responses with a thousand group values
/// stay far below it; c14n's namespace pass costs elements × in-scope
/// namespaces², all before the SignatureValue is looked at.
pub const MAX_ELEMENTS: usize = 5000;
/// Deepest nesting (a signed, encrypted SAML response is about 9 deep);
/// inclusive c14n pays depth × namespaces in scope per element.
pub const MAX_DEPTH: usize = 16;
/// Most attributes on one element (roxmltree checks duplicates pairwise).
pub const MAX_ATTRIBUTES: usize = 32;
/// Most namespace declarations in scope at any element (Okta declares xs
/// and xsi on every AttributeValue: in scope they are still a handful).
pub const MAX_NAMESPACES_IN_SCOPE: usize = 24;
/// Most prefixes in an exc-c14n InclusiveNamespaces PrefixList.
pub const MAX_PREFIX_LIST: usize = 8;

/// One linear pass over the text, before any parser, bounding what makes
/// the parsers and c14n work superlinearly: elements, depth, attributes per
/// element, namespace declarations in scope. CDATA is refused: no IdP needs
/// it, and a CDATA split of signed text canonicalizes the same while
/// libxml2's tree differs from the signed fragment (samael's reduction then
/// backtracks). Markup it does not expect (`<!`, `<?` past the XML
/// declaration) is refused too; `refuse_unsafe_xml` says which.
pub fn prescan(xml: &str) -> Result<(), SamlError> {
    let b = xml.as_bytes();
    let mut i = 0;
    if xml.starts_with("<?xml") {
        i = xml.find("?>").map(|p| p + 2).unwrap_or(b.len());
    }
    let mut elements = 0usize;
    // Namespace declarations in scope, per open element.
    let mut scopes: Vec<usize> = Vec::new();
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'/') => {
                scopes.pop();
                i += 2;
                continue;
            }
            Some(b'!') if b[i..].starts_with(b"<![CDATA[") => {
                return Err(SamlError::Malformed("CDATA section in SAML message".into()))
            }
            Some(b'!') | Some(b'?') => {
                refuse_unsafe_xml(xml)?;
                return Err(SamlError::Malformed("unexpected markup".into()));
            }
            _ => {}
        }
        // A start tag: attributes are counted outside quoted values.
        elements += 1;
        if elements > MAX_ELEMENTS {
            return Err(refuse(format!("more than {MAX_ELEMENTS} elements")));
        }
        let mut j = i + 1;
        let mut quote: Option<u8> = None;
        let mut attributes = 0usize;
        let mut declarations = 0usize;
        let mut self_closing = false;
        while j < b.len() {
            let c = b[j];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if c == b'=' => {
                    attributes += 1;
                    // The name before `=` (optional spaces): xmlns or xmlns:p.
                    let name_end = b[..j]
                        .iter()
                        .rposition(|x| !x.is_ascii_whitespace())
                        .map(|p| p + 1)
                        .unwrap_or(0);
                    let name_start = b[..name_end]
                        .iter()
                        .rposition(|x| x.is_ascii_whitespace())
                        .map(|p| p + 1)
                        .unwrap_or(0);
                    let name = &b[name_start..name_end];
                    if name == b"xmlns" || name.starts_with(b"xmlns:") {
                        declarations += 1;
                    }
                }
                None if c == b'>' => {
                    self_closing = b[j - 1] == b'/';
                    break;
                }
                None => {}
            }
            j += 1;
        }
        if attributes > MAX_ATTRIBUTES {
            return Err(refuse(format!(
                "more than {MAX_ATTRIBUTES} attributes on one element"
            )));
        }
        let in_scope = scopes.last().copied().unwrap_or(0) + declarations;
        if in_scope > MAX_NAMESPACES_IN_SCOPE {
            return Err(refuse(format!(
                "more than {MAX_NAMESPACES_IN_SCOPE} namespace declarations in scope"
            )));
        }
        if !self_closing {
            scopes.push(in_scope);
            if scopes.len() > MAX_DEPTH {
                return Err(refuse(format!("nested more than {MAX_DEPTH} deep")));
            }
        }
        i = j + 1;
    }
    Ok(())
}

/// Parses peer XML the one way every check reads it, after [`prescan`].
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, SamlError> {
    prescan(xml)?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(xml, opts)
        .map_err(|e| SamlError::Malformed(format!("XML: {e}")))
}

fn refuse(msg: impl Into<String>) -> SamlError {
    SamlError::SignatureShape(msg.into())
}

/// The signature shape rules of this module, on a parsed message.
pub fn check_signatures(doc: &roxmltree::Document, allow_sha1: bool) -> Result<(), SamlError> {
    let mut signatures = 0usize;
    let mut encrypted_keys = 0usize;
    for n in doc.descendants().filter(|n| n.is_element()) {
        check_attributes(n)?;
        let tag = n.tag_name();
        match (tag.namespace(), tag.name()) {
            (Some(NS_DSIG), "Signature") => {
                signatures += 1;
                if signatures > MAX_SIGNATURES {
                    return Err(refuse(format!(
                        "more than {MAX_SIGNATURES} Signature elements"
                    )));
                }
                check_signature(n, allow_sha1)?;
            }
            (Some(NS_XMLENC), "EncryptedKey") => {
                encrypted_keys += 1;
                if encrypted_keys > MAX_ENCRYPTED_KEYS {
                    return Err(refuse(format!(
                        "more than {MAX_ENCRYPTED_KEYS} EncryptedKey elements"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Attribute rules that keep every parser on the same attribute:
/// libxml2's `xmlGetProp`, which xmlsec uses for `URI` and `Algorithm` and
/// samael for `ID`, ignores namespaces and takes the first attribute with
/// that local name, while roxmltree reads the un-prefixed one. So no two
/// attributes of an element may share a local name, and no namespaced
/// attribute may be called `ID` (samael would register it as an ID).
/// `xml:id` and `xml:base` change what a reference resolves to.
fn check_attributes(n: roxmltree::Node) -> Result<(), SamlError> {
    let attrs: Vec<_> = n.attributes().collect();
    for (i, a) in attrs.iter().enumerate() {
        if a.namespace() == Some(NS_XML) && matches!(a.name(), "id" | "base") {
            return Err(refuse("xml:id or xml:base attribute"));
        }
        if a.namespace().is_some() && a.name() == "ID" {
            return Err(refuse("namespaced ID attribute"));
        }
        if attrs[..i].iter().any(|b| b.name() == a.name()) {
            return Err(refuse(format!(
                "two attributes named {} on one element",
                a.name()
            )));
        }
    }
    Ok(())
}

fn dsig_children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn is_dsig(n: &roxmltree::Node, name: &str) -> bool {
    n.has_tag_name((NS_DSIG, name))
}

fn algorithm<'a>(n: &roxmltree::Node<'a, '_>) -> Result<&'a str, SamlError> {
    n.attribute("Algorithm")
        .ok_or_else(|| refuse(format!("ds:{} without Algorithm", n.tag_name().name())))
}

/// One `ds:Signature`: enveloped in its parent, SignedInfo with a SAML
/// canonicalization and signature method and exactly one Reference to the
/// parent's ID, transforms from the SAML set only, nothing but
/// SignedInfo, SignatureValue and an optional KeyInfo.
fn check_signature(sig: roxmltree::Node, allow_sha1: bool) -> Result<(), SamlError> {
    let parent = sig
        .parent_element()
        .ok_or_else(|| refuse("Signature is the document element"))?;
    let parent_id = parent
        .attribute("ID")
        .ok_or_else(|| refuse("the signed element has no ID"))?;
    let children: Vec<_> = dsig_children(sig).collect();
    let names: Vec<&str> = children
        .iter()
        .map(|c| {
            if c.tag_name().namespace() == Some(NS_DSIG) {
                c.tag_name().name()
            } else {
                "?"
            }
        })
        .collect();
    if !matches!(
        names[..],
        ["SignedInfo", "SignatureValue"] | ["SignedInfo", "SignatureValue", "KeyInfo"]
    ) {
        return Err(refuse(format!(
            "Signature must hold SignedInfo, SignatureValue and an optional KeyInfo (found {names:?})"
        )));
    }
    if let Some(key_info) = children.get(2) {
        for k in dsig_children(*key_info) {
            if !(is_dsig(&k, "X509Data") || is_dsig(&k, "KeyName") || is_dsig(&k, "KeyValue")) {
                return Err(refuse(format!(
                    "KeyInfo child {} is not accepted",
                    k.tag_name().name()
                )));
            }
        }
    }
    // xmlsec would follow these (Manifest references are digested before
    // SignedInfo's; RetrievalMethod fetches key material). An
    // EncryptedData's KeyInfo may use RetrievalMethod: that one is read by
    // `xmlenc`, never by xmlsec.
    if let Some(n) = sig
        .descendants()
        .find(|n| is_dsig(n, "Object") || is_dsig(n, "Manifest") || is_dsig(n, "RetrievalMethod"))
    {
        return Err(refuse(format!(
            "ds:{} in a Signature is not accepted",
            n.tag_name().name()
        )));
    }
    let signed_info = children[0];
    let si: Vec<_> = dsig_children(signed_info).collect();
    let [c14n, method, reference] = si[..] else {
        return Err(refuse(
            "SignedInfo must hold CanonicalizationMethod, SignatureMethod and exactly one Reference",
        ));
    };
    if !is_dsig(&c14n, "CanonicalizationMethod")
        || !is_dsig(&method, "SignatureMethod")
        || !is_dsig(&reference, "Reference")
    {
        return Err(refuse(
            "SignedInfo must hold CanonicalizationMethod, SignatureMethod and exactly one Reference",
        ));
    }
    if !C14N_METHODS.contains(&algorithm(&c14n)?) {
        return Err(refuse(format!(
            "canonicalization {} is not accepted",
            algorithm(&c14n)?
        )));
    }
    only_inclusive_namespaces(c14n)?;
    let sig_alg = algorithm(&method)?;
    let sha1 = SHA1_SIGNATURES.contains(&sig_alg);
    if sha1 && !allow_sha1 {
        return Err(SamlError::Sha1);
    }
    if !SIGNATURE_METHODS.contains(&sig_alg) && !sha1 {
        return Err(refuse(format!(
            "signature method {sig_alg} is not accepted"
        )));
    }
    if dsig_children(method).next().is_some() {
        return Err(refuse("SignatureMethod has content"));
    }
    let uri = reference
        .attribute("URI")
        .ok_or_else(|| refuse("Reference without URI"))?;
    let whole_document = uri.is_empty() && parent.parent().is_some_and(|p| p.is_root());
    if uri != format!("#{parent_id}") && !whole_document {
        return Err(refuse(format!(
            "Reference URI {uri:?} is not \"#{parent_id}\", the ID of the signed element"
        )));
    }
    let parts: Vec<_> = dsig_children(reference).collect();
    let (transforms, rest) = match parts.first() {
        Some(t) if is_dsig(t, "Transforms") => (Some(*t), &parts[1..]),
        _ => (None, &parts[..]),
    };
    let [digest, value] = rest[..] else {
        return Err(refuse(
            "Reference must hold Transforms, DigestMethod and DigestValue",
        ));
    };
    if !is_dsig(&digest, "DigestMethod") || !is_dsig(&value, "DigestValue") {
        return Err(refuse(
            "Reference must hold Transforms, DigestMethod and DigestValue",
        ));
    }
    let digest_alg = algorithm(&digest)?;
    if digest_alg == SHA1_DIGEST {
        if !allow_sha1 {
            return Err(SamlError::Sha1);
        }
    } else if !DIGESTS.contains(&digest_alg) {
        return Err(refuse(format!("digest {digest_alg} is not accepted")));
    }
    if let Some(t) = transforms {
        let list: Vec<_> = dsig_children(t).collect();
        if list.len() > MAX_TRANSFORMS {
            return Err(refuse(format!("more than {MAX_TRANSFORMS} transforms")));
        }
        for tr in list {
            if !is_dsig(&tr, "Transform") {
                return Err(refuse("Transforms holds something other than Transform"));
            }
            let alg = algorithm(&tr)?;
            if alg != ENVELOPED && !C14N_METHODS.contains(&alg) {
                return Err(refuse(format!("transform {alg} is not accepted")));
            }
            only_inclusive_namespaces(tr)?;
        }
    }
    Ok(())
}

/// A canonicalization element may carry exc-c14n's InclusiveNamespaces
/// (a short PrefixList: each prefix costs a namespace search per element),
/// nothing else.
fn only_inclusive_namespaces(n: roxmltree::Node) -> Result<(), SamlError> {
    for c in n.children().filter(|c| c.is_element()) {
        if !c.has_tag_name((NS_EXC_C14N, "InclusiveNamespaces")) || c.has_children() {
            return Err(refuse(format!(
                "{} inside a transform is not accepted",
                c.tag_name().name()
            )));
        }
        let prefixes = c
            .attribute("PrefixList")
            .unwrap_or_default()
            .split_ascii_whitespace()
            .count();
        if prefixes > MAX_PREFIX_LIST {
            return Err(refuse(format!(
                "more than {MAX_PREFIX_LIST} prefixes in InclusiveNamespaces"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_other_than_utf8_are_refused() {
        for ok in [
            "<a/>",
            "<?xml version=\"1.0\"?><a/>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>",
            "<?xml version='1.0' encoding = 'utf-8' ?><a/>",
        ] {
            assert!(document_text(ok.as_bytes().to_vec()).is_ok(), "{ok}");
        }
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(b"<a/>");
        assert_eq!(document_text(bom).unwrap(), "<a/>");
        for bad in [
            "<?xml version=\"1.0\" encoding=\"UTF-7\"?><a/>",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
            "<?xml version=\"1.0\" encoding=\"utf-16\"?><a/>",
            "<?xml version=\"1.0\" encoding=UTF-8?><a/>",
            "<?xml version=\"1.0\" encoding=\"UTF-8",
        ] {
            assert!(
                matches!(
                    document_text(bad.as_bytes().to_vec()),
                    Err(SamlError::Encoding(_))
                ),
                "{bad}"
            );
        }
        for bad in [
            vec![0xFF, 0xFE, b'<', 0],
            vec![0xFE, 0xFF, 0, b'<'],
            b"<\0a\0/\0>\0".to_vec(),
            vec![b'<', 0xC3, b'a', b'/', b'>'],
        ] {
            assert!(matches!(document_text(bad), Err(SamlError::Encoding(_))));
        }
    }

    #[test]
    fn processing_instructions_comments_and_dtds_are_refused() {
        assert!(refuse_unsafe_xml("<?xml version=\"1.0\"?><a/>").is_ok());
        assert!(refuse_unsafe_xml("<a><?php x?></a>").is_err());
        assert!(refuse_unsafe_xml("<?xml-stylesheet href=\"x\"?><a/>").is_err());
        assert!(refuse_unsafe_xml("<?xml version=\"1.0\"?><?x?><a/>").is_err());
        assert!(matches!(
            refuse_unsafe_xml("<!doctype a><a/>"),
            Err(SamlError::Dtd)
        ));
        assert!(matches!(
            refuse_unsafe_xml("<a><!-- x --></a>"),
            Err(SamlError::Comment)
        ));
    }

    const SIGNED: &str = r##"<r:Response xmlns:r="urn:r" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_r"><ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_r"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs"/></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AA==</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>AA==</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature></r:Response>"##;

    fn check(xml: &str) -> Result<(), SamlError> {
        check_signatures(&parse(xml)?, false)
    }

    #[test]
    fn a_saml_shaped_signature_passes() {
        check(SIGNED).unwrap();
    }

    #[test]
    fn every_departure_from_the_saml_signature_shape_is_refused() {
        let cases = [
            ("URI=\"#_r\"", "URI=\"http://169.254.169.254/\""),
            ("URI=\"#_r\"", "URI=\"file:///dev/zero\""),
            ("URI=\"#_r\"", "URI=\"#xpointer(/)\""),
            ("URI=\"#_r\"", "URI=\"#_other\""),
            ("URI=\"#_r\"", ""),
            (
                "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
                "http://www.w3.org/TR/1999/REC-xslt-19991116",
            ),
            (
                "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
                "http://www.w3.org/TR/1999/REC-xpath-19991116",
            ),
            (
                "http://www.w3.org/2001/04/xmlenc#sha256\"",
                "http://www.w3.org/2001/04/xmldsig-more#md5\"",
            ),
            (
                "<ds:KeyInfo>",
                "<ds:KeyInfo><ds:RetrievalMethod URI=\"http://x/\"/>",
            ),
            (
                "</ds:Signature>",
                "<ds:Object><ds:Manifest/></ds:Object></ds:Signature>",
            ),
            ("</ds:Reference>", "</ds:Reference><ds:Reference URI=\"#_r\"/>"),
            ("ID=\"_r\"", "ID=\"_r\" xml:base=\"http://x/\""),
            ("ID=\"_r\"", "ID=\"_r\" xmlns:x=\"urn:x\" x:ID=\"_q\""),
            ("URI=\"#_r\"", "xmlns:x=\"urn:x\" x:URI=\"http://x/\" URI=\"#_r\""),
            (
                "<ds:Transform Algorithm=",
                "<ds:Transform xmlns:x=\"urn:x\" x:Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\" Algorithm=",
            ),
            ("<ds:Transforms>", "<ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"),
            ("PrefixList=\"xs\"/>", "PrefixList=\"xs\"><x/></ec:InclusiveNamespaces>"),
            ("PrefixList=\"xs\"", "PrefixList=\"a b c d e f g h i\""),
        ];
        for (from, to) in cases {
            let xml = SIGNED.replacen(from, to, 1);
            assert!(
                matches!(check(&xml), Err(SamlError::SignatureShape(_))),
                "{to}: {:?}",
                check(&xml)
            );
        }
        let sha1 = SIGNED.replace(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        );
        assert!(matches!(check(&sha1), Err(SamlError::Sha1)));
        check_signatures(&parse(&sha1).unwrap(), true).unwrap();
    }

    #[test]
    fn the_prescan_bounds_what_parsers_and_c14n_pay_for() {
        let ok = "<?xml version=\"1.0\"?><a x=\"1>2\" y='='><b/><c xmlns:p=\"u\">t</c></a>";
        prescan(ok).unwrap();
        let many = |n: usize, unit: &str| format!("<a>{}</a>", unit.repeat(n));
        assert!(prescan(&many(MAX_ELEMENTS - 1, "<b/>")).is_ok());
        assert!(matches!(
            prescan(&many(MAX_ELEMENTS, "<b/>")),
            Err(SamlError::SignatureShape(_))
        ));
        let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(prescan(&deep(MAX_DEPTH)).is_ok());
        assert!(prescan(&deep(MAX_DEPTH + 1)).is_err());
        let attrs = |n: usize| {
            format!(
                "<a {}/>",
                (0..n).map(|i| format!("a{i}=\"x>\"")).collect::<String>()
            )
        };
        assert!(prescan(&attrs(MAX_ATTRIBUTES)).is_ok());
        assert!(prescan(&attrs(MAX_ATTRIBUTES + 1)).is_err());
        // Declarations add up along a path, not across siblings.
        let okta: String = (0..200)
            .map(|_| "<v xmlns:xs=\"x\" xmlns:xsi=\"y\">1</v>")
            .collect();
        prescan(&format!("<r xmlns:s=\"s\">{okta}</r>")).unwrap();
        let nested: String = (0..13)
            .map(|i| format!("<e xmlns:a{i}=\"u\" xmlns:b{i}=\"u\">"))
            .collect();
        assert!(prescan(&nested).is_err());
        assert!(matches!(
            prescan("<a>x<![CDATA[y]]></a>"),
            Err(SamlError::Malformed(_))
        ));
        assert!(matches!(
            prescan("<a><!-- x --></a>"),
            Err(SamlError::Comment)
        ));
    }

    #[test]
    fn signatures_and_encrypted_keys_are_counted() {
        let sig = SIGNED
            .split_once("<ds:Signature>")
            .map(|(_, s)| format!("<ds:Signature>{}", s.trim_end_matches("</r:Response>")))
            .unwrap();
        let three = SIGNED.replace("</r:Response>", &format!("{sig}{sig}</r:Response>"));
        assert!(matches!(check(&three), Err(SamlError::SignatureShape(_))));
        let keys = |n: usize| {
            format!(
                "<a xmlns:x=\"{NS_XMLENC}\">{}</a>",
                "<x:EncryptedKey/>".repeat(n)
            )
        };
        assert!(check(&keys(2)).is_ok());
        assert!(matches!(check(&keys(3)), Err(SamlError::SignatureShape(_))));
    }
}
