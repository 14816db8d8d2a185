//! SCIM that gives back exactly what it was given, honours what the client
//! says about `active`, refuses what is wrong (in RFC 7644 form, writing
//! nothing), and copes with what real clients were seen sending: each test
//! drives a running gateway over HTTP, on both stores where storage matters.

mod support;

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use support::receiver::*;
use support::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

struct Scim {
    gw: Gateway,
    token: String,
    prefix: Option<String>,
    hooks: Option<Receiver>,
    _app: RecordingApp,
}

/// A gateway with one SCIM client (tenant "acme"); `client` is extra keys
/// of that client; `redis` picks the store; `hooks` adds a webhook target.
fn start(client: &str, redis: bool, hooks: bool) -> Scim {
    let app = RecordingApp::start();
    let token = portcullis::secret::new_token("scim_");
    let prefix = redis.then(|| unique_prefix("scimfid"));
    let receiver = hooks.then(Receiver::start);
    let mut o = GatewayOpts::new(&app.url());
    o.redis_prefix = prefix.clone();
    o.extra = format!(
        "[scim]\nbase_path = \"/scim/v2\"\n[[scim.client]]\nname = \"idp\"\ntoken_hash = \"{}\"\ntenant = \"acme\"\n{client}\n{}",
        portcullis::secret::TokenHash::of(&token),
        receiver
            .as_ref()
            .map(|r| webhook_toml("app", &r.url(), &secret(), ""))
            .unwrap_or_default()
    );
    Scim {
        gw: Gateway::start(o),
        token,
        prefix,
        hooks: receiver,
        _app: app,
    }
}

impl Scim {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (st, v, _) = self.raw(method, path, body.map(|b| b.to_string())).await;
        (st, v)
    }

    /// Status, body (JSON, else the text as a string), content type.
    async fn raw(&self, method: Method, path: &str, body: Option<String>) -> (u16, Value, String) {
        let mut rb = client()
            .request(method, self.gw.url(&format!("/scim/v2{path}")))
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(b) = body {
            rb = rb.header(CONTENT_TYPE, "application/scim+json").body(b);
        }
        let r = rb.send().await.unwrap();
        let st = r.status().as_u16();
        let ct = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (st, v, ct)
    }

    async fn post_user(&self, body: Value) -> Value {
        let (st, v) = self.call(Method::POST, "/Users", Some(body)).await;
        assert_eq!(st, 201, "{v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let (st, v) = self.call(Method::GET, path, None).await;
        assert_eq!(st, 200, "{v}");
        v
    }

    async fn patch(&self, path: &str, ops: Value) -> (u16, Value) {
        self.call(
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH_OP], "Operations": ops})),
        )
        .await
    }

    /// The stored record (Redis only: the embedded store is the gateway's).
    async fn stored(&self, id: &str) -> portcullis::directory::User {
        use portcullis::directory::DirectoryStore;
        let prefix = self.prefix.as_deref().expect("a Redis gateway");
        let dir = portcullis::store::redis::RedisStore::connect(&redis_url(), prefix)
            .await
            .unwrap();
        dir.get_user("acme", id).await.unwrap().expect("stored")
    }

    async fn total(&self, path: &str) -> u64 {
        self.get(path).await["totalResults"].as_u64().unwrap()
    }
}

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

/// What a client may set on a user: every attribute, with the values that
/// used to be dropped (`primary: false`, `display`, `manager.$ref` and
/// `displayName`, ims, photos, entitlements, x509Certificates).
fn full_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "00ujl29u0le5T6Aj10h7",
        "userName": user_name,
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara",
                 "middleName": "Jane", "honorificPrefix": "Ms.", "honorificSuffix": "III"},
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "profileUrl": "https://login.example.com/bjensen",
        "title": "Tour Guide",
        "userType": "Employee",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        "emails": [
            {"value": user_name, "display": "Work", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home", "primary": false}
        ],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work", "primary": false}],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "photos": [{"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo", "primary": false}],
        "addresses": [{"formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA", "streetAddress": "100 Universal City Plaza",
                       "locality": "Hollywood", "region": "CA", "postalCode": "91608", "country": "USA",
                       "type": "work", "primary": false}],
        "entitlements": [{"value": "reports", "display": "Reports", "primary": false}],
        "roles": [{"value": "auditor", "display": "Auditor", "type": "app", "primary": false}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx", "primary": false}],
        ENTERPRISE: {
            "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
            "division": "Theme Park", "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d",
                        "$ref": "https://example.com/scim/v2/Users/26118915-6090-4610-87e4-49d8ca9f808d",
                        "displayName": "John Smith"}
        }
    })
}

/// A server representation without what the server adds (`id`, `meta`,
/// the computed `groups`, a webhook's `changedAttributes`), to compare
/// with what was sent.
fn as_sent(v: &Value) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    for k in ["id", "meta", "groups", "changedAttributes"] {
        o.remove(k);
    }
    v
}

async fn round_trip_is_exact(redis: bool) {
    let s = start("", redis, true);
    let sent = full_user("bjensen@example.com");
    let created = s.post_user(sent.clone()).await;
    assert_eq!(as_sent(&created), sent, "the POST response");
    let id = created["id"].as_str().unwrap().to_string();
    let got = s.get(&format!("/Users/{id}")).await;
    assert_eq!(as_sent(&got), sent, "GET");

    let mut replaced = sent.clone();
    replaced["emails"][1]["display"] = json!("Home");
    replaced["name"]["middleName"] = json!(null);
    let (st, put) = s
        .call(Method::PUT, &format!("/Users/{id}"), Some(replaced.clone()))
        .await;
    assert_eq!(st, 200, "{put}");
    replaced["name"]
        .as_object_mut()
        .unwrap()
        .remove("middleName");
    assert_eq!(as_sent(&put), replaced, "the PUT response");

    let (st, patched) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"].primary", "value": true}]),
        )
        .await;
    assert_eq!(st, 200, "{patched}");
    replaced["phoneNumbers"][0]["primary"] = json!(true);
    assert_eq!(as_sent(&patched), replaced, "the PATCH response");
    assert_eq!(
        as_sent(&s.get(&format!("/Users/{id}")).await),
        replaced,
        "GET after PATCH"
    );

    // The webhook data carries the same representation.
    let hooks = s.hooks.as_ref().unwrap();
    let got = hooks
        .wait_for(
            "user.created and two user.updated",
            Duration::from_secs(10),
            || s.gw.log(),
            |g| g.iter().filter(|e| e.kind() == "user.updated").count() >= 2,
        )
        .await;
    let created_ev = got.iter().find(|e| e.kind() == "user.created").unwrap();
    assert_eq!(as_sent(&created_ev.json["data"]), sent, "user.created data");
    let last = got
        .iter()
        .rev()
        .find(|e| e.kind() == "user.updated")
        .unwrap();
    assert_eq!(as_sent(&last.json["data"]), replaced, "user.updated data");
}
on_both_backends!(round_trip_is_exact);

#[tokio::test]
async fn booleans_never_set_stay_absent_and_the_extension_is_listed_when_used() {
    let s = start("", false, false);
    let u = s
        .post_user(json!({"schemas": [USER], "userName": "plain@example.com",
                          "emails": [{"value": "plain@example.com"}]}))
        .await;
    assert_eq!(u["schemas"], json!([USER]));
    assert!(u["emails"][0].get("primary").is_none(), "{u}");
    assert!(u.get("active").is_none(), "{u}");
    let id = u["id"].as_str().unwrap();
    let (st, v) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "Ops"}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["schemas"], json!([USER, ENTERPRISE]));
    let (st, v) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["schemas"], json!([USER]), "no extension attribute left");
    assert!(v.get(ENTERPRISE).is_none());
}

/// `auto_activate` only decides what an absent `active` means; a value the
/// client sends always wins (create, PUT, PATCH remove).
/// On Redis: the test reads the stored record to see what an absent
/// `active` means for sign-in (the embedded store is the gateway's own).
#[tokio::test]
async fn active_is_what_the_client_says() {
    let s = start("", true, false);
    // A user suspended in the IdP when the app is bound: stays inactive.
    let u = s
        .post_user(json!({"schemas": [USER], "userName": "suspended@example.com", "active": false}))
        .await;
    assert_eq!(u["active"], false);
    let id = u["id"].as_str().unwrap().to_string();
    assert_eq!(s.get(&format!("/Users/{id}")).await["active"], false);
    assert!(!s.stored(&id).await.active, "cannot sign in");
    // PUT with active: false is honoured too.
    let v = s
        .post_user(json!({"schemas": [USER], "userName": "put@example.com"}))
        .await;
    let pid = v["id"].as_str().unwrap().to_string();
    assert!(v.get("active").is_none(), "never set, not shown");
    assert!(
        s.stored(&pid).await.active,
        "absent + auto_activate = active"
    );
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/Users/{pid}"),
            Some(json!({"schemas": [USER], "userName": "put@example.com", "active": "False"})),
        )
        .await;
    assert_eq!((st, &v["active"]), (200, &json!(false)), "{v}");
    assert!(!s.stored(&pid).await.active);
    // PATCH remove: absent again; for a deactivated user that is not a
    // reactivation.
    let (st, v) = s
        .patch(
            &format!("/Users/{pid}"),
            json!([{"op": "remove", "path": "active"}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("active").is_none(), "{v}");
    assert!(
        !s.stored(&pid).await.active,
        "an absent active never reactivates a deactivated user"
    );
    let (st, v) = s
        .patch(
            &format!("/Users/{pid}"),
            json!([{"op": "add", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!((st, &v["active"]), (200, &json!(true)), "{v}");
    assert!(s.stored(&pid).await.active, "an explicit true does");
    // Removing active from an active user keeps it active (auto_activate).
    let (st, v) = s
        .patch(
            &format!("/Users/{pid}"),
            json!([{"op": "remove", "path": "active"}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("active").is_none(), "{v}");
    assert!(s.stored(&pid).await.active);

    // auto_activate = false: absent means inactive, an explicit true wins.
    let s = start("auto_activate = false", true, false);
    let v = s
        .post_user(json!({"schemas": [USER], "userName": "quiet@example.com"}))
        .await;
    let qid = v["id"].as_str().unwrap().to_string();
    assert!(!s.stored(&qid).await.active, "absent + no auto_activate");
    let v = s
        .post_user(json!({"schemas": [USER], "userName": "loud@example.com", "active": true}))
        .await;
    assert!(s.stored(v["id"].as_str().unwrap()).await.active);
}

/// Every malformed request: 400 with the right scimType in RFC 7644 form,
/// and nothing written.
async fn malformed_writes_are_refused_and_write_nothing(redis: bool) {
    let s = start("", redis, false);
    let u = s
        .post_user(json!({"schemas": [USER], "userName": "keep@example.com", "title": "Keep"}))
        .await;
    let id = u["id"].as_str().unwrap().to_string();
    let (st, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Keepers"})),
        )
        .await;
    assert_eq!(st, 201);
    let gid = g["id"].as_str().unwrap().to_string();
    let before_user = s.get(&format!("/Users/{id}")).await;
    let before_group = s.get(&format!("/Groups/{gid}")).await;
    let long = "x".repeat(5000);
    let user = |extra: Value| {
        let mut b = json!({"schemas": [USER], "userName": "new@example.com"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(&str, Method, String, Value, &str)> = vec![
        (
            "userName number",
            Method::POST,
            "/Users".into(),
            json!({"schemas": [USER], "userName": 5}),
            "invalidValue",
        ),
        (
            "externalId number",
            Method::POST,
            "/Users".into(),
            user(json!({"externalId": 7})),
            "invalidValue",
        ),
        (
            "locale number",
            Method::POST,
            "/Users".into(),
            user(json!({"locale": 7})),
            "invalidValue",
        ),
        (
            "givenName number",
            Method::POST,
            "/Users".into(),
            user(json!({"name": {"givenName": 7}})),
            "invalidValue",
        ),
        (
            "email value number",
            Method::POST,
            "/Users".into(),
            user(json!({"emails": [{"value": 7}]})),
            "invalidValue",
        ),
        (
            "userName with NUL",
            Method::POST,
            "/Users".into(),
            json!({"schemas": [USER], "userName": "a\u{0}b@example.com"}),
            "invalidValue",
        ),
        (
            "userName with a bidi override",
            Method::POST,
            "/Users".into(),
            json!({"schemas": [USER], "userName": "bidi\u{202E}moc.x@y"}),
            "invalidValue",
        ),
        (
            "email with a zero-width space",
            Method::POST,
            "/Users".into(),
            user(json!({"emails": [{"value": "a\u{200B}@example.com"}]})),
            "invalidValue",
        ),
        (
            "data of an unserved extension",
            Method::POST,
            "/Users".into(),
            user(json!({"urn:example:custom:2.0:User": {"badge": "7"}})),
            "invalidValue",
        ),
        (
            "over-long title",
            Method::POST,
            "/Users".into(),
            user(json!({"title": long})),
            "invalidValue",
        ),
        (
            "schemas a string",
            Method::POST,
            "/Users".into(),
            json!({"schemas": USER, "userName": "new@example.com"}),
            "invalidSyntax",
        ),
        (
            "foreign schemas",
            Method::POST,
            "/Users".into(),
            json!({"schemas": [GROUP], "userName": "new@example.com"}),
            "invalidValue",
        ),
        (
            "unknown extension",
            Method::POST,
            "/Users".into(),
            json!({"schemas": [USER, "urn:example:ext:1.0:User"], "userName": "new@example.com"}),
            "invalidValue",
        ),
        (
            "string extension",
            Method::POST,
            "/Users".into(),
            user(json!({ENTERPRISE: "x"})),
            "invalidValue",
        ),
        (
            "active not a boolean",
            Method::POST,
            "/Users".into(),
            user(json!({"active": "yes"})),
            "invalidValue",
        ),
        (
            "two primary emails",
            Method::POST,
            "/Users".into(),
            user(
                json!({"emails": [{"value": "a@example.com", "primary": true}, {"value": "b@example.com", "primary": true}]}),
            ),
            "invalidValue",
        ),
        (
            "emails not an array",
            Method::POST,
            "/Users".into(),
            user(json!({"emails": "a@example.com"})),
            "invalidValue",
        ),
        (
            "group displayName number",
            Method::POST,
            "/Groups".into(),
            json!({"schemas": [GROUP], "displayName": 7}),
            "invalidValue",
        ),
        (
            "members a string",
            Method::POST,
            "/Groups".into(),
            json!({"schemas": [GROUP], "displayName": "New", "members": "u"}),
            "invalidValue",
        ),
        (
            "member of an odd type",
            Method::POST,
            "/Groups".into(),
            json!({"schemas": [GROUP], "displayName": "New", "members": [{"value": id, "type": "Robot"}]}),
            "invalidValue",
        ),
        (
            "PUT userName number",
            Method::PUT,
            format!("/Users/{id}"),
            json!({"schemas": [USER], "userName": 5}),
            "invalidValue",
        ),
        (
            "PATCH userName 5",
            Method::PATCH,
            format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": 5}]}),
            "invalidValue",
        ),
        (
            "PATCH remove userName",
            Method::PATCH,
            format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "userName"}]}),
            "invalidValue",
        ),
        (
            "PATCH remove id",
            Method::PATCH,
            format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "id"}]}),
            "mutability",
        ),
        (
            "PATCH remove groups",
            Method::PATCH,
            format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "groups"}]}),
            "mutability",
        ),
        (
            "PATCH title number",
            Method::PATCH,
            format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"title": 3}}]}),
            "invalidValue",
        ),
        (
            "PATCH remove displayName",
            Method::PATCH,
            format!("/Groups/{gid}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "displayName"}]}),
            "invalidValue",
        ),
        (
            "PATCH member without value",
            Method::PATCH,
            format!("/Groups/{gid}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"display": "who?"}]}]}),
            "invalidValue",
        ),
    ];
    for (what, method, path, body, scim_type) in cases {
        let (st, v, ct) = s.raw(method, &path, Some(body.to_string())).await;
        assert_eq!(st, 400, "{what}: {v}");
        assert_eq!(ct, "application/scim+json", "{what}");
        assert_eq!(
            v["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
            "{what}"
        );
        assert_eq!(v["status"], "400", "{what}");
        assert_eq!(v["scimType"], scim_type, "{what}: {v}");
        assert!(
            v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}"
        );
    }
    // One attribute given twice (exactly, or in another case): which value
    // wins differs between JSON libraries, so neither is taken.
    for body in [
        r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dup@example.com", "active": true, "active": false}"#,
        r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dup@example.com", "Active": true, "aCTIVE": false}"#,
    ] {
        let (st, v, ct) = s.raw(Method::POST, "/Users", Some(body.into())).await;
        assert_eq!(
            (st, ct.as_str()),
            (400, "application/scim+json"),
            "{body}: {v}"
        );
        assert_eq!(v["scimType"], "invalidSyntax", "{v}");
    }
    let (st, v, _) = s
        .raw(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(format!(r#"{{"schemas": ["{PATCH_OP}"], "Operations": [{{"op": "replace", "value": {{"active": false, "ACTIVE": true}}}}]}}"#)),
        )
        .await;
    assert_eq!((st, &v["scimType"]), (400, &json!("invalidSyntax")), "{v}");
    assert_eq!(s.total("/Users").await, 1, "no user was created");
    assert_eq!(s.total("/Groups").await, 1, "no group was created");
    assert_eq!(
        s.get(&format!("/Users/{id}")).await,
        before_user,
        "user unchanged"
    );
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await,
        before_group,
        "group unchanged"
    );
}
on_both_backends!(malformed_writes_are_refused_and_write_nothing);

#[tokio::test]
async fn list_and_search_parameters_must_parse() {
    let s = start("", false, false);
    s.post_user(json!({"schemas": [USER], "userName": "one@example.com"}))
        .await;
    let cases: Vec<(&str, Method, &str, Option<Value>, &str)> = vec![
        (
            "startIndex=abc",
            Method::GET,
            "/Users?startIndex=abc",
            None,
            "invalidValue",
        ),
        (
            "count=many",
            Method::GET,
            "/Users?count=many",
            None,
            "invalidValue",
        ),
        (
            "sortOrder=sideways",
            Method::GET,
            "/Users?sortOrder=sideways",
            None,
            "invalidValue",
        ),
        (
            "filter not a string",
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": 5})),
            "invalidFilter",
        ),
        (
            "misspelled filter",
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": [SEARCH], "filtr": "userName eq \"x\""})),
            "invalidValue",
        ),
        (
            "startIndex a string",
            Method::POST,
            "/Groups/.search",
            Some(json!({"schemas": [SEARCH], "startIndex": "2"})),
            "invalidValue",
        ),
        (
            "wrong schemas",
            Method::POST,
            "/.search",
            Some(json!({"schemas": [USER], "filter": "userName pr"})),
            "invalidSyntax",
        ),
        (
            "body not an object",
            Method::POST,
            "/.search",
            Some(json!(["filter"])),
            "invalidSyntax",
        ),
        (
            "bad filter",
            Method::GET,
            "/Users?filter=userName%20eq",
            None,
            "invalidFilter",
        ),
    ];
    for (what, method, path, body, scim_type) in cases {
        let (st, v, ct) = s.raw(method, path, body.map(|b| b.to_string())).await;
        assert_eq!(
            (st, ct.as_str()),
            (400, "application/scim+json"),
            "{what}: {v}"
        );
        assert_eq!(v["scimType"], scim_type, "{what}: {v}");
    }
}

/// RFC 7644 §3.4.3: a search at the SCIM root covers every resource type.
async fn search_at_the_root_covers_users_and_groups(redis: bool) {
    let s = start("", redis, false);
    let u = s
        .post_user(
            json!({"schemas": [USER], "userName": "root@example.com", "externalId": "shared-x"}),
        )
        .await;
    let (st, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": [GROUP], "displayName": "Root Group", "externalId": "shared-x"}),
            ),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = s
        .call(
            Method::POST,
            "/.search",
            Some(json!({"schemas": [SEARCH], "filter": "externalId eq \"shared-x\"", "attributes": ["externalId"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["totalResults"], 2);
    let types: Vec<&str> = v["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["User", "Group"]);
    assert_eq!(v["Resources"][0]["id"], u["id"]);
    assert_eq!(v["Resources"][1]["id"], g["id"]);
    assert!(v["Resources"][0].get("userName").is_none(), "projected");
    // GET at the root with a filter is the same search.
    let v = s.get("/?filter=displayName%20pr").await;
    assert_eq!(v["totalResults"], 1);
    assert_eq!(v["Resources"][0]["id"], g["id"]);
    // ServiceProviderConfig says filtering is supported, and it is at the root too.
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc["filter"]["supported"], true);
}
on_both_backends!(search_at_the_root_covers_users_and_groups);

/// Every answer under the SCIM base path is a SCIM error body, also for
/// what is refused before the SCIM router runs.
#[tokio::test]
async fn refusals_before_the_router_are_scim_errors_too() {
    let s = start("", false, false);
    for path in ["/Users/abc%00def", "/Users/abc%2Fdef"] {
        let (st, v, ct) = s.raw(Method::GET, path, None).await;
        assert_eq!(
            (st, ct.as_str()),
            (400, "application/scim+json"),
            "{path}: {v}"
        );
        assert_eq!(
            v["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert!(v["detail"].as_str().unwrap().contains("reference"), "{v}");
    }
    let filter = format!("userName eq \"{}\"", "a".repeat(9000));
    let (st, v, ct) = s
        .raw(
            Method::GET,
            &format!("/Users?filter={}", urlencode(&filter)),
            None,
        )
        .await;
    assert_eq!((st, ct.as_str()), (414, "application/scim+json"), "{v}");
    assert_eq!(v["status"], "414");

    // A malformed chunked body and a truncated one (raw sockets: a client
    // library would not send them).
    let token = s.token.clone();
    let chunked = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    let truncated = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{{\"userName\":"
    );
    for (what, raw, half_close) in [("chunked", chunked, false), ("truncated", truncated, true)] {
        let answer = raw_exchange(s.gw.port, raw.as_bytes(), half_close).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/scim+json"),
            "{what}: {answer}"
        );
        assert!(
            answer.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
            "{what}: {answer}"
        );
    }
    assert_eq!(s.total("/Users").await, 0, "nothing was created");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sends raw bytes, optionally half-closes, and reads the answer until the
/// server closes or goes quiet.
async fn raw_exchange(port: u16, bytes: &[u8], half_close: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(bytes).await.unwrap();
    if half_close {
        c.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// What real clients were seen sending (other SCIM servers' issue trackers).
// ---------------------------------------------------------------------------

/// Okta pushes group memberships in the POST and PUT `members` of a Group,
/// not only in PATCH.
async fn okta_sends_members_in_post_and_put(redis: bool) {
    let s = start("", redis, false);
    let a = s
        .post_user(json!({"schemas": [USER], "userName": "a@okta.test"}))
        .await;
    let b = s
        .post_user(json!({"schemas": [USER], "userName": "b@okta.test"}))
        .await;
    let (ida, idb) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (st, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Okta Push", "members": [{"value": ida, "display": "a@okta.test"}]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    assert_eq!(g["members"][0]["value"], ida);
    let gid = g["id"].as_str().unwrap();
    let (st, g) = s
        .call(
            Method::PUT,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [GROUP], "id": gid, "displayName": "Okta Push", "members": [{"value": idb}]})),
        )
        .await;
    assert_eq!(st, 200, "{g}");
    let members: Vec<&str> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [idb]);
    assert_eq!(
        s.get(&format!("/Users/{idb}")).await["groups"][0]["value"],
        gid
    );
    assert!(s
        .get(&format!("/Users/{ida}"))
        .await
        .get("groups")
        .is_none());
}
on_both_backends!(okta_sends_members_in_post_and_put);

/// Entra ID: `"False"` strings in PATCH values (with and without a path),
/// `externalId eq` lookups on Users and Groups, and paths such as
/// `addresses[type eq "work"].locality` and `name.givenName`.
async fn entra_patch_and_lookups(redis: bool) {
    let s = start("", redis, false);
    let u = s
        .post_user(json!({"schemas": [USER], "userName": "e@entra.test", "externalId": "entra-1", "active": true}))
        .await;
    let id = u["id"].as_str().unwrap();
    let (st, v) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!((st, &v["active"]), (200, &json!(false)), "{v}");
    let (st, v) = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "value": {"active": "True", "name.givenName": "Eve"}}]),
        )
        .await;
    assert_eq!((st, &v["active"]), (200, &json!(true)), "{v}");
    assert_eq!(v["name"]["givenName"], "Eve");
    let (st, v) = s
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Redmond"},
                {"op": "Add", "path": "addresses[type eq \"work\"].postalCode", "value": "98052"},
                {"op": "Replace", "path": "name.givenName", "value": "Eva"}
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["addresses"],
        json!([{"locality": "Redmond", "postalCode": "98052", "type": "work"}])
    );
    assert_eq!(v["name"]["givenName"], "Eva");
    let found = s.get("/Users?filter=externalId%20eq%20%22entra-1%22").await;
    assert_eq!(
        (found["totalResults"].as_u64(), &found["Resources"][0]["id"]),
        (Some(1), &json!(id))
    );
    assert_eq!(
        s.total("/Users?filter=externalId%20eq%20%22ENTRA-1%22")
            .await,
        0,
        "externalId is caseExact"
    );
    let (st, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": [GROUP], "displayName": "Entra Group", "externalId": "entra-g"}),
            ),
        )
        .await;
    assert_eq!(st, 201);
    let found = s
        .get("/Groups?filter=externalId%20eq%20%22entra-g%22&excludedAttributes=members")
        .await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], g["id"]);
}
on_both_backends!(entra_patch_and_lookups);

/// A DELETE followed by a POST of the same userName within the same
/// second (IdPs re-provision that fast): the new user is created, is a
/// different user, and is the one lookups find.
async fn delete_then_recreate_in_the_same_second(redis: bool) {
    for allow_deletion in [false, true] {
        let s = start(&format!("allow_deletion = {allow_deletion}"), redis, false);
        let a = s
            .post_user(
                json!({"schemas": [USER], "userName": "again@example.com", "externalId": "x-1"}),
            )
            .await;
        let (st, _) = s
            .call(
                Method::DELETE,
                &format!("/Users/{}", a["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(st, 204);
        let b = s
            .post_user(
                json!({"schemas": [USER], "userName": "again@example.com", "externalId": "x-1"}),
            )
            .await;
        assert_ne!(a["id"], b["id"]);
        let found = s
            .get("/Users?filter=userName%20eq%20%22again@example.com%22")
            .await;
        assert_eq!(found["totalResults"], 1);
        assert_eq!(found["Resources"][0]["id"], b["id"]);
        assert_eq!(
            s.total("/Users?filter=externalId%20eq%20%22x-1%22").await,
            1
        );
    }
}
on_both_backends!(delete_then_recreate_in_the_same_second);

#[tokio::test]
async fn filters_on_the_primary_email() {
    let s = start("", false, false);
    s.post_user(json!({"schemas": [USER], "userName": "p1", "emails": [
        {"value": "p1@work.test", "type": "work", "primary": true},
        {"value": "p1@home.test", "type": "home", "primary": false}]}))
        .await;
    s.post_user(json!({"schemas": [USER], "userName": "p2", "emails": [
        {"value": "p2@work.test", "type": "work"},
        {"value": "p1@home.test", "type": "home", "primary": true}]}))
        .await;
    let q = |f: &str| format!("/Users?filter={}", urlencode(f));
    let v = s
        .get(&q("emails[primary eq true].value eq \"p1@work.test\""))
        .await;
    assert_eq!(v["totalResults"], 1);
    assert_eq!(v["Resources"][0]["userName"], "p1");
    let v = s
        .get(&q("emails[primary eq true].value eq \"p1@home.test\""))
        .await;
    assert_eq!(v["totalResults"], 1);
    assert_eq!(
        v["Resources"][0]["userName"], "p2",
        "only where it is primary"
    );
    let v = s
        .get(&q("emails[type eq \"work\" and primary eq true]"))
        .await;
    assert_eq!(v["totalResults"], 1);
}

// ---------------------------------------------------------------------------
// Review findings (adversarial IdP).
// ---------------------------------------------------------------------------

/// A directory store on the gateway's Redis prefix.
async fn redis_dir(s: &Scim) -> portcullis::store::redis::RedisStore {
    portcullis::store::redis::RedisStore::connect(&redis_url(), s.prefix.as_deref().unwrap())
        .await
        .unwrap()
}

async fn status_with_cookie(s: &Scim, cookie: &str) -> u16 {
    client()
        .get(s.gw.url("/x"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// POST of a JIT user's userName with `active: false` adopts and
/// deactivates it: its open sessions must end like on any deactivation.
#[tokio::test]
async fn review_adopting_a_jit_user_as_inactive_ends_its_sessions() {
    use portcullis::directory::{DirectoryStore, ProvisionedVia, User};
    let s = start("", true, false);
    let dir = redis_dir(&s).await;
    let jit = dir
        .create_user(
            "acme",
            User {
                provisioned_via: ProvisionedVia::SamlJit,
                ..User::new("jit@example.com")
            },
        )
        .await
        .unwrap();
    let cookie =
        s.gw.login(json!({"sub": jit.id, "email": "jit@example.com", "tenant": "acme"}))
            .await;
    assert_eq!(status_with_cookie(&s, &cookie).await, 200);
    let v = s
        .post_user(json!({"schemas": [USER], "userName": "jit@example.com", "active": false}))
        .await;
    assert_eq!(v["id"], jit.id.as_str(), "adopted");
    assert_eq!(v["active"], false);
    assert!(!s.stored(&jit.id).await.active);
    assert_eq!(
        status_with_cookie(&s, &cookie).await,
        401,
        "the deactivated user's session must end"
    );
}

/// A stored value the strict parser now refuses (written by SAML JIT,
/// which checks only identifiers, or by an older gateway) must not make
/// the user impossible to deactivate by PATCH (Okta, Entra).
#[tokio::test]
async fn review_a_stored_value_the_parser_refuses_does_not_block_deactivation() {
    use portcullis::directory::{DirectoryStore, Name, ProvisionedVia, User};
    let s = start("", true, false);
    let dir = redis_dir(&s).await;
    for (i, u) in [
        // SAML JIT: displayName/name from the assertion, unchecked.
        User {
            display_name: Some("Eve\u{7}".into()),
            ..User::new("bell@example.com")
        },
        User {
            name: Name {
                formatted: Some("x".repeat(1500)),
                ..Name::default()
            },
            ..User::new("long@example.com")
        },
    ]
    .into_iter()
    .enumerate()
    {
        let u = dir
            .create_user(
                "acme",
                User {
                    provisioned_via: ProvisionedVia::SamlJit,
                    ..u
                },
            )
            .await
            .unwrap();
        let (st, v) = s
            .patch(
                &format!("/Users/{}", u.id),
                json!([{"op": "replace", "path": "active", "value": false}]),
            )
            .await;
        assert_eq!(st, 200, "case {i}: {v}");
        assert!(!s.stored(&u.id).await.active, "case {i}");
    }
}

/// A member whose label (its displayName, from SAML JIT) the parser would
/// refuse must not freeze the group: removing someone else still works.
#[tokio::test]
async fn review_a_members_stored_label_does_not_freeze_group_patches() {
    use portcullis::directory::{DirectoryStore, ProvisionedVia, User};
    let s = start("", true, false);
    let dir = redis_dir(&s).await;
    let eve = dir
        .create_user(
            "acme",
            User {
                provisioned_via: ProvisionedVia::SamlJit,
                display_name: Some("Eve\u{7}".into()),
                ..User::new("eve@example.com")
            },
        )
        .await
        .unwrap();
    let bob = s
        .post_user(json!({"schemas": [USER], "userName": "bob@example.com"}))
        .await;
    let bob = bob["id"].as_str().unwrap();
    let (st, g) = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Admins",
                "members": [{"value": eve.id}, {"value": bob}]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let (st, v) = s
        .patch(
            &format!("/Groups/{}", g["id"].as_str().unwrap()),
            json!([{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
}
