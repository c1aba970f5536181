//! [`ServeError`]: why the server could not start or stopped badly, and [`Shutdown`]:
//! how its tasks learn that it stops. Their own module so that the start-up parts
//! (bootstrap, delivery, connections, the data directory, the server key) use them
//! without depending on [`crate::server`], which runs them.

use tokio::sync::watch;

/// Tells background tasks that the server is stopping.
#[derive(Debug, Clone)]
pub struct Shutdown(pub(crate) watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn wait(mut self) {
        // A dropped sender also means the server is gone.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

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
