//! The provisioning log: one entry per SCIM request (who, what, outcome,
//! how long), kept in the store with bounded retention, so an operator can
//! see what the IdP pushed and why something was refused — the
//! "provisioning logs" the SP guides send operators to.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    pub client: String,
    pub method: String,
    pub path: String,
    /// The User or Group the request concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub status: u16,
    pub latency_ms: u64,
    /// `scimType: detail` of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LogEntry {
    /// One line for `portcullis scim-log`.
    pub fn line(&self) -> String {
        format!(
            "{}  {:<12} {:<6} {:<3} {:>5}ms  {}{}{}",
            crate::clock::rfc3339(self.time_ms),
            self.client,
            self.method,
            self.status,
            self.latency_ms,
            self.path,
            self.resource_id
                .as_deref()
                .map(|r| format!("  [{r}]"))
                .unwrap_or_default(),
            self.error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default(),
        )
    }
}

/// Where the provisioning log is kept (entries are opaque JSON there).
#[async_trait::async_trait]
pub trait ScimLogStore: Send + Sync {
    /// Appends an entry and drops the oldest beyond `keep`.
    async fn append_scim_log(
        &self,
        entry: &[u8],
        keep: usize,
    ) -> crate::store_error::StoreResult<()>;
    /// The newest `limit` entries, newest first.
    async fn recent_scim_log(&self, limit: usize) -> crate::store_error::StoreResult<Vec<Vec<u8>>>;
}
