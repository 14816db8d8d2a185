//! Shared by the benches: a runtime and the two store backends, each bench
//! run on the embedded store and, when `REDIS_URL` answers, on Redis under a
//! fresh key prefix that is deleted afterwards.

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
