//! Differential test: the facts the gateway's checks read (roxmltree, over
//! the message as inspected) must equal the facts in the document libxml2
//! builds and xmlsec verifies, for every message in a corpus of valid
//! responses in every signing mode, encrypted ones, tricky-but-legal XML
//! (character references, CDATA, attribute normalisation, CRLF, default
//! namespaces, non-ASCII) and the attacks the other SAML tests send. For the
//! messages the gateway accepts, the verified result (samael's parse of the
//! verified document) must also agree with the inspected view.

mod support;

use base64::Engine;
use portcullis::saml::response::{inspect, verify};
use support::idp::*;
use support::saml_env::registry_in;

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const NS_XMLENC: &str = "http://www.w3.org/2001/04/xmlenc#";

/// What the checks decide on.
#[derive(Debug, PartialEq, Default)]
struct Facts {
    root: (Option<String>, String),
    root_id: Option<String>,
    root_in_response_to: Option<String>,
    root_destination: Option<String>,
    issuers: Vec<String>,
    assertion_ids: Vec<Option<String>>,
    encrypted_assertions: usize,
    name_ids: Vec<String>,
    scd_in_response_to: Vec<Option<String>>,
    attributes: Vec<(Option<String>, Vec<String>)>,
    /// (ID of the signed parent, Reference URIs) per ds:Signature.
    signatures: Vec<(Option<String>, Vec<Option<String>>)>,
}

fn ro_facts(xml: &str) -> Option<Facts> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts).ok()?;
    let text = |n: roxmltree::Node| -> String {
        n.descendants()
            .filter(|d| d.is_text())
            .filter_map(|d| d.text())
            .collect()
    };
    let attr = |n: roxmltree::Node, a: &str| n.attribute(a).map(str::to_string);
    let root = doc.root_element();
    let mut f = Facts {
        root: (
            root.tag_name().namespace().map(str::to_string),
            root.tag_name().name().to_string(),
        ),
        root_id: attr(root, "ID"),
        root_in_response_to: attr(root, "InResponseTo"),
        root_destination: attr(root, "Destination"),
        ..Facts::default()
    };
    for n in doc.descendants().filter(|n| n.is_element()) {
        let t = n.tag_name();
        match (t.namespace(), t.name()) {
            (Some(NS_ASSERTION), "Issuer") => f.issuers.push(text(n)),
            (Some(NS_ASSERTION), "Assertion") => f.assertion_ids.push(attr(n, "ID")),
            (Some(NS_ASSERTION), "EncryptedAssertion") => f.encrypted_assertions += 1,
            (Some(NS_ASSERTION), "NameID") => f.name_ids.push(text(n)),
            (Some(NS_ASSERTION), "SubjectConfirmationData") => {
                f.scd_in_response_to.push(attr(n, "InResponseTo"))
            }
            (Some(NS_ASSERTION), "Attribute") => f.attributes.push((
                attr(n, "Name"),
                n.children()
                    .filter(|c| c.has_tag_name((NS_ASSERTION, "AttributeValue")))
                    .map(text)
                    .collect(),
            )),
            (Some(NS_DSIG), "Signature") => f.signatures.push((
                n.parent_element().and_then(|p| attr(p, "ID")),
                n.descendants()
                    .filter(|r| r.has_tag_name((NS_DSIG, "Reference")))
                    .map(|r| attr(r, "URI"))
                    .collect(),
            )),
            _ => {}
        }
    }
    Some(f)
}

/// libxml2, with the options the patched samael verifies with.
fn lx_parse(xml: &str, as_samael: bool) -> Option<libxml::tree::Document> {
    let options = if as_samael {
        libxml::parser::ParserOptions {
            recover: false,
            no_net: true,
            ignore_enc: true,
            ..Default::default()
        }
    } else {
        // samael 0.0.22 as published: recover, and the declaration honoured.
        libxml::parser::ParserOptions::default()
    };
    libxml::parser::Parser::default()
        .parse_string_with_options(xml, options)
        .ok()
}

fn lx_attr(n: &libxml::tree::Node, name: &str) -> Option<String> {
    // Un-namespaced, as roxmltree's `attribute(name)`.
    let c = std::ffi::CString::new(name).unwrap();
    let p = unsafe { libxml::bindings::xmlGetNoNsProp(n.node_ptr(), c.as_ptr() as *const u8) };
    if p.is_null() {
        return None;
    }
    Some(
        unsafe { std::ffi::CStr::from_ptr(p as *const std::os::raw::c_char) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn lx_is(n: &libxml::tree::Node, ns: &str, name: &str) -> bool {
    n.get_name() == name && n.get_namespace().is_some_and(|x| x.get_href() == ns)
}

fn lx_facts(doc: &libxml::tree::Document) -> Facts {
    let root = doc.get_root_element().expect("root");
    let mut f = Facts {
        root: (root.get_namespace().map(|n| n.get_href()), root.get_name()),
        root_id: lx_attr(&root, "ID"),
        root_in_response_to: lx_attr(&root, "InResponseTo"),
        root_destination: lx_attr(&root, "Destination"),
        ..Facts::default()
    };
    fn walk(n: &libxml::tree::Node, out: &mut Vec<libxml::tree::Node>) {
        out.push(n.clone());
        for c in n.get_child_elements() {
            walk(&c, out);
        }
    }
    let mut all = Vec::new();
    walk(&root, &mut all);
    for n in &all {
        if lx_is(n, NS_ASSERTION, "Issuer") {
            f.issuers.push(n.get_content());
        } else if lx_is(n, NS_ASSERTION, "Assertion") {
            f.assertion_ids.push(lx_attr(n, "ID"));
        } else if lx_is(n, NS_ASSERTION, "EncryptedAssertion") {
            f.encrypted_assertions += 1;
        } else if lx_is(n, NS_ASSERTION, "NameID") {
            f.name_ids.push(n.get_content());
        } else if lx_is(n, NS_ASSERTION, "SubjectConfirmationData") {
            f.scd_in_response_to.push(lx_attr(n, "InResponseTo"));
        } else if lx_is(n, NS_ASSERTION, "Attribute") {
            f.attributes.push((
                lx_attr(n, "Name"),
                n.get_child_elements()
                    .iter()
                    .filter(|c| lx_is(c, NS_ASSERTION, "AttributeValue"))
                    .map(|c| c.get_content())
                    .collect(),
            ));
        } else if lx_is(n, NS_DSIG, "Signature") {
            let mut refs = Vec::new();
            walk(n, &mut refs);
            f.signatures.push((
                n.get_parent().and_then(|p| lx_attr(&p, "ID")),
                refs.iter()
                    .filter(|r| lx_is(r, NS_DSIG, "Reference"))
                    .map(|r| lx_attr(r, "URI"))
                    .collect(),
            ));
        }
    }
    f
}

struct Rig {
    idp: TestIdp,
    sp: TestIdp,
    reg: portcullis::saml::idp::Registry,
    acs: String,
    entity: String,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let sp = TestIdp::new("sp-keypair");
    let sp_key = dir.path().join("sp.key");
    std::fs::write(&sp_key, sp.private_key_pem()).unwrap();
    let sp_cert = sp.write_cert(dir.path(), "sp.crt");
    let entity = "http://localhost:8080".to_string();
    let reg = registry_in(
        dir.path(),
        &idp,
        &entity,
        "",
        &format!(
            "sp_key = \"{}\"\nsp_cert = \"{}\"",
            sp_key.display(),
            sp_cert.display()
        ),
    );
    Rig {
        acs: format!("{entity}/.portcullis/saml/acs"),
        entity,
        idp,
        sp,
        reg,
        _dir: dir,
    }
}

/// (label, XML) of every message in the corpus.
fn corpus(r: &Rig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let opts = |irt: Option<&str>| ResponseOpts::new(&r.acs, &r.entity, irt);
    for (resp, asrt) in [(true, true), (true, false), (false, true), (false, false)] {
        for irt in [None, Some("_req1")] {
            let mut o = opts(irt);
            o.sign_response = resp;
            o.sign_assertion = asrt;
            out.push((
                format!("signed r={resp} a={asrt} irt={irt:?}"),
                r.idp.response_xml(&o),
            ));
            let mut o = opts(irt);
            o.sign_response = resp;
            o.sign_assertion = asrt;
            o.encrypt_for = Some(Encryption::new(&r.sp.cert_pem));
            out.push((
                format!("encrypted r={resp} a={asrt} irt={irt:?}"),
                r.idp.response_xml(&o),
            ));
        }
    }
    // Legal XML that parsers are known to disagree on, signed as it is.
    type Edit<'a> = &'a dyn Fn(&mut ResponseOpts);
    let tricky: [(&str, Edit); 8] = [
        ("char refs", &|o| {
            o.name_id = "&#x61;lice&#64;example.com".into()
        }),
        ("cdata", &|o| {
            o.name_id = "<![CDATA[alice]]>@example.com".into()
        }),
        ("entities", &|o| {
            o.attributes.push((
                "displayName".into(),
                vec!["A &amp; B &lt;x&gt; &quot;q&quot;".into()],
            ))
        }),
        ("whitespace", &|o| {
            o.name_id = "\n  alice@example.com \t".into()
        }),
        ("non-ascii", &|o| {
            o.name_id = "zoë@example.com".into();
            o.attributes
                .push(("firstName".into(), vec!["Zoë 山田 🦀".into()]));
        }),
        ("kelvin", &|o| o.name_id = "\u{212A}ate@example.com".into()),
        ("many values", &|o| {
            o.attributes.push((
                "memberOf".into(),
                (0..50).map(|i| format!("g{i}")).collect(),
            ))
        }),
        ("sha1", &|o| o.sha1 = true),
    ];
    for (label, edit) in tricky {
        let mut o = opts(Some("_req2"));
        edit(&mut o);
        out.push((label.to_string(), r.idp.response_xml(&o)));
    }
    // Rewritings after signing: legal ones keep the signature, the others
    // are attacks. Either way both parsers must read the same document.
    let base = r.idp.response_xml(&opts(Some("_req3")));
    let rewrites: Vec<(&str, String)> = vec![
        ("crlf", base.replace("><", ">\r\n<")),
        (
            "decl utf-8",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{base}"),
        ),
        (
            "decl utf-7",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-7\"?>{}",
                base.replace('+', "+-")
            ),
        ),
        (
            "comment",
            base.replacen("@example.com<", "<!---->@example.com<", 1),
        ),
        ("dtd", format!("<!DOCTYPE r [<!ENTITY x \"y\">]>{base}")),
        (
            "pi",
            base.replacen("<saml:Issuer>", "<?x y?><saml:Issuer>", 1),
        ),
        (
            "attr tab",
            base.replacen("Version=\"2.0\"", "Version=\"2.0\" Consent=\"a\tb\nc\"", 1),
        ),
        (
            "namespaced id",
            base.replacen(
                "Version=\"2.0\"",
                "Version=\"2.0\" xmlns:x=\"urn:x\" x:ID=\"_other\"",
                1,
            ),
        ),
        (
            "duplicate local name",
            base.replacen(
                " InResponseTo=\"",
                " xmlns:x=\"urn:x\" x:InResponseTo=\"_evil\" InResponseTo=\"",
                1,
            ),
        ),
        (
            "default ns",
            base.replace(
                "<saml:Issuer>",
                "<Issuer xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\">",
            )
            .replace("</saml:Issuer>", "</Issuer>"),
        ),
        (
            "prefix rebound",
            base.replacen(
                "<samlp:Status>",
                "<samlp:Status xmlns:saml=\"urn:evil\"><saml:Assertion ID=\"_fake\"/>",
                1,
            ),
        ),
        (
            "xml:base",
            base.replacen(
                "Version=\"2.0\"",
                "Version=\"2.0\" xml:base=\"http://evil/\"",
                1,
            ),
        ),
        ("truncated", base[..base.len() / 2].to_string()),
        ("garbage", "not xml at all".to_string()),
        ("bare assertion", r.idp.assertion(&opts(None))),
    ];
    for (label, xml) in rewrites {
        out.push((label.to_string(), xml));
    }
    // Signature wrapping: the signed assertion moved, an evil one beside it.
    let signed_assertion = r.idp.assertion(&opts(None));
    let mut evil = opts(None);
    evil.name_id = "mallory@example.com".into();
    evil.sign_assertion = false;
    let evil_assertion = r.idp.assertion(&evil);
    let mut shell = opts(None);
    shell.sign_response = false;
    out.push((
        "xsw evil before signed".into(),
        r.idp
            .wrap(&shell, &format!("{evil_assertion}{signed_assertion}")),
    ));
    out.push((
        "xsw signed in extensions".into(),
        r.idp.wrap(
            &shell,
            &format!("<samlp:Extensions>{signed_assertion}</samlp:Extensions>{evil_assertion}"),
        ),
    ));
    out
}

#[test]
fn the_inspected_and_the_verified_documents_agree_on_every_fact() {
    let r = rig();
    let idp = &r.reg.idps[0];
    let mut accepted = 0;
    let mut compared = 0;
    for (label, xml) in corpus(&r) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
        let inspected = inspect(&b64, 1 << 20, false);
        let ro = ro_facts(&xml);
        let lx = lx_parse(&xml, true).map(|d| lx_facts(&d));
        if let (Some(ro), Some(lx)) = (&ro, &lx) {
            assert_eq!(
                ro, lx,
                "{label}: roxmltree and libxml2 read different documents"
            );
            compared += 1;
        }
        let Ok(msg) = inspected else { continue };
        // Whatever passes inspection, libxml2 reads too, and the same way.
        assert!(
            lx.is_some(),
            "{label}: inspected, but libxml2 cannot parse it"
        );
        let Ok(login) = verify(idp, &r.reg.sp, &msg, msg.in_response_to.as_deref()) else {
            continue;
        };
        accepted += 1;
        let ro = ro.unwrap();
        // The decision's facts come from the verified document: they must be
        // the inspected message's own (or, encrypted, the plaintext's).
        if ro.encrypted_assertions == 0 {
            assert_eq!(ro.name_ids.len(), 1, "{label}");
            assert_eq!(login.name_id, ro.name_ids[0].trim(), "{label}");
            assert_eq!(
                Some(login.assertion_id.clone()),
                ro.assertion_ids[0],
                "{label}"
            );
            // Same-named Attribute elements merge, as the gateway merges them.
            let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (n, v) in &ro.attributes {
                seen.entry(n.clone().unwrap_or_default())
                    .or_default()
                    .extend(v.iter().map(|s| s.trim().to_string()));
            }
            assert_eq!(login.attributes, seen, "{label}");
        }
    }
    // The corpus reaches both outcomes.
    assert!(accepted >= 15, "only {accepted} accepted");
    eprintln!("differential: {compared} messages compared, {accepted} accepted");
    assert!(compared >= 35, "only {compared} compared");
}

/// The fuzzers' seed corpus (fuzz/seeds: valid messages in every signing
/// mode, encrypted ones, refusals, logout messages), when present: every
/// message both parsers read, they read the same.
#[test]
fn the_fuzz_seed_corpus_reads_the_same_in_both_parsers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut compared = 0;
    for (dir, split_parts) in [("acs", false), ("slo", true)] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let raw = std::fs::read(entry.path()).unwrap();
            let Some((flags, rest)) = raw.split_first() else {
                continue;
            };
            // acs: bit 0 = the rest is the posted base64; slo: the XML is
            // the first NUL-separated part (fuzz/README.md).
            let bytes = if split_parts {
                rest.split(|b| *b == 0).next().unwrap_or_default().to_vec()
            } else if flags & 1 == 1 {
                let compact: Vec<u8> = rest
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                match base64::engine::general_purpose::STANDARD.decode(compact) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            } else {
                rest.to_vec()
            };
            let Ok(xml) = String::from_utf8(bytes) else {
                continue;
            };
            let (Some(ro), Some(lx)) = (ro_facts(&xml), lx_parse(&xml, true)) else {
                continue;
            };
            assert_eq!(ro, lx_facts(&lx), "{}", entry.path().display());
            compared += 1;
        }
    }
    eprintln!("fuzz seeds compared: {compared}");
}

/// Why samael is patched: with libxml2's defaults (recover, declaration
/// honoured) a UTF-7 re-encoding is another document than roxmltree's.
#[test]
fn unpatched_libxml2_options_read_a_utf7_message_differently() {
    let r = rig();
    let xml = r
        .idp
        .response_xml(&ResponseOpts::new(&r.acs, &r.entity, Some("_req")));
    let hidden = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-7\"?>{}",
        xml.replace('+', "+-")
            .replacen("\" InResponseTo=\"", "+ACI- InResponseTo=+ACI-", 1)
    );
    let ro = ro_facts(&hidden).unwrap();
    let strict = lx_facts(&lx_parse(&hidden, true).unwrap());
    assert_eq!(ro, strict);
    assert_eq!(ro.root_in_response_to, None);
    let default = lx_facts(&lx_parse(&hidden, false).unwrap());
    assert_eq!(default.root_in_response_to.as_deref(), Some("_req"));
    // ...and the gateway refuses the declaration before either parser runs.
    let b64 = base64::engine::general_purpose::STANDARD.encode(hidden.as_bytes());
    assert_eq!(
        inspect(&b64, 1 << 20, false).unwrap_err().reason(),
        "encoding"
    );
}

/// SLO messages: the LogoutRequest facts read from roxmltree equal libxml2's.
#[test]
fn logout_messages_read_the_same_in_both_parsers() {
    let r = rig();
    let slo = format!("{}/.portcullis/saml/slo", r.entity);
    let (_, b) = r.idp.logout_post_b64(&slo, "alice@example.com");
    let xml =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap();
    let variants = [
        xml.clone(),
        xml.replace("><", ">\r\n<"),
        xml.replacen("alice", "&#x61;lice", 1),
        xml.replacen(
            " Destination=\"",
            " xmlns:x=\"urn:x\" x:Destination=\"http://evil/\" Destination=\"",
            1,
        ),
    ];
    for v in variants {
        let ro = ro_facts(&v).unwrap();
        let lx = lx_facts(&lx_parse(&v, true).unwrap());
        assert_eq!(ro, lx, "{v}");
    }
    let _ = NS_PROTOCOL;
    let _ = NS_XMLENC;
}
