//! Directory figures behind SCIM: creating a user and the indexed
//! `userName eq` lookup, with a large directory already in place
//! (`BENCH_USERS`, default 100000) on the embedded store, and on Redis when
//! `REDIS_URL` answers. Preloading is part of the setup, not the figure.

mod common;
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
    let rt = common::runtime();
    common::on_each_backend(&rt, |name, store| bench_backend(c, name, store, &rt));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
