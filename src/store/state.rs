//! Short-lived single-use state shared by replicas: pending SAML
//! AuthnRequests (taken exactly once at the ACS) and the assertion replay
//! cache (inserted once until the assertion expires). Two operations are
//! enough for both: insert-if-absent with a TTL, and atomic take.

use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition};

use super::embedded::EmbeddedStore;
use super::redis::RedisStore;
use super::{StoreError, StoreResult};

pub use crate::ephemeral::StateStore;

pub(super) const STATE_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const STATE: TableDefinition<&str, &[u8]> = STATE_TABLE;

fn state_key(ns: &str, key: &str) -> String {
    format!("{ns}\u{0}{key}")
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

/// Stored as 8 bytes of big-endian expiry (ms) followed by the value.
fn expiry(stored: &[u8]) -> u64 {
    stored
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn put_state_once(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> StoreResult<bool> {
        let k = state_key(ns, key);
        let now = crate::clock::now_ms();
        let mut stored = (now + ttl.as_millis() as u64).to_be_bytes().to_vec();
        stored.extend_from_slice(value);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let inserted = {
                let mut t = txn.open_table(STATE).map_err(err)?;
                let live = t
                    .get(k.as_str())
                    .map_err(err)?
                    .map(|v| expiry(v.value()) > now);
                if live == Some(true) {
                    false
                } else {
                    t.insert(k.as_str(), stored.as_slice()).map_err(err)?;
                    true
                }
            };
            txn.commit().map_err(err)?;
            Ok(inserted)
        })
        .await
    }

    async fn take_state(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = state_key(ns, key);
        let now = crate::clock::now_ms();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let taken = {
                let mut t = txn.open_table(STATE).map_err(err)?;
                let v = t
                    .remove(k.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec());
                v.filter(|v| expiry(v) > now).map(|v| v[8..].to_vec())
            };
            txn.commit().map_err(err)?;
            Ok(taken)
        })
        .await
    }

    async fn peek_state(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = state_key(ns, key);
        let now = crate::clock::now_ms();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(STATE).map_err(err)?;
            let v = t.get(k.as_str()).map_err(err)?.map(|v| v.value().to_vec());
            Ok(v.filter(|v| expiry(v) > now).map(|v| v[8..].to_vec()))
        })
        .await
    }

    async fn purge_expired_state(&self, now_ms: u64) -> StoreResult<usize> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let n = {
                let mut t = txn.open_table(STATE).map_err(err)?;
                let expired: Vec<String> = t
                    .iter()
                    .map_err(err)?
                    .filter_map(|e| e.ok())
                    .filter(|(_, v)| expiry(v.value()) <= now_ms)
                    .map(|(k, _)| k.value().to_string())
                    .collect();
                for k in &expired {
                    t.remove(k.as_str()).map_err(err)?;
                }
                expired.len()
            };
            txn.commit().map_err(err)?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn put_state_once(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> StoreResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}state:{ns}:{key}", self.prefix))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg((ttl.as_millis() as u64).max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    async fn take_state(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(redis::cmd("GETDEL")
            .arg(format!("{}state:{ns}:{key}", self.prefix))
            .query_async(&mut self.conn())
            .await?)
    }

    async fn peek_state(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(redis::cmd("GET")
            .arg(format!("{}state:{ns}:{key}", self.prefix))
            .query_async(&mut self.conn())
            .await?)
    }

    async fn purge_expired_state(&self, _now_ms: u64) -> StoreResult<usize> {
        Ok(0) // PX expiry
    }

    async fn window_hit(
        &self,
        key: &str,
        window: Duration,
    ) -> StoreResult<Option<(u64, Duration)>> {
        // INCR and the expiry of a new window in one script, so a crash
        // between them cannot leave a counter that never resets.
        static WINDOW_HIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"local n = redis.call('INCR', KEYS[1])
                  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
                  local ttl = redis.call('PTTL', KEYS[1])
                  if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
                  return {n, ttl}",
            )
        });
        let (n, ttl): (u64, i64) = WINDOW_HIT
            .key(format!("{}window:{key}", self.prefix))
            .arg((window.as_millis() as u64).max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Some((n, Duration::from_millis(ttl.max(0) as u64))))
    }
}
