//! The event outbox: the change events the entity and run writes record in their own
//! transactions ([`insert_event`]), and the [`EventStore`] that leases them to whoever
//! reacts to them and deletes them once handled.

use async_trait::async_trait;
use port_core::catalog::{AffectedEntity, Entity};
use port_core::error::StoreError;
use port_core::event::{ChangeEvent, ChangeKind, NewChangeEvent, ResourceType};
use port_core::id::{BlueprintIdentifier, EntityIdentifier, OrgId};
use port_core::ports::{EventStore, StoreResult};
use port_core::time::Timestamp;
use port_core::timer::{TimerChange, changes};

use crate::codec;
use crate::db::{Conn, Row, Sql, from_i64, to_i64};
use crate::store::{Returning, SqlStore, Statements, parse_col, read_entity};

const EVENT_COLUMNS: &str =
    "seq, org_id, resource_type, kind, scope, subject, property, before, after, by_user, depth, at";

/// Events one statement completes: its bound parameters grow with them.
const SEQS_PER_STATEMENT: usize = 500;

/// Organizations whose oldest events one statement reads.
const ORGS_PER_QUERY: usize = 32;

impl SqlStore {
    /// Every organization with an armed timer (`timers_by_org`).
    async fn organizations_with_timers(&self) -> StoreResult<Vec<OrgId>> {
        self.distinct_orgs("timers").await
    }

    /// Every organization with an event in the outbox (`events_by_org`).
    async fn organizations_with_events(&self) -> StoreResult<Vec<OrgId>> {
        self.distinct_orgs("events").await
    }

    /// The organizations with a row in `table`, by a skip scan of its index led by
    /// `org_id`: one index probe per organization.
    async fn distinct_orgs(&self, table: &'static str) -> StoreResult<Vec<OrgId>> {
        let sql = Sql::new(format!(
            "WITH RECURSIVE orgs (org_id) AS ( \
               SELECT MIN(org_id) FROM {table} \
               UNION ALL \
               SELECT (SELECT MIN(t.org_id) FROM {table} t WHERE t.org_id > orgs.org_id) \
               FROM orgs WHERE orgs.org_id IS NOT NULL \
             ) SELECT org_id FROM orgs WHERE org_id IS NOT NULL"
        ));
        self.read_all(&sql)
            .await?
            .iter()
            .map(|row| parse_col(row, "org_id"))
            .collect()
    }
}

/// Records `event`, when there is one, in the transaction of `conn`.
pub(crate) async fn insert_event(
    conn: &mut Conn<'_>,
    event: Option<&NewChangeEvent>,
) -> StoreResult<()> {
    let Some(e) = event else {
        return Ok(());
    };
    conn.execute(&event_insert(e)).await?;
    Ok(())
}

/// The statement that records `e`.
pub(crate) fn event_insert(e: &NewChangeEvent) -> Sql {
    Sql::new(
        "INSERT INTO events (org_id, resource_type, kind, scope, subject, property, before, after, by_user, depth, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&e.org_id)
    .bind(e.resource.as_str())
    .bind(e.kind.as_str())
    .bind(&e.scope)
    .bind(&e.subject)
    .bind(e.timer.as_deref())
    .bind(e.before.as_ref().map(ToString::to_string))
    .bind(e.after.as_ref().map(ToString::to_string))
    .bind(&e.by)
    .bind(i64::from(e.depth))
    .bind(e.at)
}

/// The chain depth of the run an entity write is bound to: 0 without one (or when the
/// run is not stored, as the in-memory store answers).
pub(crate) async fn depth_of(
    conn: &mut Conn<'_>,
    affected: Option<&AffectedEntity>,
) -> StoreResult<u32> {
    let Some(a) = affected else {
        return Ok(0);
    };
    let sql = Sql::new("SELECT chain_depth FROM runs WHERE org_id = $1 AND id = $2")
        .bind(&a.org_id)
        .bind(&a.run_id);
    match conn.fetch_optional(&sql).await? {
        Some(row) => from_i64(row.i64("chain_depth")?, "chain_depth"),
        None => Ok(0),
    }
}

fn event_from_row(row: &Row) -> StoreResult<ChangeEvent> {
    let invalid = |c: &str| StoreError::Other(format!("column {c} holds an invalid value"));
    let json = |column: &str| {
        row.opt_text(column)?
            .map(|text| codec::json_from_text(&text, "event"))
            .transpose()
    };
    Ok(ChangeEvent {
        seq: from_i64(row.i64("seq")?, "seq")?,
        change: NewChangeEvent {
            org_id: parse_col(row, "org_id")?,
            resource: ResourceType::parse(&row.text("resource_type")?)
                .ok_or_else(|| invalid("resource_type"))?,
            kind: ChangeKind::parse(&row.text("kind")?).ok_or_else(|| invalid("kind"))?,
            scope: row.text("scope")?,
            subject: row.text("subject")?,
            timer: row.opt_text("property")?,
            before: json("before")?,
            after: json("after")?,
            by: row.text("by_user")?,
            depth: from_i64(row.i64("depth")?, "depth")?,
            at: row.timestamp("at")?,
        },
    })
}

#[async_trait]
impl EventStore for SqlStore {
    async fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        per_org: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        if limit == 0 || per_org == 0 {
            return Ok(Vec::new());
        }
        // Read each organization's oldest claimable events (a bounded index range per
        // organization, however long any backlog), keep the oldest `limit` of them, then
        // lease exactly those that are still claimable: the UPDATE checks the condition
        // again on the row it locks, so two claimers (replicas) never lease one event.
        let mut candidates = Vec::new();
        for orgs in self
            .organizations_with_events()
            .await?
            .chunks(ORGS_PER_QUERY)
        {
            let mut sql = Sql::new("").bind(owner).bind(now);
            for (i, org) in orgs.iter().enumerate() {
                if i > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push("SELECT * FROM (SELECT seq FROM events WHERE org_id = ");
                sql.push_bind(org);
                sql.push(
                    " AND (lease_until IS NULL OR lease_until <= $2 OR lease_owner = $1) \
                     ORDER BY seq LIMIT ",
                );
                sql.push_bind(i64::from(per_org));
                sql.push(&format!(") AS org_{i}"));
            }
            for row in self.read_all(&sql).await? {
                candidates.push(row.i64("seq")?);
            }
        }
        candidates.sort_unstable();
        candidates.truncate(limit as usize);
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            "UPDATE events SET lease_owner = $1, lease_until = $2 \
             WHERE (lease_until IS NULL OR lease_until <= $3 OR lease_owner = $1) AND seq IN (",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now);
        for (i, seq) in candidates.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push_bind(*seq);
        }
        sql.push(&format!(") RETURNING {EVENT_COLUMNS}"));
        // A lease lost in a power cut is an event claimed again.
        let rows = self.write_committed(Returning(sql)).await?;
        let mut claimed = rows
            .iter()
            .map(event_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING follows no ORDER BY.
        claimed.sort_by_key(|e| e.seq);
        Ok(claimed)
    }

    async fn complete_events(&self, owner: &str, seqs: &[u64]) -> StoreResult<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let deletes = seqs
            .chunks(SEQS_PER_STATEMENT)
            .map(|chunk| {
                let mut sql = Sql::new("DELETE FROM events WHERE lease_owner = ");
                sql.push_bind(owner).push(" AND seq IN (");
                for (i, seq) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push_bind(to_i64(*seq));
                }
                sql.push(")");
                sql
            })
            .collect();
        // An event that comes back after a power cut runs its automations again under
        // the same idempotency keys: no fsync awaited.
        self.write_committed(Statements(deletes)).await
    }

    async fn fire_due_timers(&self, now: Timestamp, limit: u32) -> StoreResult<u32> {
        if limit == 0 {
            return Ok(0);
        }
        // The worker asks at every poll and nothing is due most of the time: one probe
        // of `timers_due` answers that before any per-organization work.
        let nothing_due = self
            .read_optional(
                &Sql::new("SELECT 1 AS due FROM timers WHERE expires_at <= $1 LIMIT 1").bind(now),
            )
            .await?
            .is_none();
        if nothing_due {
            return Ok(0);
        }
        // Each organization with timers gets an equal share of the batch (a bounded
        // index range each), the earliest of those fire: one organization's mass
        // expiry never holds another's timers back by more than a batch.
        let orgs = self.organizations_with_timers().await?;
        if orgs.is_empty() {
            return Ok(0);
        }
        let share = i64::try_from((limit as usize).div_ceil(orgs.len()).max(1)).unwrap_or(i64::MAX);
        let mut candidates = Vec::new();
        for chunk in orgs.chunks(ORGS_PER_QUERY) {
            let mut sql = Sql::new("").bind(now).bind(share);
            for (i, org) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push(
                    "SELECT * FROM (SELECT org_id, blueprint, entity, property, expires_at FROM timers \
                     WHERE org_id = ",
                );
                sql.push_bind(org);
                sql.push(&format!(
                    " AND expires_at <= $1 ORDER BY expires_at LIMIT $2) AS org_{i}"
                ));
            }
            for row in self.read_all(&sql).await? {
                candidates.push((
                    row.timestamp("expires_at")?,
                    parse_col::<OrgId>(&row, "org_id")?,
                    parse_col::<BlueprintIdentifier>(&row, "blueprint")?,
                    parse_col::<EntityIdentifier>(&row, "entity")?,
                    row.text("property")?,
                ));
            }
        }
        candidates.sort();
        candidates.truncate(limit as usize);
        // One transaction: each candidate's deletion, then its event. A timer whose row
        // is gone when the delete runs was fired by another firer (or disarmed): its
        // event is not recorded.
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let mut fired = 0;
        for (_, org, blueprint, identifier, property) in &candidates {
            let gone = Sql::new(
                "DELETE FROM timers WHERE org_id = $1 AND blueprint = $2 AND entity = $3 AND property = $4",
            )
            .bind(org)
            .bind(blueprint)
            .bind(identifier)
            .bind(property.as_str());
            if conn.execute(&gone).await? == 0 {
                continue;
            }
            let Some(entity) = read_entity(&mut conn, org, blueprint, identifier).await? else {
                continue;
            };
            let event = NewChangeEvent::timer_expired(&entity, property, now);
            insert_event(&mut conn, Some(&event)).await?;
            fired += 1;
        }
        tx.commit().await?;
        Ok(fired)
    }
    async fn next_timer(&self) -> StoreResult<Option<Timestamp>> {
        let row = self
            .read_optional(&Sql::new("SELECT MIN(expires_at) AS at FROM timers"))
            .await?;
        match row {
            Some(r) => r.opt_timestamp("at"),
            None => Ok(None),
        }
    }

    async fn pending_events(&self) -> StoreResult<u64> {
        let row = self
            .read_optional(&Sql::new("SELECT COUNT(*) AS n FROM events"))
            .await?;
        from_i64(row.map_or(Ok(0), |r| r.i64("n"))?, "count")
    }
}

/// Arms and disarms the timers of `entity` as writing it over `before` changes them.
pub(crate) async fn schedule_timers(
    conn: &mut Conn<'_>,
    timers: &[String],
    before: Option<&Entity>,
    entity: &Entity,
) -> StoreResult<()> {
    for change in changes(timers, before, entity) {
        let sql = match change {
            TimerChange::Arm {
                property,
                expires_at,
            } => Sql::new(
                "INSERT INTO timers (org_id, blueprint, entity, property, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, blueprint, entity, property) \
                 DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(&entity.org_id)
            .bind(&entity.blueprint)
            .bind(&entity.identifier)
            .bind(property)
            .bind(expires_at),
            TimerChange::Disarm { property } => Sql::new(
                "DELETE FROM timers WHERE org_id = $1 AND blueprint = $2 AND entity = $3 AND property = $4",
            )
            .bind(&entity.org_id)
            .bind(&entity.blueprint)
            .bind(&entity.identifier)
            .bind(property),
        };
        conn.execute(&sql).await?;
    }
    Ok(())
}
