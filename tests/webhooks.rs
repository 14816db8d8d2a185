//! Provisioning webhooks end to end: a real gateway, SCIM requests as an IdP
//! sends them, and a real HTTP receiver on 127.0.0.1. Every scenario runs on
//! the embedded store and on Redis.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use support::receiver::*;
use support::*;

const FAST_RETRY: &str = "retry_initial = \"50ms\"\nretry_max = \"300ms\"\n";

struct Env {
    gw: Gateway,
    token: String,
    _app: RecordingApp,
}

fn scim_toml(token: &str) -> String {
    format!(
        "[scim]\nbase_path = \"/scim/v2\"\n[[scim.client]]\nname = \"jumpcloud\"\ntoken_hash = \"{}\"\ntenant = \"acme\"\nallow_deletion = true\n",
        portcullis::secret::TokenHash::of(token)
    )
}

fn start(redis: Option<String>, webhooks: &str) -> Env {
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let mut o = GatewayOpts::new(&app.url());
    o.redis_prefix = redis;
    o.extra = format!("{}{webhooks}", scim_toml(&token));
    Env {
        gw: Gateway::start(o),
        token,
        _app: app,
    }
}

fn backend(redis: bool) -> Option<String> {
    redis.then(|| unique_prefix("wh"))
}

macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(true).await
            }
        }
    };
}

/// One SCIM call; returns (status, body).
async fn scim(
    gw: &Gateway,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client()
        .request(method.parse().unwrap(), gw.url(&format!("/scim/v2{path}")))
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(b) = body {
        rb = rb
            .header(CONTENT_TYPE, "application/scim+json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Env {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        scim(&self.gw, &self.token, method, path, body).await
    }

    async fn create_user(&self, user_name: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "name": {"givenName": "Ann", "familyName": "Lee"},
                    "emails": [{"value": user_name, "type": "work", "primary": true}],
                    "active": true
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}\n{}", self.gw.log());
        v["id"].as_str().unwrap().to_string()
    }

    async fn patch(&self, path: &str, ops: Value) -> (u16, Value) {
        self.call(
            "PATCH",
            path,
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": ops
            })),
        )
        .await
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = client()
            .request(method, self.gw.admin_url(path))
            .bearer_auth(&self.gw.admin_token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// The target's status once `pred` holds (outcomes are recorded just
    /// after the receiver answered); panics after 10 s.
    async fn status_when(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let st = self.status().await;
            if pred(&st) {
                return st;
            }
            assert!(std::time::Instant::now() < deadline, "status stuck at {st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&self) -> Value {
        self.admin(reqwest::Method::GET, "/admin/webhooks", None)
            .await["targets"][0]
            .clone()
    }
}

/// The events of one resource, in the order they arrived.
fn lane<'a>(got: &'a [Got], resource_id: &str) -> Vec<&'a Got> {
    got.iter()
        .filter(|g| g.json["data"]["id"] == resource_id || g.json["data"]["user_id"] == resource_id)
        .collect()
}

/// `meta.version` (`W/"3"`) as a number.
fn version(data: &Value) -> u64 {
    data["meta"]["version"]
        .as_str()
        .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no version in {data}"))
}

fn kinds(events: &[&Got]) -> Vec<String> {
    events.iter().map(|g| g.kind().to_string()).collect()
}

async fn every_scim_operation_produces_its_event(redis: bool) {
    let rx = Receiver::start();
    let secret = secret();
    let e = start(
        backend(redis),
        &webhook_toml(
            "app",
            &rx.url(),
            &secret,
            &format!("events = [\"*\"]\n{FAST_RETRY}"),
        ),
    );
    let ann = e.create_user("ann@acme.test").await;
    let (s, _) = e
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "replace", "path": "displayName", "value": "Ann L."}]),
        )
        .await;
    assert_eq!(s, 200);
    // A signed-in session, so the deactivation also revokes something.
    e.gw.login(json!({"sub": ann, "email": "ann@acme.test", "tenant": "acme"}))
        .await;
    let (s, _) = e
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = e
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(s, 200);
    let (s, g) = e
        .call(
            "POST",
            "/Groups",
            Some(json!({"displayName": "Engineering", "members": [{"value": ann}]})),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let group = g["id"].as_str().unwrap().to_string();
    let bob = e.create_user("bob@acme.test").await;
    let gp = format!("/Groups/{group}");
    let add = json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]);
    assert_eq!(e.patch(&gp, add.clone()).await.0, 200);
    // JumpCloud repeats adds: nothing changed, so no event.
    assert_eq!(e.patch(&gp, add).await.0, 200);
    let remove = json!([{"op": "remove", "path": format!("members[value eq \"{ann}\"]")}]);
    assert_eq!(e.patch(&gp, remove).await.0, 200);
    let rename = json!([{"op": "replace", "path": "displayName", "value": "R&D"}]);
    assert_eq!(e.patch(&gp, rename).await.0, 200);
    assert_eq!(e.call("DELETE", &gp, None).await.0, 204);
    assert_eq!(
        e.call("DELETE", &format!("/Users/{bob}"), None).await.0,
        204
    );

    let got = rx
        .wait_for(
            "12 events",
            Duration::from_secs(20),
            || e.gw.log(),
            |g| g.len() >= 12,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = if rx.got().len() > got.len() {
        rx.got()
    } else {
        got
    };
    assert_eq!(
        got.len(),
        12,
        "exactly the expected events: {:?}",
        got.iter().map(|g| g.kind()).collect::<Vec<_>>()
    );

    assert_eq!(
        kinds(&lane(&got, &ann)),
        [
            "user.created",
            "user.updated",
            "user.deactivated",
            "session.revoked",
            "user.reactivated"
        ]
    );
    assert_eq!(
        kinds(&lane(&got, &group)),
        [
            "group.created",
            "group.members_added",
            "group.members_removed",
            "group.updated",
            "group.deleted"
        ]
    );
    assert_eq!(kinds(&lane(&got, &bob)), ["user.created", "user.deleted"]);

    for g in &got {
        assert_eq!(g.id, g.json["id"], "webhook-id is the body id");
        assert!(g.id.starts_with("evt_"));
        assert_eq!(g.json["tenant"], "acme");
        assert_eq!(g.json["source"], "scim");
        assert_eq!(g.json["actor"], "jumpcloud");
        assert!(g.json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let a = lane(&got, &ann);
    assert_eq!(a[0].json["data"]["userName"], "ann@acme.test");
    assert_eq!(version(&a[0].json["data"]), 1);
    assert_eq!(a[1].json["data"]["displayName"], "Ann L.");
    assert_eq!(
        a[1].json["data"]["changedAttributes"],
        json!(["displayName"])
    );
    assert_eq!(a[2].json["data"]["active"], false);
    assert_eq!(a[3].json["data"]["sessions"], 1);
    assert_eq!(a[3].json["data"]["reason"], "deactivated");
    assert_eq!(a[4].json["data"]["active"], true);
    let g = lane(&got, &group);
    assert_eq!(g[0].json["data"]["displayName"], "Engineering");
    assert_eq!(g[0].json["data"]["members"][0]["value"], ann.as_str());
    assert_eq!(g[1].json["data"]["membersAdded"], json!([{"value": bob}]));
    assert_eq!(g[2].json["data"]["membersRemoved"], json!([{"value": ann}]));
    assert_eq!(g[3].json["data"]["displayName"], "R&D");
    assert_eq!(g[3].json["data"]["changedAttributes"], Value::Null);
    assert_eq!(g[4].json["type"], "group.deleted");
    let b = lane(&got, &bob);
    assert_eq!(b[1].json["data"]["userName"], "bob@acme.test");

    let ids: HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "every event has its own id");
    verify_independently(&secret, &got);

    let st = e.status_when(|st| st["delivered"] == 12).await;
    assert_eq!(st["pending"], 0, "{st}");
    assert_eq!(st["dead_letters"], 0, "{st}");
}
on_both_backends!(every_scim_operation_produces_its_event);

/// 20 users × 10 changes while the receiver is down; then it comes up.
async fn a_receiver_down_during_200_changes_gets_all_of_them_in_order(redis: bool) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let e = start(
        backend(redis),
        &webhook_toml(
            "app",
            &url,
            &secret(),
            &format!("{FAST_RETRY}timeout = \"1s\"\n"),
        ),
    );
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(e.create_user(&format!("user{i}@acme.test")).await);
    }
    for round in 1..10 {
        for id in &ids {
            let (s, _) = e
                .patch(
                    &format!("/Users/{id}"),
                    json!([{"op": "replace", "path": "title", "value": format!("title {round}")}]),
                )
                .await;
            assert_eq!(s, 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = e.status().await;
    assert_eq!(
        st["pending"], 200,
        "all 200 wait while the receiver is down: {st}"
    );
    assert!(st["failed_attempts"].as_u64().unwrap() >= 20, "{st}");

    let rx = Receiver::start_on(port);
    let got = rx
        .wait_for(
            "200 events",
            Duration::from_secs(60),
            || e.gw.log(),
            |g| {
                g.iter()
                    .map(|x| x.id.as_str())
                    .collect::<HashSet<_>>()
                    .len()
                    >= 200
            },
        )
        .await;
    let distinct: HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(got.len(), 200, "nothing was acknowledged twice");
    for id in &ids {
        let versions: Vec<u64> = lane(&got, id)
            .iter()
            .map(|g| version(&g.json["data"]))
            .collect();
        assert_eq!(
            versions,
            (1..=10).collect::<Vec<u64>>(),
            "user {id} in order"
        );
    }
    e.status_when(|st| st["pending"] == 0).await;
}
on_both_backends!(a_receiver_down_during_200_changes_gets_all_of_them_in_order);

/// SIGKILL with deliveries in flight and queued: a restart delivers all.
async fn a_killed_gateway_delivers_everything_after_restart(redis: bool) {
    let rx = Receiver::start();
    let mut e = start(
        backend(redis),
        &webhook_toml(
            "app",
            &rx.url(),
            &secret(),
            &format!("{FAST_RETRY}timeout = \"5s\"\nreclaim_after = \"10s\"\n"),
        ),
    );
    // The receiver holds every request: deliveries are mid-flight when we kill.
    rx.answer(Answer::Hang(Duration::from_secs(30)));
    let mut acked = Vec::new();
    for i in 0..10 {
        let id = e.create_user(&format!("k{i}@acme.test")).await;
        let (s, _) = e
            .patch(
                &format!("/Users/{id}"),
                json!([{"op": "replace", "path": "title", "value": "x"}]),
            )
            .await;
        assert_eq!(s, 200);
        acked.push(id);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rx.attempts() < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rx.attempts() >= 10, "deliveries are in flight");
    e.gw.stop(); // SIGKILL
    rx.answer(Answer::Accept);
    e.gw.restart();
    let got = rx
        .wait_for(
            "20 events after the restart",
            Duration::from_secs(30),
            || e.gw.log(),
            |g| {
                g.iter()
                    .map(|x| x.id.as_str())
                    .collect::<HashSet<_>>()
                    .len()
                    >= 20
            },
        )
        .await;
    for id in &acked {
        let mut seen = kinds(&lane(&got, id));
        seen.dedup(); // at-least-once: a send cut by the kill may arrive twice
        assert_eq!(
            seen,
            ["user.created", "user.updated"],
            "user {id}: both, in order"
        );
    }
}
on_both_backends!(a_killed_gateway_delivers_everything_after_restart);

/// Two replicas on one Redis share the work: each event reaches the
/// receiver exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_redis_deliver_each_event_once() {
    let rx = Receiver::start();
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let prefix = unique_prefix("wh2");
    let hook = webhook_toml("app", &rx.url(), &secret(), FAST_RETRY);
    let start_replica = || {
        let mut o = GatewayOpts::new(&app.url());
        o.redis_prefix = Some(prefix.clone());
        o.extra = format!("{}{hook}", scim_toml(&token));
        Gateway::start(o)
    };
    let (a, b) = (start_replica(), start_replica());
    let mut users = Vec::new();
    for i in 0..30 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (s, v) = scim(
            gw,
            &token,
            "POST",
            "/Users",
            Some(json!({"userName": format!("r{i}@acme.test"), "active": true})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        users.push(v["id"].as_str().unwrap().to_string());
    }
    for (i, id) in users.iter().enumerate() {
        let gw = if i % 2 == 0 { &b } else { &a };
        let (s, _) = scim(
            gw,
            &token,
            "PATCH",
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "title", "value": "t"}]}),
            ),
        )
        .await;
        assert_eq!(s, 200);
    }
    let got = rx
        .wait_for(
            "60 events",
            Duration::from_secs(30),
            || format!("{}\n{}", a.log(), b.log()),
            |g| g.len() >= 60,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = if rx.got().len() > got.len() {
        rx.got()
    } else {
        got
    };
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for g in &got {
        *per_id.entry(g.id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 60);
    assert!(
        per_id.values().all(|n| *n == 1),
        "each event once: {per_id:?}"
    );
    for id in &users {
        assert_eq!(kinds(&lane(&got, id)), ["user.created", "user.updated"]);
    }
}

/// `mode = "sync"`: a refusal fails the SCIM request and writes nothing.
async fn a_sync_target_refusal_fails_the_scim_request_and_changes_nothing(redis: bool) {
    let gate = Receiver::start();
    let audit = Receiver::start();
    let hooks = format!(
        "{}{}",
        webhook_toml(
            "gate",
            &gate.url(),
            &secret(),
            "mode = \"sync\"\ntimeout = \"500ms\"\n"
        ),
        webhook_toml("audit", &audit.url(), &secret(), FAST_RETRY)
    );
    let e = start(backend(redis), &hooks);
    gate.answer(Answer::Refuse(
        409,
        "email domain not allowed by the app".into(),
    ));
    let (s, v) = e
        .call(
            "POST",
            "/Users",
            Some(json!({"userName": "eve@acme.test", "active": true})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(v["status"], "409");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("email domain not allowed by the app"),
        "{v}"
    );
    let (_, list) = e
        .call(
            "GET",
            "/Users?filter=userName%20eq%20%22eve@acme.test%22",
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 0, "nothing was written");

    gate.answer(Answer::Accept);
    let eve = e.create_user("eve@acme.test").await;
    assert_eq!(
        gate.got().len(),
        1,
        "the sync target had the event before the response"
    );
    assert_eq!(
        gate.got()[0].json["data"]["id"],
        eve.as_str(),
        "with the final id"
    );

    gate.answer(Answer::Refuse(503, "maintenance".into()));
    let rename = json!([{"op": "replace", "path": "displayName", "value": "Mallory"}]);
    let (s, v) = e.patch(&format!("/Users/{eve}"), rename.clone()).await;
    assert_eq!(s, 502, "{v}");
    gate.answer(Answer::Hang(Duration::from_secs(3)));
    let (s, v) = e.patch(&format!("/Users/{eve}"), rename).await;
    assert_eq!(s, 504, "{v}");
    let (_, now) = e.call("GET", &format!("/Users/{eve}"), None).await;
    assert!(now.get("displayName").is_none(), "unchanged: {now}");
    assert_eq!(version(&now), 1);

    // An app 404 is not passed on as "no such user" to the IdP.
    gate.answer(Answer::Refuse(404, "unknown route".into()));
    let (s, v) = e
        .patch(
            &format!("/Users/{eve}"),
            json!([{"op": "replace", "path": "title", "value": "x"}]),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // The async target saw only what was committed: one user.created.
    let got = audit
        .wait_for(
            "user.created",
            Duration::from_secs(10),
            || e.gw.log(),
            |g| !g.is_empty(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(audit.got().len(), 1, "{:?}", got);
    assert_eq!(
        audit.got()[0].id,
        gate.got()[0].id,
        "one event, one id, every target"
    );
}
on_both_backends!(a_sync_target_refusal_fails_the_scim_request_and_changes_nothing);

fn cli(e: &Env, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("-c")
        .arg(&e.gw.config_path)
        .env("PORTCULLIS_ADMIN_TOKEN", &e.gw.admin_token)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Past `max_age` an event becomes a dead letter; replay delivers it.
async fn a_dead_letter_is_kept_then_replayed(redis: bool) {
    let rx = Receiver::start();
    let e = start(
        backend(redis),
        &webhook_toml(
            "app",
            &rx.url(),
            &secret(),
            "max_age = \"1s\"\ntimeout = \"500ms\"\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\n",
        ),
    );
    rx.answer(Answer::Refuse(500, "database is down".into()));
    let id = e.create_user("dora@acme.test").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let st = e.status().await;
        if st["dead_letters"] == 1 {
            assert_eq!(st["pending"], 0, "{st}");
            assert!(
                st["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("database is down"),
                "{st}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter: {st}\n{}",
            e.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = cli(&e, &["webhooks", "dead-letters"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("user.created") && out.contains("database is down"),
        "{out}"
    );
    let event_id = out
        .split_whitespace()
        .find(|w| w.starts_with("evt_"))
        .unwrap()
        .to_string();
    let (ok, out) = cli(&e, &["webhooks", "status"]);
    assert!(ok && out.contains("app"), "{out}");

    rx.answer(Answer::Accept);
    let (ok, out) = cli(&e, &["webhooks", "replay", "--id", "evt_unknown"]);
    assert!(ok && out.contains("re-queued 0"), "{out}");
    let (ok, out) = cli(&e, &["webhooks", "replay", "--id", &event_id]);
    assert!(ok && out.contains("re-queued 1"), "{out}");
    let got = rx
        .wait_for(
            "the replayed event",
            Duration::from_secs(10),
            || e.gw.log(),
            |g| !g.is_empty(),
        )
        .await;
    assert_eq!(
        got[0].id, event_id,
        "same event id: the receiver can dedupe"
    );
    assert_eq!(got[0].json["data"]["id"], id.as_str());
    let st = e.status_when(|st| st["delivered"] == 1).await;
    assert_eq!(st["dead_letters"], 0, "{st}");
    assert_eq!(st["pending"], 0, "{st}");

    // A dead letter the app will never want can be dropped instead.
    rx.answer(Answer::Refuse(500, "still down".into()));
    e.create_user("gone@acme.test").await;
    e.status_when(|st| st["dead_letters"] == 1).await;
    let (ok, out) = cli(&e, &["webhooks", "discard"]);
    assert!(!ok && out.contains("--all"), "refuses to guess: {out}");
    let (ok, out) = cli(&e, &["webhooks", "discard", "--all"]);
    assert!(ok && out.contains("discarded 1"), "{out}");
    let st = e.status().await;
    assert_eq!(
        (st["dead_letters"].as_u64(), st["pending"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
}
on_both_backends!(a_dead_letter_is_kept_then_replayed);

/// A target added later catches up with `webhooks backfill`.
async fn backfill_sends_the_current_directory(redis: bool) {
    let rx = Receiver::start();
    let e = start(
        backend(redis),
        &webhook_toml(
            "app",
            &rx.url(),
            &secret(),
            "events = [\"user.created\", \"group.created\"]\n",
        ),
    );
    // Events for this target exist only from now on; backfill covers the past.
    let a = e.create_user("a@acme.test").await;
    let b = e.create_user("b@acme.test").await;
    let (s, _) = e
        .call(
            "POST",
            "/Groups",
            Some(json!({"displayName": "Ops", "members": [{"value": a}]})),
        )
        .await;
    assert_eq!(s, 201);
    rx.wait_for(
        "live events",
        Duration::from_secs(10),
        || e.gw.log(),
        |g| g.len() >= 3,
    )
    .await;
    let (ok, out) = cli(&e, &["webhooks", "backfill", "--target", "app"]);
    assert!(ok && out.contains("queued 3"), "{out}");
    let got = rx
        .wait_for(
            "backfilled events",
            Duration::from_secs(10),
            || e.gw.log(),
            |g| g.len() >= 6,
        )
        .await;
    let backfilled: Vec<&Got> = got.iter().filter(|g| g.json["source"] == "admin").collect();
    assert_eq!(backfilled.len(), 3);
    let users: HashSet<&str> = backfilled
        .iter()
        .filter(|g| g.kind() == "user.created")
        .map(|g| g.json["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(users, HashSet::from([a.as_str(), b.as_str()]));
    let group = backfilled
        .iter()
        .find(|g| g.kind() == "group.created")
        .unwrap();
    assert_eq!(group.json["data"]["members"][0]["value"], a.as_str());
    let (ok, out) = cli(&e, &["webhooks", "backfill", "--target", "nope"]);
    assert!(!ok && out.contains("no webhook target named"), "{out}");
}
on_both_backends!(backfill_sends_the_current_directory);

/// An operator ending a user's sessions tells targets that asked for
/// `session.*`; targets that did not ask hear nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_revocation_sends_session_revoked() {
    let rx = Receiver::start();
    let quiet = Receiver::start();
    let hooks = format!(
        "{}{}",
        webhook_toml(
            "sessions",
            &rx.url(),
            &secret(),
            "events = [\"session.*\"]\n"
        ),
        webhook_toml("users", &quiet.url(), &secret(), "")
    );
    let e = start(None, &hooks);
    e.gw.login(json!({"sub": "u-7", "email": "gus@acme.test", "tenant": "acme"}))
        .await;
    e.gw.login(json!({"sub": "u-7", "email": "gus@acme.test", "tenant": "acme"}))
        .await;
    assert_eq!(e.gw.revoke_user("u-7").await["revoked"], 2);
    // Nothing left to revoke: no event.
    assert_eq!(e.gw.revoke_user("u-7").await["revoked"], 0);
    let got = rx
        .wait_for(
            "session.revoked",
            Duration::from_secs(10),
            || e.gw.log(),
            |g| !g.is_empty(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 1);
    assert_eq!(got[0].kind(), "session.revoked");
    assert_eq!(got[0].json["source"], "admin");
    assert_eq!(got[0].json["tenant"], "acme");
    assert_eq!(
        got[0].json["data"],
        json!({"user_id": "u-7", "user_name": "gus@acme.test", "sessions": 2, "reason": "revoked by an operator"})
    );
    assert!(quiet.got().is_empty());
}

/// A sync delivery waits for events already queued for the same user in
/// that target's lane, but a lane the app will not drain never blocks a
/// SCIM change (deprovisioning must always go through).
async fn a_sync_send_waits_for_earlier_events_of_the_user(redis: bool) {
    let gate = Receiver::start();
    let e = start(
        backend(redis),
        &webhook_toml(
            "gate",
            &gate.url(),
            &secret(),
            &format!("mode = \"sync\"\nevents = [\"*\"]\ntimeout = \"3s\"\n{FAST_RETRY}"),
        ),
    );
    let id = e.create_user("sam@acme.test").await;
    let login = json!({"sub": id, "email": "sam@acme.test", "tenant": "acme"});
    e.gw.login(login.clone()).await;
    // The app takes SCIM events but not session.revoked (for a moment).
    gate.answer(Answer::RefuseType("session.revoked".into()));
    let off = json!([{"op": "replace", "path": "active", "value": false}]);
    let on = json!([{"op": "replace", "path": "active", "value": true}]);
    assert_eq!(e.patch(&format!("/Users/{id}"), off.clone()).await.0, 200);
    let gate_ref = &gate;
    let path = format!("/Users/{id}");
    let (patched, ()) = tokio::join!(e.patch(&path, on.clone()), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        gate_ref.answer(Answer::Accept);
    });
    assert_eq!(patched.0, 200);
    let kinds = |g: &Receiver| {
        g.got()
            .iter()
            .map(|x| x.kind().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&gate),
        [
            "user.created",
            "user.deactivated",
            "session.revoked",
            "user.reactivated"
        ],
        "the reactivation waited for the queued session.revoked"
    );

    // An app that keeps refusing the queued event does not block the next
    // deactivation: after `timeout` the sync event goes out anyway.
    e.gw.login(login).await;
    gate.answer(Answer::RefuseType("session.revoked".into()));
    assert_eq!(e.patch(&format!("/Users/{id}"), off).await.0, 200);
    let started = std::time::Instant::now();
    let (s, v) = e.call("DELETE", &format!("/Users/{id}"), None).await;
    assert_eq!(s, 204, "{v}");
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "it waited first"
    );
    let (s, _) = e.call("GET", &format!("/Users/{id}"), None).await;
    assert_eq!(s, 404, "deleted");
    assert_eq!(
        kinds(&gate).last().map(String::as_str),
        Some("user.deleted")
    );
}
on_both_backends!(a_sync_send_waits_for_earlier_events_of_the_user);

/// Redis: a replica killed mid-delivery and never restarted; the other one
/// re-claims what it held after `reclaim_after` and delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_deliveries_are_taken_over() {
    let rx = Receiver::start();
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let prefix = unique_prefix("wh-takeover");
    let hook = webhook_toml(
        "app",
        &rx.url(),
        &secret(),
        &format!("{FAST_RETRY}timeout = \"2s\"\nreclaim_after = \"3s\"\n"),
    );
    let start_replica = || {
        let mut o = GatewayOpts::new(&app.url());
        o.redis_prefix = Some(prefix.clone());
        o.extra = format!("{}{hook}", scim_toml(&token));
        Gateway::start(o)
    };
    let (mut a, b) = (start_replica(), start_replica());
    rx.answer(Answer::Hang(Duration::from_secs(30)));
    let mut users = Vec::new();
    for i in 0..12 {
        let (s, v) = scim(
            &a,
            &token,
            "POST",
            "/Users",
            Some(json!({"userName": format!("t{i}@acme.test"), "active": true})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        users.push(v["id"].as_str().unwrap().to_string());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rx.attempts() < 12 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.attempts() >= 12, "every event in flight before the kill");
    a.stop(); // SIGKILL, and it stays down
    rx.answer(Answer::Accept);
    let got = rx
        .wait_for(
            "all 12 from the surviving replica",
            Duration::from_secs(30),
            || b.log(),
            |g| {
                g.iter()
                    .map(|x| x.id.as_str())
                    .collect::<HashSet<_>>()
                    .len()
                    >= 12
            },
        )
        .await;
    for id in &users {
        assert!(!lane(&got, id).is_empty(), "user {id} delivered");
    }
    // 12 requests were in flight and a replica holds at most 8 (concurrency):
    // the dead one held some, and they came back through a re-claim.
    assert!(
        b.log().contains("re-claimed webhook deliveries"),
        "{}",
        b.log()
    );
}
