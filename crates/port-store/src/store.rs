//! The sqlx store: every port of `port_core::ports`, written once for both databases.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::catalog::{AffectedEntity, Blueprint, Entity, EntityOperation, Stamp};
use port_core::claim::{self, Candidate, ClaimLimits};
use port_core::destination::Destination;
use port_core::error::StoreError;
use port_core::event::NewChangeEvent;
use port_core::id::{
    ActionIdentifier, BlueprintIdentifier, DeliveryId, EntityIdentifier, IntegrationIdentifier,
    OrgId, RunId,
};
use port_core::integration::Integration;
use port_core::ports::{
    ActionStore, AgentClaim, BlueprintStore, ClientSecret, CreateRunOutcome, Credential, Delivery,
    DeliveryAttempt, DeliveryMode, DeliveryState, DeliveryStore, EntityDeletion, EntityScan,
    EntityStore, EntityWriteMode, IdempotencyKey, IntegrationStore, NewDelivery, OrgSecret,
    OrgStore, Organization, RunFilter, RunStore, ScannedEntities, SecretStore, StoreResult,
};
use port_core::run::{Run, RunStatus};
use port_core::run_log::{NewRunLog, RunLog};
use port_core::secret::{
    Keyring, SEAL_NONCE_BYTES, SecretError, SecretName, SecretValue, client_secret_context,
    is_sealed, org_secret_context,
};
use port_core::time::Timestamp;
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreAdmin;
use crate::codec;
use crate::config::{OpenError, StoreOptions, Synchronous, redact_url};
use crate::db::{Conn, Pooled, Row, Sql, Tx, from_i64, map_err, taken, to_i64};
use crate::events::{depth_of, insert_event, schedule_timers};
use crate::group_commit::GroupCommit;

/// How long an idempotency key returns the same run (the services' rule, kept here too).
pub use port_core::service::IDEMPOTENCY_WINDOW_MS;

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
    /// One writer connection serializes every write; readers never block it (WAL).
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
        /// Set for [`Synchronous::Full`]: commits are made durable in groups.
        group_commit: Option<Arc<GroupCommit>>,
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

const DELIVERY_COLUMNS: &str = "id, org_id, run_id, mode, request, synchronized, installation_id, state, attempts, \
     next_attempt_at, lease_owner, lease_until, created_at, updated_at";
const RUN_COLUMNS: &str = "org_id, id, version, chain_depth, document";
const LOG_COLUMNS: &str = "seq, id, run_id, message, created_at, created_by";
const ENTITY_COLUMNS: &str =
    "org_id, blueprint, identifier, document, created_at, created_by, updated_at, updated_by";
const BLUEPRINT_COLUMNS: &str =
    "org_id, identifier, title, definition, created_at, created_by, updated_at, updated_by";
const ACTION_COLUMNS: &str =
    "action_id, definition, created_at, created_by, updated_at, updated_by";
const AFFECTED_COLUMNS: &str =
    "org_id, run_id, blueprint, entity, operation, at, by_user, snapshot";
const ATTEMPT_COLUMNS: &str = "delivery_id, org_id, run_id, number, started_at, ended_at, status_code, error, \
     response_excerpt, duration_ms";

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
        // FULL durability comes from group commit (crate::group_commit): SQLite itself
        // commits with NORMAL, and each commit is acknowledged after a shared WAL fsync.
        let group_commit = match options.sqlite_synchronous {
            Synchronous::Full => Some(GroupCommit::new(path)),
            Synchronous::Normal => None,
        };
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            // The writer stays open: reconnecting would only redo the pragmas.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await
            .map_err(connect_err)?;
        SQLITE_MIGRATOR
            .run(&writer)
            .await
            .map_err(|source| OpenError::Migrate {
                target: target.clone(),
                source,
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
                writer,
                reader,
                group_commit,
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

    /// A write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front,
    /// so a transaction that reads before it writes never fails half-way with BUSY.
    pub(crate) async fn begin(&self) -> StoreResult<Tx> {
        match &self.backend {
            Backend::Sqlite {
                writer,
                group_commit,
                ..
            } => writer
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map(|tx| Tx::Sqlite(tx, group_commit.clone())),
            Backend::Postgres { pool } => pool.begin().await.map(Tx::Pg),
        }
        .map_err(map_err)
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

    /// Lets concurrent claimers pass over each other's rows instead of queueing.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres { .. } => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Runs one statement in its own write transaction.
    async fn write_one(&self, sql: &Sql) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = tx.conn().execute(sql).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn read_all(&self, sql: &Sql) -> StoreResult<Vec<Row>> {
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
        })
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

fn stamp_from_row(row: &Row) -> StoreResult<Stamp> {
    Ok(Stamp {
        created_at: row.timestamp("created_at")?,
        created_by: row.text("created_by")?,
        updated_at: row.timestamp("updated_at")?,
        updated_by: row.text("updated_by")?,
    })
}

fn organization_from_row(row: &Row) -> StoreResult<Organization> {
    Ok(Organization {
        id: parse_col(row, "org_id")?,
        name: row.text("name")?,
        created_at: row.timestamp("created_at")?,
    })
}

fn blueprint_from_row(row: &Row) -> StoreResult<Blueprint> {
    Ok(Blueprint {
        org_id: parse_col(row, "org_id")?,
        identifier: parse_col(row, "identifier")?,
        title: row.opt_text("title")?,
        definition: codec::object_from_text(&row.text("definition")?, "blueprint")?,
        stamp: stamp_from_row(row)?,
    })
}

fn entity_from_row(row: &Row) -> StoreResult<Entity> {
    entity_and_size(row).map(|(entity, _)| entity)
}

/// An entity and the size of its stored document.
fn entity_and_size(row: &Row) -> StoreResult<(Entity, usize)> {
    let document = row.text("document")?;
    let content = codec::entity_from_json(&document)?;
    let entity = Entity {
        org_id: parse_col(row, "org_id")?,
        blueprint: parse_col(row, "blueprint")?,
        identifier: parse_col(row, "identifier")?,
        title: content.title,
        icon: content.icon,
        team: content.team,
        properties: content.properties,
        relations: content.relations,
        stamp: stamp_from_row(row)?,
    };
    Ok((entity, document.len()))
}

fn affected_from_row(row: &Row) -> StoreResult<AffectedEntity> {
    Ok(AffectedEntity {
        org_id: parse_col(row, "org_id")?,
        run_id: parse_col(row, "run_id")?,
        blueprint: parse_col(row, "blueprint")?,
        entity: parse_col(row, "entity")?,
        operation: EntityOperation::parse(&row.text("operation")?)
            .ok_or_else(|| StoreError::Other("column operation holds an invalid value".into()))?,
        at: row.timestamp("at")?,
        by: row.text("by_user")?,
        snapshot: codec::json_from_text(&row.text("snapshot")?, "affected entity")?,
    })
}

fn action_from_row(row: &Row) -> StoreResult<Action> {
    let document = codec::json_from_text(&row.text("definition")?, "action")?;
    let definition = ActionDefinition::from_v2(&document)
        .map_err(|e| StoreError::Other(format!("stored action is invalid: {e}")))?;
    Ok(Action {
        meta: ActionMeta {
            id: parse_col(row, "action_id")?,
            created_at: row.timestamp("created_at")?,
            created_by: row.text("created_by")?,
            updated_at: row.timestamp("updated_at")?,
            updated_by: row.text("updated_by")?,
        },
        definition,
    })
}

fn run_from_row(row: &Row) -> StoreResult<Run> {
    codec::run_from_json(
        &row.text("document")?,
        parse_col(row, "id")?,
        parse_col(row, "org_id")?,
        from_i64(row.i64("version")?, "version")?,
        from_i64(row.i64("chain_depth")?, "chain_depth")?,
    )
}

fn log_from_row(row: &Row) -> StoreResult<RunLog> {
    Ok(RunLog {
        seq: from_i64(row.i64("seq")?, "seq")?,
        id: parse_col(row, "id")?,
        run_id: parse_col(row, "run_id")?,
        message: row.text("message")?,
        created_at: row.timestamp("created_at")?,
        created_by: row.text("created_by")?,
    })
}

fn delivery_from_row(row: &Row) -> StoreResult<Delivery> {
    let invalid = |c: &str| StoreError::Other(format!("column {c} holds an invalid value"));
    Ok(Delivery {
        id: parse_col(row, "id")?,
        org_id: parse_col(row, "org_id")?,
        run_id: parse_col(row, "run_id")?,
        mode: DeliveryMode::parse(&row.text("mode")?).ok_or_else(|| invalid("mode"))?,
        request: codec::json_from_text(&row.text("request")?, "delivery request")?,
        synchronized: row.boolean("synchronized")?,
        installation_id: row.opt_text("installation_id")?,
        state: DeliveryState::parse(&row.text("state")?).ok_or_else(|| invalid("state"))?,
        attempts: from_i64(row.i64("attempts")?, "attempts")?,
        next_attempt_at: row.timestamp("next_attempt_at")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_until: row.opt_timestamp("lease_until")?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
    })
}

fn attempt_from_row(row: &Row) -> StoreResult<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        delivery_id: parse_col(row, "delivery_id")?,
        org_id: parse_col(row, "org_id")?,
        run_id: parse_col(row, "run_id")?,
        number: from_i64(row.i64("number")?, "number")?,
        started_at: row.timestamp("started_at")?,
        ended_at: row.timestamp("ended_at")?,
        status_code: row
            .opt_i64("status_code")?
            .map(|c| from_i64(c, "status_code"))
            .transpose()?,
        error: row.opt_text("error")?,
        response_excerpt: row.opt_text("response_excerpt")?,
        duration_ms: from_i64(row.i64("duration_ms")?, "duration_ms")?,
    })
}

fn rows<T>(rows: Vec<Row>, decode: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}

// ---------------------------------------------------------------------------------------
// Shared statements
// ---------------------------------------------------------------------------------------

/// Writes a delivery of `run`.
async fn insert_delivery(conn: &mut Conn<'_>, d: &NewDelivery, run: &Run) -> StoreResult<()> {
    // The evaluated invocation's type and the run's action, in columns of their own so
    // agent claims route by the one (through an index) and exclude by the other
    // without reading the runs.
    let invocation_type = d.request.get("type").and_then(Value::as_str);
    let sql = Sql::new(format!(
        "INSERT INTO deliveries ({DELIVERY_COLUMNS}, invocation_type, action_identifier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, NULL, NULL, $10, $10, $11, $12)"
    ))
    .bind(&d.id)
    .bind(&d.org_id)
    .bind(&d.run_id)
    .bind(d.mode.as_str())
    .bind(d.request.to_string())
    .bind(d.synchronized)
    .bind(d.installation_id.as_deref())
    .bind(DeliveryState::Pending.as_str())
    .bind(d.next_attempt_at)
    .bind(d.created_at)
    .bind(invocation_type)
    .bind(&run.action.identifier);
    conn.execute(&sql)
        .await
        .map_err(taken(|| format!("delivery {}", d.id)))?;
    Ok(())
}

fn version_arg(run: &Run) -> StoreResult<i64> {
    i64::try_from(run.version)
        .map_err(|_| StoreError::Other(format!("run {} has an unstorable version", run.id)))
}

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

#[async_trait]
impl OrgStore for SqlStore {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()> {
        let sql =
            Sql::new("INSERT INTO organizations (org_id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&org.id)
                .bind(&org.name)
                .bind(org.created_at);
        self.write_one(&sql)
            .await
            .map_err(taken(|| format!("organization {}", org.id)))?;
        Ok(())
    }

    async fn get_organization(&self, org: &OrgId) -> StoreResult<Option<Organization>> {
        let sql = Sql::new("SELECT org_id, name, created_at FROM organizations WHERE org_id = $1")
            .bind(org);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(organization_from_row)
            .transpose()
    }

    async fn add_credential(&self, credential: &Credential) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let org =
            Sql::new("SELECT org_id FROM organizations WHERE org_id = $1").bind(&credential.org_id);
        if conn.fetch_optional(&org).await?.is_none() {
            return Err(StoreError::Other(format!(
                "organization {} does not exist",
                credential.org_id
            )));
        }
        let sql = Sql::new("INSERT INTO credentials (client_id, org_id, client_secret, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&credential.client_id)
            .bind(&credential.org_id)
            .bind(self.seal(
                credential.client_secret.expose(),
                &client_secret_context(&credential.client_id),
            ))
            .bind(credential.created_at);
        // The message names no value: the row holds a secret.
        conn.execute(&sql)
            .await
            .map_err(taken(|| "credential".to_owned()))?;
        tx.commit().await
    }

    async fn find_credential(&self, client_id: &str) -> StoreResult<Option<Credential>> {
        let sql = Sql::new("SELECT client_id, org_id, client_secret, created_at FROM credentials WHERE client_id = $1")
            .bind(client_id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(|row| self.credential_from_row(row))
            .transpose()
    }

    async fn credentials(&self, org: &OrgId) -> StoreResult<Vec<Credential>> {
        let sql = Sql::new(
            "SELECT client_id, org_id, client_secret, created_at FROM credentials WHERE org_id = $1 \
             ORDER BY created_at, client_id",
        )
        .bind(org);
        rows(self.read_all(&sql).await?, |row| {
            self.credential_from_row(row)
        })
    }

    async fn count_credentials(&self) -> StoreResult<u64> {
        let row = self
            .read_optional(&Sql::new("SELECT COUNT(*) AS n FROM credentials"))
            .await?;
        from_i64(row.map_or(Ok(0), |r| r.i64("n"))?, "count")
    }

    async fn organization_settings(&self, org: &OrgId) -> StoreResult<Option<Map<String, Value>>> {
        let sql = Sql::new("SELECT settings FROM organizations WHERE org_id = $1").bind(org);
        self.read_optional(&sql)
            .await?
            .map(|row| codec::object_from_text(&row.text("settings")?, "organization settings"))
            .transpose()
    }

    async fn update_organization(
        &self,
        org: &OrgId,
        name: Option<&str>,
        settings: Option<&Map<String, Value>>,
    ) -> StoreResult<bool> {
        // Absent parts keep their stored value.
        let sql = Sql::new(
            "UPDATE organizations SET name = COALESCE($2, name), settings = COALESCE($3, settings) \
             WHERE org_id = $1",
        )
        .bind(org)
        .bind(name)
        .bind(settings.map(|s| Value::Object(s.clone()).to_string()));
        Ok(self.write_one(&sql).await? > 0)
    }
}

const INTEGRATION_COLUMNS: &str =
    "org_id, identifier, document, created_at, created_by, updated_at, updated_by";

fn integration_from_row(row: &Row) -> StoreResult<Integration> {
    Ok(Integration {
        org_id: parse_col(row, "org_id")?,
        identifier: parse_col(row, "identifier")?,
        document: codec::object_from_text(&row.text("document")?, "integration")?,
        created_at: row.timestamp("created_at")?,
        created_by: row.text("created_by")?,
        updated_at: row.timestamp("updated_at")?,
        updated_by: row.text("updated_by")?,
    })
}

#[async_trait]
impl IntegrationStore for SqlStore {
    async fn create_integration(&self, integration: &Integration) -> StoreResult<()> {
        let sql = Sql::new(format!(
            "INSERT INTO integrations ({INTEGRATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&integration.org_id)
        .bind(&integration.identifier)
        .bind(Value::Object(integration.document.clone()).to_string())
        .bind(integration.created_at)
        .bind(&integration.created_by)
        .bind(integration.updated_at)
        .bind(&integration.updated_by);
        self.write_one(&sql)
            .await
            .map_err(taken(|| format!("integration {}", integration.identifier)))?;
        Ok(())
    }

    async fn get_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<Option<Integration>> {
        let sql = Sql::new(format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE org_id = $1 AND identifier = $2"
        ))
        .bind(org)
        .bind(id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(integration_from_row)
            .transpose()
    }

    async fn update_integration(&self, integration: &Integration) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE integrations SET document = $3, updated_at = $4, updated_by = $5 \
             WHERE org_id = $1 AND identifier = $2",
        )
        .bind(&integration.org_id)
        .bind(&integration.identifier)
        .bind(Value::Object(integration.document.clone()).to_string())
        .bind(integration.updated_at)
        .bind(&integration.updated_by);
        Ok(self.write_one(&sql).await? > 0)
    }

    async fn delete_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM integrations WHERE org_id = $1 AND identifier = $2")
            .bind(org)
            .bind(id);
        Ok(self.write_one(&sql).await? > 0)
    }

    async fn count_integrations(&self, org: &OrgId) -> StoreResult<u64> {
        let sql = Sql::new("SELECT COUNT(*) AS n FROM integrations WHERE org_id = $1").bind(org);
        let row = self.read_optional(&sql).await?;
        from_i64(row.map_or(Ok(0), |r| r.i64("n"))?, "count")
    }
}

const SECRET_COLUMNS: &str = "org_id, name, description, created_at, updated_at";

fn secret_name_col(row: &Row) -> StoreResult<SecretName> {
    SecretName::parse(&row.text("name")?)
        .map_err(|_| StoreError::Other("column name holds an invalid secret name".into()))
}

fn org_secret_from_row(row: &Row) -> StoreResult<OrgSecret> {
    Ok(OrgSecret {
        org_id: parse_col(row, "org_id")?,
        name: secret_name_col(row)?,
        description: row.opt_text("description")?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
    })
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn create_secret(&self, secret: &OrgSecret, value: &SecretValue) -> StoreResult<()> {
        let sealed = self.seal(
            value.expose(),
            &org_secret_context(secret.org_id.as_str(), secret.name.as_str()),
        );
        let sql = Sql::new(format!(
            "INSERT INTO org_secrets ({SECRET_COLUMNS}, value) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&secret.org_id)
        .bind(secret.name.as_str())
        .bind(secret.description.as_deref())
        .bind(secret.created_at)
        .bind(secret.updated_at)
        .bind(sealed);
        // The message names the secret, never its value.
        self.write_one(&sql)
            .await
            .map_err(taken(|| format!("secret {}", secret.name)))?;
        Ok(())
    }

    async fn update_secret(
        &self,
        org: &OrgId,
        name: &SecretName,
        value: Option<&SecretValue>,
        description: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Option<OrgSecret>> {
        let sealed =
            value.map(|v| self.seal(v.expose(), &org_secret_context(org.as_str(), name.as_str())));
        // Absent parts keep their stored value.
        let sql = Sql::new(format!(
            "UPDATE org_secrets SET value = COALESCE($3, value), \
             description = COALESCE($4, description), updated_at = $5 \
             WHERE org_id = $1 AND name = $2 RETURNING {SECRET_COLUMNS}"
        ))
        .bind(org)
        .bind(name.as_str())
        .bind(sealed)
        .bind(description)
        .bind(at);
        let mut tx = self.begin().await?;
        let row = tx.conn().fetch_optional(&sql).await?;
        tx.commit().await?;
        row.as_ref().map(org_secret_from_row).transpose()
    }

    async fn get_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<Option<OrgSecret>> {
        let sql = Sql::new(format!(
            "SELECT {SECRET_COLUMNS} FROM org_secrets WHERE org_id = $1 AND name = $2"
        ))
        .bind(org)
        .bind(name.as_str());
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(org_secret_from_row)
            .transpose()
    }

    async fn list_secrets(&self, org: &OrgId) -> StoreResult<Vec<OrgSecret>> {
        let sql = Sql::new(format!(
            "SELECT {SECRET_COLUMNS} FROM org_secrets WHERE org_id = $1 ORDER BY name"
        ))
        .bind(org);
        rows(self.read_all(&sql).await?, org_secret_from_row)
    }

    async fn delete_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM org_secrets WHERE org_id = $1 AND name = $2")
            .bind(org)
            .bind(name.as_str());
        Ok(self.write_one(&sql).await? > 0)
    }

    async fn secret_values(&self, org: &OrgId) -> StoreResult<Vec<(SecretName, SecretValue)>> {
        let sql = Sql::new("SELECT name, value FROM org_secrets WHERE org_id = $1 ORDER BY name")
            .bind(org);
        rows(self.read_all(&sql).await?, |row| {
            let name = secret_name_col(row)?;
            let clear = self.unseal(
                row.text("value")?,
                &org_secret_context(org.as_str(), name.as_str()),
                || format!("secret {name} of organization {org}"),
            )?;
            let value = SecretValue::new(clear).map_err(|_| {
                StoreError::Other(format!("secret {name} holds an oversized value"))
            })?;
            Ok((name, value))
        })
    }
}

#[async_trait]
impl BlueprintStore for SqlStore {
    async fn create_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()> {
        let sql = Sql::new(format!(
            "INSERT INTO blueprints ({BLUEPRINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&blueprint.org_id)
        .bind(&blueprint.identifier)
        .bind(blueprint.title.as_deref())
        .bind(Value::Object(blueprint.definition.clone()).to_string())
        .bind(blueprint.stamp.created_at)
        .bind(&blueprint.stamp.created_by)
        .bind(blueprint.stamp.updated_at)
        .bind(&blueprint.stamp.updated_by);
        self.write_one(&sql)
            .await
            .map_err(taken(|| format!("blueprint {}", blueprint.identifier)))?;
        Ok(())
    }

    async fn update_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE blueprints SET title = $3, definition = $4, created_at = $5, created_by = $6, updated_at = $7, \
             updated_by = $8 WHERE org_id = $1 AND identifier = $2",
        )
        .bind(&blueprint.org_id)
        .bind(&blueprint.identifier)
        .bind(blueprint.title.as_deref())
        .bind(Value::Object(blueprint.definition.clone()).to_string())
        .bind(blueprint.stamp.created_at)
        .bind(&blueprint.stamp.created_by)
        .bind(blueprint.stamp.updated_at)
        .bind(&blueprint.stamp.updated_by);
        if self.write_one(&sql).await? == 0 {
            return Err(StoreError::Conflict(format!(
                "blueprint {} no longer exists",
                blueprint.identifier
            )));
        }
        Ok(())
    }

    async fn get_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
    ) -> StoreResult<Option<Blueprint>> {
        let sql = Sql::new(format!(
            "SELECT {BLUEPRINT_COLUMNS} FROM blueprints WHERE org_id = $1 AND identifier = $2"
        ))
        .bind(org)
        .bind(id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(blueprint_from_row)
            .transpose()
    }

    async fn list_blueprints(&self, org: &OrgId) -> StoreResult<Vec<Blueprint>> {
        let sql = Sql::new(format!(
            "SELECT {BLUEPRINT_COLUMNS} FROM blueprints WHERE org_id = $1 ORDER BY created_at, identifier"
        ))
        .bind(org);
        rows(self.read_all(&sql).await?, blueprint_from_row)
    }

    async fn delete_blueprint(&self, org: &OrgId, id: &BlueprintIdentifier) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        for table in ["entities", "timers"] {
            conn.execute(
                &Sql::new(format!(
                    "DELETE FROM {table} WHERE org_id = $1 AND blueprint = $2"
                ))
                .bind(org)
                .bind(id),
            )
            .await?;
        }
        conn.execute(
            &Sql::new("DELETE FROM actions WHERE org_id = $1 AND blueprint = $2")
                .bind(org)
                .bind(id),
        )
        .await?;
        let n = conn
            .execute(
                &Sql::new("DELETE FROM blueprints WHERE org_id = $1 AND identifier = $2")
                    .bind(org)
                    .bind(id),
            )
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }
}

/// The stored entity, read in the transaction of `conn`.
pub(crate) async fn read_entity(
    conn: &mut Conn<'_>,
    org: &OrgId,
    blueprint: &BlueprintIdentifier,
    id: &EntityIdentifier,
) -> StoreResult<Option<Entity>> {
    let sql = Sql::new(format!(
        "SELECT {ENTITY_COLUMNS} FROM entities WHERE org_id = $1 AND blueprint = $2 AND identifier = $3"
    ))
    .bind(org)
    .bind(blueprint)
    .bind(id);
    conn.fetch_optional(&sql)
        .await?
        .as_ref()
        .map(entity_from_row)
        .transpose()
}

async fn insert_affected(conn: &mut Conn<'_>, a: &AffectedEntity) -> StoreResult<()> {
    let sql = Sql::new(format!(
        "INSERT INTO affected_entities ({AFFECTED_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&a.org_id)
    .bind(&a.run_id)
    .bind(&a.blueprint)
    .bind(&a.entity)
    .bind(a.operation.as_str())
    .bind(a.at)
    .bind(&a.by)
    .bind(a.snapshot.to_string());
    conn.execute(&sql).await?;
    Ok(())
}

fn entity_values(entity: &Entity) -> Sql {
    Sql::new(format!(
        "INSERT INTO entities ({ENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&entity.org_id)
    .bind(&entity.blueprint)
    .bind(&entity.identifier)
    .bind(codec::entity_to_json(entity))
    .bind(entity.stamp.created_at)
    .bind(&entity.stamp.created_by)
    .bind(entity.stamp.updated_at)
    .bind(&entity.stamp.updated_by)
}

#[async_trait]
impl EntityStore for SqlStore {
    async fn put_entity(
        &self,
        entity: &Entity,
        mode: EntityWriteMode,
        affected: Option<&AffectedEntity>,
        timers: &[String],
    ) -> StoreResult<bool> {
        let insert = entity_values(entity);
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        // `before`: the stored entity this write replaces, for the change event.
        let (created, before) = match mode {
            EntityWriteMode::CreateOnly => {
                conn.execute(&insert)
                    .await
                    .map_err(taken(|| format!("entity {}", entity.identifier)))?;
                (true, None)
            }
            EntityWriteMode::Upsert => {
                // Insert-or-nothing, then read the existing entity locked and update
                // it: race-free on both databases, and it tells whether the entity was
                // created and what it was before.
                let mut try_insert = insert.clone();
                try_insert.push(" ON CONFLICT (org_id, blueprint, identifier) DO NOTHING");
                if conn.execute(&try_insert).await? == 1 {
                    (true, None)
                } else {
                    let stored = Sql::new(format!(
                        "SELECT {ENTITY_COLUMNS} FROM entities \
                         WHERE org_id = $1 AND blueprint = $2 AND identifier = $3{}",
                        self.for_update()
                    ))
                    .bind(&entity.org_id)
                    .bind(&entity.blueprint)
                    .bind(&entity.identifier);
                    match conn.fetch_optional(&stored).await? {
                        Some(row) => {
                            let before = entity_from_row(&row)?;
                            let update = Sql::new(
                                "UPDATE entities SET document = $4, created_at = $5, created_by = $6, updated_at = $7, \
                                 updated_by = $8 WHERE org_id = $1 AND blueprint = $2 AND identifier = $3",
                            )
                            .bind(&entity.org_id)
                            .bind(&entity.blueprint)
                            .bind(&entity.identifier)
                            .bind(codec::entity_to_json(entity))
                            .bind(entity.stamp.created_at)
                            .bind(&entity.stamp.created_by)
                            .bind(entity.stamp.updated_at)
                            .bind(&entity.stamp.updated_by);
                            conn.execute(&update).await?;
                            (false, Some(before))
                        }
                        None => {
                            // Deleted by someone else in between: create it after all.
                            conn.execute(&insert).await?;
                            (true, None)
                        }
                    }
                }
            }
        };
        schedule_timers(&mut conn, timers, before.as_ref(), entity).await?;
        let depth = depth_of(&mut conn, affected).await?;
        let event = NewChangeEvent::of_entity(
            before.as_ref(),
            Some(entity),
            depth,
            entity.stamp.updated_at,
        );
        insert_event(&mut conn, event.as_ref()).await?;
        if let Some(affected) = affected {
            insert_affected(&mut conn, affected).await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn get_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
    ) -> StoreResult<Option<Entity>> {
        let sql = Sql::new(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE org_id = $1 AND blueprint = $2 AND identifier = $3"
        ))
        .bind(org)
        .bind(blueprint)
        .bind(id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(entity_from_row)
            .transpose()
    }

    async fn list_entities(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
    ) -> StoreResult<Vec<Entity>> {
        let sql = Sql::new(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE org_id = $1 AND blueprint = $2 ORDER BY created_at, identifier"
        ))
        .bind(org)
        .bind(blueprint);
        rows(self.read_all(&sql).await?, entity_from_row)
    }

    async fn delete_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
        deletion: &EntityDeletion<'_>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        // RETURNING gives the deleted entity, the change event's `before`.
        let sql = Sql::new(format!(
            "DELETE FROM entities WHERE org_id = $1 AND blueprint = $2 AND identifier = $3 \
             RETURNING {ENTITY_COLUMNS}"
        ))
        .bind(org)
        .bind(blueprint)
        .bind(id);
        let Some(row) = conn.fetch_optional(&sql).await? else {
            return Ok(false);
        };
        let before = entity_from_row(&row)?;
        conn.execute(
            &Sql::new("DELETE FROM timers WHERE org_id = $1 AND blueprint = $2 AND entity = $3")
                .bind(org)
                .bind(blueprint)
                .bind(id),
        )
        .await?;
        let depth = depth_of(&mut conn, deletion.affected).await?;
        let mut event = NewChangeEvent::of_entity(Some(&before), None, depth, deletion.at);
        if let Some(event) = &mut event {
            // The stored entity names its last writer; the deletion is the deleter's.
            event.by = deletion.by.to_owned();
        }
        insert_event(&mut conn, event.as_ref()).await?;
        if let Some(affected) = deletion.affected {
            insert_affected(&mut conn, affected).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn affected_entities(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<AffectedEntity>> {
        let sql = Sql::new(format!(
            "SELECT {AFFECTED_COLUMNS} FROM affected_entities WHERE org_id = $1 AND run_id = $2 ORDER BY at, id"
        ))
        .bind(org)
        .bind(run);
        rows(self.read_all(&sql).await?, affected_from_row)
    }

    async fn scan_entities(&self, org: &OrgId, scan: &EntityScan) -> StoreResult<ScannedEntities> {
        if scan.limit == 0
            || scan.blueprints.as_ref().is_some_and(|s| s.is_empty())
            || scan.identifiers.as_ref().is_some_and(|s| s.is_empty())
        {
            return Ok(ScannedEntities::default());
        }
        // Every condition is on the primary key (org_id, blueprint, identifier): the
        // page is a bounded range read of the index, whatever the catalog's size.
        let mut sql = Sql::new(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE org_id = "
        ));
        sql.push_bind(org);
        if let Some(blueprints) = &scan.blueprints {
            sql.push(" AND blueprint IN (");
            for (i, blueprint) in blueprints.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(blueprint);
            }
            sql.push(")");
        }
        if let Some(identifiers) = &scan.identifiers {
            sql.push(" AND identifier IN (");
            for (i, identifier) in identifiers.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(identifier);
            }
            sql.push(")");
        }
        if let Some(after) = &scan.after {
            sql.push(" AND (blueprint, identifier) > (");
            sql.push_bind(&after.blueprint).push(", ");
            sql.push_bind(&after.identifier).push(")");
        }
        sql.push(" ORDER BY blueprint, identifier LIMIT ");
        sql.push_bind(i64::try_from(scan.limit).unwrap_or(i64::MAX));
        let rows = self.read_all(&sql).await?;
        let mut page = ScannedEntities::default();
        for row in &rows {
            let (entity, size) = entity_and_size(row)?;
            page.bytes += size as u64;
            page.sizes.push(size as u64);
            page.entities.push(entity);
        }
        Ok(page)
    }
}

#[async_trait]
impl ActionStore for SqlStore {
    async fn create_action(&self, org: &OrgId, action: &Action) -> StoreResult<()> {
        let sql = Sql::new(
            "INSERT INTO actions (org_id, identifier, blueprint, action_id, definition, created_at, created_by, \
             updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        );
        let sql = bind_action(sql, org, action);
        self.write_one(&sql)
            .await
            .map_err(taken(|| format!("action {}", action.definition.identifier)))?;
        Ok(())
    }

    async fn update_action(&self, org: &OrgId, action: &Action) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE actions SET blueprint = $3, action_id = $4, definition = $5, created_at = $6, created_by = $7, \
             updated_at = $8, updated_by = $9 WHERE org_id = $1 AND identifier = $2",
        );
        let sql = bind_action(sql, org, action);
        if self.write_one(&sql).await? == 0 {
            return Err(StoreError::Conflict(format!(
                "action {} no longer exists",
                action.definition.identifier
            )));
        }
        Ok(())
    }

    async fn get_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<Option<Action>> {
        let sql = Sql::new(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE org_id = $1 AND identifier = $2"
        ))
        .bind(org)
        .bind(id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(action_from_row)
            .transpose()
    }

    async fn list_actions(&self, org: &OrgId) -> StoreResult<Vec<Action>> {
        let sql = Sql::new(format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE org_id = $1 ORDER BY created_at, identifier"
        ))
        .bind(org);
        rows(self.read_all(&sql).await?, action_from_row)
    }

    async fn delete_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM actions WHERE org_id = $1 AND identifier = $2")
            .bind(org)
            .bind(id);
        Ok(self.write_one(&sql).await? > 0)
    }
}

/// Binds `$1..$9` of an action insert or update.
fn bind_action(sql: Sql, org: &OrgId, action: &Action) -> Sql {
    sql.bind(org)
        .bind(&action.definition.identifier)
        .bind(
            action
                .definition
                .blueprint()
                .map(BlueprintIdentifier::as_str),
        )
        .bind(&action.meta.id)
        .bind(action.to_v2_json().to_string())
        .bind(action.meta.created_at)
        .bind(&action.meta.created_by)
        .bind(action.meta.updated_at)
        .bind(&action.meta.updated_by)
}

/// Binds `$1..$14` of a run insert or update, in `runs` column order.
fn bind_run(sql: Sql, run: &Run) -> StoreResult<Sql> {
    Ok(sql
        .bind(&run.org_id)
        .bind(&run.id)
        .bind(run.status().as_str())
        .bind(&run.action.identifier)
        .bind(run.blueprint.as_ref().map(|r| r.identifier.as_str()))
        .bind(run.entity.as_ref().map(|r| r.identifier.as_str()))
        .bind(&run.created_by)
        .bind(run.source.as_str())
        .bind(run.external_run_id.as_deref())
        .bind(run.created_at)
        .bind(run.updated_at)
        .bind(version_arg(run)?)
        .bind(codec::run_to_json(run))
        .bind(i64::from(run.chain_depth)))
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_run(
        &self,
        run: &Run,
        delivery: Option<&NewDelivery>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> StoreResult<CreateRunOutcome> {
        let insert_run = bind_run(
            Sql::new(
                "INSERT INTO runs (org_id, id, status, action_identifier, blueprint_identifier, entity_identifier, \
                 created_by, source, external_run_id, created_at, updated_at, version, document, chain_depth) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            ),
            run,
        )?;
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        if let Some(key) = idempotency_key {
            // An expired key is replaced; a live one wins. The insert is the arbiter:
            // of two concurrent creates with one key, exactly one inserts it.
            let expire = Sql::new(
                "DELETE FROM idempotency_keys WHERE org_id = $1 AND idempotency_key = $2 AND created_at <= $3",
            )
            .bind(&key.org_id)
            .bind(&key.key)
            .bind(key.created_at.plus_millis(-IDEMPOTENCY_WINDOW_MS));
            conn.execute(&expire).await?;
            let claim = Sql::new(
                "INSERT INTO idempotency_keys (org_id, idempotency_key, run_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, idempotency_key) DO NOTHING",
            )
            .bind(&key.org_id)
            .bind(&key.key)
            .bind(&run.id)
            .bind(key.created_at);
            if conn.execute(&claim).await? == 0 {
                let existing = Sql::new(
                    "SELECT run_id FROM idempotency_keys WHERE org_id = $1 AND idempotency_key = $2",
                )
                .bind(&key.org_id)
                .bind(&key.key);
                let row = conn.fetch_optional(&existing).await?;
                tx.rollback().await?;
                return match row {
                    Some(row) => Ok(CreateRunOutcome::Existing(parse_col(&row, "run_id")?)),
                    // Only a concurrent expiry can get here; the caller may retry.
                    None => Err(StoreError::Conflict("idempotency key".to_owned())),
                };
            }
        }
        conn.execute(&insert_run)
            .await
            .map_err(taken(|| format!("run {}", run.id)))?;
        if let Some(delivery) = delivery {
            insert_delivery(&mut conn, delivery, run).await?;
        }
        insert_event(&mut conn, NewChangeEvent::of_run(None, run).as_ref()).await?;
        tx.commit().await?;
        Ok(CreateRunOutcome::Created)
    }

    async fn get_run(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<Run>> {
        let sql = Sql::new(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(run_from_row)
            .transpose()
    }

    async fn run_version(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<u64>> {
        let sql = Sql::new("SELECT version FROM runs WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id);
        self.read_optional(&sql)
            .await?
            .map(|row| from_i64(row.i64("version")?, "version"))
            .transpose()
    }

    async fn list_runs(&self, org: &OrgId, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let mut sql = Sql::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE org_id = "));
        sql.push_bind(org);
        if let Some(entity) = &filter.entity {
            sql.push(" AND entity_identifier = ").push_bind(entity);
        }
        if let Some(blueprint) = &filter.blueprint {
            sql.push(" AND blueprint_identifier = ")
                .push_bind(blueprint);
        }
        if let Some(action) = &filter.action {
            sql.push(" AND action_identifier = ").push_bind(action);
        }
        if let Some(active) = filter.active {
            sql.push(if active {
                " AND status IN ("
            } else {
                " AND status NOT IN ("
            });
            for (i, status) in RunStatus::ACTIVE.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(status.as_str());
            }
            sql.push(")");
        }
        if let Some(status) = filter.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(user) = &filter.user {
            sql.push(" AND created_by = ").push_bind(user);
        }
        if !filter.sources.is_empty() {
            sql.push(" AND source IN (");
            for (i, source) in filter.sources.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(source.as_str());
            }
            sql.push(")");
        }
        if let Some(external) = &filter.external_run_id {
            sql.push(" AND external_run_id = ").push_bind(external);
        }
        if let Some(before) = &filter.before {
            sql.push(" AND id < ").push_bind(before);
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        rows(self.read_all(&sql).await?, run_from_row)
    }

    async fn save_transition(
        &self,
        run: &Run,
        expected_version: u64,
        logs: &[NewRunLog],
        delivery: Option<&NewDelivery>,
    ) -> StoreResult<Vec<RunLog>> {
        if let Some(log) = logs.iter().find(|l| l.run_id != run.id) {
            return Err(StoreError::Other(format!(
                "log {} belongs to another run",
                log.id
            )));
        }
        let expected = i64::try_from(expected_version)
            .map_err(|_| StoreError::Conflict(format!("run {}", run.id)))?;
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let changed = run.version != expected_version;
        // Locking the run row first also serializes log sequence numbers on PostgreSQL.
        // The whole stored run (the change event's `before`) is read only when the run
        // changes: log lines alone are no event.
        let columns = if changed { RUN_COLUMNS } else { "version" };
        let current = Sql::new(format!(
            "SELECT {columns} FROM runs WHERE org_id = $1 AND id = $2{}",
            self.for_update()
        ))
        .bind(&run.org_id)
        .bind(&run.id);
        let before = match conn.fetch_optional(&current).await? {
            None => {
                return Err(StoreError::Conflict(format!(
                    "run {} does not exist",
                    run.id
                )));
            }
            Some(row) if row.i64("version")? != expected => {
                return Err(StoreError::Conflict(format!("run {}", run.id)));
            }
            Some(row) if changed => Some(run_from_row(&row)?),
            Some(_) => None,
        };
        if let Some(before) = &before {
            let mut update = bind_run(
                Sql::new(
                    "UPDATE runs SET status = $3, action_identifier = $4, blueprint_identifier = $5, \
                     entity_identifier = $6, created_by = $7, source = $8, external_run_id = $9, created_at = $10, \
                     updated_at = $11, version = $12, document = $13, chain_depth = $14 \
                     WHERE org_id = $1 AND id = $2 AND version = ",
                ),
                run,
            )?;
            update.push_bind(expected);
            if conn.execute(&update).await? == 0 {
                return Err(StoreError::Conflict(format!("run {}", run.id)));
            }
            insert_event(
                &mut conn,
                NewChangeEvent::of_run(Some(before), run).as_ref(),
            )
            .await?;
        }
        let mut stored = Vec::with_capacity(logs.len());
        if !logs.is_empty() {
            let last = Sql::new("SELECT COALESCE(MAX(seq), 0) AS seq FROM run_logs WHERE org_id = $1 AND run_id = $2")
                .bind(&run.org_id)
                .bind(&run.id);
            let mut seq = match conn.fetch_optional(&last).await? {
                Some(row) => from_i64::<u64>(row.i64("seq")?, "seq")?,
                None => 0,
            };
            for log in logs {
                seq += 1;
                let insert = Sql::new(format!(
                    "INSERT INTO run_logs (org_id, {LOG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(&run.org_id)
                .bind(to_i64(seq))
                .bind(&log.id)
                .bind(&log.run_id)
                .bind(&log.message)
                .bind(log.created_at)
                .bind(&log.created_by);
                conn.execute(&insert).await?;
                stored.push(RunLog::from_new(log.clone(), seq));
            }
        }
        if let Some(delivery) = delivery {
            insert_delivery(&mut conn, delivery, run).await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn list_logs(
        &self,
        org: &OrgId,
        run: &RunId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        let sql = Sql::new(format!(
            "SELECT {LOG_COLUMNS} FROM run_logs WHERE org_id = $1 AND run_id = $2 ORDER BY seq LIMIT $3 OFFSET $4"
        ))
        .bind(org)
        .bind(run)
        .bind(to_i64(limit))
        .bind(to_i64(offset));
        rows(self.read_all(&sql).await?, log_from_row)
    }

    async fn logs_after(
        &self,
        org: &OrgId,
        run: &RunId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        let sql = Sql::new(format!(
            "SELECT {LOG_COLUMNS} FROM run_logs WHERE org_id = $1 AND run_id = $2 AND seq > $3 ORDER BY seq LIMIT $4"
        ))
        .bind(org)
        .bind(run)
        .bind(to_i64(after_seq))
        .bind(to_i64(limit));
        rows(self.read_all(&sql).await?, log_from_row)
    }

    async fn in_progress_runs_created_before(
        &self,
        created_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        let sql = Sql::new(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = $1 AND created_at < $2 ORDER BY created_at, id LIMIT $3"
        ))
        .bind(RunStatus::InProgress.as_str())
        .bind(created_before)
        .bind(i64::from(limit));
        rows(self.read_all(&sql).await?, run_from_row)
    }
}

impl SqlStore {
    /// Leases due pending deliveries matching `filter` (which may bind from `$6` on).
    /// `$1` owner, `$2` lease end, `$3` now, `$4` limit, `$5` mode.
    async fn claim(
        &self,
        mut filter_sql: Sql,
        filter: &str,
        count_claim: bool,
    ) -> StoreResult<Vec<Delivery>> {
        let attempts = if count_claim {
            ", attempts = attempts + 1"
        } else {
            ""
        };
        filter_sql.push(&format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2, updated_at = $3{attempts} \
             WHERE id IN (SELECT id FROM deliveries WHERE state = 'PENDING' AND mode = $5 AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until <= $3){filter} \
             ORDER BY next_attempt_at, id LIMIT $4{lock}) \
             RETURNING {DELIVERY_COLUMNS}",
            lock = self.skip_locked(),
        ));
        let mut tx = self.begin().await?;
        let claimed = rows(tx.conn().fetch_all(&filter_sql).await?, delivery_from_row)?;
        tx.commit().await?;
        let mut claimed = claimed;
        // RETURNING follows no ORDER BY; hand them out oldest due first.
        claimed.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(claimed)
    }
}

/// Organizations whose due webhooks one statement reads (its bound parameters grow with it).
const ORGS_PER_CANDIDATE_QUERY: usize = 32;

impl SqlStore {
    /// Every organization with a pending webhook delivery, by a skip scan of
    /// `deliveries_due_by_org`: one index probe per organization, however long its
    /// backlog.
    async fn organizations_with_pending_webhooks(&self) -> StoreResult<Vec<OrgId>> {
        let sql = Sql::new(
            "WITH RECURSIVE orgs (org_id) AS ( \
               SELECT MIN(org_id) FROM deliveries WHERE state = 'PENDING' AND mode = $1 \
               UNION ALL \
               SELECT (SELECT MIN(d.org_id) FROM deliveries d \
                       WHERE d.state = 'PENDING' AND d.mode = $1 AND d.org_id > orgs.org_id) \
               FROM orgs WHERE orgs.org_id IS NOT NULL \
             ) SELECT org_id FROM orgs WHERE org_id IS NOT NULL",
        )
        .bind(DeliveryMode::Webhook.as_str());
        self.read_all(&sql)
            .await?
            .iter()
            .map(|row| parse_col(row, "org_id"))
            .collect()
    }

    /// Each organization's oldest due, unleased webhook deliveries, as many as
    /// `limits.lookahead` says, with their destinations.
    async fn due_webhook_candidates(
        &self,
        orgs: &[OrgId],
        now: Timestamp,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<Candidate>> {
        let url = match self.backend {
            Backend::Sqlite { .. } => "json_extract(request, '$.url')",
            Backend::Postgres { .. } => "(request::json ->> 'url')",
        };
        let mut sql = Sql::new("").bind(DeliveryMode::Webhook.as_str()).bind(now);
        for (i, org) in orgs.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push(&format!(
                "SELECT * FROM (SELECT id, org_id, next_attempt_at, {url} AS url FROM deliveries \
                 WHERE state = 'PENDING' AND mode = $1 AND org_id = "
            ));
            sql.push_bind(org);
            sql.push(
                " AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
                 ORDER BY next_attempt_at, id LIMIT ",
            );
            sql.push_bind(i64::from(limits.lookahead(org)));
            sql.push(&format!(") AS due_{i}"));
        }
        self.read_all(&sql)
            .await?
            .iter()
            .map(|row| {
                Ok(Candidate {
                    id: parse_col(row, "id")?,
                    org_id: parse_col(row, "org_id")?,
                    next_attempt_at: row.timestamp("next_attempt_at")?,
                    destination: row
                        .opt_text("url")?
                        .as_deref()
                        .and_then(Destination::of_url),
                })
            })
            .collect()
    }
}

#[async_trait]
impl DeliveryStore for SqlStore {
    async fn claim_due_webhooks(
        &self,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<Delivery>> {
        // Read what could be claimed (on SQLite without the writer), plan, then lease
        // exactly the planned deliveries that are still claimable.
        let orgs: Vec<OrgId> = self
            .organizations_with_pending_webhooks()
            .await?
            .into_iter()
            .filter(|org| limits.lookahead(org) > 0)
            .collect();
        let mut candidates = Vec::new();
        for chunk in orgs.chunks(ORGS_PER_CANDIDATE_QUERY) {
            candidates.extend(self.due_webhook_candidates(chunk, now, limits).await?);
        }
        let planned = claim::plan(candidates, limits);
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("")
            .bind(owner)
            .bind(now.plus_millis(lease_ms))
            .bind(now)
            .bind(i64::try_from(planned.len()).unwrap_or(i64::MAX))
            .bind(DeliveryMode::Webhook.as_str());
        let mut filter = String::from(" AND id IN (");
        for (i, id) in planned.iter().enumerate() {
            if i > 0 {
                filter.push_str(", ");
            }
            sql = sql.bind(id);
            filter.push_str(&format!("${}", 5 + i + 1));
        }
        filter.push(')');
        let mut claimed = self.claim(sql, &filter, false).await?;
        let order: HashMap<&DeliveryId, usize> =
            planned.iter().enumerate().map(|(i, id)| (id, i)).collect();
        claimed.sort_by_key(|d| order.get(&d.id).copied().unwrap_or(usize::MAX));
        Ok(claimed)
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let count = Sql::new(
            "UPDATE deliveries SET attempts = attempts + 1, updated_at = $2 WHERE id = $1 AND org_id = $3 AND run_id = $4",
        )
        .bind(&attempt.delivery_id)
        .bind(attempt.ended_at)
        .bind(&attempt.org_id)
        .bind(&attempt.run_id);
        if conn.execute(&count).await? == 0 {
            return Err(StoreError::Other(format!(
                "delivery {} does not exist",
                attempt.delivery_id
            )));
        }
        let insert = Sql::new(format!(
            "INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&attempt.delivery_id)
        .bind(&attempt.org_id)
        .bind(&attempt.run_id)
        .bind(i64::from(attempt.number))
        .bind(attempt.started_at)
        .bind(attempt.ended_at)
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.error.as_deref())
        .bind(attempt.response_excerpt.as_deref())
        .bind(to_i64(attempt.duration_ms));
        conn.execute(&insert).await.map_err(taken(|| {
            format!(
                "attempt {} of delivery {}",
                attempt.number, attempt.delivery_id
            )
        }))?;
        tx.commit().await
    }

    async fn reschedule(
        &self,
        id: &DeliveryId,
        owner: &str,
        next_attempt_at: Timestamp,
    ) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, next_attempt_at = $3 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'PENDING'",
        )
        .bind(id)
        .bind(owner)
        .bind(next_attempt_at);
        if self.write_one(&sql).await? == 0 {
            return Err(StoreError::Conflict(format!(
                "delivery {id} is not leased by this worker"
            )));
        }
        Ok(())
    }

    async fn finish(
        &self,
        id: &DeliveryId,
        state: DeliveryState,
        now: Timestamp,
    ) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE deliveries SET state = $2, lease_owner = NULL, lease_until = NULL, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(now);
        if self.write_one(&sql).await? == 0 {
            return Err(StoreError::Other(format!("delivery {id} does not exist")));
        }
        Ok(())
    }

    async fn release_leases(&self, owner: &str, now: Timestamp) -> StoreResult<u64> {
        let sql = Sql::new(
            "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, updated_at = $2 \
             WHERE lease_owner = $1 AND state = 'PENDING' AND mode = $3",
        )
        .bind(owner)
        .bind(now)
        .bind(DeliveryMode::Webhook.as_str());
        self.write_one(&sql).await
    }

    async fn next_due_after(&self, after: Timestamp) -> StoreResult<Option<Timestamp>> {
        let sql = Sql::new(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries \
             WHERE state = 'PENDING' AND mode = $1 AND next_attempt_at > $2",
        )
        .bind(DeliveryMode::Webhook.as_str())
        .bind(after);
        match self.read_optional(&sql).await? {
            Some(row) => row.opt_timestamp("due"),
            None => Ok(None),
        }
    }

    async fn deliveries_of_run(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<(Delivery, Vec<DeliveryAttempt>)>> {
        let mut pooled = self.read().await?;
        let mut conn = pooled.conn();
        let deliveries = Sql::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE org_id = $1 AND run_id = $2 ORDER BY created_at, id"
        ))
        .bind(org)
        .bind(run);
        let deliveries = rows(conn.fetch_all(&deliveries).await?, delivery_from_row)?;
        let attempts = Sql::new(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE org_id = $1 AND run_id = $2 \
             ORDER BY delivery_id, number"
        ))
        .bind(org)
        .bind(run);
        let attempts = rows(conn.fetch_all(&attempts).await?, attempt_from_row)?;
        Ok(deliveries
            .into_iter()
            .map(|d| {
                let mine = attempts
                    .iter()
                    .filter(|a| a.delivery_id == d.id)
                    .cloned()
                    .collect();
                (d, mine)
            })
            .collect())
    }

    async fn redeliver(&self, org: &OrgId, run: &RunId, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let latest = Sql::new(format!(
            "SELECT id FROM deliveries WHERE org_id = $1 AND run_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1{}",
            self.for_update()
        ))
        .bind(org)
        .bind(run);
        let Some(row) = conn.fetch_optional(&latest).await? else {
            return Ok(false);
        };
        let id: DeliveryId = parse_col(&row, "id")?;
        let update = Sql::new(
            "UPDATE deliveries SET state = 'PENDING', next_attempt_at = $2, lease_owner = NULL, lease_until = NULL, \
             updated_at = $2 WHERE id = $1",
        )
        .bind(&id)
        .bind(now);
        conn.execute(&update).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_agent_deliveries(
        &self,
        org: &OrgId,
        claim: &AgentClaim<'_>,
    ) -> StoreResult<Vec<Delivery>> {
        let mut sql = Sql::new("")
            .bind(claim.owner)
            .bind(claim.now.plus_millis(claim.visibility_ms))
            .bind(claim.now)
            .bind(i64::from(claim.limit))
            .bind(DeliveryMode::Agent.as_str())
            .bind(org);
        // Each route is one range of `deliveries_agent_route`: a delivery bound to an
        // installation goes to that installation only, an unbound one to claims naming none.
        let mut filter = String::from(" AND org_id = $6");
        match claim.installation_id {
            Some(installation) => {
                filter.push_str(" AND installation_id = $7");
                sql = sql.bind(installation);
            }
            None => filter.push_str(" AND installation_id IS NULL"),
        }
        if let Some(kind) = claim.invocation_type {
            filter.push_str(&format!(" AND invocation_type = ${}", sql.arg_count() + 1));
            sql = sql.bind(kind.as_str());
        }
        if !claim.exclude_actions.is_empty() {
            filter.push_str(" AND action_identifier NOT IN (");
            for (i, action) in claim.exclude_actions.iter().enumerate() {
                if i > 0 {
                    filter.push_str(", ");
                }
                filter.push_str(&format!("${}", sql.arg_count() + 1));
                sql = sql.bind(action);
            }
            filter.push(')');
        }
        self.claim(sql, &filter, true).await
    }

    async fn ack_agent_deliveries(
        &self,
        org: &OrgId,
        runs: &[RunId],
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let mut acked = 0;
        for run in runs {
            let sql = Sql::new(
                "UPDATE deliveries SET state = $4, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE org_id = $1 AND run_id = $2 AND mode = $5 AND state = 'PENDING'",
            )
            .bind(org)
            .bind(run)
            .bind(now)
            .bind(DeliveryState::Delivered.as_str())
            .bind(DeliveryMode::Agent.as_str());
            acked += conn.execute(&sql).await?;
        }
        tx.commit().await?;
        Ok(acked)
    }

    async fn heartbeat_agent_delivery(
        &self,
        org: &OrgId,
        run: &RunId,
        now: Timestamp,
        extend_ms: i64,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE deliveries SET lease_until = $4, updated_at = $3 \
             WHERE org_id = $1 AND run_id = $2 AND mode = $5 AND state = 'PENDING' AND lease_until > $3",
        )
        .bind(org)
        .bind(run)
        .bind(now)
        .bind(now.plus_millis(extend_ms))
        .bind(DeliveryMode::Agent.as_str());
        Ok(self.write_one(&sql).await? > 0)
    }
}

#[async_trait]
impl StoreAdmin for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read_optional(&Sql::new("SELECT 1 AS one"))
            .await
            .map(|_| ())
    }

    async fn integrity_check(&self) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite { .. } => {
                let rows = self.read_all(&Sql::new("PRAGMA integrity_check")).await?;
                // A healthy database answers with a single row, "ok".
                let mut answers = rows.iter().map(|r| r.text("integrity_check"));
                Ok(
                    matches!((answers.next(), answers.next()), (Some(Ok(first)), None) if first == "ok"),
                )
            }
            Backend::Postgres { .. } => {
                self.ping().await?;
                Ok(true)
            }
        }
    }

    async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader, .. } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres { pool } => pool.close().await,
        }
    }

    fn backend(&self) -> BackendKind {
        self.kind()
    }

    async fn reseal_secrets(&self) -> StoreResult<u64> {
        let Some(keyring) = &self.keyring else {
            return Ok(0);
        };
        // Cross-organization by nature: a key protects the whole database. One
        // transaction, so a failure (a value no key of the ring opens) leaves every row
        // as it was, and a rotation is never half done.
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let mut changed = 0;
        let credentials = Sql::new(format!(
            "SELECT client_id, client_secret FROM credentials ORDER BY client_id{}",
            self.for_update()
        ));
        for row in conn.fetch_all(&credentials).await? {
            let stored = row.text("client_secret")?;
            if keyring.is_current(&stored) {
                continue;
            }
            let client_id = row.text("client_id")?;
            let context = client_secret_context(&client_id);
            let clear = self.unseal(stored, &context, || {
                format!("the client secret of {client_id}")
            })?;
            let update = Sql::new("UPDATE credentials SET client_secret = $2 WHERE client_id = $1")
                .bind(&client_id)
                .bind(self.seal(&clear, &context));
            changed += conn.execute(&update).await?;
        }
        let secrets = Sql::new(format!(
            "SELECT org_id, name, value FROM org_secrets ORDER BY org_id, name{}",
            self.for_update()
        ));
        for row in conn.fetch_all(&secrets).await? {
            let stored = row.text("value")?;
            if keyring.is_current(&stored) {
                continue;
            }
            let org = row.text("org_id")?;
            let name = row.text("name")?;
            let context = org_secret_context(&org, &name);
            let clear = self.unseal(stored, &context, || {
                format!("secret {name} of organization {org}")
            })?;
            let update =
                Sql::new("UPDATE org_secrets SET value = $3 WHERE org_id = $1 AND name = $2")
                    .bind(&org)
                    .bind(&name)
                    .bind(self.seal(&clear, &context));
            changed += conn.execute(&update).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}
