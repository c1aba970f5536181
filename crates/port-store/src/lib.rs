//! `port-store`: durable storage for portd, implementing every storage port of
//! `port_core::ports` on sqlx (and, for SQLite's writer, rusqlite).
//!
//! - **SQLite** is the embedded default: one file, WAL, a single writer thread that owns
//!   the only write connection and runs several callers' writes in one `BEGIN IMMEDIATE`
//!   transaction (each in a savepoint), durable acknowledgements by one WAL fsync per
//!   batch (see [`Synchronous`]), a pool of read-only connections, a 5 s busy timeout and
//!   foreign keys on.
//!   Its files are its owner's only (0600), whatever the umask ([`secure_database_files`]).
//! - **PostgreSQL** serves several replicas: the same schema and semantics, a pool,
//!   optimistic versioning of runs (`UPDATE … WHERE version = $expected`),
//!   `FOR UPDATE SKIP LOCKED` leases on the delivery outbox, and a run created in one
//!   statement (one round trip).
//!
//! Client secrets and organization secrets are sealed at rest with
//! [`StoreOptions::keyring`] (`pds1:<key id>:…`, bound to their row); values written in
//! clear (no keyring, or a database older than sealing) are read as they are, and
//! [`StoreAdmin::reseal_secrets`] seals them, or moves them to a new key, in one go.
//!
//! Migrations are embedded and run when a store opens. Every table carries `org_id` and
//! every organization-scoped query filters by it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), port_store::OpenError> {
//! use port_store::{StoreOptions, Synchronous};
//! let store = port_store::open("sqlite://portd.db", &StoreOptions::default()).await?;
//! let relaxed = StoreOptions { sqlite_synchronous: Synchronous::Normal, ..StoreOptions::default() };
//! let _other = port_store::open("postgres://portd@db/portd", &relaxed).await?;
//! // `Arc<dyn StoreAdmin>` upcasts to what the services hold.
//! let _services: std::sync::Arc<dyn port_core::ports::Store> = store;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use port_core::ports::{Store, StoreResult};

mod codec;
mod config;
mod db;
mod events;
mod files;
mod replica_bus;
mod scratch;
mod store;
mod writer;

pub use config::{OpenError, StoreConfig, StoreOptions, Synchronous, redact_url};
pub use files::{DATABASE_FILE_MODE, secure_database_files};
pub use replica_bus::{BusError, BusStats, RemoteChanges, ReplicaBus, ReplicaNotice};
pub use scratch::{ScratchSchema, with_search_path};
pub use store::{BackendKind, IDEMPOTENCY_WINDOW_MS, SqlStore};
pub use writer::WriterCounters;

/// Operations on the store itself rather than on its data.
#[async_trait]
pub trait StoreAdmin: Store {
    /// Readiness: succeeds when a query can be answered.
    async fn ping(&self) -> StoreResult<()>;
    /// SQLite: `PRAGMA integrity_check` answered "ok". PostgreSQL: `SELECT 1` answered
    /// (the server checks its own pages).
    async fn integrity_check(&self) -> StoreResult<bool>;
    /// Closes every connection, waiting for those in use to come back.
    async fn close(&self);
    fn backend(&self) -> BackendKind;
    /// Seals, with the keyring's current key, every client secret and organization
    /// secret that is not sealed with it yet (written in clear, or sealed with a previous
    /// key of the ring), in one write transaction; returns how many rows changed. Without
    /// a keyring ([`StoreOptions::keyring`]) it changes nothing and returns 0. A value
    /// the ring cannot open fails the whole call and changes nothing.
    async fn reseal_secrets(&self) -> StoreResult<u64>;
    /// SQLite: what the writer thread has done (transactions, the jobs they held, WAL
    /// syncs). `None` on PostgreSQL.
    fn writer_counters(&self) -> Option<WriterCounters> {
        None
    }
}

impl StoreConfig {
    /// Opens the configured database, running its migrations.
    pub async fn open(&self, options: &StoreOptions) -> Result<Arc<dyn StoreAdmin>, OpenError> {
        let store = match self {
            Self::Sqlite { path } => SqlStore::open_sqlite(path, options).await?,
            Self::Postgres { url } => SqlStore::connect_postgres(url, options).await?,
        };
        Ok(Arc::new(store))
    }
}

/// Opens the database named by `url`: `postgres://…` / `postgresql://…` selects
/// PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a plain path selects SQLite.
pub async fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn StoreAdmin>, OpenError> {
    StoreConfig::parse(url)?.open(options).await
}
