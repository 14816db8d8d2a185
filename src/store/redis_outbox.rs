//! `OutboxStore` on Redis, shared by every replica.
//!
//! Directory scripts append events themselves (the `emit` function in
//! `redis_directory`'s prelude), so a change and its events are one script.
//! Each target has, under `W` = `{prefix}wh:t:<target>:`:
//! - `W lane:<lane>` list of event ids, oldest first; its first element is
//!   the head, the only one that may be delivered;
//! - `W ready` stream holding exactly the heads that are due, read by the
//!   consumer group `delivery`: each head goes to one replica, and a replica
//!   that dies leaves it pending until another re-claims it (XAUTOCLAIM);
//! - `W delayed` sorted set of heads waiting for a retry (`<id>|<lane>`,
//!   score = due ms), moved back to `ready` when due;
//! - `W tries` hash id → failed attempts; `W dead` hash id → dead letter;
//!   `W pending` sorted set id → event time (depth and oldest age);
//!   `W stats` hash: `delivered`, `failed`, `last_error`.
//!
//! Event bodies live once in `{prefix}wh:ev:<id>` (`p` = the event as Rust
//! planned it, plus what the script knew: `v`/`cr`/`lm` version and times,
//! `rec` the stored group record, `m` the member ids that changed; `n` =
//! references left). Blocking reads use a connection of their own with no
//! response timeout, so they never stall other commands.
//!
//! Only stream commands Redis 7.0 has are used (XAUTOCLAIM is 6.2).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Script};
use serde_json::json;

use super::redis::RedisStore;
use super::{StoreError, StoreResult};
use crate::clock::now_ms;
use crate::directory::Group;
use crate::webhook::outbox::{
    DeadLetter, Delivery, Emit, OutboxEvent, OutboxStore, Outcome, TargetStatus,
};

const GROUP: &str = "delivery";

/// Longest single XREADGROUP block (a claim with a longer wait loops).
const MAX_BLOCK: Duration = Duration::from_secs(20);

/// In-process state: blocking connections per (target, consumer) and the
/// targets this process already started on.
#[derive(Default)]
pub struct OutboxRuntime {
    conns: tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>,
    started: Mutex<HashSet<String>>,
    last_reclaim: Mutex<HashMap<String, std::time::Instant>>,
}

/// Lua that appends an outbox spec (see `outbox_spec`) to the lanes of its
/// targets: the event body once (`n` = lane references), then per target
/// the lane entry, a `ready` entry when it became the head, and the pending
/// index. `ctx` adds what the calling script knows (version, changed
/// members, stored record); an event marked `m = 1` exists only when
/// `ctx.m` names changed members. Shared by the directory scripts and
/// `APPEND`, so both write the outbox the same way.
pub(super) const APPEND_EVENTS_LUA: &str = r"
local function append_events(spec, ctx)
  local P = spec.p
  for _, e in ipairs(spec.e) do
    if e.m == 0 or (ctx.m and ctx.m ~= '') then
      local ek = P .. 'ev:' .. e.id
      redis.call('HSET', ek, 'p', e.body, 'n', #e.t, 'l', e.lane)
      for k, v in pairs(ctx) do
        if v and v ~= '' then redis.call('HSET', ek, k, v) end
      end
      for _, tn in ipairs(e.t) do
        local W = P .. 't:' .. tn .. ':'
        if redis.call('RPUSH', W .. 'lane:' .. e.lane, e.id) == 1 then
          redis.call('XADD', W .. 'ready', '*', 'e', e.id, 'l', e.lane)
        end
        redis.call('ZADD', W .. 'pending', e.at, e.id)
      end
    end
  end
end
";

/// Appends events outside a directory write (backfill, session events).
/// ARGV: the outbox spec, as the directory scripts take it.
const APPEND: &str = r"
append_events(cjson.decode(ARGV[1]), {})
return 1
";

/// ARGV: P, target, event id, stream id ('' = none), lane, outcome
/// ('ok'|'retry'|'dead'|'drop' = a head whose body is gone), due ms,
/// error, dead letter JSON, now.
/// Returns 1, or 0 when the head was already finished elsewhere.
const FINISH: &str = r"
local P, tn, eid, sid, lane, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local W = P .. 't:' .. tn .. ':'
if sid ~= '' then
  redis.call('XACK', W .. 'ready', 'delivery', sid)
  redis.call('XDEL', W .. 'ready', sid)
end
local lk = W .. 'lane:' .. lane
if redis.call('LINDEX', lk, 0) ~= eid then return 0 end
if outcome == 'retry' then
  redis.call('ZADD', W .. 'delayed', ARGV[7], eid .. '|' .. lane)
  redis.call('HINCRBY', W .. 'tries', eid, 1)
  redis.call('HSETNX', W .. 'since', eid, ARGV[10])
  redis.call('HINCRBY', W .. 'stats', 'failed', 1)
  redis.call('HSET', W .. 'stats', 'last_error', ARGV[8])
  return 1
end
redis.call('LPOP', lk)
redis.call('HDEL', W .. 'tries', eid)
redis.call('HDEL', W .. 'since', eid)
redis.call('ZREM', W .. 'pending', eid)
if outcome == 'ok' then
  redis.call('HINCRBY', W .. 'stats', 'delivered', 1)
  if redis.call('HINCRBY', P .. 'ev:' .. eid, 'n', -1) <= 0 then redis.call('DEL', P .. 'ev:' .. eid) end
elseif outcome == 'dead' then
  redis.call('HSET', W .. 'dead', eid, ARGV[9])
  redis.call('HINCRBY', W .. 'stats', 'failed', 1)
  redis.call('HSET', W .. 'stats', 'last_error', ARGV[8])
end
local nxt = redis.call('LINDEX', lk, 0)
if nxt then redis.call('XADD', W .. 'ready', '*', 'e', nxt, 'l', lane) end
return 1
";

/// Moves due retries back to `ready`. ARGV: P, target, now. Atomic, so two
/// replicas never promote the same head twice.
const PROMOTE: &str = r"
local W = ARGV[1] .. 't:' .. ARGV[2] .. ':'
local due = redis.call('ZRANGEBYSCORE', W .. 'delayed', '-inf', ARGV[3], 'LIMIT', 0, 500)
for _, m in ipairs(due) do
  redis.call('ZREM', W .. 'delayed', m)
  local sep = string.find(m, '|', 1, true)
  redis.call('XADD', W .. 'ready', '*', 'e', string.sub(m, 1, sep - 1), 'l', string.sub(m, sep + 1))
end
return #due
";

/// Re-queues one dead letter. ARGV: P, target, event id, lane, event time.
const REPLAY: &str = r"
local P, tn, eid, lane = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local W = P .. 't:' .. tn .. ':'
if redis.call('HDEL', W .. 'dead', eid) == 0 then return 0 end
if redis.call('RPUSH', W .. 'lane:' .. lane, eid) == 1 then
  redis.call('XADD', W .. 'ready', '*', 'e', eid, 'l', lane)
end
redis.call('ZADD', W .. 'pending', ARGV[5], eid)
return 1
";

/// Drops one dead letter and its reference. ARGV: P, target, event id.
const DISCARD: &str = r"
local P, tn, eid = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HDEL', P .. 't:' .. tn .. ':dead', eid) == 0 then return 0 end
if redis.call('HINCRBY', P .. 'ev:' .. eid, 'n', -1) <= 0 then redis.call('DEL', P .. 'ev:' .. eid) end
return 1
";

struct Scripts {
    discard: Script,
    append: Script,
    finish: Script,
    promote: Script,
    replay: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    discard: Script::new(DISCARD),
    append: Script::new(&format!("{APPEND_EVENTS_LUA}\n{APPEND}")),
    finish: Script::new(FINISH),
    promote: Script::new(PROMOTE),
    replay: Script::new(REPLAY),
});

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl RedisStore {
    fn wh_prefix(&self) -> String {
        format!("{}wh:", self.prefix)
    }

    fn wh_target(&self, target: &str) -> String {
        format!("{}wh:t:{target}:", self.prefix)
    }

    /// The outbox spec a directory script takes as its last argument: the
    /// key prefix and, per event, id, planned body, lane, targets, whether
    /// it depends on members changing, and its time.
    pub(super) fn outbox_spec(&self, emit: &Emit) -> StoreResult<String> {
        if emit.is_empty() {
            return Ok(String::new());
        }
        let events: Vec<_> = emit
            .events
            .iter()
            .filter(|p| !p.targets.is_empty())
            .map(|p| {
                // Membership events exist only if the script changed members.
                let members_dependent = matches!(
                    p.event.kind.as_str(),
                    "group.members_added" | "group.members_removed"
                );
                Ok(json!({
                    "id": p.event.id,
                    "body": serde_json::to_string(&p.event).map_err(corrupt)?,
                    "lane": p.event.lane(),
                    "t": p.targets,
                    "m": if members_dependent { 1 } else { 0 },
                    "at": p.event.at_ms.to_string(),
                }))
            })
            .collect::<StoreResult<_>>()?;
        Ok(json!({"p": self.wh_prefix(), "e": events}).to_string())
    }

    /// A connection for blocking reads, one per (target, consumer).
    async fn blocking_conn(&self, key: &str) -> StoreResult<MultiplexedConnection> {
        let mut conns = self.outbox.conns.lock().await;
        if let Some(c) = conns.get(key) {
            return Ok(c.clone());
        }
        // No 500 ms default: XREADGROUP blocks for up to MAX_BLOCK. A bound
        // still exists so a half-open connection cannot hang a worker.
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(10)));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        conns.insert(key.to_string(), c.clone());
        Ok(c)
    }

    /// The event `id` as planned, with what the writing script added.
    async fn load_event(&self, id: &str) -> StoreResult<Option<OutboxEvent>> {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}ev:{id}", self.wh_prefix()))
            .query_async(&mut self.conn())
            .await?;
        merge_event(&h)
    }

    /// Turns stream entries into deliveries; entries whose head moved on or
    /// whose event is gone (finished elsewhere) are acknowledged and dropped.
    async fn deliveries(&self, target: &str, ids: Vec<StreamId>) -> StoreResult<Vec<Delivery>> {
        let w = self.wh_target(target);
        let mut out = Vec::new();
        for sid in ids {
            let (Some(eid), Some(lane)) = (sid.get::<String>("e"), sid.get::<String>("l")) else {
                self.drop_entry(&w, &sid.id).await?;
                continue;
            };
            let (head, tries, since): (Option<String>, Option<u32>, Option<u64>) = redis::pipe()
                .cmd("LINDEX")
                .arg(format!("{w}lane:{lane}"))
                .arg(0)
                .cmd("HGET")
                .arg(format!("{w}tries"))
                .arg(&eid)
                .cmd("HGET")
                .arg(format!("{w}since"))
                .arg(&eid)
                .query_async(&mut self.conn())
                .await?;
            let is_head = head.as_deref() == Some(eid.as_str());
            let event = if is_head {
                self.load_event(&eid).await?
            } else {
                None
            };
            if is_head && event.is_none() {
                // Never expected (evicted?): drop it so the lane moves on.
                tracing::error!(target = %target, event = %eid, "webhook event body missing; dropping it from its lane");
                let _: i64 = SCRIPTS
                    .finish
                    .prepare_invoke()
                    .arg(self.wh_prefix())
                    .arg(target)
                    .arg(&eid)
                    .arg(&sid.id)
                    .arg(&lane)
                    .arg("drop")
                    .arg(0)
                    .arg("")
                    .arg("")
                    .arg(now_ms())
                    .invoke_async(&mut self.conn())
                    .await?;
                continue;
            }
            match event {
                Some(event) => out.push(Delivery {
                    target: target.to_string(),
                    lane,
                    event,
                    attempts: tries.unwrap_or(0),
                    failing_since_ms: since,
                    handle: sid.id,
                }),
                None => self.drop_entry(&w, &sid.id).await?,
            }
        }
        Ok(out)
    }

    async fn drop_entry(&self, w: &str, sid: &str) -> StoreResult<()> {
        redis::pipe()
            .cmd("XACK")
            .arg(format!("{w}ready"))
            .arg(GROUP)
            .arg(sid)
            .ignore()
            .cmd("XDEL")
            .arg(format!("{w}ready"))
            .arg(sid)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Moves due retries of `target` back to its ready stream.
    async fn promote(&self, target: &str) -> StoreResult<()> {
        let _: i64 = SCRIPTS
            .promote
            .prepare_invoke()
            .arg(self.wh_prefix())
            .arg(target)
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn ensure_group(&self, target: &str) -> StoreResult<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(format!("{}ready", self.wh_target(target)))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }
}

/// Rebuilds an event from its hash (see the module doc).
fn merge_event(h: &HashMap<String, String>) -> StoreResult<Option<OutboxEvent>> {
    let Some(p) = h.get("p") else {
        return Ok(None);
    };
    let mut ev: OutboxEvent = serde_json::from_str(p).map_err(corrupt)?;
    if let Some(rec) = h.get("rec") {
        let mut g: Group = serde_json::from_str(rec).map_err(corrupt)?;
        g.members = ev.group.take().map(|g| g.members).unwrap_or_default();
        ev.group = Some(g);
    }
    if let Some(g) = ev.group.as_mut() {
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        if let Some(v) = num("v") {
            g.meta.version = v;
        }
        if let Some(v) = num("cr") {
            g.meta.created_ms = v;
        }
        if let Some(v) = num("lm") {
            g.meta.last_modified_ms = v;
        }
    }
    if let Some(m) = h.get("m").filter(|m| !m.is_empty()) {
        ev.members = m.split(',').map(str::to_string).collect();
    }
    Ok(Some(ev))
}

#[async_trait]
impl OutboxStore for RedisStore {
    async fn append_events(&self, emit: Emit) -> StoreResult<()> {
        if emit.is_empty() {
            return Ok(());
        }
        let spec = self.outbox_spec(&emit)?;
        let _: i64 = SCRIPTS
            .append
            .prepare_invoke()
            .arg(spec)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn claim(
        &self,
        target: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
        reclaim_after: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        let r = self
            .claim_once(target, consumer, max, wait, reclaim_after)
            .await;
        if let Err(e) = &r {
            let key = format!("{target}\n{consumer}");
            // The blocking connection may be the broken part: a new one next time.
            self.outbox.conns.lock().await.remove(&key);
            // The stream or its group vanished (flushed, restored, evicted):
            // start over, which re-creates the group.
            if matches!(e, StoreError::Redis(re) if re.code() == Some("NOGROUP")) {
                self.outbox.started.lock().remove(&key);
            }
        }
        r
    }

    async fn finish(&self, d: &Delivery, outcome: &Outcome) -> StoreResult<()> {
        let (name, due, error) = match outcome {
            Outcome::Delivered => ("ok", 0, String::new()),
            Outcome::Retry { due_ms, error } => ("retry", *due_ms, error.clone()),
            Outcome::Dead { error } => ("dead", 0, error.clone()),
        };
        let dead = DeadLetter {
            target: d.target.clone(),
            event_id: d.event.id.clone(),
            kind: d.event.kind,
            tenant: d.event.tenant.clone(),
            at_ms: d.event.at_ms,
            dead_ms: now_ms(),
            attempts: d.attempts + 1,
            error: error.clone(),
        };
        let _: i64 = SCRIPTS
            .finish
            .prepare_invoke()
            .arg(self.wh_prefix())
            .arg(&d.target)
            .arg(&d.event.id)
            .arg(&d.handle)
            .arg(&d.lane)
            .arg(name)
            .arg(due)
            .arg(error)
            .arg(serde_json::to_string(&dead).map_err(corrupt)?)
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn discard(
        &self,
        target: &str,
        ids: &[String],
        before_ms: Option<u64>,
    ) -> StoreResult<usize> {
        let chosen: Vec<DeadLetter> = self
            .dead_letters(&[target.to_string()])
            .await?
            .into_iter()
            .filter(|d| d.selected(ids, None, before_ms))
            .collect();
        let mut n = 0;
        for d in chosen {
            let r: i64 = SCRIPTS
                .discard
                .prepare_invoke()
                .arg(self.wh_prefix())
                .arg(target)
                .arg(&d.event_id)
                .invoke_async(&mut self.conn())
                .await?;
            n += r as usize;
        }
        Ok(n)
    }

    async fn lane_len(&self, target: &str, lane: &str) -> StoreResult<u64> {
        Ok(redis::cmd("LLEN")
            .arg(format!("{}lane:{lane}", self.wh_target(target)))
            .query_async(&mut self.conn())
            .await?)
    }

    async fn status(&self, targets: &[String]) -> StoreResult<Vec<TargetStatus>> {
        let now = now_ms();
        let mut out = Vec::new();
        for t in targets {
            let w = self.wh_target(t);
            let (pending, oldest, retrying, dead, stats): (
                u64,
                Vec<(String, f64)>,
                u64,
                u64,
                HashMap<String, String>,
            ) = redis::pipe()
                .cmd("ZCARD")
                .arg(format!("{w}pending"))
                .cmd("ZRANGE")
                .arg(format!("{w}pending"))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .cmd("ZCARD")
                .arg(format!("{w}delayed"))
                .cmd("HLEN")
                .arg(format!("{w}dead"))
                .cmd("HGETALL")
                .arg(format!("{w}stats"))
                .query_async(&mut self.conn())
                .await?;
            let n = |k: &str| stats.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            out.push(TargetStatus {
                target: t.clone(),
                pending,
                oldest_pending_ms: oldest
                    .first()
                    .map(|(_, at)| now.saturating_sub(*at as u64))
                    .unwrap_or(0),
                retrying,
                dead_letters: dead,
                delivered: n("delivered"),
                failed_attempts: n("failed"),
                last_error: stats.get("last_error").filter(|e| !e.is_empty()).cloned(),
            });
        }
        Ok(out)
    }

    async fn dead_letters(&self, targets: &[String]) -> StoreResult<Vec<DeadLetter>> {
        let mut out = Vec::new();
        for t in targets {
            let vals: Vec<String> = redis::cmd("HVALS")
                .arg(format!("{}dead", self.wh_target(t)))
                .query_async(&mut self.conn())
                .await?;
            for v in vals {
                out.push(serde_json::from_str::<DeadLetter>(&v).map_err(corrupt)?);
            }
        }
        out.sort_by(|a, b| (a.at_ms, &a.event_id).cmp(&(b.at_ms, &b.event_id)));
        Ok(out)
    }

    async fn replay(
        &self,
        target: &str,
        ids: &[String],
        since_ms: Option<u64>,
    ) -> StoreResult<usize> {
        let chosen: Vec<DeadLetter> = self
            .dead_letters(&[target.to_string()])
            .await?
            .into_iter()
            .filter(|d| d.selected(ids, since_ms, None))
            .collect();
        let mut n = 0;
        for d in chosen {
            let Some(ev) = self.load_event(&d.event_id).await? else {
                continue;
            };
            let lane: Option<String> = redis::cmd("HGET")
                .arg(format!("{}ev:{}", self.wh_prefix(), ev.id))
                .arg("l")
                .query_async(&mut self.conn())
                .await?;
            let r: i64 = SCRIPTS
                .replay
                .prepare_invoke()
                .arg(self.wh_prefix())
                .arg(target)
                .arg(&ev.id)
                .arg(lane.unwrap_or_else(|| ev.lane()))
                .arg(ev.at_ms)
                .invoke_async(&mut self.conn())
                .await?;
            n += r as usize;
        }
        Ok(n)
    }
}

impl RedisStore {
    /// One claim attempt (see `OutboxStore::claim`).
    async fn claim_once(
        &self,
        target: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
        reclaim_after: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        let w = self.wh_target(target);
        let stream = format!("{w}ready");
        let key = format!("{target}\n{consumer}");
        let first = self.outbox.started.lock().insert(key.clone());
        if first {
            self.ensure_group(target).await?;
        }
        let deadline = tokio::time::Instant::now() + wait;
        self.promote(target).await?;
        if first {
            // What this consumer held when it last stopped (same name after
            // a restart): deliver it again before anything new.
            let own: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(max.max(1))
                .arg("STREAMS")
                .arg(&stream)
                .arg("0")
                .query_async(&mut self.conn())
                .await?;
            let ids: Vec<StreamId> = own
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            if !ids.is_empty() {
                let found = self.deliveries(target, ids).await?;
                if !found.is_empty() {
                    return Ok(found);
                }
            }
        }
        let reclaim_due = {
            let mut last = self.outbox.last_reclaim.lock();
            let now = std::time::Instant::now();
            match last.get(&key) {
                Some(t) if now.duration_since(*t) < reclaim_after / 2 => false,
                _ => {
                    last.insert(key.clone(), now);
                    true
                }
            }
        };
        if reclaim_due {
            // Heads a silent replica held longer than any delivery takes.
            let r: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(reclaim_after.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max.max(1))
                .query_async(&mut self.conn())
                .await?;
            if !r.claimed.is_empty() {
                tracing::warn!(target = %target, count = r.claimed.len(), "re-claimed webhook deliveries from a silent replica");
                let found = self.deliveries(target, r.claimed).await?;
                if !found.is_empty() {
                    return Ok(found);
                }
            }
        }
        let mut conn = self.blocking_conn(&key).await?;
        loop {
            // Block until new work, the deadline, or the next retry's due
            // time (it must be promoted to `ready` to be read).
            let now = tokio::time::Instant::now();
            let mut block = deadline.saturating_duration_since(now).min(MAX_BLOCK);
            let next: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(format!("{w}delayed"))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query_async(&mut self.conn())
                .await?;
            if let Some((_, due)) = next.first() {
                block = block.min(Duration::from_millis(
                    (*due as u64).saturating_sub(now_ms()),
                ));
            }
            let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(max.max(1))
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            let ids: Vec<StreamId> = read
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            if !ids.is_empty() {
                let found = self.deliveries(target, ids).await?;
                if !found.is_empty() {
                    return Ok(found);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            self.promote(target).await?;
        }
    }
}
