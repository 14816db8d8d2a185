//! The Redis backend: state shared by every replica. Commands go through a
//! `ConnectionManager` (multiplexed, reconnecting); revocations travel on a
//! pub/sub channel read by a dedicated connection, because a subscribed
//! connection can carry nothing else. Multi-key changes are Lua scripts so
//! they are atomic. Every key starts with `[store] key_prefix`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{Backend, StoreError, StoreResult};
use crate::session::{Revocation, RevocationHandler, SessionKey, SessionRecord, SessionStore};

pub struct RedisStore {
    pub(super) client: redis::Client,
    conn: ConnectionManager,
    pub(super) prefix: String,
    scripts: Arc<Scripts>,
    pub(super) outbox: Arc<super::redis_outbox::OutboxRuntime>,
}

struct Scripts {
    insert_session: Script,
    remove_session: Script,
    remove_user_sessions: Script,
    touch_session: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            // A session is a hash: `rec` (JSON, written once) and `seen` (last activity, ms),
            // so activity updates never rewrite the record.
            // KEYS: session, user index. ARGV: record, ttl ms, session key, index ttl ms, seen.
            insert_session: Script::new(
                r"redis.call('DEL', KEYS[1])
                  redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'seen', ARGV[5])
                  redis.call('PEXPIRE', KEYS[1], ARGV[2])
                  redis.call('SADD', KEYS[2], ARGV[3])
                  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then
                    redis.call('PEXPIRE', KEYS[2], ARGV[4])
                  end
                  return 1",
            ),
            // KEYS: session. ARGV: prefix of user index keys, session key. Returns the record.
            remove_session: Script::new(
                r"local v = redis.call('HGET', KEYS[1], 'rec')
                  if not v then return false end
                  redis.call('DEL', KEYS[1])
                  local ok, rec = pcall(cjson.decode, v)
                  if ok and rec.principal and rec.principal.sub then
                    redis.call('SREM', ARGV[1] .. rec.principal.sub, ARGV[2])
                  end
                  return v",
            ),
            // KEYS: user index. ARGV: prefix of session keys. Returns removed session keys.
            remove_user_sessions: Script::new(
                r"local ids = redis.call('SMEMBERS', KEYS[1])
                  for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id) end
                  redis.call('DEL', KEYS[1])
                  return ids",
            ),
            // KEYS: session. ARGV: last_seen ms, ttl ms. Updates only an existing record.
            touch_session: Script::new(
                r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                  local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '0')
                  if tonumber(ARGV[1]) > seen then
                    redis.call('HSET', KEYS[1], 'seen', ARGV[1])
                    redis.call('PEXPIRE', KEYS[1], ARGV[2])
                  end
                  return 1",
            ),
        }
    }
}

impl RedisStore {
    /// Connects (failing fast if Redis does not answer) and checks the server.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        let client = redis::Client::open(url)?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client.clone(), cfg).await?;
        let me = Self {
            client,
            conn,
            prefix: prefix.to_string(),
            scripts: Arc::new(Scripts::new()),
            outbox: Arc::default(),
        };
        me.ping().await?;
        Ok(me)
    }

    fn session_key(&self, key: &SessionKey) -> String {
        format!("{}session:{}", self.prefix, key.0)
    }
    fn session_prefix(&self) -> String {
        format!("{}session:", self.prefix)
    }
    fn user_index_prefix(&self) -> String {
        format!("{}user_sessions:", self.prefix)
    }
    fn user_index(&self, sub: &str) -> String {
        format!("{}{}", self.user_index_prefix(), sub)
    }
    fn revocation_channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    pub(super) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

fn decode(bytes: &[u8]) -> StoreResult<SessionRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn with_seen(mut rec: SessionRecord, seen: Option<u64>) -> StoreResult<SessionRecord> {
    if let Some(s) = seen {
        rec.last_seen_ms = rec.last_seen_ms.max(s);
    }
    Ok(rec)
}

impl Backend for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn insert_session(
        &self,
        key: &SessionKey,
        rec: &SessionRecord,
        ttl: Duration,
    ) -> StoreResult<()> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let index_ttl = rec.expires_ms.saturating_sub(rec.created_ms).max(ms(ttl));
        let _: i64 = self
            .scripts
            .insert_session
            .key(self.session_key(key))
            .key(self.user_index(&rec.principal.sub))
            .arg(json)
            .arg(ms(ttl))
            .arg(&key.0)
            .arg(index_ttl)
            .arg(rec.last_seen_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn get_session(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        let (rec, seen): (Option<Vec<u8>>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.session_key(key))
            .arg("rec")
            .arg("seen")
            .query_async(&mut self.conn())
            .await?;
        rec.map(|b| with_seen(decode(&b)?, seen)).transpose()
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        last_seen_ms: u64,
        ttl: Duration,
    ) -> StoreResult<()> {
        let _: i64 = self
            .scripts
            .touch_session
            .key(self.session_key(key))
            .arg(last_seen_ms)
            .arg(ms(ttl))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn remove_session(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        let v: Option<Vec<u8>> = self
            .scripts
            .remove_session
            .key(self.session_key(key))
            .arg(self.user_index_prefix())
            .arg(&key.0)
            .invoke_async(&mut self.conn())
            .await?;
        // A corrupt record was still deleted; report it as removed-without-data.
        Ok(v.and_then(|b| decode(&b).ok()))
    }

    async fn remove_user_sessions(&self, sub: &str) -> StoreResult<Vec<SessionKey>> {
        let ids: Vec<String> = self
            .scripts
            .remove_user_sessions
            .key(self.user_index(sub))
            .arg(self.session_prefix())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(ids.into_iter().map(SessionKey).collect())
    }

    async fn list_user_sessions(&self, sub: &str) -> StoreResult<Vec<(SessionKey, SessionRecord)>> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn.smembers(self.user_index(sub)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(format!("{}{}", self.session_prefix(), id))
                .arg("rec")
                .arg("seen");
        }
        let values: Vec<(Option<Vec<u8>>, Option<u64>)> = pipe.query_async(&mut conn).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, (rec, seen)) in ids.into_iter().zip(values) {
            match rec {
                Some(b) => out.push((SessionKey(id), with_seen(decode(&b)?, seen)?)),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            // Expired by TTL: tidy the index.
            let _: i64 = conn.srem(self.user_index(sub), gone).await?;
        }
        Ok(out)
    }

    async fn update_session_principal(
        &self,
        key: &SessionKey,
        principal: &crate::identity::Principal,
    ) -> StoreResult<bool> {
        let skey = self.session_key(key);
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&skey)
            .arg("rec")
            .query_async(&mut self.conn())
            .await?;
        let Some(raw) = raw else { return Ok(false) };
        let mut rec = decode(&raw)?;
        rec.principal = principal.clone();
        let json = serde_json::to_string(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Only while the session still exists: a concurrent revocation wins.
        let updated: i64 = Script::new(
            r"if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'rec', ARGV[1]) return 1 end return 0",
        )
        .key(skey)
        .arg(json)
        .invoke_async(&mut self.conn())
        .await?;
        Ok(updated == 1)
    }

    async fn purge_expired_sessions(&self, _now_ms: u64, _idle: Duration) -> StoreResult<usize> {
        // Redis expires session keys itself (PX); indexes are tidied on read.
        Ok(0)
    }

    async fn publish_revocation(&self, r: &Revocation) -> StoreResult<()> {
        let msg = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: i64 = self.conn().publish(self.revocation_channel(), msg).await?;
        Ok(())
    }

    fn watch_revocations(&self, handler: RevocationHandler) {
        let client = self.client.clone();
        let channel = self.revocation_channel();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(100);
                            // Anything published while we were away is lost: start clean.
                            handler(Revocation::All);
                            let mut stream = pubsub.on_message();
                            while let Some(msg) = stream.next().await {
                                match serde_json::from_slice::<Revocation>(msg.get_payload_bytes())
                                {
                                    Ok(r) => handler(r),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "ignoring malformed revocation message")
                                    }
                                }
                            }
                            tracing::warn!("revocation subscription lost; reconnecting");
                            handler(Revocation::All);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to revocations"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot connect for revocations"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }
}
