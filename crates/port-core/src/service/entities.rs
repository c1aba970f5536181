//! The catalog's entity use cases (port-api.md §3.3): writes (create, upsert, merge,
//! replace, bulk) checked against their blueprint, reads, searches, deletes with their
//! dependents, and the binding of each change to a run (§3.4). The routes only parse
//! and render; every entity write of portd (HTTP, automations, `UPSERT_ENTITY`) comes
//! through [`Services::write_entity`], so each records its change event and keeps its
//! timers the same way.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::{Caller, Services};
use crate::catalog::{AffectedEntity, Blueprint, Entity, EntityOperation, Stamp};
use crate::catalog_rules::{EntityBody, RelationTarget, check_entity, parse_entity_body};
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::{BlueprintIdentifier, EntityIdentifier, GeneratedEntityId};
use crate::ports::{EntityDeletion, EntityKey, EntityWriteMode};
use crate::run::Run;
use crate::search::{
    EntityQuery, Matcher, Scope, SearchLimits, SearchPage, SearchRequest, scan_within,
};
use crate::timer::timer_properties;

/// Most entities one bulk request may carry.
pub const MAX_BULK_ENTITIES: usize = 20;

/// Most entities a delete with `delete_dependents` removes, so one call stays bounded.
pub const MAX_CASCADE: usize = 1000;

/// How a write treats an existing entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityWriteKind {
    /// `POST`: create, or with `upsert` replace (or with `merge` merge) an existing one.
    Create { upsert: bool, merge: bool },
    /// `PUT`: replace an existing entity.
    Replace,
    /// `PATCH`: merge into an existing entity.
    Merge,
}

/// The flags of an entity write.
#[derive(Debug, Clone)]
pub struct EntityWriteOptions {
    pub kind: EntityWriteKind,
    /// Check everything, write nothing.
    pub validation_only: bool,
    /// Create related entities that do not exist, empty.
    pub create_missing_related: bool,
    /// The run the change is bound to (`run_id`); it must be `IN_PROGRESS`.
    pub run_id: Option<String>,
}

/// An entity written, and whether the write created it.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityWritten {
    pub entity: Entity,
    pub created: bool,
}

fn entity_not_found(blueprint: &BlueprintIdentifier, identifier: &str) -> PortError {
    PortError::not_found(format!("entity {identifier} of blueprint {blueprint}"))
}

fn related_not_found(target: &RelationTarget) -> PortError {
    PortError::not_found(format!(
        "related entity {} of blueprint {} (relation {})",
        target.identifier, target.blueprint, target.relation
    ))
}

fn identifier_taken(identifier: &EntityIdentifier, blueprint: &BlueprintIdentifier) -> PortError {
    PortError::new(
        ErrorKind::IdentifierTaken,
        format!("entity {identifier} of blueprint {blueprint} already exists"),
    )
}

impl Services {
    /// The caller's blueprint `identifier` (404 when it does not exist or is no
    /// identifier at all).
    pub async fn blueprint_of(
        &self,
        caller: &Caller,
        identifier: &str,
    ) -> Result<Blueprint, PortError> {
        let not_found = || PortError::not_found(format!("blueprint {identifier}"));
        let id = BlueprintIdentifier::parse(identifier).map_err(|_| not_found())?;
        self.store
            .get_blueprint(&caller.org_id, &id)
            .await?
            .ok_or_else(not_found)
    }

    async fn bound_run(
        &self,
        caller: &Caller,
        run_id: Option<&str>,
    ) -> Result<Option<Run>, PortError> {
        match run_id {
            Some(id) => Ok(Some(self.bindable_run(caller, id).await?)),
            None => Ok(None),
        }
    }

    /// Writes one entity (`body`, Port's entity JSON) of `blueprint` as `options` say;
    /// `path_identifier` is the identifier of a `PUT`/`PATCH` path.
    pub async fn write_entity(
        &self,
        caller: &Caller,
        blueprint: &str,
        body: &Value,
        path_identifier: Option<&str>,
        options: &EntityWriteOptions,
    ) -> Result<EntityWritten, PortError> {
        caller.require_admin("write entities")?;
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        let run = self.bound_run(caller, options.run_id.as_deref()).await?;
        let body = parse_entity_body(body, &blueprint.identifier)?;
        self.write_one(
            caller,
            &blueprint,
            body,
            path_identifier,
            options,
            run.as_ref(),
        )
        .await
    }

    /// `POST …/entities/bulk`: each of `bodies` written like [`Self::write_entity`],
    /// each with its own outcome, in order.
    pub async fn write_entities(
        &self,
        caller: &Caller,
        blueprint: &str,
        bodies: &[Value],
        options: &EntityWriteOptions,
    ) -> Result<Vec<Result<EntityWritten, PortError>>, PortError> {
        caller.require_admin("write entities")?;
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        if bodies.is_empty() || bodies.len() > MAX_BULK_ENTITIES {
            return Err(PortError::invalid(format!(
                "entities: must hold 1 to {MAX_BULK_ENTITIES} entities"
            )));
        }
        let run = self.bound_run(caller, options.run_id.as_deref()).await?;
        let mut outcomes = Vec::with_capacity(bodies.len());
        for raw in bodies {
            let outcome = match parse_entity_body(raw, &blueprint.identifier) {
                Ok(body) => {
                    self.write_one(caller, &blueprint, body, None, options, run.as_ref())
                        .await
                }
                Err(e) => Err(e),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn write_one(
        &self,
        caller: &Caller,
        blueprint: &Blueprint,
        body: EntityBody,
        path_identifier: Option<&str>,
        options: &EntityWriteOptions,
        run: Option<&Run>,
    ) -> Result<EntityWritten, PortError> {
        let org = &caller.org_id;
        let identifier = match (path_identifier, &body.identifier) {
            (Some(path), Some(given)) if given.as_str() != path => {
                return Err(PortError::invalid(format!(
                    "identifier: must be {path}, the identifier in the path"
                )));
            }
            (Some(path), _) => EntityIdentifier::parse(path)
                .map_err(|_| entity_not_found(&blueprint.identifier, path))?,
            (None, Some(given)) => given.clone(),
            (None, None) => EntityIdentifier::from(self.ids.next::<GeneratedEntityId>()),
        };
        let existing = self
            .store
            .get_entity(org, &blueprint.identifier, &identifier)
            .await?;
        let now = self.now();
        let user = caller.user_id().to_owned();
        let mut entity = Entity {
            org_id: org.clone(),
            blueprint: blueprint.identifier.clone(),
            identifier: identifier.clone(),
            title: None,
            icon: None,
            team: None,
            properties: Map::new(),
            relations: Map::new(),
            stamp: Stamp {
                created_at: now,
                created_by: user.clone(),
                updated_at: now,
                updated_by: user,
            },
        };
        let merge = match (options.kind, &existing) {
            (EntityWriteKind::Create { upsert: false, .. }, Some(_)) => {
                return Err(identifier_taken(&identifier, &blueprint.identifier));
            }
            (EntityWriteKind::Replace | EntityWriteKind::Merge, None) => {
                return Err(entity_not_found(&blueprint.identifier, identifier.as_str()));
            }
            (EntityWriteKind::Create { merge, .. }, _) => merge,
            (EntityWriteKind::Replace, _) => false,
            (EntityWriteKind::Merge, _) => true,
        };
        if let Some(existing) = &existing {
            entity.stamp.created_at = existing.stamp.created_at;
            entity.stamp.created_by = existing.stamp.created_by.clone();
            if merge {
                entity.title = existing.title.clone();
                entity.icon = existing.icon.clone();
                entity.team = existing.team.clone();
                entity.properties = existing.properties.clone();
                entity.relations = existing.relations.clone();
            }
        }
        if merge {
            body.merge_into(&mut entity);
        } else {
            body.replace_into(&mut entity);
        }

        let targets = check_entity(blueprint, &entity)?;
        let created = existing.is_none();
        for target in &targets {
            let exists = self
                .store
                .get_entity(org, &target.blueprint, &target.identifier)
                .await?
                .is_some();
            if exists {
                continue;
            }
            if !options.create_missing_related {
                return Err(related_not_found(target));
            }
            if !options.validation_only {
                self.create_stub(caller, target).await?;
            }
        }
        if options.validation_only {
            return Ok(EntityWritten { entity, created });
        }

        let affected = run.map(|run| {
            let operation = if created {
                EntityOperation::Create
            } else {
                EntityOperation::Update
            };
            self.affected(caller, run, &entity, operation)
        });
        let mode =
            if created && matches!(options.kind, EntityWriteKind::Create { upsert: false, .. }) {
                EntityWriteMode::CreateOnly
            } else {
                EntityWriteMode::Upsert
            };
        let timers = timer_properties(blueprint);
        let created = self
            .store
            .put_entity(&entity, mode, affected.as_ref(), &timers)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists(_) => {
                    identifier_taken(&identifier, &blueprint.identifier)
                }
                other => other.into(),
            })
            .map_err(PortError::on_entity_route)?;
        Ok(EntityWritten { entity, created })
    }

    /// `create_missing_related_entities`: a related entity that does not exist is
    /// created empty (its blueprint must exist).
    async fn create_stub(&self, caller: &Caller, target: &RelationTarget) -> Result<(), PortError> {
        let org = &caller.org_id;
        let Some(blueprint) = self.store.get_blueprint(org, &target.blueprint).await? else {
            return Err(PortError::not_found(format!(
                "blueprint {} (target of relation {})",
                target.blueprint, target.relation
            )));
        };
        let now = self.now();
        let stub = Entity {
            org_id: org.clone(),
            blueprint: target.blueprint.clone(),
            identifier: target.identifier.clone(),
            title: None,
            icon: None,
            team: None,
            properties: Map::new(),
            relations: Map::new(),
            stamp: Stamp {
                created_at: now,
                created_by: caller.user_id().to_owned(),
                updated_at: now,
                updated_by: caller.user_id().to_owned(),
            },
        };
        let timers = timer_properties(&blueprint);
        match self
            .store
            .put_entity(&stub, EntityWriteMode::CreateOnly, None, &timers)
            .await
        {
            // Someone else created it meanwhile: that is what was wanted.
            Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// One entity of the caller's blueprint.
    pub async fn entity(
        &self,
        caller: &Caller,
        blueprint: &str,
        identifier: &str,
    ) -> Result<Entity, PortError> {
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        let not_found = || entity_not_found(&blueprint.identifier, identifier);
        let id = EntityIdentifier::parse(identifier).map_err(|_| not_found())?;
        self.store
            .get_entity(&caller.org_id, &blueprint.identifier, &id)
            .await?
            .ok_or_else(not_found)
    }

    /// Every entity of the caller's blueprint, read a bounded page at a time: a
    /// blueprint too large to list in one answer is refused (`search_too_broad`;
    /// search pages through it) instead of loaded whole.
    pub async fn entities(
        &self,
        caller: &Caller,
        blueprint: &str,
    ) -> Result<Vec<Entity>, PortError> {
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        let mut entities = Vec::new();
        scan_within(
            self.store.as_ref(),
            &caller.org_id,
            BTreeSet::from([blueprint.identifier]),
            &SearchLimits::default(),
            |entity| entities.push(entity),
        )
        .await?;
        Ok(entities)
    }

    /// Entities of other blueprints whose relations point at `entity`.
    async fn dependents_of(
        &self,
        caller: &Caller,
        entity: &Entity,
    ) -> Result<Vec<Entity>, PortError> {
        let org = &caller.org_id;
        // Which relation keys of which blueprints point at the entity's blueprint.
        let mut keys_of: BTreeMap<BlueprintIdentifier, Vec<String>> = BTreeMap::new();
        for blueprint in self.store.list_blueprints(org).await? {
            let keys: Vec<String> = blueprint
                .definition
                .get("relations")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, r)| {
                    r.get("target").and_then(Value::as_str) == Some(entity.blueprint.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect();
            if !keys.is_empty() {
                keys_of.insert(blueprint.identifier, keys);
            }
        }
        let mut found = Vec::new();
        if keys_of.is_empty() {
            return Ok(found);
        }
        let target = entity.identifier.as_str();
        // Paged and bounded like a search: a catalog too large to check is refused.
        scan_within(
            self.store.as_ref(),
            org,
            keys_of.keys().cloned().collect(),
            &SearchLimits::default(),
            |candidate| {
                let keys = keys_of
                    .get(&candidate.blueprint)
                    .map_or(&[][..], Vec::as_slice);
                let points_here = keys.iter().any(|key| match candidate.relations.get(key) {
                    Some(Value::String(s)) => s == target,
                    Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(target)),
                    _ => false,
                });
                if points_here {
                    found.push(candidate);
                }
            },
        )
        .await?;
        Ok(found)
    }

    /// Deletes an entity; with `delete_dependents` also the entities whose relations
    /// point at it (depth first, at most [`MAX_CASCADE`]), else refuses
    /// (`has_dependents`) while any does. Each deletion is bound to `run_id` when given.
    pub async fn delete_entity(
        &self,
        caller: &Caller,
        blueprint: &str,
        identifier: &str,
        delete_dependents: bool,
        run_id: Option<&str>,
    ) -> Result<(), PortError> {
        caller.require_admin("delete entities")?;
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        let run = self.bound_run(caller, run_id).await?;
        let not_found = || entity_not_found(&blueprint.identifier, identifier);
        let id = EntityIdentifier::parse(identifier).map_err(|_| not_found())?;
        let org = &caller.org_id;
        let entity = self
            .store
            .get_entity(org, &blueprint.identifier, &id)
            .await?
            .ok_or_else(not_found)?;

        // Dependents first (depth first), so no entity is left pointing at a deleted one.
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![entity];
        while let Some(current) = stack.pop() {
            if !seen.insert((current.blueprint.clone(), current.identifier.clone())) {
                continue;
            }
            let dependents = self.dependents_of(caller, &current).await?;
            if !dependents.is_empty() && !delete_dependents {
                let names: Vec<String> = dependents
                    .iter()
                    .map(|d| format!("{}/{}", d.blueprint, d.identifier))
                    .collect();
                return Err(PortError::new(
                    ErrorKind::HasDependents,
                    format!(
                        "entity {} has dependents ({}); pass delete_dependents=true to delete them too",
                        current.identifier,
                        names.join(", ")
                    ),
                ));
            }
            order.push(current);
            if order.len() > MAX_CASCADE {
                return Err(PortError::invalid(format!(
                    "the delete would remove more than {MAX_CASCADE} entities"
                )));
            }
            stack.extend(dependents);
        }
        for entity in order.iter().rev() {
            let affected: Option<AffectedEntity> = run
                .as_ref()
                .map(|run| self.affected(caller, run, entity, EntityOperation::Delete));
            let deletion = EntityDeletion {
                by: caller.user_id(),
                at: self.now(),
                affected: affected.as_ref(),
            };
            self.store
                .delete_entity(org, &entity.blueprint, &entity.identifier, &deletion)
                .await?;
        }
        Ok(())
    }

    /// One page of a search over the caller's catalog, within the default budget. CPU
    /// work in bursts: servers run it off their async workers.
    pub async fn search_entities(
        &self,
        caller: &Caller,
        query: &EntityQuery,
        scope: Scope,
        after: Option<EntityKey>,
        limit: usize,
    ) -> Result<SearchPage, PortError> {
        let store = self.store.as_ref();
        let matcher = Matcher::resolve(query, store, &caller.org_id, self.now()).await?;
        crate::search::search(
            store,
            SearchRequest {
                org: &caller.org_id,
                matcher: &matcher,
                scope,
                after,
                limit,
            },
            SearchLimits::default(),
        )
        .await
    }

    /// The entity changes bound to a run, oldest first (`GET /v1/audit-log?run_id=`).
    pub async fn run_audit(
        &self,
        caller: &Caller,
        run_id: &str,
    ) -> Result<Vec<AffectedEntity>, PortError> {
        let run = self.get_run(caller, run_id).await?;
        Ok(self
            .store
            .affected_entities(&caller.org_id, &run.id)
            .await?)
    }
}
