//! The command line: `check` names every bad key, `keys generate` makes
//! usable keys, and the shipped configs load.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn portcullis(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(support::bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run portcullis")
}

fn check(config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = portcullis(&["check", "-c", config.to_str().unwrap()], env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A valid config in `dir` (key generated), plus `extra` appended.
fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let key = dir.join("signing.pem");
    if !key.exists() {
        assert!(
            portcullis(&["keys", "generate", "--out", key.to_str().unwrap()], &[])
                .status
                .success()
        );
    }
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:18080\"\npublic_url = \"https://app.example.com\"\n\
         [upstream]\nurl = \"http://127.0.0.1:3000\"\n[store]\npath = \"{}\"\n\
         [identity]\nsigning_key = \"{}\"\n{body}",
        dir.join("state").display(),
        key.display()
    );
    let p = dir.join("portcullis.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_a_good_config_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(dir.path(), "");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("upstream    http://127.0.0.1:3000/"),
        "{text}"
    );
    assert!(text.contains("store       embedded"), "{text}");
}

#[test]
fn the_example_config_documents_valid_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    assert!(
        portcullis(&["keys", "generate", "--out", key.to_str().unwrap()], &[])
            .status
            .success()
    );
    let idp = support::idp::TestIdp::new("jumpcloud-legacy-app");
    let cert = idp.write_cert(dir.path(), "jumpcloud.pem");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.example.toml"),
    )
    .unwrap()
    .replace("/etc/portcullis/saml/jumpcloud.pem", cert.to_str().unwrap());
    assert!(
        text.contains("[scim]") && text.contains("[saml]"),
        "the example documents every section"
    );
    let example = dir.path().join("example.toml");
    std::fs::write(&example, text).unwrap();
    // Paths that only exist on a real host are redirected through env overrides.
    let (code, text) = check(
        &example,
        &[
            ("PORTCULLIS_IDENTITY__SIGNING_KEY", key.to_str().unwrap()),
            (
                "PORTCULLIS_STORE__PATH",
                dir.path().join("state").to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn the_demo_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // The dev IdP writes its certificate at start; stand one in.
    let idp = support::idp::TestIdp::new("http://localhost:8081/metadata");
    let cert = idp.write_cert(dir.path(), "dev-idp.pem");
    let demo = std::fs::read_to_string(root.join("config/demo.toml"))
        .unwrap()
        .replace("var/demo/dev-idp.pem", cert.to_str().unwrap());
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, demo).unwrap();
    let (code, text) = check(
        &config,
        &[
            (
                "PORTCULLIS_IDENTITY__SIGNING_KEY",
                dir.path().join("k.pem").to_str().unwrap(),
            ),
            (
                "PORTCULLIS_STORE__PATH",
                dir.path().join("state").to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn each_kind_of_mistake_exits_1_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("[session]\nidle_timout = \"1h\"\n", "session.idle_timout"),
        (
            "[session]\nidle_timeout = \"eight hours\"\n",
            "session.idle_timeout",
        ),
        ("[upstream.extra]\n", "upstream.extra"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[admin]\nlisten = \"127.0.0.1:18080\"\n", "admin.listen"),
        ("[admin]\nlisten = \"nowhere\"\n", "admin.listen"),
        (
            "[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
            "server.tls.cert",
        ),
        (
            "[[policy]]\npath = \"/x\"\nallow = \"everyone\"\n",
            "policy[0]",
        ),
        (
            "[identity.headers]\nenabled = true\nuser = \"bad header\"\n",
            "identity.headers.user",
        ),
        ("[store]\nkind = \"redis\"\n", "store"),
        ("[scim]\n[[scim.client]]\nname = \"jc\"\ntoken_hash = \"nope\"\n", "scim.client[0].token_hash"),
        (
            "[scim]\n[[scim.client]]\nname = \"jc\"\ntoken_hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nrate_limit = \"lots\"\n",
            "scim.client[0].rate_limit",
        ),
        ("[scim]\nbase_path = \"scim\"\n", "scim.base_path"),
        (
            "[[webhook]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000/h\"\n",
            "webhook[0].secrets",
        ),
        (
            "[[webhook]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000/h\"\nsecrets = [\"whsec_\"]\n",
            "webhook[0].secrets[0]",
        ),
        (
            "[[webhook]]\nname = \"a b\"\nurl = \"http://127.0.0.1:3000/h\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n",
            "webhook[0].name",
        ),
        (
            "[[webhook]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000/h\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\nevents = [\"users.*\"]\n",
            "webhook[0].events",
        ),
        (
            "[[webhook]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000/h\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\nmode = \"blocking\"\n",
            "webhook[0].mode",
        ),
        (
            "[[webhook]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000/h\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\ntimeout = \"10s\"\nmax_age = \"1s\"\n",
            "webhook[0].max_age",
        ),
        (
            "[[webhook]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000/h\"\nsecrets_file = \"/nonexistent/secrets\"\n",
            "webhook[0].secrets_file",
        ),
    ];
    for (body, key) in cases {
        // [store] and [session] may already exist in the base config: use a fresh file.
        let p = dir.path().join("c.toml");
        let base = std::fs::read_to_string(write_config(dir.path(), "")).unwrap();
        let text = if body.starts_with("[store]") {
            base.replace(
                &format!(
                    "[store]\npath = \"{}\"\n",
                    dir.path().join("state").display()
                ),
                body,
            )
        } else {
            format!("{base}{body}")
        };
        std::fs::write(&p, text).unwrap();
        let (code, out) = check(&p, &[]);
        assert_eq!(code, 1, "{body}: {out}");
        assert!(out.contains(*key), "{body}: expected {key} in:\n{out}");
    }
}

#[test]
fn missing_and_bad_files_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(dir.path(), "");
    let (code, out) = check(
        &p,
        &[(
            "PORTCULLIS_IDENTITY__SIGNING_KEY",
            "/nonexistent/signing.pem",
        )],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("identity.signing_key: cannot read /nonexistent/signing.pem"),
        "{out}"
    );

    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let (code, out) = check(
        &p,
        &[(
            "PORTCULLIS_IDENTITY__SIGNING_KEY",
            not_a_key.to_str().unwrap(),
        )],
    );
    assert_eq!(code, 1);
    assert!(out.contains("identity.signing_key:"), "{out}");

    // A certificate whose key does not match.
    let (cert, _key, _) = support::test_certificate(dir.path());
    let other = rcgen::KeyPair::generate().unwrap();
    let wrong_key = dir.path().join("wrong.key");
    std::fs::write(&wrong_key, other.serialize_pem()).unwrap();
    let p = write_config(
        dir.path(),
        &format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            wrong_key.display()
        ),
    );
    let (code, out) = check(&p, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("server.tls.key:") && out.contains("does not belong"),
        "{out}"
    );
}

#[test]
fn environment_overrides_are_validated_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(dir.path(), "");
    let (code, out) = check(&p, &[("PORTCULLIS_UPSTREAM__URL", "not a url")]);
    assert_eq!(code, 1);
    assert!(out.contains("upstream.url"), "{out}");
    let (code, out) = check(&p, &[("PORTCULLIS_SESSION__IDLE_TIMEOUT", "30m")]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn several_problems_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(
        dir.path(),
        "[session]\nidle_timeout = \"2h\"\nmax_lifetime = \"1h\"\n[admin]\nlisten = \"127.0.0.1:18080\"\n[[policy]]\npath = \"nope\"\nallow = \"public\"\n",
    );
    let (code, out) = check(&p, &[]);
    assert_eq!(code, 1);
    for key in ["session.max_lifetime", "admin.listen", "policy[0]"] {
        assert!(out.contains(key), "{key} missing in:\n{out}");
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, out) = check(Path::new("/nonexistent/portcullis.toml"), &[]);
    assert_eq!(code, 1);
    assert!(out.contains("does not exist"), "{out}");
}

#[test]
fn keys_generate_makes_each_algorithm_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["ES256", "RS256", "EdDSA"] {
        let out = portcullis(&["keys", "generate", "--alg", alg], &[]);
        assert!(out.status.success());
        let k = portcullis::identity::keys::SigningKey::from_pem(&out.stdout, alg).unwrap();
        assert_eq!(k.algorithm().to_string(), alg);
    }
    let f = dir.path().join("k.pem");
    assert!(
        portcullis(&["keys", "generate", "--out", f.to_str().unwrap()], &[])
            .status
            .success()
    );
    let before = std::fs::read(&f).unwrap();
    assert!(
        !portcullis(&["keys", "generate", "--out", f.to_str().unwrap()], &[])
            .status
            .success()
    );
    assert_eq!(std::fs::read(&f).unwrap(), before, "existing key untouched");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn admin_token_create_prints_a_token_and_its_hash() {
    let out = portcullis(&["admin-token", "create"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .split_whitespace()
        .find(|w| w.starts_with("padm_"))
        .unwrap();
    let hash_line = text.lines().find(|l| l.contains("token_hash")).unwrap();
    let hash = hash_line.split('"').nth(1).unwrap();
    assert!(portcullis::secret::TokenHash::parse(hash)
        .unwrap()
        .verify(token));
}

#[test]
fn scim_token_create_prints_a_token_and_its_hash() {
    let out = portcullis(&["scim-token", "create", "--client", "jumpcloud"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .split_whitespace()
        .find(|w| w.starts_with("scim_"))
        .unwrap();
    assert!(token.len() >= 5 + 43, "scim_ + 32 random bytes");
    let hash = text
        .lines()
        .find(|l| l.contains("token_hash"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap();
    assert!(portcullis::secret::TokenHash::parse(hash)
        .unwrap()
        .verify(token));
}
