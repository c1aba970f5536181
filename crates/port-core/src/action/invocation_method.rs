//! How a run is delivered: the `invocationMethod` of an action, a `WEBHOOK` parsed field
//! by field, every other kind kept as received once its required keys are checked.

use std::fmt;

use serde_json::{Map, Value};

use super::error::{ActionError, describe_str, wrong_type};
use super::fields::{Fields, extend, join};

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
pub(super) enum Shape {
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
    pub(super) fn required_fields(self) -> &'static [(&'static str, Shape)] {
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

    pub(super) fn parse(value: &Value) -> Result<Self, ActionError> {
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
    pub(super) fn to_v2(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), self.kind().as_str().into());
        self.write_fields(&mut out);
        Value::Object(out)
    }

    /// Port's legacy payloads put `type` last (see the seed's `payload.action`).
    pub(super) fn to_v1(&self) -> Value {
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
