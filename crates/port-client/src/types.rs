//! What the API answers: runs, logs, entities, blueprints, actions, deliveries.
//!
//! These are wire types. They keep every key they do not know in an `extra` map (or
//! keep the raw JSON), so a newer server never breaks an older client and nothing is
//! lost when a value is printed or sent back.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::wire::{null_default, opt_time, string_or_list};

/// A run's status. Unknown statuses are kept in [`RunStatus::Other`] rather than
/// failing, so a server that adds one (e.g. `CANCELLED`) does not break this client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// `IN_PROGRESS`: dispatched, or about to be.
    InProgress,
    /// `SUCCESS` (terminal).
    Success,
    /// `FAILURE` (terminal).
    Failure,
    /// `WAITING_FOR_APPROVAL`: nothing is dispatched until approved.
    WaitingForApproval,
    /// `DECLINED` (terminal).
    Declined,
    /// A status this client does not know, as sent.
    Other(String),
}

impl RunStatus {
    /// The wire name, e.g. `IN_PROGRESS`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::WaitingForApproval => "WAITING_FOR_APPROVAL",
            Self::Declined => "DECLINED",
            Self::Other(other) => other,
        }
    }

    /// Parses a wire name; never fails (unknown names become [`RunStatus::Other`]).
    pub fn parse(s: &str) -> Self {
        match s {
            "IN_PROGRESS" => Self::InProgress,
            "SUCCESS" => Self::Success,
            "FAILURE" => Self::Failure,
            "WAITING_FOR_APPROVAL" => Self::WaitingForApproval,
            "DECLINED" => Self::Declined,
            other => Self::Other(other.to_owned()),
        }
    }

    /// `SUCCESS`, `FAILURE` or `DECLINED`: the run will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Declined)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for RunStatus {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

impl Serialize for RunStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// The statuses a backend may set (`PATCH` `status`, a log's `terminationStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FinalStatus {
    /// `SUCCESS`.
    #[serde(rename = "SUCCESS")]
    Success,
    /// `FAILURE`.
    #[serde(rename = "FAILURE")]
    Failure,
}

impl FinalStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
        }
    }
}

impl fmt::Display for FinalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run points at: its action, blueprint or entity, as they were when the run
/// was created. `deleted` flags targets that no longer exist.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// The identifier.
    pub identifier: String,
    /// The title, when known.
    #[serde(default)]
    pub title: Option<String>,
    /// The icon, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Whether the target was deleted since.
    #[serde(default, deserialize_with = "null_default")]
    pub deleted: bool,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The legacy (v1) run shape sends the action as a bare identifier.
fn reference_or_identifier<'de, D: Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
    match Value::deserialize(d)? {
        Value::String(identifier) => Ok(Reference {
            identifier,
            ..Reference::default()
        }),
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

/// The latest approval decision on a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The approver's reason.
    #[serde(default)]
    pub description: Option<String>,
    /// Who decided.
    #[serde(default)]
    pub user_id: Option<String>,
    /// `APPROVED` or `DECLINED` on portd.
    #[serde(default)]
    pub state: Option<String>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An action run, in Port's current (v2) shape. The legacy v1 shape decodes too (its
/// `action` string becomes [`Reference::identifier`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// `r_…`.
    pub id: String,
    /// The status.
    pub status: RunStatus,
    /// A label shown next to the status.
    #[serde(default)]
    pub status_label: Option<String>,
    /// The action that was run.
    #[serde(deserialize_with = "reference_or_identifier")]
    pub action: Reference,
    /// The action's blueprint, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<Reference>,
    /// The entity the run was executed on (DAY-2 and DELETE actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<Reference>,
    /// The user inputs (secret inputs are not readable here).
    #[serde(default, deserialize_with = "null_default")]
    pub properties: Map<String, Value>,
    /// `UI`, `API` or `AUTOMATION` (Port's schema also allows an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Links shown on the run page; each PATCH replaces the whole list.
    #[serde(default, deserialize_with = "string_or_list")]
    pub link: Vec<String>,
    /// Markdown summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The backend's own id for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_run_id: Option<String>,
    /// The action's `requiredApproval` (`false`, `true` or `{"type": "ANY"|"ALL"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_approval: Option<Value>,
    /// The latest approval decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The evaluated invocation method (url, method, headers, body …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// What a synchronized webhook answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// When the run reached a terminal status.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// Last change.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<OffsetDateTime>,
    /// Who created it (user id or client id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who changed it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// The organization credential (client id) that executed it as `created_by`
    /// (`run_as`; portd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<String>,
    /// Keys this client does not know (`rawProperties`, `claimedUntil`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Run {
    /// Whether the run has ended: a terminal status, or an `endedAt` (which also covers
    /// terminal statuses this client does not know).
    pub fn has_ended(&self) -> bool {
        self.status.is_terminal() || self.ended_at.is_some()
    }

    /// The source as a plain string, when it is one.
    pub fn source_name(&self) -> Option<&str> {
        self.source.as_ref().and_then(Value::as_str)
    }
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLog {
    /// `log_…`.
    #[serde(default)]
    pub id: String,
    /// The run it belongs to.
    #[serde(default)]
    pub run_id: String,
    /// The text.
    pub message: String,
    /// When it was written.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// Who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entity of the catalog. Also usable as a request body: absent fields are not sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    /// The identifier (omit on create to let the server generate `e_…`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identifier: String,
    /// The title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// The blueprint (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    /// Owning team(s): a string or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Value>,
    /// Property values.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: Map<String, Value>,
    /// Relation targets (an identifier, a list of them, or null).
    #[serde(default, deserialize_with = "null_default")]
    pub relations: Map<String, Value>,
    /// Creation time.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// Who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Last change.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<OffsetDateTime>,
    /// Who changed it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// Keys this client does not know (`scorecards`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A blueprint: its identifier and title typed, the rest (`schema`, `relations`, …)
/// kept as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blueprint {
    /// The identifier.
    pub identifier: String,
    /// The title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An action definition, kept as raw JSON: v2 actions from `/v1/actions`, v1 actions
/// from the legacy blueprint-scoped routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Action(pub Value);

impl Action {
    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.0.pointer(pointer).and_then(Value::as_str)
    }

    /// The user-chosen identifier.
    pub fn identifier(&self) -> Option<&str> {
        self.str_at("/identifier")
    }

    /// The title.
    pub fn title(&self) -> Option<&str> {
        self.str_at("/title")
    }

    /// The server-assigned id (`action_…`).
    pub fn id(&self) -> Option<&str> {
        self.str_at("/id")
    }

    /// The blueprint: `trigger.blueprintIdentifier` (v2) or `blueprint` (v1).
    pub fn blueprint(&self) -> Option<&str> {
        self.str_at("/trigger/blueprintIdentifier")
            .or_else(|| self.str_at("/blueprint"))
    }

    /// The JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The JSON, owned.
    pub fn into_json(self) -> Value {
        self.0
    }
}

/// One approver of a run and their decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approver {
    /// The user (or client) id.
    pub user_id: String,
    /// `APPROVED`, `DECLINED` or `PENDING` on portd.
    #[serde(default)]
    pub state: Option<String>,
    /// Their reason.
    #[serde(default)]
    pub description: Option<String>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An audit-log record: an entity change bound to a run (`resourceType` `entity`), or
/// an entry of portd's trail: a run executed, approved, declined or withdrawn, an
/// action, its permissions, a user or a team changed (`trigger.by` says who).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The changed resource's identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// `entity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// `CREATE`, `UPDATE` or `DELETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `SUCCESS` or `FAILURE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `{blueprint, entity, runId}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// `{by, at, origin}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Value>,
    /// The entity after the change (before it, for deletions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Value>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A page of runs (`GET /v1/actions/runs`), newest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// portd's cursor: when present, more runs follow; pass it as
    /// [`crate::RunQuery::before`]. Port's cloud sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A page of a blueprint's entity search.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EntityPage {
    /// The entities.
    pub entities: Vec<Entity>,
    /// When present, pass it as [`crate::EntitySearch::from`] for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The answer to a search across blueprints (`POST /v1/entities/search`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitySearchResult {
    /// The entities.
    pub entities: Vec<Entity>,
    /// Blueprints the query matched.
    #[serde(default)]
    pub matching_blueprints: Vec<String>,
    /// Blueprints the query failed on.
    #[serde(default)]
    pub failed_blueprints: Vec<Value>,
}

/// One written entity of a bulk create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEntityWritten {
    /// Its identifier.
    pub identifier: String,
    /// Its position in the request.
    pub index: usize,
    /// Created (true) or updated by upsert (false).
    #[serde(default)]
    pub created: bool,
    /// Keys this client does not know (`additionalData`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One refused entity of a bulk create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEntityError {
    /// The identifier given, if any.
    #[serde(default)]
    pub identifier: Option<String>,
    /// Its position in the request.
    pub index: usize,
    /// The HTTP status it would have had alone.
    #[serde(default)]
    pub status_code: Option<u16>,
    /// Port's error identifier.
    #[serde(default)]
    pub error: Option<String>,
    /// The message.
    #[serde(default)]
    pub message: Option<String>,
}

/// The answer to a bulk create: 200 when all were written, 207 when some failed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BulkEntitiesResult {
    /// The entities written.
    #[serde(default)]
    pub entities: Vec<BulkEntityWritten>,
    /// The entities refused.
    #[serde(default)]
    pub errors: Vec<BulkEntityError>,
}

/// An organization secret as the API shows it: its name, description and dates, never
/// its value (`/v1/organization/secrets`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "SecretWire")]
pub struct Secret {
    /// The name templates read it by: `{{ .secrets.NAME }}`.
    pub secret_name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// When its value or description last changed.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<OffsetDateTime>,
    /// Keys this client does not know; never a `secretValue`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// [`Secret`] as decoded, before a value a server should not have sent is dropped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretWire {
    secret_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, with = "opt_time")]
    created_at: Option<OffsetDateTime>,
    #[serde(default, with = "opt_time")]
    updated_at: Option<OffsetDateTime>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl From<SecretWire> for Secret {
    fn from(mut wire: SecretWire) -> Self {
        // portd never answers a value, but another server might: keeping it in `extra`
        // would put it in every `Debug` and JSON print of the secret.
        wire.extra.remove("secretValue");
        Self {
            secret_name: wire.secret_name,
            description: wire.description,
            created_at: wire.created_at,
            updated_at: wire.updated_at,
            extra: wire.extra,
        }
    }
}

/// One attempt at delivering a run's invocation (portd extension).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    #[serde(default)]
    pub number: Option<u32>,
    /// When it started.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<OffsetDateTime>,
    /// When it ended.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<OffsetDateTime>,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the receiver's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    /// How long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A delivery of a run's invocation to its backend (portd extension,
/// `GET /v1/actions/runs/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivery {
    /// `msg_…`; also the `webhook-id` header the receiver saw.
    pub id: String,
    /// The run.
    pub run_id: Option<String>,
    /// `WEBHOOK` or `AGENT`.
    pub mode: Option<String>,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    pub state: Option<String>,
    /// How many attempts were started (webhook) or claims made (agent).
    pub attempt_count: Option<u32>,
    /// The attempts, when the server lists them.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Creation time.
    pub created_at: Option<OffsetDateTime>,
    /// Last change.
    pub updated_at: Option<OffsetDateTime>,
    /// Every other key (`request`, `synchronized`, `installationId`, …).
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Delivery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Value>::deserialize(d)?;
        let mut text = |key: &str| match map.remove(key) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let id = text("id").ok_or_else(|| D::Error::missing_field("id"))?;
        let run_id = text("runId");
        let mode = text("mode");
        let state = text("state").or_else(|| text("status"));
        let time = |map: &mut Map<String, Value>, key: &str| -> Result<_, D::Error> {
            match map.remove(key) {
                Some(v) => opt_time::deserialize(v).map_err(D::Error::custom),
                None => Ok(None),
            }
        };
        let next_attempt_at = time(&mut map, "nextAttemptAt")?;
        let created_at = time(&mut map, "createdAt")?;
        let updated_at = time(&mut map, "updatedAt")?;
        // `attempts` may be a count or the list of attempts; accept both.
        let mut attempt_count = map
            .remove("attemptCount")
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok());
        let mut attempts = Vec::new();
        match map.remove("attempts") {
            Some(Value::Array(list)) => {
                attempts = serde_json::from_value(Value::Array(list)).map_err(D::Error::custom)?;
                attempt_count = attempt_count.or_else(|| u32::try_from(attempts.len()).ok());
            }
            Some(Value::Number(n)) => {
                attempt_count =
                    attempt_count.or_else(|| n.as_u64().and_then(|n| u32::try_from(n).ok()));
            }
            Some(Value::Null) | None => {}
            Some(other) => return Err(D::Error::custom(format!("`attempts`: unexpected {other}"))),
        }
        Ok(Self {
            id,
            run_id,
            mode,
            state,
            attempt_count,
            attempts,
            next_attempt_at,
            created_at,
            updated_at,
            extra: map,
        })
    }
}

impl Serialize for Delivery {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let time = |t: &Option<OffsetDateTime>| -> Result<Value, S::Error> {
            serde_json::to_value(TimeOut(t)).map_err(S::Error::custom)
        };
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.id.clone()));
        let mut put = |key: &str, value: Value| {
            if !value.is_null() {
                map.insert(key.into(), value);
            }
        };
        put("runId", self.run_id.clone().into());
        put("mode", self.mode.clone().into());
        put("state", self.state.clone().into());
        put("attemptCount", self.attempt_count.into());
        put(
            "attempts",
            serde_json::to_value(&self.attempts).map_err(S::Error::custom)?,
        );
        put("nextAttemptAt", time(&self.next_attempt_at)?);
        put("createdAt", time(&self.created_at)?);
        put("updatedAt", time(&self.updated_at)?);
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        map.serialize(s)
    }
}

/// Serializes a borrowed optional time with [`opt_time`].
struct TimeOut<'a>(&'a Option<OffsetDateTime>);

impl Serialize for TimeOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        opt_time::serialize(self.0, s)
    }
}

/// An access token, with its secret kept out of `Debug`.
#[derive(Clone)]
pub struct AccessToken {
    pub(crate) token: String,
    pub(crate) expires_in: Option<u64>,
}

impl AccessToken {
    /// The bearer token itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// Its lifetime in seconds, as the server stated when it was issued.
    pub fn expires_in(&self) -> Option<u64> {
        self.expires_in
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A `{name}` reference (a user's role or team).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NameRef {
    /// The role's or team's name.
    pub name: String,
}

/// A person of the organization (`/v1/users`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Their address, which identifies them.
    pub email: String,
    /// First name (empty when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name (empty when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// `Invited` until they first sign in, then `Active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Their role (`Admin` or `Member`), as Port lists roles.
    #[serde(default)]
    pub roles: Vec<NameRef>,
    /// The teams they belong to.
    #[serde(default)]
    pub teams: Vec<NameRef>,
    /// Creation time.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// Last change.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<OffsetDateTime>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl User {
    /// Their role: the first listed.
    pub fn role(&self) -> Option<&str> {
        self.roles.first().map(|r| r.name.as_str())
    }

    /// The names of their teams.
    pub fn team_names(&self) -> Vec<&str> {
        self.teams.iter().map(|t| t.name.as_str()).collect()
    }
}

/// A member of a [`Team`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TeamMember {
    /// Their address.
    pub email: String,
}

/// A team of the organization (`/v1/teams`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// Its name, which identifies it.
    pub name: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its members.
    #[serde(default)]
    pub users: Vec<TeamMember>,
    /// Creation time.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// Last change.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<OffsetDateTime>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Who a permission names: users, roles, teams, and a policy (catalog queries and jq
/// conditions) that admits others.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Addresses of users.
    #[serde(default)]
    pub users: Vec<String>,
    /// `Admin`, `Member`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Team names.
    #[serde(default)]
    pub teams: Vec<String>,
    /// `execute` only: members of the entity's teams may execute too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by_team: Option<bool>,
    /// `{queries, conditions}`, or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// Keys this client does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An action's permissions (`/v1/actions/{id}/permissions`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ActionPermissions {
    /// Who may execute it.
    #[serde(default)]
    pub execute: Grant,
    /// Who may approve its runs.
    #[serde(default)]
    pub approve: Grant,
}

/// A personal client id and secret (`POST /v1/auth/credentials`): its tokens act as
/// the person who created it. The secret is shown once.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalCredentials {
    /// The client id.
    pub client_id: String,
    /// The secret: keep it, it is never shown again. Do not log it.
    #[serde(default)]
    pub client_secret: String,
    /// Creation time.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
}

impl fmt::Debug for PersonalCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What [`crate::PortClient::follow_logs`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A log line, in order, each once.
    Log(RunLog),
    /// The run changed while running (status, label, links, summary …).
    Status(Box<Run>),
    /// The run ended; always the last event of a stream that ended normally.
    Ended(Box<Run>),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_round_trip_and_keep_unknown_ones() {
        for s in [
            "IN_PROGRESS",
            "SUCCESS",
            "FAILURE",
            "WAITING_FOR_APPROVAL",
            "DECLINED",
            "CANCELLED",
        ] {
            let status: RunStatus = serde_json::from_value(json!(s)).unwrap();
            assert_eq!(serde_json::to_value(&status).unwrap(), json!(s));
        }
        assert_eq!(
            RunStatus::parse("CANCELLED"),
            RunStatus::Other("CANCELLED".into())
        );
        assert!(!RunStatus::Other("CANCELLED".into()).is_terminal());
        assert!(RunStatus::Declined.is_terminal());
    }

    #[test]
    fn the_seeds_v1_run_decodes() {
        let run: Run = serde_json::from_value(json!({
            "id": "r_QOz6WoOB1Q2lmhZZ",
            "status": "SUCCESS",
            "blueprint": { "identifier": "microservice", "title": "Service" },
            "action": "create_microservice",
            "endedAt": "2022-12-07T14:51:52.796Z",
            "source": "UI",
            "link": ["https://github.com/actions/toolkit/actions/runs/3617893813"],
            "message": { "run_status": "Run completed successfully!" },
            "relatedEntityExists": false,
            "relatedBlueprintExists": true,
            "properties": { "name": "my-microservice", "region": "eu-west-1" },
            "createdAt": "2022-12-07T12:53:52.916Z",
            "updatedAt": "2022-12-07T14:51:52.796Z",
            "createdBy": "auth0|638879fa62c686d381b36ecb",
            "updatedBy": "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE"
        }))
        .unwrap();
        assert_eq!(run.action.identifier, "create_microservice");
        assert_eq!(run.status, RunStatus::Success);
        assert!(run.has_ended());
        assert_eq!(run.source_name(), Some("UI"));
        assert_eq!(run.extra["relatedEntityExists"], json!(false));
        assert_eq!(
            run.extra["message"],
            json!({ "run_status": "Run completed successfully!" })
        );
    }

    #[test]
    fn a_v2_run_round_trips_with_unknown_keys() {
        let wire = json!({
            "id": "r_Q0YotCZMKxDLdlaU",
            "status": "IN_PROGRESS",
            "statusLabel": null,
            "action": { "identifier": "deploy", "title": null, "icon": null, "deleted": false },
            "entity": { "identifier": "svc-a", "title": "svc-a", "icon": "x", "deleted": true },
            "properties": { "name": "x" },
            "source": "API",
            "requiredApproval": false,
            "approval": null,
            "link": "https://one.example",
            "payload": { "type": "WEBHOOK" },
            "claimedUntil": "2024-08-15T12:31:00.000Z",
            "createdAt": "2024-08-15T12:30:00.000Z",
        });
        let run: Run = serde_json::from_value(wire).unwrap();
        assert_eq!(run.link, vec!["https://one.example".to_owned()]);
        assert!(run.entity.as_ref().unwrap().deleted);
        assert_eq!(run.extra["claimedUntil"], json!("2024-08-15T12:31:00.000Z"));
        assert!(!run.has_ended());
        let again: Run = serde_json::from_value(serde_json::to_value(&run).unwrap()).unwrap();
        assert_eq!(again, run);
        assert_eq!(
            serde_json::to_value(&run).unwrap()["createdAt"],
            json!("2024-08-15T12:30:00Z")
        );
    }

    #[test]
    fn deliveries_accept_a_count_or_a_list_of_attempts() {
        let counted: Delivery = serde_json::from_value(json!({
            "id": "msg_1", "runId": "r_1", "state": "PENDING", "attempts": 3,
            "request": { "url": "https://x" }
        }))
        .unwrap();
        assert_eq!(counted.attempt_count, Some(3));
        assert!(counted.attempts.is_empty());
        assert_eq!(counted.extra["request"]["url"], json!("https://x"));
        let listed: Delivery = serde_json::from_value(json!({
            "id": "msg_2", "attempts": [{ "number": 1, "statusCode": 500, "durationMs": 12 }]
        }))
        .unwrap();
        assert_eq!(listed.attempt_count, Some(1));
        assert_eq!(listed.attempts[0].status_code, Some(500));
        let back: Delivery =
            serde_json::from_value(serde_json::to_value(&listed).unwrap()).unwrap();
        assert_eq!(back, listed);
    }

    #[test]
    fn tokens_do_not_leak_through_debug() {
        let token = AccessToken {
            token: "super-secret".into(),
            expires_in: Some(10800),
        };
        assert!(!format!("{token:?}").contains("super-secret"));
    }

    #[test]
    fn secrets_decode_without_any_value_a_server_sent() {
        let secret: Secret = serde_json::from_value(json!({
            "secretName": "API_TOKEN",
            "description": "CI",
            "secretValue": "tok-do-not-keep",
            "createdAt": "2024-08-15T12:30:00.000Z",
            "updatedAt": "2024-08-15T12:31:00.000Z",
            "scope": "org"
        }))
        .unwrap();
        assert_eq!(secret.secret_name, "API_TOKEN");
        assert_eq!(secret.description.as_deref(), Some("CI"));
        assert!(secret.updated_at > secret.created_at);
        assert_eq!(secret.extra["scope"], json!("org"));
        assert!(!format!("{secret:?}").contains("tok-do-not-keep"));
        let back = serde_json::to_value(&secret).unwrap();
        assert!(back.get("secretValue").is_none(), "{back}");
        assert_eq!(back["createdAt"], json!("2024-08-15T12:30:00Z"));
    }

    #[test]
    fn entities_serialize_without_absent_fields() {
        let entity = Entity {
            identifier: "svc".into(),
            properties: Map::from_iter([("region".to_owned(), json!("eu"))]),
            ..Entity::default()
        };
        assert_eq!(
            serde_json::to_value(&entity).unwrap(),
            json!({ "identifier": "svc", "properties": { "region": "eu" }, "relations": {} })
        );
    }
}
