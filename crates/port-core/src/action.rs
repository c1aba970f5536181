//! Actions: Port's v2 definition (the model), the legacy v1 shape that parses into it
//! and renders back from it, and the server-managed metadata (port-api.md §4).
//!
//! Conversions to and from `serde_json::Value` are written by hand: unknown keys must
//! survive in the order received, every refusal must name its field path, and rendering
//! must give back exactly what was parsed (absent stays absent, `false` stays `false`).

use std::fmt;

use serde_json::{Map, Value};

use crate::error::PortError;
use crate::id::{ActionId, ActionIdentifier, BlueprintIdentifier, IdError};
use crate::time::Timestamp;

// ---------------------------------------------------------------------------------------
// Small enums
// ---------------------------------------------------------------------------------------

/// What a self-service action does to its blueprint's entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Day2,
    Delete,
}

impl Operation {
    pub const ALL: [Self; 3] = [Self::Create, Self::Day2, Self::Delete];
    const ALLOWED: &'static str = "CREATE, DAY-2, DELETE";

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Day2 => "DAY-2",
            Self::Delete => "DELETE",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == value)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether one approver suffices or every approver must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalMode {
    Any,
    All,
}

impl ApprovalMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Any => "ANY",
            Self::All => "ALL",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ANY" => Some(Self::Any),
            "ALL" => Some(Self::All),
            _ => None,
        }
    }
}

/// How a required approval was written: `true` or `{"type": "ANY" | "ALL"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalWire {
    /// `true`, which means [`ApprovalMode::Any`].
    True,
    /// `{"type": "ANY"}` or `{"type": "ALL"}`.
    Object,
}

/// How a non-required approval was written: key absent or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NotRequiredWire {
    #[default]
    Absent,
    False,
}

/// Whether runs wait for approval. The wire form is remembered so rendering round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequiredApproval {
    NotRequired {
        wire: NotRequiredWire,
    },
    Required {
        mode: ApprovalMode,
        wire: ApprovalWire,
    },
}

impl Default for RequiredApproval {
    fn default() -> Self {
        Self::NOT_REQUIRED
    }
}

impl RequiredApproval {
    /// No approval, key absent on the wire.
    pub const NOT_REQUIRED: Self = Self::NotRequired {
        wire: NotRequiredWire::Absent,
    };

    pub const fn is_required(&self) -> bool {
        matches!(self, Self::Required { .. })
    }

    pub const fn mode(&self) -> Option<ApprovalMode> {
        match self {
            Self::NotRequired { .. } => None,
            Self::Required { mode, .. } => Some(*mode),
        }
    }

    fn parse(value: Option<&Value>) -> Result<Self, ActionError> {
        const PATH: &str = "requiredApproval";
        const EXPECTED: &str = r#"a boolean or {"type": "ANY" | "ALL"}"#;
        match value {
            None => Ok(Self::NOT_REQUIRED),
            Some(Value::Bool(false)) => Ok(Self::NotRequired {
                wire: NotRequiredWire::False,
            }),
            Some(Value::Bool(true)) => Ok(Self::Required {
                mode: ApprovalMode::Any,
                wire: ApprovalWire::True,
            }),
            Some(Value::Object(map)) => {
                let fields = Fields { map, path: PATH };
                // Other keys could not be rendered back, so they are refused.
                if let Some(key) = map.keys().find(|k| *k != "type") {
                    return Err(ActionError::NotAllowed {
                        path: fields.path(key),
                    });
                }
                let ty = fields.required_str("type")?;
                let mode = ApprovalMode::parse(ty).ok_or_else(|| ActionError::NotOneOf {
                    path: fields.path("type"),
                    allowed: "ANY, ALL",
                    got: describe_str(ty),
                })?;
                Ok(Self::Required {
                    mode,
                    wire: ApprovalWire::Object,
                })
            }
            Some(other) => Err(wrong_type(PATH, EXPECTED, other)),
        }
    }

    fn to_value(self) -> Option<Value> {
        match self {
            Self::NotRequired {
                wire: NotRequiredWire::Absent,
            } => None,
            Self::NotRequired {
                wire: NotRequiredWire::False,
            } => Some(Value::Bool(false)),
            Self::Required {
                mode: ApprovalMode::Any,
                wire: ApprovalWire::True,
            } => Some(Value::Bool(true)),
            // `true` cannot say ALL, so that combination renders as the object.
            Self::Required { mode, .. } => {
                let mut map = Map::new();
                map.insert("type".into(), mode.as_str().into());
                Some(Value::Object(map))
            }
        }
    }
}

/// `agent` and `synchronized` may be a boolean or a jq template evaluated per run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BoolOrJq {
    Bool(bool),
    Jq(String),
}

impl BoolOrJq {
    fn to_value(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Jq(s) => Value::String(s.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Invocation methods
// ---------------------------------------------------------------------------------------

/// A `WEBHOOK` invocation method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookMethod {
    pub url: String,
    pub agent: Option<BoolOrJq>,
    pub synchronized: Option<BoolOrJq>,
    pub method: Option<String>,
    pub headers: Option<Map<String, Value>>,
    pub body: Option<Value>,
    /// Unknown keys (e.g. legacy `omitPayload`), in the order received.
    pub extra: Map<String, Value>,
}

impl WebhookMethod {
    const KEYS: [&'static str; 7] = [
        "type",
        "url",
        "agent",
        "synchronized",
        "method",
        "headers",
        "body",
    ];
    const METHODS: [&'static str; 5] = ["POST", "PUT", "PATCH", "DELETE", "GET"];

    fn parse(fields: &Fields<'_>) -> Result<Self, ActionError> {
        let url = fields.required_str("url")?.to_owned();
        let agent = fields.bool_or_jq("agent")?;
        let synchronized = fields.bool_or_jq("synchronized")?;
        let method = match fields.string("method")? {
            Some(m) if Self::METHODS.contains(&m) => Some(m.to_owned()),
            Some(m) => {
                return Err(ActionError::NotOneOf {
                    path: fields.path("method"),
                    allowed: "POST, PUT, PATCH, DELETE, GET",
                    got: describe_str(m),
                });
            }
            None => None,
        };
        let headers = match fields.object("headers")? {
            Some(headers) => {
                let path = fields.path("headers");
                for (name, value) in headers {
                    if !value.is_string() {
                        return Err(wrong_type(&join(&path, name), "a string", value));
                    }
                }
                Some(headers.clone())
            }
            None => None,
        };
        let body = match fields.get("body") {
            Some(body @ (Value::Object(_) | Value::Array(_))) => Some(body.clone()),
            Some(other) => {
                return Err(wrong_type(
                    &fields.path("body"),
                    "an object or an array",
                    other,
                ));
            }
            None => None,
        };
        Ok(Self {
            url,
            agent,
            synchronized,
            method,
            headers,
            body,
            extra: fields.rest(&Self::KEYS),
        })
    }

    /// The keys after `type`, in rendering order.
    fn write_fields(&self, out: &mut Map<String, Value>) {
        out.insert("url".into(), self.url.clone().into());
        if let Some(agent) = &self.agent {
            out.insert("agent".into(), agent.to_value());
        }
        if let Some(synchronized) = &self.synchronized {
            out.insert("synchronized".into(), synchronized.to_value());
        }
        if let Some(method) = &self.method {
            out.insert("method".into(), method.clone().into());
        }
        if let Some(headers) = &self.headers {
            out.insert("headers".into(), Value::Object(headers.clone()));
        }
        if let Some(body) = &self.body {
            out.insert("body".into(), body.clone());
        }
        extend(out, &self.extra);
    }
}

/// The `invocationMethod.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationKind {
    Webhook,
    Kafka,
    Github,
    Gitlab,
    AzureDevops,
    IntegrationAction,
    UpsertEntity,
}

/// The JSON shape a required invocation field must have.
#[derive(Clone, Copy)]
enum Shape {
    String,
    Object,
}

impl InvocationKind {
    pub const ALL: [Self; 7] = [
        Self::Webhook,
        Self::Kafka,
        Self::Github,
        Self::Gitlab,
        Self::AzureDevops,
        Self::IntegrationAction,
        Self::UpsertEntity,
    ];
    const ALLOWED: &'static str =
        "WEBHOOK, KAFKA, GITHUB, GITLAB, AZURE_DEVOPS, INTEGRATION_ACTION, UPSERT_ENTITY";

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "WEBHOOK",
            Self::Kafka => "KAFKA",
            Self::Github => "GITHUB",
            Self::Gitlab => "GITLAB",
            Self::AzureDevops => "AZURE_DEVOPS",
            Self::IntegrationAction => "INTEGRATION_ACTION",
            Self::UpsertEntity => "UPSERT_ENTITY",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    /// Required keys of the non-webhook kinds (port-api.md §4.3).
    fn required_fields(self) -> &'static [(&'static str, Shape)] {
        match self {
            Self::Webhook | Self::Kafka => &[],
            Self::Github => &[
                ("org", Shape::String),
                ("repo", Shape::String),
                ("workflow", Shape::String),
            ],
            Self::Gitlab => &[("projectName", Shape::String), ("groupName", Shape::String)],
            Self::AzureDevops => &[("webhook", Shape::String), ("org", Shape::String)],
            Self::IntegrationAction => &[
                ("installationId", Shape::String),
                ("integrationActionType", Shape::String),
                ("integrationActionExecutionProperties", Shape::Object),
            ],
            Self::UpsertEntity => &[
                ("blueprintIdentifier", Shape::String),
                ("mapping", Shape::Object),
            ],
        }
    }
}

impl fmt::Display for InvocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run is delivered to its backend.
#[expect(
    clippy::large_enum_variant,
    reason = "one per action and rarely moved; unboxed keeps matching on it plain"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationMethod {
    Webhook(WebhookMethod),
    /// Every other kind, kept as received (all keys but `type`, in order) once its
    /// required keys are checked; their meaning belongs to the invocation module.
    Other {
        kind: InvocationKind,
        fields: Map<String, Value>,
    },
}

impl InvocationMethod {
    const PATH: &'static str = "invocationMethod";

    pub fn kind(&self) -> InvocationKind {
        match self {
            Self::Webhook(_) => InvocationKind::Webhook,
            Self::Other { kind, .. } => *kind,
        }
    }

    fn parse(value: &Value) -> Result<Self, ActionError> {
        let fields = Fields::new(value, Self::PATH)?;
        let ty = fields.required_str("type")?;
        let kind = InvocationKind::parse(ty).ok_or_else(|| ActionError::NotOneOf {
            path: fields.path("type"),
            allowed: InvocationKind::ALLOWED,
            got: describe_str(ty),
        })?;
        if kind == InvocationKind::Webhook {
            return WebhookMethod::parse(&fields).map(Self::Webhook);
        }
        for &(key, shape) in kind.required_fields() {
            let Some(value) = fields.get(key) else {
                return Err(ActionError::MissingForKind {
                    path: fields.path(key),
                    kind,
                });
            };
            match shape {
                Shape::String if !value.is_string() => {
                    return Err(wrong_type(&fields.path(key), "a string", value));
                }
                Shape::Object if !value.is_object() => {
                    return Err(wrong_type(&fields.path(key), "an object", value));
                }
                _ => {}
            }
        }
        Ok(Self::Other {
            kind,
            fields: fields.rest(&["type"]),
        })
    }

    /// v2 puts `type` first.
    fn to_v2(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), self.kind().as_str().into());
        self.write_fields(&mut out);
        Value::Object(out)
    }

    /// Port's legacy payloads put `type` last (see the seed's `payload.action`).
    fn to_v1(&self) -> Value {
        let mut out = Map::new();
        self.write_fields(&mut out);
        out.insert("type".into(), self.kind().as_str().into());
        Value::Object(out)
    }

    fn write_fields(&self, out: &mut Map<String, Value>) {
        match self {
            Self::Webhook(webhook) => webhook.write_fields(out),
            Self::Other { fields, .. } => extend(out, fields),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------

/// A trigger of `type: "self-service"`: a user runs the action from the UI or the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfServiceTrigger {
    pub operation: Operation,
    pub blueprint_identifier: Option<BlueprintIdentifier>,
    /// The inputs form (`properties`, `required`, `order`, `steps`, ...), validated as a
    /// schema elsewhere.
    pub user_inputs: Map<String, Value>,
    pub condition: Option<Value>,
    /// Other keys (e.g. `actionCardButtonText`), in the order received.
    pub extra: Map<String, Value>,
}

/// What starts a run of the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    SelfService(SelfServiceTrigger),
    /// An automation trigger: every key but `type`, in the order received.
    Automation(Map<String, Value>),
}

impl Trigger {
    const PATH: &'static str = "trigger";

    fn parse_v2(value: &Value) -> Result<Self, ActionError> {
        let fields = Fields::new(value, Self::PATH)?;
        match fields.required_str("type")? {
            "self-service" => {
                let op = fields.required_str("operation")?;
                let operation = Operation::parse(op).ok_or_else(|| ActionError::NotOneOf {
                    path: fields.path("operation"),
                    allowed: Operation::ALLOWED,
                    got: describe_str(op),
                })?;
                let blueprint_identifier = fields
                    .string("blueprintIdentifier")?
                    .map(|bp| {
                        BlueprintIdentifier::parse(bp).map_err(|source| ActionError::Identifier {
                            path: fields.path("blueprintIdentifier"),
                            source,
                        })
                    })
                    .transpose()?;
                let user_inputs =
                    parse_user_inputs(fields.required("userInputs")?, &fields.path("userInputs"))?;
                let condition = fields.object("condition")?.cloned().map(Value::Object);
                Ok(Self::SelfService(SelfServiceTrigger {
                    operation,
                    blueprint_identifier,
                    user_inputs,
                    condition,
                    extra: fields.rest(&[
                        "type",
                        "operation",
                        "blueprintIdentifier",
                        "userInputs",
                        "condition",
                    ]),
                }))
            }
            "automation" => {
                let rest = fields.rest(&["type"]);
                crate::automation::AutomationTrigger::parse(&rest)
                    .map_err(|source| ActionError::Automation { source })?;
                Ok(Self::Automation(rest))
            }
            other => Err(ActionError::NotOneOf {
                path: fields.path("type"),
                allowed: "self-service, automation",
                got: describe_str(other),
            }),
        }
    }

    fn to_v2(&self) -> Value {
        let mut out = Map::new();
        match self {
            Self::SelfService(t) => {
                out.insert("type".into(), "self-service".into());
                out.insert("operation".into(), t.operation.as_str().into());
                if let Some(bp) = &t.blueprint_identifier {
                    out.insert("blueprintIdentifier".into(), bp.as_str().into());
                }
                out.insert("userInputs".into(), Value::Object(t.user_inputs.clone()));
                if let Some(condition) = &t.condition {
                    out.insert("condition".into(), condition.clone());
                }
                extend(&mut out, &t.extra);
            }
            Self::Automation(fields) => {
                out.insert("type".into(), "automation".into());
                extend(&mut out, fields);
            }
        }
        Value::Object(out)
    }
}

/// `userInputs` must be an object with an object `properties`; its schema content is
/// checked by the inputs module.
fn parse_user_inputs(value: &Value, path: &str) -> Result<Map<String, Value>, ActionError> {
    let fields = Fields::new(value, path)?;
    let properties = fields.required("properties")?;
    if !properties.is_object() {
        return Err(wrong_type(
            &fields.path("properties"),
            "an object",
            properties,
        ));
    }
    Ok(fields.map.clone())
}

// ---------------------------------------------------------------------------------------
// Definition
// ---------------------------------------------------------------------------------------

/// Keys the server sets; ignored when a client sends them back.
const SERVER_MANAGED: [&str; 5] = ["id", "createdAt", "createdBy", "updatedAt", "updatedBy"];

/// Top-level keys shared by both shapes.
const COMMON_KEYS: [&str; 10] = [
    "identifier",
    "title",
    "icon",
    "description",
    "invocationMethod",
    "requiredApproval",
    "approvalNotification",
    "publish",
    "allowAnyoneToViewRuns",
    "timeoutSeconds",
];

/// What a user writes: an action in Port's v2 shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionDefinition {
    pub identifier: ActionIdentifier,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub description: Option<String>,
    pub trigger: Trigger,
    pub invocation_method: InvocationMethod,
    pub required_approval: RequiredApproval,
    pub approval_notification: Option<Value>,
    pub publish: Option<bool>,
    pub allow_anyone_to_view_runs: Option<bool>,
    /// Our extension: runs of this action still IN_PROGRESS after this many seconds are
    /// failed by the reaper. Wire key `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// Unknown top-level keys, in the order received.
    pub extra: Map<String, Value>,
}

impl ActionDefinition {
    /// Parses Port's v2 shape. Server-managed keys (`id`, `createdAt`, ...) sent back by
    /// a client are ignored, not kept in `extra`.
    pub fn from_v2(value: &Value) -> Result<Self, ActionError> {
        let fields = Fields::new(value, "")?;
        let identifier = parse_identifier(&fields)?;
        let trigger = Trigger::parse_v2(fields.required("trigger")?)?;
        let mut handled = vec!["trigger"];
        handled.extend(COMMON_KEYS);
        handled.extend(SERVER_MANAGED);
        Self::parse_common(&fields, identifier, trigger, &handled)
    }

    /// Legacy shape: `trigger` is the operation string, `userInputs` is top level, the
    /// blueprint comes from the route. A `blueprint` key in the body, if present, must
    /// equal the route's. Server-managed keys in the body (`id`, `createdAt`,
    /// `createdBy`, `updatedAt`, `updatedBy`, `blueprint`) are ignored, not kept in
    /// `extra`.
    pub fn from_v1(value: &Value, blueprint: &BlueprintIdentifier) -> Result<Self, ActionError> {
        let fields = Fields::new(value, "")?;
        if let Some(body) = fields.string("blueprint")?
            && body != blueprint.as_str()
        {
            return Err(ActionError::BlueprintMismatch {
                body: body.to_owned(),
                route: blueprint.as_str().to_owned(),
            });
        }
        let identifier = parse_identifier(&fields)?;
        let op = fields.required_str("trigger")?;
        let operation = Operation::parse(op).ok_or_else(|| ActionError::NotOneOf {
            path: "trigger".into(),
            allowed: Operation::ALLOWED,
            got: describe_str(op),
        })?;
        let user_inputs = parse_user_inputs(fields.required("userInputs")?, "userInputs")?;
        let trigger = Trigger::SelfService(SelfServiceTrigger {
            operation,
            blueprint_identifier: Some(blueprint.clone()),
            user_inputs,
            condition: None,
            extra: Map::new(),
        });
        let mut handled = vec!["trigger", "userInputs", "blueprint"];
        handled.extend(COMMON_KEYS);
        handled.extend(SERVER_MANAGED);
        Self::parse_common(&fields, identifier, trigger, &handled)
    }

    fn parse_common(
        fields: &Fields<'_>,
        identifier: ActionIdentifier,
        trigger: Trigger,
        handled: &[&str],
    ) -> Result<Self, ActionError> {
        let title = fields.string("title")?.map(str::to_owned);
        let icon = fields.string("icon")?.map(str::to_owned);
        let description = fields.string("description")?.map(str::to_owned);
        let invocation_method = InvocationMethod::parse(fields.required("invocationMethod")?)?;
        // Templates are tenant code: refuse what could never render before it is stored.
        crate::template::check(
            &crate::invocation::method_templates(&invocation_method),
            &crate::template::SourceLimits::default(),
        )
        .map_err(|source| ActionError::Template { source })?;
        let required_approval = RequiredApproval::parse(fields.get("requiredApproval"))?;
        let approval_notification = fields
            .object("approvalNotification")?
            .cloned()
            .map(Value::Object);
        let publish = fields.boolean("publish")?;
        let allow_anyone_to_view_runs = fields.boolean("allowAnyoneToViewRuns")?;
        let timeout_seconds = match fields.get("timeoutSeconds") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Some(n),
                _ => {
                    return Err(wrong_type(
                        &fields.path("timeoutSeconds"),
                        "a positive integer",
                        v,
                    ));
                }
            },
        };
        Ok(Self {
            identifier,
            title,
            icon,
            description,
            trigger,
            invocation_method,
            required_approval,
            approval_notification,
            publish,
            allow_anyone_to_view_runs,
            timeout_seconds,
            extra: fields.rest(handled),
        })
    }

    pub fn to_v2(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("identifier".into(), self.identifier.as_str().into());
        insert_opt_str(&mut out, "title", self.title.as_deref());
        insert_opt_str(&mut out, "icon", self.icon.as_deref());
        insert_opt_str(&mut out, "description", self.description.as_deref());
        out.insert("trigger".into(), self.trigger.to_v2());
        out.insert("invocationMethod".into(), self.invocation_method.to_v2());
        self.write_tail(&mut out, true);
        out
    }

    /// None for automations or actions without a blueprint (no v1 view exists for them).
    pub fn to_v1(&self) -> Option<Map<String, Value>> {
        let Trigger::SelfService(trigger) = &self.trigger else {
            return None;
        };
        trigger.blueprint_identifier.as_ref()?;
        let mut out = Map::new();
        out.insert("identifier".into(), self.identifier.as_str().into());
        insert_opt_str(&mut out, "title", self.title.as_deref());
        insert_opt_str(&mut out, "icon", self.icon.as_deref());
        out.insert(
            "userInputs".into(),
            Value::Object(trigger.user_inputs.clone()),
        );
        out.insert("invocationMethod".into(), self.invocation_method.to_v1());
        out.insert("trigger".into(), trigger.operation.as_str().into());
        self.write_tail(&mut out, false);
        Some(out)
    }

    /// Keys after the trigger and invocation method. v1 puts `description` after the
    /// approval keys, as Port's legacy payloads do.
    fn write_tail(&self, out: &mut Map<String, Value>, v2: bool) {
        if let Some(approval) = self.required_approval.to_value() {
            out.insert("requiredApproval".into(), approval);
        }
        if let Some(notification) = &self.approval_notification {
            out.insert("approvalNotification".into(), notification.clone());
        }
        if !v2 {
            insert_opt_str(out, "description", self.description.as_deref());
        }
        if let Some(publish) = self.publish {
            out.insert("publish".into(), publish.into());
        }
        if let Some(allow) = self.allow_anyone_to_view_runs {
            out.insert("allowAnyoneToViewRuns".into(), allow.into());
        }
        if let Some(timeout) = self.timeout_seconds {
            out.insert("timeoutSeconds".into(), timeout.into());
        }
        extend(out, &self.extra);
    }

    pub fn blueprint(&self) -> Option<&BlueprintIdentifier> {
        match &self.trigger {
            Trigger::SelfService(t) => t.blueprint_identifier.as_ref(),
            Trigger::Automation(_) => None,
        }
    }

    pub fn operation(&self) -> Option<Operation> {
        match &self.trigger {
            Trigger::SelfService(t) => Some(t.operation),
            Trigger::Automation(_) => None,
        }
    }

    pub fn user_inputs(&self) -> Option<&Map<String, Value>> {
        match &self.trigger {
            Trigger::SelfService(t) => Some(&t.user_inputs),
            Trigger::Automation(_) => None,
        }
    }

    /// The automation trigger, when the action is an automation (checked when saved).
    pub fn automation(&self) -> Option<crate::automation::AutomationTrigger> {
        match &self.trigger {
            Trigger::Automation(fields) => crate::automation::AutomationTrigger::parse(fields).ok(),
            Trigger::SelfService(_) => None,
        }
    }

    pub fn is_self_service(&self) -> bool {
        matches!(self.trigger, Trigger::SelfService(_))
    }
}

fn parse_identifier(fields: &Fields<'_>) -> Result<ActionIdentifier, ActionError> {
    ActionIdentifier::parse(fields.required_str("identifier")?).map_err(|source| {
        ActionError::Identifier {
            path: "identifier".into(),
            source,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Stored action
// ---------------------------------------------------------------------------------------

/// What the server adds to a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionMeta {
    pub id: ActionId,
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

impl ActionMeta {
    fn write(&self, out: &mut Map<String, Value>) {
        out.insert("createdAt".into(), self.created_at.to_string().into());
        out.insert("createdBy".into(), self.created_by.clone().into());
        out.insert("updatedAt".into(), self.updated_at.to_string().into());
        out.insert("updatedBy".into(), self.updated_by.clone().into());
    }
}

/// A stored action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub meta: ActionMeta,
    pub definition: ActionDefinition,
}

impl Action {
    /// v2 view with `id`, `createdAt`, `createdBy`, `updatedAt`, `updatedBy` after the
    /// definition's keys.
    pub fn to_v2_json(&self) -> Value {
        let mut out = self.definition.to_v2();
        out.insert("id".into(), self.meta.id.as_str().into());
        self.meta.write(&mut out);
        Value::Object(out)
    }

    /// Exactly the shape of the seed's `payload.action`: `id` first, then the v1 view,
    /// then `blueprint` and the timestamps. None where no v1 view exists.
    pub fn to_v1_json(&self) -> Option<Value> {
        let blueprint = self.definition.blueprint()?;
        let body = self.definition.to_v1()?;
        let mut out = Map::new();
        out.insert("id".into(), self.meta.id.as_str().into());
        extend(&mut out, &body);
        out.insert("blueprint".into(), blueprint.as_str().into());
        self.meta.write(&mut out);
        Some(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why an action body was refused; each names the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("{path}: is required")]
    Missing { path: String },
    #[error("{path}: is required when invocationMethod.type is {kind}")]
    MissingForKind { path: String, kind: InvocationKind },
    #[error("{path}: must be {expected}, got {got}")]
    WrongType {
        path: String,
        expected: &'static str,
        got: String,
    },
    #[error("{path}: must be one of {allowed}, got {got}")]
    NotOneOf {
        path: String,
        allowed: &'static str,
        got: String,
    },
    #[error("{path}: is not allowed")]
    NotAllowed { path: String },
    #[error("{path}: {source}")]
    Identifier { path: String, source: IdError },
    #[error("blueprint: the body names blueprint {body:?} but the route names {route:?}")]
    BlueprintMismatch { body: String, route: String },
    #[error("{source}")]
    Automation {
        #[source]
        source: crate::automation::TriggerError,
    },
    #[error("invocationMethod: {source}")]
    Template {
        #[source]
        source: crate::template::TemplateError,
    },
}

impl From<ActionError> for PortError {
    fn from(e: ActionError) -> Self {
        PortError::invalid(e.to_string())
    }
}

fn wrong_type(path: &str, expected: &'static str, got: &Value) -> ActionError {
    ActionError::WrongType {
        path: path.to_owned(),
        expected,
        got: describe(got),
    }
}

/// A short description of a received value for messages; strings are not echoed
/// because they may be long or secret.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A received enum-like string, quoted, and cut short so messages stay small.
fn describe_str(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

// ---------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn extend(out: &mut Map<String, Value>, from: &Map<String, Value>) {
    out.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
}

fn insert_opt_str(out: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        out.insert(key.to_owned(), value.into());
    }
}

/// An object being read, with its path for error messages (empty at the root).
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, path: &'a str) -> Result<Self, ActionError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            other => {
                let shown = if path.is_empty() { "action" } else { path };
                Err(wrong_type(shown, "an object", other))
            }
        }
    }

    fn path(&self, key: &str) -> String {
        join(self.path, key)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, ActionError> {
        self.get(key).ok_or_else(|| ActionError::Missing {
            path: self.path(key),
        })
    }

    fn required_str(&self, key: &str) -> Result<&'a str, ActionError> {
        let value = self.required(key)?;
        value
            .as_str()
            .ok_or_else(|| wrong_type(&self.path(key), "a string", value))
    }

    /// Absent is `None`; `null` is refused like any other wrong type, because it could
    /// not be rendered back.
    fn string(&self, key: &str) -> Result<Option<&'a str>, ActionError> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong_type(&self.path(key), "a string", v))
            })
            .transpose()
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ActionError> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| wrong_type(&self.path(key), "a boolean", v))
            })
            .transpose()
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ActionError> {
        self.get(key)
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| wrong_type(&self.path(key), "an object", v))
            })
            .transpose()
    }

    fn bool_or_jq(&self, key: &str) -> Result<Option<BoolOrJq>, ActionError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(BoolOrJq::Bool(*b))),
            Some(Value::String(s)) => Ok(Some(BoolOrJq::Jq(s.clone()))),
            Some(other) => Err(wrong_type(
                &self.path(key),
                "a boolean or a jq string",
                other,
            )),
        }
    }

    /// The keys not handled, in the order received.
    fn rest(&self, handled: &[&str]) -> Map<String, Value> {
        self.map
            .iter()
            .filter(|(k, _)| !handled.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;
    use crate::testing::seed::{CREATE_MICROSERVICE, CREATE_PAYLOAD_ACTION, DEPLOY_MICROSERVICE};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn microservice() -> BlueprintIdentifier {
        BlueprintIdentifier::parse("microservice").unwrap()
    }

    fn seed_meta() -> ActionMeta {
        let at = Timestamp::parse("2022-12-07T09:48:28.659Z").unwrap();
        ActionMeta {
            id: ActionId::parse("action_ed2B0O9CbEYkuqvN").unwrap(),
            created_at: at,
            created_by: "auth0|638879fa62c686d381b36ecb".into(),
            updated_at: at,
            updated_by: "auth0|638879fa62c686d381b36ecb".into(),
        }
    }

    fn v2_err(value: Value) -> String {
        ActionDefinition::from_v2(&value).unwrap_err().to_string()
    }

    fn v1_err(value: Value) -> String {
        ActionDefinition::from_v1(&value, &microservice())
            .unwrap_err()
            .to_string()
    }

    fn minimal_v2() -> Value {
        json!({
            "identifier": "deploy",
            "trigger": {
                "type": "self-service",
                "operation": "DAY-2",
                "userInputs": { "properties": {} }
            },
            "invocationMethod": { "type": "WEBHOOK", "url": "https://example.com" }
        })
    }

    #[test]
    fn seed_actions_round_trip_through_v1() {
        for (text, op) in [
            (CREATE_MICROSERVICE, Operation::Create),
            (DEPLOY_MICROSERVICE, Operation::Day2),
        ] {
            let v1 = parse(text);
            let def = ActionDefinition::from_v1(&v1, &microservice()).unwrap();
            assert_eq!(def.operation(), Some(op));
            assert_eq!(def.blueprint(), Some(&microservice()));
            assert!(def.is_self_service());
            let back = Value::Object(def.to_v1().unwrap());
            assert_eq!(back, v1);
            // Key order too, including `type` last in the invocation method.
            assert_eq!(back.to_string(), v1.to_string());

            let v2 = Value::Object(def.to_v2());
            assert_eq!(v2["trigger"]["type"], "self-service");
            assert_eq!(v2["trigger"]["operation"], op.as_str());
            assert_eq!(v2["trigger"]["blueprintIdentifier"], "microservice");
            assert_eq!(v2["trigger"]["userInputs"], v1["userInputs"]);
            assert_eq!(ActionDefinition::from_v2(&v2).unwrap(), def);
        }
    }

    #[test]
    fn seed_create_action_renders_as_the_payload_action() {
        let def = ActionDefinition::from_v1(&parse(CREATE_MICROSERVICE), &microservice()).unwrap();
        let action = Action {
            meta: seed_meta(),
            definition: def,
        };
        let expected = parse(CREATE_PAYLOAD_ACTION);
        let got = action.to_v1_json().unwrap();
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn v1_server_managed_keys_are_ignored_and_restored_by_the_meta() {
        let input = parse(CREATE_PAYLOAD_ACTION);
        let def = ActionDefinition::from_v1(&input, &microservice()).unwrap();
        assert!(def.extra.is_empty());
        let action = Action {
            meta: seed_meta(),
            definition: def,
        };
        assert_eq!(action.to_v1_json().unwrap().to_string(), input.to_string());
    }

    #[test]
    fn v2_json_appends_the_meta() {
        let def = ActionDefinition::from_v2(&minimal_v2()).unwrap();
        let action = Action {
            meta: seed_meta(),
            definition: def,
        };
        let v2 = action.to_v2_json();
        let keys: Vec<_> = v2.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "identifier",
                "trigger",
                "invocationMethod",
                "id",
                "createdAt",
                "createdBy",
                "updatedAt",
                "updatedBy"
            ]
        );
        // Sending it back (as GET-then-PUT clients do) gives the same definition.
        assert_eq!(ActionDefinition::from_v2(&v2).unwrap(), action.definition);
        // No blueprint: no v1 view.
        assert_eq!(action.to_v1_json(), None);
    }

    #[test]
    fn automations_have_no_v1_view() {
        let v2 = json!({
            "identifier": "on_create",
            "trigger": {
                "type": "automation",
                "event": { "type": "ENTITY_CREATED", "blueprintIdentifier": "service" },
                "condition": { "type": "JQ", "expressions": [], "combinator": "and" }
            },
            "invocationMethod": { "type": "KAFKA" },
            "publish": true
        });
        let def = ActionDefinition::from_v2(&v2).unwrap();
        assert!(!def.is_self_service());
        assert_eq!(def.operation(), None);
        assert_eq!(def.user_inputs(), None);
        assert_eq!(def.to_v1(), None);
        assert_eq!(Value::Object(def.to_v2()).to_string(), v2.to_string());
    }

    #[test]
    fn required_approval_keeps_its_wire_form() {
        for (wire, required, mode) in [
            (None, false, None),
            (Some(json!(false)), false, None),
            (Some(json!(true)), true, Some(ApprovalMode::Any)),
            (Some(json!({"type": "ANY"})), true, Some(ApprovalMode::Any)),
            (Some(json!({"type": "ALL"})), true, Some(ApprovalMode::All)),
        ] {
            let mut v2 = minimal_v2();
            if let Some(wire) = &wire {
                v2["requiredApproval"] = wire.clone();
            }
            let def = ActionDefinition::from_v2(&v2).unwrap();
            assert_eq!(def.required_approval.is_required(), required);
            assert_eq!(def.required_approval.mode(), mode);
            assert_eq!(Value::Object(def.to_v2()), v2);
        }
    }

    #[test]
    fn error_messages_name_the_field() {
        let mut v = minimal_v2();
        v.as_object_mut().unwrap().remove("identifier");
        assert_eq!(v2_err(v), "identifier: is required");

        let mut v = minimal_v2();
        v["identifier"] = json!("..");
        assert!(v2_err(v).starts_with("identifier: "));

        let mut v = minimal_v2();
        v["trigger"]["operation"] = json!("UPDATE");
        assert_eq!(
            v2_err(v),
            r#"trigger.operation: must be one of CREATE, DAY-2, DELETE, got "UPDATE""#
        );

        let mut v = minimal_v2();
        v["trigger"]["type"] = json!("cron");
        assert!(v2_err(v).starts_with("trigger.type: must be one of self-service, automation"));

        let mut v = minimal_v2();
        v["trigger"].as_object_mut().unwrap().remove("userInputs");
        assert_eq!(v2_err(v), "trigger.userInputs: is required");

        let mut v = minimal_v2();
        v["trigger"]["userInputs"] = json!({});
        assert_eq!(v2_err(v), "trigger.userInputs.properties: is required");

        let mut v = minimal_v2();
        v["invocationMethod"]["type"] = json!("SMTP");
        assert!(v2_err(v).starts_with("invocationMethod.type: must be one of WEBHOOK, KAFKA"));

        let mut v = minimal_v2();
        v["invocationMethod"]
            .as_object_mut()
            .unwrap()
            .remove("type");
        assert_eq!(v2_err(v), "invocationMethod.type: is required");

        let mut v = minimal_v2();
        v["invocationMethod"].as_object_mut().unwrap().remove("url");
        assert_eq!(v2_err(v), "invocationMethod.url: is required");

        let mut v = minimal_v2();
        v["invocationMethod"]["agent"] = json!(1);
        assert_eq!(
            v2_err(v),
            "invocationMethod.agent: must be a boolean or a jq string, got 1"
        );

        let mut v = minimal_v2();
        v["invocationMethod"]["headers"] = json!({"X-Run": 1});
        assert_eq!(
            v2_err(v),
            "invocationMethod.headers.X-Run: must be a string, got 1"
        );

        let mut v = minimal_v2();
        v["invocationMethod"] = json!({"type": "GITHUB", "org": "o", "workflow": "w.yml"});
        assert_eq!(
            v2_err(v),
            "invocationMethod.repo: is required when invocationMethod.type is GITHUB"
        );

        let mut v = minimal_v2();
        v["requiredApproval"] = json!({"type": "SOME"});
        assert!(v2_err(v).starts_with("requiredApproval.type: must be one of ANY, ALL"));

        let mut v = minimal_v2();
        v["timeoutSeconds"] = json!(0);
        assert_eq!(
            v2_err(v),
            "timeoutSeconds: must be a positive integer, got 0"
        );

        let mut v = minimal_v2();
        v["title"] = Value::Null;
        assert_eq!(v2_err(v), "title: must be a string, got null");

        assert_eq!(v2_err(json!([])), "action: must be an object, got an array");
    }

    #[test]
    fn v1_error_messages_name_the_field() {
        let mut v = parse(CREATE_MICROSERVICE);
        v["trigger"] = json!("UPDATE");
        assert_eq!(
            v1_err(v),
            r#"trigger: must be one of CREATE, DAY-2, DELETE, got "UPDATE""#
        );

        let mut v = parse(CREATE_MICROSERVICE);
        v["blueprint"] = json!("service");
        assert_eq!(
            v1_err(v),
            r#"blueprint: the body names blueprint "service" but the route names "microservice""#
        );

        let mut v = parse(CREATE_MICROSERVICE);
        v.as_object_mut().unwrap().remove("userInputs");
        assert_eq!(v1_err(v), "userInputs: is required");

        let mut v = parse(CREATE_MICROSERVICE);
        v.as_object_mut().unwrap().remove("identifier");
        assert_eq!(v1_err(v), "identifier: is required");
    }

    #[test]
    fn action_errors_are_invalid_requests() {
        let err: PortError = ActionDefinition::from_v2(&json!({})).unwrap_err().into();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(err.message, "identifier: is required");
    }

    #[test]
    fn unknown_keys_are_kept_in_order() {
        let v2 = json!({
            "identifier": "deploy",
            "trigger": {
                "type": "self-service",
                "operation": "DAY-2",
                "blueprintIdentifier": "service",
                "userInputs": { "properties": {}, "order": [] },
                "condition": { "type": "SEARCH", "combinator": "and", "rules": [] },
                "executeActionButtonText": "Go",
                "actionCardButtonText": "Deploy"
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": "https://example.com",
                "zeta": 1,
                "alpha": 2
            },
            "zz": true,
            "aa": false
        });
        let def = ActionDefinition::from_v2(&v2).unwrap();
        assert_eq!(Value::Object(def.to_v2()).to_string(), v2.to_string());
        assert_eq!(def.extra.keys().collect::<Vec<_>>(), ["zz", "aa"]);
    }

    // ---- property tests ----

    fn ident() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,15}"
    }

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,24}"
    }

    fn user_inputs() -> impl Strategy<Value = Value> {
        let ty = prop::sample::select(vec!["string", "number", "boolean", "object", "array"]);
        let property = ("[a-zA-Z][a-zA-Z0-9_]{0,10}", ty, prop::option::of(text()));
        (
            prop::collection::vec(property, 0..5),
            prop::option::of(prop::collection::vec(ident(), 0..3)),
        )
            .prop_map(|(props, required)| {
                let mut properties = Map::new();
                for (key, ty, title) in props {
                    let mut p = Map::new();
                    if let Some(title) = title {
                        p.insert("title".into(), title.into());
                    }
                    p.insert("type".into(), ty.into());
                    properties.insert(key, Value::Object(p));
                }
                let mut out = Map::new();
                out.insert("properties".into(), Value::Object(properties));
                if let Some(required) = required {
                    out.insert("required".into(), required.into());
                }
                Value::Object(out)
            })
    }

    fn bool_or_jq() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            "[a-z]{1,8}".prop_map(|k| Value::String(format!("{{{{ .inputs.{k} }}}}"))),
        ]
    }

    fn approval() -> impl Strategy<Value = Option<Value>> {
        prop::sample::select(vec![
            None,
            Some(json!(false)),
            Some(json!(true)),
            Some(json!({"type": "ANY"})),
            Some(json!({"type": "ALL"})),
        ])
    }

    fn operation() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["CREATE", "DAY-2", "DELETE"])
    }

    fn http_method() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["POST", "PUT", "PATCH", "DELETE", "GET"])
    }

    /// Webhook fields after `type`, in canonical order.
    fn webhook_fields(with_v2_keys: bool) -> impl Strategy<Value = Map<String, Value>> {
        (
            "[a-z]{1,10}",
            prop::option::of(bool_or_jq()),
            prop::option::of(bool_or_jq()),
            prop::option::of(http_method()),
            prop::option::of(prop::collection::btree_map(
                "[A-Za-z-]{1,10}",
                "[ -~]{0,10}",
                0..3,
            )),
            prop::option::of(Just(json!({"runId": "{{ .run.id }}"}))),
        )
            .prop_map(move |(host, agent, sync, method, headers, body)| {
                let mut m = Map::new();
                m.insert("url".into(), format!("https://{host}.example.com").into());
                if let Some(agent) = agent {
                    m.insert("agent".into(), agent);
                }
                if let Some(sync) = sync {
                    m.insert("synchronized".into(), sync);
                }
                if let Some(method) = method {
                    m.insert("method".into(), method.into());
                }
                if with_v2_keys {
                    if let Some(headers) = headers {
                        let headers: Map<String, Value> =
                            headers.into_iter().map(|(k, v)| (k, v.into())).collect();
                        m.insert("headers".into(), headers.into());
                    }
                    if let Some(body) = body {
                        m.insert("body".into(), body);
                    }
                }
                m
            })
    }

    /// Non-webhook kinds with their required keys and an optional extra one.
    fn other_method() -> impl Strategy<Value = Map<String, Value>> {
        let kind = prop::sample::select(vec![
            InvocationKind::Kafka,
            InvocationKind::Github,
            InvocationKind::Gitlab,
            InvocationKind::AzureDevops,
            InvocationKind::IntegrationAction,
            InvocationKind::UpsertEntity,
        ]);
        (kind, ident(), prop::option::of(any::<bool>())).prop_map(|(kind, name, extra)| {
            let mut m = Map::new();
            m.insert("type".into(), kind.as_str().into());
            for &(key, shape) in kind.required_fields() {
                let value = match shape {
                    Shape::String => Value::String(name.clone()),
                    Shape::Object => json!({ "identifier": "{{ .inputs.name }}" }),
                };
                m.insert(key.into(), value);
            }
            if let Some(extra) = extra {
                m.insert("reportWorkflowStatus".into(), extra.into());
            }
            m
        })
    }

    fn v1_action() -> impl Strategy<Value = Value> {
        (
            ident(),
            text(),
            prop::option::of(text()),
            prop::option::of(text()),
            user_inputs(),
            webhook_fields(false),
            operation(),
            approval(),
        )
            .prop_map(
                |(identifier, title, icon, description, inputs, mut webhook, op, approval)| {
                    let mut m = Map::new();
                    m.insert("identifier".into(), identifier.into());
                    m.insert("title".into(), title.into());
                    if let Some(icon) = icon {
                        m.insert("icon".into(), icon.into());
                    }
                    m.insert("userInputs".into(), inputs);
                    webhook.insert("type".into(), "WEBHOOK".into());
                    m.insert("invocationMethod".into(), webhook.into());
                    m.insert("trigger".into(), op.into());
                    if let Some(approval) = approval {
                        m.insert("requiredApproval".into(), approval);
                    }
                    if let Some(description) = description {
                        m.insert("description".into(), description.into());
                    }
                    Value::Object(m)
                },
            )
    }

    fn v2_trigger() -> impl Strategy<Value = Value> {
        let self_service = (
            operation(),
            prop::option::of(ident()),
            user_inputs(),
            prop::option::of(Just(
                json!({"type": "SEARCH", "combinator": "and", "rules": []}),
            )),
            prop::option::of(text()),
        )
            .prop_map(|(op, bp, inputs, condition, button)| {
                let mut m = Map::new();
                m.insert("type".into(), "self-service".into());
                m.insert("operation".into(), op.into());
                if let Some(bp) = bp {
                    m.insert("blueprintIdentifier".into(), bp.into());
                }
                m.insert("userInputs".into(), inputs);
                if let Some(condition) = condition {
                    m.insert("condition".into(), condition);
                }
                if let Some(button) = button {
                    m.insert("actionCardButtonText".into(), button.into());
                }
                Value::Object(m)
            });
        let automation = ident().prop_map(|bp| {
            json!({
                "type": "automation",
                "event": { "type": "ENTITY_UPDATED", "blueprintIdentifier": bp }
            })
        });
        prop_oneof![3 => self_service, 1 => automation]
    }

    fn v2_method() -> impl Strategy<Value = Value> {
        let webhook = webhook_fields(true).prop_map(|fields| {
            let mut m = Map::new();
            m.insert("type".into(), "WEBHOOK".into());
            extend(&mut m, &fields);
            Value::Object(m)
        });
        prop_oneof![webhook, other_method().prop_map(Value::Object)]
    }

    fn v2_action() -> impl Strategy<Value = Value> {
        (
            (
                ident(),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
            ),
            v2_trigger(),
            v2_method(),
            approval(),
            prop::option::of(Just(json!({"type": "email"}))),
            (
                prop::option::of(any::<bool>()),
                prop::option::of(any::<bool>()),
                prop::option::of(1u64..1_000_000),
                prop::option::of(text()),
            ),
        )
            .prop_map(
                |(
                    (identifier, title, icon, description),
                    trigger,
                    method,
                    approval,
                    notification,
                    (publish, allow, timeout, extra),
                )| {
                    let mut m = Map::new();
                    m.insert("identifier".into(), identifier.into());
                    let opts = [
                        ("title", title),
                        ("icon", icon),
                        ("description", description),
                    ];
                    for (key, value) in opts {
                        if let Some(value) = value {
                            m.insert(key.into(), value.into());
                        }
                    }
                    m.insert("trigger".into(), trigger);
                    m.insert("invocationMethod".into(), method);
                    if let Some(approval) = approval {
                        m.insert("requiredApproval".into(), approval);
                    }
                    if let Some(notification) = notification {
                        m.insert("approvalNotification".into(), notification);
                    }
                    if let Some(publish) = publish {
                        m.insert("publish".into(), publish.into());
                    }
                    if let Some(allow) = allow {
                        m.insert("allowAnyoneToViewRuns".into(), allow.into());
                    }
                    if let Some(timeout) = timeout {
                        m.insert("timeoutSeconds".into(), timeout.into());
                    }
                    if let Some(extra) = extra {
                        m.insert("x-custom".into(), extra.into());
                    }
                    Value::Object(m)
                },
            )
    }

    proptest! {
        #[test]
        fn v1_round_trips(v1 in v1_action()) {
            let def = ActionDefinition::from_v1(&v1, &microservice()).unwrap();
            let back = Value::Object(def.to_v1().unwrap());
            prop_assert_eq!(&back, &v1);
            prop_assert_eq!(back.to_string(), v1.to_string());
            // The v2 view of a v1 action reads back to the same model.
            let v2 = Value::Object(def.to_v2());
            prop_assert_eq!(ActionDefinition::from_v2(&v2).unwrap(), def);
        }

        #[test]
        fn v2_round_trips(v2 in v2_action()) {
            let def = ActionDefinition::from_v2(&v2).unwrap();
            let back = Value::Object(def.to_v2());
            prop_assert_eq!(&back, &v2);
            prop_assert_eq!(back.to_string(), v2.to_string());
            // Where a v1 view exists it reads back to the same model, minus what v1
            // cannot carry (the trigger's condition and extra keys).
            if let Some(bp) = def.blueprint() {
                let v1 = Value::Object(def.to_v1().unwrap());
                let again = ActionDefinition::from_v1(&v1, bp).unwrap();
                prop_assert_eq!(again.to_v1(), def.to_v1());
            }
        }
    }
}
