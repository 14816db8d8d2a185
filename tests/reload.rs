//! Changing the configuration of a running gateway: SIGHUP, `POST
//! /admin/reload` (`portcullis reload`) and `watch_config`, against the
//! real binary. A valid file takes effect on the next request; a broken one
//! is refused, named in the log, counted, and the old one keeps serving.

mod support;

use std::time::Duration;

use reqwest::header::COOKIE;
use support::idp::*;
use support::saml_env::*;
use support::*;

fn rewrite(gw: &Gateway, from: &str, to: &str) {
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config:\n{text}");
    std::fs::write(&gw.config_path, text.replacen(from, to, 1)).unwrap();
}

async fn status(url: &str, cookie: Option<&str>) -> u16 {
    let mut rb = client().get(url);
    if let Some(c) = cookie {
        rb = rb.header(COOKIE, c);
    }
    rb.send().await.unwrap().status().as_u16()
}

async fn reload_metric(gw: &Gateway, result: &str) -> u64 {
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = format!("portcullis_config_reload_total{{result=\"{result}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn sighup_applies_a_new_policy_and_a_broken_file_keeps_the_old_one() {
    let app = RecordingApp::start();
    let mut o = GatewayOpts::new(&app.url());
    o.extra = "[[policy]]\npath = \"/public/*\"\nallow = \"public\"\n".into();
    let gw = Gateway::start(o);
    assert_eq!(status(&gw.url("/public/x"), None).await, 200);
    assert_eq!(status(&gw.url("/open/x"), None).await, 401);

    rewrite(&gw, "path = \"/public/*\"", "path = \"/open/*\"");
    gw.sighup();
    gw.wait_log("configuration reloaded", 1);
    assert_eq!(
        status(&gw.url("/open/x"), None).await,
        200,
        "the new rule serves"
    );
    assert_eq!(
        status(&gw.url("/public/x"), None).await,
        401,
        "the old rule is gone"
    );
    assert_eq!(reload_metric(&gw, "ok").await, 1);

    // A key that does not exist: named, refused.
    rewrite(&gw, "[upstream]", "[upstream]\nbogus_key = 1");
    gw.sighup();
    let line = gw.wait_log("configuration reload refused", 1);
    assert!(line.contains("upstream.bogus_key"), "{line}");
    assert_eq!(
        status(&gw.url("/open/x"), None).await,
        200,
        "the old config serves"
    );
    // Two bad rules (and the unknown key gone): both are named.
    rewrite(&gw, "[upstream]\nbogus_key = 1", "[upstream]");
    rewrite(&gw, "allow = \"public\"", "allow = \"public\"\n[[policy]]\npath = \"/x/*\"\nallow = \"nobody-knows\"\n[[policy]]\npath = \"no-slash\"\nallow = \"public\"");
    gw.sighup();
    let line = gw.wait_log("configuration reload refused", 2);
    assert!(
        line.contains("policy[1]") && line.contains("policy[2]"),
        "{line}"
    );
    assert_eq!(
        status(&gw.url("/open/x"), None).await,
        200,
        "the old config serves"
    );
    assert_eq!(reload_metric(&gw, "invalid").await, 2);
}

#[tokio::test]
async fn admin_reload_refuses_restart_only_keys_and_the_cli_reports_it() {
    let app = RecordingApp::start();
    let mut o = GatewayOpts::new(&app.url());
    o.extra = "[[policy]]\npath = \"/public/*\"\nallow = \"public\"\n".into();
    let gw = Gateway::start(o);
    let cli = |token: &str| {
        std::process::Command::new(bin())
            .args(["reload", "-c"])
            .arg(&gw.config_path)
            .args(["--token", token])
            .output()
            .unwrap()
    };

    // Nothing changed: reloads, says so.
    let out = cli(&gw.admin_token);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 1"));

    // A listen address and the store need a restart: refused, named, and
    // the policy change in the same file does not half-apply.
    rewrite(&gw, "threads = 1", "threads = 2");
    rewrite(&gw, "path = \"/public/*\"", "path = \"/open/*\"");
    let out = cli(&gw.admin_token);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("server.threads") && err.contains("restart"),
        "{err}"
    );
    assert_eq!(status(&gw.url("/public/x"), None).await, 200);
    assert_eq!(status(&gw.url("/open/x"), None).await, 401);
    assert_eq!(reload_metric(&gw, "restart_required").await, 1);

    // Put it back: the rest applies.
    rewrite(&gw, "threads = 2", "threads = 1");
    let r = client()
        .post(gw.admin_url("/admin/reload"))
        .bearer_auth(&gw.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "reloaded");
    assert_eq!(v["changed"], serde_json::json!(["policy"]));
    assert_eq!(status(&gw.url("/open/x"), None).await, 200);

    // The admin API wants its token, for reloads as for the rest.
    let out = cli("padm_wrong");
    assert_eq!(out.status.code(), Some(2));
    let r = client()
        .post(gw.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn scim_tokens_added_by_reload_work_and_removed_ones_get_401() {
    let app = RecordingApp::start();
    let (old, new) = (
        portcullis::secret::new_token("scim_"),
        portcullis::secret::new_token("scim_"),
    );
    let client_toml = |name: &str, token: &str| {
        format!(
            "[[scim.client]]\nname = \"{name}\"\ntoken_hash = \"{}\"\ntenant = \"acme\"\n",
            portcullis::secret::TokenHash::of(token)
        )
    };
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!("[scim]\n{}", client_toml("jumpcloud", &old));
    let gw = Gateway::start(o);
    let users = |token: String| {
        let url = gw.url("/scim/v2/Users?startIndex=1&count=1");
        async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(users(old.clone()).await, 200);
    assert_eq!(users(new.clone()).await, 401);

    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let replaced = text.replace(
        &client_toml("jumpcloud", &old),
        &client_toml("jumpcloud", &new),
    );
    assert_ne!(text, replaced);
    std::fs::write(&gw.config_path, replaced).unwrap();
    gw.sighup();
    gw.wait_log("configuration reloaded", 1);
    assert_eq!(users(new).await, 200, "the token added by reload works");
    assert_eq!(users(old).await, 401, "the removed token is refused");
}

#[tokio::test]
async fn a_new_idp_certificate_is_trusted_after_reload_and_the_removed_one_is_not() {
    let e = env();
    // The IdP rolls its key over: same entity id, a new certificate.
    let rolled = TestIdp::new(&e.idp.entity_id);
    let new_cert = rolled.write_cert(e._dir.path(), "idp-rolled.pem");
    let old_cert = e._dir.path().join("idp.pem");
    assert_eq!(
        e.post(&e.idp.response_b64(&e.opts(None)), None, None)
            .await
            .status(),
        303
    );
    assert_eq!(
        e.refused(&rolled.response_b64(&e.opts(None)), None, 400)
            .await,
        "bad_signature"
    );

    rewrite(
        &e.gw,
        &format!("certificate = \"{}\"", old_cert.display()),
        &format!("certificate = \"{}\"", new_cert.display()),
    );
    e.gw.sighup();
    e.gw.wait_log("configuration reloaded", 1);
    assert_eq!(
        e.post(&rolled.response_b64(&e.opts(None)), None, None)
            .await
            .status(),
        303,
        "{}",
        e.gw.log()
    );
    assert_eq!(
        e.refused(&e.idp.response_b64(&e.opts(None)), None, 400)
            .await,
        "bad_signature"
    );
}

#[tokio::test]
async fn a_new_signing_key_signs_the_next_request_of_a_live_session() {
    let app = RecordingApp::start();
    let gw = Gateway::start(GatewayOpts::new(&app.url()));
    let cookie = gw.login(alice()).await;
    let kid = |seen: &Seen| {
        let jwt = seen.one("x-portcullis-jwt-assertion").unwrap().to_string();
        jsonwebtoken::decode_header(&jwt).unwrap().kid.unwrap()
    };
    assert_eq!(status(&gw.url("/x"), Some(&cookie)).await, 200);
    let before = kid(&app.last());

    let key = gw.dir.join("signing-2.pem");
    let out = std::process::Command::new(bin())
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let old_key = gw.dir.join("signing.pem");
    rewrite(
        &gw,
        &format!("signing_key = \"{}\"", old_key.display()),
        &format!(
            "signing_key = \"{}\"\nadditional_keys = [\"{}\"]",
            key.display(),
            old_key.display()
        ),
    );
    gw.sighup();
    gw.wait_log("configuration reloaded", 1);
    assert_eq!(
        status(&gw.url("/x"), Some(&cookie)).await,
        200,
        "the session survives"
    );
    let after = kid(&app.last());
    assert_ne!(
        before, after,
        "the cached JWT was minted again with the new key"
    );
    let jwks: serde_json::Value = client()
        .get(gw.url("/.portcullis/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&before.as_str()) && kids.contains(&after.as_str()),
        "{kids:?}"
    );
}

#[tokio::test]
async fn a_request_in_flight_across_a_reload_completes() {
    let app = RecordingApp::start();
    let mut o = GatewayOpts::new(&app.url());
    o.extra = "[[policy]]\npath = \"/slow/*\"\nallow = \"public\"\n".into();
    o.upstream_extra = String::new();
    let gw = Gateway::start(o);
    // The recording app holds /slow for 5 s; the test config's upstream
    // read timeout is 3 s, so give this one room.
    rewrite(&gw, "read_timeout = \"3s\"", "read_timeout = \"10s\"");
    gw.sighup();
    gw.wait_log("configuration reloaded", 1);
    let url = gw.url("/slow/x");
    let inflight = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    rewrite(&gw, "path = \"/slow/*\"", "path = \"/other/*\"");
    gw.sighup();
    gw.wait_log("configuration reloaded", 2);
    assert_eq!(inflight.await.unwrap().unwrap(), 200, "{}", gw.log());
    assert_eq!(status(&gw.url("/other/x"), None).await, 200);
}

#[tokio::test]
async fn watch_config_reloads_when_the_file_changes() {
    let app = RecordingApp::start();
    let mut o = GatewayOpts::new(&app.url());
    o.server_extra = "watch_config = true".into();
    o.extra = "[[policy]]\npath = \"/public/*\"\nallow = \"public\"\n".into();
    let gw = Gateway::start(o);
    assert_eq!(status(&gw.url("/open/x"), None).await, 401);
    rewrite(&gw, "path = \"/public/*\"", "path = \"/open/*\"");
    let line = gw.wait_log("configuration reloaded", 1);
    assert!(line.contains("watch"), "{line}");
    assert_eq!(status(&gw.url("/open/x"), None).await, 200);
}
