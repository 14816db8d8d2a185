//! `telemetry` owns logs and metrics: the tracing subscriber (text or JSON)
//! and the Prometheus metrics served on the admin listener.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

pub mod access;
pub use access::Outcome;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge_vec,
};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec};

use crate::config::{LogConfig, LogFormat};

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portcullis_requests_total",
        "Requests by outcome (proxied, local, anonymous, unauthenticated, forbidden, bad_path, bad_body, store_unavailable, upstream_error) and status class",
        &["outcome", "status"]
    )
    .expect("metric registers once")
});

pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "portcullis_request_duration_seconds",
        "Time from request head to log line, by outcome",
        &["outcome"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

pub static JWT_MINTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "portcullis_identity_jwt_minted_total",
        "Identity JWTs signed (once per session per lifetime)"
    )
    .expect("metric registers once")
});

pub static SAML_LOGINS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portcullis_saml_logins_total",
        "SAML sign-ins by result: ok, or the refusal reason",
        &["result"]
    )
    .expect("metric registers once")
});

pub static WEBHOOK_ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portcullis_webhook_attempts_total",
        "Webhook delivery attempts by target, mode (async, sync) and result (delivered; failed = will retry; dead = given up)",
        &["target", "mode", "result"]
    )
    .expect("metric registers once")
});

pub static WEBHOOK_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "portcullis_webhook_attempt_duration_seconds",
        "Time of one webhook POST, by target",
        &["target"],
        vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("metric registers once")
});

pub static WEBHOOK_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "portcullis_webhook_pending",
        "Events waiting for delivery, by target (refreshed every few seconds)",
        &["target"]
    )
    .expect("metric registers once")
});

pub static WEBHOOK_OLDEST_SECONDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "portcullis_webhook_oldest_pending_seconds",
        "Age of the oldest event waiting for delivery, by target",
        &["target"]
    )
    .expect("metric registers once")
});

pub static WEBHOOK_DEAD: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "portcullis_webhook_dead_letters",
        "Events given up after max_age, by target",
        &["target"]
    )
    .expect("metric registers once")
});

pub static WEBHOOK_LAG_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "portcullis_webhook_delivery_lag_seconds",
        "From the change to its event's 2xx, by target (queueing and retries included)",
        &["target"],
        vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0]
    )
    .expect("metric registers once")
});

/// Counts one webhook attempt (result: delivered, failed, dead) and its duration.
pub fn observe_webhook_attempt(target: &str, mode: &str, result: &str, elapsed: Duration) {
    WEBHOOK_ATTEMPTS
        .with_label_values(&[target, mode, result])
        .inc();
    WEBHOOK_SECONDS
        .with_label_values(&[target])
        .observe(elapsed.as_secs_f64());
}

pub fn observe_request(outcome: Outcome, status: u16, elapsed: Duration) {
    /// Labelled children resolved once: `with_label_values` hashes the
    /// labels and takes a lock on every call.
    struct Children {
        counts: [[OnceLock<IntCounter>; 6]; Outcome::COUNT],
        seconds: [OnceLock<Histogram>; Outcome::COUNT],
    }
    static CHILDREN: Children = Children {
        counts: [const { [const { OnceLock::new() }; 6] }; Outcome::COUNT],
        seconds: [const { OnceLock::new() }; Outcome::COUNT],
    };
    const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];
    let class = match status {
        100..=599 => usize::from(status / 100),
        _ => 0,
    };
    let o = outcome.index();
    CHILDREN.counts[o][class]
        .get_or_init(|| REQUESTS.with_label_values(&[outcome.as_str(), CLASSES[class]]))
        .inc();
    CHILDREN.seconds[o]
        .get_or_init(|| REQUEST_SECONDS.with_label_values(&[outcome.as_str()]))
        .observe(elapsed.as_secs_f64());
}

/// Prometheus text exposition of every registered metric.
pub fn render_metrics() -> Vec<u8> {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    buf
}

/// Registers every metric so `/metrics` lists them before the first event.
pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portcullis_config_reload_total",
        "Configuration reloads by result: ok, invalid (the file was refused; the previous configuration keeps serving), restart_required (a key that needs a restart changed)",
        &["result"]
    )
    .expect("metric registers once")
});

pub fn register_metrics() {
    LazyLock::force(&CONFIG_RELOADS);
    for r in ["ok", "invalid", "restart_required"] {
        CONFIG_RELOADS.with_label_values(&[r]);
    }
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_SECONDS);
    LazyLock::force(&JWT_MINTED);
    LazyLock::force(&SAML_LOGINS);
    LazyLock::force(&WEBHOOK_ATTEMPTS);
    LazyLock::force(&WEBHOOK_SECONDS);
    LazyLock::force(&WEBHOOK_PENDING);
    LazyLock::force(&WEBHOOK_OLDEST_SECONDS);
    LazyLock::force(&WEBHOOK_DEAD);
    LazyLock::force(&WEBHOOK_LAG_SECONDS);
}

/// Installs the global subscriber. `RUST_LOG` overrides `[log] level`.
pub fn init(cfg: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // The access log bypasses tracing (see `access`) but obeys its filter.
    let filtered_in = tracing::enabled!(target: "portcullis::access", tracing::Level::INFO);
    access::configure(cfg.access && filtered_in, cfg.format);
}
