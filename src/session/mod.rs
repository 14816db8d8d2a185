//! `session` owns browser sessions: the cookie, the record behind it, idle
//! and absolute expiry, revocation, and the in-process cache that lets a
//! steady-state request skip the store. It knows nothing about HTTP framing
//! (it parses a `Cookie` value and formats a `Set-Cookie` value) nor about
//! how a backend stores bytes (`SessionStore` is implemented in `store`).
//!
//! The cookie carries 256 random bits; the store only ever sees their
//! SHA-256, so a leaked store dump holds no usable session.

pub mod cookie;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::identity::{Minted, Principal};
pub use crate::saml::slo::SsoLink;
use crate::store_error::{StoreError, StoreResult};

pub use crate::clock::now_ms;

/// The secret session id as it travels in the cookie (base64url, 32 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    /// 256 bits from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(crate::secret::random_bytes::<32>()))
    }

    /// Accepts only well-formed ids, so junk cookies never reach the store.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        (bytes.len() == 32).then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The store key for this id.
    pub fn key(&self) -> SessionKey {
        SessionKey(crate::secret::sha256_hex(self.0.as_bytes()))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// SHA-256 (hex) of a session id: how the store, logs and admin API name a
/// session without being able to use it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionKey(pub String);

impl SessionKey {
    /// Public session identifier for the `sid` claim (not the cookie value).
    pub fn sid(&self) -> &str {
        &self.0[..32.min(self.0.len())]
    }

    pub fn is_well_formed(s: &str) -> bool {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store keeps per session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub principal: Principal,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// Absolute end of the session (created + max_lifetime).
    pub expires_ms: u64,
    /// How the session was created (`saml`, `admin`), for audit.
    #[serde(default)]
    pub via: String,
    /// The IdP session this one belongs to, for single logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoLink>,
}

impl SessionRecord {
    pub fn new(principal: Principal, now: u64, max_lifetime: Duration, via: &str) -> Self {
        Self {
            principal,
            created_ms: now,
            last_seen_ms: now,
            expires_ms: now + max_lifetime.as_millis() as u64,
            via: via.to_string(),
            sso: None,
        }
    }

    pub fn is_expired(&self, now: u64, idle: Duration) -> bool {
        now >= self.expires_ms || now >= self.last_seen_ms.saturating_add(idle.as_millis() as u64)
    }

    /// How long the store should keep the record from `now`.
    pub fn store_ttl(&self, now: u64, idle: Duration) -> Duration {
        let idle_end = self.last_seen_ms.saturating_add(idle.as_millis() as u64);
        Duration::from_millis(idle_end.min(self.expires_ms).saturating_sub(now).max(1))
    }
}

/// A revocation to apply on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    Session(SessionKey),
    User(String),
    /// A user's identity changed in the directory: drop cached copies.
    Refresh(String),
    /// Drop the whole cache (sent to oneself after a pub/sub reconnect).
    All,
}

/// Called by a backend for every revocation published by any replica.
pub type RevocationHandler = Arc<dyn Fn(Revocation) + Send + Sync>;

/// Persistence of sessions. Implemented by each `store` backend.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Inserts a session and indexes it under its user.
    async fn insert_session(
        &self,
        key: &SessionKey,
        rec: &SessionRecord,
        ttl: Duration,
    ) -> StoreResult<()>;
    async fn get_session(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>>;
    /// Records activity; never resurrects a session that was removed.
    async fn touch_session(
        &self,
        key: &SessionKey,
        last_seen_ms: u64,
        ttl: Duration,
    ) -> StoreResult<()>;
    /// Removes one session; returns it if it existed.
    async fn remove_session(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>>;
    /// Removes every session of a user; returns their keys.
    async fn remove_user_sessions(&self, sub: &str) -> StoreResult<Vec<SessionKey>>;
    async fn list_user_sessions(&self, sub: &str) -> StoreResult<Vec<(SessionKey, SessionRecord)>>;
    /// Replaces the principal of a live session (directory changes); never
    /// resurrects a removed one. Returns whether the session existed.
    async fn update_session_principal(
        &self,
        key: &SessionKey,
        principal: &Principal,
    ) -> StoreResult<bool>;
    /// Deletes expired sessions (backends without native expiry); returns how many.
    async fn purge_expired_sessions(&self, now_ms: u64, idle: Duration) -> StoreResult<usize>;
    /// Tells other replicas; a single-process backend does nothing.
    async fn publish_revocation(&self, r: &Revocation) -> StoreResult<()>;
    /// Starts delivering other replicas' revocations to `handler`.
    fn watch_revocations(&self, handler: RevocationHandler);
    /// Cheap round trip for readiness.
    async fn ping(&self) -> StoreResult<()>;
}

/// Session settings compiled from `[session]` and `[server]`.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    /// Full cookie name including `__Host-` when secure.
    pub cookie_name: String,
    pub secure: bool,
    /// Activity is written to the store at most this often per session.
    pub touch_interval: Duration,
    /// How long a cached session is trusted before it is re-read.
    pub cache_ttl: Duration,
}

impl SessionSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let secure = cfg.is_https();
        let idle = cfg.session.idle_timeout.get();
        let cookie_name = if secure {
            format!("__Host-{}", cfg.session.cookie_name)
        } else {
            cfg.session.cookie_name.clone()
        };
        let cache_ttl = match cfg.store.kind {
            // Pub/sub carries revocations; the TTL only bounds a lost message.
            crate::config::StoreKind::Redis => Duration::from_secs(30),
            crate::config::StoreKind::Embedded => Duration::from_secs(300),
        };
        Self {
            idle_timeout: idle,
            max_lifetime: cfg.session.max_lifetime.get(),
            cookie_name,
            secure,
            touch_interval: (idle / 10).min(Duration::from_secs(60)),
            cache_ttl,
        }
    }
}

/// A session that is valid right now, as the hot path sees it.
pub struct LiveSession {
    pub key: SessionKey,
    pub record: SessionRecord,
    last_seen_ms: AtomicU64,
    stored_seen_ms: AtomicU64,
    touching: AtomicBool,
    /// The identity JWT minted for this session, reused until near expiry,
    /// with the configuration generation it was minted under.
    pub minted: parking_lot::Mutex<Option<(u64, Arc<Minted>)>>,
}

impl LiveSession {
    fn new(key: SessionKey, record: SessionRecord) -> Self {
        let seen = record.last_seen_ms;
        Self {
            key,
            record,
            last_seen_ms: AtomicU64::new(seen),
            stored_seen_ms: AtomicU64::new(seen),
            touching: AtomicBool::new(false),
            minted: parking_lot::Mutex::new(None),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.record.principal
    }

    fn last_seen(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    fn locally_expired(&self, now: u64, idle: Duration) -> bool {
        now >= self.record.expires_ms
            || now >= self.last_seen().saturating_add(idle.as_millis() as u64)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable: {0}")]
    Store(#[from] StoreError),
}

/// The session manager: one per process.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    cache: moka::sync::Cache<SessionKey, Arc<LiveSession>>,
    /// Recently revoked sessions and users (with the time), so a lookup
    /// that read the store just before a revocation cannot re-cache it.
    revoked_keys: moka::sync::Cache<SessionKey, ()>,
    revoked_users: moka::sync::Cache<String, u64>,
    /// Swapped on reload (`set_settings`); the cache TTL stays as built.
    settings: arc_swap::ArcSwap<SessionSettings>,
}

/// A bounded, expiring map for "recently revoked" facts.
fn recent_set<K, V>(ttl: Duration) -> moka::sync::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(ttl)
        .build()
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, settings: SessionSettings) -> Arc<Self> {
        let cache = moka::sync::Cache::builder()
            .max_capacity(200_000)
            .time_to_live(settings.cache_ttl)
            .build();
        let me = Arc::new(Self {
            store,
            cache,
            revoked_keys: recent_set(settings.cache_ttl * 2),
            revoked_users: recent_set(settings.cache_ttl * 2),
            settings: arc_swap::ArcSwap::from_pointee(settings),
        });
        let weak = Arc::downgrade(&me);
        me.store.watch_revocations(Arc::new(move |r| {
            if let Some(s) = weak.upgrade() {
                s.apply_revocation(&r);
            }
        }));
        me
    }

    pub fn settings(&self) -> arc_swap::Guard<Arc<SessionSettings>> {
        self.settings.load()
    }

    /// Settings from a reloaded configuration (cookie name, timeouts). The
    /// cache TTL depends on the store kind, which a reload cannot change.
    pub fn set_settings(&self, settings: SessionSettings) {
        self.settings.store(Arc::new(settings));
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Creates a new session for `principal` and returns the cookie id.
    /// Login calls this with the previous id so it is discarded (rotation).
    pub async fn create(
        &self,
        principal: Principal,
        via: &str,
        previous: Option<&SessionId>,
    ) -> Result<(SessionId, Arc<LiveSession>), SessionError> {
        self.create_linked(principal, via, previous, None).await
    }

    /// Like [`Sessions::create`], remembering the IdP session for single logout.
    pub async fn create_linked(
        &self,
        principal: Principal,
        via: &str,
        previous: Option<&SessionId>,
        sso: Option<SsoLink>,
    ) -> Result<(SessionId, Arc<LiveSession>), SessionError> {
        if let Some(old) = previous {
            self.revoke(&old.key()).await?;
        }
        let id = SessionId::generate();
        let key = id.key();
        let now = now_ms();
        let mut rec = SessionRecord::new(principal, now, self.settings.load().max_lifetime, via);
        rec.sso = sso;
        let ttl = rec.store_ttl(now, self.settings.load().idle_timeout);
        self.store.insert_session(&key, &rec, ttl).await?;
        let live = Arc::new(LiveSession::new(key.clone(), rec));
        self.cache.insert(key, live.clone());
        Ok((id, live))
    }

    /// Resolves a session id to a live session. In steady state this is a
    /// cache hit with no store round trip; activity is written back in the
    /// background at most every `touch_interval`.
    pub async fn lookup(&self, id: &SessionId) -> Result<Option<Arc<LiveSession>>, SessionError> {
        let key = id.key();
        let now = now_ms();
        let idle = self.settings.load().idle_timeout;
        let live = match self.cache.get(&key) {
            Some(live) if !live.locally_expired(now, idle) => live,
            _ => {
                // Miss, or idle by our own view (another replica may have seen activity).
                self.cache.invalidate(&key);
                let fetched_at = now_ms();
                let Some(rec) = self.store.get_session(&key).await? else {
                    return Ok(None);
                };
                if rec.is_expired(now, idle) {
                    let _ = self.store.remove_session(&key).await;
                    return Ok(None);
                }
                let sub = rec.principal.sub.clone();
                let live = Arc::new(LiveSession::new(key.clone(), rec));
                self.cache.insert(key.clone(), live.clone());
                // A revocation that raced with the store read wins.
                let raced = self.revoked_keys.contains_key(&key)
                    || self
                        .revoked_users
                        .get(&sub)
                        .is_some_and(|t| t >= fetched_at);
                if raced {
                    self.cache.invalidate(&key);
                    return Ok(None);
                }
                live
            }
        };
        live.last_seen_ms.fetch_max(now, Ordering::Relaxed);
        let stored = live.stored_seen_ms.load(Ordering::Relaxed);
        if now.saturating_sub(stored) >= self.settings.load().touch_interval.as_millis() as u64
            && !live.touching.swap(true, Ordering::AcqRel)
        {
            self.spawn_touch(live.clone(), now);
        }
        Ok(Some(live))
    }

    fn spawn_touch(&self, live: Arc<LiveSession>, now: u64) {
        let store = self.store.clone();
        let idle = self.settings.load().idle_timeout;
        let mut rec = live.record.clone();
        rec.last_seen_ms = now;
        let ttl = rec.store_ttl(now, idle);
        tokio::spawn(async move {
            match store.touch_session(&live.key, now, ttl).await {
                Ok(()) => live.stored_seen_ms.store(now, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "could not record session activity"),
            }
            live.touching.store(false, Ordering::Release);
        });
    }

    /// Ends one session here at once and on every replica.
    pub async fn revoke(&self, key: &SessionKey) -> Result<bool, SessionError> {
        self.revoked_keys.insert(key.clone(), ());
        self.cache.invalidate(key);
        let existed = self.store.remove_session(key).await?.is_some();
        self.cache.invalidate(key);
        self.store
            .publish_revocation(&Revocation::Session(key.clone()))
            .await?;
        Ok(existed)
    }

    /// Ends every session of a user here at once and on every replica.
    pub async fn revoke_user(&self, sub: &str) -> Result<usize, SessionError> {
        self.revoked_users.insert(sub.to_string(), now_ms());
        self.evict_user(sub);
        let keys = self.store.remove_user_sessions(sub).await?;
        for k in &keys {
            self.cache.invalidate(k);
        }
        self.evict_user(sub);
        self.store
            .publish_revocation(&Revocation::User(sub.to_string()))
            .await?;
        Ok(keys.len())
    }

    /// Rewrites the principal of every session of `sub` (computed by
    /// `principal_for` from the record) and makes every replica re-read
    /// them: the next request carries the new identity, without re-login.
    pub async fn refresh_user<F>(&self, sub: &str, principal_for: F) -> Result<usize, SessionError>
    where
        F: Fn(&SessionRecord) -> Principal,
    {
        let mut n = 0;
        for (key, rec) in self.store.list_user_sessions(sub).await? {
            let p = principal_for(&rec);
            if p != rec.principal && self.store.update_session_principal(&key, &p).await? {
                n += 1;
            }
        }
        self.evict_user(sub);
        self.store
            .publish_revocation(&Revocation::Refresh(sub.to_string()))
            .await?;
        Ok(n)
    }

    pub async fn list_user(
        &self,
        sub: &str,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, SessionError> {
        let now = now_ms();
        let idle = self.settings.load().idle_timeout;
        Ok(self
            .store
            .list_user_sessions(sub)
            .await?
            .into_iter()
            .filter(|(_, r)| !r.is_expired(now, idle))
            .collect())
    }

    fn evict_user(&self, sub: &str) {
        let stale: Vec<SessionKey> = self
            .cache
            .iter()
            .filter(|(_, v)| v.record.principal.sub == sub)
            .map(|(k, _)| (*k).clone())
            .collect();
        for k in stale {
            self.cache.invalidate(&k);
        }
    }

    /// Applies a revocation received from another replica.
    pub fn apply_revocation(&self, r: &Revocation) {
        match r {
            Revocation::Session(k) => {
                self.revoked_keys.insert(k.clone(), ());
                self.cache.invalidate(k)
            }
            Revocation::User(sub) => {
                self.revoked_users.insert(sub.clone(), now_ms());
                self.evict_user(sub)
            }
            Revocation::Refresh(sub) => self.evict_user(sub),
            Revocation::All => self.cache.invalidate_all(),
        }
    }

    /// Background sweep for backends without native expiry.
    pub async fn purge_expired(&self) -> Result<usize, SessionError> {
        Ok(self
            .store
            .purge_expired_sessions(now_ms(), self.settings.load().idle_timeout)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_256_bit_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(a.as_str()).unwrap().len(), 32);
        assert!(SessionId::parse(a.as_str()).is_some());
    }

    #[test]
    fn refuses_malformed_ids_without_touching_the_store() {
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"!".repeat(43)).is_none());
    }

    #[test]
    fn record_expires_on_idle_and_on_lifetime() {
        let rec = SessionRecord::new(
            Principal::default(),
            1_000,
            Duration::from_secs(100),
            "test",
        );
        let idle = Duration::from_secs(10);
        assert!(!rec.is_expired(5_000, idle));
        assert!(rec.is_expired(11_000, idle), "idle timeout");
        let mut touched = rec.clone();
        touched.last_seen_ms = 95_000;
        assert!(!touched.is_expired(100_000, idle));
        assert!(touched.is_expired(101_000, idle), "absolute lifetime");
    }

    #[test]
    fn store_ttl_never_outlives_either_limit() {
        let rec = SessionRecord::new(Principal::default(), 0, Duration::from_secs(100), "test");
        assert_eq!(
            rec.store_ttl(0, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            rec.store_ttl(0, Duration::from_secs(1000)),
            Duration::from_secs(100)
        );
    }
}
