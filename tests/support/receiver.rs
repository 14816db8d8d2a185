//! A webhook receiver on 127.0.0.1 for end-to-end tests: records every
//! request it accepts (headers and raw body), answers as told (accept,
//! refuse with a status and reason, or hang), and hands the recorded
//! requests to the PyPI `standardwebhooks` library for an independent
//! signature check.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Answer {
    Accept,
    Refuse(u16, String),
    /// Sleep this long, then accept (for timeouts).
    Hang(Duration),
    /// Refuse (503) events of this type, accept the others.
    RefuseType(String),
}

/// One accepted request.
#[derive(Clone, Debug)]
pub struct Got {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub json: Value,
}

impl Got {
    pub fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    got: Mutex<Vec<Got>>,
    attempts: Mutex<usize>,
    answer: Mutex<Option<Answer>>,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<State>,
}

impl Receiver {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Listens on `port` (0 = any free one).
    pub fn start_on(port: u16) -> Self {
        let state: Arc<State> = Arc::default();
        *state.answer.lock().unwrap() = Some(Answer::Accept);
        let s = state.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                *s.attempts.lock().unwrap() += 1;
                let answer = s.answer.lock().unwrap().clone().unwrap_or(Answer::Accept);
                match answer {
                    Answer::Refuse(code, reason) => {
                        return (StatusCode::from_u16(code).unwrap(), reason).into_response()
                    }
                    Answer::Hang(d) => tokio::time::sleep(d).await,
                    Answer::RefuseType(kind) => {
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        if v["type"] == kind.as_str() {
                            return (StatusCode::SERVICE_UNAVAILABLE, "not now").into_response();
                        }
                    }
                    Answer::Accept => {}
                }
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let text = String::from_utf8_lossy(&body).into_owned();
                let got = Got {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                    json: serde_json::from_str(&text).unwrap_or(Value::Null),
                    body: text,
                };
                s.got.lock().unwrap().push(got);
                (StatusCode::NO_CONTENT, "").into_response()
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                axum::serve(listener, router).await.unwrap();
            });
        });
        let port = rx.recv().unwrap();
        Self { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn answer(&self, a: Answer) {
        *self.state.answer.lock().unwrap() = Some(a);
    }

    pub fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> usize {
        *self.state.attempts.lock().unwrap()
    }

    /// Waits until `pred` holds for the accepted requests, or panics with
    /// what arrived (and `log`).
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        log: impl Fn() -> String,
        pred: impl Fn(&[Got]) -> bool,
    ) -> Vec<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let kinds: Vec<&str> = got.iter().map(|g| g.kind()).collect();
                panic!(
                    "timed out waiting for {what}; got {} events {kinds:?}\n{}",
                    got.len(),
                    log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A fresh `whsec_` secret.
pub fn secret() -> String {
    portcullis::webhook::signing::Secret::generate()
}

/// A `[[webhook]]` table.
pub fn webhook_toml(name: &str, url: &str, secret: &str, extra: &str) -> String {
    format!(
        "\n[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\nsecrets = [\"{secret}\"]\n{extra}\n"
    )
}

/// Checks every request's signature with the PyPI `standardwebhooks`
/// library (scripts/verify_webhooks.py), an implementation independent of
/// ours. Panics with its output on any failure.
pub fn verify_independently(secret: &str, got: &[Got]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let py = std::process::Command::new(format!("{root}/scripts/pyenv.sh"))
        .output()
        .expect("run scripts/pyenv.sh");
    assert!(
        py.status.success(),
        "scripts/pyenv.sh failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let python = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let lines: String = got
        .iter()
        .map(|g| {
            serde_json::json!({
                "secret": secret,
                "headers": {
                    "webhook-id": g.id,
                    "webhook-timestamp": g.timestamp,
                    "webhook-signature": g.signature,
                },
                "body": g.body,
            })
            .to_string()
                + "\n"
        })
        .collect();
    let mut child = std::process::Command::new(python)
        .arg(format!("{root}/scripts/verify_webhooks.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run verify_webhooks.py");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "standardwebhooks refused a signature:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        got.len(),
        "{stdout}"
    );
}
