//! Blueprints: creating, reading, replacing, patching and deleting the caller's
//! blueprints (`/v1/blueprints…`). What a definition may hold is
//! [`crate::catalog_rules`]'s to say; here it is loaded, stamped and stored. One
//! blueprint is read with [`Services::blueprint_of`] (404 when there is none).

use serde_json::{Value, json};

use super::{Caller, Services};
use crate::catalog::{Blueprint, Stamp};
use crate::catalog_rules::{check_blueprint_definition, merge_blueprint, parse_blueprint};
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::BlueprintIdentifier;

/// A body naming another identifier than its path's is refused (422).
fn check_path_identifier(body: &Value, identifier: &BlueprintIdentifier) -> Result<(), PortError> {
    match body.get("identifier") {
        None => Ok(()),
        Some(Value::String(s)) if s == identifier.as_str() => Ok(()),
        Some(_) => Err(PortError::invalid(format!(
            "identifier: must be {identifier}, the identifier in the path"
        ))),
    }
}

impl Services {
    /// The caller's blueprints.
    pub async fn list_blueprints(&self, caller: &Caller) -> Result<Vec<Blueprint>, PortError> {
        Ok(self.store.list_blueprints(&caller.org_id).await?)
    }

    /// Creates a blueprint from its definition (`POST /v1/blueprints`); 409
    /// `identifier_taken` when the caller already has one with that identifier.
    pub async fn create_blueprint(
        &self,
        caller: &Caller,
        body: &Value,
    ) -> Result<Blueprint, PortError> {
        caller.require_admin("create blueprints")?;
        let parsed = parse_blueprint(body)?;
        let now = self.now();
        let blueprint = Blueprint {
            org_id: caller.org_id.clone(),
            identifier: parsed.identifier,
            title: parsed.title,
            definition: parsed.definition,
            stamp: Stamp {
                created_at: now,
                created_by: caller.user_id().to_owned(),
                updated_at: now,
                updated_by: caller.user_id().to_owned(),
            },
        };
        self.store
            .create_blueprint(&blueprint)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists(_) => PortError::new(
                    ErrorKind::IdentifierTaken,
                    format!(
                        "a blueprint with identifier {} already exists",
                        blueprint.identifier
                    ),
                ),
                other => other.into(),
            })?;
        Ok(blueprint)
    }

    /// Replaces a blueprint's definition (`PUT`); its creation stamp stays.
    pub async fn replace_blueprint(
        &self,
        caller: &Caller,
        identifier: &str,
        body: Value,
    ) -> Result<Blueprint, PortError> {
        caller.require_admin("change blueprints")?;
        let mut blueprint = self.blueprint_of(caller, identifier).await?;
        check_path_identifier(&body, &blueprint.identifier)?;
        let mut with_identifier = body;
        if let Value::Object(map) = &mut with_identifier {
            map.insert("identifier".into(), json!(blueprint.identifier));
        }
        let parsed = parse_blueprint(&with_identifier)?;
        blueprint.title = parsed.title;
        blueprint.definition = parsed.definition;
        self.save_blueprint(caller, blueprint).await
    }

    /// Merges the given keys into a blueprint (`PATCH`; see [`merge_blueprint`]).
    pub async fn patch_blueprint(
        &self,
        caller: &Caller,
        identifier: &str,
        body: Value,
    ) -> Result<Blueprint, PortError> {
        caller.require_admin("change blueprints")?;
        let mut blueprint = self.blueprint_of(caller, identifier).await?;
        check_path_identifier(&body, &blueprint.identifier)?;
        let Value::Object(changes) = body else {
            return Err(PortError::invalid("body: must be an object"));
        };
        let definition = merge_blueprint(&blueprint.definition, &changes);
        blueprint.title = check_blueprint_definition(&definition)?;
        blueprint.definition = definition;
        self.save_blueprint(caller, blueprint).await
    }

    /// Deletes a blueprint with its entities and actions.
    pub async fn delete_blueprint(
        &self,
        caller: &Caller,
        identifier: &str,
    ) -> Result<(), PortError> {
        caller.require_admin("delete blueprints")?;
        let blueprint = self.blueprint_of(caller, identifier).await?;
        self.store
            .delete_blueprint(
                &caller.org_id,
                &blueprint.identifier,
                caller.user_id(),
                self.now(),
            )
            .await?;
        Ok(())
    }

    async fn save_blueprint(
        &self,
        caller: &Caller,
        mut blueprint: Blueprint,
    ) -> Result<Blueprint, PortError> {
        blueprint.stamp.updated_at = self.now();
        blueprint.stamp.updated_by = caller.user_id().to_owned();
        self.store.update_blueprint(&blueprint).await?;
        Ok(blueprint)
    }
}
