//! Short-lived single-use state shared by replicas: pending SAML
//! AuthnRequests (taken exactly once at the ACS) and the assertion replay
//! cache (inserted once until the assertion expires). Two operations are
//! enough for both: insert-if-absent with a TTL, and atomic take.

use std::time::Duration;

use async_trait::async_trait;

use crate::store_error::StoreResult;

/// Namespaced, expiring, single-use values.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Stores `value` under `ns`/`key` for `ttl` unless a live value is
    /// already there. Returns false if it was (e.g. a replayed assertion).
    async fn put_state_once(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> StoreResult<bool>;
    /// Removes and returns the live value, atomically: of two concurrent
    /// takes, only one gets it.
    async fn take_state(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Reads a live value without taking it.
    async fn peek_state(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Deletes expired entries (backends without native expiry).
    async fn purge_expired_state(&self, now_ms: u64) -> StoreResult<usize>;
    /// Counts one hit in a fixed window shared by every replica (the window
    /// starts at its first hit): `Some((hits so far, time until it resets))`,
    /// or `None` when the backend serves one process, where an in-process
    /// count is exact and costs no write.
    async fn window_hit(
        &self,
        _key: &str,
        _window: Duration,
    ) -> StoreResult<Option<(u64, Duration)>> {
        Ok(None)
    }
}
