//! Runs with version checks, logs with per-run sequences, idempotency keys; each run
//! change records its event, and a dispatch its delivery, in the same transaction.

use async_trait::async_trait;
use port_core::error::StoreError;
use port_core::event::NewChangeEvent;
use port_core::id::{DeliveryId, OrgId, RunId};
use port_core::ports::{
    CreateRunOutcome, IdempotencyKey, NewDelivery, RunFilter, RunStore, StoreResult,
};
use port_core::run::{Run, RunStatus};
use port_core::run_log::{NewRunLog, RunLog};
use port_core::time::Timestamp;

use crate::codec;
use crate::db::{Conn, Row, Sql, chained, from_i64, taken, to_i64};
use crate::events::{event_insert, insert_event};

use super::deliveries::{delivery_insert, insert_delivery};
use super::{BackendKind, IDEMPOTENCY_WINDOW_MS, SqlStore, WriteJob, parse_col, rows};

const RUN_COLUMNS: &str = "org_id, id, version, chain_depth, document";
const LOG_COLUMNS: &str = "seq, id, run_id, message, created_at, created_by";

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

fn version_arg(run: &Run) -> StoreResult<i64> {
    i64::try_from(run.version)
        .map_err(|_| StoreError::Other(format!("run {} has an unstorable version", run.id)))
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
        if self.kind() == BackendKind::Postgres && idempotency_key.is_none() {
            // The run, its delivery and its event in one statement: one round trip.
            let mut parts = vec![insert_run];
            parts.extend(delivery.map(|d| delivery_insert(d, run)));
            parts.extend(NewChangeEvent::of_run(None, run).as_ref().map(event_insert));
            self.autocommit(&chained(parts))
                .await
                .map_err(taken(|| format!("run {}", run.id)))?;
            return Ok(CreateRunOutcome::Created);
        }
        // Everything serialized here, on the caller's task: the writer thread only runs
        // statements.
        self.write(CreateRun {
            insert_run,
            run_id: run.id.clone(),
            insert_delivery: delivery.map(|d| (d.id.clone(), delivery_insert(d, run))),
            insert_event: NewChangeEvent::of_run(None, run).as_ref().map(event_insert),
            idempotency_key: idempotency_key.cloned(),
        })
        .await
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
        self.write(SaveTransition {
            run: run.clone(),
            expected,
            logs: logs.to_vec(),
            delivery: delivery.cloned(),
            for_update: self.for_update(),
        })
        .await
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

/// A run creation with an idempotency key, or on SQLite (where it runs on the writer
/// thread, batched).
struct CreateRun {
    insert_run: Sql,
    run_id: RunId,
    insert_delivery: Option<(DeliveryId, Sql)>,
    insert_event: Option<Sql>,
    idempotency_key: Option<IdempotencyKey>,
}

impl WriteJob for CreateRun {
    type Output = CreateRunOutcome;

    async fn run(&self, conn: &mut Conn<'_>) -> StoreResult<CreateRunOutcome> {
        let run_id = &self.run_id;
        if let Some(key) = &self.idempotency_key {
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
            .bind(run_id)
            .bind(key.created_at);
            if conn.execute(&claim).await? == 0 {
                let existing = Sql::new(
                    "SELECT run_id FROM idempotency_keys WHERE org_id = $1 AND idempotency_key = $2",
                )
                .bind(&key.org_id)
                .bind(&key.key);
                // The expiry above deleted nothing: the key it met is live.
                return match conn.fetch_optional(&existing).await? {
                    Some(row) => Ok(CreateRunOutcome::Existing(parse_col(&row, "run_id")?)),
                    // Only a concurrent expiry can get here; the caller may retry.
                    None => Err(StoreError::Conflict("idempotency key".to_owned())),
                };
            }
        }
        conn.execute(&self.insert_run)
            .await
            .map_err(taken(|| format!("run {run_id}")))?;
        if let Some((id, insert)) = &self.insert_delivery {
            conn.execute(insert)
                .await
                .map_err(taken(|| format!("delivery {id}")))?;
        }
        if let Some(insert) = &self.insert_event {
            conn.execute(insert).await?;
        }
        Ok(CreateRunOutcome::Created)
    }
}

/// A run's move, its log lines and its next delivery, checked against the version the
/// caller read.
struct SaveTransition {
    run: Run,
    expected: i64,
    logs: Vec<NewRunLog>,
    delivery: Option<NewDelivery>,
    for_update: &'static str,
}

impl WriteJob for SaveTransition {
    type Output = Vec<RunLog>;

    async fn run(&self, conn: &mut Conn<'_>) -> StoreResult<Vec<RunLog>> {
        let run = &self.run;
        // Whether the run itself moved (else only log lines are added).
        let changed = i64::try_from(run.version).ok() != Some(self.expected);
        // Locking the run row first also serializes log sequence numbers on PostgreSQL.
        // The whole stored run (the change event's `before`) is read only when the run
        // changes: log lines alone are no event.
        let columns = if changed { RUN_COLUMNS } else { "version" };
        let current = Sql::new(format!(
            "SELECT {columns} FROM runs WHERE org_id = $1 AND id = $2{}",
            self.for_update
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
            Some(row) if row.i64("version")? != self.expected => {
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
            update.push_bind(self.expected);
            if conn.execute(&update).await? == 0 {
                return Err(StoreError::Conflict(format!("run {}", run.id)));
            }
            insert_event(conn, NewChangeEvent::of_run(Some(before), run).as_ref()).await?;
        }
        let mut stored = Vec::with_capacity(self.logs.len());
        if !self.logs.is_empty() {
            let last = Sql::new("SELECT COALESCE(MAX(seq), 0) AS seq FROM run_logs WHERE org_id = $1 AND run_id = $2")
                .bind(&run.org_id)
                .bind(&run.id);
            let mut seq = match conn.fetch_optional(&last).await? {
                Some(row) => from_i64::<u64>(row.i64("seq")?, "seq")?,
                None => 0,
            };
            for log in &self.logs {
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
        if let Some(delivery) = &self.delivery {
            insert_delivery(conn, delivery, run).await?;
        }
        Ok(stored)
    }
}
