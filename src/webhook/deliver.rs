//! Delivery workers: one loop per target per replica, claiming due lane
//! heads from the outbox and POSTing them with up to `concurrency` in
//! flight. A 2xx finishes the head; anything else schedules a retry with
//! exponential backoff and jitter, until the event is older than `max_age`
//! and becomes a dead letter. Workers hold nothing the store does not: a
//! replica that dies mid-delivery leaves its heads to be delivered again
//! (at-least-once; receivers dedupe on `webhook-id`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use super::outbox::OutboxStore;
use super::outbox::{backoff, Delivery, Outcome};
use super::{Target, Webhooks};
use crate::clock::now_ms;

/// How long one claim waits for work before looping (and refreshing gauges).
const CLAIM_WAIT: Duration = Duration::from_secs(1);
/// How often queue gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// What a worker delivers with: the target set it belongs to and its own
/// target; `None` tells it to stop.
type Assignment = Option<(Arc<Webhooks>, Arc<Target>)>;

/// This process's delivery workers, one per target name, on the runtime
/// they were created on. `reconcile` re-points them at a new configuration:
/// a target that stays keeps its worker, which takes the new settings (URL,
/// secrets, timings) before its next claim; a new target gets a worker; a
/// removed target's worker stops after its in-flight attempts, and its
/// undelivered events stay in the outbox, claimable again if it returns.
pub struct Workers {
    runtime: tokio::runtime::Handle,
    running: parking_lot::Mutex<HashMap<String, watch::Sender<Assignment>>>,
}

impl Workers {
    /// Workers that will run on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Self {
            runtime,
            running: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Makes the running workers match `hooks` (none configured: none run).
    pub fn reconcile(&self, hooks: Option<Arc<Webhooks>>, store: Arc<dyn OutboxStore>) {
        let mut running = self.running.lock();
        let wanted: HashMap<&str, &Arc<Target>> = hooks
            .iter()
            .flat_map(|h| h.targets.iter())
            .map(|t| (t.name(), t))
            .collect();
        running.retain(|name, tx| match (&hooks, wanted.get(name.as_str())) {
            (Some(h), Some(t)) => {
                tx.send_replace(Some((h.clone(), (*t).clone())));
                true
            }
            _ => {
                tx.send_replace(None);
                false
            }
        });
        let Some(h) = &hooks else { return };
        for t in &h.targets {
            if running.contains_key(t.name()) {
                continue;
            }
            let (tx, rx) = watch::channel(Some((h.clone(), t.clone())));
            self.runtime.spawn(run_target(rx, store.clone()));
            running.insert(t.name().to_string(), tx);
        }
    }

    /// Names of the targets a worker runs for, sorted.
    pub fn targets(&self) -> Vec<String> {
        let mut v: Vec<String> = self.running.lock().keys().cloned().collect();
        v.sort();
        v
    }
}

/// Starts a worker per target on the current runtime (for a fixed target
/// set; the gateway uses `Workers`, which can re-point them).
pub fn spawn_workers(hooks: Arc<Webhooks>, store: Arc<dyn OutboxStore>) {
    Workers::new(tokio::runtime::Handle::current()).reconcile(Some(hooks), store);
}

async fn run_target(mut assignment: watch::Receiver<Assignment>, store: Arc<dyn OutboxStore>) {
    let Some((mut hooks, mut target)) = assignment.borrow_and_update().clone() else {
        return;
    };
    let name = target.name().to_string();
    let mut slots = Arc::new(Semaphore::new(target.cfg.concurrency));
    let mut last_gauges = std::time::Instant::now() - GAUGE_EVERY;
    tracing::info!(target = %name, url = %target.cfg.url.as_str(), consumer = %hooks.consumer, "webhook delivery started");
    loop {
        // A reload re-points or stops this worker between claims; attempts
        // in flight finish with the settings they started with.
        if assignment.has_changed().unwrap_or(true) {
            let Some((h, t)) = assignment.borrow_and_update().clone() else {
                tracing::info!(target = %name, "webhook delivery stopped: the target is no longer configured");
                return;
            };
            if t.cfg.concurrency != target.cfg.concurrency {
                slots = Arc::new(Semaphore::new(t.cfg.concurrency));
            }
            (hooks, target) = (h, t);
            tracing::debug!(target = %name, url = %target.cfg.url.as_str(), "webhook target re-read from the configuration");
        }
        if last_gauges.elapsed() >= GAUGE_EVERY {
            refresh_gauges(store.as_ref(), &name).await;
            last_gauges = std::time::Instant::now();
        }
        // Wait for a free slot before claiming, so claimed heads never queue
        // behind a full worker while another replica sits idle.
        let free = slots.available_permits();
        if free == 0 {
            if let Ok(p) = slots.clone().acquire_owned().await {
                drop(p);
            }
            continue;
        }
        let batch = match store
            .claim(
                &name,
                &hooks.consumer,
                free,
                CLAIM_WAIT,
                target.cfg.reclaim_after(),
            )
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(target = %name, error = %e, "webhook outbox unavailable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // A reload during the claim: send with the new settings, or not at
        // all when the target was removed (the claimed heads are claimed
        // again after `reclaim_after`, should it come back).
        if assignment.has_changed().unwrap_or(true) {
            let Some((h, t)) = assignment.borrow_and_update().clone() else {
                tracing::info!(target = %name, "webhook delivery stopped: the target is no longer configured");
                return;
            };
            (hooks, target) = (h, t);
        }
        for d in batch {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (hooks, target, store) = (hooks.clone(), target.clone(), store.clone());
            tokio::spawn(async move {
                attempt(&hooks, &target, store.as_ref(), d).await;
                drop(permit);
            });
        }
    }
}

/// One attempt and its bookkeeping.
async fn attempt(hooks: &Webhooks, target: &Target, store: &dyn OutboxStore, d: Delivery) {
    let started = std::time::Instant::now();
    let r = hooks.send(target, &d.event).await;
    let outcome = match r {
        Ok(()) => {
            tracing::debug!(target = %target.name(), event = %d.event.id, kind = d.event.kind.as_str(), "webhook delivered");
            Outcome::Delivered
        }
        Err(e) => outcome_of_failure(target, &d, e.reason),
    };
    let result = match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "failed",
        Outcome::Dead { .. } => "dead",
    };
    crate::telemetry::observe_webhook_attempt(target.name(), "async", result, started.elapsed());
    if outcome == Outcome::Delivered {
        let lag = now_ms().saturating_sub(d.event.at_ms);
        crate::telemetry::WEBHOOK_LAG_SECONDS
            .with_label_values(&[target.name()])
            .observe(lag as f64 / 1000.0);
    }
    if let Outcome::Dead { error } = &outcome {
        tracing::error!(target = %target.name(), event = %d.event.id, kind = d.event.kind.as_str(), attempts = d.attempts + 1, error = %error, "webhook dead-lettered after max_age; `portcullis webhooks replay` re-sends it");
    }
    // The outcome must reach the store: until it does the head stays
    // claimed (not sent again), so keep trying, backing off to 5 s.
    let mut wait = Duration::from_millis(100);
    loop {
        match store.finish(&d, &outcome).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(target = %target.name(), event = %d.event.id, error = %e, "cannot record webhook outcome; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Retry, or give up once the event has been failing for `max_age` (as
/// the head of its lane: waiting behind others or a replay does not count).
fn outcome_of_failure(target: &Target, d: &Delivery, error: String) -> Outcome {
    let now = now_ms();
    let failing = Duration::from_millis(now.saturating_sub(d.failing_since_ms.unwrap_or(now)));
    if failing >= target.cfg.max_age.get() {
        return Outcome::Dead { error };
    }
    let wait = backoff(
        d.attempts,
        target.cfg.retry_initial.get(),
        target.cfg.retry_max.get(),
    );
    tracing::warn!(target = %target.name(), event = %d.event.id, kind = d.event.kind.as_str(), attempt = d.attempts + 1, retry_in = ?wait, error = %error, "webhook delivery failed");
    Outcome::Retry {
        due_ms: now + wait.as_millis() as u64,
        error,
    }
}

async fn refresh_gauges(store: &dyn OutboxStore, name: &str) {
    if let Ok(list) = store.status(&[name.to_string()]).await {
        for s in list {
            crate::telemetry::WEBHOOK_PENDING
                .with_label_values(&[name])
                .set(s.pending as i64);
            crate::telemetry::WEBHOOK_OLDEST_SECONDS
                .with_label_values(&[name])
                .set((s.oldest_pending_ms / 1000) as i64);
            crate::telemetry::WEBHOOK_DEAD
                .with_label_values(&[name])
                .set(s.dead_letters as i64);
        }
    }
}
