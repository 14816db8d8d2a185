//! One session test suite, run against both store backends: the embedded
//! redb file and a real Redis.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::identity::Principal;
use portcullis::session::{
    cookie, now_ms, SessionId, SessionKey, SessionRecord, SessionSettings, SessionStore, Sessions,
};
use portcullis::store::{embedded::EmbeddedStore, redis::RedisStore, Backend};

fn principal(sub: &str) -> Principal {
    Principal {
        sub: sub.into(),
        email: Some(format!("{sub}@example.com")),
        groups: vec![],
        ..Default::default()
    }
}

fn settings(idle_ms: u64, max_ms: u64) -> SessionSettings {
    SessionSettings {
        idle_timeout: Duration::from_millis(idle_ms),
        max_lifetime: Duration::from_millis(max_ms),
        touch_interval: Duration::from_millis(idle_ms / 10),
        ..cookie::test_settings(false)
    }
}

async fn redis_store(tag: &str) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::connect(&support::redis_url(), &support::unique_prefix(tag))
            .await
            .expect("redis reachable"),
    )
}

/// The raw store contract.
async fn store_contract(store: Arc<dyn Backend>) {
    let now = now_ms();
    let key = SessionId::generate().key();
    let rec = SessionRecord::new(principal("u1"), now, Duration::from_secs(3600), "test");
    assert_eq!(store.get_session(&key).await.unwrap(), None);
    store
        .insert_session(&key, &rec, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.get_session(&key).await.unwrap(),
        Some(rec.clone()),
        "round trip"
    );

    store
        .touch_session(&key, now + 5_000, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.get_session(&key).await.unwrap().unwrap().last_seen_ms,
        now + 5_000
    );
    store
        .touch_session(&key, now + 1_000, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.get_session(&key).await.unwrap().unwrap().last_seen_ms,
        now + 5_000,
        "activity never goes backwards"
    );

    let other = SessionId::generate().key();
    store
        .insert_session(
            &other,
            &SessionRecord::new(principal("u1"), now, Duration::from_secs(3600), "test"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let third = SessionId::generate().key();
    store
        .insert_session(
            &third,
            &SessionRecord::new(principal("u2"), now, Duration::from_secs(3600), "test"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut listed: Vec<SessionKey> = store
        .list_user_sessions("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    listed.sort();
    let mut want = vec![key.clone(), other.clone()];
    want.sort();
    assert_eq!(listed, want);

    let removed = store.remove_session(&key).await.unwrap();
    assert_eq!(removed.map(|r| r.principal.sub), Some("u1".to_string()));
    assert_eq!(
        store.remove_session(&key).await.unwrap(),
        None,
        "second remove finds nothing"
    );
    store
        .touch_session(&key, now + 9_000, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.get_session(&key).await.unwrap(),
        None,
        "touch never resurrects"
    );
    assert_eq!(
        store.list_user_sessions("u1").await.unwrap().len(),
        1,
        "index follows removal"
    );

    let gone = store.remove_user_sessions("u1").await.unwrap();
    assert_eq!(gone, vec![other.clone()]);
    assert_eq!(store.get_session(&other).await.unwrap(), None);
    assert!(
        store.get_session(&third).await.unwrap().is_some(),
        "other users untouched"
    );
    assert!(store
        .remove_user_sessions("nobody")
        .await
        .unwrap()
        .is_empty());
    store.ping().await.unwrap();
}

/// The session manager on top of the store.
async fn manager_contract(store: Arc<dyn Backend>) {
    let sessions = Sessions::new(store.clone(), settings(400, 1_200));
    let (id, live) = sessions
        .create(principal("m1"), "test", None)
        .await
        .unwrap();
    assert_eq!(live.principal().sub, "m1");
    assert!(sessions.lookup(&id).await.unwrap().is_some());

    // Rotation: a new login discards the previous session.
    let (id2, _) = sessions
        .create(principal("m1"), "test", Some(&id))
        .await
        .unwrap();
    assert_ne!(id, id2);
    assert!(
        sessions.lookup(&id).await.unwrap().is_none(),
        "old id is dead after rotation"
    );

    // Idle expiry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sessions.lookup(&id2).await.unwrap().is_none(),
        "idle session expired"
    );

    // Activity keeps it alive up to the absolute lifetime, not beyond.
    let (id3, _) = sessions
        .create(principal("m1"), "test", None)
        .await
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1_000) {
        assert!(
            sessions.lookup(&id3).await.unwrap().is_some(),
            "active at {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sessions.lookup(&id3).await.unwrap().is_none(),
        "absolute lifetime reached"
    );

    // Revocation is immediate in-process, cached or not.
    let sessions = Sessions::new(store.clone(), settings(60_000, 120_000));
    let (a, _) = sessions
        .create(principal("m2"), "test", None)
        .await
        .unwrap();
    let (b, _) = sessions
        .create(principal("m2"), "test", None)
        .await
        .unwrap();
    assert!(sessions.lookup(&a).await.unwrap().is_some());
    assert!(sessions.revoke(&a.key()).await.unwrap());
    assert!(sessions.lookup(&a).await.unwrap().is_none());
    assert!(sessions.lookup(&b).await.unwrap().is_some());
    assert_eq!(sessions.revoke_user("m2").await.unwrap(), 1);
    assert!(sessions.lookup(&b).await.unwrap().is_none());

    // Expired records are swept.
    let short = Sessions::new(store.clone(), settings(100, 200));
    let (c, _) = short.create(principal("m3"), "test", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    short.purge_expired().await.unwrap();
    assert!(
        store.get_session(&c.key()).await.unwrap().is_none(),
        "expired session purged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_passes_the_session_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    store_contract(store.clone()).await;
    manager_contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_passes_the_session_suite() {
    let store: Arc<dyn Backend> = redis_store("suite").await;
    store_contract(store.clone()).await;
    manager_contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let key = SessionId::generate().key();
    let rec = SessionRecord::new(principal("p1"), now_ms(), Duration::from_secs(60), "test");
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .insert_session(&key, &rec, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get_session(&key).await.unwrap(), Some(rec));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocation_reaches_another_replica_within_100ms() {
    let prefix = support::unique_prefix("pubsub");
    let a_store = Arc::new(
        RedisStore::connect(&support::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let b_store = Arc::new(
        RedisStore::connect(&support::redis_url(), &prefix)
            .await
            .unwrap(),
    );
    let a = Sessions::new(a_store, settings(60_000, 120_000));
    let b = Sessions::new(b_store, settings(60_000, 120_000));
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions established

    let (id, _) = a.create(principal("r1"), "test", None).await.unwrap();
    assert!(
        b.lookup(&id).await.unwrap().is_some(),
        "replica B reads A's session"
    );
    let t = Instant::now();
    a.revoke_user("r1").await.unwrap();
    loop {
        if b.lookup(&id).await.unwrap().is_none() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "replica B still serves a revoked session"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_an_error_not_a_hang() {
    let port = support::free_port();
    let t = Instant::now();
    let r = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"), "x:").await;
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(15));
}

/// Single-use state (pending AuthnRequests, replay cache) on one backend.
async fn state_contract(store: Arc<dyn Backend>) {
    let ns = "test";
    let key = SessionId::generate().key().0;
    assert!(store
        .put_state_once(ns, &key, b"v1", Duration::from_secs(60))
        .await
        .unwrap());
    assert!(
        !store
            .put_state_once(ns, &key, b"v2", Duration::from_secs(60))
            .await
            .unwrap(),
        "second insert refused (replay)"
    );
    assert_eq!(
        store.peek_state(ns, &key).await.unwrap().as_deref(),
        Some(&b"v1"[..]),
        "peek keeps it"
    );
    assert_eq!(
        store.take_state(ns, &key).await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        store.take_state(ns, &key).await.unwrap(),
        None,
        "taken once"
    );
    assert_eq!(
        store.take_state("other", &key).await.unwrap(),
        None,
        "namespaces are separate"
    );

    let short = SessionId::generate().key().0;
    assert!(store
        .put_state_once(ns, &short, b"x", Duration::from_millis(100))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.take_state(ns, &short).await.unwrap(),
        None,
        "expired value is gone"
    );
    assert!(store
        .put_state_once(ns, &short, b"y", Duration::from_secs(5))
        .await
        .unwrap());
    store.purge_expired_state(now_ms()).await.unwrap();
    assert_eq!(
        store.take_state(ns, &short).await.unwrap().as_deref(),
        Some(&b"y"[..]),
        "live value kept by sweep"
    );

    // Of many concurrent takes, exactly one wins.
    let contested = SessionId::generate().key().0;
    store
        .put_state_once(ns, &contested, b"z", Duration::from_secs(60))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        let k = contested.clone();
        tasks.push(tokio::spawn(async move {
            s.take_state("test", &k).await.unwrap().is_some()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += t.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_passes_the_state_suite() {
    let dir = tempfile::tempdir().unwrap();
    state_contract(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_passes_the_state_suite() {
    state_contract(redis_store("state").await).await;
}
