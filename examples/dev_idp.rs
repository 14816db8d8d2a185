//! A development SAML IdP for `make demo`: sign in as anyone, no account
//! needed. Never point a production gateway at it.
//!
//! Environment: `DEV_IDP_PORT` (default 8081; served as http://localhost:PORT
//! so it is a different site from a gateway on 127.0.0.1, like a real IdP),
//! `DEV_IDP_CERT_OUT` (where to write its signing certificate, PEM; default
//! var/demo/dev-idp.pem).

#[path = "../tests/support/dev_idp.rs"]
mod dev_idp;
#[path = "../tests/support/idp.rs"]
mod idp;

use std::sync::Arc;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("DEV_IDP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    let cert_out =
        std::env::var("DEV_IDP_CERT_OUT").unwrap_or_else(|_| "var/demo/dev-idp.pem".into());
    let base_url = format!("http://localhost:{port}");
    let idp = idp::TestIdp::new(&format!("{base_url}/metadata"));
    if let Some(dir) = std::path::Path::new(&cert_out).parent() {
        std::fs::create_dir_all(dir).expect("create certificate directory");
    }
    std::fs::write(&cert_out, &idp.cert_pem).expect("write the IdP certificate");
    let dev = Arc::new(dev_idp::DevIdp {
        idp,
        base_url: base_url.clone(),
    });
    let app = dev_idp::router(dev);
    let v4 = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind DEV_IDP_PORT");
    if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
        let app6 = app.clone();
        tokio::spawn(async move {
            let _ = axum::serve(v6, app6).await;
        });
    }
    eprintln!("dev IdP on {base_url} (certificate in {cert_out})");
    axum::serve(v4, app).await.expect("serve");
}
