//! `OutboxStore` on the embedded redb file. Events are appended inside the
//! directory's own write transaction (`append`), so a change and its events
//! commit together; one process owns the file, so "claimed" is an in-memory
//! set that a restart empties (every unfinished head is claimable again:
//! at-least-once).
//!
//! Tables:
//! - `wh_events` event id → `Stored` JSON (the event and how many lane
//!   entries or dead letters still refer to it)
//! - `wh_lanes` (target, lane, seq) → event id: key order is lane order, the
//!   first key of a (target, lane) range is its head
//! - `wh_ready` (target, due ms, seq) → event id: the lane heads, by when
//!   they may be sent (0 = now), so a claim reads only what it hands out
//! - `wh_retry` (target, event id) → `Retry` JSON (failed attempts, next due)
//! - `wh_dead` (target, event id) → `DeadLetter` JSON
//! - `wh_counters` (target, name) → u64 (`delivered`, `failed`)
//! - `wh_last_error` target → text; `wh_meta` "seq" → last sequence number

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::embedded::EmbeddedStore;
use super::{StoreError, StoreResult};
use crate::clock::now_ms;
use crate::webhook::outbox::{
    DeadLetter, Delivery, Emit, OutboxEvent, OutboxStore, Outcome, TargetStatus,
};

type LaneKey = (&'static str, &'static str, u64);
type Pair = (&'static str, &'static str);

const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("wh_events");
const LANES: TableDefinition<LaneKey, &str> = TableDefinition::new("wh_lanes");
const RETRY: TableDefinition<Pair, &[u8]> = TableDefinition::new("wh_retry");
type ReadyKey = (&'static str, u64, u64);
const READY: TableDefinition<ReadyKey, &str> = TableDefinition::new("wh_ready");
const DEAD: TableDefinition<Pair, &[u8]> = TableDefinition::new("wh_dead");
const COUNTERS: TableDefinition<Pair, u64> = TableDefinition::new("wh_counters");
const LAST_ERROR: TableDefinition<&str, &str> = TableDefinition::new("wh_last_error");
const META: TableDefinition<&str, u64> = TableDefinition::new("wh_meta");

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[derive(Serialize, Deserialize)]
struct Stored {
    event: OutboxEvent,
    refs: u32,
}

#[derive(Default, Serialize, Deserialize)]
struct Retry {
    attempts: u32,
    due_ms: u64,
    /// First failed attempt as lane head: `max_age` counts from here.
    #[serde(default)]
    since_ms: u64,
}

/// In-memory side of the outbox: which heads a worker holds, and a wake-up
/// for workers waiting for new events.
#[derive(Default)]
pub struct OutboxRuntime {
    claimed: Mutex<HashSet<(String, String)>>,
    wake: tokio::sync::Notify,
    /// When a delivery outcome was last fsync'd (see `finish_sync`).
    last_durable: Mutex<Option<std::time::Instant>>,
    /// A flush of non-durable outcomes is scheduled.
    flush_pending: std::sync::atomic::AtomicBool,
}

/// Delivery outcomes are fsync'd at most this often; the ones in between
/// are committed without waiting for the disk, and a flush follows them
/// within this interval. A crash loses at most this much bookkeeping, and
/// losing it only means those events are sent again (at-least-once), so an
/// fsync per delivery is not worth its cost.
const OUTCOME_FSYNC_EVERY: Duration = Duration::from_millis(200);

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(EVENTS).map_err(err)?;
    txn.open_table(LANES).map_err(err)?;
    txn.open_table(RETRY).map_err(err)?;
    txn.open_table(READY).map_err(err)?;
    txn.open_table(DEAD).map_err(err)?;
    txn.open_table(COUNTERS).map_err(err)?;
    txn.open_table(LAST_ERROR).map_err(err)?;
    txn.open_table(META).map_err(err)?;
    Ok(())
}

/// Appends `emit`'s events inside the caller's write transaction.
pub(super) fn append(txn: &WriteTransaction, emit: &Emit) -> StoreResult<()> {
    if emit.is_empty() {
        return Ok(());
    }
    let mut events = txn.open_table(EVENTS).map_err(err)?;
    let mut lanes = txn.open_table(LANES).map_err(err)?;
    let mut ready = txn.open_table(READY).map_err(err)?;
    let mut meta = txn.open_table(META).map_err(err)?;
    let mut seq = meta
        .get("seq")
        .map_err(err)?
        .map(|v| v.value())
        .unwrap_or(0);
    for p in &emit.events {
        if p.event.is_empty() || p.targets.is_empty() {
            continue;
        }
        let stored = Stored {
            event: p.event.clone(),
            refs: p.targets.len() as u32,
        };
        let bytes = serde_json::to_vec(&stored).map_err(corrupt)?;
        events
            .insert(p.event.id.as_str(), bytes.as_slice())
            .map_err(err)?;
        let lane = p.event.lane();
        for t in &p.targets {
            seq += 1;
            let first = head_of(&lanes, t, &lane)?.is_none();
            lanes
                .insert((t.as_str(), lane.as_str(), seq), p.event.id.as_str())
                .map_err(err)?;
            if first {
                ready
                    .insert((t.as_str(), 0, seq), p.event.id.as_str())
                    .map_err(err)?;
            }
        }
    }
    meta.insert("seq", seq).map_err(err)?;
    Ok(())
}

fn next_seq(txn: &WriteTransaction) -> StoreResult<u64> {
    let mut meta = txn.open_table(META).map_err(err)?;
    let seq = meta
        .get("seq")
        .map_err(err)?
        .map(|v| v.value())
        .unwrap_or(0)
        + 1;
    meta.insert("seq", seq).map_err(err)?;
    Ok(seq)
}

fn load_event(
    events: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> StoreResult<Option<Stored>> {
    match events.get(id).map_err(err)? {
        Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

/// Drops one reference to an event; deletes it with the last one.
fn release(txn: &WriteTransaction, id: &str) -> StoreResult<()> {
    let mut events = txn.open_table(EVENTS).map_err(err)?;
    let Some(mut s) = load_event(&events, id)? else {
        return Ok(());
    };
    s.refs = s.refs.saturating_sub(1);
    if s.refs == 0 {
        events.remove(id).map_err(err)?;
    } else {
        let bytes = serde_json::to_vec(&s).map_err(corrupt)?;
        events.insert(id, bytes.as_slice()).map_err(err)?;
    }
    Ok(())
}

fn bump(txn: &WriteTransaction, target: &str, name: &str) -> StoreResult<()> {
    let mut c = txn.open_table(COUNTERS).map_err(err)?;
    let v = c
        .get((target, name))
        .map_err(err)?
        .map(|v| v.value())
        .unwrap_or(0);
    c.insert((target, name), v + 1).map_err(err)?;
    Ok(())
}

/// The current head of one lane.
fn head_of(
    lanes: &impl ReadableTable<LaneKey, &'static str>,
    target: &str,
    lane: &str,
) -> StoreResult<Option<(u64, String)>> {
    let first = lanes
        .range((target, lane, 0)..=(target, lane, u64::MAX))
        .map_err(err)?
        .next();
    match first {
        Some(entry) => {
            let (k, v) = entry.map_err(err)?;
            Ok(Some((k.value().2, v.value().to_string())))
        }
        None => Ok(None),
    }
}

impl EmbeddedStore {
    fn try_claim(&self, target: &str, max: usize) -> StoreResult<(Vec<Delivery>, Option<u64>)> {
        let mut orphans = Vec::new();
        let found = {
            // Held across the snapshot: a head finished after this snapshot is
            // still in `claimed` (finish removes it only after its commit and
            // under this lock), so a stale snapshot never hands it out again.
            let mut claimed = self.outbox.claimed.lock();
            let txn = self.db.begin_read().map_err(err)?;
            let ready = txn.open_table(READY).map_err(err)?;
            let retry = txn.open_table(RETRY).map_err(err)?;
            let events = txn.open_table(EVENTS).map_err(err)?;
            let now = now_ms();
            let mut out = Vec::new();
            let mut next_due: Option<u64> = None;
            for entry in ready
                .range((target, 0, 0)..=(target, u64::MAX, u64::MAX))
                .map_err(err)?
            {
                if out.len() >= max {
                    break;
                }
                let (k, v) = entry.map_err(err)?;
                let (_, due, _) = k.value();
                if due > now {
                    next_due = Some(due);
                    break;
                }
                let key = (target.to_string(), v.value().to_string());
                if claimed.contains(&key) {
                    continue;
                }
                let r: Retry = match retry.get((target, key.1.as_str())).map_err(err)? {
                    Some(v) => serde_json::from_slice(v.value()).map_err(corrupt)?,
                    None => Retry::default(),
                };
                let Some(stored) = load_event(&events, &key.1)? else {
                    orphans.push(key.1);
                    continue;
                };
                claimed.insert(key);
                out.push(Delivery {
                    target: target.to_string(),
                    lane: stored.event.lane(),
                    event: stored.event,
                    attempts: r.attempts,
                    failing_since_ms: (r.since_ms > 0).then_some(r.since_ms),
                    handle: String::new(),
                });
            }
            (out, next_due)
        };
        for id in orphans {
            self.drop_orphan(target, &id)?;
        }
        Ok(found)
    }

    /// A head whose body is gone (never expected): removed with an error
    /// in the log, and its lane moves on, rather than stalling forever.
    fn drop_orphan(&self, target: &str, id: &str) -> StoreResult<()> {
        tracing::error!(target = %target, event = %id, "webhook event body missing; dropping it from its lane");
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut lanes = txn.open_table(LANES).map_err(err)?;
            let mut ready = txn.open_table(READY).map_err(err)?;
            let mut found: Option<(String, u64)> = None;
            for e in lanes.range((target, "", 0)..).map_err(err)? {
                let (k, v) = e.map_err(err)?;
                let (t, lane, seq) = k.value();
                if t != target {
                    break;
                }
                if v.value() == id {
                    found = Some((lane.to_string(), seq));
                    break;
                }
            }
            let mut stale = Vec::new();
            for e in ready
                .range((target, 0, 0)..=(target, u64::MAX, u64::MAX))
                .map_err(err)?
            {
                let (k, v) = e.map_err(err)?;
                if v.value() == id {
                    let (_, due, seq) = k.value();
                    stale.push((due, seq));
                }
            }
            for (due, seq) in stale {
                ready.remove((target, due, seq)).map_err(err)?;
            }
            if let Some((lane, seq)) = found {
                lanes.remove((target, lane.as_str(), seq)).map_err(err)?;
                if let Some((next_seq, next)) = head_of(&lanes, target, &lane)? {
                    ready
                        .insert((target, 0, next_seq), next.as_str())
                        .map_err(err)?;
                }
            }
            txn.open_table(RETRY)
                .map_err(err)?
                .remove((target, id))
                .map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(())
    }

    /// Records an outcome; `Ok(false)` when it was committed without an
    /// fsync (the caller schedules `flush_outcomes`).
    fn finish_sync(&self, d: &Delivery, outcome: &Outcome) -> StoreResult<bool> {
        let target = d.target.as_str();
        let id = d.event.id.as_str();
        let lane = d.event.lane();
        let mut txn = self.db.begin_write().map_err(err)?;
        let durable = self
            .outbox
            .last_durable
            .lock()
            .is_none_or(|t| t.elapsed() >= OUTCOME_FSYNC_EVERY);
        if !durable {
            txn.set_durability(redb::Durability::None);
        }
        {
            let mut lanes = txn.open_table(LANES).map_err(err)?;
            let Some((seq, head)) = head_of(&lanes, target, &lane)? else {
                return Ok(true);
            };
            if head != id {
                return Ok(true);
            }
            let mut retry = txn.open_table(RETRY).map_err(err)?;
            let prev: Retry = match retry.get((target, id)).map_err(err)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(corrupt)?,
                None => Retry::default(),
            };
            let mut ready = txn.open_table(READY).map_err(err)?;
            ready.remove((target, prev.due_ms, seq)).map_err(err)?;
            match outcome {
                Outcome::Delivered => {
                    lanes.remove((target, lane.as_str(), seq)).map_err(err)?;
                    retry.remove((target, id)).map_err(err)?;
                }
                Outcome::Retry { due_ms, error } => {
                    let r = Retry {
                        attempts: prev.attempts + 1,
                        due_ms: *due_ms,
                        // Set at the first failure (a record without one
                        // starts counting now).
                        since_ms: if prev.since_ms == 0 {
                            now_ms()
                        } else {
                            prev.since_ms
                        },
                    };
                    let bytes = serde_json::to_vec(&r).map_err(corrupt)?;
                    retry.insert((target, id), bytes.as_slice()).map_err(err)?;
                    ready.insert((target, *due_ms, seq), id).map_err(err)?;
                    txn.open_table(LAST_ERROR)
                        .map_err(err)?
                        .insert(target, error.as_str())
                        .map_err(err)?;
                }
                Outcome::Dead { error } => {
                    lanes.remove((target, lane.as_str(), seq)).map_err(err)?;
                    retry.remove((target, id)).map_err(err)?;
                    let dead = DeadLetter {
                        target: target.to_string(),
                        event_id: id.to_string(),
                        kind: d.event.kind,
                        tenant: d.event.tenant.clone(),
                        at_ms: d.event.at_ms,
                        dead_ms: now_ms(),
                        attempts: prev.attempts + 1,
                        error: error.clone(),
                    };
                    let bytes = serde_json::to_vec(&dead).map_err(corrupt)?;
                    txn.open_table(DEAD)
                        .map_err(err)?
                        .insert((target, id), bytes.as_slice())
                        .map_err(err)?;
                    txn.open_table(LAST_ERROR)
                        .map_err(err)?
                        .insert(target, error.as_str())
                        .map_err(err)?;
                }
            }
            // The lane moved on: its next event is due now.
            if !matches!(outcome, Outcome::Retry { .. }) {
                if let Some((next_seq, next)) = head_of(&lanes, target, &lane)? {
                    ready
                        .insert((target, 0, next_seq), next.as_str())
                        .map_err(err)?;
                }
            }
        }
        match outcome {
            Outcome::Delivered => {
                bump(&txn, target, "delivered")?;
                release(&txn, id)?;
            }
            Outcome::Retry { .. } | Outcome::Dead { .. } => bump(&txn, target, "failed")?,
        }
        txn.commit().map_err(err)?;
        if durable {
            *self.outbox.last_durable.lock() = Some(std::time::Instant::now());
        }
        Ok(durable)
    }

    /// Makes every outcome committed so far durable (an empty fsync'd commit
    /// persists the non-durable ones before it).
    fn flush_outcomes(&self) -> StoreResult<()> {
        self.outbox
            .flush_pending
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let txn = self.db.begin_write().map_err(err)?;
        txn.commit().map_err(err)?;
        *self.outbox.last_durable.lock() = Some(std::time::Instant::now());
        Ok(())
    }

    fn status_sync(&self, targets: &[String]) -> StoreResult<Vec<TargetStatus>> {
        let txn = self.db.begin_read().map_err(err)?;
        let lanes = txn.open_table(LANES).map_err(err)?;
        let retry = txn.open_table(RETRY).map_err(err)?;
        let dead = txn.open_table(DEAD).map_err(err)?;
        let events = txn.open_table(EVENTS).map_err(err)?;
        let counters = txn.open_table(COUNTERS).map_err(err)?;
        let last = txn.open_table(LAST_ERROR).map_err(err)?;
        let now = now_ms();
        let count_pairs = |t: &str, table: &redb::ReadOnlyTable<Pair, &'static [u8]>| {
            let mut n = 0u64;
            for e in table.range((t, "")..).map_err(err)? {
                let (k, _) = e.map_err(err)?;
                if k.value().0 != t {
                    break;
                }
                n += 1;
            }
            Ok::<u64, StoreError>(n)
        };
        let mut out = Vec::new();
        for t in targets {
            let t = t.as_str();
            let mut pending = 0u64;
            let mut oldest: Option<(u64, String)> = None;
            for e in lanes.range((t, "", 0)..).map_err(err)? {
                let (k, v) = e.map_err(err)?;
                let (kt, _, seq) = k.value();
                if kt != t {
                    break;
                }
                pending += 1;
                if oldest.as_ref().is_none_or(|(s, _)| seq < *s) {
                    oldest = Some((seq, v.value().to_string()));
                }
            }
            let oldest_pending_ms = match oldest {
                Some((_, id)) => load_event(&events, &id)?
                    .map(|s| now.saturating_sub(s.event.at_ms))
                    .unwrap_or(0),
                None => 0,
            };
            let counter = |name: &str| -> StoreResult<u64> {
                Ok(counters
                    .get((t, name))
                    .map_err(err)?
                    .map(|v| v.value())
                    .unwrap_or(0))
            };
            out.push(TargetStatus {
                target: t.to_string(),
                pending,
                oldest_pending_ms,
                retrying: count_pairs(t, &retry)?,
                dead_letters: count_pairs(t, &dead)?,
                delivered: counter("delivered")?,
                failed_attempts: counter("failed")?,
                last_error: last.get(t).map_err(err)?.map(|v| v.value().to_string()),
            });
        }
        Ok(out)
    }

    fn dead_sync(&self, targets: &[String]) -> StoreResult<Vec<DeadLetter>> {
        let txn = self.db.begin_read().map_err(err)?;
        let dead = txn.open_table(DEAD).map_err(err)?;
        let mut out = Vec::new();
        for t in targets {
            for e in dead.range((t.as_str(), "")..).map_err(err)? {
                let (k, v) = e.map_err(err)?;
                if k.value().0 != t {
                    break;
                }
                out.push(serde_json::from_slice::<DeadLetter>(v.value()).map_err(corrupt)?);
            }
        }
        out.sort_by(|a, b| (a.at_ms, &a.event_id).cmp(&(b.at_ms, &b.event_id)));
        Ok(out)
    }

    fn discard_sync(
        &self,
        target: &str,
        ids: &[String],
        before: Option<u64>,
    ) -> StoreResult<usize> {
        let chosen: Vec<DeadLetter> = self
            .dead_sync(&[target.to_string()])?
            .into_iter()
            .filter(|d| d.selected(ids, None, before))
            .collect();
        if chosen.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(err)?;
        let mut n = 0;
        for d in &chosen {
            let removed = txn
                .open_table(DEAD)
                .map_err(err)?
                .remove((target, d.event_id.as_str()))
                .map_err(err)?
                .is_some();
            if removed {
                release(&txn, &d.event_id)?;
                n += 1;
            }
        }
        txn.commit().map_err(err)?;
        Ok(n)
    }

    fn replay_sync(&self, target: &str, ids: &[String], since: Option<u64>) -> StoreResult<usize> {
        let chosen: Vec<DeadLetter> = self
            .dead_sync(&[target.to_string()])?
            .into_iter()
            .filter(|d| d.selected(ids, since, None))
            .collect();
        if chosen.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(err)?;
        let mut n = 0;
        for d in &chosen {
            let lane = {
                let events = txn.open_table(EVENTS).map_err(err)?;
                match load_event(&events, &d.event_id)? {
                    Some(s) => s.event.lane(),
                    None => continue,
                }
            };
            // Only a dead letter still there is re-queued: two replays racing
            // must not put the event in its lane twice.
            let removed = txn
                .open_table(DEAD)
                .map_err(err)?
                .remove((target, d.event_id.as_str()))
                .map_err(err)?
                .is_some();
            if !removed {
                continue;
            }
            let seq = next_seq(&txn)?;
            let mut lanes = txn.open_table(LANES).map_err(err)?;
            let first = head_of(&lanes, target, &lane)?.is_none();
            lanes
                .insert((target, lane.as_str(), seq), d.event_id.as_str())
                .map_err(err)?;
            if first {
                txn.open_table(READY)
                    .map_err(err)?
                    .insert((target, 0, seq), d.event_id.as_str())
                    .map_err(err)?;
            }
            n += 1;
        }
        txn.commit().map_err(err)?;
        Ok(n)
    }

    /// Wakes workers after events were appended.
    pub(super) fn outbox_appended(&self) {
        self.outbox.wake.notify_waiters();
    }
}

#[async_trait]
impl OutboxStore for EmbeddedStore {
    async fn append_events(&self, emit: Emit) -> StoreResult<()> {
        if emit.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            append(&txn, &emit)?;
            txn.commit().map_err(err)
        })
        .await?;
        self.outbox_appended();
        Ok(())
    }

    async fn claim(
        &self,
        target: &str,
        _consumer: &str,
        max: usize,
        wait: Duration,
        _reclaim_after: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an append in between still wakes us.
            let woken = self.outbox.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (found, next_due) = {
                let me = self.clone();
                let target = target.to_string();
                tokio::task::spawn_blocking(move || me.try_claim(&target, max))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??
            };
            if !found.is_empty() {
                return Ok(found);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut until = deadline;
            if let Some(due) = next_due {
                let in_ms = due.saturating_sub(now_ms());
                until = until.min(now + Duration::from_millis(in_ms));
            }
            let _ = tokio::time::timeout_at(until, woken).await;
        }
    }

    async fn finish(&self, delivery: &Delivery, outcome: &Outcome) -> StoreResult<()> {
        let me = self.clone();
        let (d, o) = (delivery.clone(), outcome.clone());
        let durable = tokio::task::spawn_blocking(move || {
            let r = me.finish_sync(&d, &o);
            // On failure the head stays claimed (the worker retries the
            // finish): releasing it would send it again at once.
            if r.is_ok() {
                me.outbox
                    .claimed
                    .lock()
                    .remove(&(d.target.clone(), d.event.id.clone()));
            }
            r
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let first = !self
            .outbox
            .flush_pending
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if !durable && first {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(OUTCOME_FSYNC_EVERY).await;
                let flushed = tokio::task::spawn_blocking(move || me.flush_outcomes()).await;
                if !matches!(flushed, Ok(Ok(()))) {
                    tracing::warn!("could not flush webhook delivery outcomes to disk; a crash would re-send them");
                }
            });
        } else if durable && first {
            self.outbox
                .flush_pending
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        self.outbox_appended();
        Ok(())
    }

    async fn discard(
        &self,
        target: &str,
        ids: &[String],
        before_ms: Option<u64>,
    ) -> StoreResult<usize> {
        let me = self.clone();
        let (t, ids) = (target.to_string(), ids.to_vec());
        tokio::task::spawn_blocking(move || me.discard_sync(&t, &ids, before_ms))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn lane_len(&self, target: &str, lane: &str) -> StoreResult<u64> {
        let (t, l) = (target.to_string(), lane.to_string());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let lanes = txn.open_table(LANES).map_err(err)?;
            let n = lanes
                .range((t.as_str(), l.as_str(), 0)..=(t.as_str(), l.as_str(), u64::MAX))
                .map_err(err)?
                .count();
            Ok(n as u64)
        })
        .await
    }

    async fn status(&self, targets: &[String]) -> StoreResult<Vec<TargetStatus>> {
        let me = self.clone();
        let t = targets.to_vec();
        tokio::task::spawn_blocking(move || me.status_sync(&t))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn dead_letters(&self, targets: &[String]) -> StoreResult<Vec<DeadLetter>> {
        let me = self.clone();
        let t = targets.to_vec();
        tokio::task::spawn_blocking(move || me.dead_sync(&t))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn replay(
        &self,
        target: &str,
        ids: &[String],
        since_ms: Option<u64>,
    ) -> StoreResult<usize> {
        let me = self.clone();
        let (t, ids) = (target.to_string(), ids.to_vec());
        let n = tokio::task::spawn_blocking(move || me.replay_sync(&t, &ids, since_ms))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        self.outbox_appended();
        Ok(n)
    }
}
