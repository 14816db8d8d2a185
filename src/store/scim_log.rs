//! The provisioning log's storage: an append-only list of recent SCIM
//! requests, trimmed to a fixed number of entries, shared by replicas on
//! Redis. Entries are opaque JSON here; `scim::log` gives them meaning.

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::embedded::EmbeddedStore;
use super::redis::RedisStore;
use super::{StoreError, StoreResult};

pub(super) const SCIM_LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("scim_log");

pub use crate::scim::log::ScimLogStore;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

#[async_trait]
impl ScimLogStore for EmbeddedStore {
    async fn append_scim_log(&self, entry: &[u8], keep: usize) -> StoreResult<()> {
        // Shares a group commit with the writes queued beside it.
        let entry = entry.to_vec();
        self.write(move |txn| {
            let mut t = txn.open_table(SCIM_LOG_TABLE).map_err(err)?;
            let next = t
                .last()
                .map_err(err)?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            t.insert(next, entry.as_slice()).map_err(err)?;
            while t.len().map_err(err)? as usize > keep.max(1) {
                t.pop_first().map_err(err)?;
            }
            Ok(())
        })
        .await
    }

    async fn recent_scim_log(&self, limit: usize) -> StoreResult<Vec<Vec<u8>>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(SCIM_LOG_TABLE).map_err(err)?;
            let mut out = Vec::new();
            for e in t.iter().map_err(err)?.rev().take(limit) {
                let (_, v) = e.map_err(err)?;
                out.push(v.value().to_vec());
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl ScimLogStore for RedisStore {
    async fn append_scim_log(&self, entry: &[u8], keep: usize) -> StoreResult<()> {
        let key = format!("{}scim_log", self.prefix);
        let _: () = redis::pipe()
            .atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(entry)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(keep.max(1) as i64 - 1)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn recent_scim_log(&self, limit: usize) -> StoreResult<Vec<Vec<u8>>> {
        let key = format!("{}scim_log", self.prefix);
        Ok(redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .query_async(&mut self.conn())
            .await?)
    }
}
