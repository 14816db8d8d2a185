//! `store` owns where state lives: an embedded redb file (the default, one
//! process) or Redis (several replicas). Each backend implements the domain
//! traits the other modules define (`session::SessionStore`, ...), so a
//! module states what it needs and the same test suite runs on both.

pub mod embedded;
mod embedded_batch;
mod embedded_directory;
mod embedded_outbox;
mod embedded_rank;
pub mod redis;
mod redis_directory;
mod redis_outbox;
pub mod scim_log;
pub mod state;

use std::sync::Arc;

use crate::config::{StoreConfig, StoreKind};
use crate::session::SessionStore;

/// Everything a backend provides. One object per process, shared by `Arc`.
pub trait Backend:
    SessionStore
    + state::StateStore
    + scim_log::ScimLogStore
    + crate::directory::DirectoryStore
    + crate::webhook::outbox::OutboxStore
    + crate::provisioning::ProvisioningStore
    + Send
    + Sync
    + 'static
{
    /// Short name for logs and `check`.
    fn kind(&self) -> &'static str;
}

pub use crate::store_error::{StoreError, StoreResult};

/// Opens the configured backend. Must run inside a tokio runtime that lives
/// as long as the process (Redis connection drivers are spawned on it).
pub async fn open(cfg: &StoreConfig) -> StoreResult<Arc<dyn Backend>> {
    match cfg.kind {
        StoreKind::Embedded => {
            let s = embedded::EmbeddedStore::open_with_cache(&cfg.path, cfg.cache_mb << 20)?;
            Ok(Arc::new(s))
        }
        StoreKind::Redis => {
            let url = cfg
                .url
                .as_deref()
                .ok_or_else(|| StoreError::Corrupt("store.url missing".into()))?;
            let s = redis::RedisStore::connect(url, &cfg.key_prefix).await?;
            Ok(Arc::new(s))
        }
    }
}
