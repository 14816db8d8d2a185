//! Bearer tokens the gateway checks (admin API now, SCIM clients later):
//! generated once, shown once, stored only as a SHA-256 hash, compared in
//! constant time. The tokens carry 256 bits of entropy, so a fast hash is the
//! right tool; a password KDF would only slow every request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buf)
        .expect("the operating system random source failed");
    buf
}

/// A new token: `prefix` + base64url of 32 random bytes.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// The stored form of a token: `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or("missing \"sha256:\" prefix")?;
        if hex.len() != 64 {
            return Err("expected 64 hex digits");
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).map_err(|_| "not hex")?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| "not hex")?;
        }
        Ok(Self(out))
    }

    /// Constant-time check of a presented token against this hash.
    pub fn verify(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.ct_eq(&self.0).into()
    }
}

impl std::fmt::Display for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        f.write_str(&hex::encode(self.0))
    }
}

/// Lower-case hex of SHA-256, used for store keys derived from secrets.
pub fn sha256_hex(data: &[u8]) -> String {
    // (`hex` uses a table: a `format!` per byte cost ~20k instructions on
    // every signed-in request, which hashes its session id.)
    let mut out = [0u8; 64];
    // (encode_to_slice: `hex::encode` collects chars one by one.)
    hex::encode_to_slice(Sha256::digest(data), &mut out).expect("64 bytes hold 32 in hex");
    String::from_utf8_lossy(&out).into_owned()
}

/// Extracts the token of an `Authorization: Bearer <token>` value.
pub fn bearer_token(value: Option<&http::HeaderValue>) -> Option<&str> {
    let v = value?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
        Some(token.trim())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_round_trips_and_verifies() {
        let t = new_token("adm_");
        let h = TokenHash::of(&t);
        let parsed = TokenHash::parse(&h.to_string()).unwrap();
        assert!(parsed.verify(&t));
        assert!(!parsed.verify(&format!("{t}x")));
        assert!(!parsed.verify(""));
    }

    #[test]
    fn refuses_malformed_hashes() {
        assert!(TokenHash::parse("abc").is_err());
        assert!(TokenHash::parse("sha256:zz").is_err());
        assert!(TokenHash::parse(&format!("sha256:{}", "g".repeat(64))).is_err());
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = new_token("scim_");
        assert!(a.len() >= 5 + 43);
        assert_ne!(a, new_token("scim_"));
    }
}
