//! The IdP registry: every `[[saml.idp]]` turned into a strict samael
//! `ServiceProvider` (algorithm allow-list set, clock skew applied) plus the
//! routing facts (domains, tenant) and policies (IdP-initiated, signature
//! requirement, attribute mapping, JIT). An IdP without a signing
//! certificate is refused here: samael would otherwise skip verification.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};

use crate::config::{
    AttributeMapping, Config, IdpConfig, JitConfig, SamlConfig, SignatureRequirement,
};

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("{0}")]
    Invalid(String),
}

/// SP facts shared by every IdP.
pub struct SpSettings {
    pub entity_id: String,
    pub acs_url: String,
    pub slo_url: String,
    pub metadata_url: String,
    pub clock_skew: std::time::Duration,
    pub allow_sha1: bool,
    pub max_response_bytes: usize,
    pub request_ttl: std::time::Duration,
    pub bind_to_browser: bool,
    pub debug: bool,
    pub key: Option<openssl::pkey::PKey<openssl::pkey::Private>>,
    /// DER of the SP certificate (metadata).
    pub cert_der: Option<Vec<u8>>,
}

/// One configured identity provider.
pub struct Idp {
    pub id: String,
    pub display_name: String,
    pub entity_id: String,
    pub sso_url: String,
    pub slo_url: Option<String>,
    pub domains: Vec<String>,
    pub tenant: Option<String>,
    pub allow_idp_initiated: bool,
    pub idp_initiated_confirm: bool,
    pub require_signature: SignatureRequirement,
    pub attributes: AttributeMapping,
    pub jit: JitConfig,
    /// Validates responses to our AuthnRequests (InResponseTo required).
    pub sp: ServiceProvider,
    /// Validates unsolicited (IdP-initiated) responses.
    pub sp_unsolicited: ServiceProvider,
    /// `sp` without any IdP certificate or SP key: samael's checks (issuer,
    /// destination, recipient, times, InResponseTo, status) but no signature
    /// verification. Only for a Response rebuilt from content whose
    /// signatures were verified beforehand (a decrypted assertion).
    pub checks_only: ServiceProvider,
    /// `sp_unsolicited` likewise.
    pub checks_only_unsolicited: ServiceProvider,
    /// The configured signing certificates (the only keys trusted for this IdP).
    pub certs: Vec<samael::crypto::CertificateDer>,
}

/// All IdPs and the SP settings.
pub struct Registry {
    pub sp: SpSettings,
    pub idps: Vec<Arc<Idp>>,
}

impl Registry {
    pub fn by_id(&self, id: &str) -> Option<&Arc<Idp>> {
        self.idps.iter().find(|i| i.id == id)
    }

    pub fn by_entity_id(&self, entity_id: &str) -> Option<&Arc<Idp>> {
        self.idps.iter().find(|i| i.entity_id == entity_id)
    }

    /// The IdP for an email address's domain (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Arc<Idp>> {
        let domain = email.rsplit_once('@')?.1.trim().to_ascii_lowercase();
        self.idps.iter().find(|i| i.domains.contains(&domain))
    }

    /// Builds every IdP; the first error names its config key. `remote`
    /// holds fetched metadata by IdP id; `None` is config validation, where
    /// IdPs configured by `metadata_url` are only checked for form.
    pub fn build(
        cfg: &Config,
        saml: &SamlConfig,
        remote: Option<&HashMap<String, String>>,
    ) -> Result<Self, (String, String)> {
        let origin = cfg.server.public_url.origin();
        let prefix = &cfg.server.reserved_prefix;
        let (key, cert_der) = load_sp_keypair(saml)?;
        let sp = SpSettings {
            entity_id: saml.entity_id.clone().unwrap_or_else(|| origin.clone()),
            acs_url: format!("{origin}{prefix}/saml/acs"),
            slo_url: format!("{origin}{prefix}/saml/slo"),
            metadata_url: format!("{origin}{prefix}/saml/metadata"),
            clock_skew: saml.clock_skew.get(),
            allow_sha1: saml.allow_sha1,
            max_response_bytes: saml.max_response_bytes,
            request_ttl: saml.request_ttl.get(),
            bind_to_browser: saml.bind_to_browser,
            debug: saml.debug
                || std::env::var("SAML_DEBUG")
                    .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
            key,
            cert_der,
        };
        let mut idps: Vec<Arc<Idp>> = Vec::new();
        for (i, c) in saml.idp.iter().enumerate() {
            let fetched = match (&c.metadata_url, remote) {
                (Some(u), None) => {
                    check_metadata_url(c, u, saml.insecure_loopback_metadata_for_tests)
                        .map_err(|(k, m)| (format!("saml.idp[{i}].{k}"), m))?;
                    continue;
                }
                (Some(_), Some(map)) => Some(map.get(&c.id).ok_or((
                    format!("saml.idp[{i}].metadata_url"),
                    "metadata could not be fetched and no cached copy exists".to_string(),
                ))?),
                (None, _) => None,
            };
            let idp = build_idp(&sp, c, fetched.map(String::as_str))
                .map_err(|(k, m)| (format!("saml.idp[{i}].{k}"), m))?;
            if idps.iter().any(|o| o.id == idp.id) {
                return Err((
                    format!("saml.idp[{i}].id"),
                    format!("duplicate IdP id {:?}", idp.id),
                ));
            }
            if let Some(d) = idp
                .domains
                .iter()
                .find(|d| idps.iter().any(|o| o.domains.contains(d)))
            {
                return Err((
                    format!("saml.idp[{i}].domains"),
                    format!("domain {d:?} is routed to two IdPs"),
                ));
            }
            if idps.iter().any(|o| o.entity_id == idp.entity_id) {
                return Err((
                    format!("saml.idp[{i}].entity_id"),
                    format!("IdP entity id {:?} is configured twice", idp.entity_id),
                ));
            }
            idps.push(Arc::new(idp));
        }
        if idps.is_empty() && (remote.is_some() || saml.idp.is_empty()) {
            return Err((
                "saml.idp".into(),
                "configure at least one [[saml.idp]]".into(),
            ));
        }
        Ok(Self { sp, idps })
    }
}

type KeyPair = (
    Option<openssl::pkey::PKey<openssl::pkey::Private>>,
    Option<Vec<u8>>,
);

fn load_sp_keypair(saml: &SamlConfig) -> Result<KeyPair, (String, String)> {
    match (&saml.sp_key, &saml.sp_cert) {
        (None, None) => Ok((None, None)),
        (Some(_), None) => Err(("saml.sp_cert".into(), "required with saml.sp_key".into())),
        (None, Some(_)) => Err(("saml.sp_key".into(), "required with saml.sp_cert".into())),
        (Some(k), Some(c)) => {
            let kb = std::fs::read(k).map_err(|e| {
                (
                    "saml.sp_key".to_string(),
                    format!("cannot read {}: {e}", k.display()),
                )
            })?;
            let key = openssl::pkey::PKey::private_key_from_pem(&kb).map_err(|e| {
                (
                    "saml.sp_key".to_string(),
                    format!("{} is not a PEM private key: {e}", k.display()),
                )
            })?;
            let der = read_cert_ders(c).map_err(|m| ("saml.sp_cert".to_string(), m))?;
            let first = der
                .into_iter()
                .next()
                .ok_or(("saml.sp_cert".to_string(), "no certificate".to_string()))?;
            let x509 = openssl::x509::X509::from_der(&first)
                .map_err(|e| ("saml.sp_cert".to_string(), e.to_string()))?;
            let matches = x509
                .public_key()
                .map(|pk| pk.public_eq(&key))
                .unwrap_or(false);
            if !matches {
                return Err((
                    "saml.sp_key".into(),
                    "does not belong to saml.sp_cert".into(),
                ));
            }
            Ok((Some(key), Some(first)))
        }
    }
}

/// All certificates (DER) in a PEM file.
pub fn read_cert_ders(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .filter_map(|c| c.ok())
        .map(|c| c.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    for c in &certs {
        openssl::x509::X509::from_der(c)
            .map_err(|e| format!("{}: unreadable certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

fn xml_escape(s: &str) -> String {
    crate::html::escape(s)
}

/// Metadata XML for an IdP configured by hand, so both paths share one parser.
fn manual_metadata(c: &IdpConfig) -> Result<String, (String, String)> {
    let entity = c.entity_id.as_deref().ok_or((
        "entity_id".to_string(),
        "required without metadata_file".to_string(),
    ))?;
    let sso = c.sso_url.as_deref().ok_or((
        "sso_url".to_string(),
        "required without metadata_file".to_string(),
    ))?;
    let certs = c.certificate.as_ref().ok_or((
        "certificate".to_string(),
        "required without metadata_file: responses are verified only against it".to_string(),
    ))?;
    let mut keys = String::new();
    for p in certs.paths() {
        for der in read_cert_ders(&p).map_err(|m| ("certificate".to_string(), m))? {
            keys.push_str(&format!(
                "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
                base64::engine::general_purpose::STANDARD.encode(der)
            ));
        }
    }
    let slo = c
        .slo_url
        .as_deref()
        .map(|u| {
            format!(
                "<md:SingleLogoutService Binding=\"{HTTP_REDIRECT_BINDING}\" Location=\"{}\"/>",
                xml_escape(u)
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}{slo}\
<md:SingleSignOnService Binding=\"{HTTP_REDIRECT_BINDING}\" Location=\"{}\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
        xml_escape(entity),
        xml_escape(sso)
    ))
}

fn allowed_algorithms(allow_sha1: bool) -> Option<Vec<AllowedSignatureAlgorithm>> {
    if allow_sha1 {
        // samael's allow-list has no SHA-1 entries: legacy mode accepts any algorithm.
        None
    } else {
        use AllowedSignatureAlgorithm::*;
        Some(vec![
            RsaSha256,
            RsaSha384,
            RsaSha512,
            EcdsaSha256,
            EcdsaSha384,
            EcdsaSha512,
        ])
    }
}

/// Whether `url` is plain http to this host (the test-only exception).
pub fn is_loopback_http(url: &url::Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        }
}

fn check_metadata_url(
    c: &IdpConfig,
    u: &str,
    loopback_http_allowed: bool,
) -> Result<(), (String, String)> {
    if c.metadata_file.is_some()
        || c.entity_id.is_some()
        || c.sso_url.is_some()
        || c.certificate.is_some()
    {
        return Err((
            "metadata_url".into(),
            "set one of metadata_url, metadata_file, or entity_id + sso_url + certificate".into(),
        ));
    }
    match url::Url::parse(u) {
        Ok(url) if url.scheme() == "https" => Ok(()),
        Ok(url) if loopback_http_allowed && is_loopback_http(&url) => Ok(()),
        Ok(url) if is_loopback_http(&url) => Err((
            "metadata_url".into(),
            "must be an https:// URL (metadata carries the signing certificate); plain http to loopback only with saml.insecure_loopback_metadata_for_tests".into(),
        )),
        Ok(_) => Err((
            "metadata_url".into(),
            "must be an https:// URL (metadata carries the signing certificate)".into(),
        )),
        Err(e) => Err(("metadata_url".into(), format!("invalid URL: {e}"))),
    }
}

fn build_idp(
    sp: &SpSettings,
    c: &IdpConfig,
    fetched: Option<&str>,
) -> Result<Idp, (String, String)> {
    let id_ok = !c.id.is_empty()
        && c.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(("id".into(), "letters, digits, '-' and '_' only".into()));
    }
    let xml = match (&c.metadata_file, fetched) {
        (_, Some(x)) => x.to_string(),
        (Some(p), None) => {
            if c.entity_id.is_some() || c.sso_url.is_some() || c.certificate.is_some() {
                return Err((
                    "metadata_file".into(),
                    "set either metadata_file or entity_id + sso_url + certificate, not both"
                        .into(),
                ));
            }
            let bytes = std::fs::read(p).map_err(|e| {
                (
                    "metadata_file".to_string(),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            super::shape::document_text(bytes)
                .map_err(|e| ("metadata_file".to_string(), e.to_string()))?
        }
        (None, None) => manual_metadata(c)?,
    };
    if super::shape::refuse_dtd(&xml).is_err() {
        return Err((
            "metadata_file".into(),
            "DTDs are not accepted in metadata".into(),
        ));
    }
    let md: EntityDescriptor = xml.parse().map_err(|e| {
        (
            "metadata_file".to_string(),
            format!("not SAML metadata: {e}"),
        )
    })?;
    let entity_id = md.entity_id.clone().filter(|e| !e.is_empty()).ok_or((
        "metadata_file".to_string(),
        "metadata has no entityID".to_string(),
    ))?;
    let skew = chrono::Duration::from_std(sp.clock_skew).unwrap_or(chrono::Duration::seconds(120));
    let mut builder = ServiceProviderBuilder::default();
    builder
        .entity_id(sp.entity_id.clone())
        .acs_url(sp.acs_url.clone())
        .slo_url(sp.slo_url.clone())
        .metadata_url(sp.metadata_url.clone())
        .idp_metadata(md)
        .allowed_signature_algorithms(allowed_algorithms(sp.allow_sha1))
        .max_clock_skew(skew)
        .max_issue_delay(skew + chrono::Duration::seconds(90))
        .authn_name_id_format(Some(
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".to_string(),
        ))
        .allow_idp_initiated(false);
    if let Some(k) = &sp.key {
        builder.key(k.clone());
    }
    let strict = builder
        .build()
        .map_err(|e| ("metadata_file".to_string(), e.to_string()))?;
    let certs = strict
        .idp_signing_certs()
        .map_err(|e| {
            (
                "certificate".to_string(),
                format!("unreadable IdP certificate: {e}"),
            )
        })?
        .unwrap_or_default();
    if certs.is_empty() {
        return Err((
            "certificate".into(),
            "the IdP has no signing certificate: responses could not be verified, so it is refused"
                .into(),
        ));
    }
    // samael only base64-decodes metadata certificates: one that is not a
    // certificate would verify nothing, silently (found by fuzzing). At a
    // metadata_url refresh this error keeps the previous registry.
    for (n, c) in certs.iter().enumerate() {
        openssl::x509::X509::from_der(c.der_data()).map_err(|e| {
            (
                "certificate".to_string(),
                format!(
                    "signing certificate {} in the metadata is unreadable: {e}",
                    n + 1
                ),
            )
        })?;
    }
    let sso_url = strict.sso_binding_location(HTTP_REDIRECT_BINDING).ok_or((
        "sso_url".to_string(),
        "the IdP offers no HTTP-Redirect SingleSignOnService".to_string(),
    ))?;
    url::Url::parse(&sso_url).map_err(|e| ("sso_url".to_string(), format!("invalid URL: {e}")))?;
    let slo_url = strict.slo_binding_location(HTTP_REDIRECT_BINDING);
    let mut unsolicited = strict.clone();
    unsolicited.allow_idp_initiated = true;
    let checks_only = without_keys(&strict)?;
    let checks_only_unsolicited = without_keys(&unsolicited)?;
    Ok(Idp {
        id: c.id.clone(),
        display_name: c.display_name.clone().unwrap_or_else(|| c.id.clone()),
        entity_id,
        sso_url,
        slo_url,
        domains: c
            .domains
            .iter()
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        tenant: c.tenant.clone(),
        allow_idp_initiated: c.allow_idp_initiated,
        idp_initiated_confirm: c.idp_initiated_confirm,
        require_signature: c.require_signature,
        attributes: c.attributes.clone(),
        jit: c.jit.clone(),
        sp: strict,
        sp_unsolicited: unsolicited,
        checks_only,
        checks_only_unsolicited,
        certs,
    })
}

/// A copy of `sp` that trusts no IdP certificate and holds no SP key, so
/// samael neither verifies signatures nor decrypts (see `Idp::checks_only`).
fn without_keys(sp: &ServiceProvider) -> Result<ServiceProvider, (String, String)> {
    let mut c = sp.clone();
    c.key = None;
    for d in c.idp_metadata.idp_sso_descriptors.iter_mut().flatten() {
        d.key_descriptors.clear();
    }
    match c.idp_signing_certs() {
        Ok(None) => Ok(c),
        _ => Err((
            "certificate".into(),
            "internal: could not derive the post-decryption validator".into(),
        )),
    }
}
