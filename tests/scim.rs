//! The SCIM server through a running gateway, driven the way JumpCloud,
//! Okta and Entra ID drive it: discovery, users and groups lifecycle,
//! filters and pagination, tenants, refusals in RFC 7644 form.

mod support;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION};
use serde_json::{json, Value};
use support::*;

struct Scim {
    gw: Gateway,
    token: String,
    other_token: String,
    _app: RecordingApp,
}

fn scim_config(token: &str, other: &str, extra_client: &str) -> String {
    format!(
        r#"[scim]
base_path = "/scim/v2"
[scim.group_roles]
"CRA Admins" = "admin"
[[scim.client]]
name = "jumpcloud"
token_hash = "{}"
tenant = "acme"
default_role = "member"
{extra_client}
[[scim.client]]
name = "okta"
token_hash = "{}"
tenant = "globex"
"#,
        portcullis::secret::TokenHash::of(token),
        portcullis::secret::TokenHash::of(other)
    )
}

fn start_with(extra_client: &str, redis_prefix: Option<String>) -> Scim {
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let other_token = portcullis::secret::new_token("scim_");
    let mut o = GatewayOpts::new(&app.url());
    o.redis_prefix = redis_prefix;
    o.extra = scim_config(&token, &other_token, extra_client);
    Scim {
        gw: Gateway::start(o),
        token,
        other_token,
        _app: app,
    }
}

/// `None` = embedded store; `Some(prefix)` = Redis with a fresh prefix.
fn backend(redis: bool) -> Option<String> {
    redis.then(|| unique_prefix("scim"))
}

fn start_on(redis: bool) -> Scim {
    start_with("", backend(redis))
}

/// Runs a test against the embedded store and against Redis.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(false).await
            }
            #[tokio::test]
            async fn redis() {
                super::$name(true).await
            }
        }
    };
}

impl Scim {
    fn url(&self, path: &str) -> String {
        self.gw.url(&format!("/scim/v2{path}"))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.call_as(&self.token, method, path, body).await
    }

    async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut rb = client()
            .request(method, self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if let Some(b) = body {
            rb = rb
                .header(CONTENT_TYPE, "application/scim+json")
                .body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v, headers)
    }

    async fn create_user(&self, user_name: &str) -> Value {
        let (s, v, _) = self
            .call(
                reqwest::Method::POST,
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "externalId": format!("ext-{user_name}"),
                    "name": {"givenName": "Ann", "familyName": "Lee"},
                    "emails": [{"value": user_name, "type": "work", "primary": true}],
                    "active": true
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }
}

fn assert_scim_error(v: &Value, status: &str, scim_type: Option<&str>) {
    assert_eq!(
        v["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{v}"
    );
    assert_eq!(v["status"], status, "{v}");
    if let Some(t) = scim_type {
        assert_eq!(v["scimType"], t, "{v}");
    }
}

async fn discovery_endpoints_answer_with_a_valid_token_only(redis: bool) {
    let s = start_on(redis);
    let (st, v, h) = s
        .call(reqwest::Method::GET, "/ServiceProviderConfig", None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(h[CONTENT_TYPE], "application/scim+json");
    assert_eq!(v["patch"]["supported"], true);
    let (st, v, _) = s.call(reqwest::Method::GET, "/Schemas", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["totalResults"], 3);
    let (st, v, _) = s
        .call(reqwest::Method::GET, "/ResourceTypes/User", None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["endpoint"], "/Users");
    // Trailing slash tolerated.
    let (st, _, _) = s.call(reqwest::Method::GET, "/Users/", None).await;
    assert_eq!(st, 200);

    let r = client().get(s.url("/Users")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_scim_error(&r.json().await.unwrap(), "401", None);
    let (st, v, _) = s
        .call_as("scim_wrong", reqwest::Method::GET, "/Users", None)
        .await;
    assert_eq!(st, 401);
    assert_scim_error(&v, "401", None);
}

async fn user_lifecycle_create_read_filter_replace_delete(redis: bool) {
    let s = start_on(redis);
    let u = s.create_user("ann@example.com").await;
    let id = u["id"].as_str().unwrap().to_string();
    assert_eq!(u["meta"]["resourceType"], "User");
    assert_eq!(
        u["meta"]["location"],
        s.url(&format!("/Users/{id}"))
            .replace("127.0.0.1", "localhost")
    );
    assert_eq!(u["active"], true);

    let (st, v, h) = s
        .call(reqwest::Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["userName"], "ann@example.com");
    assert!(h["etag"].to_str().unwrap().starts_with("W/\""));

    // userName is case-insensitive in filters; externalId is case-exact.
    for (f, n) in [
        ("userName eq \"ANN@example.com\"", 1),
        ("externalId eq \"ext-ann@example.com\"", 1),
        ("externalId eq \"EXT-ann@example.com\"", 0),
        ("emails[type eq \"work\" and value co \"@example\"]", 1),
        ("name.familyName sw \"L\" and not (active eq false)", 1),
    ] {
        let (st, v, _) = s
            .call(
                reqwest::Method::GET,
                &format!("/Users?filter={}", urlencode(f)),
                None,
            )
            .await;
        assert_eq!(st, 200, "{f}: {v}");
        assert_eq!(v["totalResults"], n, "{f}");
    }

    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/Users/{id}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id, "userName": "ann@example.com",
                        "name": {"givenName": "Annie", "familyName": "Lee"}, "active": true})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"]["givenName"], "Annie");

    let (st, _, _) = s
        .call(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, v, _) = s
        .call(reqwest::Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(st, 404);
    assert_scim_error(&v, "404", None);
    // The userName is free again for a new user (a new id).
    let again = s.create_user("ann@example.com").await;
    assert_ne!(again["id"], id.as_str());
}

async fn duplicate_user_name_is_a_uniqueness_conflict(redis: bool) {
    let s = start_on(redis);
    s.create_user("bob@example.com").await;
    let (st, v, _) = s
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": "BOB@example.com"})),
        )
        .await;
    assert_eq!(st, 409);
    assert_scim_error(&v, "409", Some("uniqueness"));
}

#[tokio::test]
async fn scim_adopts_a_user_created_by_saml_jit() {
    use portcullis::directory::{DirectoryStore, ProvisionedVia, User};
    let prefix = unique_prefix("adopt");
    let s = start_with("", Some(prefix.clone()));
    let dir = portcullis::store::redis::RedisStore::connect(&redis_url(), &prefix)
        .await
        .unwrap();
    let jit = dir
        .create_user(
            "acme",
            User {
                provisioned_via: ProvisionedVia::SamlJit,
                idp: Some("jumpcloud".into()),
                ..User::new("carol@example.com")
            },
        )
        .await
        .unwrap();
    let v = s.create_user("carol@example.com").await;
    assert_eq!(
        v["id"],
        jit.id.as_str(),
        "the JIT user is linked, not duplicated"
    );
    let stored = dir.get_user("acme", &jit.id).await.unwrap().unwrap();
    assert_eq!(stored.provisioned_via, ProvisionedVia::Scim);
    assert_eq!(stored.scim_client.as_deref(), Some("jumpcloud"));
    assert_eq!(
        stored.idp.as_deref(),
        Some("jumpcloud"),
        "the SAML link is kept"
    );
}

async fn deactivation_ends_the_users_sessions_at_once_and_reactivation_is_allowed(redis: bool) {
    let s = start_on(redis);
    let u = s.create_user("dan@example.com").await;
    let id = u["id"].as_str().unwrap().to_string();
    let cookie =
        s.gw.login(json!({"sub": id, "email": "dan@example.com", "tenant": "acme"}))
            .await;
    assert_eq!(
        client()
            .get(s.gw.url("/x"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut body = u.clone();
    body["active"] = json!(false);
    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/Users/{id}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["active"], false);
    assert_eq!(
        client()
            .get(s.gw.url("/x"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    body["active"] = json!(true);
    let (st, v, _) = s
        .call(reqwest::Method::PUT, &format!("/Users/{id}"), Some(body))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["active"], true);
}

async fn groups_lifecycle_with_members(redis: bool) {
    let s = start_on(redis);
    let a = s.create_user("a@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.create_user("b@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, g, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "CRA Admins",
                        "members": [{"value": a}]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    // The user shows the group (computed, read-only).
    let (_, ua, _) = s
        .call(reqwest::Method::GET, &format!("/Users/{a}"), None)
        .await;
    assert_eq!(ua["groups"][0]["display"], "CRA Admins");
    let (_, by_group, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode("groups.display eq \"CRA Admins\"")
            ),
            None,
        )
        .await;
    assert_eq!(by_group["totalResults"], 1, "{by_group}");
    let (_, listed, _) = s
        .call(reqwest::Method::GET, "/Users?sortBy=userName", None)
        .await;
    assert_eq!(
        listed["Resources"][0]["groups"][0]["display"], "CRA Admins",
        "page entries carry their groups"
    );

    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/Groups/{gid}"),
            Some(json!({"displayName": "CRA Admins", "members": [{"value": b}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![b.as_str()]);

    // Entra reads groups without members; filters by displayName.
    let (st, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Groups?excludedAttributes=members&filter={}",
                urlencode("displayName eq \"cra admins\"")
            ),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["totalResults"], 1);
    assert!(v["Resources"][0].get("members").is_none());

    let (st, v, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "cra admins"})),
        )
        .await;
    assert_eq!(st, 409);
    assert_scim_error(&v, "409", Some("uniqueness"));
    let (st, v, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "Ghosts", "members": [{"value": "nope"}]})),
        )
        .await;
    assert_eq!(st, 400);
    assert_scim_error(&v, "400", Some("invalidValue"));

    let (st, _, _) = s
        .call(reqwest::Method::DELETE, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _, _) = s
        .call(reqwest::Method::GET, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(st, 404);
}

async fn pagination_is_one_based_stable_and_counts(redis: bool) {
    let s = start_on(redis);
    for i in 0..5 {
        s.create_user(&format!("p{i}@example.com")).await;
    }
    let (_, all, _) = s
        .call(reqwest::Method::GET, "/Users?sortBy=userName", None)
        .await;
    assert_eq!(all["totalResults"], 5);
    let (st, v, _) = s
        .call(
            reqwest::Method::GET,
            "/Users?startIndex=2&count=2&sortBy=userName",
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["totalResults"], 5);
    assert_eq!(v["itemsPerPage"], 2);
    assert_eq!(v["startIndex"], 2);
    assert_eq!(v["Resources"][0]["userName"], "p1@example.com");
    let (_, v, _) = s.call(reqwest::Method::GET, "/Users?count=0", None).await;
    assert_eq!(v["totalResults"], 5);
    assert_eq!(v["Resources"].as_array().unwrap().len(), 0);
    let (_, v, _) = s
        .call(
            reqwest::Method::GET,
            "/Users?sortBy=userName&sortOrder=descending&attributes=userName",
            None,
        )
        .await;
    assert_eq!(v["Resources"][0]["userName"], "p4@example.com");
    assert!(v["Resources"][0].get("emails").is_none());
}

async fn a_client_sees_only_its_own_tenant(redis: bool) {
    let s = start_on(redis);
    let u = s.create_user("eve@example.com").await;
    let id = u["id"].as_str().unwrap();
    let (st, _, _) = s
        .call_as(
            &s.other_token,
            reqwest::Method::GET,
            &format!("/Users/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (_, v, _) = s
        .call_as(&s.other_token, reqwest::Method::GET, "/Users", None)
        .await;
    assert_eq!(v["totalResults"], 0);
    // The same userName may exist in the other tenant.
    let (st, _, _) = s
        .call_as(
            &s.other_token,
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": "eve@example.com"})),
        )
        .await;
    assert_eq!(st, 201);
}

async fn refusals_come_in_rfc7644_form(redis: bool) {
    let s = start_with("rate_limit = \"30/h\"", backend(redis));
    let (st, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!("/Users?filter={}", urlencode("userName eq")),
            None,
        )
        .await;
    assert_eq!(st, 400);
    assert_scim_error(&v, "400", Some("invalidFilter"));
    let r = client()
        .post(s.url("/Users"))
        .header(AUTHORIZATION, format!("Bearer {}", s.token))
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_scim_error(&r.json().await.unwrap(), "400", Some("invalidSyntax"));
    let (st, v, _) = s
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"name": {"givenName": "x"}})),
        )
        .await;
    assert_eq!(st, 400);
    assert_scim_error(&v, "400", Some("invalidValue"));
    let (st, v, _) = s
        .call(reqwest::Method::GET, "/Users/does-not-exist", None)
        .await;
    assert_eq!(st, 404);
    assert_scim_error(&v, "404", None);
    assert_eq!(
        raw_post_declaring(s.gw.port, "/scim/v2/Users", 2 * 1024 * 1024).await,
        413
    );
    // The rate limit (30/h) runs out: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..40 {
        let (st, v, h) = s
            .call(reqwest::Method::GET, "/ServiceProviderConfig", None)
            .await;
        if st == 429 {
            limited = Some((v, h));
            break;
        }
    }
    let (v, h) = limited.expect("rate limit never applied");
    assert_scim_error(&v, "429", None);
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
}

async fn scim_paths_never_reach_the_app_and_location_headers_point_at_resources(redis: bool) {
    let s = start_on(redis);
    let r = client()
        .post(s.url("/Users"))
        .header(AUTHORIZATION, format!("Bearer {}", s.token))
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"userName": "loc@example.com"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()[LOCATION].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert!(
        loc.ends_with(&format!("/scim/v2/Users/{}", v["id"].as_str().unwrap())),
        "{loc}"
    );
    assert_eq!(s._app.count(), 0);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn entra_and_okta_user_patches_apply(redis: bool) {
    let s = start_on(redis);
    let u = s.create_user("fay@example.com").await;
    let id = u["id"].as_str().unwrap().to_string();
    // Entra: path-less Replace with dotted and URN keys.
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Replace", "value": {"name.givenName": "Faye",
                 "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Eng"}},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "faye@example.com"}
            ]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"]["givenName"], "Faye");
    assert_eq!(v["name"]["familyName"], "Lee", "untouched attributes stay");
    assert_eq!(
        v["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Eng"
    );
    assert_eq!(v["emails"][0]["value"], "faye@example.com");
    // The new email is indexed.
    let (_, found, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode("emails.value eq \"faye@example.com\"")
            ),
            None,
        )
        .await;
    assert_eq!(found["totalResults"], 1);

    // Okta deactivates with a path-less replace; Entra with the string "False".
    let cookie = s.gw.login(json!({"sub": id, "tenant": "acme"})).await;
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["active"], false);
    assert_eq!(
        client()
            .get(s.gw.url("/x"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["active"], true);

    // Malformed PATCH bodies are refused in RFC 7644 form.
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": []})),
        )
        .await;
    assert_eq!(st, 400);
    assert_scim_error(&v, "400", Some("invalidSyntax"));
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]})),
        )
        .await;
    assert_eq!(st, 400);
    assert_scim_error(&v, "400", Some("invalidPath"));
}

async fn jumpcloud_repeated_member_add_is_idempotent_and_absent_removal_succeeds(redis: bool) {
    let s = start_on(redis);
    let a = s.create_user("ma@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.create_user("mb@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, g, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "Staff"})),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let add = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]}]});
    for _ in 0..2 {
        let (st, v, _) = s
            .call(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(add.clone()),
            )
            .await;
        assert!(st == 200 || st == 204, "{st} {v}");
    }
    let (_, v, _) = s
        .call(reqwest::Method::GET, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(v["members"].as_array().unwrap().len(), 2, "{v}");
    // Remove by value filter (Okta), then an absent member (JumpCloud repeats), then Entra's value-array form.
    let rm = |who: &str| json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{who}\"]")}]});
    for body in [rm(&a), rm(&a)] {
        let (st, v, _) = s
            .call(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(body),
            )
            .await;
        assert!(st == 200 || st == 204, "{st} {v}");
    }
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": b}]}]})),
        )
        .await;
    assert!(st == 200 || st == 204, "{st} {v}");
    let (_, v, _) = s
        .call(reqwest::Method::GET, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(v["members"].as_array().unwrap().len(), 0, "{v}");
    // Rename with a PATCH keeps members working.
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"displayName": "Staff 2"}}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["displayName"], "Staff 2");
}

async fn group_changes_reach_the_identity_on_the_next_request_without_re_login(redis: bool) {
    let s = start_on(redis);
    let id = s.create_user("gil@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cookie =
        s.gw.login(
            json!({"sub": id, "email": "gil@example.com", "tenant": "acme", "roles": ["member"]}),
        )
        .await;
    let me = |cookie: String| {
        let url = s.gw.url("/.portcullis/userinfo");
        async move {
            let v: Value = client()
                .get(url)
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    assert_eq!(me(cookie.clone()).await["groups"], json!([]));
    let (st, g, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "CRA Admins", "members": [{"value": id}]})),
        )
        .await;
    assert_eq!(st, 201);
    let v = me(cookie.clone()).await;
    assert_eq!(v["groups"], json!(["CRA Admins"]), "{v}");
    assert_eq!(v["roles"], json!(["admin"]), "group → role mapping: {v}");
    // The JWT forwarded to the app carries it too.
    assert_eq!(
        client()
            .get(s.gw.url("/x"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let gid = g["id"].as_str().unwrap();
    let (st, _, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]})),
        )
        .await;
    assert!(st == 200 || st == 204);
    let v = me(cookie.clone()).await;
    assert_eq!(v["groups"], json!([]), "{v}");
    assert_eq!(v["roles"], json!(["member"]), "{v}");
}

on_both_backends!(discovery_endpoints_answer_with_a_valid_token_only);

on_both_backends!(user_lifecycle_create_read_filter_replace_delete);

on_both_backends!(duplicate_user_name_is_a_uniqueness_conflict);

on_both_backends!(deactivation_ends_the_users_sessions_at_once_and_reactivation_is_allowed);

on_both_backends!(groups_lifecycle_with_members);

on_both_backends!(pagination_is_one_based_stable_and_counts);

on_both_backends!(a_client_sees_only_its_own_tenant);

on_both_backends!(refusals_come_in_rfc7644_form);

on_both_backends!(scim_paths_never_reach_the_app_and_location_headers_point_at_resources);

on_both_backends!(entra_and_okta_user_patches_apply);

on_both_backends!(jumpcloud_repeated_member_add_is_idempotent_and_absent_removal_succeeds);

on_both_backends!(group_changes_reach_the_identity_on_the_next_request_without_re_login);

/// What JumpCloud's "Test Connection" and a first sync send, in order.
async fn jumpcloud_activation_sequence(redis: bool) {
    let s = start_on(redis);
    // JumpCloud is often given the base URL with a trailing slash: "//Users" then arrives.
    let (st, v, _) = s
        .call(reqwest::Method::GET, "//Users?startIndex=1&count=1", None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["totalResults"], 0);
    assert_eq!(v["Resources"], json!([]));
    let (st, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode("userName eq \"jc.test@example.com\"")
            ),
            None,
        )
        .await;
    assert_eq!((st, v["totalResults"].clone()), (200, json!(0)));
    let created = s.create_user("jc.test@example.com").await;
    let id = created["id"].as_str().unwrap().to_string();
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"title": "Tester"}}]})),
        )
        .await;
    assert_eq!((st, v["title"].clone()), (200, json!("Tester")), "{v}");
    let mut put = v.clone();
    put["displayName"] = json!("JC Test");
    let (st, v, _) = s
        .call(reqwest::Method::PUT, &format!("/Users/{id}/"), Some(put))
        .await;
    assert_eq!(
        (st, v["displayName"].clone()),
        (200, json!("JC Test")),
        "{v}"
    );
    // Group management.
    let (st, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Groups?filter={}",
                urlencode("displayName eq \"JC Group\"")
            ),
            None,
        )
        .await;
    assert_eq!((st, v["totalResults"].clone()), (200, json!(0)));
    let (st, g, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "JC Group", "members": []})),
        )
        .await;
    assert_eq!(st, 201);
    let gid = g["id"].as_str().unwrap().to_string();
    let add = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
    for _ in 0..2 {
        let (st, _, _) = s
            .call(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(add.clone()),
            )
            .await;
        assert!(st == 200 || st == 204);
    }
    let (_, v, _) = s
        .call(reqwest::Method::GET, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
    let (st, _, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "JC Group 2"}]})),
        )
        .await;
    assert!(st == 200 || st == 204);
    let (st, _, _) = s
        .call(reqwest::Method::DELETE, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _, _) = s
        .call(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _, _) = s
        .call(reqwest::Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(st, 404);
}
on_both_backends!(jumpcloud_activation_sequence);

/// Okta: uppercased userName filter, path-less deactivation, group rename with id in the value.
async fn okta_sequence(redis: bool) {
    let s = start_on(redis);
    let id = s.create_user("okta.user@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode("userName eq \"OKTA.USER@EXAMPLE.COM\"")
            ),
            None,
        )
        .await;
    assert_eq!(v["totalResults"], 1);
    assert_eq!(v["Resources"][0]["id"], id.as_str());
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]})),
        )
        .await;
    assert_eq!((st, v["active"].clone()), (200, json!(false)));
    let (_, g, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "Okta Group"})),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "Okta Group Renamed"}}]})),
        )
        .await;
    assert_eq!(
        (st, v["displayName"].clone()),
        (200, json!("Okta Group Renamed")),
        "{v}"
    );
}
on_both_backends!(okta_sequence);

/// Entra: capitalised ops, "False" strings, excludedAttributes=members, dotted path-less replace.
async fn entra_sequence(redis: bool) {
    let s = start_on(redis);
    let id = s.create_user("entra.user@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Replace", "value": {"name.familyName": "Ortega", "displayName": "Entra User"}},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"}
            ]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"]["familyName"], "Ortega");
    assert_eq!(v["phoneNumbers"][0]["value"], "+1 555 0100");
    let (_, g, _) = s
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "Entra Group", "members": [{"value": id}]})),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let (_, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!("/Groups/{gid}?excludedAttributes=members"),
            None,
        )
        .await;
    assert!(v.get("members").is_none());
    assert_eq!(v["displayName"], "Entra Group");
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})),
        )
        .await;
    assert_eq!((st, v["active"].clone()), (200, json!(false)));
}
on_both_backends!(entra_sequence);

/// 1,000 users paged 37 at a time: every user exactly once.
async fn pagination_over_a_thousand_users_returns_each_once(redis: bool) {
    let s = start_on(redis);
    let mut want = std::collections::BTreeSet::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        let futs = chunk.iter().map(|i| {
            let body = json!({"userName": format!("bulk{i:04}@example.com")});
            async { s.call(reqwest::Method::POST, "/Users", Some(body)).await }
        });
        for (st, v, _) in futures_util::future::join_all(futs).await {
            assert_eq!(st, 201, "{v}");
            want.insert(v["id"].as_str().unwrap().to_string());
        }
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let (st, v, _) = s
            .call(
                reqwest::Method::GET,
                &format!("/Users?startIndex={start}&count=37&attributes=id"),
                None,
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(v["totalResults"], 1000);
        let page = v["Resources"].as_array().unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        start += page.len();
    }
    assert_eq!(seen.len(), 1000);
    let unique: std::collections::BTreeSet<String> = seen.into_iter().collect();
    assert_eq!(unique, want);
}
on_both_backends!(pagination_over_a_thousand_users_returns_each_once);

/// A list with no filter and no sort reads only its page (the stores'
/// ordered indexes and counts); it must answer exactly what paging the full
/// listing did. `id pr` matches every resource but takes the full-read
/// path, so it is the reference.
async fn unfiltered_pages_match_the_full_listing(redis: bool) {
    let s = start_on(redis);
    // Concurrent creates, so some share a millisecond (ordered by id).
    let futs = (0..23).map(|i| {
        let s = &s;
        async move { s.create_user(&format!("page{i:02}@example.com")).await }
    });
    let users: Vec<Value> = futures_util::future::join_all(futs).await;
    for u in &users[4..7] {
        let path = format!("/Users/{}", u["id"].as_str().unwrap());
        let (st, _, _) = s.call(reqwest::Method::DELETE, &path, None).await;
        assert_eq!(st, 204);
    }
    for i in 0..4 {
        let members = if i == 0 {
            json!([{"value": users[10]["id"]}])
        } else {
            json!([])
        };
        let (st, v, _) = s
            .call(
                reqwest::Method::POST,
                "/Groups",
                Some(json!({"displayName": format!("Paged {i}"), "members": members})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    for (path, reference, total) in [
        ("/Users?", "/Users?filter=id%20pr&", 20),
        ("/Groups?", "/Groups?filter=id%20pr&", 4),
        ("/?", "/?filter=id%20pr&", 24),
    ] {
        let (st, all, _) = s
            .call(reqwest::Method::GET, &format!("{reference}count=200"), None)
            .await;
        assert_eq!(st, 200, "{all}");
        assert_eq!(all["totalResults"], total, "{path}");
        let all = all["Resources"].as_array().unwrap().clone();
        assert_eq!(all.len(), total);
        let (_, v, _) = s.call(reqwest::Method::GET, path, None).await;
        assert_eq!(v["Resources"].as_array().unwrap(), &all, "{path} whole");
        for count in [1usize, 3, 7, 200] {
            for start in 1..=total + 2 {
                let q = format!("{path}startIndex={start}&count={count}");
                let (st, v, _) = s.call(reqwest::Method::GET, &q, None).await;
                assert_eq!(st, 200, "{q}: {v}");
                let want: Vec<Value> = all.iter().skip(start - 1).take(count).cloned().collect();
                assert_eq!(v["totalResults"], total, "{q}");
                assert_eq!(v["startIndex"], start, "{q}");
                assert_eq!(v["itemsPerPage"], want.len(), "{q}");
                assert_eq!(v["Resources"].as_array().unwrap(), &want, "{q}");
            }
        }
        // Same answers as the full path for the edge values too.
        for q in [
            "count=0",
            "startIndex=0&count=2",
            "startIndex=-4&count=2",
            "count=-3",
            "startIndex=100000&count=5",
            "startIndex=9223372036854775807&count=5",
            "count=100000",
            "startIndex=2&count=3&attributes=id",
            "startIndex=3&count=4&excludedAttributes=members,emails",
        ] {
            let (sa, a, _) = s
                .call(reqwest::Method::GET, &format!("{path}{q}"), None)
                .await;
            let (sb, b, _) = s
                .call(reqwest::Method::GET, &format!("{reference}{q}"), None)
                .await;
            assert_eq!((sa, &a), (sb, &b), "{path}{q}");
        }
    }
    // The member's groups are on its page entry, computed for the page.
    let q = "/Users?filter=id%20pr&count=200";
    let (_, all, _) = s.call(reqwest::Method::GET, q, None).await;
    let pos = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["id"] == users[10]["id"])
        .unwrap();
    let (_, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!("/Users?startIndex={}&count=1", pos + 1),
            None,
        )
        .await;
    assert_eq!(v["Resources"][0]["groups"][0]["display"], "Paged 0", "{v}");
}
on_both_backends!(unfiltered_pages_match_the_full_listing);

#[tokio::test]
async fn allow_deletion_removes_the_record_while_the_default_keeps_a_tombstone() {
    use portcullis::directory::DirectoryStore;
    for (allow, kept) in [(false, true), (true, false)] {
        let prefix = unique_prefix("del");
        let s = start_with(&format!("allow_deletion = {allow}"), Some(prefix.clone()));
        let id = s.create_user("del@example.com").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, _, _) = s
            .call(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(st, 204);
        let (st, _, _) = s
            .call(reqwest::Method::GET, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(
            st, 404,
            "the SCIM client sees RFC 7644 behaviour either way"
        );
        let dir = portcullis::store::redis::RedisStore::connect(&redis_url(), &prefix)
            .await
            .unwrap();
        let stored = dir.get_user("acme", &id).await.unwrap();
        assert_eq!(stored.is_some(), kept, "allow_deletion = {allow}");
        if let Some(u) = stored {
            assert!(u.deleted && !u.active, "a deactivated tombstone");
        }
    }
}

#[tokio::test]
async fn client_policy_can_refuse_deactivation_and_attribute_sync() {
    let s = start_with(
        "allow_deactivation = false\nsync_attributes = false\nauto_activate = true",
        None,
    );
    let (st, u, _) = s
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": "pol@example.com", "active": true, "title": "A"})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(u["active"], true);
    let id = u["id"].as_str().unwrap().to_string();
    let (st, v, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/Users/{id}"),
            Some(json!({"userName": "pol@example.com", "active": false, "title": "B"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["active"], true, "deactivation refused by policy");
    assert_eq!(v["title"], "A", "attributes not synced");
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_refused() {
    let s = start_on(false);
    let u = s.create_user("etag@example.com").await;
    let id = u["id"].as_str().unwrap().to_string();
    let r = client()
        .put(s.url(&format!("/Users/{id}")))
        .header(AUTHORIZATION, format!("Bearer {}", s.token))
        .header(CONTENT_TYPE, "application/scim+json")
        .header("If-Match", "W/\"999\"")
        .body(json!({"userName": "etag@example.com", "title": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_scim_error(&r.json().await.unwrap(), "412", None);
}

#[tokio::test]
async fn group_changes_reach_another_replica_without_re_login() {
    let prefix = unique_prefix("xrefresh");
    let a = start_with("", Some(prefix.clone()));
    // Replica B shares the Redis store (sessions, directory, revocations).
    let app = RecordingApp::start();
    let mut ob = GatewayOpts::new(&app.url());
    ob.redis_prefix = Some(prefix);
    ob.extra = scim_config(&a.token, &a.other_token, "");
    let b = Gateway::start(ob);
    let id = a.create_user("rep@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cookie = a.gw.login(json!({"sub": id, "tenant": "acme"})).await;
    let me = || {
        let url = b.url("/.portcullis/userinfo");
        let cookie = cookie.clone();
        async move {
            let v: Value = client()
                .get(url)
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    assert_eq!(me().await["groups"], json!([]), "B caches the session");
    let (st, _, _) = a
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"displayName": "Replicated", "members": [{"value": id}]})),
        )
        .await;
    assert_eq!(st, 201);
    let started = std::time::Instant::now();
    loop {
        if me().await["groups"] == json!(["Replicated"]) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "replica B never saw the new group"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The provisioning log records every request, bounded, readable through
/// the admin API and `portcullis scim-log`.
async fn provisioning_log_records_requests_with_bounded_retention(redis: bool) {
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let other = portcullis::secret::new_token("scim_");
    let mut o = GatewayOpts::new(&app.url());
    o.redis_prefix = backend(redis);
    o.extra = scim_config(&token, &other, "").replace(
        "base_path = \"/scim/v2\"",
        "base_path = \"/scim/v2\"\nlog_retention = 4",
    );
    let s = Scim {
        gw: Gateway::start(o),
        token,
        other_token: other,
        _app: app,
    };
    let created = s.create_user("log@example.com").await;
    let id = created["id"].as_str().unwrap().to_string();
    let (st, _, _) = s
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": "log@example.com"})),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _, _) = s
        .call_as("scim_nope", reqwest::Method::GET, "/Users", None)
        .await;
    assert_eq!(st, 401);
    let (st, _, _) = s
        .call(reqwest::Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(st, 200);

    let r = client()
        .get(s.gw.admin_url("/.portcullis/admin/scim-log?limit=10"))
        .bearer_auth(&s.gw.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let entries = v["entries"].as_array().unwrap();
    // Newest first; the unauthenticated request is traced, not stored
    // (anyone could otherwise flood the bounded log).
    assert_eq!(entries.len(), 3, "{v}");
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[0]["resource_id"], id.as_str());
    assert_eq!(entries[1]["status"], 409);
    assert!(
        entries[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("uniqueness"),
        "{v}"
    );
    assert_eq!(entries[2]["status"], 201);
    assert_eq!(entries[2]["client"], "jumpcloud");
    assert_eq!(entries[2]["resource_id"], id.as_str());
    // Retention 4: two more requests push the oldest out.
    s.call(reqwest::Method::GET, "/ServiceProviderConfig", None)
        .await;
    s.call(reqwest::Method::GET, "/Schemas", None).await;
    let v: Value = client()
        .get(s.gw.admin_url("/admin/scim-log"))
        .bearer_auth(&s.gw.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<i64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 409]);
    // Without the admin token: refused.
    let r = client()
        .get(s.gw.admin_url("/admin/scim-log"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The CLI reads the same log.
    let out = std::process::Command::new(bin())
        .args(["scim-log", "-c"])
        .arg(&s.gw.config_path)
        .args(["--limit", "2", "--client", "jumpcloud"])
        .env("PORTCULLIS_ADMIN_TOKEN", &s.gw.admin_token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("jumpcloud") && text.contains("/scim/v2/ServiceProviderConfig"),
        "{text}"
    );
}
on_both_backends!(provisioning_log_records_requests_with_bounded_retention);

/// On Redis the rate limit is one budget for every replica, not one each.
#[tokio::test]
async fn the_rate_limit_is_shared_by_replicas_on_redis() {
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let other = portcullis::secret::new_token("scim_");
    let prefix = unique_prefix("scim-rate");
    let replica = || {
        let mut o = GatewayOpts::new(&app.url());
        o.redis_prefix = Some(prefix.clone());
        o.extra = scim_config(&token, &other, "rate_limit = \"4/m\"");
        Gateway::start(o)
    };
    let (a, b) = (replica(), replica());
    let get = |gw: &Gateway| {
        client()
            .get(gw.url("/scim/v2/ServiceProviderConfig"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
    };
    for gw in [&a, &b, &a, &b] {
        assert_eq!(get(gw).await.unwrap().status(), 200);
    }
    for gw in [&a, &b] {
        let r = get(gw).await.unwrap();
        assert_eq!(r.status(), 429, "the fifth request, on either replica");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    // Another client has its own budget.
    let r = client()
        .get(a.url("/scim/v2/ServiceProviderConfig"))
        .header(AUTHORIZATION, format!("Bearer {other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn identifiers_that_would_fold_onto_another_are_refused(redis: bool) {
    let s = start_on(redis);
    s.create_user("kate@example.com").await;
    // U+212A KELVIN SIGN lowercases to an ASCII "k": "Kate" in disguise.
    let lookalike = "\u{212A}ate@example.com";
    let (st, v, _) = s
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": lookalike})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_scim_error(&v, "400", Some("invalidValue"));
    assert!(v["detail"].as_str().unwrap().contains("NFKC"), "{v}");
    // A filter for the look-alike finds nobody.
    for f in [
        format!("userName eq \"{lookalike}\""),
        format!("emails.value eq \"{lookalike}\""),
    ] {
        let (st, v, _) = s
            .call(
                reqwest::Method::GET,
                &format!("/Users?filter={}", urlencode(&f)),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["totalResults"], 0, "{f}: {v}");
    }
    // Domains are ASCII (IDNA A-labels), in the userName and in emails.
    for body in [
        json!({"userName": "bob@bücher.example"}),
        json!({"userName": "bob@example.com", "emails": [{"value": "bob@bücher.example"}]}),
    ] {
        let (st, v, _) = s
            .call(reqwest::Method::POST, "/Users", Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body}: {v}");
        assert_scim_error(&v, "400", Some("invalidValue"));
        assert!(v["detail"].as_str().unwrap().contains("xn--"), "{v}");
    }
    // Non-ASCII local parts in normal form stay case-insensitive.
    let (st, jose, _) = s
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"userName": "José@example.com"})),
        )
        .await;
    assert_eq!(st, 201, "{jose}");
    let (st, v, _) = s
        .call(
            reqwest::Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode("userName eq \"JOSÉ@EXAMPLE.COM\"")
            ),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["Resources"][0]["id"], jose["id"], "{v}");
}

on_both_backends!(identifiers_that_would_fold_onto_another_are_refused);

#[tokio::test]
async fn a_scim_write_to_a_jit_user_of_an_untied_idp_adopts_it_and_drops_the_idp_link() {
    use portcullis::directory::{DirectoryStore, ProvisionedVia, User};
    let prefix = unique_prefix("untied");
    let s = start_with("", Some(prefix.clone()));
    let dir = portcullis::store::redis::RedisStore::connect(&redis_url(), &prefix)
        .await
        .unwrap();
    let jit = |name: &str| User {
        provisioned_via: ProvisionedVia::SamlJit,
        // Not the client's IdP: the client is "jumpcloud" and names no `idps`.
        idp: Some("elsewhere".into()),
        name_id: Some(name.into()),
        role: "admin".into(),
        ..User::new(name)
    };
    // Okta-style linking: find the user by filter, then PATCH it.
    let erin = dir
        .create_user("acme", jit("erin@example.com"))
        .await
        .unwrap();
    let (st, v, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{}", erin.id),
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"displayName": "Erin"}}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // JumpCloud-style linking: POST the same userName.
    let fay = dir
        .create_user("acme", jit("fay@example.com"))
        .await
        .unwrap();
    assert_eq!(
        s.create_user("fay@example.com").await["id"],
        fay.id.as_str()
    );
    for id in [&erin.id, &fay.id] {
        let stored = dir.get_user("acme", id).await.unwrap().unwrap();
        assert_eq!(stored.provisioned_via, ProvisionedVia::Scim);
        assert_eq!(stored.scim_client.as_deref(), Some("jumpcloud"));
        assert_eq!(stored.idp, None, "the untied IdP's claim is dropped");
        assert_eq!(stored.name_id, None);
        assert_eq!(
            stored.role, "member",
            "the client's default_role, not the IdP's"
        );
    }
}
