//! Webhook delivery throughput: events appended to the outbox and delivered
//! by the real workers (signing, HTTP POST, outcome recorded) to a local
//! receiver on 127.0.0.1, on the embedded store and on Redis when
//! `REDIS_URL` answers. One iteration = a batch of `BENCH_EVENTS` (default
//! 500) user events on distinct users, from append to the last 2xx; the
//! figure is events/s. `cargo bench --bench webhooks`.
//!
//! Measured on the 2-core CI machine (release, receiver and Redis on the same
//! cores), 500 events per batch:
//! - embedded: 7.0k events/s (concurrency 8), 8.4k (32), since delivery
//!   outcomes share group commits with directory writes (it was 1.48k/1.56k
//!   with one redb write transaction per outcome);
//! - Redis: 5.05k events/s (concurrency 8; it was 2.65k).
//!
//! Issue 11's goal (>= 5,000 events/s on both stores) is met at
//! concurrency 8.

mod common;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::directory::User;
use portcullis::store::Backend;
use portcullis::webhook::event::{EventType, Source};
use portcullis::webhook::outbox::{Emit, OutboxEvent};
use portcullis::webhook::Webhooks;

fn events() -> usize {
    let measuring = std::env::args().any(|a| a == "--bench");
    let default = if measuring { 500 } else { 20 };
    std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A receiver that answers 204 and counts.
async fn receiver(count: Arc<AtomicUsize>) -> u16 {
    let handler = move || {
        let c = count.clone();
        async move {
            c.fetch_add(1, Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// One target per worker set, so sets never take each other's events.
fn hooks(target: &str, port: u16, concurrency: usize) -> Arc<Webhooks> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = "127.0.0.1:1"
public_url = "http://127.0.0.1:1"
[upstream]
url = "http://127.0.0.1:2"
[[webhook]]
name = "{target}"
url = "http://127.0.0.1:{port}/hook"
secrets = ["{}"]
concurrency = {concurrency}
"#,
            portcullis::webhook::signing::Secret::generate()
        ),
    )
    .unwrap();
    let cfg = portcullis::config::Config::load(&path).unwrap();
    Webhooks::from_config(&cfg).unwrap().unwrap()
}

fn batch(target: &str, n: usize, round: usize) -> Emit {
    let mut emit = Emit::none();
    for i in 0..n {
        let mut u = User::new(format!("u{round}-{i}@bench.test"));
        u.id = format!("{round}-{i}");
        u.tenant = "bench".into();
        let ev =
            OutboxEvent::new(EventType::UserCreated, "bench", Source::Scim, "bench").with_user(&u);
        emit.push(ev, vec![target.to_string()]);
    }
    emit
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    store: Arc<dyn Backend>,
    rt: &tokio::runtime::Runtime,
) {
    let n = events();
    let mut group = c.benchmark_group(format!("webhooks/{name}"));
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    for concurrency in [8usize, 32] {
        let count = Arc::new(AtomicUsize::new(0));
        let port = rt.block_on(receiver(count.clone()));
        let target = format!("bench{concurrency}");
        let h = hooks(&target, port, concurrency);
        {
            let _guard = rt.enter();
            portcullis::webhook::deliver::spawn_workers(h, store.clone());
        }
        let mut round = 0usize;
        group.bench_function(
            format!("deliver {n} events, concurrency {concurrency}"),
            |b| {
                b.to_async(rt).iter_custom(|iters| {
                    let store = store.clone();
                    let count = count.clone();
                    let target = target.clone();
                    round += 1;
                    let base = round * 1_000_000;
                    async move {
                        let mut total = Duration::ZERO;
                        for k in 0..iters as usize {
                            let start_count = count.load(Ordering::Relaxed);
                            let t = Instant::now();
                            for chunk in batch(&target, n, base + k).events.chunks(100) {
                                store
                                    .append_events(Emit {
                                        events: chunk.to_vec(),
                                    })
                                    .await
                                    .unwrap();
                            }
                            while count.load(Ordering::Relaxed) < start_count + n {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            total += t.elapsed();
                        }
                        total
                    }
                })
            },
        );
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    common::on_each_backend(&rt, |name, store| bench_backend(c, name, store, &rt));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
