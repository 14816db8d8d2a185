//! Directory figures behind SCIM: creating a user and the indexed
//! `userName eq` lookup, with a large directory already in place
//! (`BENCH_USERS`, default 100000) on the embedded store, and on Redis when
//! `REDIS_URL` answers. Preloading is part of the setup, not the figure.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::directory::User;
use portcullis::store::Backend;

fn users() -> usize {
    // `cargo test --all-targets` runs benches once as a smoke test: keep that small.
    let measuring = std::env::args().any(|a| a == "--bench");
    let default = if measuring { 100_000 } else { 200 };
    std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn preload(rt: &tokio::runtime::Runtime, store: &Arc<dyn Backend>, n: usize) {
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(8).max(1)) {
            let s = store.clone();
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                for i in chunk {
                    s.create_user("bench", User::new(format!("user{i:07}@example.com")))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    eprintln!("preloaded {n} users in {:?}", started.elapsed());
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    store: Arc<dyn Backend>,
    rt: &tokio::runtime::Runtime,
) {
    let n = users();
    preload(rt, &store, n);
    let mut i = 0u64;
    c.bench_function(&format!("{name}: create user ({n} present)"), |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            let s = store.clone();
            let name = format!("new{i}-{}@example.com", portcullis::secret::new_token(""));
            async move { s.create_user("bench", User::new(name)).await.unwrap() }
        })
    });
    let mut j = 0usize;
    c.bench_function(&format!("{name}: userName eq lookup ({n} present)"), |b| {
        b.to_async(rt).iter(|| {
            j = (j + 7919) % n;
            let s = store.clone();
            let name = format!("USER{j:07}@example.com");
            async move { s.user_by_user_name("bench", &name).await.unwrap().unwrap() }
        })
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Backend> =
        Arc::new(portcullis::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    bench_backend(c, "embedded", embedded, &rt);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let prefix = format!(
        "pcbench:{}:",
        portcullis::secret::new_token("")
            .chars()
            .take(8)
            .collect::<String>()
    );
    if let Ok(redis) = rt.block_on(portcullis::store::redis::RedisStore::connect(&url, &prefix)) {
        bench_backend(c, "redis", Arc::new(redis), &rt);
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
