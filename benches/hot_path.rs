//! What one authenticated request costs the gateway, piece by piece:
//! path normalization + policy, cookie parsing, a cached session lookup,
//! and the identity headers (cached reuse vs. a fresh signature).
//! Run with `make bench`; the figures go in the issue notes, not in tests.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::config::{Config, PolicyRuleConfig};
use portcullis::identity::keys::{generate_pem, Keyset, SigningKey};
use portcullis::identity::{Minter, Principal};
use portcullis::policy::{normalize_path, Policy};
use portcullis::session::{cookie, SessionSettings, Sessions};
use portcullis::store::embedded::EmbeddedStore;

fn config() -> Config {
    Config::from_toml_str(
        "[server]\npublic_url = \"https://gw.example\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n",
    )
    .unwrap()
}

fn principal() -> Principal {
    Principal {
        sub: "u-123".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice Doe".into()),
        groups: vec!["staff".into(), "admins".into()],
        roles: vec!["admin".into()],
        tenant: Some("acme".into()),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let rules: Vec<PolicyRuleConfig> = (0..20)
        .map(|i| PolicyRuleConfig {
            path: format!("/area{i}/*"),
            methods: vec![],
            allow: None,
            groups: Some(vec![format!("g{i}")]),
            tenant: None,
        })
        .collect();
    let policy = Policy::compile(&rules).unwrap();
    c.bench_function("normalize + policy (20 rules, miss)", |b| {
        b.iter(|| {
            let n = normalize_path("/reports/2026/q1/summary").unwrap();
            std::hint::black_box(policy.access(&http::Method::GET, &n.matched));
        })
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let sessions =
        rt.block_on(async { Sessions::new(store, SessionSettings::from_config(&config())) });
    let (id, live) = rt
        .block_on(sessions.create(principal(), "bench", None))
        .unwrap();
    let header = format!(
        "theme=dark; {}; lang=en",
        cookie::set_cookie(&sessions.settings(), &id)
            .split(';')
            .next()
            .unwrap()
    );
    let name = sessions.settings().cookie_name.clone();

    c.bench_function("cookie parse", |b| {
        b.iter(|| {
            std::hint::black_box(cookie::find_session_id(
                [header.as_bytes()].into_iter(),
                &name,
            ))
        })
    });
    c.bench_function("session lookup (cached)", |b| {
        b.to_async(&rt)
            .iter(|| async { std::hint::black_box(sessions.lookup(&id).await.unwrap()) })
    });

    let keys = Arc::new(Keyset::new(
        SigningKey::from_pem(
            generate_pem(portcullis::config::JwtAlgorithm::ES256)
                .unwrap()
                .as_bytes(),
            "bench",
        )
        .unwrap(),
        vec![],
    ));
    let minter = Minter::new(&config(), keys).unwrap();
    c.bench_function("identity JWT mint (ES256, cold path)", |b| {
        b.iter(|| {
            std::hint::black_box(
                minter
                    .mint(live.principal(), live.key.sid(), 1_700_000_000_000)
                    .unwrap(),
            )
        })
    });
    let minted = Arc::new(
        minter
            .mint(live.principal(), live.key.sid(), 1_700_000_000_000)
            .unwrap(),
    );
    c.bench_function("identity headers (cached, hot path)", |b| {
        b.iter(|| {
            let m = minted.clone();
            let copied: Vec<_> = m
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            std::hint::black_box(copied)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
