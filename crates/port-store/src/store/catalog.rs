//! The catalog's ports: blueprints (deleted with their entities, timers, blueprint-bound
//! actions and the entities' change events), entities (with their run bindings, events
//! and timers, in the transaction of the write) and actions.

use async_trait::async_trait;
use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::catalog::{AffectedEntity, Blueprint, Entity, EntityOperation, Stamp};
use port_core::error::StoreError;
use port_core::event::NewChangeEvent;
use port_core::id::{ActionIdentifier, BlueprintIdentifier, EntityIdentifier, OrgId, RunId};
use port_core::ports::{
    ActionStore, BlueprintStore, EntityDeletion, EntityScan, EntityStore, EntityWriteMode,
    ScannedEntities, StoreResult,
};
use port_core::time::Timestamp;
use serde_json::Value;

use crate::codec;
use crate::db::{Conn, Row, Sql, taken};
use crate::events::{depth_of, insert_event, schedule_timers};

use super::{SqlStore, parse_col, rows};

const ENTITY_COLUMNS: &str =
    "org_id, blueprint, identifier, document, created_at, created_by, updated_at, updated_by";
const BLUEPRINT_COLUMNS: &str =
    "org_id, identifier, title, definition, created_at, created_by, updated_at, updated_by";
const ACTION_COLUMNS: &str =
    "action_id, definition, created_at, created_by, updated_at, updated_by";
const AFFECTED_COLUMNS: &str =
    "org_id, run_id, blueprint, entity, operation, at, by_user, snapshot";

fn stamp_from_row(row: &Row) -> StoreResult<Stamp> {
    Ok(Stamp {
        created_at: row.timestamp("created_at")?,
        created_by: row.text("created_by")?,
        updated_at: row.timestamp("updated_at")?,
        updated_by: row.text("updated_by")?,
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
        self.write_one(sql)
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
        if self.write_one(sql).await? == 0 {
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

    async fn delete_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
        by: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        // RETURNING gives the deleted entities, their change events' `before`.
        let sql = Sql::new(format!(
            "DELETE FROM entities WHERE org_id = $1 AND blueprint = $2 RETURNING {ENTITY_COLUMNS}"
        ))
        .bind(org)
        .bind(id);
        let mut deleted = rows(conn.fetch_all(&sql).await?, entity_from_row)?;
        deleted.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        for before in &deleted {
            let mut event = NewChangeEvent::of_entity(Some(before), None, 0, at);
            if let Some(event) = &mut event {
                // The stored entity names its last writer; the deletion is the deleter's.
                event.by = by.to_owned();
            }
            insert_event(&mut conn, event.as_ref()).await?;
        }
        conn.execute(
            &Sql::new("DELETE FROM timers WHERE org_id = $1 AND blueprint = $2")
                .bind(org)
                .bind(id),
        )
        .await?;
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
        self.write_one(sql)
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
        if self.write_one(sql).await? == 0 {
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
        Ok(self.write_one(sql).await? > 0)
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
