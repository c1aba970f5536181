//! Invocations: what a run's backend receives, and how it is rendered.
//!
//! Two bodies exist. The legacy message (the seed's "invocation body") is fixed by
//! Port's v1 API and is sent when a WEBHOOK method has no `body` template. A v2
//! `body` template is evaluated with jq against the trigger data
//! (`{inputs, trigger, entity, action, run, secrets}`). Either way the evaluated
//! method (`type`, `url`, `method`, `headers`, `body`, `agent`, `synchronized`) is
//! what a run stores as its `payload` and what the delivery worker sends.

use serde_json::{Map, Value, json};

use crate::action::{Action, BoolOrJq, InvocationKind, InvocationMethod, RequiredApproval};
use crate::catalog::Entity;
use crate::error::{ErrorKind, PortError};
use crate::id::{OrgId, RunId};
use crate::ports::DeliveryMode;
use crate::run::RunSource;
use crate::template::{self, TemplateError};
use crate::time::Timestamp;

/// Who triggered a run, as far as portd knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// A user id, or the client id of a machine caller.
    pub user_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl Actor {
    pub fn machine(client_id: &str) -> Self {
        Self {
            user_id: client_id.to_owned(),
            ..Self::default()
        }
    }

    fn user_json(&self) -> Value {
        json!({
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "id": self.user_id,
        })
    }
}

/// Everything an invocation is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct InvocationInput<'a> {
    pub org_id: &'a OrgId,
    pub action: &'a Action,
    pub run_id: &'a RunId,
    /// The entity a DAY-2 or DELETE run acts on.
    pub entity: Option<&'a Entity>,
    /// The validated user inputs.
    pub properties: &'a Map<String, Value>,
    pub actor: &'a Actor,
    pub origin: RunSource,
    pub at: Timestamp,
    /// Keys of inputs marked for encryption (`censoredProperties`).
    pub secret_keys: &'a [String],
    /// Organization secrets, visible to templates as `.secrets`.
    pub secrets: &'a Map<String, Value>,
}

fn trigger_by(input: &InvocationInput<'_>) -> Value {
    json!({
        "orgId": input.org_id,
        "userId": input.actor.user_id,
        "user": input.actor.user_json(),
    })
}

/// The legacy (v1) message, exactly the structure of the seed's invocation body.
pub fn legacy_message(input: &InvocationInput<'_>) -> Value {
    let blueprint = input.action.definition.blueprint();
    json!({
        "action": input.action.definition.identifier,
        "resourceType": "run",
        "status": "TRIGGERED",
        "trigger": {
            "by": trigger_by(input),
            "origin": input.origin.as_str(),
            "at": input.at,
        },
        "context": {
            "entity": input.entity.map(|e| e.identifier.as_str()),
            "blueprint": blueprint,
            "runId": input.run_id,
        },
        "payload": {
            "entity": input.entity.map(Entity::to_json),
            "action": input.action.to_v1_json().unwrap_or_else(|| input.action.to_v2_json()),
            "properties": input.properties,
        },
    })
}

/// The trigger data v2 templates are evaluated against.
pub fn template_context(input: &InvocationInput<'_>) -> Value {
    let def = &input.action.definition;
    json!({
        "inputs": input.properties,
        "trigger": {
            "by": trigger_by(input),
            "origin": input.origin.as_str(),
            "at": input.at,
            "operation": def.operation().map(|o| o.as_str()),
        },
        "event": null,
        "entity": input.entity.map_or_else(|| json!({}), Entity::to_json),
        "action": {
            "identifier": def.identifier,
            "blueprint": def.blueprint(),
            "encryptedProperties": input.secret_keys,
        },
        "run": { "id": input.run_id },
        "secrets": input.secrets,
    })
}

/// A delivery the run needs once it is `IN_PROGRESS`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDelivery {
    pub mode: DeliveryMode,
    /// The evaluated method; for webhooks `{url, method, headers, body, …}`.
    pub request: Value,
    pub synchronized: bool,
    pub installation_id: Option<String>,
}

/// The evaluated invocation of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedInvocation {
    /// Stored on the run as `payload`.
    pub payload: Value,
    pub delivery: PlannedDelivery,
}

impl EvaluatedInvocation {
    pub fn synchronized(&self) -> bool {
        self.delivery.synchronized
    }
}

fn evaluation_error(e: &TemplateError) -> PortError {
    PortError::new(ErrorKind::EvaluateInvocationMethodError, e.to_string())
}

fn invalid_evaluated(message: impl Into<String>) -> PortError {
    PortError::new(ErrorKind::InvalidEvaluatedInvocationMethod, message)
}

fn evaluate_flag(flag: Option<&BoolOrJq>, name: &str, context: &Value) -> Result<bool, PortError> {
    match flag {
        None => Ok(false),
        Some(BoolOrJq::Bool(b)) => Ok(*b),
        Some(BoolOrJq::Jq(t)) => {
            match template::render_str(t, context).map_err(|e| evaluation_error(&e))? {
                Value::Bool(b) => Ok(b),
                Value::Null => Ok(false),
                other => Err(invalid_evaluated(format!(
                    "invocationMethod.{name} must evaluate to a boolean, got {other}"
                ))),
            }
        }
    }
}

const METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "DELETE", "GET"];

/// Evaluates an action's invocation method for one run.
pub fn evaluate(input: &InvocationInput<'_>) -> Result<EvaluatedInvocation, PortError> {
    let context = template_context(input);
    match &input.action.definition.invocation_method {
        InvocationMethod::Webhook(webhook) => {
            let url = match template::render_str(&webhook.url, &context)
                .map_err(|e| evaluation_error(&e))?
            {
                Value::String(s) => s,
                other => {
                    return Err(invalid_evaluated(format!(
                        "invocationMethod.url must evaluate to a string, got {other}"
                    )));
                }
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(invalid_evaluated(format!(
                    "invocationMethod.url must be an http or https URL, got {url:?}"
                )));
            }
            let method = match &webhook.method {
                None => "POST".to_owned(),
                Some(m) => {
                    match template::render_str(m, &context).map_err(|e| evaluation_error(&e))? {
                        Value::String(s) if METHODS.contains(&s.to_ascii_uppercase().as_str()) => {
                            s.to_ascii_uppercase()
                        }
                        other => {
                            return Err(invalid_evaluated(format!(
                                "invocationMethod.method must be one of POST, PUT, PATCH, DELETE, GET, got {other}"
                            )));
                        }
                    }
                }
            };
            let mut headers = Map::new();
            if let Some(template_headers) = &webhook.headers {
                let rendered = template::render(&Value::Object(template_headers.clone()), &context)
                    .map_err(|e| evaluation_error(&e))?;
                for (name, value) in rendered.as_object().into_iter().flatten() {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    headers.insert(name.clone(), Value::String(text));
                }
            }
            let body = match &webhook.body {
                Some(template_body) => {
                    template::render(template_body, &context).map_err(|e| evaluation_error(&e))?
                }
                None => legacy_message(input),
            };
            let agent = evaluate_flag(webhook.agent.as_ref(), "agent", &context)?;
            let synchronized =
                evaluate_flag(webhook.synchronized.as_ref(), "synchronized", &context)?;
            let payload = json!({
                "type": "WEBHOOK",
                "url": url,
                "agent": agent,
                "synchronized": synchronized,
                "method": method,
                "headers": headers,
                "body": body,
            });
            Ok(EvaluatedInvocation {
                delivery: PlannedDelivery {
                    mode: if agent {
                        DeliveryMode::Agent
                    } else {
                        DeliveryMode::Webhook
                    },
                    request: payload.clone(),
                    synchronized,
                    installation_id: None,
                },
                payload,
            })
        }
        InvocationMethod::Other { kind, fields } => {
            // portd cannot talk to Kafka, GitHub or GitLab itself: these runs wait for a
            // pull-mode runner (or an integration) to claim them, with their fields evaluated.
            let rendered = template::render(&Value::Object(fields.clone()), &context)
                .map_err(|e| evaluation_error(&e))?;
            let mut payload = Map::new();
            payload.insert("type".into(), json!(kind.as_str()));
            for (k, v) in rendered.as_object().into_iter().flatten() {
                payload.insert(k.clone(), v.clone());
            }
            if *kind == InvocationKind::Kafka && !payload.contains_key("payload") {
                payload.insert("payload".into(), legacy_message(input));
            }
            let installation_id = payload
                .get("installationId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let payload = Value::Object(payload);
            Ok(EvaluatedInvocation {
                delivery: PlannedDelivery {
                    mode: DeliveryMode::Agent,
                    request: payload.clone(),
                    synchronized: false,
                    installation_id,
                },
                payload,
            })
        }
    }
}

/// The action's `requiredApproval` as a run shows it (`false` when not required).
pub fn required_approval_wire(required: &RequiredApproval) -> Value {
    match required {
        RequiredApproval::NotRequired { .. } => Value::Bool(false),
        RequiredApproval::Required {
            mode,
            wire: crate::action::ApprovalWire::True,
        } => {
            if *mode == crate::action::ApprovalMode::Any {
                Value::Bool(true)
            } else {
                json!({ "type": mode.as_str() })
            }
        }
        RequiredApproval::Required { mode, .. } => json!({ "type": mode.as_str() }),
    }
}
