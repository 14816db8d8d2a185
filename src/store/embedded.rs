//! The embedded backend: one redb file under `[store] path`, so a single
//! gateway runs with no server beside it and keeps its state across restarts.
//! redb is synchronous and fsyncs on commit, so every call runs on the
//! blocking pool. Only one process may open the file (redb locks it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, MultimapTableDefinition, ReadableTable, TableDefinition};

use super::{Backend, StoreError, StoreResult};
use crate::session::{Revocation, RevocationHandler, SessionKey, SessionRecord, SessionStore};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const USER_SESSIONS: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("user_sessions");

/// File name of the database inside `[store] path`.
pub const FILE_NAME: &str = "portcullis.redb";

#[derive(Clone)]
pub struct EmbeddedStore {
    pub(super) db: Arc<Database>,
    pub(super) outbox: Arc<super::embedded_outbox::OutboxRuntime>,
    /// Writes waiting for the next group commit (`embedded_batch`).
    pub(super) writes: Arc<super::embedded_batch::WriteQueue>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `dir`, with the default cache.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with_cache(dir, 64 << 20)
    }

    /// Opens (or creates) the database in `dir`, keeping at most
    /// `cache_bytes` of it in memory. (redb's own default is 1 GiB, which a
    /// large directory or many sessions would fill: RSS then grows with the
    /// data, not with the load.)
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        {
            txn.open_table(SESSIONS).map_err(err)?;
            txn.open_multimap_table(USER_SESSIONS).map_err(err)?;
            txn.open_table(super::state::STATE_TABLE).map_err(err)?;
            txn.open_table(super::scim_log::SCIM_LOG_TABLE)
                .map_err(err)?;
            super::embedded_directory::create_tables(&txn)?;
            super::embedded_outbox::create_tables(&txn)?;
        }
        txn.commit().map_err(err)?;
        Ok(Self {
            db: Arc::new(db),
            outbox: Arc::default(),
            writes: Arc::default(),
        })
    }

    /// Runs `f` on the blocking pool with the database.
    pub(super) async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn decode(bytes: &[u8]) -> StoreResult<SessionRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(rec: &SessionRecord) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Backend for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn insert_session(
        &self,
        key: &SessionKey,
        rec: &SessionRecord,
        _ttl: Duration,
    ) -> StoreResult<()> {
        let key = key.0.clone();
        let sub = rec.principal.sub.clone();
        let bytes = encode(rec)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                txn.open_table(SESSIONS)
                    .map_err(err)?
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(err)?;
                txn.open_multimap_table(USER_SESSIONS)
                    .map_err(err)?
                    .insert(sub.as_str(), key.as_str())
                    .map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn get_session(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        let key = key.0.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let table = txn.open_table(SESSIONS).map_err(err)?;
            match table.get(key.as_str()).map_err(err)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        last_seen_ms: u64,
        _ttl: Duration,
    ) -> StoreResult<()> {
        let key = key.0.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut table = txn.open_table(SESSIONS).map_err(err)?;
                let current = table
                    .get(key.as_str())
                    .map_err(err)?
                    .map(|v| decode(v.value()));
                if let Some(rec) = current {
                    let mut rec = rec?;
                    if last_seen_ms > rec.last_seen_ms {
                        rec.last_seen_ms = last_seen_ms;
                        let bytes = encode(&rec)?;
                        table.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
                    }
                }
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn remove_session(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        let key = key.0.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let removed = {
                let mut table = txn.open_table(SESSIONS).map_err(err)?;
                let removed = table
                    .remove(key.as_str())
                    .map_err(err)?
                    .map(|v| decode(v.value()));
                match removed {
                    Some(rec) => {
                        let rec = rec?;
                        txn.open_multimap_table(USER_SESSIONS)
                            .map_err(err)?
                            .remove(rec.principal.sub.as_str(), key.as_str())
                            .map_err(err)?;
                        Some(rec)
                    }
                    None => None,
                }
            };
            txn.commit().map_err(err)?;
            Ok(removed)
        })
        .await
    }

    async fn remove_user_sessions(&self, sub: &str) -> StoreResult<Vec<SessionKey>> {
        let sub = sub.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let mut keys = Vec::new();
            {
                let mut index = txn.open_multimap_table(USER_SESSIONS).map_err(err)?;
                let mut table = txn.open_table(SESSIONS).map_err(err)?;
                for v in index.remove_all(sub.as_str()).map_err(err)? {
                    let k = v.map_err(err)?.value().to_string();
                    table.remove(k.as_str()).map_err(err)?;
                    keys.push(SessionKey(k));
                }
            }
            txn.commit().map_err(err)?;
            Ok(keys)
        })
        .await
    }

    async fn list_user_sessions(&self, sub: &str) -> StoreResult<Vec<(SessionKey, SessionRecord)>> {
        let sub = sub.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let index = txn.open_multimap_table(USER_SESSIONS).map_err(err)?;
            let table = txn.open_table(SESSIONS).map_err(err)?;
            let mut out = Vec::new();
            for v in index.get(sub.as_str()).map_err(err)? {
                let k = v.map_err(err)?.value().to_string();
                if let Some(rec) = table.get(k.as_str()).map_err(err)? {
                    out.push((SessionKey(k), decode(rec.value())?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn update_session_principal(
        &self,
        key: &SessionKey,
        principal: &crate::identity::Principal,
    ) -> StoreResult<bool> {
        let key = key.0.clone();
        let principal = principal.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let found = {
                let mut table = txn.open_table(SESSIONS).map_err(err)?;
                let current = table
                    .get(key.as_str())
                    .map_err(err)?
                    .map(|v| decode(v.value()));
                match current {
                    Some(rec) => {
                        let mut rec = rec?;
                        rec.principal = principal;
                        let bytes = encode(&rec)?;
                        table.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
                        true
                    }
                    None => false,
                }
            };
            txn.commit().map_err(err)?;
            Ok(found)
        })
        .await
    }

    async fn purge_expired_sessions(&self, now_ms: u64, idle: Duration) -> StoreResult<usize> {
        self.blocking(move |db| {
            let expired: Vec<(String, String)> = {
                let txn = db.begin_read().map_err(err)?;
                let table = txn.open_table(SESSIONS).map_err(err)?;
                let mut out = Vec::new();
                for entry in table.iter().map_err(err)? {
                    let (k, v) = entry.map_err(err)?;
                    // A corrupt record is unusable: purge it too.
                    match decode(v.value()) {
                        Ok(rec) if !rec.is_expired(now_ms, idle) => {}
                        Ok(rec) => out.push((k.value().to_string(), rec.principal.sub)),
                        Err(_) => out.push((k.value().to_string(), String::new())),
                    }
                }
                out
            };
            if expired.is_empty() {
                return Ok(0);
            }
            let txn = db.begin_write().map_err(err)?;
            {
                let mut table = txn.open_table(SESSIONS).map_err(err)?;
                let mut index = txn.open_multimap_table(USER_SESSIONS).map_err(err)?;
                for (k, sub) in &expired {
                    table.remove(k.as_str()).map_err(err)?;
                    index.remove(sub.as_str(), k.as_str()).map_err(err)?;
                }
            }
            txn.commit().map_err(err)?;
            Ok(expired.len())
        })
        .await
    }

    async fn publish_revocation(&self, _r: &Revocation) -> StoreResult<()> {
        // One process owns the file: its own cache was already updated.
        Ok(())
    }

    fn watch_revocations(&self, _handler: RevocationHandler) {}

    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(err)?;
            txn.open_table(SESSIONS).map_err(err)?;
            Ok(())
        })
        .await
    }
}
