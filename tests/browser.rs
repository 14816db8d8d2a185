//! A real browser signs in: headless Chromium (driven over WebDriver) opens
//! the app through the gateway at 127.0.0.1, is sent to the dev IdP at
//! `localhost` (another site, like a real IdP), submits its form, and comes
//! back through the cross-site POST to the ACS to a page showing the
//! identity. This is the flow SameSite cookie mistakes break.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use fantoccini::{ClientBuilder, Locator};
use support::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The app: shows the identity headers it received.
fn identity_app() -> u16 {
    let router = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let who = headers
            .get("x-portcullis-email")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody")
            .to_string();
        let has_jwt = headers.contains_key("x-portcullis-jwt-assertion");
        axum::response::Html(format!(
            "<!doctype html><title>App</title><h1 id=\"who\">Signed in as {who}</h1><p id=\"jwt\">jwt={has_jwt}</p>"
        ))
    });
    serve_in_background(router)
}

#[tokio::test]
async fn chromium_signs_in_through_the_dev_idp_and_lands_on_the_app() {
    let (Ok(_), Ok(_)) = (which("chromium"), which("chromedriver")) else {
        println!("SKIPPED: chromium/chromedriver not installed (scripts/setup.sh installs them)");
        return;
    };
    // Dev IdP on localhost.
    let idp_port = free_port();
    let base = format!("http://localhost:{idp_port}");
    let dev = Arc::new(support::dev_idp::DevIdp {
        idp: support::idp::TestIdp::new(&format!("{base}/metadata")),
        base_url: base.clone(),
    });
    let dir = tempfile::tempdir().unwrap();
    let cert = dev.idp.write_cert(dir.path(), "dev.pem");
    let router = support::dev_idp::router(dev.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", idp_port))
                .await
                .unwrap();
            tx.send(()).unwrap();
            axum::serve(l, router).await.unwrap();
        });
    });
    rx.recv().unwrap();

    // Gateway at 127.0.0.1 in front of the app.
    let app_port = identity_app();
    let mut o = GatewayOpts::new(&format!("http://127.0.0.1:{app_port}"));
    o.extra = format!(
        "[identity.headers]\nenabled = true\n[saml]\n[[saml.idp]]\nid = \"dev\"\nentity_id = \"{base}/metadata\"\nsso_url = \"{base}/sso\"\ncertificate = \"{}\"\n",
        cert.display()
    );
    let gw = Gateway::start(o);
    // The gateway's public URL must be the 127.0.0.1 origin the browser uses.
    let public = format!("http://127.0.0.1:{}", gw.port);
    let config = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace(&format!("http://localhost:{}", gw.port), &public);
    std::fs::write(&gw.config_path, config).unwrap();
    let mut gw = gw;
    gw.restart();

    let driver_port = free_port();
    let _driver = Kill(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", driver_port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // hyper-rustls (WebDriver client) and pingora enable different rustls providers.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let profile = tempfile::tempdir().unwrap();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.path().display())]
        }
    }))
    .unwrap();
    let c = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("WebDriver session");

    let result = async {
        c.goto(&format!("{public}/reports")).await?;
        // Redirected through the gateway's login to the IdP's form.
        c.wait().for_element(Locator::Id("signin")).await?;
        assert!(
            c.current_url().await?.as_str().starts_with(&base),
            "at the IdP"
        );
        let email = c.find(Locator::Id("email")).await?;
        email.clear().await?;
        email.send_keys("grace@example.com").await?;
        c.find(Locator::Id("signin")).await?.click().await?;
        // The IdP's page posts the response to the ACS (cross-site), then the app shows up.
        let who = c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("who"))
            .await?;
        let text = who.text().await?;
        let url = c.current_url().await?;
        let jwt = c.find(Locator::Id("jwt")).await?.text().await?;
        Ok::<_, fantoccini::error::CmdError>((text, url.to_string(), jwt))
    }
    .await;
    let _ = c.close().await;
    let (text, url, jwt) =
        result.unwrap_or_else(|e| panic!("browser flow failed: {e}\n{}", gw.log()));
    assert_eq!(text, "Signed in as grace@example.com");
    assert_eq!(url, format!("{public}/reports"));
    assert_eq!(jwt, "jwt=true");
}

fn which(bin: &str) -> Result<(), ()> {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| ())
        .ok_or(())
}
