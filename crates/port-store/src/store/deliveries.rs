//! The delivery outbox: deliveries written with their run, the worker's fair claims
//! under leases (of the modes it pushes), attempts, agent claims, acks and heartbeats.

use std::collections::HashMap;

use async_trait::async_trait;
use port_core::claim::{self, Candidate, ClaimLimits};
use port_core::destination::Destination;
use port_core::error::StoreError;
use port_core::id::{DeliveryId, OrgId, RunId};
use port_core::ports::{
    AgentClaim, Delivery, DeliveryAttempt, DeliveryMode, DeliveryState, DeliveryStore, NewDelivery,
    StoreResult,
};
use port_core::run::Run;
use port_core::time::Timestamp;
use serde_json::Value;

use crate::codec;
use crate::db::{Conn, Row, Sql, from_i64, taken, to_i64};

use super::{Backend, Returning, SqlStore, Statements, WriteJob, parse_col, rows};

const DELIVERY_COLUMNS: &str = "id, org_id, run_id, mode, request, synchronized, installation_id, state, attempts, \
     next_attempt_at, lease_owner, lease_until, created_at, updated_at";
const ATTEMPT_COLUMNS: &str = "delivery_id, org_id, run_id, number, started_at, ended_at, status_code, error, \
     response_excerpt, duration_ms";

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

/// Writes a delivery of `run`.
pub(super) async fn insert_delivery(
    conn: &mut Conn<'_>,
    d: &NewDelivery,
    run: &Run,
) -> StoreResult<()> {
    conn.execute(&delivery_insert(d, run))
        .await
        .map_err(taken(|| format!("delivery {}", d.id)))?;
    Ok(())
}

/// The statement that writes a delivery of `run`.
pub(super) fn delivery_insert(d: &NewDelivery, run: &Run) -> Sql {
    // The evaluated invocation's type and the run's action, in columns of their own so
    // agent claims route by the one (through an index) and exclude by the other
    // without reading the runs.
    let invocation_type = d.request.get("type").and_then(Value::as_str);
    Sql::new(format!(
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
    .bind(&run.action.identifier)
}

/// The modes the delivery worker pushes besides [`DeliveryMode::Webhook`] (which the
/// queries bind), as SQL literals: with it, exactly [`DeliveryMode::PUSHED`]
/// (`pushed_modes_sql_lists_exactly_the_pushed_modes` holds them together).
const OTHER_PUSHED_MODES_SQL: &str = "'UPSERT_ENTITY', 'APPROVAL_NOTIFICATION'";

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
             WHERE id IN (SELECT id FROM deliveries WHERE state = 'PENDING' AND mode IN ($5, {OTHER_PUSHED_MODES_SQL}) AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until <= $3){filter} \
             ORDER BY next_attempt_at, id LIMIT $4{lock}) \
             RETURNING {DELIVERY_COLUMNS}",
            lock = self.skip_locked(),
        ));
        // A lease lost in a power cut is a delivery claimed again: no fsync awaited.
        let mut claimed = rows(
            self.write_committed(Returning(filter_sql)).await?,
            delivery_from_row,
        )?;
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
        let sql = Sql::new(format!(
            "WITH RECURSIVE orgs (org_id) AS ( \
               SELECT MIN(org_id) FROM deliveries WHERE state = 'PENDING' AND mode IN ($1, {OTHER_PUSHED_MODES_SQL}) \
               UNION ALL \
               SELECT (SELECT MIN(d.org_id) FROM deliveries d \
                       WHERE d.state = 'PENDING' AND d.mode IN ($1, {OTHER_PUSHED_MODES_SQL}) AND d.org_id > orgs.org_id) \
               FROM orgs WHERE orgs.org_id IS NOT NULL \
             ) SELECT org_id FROM orgs WHERE org_id IS NOT NULL",
        ))
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
        // One ordered index range per pushed mode (`deliveries_due_by_org` leads with the
        // mode): with `mode IN (…)` the index cannot give rows in order, and PostgreSQL
        // sorted the organization's whole backlog for every claim. The destination is
        // read from the request only for the rows kept.
        let modes: Vec<&str> = std::iter::once("$1")
            .chain(OTHER_PUSHED_MODES_SQL.split(", "))
            .collect();
        for (i, org) in orgs.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql = sql.bind(org);
            let org_arg = sql.arg_count();
            sql = sql.bind(i64::from(limits.lookahead(org)));
            let limit_arg = sql.arg_count();
            sql.push(&format!(
                "SELECT id, org_id, next_attempt_at, {url} AS url FROM ("
            ));
            for (m, mode) in modes.iter().enumerate() {
                if m > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push(&format!(
                    "SELECT * FROM (SELECT id, org_id, next_attempt_at, request FROM deliveries \
                     WHERE state = 'PENDING' AND mode = {mode} AND org_id = ${org_arg} \
                     AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
                     ORDER BY next_attempt_at, id LIMIT ${limit_arg}) AS due_{i}_{m}"
                ));
            }
            sql.push(&format!(
                " ORDER BY next_attempt_at, id LIMIT ${limit_arg}) AS due_{i}"
            ));
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
        let (count, insert) = attempt_statements(attempt);
        self.write_committed(RecordAttempt {
            count,
            insert,
            finish: None,
            delivery: attempt.delivery_id.clone(),
            number: attempt.number,
        })
        .await
    }

    async fn record_final_attempt(
        &self,
        attempt: &DeliveryAttempt,
        state: DeliveryState,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (count, insert) = attempt_statements(attempt);
        self.write_committed(RecordAttempt {
            count,
            insert,
            finish: Some(finish_statement(&attempt.delivery_id, state, now)),
            delivery: attempt.delivery_id.clone(),
            number: attempt.number,
        })
        .await
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
        if self.write_one_committed(sql).await? == 0 {
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
        if self
            .write_one_committed(finish_statement(id, state, now))
            .await?
            == 0
        {
            return Err(StoreError::Other(format!("delivery {id} does not exist")));
        }
        Ok(())
    }

    async fn release_leases(&self, owner: &str, now: Timestamp) -> StoreResult<u64> {
        let sql = Sql::new(format!(
            "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, updated_at = $2 \
             WHERE lease_owner = $1 AND state = 'PENDING' AND mode IN ($3, {OTHER_PUSHED_MODES_SQL})",
        ))
        .bind(owner)
        .bind(now)
        .bind(DeliveryMode::Webhook.as_str());
        self.write_one_committed(sql).await
    }

    async fn next_due_after(&self, after: Timestamp) -> StoreResult<Option<Timestamp>> {
        let sql = Sql::new(format!(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries \
             WHERE state = 'PENDING' AND mode IN ($1, {OTHER_PUSHED_MODES_SQL}) AND next_attempt_at > $2",
        ))
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
            "SELECT id FROM deliveries WHERE org_id = $1 AND run_id = $2 AND mode <> 'APPROVAL_NOTIFICATION' \
             ORDER BY created_at DESC, id DESC LIMIT 1{}",
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
        let acks = runs
            .iter()
            .map(|run| {
                Sql::new(
                    "UPDATE deliveries SET state = $4, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                     WHERE org_id = $1 AND run_id = $2 AND mode = $5 AND state = 'PENDING'",
                )
                .bind(org)
                .bind(run)
                .bind(now)
                .bind(DeliveryState::Delivered.as_str())
                .bind(DeliveryMode::Agent.as_str())
            })
            .collect();
        self.write(Statements(acks)).await
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
        Ok(self.write_one(sql).await? > 0)
    }
}

/// The statement that ends a delivery in `state` and releases its lease.
fn finish_statement(id: &DeliveryId, state: DeliveryState, now: Timestamp) -> Sql {
    Sql::new(
        "UPDATE deliveries SET state = $2, lease_owner = NULL, lease_until = NULL, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(now)
}

/// The statements that count an attempt on its delivery and record it.
fn attempt_statements(attempt: &DeliveryAttempt) -> (Sql, Sql) {
    let count = Sql::new(
        "UPDATE deliveries SET attempts = attempts + 1, updated_at = $2 WHERE id = $1 AND org_id = $3 AND run_id = $4",
    )
    .bind(&attempt.delivery_id)
    .bind(attempt.ended_at)
    .bind(&attempt.org_id)
    .bind(&attempt.run_id);
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
    (count, insert)
}

/// An attempt and its count on the delivery, together, and the delivery's end when the
/// attempt ends it.
struct RecordAttempt {
    count: Sql,
    insert: Sql,
    finish: Option<Sql>,
    delivery: DeliveryId,
    number: u32,
}

impl WriteJob for RecordAttempt {
    type Output = ();

    async fn run(&self, conn: &mut Conn<'_>) -> StoreResult<()> {
        if conn.execute(&self.count).await? == 0 {
            return Err(StoreError::Other(format!(
                "delivery {} does not exist",
                self.delivery
            )));
        }
        conn.execute(&self.insert).await.map_err(taken(|| {
            format!("attempt {} of delivery {}", self.number, self.delivery)
        }))?;
        if let Some(finish) = &self.finish {
            conn.execute(finish).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use port_core::ports::DeliveryMode;

    use super::OTHER_PUSHED_MODES_SQL;

    /// The worker's queries bind [`DeliveryMode::Webhook`] and list the other pushed
    /// modes: a mode added to [`DeliveryMode::PUSHED`] and not to the SQL fails here.
    #[test]
    fn pushed_modes_sql_lists_exactly_the_pushed_modes() {
        let listed: Vec<DeliveryMode> = OTHER_PUSHED_MODES_SQL
            .split(',')
            .map(|literal| {
                let text = literal
                    .trim()
                    .strip_prefix('\'')
                    .and_then(|t| t.strip_suffix('\''))
                    .unwrap_or_else(|| panic!("not a quoted literal: {literal:?}"));
                DeliveryMode::parse(text).unwrap_or_else(|| panic!("not a mode: {text:?}"))
            })
            .collect();
        let mut all = vec![DeliveryMode::Webhook];
        all.extend(listed);
        let mut pushed = DeliveryMode::PUSHED.to_vec();
        let key = |m: &DeliveryMode| m.as_str();
        all.sort_by_key(key);
        pushed.sort_by_key(key);
        assert_eq!(
            all, pushed,
            "{OTHER_PUSHED_MODES_SQL} and DeliveryMode::PUSHED"
        );
        assert!(all.iter().all(|m| m.is_pushed()));
    }
}
