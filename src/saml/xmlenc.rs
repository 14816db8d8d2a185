//! XML Encryption, decryption side only, for `<saml:EncryptedAssertion>`:
//! the content key is transported with RSA-OAEP to the SP certificate and
//! the assertion is encrypted with AES-CBC or AES-GCM, as IdPs do.
//!
//! Written here rather than taken from samael, whose decryption returns a
//! parsed assertion (the inner signature could no longer be verified), does
//! not remove the CBC padding, accepts RSA PKCS#1 v1.5 key transport and
//! can panic on short or non-UTF-8 input. Everything here fails with a
//! [`SamlError`] instead.
//!
//! Accepted:
//! - content: `xmlenc#aes128-cbc`, `aes192-cbc`, `aes256-cbc`,
//!   `xmlenc11#aes128-gcm`, `aes192-gcm`, `aes256-gcm`;
//! - key transport: `xmlenc#rsa-oaep-mgf1p` and `xmlenc11#rsa-oaep`
//!   (OAEP digest SHA-1 by default, or SHA-224/256/384/512 as the
//!   `ds:DigestMethod` says; MGF1 with SHA-1, or as `xenc11:MGF` says), with
//!   the `EncryptedKey` inside `EncryptedData/ds:KeyInfo` or next to the
//!   `EncryptedData` in the `EncryptedAssertion`.
//!
//! Refused ([`SamlError::EncryptionUnsupported`]): `rsa-1_5` (Bleichenbacher's
//! attack), key wrapping / key agreement, 3DES, `CipherReference`.

use base64::Engine;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};

use super::SamlError;

pub const NS_XMLENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const NS_XMLENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";

const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// Content encryption algorithms accepted, as the SP metadata advertises them
/// (strongest first).
pub const CONTENT_ALGORITHMS: [&str; 6] = [
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes192-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
];

/// Key transport algorithms accepted.
pub const KEY_TRANSPORT_ALGORITHMS: [&str; 2] = [RSA_OAEP, RSA_OAEP_MGF1P];

#[derive(Clone, Copy)]
enum Content {
    Cbc(Cipher),
    Gcm(Cipher),
}

impl Content {
    fn from_uri(uri: &str) -> Option<Self> {
        Some(match uri {
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => Self::Cbc(Cipher::aes_128_cbc()),
            "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => Self::Cbc(Cipher::aes_192_cbc()),
            "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => Self::Cbc(Cipher::aes_256_cbc()),
            "http://www.w3.org/2009/xmlenc11#aes128-gcm" => Self::Gcm(Cipher::aes_128_gcm()),
            "http://www.w3.org/2009/xmlenc11#aes192-gcm" => Self::Gcm(Cipher::aes_192_gcm()),
            "http://www.w3.org/2009/xmlenc11#aes256-gcm" => Self::Gcm(Cipher::aes_256_gcm()),
            _ => return None,
        })
    }

    fn key_len(self) -> usize {
        match self {
            Self::Cbc(c) | Self::Gcm(c) => c.key_len(),
        }
    }
}

fn failed(msg: impl Into<String>) -> SamlError {
    SamlError::Decrypt(msg.into())
}

fn unsupported(msg: impl Into<String>) -> SamlError {
    SamlError::EncryptionUnsupported(msg.into())
}

fn child<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name((ns, name)))
}

fn b64_text(n: roxmltree::Node, what: &str) -> Result<Vec<u8>, SamlError> {
    base64::engine::general_purpose::STANDARD
        .decode(super::shape::base64_without_whitespace(
            n.text().unwrap_or_default(),
        ))
        .map_err(|_| failed(format!("{what} is not base64")))
}

/// The bytes of an `xenc:CipherData/xenc:CipherValue` under `n`.
fn cipher_value(n: roxmltree::Node, what: &str) -> Result<Vec<u8>, SamlError> {
    let data = child(n, NS_XMLENC, "CipherData")
        .ok_or_else(|| failed(format!("{what} has no CipherData")))?;
    if child(data, NS_XMLENC, "CipherReference").is_some() {
        return Err(unsupported(format!("{what}: CipherReference")));
    }
    let value = child(data, NS_XMLENC, "CipherValue")
        .ok_or_else(|| failed(format!("{what} has no CipherValue")))?;
    b64_text(value, what)
}

fn digest(uri: &str) -> Option<&'static MdRef> {
    Some(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => Md::sha1(),
        "http://www.w3.org/2001/04/xmldsig-more#sha224" => Md::sha224(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => Md::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Md::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Md::sha512(),
        _ => return None,
    })
}

fn mgf1(uri: &str) -> Option<&'static MdRef> {
    Some(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => Md::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha224" => Md::sha224(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => Md::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => Md::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => Md::sha512(),
        _ => return None,
    })
}

/// How one EncryptedKey is to be decrypted.
struct Oaep {
    md: &'static MdRef,
    mgf1: &'static MdRef,
    label: Option<Vec<u8>>,
}

fn oaep_params(ek: roxmltree::Node) -> Result<Oaep, SamlError> {
    let method = child(ek, NS_XMLENC, "EncryptionMethod")
        .ok_or_else(|| failed("EncryptedKey has no EncryptionMethod"))?;
    let alg = method.attribute("Algorithm").unwrap_or_default();
    match alg {
        RSA_OAEP_MGF1P | RSA_OAEP => {}
        RSA_1_5 => {
            return Err(unsupported(
                "key transport rsa-1_5 is refused (Bleichenbacher's attack): configure RSA-OAEP at the IdP",
            ))
        }
        other => return Err(unsupported(format!("key transport {other:?}"))),
    }
    let md = match child(method, NS_DSIG, "DigestMethod") {
        Some(d) => {
            let uri = d.attribute("Algorithm").unwrap_or_default();
            digest(uri).ok_or_else(|| unsupported(format!("OAEP digest {uri:?}")))?
        }
        None => Md::sha1(),
    };
    let mgf1 = match child(method, NS_XMLENC11, "MGF") {
        Some(m) if alg == RSA_OAEP => {
            let uri = m.attribute("Algorithm").unwrap_or_default();
            mgf1(uri).ok_or_else(|| unsupported(format!("OAEP mask generation {uri:?}")))?
        }
        Some(_) => return Err(failed("MGF is only defined for xmlenc11#rsa-oaep")),
        None => Md::sha1(),
    };
    let label = match child(method, NS_XMLENC, "OAEPparams") {
        Some(p) => Some(b64_text(p, "OAEPparams")?).filter(|l| !l.is_empty()),
        None => None,
    };
    Ok(Oaep { md, mgf1, label })
}

fn rsa_oaep_decrypt(
    key: &PKey<Private>,
    p: &Oaep,
    wrapped: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.decrypt_init()?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
    ctx.set_rsa_oaep_md(p.md)?;
    ctx.set_rsa_mgf1_md(p.mgf1)?;
    if let Some(l) = &p.label {
        ctx.set_rsa_oaep_label(l)?;
    }
    let mut out = Vec::new();
    ctx.decrypt_to_vec(wrapped, &mut out)?;
    Ok(out)
}

fn decrypt_content(content: Content, key: &[u8], data: &[u8]) -> Result<Vec<u8>, SamlError> {
    match content {
        Content::Cbc(cipher) => {
            // IV, then whole blocks; XML Encryption padding: the last byte
            // says how many bytes (1..=16) to drop, the others are arbitrary.
            let bs = cipher.block_size();
            if data.len() < 2 * bs || !data.len().is_multiple_of(bs) {
                return Err(failed("CBC ciphertext has a wrong length"));
            }
            let (iv, ct) = data.split_at(bs);
            let mut c = Crypter::new(cipher, Mode::Decrypt, key, Some(iv))
                .map_err(|e| failed(format!("AES-CBC: {e}")))?;
            c.pad(false);
            let mut out = vec![0; ct.len() + bs];
            let n = c
                .update(ct, &mut out)
                .map_err(|e| failed(format!("AES-CBC: {e}")))?;
            let m = c
                .finalize(&mut out[n..])
                .map_err(|e| failed(format!("AES-CBC: {e}")))?;
            out.truncate(n + m);
            let pad = usize::from(*out.last().unwrap_or(&0));
            if pad == 0 || pad > bs || pad > out.len() {
                return Err(failed("CBC padding is invalid"));
            }
            out.truncate(out.len() - pad);
            Ok(out)
        }
        Content::Gcm(cipher) => {
            // 96-bit IV, ciphertext, 128-bit tag (XML Encryption 1.1).
            const IV: usize = 12;
            const TAG: usize = 16;
            if data.len() < IV + TAG {
                return Err(failed("GCM ciphertext is too short"));
            }
            let (iv, rest) = data.split_at(IV);
            let (ct, tag) = rest.split_at(rest.len() - TAG);
            let mut c = Crypter::new(cipher, Mode::Decrypt, key, Some(iv))
                .map_err(|e| failed(format!("AES-GCM: {e}")))?;
            c.pad(false);
            let mut out = vec![0; ct.len() + cipher.block_size()];
            let n = c
                .update(ct, &mut out)
                .map_err(|e| failed(format!("AES-GCM: {e}")))?;
            c.set_tag(tag)
                .map_err(|e| failed(format!("AES-GCM: {e}")))?;
            let m = c
                .finalize(&mut out[n..])
                .map_err(|_| failed("AES-GCM authentication tag does not match"))?;
            out.truncate(n + m);
            Ok(out)
        }
    }
}

/// Decrypts `encrypted_assertion` (a `saml:EncryptedAssertion` element) with
/// the SP key and returns the plaintext: the serialized Assertion, without
/// an XML declaration. Nothing in it is checked yet.
pub fn decrypt_assertion(
    encrypted_assertion: roxmltree::Node,
    key: &PKey<Private>,
) -> Result<String, SamlError> {
    let mut data_elems = encrypted_assertion
        .children()
        .filter(|c| c.has_tag_name((NS_XMLENC, "EncryptedData")));
    let ed = data_elems
        .next()
        .ok_or_else(|| failed("EncryptedAssertion has no xenc:EncryptedData"))?;
    if data_elems.next().is_some() {
        return Err(failed("EncryptedAssertion has several EncryptedData"));
    }
    if let Some(t) = ed.attribute("Type") {
        if t != TYPE_ELEMENT {
            return Err(unsupported(format!("EncryptedData Type {t:?}")));
        }
    }
    let alg = child(ed, NS_XMLENC, "EncryptionMethod")
        .and_then(|m| m.attribute("Algorithm"))
        .ok_or_else(|| failed("EncryptedData has no EncryptionMethod"))?;
    let content =
        Content::from_uri(alg).ok_or_else(|| unsupported(format!("content encryption {alg:?}")))?;
    let data = cipher_value(ed, "EncryptedData")?;

    // The EncryptedKey: inside EncryptedData/KeyInfo (Okta, Entra ID, ADFS)
    // or beside EncryptedData (Shibboleth). Several are possible (one per
    // recipient key): the first that our key opens is used.
    let keys: Vec<roxmltree::Node> = child(ed, NS_DSIG, "KeyInfo")
        .into_iter()
        .flat_map(|ki| ki.children())
        .chain(encrypted_assertion.children())
        .filter(|c| c.has_tag_name((NS_XMLENC, "EncryptedKey")))
        .collect();
    if keys.is_empty() {
        return Err(failed("no xenc:EncryptedKey for the SP key"));
    }
    // Each one costs an RSA private operation (also refused in `shape`).
    if keys.len() > super::shape::MAX_ENCRYPTED_KEYS {
        return Err(failed(format!("{} EncryptedKey elements", keys.len())));
    }
    if key.rsa().is_err() {
        return Err(unsupported(
            "saml.sp_key is not an RSA key (RSA-OAEP needs one)",
        ));
    }
    let mut session_key = None;
    let mut first_err = None;
    for ek in keys {
        let params = oaep_params(ek)?;
        let wrapped = cipher_value(ek, "EncryptedKey")?;
        match rsa_oaep_decrypt(key, &params, &wrapped) {
            Ok(k) if k.len() == content.key_len() => {
                session_key = Some(k);
                break;
            }
            Ok(k) => {
                first_err.get_or_insert(format!(
                    "content key has {} bytes, the algorithm needs {}",
                    k.len(),
                    content.key_len()
                ));
            }
            Err(_) => {
                first_err.get_or_insert(
                    "key transport failed: not encrypted for the SP key, or corrupted".to_string(),
                );
            }
        }
    }
    let session_key = session_key.ok_or_else(|| failed(first_err.unwrap_or_default()))?;
    let plain = decrypt_content(content, &session_key, &data)?;
    // The same UTF-8-only rule as for the message itself, before the
    // declaration is dropped.
    let text = String::from_utf8(plain).map_err(|_| failed("decrypted content is not UTF-8"))?;
    let text = super::shape::document_text(text.into_bytes())?;
    Ok(strip_xml_decl(&text).to_string())
}

/// Drops a byte-order mark and an XML declaration in front of an element.
pub fn strip_xml_decl(xml: &str) -> &str {
    let t = xml.trim_start_matches('\u{feff}').trim_start();
    match t.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start())
            .unwrap_or(t),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    const ASSERTION: &str = "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_a\" Version=\"2.0\"><saml:Issuer>idp</saml:Issuer></saml:Assertion>";

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    /// Encrypts like an IdP: random content key, IV prefix, RSA-OAEP key transport.
    fn encrypt(
        plain: &[u8],
        content_uri: &str,
        to: &PKey<Private>,
        key_method: &str,
        md: &MdRef,
        mgf: &MdRef,
        detached: bool,
    ) -> String {
        let content = Content::from_uri(content_uri).unwrap();
        let mut k = vec![0u8; content.key_len()];
        openssl::rand::rand_bytes(&mut k).unwrap();
        let data = match content {
            Content::Cbc(c) => {
                let mut iv = [0u8; 16];
                openssl::rand::rand_bytes(&mut iv).unwrap();
                // PKCS#7 is one form of the XML Encryption padding.
                let mut out = iv.to_vec();
                out.extend(openssl::symm::encrypt(c, &k, Some(&iv), plain).unwrap());
                out
            }
            Content::Gcm(c) => {
                let mut iv = [0u8; 12];
                openssl::rand::rand_bytes(&mut iv).unwrap();
                let mut tag = [0u8; 16];
                let ct =
                    openssl::symm::encrypt_aead(c, &k, Some(&iv), &[], plain, &mut tag).unwrap();
                [iv.to_vec(), ct, tag.to_vec()].concat()
            }
        };
        let mut ctx = PkeyCtx::new(to).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        ctx.set_rsa_oaep_md(md).unwrap();
        ctx.set_rsa_mgf1_md(mgf).unwrap();
        let mut wrapped = Vec::new();
        ctx.encrypt_to_vec(&k, &mut wrapped).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let md_uri = if md.type_() == Md::sha256().type_() {
            "http://www.w3.org/2001/04/xmlenc#sha256"
        } else {
            "http://www.w3.org/2000/09/xmldsig#sha1"
        };
        let mgf_el = if mgf.type_() == Md::sha256().type_() {
            "<xenc11:MGF xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\" Algorithm=\"http://www.w3.org/2009/xmlenc11#mgf1sha256\"/>"
        } else {
            ""
        };
        let ek = format!(
            "<xenc:EncryptedKey xmlns:xenc=\"{NS_XMLENC}\"><xenc:EncryptionMethod Algorithm=\"{key_method}\"><ds:DigestMethod xmlns:ds=\"{NS_DSIG}\" Algorithm=\"{md_uri}\"/>{mgf_el}</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>",
            b64(&wrapped)
        );
        let (inside, beside) = if detached {
            (String::new(), ek)
        } else {
            (
                format!("<ds:KeyInfo xmlns:ds=\"{NS_DSIG}\">{ek}</ds:KeyInfo>"),
                String::new(),
            )
        };
        format!(
            "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"><xenc:EncryptedData xmlns:xenc=\"{NS_XMLENC}\" Type=\"{TYPE_ELEMENT}\"><xenc:EncryptionMethod Algorithm=\"{content_uri}\"/>{inside}<xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>{beside}</saml:EncryptedAssertion>",
            b64(&data)
        )
    }

    fn open(xml: &str, key: &PKey<Private>) -> Result<String, SamlError> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        decrypt_assertion(doc.root_element(), key)
    }

    #[test]
    fn every_accepted_content_algorithm_and_key_transport_decrypts() {
        let k = key();
        for content in CONTENT_ALGORITHMS {
            for (method, md, mgf) in [
                (RSA_OAEP_MGF1P, Md::sha1(), Md::sha1()),
                (RSA_OAEP_MGF1P, Md::sha256(), Md::sha1()),
                (RSA_OAEP, Md::sha256(), Md::sha256()),
            ] {
                for detached in [false, true] {
                    let xml = encrypt(ASSERTION.as_bytes(), content, &k, method, md, mgf, detached);
                    assert_eq!(
                        open(&xml, &k).unwrap(),
                        ASSERTION,
                        "{content} {method} detached={detached}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_xml_declaration_in_the_plaintext_is_dropped() {
        let k = key();
        let plain = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{ASSERTION}");
        let xml = encrypt(
            plain.as_bytes(),
            CONTENT_ALGORITHMS[0],
            &k,
            RSA_OAEP_MGF1P,
            Md::sha1(),
            Md::sha1(),
            false,
        );
        assert_eq!(open(&xml, &k).unwrap(), ASSERTION);
    }

    #[test]
    fn another_key_fails_with_a_reason_not_a_panic() {
        let (k, other) = (key(), key());
        let xml = encrypt(
            ASSERTION.as_bytes(),
            CONTENT_ALGORITHMS[3],
            &k,
            RSA_OAEP_MGF1P,
            Md::sha1(),
            Md::sha1(),
            false,
        );
        let e = open(&xml, &other).unwrap_err();
        assert_eq!(e.reason(), "decryption_failed", "{e}");
    }

    #[test]
    fn truncated_padded_or_garbage_ciphertexts_fail_cleanly() {
        let k = key();
        for content in CONTENT_ALGORITHMS {
            let xml = encrypt(
                ASSERTION.as_bytes(),
                content,
                &k,
                RSA_OAEP_MGF1P,
                Md::sha1(),
                Md::sha1(),
                false,
            );
            let doc = roxmltree::Document::parse(&xml).unwrap();
            let cv = doc
                .descendants()
                .rfind(|n| n.has_tag_name((NS_XMLENC, "CipherValue")))
                .unwrap()
                .text()
                .unwrap()
                .to_string();
            let b = base64::engine::general_purpose::STANDARD;
            for bad in [
                String::new(),
                b.encode([0u8; 1]),
                b.encode([0u8; 16]),
                b.encode([0xffu8; 28]),
                b.encode([0xffu8; 33]),
                b.encode([0x41u8; 64]),
                "!!not base64!!".to_string(),
            ] {
                let e = open(&xml.replace(&cv, &bad), &k).unwrap_err();
                assert_eq!(e.reason(), "decryption_failed", "{content}: {e}");
            }
        }
    }

    #[test]
    fn pkcs1_v15_key_transport_and_unknown_algorithms_are_refused() {
        let k = key();
        let xml = encrypt(
            ASSERTION.as_bytes(),
            CONTENT_ALGORITHMS[3],
            &k,
            RSA_OAEP_MGF1P,
            Md::sha1(),
            Md::sha1(),
            false,
        );
        for (from, to) in [
            (RSA_OAEP_MGF1P, RSA_1_5),
            (
                CONTENT_ALGORITHMS[3],
                "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
            ),
        ] {
            let e = open(&xml.replace(from, to), &k).unwrap_err();
            assert_eq!(e.reason(), "encryption_unsupported", "{e}");
        }
    }

    #[test]
    fn an_ec_sp_key_is_reported_not_a_panic() {
        let rsa = key();
        let xml = encrypt(
            ASSERTION.as_bytes(),
            CONTENT_ALGORITHMS[0],
            &rsa,
            RSA_OAEP_MGF1P,
            Md::sha1(),
            Md::sha1(),
            false,
        );
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        assert_eq!(
            open(&xml, &ec).unwrap_err().reason(),
            "encryption_unsupported"
        );
    }
}
