//! Shared by the benches: a runtime and the two store backends, each bench
//! run on the embedded store and, when `REDIS_URL` answers, on Redis under a
//! fresh key prefix that is deleted afterwards.

#![allow(dead_code)] // each bench uses part of it

use std::path::Path;
use std::sync::Arc;

use portcullis::store::Backend;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Calls `run` with the embedded store, then with Redis if it answers.
pub fn on_each_backend(rt: &tokio::runtime::Runtime, mut run: impl FnMut(&str, Arc<dyn Backend>)) {
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Backend> =
        Arc::new(portcullis::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    run("embedded", embedded);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let prefix = format!(
        "pcbench:{}:",
        portcullis::secret::new_token("")
            .chars()
            .take(8)
            .collect::<String>()
    );
    if let Ok(redis) = rt.block_on(portcullis::store::redis::RedisStore::connect(&url, &prefix)) {
        run("redis", Arc::new(redis));
        // Leave nothing behind in a shared Redis.
        let _ = rt.block_on(async {
            let client = redis::Client::open(url.as_str())?;
            let mut con = client.get_multiplexed_async_connection().await?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut con)
                .await?;
            for k in keys.chunks(500) {
                let _: () = redis::cmd("DEL").arg(k).query_async(&mut con).await?;
            }
            Ok::<(), redis::RedisError>(())
        });
    }
}

/// The SAML registry of a gateway at `http://localhost:8080` with one IdP
/// (`entity_id`, its certificate at `idp_cert`, IdP-initiated allowed) and
/// the SP key pair already written to `dir`/sp.key and `dir`/sp.crt.
pub fn saml_registry(
    dir: &Path,
    entity_id: &str,
    idp_cert: &Path,
) -> portcullis::saml::idp::Registry {
    let key = dir.join("k.pem");
    portcullis::identity::keys::generate_to_file(portcullis::config::JwtAlgorithm::ES256, &key)
        .unwrap();
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"http://localhost:8080\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[store]\npath = \"{d}/state\"\n[identity]\nsigning_key = \"{k}\"\n[saml]\nsp_key = \"{d}/sp.key\"\nsp_cert = \"{d}/sp.crt\"\n[[saml.idp]]\nid = \"bench\"\nentity_id = \"{entity_id}\"\nsso_url = \"https://idp.example.test/sso\"\ncertificate = \"{c}\"\nallow_idp_initiated = true\n",
            d = dir.display(),
            k = key.display(),
            c = idp_cert.display(),
        ),
    )
    .unwrap();
    let cfg = portcullis::config::Config::load(&config).unwrap();
    let saml = cfg.saml.clone().unwrap();
    portcullis::saml::idp::Registry::build(&cfg, &saml, None).unwrap()
}
