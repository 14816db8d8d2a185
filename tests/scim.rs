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

fn start() -> Scim {
    start_with("", None)
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

#[tokio::test]
async fn discovery_endpoints_answer_with_a_valid_token_only() {
    let s = start();
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

#[tokio::test]
async fn user_lifecycle_create_read_filter_replace_delete() {
    let s = start();
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

#[tokio::test]
async fn duplicate_user_name_is_a_uniqueness_conflict() {
    let s = start();
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

#[tokio::test]
async fn deactivation_ends_the_users_sessions_at_once_and_reactivation_is_allowed() {
    let s = start();
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

#[tokio::test]
async fn groups_lifecycle_with_members() {
    let s = start();
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

#[tokio::test]
async fn pagination_is_one_based_stable_and_counts() {
    let s = start();
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

#[tokio::test]
async fn a_client_sees_only_its_own_tenant() {
    let s = start();
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

#[tokio::test]
async fn refusals_come_in_rfc7644_form() {
    let s = start_with("rate_limit = \"30/h\"", None);
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

#[tokio::test]
async fn scim_paths_never_reach_the_app_and_location_headers_point_at_resources() {
    let s = start();
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

#[tokio::test]
async fn entra_and_okta_user_patches_apply() {
    let s = start();
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

#[tokio::test]
async fn jumpcloud_repeated_member_add_is_idempotent_and_absent_removal_succeeds() {
    let s = start();
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

#[tokio::test]
async fn group_changes_reach_the_identity_on_the_next_request_without_re_login() {
    let s = start();
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
