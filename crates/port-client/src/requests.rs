//! What callers send: execute requests, run updates, list filters and write options.
//! Each turns itself into the query pairs or the JSON body of its route.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::types::{FinalStatus, RunStatus};

/// Query pairs of a request.
pub(crate) type Query = Vec<(String, String)>;

fn push(query: &mut Query, key: &str, value: impl ToString) {
    query.push((key.to_owned(), value.to_string()));
}

fn push_opt(query: &mut Query, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        push(query, key, value);
    }
}

fn push_flag(query: &mut Query, key: &str, value: bool) {
    // Every flag defaults to false on the server, so only `true` is sent.
    if value {
        push(query, key, "true");
    }
}

/// Executing an action (`POST /v1/actions/{action}/runs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecuteRequest {
    /// The user inputs.
    pub properties: Map<String, Value>,
    /// The entity to run on (DAY-2 and DELETE actions bound to a blueprint).
    pub entity: Option<String>,
    /// Sent as `Idempotency-Key`; when `None` the client generates a UUID v4. Either
    /// way the same key goes with every retry of this call, so a retried execute never
    /// creates a second run on a server that honours the header (portd does).
    pub idempotency_key: Option<String>,
    /// `run_as`: execute as this user (their e-mail). Organization credentials only:
    /// the run is theirs (`createdBy`), their permissions are checked, and it records
    /// the credential as `impersonatedBy`.
    pub run_as: Option<String>,
}

impl ExecuteRequest {
    /// A request with no inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one input.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Sets the entity.
    pub fn entity(mut self, entity: impl Into<String>) -> Self {
        self.entity = Some(entity.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Executes as this user (organization credentials only).
    pub fn run_as(mut self, email: impl Into<String>) -> Self {
        self.run_as = Some(email.into());
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("properties".into(), Value::Object(self.properties.clone()));
        if let Some(entity) = &self.entity {
            body.insert("entity".into(), Value::String(entity.clone()));
        }
        Value::Object(body)
    }

    pub(crate) fn query(&self) -> Query {
        let mut query = Query::new();
        push_opt(&mut query, "run_as", self.run_as.as_deref());
        query
    }
}

/// Filters of `GET /v1/actions/runs`; all are optional and ANDed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunQuery {
    /// Runs on this entity.
    pub entity: Option<String>,
    /// Runs of this blueprint.
    pub blueprint: Option<String>,
    /// `true`: only runs still running; `false`: only ended runs (portd).
    pub active: Option<bool>,
    /// Runs created by this e-mail.
    pub user_email: Option<String>,
    /// Runs created by this user (or client) id.
    pub user_id: Option<String>,
    /// At most this many runs (1–1000; portd defaults to 100).
    pub limit: Option<u32>,
    /// Runs with this `externalRunId`.
    pub external_run_id: Option<String>,
    /// Runs of this action.
    pub action: Option<String>,
    /// Runs from these sources (`UI`, `API`, `AUTOMATION`).
    pub source: Vec<String>,
    /// Runs with this status (portd extension).
    pub status: Option<RunStatus>,
    /// The `next` of the previous page (portd's cursor).
    pub before: Option<String>,
}

impl RunQuery {
    pub(crate) fn query(&self) -> Query {
        let mut query = vec![("version".to_owned(), "v2".to_owned())];
        push_opt(&mut query, "entity", self.entity.as_deref());
        push_opt(&mut query, "blueprint", self.blueprint.as_deref());
        if let Some(active) = self.active {
            push(&mut query, "active", active);
        }
        push_opt(&mut query, "user_email", self.user_email.as_deref());
        push_opt(&mut query, "user_id", self.user_id.as_deref());
        if let Some(limit) = self.limit {
            push(&mut query, "limit", limit);
        }
        push_opt(
            &mut query,
            "external_run_id",
            self.external_run_id.as_deref(),
        );
        push_opt(&mut query, "action", self.action.as_deref());
        for source in &self.source {
            push(&mut query, "source", source);
        }
        push_opt(
            &mut query,
            "status",
            self.status.as_ref().map(RunStatus::as_str),
        );
        push_opt(&mut query, "before", self.before.as_deref());
        query
    }
}

/// A partial update of a run (`PATCH /v1/actions/runs/{id}`): `None` fields are not
/// sent and stay as they are; sent fields replace what was there (including `link`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunUpdate {
    /// Ends the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<FinalStatus>,
    /// The label next to the status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_label: Option<String>,
    /// Replaces the run's links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Vec<String>>,
    /// Replaces the summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Your backend's id for the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_run_id: Option<String>,
    /// The deprecated free-form `message` object of the legacy API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Map<String, Value>>,
}

/// Query flags of entity creation (`POST /v1/blueprints/{bp}/entities`, and bulk).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityWriteOptions {
    /// Replace (or with `merge`, merge into) an existing entity instead of failing
    /// with 409 `identifier_taken`.
    pub upsert: bool,
    /// With `upsert`: change only the given keys.
    pub merge: bool,
    /// Validate only; store nothing.
    pub validation_only: bool,
    /// Create relation targets that do not exist yet.
    pub create_missing_related_entities: bool,
    /// Bind the change to this run (it must be `IN_PROGRESS`).
    pub run_id: Option<String>,
}

impl EntityWriteOptions {
    /// `upsert=true&merge=true`, what Port's GitHub action sends.
    pub fn upsert_merge() -> Self {
        Self {
            upsert: true,
            merge: true,
            ..Self::default()
        }
    }

    /// Binds the change to a run.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    pub(crate) fn query(&self) -> Query {
        let mut query = Query::new();
        push_flag(&mut query, "upsert", self.upsert);
        push_flag(&mut query, "merge", self.merge);
        push_flag(&mut query, "validation_only", self.validation_only);
        push_flag(
            &mut query,
            "create_missing_related_entities",
            self.create_missing_related_entities,
        );
        push_opt(&mut query, "run_id", self.run_id.as_deref());
        query
    }
}

/// Query flags of entity replacement and patching.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityUpdateOptions {
    /// Create relation targets that do not exist yet.
    pub create_missing_related_entities: bool,
    /// Bind the change to this run (it must be `IN_PROGRESS`).
    pub run_id: Option<String>,
}

impl EntityUpdateOptions {
    pub(crate) fn query(&self) -> Query {
        let mut query = Query::new();
        push_flag(
            &mut query,
            "create_missing_related_entities",
            self.create_missing_related_entities,
        );
        push_opt(&mut query, "run_id", self.run_id.as_deref());
        query
    }
}

/// Query flags of entity deletion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityDeleteOptions {
    /// Also delete the entities that relate to it (else 403 `has_dependents`).
    pub delete_dependents: bool,
    /// Bind the deletion to this run (it must be `IN_PROGRESS`).
    pub run_id: Option<String>,
}

impl EntityDeleteOptions {
    pub(crate) fn query(&self) -> Query {
        let mut query = Query::new();
        push_flag(&mut query, "delete_dependents", self.delete_dependents);
        push_opt(&mut query, "run_id", self.run_id.as_deref());
        query
    }
}

/// A search in one blueprint (`POST /v1/blueprints/{bp}/entities/search`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EntitySearch {
    /// `{combinator, rules}`.
    pub query: Value,
    /// Only these keys of each entity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// All but these keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Page size (1–1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Filters of `GET /v1/actions`; ANDed, and repeated values are alternatives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionQuery {
    /// These action identifiers.
    pub action_identifier: Vec<String>,
    /// Actions of these blueprints.
    pub blueprint_identifier: Vec<String>,
    /// `CREATE`, `DAY-2`, `DELETE`.
    pub operation: Vec<String>,
    /// Published (true) or unpublished automations.
    pub published: Option<bool>,
    /// `self-service` or `automation`.
    pub trigger_type: Option<String>,
    /// Automation event types.
    pub trigger_event: Vec<String>,
    /// Automations of these actions' runs.
    pub trigger_event_action_identifier: Vec<String>,
}

impl ActionQuery {
    pub(crate) fn query(&self) -> Query {
        let mut query = Query::new();
        let lists = [
            ("action_identifier", &self.action_identifier),
            ("blueprint_identifier", &self.blueprint_identifier),
            ("operation", &self.operation),
            ("trigger_event", &self.trigger_event),
            (
                "trigger_event_action_identifier",
                &self.trigger_event_action_identifier,
            ),
        ];
        for (key, values) in lists {
            for value in values {
                push(&mut query, key, value);
            }
        }
        if let Some(published) = self.published {
            push(&mut query, "published", published);
        }
        push_opt(&mut query, "trigger_type", self.trigger_type.as_deref());
        query
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn run_queries_ask_for_v2_and_send_only_what_is_set() {
        let query = RunQuery {
            active: Some(false),
            source: vec!["UI".into(), "API".into()],
            status: Some(RunStatus::Success),
            limit: Some(5),
            ..RunQuery::default()
        }
        .query();
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("version", "v2"),
                ("active", "false"),
                ("limit", "5"),
                ("source", "UI"),
                ("source", "API"),
                ("status", "SUCCESS"),
            ]
        );
    }

    #[test]
    fn run_updates_send_only_present_keys() {
        let update = RunUpdate {
            status: Some(FinalStatus::Failure),
            link: Some(vec!["https://ci/1".into()]),
            ..RunUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(&update).unwrap(),
            json!({ "status": "FAILURE", "link": ["https://ci/1"] })
        );
    }

    #[test]
    fn entity_flags_are_sent_only_when_true() {
        let query = EntityWriteOptions::upsert_merge().run_id("r_1").query();
        assert_eq!(
            query,
            [
                ("upsert".to_owned(), "true".to_owned()),
                ("merge".to_owned(), "true".to_owned()),
                ("run_id".to_owned(), "r_1".to_owned()),
            ]
        );
        assert!(EntityWriteOptions::default().query().is_empty());
    }
}

/// Filters of `GET /v1/audit-log`; all given ones must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditQuery {
    /// Kinds of records: `entity` (a run's entity changes, with `run_id`), `run`,
    /// `action`, `permissions`, `user`, `team`. Empty: the whole trail, or with
    /// `run_id` the run's entity changes.
    pub resources: Vec<String>,
    /// The resource's identifier.
    pub identifier: Option<String>,
    /// Records about this run.
    pub run_id: Option<String>,
    /// From this time on (ISO-8601).
    pub from: Option<String>,
    /// Up to this time (ISO-8601).
    pub to: Option<String>,
    /// The most trail entries (1–1000; portd defaults to 100).
    pub limit: Option<u32>,
}

impl AuditQuery {
    pub(crate) fn query(&self) -> Query {
        let mut query = Query::new();
        for resource in &self.resources {
            push(&mut query, "resources", resource);
        }
        push_opt(&mut query, "identifier", self.identifier.as_deref());
        push_opt(&mut query, "run_id", self.run_id.as_deref());
        push_opt(&mut query, "from", self.from.as_deref());
        push_opt(&mut query, "to", self.to.as_deref());
        if let Some(limit) = self.limit {
            push(&mut query, "limit", limit);
        }
        query
    }
}

/// A change of a user (`PATCH /v1/users/{email}`): `None` keeps what is there.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct UserUpdate {
    /// Their role: `Admin` or `Member` (sent as Port's one-role list).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "one_role")]
    pub roles: Option<String>,
    /// Their teams: the whole list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<String>>,
}

fn one_role<S: serde::Serializer>(role: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match role {
        Some(role) => s.collect_seq(std::iter::once(role)),
        None => s.serialize_none(),
    }
}

/// A team as written (`POST /v1/teams`, `PUT` and `PATCH /v1/teams/{name}`): with
/// PATCH, `None` keeps what is there.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TeamRequest {
    /// Its name (a new one renames it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its members' addresses: the whole list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// What it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
