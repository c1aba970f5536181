//! Actions: the v2 use cases (`/v1/actions…`) and the legacy blueprint-scoped v1 ones
//! (`/v1/blueprints/{bp}/actions…`), over one store of actions. Definitions are parsed
//! here, in the shape the route speaks, and checked before anything is stored: a
//! malformed `userInputs` is 422 `user_inputs_schema_invalid`, a trigger naming a
//! blueprint that does not exist 404.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{Caller, ExecuteRequest, Services};
use crate::access::AuditResource;
use crate::action::{Action, ActionDefinition, ActionMeta, Operation, Trigger};
use crate::catalog::Blueprint;
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::{ActionId, ActionIdentifier};
use crate::inputs::check_user_inputs_definition;
use crate::run::Run;

/// Which actions [`Services::list_actions`] answers: every filter given must hold; the
/// values of one filter are alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    pub identifiers: Vec<String>,
    pub blueprints: Vec<String>,
    pub operations: Vec<Operation>,
    /// `Some(true)`: self-service actions only; `Some(false)`: automations only.
    pub self_service: Option<bool>,
    /// An action without `publish` is published.
    pub published: Option<bool>,
    /// Automations whose `trigger.event.type` is one of these.
    pub trigger_events: Vec<String>,
}

impl ActionFilter {
    pub fn matches(&self, d: &ActionDefinition) -> bool {
        (self.identifiers.is_empty() || self.identifiers.iter().any(|i| i == d.identifier.as_str()))
            && (self.blueprints.is_empty()
                || d.blueprint()
                    .is_some_and(|b| self.blueprints.iter().any(|x| x == b.as_str())))
            && (self.operations.is_empty()
                || d.operation()
                    .is_some_and(|op| self.operations.contains(&op)))
            && self
                .self_service
                .is_none_or(|self_service| d.is_self_service() == self_service)
            && self
                .published
                .is_none_or(|p| d.publish.unwrap_or(true) == p)
            && (self.trigger_events.is_empty()
                || trigger_event(d).is_some_and(|e| self.trigger_events.iter().any(|x| x == e)))
    }
}

/// An automation's `trigger.event.type`.
fn trigger_event(definition: &ActionDefinition) -> Option<&str> {
    match &definition.trigger {
        Trigger::Automation(fields) => fields
            .get("event")
            .and_then(|e| e.get("type"))
            .and_then(Value::as_str),
        Trigger::SelfService(_) => None,
    }
}

fn taken(identifier: &ActionIdentifier) -> PortError {
    PortError::new(
        ErrorKind::IdentifierTaken,
        format!("an action with identifier {identifier} already exists"),
    )
}

fn path_identifier_matches(
    definition: &ActionDefinition,
    identifier: &str,
) -> Result<(), PortError> {
    if definition.identifier.as_str() == identifier {
        Ok(())
    } else {
        Err(PortError::invalid(format!(
            "identifier: must be {identifier}, the identifier in the path"
        )))
    }
}

/// Parses one v1 action of `blueprint`; `index` is its place in an array body, named
/// in the error.
fn parse_v1(
    value: &Value,
    blueprint: &Blueprint,
    index: Option<usize>,
) -> Result<ActionDefinition, PortError> {
    ActionDefinition::from_v1(value, &blueprint.identifier).map_err(|e| match index {
        Some(index) => PortError::invalid(format!("[{index}].{e}")),
        None => e.into(),
    })
}

/// Parses a v1 body that is one action or an array of them.
fn parse_v1_many(body: &Value, blueprint: &Blueprint) -> Result<Vec<ActionDefinition>, PortError> {
    let definitions = match body {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_v1(item, blueprint, Some(i)))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![parse_v1(other, blueprint, None)?],
    };
    let mut seen = HashSet::new();
    for definition in &definitions {
        if !seen.insert(definition.identifier.clone()) {
            return Err(PortError::invalid(format!(
                "identifier: {} appears twice in the body",
                definition.identifier
            )));
        }
    }
    Ok(definitions)
}

impl Services {
    /// Refuses a malformed `userInputs` (422 `user_inputs_schema_invalid`), a malformed
    /// `approvalNotification` (422) and a trigger naming a blueprint that does not
    /// exist (404).
    async fn check_action_definition(
        &self,
        caller: &Caller,
        definition: &ActionDefinition,
    ) -> Result<(), PortError> {
        super::approvals::check_approval_notification(definition.approval_notification.as_ref())?;
        if let Some(inputs) = definition.user_inputs() {
            check_user_inputs_definition(&Value::Object(inputs.clone()))
                .map_err(|e| PortError::new(ErrorKind::UserInputsSchemaInvalid, e.to_string()))?;
        }
        if let Some(blueprint) = definition.blueprint()
            && self
                .store
                .get_blueprint(&caller.org_id, blueprint)
                .await?
                .is_none()
        {
            return Err(PortError::not_found(format!("blueprint {blueprint}")));
        }
        Ok(())
    }

    /// Stores a new action made of `definition`, stamped by the caller; 409
    /// `identifier_taken` when the identifier is in use.
    async fn store_new_action(
        &self,
        caller: &Caller,
        definition: ActionDefinition,
    ) -> Result<Action, PortError> {
        let now = self.now();
        let action = Action {
            meta: ActionMeta {
                id: self.ids.next::<ActionId>(),
                created_at: now,
                created_by: caller.user_id().to_owned(),
                updated_at: now,
                updated_by: caller.user_id().to_owned(),
            },
            definition,
        };
        self.store
            .create_action(&caller.org_id, &action)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists(_) => taken(&action.definition.identifier),
                other => other.into(),
            })?;
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::Action,
            action.definition.identifier.as_str(),
            "CREATE",
            json!({ "after": action.to_v2_json() }),
        ))
        .await?;
        Ok(action)
    }

    /// Replaces an action's definition, keeping its id and creation stamp.
    async fn store_action_update(
        &self,
        caller: &Caller,
        mut action: Action,
        definition: ActionDefinition,
    ) -> Result<Action, PortError> {
        let before = action.to_v2_json();
        action.definition = definition;
        action.meta.updated_at = self.now();
        action.meta.updated_by = caller.user_id().to_owned();
        self.store.update_action(&caller.org_id, &action).await?;
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::Action,
            action.definition.identifier.as_str(),
            "UPDATE",
            json!({ "before": before, "after": action.to_v2_json() }),
        ))
        .await?;
        Ok(action)
    }

    /// Deletes an action (its permissions go with it) and records it.
    async fn store_action_deletion(
        &self,
        caller: &Caller,
        action: &Action,
    ) -> Result<(), PortError> {
        self.store
            .delete_action(&caller.org_id, &action.definition.identifier)
            .await?;
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::Action,
            action.definition.identifier.as_str(),
            "DELETE",
            json!({ "before": action.to_v2_json() }),
        ))
        .await
    }

    // -----------------------------------------------------------------------------------
    // v2
    // -----------------------------------------------------------------------------------

    /// Creates an action from its v2 definition (`POST /v1/actions`).
    pub async fn create_action(&self, caller: &Caller, body: &Value) -> Result<Action, PortError> {
        caller.require_admin("create actions")?;
        let definition = ActionDefinition::from_v2(body)?;
        self.check_action_definition(caller, &definition).await?;
        self.store_new_action(caller, definition).await
    }

    /// The caller's actions that `filter` selects (`GET /v1/actions`).
    pub async fn list_actions(
        &self,
        caller: &Caller,
        filter: &ActionFilter,
    ) -> Result<Vec<Action>, PortError> {
        let mut actions = self.store.list_actions(&caller.org_id).await?;
        actions.retain(|a| filter.matches(&a.definition));
        Ok(actions)
    }

    /// Replaces an action with a v2 definition of the same identifier (`PUT`).
    pub async fn replace_action(
        &self,
        caller: &Caller,
        identifier: &str,
        body: &Value,
    ) -> Result<Action, PortError> {
        caller.require_admin("change actions")?;
        let action = self.get_action(caller, identifier).await?;
        let definition = ActionDefinition::from_v2(body)?;
        path_identifier_matches(&definition, identifier)?;
        self.check_action_definition(caller, &definition).await?;
        self.store_action_update(caller, action, definition).await
    }

    /// Deletes one of the caller's actions (404 when there is none).
    pub async fn delete_action(&self, caller: &Caller, identifier: &str) -> Result<(), PortError> {
        caller.require_admin("delete actions")?;
        let action = self.get_action(caller, identifier).await?;
        self.store_action_deletion(caller, &action).await
    }

    // -----------------------------------------------------------------------------------
    // Legacy v1, blueprint-scoped
    // -----------------------------------------------------------------------------------

    /// An action of `blueprint` (404 when the blueprint does not exist, or the action
    /// does not belong to it).
    pub async fn blueprint_action(
        &self,
        caller: &Caller,
        blueprint: &str,
        identifier: &str,
    ) -> Result<Action, PortError> {
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        self.action_of(caller, &blueprint, identifier).await
    }

    async fn action_of(
        &self,
        caller: &Caller,
        blueprint: &Blueprint,
        identifier: &str,
    ) -> Result<Action, PortError> {
        let action = self.get_action(caller, identifier).await?;
        if action.definition.blueprint() != Some(&blueprint.identifier) {
            return Err(PortError::not_found(format!(
                "action {identifier} of blueprint {}",
                blueprint.identifier
            )));
        }
        Ok(action)
    }

    async fn actions_of(
        &self,
        caller: &Caller,
        blueprint: &Blueprint,
    ) -> Result<Vec<Action>, PortError> {
        let mut actions = self.store.list_actions(&caller.org_id).await?;
        actions.retain(|a| a.definition.blueprint() == Some(&blueprint.identifier));
        Ok(actions)
    }

    /// The actions of one of the caller's blueprints (404 when it does not exist).
    pub async fn blueprint_actions(
        &self,
        caller: &Caller,
        blueprint: &str,
    ) -> Result<Vec<Action>, PortError> {
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        self.actions_of(caller, &blueprint).await
    }

    /// `POST /v1/blueprints/{bp}/actions`: creates one v1 action, or each of an array
    /// of them (as the seed writes them). Nothing is created when one of them is
    /// refused by its checks or its identifier is taken.
    pub async fn create_blueprint_actions(
        &self,
        caller: &Caller,
        blueprint: &str,
        body: &Value,
    ) -> Result<Vec<Action>, PortError> {
        caller.require_admin("create actions")?;
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        let definitions = parse_v1_many(body, &blueprint)?;
        for definition in &definitions {
            self.check_action_definition(caller, definition).await?;
            if self
                .store
                .get_action(&caller.org_id, &definition.identifier)
                .await?
                .is_some()
            {
                return Err(taken(&definition.identifier));
            }
        }
        let mut created = Vec::with_capacity(definitions.len());
        for definition in definitions {
            created.push(self.store_new_action(caller, definition).await?);
        }
        Ok(created)
    }

    /// `PUT /v1/blueprints/{bp}/actions`: the body (an array) becomes the blueprint's
    /// whole set of actions: missing ones are deleted, known ones updated, new ones
    /// created. An identifier another blueprint's action uses is refused (409).
    pub async fn replace_blueprint_actions(
        &self,
        caller: &Caller,
        blueprint: &str,
        body: &Value,
    ) -> Result<Vec<Action>, PortError> {
        caller.require_admin("change actions")?;
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        if !body.is_array() {
            return Err(PortError::invalid("body: must be an array of actions"));
        }
        let definitions = parse_v1_many(body, &blueprint)?;
        for definition in &definitions {
            self.check_action_definition(caller, definition).await?;
            if let Some(other) = self
                .store
                .get_action(&caller.org_id, &definition.identifier)
                .await?
                && other.definition.blueprint() != Some(&blueprint.identifier)
            {
                return Err(taken(&definition.identifier));
            }
        }
        let existing = self.actions_of(caller, &blueprint).await?;
        let wanted: HashSet<ActionIdentifier> =
            definitions.iter().map(|d| d.identifier.clone()).collect();
        for action in &existing {
            if !wanted.contains(&action.definition.identifier) {
                self.store_action_deletion(caller, action).await?;
            }
        }
        let mut result = Vec::with_capacity(definitions.len());
        for definition in definitions {
            let current = existing
                .iter()
                .find(|a| a.definition.identifier == definition.identifier)
                .cloned();
            let action = match current {
                Some(action) => self.store_action_update(caller, action, definition).await?,
                None => self.store_new_action(caller, definition).await?,
            };
            result.push(action);
        }
        Ok(result)
    }

    /// Replaces one action of a blueprint with a v1 definition of the same identifier.
    pub async fn replace_blueprint_action(
        &self,
        caller: &Caller,
        blueprint: &str,
        identifier: &str,
        body: &Value,
    ) -> Result<Action, PortError> {
        caller.require_admin("change actions")?;
        let blueprint = self.blueprint_of(caller, blueprint).await?;
        let action = self.action_of(caller, &blueprint, identifier).await?;
        let definition = parse_v1(body, &blueprint, None)?;
        path_identifier_matches(&definition, identifier)?;
        self.check_action_definition(caller, &definition).await?;
        self.store_action_update(caller, action, definition).await
    }

    /// Deletes one action of a blueprint.
    pub async fn delete_blueprint_action(
        &self,
        caller: &Caller,
        blueprint: &str,
        identifier: &str,
    ) -> Result<(), PortError> {
        caller.require_admin("delete actions")?;
        let action = self.blueprint_action(caller, blueprint, identifier).await?;
        self.store_action_deletion(caller, &action).await
    }

    /// `POST /v1/blueprints/{bp}/actions/{action}/runs`: executes an action of the
    /// blueprint (404 when it is not one), as [`Self::execute`] does.
    pub async fn execute_blueprint_action(
        &self,
        caller: &Caller,
        blueprint: &str,
        action: &str,
        request: ExecuteRequest,
    ) -> Result<Run, PortError> {
        self.blueprint_action(caller, blueprint, action).await?;
        self.execute(caller, action, request).await
    }
}
