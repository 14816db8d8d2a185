//! End-to-end behaviour of the gateway core: a real `portcullis` process on
//! 127.0.0.1 in front of a real recording upstream, driven by a real client.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use reqwest::header::{ACCEPT, COOKIE};
use serde_json::{json, Value};
use support::*;

fn policy_opts(app: &RecordingApp) -> GatewayOpts {
    let mut o = GatewayOpts::new(&app.url());
    o.extra = r#"
[[policy]]
path = "/public/*"
allow = "public"

[[policy]]
path = "/admin/*"
groups = ["admins"]
"#
    .into();
    o
}

async fn verify_with_jwks(gw: &Gateway, token: &str) -> portcullis::identity::Claims {
    let jwks: JwkSet = client()
        .get(gw.url("/.portcullis/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = decode_header(token).unwrap();
    assert_eq!(
        header.alg,
        jsonwebtoken::Algorithm::ES256,
        "ES256 is the default"
    );
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid in header"))
        .expect("kid published in JWKS");
    let mut v = Validation::new(header.alg);
    v.set_audience(&["test-app"]);
    v.set_issuer(&[format!("http://localhost:{}", gw.port)]);
    decode::<portcullis::identity::Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("JWT verifies with the published key")
        .claims
}

#[tokio::test]
async fn forwarded_request_carries_a_jwt_that_verifies_with_the_jwks() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let cookie = gw.login(alice()).await;

    let r = client()
        .get(gw.url("/reports?year=2026"))
        .header(COOKIE, format!("theme=dark; {cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    assert_eq!(seen.uri, "/reports?year=2026");
    let token = seen
        .one("x-portcullis-jwt-assertion")
        .expect("identity header forwarded");
    let claims = verify_with_jwks(&gw, token).await;
    assert_eq!(claims.sub, "u-alice");
    assert_eq!(claims.email.as_deref(), Some("alice@example.com"));
    assert_eq!(claims.name.as_deref(), Some("Alice Doe"));
    assert_eq!(claims.given_name.as_deref(), Some("Alice"));
    assert_eq!(claims.family_name.as_deref(), Some("Doe"));
    assert_eq!(claims.groups, vec!["staff"]);
    assert_eq!(claims.roles, vec!["member"]);
    assert_eq!(claims.tenant.as_deref(), Some("acme"));
    assert_eq!(claims.idp.as_deref(), Some("test"));
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(claims.sid.len(), 32);
    // The gateway's session cookie is not the app's business; other cookies are.
    assert_eq!(seen.one("cookie"), Some("theme=dark"));
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.one("x-forwarded-host"),
        Some(format!("127.0.0.1:{}", gw.port).as_str())
    );
}

#[tokio::test]
async fn jwt_is_minted_once_per_session_and_reused() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let cookie = gw.login(alice()).await;
    for _ in 0..3 {
        let r = client()
            .get(gw.url("/x"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let tokens: Vec<String> = app
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.one("x-portcullis-jwt-assertion").unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "the hot path must not re-sign"
    );
    let peers: Vec<_> = app.seen.lock().unwrap().iter().map(|s| s.peer).collect();
    assert!(
        peers.windows(2).all(|w| w[0] == w[1]),
        "upstream connection reused: {peers:?}"
    );
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_app() {
    let app = RecordingApp::start();
    let mut o = policy_opts(&app);
    o.identity = "strip_headers = [\"X-Remote-User\"]".into();
    o.extra.push_str("\n[identity.headers]\nenabled = true\n");
    let gw = Gateway::start(o);
    let cookie = gw.login(alice()).await;

    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("X-Portcullis-User", "mallory")
            .header("x-PORTCULLIS-jwt-assertion", "forged.one")
            .header("X-Portcullis-Jwt-Assertion", "forged.two")
            .header("X-PORTCULLIS-GROUPS", "admins")
            .header("x-portcullis-anything-else", "1")
            .header("X-Remote-User", "mallory")
            .header("x-remote-user", "mallory2")
            .header("X-Forwarded-For", "10.6.6.6")
            .header("Forwarded", "for=10.6.6.6")
            .header("X-Forwarded-Proto", "https")
    };

    // Anonymous request to a public path: no identity header at all.
    let r = spoof(client().get(gw.url("/public/page")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    for h in [
        "x-portcullis-user",
        "x-portcullis-jwt-assertion",
        "x-portcullis-groups",
        "x-portcullis-anything-else",
        "x-remote-user",
        "forwarded",
    ] {
        assert!(seen.all(h).is_empty(), "{h} leaked: {:?}", seen.all(h));
    }
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("http"));

    // Signed-in request: exactly the gateway's own values.
    let r = spoof(client().get(gw.url("/home")))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    assert_eq!(seen.one("x-portcullis-user"), Some("u-alice"));
    assert_eq!(seen.one("x-portcullis-email"), Some("alice@example.com"));
    assert_eq!(seen.one("x-portcullis-groups"), Some("staff"));
    assert_eq!(seen.one("x-portcullis-name"), Some("Alice Doe"));
    assert!(seen.all("x-portcullis-anything-else").is_empty());
    assert!(seen.all("x-remote-user").is_empty());
    let token = seen.one("x-portcullis-jwt-assertion").unwrap();
    assert!(!token.starts_with("forged"));
    verify_with_jwks(&gw, token).await;

    // The same on the wire with mixed-case names and repeats, byte for byte
    // (client libraries would lower-case them).
    let (status, _) = raw_get(
        gw.port,
        "/home",
        &[
            ("Cookie", &cookie),
            ("X-PorTcullis-User", "mallory"),
            ("X-PORTCULLIS-USER", "mallory2"),
            ("x-portcullis-jwt-assertion", "forged.three"),
            ("X-Portcullis-Jwt-Assertion", "forged.four"),
            ("X-REMOTE-USER", "mallory"),
            ("X-Remote-User", "mallory3"),
            // CGI-style stacks read `_` as `-`: these must go too.
            ("X_Portcullis_User", "mallory4"),
            ("x_portcullis_jwt_assertion", "forged.five"),
            ("X_Remote_User", "mallory5"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = app.last();
    assert_eq!(seen.all("x-portcullis-user"), vec!["u-alice"]);
    assert!(seen.all("x-remote-user").is_empty());
    for h in [
        "x_portcullis_user",
        "x_portcullis_jwt_assertion",
        "x_remote_user",
    ] {
        assert!(seen.all(h).is_empty(), "{h} leaked");
    }
    let jwts = seen.all("x-portcullis-jwt-assertion");
    assert_eq!(jwts.len(), 1);
    verify_with_jwks(&gw, jwts[0]).await;
}

#[tokio::test]
async fn unauthenticated_browsers_are_sent_to_login_and_apis_get_401() {
    let app = RecordingApp::start();
    let gw = Gateway::start(policy_opts(&app));
    let r = client()
        .get(gw.url("/reports/q1?x=1&y=2"))
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "/.portcullis/login?rd=%2Freports%2Fq1%3Fx%3D1%26y%3D2"
    );
    let r = client()
        .get(gw.url("/api/items"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    // A cookie that is not a session id is no session.
    let r = client()
        .get(gw.url("/api/items"))
        .header(COOKIE, "portcullis_session=forged-value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(gw.url("/api/items"))
        .header(
            COOKIE,
            format!(
                "portcullis_session={}",
                portcullis::session::SessionId::generate().as_str()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a well-formed but unknown id is no session"
    );
    assert_eq!(app.count(), 0, "nothing reached the app");
}

#[tokio::test]
async fn policy_public_paths_group_rules_and_normalization() {
    let app = RecordingApp::start();
    let gw = Gateway::start(policy_opts(&app));
    let c = client();

    let r = c.get(gw.url("/public/logo.png")).send().await.unwrap();
    assert_eq!(r.status(), 200, "public path passes without a session");

    let staff = gw.login(alice()).await;
    let r = c
        .get(gw.url("/admin/users"))
        .header(COOKIE, &staff)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Access denied") && page.contains("Reference"),
        "{page}"
    );

    let mut admin = alice();
    admin["sub"] = json!("u-root");
    admin["groups"] = json!(["admins"]);
    let admin = gw.login(admin).await;
    let r = c
        .get(gw.url("/admin/users"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let before = app.count();
    // Bypass attempts, sent byte for byte (an URL library would normalize
    // them first), are judged on the real target: the admin area.
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2E/admin/users",
        "/public/.%2e/admin/users",
        "//admin/users",
        "/public/..;/admin/users",
        "/admin;x=1/users",
        "/./admin/users",
        "/public/./../admin/users",
    ] {
        let (status, _) = raw_get(gw.port, path, &[("Cookie", &staff)]).await;
        assert_eq!(status, 403, "{path}");
        let (status, _) = raw_get(gw.port, path, &[]).await;
        assert_eq!(status, 401, "{path} anonymous");
    }
    // Paths that cannot be judged are refused outright.
    for path in [
        "/public/%2fadmin",
        "/public/..%5cadmin",
        "/public/%00",
        "/../etc/passwd",
        "/public/%zz",
    ] {
        let (status, _) = raw_get(gw.port, path, &[("Cookie", &admin)]).await;
        assert_eq!(status, 400, "{path}");
    }
    assert_eq!(app.count(), before, "no bypass attempt reached the app");

    // What is forwarded is the normalized path the policy judged.
    let (status, _) = raw_get(gw.port, "/public/a/../b//c?q=1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(app.last().uri, "/public/b/c?q=1");
}

#[tokio::test]
async fn idle_and_absolute_expiry_end_a_session() {
    let app = RecordingApp::start();
    let mut o = GatewayOpts::new(&app.url());
    o.session = "idle_timeout = \"2s\"\nmax_lifetime = \"4s\"".into();
    let gw = Gateway::start(o);
    let c = client();

    // Idle: no request for longer than idle_timeout.
    let cookie = gw.login(alice()).await;
    assert_eq!(
        c.get(gw.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        c.get(gw.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Absolute: active all along, still ends at max_lifetime.
    let cookie = gw.login(alice()).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3600) {
        let s = c
            .get(gw.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(
            s,
            200,
            "active session stays valid before max_lifetime ({:?})",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        c.get(gw.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn revocation_takes_effect_at_once_on_the_same_node() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let c = client();
    let one = gw.login(alice()).await;
    let two = gw.login(alice()).await;
    for cookie in [&one, &two] {
        assert_eq!(
            c.get(gw.url("/a"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let r = gw.revoke_user("u-alice").await;
    assert_eq!(r["revoked"], 2);
    for cookie in [&one, &two] {
        assert_eq!(
            c.get(gw.url("/a"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let c = client();
    let cookie = gw.login(alice()).await;
    let r = c
        .get(gw.url("/.portcullis/userinfo"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["sub"], "u-alice");
    assert_eq!(me["groups"], json!(["staff"]));

    let r = c
        .post(gw.url("/.portcullis/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("portcullis_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    let r = c
        .get(gw.url("/.portcullis/userinfo"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn cross_replica_revocation_is_seen_within_100ms() {
    let app = RecordingApp::start();
    let prefix = unique_prefix("xrev");
    let mut oa = GatewayOpts::new(&app.url());
    oa.redis_prefix = Some(prefix.clone());
    let a = Gateway::start(oa);
    // Same store and same signing key: a second replica.
    let mut ob = GatewayOpts::new(&app.url());
    ob.redis_prefix = Some(prefix);
    let b = Gateway::start(ob);
    let c = client();

    let cookie = a.login(alice()).await;
    // B knows the session (and caches it) without having created it.
    for _ in 0..3 {
        assert_eq!(
            c.get(b.url("/a"))
                .header(COOKIE, &cookie)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let revoked_at = Instant::now();
    a.revoke_user("u-alice").await;
    let mut seen_after = None;
    while revoked_at.elapsed() < Duration::from_secs(2) {
        let s = c
            .get(b.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status();
        if s == 401 {
            seen_after = Some(revoked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = seen_after.expect("replica B never saw the revocation");
    assert!(
        after < Duration::from_millis(100),
        "replica B saw the revocation after {after:?}"
    );
}

#[tokio::test]
async fn embedded_store_keeps_sessions_across_a_restart() {
    let app = RecordingApp::start();
    let mut gw = Gateway::start(GatewayOpts::new(&app.url()));
    let cookie = gw.login(alice()).await;
    assert_eq!(
        client()
            .get(gw.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.restart();
    let r = client()
        .get(gw.url("/a"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "session survived the restart");
    let claims = verify_with_jwks(&gw, app.last().one("x-portcullis-jwt-assertion").unwrap()).await;
    assert_eq!(claims.sub, "u-alice");
}

#[tokio::test]
async fn upstream_down_gives_a_502_page_quickly_and_readyz_says_why() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(GatewayOpts::new(&dead));
    let cookie = gw.login(alice()).await;
    let started = Instant::now();
    let r = client()
        .get(gw.url("/a"))
        .header(COOKIE, &cookie)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(r.text().await.unwrap().contains("Application unavailable"));

    let r = client()
        .get(gw.url("/.portcullis/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["store"], "ok");
    assert_ne!(v["upstream"], "ok");
    let r = client()
        .get(gw.url("/.portcullis/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn readyz_and_jwks_when_all_is_well() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let r = client()
        .get(gw.url("/.portcullis/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(gw.url("/.portcullis/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert!(v["keys"][0].get("d").is_none());
    let r = client()
        .get(gw.url("/.portcullis/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(gw.url("/.portcullis/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.count(), 0, "reserved paths never reach the app");
}

#[tokio::test]
async fn oversized_bodies_to_local_endpoints_get_413() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    assert_eq!(
        raw_post_declaring(gw.port, "/.portcullis/logout", 2 * 1024 * 1024).await,
        413
    );
}

#[tokio::test]
async fn admin_api_refuses_missing_or_wrong_tokens() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let c = client();
    let r = c
        .post(gw.admin_url("/admin/sessions"))
        .json(&alice())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let r = c
        .post(gw.admin_url("/admin/sessions"))
        .bearer_auth(format!("{}x", gw.admin_token))
        .json(&alice())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(gw.admin_url("/admin/sessions"))
        .bearer_auth(&gw.admin_token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 401);
    // Metrics are recorded in the logging phase, just after the response.
    let mut metrics = String::new();
    for _ in 0..50 {
        let r = c.get(gw.admin_url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        metrics = r.text().await.unwrap();
        if metrics.contains("portcullis_requests_total{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.contains("portcullis_requests_total{outcome=\"unauthenticated\",status=\"4xx\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_identity_jwt_minted_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tls_listener_serves_http2_and_http1() {
    let app = RecordingApp::start();
    let certdir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = test_certificate(certdir.path());
    let mut o = GatewayOpts::new(&app.url());
    o.tls = Some((cert, key));
    let gw = Gateway::start(o);
    let root = reqwest::Certificate::from_pem(&pem).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", gw.port).parse().unwrap();
    let cookie_name_check = gw.login(alice()).await;
    assert!(
        cookie_name_check.starts_with("__Host-portcullis_session="),
        "{cookie_name_check}"
    );

    for http2 in [true, false] {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none());
        if !http2 {
            b = b.http1_only();
        }
        let c = b.build().unwrap();
        let r = c
            .get(gw.url("/a"))
            .header(COOKIE, &cookie_name_check)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let want = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(r.version(), want);
        let seen = app.last();
        assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
        assert!(seen.one("x-portcullis-jwt-assertion").is_some());
    }
}

#[tokio::test]
async fn plaintext_listener_accepts_h2c_prior_knowledge() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c.get(gw.url("/public-or-not")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn tls_upstream_is_verified_against_the_configured_ca() {
    let app = RecordingApp::start();
    let certdir = tempfile::tempdir().unwrap();
    let (cert, key, _) = test_certificate(certdir.path());
    // Gateway A terminates TLS in front of the app (all public).
    let mut oa = GatewayOpts::new(&app.url());
    oa.tls = Some((cert.clone(), key));
    oa.extra = "[[policy]]\npath = \"/*\"\nallow = \"public\"\n".into();
    let a = Gateway::start(oa);
    // Gateway B forwards to A over https, trusting the test CA.
    let upstream = format!("https://127.0.0.1:{}", a.port);
    let mut ob = GatewayOpts::new(&upstream);
    ob.extra = "[[policy]]\npath = \"/*\"\nallow = \"public\"\n".into();
    ob.upstream_extra = format!("ca_file = \"{}\"", cert.display());
    let b = Gateway::start(ob);
    for _ in 0..3 {
        let r = client().get(b.url("/through/tls")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.last().uri, "/through/tls");
    assert_eq!(
        app.last().one("x-forwarded-proto"),
        Some("https"),
        "A saw TLS from B"
    );

    // Without the CA, B refuses A's certificate: 502, nothing forwarded.
    let before = app.count();
    let c = Gateway::start(GatewayOpts::new(&upstream));
    let cookie = c.login(alice()).await;
    let r = client()
        .get(c.url("/x"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(app.count(), before);
}

#[tokio::test]
async fn slow_upstream_gives_a_504_after_read_timeout() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let cookie = gw.login(alice()).await;
    let started = Instant::now();
    let r = client()
        .get(gw.url("/slow"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4900),
        "took {took:?}"
    );
}

#[tokio::test]
async fn store_down_refuses_with_503_never_passes_through() {
    let app = RecordingApp::start();
    let mut redis = OwnRedis::start();
    let mut o = policy_opts(&app);
    o.redis_prefix = Some("pc:".into());
    o.redis_url = Some(redis.url());
    let gw = Gateway::start(o);
    let cookie = gw.login(alice()).await;
    assert_eq!(
        client()
            .get(gw.url("/a"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    redis.kill();
    let before = app.count();
    // A session the gateway has not cached must be checked in the store: refused.
    let unknown = format!(
        "portcullis_session={}",
        portcullis::session::SessionId::generate().as_str()
    );
    let r = client()
        .get(gw.url("/a"))
        .header(COOKIE, &unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", gw.log());
    assert_eq!(r.headers()["retry-after"], "5");
    // Even on a public path, a request that carries a cookie is not waved through.
    let r = client()
        .get(gw.url("/public/x"))
        .header(COOKIE, &unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        app.count(),
        before,
        "nothing passed through while the store was down"
    );
    let r = client()
        .get(gw.url("/.portcullis/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn forwarding_headers_are_rebuilt_unless_the_hop_before_is_trusted() {
    let app = RecordingApp::start();
    let public = "[[policy]]\npath = \"/*\"\nallow = \"public\"\n";
    let spoofed: &[(&str, &str)] = &[
        ("X-Forwarded-For", "10.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=10.6.6.6;proto=https"),
        ("X-Real-IP", "10.6.6.6"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
        // CGI-style stacks read `_` as `-`.
        ("X_Forwarded_Proto", "https"),
        ("x_forwarded_host", "evil.example"),
        ("X_Real_IP", "10.6.6.6"),
    ];

    // Untrusted (the default): this hop's view only.
    let mut o = GatewayOpts::new(&app.url());
    o.extra = public.into();
    let gw = Gateway::start(o);
    let (status, _) = raw_get(gw.port, "/f", spoofed).await;
    assert_eq!(status, 200);
    let seen = app.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http"]);
    let host = format!("127.0.0.1:{}", gw.port);
    assert_eq!(seen.all("x-forwarded-host"), vec![host.as_str()]);
    for h in [
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x_forwarded_proto",
        "x_forwarded_host",
        "x_real_ip",
    ] {
        assert!(seen.all(h).is_empty(), "{h} leaked: {:?}", seen.all(h));
    }

    // Trusted: the hop before is believed and this hop appends itself.
    let mut o = GatewayOpts::new(&app.url());
    o.extra = public.into();
    o.server_extra = "trust_forwarded_headers = true".into();
    let gw = Gateway::start(o);
    let (status, _) = raw_get(gw.port, "/f", spoofed).await;
    assert_eq!(status, 200);
    let seen = app.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["10.6.6.6, 127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(seen.all("x-forwarded-host"), vec!["evil.example"]);
    assert_eq!(seen.all("x-real-ip"), vec!["10.6.6.6"]);
}
