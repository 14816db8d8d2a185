//! `saml` makes the gateway a SAML 2.0 Service Provider: the IdP registry
//! (`idp`), response validation (`response`, pure; `xmlenc` decrypts
//! EncryptedAssertion), SP metadata
//! (`metadata`) and the sign-in endpoints (`web`: login page, AuthnRequest,
//! ACS, logout). Every refusal is a [`SamlError`] with a stable reason code
//! that goes to the log next to a reference id shown to the user. It knows
//! nothing about pingora; it uses the session manager and the store.

pub mod idp;
pub mod metadata;
pub mod remote;
pub mod response;
pub mod shape;
pub mod slo;
pub mod web;
pub mod xmlenc;

use crate::config::{Config, Problem, SamlConfig};

/// Why a sign-in was refused. `reason()` is logged; the user sees a generic
/// page with a reference id (details only in the log, more with `debug`).
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("SAML response larger than the configured limit")]
    TooLarge,
    #[error("malformed SAML response: {0}")]
    Malformed(String),
    #[error("DOCTYPE or entity declaration in SAML message")]
    Dtd,
    #[error("XML comment in SAML message")]
    Comment,
    #[error("SAML message is not plain UTF-8: {0}")]
    Encoding(String),
    #[error("signature shape not accepted: {0}")]
    SignatureShape(String),
    #[error("the verified message differs from the one inspected: {0}")]
    Differential(String),
    #[error("SHA-1 signature or digest (set saml.allow_sha1 for legacy IdPs)")]
    Sha1,
    #[error("{0} is not signed as required")]
    Unsigned(&'static str),
    #[error("signature invalid or not made by a configured IdP certificate")]
    Signature,
    #[error("issuer {0:?} is not a configured IdP")]
    UnknownIssuer(String),
    #[error("issuer does not match the IdP: {0}")]
    Issuer(String),
    #[error("Destination is not our endpoint URL: {0}")]
    Destination(String),
    #[error("Recipient is not our ACS URL: {0}")]
    Recipient(String),
    #[error("Audience does not contain our entity id (found: {0})")]
    Audience(String),
    #[error("assertion or response expired: {0}")]
    Expired(String),
    #[error("assertion not yet valid: {0}")]
    NotYetValid(String),
    #[error("InResponseTo does not match a pending request of ours")]
    InResponseTo,
    #[error("unsolicited (IdP-initiated) response, not allowed for this IdP")]
    IdpInitiatedNotAllowed,
    #[error("sign-in was started in another browser (login binding cookie missing or wrong)")]
    BrowserBinding,
    #[error("unsolicited sign-in not confirmed from the browser it was shown in: {0}")]
    Unconfirmed(String),
    #[error("LogoutResponse for a browser that is still signed in (not after our logout)")]
    UnexpectedLogoutResponse,
    #[error("assertion was already used (replay)")]
    Replay,
    #[error("IdP reported failure: {0}")]
    Status(String),
    #[error("assertion has no Subject NameID")]
    NoSubject,
    #[error("no bearer SubjectConfirmation with valid data")]
    SubjectConfirmation(String),
    #[error("user {0} is deactivated")]
    Deactivated(String),
    #[error("user {0} is not provisioned and JIT is disabled for this IdP")]
    NotProvisioned(String),
    #[error("user {0} belongs to IdP {1}")]
    WrongIdp(String, String),
    #[error("asserted identifier {0}")]
    ForeignEmail(String),
    #[error("user {0} is not this IdP's: {1}")]
    NotOwned(String, String),
    #[error("{0}")]
    Identifier(String),
    #[error("the Response holds both a plain and an encrypted assertion")]
    MixedAssertions,
    #[error("EncryptedAssertion received but no saml.sp_key is configured to decrypt it")]
    NoSpKey,
    #[error("encrypted assertion could not be decrypted: {0}")]
    Decrypt(String),
    #[error("encrypted assertion uses an algorithm that is not accepted: {0}")]
    EncryptionUnsupported(String),
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("{0}")]
    Other(String),
}

impl SamlError {
    /// Stable reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::Dtd => "dtd",
            Self::Comment => "xml_comment",
            Self::Encoding(_) => "encoding",
            Self::SignatureShape(_) => "signature_shape",
            Self::Differential(_) => "parser_differential",
            Self::Sha1 => "sha1_refused",
            Self::Unsigned(_) => "unsigned",
            Self::Signature => "bad_signature",
            Self::UnknownIssuer(_) => "unknown_issuer",
            Self::Issuer(_) => "issuer_mismatch",
            Self::Destination(_) => "destination_mismatch",
            Self::Recipient(_) => "recipient_mismatch",
            Self::Audience(_) => "audience_mismatch",
            Self::Expired(_) => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::InResponseTo => "in_response_to",
            Self::IdpInitiatedNotAllowed => "idp_initiated_refused",
            Self::BrowserBinding => "browser_binding",
            Self::Unconfirmed(_) => "idp_initiated_unconfirmed",
            Self::UnexpectedLogoutResponse => "unexpected_logout_response",
            Self::Replay => "replay",
            Self::Status(_) => "status_not_success",
            Self::NoSubject => "no_subject",
            Self::SubjectConfirmation(_) => "subject_confirmation",
            Self::Deactivated(_) => "user_deactivated",
            Self::NotProvisioned(_) => "user_not_provisioned",
            Self::MixedAssertions => "mixed_assertions",
            Self::NoSpKey => "no_sp_key",
            Self::Decrypt(_) => "decryption_failed",
            Self::EncryptionUnsupported(_) => "encryption_unsupported",
            Self::WrongIdp(..) => "wrong_idp",
            Self::ForeignEmail(_) => "foreign_email_domain",
            Self::NotOwned(..) => "user_not_owned",
            Self::Identifier(_) => "invalid_identifier",
            Self::Store(_) => "store_unavailable",
            Self::Other(_) => "error",
        }
    }

    /// HTTP status of the error page.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::Store(_) => 503,
            Self::Deactivated(_)
            | Self::NotProvisioned(_)
            | Self::WrongIdp(..)
            | Self::ForeignEmail(_)
            | Self::NotOwned(..)
            | Self::Identifier(_) => 403,
            _ => 400,
        }
    }

    fn from_samael(e: samael::service_provider::Error) -> Self {
        use samael::service_provider::Error as E;
        match e {
            E::FailedToValidateSignature | E::CryptoXmlError(_) | E::CryptoProviderError(_) => {
                Self::Signature
            }
            E::DestinationValidationError {
                response_destination,
                ..
            } => Self::Destination(response_destination.unwrap_or_default()),
            E::AssertionExpired { time }
            | E::AssertionConditionExpired { time }
            | E::AssertionSubjectConfirmationExpired { time }
            | E::ResponseExpired { time } => Self::Expired(time),
            E::AssertionConditionExpiredBefore { time }
            | E::AssertionSubjectConfirmationExpiredBefore { time } => Self::NotYetValid(time),
            E::AssertionIssuerMismatch { issuer, .. }
            | E::ResponseIssuerMismatch { issuer, .. } => Self::Issuer(issuer.unwrap_or_default()),
            E::AssertionConditionAudienceRestrictionFailed { requirement } => {
                Self::Audience(requirement)
            }
            E::AssertionRecipientMismatch {
                assertion_recipient,
                ..
            } => Self::Recipient(assertion_recipient.unwrap_or_default()),
            E::AssertionInResponseToInvalid { .. } | E::ResponseInResponseToInvalid { .. } => {
                Self::InResponseTo
            }
            E::ResponseBadStatusCode { code } => Self::Status(code),
            E::AssertionBearerSubjectConfirmationMissing
            | E::AssertionSubjectConfirmationMissing => Self::SubjectConfirmation(e.to_string()),
            // Encrypted assertions are decrypted by `xmlenc`, never by samael:
            // these only arise if one slipped past `response::inspect`.
            E::MissingPrivateKeySP => Self::NoSpKey,
            E::EncryptedAssertionsNotYetSupported
            | E::EncryptedAssertionKeyMethodUnsupported { .. }
            | E::EncryptedAssertionValueMethodUnsupported { .. } => {
                Self::EncryptionUnsupported(e.to_string())
            }
            E::MissingEncryptedKeyInfo
            | E::MissingEncryptedValueInfo
            | E::EncryptedAssertionInvalid
            | E::FailedToDecryptAssertion => Self::Decrypt(e.to_string()),
            E::FailedToParseSamlResponse(_)
            | E::FailedToParseSamlAssertion(_)
            | E::DeserializeResponseError => Self::Malformed(e.to_string()),
            other => Self::Other(other.to_string()),
        }
    }
}

/// Config validation for `[saml]`: builds the registry exactly as `run` would.
pub fn validate_config(cfg: &Config, saml: &SamlConfig, problems: &mut Vec<Problem>) {
    if let Err((key, msg)) = idp::Registry::build(cfg, saml, None) {
        problems.push(Problem::new(key, msg));
    }
    let https = cfg.is_https();
    let host = cfg.server.public_url.0.host_str().unwrap_or_default();
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    if saml.bind_to_browser && !https && !loopback {
        problems.push(Problem::new(
            "saml.bind_to_browser",
            "needs an https public_url (browsers drop SameSite=None cookies without Secure); use https or set false",
        ));
    }
    if saml.idp.len() > 1 {
        for (i, c) in saml.idp.iter().enumerate() {
            if c.tenant.is_none() {
                problems.push(Problem::new(
                    format!("saml.idp[{i}].tenant"),
                    "required when several IdPs are configured: say explicitly which IdPs share users",
                ));
            }
        }
    }
    for (i, c) in saml.idp.iter().enumerate() {
        if c.metadata_url.is_some() && c.metadata_refresh.get().as_secs() < 10 {
            problems.push(Problem::new(
                format!("saml.idp[{i}].metadata_refresh"),
                "must be at least 10s",
            ));
        }
    }
    let skew = saml.clock_skew.get().as_secs();
    if skew > 600 {
        problems.push(Problem::new("saml.clock_skew", "must be at most 10m"));
    }
    if saml.max_response_bytes < 4096 {
        problems.push(Problem::new(
            "saml.max_response_bytes",
            "must be at least 4096",
        ));
    }
    for (i, p) in saml.bypass.iter().enumerate() {
        let rule = crate::config::PolicyRuleConfig {
            path: p.clone(),
            methods: vec![],
            allow: Some("public".into()),
            groups: None,
            tenant: None,
        };
        if let Err(e) = crate::policy::Rule::compile(&rule) {
            problems.push(Problem::new(format!("saml.bypass[{i}]"), e.to_string()));
        }
    }
}
