//! SAML sign-in through a running gateway: the full SP-initiated flow,
//! IdP-initiated sign-in, and one test per refusal, each checking the
//! status and the reason logged next to the page's reference id.

mod support;

use chrono::{Duration, Utc};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use support::idp::*;
use support::saml_env::*;
use support::*;

#[tokio::test]
async fn full_sp_initiated_flow_signs_in_and_forwards_the_asserted_identity() {
    let e = env();
    // The app URL sends the browser to the login page...
    let r = client()
        .get(e.gw.url("/reports/q3?view=full"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert_eq!(login, "/.portcullis/login?rd=%2Freports%2Fq3%3Fview%3Dfull");
    // ...which (one IdP) redirects straight to the IdP with an AuthnRequest.
    let (id, binding) = e.begin("/reports/q3?view=full").await;
    // The IdP answers; the browser POSTs it to the ACS.
    let r = e
        .post(
            &e.idp.response_b64(&e.opts(Some(&id))),
            Some(&binding),
            None,
        )
        .await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    assert_eq!(r.headers()[LOCATION], "/reports/q3?view=full");
    let cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("portcullis_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("portcullis_login=;")),
        "binding cookie cleared"
    );

    let r = client()
        .get(e.gw.url("/reports/q3?view=full"))
        .header(COOKIE, cookie_pair(session))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwt = e
        .app
        .last()
        .one("x-portcullis-jwt-assertion")
        .unwrap()
        .to_string();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["given_name"], "Alice");
    assert_eq!(claims["family_name"], "Doe");
    assert_eq!(claims["name"], "Alice Doe");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(claims["idp"], "testidp");
    assert_eq!(claims["tenant"], "acme");
}

#[tokio::test]
async fn a_sign_in_rotates_the_session_id() {
    let e = env();
    let old = e.gw.login(alice()).await;
    let (id, binding) = e.begin("/").await;
    let r = e
        .post(
            &e.idp.response_b64(&e.opts(Some(&id))),
            Some(&format!("{binding}; {old}")),
            None,
        )
        .await;
    assert_eq!(r.status(), 303);
    let new = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap();
    assert_ne!(cookie_pair(&new), old);
    let r = client()
        .get(e.gw.url("/x"))
        .header(COOKIE, &old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the pre-login session id is dead");
}

#[tokio::test]
async fn idp_initiated_sign_in_is_accepted_when_allowed() {
    let e = env();
    let b64 = e.idp.response_b64(&e.opts(None));
    let r = e.post(&b64, None, Some("/dashboard")).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    assert_eq!(r.headers()[LOCATION], "/dashboard");
    // An off-site RelayState is never followed.
    let r = e
        .post(
            &e.idp.response_b64(&e.opts(None)),
            None,
            Some("//evil.example/x"),
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/");
}

#[tokio::test]
async fn idp_initiated_sign_in_is_refused_when_not_allowed() {
    let e = env_with("allow_idp_initiated = false", "");
    let got = e
        .refused(&e.idp.response_b64(&e.opts(None)), None, 400)
        .await;
    assert_eq!(got, "idp_initiated_refused");
}

#[tokio::test]
async fn refuses_unsigned_response_and_assertion() {
    env()
        .assert_refused(
            |o| {
                o.sign_response = false;
                o.sign_assertion = false;
            },
            "unsigned",
        )
        .await;
}

#[tokio::test]
async fn refuses_a_response_signed_by_another_key() {
    let e = env();
    let attacker = TestIdp::new("https://idp.example.test/metadata");
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.signer = Some(&attacker);
    assert_eq!(
        e.refused(&e.idp.response_b64(&o), Some(&cookie), 400).await,
        "bad_signature"
    );
}

#[tokio::test]
async fn refuses_content_altered_after_signing() {
    let e = env();
    let (id, cookie) = e.begin("/").await;
    let xml = e
        .idp
        .response_xml(&e.opts(Some(&id)))
        .replace("alice@example.com", "mallory@example.com");
    assert_eq!(
        e.refused(&b64(&xml), Some(&cookie), 400).await,
        "bad_signature"
    );
}

#[tokio::test]
async fn refuses_xsw_signed_assertion_moved_into_extensions() {
    let e = env();
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.sign_response = false;
    let signed = e.idp.assertion(&o);
    let mut evil = e.opts(Some(&id));
    evil.sign_assertion = false;
    evil.sign_response = false;
    evil.name_id = "mallory@example.com".into();
    let evil_assertion = e.idp.assertion(&evil);
    let xml = e.idp.wrap(&evil, &evil_assertion).replacen(
        "<samlp:Status>",
        &format!("<samlp:Extensions>{signed}</samlp:Extensions><samlp:Status>"),
        1,
    );
    assert_eq!(e.refused(&b64(&xml), Some(&cookie), 400).await, "malformed");
}

#[tokio::test]
async fn refuses_xsw_evil_assertion_before_or_after_the_signed_one() {
    let e = env();
    for before in [true, false] {
        let (id, cookie) = e.begin("/").await;
        let mut o = e.opts(Some(&id));
        o.sign_response = false;
        let signed = e.idp.assertion(&o);
        let mut evil = e.opts(Some(&id));
        evil.sign_assertion = false;
        evil.sign_response = false;
        evil.name_id = "mallory@example.com".into();
        let evil_assertion = e.idp.assertion(&evil);
        let both = if before {
            format!("{evil_assertion}{signed}")
        } else {
            format!("{signed}{evil_assertion}")
        };
        let xml = e.idp.wrap(&evil, &both);
        assert_eq!(
            e.refused(&b64(&xml), Some(&cookie), 400).await,
            "malformed",
            "before={before}"
        );
    }
}

#[tokio::test]
async fn refuses_xsw_signed_response_wrapped_by_an_unsigned_one() {
    let e = env();
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.sign_assertion = false;
    let genuine = e.idp.response_xml(&o);
    let mut evil = e.opts(Some(&id));
    evil.sign_assertion = false;
    evil.sign_response = false;
    evil.name_id = "mallory@example.com".into();
    let evil_assertion = e.idp.assertion(&evil);
    let xml = e.idp.wrap(
        &evil,
        &format!("{evil_assertion}<samlp:Extensions>{genuine}</samlp:Extensions>"),
    );
    let reason = e.refused(&b64(&xml), Some(&cookie), 400).await;
    assert!(
        ["malformed", "unsigned"].contains(&reason.as_str()),
        "{reason}"
    );
}

#[tokio::test]
async fn refuses_a_comment_injected_into_the_name_id() {
    let e = env();
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.name_id = "user@evil.com.example.com".into();
    let xml = e.idp.response_xml(&o).replace(
        "user@evil.com.example.com",
        "user@evil.com<!---->.example.com",
    );
    assert_eq!(
        e.refused(&b64(&xml), Some(&cookie), 400).await,
        "xml_comment"
    );
}

#[tokio::test]
async fn refuses_wrong_issuer() {
    let e = env();
    e.assert_refused(
        |o| o.issuer = Some("https://other-idp.example/".into()),
        "unknown_issuer",
    )
    .await;
}

#[tokio::test]
async fn refuses_wrong_or_missing_audience() {
    let e = env();
    e.assert_refused(
        |o| o.audience = Some("https://another-sp.example".into()),
        "audience_mismatch",
    )
    .await;
    e.assert_refused(|o| o.audience = None, "audience_mismatch")
        .await;
}

#[tokio::test]
async fn refuses_wrong_destination() {
    env()
        .assert_refused(
            |o| o.destination = Some("https://evil.example/acs".into()),
            "destination_mismatch",
        )
        .await;
}

#[tokio::test]
async fn refuses_wrong_recipient() {
    env()
        .assert_refused(
            |o| o.recipient = "https://evil.example/acs".into(),
            "recipient_mismatch",
        )
        .await;
}

#[tokio::test]
async fn expiry_is_judged_with_the_configured_clock_skew() {
    let e = env();
    // Expired 5 minutes ago: outside the 2-minute skew.
    e.assert_refused(
        |o| {
            o.not_on_or_after = Utc::now() - Duration::minutes(5);
            o.issue_instant = Utc::now() - Duration::minutes(6);
            o.not_before = Utc::now() - Duration::minutes(7);
        },
        "expired",
    )
    .await;
    // Not valid for another 5 minutes: outside the skew.
    e.assert_refused(
        |o| o.not_before = Utc::now() + Duration::minutes(5),
        "not_yet_valid",
    )
    .await;
    // Within the skew both are accepted.
    for edit in [0, 1] {
        let (id, cookie) = e.begin("/").await;
        let mut o = e.opts(Some(&id));
        if edit == 0 {
            o.not_on_or_after = Utc::now() - Duration::seconds(60);
        } else {
            o.not_before = Utc::now() + Duration::seconds(60);
        }
        let r = e.post(&e.idp.response_b64(&o), Some(&cookie), None).await;
        assert_eq!(r.status(), 303, "within skew (case {edit}): {}", e.gw.log());
    }
}

#[tokio::test]
async fn refuses_a_replayed_assertion() {
    let e = env();
    let b64 = e.idp.response_b64(&e.opts(None));
    assert_eq!(e.post(&b64, None, None).await.status(), 303);
    assert_eq!(e.refused(&b64, None, 400).await, "replay");
}

#[tokio::test]
async fn refuses_unknown_and_reused_in_response_to() {
    let e = env();
    e.assert_refused(
        |o| o.in_response_to = Some("_never-issued".into()),
        "in_response_to",
    )
    .await;
    let (id, cookie) = e.begin("/").await;
    assert_eq!(
        e.post(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), None)
            .await
            .status(),
        303
    );
    // A second, fresh response to the same request: the request was consumed.
    assert_eq!(
        e.refused(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), 400)
            .await,
        "in_response_to"
    );
}

#[tokio::test]
async fn refuses_a_response_from_another_browser() {
    let e = env();
    let (id, _cookie) = e.begin("/").await;
    let b64 = e.idp.response_b64(&e.opts(Some(&id)));
    assert_eq!(
        e.refused(&b64, Some("portcullis_login=someone-else"), 400)
            .await,
        "browser_binding"
    );
}

#[tokio::test]
async fn refuses_a_failed_status() {
    env()
        .assert_refused(
            |o| o.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".into(),
            "status_not_success",
        )
        .await;
}

#[tokio::test]
async fn refuses_doctype_and_entity_expansion() {
    let e = env();
    let (id, cookie) = e.begin("/").await;
    let xml = e.idp.response_xml(&e.opts(Some(&id)));
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>{}",
        xml.replace("alice@example.com</saml:NameID>", "&b;</saml:NameID>")
    );
    assert_eq!(e.refused(&b64(&bomb), Some(&cookie), 400).await, "dtd");
}

#[tokio::test]
async fn refuses_sha1_signatures() {
    env()
        .assert_refused(|o| o.sha1 = true, "sha1_refused")
        .await;
}

#[tokio::test]
async fn refuses_an_oversized_body() {
    let e = env();
    let huge = "A".repeat(300 * 1024);
    assert_eq!(e.refused(&huge, None, 413).await, "too_large");
    // Above the gateway's own body limit the ACS never reads it.
    assert_eq!(
        raw_post_declaring(e.gw.port, "/.portcullis/saml/acs", 2 * 1024 * 1024).await,
        413
    );
}

#[tokio::test]
async fn refuses_an_assertion_only_signature_when_the_response_must_be_signed() {
    env_with("require_signature = \"response\"", "")
        .assert_refused(|o| o.sign_response = false, "unsigned")
        .await;
}

#[tokio::test]
async fn open_redirects_are_not_kept_as_return_targets() {
    let e = env();
    for bad in [
        "//evil.example/x",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\\evil.example",
    ] {
        let (id, cookie) = e.begin(bad).await;
        let r = e
            .post(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), None)
            .await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()[LOCATION], "/", "{bad}");
    }
}

#[tokio::test]
async fn domain_routing_picks_the_idp_or_says_domain_not_configured() {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let a = TestIdp::new("https://idp-a.example/");
    let b = TestIdp::new("https://idp-b.example/");
    let ca = a.write_cert(dir.path(), "a.pem");
    let cb = b.write_cert(dir.path(), "b.pem");
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!(
        "[saml]\n{}{}",
        a.idp_toml(
            "jumpcloud",
            &ca,
            "display_name = \"JumpCloud\"\ndomains = [\"Acme.com\"]\ntenant = \"acme\""
        ),
        b.idp_toml(
            "okta",
            &cb,
            "display_name = \"Okta\"\ndomains = [\"globex.com\"]\ntenant = \"globex\""
        )
    );
    let gw = Gateway::start(o);
    let c = client();
    let page = c
        .get(gw.url("/.portcullis/login?rd=%2Fx"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Work email") && html.contains("JumpCloud") && html.contains("Okta"),
        "{html}"
    );
    for (email, idp) in [("bob@ACME.com", "jumpcloud"), ("carol@globex.com", "okta")] {
        let r = c
            .get(gw.url(&format!(
                "/.portcullis/login?email={}&rd=%2Fx",
                urlencode(email)
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert!(r.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with(&format!("https://idp.example.test/sso/{idp}?")));
    }
    let r = c
        .get(gw.url("/.portcullis/login?email=dave%40unknown.org"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Domain not configured"));
    let r = c
        .get(gw.url("/.portcullis/login?idp=okta"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = c
        .get(gw.url("/.portcullis/login?idp=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sp_metadata_describes_the_acs_and_entity_id() {
    let e = env();
    let r = client()
        .get(e.gw.url("/.portcullis/saml/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(xml.contains(&format!("entityID=\"{}\"", e.entity)), "{xml}");
    assert!(xml.contains(&format!("Location=\"{}\"", e.acs)), "{xml}");
    assert!(xml.contains("WantAssertionsSigned=\"true\""));
    assert!(xml.contains("nameid-format:emailAddress"));
    let out = std::process::Command::new(bin())
        .args(["metadata", "-c"])
        .arg(&e.gw.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), xml);
}

#[tokio::test]
async fn optional_mode_still_enforces_group_rules() {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let cert = idp.write_cert(dir.path(), "idp.pem");
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!(
        "[[policy]]\npath = \"/admin/*\"\ngroups = [\"admins\"]\n[saml]\nmode = \"optional\"\n{}",
        idp.idp_toml("testidp", &cert, "")
    );
    let gw = Gateway::start(o);
    let r = client().get(gw.url("/admin/x")).send().await.unwrap();
    assert_eq!(
        r.status(),
        401,
        "anonymous requests do not pass group rules"
    );
    let r = client().get(gw.url("/anything")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_without_identity() {
    let e = env_with("", "mode = \"optional\"");
    let r = client()
        .get(e.gw.url("/legacy-login"))
        .header("X-Portcullis-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = e.app.last();
    assert!(seen.all("x-portcullis-user").is_empty());
    assert!(seen.all("x-portcullis-jwt-assertion").is_empty());
}

#[tokio::test]
async fn bypass_paths_skip_sign_in_in_enforce_mode() {
    let e = env_with("", "bypass = [\"/break-glass/*\"]");
    let r = client()
        .get(e.gw.url("/break-glass/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(e.gw.url("/other")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

async fn directory(prefix: &str) -> portcullis::store::redis::RedisStore {
    portcullis::store::redis::RedisStore::connect(&redis_url(), prefix)
        .await
        .unwrap()
}

async fn sign_in(e: &Env, edit: impl FnOnce(&mut ResponseOpts)) -> reqwest::Response {
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    edit(&mut o);
    e.post(&e.idp.response_b64(&o), Some(&cookie), None).await
}

fn session_of(r: &reqwest::Response) -> String {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| cookie_pair(v.to_str().unwrap()))
        .find(|c| c.starts_with("portcullis_session="))
        .expect("session cookie")
}

async fn claims_after(e: &Env, session: &str) -> serde_json::Value {
    let r = client()
        .get(e.gw.url("/.portcullis/userinfo"))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn jit_creates_the_user_then_updates_it_on_login() {
    use portcullis::directory::{DirectoryStore, ProvisionedVia};
    let prefix = unique_prefix("jit");
    let e = env_on("", "", Some(prefix.clone()));
    let r = sign_in(&e, |_| {}).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    let dir = directory(&prefix).await;
    let u = dir
        .user_by_user_name("acme", "alice@example.com")
        .await
        .unwrap()
        .expect("JIT user");
    assert_eq!(u.provisioned_via, ProvisionedVia::SamlJit);
    assert_eq!(u.role, "member");
    assert_eq!(u.idp.as_deref(), Some("testidp"));
    assert_eq!(u.name.given_name.as_deref(), Some("Alice"));
    let me = claims_after(&e, &session_of(&r)).await;
    assert_eq!(me["sub"], u.id.as_str(), "sub is the directory id");
    assert_eq!(me["roles"], serde_json::json!(["member"]));

    // Next sign-in with a new name updates the record (update_on_login).
    let r = sign_in(&e, |o| {
        o.attributes[1] = ("firstName".into(), vec!["Alicia".into()]);
    })
    .await;
    assert_eq!(r.status(), 303);
    let again = dir
        .user_by_user_name("acme", "alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, u.id, "same user, not a second one");
    assert_eq!(again.name.given_name.as_deref(), Some("Alicia"));
    assert_eq!(
        claims_after(&e, &session_of(&r)).await["given_name"],
        "Alicia"
    );
}

#[tokio::test]
async fn jit_sign_ins_send_user_created_then_user_updated_webhooks() {
    use support::receiver::*;
    let rx = Receiver::start();
    let secret = secret();
    let hook = webhook_toml(
        "app",
        &rx.url(),
        &secret,
        "retry_initial = \"50ms\"\nretry_max = \"300ms\"\n",
    );
    let e = env_with("", &hook);
    assert_eq!(sign_in(&e, |_| {}).await.status(), 303, "{}", e.gw.log());
    // The same login again changes nothing: no event.
    assert_eq!(sign_in(&e, |_| {}).await.status(), 303);
    let r = sign_in(&e, |o| {
        o.attributes[1] = ("firstName".into(), vec!["Alicia".into()]);
    })
    .await;
    assert_eq!(r.status(), 303);
    let got = rx
        .wait_for(
            "two JIT events",
            std::time::Duration::from_secs(10),
            || e.gw.log(),
            |g| g.len() >= 2,
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 2, "exactly two events");
    let kinds: Vec<&str> = got.iter().map(|g| g.kind()).collect();
    assert_eq!(kinds, ["user.created", "user.updated"]);
    for g in &got {
        assert_eq!(g.json["source"], "saml_jit");
        assert_eq!(g.json["actor"], "testidp");
        assert_eq!(g.json["tenant"], "acme");
        assert_eq!(g.json["data"]["userName"], "alice@example.com");
    }
    assert_eq!(got[0].json["data"]["name"]["givenName"], "Alice");
    assert_eq!(got[1].json["data"]["name"]["givenName"], "Alicia");
    let changed = got[1].json["data"]["changedAttributes"].as_array().unwrap();
    assert!(changed.contains(&serde_json::json!("name")), "{changed:?}");
    assert_eq!(got[0].json["data"]["id"], got[1].json["data"]["id"]);
    verify_independently(&secret, &got);
}

#[tokio::test]
async fn directory_groups_are_merged_with_the_asserted_ones() {
    use portcullis::directory::{DirectoryStore, Group, User};
    let prefix = unique_prefix("groups");
    let e = env_on("", "", Some(prefix.clone()));
    let dir = directory(&prefix).await;
    let u = dir
        .create_user("acme", User::new("alice@example.com"))
        .await
        .unwrap();
    let g = dir
        .create_group(
            "acme",
            Group {
                display_name: "Finance".into(),
                ..Group::default()
            },
        )
        .await
        .unwrap();
    dir.add_members("acme", &g.id, std::slice::from_ref(&u.id))
        .await
        .unwrap();
    let r = sign_in(&e, |_| {}).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    let me = claims_after(&e, &session_of(&r)).await;
    assert_eq!(
        me["groups"],
        serde_json::json!(["Finance", "admins", "staff"])
    );
    assert_eq!(me["sub"], u.id.as_str());
}

#[tokio::test]
async fn a_deactivated_user_is_refused() {
    use portcullis::directory::{DirectoryStore, User};
    let prefix = unique_prefix("deact");
    let e = env_on("", "", Some(prefix.clone()));
    let dir = directory(&prefix).await;
    let mut u = dir
        .create_user("acme", User::new("alice@example.com"))
        .await
        .unwrap();
    u.active = false;
    dir.replace_user("acme", u, None).await.unwrap();
    let (id, cookie) = e.begin("/").await;
    let got = e
        .refused(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), 403)
        .await;
    assert_eq!(got, "user_deactivated");
}

#[tokio::test]
async fn without_jit_an_unknown_user_is_refused() {
    let e = env_with("[saml.idp.jit]\nenabled = false", "");
    let (id, cookie) = e.begin("/").await;
    let got = e
        .refused(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), 403)
        .await;
    assert_eq!(got, "user_not_provisioned");
}

const SLO: &str = "slo_url = \"https://idp.example.test/slo/testidp\"";

fn inflate_param(location: &str, param: &str) -> String {
    let url = url::Url::parse(location).unwrap();
    let v = url
        .query_pairs()
        .find(|(k, _)| k == param)
        .map(|(_, v)| v.into_owned())
        .unwrap();
    portcullis::saml::slo::inflate(&v).unwrap()
}

#[tokio::test]
async fn sign_out_ends_the_session_and_sends_a_logout_request_to_the_idp() {
    let e = env_with(SLO, "");
    let r = sign_in(&e, |o| o.session_index = "_idx-42".into()).await;
    let session = session_of(&r);
    let r = client()
        .get(e.gw.url("/.portcullis/logout"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        location.starts_with("https://idp.example.test/slo/testidp?SAMLRequest="),
        "{location}"
    );
    let xml = inflate_param(&location, "SAMLRequest");
    assert!(xml.contains(">alice@example.com</saml:NameID>"), "{xml}");
    assert!(
        xml.contains("<samlp:SessionIndex>_idx-42</samlp:SessionIndex>"),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("<saml:Issuer>{}</saml:Issuer>", e.entity)),
        "{xml}"
    );
    let r = client()
        .get(e.gw.url("/.portcullis/userinfo"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the local session ended before the IdP answered"
    );
    // The IdP's LogoutResponse lands on the signed-out page.
    let r = client()
        .get(e.gw.url("/.portcullis/saml/slo?SAMLResponse=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
}

#[tokio::test]
async fn an_idp_logout_request_ends_that_users_sessions_and_is_answered() {
    let e = env_with(SLO, "");
    let one = session_of(&sign_in(&e, |_| {}).await);
    let two = session_of(&sign_in(&e, |_| {}).await);
    let (id, path) = e.idp.logout_redirect(
        &format!("{}/.portcullis/saml/slo", e.entity),
        "alice@example.com",
        None,
        true,
    );
    let r = client().get(e.gw.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", e.gw.log());
    // The same signed request again is a replay.
    let again = client().get(e.gw.url(&path)).send().await.unwrap();
    assert_eq!(again.status(), 400);
    let location = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        location.starts_with("https://idp.example.test/slo/testidp?SAMLResponse="),
        "{location}"
    );
    assert!(location.contains("RelayState=back-to-idp"));
    let xml = inflate_param(&location, "SAMLResponse");
    assert!(
        xml.contains(&format!("InResponseTo=\"{id}\"")) && xml.contains("status:Success"),
        "{xml}"
    );
    for s in [&one, &two] {
        let r = client()
            .get(e.gw.url("/.portcullis/userinfo"))
            .header(COOKIE, s)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
}

#[tokio::test]
async fn an_idp_logout_request_on_the_post_binding_is_verified_and_honoured() {
    let e = env_with(SLO, "");
    let session = session_of(&sign_in(&e, |_| {}).await);
    let (_, b64) = e.idp.logout_post_b64(
        &format!("{}/.portcullis/saml/slo", e.entity),
        "alice@example.com",
    );
    let r = client()
        .post(e.gw.url("/.portcullis/saml/slo"))
        .form(&[("SAMLRequest", b64)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", e.gw.log());
    let r = client()
        .get(e.gw.url("/.portcullis/userinfo"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn forged_logout_requests_are_refused_and_end_nothing() {
    let e = env_with(SLO, "");
    let session = session_of(&sign_in(&e, |_| {}).await);
    let attacker = TestIdp::new(&e.idp.entity_id);
    let (_, unsigned) = e.idp.logout_redirect(
        &format!("{}/.portcullis/saml/slo", e.entity),
        "alice@example.com",
        None,
        false,
    );
    let (_, forged) = attacker.logout_redirect(
        &format!("{}/.portcullis/saml/slo", e.entity),
        "alice@example.com",
        None,
        true,
    );
    let sha1 = format!(
        "{unsigned}&SigAlg={}&Signature=AAAA",
        urlencode("http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    );
    for (path, reason) in [
        (unsigned, "unsigned"),
        (forged, "bad_signature"),
        (sha1, "sha1_refused"),
    ] {
        let r = client().get(e.gw.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{reason}");
        let page = r.text().await.unwrap();
        let reference = page
            .split("<code>")
            .nth(1)
            .unwrap()
            .split("</code>")
            .next()
            .unwrap()
            .to_string();
        let log = e.gw.log();
        let line = log
            .lines()
            .find(|l| l.contains(&reference))
            .unwrap_or_default()
            .to_string();
        assert!(
            line.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {line}"
        );
    }
    let r = client()
        .get(e.gw.url("/.portcullis/userinfo"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "no forged request ended the session");
}

#[tokio::test]
async fn with_an_sp_key_authn_requests_are_signed_and_the_metadata_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // An SP key pair made by the test (the TestIdp generator makes the same kind).
    let sp = TestIdp::new("sp");
    let sp_cert = sp.write_cert(dir.path(), "sp.crt");
    let sp_key = dir.path().join("sp.key");
    std::fs::write(&sp_key, sp.private_key_pem()).unwrap();
    let e = env_with(
        "",
        &format!(
            "sp_key = \"{}\"\nsp_cert = \"{}\"",
            sp_key.display(),
            sp_cert.display()
        ),
    );
    let r = client()
        .get(e.gw.url("/.portcullis/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert!(location.query_pairs().any(|(k, _)| k == "Signature"));
    let cert = openssl::x509::X509::from_pem(sp.cert_pem.as_bytes()).unwrap();
    let verifier = samael::crypto::UrlVerifier::from_x509(&samael::crypto::CertificateDer::from(
        cert.to_der().unwrap(),
    ))
    .unwrap();
    assert!(
        verifier.verify_signed_request_url(&location).unwrap(),
        "AuthnRequest signed with the SP key"
    );
    let md = client()
        .get(e.gw.url("/.portcullis/saml/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(md.contains("AuthnRequestsSigned=\"true\""), "{md}");
    assert!(md.contains(&sp.cert_b64), "SP certificate published");
    assert!(
        md.contains("<md:KeyDescriptor use=\"encryption\">")
            && md.contains("Algorithm=\"http://www.w3.org/2009/xmlenc11#aes256-gcm\"")
            && md.contains("Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\""),
        "encryption key and accepted algorithms published: {md}"
    );
}

#[tokio::test]
async fn every_configured_certificate_is_trusted_during_rollover() {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let old = TestIdp::new("https://idp.example.test/metadata");
    let new = TestIdp::new("https://idp.example.test/metadata");
    let (co, cn) = (
        old.write_cert(dir.path(), "old.pem"),
        new.write_cert(dir.path(), "new.pem"),
    );
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!(
        "[saml]\n[[saml.idp]]\nid = \"testidp\"\nentity_id = \"{}\"\nsso_url = \"https://idp.example.test/sso/testidp\"\ncertificate = [\"{}\", \"{}\"]\nallow_idp_initiated = true\nidp_initiated_confirm = false\n",
        old.entity_id,
        co.display(),
        cn.display()
    );
    let gw = Gateway::start(o);
    let entity = format!("http://localhost:{}", gw.port);
    let acs = format!("{entity}/.portcullis/saml/acs");
    for idp in [&old, &new] {
        let b64 = idp.response_b64(&ResponseOpts::new(&acs, &entity, None));
        let r = client()
            .post(gw.url("/.portcullis/saml/acs"))
            .form(&[("SAMLResponse", b64)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{}", gw.log());
    }
}

#[tokio::test]
async fn an_idp_can_be_configured_from_its_metadata_file() {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let md = format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
<ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.example.test/sso/fromfile\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
        idp.entity_id, idp.cert_b64
    );
    let md_path = dir.path().join("idp-metadata.xml");
    std::fs::write(&md_path, md).unwrap();
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!(
        "[saml]\n[[saml.idp]]\nid = \"fromfile\"\nmetadata_file = \"{}\"\nallow_idp_initiated = true\nidp_initiated_confirm = false\n",
        md_path.display()
    );
    let gw = Gateway::start(o);
    let r = client()
        .get(gw.url("/.portcullis/login"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("https://idp.example.test/sso/fromfile?"));
    let entity = format!("http://localhost:{}", gw.port);
    let b64 = idp.response_b64(&ResponseOpts::new(
        &format!("{entity}/.portcullis/saml/acs"),
        &entity,
        None,
    ));
    let r = client()
        .post(gw.url("/.portcullis/saml/acs"))
        .form(&[("SAMLResponse", b64)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", gw.log());
}

#[test]
fn an_idp_without_a_signing_certificate_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let md_path = dir.path().join("nocert.xml");
    std::fs::write(
        &md_path,
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"https://idp.example/\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.example/sso\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
    )
    .unwrap();
    let key = dir.path().join("k.pem");
    portcullis::identity::keys::generate_to_file(portcullis::config::JwtAlgorithm::ES256, &key)
        .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"https://app.example.com\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[store]\npath = \"{}\"\n[identity]\nsigning_key = \"{}\"\n[saml]\n[[saml.idp]]\nid = \"x\"\nmetadata_file = \"{}\"\n",
            dir.path().join("state").display(),
            key.display(),
            md_path.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("saml.idp[0].certificate") && err.contains("no signing certificate"),
        "{err}"
    );
}

fn metadata_for(idp: &TestIdp) -> String {
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
<ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"https://idp.example.test/sso/remote\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
        idp.entity_id, idp.cert_b64
    )
}

#[tokio::test]
async fn metadata_url_is_fetched_refreshed_and_kept_when_the_idp_is_down() {
    use std::sync::{Arc, Mutex};
    let first = TestIdp::new("https://idp.example.test/metadata");
    let rotated = TestIdp::new("https://idp.example.test/metadata");
    // What the IdP's metadata endpoint serves; None = it is down (503).
    let served: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(Some(metadata_for(&first))));
    let s2 = served.clone();
    let md_port = serve_in_background(axum::Router::new().route(
        "/metadata",
        axum::routing::get(move || {
            let s = s2.clone();
            async move {
                match s.lock().unwrap().clone() {
                    Some(xml) => (axum::http::StatusCode::OK, xml),
                    None => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                }
            }
        }),
    ));
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!(
        "[saml]\nmetadata_cache_dir = \"{}\"\ninsecure_loopback_metadata_for_tests = true\n[[saml.idp]]\nid = \"remote\"\nmetadata_url = \"http://127.0.0.1:{md_port}/metadata\"\nmetadata_refresh = \"10s\"\nallow_idp_initiated = true\nidp_initiated_confirm = false\n",
        dir.path().display()
    );
    let mut gw = Gateway::start(o);
    let entity = format!("http://localhost:{}", gw.port);
    let acs = format!("{entity}/.portcullis/saml/acs");
    let post = |idp: &TestIdp| {
        let b64 = idp.response_b64(&ResponseOpts::new(&acs, &entity, None));
        let url = gw.url("/.portcullis/saml/acs");
        async move {
            client()
                .post(url)
                .form(&[("SAMLResponse", b64)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        post(&first).await,
        303,
        "signed with the fetched certificate: {}",
        gw.log()
    );
    assert_eq!(post(&rotated).await, 400, "not yet published");

    // The IdP rotates its key: after a refresh the new certificate is trusted.
    *served.lock().unwrap() = Some(metadata_for(&rotated));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if post(&rotated).await == 303 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refresh never picked up the new metadata:\n{}",
            gw.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // The IdP goes down and the gateway restarts: the cached copy is used.
    *served.lock().unwrap() = None;
    gw.restart();
    let entity2 = format!("http://localhost:{}", gw.port);
    let b64 = rotated.response_b64(&ResponseOpts::new(
        &format!("{entity2}/.portcullis/saml/acs"),
        &entity2,
        None,
    ));
    let r = client()
        .post(gw.url("/.portcullis/saml/acs"))
        .form(&[("SAMLResponse", b64)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", gw.log());
    assert!(gw.log().contains("keeping the last good copy"));
}

#[tokio::test]
async fn an_idp_cannot_sign_in_a_user_of_another_idp_or_foreign_domain() {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let a = TestIdp::new("https://idp-a.example/");
    let b = TestIdp::new("https://idp-b.example/");
    let (ca, cb) = (
        a.write_cert(dir.path(), "a.pem"),
        b.write_cert(dir.path(), "b.pem"),
    );
    let mut o = GatewayOpts::new(&app.url());
    // Both IdPs deliberately share a tenant (e.g. during a migration).
    o.extra = format!(
        "[saml]\n{}{}",
        a.idp_toml("a", &ca, "tenant = \"shared\"\ndomains = [\"example.com\"]"),
        b.idp_toml("b", &cb, "tenant = \"shared\"")
    );
    let gw = Gateway::start(o);
    let entity = format!("http://localhost:{}", gw.port);
    let acs = format!("{entity}/.portcullis/saml/acs");
    let post = |idp: &TestIdp, name_id: &str, email: &str| {
        let mut o = ResponseOpts::new(&acs, &entity, None);
        o.name_id = name_id.into();
        o.attributes[0] = ("email".into(), vec![email.into()]);
        let b64 = idp.response_b64(&o);
        let url = gw.url("/.portcullis/saml/acs");
        async move {
            client()
                .post(url)
                .form(&[("SAMLResponse", b64)])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        post(&a, "ceo@example.com", "ceo@example.com")
            .await
            .status(),
        303,
        "{}",
        gw.log()
    );
    // IdP B asserts the same person: refused, the account belongs to IdP A.
    let r = post(&b, "ceo@example.com", "ceo@example.com").await;
    assert_eq!(r.status(), 403);
    assert!(gw.log().contains("reason=\"wrong_idp\""));
    // IdP A (routed for example.com) vouching for another domain: refused.
    let r = post(&a, "x@other.org", "x@other.org").await;
    assert_eq!(r.status(), 403);
    assert!(gw.log().contains("reason=\"foreign_email_domain\""));
}

#[tokio::test]
async fn a_user_deleted_by_scim_does_not_come_back_through_jit() {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("https://idp.example.test/metadata");
    let cert = idp.write_cert(dir.path(), "idp.pem");
    let token = portcullis::secret::new_token("scim_");
    let mut o = GatewayOpts::new(&app.url());
    o.extra = format!(
        "[saml]\n{}[scim]\n[[scim.client]]\nname = \"jc\"\ntoken_hash = \"{}\"\ntenant = \"acme\"\n",
        idp.idp_toml("testidp", &cert, "tenant = \"acme\""),
        portcullis::secret::TokenHash::of(&token)
    );
    let gw = Gateway::start(o);
    let entity = format!("http://localhost:{}", gw.port);
    let acs = format!("{entity}/.portcullis/saml/acs");
    let scim = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut rb = client()
            .request(method, gw.url(&format!("/scim/v2{path}")))
            .bearer_auth(&token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send()
    };
    let sign_in = || {
        let b64 = idp.response_b64(&ResponseOpts::new(&acs, &entity, None));
        client()
            .post(gw.url("/.portcullis/saml/acs"))
            .form(&[("SAMLResponse", b64)])
            .send()
    };
    let created: serde_json::Value = scim(
        reqwest::Method::POST,
        "/Users",
        Some(serde_json::json!({"userName": "alice@example.com"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(sign_in().await.unwrap().status(), 303);
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        scim(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        sign_in().await.unwrap().status(),
        403,
        "no JIT resurrection: {}",
        gw.log()
    );
    // Provisioned again by SCIM: sign-in works again.
    let r = scim(
        reqwest::Method::POST,
        "/Users",
        Some(serde_json::json!({"userName": "alice@example.com"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(sign_in().await.unwrap().status(), 303);
}

#[tokio::test]
async fn a_forged_response_does_not_burn_the_pending_request() {
    let e = env();
    let attacker = TestIdp::new("https://idp.example.test/metadata");
    let (id, cookie) = e.begin("/").await;
    let mut forged = e.opts(Some(&id));
    forged.signer = Some(&attacker);
    assert_eq!(
        e.refused(&e.idp.response_b64(&forged), Some(&cookie), 400)
            .await,
        "bad_signature"
    );
    let r = e
        .post(&e.idp.response_b64(&e.opts(Some(&id))), Some(&cookie), None)
        .await;
    assert_eq!(
        r.status(),
        303,
        "the genuine response still completes the sign-in"
    );
}

// ---- Encrypted assertions (XML Encryption by xmlsec1, keys made here) ----

/// An SP key pair made by the test in `dir`, and the `[saml]` lines for it.
fn sp_keypair(dir: &std::path::Path) -> (TestIdp, String) {
    let sp = TestIdp::new("sp");
    let cert = sp.write_cert(dir, "sp.crt");
    let key = dir.join("sp.key");
    std::fs::write(&key, sp.private_key_pem()).unwrap();
    let toml = format!(
        "sp_key = \"{}\"\nsp_cert = \"{}\"",
        key.display(),
        cert.display()
    );
    (sp, toml)
}

/// A gateway with an SP key; returns it, the SP key pair and the key's directory.
fn env_with_sp_key(idp_extra: &str) -> (Env, TestIdp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (sp, saml) = sp_keypair(dir.path());
    (env_with(idp_extra, &saml), sp, dir)
}

/// Encrypts the assertion for `cert_pem` with the default (AES-256-CBC, RSA-OAEP).
fn encrypted_for(cert_pem: &str) -> impl FnOnce(&mut ResponseOpts) + '_ {
    move |o: &mut ResponseOpts| o.encrypt_for = Some(Encryption::new(cert_pem))
}

#[tokio::test]
async fn an_encrypted_assertion_in_a_signed_response_signs_in() {
    let (e, sp, _dir) = env_with_sp_key("");
    let mut layouts: Vec<Encryption> = ContentCipher::ALL
        .iter()
        .map(|c| Encryption {
            cipher: *c,
            ..Encryption::new(&sp.cert_pem)
        })
        .collect();
    layouts.push(Encryption {
        detached_key: true,
        ..Encryption::new(&sp.cert_pem)
    });
    for enc in layouts {
        let (id, cookie) = e.begin("/reports").await;
        let mut o = e.opts(Some(&id));
        o.sign_assertion = false;
        o.encrypt_for = Some(enc.clone());
        let xml = e.idp.response_xml(&o);
        assert!(
            xml.contains("<saml:EncryptedAssertion") && !xml.contains("alice@example.com"),
            "{xml}"
        );
        let r = e.post(&b64(&xml), Some(&cookie), None).await;
        assert_eq!(r.status(), 303, "{enc:?}: {}", e.gw.log());
        assert_eq!(r.headers()[LOCATION], "/reports");
        let me = claims_after(&e, &session_of(&r)).await;
        assert_eq!(me["email"], "alice@example.com", "{enc:?}");
        assert_eq!(
            me["groups"],
            serde_json::json!(["admins", "staff"]),
            "{enc:?}"
        );
    }
}

#[tokio::test]
async fn an_encrypted_idp_initiated_assertion_is_accepted_once() {
    let (e, sp, _dir) = env_with_sp_key("");
    let mut o = e.opts(None);
    encrypted_for(&sp.cert_pem)(&mut o);
    let b64 = e.idp.response_b64(&o);
    let r = e.post(&b64, None, Some("/dashboard")).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    assert_eq!(r.headers()[LOCATION], "/dashboard");
    assert_eq!(e.refused(&b64, None, 400).await, "replay");
}

#[tokio::test]
async fn an_encrypted_assertion_signed_inside_signs_in_when_the_assertion_must_be_signed() {
    let (e, sp, _dir) = env_with_sp_key("require_signature = \"assertion\"");
    for (sign_response, cipher) in [
        (false, ContentCipher::Aes256Cbc),
        (false, ContentCipher::Aes128Gcm),
        (true, ContentCipher::Aes256Gcm),
    ] {
        let r = sign_in(&e, |o| {
            o.sign_response = sign_response;
            o.sign_assertion = true;
            o.encrypt_for = Some(Encryption {
                cipher,
                ..Encryption::new(&sp.cert_pem)
            });
        })
        .await;
        assert_eq!(
            r.status(),
            303,
            "response signed: {sign_response}, {cipher:?}: {}",
            e.gw.log()
        );
        let me = claims_after(&e, &session_of(&r)).await;
        assert_eq!(me["email"], "alice@example.com");
    }
}

#[tokio::test]
async fn refuses_an_encrypted_assertion_unsigned_inside_when_the_assertion_must_be_signed() {
    let (e, sp, _dir) = env_with_sp_key("require_signature = \"assertion\"");
    e.assert_refused(
        |o| {
            encrypted_for(&sp.cert_pem)(o);
            o.sign_response = true;
            o.sign_assertion = false;
        },
        "unsigned",
    )
    .await;
}

#[tokio::test]
async fn refuses_an_encrypted_assertion_without_a_required_response_signature() {
    let (e, sp, _dir) = env_with_sp_key("require_signature = \"response\"");
    e.assert_refused(
        |o| {
            encrypted_for(&sp.cert_pem)(o);
            o.sign_response = false;
            o.sign_assertion = true;
        },
        "unsigned",
    )
    .await;
}

#[tokio::test]
async fn refuses_an_encrypted_assertion_signed_by_nobody_or_by_another_key() {
    // Anyone can encrypt for the SP's published certificate: encryption
    // proves nothing about the sender.
    let (e, sp, _dir) = env_with_sp_key("");
    let attacker = TestIdp::new("https://idp.example.test/metadata");
    e.assert_refused(
        |o| {
            encrypted_for(&sp.cert_pem)(o);
            o.sign_response = false;
            o.sign_assertion = false;
        },
        "unsigned",
    )
    .await;
    for sign_response in [false, true] {
        let (id, cookie) = e.begin("/").await;
        let mut o = e.opts(Some(&id));
        encrypted_for(&sp.cert_pem)(&mut o);
        o.signer = Some(&attacker);
        o.sign_response = sign_response;
        o.sign_assertion = !sign_response;
        assert_eq!(
            e.refused(&e.idp.response_b64(&o), Some(&cookie), 400).await,
            "bad_signature",
            "response signed: {sign_response}"
        );
    }
}

#[tokio::test]
async fn refuses_an_assertion_encrypted_for_another_key() {
    let (e, _sp, _dir) = env_with_sp_key("");
    let other = TestIdp::new("another-sp");
    for (sign_response, sign_assertion) in [(true, false), (false, true)] {
        e.assert_refused(
            |o| {
                encrypted_for(&other.cert_pem)(o);
                o.sign_response = sign_response;
                o.sign_assertion = sign_assertion;
            },
            "decryption_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn refuses_an_encrypted_assertion_when_no_sp_key_is_configured() {
    let e = env();
    let sp = TestIdp::new("sp");
    e.assert_refused(encrypted_for(&sp.cert_pem), "no_sp_key")
        .await;
}

#[tokio::test]
async fn refuses_tampered_ciphertext_and_keeps_serving() {
    let (e, sp, _dir) = env_with_sp_key("");
    // The Response signature covers the ciphertext: checked before decrypting.
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    encrypted_for(&sp.cert_pem)(&mut o);
    let xml = tamper_ciphertext(&e.idp.response_xml(&o), 20);
    assert_eq!(
        e.refused(&b64(&xml), Some(&cookie), 400).await,
        "bad_signature"
    );
    // Only the inner assertion signed: decryption itself fails (GCM's tag),
    // or, for CBC, the garbled plaintext or its signature does.
    for (cipher, from_end) in [
        (ContentCipher::Aes128Gcm, 0),
        (ContentCipher::Aes256Gcm, 40),
        (ContentCipher::Aes256Cbc, 0),
        (ContentCipher::Aes256Cbc, 16),
        (ContentCipher::Aes128Cbc, 100),
    ] {
        let (id, cookie) = e.begin("/").await;
        let mut o = e.opts(Some(&id));
        o.sign_response = false;
        o.encrypt_for = Some(Encryption {
            cipher,
            ..Encryption::new(&sp.cert_pem)
        });
        let xml = tamper_ciphertext(&e.idp.response_xml(&o), from_end);
        let reason = e.refused(&b64(&xml), Some(&cookie), 400).await;
        if matches!(cipher, ContentCipher::Aes128Gcm | ContentCipher::Aes256Gcm) {
            assert_eq!(reason, "decryption_failed", "{cipher:?}");
        } else {
            assert!(
                ["decryption_failed", "bad_signature", "malformed"].contains(&reason.as_str()),
                "{cipher:?} byte {from_end}: {reason}"
            );
        }
    }
    assert_eq!(e.app.count(), 0);
    // The gateway is still up and a genuine encrypted response gets through.
    let r = sign_in(&e, encrypted_for(&sp.cert_pem)).await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
}

#[tokio::test]
async fn refuses_plain_and_encrypted_assertions_together() {
    let (e, sp, _dir) = env_with_sp_key("");
    for encrypted_first in [true, false] {
        let (id, cookie) = e.begin("/").await;
        let o = e.opts(Some(&id));
        let plain = e.idp.assertion(&o);
        let mut evil = e.opts(Some(&id));
        evil.name_id = "mallory@example.com".into();
        let encrypted = encrypt_assertion(&e.idp.assertion(&evil), &Encryption::new(&sp.cert_pem));
        let both = if encrypted_first {
            format!("{encrypted}{plain}")
        } else {
            format!("{plain}{encrypted}")
        };
        let xml = e.idp.wrap(&o, &both);
        assert_eq!(
            e.refused(&b64(&xml), Some(&cookie), 400).await,
            "mixed_assertions",
            "encrypted first: {encrypted_first}"
        );
    }
}

#[tokio::test]
async fn refuses_wrapped_or_nested_encrypted_assertions() {
    let (e, sp, _dir) = env_with_sp_key("");
    // A genuine signed response with an encrypted assertion, wrapped in an
    // unsigned one carrying the attacker's own encrypted assertion.
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    encrypted_for(&sp.cert_pem)(&mut o);
    let genuine = e.idp.response_xml(&o);
    let mut evil = e.opts(Some(&id));
    evil.sign_response = false;
    evil.sign_assertion = false;
    evil.name_id = "mallory@example.com".into();
    let evil_encrypted = encrypt_assertion(&e.idp.assertion(&evil), &Encryption::new(&sp.cert_pem));
    let xml = e.idp.wrap(
        &evil,
        &format!("{evil_encrypted}<samlp:Extensions>{genuine}</samlp:Extensions>"),
    );
    assert_eq!(e.refused(&b64(&xml), Some(&cookie), 400).await, "malformed");
    // A signed assertion wrapped inside the attacker's unsigned one, encrypted.
    let (id, cookie) = e.begin("/").await;
    let mut signed = e.opts(Some(&id));
    signed.sign_response = false;
    let inner = e.idp.assertion(&signed);
    let mut evil = e.opts(Some(&id));
    evil.sign_response = false;
    evil.sign_assertion = false;
    evil.name_id = "mallory@example.com".into();
    let wrapper = e.idp.assertion(&evil).replacen(
        "<saml:Subject>",
        &format!("<saml:Advice>{inner}</saml:Advice><saml:Subject>"),
        1,
    );
    let xml = e.idp.wrap(
        &evil,
        &encrypt_assertion(&wrapper, &Encryption::new(&sp.cert_pem)),
    );
    assert_eq!(e.refused(&b64(&xml), Some(&cookie), 400).await, "malformed");
}

#[tokio::test]
async fn refuses_pkcs1_v15_key_transport() {
    let (e, sp, _dir) = env_with_sp_key("");
    e.assert_refused(
        |o| {
            o.encrypt_for = Some(Encryption {
                key_transport: RSA_1_5,
                ..Encryption::new(&sp.cert_pem)
            })
        },
        "encryption_unsupported",
    )
    .await;
}

#[tokio::test]
async fn a_decrypted_assertion_gets_the_checks_of_a_plain_one() {
    let (e, sp, _dir) = env_with_sp_key("");
    let enc = || Some(Encryption::new(&sp.cert_pem));
    e.assert_refused(
        |o| {
            o.encrypt_for = enc();
            o.audience = Some("https://another-sp.example".into());
        },
        "audience_mismatch",
    )
    .await;
    e.assert_refused(
        |o| {
            o.encrypt_for = enc();
            o.recipient = "https://evil.example/acs".into();
        },
        "recipient_mismatch",
    )
    .await;
    e.assert_refused(
        |o| {
            o.encrypt_for = enc();
            o.not_on_or_after = Utc::now() - Duration::minutes(5);
            o.issue_instant = Utc::now() - Duration::minutes(6);
            o.not_before = Utc::now() - Duration::minutes(7);
        },
        "expired",
    )
    .await;
    e.assert_refused(
        |o| {
            o.encrypt_for = enc();
            o.destination = Some("https://evil.example/acs".into());
        },
        "destination_mismatch",
    )
    .await;
    e.assert_refused(
        |o| {
            o.encrypt_for = enc();
            o.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".into();
        },
        "status_not_success",
    )
    .await;
    // Inner signature with SHA-1 (the Response is not signed).
    e.assert_refused(
        |o| {
            o.encrypt_for = enc();
            o.sign_response = false;
            o.sha1 = true;
        },
        "sha1_refused",
    )
    .await;
    // A comment inside the encrypted NameID (signatures ignore comments).
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.sign_response = false;
    o.name_id = "user@evil.com.example.com".into();
    let assertion = e.idp.assertion(&o).replace(
        "user@evil.com.example.com</saml:NameID>",
        "user@evil.com<!---->.example.com</saml:NameID>",
    );
    let xml = e.idp.wrap(
        &o,
        &encrypt_assertion(&assertion, &Encryption::new(&sp.cert_pem)),
    );
    assert_eq!(
        e.refused(&b64(&xml), Some(&cookie), 400).await,
        "xml_comment"
    );
}

// ---- Trust boundaries between IdPs, SCIM clients and tenants ----

/// A gateway with several IdPs: `(id, extra keys of its [[saml.idp]])`,
/// then `extra` (e.g. a `[scim]` section). IdP `id` has the entity id
/// `https://idp-<id>.example/`.
struct Multi {
    gw: Gateway,
    idps: Vec<(String, TestIdp)>,
    entity: String,
    acs: String,
    _app: RecordingApp,
    _dir: tempfile::TempDir,
}

fn multi(idps: &[(&str, &str)], extra: &str, redis_prefix: Option<String>) -> Multi {
    let app = RecordingApp::start();
    let dir = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    let mut toml = String::from("[saml]\n");
    for (id, keys) in idps {
        let idp = TestIdp::new(&format!("https://idp-{id}.example/"));
        let cert = idp.write_cert(dir.path(), &format!("{id}.pem"));
        toml.push_str(&idp.idp_toml(id, &cert, keys));
        made.push((id.to_string(), idp));
    }
    let mut o = GatewayOpts::new(&app.url());
    o.redis_prefix = redis_prefix;
    o.extra = format!("{toml}{extra}");
    let gw = Gateway::start(o);
    let entity = format!("http://localhost:{}", gw.port);
    Multi {
        acs: format!("{entity}/.portcullis/saml/acs"),
        entity,
        gw,
        idps: made,
        _app: app,
        _dir: dir,
    }
}

/// A `[scim]` section with one client.
fn scim_client_toml(name: &str, token: &str, tenant: &str, keys: &str) -> String {
    format!(
        "[scim]\n[[scim.client]]\nname = \"{name}\"\ntoken_hash = \"{}\"\ntenant = \"{tenant}\"\n{keys}\n",
        portcullis::secret::TokenHash::of(token)
    )
}

impl Multi {
    /// An IdP-initiated response from `idp` with this NameID and email, posted to the ACS.
    async fn sign_in(&self, idp: &str, name_id: &str, email: &str) -> reqwest::Response {
        self.sign_in_with(idp, |o| {
            o.name_id = name_id.into();
            o.attributes[0] = ("email".into(), vec![email.into()]);
        })
        .await
    }

    async fn sign_in_with(
        &self,
        idp: &str,
        edit: impl FnOnce(&mut ResponseOpts),
    ) -> reqwest::Response {
        let signer = &self.idps.iter().find(|(id, _)| id == idp).unwrap().1;
        let mut o = ResponseOpts::new(&self.acs, &self.entity, None);
        edit(&mut o);
        client()
            .post(self.gw.url("/.portcullis/saml/acs"))
            .form(&[("SAMLResponse", signer.response_b64(&o))])
            .send()
            .await
            .unwrap()
    }

    /// The status of a refused sign-in and the reason logged for it.
    async fn refusal(&self, r: reqwest::Response) -> (u16, String) {
        let status = r.status().as_u16();
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Sign-in failed"),
            "{status} {page}\n{}",
            self.gw.log()
        );
        (status, logged_reason(&self.gw, &page).await)
    }

    async fn me(&self, session: &str) -> (u16, serde_json::Value) {
        let r = client()
            .get(self.gw.url("/.portcullis/userinfo"))
            .header(COOKIE, session)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn scim(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = client()
            .request(method, self.gw.url(&format!("/scim/v2{path}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}

#[tokio::test]
async fn an_idp_cannot_sign_in_a_scim_user_of_another_idp_by_its_name_id() {
    let token = portcullis::secret::new_token("scim_");
    let m = multi(
        &[
            ("a", "tenant = \"shared\"\ndomains = [\"a.example\"]"),
            ("b", "tenant = \"shared\"\ndomains = [\"b.example\"]"),
            ("c", "tenant = \"shared\""),
        ],
        // The SCIM client named like IdP `a` is tied to it.
        &scim_client_toml("a", &token, "shared", ""),
        None,
    );
    let (st, ceo) = m
        .scim(
            &token,
            reqwest::Method::POST,
            "/Users",
            serde_json::json!({"userName": "ceo@a.example", "emails": [{"value": "ceo@a.example", "primary": true}]}),
        )
        .await;
    assert_eq!(st, 201, "{ceo}");
    // IdP B asserts the CEO's NameID with an email in its own domain.
    let r = m.sign_in("b", "ceo@a.example", "ceo@b.example").await;
    assert_eq!(m.refusal(r).await, (403, "user_not_owned".to_string()));
    // ...or a NameID in A's domain for a user that does not exist yet.
    let r = m.sign_in("b", "cfo@a.example", "cfo@b.example").await;
    assert_eq!(
        m.refusal(r).await,
        (403, "foreign_email_domain".to_string())
    );
    // IdP C, routed for no domain, asserts the CEO outright.
    let r = m.sign_in("c", "ceo@a.example", "ceo@a.example").await;
    assert_eq!(m.refusal(r).await, (403, "user_not_owned".to_string()));
    // IdP A still signs the CEO in, as the SCIM user: nobody locked them out.
    let r = m.sign_in("a", "ceo@a.example", "ceo@a.example").await;
    assert_eq!(r.status(), 303, "{}", m.gw.log());
    let (st, me) = m.me(&session_of(&r)).await;
    assert_eq!(st, 200);
    assert_eq!(me["sub"], ceo["id"], "{me}");
}

#[tokio::test]
async fn a_jit_user_of_an_untied_idp_is_reset_when_the_scim_client_adopts_it() {
    let token = portcullis::secret::new_token("scim_");
    // Neither IdP is routed by domain; only `a` is tied to the SCIM client `a`.
    let m = multi(
        &[("a", "tenant = \"shared\""), ("c", "tenant = \"shared\"")],
        &scim_client_toml("a", &token, "shared", ""),
        None,
    );
    // IdP C creates cfo@a.example first (JIT).
    let r = m.sign_in("c", "cfo@a.example", "cfo@a.example").await;
    assert_eq!(r.status(), 303, "{}", m.gw.log());
    let c_session = session_of(&r);
    let (_, jit) = m.me(&c_session).await;
    // A's SCIM client provisions the real CFO: the JIT user is linked...
    let (st, adopted) = m
        .scim(
            &token,
            reqwest::Method::POST,
            "/Users",
            serde_json::json!({"userName": "cfo@a.example"}),
        )
        .await;
    assert_eq!(st, 201, "{adopted}");
    assert_eq!(adopted["id"], jit["sub"]);
    // ...but no longer C's: C's session ends and C cannot sign it in again.
    assert_eq!(m.me(&c_session).await.0, 401);
    let r = m.sign_in("c", "cfo@a.example", "cfo@a.example").await;
    assert_eq!(m.refusal(r).await, (403, "user_not_owned".to_string()));
    // IdP A signs the CFO in.
    let r = m.sign_in("a", "cfo@a.example", "cfo@a.example").await;
    assert_eq!(r.status(), 303, "{}", m.gw.log());
    assert_eq!(m.me(&session_of(&r)).await.1["sub"], adopted["id"]);
}

#[tokio::test]
async fn an_idp_claims_unowned_users_only_when_the_operator_says_so() {
    use portcullis::directory::{DirectoryStore, MultiValue, User};
    let prefix = unique_prefix("claim");
    let m = multi(
        &[
            ("a", "tenant = \"shared\"\nclaim_unowned_users = true"),
            ("b", "tenant = \"shared\""),
        ],
        "",
        Some(prefix.clone()),
    );
    let dir = directory(&prefix).await;
    // Created by an operator: neither an IdP's nor a SCIM client's.
    let ops = dir
        .create_user(
            "shared",
            User {
                emails: vec![MultiValue {
                    value: "ops@x.example".into(),
                    primary: Some(true),
                    ..MultiValue::default()
                }],
                ..User::new("ops@x.example")
            },
        )
        .await
        .unwrap();
    let r = m.sign_in("b", "ops@x.example", "ops@x.example").await;
    assert_eq!(m.refusal(r).await, (403, "user_not_owned".to_string()));
    let r = m.sign_in("a", "ops@x.example", "ops@x.example").await;
    assert_eq!(r.status(), 303, "{}", m.gw.log());
    assert_eq!(m.me(&session_of(&r)).await.1["sub"], ops.id.as_str());
    let stored = dir.get_user("shared", &ops.id).await.unwrap().unwrap();
    assert_eq!(stored.idp.as_deref(), Some("a"), "the claim is recorded");
    let r = m.sign_in("b", "ops@x.example", "ops@x.example").await;
    assert_eq!(m.refusal(r).await, (403, "wrong_idp".to_string()));
}

const CRA_ADMINS: &str = "[scim]\n[scim.group_roles]\n\"CRA Admins\" = \"admin\"\n";

fn asserting_cra_admins(o: &mut ResponseOpts) {
    o.name_id = "mallory@other.example".into();
    o.attributes[0] = ("email".into(), vec!["mallory@other.example".into()]);
    o.attributes[3] = ("memberOf".into(), vec!["CRA Admins".into()]);
}

#[tokio::test]
async fn groups_asserted_by_an_idp_do_not_map_to_roles_by_default() {
    let m = multi(&[("c", "tenant = \"other\"")], CRA_ADMINS, None);
    let r = m.sign_in_with("c", asserting_cra_admins).await;
    assert_eq!(r.status(), 303, "{}", m.gw.log());
    let (_, me) = m.me(&session_of(&r)).await;
    assert_eq!(me["groups"], serde_json::json!(["CRA Admins"]), "{me}");
    assert_eq!(me["roles"], serde_json::json!(["member"]), "{me}");
    assert_eq!(me["tenant"], "other");
}

#[tokio::test]
async fn groups_asserted_by_an_idp_map_to_roles_when_it_opts_in() {
    let m = multi(
        &[("c", "tenant = \"other\"\nasserted_groups_map_roles = true")],
        CRA_ADMINS,
        None,
    );
    let r = m.sign_in_with("c", asserting_cra_admins).await;
    assert_eq!(r.status(), 303, "{}", m.gw.log());
    let (_, me) = m.me(&session_of(&r)).await;
    assert_eq!(me["roles"], serde_json::json!(["admin"]), "{me}");
    assert_eq!(me["tenant"], "other");
}

#[tokio::test]
async fn a_name_id_with_compatibility_characters_does_not_sign_in_as_its_lookalike() {
    use portcullis::directory::{DirectoryStore, User};
    let prefix = unique_prefix("kelvin");
    let e = env_on("", "", Some(prefix.clone()));
    let dir = directory(&prefix).await;
    let kate = dir
        .create_user("acme", User::new("kate@example.com"))
        .await
        .unwrap();
    // U+212A KELVIN SIGN lowercases to an ASCII "k".
    let lookalike = "\u{212A}ate@example.com";
    let (id, cookie) = e.begin("/").await;
    let mut o = e.opts(Some(&id));
    o.name_id = lookalike.into();
    o.attributes[0] = ("email".into(), vec![lookalike.into()]);
    let got = e.refused(&e.idp.response_b64(&o), Some(&cookie), 403).await;
    assert_eq!(got, "invalid_identifier");
    // Kate herself still signs in.
    let r = sign_in(&e, |o| {
        o.name_id = "kate@example.com".into();
        o.attributes[0] = ("email".into(), vec!["kate@example.com".into()]);
    })
    .await;
    assert_eq!(r.status(), 303, "{}", e.gw.log());
    assert_eq!(
        claims_after(&e, &session_of(&r)).await["sub"],
        kate.id.as_str()
    );
}
