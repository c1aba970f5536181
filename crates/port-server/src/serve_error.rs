//! [`ServeError`]: why the server could not start or stopped badly. Its own module so
//! that the start-up parts (bootstrap, delivery, the data directory, the server key)
//! return it without depending on [`crate::server`], which runs them.

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Open(#[from] port_store::OpenError),
    #[error("storage: {0}")]
    Store(#[from] port_core::error::StoreError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}
