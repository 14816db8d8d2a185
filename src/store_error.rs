//! The error every storage trait returns. It lives below the services that
//! define those traits (`session`, `directory`, `webhook::outbox`, ...) and
//! the `store` backends that implement them, so neither imports the other.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store: {0}")]
    Embedded(String),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("store task failed: {0}")]
    Task(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
