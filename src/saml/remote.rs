//! IdP metadata fetched from `metadata_url`: at start, then every
//! `metadata_refresh`. A failed fetch keeps the last good copy (in memory,
//! and on disk under the cache directory so a restart survives an IdP
//! outage); a fetched document that does not parse is treated as a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, SamlConfig};

/// Largest metadata document accepted.
const MAX_METADATA: usize = 1024 * 1024;

pub fn cache_dir(cfg: &Config, saml: &SamlConfig) -> PathBuf {
    saml.metadata_cache_dir
        .clone()
        .unwrap_or_else(|| cfg.store.path.join("saml-metadata"))
}

/// True when some IdP is configured by URL.
pub fn any_remote(saml: &SamlConfig) -> bool {
    saml.idp.iter().any(|i| i.metadata_url.is_some())
}

/// The shortest refresh interval of the URL-configured IdPs.
pub fn refresh_interval(saml: &SamlConfig) -> Option<Duration> {
    saml.idp
        .iter()
        .filter(|i| i.metadata_url.is_some())
        .map(|i| i.metadata_refresh.get().max(Duration::from_secs(10)))
        .min()
}

async fn fetch(client: &reqwest::Client, url: &str, loopback_http: bool) -> Result<String, String> {
    // `check` refuses these too; a redirect is held to the same rule below.
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if parsed.scheme() != "https" && !(loopback_http && super::idp::is_loopback_http(&parsed)) {
        return Err("metadata_url must be https".into());
    }
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_METADATA)
    {
        return Err("metadata larger than 1 MiB".into());
    }
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_METADATA {
        return Err("metadata larger than 1 MiB".into());
    }
    let xml = super::shape::document_text(body.to_vec()).map_err(|e| e.to_string())?;
    super::shape::refuse_dtd(&xml).map_err(|e| e.to_string())?;
    let md = xml
        .parse::<samael::metadata::EntityDescriptor>()
        .map_err(|e| format!("not SAML metadata: {e}"))?;
    // A document whose signing certificates do not parse is a failed fetch:
    // it must not replace the cached copy a restart would load.
    let sp = samael::service_provider::ServiceProvider {
        idp_metadata: md,
        ..Default::default()
    };
    let certs = sp
        .idp_signing_certs()
        .map_err(|e| format!("unreadable signing certificate: {e}"))?
        .unwrap_or_default();
    if certs.is_empty() {
        return Err("metadata has no signing certificate".into());
    }
    for c in &certs {
        openssl::x509::X509::from_der(c.der_data())
            .map_err(|e| format!("unreadable signing certificate: {e}"))?;
    }
    Ok(xml)
}

/// Metadata for every URL-configured IdP: fresh when the fetch works, else
/// `previous`, else the disk cache. IdPs with none of these are absent.
pub async fn fetch_all(
    cfg: &Config,
    saml: &SamlConfig,
    previous: Option<&HashMap<String, String>>,
) -> HashMap<String, String> {
    let dir = cache_dir(cfg, saml);
    let loopback_http = saml.insecure_loopback_metadata_for_tests;
    // Redirects keep to https (or, in test rigs, to loopback http).
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        let ok = attempt.url().scheme() == "https"
            || (loopback_http && super::idp::is_loopback_http(attempt.url()));
        if attempt.previous().len() >= 3 {
            attempt.error("too many redirects")
        } else if ok {
            attempt.follow()
        } else {
            attempt.error("redirect away from https")
        }
    });
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(redirects)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the metadata HTTP client");
            return previous.cloned().unwrap_or_default();
        }
    };
    let mut out = HashMap::new();
    for idp in &saml.idp {
        let Some(url) = &idp.metadata_url else {
            continue;
        };
        let cached = dir.join(format!("{}.xml", idp.id));
        // The URL the cached copy came from: a copy fetched from another URL
        // (the IdP's `metadata_url` was changed since) never stands in.
        let cached_url = dir.join(format!("{}.url", idp.id));
        match fetch(&client, url, loopback_http).await {
            Ok(xml) => {
                let changed = previous.and_then(|p| p.get(&idp.id)) != Some(&xml);
                if changed {
                    let write = std::fs::create_dir_all(&dir)
                        .and_then(|_| std::fs::write(&cached, &xml))
                        .and_then(|_| std::fs::write(&cached_url, url));
                    if let Err(e) = write {
                        tracing::warn!(idp = %idp.id, error = %e, path = %cached.display(), "cannot cache IdP metadata");
                    }
                    tracing::info!(idp = %idp.id, %url, "IdP metadata fetched");
                }
                out.insert(idp.id.clone(), xml);
            }
            Err(e) => {
                let kept = previous
                    .and_then(|p| p.get(&idp.id).cloned())
                    .or_else(|| {
                        let from = std::fs::read_to_string(&cached_url).ok();
                        if from.as_ref().is_some_and(|f| f != url) {
                            tracing::warn!(idp = %idp.id, %url, "the cached IdP metadata came from another URL; not using it");
                            return None;
                        }
                        std::fs::read_to_string(&cached).ok()
                    });
                match kept {
                    Some(xml) => {
                        tracing::warn!(idp = %idp.id, %url, error = %e, "IdP metadata fetch failed; keeping the last good copy");
                        out.insert(idp.id.clone(), xml);
                    }
                    None => {
                        tracing::error!(idp = %idp.id, %url, error = %e, "IdP metadata fetch failed and no copy is cached")
                    }
                }
            }
        }
    }
    out
}
