//! Standard Webhooks signatures (spec v1.0.0, symmetric scheme): secrets
//! are `whsec_<base64>`, the signed content is `"{id}.{timestamp}.{body}"`,
//! the header carries space-separated `v1,<base64 HMAC-SHA256>` entries so
//! several secrets can sign during rotation. Verification is constant-time
//! and checks the timestamp tolerance. Empty secrets are refused (the
//! reference crate accepts them).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Header names of the scheme.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Default tolerance between the signed timestamp and the receiver's clock.
pub const TOLERANCE_SECS: u64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("webhook secret must look like whsec_<base64> (24 to 64 random bytes)")]
    BadSecret,
    #[error("webhook-id must not be empty or contain '.'")]
    BadId,
    #[error("no valid signature")]
    NoMatch,
    #[error("timestamp outside the {0} s tolerance")]
    Stale(u64),
    #[error("malformed webhook-timestamp")]
    BadTimestamp,
}

/// A signing secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>`; the key must be 24–64 bytes.
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let b64 = s
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SigningError::BadSecret)?;
        let key = STANDARD.decode(b64).map_err(|_| SigningError::BadSecret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SigningError::BadSecret);
        }
        Ok(Self(key))
    }

    /// A new random secret in `whsec_` form.
    pub fn generate() -> String {
        format!(
            "whsec_{}",
            STANDARD.encode(crate::secret::random_bytes::<32>())
        )
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length: this cannot fail.
        let mut m = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m.finalize().into_bytes().into()
    }

    /// `v1,<base64>` for one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> Result<String, SigningError> {
        if id.is_empty() || id.contains('.') {
            return Err(SigningError::BadId);
        }
        Ok(format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body))
        ))
    }
}

/// The `webhook-signature` header value: one signature per secret.
pub fn signature_header(
    secrets: &[Secret],
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<String, SigningError> {
    let sigs = secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sigs.join(" "))
}

/// Receiver-side check: some `v1` signature in `header` is valid for some
/// secret, and `timestamp` is within `tolerance` of `now`.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: &str,
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> Result<(), SigningError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SigningError::BadTimestamp)?;
    if ts.abs_diff(now) > tolerance {
        return Err(SigningError::Stale(tolerance));
    }
    let mut ok = false;
    for part in header.split_whitespace() {
        let Some(b64) = part.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        for s in secrets {
            ok |= bool::from(given.as_slice().ct_eq(&s.mac(id, ts, body)));
        }
    }
    if ok {
        Ok(())
    } else {
        Err(SigningError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: u64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;

    #[test]
    fn matches_the_specification_vector() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(
            s.sign(ID, TS, BODY).unwrap(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn verifies_with_any_rotated_secret_and_refuses_tampering() {
        let old = Secret::parse(SECRET).unwrap();
        let new = Secret::parse(&Secret::generate()).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], ID, TS, BODY).unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(
            std::slice::from_ref(&old),
            ID,
            &TS.to_string(),
            &header,
            BODY,
            TS + 10,
            300
        )
        .is_ok());
        assert!(verify(&[new], ID, &TS.to_string(), &header, BODY, TS, 300).is_ok());
        assert_eq!(
            verify(
                std::slice::from_ref(&old),
                ID,
                &TS.to_string(),
                &header,
                b"{}",
                TS,
                300
            ),
            Err(SigningError::NoMatch)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&old),
                "msg_other",
                &TS.to_string(),
                &header,
                BODY,
                TS,
                300
            ),
            Err(SigningError::NoMatch)
        );
        assert_eq!(
            verify(&[old], ID, &TS.to_string(), &header, BODY, TS + 301, 300),
            Err(SigningError::Stale(300))
        );
    }

    #[test]
    fn refuses_empty_short_and_malformed_secrets_and_ids() {
        assert!(Secret::parse("whsec_").is_err());
        assert!(Secret::parse("whsec_AAAA").is_err(), "3 bytes is too short");
        assert!(
            Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err(),
            "prefix required"
        );
        assert!(Secret::parse("whsec_!!!").is_err());
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(s.sign("", TS, BODY), Err(SigningError::BadId));
        assert_eq!(s.sign("a.b", TS, BODY), Err(SigningError::BadId));
    }
}
