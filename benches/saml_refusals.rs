//! What the worst SAML input costs before it is refused: unsigned
//! responses of the largest accepted size, shaped to make libxml2 and
//! xmlsec work (every Reference is digested before the SignatureValue is
//! checked), from base64 to refusal through `inspect` + `verify`, exactly
//! as the ACS runs them. The target is < 50 ms each (issue 9); the figures
//! go in SECURITY.md. `cargo bench --bench saml_refusals`.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder};
use portcullis::saml::response::{inspect, verify};

mod common;

const IDP: &str = "https://idp.example.test/metadata";
const MAX: usize = 256 * 1024;

fn rsa_cert_pem(bits: u32) -> (Vec<u8>, Vec<u8>) {
    let key = PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "bench").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (
        b.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

fn registry(dir: &std::path::Path) -> portcullis::saml::idp::Registry {
    let (idp_cert, _) = rsa_cert_pem(2048);
    std::fs::write(dir.join("idp.pem"), idp_cert).unwrap();
    let (sp_cert, sp_key) = rsa_cert_pem(4096);
    std::fs::write(dir.join("sp.crt"), sp_cert).unwrap();
    std::fs::write(dir.join("sp.key"), sp_key).unwrap();
    common::saml_registry(dir, IDP, &dir.join("idp.pem"))
}

/// A garbage signature of the accepted shape over the Response.
fn signature(rid: &str, c14n: &str) -> String {
    // "exc-c14n with a PrefixList" is spelled `EXC_LIST`.
    let (c14n, inner) = match c14n {
        EXC_LIST => (
            EXC,
            format!("<ec:InclusiveNamespaces xmlns:ec=\"{EXC}\" PrefixList=\"p0 p1 p2 p3 p4 p5 p6 p7\"/>"),
        ),
        other => (other, String::new()),
    };
    format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
<ds:Reference URI=\"#{rid}\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
<ds:Transform Algorithm=\"{c14n}\">{inner}</ds:Transform></ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference>\
</ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>"
    )
}

const EXC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const INCL: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const EXC_LIST: &str = "exc-c14n with a PrefixList";

/// An unsigned Response: root attributes, then Issuer, the signature, an
/// Extensions block filled with `filler`, and a minimal assertion.
fn response(root_extra: &str, c14n: &str, filler: &str) -> String {
    let rid = "_r0";
    format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\" Destination=\"http://localhost:8080/.portcullis/saml/acs\"{root_extra}>\
<saml:Issuer>{IDP}</saml:Issuer>{}<samlp:Extensions>{filler}</samlp:Extensions><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>\
<saml:Assertion ID=\"_a0\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>{IDP}</saml:Issuer><saml:Subject><saml:NameID>a@example.com</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>",
        signature(rid, c14n)
    )
}

/// Repeats `unit` until the base64 of the whole response reaches the size
/// limit or the pre-scan's element limit (what passes it is the worst case).
fn fill(root_extra: &str, c14n: &str, unit: &str, elements_per_unit: usize) -> String {
    let base = response(root_extra, c14n, "").len();
    let by_size = (MAX * 3 / 4 - base - 64) / unit.len();
    let by_count = (portcullis::saml::shape::MAX_ELEMENTS - 40) / elements_per_unit.max(1);
    let n = if elements_per_unit == 0 {
        by_size
    } else {
        by_size.min(by_count)
    };
    response(root_extra, c14n, &unit.repeat(n))
}

fn inputs() -> Vec<(&'static str, String)> {
    use portcullis::saml::shape::{MAX_ATTRIBUTES, MAX_DEPTH, MAX_NAMESPACES_IN_SCOPE};
    // samlp and saml are declared on the root, ds on the Signature.
    let ns: String = (0..MAX_NAMESPACES_IN_SCOPE - 3)
        .map(|i| format!(" xmlns:p{i}=\"urn:n:{i}\""))
        .collect();
    // ...and the InclusiveNamespaces element declares ec.
    let ns_but_one: String = (0..MAX_NAMESPACES_IN_SCOPE - 4)
        .map(|i| format!(" xmlns:p{i}=\"urn:n:{i}\""))
        .collect();
    let depth = MAX_DEPTH - 6;
    let deep = format!("{}{}", "<x>".repeat(depth), "</x>".repeat(depth));
    let attrs: String = (0..MAX_ATTRIBUTES)
        .map(|i| format!(" a{i}=\"v\""))
        .collect();
    let many_ns: String = (0..1000)
        .map(|i| format!(" xmlns:q{i}=\"urn:q\""))
        .collect();
    vec![
        // Refused by the pre-scan (these cost seconds before it existed).
        (
            "refused: 1000 namespaces on the root",
            response(&many_ns, INCL, &"<x/>".repeat(1000)),
        ),
        ("refused: 48k elements", fill("", INCL, "<x/>", 0)),
        // The worst that passes the pre-scan, refused at the signature.
        ("max elements (exc-c14n)", fill("", EXC, "<x/>", 1)),
        ("max elements (c14n)", fill("", INCL, "<x/>", 1)),
        (
            "max elements + namespaces in scope (c14n)",
            fill(&ns, INCL, "<x/>", 1),
        ),
        (
            "max elements + namespaces + PrefixList (exc-c14n)",
            fill(&ns_but_one, EXC_LIST, "<x/>", 1),
        ),
        (
            "max elements nested deep (c14n)",
            fill(&ns, INCL, &deep, depth),
        ),
        (
            "max attributes per element (c14n)",
            fill(&ns, INCL, &format!("<x{attrs}/>"), 1),
        ),
        (
            "one large text node",
            fill("", EXC, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0),
        ),
        ("character references", fill("", INCL, "&#x1F980;", 0)),
    ]
}

fn refusals(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let idp = reg.idps[0].clone();
    let mut g = c.benchmark_group("saml_refusal");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for (label, xml) in inputs() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
        assert!(b64.len() <= MAX, "{label}: {} bytes", b64.len());
        // The worst cases must get as far as the signature.
        let err = inspect(&b64, MAX, false)
            .and_then(|m| verify(&idp, &reg.sp, &m, m.in_response_to.as_deref()))
            .unwrap_err();
        let reason = err.reason();
        let want = if label.starts_with("refused") {
            "signature_shape"
        } else {
            "bad_signature"
        };
        assert_eq!(reason, want, "{label}: {err}");
        g.bench_function(label, |b| {
            b.iter(|| {
                let r = inspect(black_box(&b64), MAX, false)
                    .and_then(|m| verify(&idp, &reg.sp, &m, m.in_response_to.as_deref()));
                assert!(r.is_err(), "{label} was accepted");
                r.err().map(|e| e.reason())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, refusals);
criterion_main!(benches);
