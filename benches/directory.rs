//! Directory figures behind SCIM, with a large directory already in place
//! (`BENCH_USERS`, default 100000, and one group per 100 users) on the
//! embedded store, and on Redis when `REDIS_URL` answers: creating a user;
//! the indexed lookups (`userName`, `externalId`, `emails.value`, group
//! `displayName` eq); the unfiltered listing reads (the live-user count, the
//! Test Connection page `startIndex=1&count=1`, a page of 100 from the
//! middle). Preloading is part of the setup, not the figure.

mod common;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::directory::{Group, MultiValue, User};
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

fn bench_user(i: usize) -> User {
    let name = format!("user{i:07}@example.com");
    User {
        external_id: Some(format!("ext{i:07}")),
        emails: vec![MultiValue {
            value: name.clone(),
            kind: Some("work".into()),
            primary: Some(true),
            display: None,
        }],
        ..User::new(name)
    }
}

fn groups_for(n: usize) -> usize {
    (n / 100).max(1)
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
                    s.create_user("bench", bench_user(i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for g in 0..groups_for(n) {
            store
                .create_group("bench", Group::new(format!("Group {g:05}")))
                .await
                .unwrap();
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
    c.bench_function(
        &format!("{name}: externalId eq lookup ({n} present)"),
        |b| {
            b.to_async(rt).iter(|| {
                j = (j + 7919) % n;
                let s = store.clone();
                let x = format!("ext{j:07}");
                async move { s.user_by_external_id("bench", &x).await.unwrap().unwrap() }
            })
        },
    );
    c.bench_function(
        &format!("{name}: emails.value eq lookup ({n} present)"),
        |b| {
            b.to_async(rt).iter(|| {
                j = (j + 7919) % n;
                let s = store.clone();
                let email = format!("User{j:07}@Example.com");
                async move {
                    let found = s.users_by_email("bench", &email).await.unwrap();
                    assert_eq!(found.len(), 1);
                }
            })
        },
    );
    let groups = groups_for(n);
    c.bench_function(
        &format!("{name}: group displayName eq lookup ({groups} groups)"),
        |b| {
            b.to_async(rt).iter(|| {
                j = (j + 7919) % groups;
                let s = store.clone();
                let g = format!("group {j:05}");
                async move { s.group_by_display_name("bench", &g).await.unwrap().unwrap() }
            })
        },
    );
    c.bench_function(&format!("{name}: live-user count ({n} present)"), |b| {
        b.to_async(rt).iter(|| {
            let s = store.clone();
            async move { assert!(s.count_users("bench").await.unwrap() >= n as u64) }
        })
    });
    c.bench_function(
        &format!("{name}: Test Connection page, startIndex=1&count=1 ({n} present)"),
        |b| {
            b.to_async(rt).iter(|| {
                let s = store.clone();
                async move { assert_eq!(s.users_page("bench", 0, 1).await.unwrap().items.len(), 1) }
            })
        },
    );
    c.bench_function(
        &format!(
            "{name}: middle page, startIndex={}&count=100 ({n} present)",
            n / 2 + 1
        ),
        |b| {
            b.to_async(rt).iter(|| {
                let s = store.clone();
                async move {
                    let p = s.users_page("bench", n / 2, 100).await.unwrap();
                    assert_eq!(p.items.len(), 100.min(n - n / 2));
                }
            })
        },
    );
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
