//! Signing keys for the identity JWT: loading PEM files (PKCS#8, PKCS#1 RSA,
//! SEC1 EC), telling their algorithm from the key itself, generating new
//! ones, and publishing their public halves as a JWKS. The `kid` is the
//! RFC 7638 thumbprint, so it is stable across restarts and replicas.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::config::JwtAlgorithm;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM private key: {reason}")]
    NotPem { path: String, reason: String },
    #[error("{path} holds an unsupported key ({reason}); use an EC P-256, RSA (>= 2048 bit) or Ed25519 private key")]
    Unsupported { path: String, reason: String },
    #[error("{path} is a {found} key but {wanted} was requested")]
    Mismatch {
        path: String,
        found: JwtAlgorithm,
        wanted: JwtAlgorithm,
    },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One private key able to sign identity JWTs.
pub struct SigningKey {
    alg: JwtAlgorithm,
    key: EncodingKey,
    kid: String,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_pem(&bytes, &p)
    }

    /// Parses a PEM private key; `origin` names it in errors.
    pub fn from_pem(bytes: &[u8], origin: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(bytes).map_err(|e| KeyError::NotPem {
            path: origin.into(),
            reason: e.to_string(),
        })?;
        let block = blocks
            .into_iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| KeyError::NotPem {
                path: origin.into(),
                reason: "no PRIVATE KEY block".into(),
            })?;
        let der = block.contents();
        let unsupported = |reason: &str| KeyError::Unsupported {
            path: origin.into(),
            reason: reason.into(),
        };
        let (alg, key) = match block.tag() {
            "PRIVATE KEY" => {
                if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
                    (JwtAlgorithm::ES256, EncodingKey::from_ec_der(der))
                } else if Ed25519KeyPair::from_pkcs8(der).is_ok()
                    || Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok()
                {
                    (JwtAlgorithm::EdDSA, EncodingKey::from_ed_der(der))
                } else if aws_lc_rs::rsa::KeyPair::from_pkcs8(der).is_ok() {
                    (JwtAlgorithm::RS256, rsa_from_pem(block.clone(), origin)?)
                } else {
                    return Err(unsupported("PKCS#8 key of an unsupported type or curve"));
                }
            }
            "EC PRIVATE KEY" => {
                let kp = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| unsupported("EC key not on P-256"))?;
                let pkcs8 = kp
                    .to_pkcs8v1()
                    .map_err(|_| unsupported("EC key cannot be re-encoded"))?;
                (
                    JwtAlgorithm::ES256,
                    EncodingKey::from_ec_der(pkcs8.as_ref()),
                )
            }
            "RSA PRIVATE KEY" => (JwtAlgorithm::RS256, rsa_from_pem(block.clone(), origin)?),
            other => return Err(unsupported(&format!("PEM block {other:?}"))),
        };
        if alg == JwtAlgorithm::RS256 {
            let bits = aws_lc_rs::rsa::KeyPair::from_der(key.as_bytes())
                .map(|k| k.public_modulus_len() * 8)
                .unwrap_or(0);
            if bits < 2048 {
                return Err(unsupported(&format!("RSA key of {bits} bits")));
            }
        }
        let jalg = jwt_algorithm(alg);
        let mut jwk =
            Jwk::from_encoding_key(&key, jalg).map_err(|e| unsupported(&e.to_string()))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| unsupported(&e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { alg, key, kid, jwk })
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }
    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// jsonwebtoken's RSA signer wants PKCS#1; its PEM reader unwraps PKCS#8.
fn rsa_from_pem(block: pem::Pem, origin: &str) -> Result<EncodingKey, KeyError> {
    EncodingKey::from_rsa_pem(pem::encode(&block).as_bytes()).map_err(|e| KeyError::Unsupported {
        path: origin.into(),
        reason: e.to_string(),
    })
}

pub fn jwt_algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// A new private key as PKCS#8 PEM.
pub fn generate_pem(alg: JwtAlgorithm) -> Result<String, KeyError> {
    let gen = |e: aws_lc_rs::error::Unspecified| KeyError::Generate(e.to_string());
    let der: Vec<u8> = match alg {
        JwtAlgorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(gen)?
            .to_pkcs8v1()
            .map_err(gen)?
            .as_ref()
            .to_vec(),
        JwtAlgorithm::EdDSA => Ed25519KeyPair::generate()
            .map_err(gen)?
            .to_pkcs8v1()
            .map_err(gen)?
            .as_ref()
            .to_vec(),
        JwtAlgorithm::RS256 => {
            let kp =
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(gen)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = AsDer::as_der(&kp).map_err(gen)?;
            der.as_ref().to_vec()
        }
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

/// Writes a new key to `path` with mode 0600, refusing to overwrite.
pub fn generate_to_file(alg: JwtAlgorithm, path: &Path) -> Result<(), KeyError> {
    use std::io::Write;
    let pem = generate_pem(alg)?;
    let write_err = |source| KeyError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(write_err)?;
    f.write_all(pem.as_bytes()).map_err(write_err)?;
    f.sync_all().map_err(write_err)
}

/// The signing key plus every published key, and the JWKS document.
pub struct Keyset {
    signer: SigningKey,
    jwks_json: bytes::Bytes,
}

impl Keyset {
    /// Loads `[identity]` keys; with `generate_if_missing`, creates the
    /// signing key first when its file does not exist.
    pub fn load(cfg: &crate::config::IdentityConfig) -> Result<Self, KeyError> {
        if cfg.generate_if_missing && !cfg.signing_key.exists() {
            let alg = cfg.algorithm.unwrap_or(JwtAlgorithm::ES256);
            generate_to_file(alg, &cfg.signing_key)?;
            tracing::warn!(path = %cfg.signing_key.display(), %alg, "generated a new identity signing key (demo mode)");
        }
        let signer = SigningKey::from_pem_file(&cfg.signing_key)?;
        if let Some(wanted) = cfg.algorithm {
            if signer.alg != wanted {
                return Err(KeyError::Mismatch {
                    path: cfg.signing_key.display().to_string(),
                    found: signer.alg,
                    wanted,
                });
            }
        }
        let mut others = Vec::new();
        for p in &cfg.additional_keys {
            others.push(SigningKey::from_pem_file(p)?);
        }
        Ok(Self::new(signer, others))
    }

    pub fn new(signer: SigningKey, others: Vec<SigningKey>) -> Self {
        let mut set = JwkSet {
            keys: vec![signer.jwk.clone()],
        };
        for k in &others {
            if k.kid != signer.kid
                && !set
                    .keys
                    .iter()
                    .any(|j| j.common.key_id.as_deref() == Some(&k.kid))
            {
                set.keys.push(k.jwk.clone());
            }
        }
        let jwks_json = serde_json::to_vec(&set)
            .unwrap_or_else(|_| b"{\"keys\":[]}".to_vec())
            .into();
        Self { signer, jwks_json }
    }

    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    /// The JWKS document served at `/.portcullis/jwks.json`.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.jwks_json.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_with_their_algorithm() {
        for alg in [
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
            JwtAlgorithm::RS256,
        ] {
            let pem = generate_pem(alg).unwrap();
            let k = SigningKey::from_pem(pem.as_bytes(), "test").unwrap();
            assert_eq!(k.algorithm(), alg);
            assert_eq!(k.kid().len(), 43, "base64url SHA-256 thumbprint");
        }
    }

    #[test]
    fn kid_is_stable_for_the_same_key() {
        let pem = generate_pem(JwtAlgorithm::ES256).unwrap();
        let a = SigningKey::from_pem(pem.as_bytes(), "a").unwrap();
        let b = SigningKey::from_pem(pem.as_bytes(), "b").unwrap();
        assert_eq!(a.kid(), b.kid());
    }

    #[test]
    fn refuses_non_keys() {
        assert!(matches!(
            SigningKey::from_pem(b"hello", "x"),
            Err(KeyError::NotPem { .. })
        ));
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(SigningKey::from_pem(cert.as_bytes(), "x").is_err());
    }

    #[test]
    fn jwks_publishes_every_key_without_private_parts() {
        let a = SigningKey::from_pem(generate_pem(JwtAlgorithm::ES256).unwrap().as_bytes(), "a")
            .unwrap();
        let b = SigningKey::from_pem(generate_pem(JwtAlgorithm::EdDSA).unwrap().as_bytes(), "b")
            .unwrap();
        let set = Keyset::new(a, vec![b]);
        let v: serde_json::Value = serde_json::from_slice(&set.jwks_json()).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            assert!(k.get("d").is_none(), "private key material leaked: {k}");
            assert!(k.get("kid").is_some());
        }
    }
}
