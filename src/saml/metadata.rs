//! SP metadata, written from the registry's SP settings rather than
//! samael's generator (which hard-codes AuthnRequestsSigned="false" and a
//! POST-only SLO): what the operator pastes into JumpCloud, Okta or Entra.

use base64::Engine;

use super::idp::SpSettings;
use crate::html::escape;

pub fn sp_metadata(sp: &SpSettings) -> String {
    let keys = match &sp.cert_der {
        Some(der) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let ki = format!("<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>");
            // The algorithms `xmlenc` accepts, preferred first (IdPs that
            // read SP metadata, e.g. Shibboleth, pick from these).
            let methods: String = super::xmlenc::CONTENT_ALGORITHMS
                .iter()
                .chain(super::xmlenc::KEY_TRANSPORT_ALGORITHMS.iter())
                .map(|a| format!("<md:EncryptionMethod Algorithm=\"{a}\"/>"))
                .collect();
            format!(
                "<md:KeyDescriptor use=\"signing\">{ki}</md:KeyDescriptor><md:KeyDescriptor use=\"encryption\">{ki}{methods}</md:KeyDescriptor>"
            )
        }
        None => String::new(),
    };
    let signed = if sp.key.is_some() { "true" } else { "false" };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {keys}
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{slo}"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{slo}"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity = escape(&sp.entity_id),
        slo = escape(&sp.slo_url),
        acs = escape(&sp.acs_url),
    )
}
