//! Opening the configured database (SQLite by default, PostgreSQL with a URL), apart
//! from [`crate::server`] so that the server key's rotation opens it the same way
//! without depending on the server.

use std::sync::Arc;

use port_core::secret::Keyring;
use port_store::{StoreAdmin, StoreOptions};

use crate::config::Config;
use crate::serve_error::ServeError;

/// How long a request waits for a PostgreSQL connection before answering 503.
pub const PG_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The store's options for `config`, but the keyring (see [`crate::server::open_store`]).
pub(crate) fn store_options(config: &Config) -> StoreOptions {
    let mut options = StoreOptions::default();
    if config.database_url.is_some() {
        // A PostgreSQL that is down refuses connections; sqlx retries until the acquire
        // timeout, so this bounds how long a request waits before its 503.
        options.acquire_timeout = PG_ACQUIRE_TIMEOUT;
    }
    options
}

/// Opens the configured database with `keyring`, as it is.
pub(crate) async fn open_database(
    config: &Config,
    keyring: Keyring,
) -> Result<Arc<dyn StoreAdmin>, ServeError> {
    let url = config.database_url();
    tracing::info!(database = %port_store::redact_url(&url), "opening the database");
    let options = StoreOptions {
        keyring: Some(keyring),
        ..store_options(config)
    };
    Ok(port_store::open(&url, &options).await?)
}
