//! A stand-in "legacy app" for the demo and for trying Portcullis locally.
//!
//! It knows nothing about SAML or sessions: it reads the
//! `X-Portcullis-Jwt-Assertion` header, verifies it against the gateway's
//! JWKS (fetched once, refetched when an unknown `kid` shows up), and shows
//! who is signed in. This is all an app behind Portcullis has to do.
//!
//! It also receives provisioning webhooks at `POST /webhooks/portcullis`
//! (Standard Webhooks signatures, verified with
//! `portcullis::webhook::signing`) and keeps the users and groups they
//! describe in memory, shown at `GET /directory` and `GET /directory.json`.
//!
//! Environment: `APP_LISTEN` (default 127.0.0.1:3000), `GATEWAY_URL`
//! (default http://127.0.0.1:8080), `APP_AUDIENCE` (default demo-app),
//! `APP_WEBHOOK_SECRET` (the target's `whsec_...` secret; several separated
//! by commas while rotating; unset: the webhook endpoint answers 503).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::{get, post};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use portcullis::webhook::signing::{self, Secret};
use serde_json::{json, Value};
use tokio::sync::RwLock;

struct AppState {
    gateway: String,
    audience: String,
    jwks: RwLock<JwkSet>,
    http: reqwest::Client,
    /// Webhook signing secrets (`None`: webhooks not configured).
    webhook_secrets: Option<Vec<Secret>>,
    /// What the webhooks told us. One lock: the duplicate check, the apply
    /// and remembering the id must happen together.
    directory: Mutex<Directory>,
}

impl AppState {
    async fn refresh_jwks(&self) -> Result<(), String> {
        let url = format!("{}/.portcullis/jwks.json", self.gateway);
        let set: JwkSet = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("parsing {url}: {e}"))?;
        *self.jwks.write().await = set;
        Ok(())
    }

    /// Verifies the identity JWT; returns its claims.
    async fn verify(&self, token: &str) -> Result<Value, String> {
        let header = decode_header(token).map_err(|e| e.to_string())?;
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA
        ) {
            return Err(format!("unexpected algorithm {:?}", header.alg));
        }
        let kid = header.kid.ok_or("token has no kid")?;
        if self.jwks.read().await.find(&kid).is_none() {
            self.refresh_jwks().await?;
        }
        let jwks = self.jwks.read().await;
        let jwk = jwks.find(&kid).ok_or("unknown signing key")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.gateway]);
        Ok(decode::<Value>(token, &key, &v)
            .map_err(|e| e.to_string())?
            .claims)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(st): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let token = headers
        .get("x-portcullis-jwt-assertion")
        .and_then(|v| v.to_str().ok());
    let (status, body) = match token {
        None => (
            StatusCode::OK,
            "<p>No identity header: this page is public, or you reached the app without the gateway.</p>".to_string(),
        ),
        Some(t) => match st.verify(t).await {
            Ok(claims) => {
                let name = claims["name"].as_str().or(claims["sub"].as_str()).unwrap_or("?");
                let pretty = serde_json::to_string_pretty(&claims).unwrap_or_default();
                (
                    StatusCode::OK,
                    format!(
                        "<p>Signed in as <strong>{}</strong>. The gateway's JWT verified against its JWKS.</p>\
                         <h2>Claims</h2><pre>{}</pre><p><a href=\"/.portcullis/logout\">Sign out</a></p>",
                        esc(name),
                        esc(&pretty)
                    ),
                )
            }
            Err(e) => (StatusCode::UNAUTHORIZED, format!("<p>Identity header rejected: {}</p>", esc(&e))),
        },
    };
    let plain: Vec<String> = headers
        .iter()
        .filter(|(n, _)| {
            n.as_str().starts_with("x-portcullis-") && n.as_str() != "x-portcullis-jwt-assertion"
        })
        .map(|(n, v)| format!("{}: {}", n, esc(v.to_str().unwrap_or("?"))))
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Legacy app</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}}\
         pre{{background:#f4f5f7;padding:1rem;overflow:auto}}</style></head><body><h1>Legacy app</h1>{body}\
         <h2>Plain identity headers</h2><pre>{}</pre></body></html>",
        if plain.is_empty() { "(none)".to_string() } else { plain.join("\n") }
    );
    (status, Html(html))
}

// ---------------------------------------------------------------------------
// Provisioning webhooks
// ---------------------------------------------------------------------------

/// Reads `APP_WEBHOOK_SECRET`. A malformed secret stops the app at start:
/// silently answering 401 to every delivery would look like an attack.
fn webhook_secrets_from_env() -> Option<Vec<Secret>> {
    let raw = std::env::var("APP_WEBHOOK_SECRET").ok()?;
    let secrets: Vec<Secret> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Secret::parse(s).unwrap_or_else(|e| panic!("APP_WEBHOOK_SECRET: {e}")))
        .collect();
    (!secrets.is_empty()).then_some(secrets)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /webhooks/portcullis`. Any 2xx tells Portcullis "delivered";
/// anything else is retried, so only a request we can never accept (bad
/// signature, stale timestamp, unreadable body) gets a 4xx.
async fn receive_webhook(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(secrets) = &st.webhook_secrets else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks not configured\n".into(),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) = (
        header(signing::HEADER_ID),
        header(signing::HEADER_TIMESTAMP),
        header(signing::HEADER_SIGNATURE),
    ) else {
        return (
            StatusCode::UNAUTHORIZED,
            "missing webhook-id, webhook-timestamp or webhook-signature\n".into(),
        );
    };
    // Constant-time comparison against every secret; also refuses a
    // timestamp more than 5 minutes from our clock, so a captured request
    // cannot be replayed later (the id check below only covers what we
    // still remember).
    if let Err(e) = signing::verify(
        secrets,
        id,
        ts,
        sig,
        &body,
        unix_now(),
        signing::TOLERANCE_SECS,
    ) {
        eprintln!("webhook {id}: refused: {e}");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n"));
    }
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}\n")),
    };
    let outcome = st
        .directory
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .apply(id, &event);
    match outcome {
        Ok(o) => {
            eprintln!(
                "webhook {id}: {} {} ({}, {} {}): {}",
                event["type"].as_str().unwrap_or("?"),
                event["data"]["id"]
                    .as_str()
                    .or(event["data"]["user_id"].as_str())
                    .unwrap_or("?"),
                event["tenant"].as_str().unwrap_or("?"),
                event["source"].as_str().unwrap_or("?"),
                event["actor"].as_str().unwrap_or("?"),
                o.as_str()
            );
            (StatusCode::OK, format!("{}\n", o.as_str()))
        }
        Err(e) => {
            eprintln!("webhook {id}: refused: {e}");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

/// What became of a verified event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Applied,
    /// Its `webhook-id` was applied before: a retry after a lost response.
    Duplicate,
    /// Older than what we hold (a replayed dead letter, say): applying it
    /// would undo a newer change.
    Stale,
    /// Nothing to store (`session.revoked`) or a type this app does not
    /// know yet; acknowledged so it is not retried forever.
    Ignored,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Ignored => "ignored",
        }
    }
}

/// How many `webhook-id`s we remember. Forgetting an old one is harmless:
/// every event carries the version of its user or group, so a late
/// re-delivery is then caught by the version check instead.
const SEEN_CAP: usize = 100_000;

/// A user or group as the last applied event described it.
struct Record {
    tenant: String,
    /// The SCIM JSON (for groups without `members`, kept below).
    data: Value,
    /// Group members by id (`{value, type, display}` objects).
    members: BTreeMap<String, Value>,
}

/// Users and groups keyed by SCIM id, plus the bookkeeping that makes
/// applying events idempotent and order-safe.
#[derive(Default)]
struct Directory {
    users: HashMap<String, Record>,
    groups: HashMap<String, Record>,
    /// Deleted ids. Portcullis never reuses a SCIM id, so any later event
    /// about one is a replay and must not bring it back.
    deleted: HashSet<String>,
    /// Applied `webhook-id`s, and their order for eviction.
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

/// `meta.version` (`W/"7"`) as a number, when present and numeric.
fn version(data: &Value) -> Option<u64> {
    let v = data["meta"]["version"].as_str()?;
    v.trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// True when `incoming` is strictly older than `stored`. Equal versions
/// re-apply the same state, which is harmless; no version, no judgement.
fn older(incoming: &Value, stored: Option<&Record>) -> bool {
    match (version(incoming), stored.and_then(|r| version(&r.data))) {
        (Some(i), Some(s)) => i < s,
        _ => false,
    }
}

/// `[{"value": id, ...}]` as a map by id.
fn member_list(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["value"].as_str()?.to_string(), m.clone())))
        .collect()
}

impl Directory {
    /// Applies one verified event. `Err` only for a body that is not a
    /// Portcullis event (the caller answers 400).
    fn apply(&mut self, webhook_id: &str, event: &Value) -> Result<Outcome, String> {
        if self.seen.contains(webhook_id) {
            return Ok(Outcome::Duplicate);
        }
        let kind = event["type"].as_str().ok_or("event has no type")?;
        let tenant = event["tenant"].as_str().unwrap_or_default().to_string();
        let data = &event["data"];
        let id = || {
            data["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{kind} without data.id"))
        };
        let outcome = match kind {
            "user.created" | "user.updated" | "user.deactivated" | "user.reactivated" => {
                let id = id()?;
                if self.deleted.contains(&id) || older(data, self.users.get(&id)) {
                    Outcome::Stale
                } else {
                    let mut data = data.clone();
                    if let Some(o) = data.as_object_mut() {
                        o.remove("changedAttributes");
                    }
                    self.users.insert(
                        id,
                        Record {
                            tenant,
                            data,
                            members: BTreeMap::new(),
                        },
                    );
                    Outcome::Applied
                }
            }
            // Deletion is final, so it always applies; the user also
            // leaves every group here, whatever membership events follow.
            "user.deleted" => {
                let id = id()?;
                self.users.remove(&id);
                for g in self.groups.values_mut() {
                    g.members.remove(&id);
                }
                self.deleted.insert(id);
                Outcome::Applied
            }
            "group.created" | "group.updated" => {
                let id = id()?;
                if self.deleted.contains(&id) || older(data, self.groups.get(&id)) {
                    Outcome::Stale
                } else {
                    let mut data = data.clone();
                    let members = data
                        .as_object_mut()
                        .and_then(|o| o.remove("members"))
                        .map(|m| member_list(&m))
                        .unwrap_or_default();
                    self.groups.insert(
                        id,
                        Record {
                            tenant,
                            data,
                            members,
                        },
                    );
                    Outcome::Applied
                }
            }
            "group.deleted" => {
                let id = id()?;
                self.groups.remove(&id);
                self.deleted.insert(id);
                Outcome::Applied
            }
            // `data` is the group after the change, without `members`. If
            // its `group.created` never arrived (dead-lettered), start the
            // group from this event: later events still get through.
            "group.members_added" | "group.members_removed" => {
                let id = id()?;
                if self.deleted.contains(&id) || older(data, self.groups.get(&id)) {
                    Outcome::Stale
                } else {
                    let g = self.groups.entry(id).or_insert_with(|| Record {
                        tenant: tenant.clone(),
                        data: Value::Null,
                        members: BTreeMap::new(),
                    });
                    g.tenant = tenant;
                    g.data = data.clone();
                    let added = kind == "group.members_added";
                    let key = if added {
                        "membersAdded"
                    } else {
                        "membersRemoved"
                    };
                    let changed = member_list(&data[key]);
                    if let Some(o) = g.data.as_object_mut() {
                        o.remove("membersAdded");
                        o.remove("membersRemoved");
                    }
                    if added {
                        for (m, v) in changed {
                            if !self.deleted.contains(&m) {
                                g.members.insert(m, v);
                            }
                        }
                    } else {
                        for m in changed.keys() {
                            g.members.remove(m);
                        }
                    }
                    Outcome::Applied
                }
            }
            // A real app would end these sessions of its own here.
            "session.revoked" => Outcome::Ignored,
            _ => Outcome::Ignored,
        };
        if self.seen_order.len() >= SEEN_CAP {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(webhook_id.to_string());
        self.seen_order.push_back(webhook_id.to_string());
        Ok(outcome)
    }

    /// Users sorted by userName, as SCIM JSON.
    fn users_sorted(&self) -> Vec<&Record> {
        let mut v: Vec<&Record> = self.users.values().collect();
        v.sort_by_key(|r| {
            r.data["userName"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        });
        v
    }

    /// Groups sorted by displayName.
    fn groups_sorted(&self) -> Vec<&Record> {
        let mut v: Vec<&Record> = self.groups.values().collect();
        v.sort_by_key(|r| {
            r.data["displayName"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        });
        v
    }

    /// A group as SCIM JSON, its members put back.
    fn group_json(g: &Record) -> Value {
        let mut data = g.data.clone();
        if let Some(o) = data.as_object_mut() {
            o.insert(
                "members".into(),
                Value::Array(g.members.values().cloned().collect()),
            );
        }
        data
    }

    /// How to show a member: the user's userName if we know them.
    fn member_label(&self, id: &str, m: &Value) -> String {
        self.users
            .get(id)
            .and_then(|u| u.data["userName"].as_str())
            .or(m["display"].as_str())
            .unwrap_or(id)
            .to_string()
    }
}

/// `GET /directory.json`: `{"users": [...], "groups": [...]}` in SCIM JSON.
async fn directory_json(State(st): State<Arc<AppState>>) -> Json<Value> {
    let d = st.directory.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({
        "users": d.users_sorted().iter().map(|u| u.data.clone()).collect::<Vec<_>>(),
        "groups": d.groups_sorted().iter().map(|g| Directory::group_json(g)).collect::<Vec<_>>(),
    }))
}

/// `GET /directory`: the same as a page. Every value is escaped: it came
/// from the IdP, i.e. from whoever can edit a user there.
async fn directory_page(State(st): State<Arc<AppState>>) -> Html<String> {
    let d = st.directory.lock().unwrap_or_else(|p| p.into_inner());
    let text = |v: &Value| esc(v.as_str().unwrap_or(""));
    let mut users = String::new();
    for u in d.users_sorted() {
        let data = &u.data;
        let name = data["displayName"]
            .as_str()
            .or(data["name"]["formatted"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "{} {}",
                    data["name"]["givenName"].as_str().unwrap_or(""),
                    data["name"]["familyName"].as_str().unwrap_or("")
                )
            });
        let emails: Vec<&str> = data["emails"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["value"].as_str())
            .collect();
        users.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            text(&data["userName"]),
            esc(name.trim()),
            esc(&emails.join(", ")),
            if data["active"].as_bool().unwrap_or(true) { "yes" } else { "<strong>no</strong>" },
            esc(&u.tenant),
            text(&data["meta"]["version"]),
            text(&data["id"]),
        ));
    }
    let mut groups = String::new();
    for g in d.groups_sorted() {
        let members: Vec<String> = g
            .members
            .iter()
            .map(|(id, m)| esc(&d.member_label(id, m)))
            .collect();
        groups.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            text(&g.data["displayName"]),
            members.join(", "),
            esc(&g.tenant),
            text(&g.data["meta"]["version"]),
            text(&g.data["id"]),
        ));
    }
    let status = if st.webhook_secrets.is_some() {
        "Receiving webhooks at <code>POST /webhooks/portcullis</code>."
    } else {
        "Webhooks are not configured: set <code>APP_WEBHOOK_SECRET</code>."
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Directory</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:3rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}}</style>\
         </head><body><h1>Directory</h1><p>{status} {} users, {} groups, {} events processed. \
         <a href=\"/directory.json\">JSON</a></p>\
         <h2>Users</h2><table><tr><th>userName</th><th>Name</th><th>Emails</th><th>Active</th><th>Tenant</th><th>Version</th><th>id</th></tr>{users}</table>\
         <h2>Groups</h2><table><tr><th>displayName</th><th>Members</th><th>Tenant</th><th>Version</th><th>id</th></tr>{groups}</table>\
         </body></html>",
        d.users.len(),
        d.groups.len(),
        d.seen.len(),
    ))
}

#[tokio::main]
async fn main() {
    let listen = std::env::var("APP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let state = Arc::new(AppState {
        gateway: std::env::var("GATEWAY_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
        audience: std::env::var("APP_AUDIENCE").unwrap_or_else(|_| "demo-app".into()),
        jwks: RwLock::new(JwkSet { keys: vec![] }),
        http: reqwest::Client::new(),
        webhook_secrets: webhook_secrets_from_env(),
        directory: Mutex::new(Directory::default()),
    });
    let app = axum::Router::new()
        .route("/", get(page))
        // Cheap endpoint for load tests: measures the proxy, not this page.
        .route("/healthz", get(|| async { "ok" }))
        .route("/webhooks/portcullis", post(receive_webhook))
        .route("/directory", get(directory_page))
        .route("/directory.json", get(directory_json))
        .fallback(get(page))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind APP_LISTEN");
    eprintln!("example app listening on http://{listen}");
    axum::serve(listener, app).await.expect("serve");
}
