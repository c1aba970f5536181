//! The sqlx store: every port of `port_core::ports`, written once for both databases.
//!
//! This module opens the store and holds what every port shares (transactions, reads,
//! sealing, row helpers); the ports are implemented by area: `orgs` (organizations,
//! credentials, integrations, secrets), `catalog` (blueprints, entities, actions), `runs`
//! (runs, logs, idempotency), `deliveries` (the delivery outbox and its claims), `people`
//! (users, teams, sessions, action permissions, the audit trail) and `admin`
//! (`StoreAdmin`).

mod admin;
mod catalog;
mod deliveries;
mod orgs;
mod people;
mod runs;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use port_core::error::StoreError;
use port_core::ports::{ClientSecret, Credential, StoreResult};
use port_core::secret::{Keyring, SEAL_NONCE_BYTES, SecretError, client_secret_context, is_sealed};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{OpenError, StoreOptions, redact_url};
use crate::db::{Conn, Pooled, Row, Sql, Tx, map_err};
use crate::writer::{Durability, Writer};

/// How long an idempotency key returns the same run (the services' rule, kept here too).
pub use port_core::service::IDEMPOTENCY_WINDOW_MS;

pub(crate) use self::catalog::read_entity;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a [`SqlStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
enum Backend {
    /// One writer thread serializes every write; readers never block it (WAL).
    Sqlite {
        writer: Arc<Writer>,
        reader: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

/// The durable store, on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    /// Seals client and organization secrets at rest; `None` writes them in clear.
    keyring: Option<Keyring>,
}

impl SqlStore {
    /// Opens (creating it if needed) the SQLite database at `path`: WAL, one writer
    /// connection, a pool of read-only connections, and the migrations applied.
    pub async fn open_sqlite(
        path: impl AsRef<Path>,
        options: &StoreOptions,
    ) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let target = format!("sqlite://{}", path.display());
        let connect_err = |source| OpenError::Connect {
            target: target.clone(),
            source,
        };
        let tightened =
            crate::files::secure_database_files(path).map_err(|source| OpenError::Files {
                target: target.clone(),
                source,
            })?;
        for file in tightened {
            tracing::warn!(file = %file.display(), "made a database file private (it was readable by others)");
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        // The database is created and migrated through sqlx (its migrator), then written
        // through the writer thread's own connection.
        let setup_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(setup_options)
            .await
            .map_err(connect_err)?;
        let migrated = SQLITE_MIGRATOR
            .run(&setup)
            .await
            .map_err(|source| OpenError::Migrate {
                target: target.clone(),
                source,
            });
        setup.close().await;
        migrated?;
        let writer =
            Writer::open(path, options.sqlite_synchronous, options.busy_timeout).map_err(|e| {
                OpenError::Writer {
                    target: target.clone(),
                    reason: e.to_string(),
                }
            })?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.sqlite_read_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.read_only(true))
            .await
            .map_err(connect_err)?;
        tracing::info!(database = %target, synchronous = options.sqlite_synchronous.as_str(), "storage ready");
        Ok(Self {
            backend: Backend::Sqlite {
                writer: Arc::new(writer),
                reader,
            },
            keyring: options.keyring.clone(),
        })
    }

    /// Connects to PostgreSQL at `url` (any libpq-style URL sqlx accepts, e.g. with
    /// `options=-c search_path=…`) and applies the migrations.
    pub async fn connect_postgres(url: &str, options: &StoreOptions) -> Result<Self, OpenError> {
        let target = redact_url(url);
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|e| OpenError::InvalidUrl {
                url: target.clone(),
                reason: e.to_string(),
            })?
            .application_name("portd");
        let pool = PgPoolOptions::new()
            .max_connections(options.pg_max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await
            .map_err(|source| OpenError::Connect {
                target: target.clone(),
                source,
            })?;
        PG_MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| OpenError::Migrate {
                target: target.clone(),
                source,
            })?;
        tracing::info!(database = %target, "storage ready");
        Ok(Self {
            backend: Backend::Postgres { pool },
            keyring: options.keyring.clone(),
        })
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres { .. } => BackendKind::Postgres,
        }
    }

    /// A write transaction driven statement by statement: on SQLite a session of the
    /// writer thread (part of a batch that took the write lock with `BEGIN IMMEDIATE`, so
    /// a transaction that reads before it writes never fails half-way with BUSY). Hot
    /// paths use [`SqlStore::write`] instead.
    pub(crate) async fn begin(&self) -> StoreResult<Tx> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.session().map(Tx::Sqlite),
            Backend::Postgres { pool } => pool.begin().await.map(Tx::Pg).map_err(map_err),
        }
    }

    /// Runs `job` as one write transaction: on SQLite whole on the writer thread, in a
    /// batch with whatever else waits (no thread hop per statement); on PostgreSQL in a
    /// pooled transaction. An `Err` undoes the job's writes.
    pub(crate) async fn write<J: WriteJob>(&self, job: J) -> StoreResult<J::Output> {
        self.write_as(Durability::Synced, job).await
    }

    /// [`SqlStore::write`] for the delivery worker's bookkeeping, which may be lost in a
    /// power cut at the price of a delivery sent again: on SQLite answered once
    /// committed, without waiting for the WAL's fsync (see [`Durability::Committed`]).
    pub(crate) async fn write_committed<J: WriteJob>(&self, job: J) -> StoreResult<J::Output> {
        self.write_as(Durability::Committed, job).await
    }

    async fn write_as<J: WriteJob>(
        &self,
        durability: Durability,
        job: J,
    ) -> StoreResult<J::Output> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                writer
                    .run(durability, move |conn| {
                        crate::writer::now(job.run(&mut Conn::Local(conn)))
                    })
                    .await
            }
            Backend::Postgres { pool } => {
                let mut tx = pool.begin().await.map(Tx::Pg).map_err(map_err)?;
                let result = job.run(&mut tx.conn()).await;
                tx.finish(result).await
            }
        }
    }

    async fn read(&self) -> StoreResult<Pooled> {
        match &self.backend {
            Backend::Sqlite { reader, .. } => reader.acquire().await.map(Pooled::Sqlite),
            Backend::Postgres { pool } => pool.acquire().await.map(Pooled::Pg),
        }
        .map_err(map_err)
    }

    /// Locks the rows a transaction reads before changing them. SQLite needs none: its
    /// single writer already excludes every other writer.
    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres { .. } => " FOR UPDATE",
        }
    }

    /// Keeps the rows a transaction reads from being deleted (or their key changed)
    /// until it commits, without excluding other readers that do the same: what a
    /// transaction takes on the rows its new rows will refer to. SQLite needs none.
    fn key_share(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres { .. } => " FOR KEY SHARE",
        }
    }

    /// Lets concurrent claimers pass over each other's rows instead of queueing.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres { .. } => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Runs one statement in its own write transaction (on SQLite, batched with others).
    async fn write_one(&self, sql: Sql) -> StoreResult<u64> {
        self.write(Statements(vec![sql])).await
    }

    /// [`SqlStore::write_one`] with [`SqlStore::write_committed`]'s durability.
    async fn write_one_committed(&self, sql: Sql) -> StoreResult<u64> {
        self.write_committed(Statements(vec![sql])).await
    }

    /// PostgreSQL: runs one statement outside a transaction, in one round trip (the
    /// statement is atomic by itself). SQLite writes only through the writer.
    async fn autocommit(&self, sql: &Sql) -> StoreResult<u64> {
        match &self.backend {
            Backend::Sqlite { .. } => self.write_one(sql.clone()).await,
            Backend::Postgres { .. } => self.read().await?.conn().execute(sql).await,
        }
    }

    pub(crate) async fn read_all(&self, sql: &Sql) -> StoreResult<Vec<Row>> {
        self.read().await?.conn().fetch_all(sql).await
    }

    pub(crate) async fn read_optional(&self, sql: &Sql) -> StoreResult<Option<Row>> {
        self.read().await?.conn().fetch_optional(sql).await
    }

    /// What a secret's column stores: sealed with the current key when the store has a
    /// keyring, else the value itself.
    fn seal(&self, value: &str, context: &[u8]) -> String {
        match &self.keyring {
            Some(keyring) => keyring.seal(value, context, rand::random::<[u8; SEAL_NONCE_BYTES]>()),
            None => value.to_owned(),
        }
    }

    /// A secret's value from its column: opened when sealed, as is when written in clear
    /// (by a store without a keyring, or before sealing existed). `what` names the row,
    /// never the value.
    fn unseal(
        &self,
        stored: String,
        context: &[u8],
        what: impl FnOnce() -> String,
    ) -> StoreResult<String> {
        if !is_sealed(&stored) {
            return Ok(stored);
        }
        let key_id = sealed_key_id(&stored);
        let Some(keyring) = &self.keyring else {
            return Err(StoreError::Other(format!(
                "a sealed secret could not be opened: {} is sealed with key {key_id} but the \
                 store was opened without a server key — set PORTD_SECRET_KEY to the key this \
                 database was sealed with",
                what()
            )));
        };
        keyring.open(&stored, context).map_err(|e| {
            let why = match e {
                SecretError::UnknownKey(_) => format!(
                    "it was sealed with key {key_id}, which is not among the server's keys \
                     (current key {})",
                    keyring.current().id()
                ),
                other => format!("sealed with key {key_id}: {other}"),
            };
            StoreError::Other(format!(
                "a sealed secret could not be opened: {}: {why} — is PORTD_SECRET_KEY the key \
                 this database was sealed with?",
                what()
            ))
        })
    }

    fn credential_from_row(&self, row: &Row) -> StoreResult<Credential> {
        let client_id = row.text("client_id")?;
        let secret = self.unseal(
            row.text("client_secret")?,
            &client_secret_context(&client_id),
            || format!("the client secret of {client_id}"),
        )?;
        Ok(Credential {
            org_id: parse_col(row, "org_id")?,
            client_id,
            client_secret: ClientSecret::new(secret),
            created_at: row.timestamp("created_at")?,
            user: row
                .opt_text("user_email")?
                .map(|email| people::email_from(&email, "user_email"))
                .transpose()?,
        })
    }
}

/// A write transaction's body, owning what it writes, so that on SQLite it can run on
/// the writer thread. Its future awaits only the connection it is given.
pub(crate) trait WriteJob: Send + 'static {
    type Output: Send + 'static;
    fn run(&self, conn: &mut Conn<'_>) -> impl Future<Output = StoreResult<Self::Output>> + Send;
}

/// Statements run in order in one transaction; answers the rows they changed in all.
pub(crate) struct Statements(pub(crate) Vec<Sql>);

impl WriteJob for Statements {
    type Output = u64;
    async fn run(&self, conn: &mut Conn<'_>) -> StoreResult<u64> {
        let mut changed = 0;
        for sql in &self.0 {
            changed += conn.execute(sql).await?;
        }
        Ok(changed)
    }
}

/// One statement that changes rows and returns them (`… RETURNING`).
pub(crate) struct Returning(pub(crate) Sql);

impl WriteJob for Returning {
    type Output = Vec<Row>;
    async fn run(&self, conn: &mut Conn<'_>) -> StoreResult<Vec<Row>> {
        conn.fetch_all(&self.0).await
    }
}

/// The key id a sealed value names (`pds1:<key id>:…`); public, unlike the value.
fn sealed_key_id(stored: &str) -> &str {
    stored
        .split(':')
        .nth(1)
        .filter(|id| id.len() <= 16)
        .unwrap_or("?")
}

// ---------------------------------------------------------------------------------------
// Row decoding
// ---------------------------------------------------------------------------------------

pub(crate) fn parse_col<T: FromStr>(row: &Row, column: &str) -> StoreResult<T> {
    let text = row.text(column)?;
    text.parse()
        .map_err(|_| StoreError::Other(format!("column {column} holds an invalid value")))
}

fn rows<T>(rows: Vec<Row>, decode: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}
