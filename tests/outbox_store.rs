//! The outbox contract, run against both store backends: events commit with
//! their directory change or not at all, lanes hand out only their head,
//! retries wait, dead letters move the lane on and replay re-queues them,
//! finishing twice is harmless, and (Redis) a silent consumer's head is
//! re-claimed by another.

mod support;

use std::sync::Arc;
use std::time::Duration;

use portcullis::directory::{Group, User};
use portcullis::session::now_ms;
use portcullis::store::{embedded::EmbeddedStore, redis::RedisStore, Backend};
use portcullis::webhook::event::{EventType, Source};
use portcullis::webhook::outbox::{Delivery, Emit, OutboxEvent, Outcome};

const T: &str = "acme";
const APP: &str = "app";
const AUDIT: &str = "audit";
const NO_WAIT: Duration = Duration::from_millis(1);
const RECLAIM: Duration = Duration::from_secs(60);

async fn embedded() -> (tempfile::TempDir, Arc<dyn Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    (dir, store)
}

async fn redis(tag: &str) -> Arc<dyn Backend> {
    Arc::new(
        RedisStore::connect(&support::redis_url(), &support::unique_prefix(tag))
            .await
            .expect("redis reachable"),
    )
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::embedded().await;
                    super::$name(store).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = super::redis(stringify!($name)).await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

suite!(
    a_write_appends_its_events_for_each_target,
    a_refused_write_appends_nothing,
    membership_events_carry_only_what_changed,
    only_the_head_of_a_lane_is_handed_out,
    a_retry_waits_until_due_and_counts_attempts,
    a_dead_letter_moves_the_lane_on_and_replay_requeues_it,
    finishing_twice_or_a_stale_head_changes_nothing,
    concurrent_replays_requeue_a_dead_letter_once,
    a_discarded_dead_letter_is_gone_for_good,
    group_events_carry_the_stored_record,
);

fn ev(kind: EventType) -> OutboxEvent {
    OutboxEvent::new(kind, T, Source::Scim, "jumpcloud")
}

fn for_targets(kind: EventType, targets: &[&str]) -> Emit {
    Emit::one(ev(kind), targets.iter().map(|t| t.to_string()).collect())
}

async fn claim(store: &Arc<dyn Backend>, target: &str, consumer: &str) -> Vec<Delivery> {
    store
        .claim(target, consumer, 100, NO_WAIT, RECLAIM)
        .await
        .unwrap()
}

async fn pending(store: &Arc<dyn Backend>, target: &str) -> u64 {
    store.status(&[target.to_string()]).await.unwrap()[0].pending
}

async fn deliver_all(store: &Arc<dyn Backend>, target: &str) -> Vec<OutboxEvent> {
    let mut out = Vec::new();
    for _ in 0..50 {
        let batch = claim(store, target, "c1").await;
        if batch.is_empty() && pending(store, target).await == 0 {
            break;
        }
        for d in batch {
            store.finish(&d, &Outcome::Delivered).await.unwrap();
            out.push(d.event);
        }
    }
    out
}

async fn a_write_appends_its_events_for_each_target(store: Arc<dyn Backend>) {
    let u = store
        .create_user_emit(
            T,
            User::new("ann@acme.test"),
            for_targets(EventType::UserCreated, &[APP, AUDIT]),
        )
        .await
        .unwrap();
    assert_eq!(pending(&store, APP).await, 1);
    assert_eq!(pending(&store, AUDIT).await, 1);
    let a = deliver_all(&store, APP).await;
    let b = deliver_all(&store, AUDIT).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id, b[0].id, "one event, the same id for every target");
    let snap = a[0].user.as_ref().expect("the stored user rides along");
    assert_eq!(snap.id, u.id);
    assert_eq!(snap.meta.version, 1);
    let status = store.status(&[APP.into()]).await.unwrap();
    assert_eq!(status[0].delivered, 1);
    assert_eq!(status[0].pending, 0);
    // A write nobody subscribed to appends nothing.
    store
        .create_user(T, User::new("bob@acme.test"))
        .await
        .unwrap();
    assert_eq!(pending(&store, APP).await, 0);
}

async fn a_refused_write_appends_nothing(store: Arc<dyn Backend>) {
    let u = store
        .create_user(T, User::new("ann@acme.test"))
        .await
        .unwrap();
    // userName taken: the write is refused, and so are its events.
    let dup = store
        .create_user_emit(
            T,
            User::new("ANN@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await;
    assert!(dup.is_err());
    // Stale version: refused, nothing appended.
    let stale = store
        .replace_user_emit(
            T,
            User {
                display_name: Some("x".into()),
                ..u.clone()
            },
            Some(7),
            for_targets(EventType::UserUpdated, &[APP]),
        )
        .await;
    assert!(stale.is_err());
    // Unknown group: refused, nothing appended.
    let missing = store
        .add_members_emit(
            T,
            "no-such-group",
            std::slice::from_ref(&u.id),
            for_targets(EventType::GroupMembersAdded, &[APP]),
        )
        .await;
    assert!(missing.is_err());
    assert_eq!(pending(&store, APP).await, 0);
    assert!(claim(&store, APP, "c1").await.is_empty());
}

async fn membership_events_carry_only_what_changed(store: Arc<dyn Backend>) {
    let a = store
        .create_user(T, User::new("a@acme.test"))
        .await
        .unwrap();
    let b = store
        .create_user(T, User::new("b@acme.test"))
        .await
        .unwrap();
    let g = store.create_group(T, Group::new("Eng")).await.unwrap();
    let add = |ids: Vec<String>| {
        let store = store.clone();
        let gid = g.id.clone();
        async move {
            store
                .add_members_emit(
                    T,
                    &gid,
                    &ids,
                    for_targets(EventType::GroupMembersAdded, &[APP]),
                )
                .await
                .unwrap()
        }
    };
    add(vec![a.id.clone()]).await;
    // a again (no change) and b (new): the event names b only.
    add(vec![a.id.clone(), b.id.clone()]).await;
    // Nothing new: no event at all.
    add(vec![b.id.clone()]).await;
    store
        .remove_members_emit(
            T,
            &g.id,
            &[a.id.clone(), "not-a-member".into()],
            for_targets(EventType::GroupMembersRemoved, &[APP]),
        )
        .await
        .unwrap();
    let got = deliver_all(&store, APP).await;
    let members: Vec<(EventType, Vec<String>)> =
        got.iter().map(|e| (e.kind, e.members.clone())).collect();
    assert_eq!(
        members,
        vec![
            (EventType::GroupMembersAdded, vec![a.id.clone()]),
            (EventType::GroupMembersAdded, vec![b.id.clone()]),
            (EventType::GroupMembersRemoved, vec![a.id.clone()]),
        ]
    );
    let versions: Vec<u64> = got
        .iter()
        .map(|e| e.group.as_ref().unwrap().meta.version)
        .collect();
    assert_eq!(
        versions,
        vec![2, 3, 4],
        "each event carries the version it made"
    );
    assert!(got
        .iter()
        .all(|e| e.group.as_ref().unwrap().display_name == "Eng"));
}

async fn only_the_head_of_a_lane_is_handed_out(store: Arc<dyn Backend>) {
    let u = store
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let next = User {
        title: Some("CTO".into()),
        ..u.clone()
    };
    store
        .replace_user_emit(T, next, None, for_targets(EventType::UserUpdated, &[APP]))
        .await
        .unwrap();
    let other = store
        .create_user_emit(
            T,
            User::new("b@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let first = claim(&store, APP, "c1").await;
    let ids: Vec<(&str, EventType)> = first
        .iter()
        .map(|d| (d.event.resource_id(), d.event.kind))
        .collect();
    assert_eq!(first.len(), 2, "one head per lane: {ids:?}");
    assert!(ids.contains(&(u.id.as_str(), EventType::UserCreated)));
    assert!(ids.contains(&(other.id.as_str(), EventType::UserCreated)));
    // Claimed heads are not handed out again, and the lane's second event waits.
    assert!(claim(&store, APP, "c1").await.is_empty());
    let head = first
        .iter()
        .find(|d| d.event.resource_id() == u.id)
        .unwrap();
    store.finish(head, &Outcome::Delivered).await.unwrap();
    let second = claim(&store, APP, "c1").await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.kind, EventType::UserUpdated);
    assert_eq!(
        second[0].event.user.as_ref().unwrap().title.as_deref(),
        Some("CTO")
    );
}

async fn a_retry_waits_until_due_and_counts_attempts(store: Arc<dyn Backend>) {
    store
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let d = claim(&store, APP, "c1").await.remove(0);
    assert_eq!(d.attempts, 0);
    assert_eq!(d.failing_since_ms, None);
    let due = now_ms() + 400;
    store
        .finish(
            &d,
            &Outcome::Retry {
                due_ms: due,
                error: "HTTP 503".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        claim(&store, APP, "c1").await.is_empty(),
        "not before it is due"
    );
    let st = &store.status(&[APP.into()]).await.unwrap()[0];
    assert_eq!((st.pending, st.retrying, st.failed_attempts), (1, 1, 1));
    assert_eq!(st.last_error.as_deref(), Some("HTTP 503"));
    // A claim that waits long enough gets it back.
    let again = store
        .claim(APP, "c1", 10, Duration::from_secs(3), RECLAIM)
        .await
        .unwrap();
    assert!(now_ms() >= due);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.id, d.event.id);
    assert_eq!(again[0].attempts, 1);
    let since = again[0]
        .failing_since_ms
        .expect("failing since the first failure");
    assert!(since >= d.event.at_ms && since <= due, "{since}");
}

async fn a_dead_letter_moves_the_lane_on_and_replay_requeues_it(store: Arc<dyn Backend>) {
    let u = store
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    store
        .replace_user_emit(
            T,
            User {
                title: Some("x".into()),
                ..u
            },
            None,
            for_targets(EventType::UserUpdated, &[APP]),
        )
        .await
        .unwrap();
    let d = claim(&store, APP, "c1").await.remove(0);
    store
        .finish(
            &d,
            &Outcome::Dead {
                error: "too old".into(),
            },
        )
        .await
        .unwrap();
    let dead = store.dead_letters(&[APP.into()]).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, d.event.id);
    assert_eq!(dead[0].kind, EventType::UserCreated);
    assert_eq!(dead[0].attempts, 1);
    // The lane moved on to the update.
    let next = claim(&store, APP, "c1").await.remove(0);
    assert_eq!(next.event.kind, EventType::UserUpdated);
    store.finish(&next, &Outcome::Delivered).await.unwrap();
    // Filters that match nothing re-queue nothing.
    assert_eq!(
        store.replay(APP, &["evt_nope".into()], None).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .replay(APP, &[], Some(now_ms() + 60_000))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.replay(APP, &[], Some(d.event.at_ms)).await.unwrap(),
        1
    );
    assert!(store.dead_letters(&[APP.into()]).await.unwrap().is_empty());
    let replayed = claim(&store, APP, "c1").await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        replayed[0].event.id, d.event.id,
        "the same event, body intact"
    );
    assert_eq!(
        replayed[0].event.user.as_ref().unwrap().user_name,
        "a@acme.test"
    );
    store
        .finish(&replayed[0], &Outcome::Delivered)
        .await
        .unwrap();
    assert_eq!(pending(&store, APP).await, 0);
}

async fn finishing_twice_or_a_stale_head_changes_nothing(store: Arc<dyn Backend>) {
    for name in ["a@acme.test", "b@acme.test"] {
        store
            .create_user_emit(
                T,
                User::new(name),
                for_targets(EventType::UserCreated, &[APP]),
            )
            .await
            .unwrap();
    }
    let batch = claim(&store, APP, "c1").await;
    assert_eq!(batch.len(), 2);
    store.finish(&batch[0], &Outcome::Delivered).await.unwrap();
    store.finish(&batch[0], &Outcome::Delivered).await.unwrap();
    store
        .finish(
            &batch[0],
            &Outcome::Dead {
                error: "late".into(),
            },
        )
        .await
        .unwrap();
    let st = &store.status(&[APP.into()]).await.unwrap()[0];
    assert_eq!(
        (st.pending, st.delivered, st.dead_letters),
        (1, 1, 0),
        "{st:?}"
    );
    store.finish(&batch[1], &Outcome::Delivered).await.unwrap();
    assert_eq!(pending(&store, APP).await, 0);
    assert!(claim(&store, APP, "c1").await.is_empty());
}

async fn group_events_carry_the_stored_record(store: Arc<dyn Backend>) {
    let a = store
        .create_user(T, User::new("a@acme.test"))
        .await
        .unwrap();
    let mut g = Group::new("Ops");
    g.members = vec![portcullis::directory::Member::user(&a)];
    let g = store
        .create_group_emit(T, g, for_targets(EventType::GroupCreated, &[APP]))
        .await
        .unwrap();
    let renamed = Group {
        display_name: "SRE".into(),
        ..g.clone()
    };
    store
        .replace_group_emit(
            T,
            renamed,
            Some(1),
            for_targets(EventType::GroupUpdated, &[APP]),
        )
        .await
        .unwrap();
    store
        .delete_group_emit(T, &g.id, for_targets(EventType::GroupDeleted, &[APP]))
        .await
        .unwrap();
    let got = deliver_all(&store, APP).await;
    let seen: Vec<(EventType, String, u64, usize)> = got
        .iter()
        .map(|e| {
            let g = e.group.as_ref().unwrap();
            (
                e.kind,
                g.display_name.clone(),
                g.meta.version,
                g.members.len(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventType::GroupCreated, "Ops".into(), 1, 1),
            (EventType::GroupUpdated, "SRE".into(), 2, 1),
            (EventType::GroupDeleted, "SRE".into(), 2, 1),
        ]
    );
}

/// Redis: a head claimed by a consumer that went silent is re-claimed by
/// another after `reclaim_after`; the first one's late finish is harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reclaims_the_heads_of_a_silent_consumer() {
    let store = redis("reclaim").await;
    store
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let short = Duration::from_millis(300);
    let held = store.claim(APP, "dies", 10, NO_WAIT, short).await.unwrap();
    assert_eq!(held.len(), 1);
    // Another replica sees nothing while the holder may still be working...
    assert!(store
        .claim(APP, "lives", 10, NO_WAIT, short)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    // ...and takes it over once the holder has been silent long enough.
    let taken = store.claim(APP, "lives", 10, NO_WAIT, short).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].event.id, held[0].event.id);
    store.finish(&taken[0], &Outcome::Delivered).await.unwrap();
    store.finish(&held[0], &Outcome::Delivered).await.unwrap();
    let st = &store.status(&[APP.into()]).await.unwrap()[0];
    assert_eq!((st.pending, st.delivered), (0, 1));
}

/// Redis: a consumer restarted under the same name first gets back what it
/// held (its pending entries), without waiting for `reclaim_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gives_a_restarted_consumer_its_pending_heads() {
    let prefix = support::unique_prefix("restart");
    let connect = || async {
        Arc::new(
            RedisStore::connect(&support::redis_url(), &prefix)
                .await
                .unwrap(),
        ) as Arc<dyn Backend>
    };
    let before = connect().await;
    before
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let held = before
        .claim(APP, "host:8080", 10, NO_WAIT, RECLAIM)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    drop(before); // the process dies without finishing
    let after = connect().await;
    let back = after
        .claim(APP, "host:8080", 10, NO_WAIT, RECLAIM)
        .await
        .unwrap();
    assert_eq!(back.len(), 1, "its own pending head, at once");
    assert_eq!(back[0].event.id, held[0].event.id);
    assert!(after
        .claim(APP, "host:8080", 10, NO_WAIT, RECLAIM)
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_replays_requeue_a_dead_letter_once(store: Arc<dyn Backend>) {
    store
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let d = claim(&store, APP, "c1").await.remove(0);
    store
        .finish(
            &d,
            &Outcome::Dead {
                error: "down".into(),
            },
        )
        .await
        .unwrap();
    let (a, b) = tokio::join!(store.replay(APP, &[], None), store.replay(APP, &[], None));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "re-queued once");
    assert_eq!(pending(&store, APP).await, 1);
    let got = deliver_all(&store, APP).await;
    assert_eq!(got.len(), 1);
    // The lane is healthy: a later event for the user still flows.
    let u = store
        .user_by_user_name(T, "a@acme.test")
        .await
        .unwrap()
        .unwrap();
    store
        .replace_user_emit(
            T,
            User {
                title: Some("x".into()),
                ..u
            },
            None,
            for_targets(EventType::UserUpdated, &[APP]),
        )
        .await
        .unwrap();
    assert_eq!(deliver_all(&store, APP).await.len(), 1);
    assert_eq!(pending(&store, APP).await, 0);
}

async fn a_discarded_dead_letter_is_gone_for_good(store: Arc<dyn Backend>) {
    store
        .create_user_emit(
            T,
            User::new("a@acme.test"),
            for_targets(EventType::UserCreated, &[APP]),
        )
        .await
        .unwrap();
    let d = claim(&store, APP, "c1").await.remove(0);
    store
        .finish(
            &d,
            &Outcome::Dead {
                error: "down".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .discard(APP, &["evt_other".into()], None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.discard(APP, &[], Some(d.event.at_ms)).await.unwrap(),
        0,
        "not before its time"
    );
    assert_eq!(
        store
            .discard(APP, &[], Some(d.event.at_ms + 1))
            .await
            .unwrap(),
        1
    );
    assert!(store.dead_letters(&[APP.into()]).await.unwrap().is_empty());
    assert_eq!(
        store.replay(APP, &[], None).await.unwrap(),
        0,
        "nothing left to replay"
    );
    assert_eq!(
        store.status(&[APP.into()]).await.unwrap()[0].dead_letters,
        0
    );
}
