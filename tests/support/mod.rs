//! Shared fixtures for end-to-end tests: a recording upstream app, a running
//! `portcullis` binary with its own ports and state, and helpers to mint
//! sessions through the admin API. Everything runs on 127.0.0.1.
#![allow(dead_code)]

pub mod dev_idp;
pub mod idp;
pub mod receiver;
pub mod saml_env;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::IntoResponse;
use serde_json::{json, Value};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A unique Redis key prefix per test, so parallel tests never meet.
pub fn unique_prefix(tag: &str) -> String {
    format!(
        "pctest:{tag}:{}:",
        portcullis::secret::new_token("")
            .chars()
            .take(12)
            .collect::<String>()
    )
}

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Every header, duplicates included, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The gateway's side of the upstream connection (reuse shows as one port).
    pub peer: std::net::SocketAddr,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} seen {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

/// A tiny app that records every request and answers 200 with JSON.
pub struct RecordingApp {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves `router` on 127.0.0.1 from a thread of its own; returns the port.
pub fn serve_in_background(router: axum::Router) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
    });
    rx.recv().unwrap()
}

impl RecordingApp {
    /// Starts on its own thread and runtime, so it works from sync and async tests.
    pub fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s2 = seen.clone();
        let handler = move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
            std::net::SocketAddr,
        >,
                            req: Request| {
            let s = s2.clone();
            async move {
                if req.uri().path().starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                let headers = req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let entry = Seen {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    headers,
                    peer,
                };
                s.lock().unwrap().push(entry.clone());
                axum::Json(json!({"app": "recording", "uri": entry.uri})).into_response()
            }
        };
        let port = serve_in_background(axum::Router::new().fallback(handler));
        Self { port, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Options for a gateway under test.
pub struct GatewayOpts {
    pub upstream: String,
    /// Extra TOML appended to the generated config.
    pub extra: String,
    /// `None` = embedded store in the gateway's dir.
    pub redis_prefix: Option<String>,
    /// Reuse this state directory (restart tests).
    pub dir: Option<PathBuf>,
    pub session: String,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra keys inside `[identity]`.
    pub identity: String,
    /// Extra keys inside `[upstream]`.
    pub upstream_extra: String,
    /// Redis to use instead of `REDIS_URL`.
    pub redis_url: Option<String>,
    /// Extra keys inside `[server]`.
    pub server_extra: String,
}

impl GatewayOpts {
    pub fn new(upstream: &str) -> Self {
        Self {
            upstream: upstream.to_string(),
            extra: String::new(),
            redis_prefix: None,
            dir: None,
            session: String::new(),
            tls: None,
            identity: String::new(),
            upstream_extra: String::new(),
            redis_url: None,
            server_extra: String::new(),
        }
    }
}

/// A running `portcullis run` process; killed on drop.
pub struct Gateway {
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub admin_token: String,
    pub config_path: PathBuf,
    pub tls: bool,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

impl Gateway {
    pub fn start(opts: GatewayOpts) -> Self {
        let (tmp, dir) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let port = free_port();
        let admin_port = free_port();
        let token = portcullis::secret::new_token("padm_");
        let hash = portcullis::secret::TokenHash::of(&token);
        let store = match &opts.redis_prefix {
            Some(p) => format!(
                "kind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{p}\"",
                opts.redis_url.clone().unwrap_or_else(redis_url)
            ),
            None => format!(
                "kind = \"embedded\"\npath = \"{}\"",
                dir.join("state").display()
            ),
        };
        let (scheme, tls) = match &opts.tls {
            Some((c, k)) => (
                "https",
                format!(
                    "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                    c.display(),
                    k.display()
                ),
            ),
            None => ("http", String::new()),
        };
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "{scheme}://localhost:{port}"
threads = 1
grace_period = "1s"
runtime_dir = "{rt}"
{tls}
{server_extra}
[admin]
listen = "127.0.0.1:{admin_port}"
token_hash = "{hash}"
allow_impersonation = true

[upstream]
url = "{upstream}"
connect_timeout = "1s"
read_timeout = "3s"
{upstream_extra}

[store]
{store}

[session]
{session}

[identity]
signing_key = "{key}"
generate_if_missing = true
audience = "test-app"
{identity}

[log]
level = "info"
access = false
{extra}
"#,
            rt = dir.join("run").display(),
            upstream = opts.upstream,
            key = dir.join("signing.pem").display(),
            session = opts.session,
            identity = opts.identity,
            server_extra = opts.server_extra,
            upstream_extra = opts.upstream_extra,
            extra = opts.extra,
        );
        let config_path = dir.join("portcullis.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut gw = Self {
            port,
            admin_port,
            dir,
            admin_token: token,
            config_path,
            tls: opts.tls.is_some(),
            child: None,
            _tmp: tmp,
        };
        gw.spawn();
        gw
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("gateway.log")).unwrap();
        let child = Command::new(bin())
            .args(["run", "-c"])
            .arg(&self.config_path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn portcullis");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("gateway exited with {status}:\n{}", self.log());
            }
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok();
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!("gateway did not start:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// The running process's id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway is running").id()
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    }

    /// Waits until the log has `n` lines containing `needle`.
    pub fn wait_log(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            let found: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
            if found.len() >= n {
                return found[n - 1].to_string();
            }
            if Instant::now() > deadline {
                panic!("no {needle:?} (x{n}) in the log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Creates a session through the admin API; returns the Cookie header value.
    pub async fn login(&self, principal: Value) -> String {
        let r = client()
            .post(self.admin_url("/admin/sessions"))
            .bearer_auth(&self.admin_token)
            .json(&principal)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        format!(
            "{}={}",
            v["cookie_name"].as_str().unwrap(),
            v["cookie_value"].as_str().unwrap()
        )
    }

    pub async fn revoke_user(&self, sub: &str) -> Value {
        let r = client()
            .delete(self.admin_url(&format!("/admin/users/{sub}/sessions")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client that never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn alice() -> Value {
    json!({
        "sub": "u-alice", "email": "alice@example.com", "name": "Alice Doe",
        "given_name": "Alice", "family_name": "Doe",
        "groups": ["staff"], "roles": ["member"], "tenant": "acme", "idp": "test"
    })
}

/// A self-signed certificate for `localhost` (cert PEM, key PEM) in `dir`.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.pem().into_bytes())
}

/// Sends a GET with `path` exactly as given (no client-side normalization)
/// over HTTP/1.1; returns status and the raw response text.
pub async fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

/// A private redis-server on a free port, shut down on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server installed (scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a request head announcing a `declared`-byte body but only a little
/// of it, and returns the status the server answers with (a server that
/// refuses big bodies must not wait for them).
pub async fn raw_post_declaring(port: u16, path: &str, declared: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\nSAMLResponse=AAAA"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}
