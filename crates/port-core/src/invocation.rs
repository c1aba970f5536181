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
    /// The trigger data of the change event that started an automation's run.
    pub event: Option<&'a Value>,
}

fn trigger_by(input: &InvocationInput<'_>) -> Value {
    json!({
        "orgId": input.org_id,
        "userId": input.actor.user_id,
        "user": input.actor.user_json(),
    })
}

/// The key of a run's payload (and of its delivery's request) that holds what is
/// evaluated only when the invocation is sent: `{"parts": [...], "context": {...}}`.
/// It never leaves portd: runs show their payload without it and the sender removes it.
pub const DEFERRED_KEY: &str = "portdDeferred";

/// Where a template mentions `secrets`. Deliberately textual: any mention defers the
/// part, and a part that reaches the secrets without naming them (`{{ . }}`) sees an
/// empty object, because only deferred parts are ever rendered with the secrets.
fn mentions_secrets(template: &Value) -> bool {
    match template {
        Value::String(s) => s.contains("{{") && s.contains("secrets"),
        Value::Array(items) => items.iter().any(mentions_secrets),
        Value::Object(map) => map.iter().any(|(key, value)| {
            mentions_secrets(&Value::String(key.clone())) || mentions_secrets(value)
        }),
        _ => false,
    }
}

/// The parts of a method's templates (see [`method_templates`]) that read organization
/// secrets, and so are evaluated only when the invocation is sent: `url`, `headers` and
/// `body` of a webhook, each field of another method. `method`, `agent` and
/// `synchronized` never see secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretParts {
    parts: Vec<String>,
    /// Whether the parts are a webhook's (else the `fields` of another method).
    webhook: bool,
}

impl SecretParts {
    pub fn of(templates: &Value) -> Self {
        if let Some(Value::Object(fields)) = templates.get("fields") {
            return Self {
                parts: fields
                    .iter()
                    .filter(|(_, t)| mentions_secrets(t))
                    .map(|(k, _)| k.clone())
                    .collect(),
                webhook: false,
            };
        }
        Self {
            parts: ["url", "headers", "body"]
                .into_iter()
                .filter(|part| templates.get(*part).is_some_and(mentions_secrets))
                .map(str::to_owned)
                .collect(),
            webhook: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The templates with the deferred parts replaced by inert values, for the render
    /// whose result is stored.
    pub fn blanked(&self, templates: &Value) -> Value {
        let mut blanked = templates.clone();
        for part in &self.parts {
            let inert = match part.as_str() {
                // Keeps the stored render's URL check satisfied until the template is put back.
                "url" if self.webhook => json!("https://deferred.invalid/"),
                "headers" if self.webhook => json!({}),
                _ => Value::Null,
            };
            if let Some(target) = self
                .slot_mut(&mut blanked)
                .and_then(|slot| slot.get_mut(part))
            {
                *target = inert;
            }
        }
        blanked
    }

    fn slot_mut<'v>(&self, templates: &'v mut Value) -> Option<&'v mut Value> {
        if self.webhook {
            Some(templates)
        } else {
            templates.get_mut("fields")
        }
    }

    fn template_of<'v>(&self, templates: &'v Value, part: &str) -> Option<&'v Value> {
        if self.webhook {
            templates.get(part)
        } else {
            templates.get("fields")?.get(part)
        }
    }

    /// Puts the deferred parts' templates back into an invocation evaluated from
    /// [`Self::blanked`] templates, with the context they will be rendered against
    /// (whose `secrets` is filled in when sending).
    pub fn restore(&self, evaluated: &mut EvaluatedInvocation, templates: &Value, context: &Value) {
        if self.is_empty() {
            return;
        }
        if let Value::Object(payload) = &mut evaluated.payload {
            let mut parts = Map::new();
            for part in &self.parts {
                let template = self
                    .template_of(templates, part)
                    .cloned()
                    .unwrap_or(Value::Null);
                payload.insert(part.clone(), template.clone());
                parts.insert(part.clone(), template);
            }
            let mut context = context.clone();
            if let Some(map) = context.as_object_mut() {
                map.remove("secrets");
            }
            payload.insert(
                DEFERRED_KEY.into(),
                json!({ "parts": Value::Object(parts), "context": context }),
            );
        }
        evaluated.delivery.request = evaluated.payload.clone();
    }
}

/// What an invocation still needs evaluated when it is sent: its deferred parts'
/// templates (`{part: template}`) and the context without secrets. `None` for an
/// invocation without secrets.
pub fn deferred_parts(request: &Value) -> Option<(&Value, &Value)> {
    let deferred = request.get(DEFERRED_KEY)?;
    Some((deferred.get("parts")?, deferred.get("context")?))
}

/// The context of [`deferred_parts`] with the organization's secrets added.
pub fn context_with_secrets(context: &Value, secrets: Map<String, Value>) -> Value {
    let mut context = context.clone();
    if let Some(map) = context.as_object_mut() {
        map.insert("secrets".into(), Value::Object(secrets));
    }
    context
}

/// An invocation as it is sent: `rendered` (the deferred parts rendered with the
/// secrets) written in, checked as at execute time, and the deferred key removed.
pub fn complete_deferred(request: &Value, rendered: &Value) -> Result<Value, PortError> {
    let mut request = request.clone();
    let Value::Object(map) = &mut request else {
        return Ok(request);
    };
    let webhook = map.get("type").and_then(Value::as_str) == Some("WEBHOOK");
    map.remove(DEFERRED_KEY);
    let Value::Object(parts) = rendered else {
        return Ok(request);
    };
    for (part, value) in parts {
        let value = match (webhook, part.as_str(), value) {
            // Checked as at execute, but never quoted: it was rendered with the secrets.
            (true, "url", Value::String(url)) => {
                checked_url(url).map_err(|_| {
                    invalid_evaluated("invocationMethod.url must evaluate to an http or https URL")
                })?;
                value.clone()
            }
            (true, "url", _) => {
                return Err(invalid_evaluated(
                    "invocationMethod.url must evaluate to a string",
                ));
            }
            (true, "headers", Value::Object(headers)) => Value::Object(header_values(headers)),
            (true, "headers", _) => json!({}),
            _ => value.clone(),
        };
        map.insert(part.clone(), value);
    }
    Ok(request)
}

/// Header values as sent: strings as they are, `null` dropped, anything else as JSON.
fn header_values(rendered: &Map<String, Value>) -> Map<String, Value> {
    let mut headers = Map::new();
    for (name, value) in rendered {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        headers.insert(name.clone(), Value::String(text));
    }
    headers
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
        // An automation's run has no inputs, only its event.
        "inputs": if input.event.is_some() { Value::Null } else { json!(input.properties) },
        "trigger": {
            "by": trigger_by(input),
            "origin": input.origin.as_str(),
            "at": input.at,
            "operation": def.operation().map(|o| o.as_str()),
        },
        "event": input.event,
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

fn evaluated_flag(rendered: Option<&Value>, name: &str) -> Result<bool, PortError> {
    match rendered {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid_evaluated(format!(
            "invocationMethod.{name} must evaluate to a boolean, got {other}"
        ))),
    }
}

fn flag_template(flag: Option<&BoolOrJq>) -> Value {
    match flag {
        None => Value::Null,
        Some(BoolOrJq::Bool(b)) => Value::Bool(*b),
        Some(BoolOrJq::Jq(t)) => Value::String(t.clone()),
    }
}

const METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "DELETE", "GET"];

/// What an action's invocation method renders: every template of the method in one
/// JSON value (keys without templates, so they render as themselves), so the whole
/// method is one render with one budget, wherever it runs.
pub fn method_templates(method: &InvocationMethod) -> Value {
    match method {
        InvocationMethod::Webhook(webhook) => {
            let mut parts = Map::new();
            parts.insert("url".into(), Value::String(webhook.url.clone()));
            if let Some(m) = &webhook.method {
                parts.insert("method".into(), Value::String(m.clone()));
            }
            if let Some(headers) = &webhook.headers {
                parts.insert("headers".into(), Value::Object(headers.clone()));
            }
            if let Some(body) = &webhook.body {
                parts.insert("body".into(), body.clone());
            }
            parts.insert("agent".into(), flag_template(webhook.agent.as_ref()));
            parts.insert(
                "synchronized".into(),
                flag_template(webhook.synchronized.as_ref()),
            );
            Value::Object(parts)
        }
        InvocationMethod::Other { fields, .. } => json!({ "fields": fields }),
    }
}

/// The error of a template that could not be rendered: Port's
/// `evaluate_invocation_method_error`, naming the expression and, for a budget, the
/// limit.
pub fn template_error(error: &TemplateError) -> PortError {
    match error {
        TemplateError::Unavailable {
            busy: true,
            message,
        } => PortError::new(ErrorKind::TooManyRequests, message.clone()),
        TemplateError::Unavailable {
            busy: false,
            message,
        } => PortError::new(ErrorKind::ServiceUnavailable, message.clone()),
        other => evaluation_error(other),
    }
}

/// Evaluates an action's invocation method for one run, rendering its templates in
/// process within the default budget (see [`crate::ports::TemplateEngine`] for the
/// renderers a server uses).
pub fn evaluate(input: &InvocationInput<'_>) -> Result<EvaluatedInvocation, PortError> {
    let context = template_context(input);
    let rendered = template::render(
        &method_templates(&input.action.definition.invocation_method),
        &context,
    )
    .map_err(|e| evaluation_error(&e))?;
    assemble(input, &rendered, template::Budget::DEFAULT_OUTPUT_BYTES)
}

/// Builds a run's evaluated invocation from its method's rendered templates
/// ([`method_templates`] rendered against [`template_context`]), checking what they
/// evaluated to and that the whole invocation fits in `max_bytes` of JSON.
pub fn assemble(
    input: &InvocationInput<'_>,
    rendered: &Value,
    max_bytes: usize,
) -> Result<EvaluatedInvocation, PortError> {
    let evaluated = assemble_unchecked(input, rendered)?;
    check_size(&evaluated.payload, max_bytes)?;
    Ok(evaluated)
}

/// 422 naming the output limit when `invocation` takes more than `max_bytes` of JSON.
pub fn check_size(invocation: &Value, max_bytes: usize) -> Result<(), PortError> {
    let size = serde_json::to_vec(invocation).map_or(usize::MAX, |json| json.len());
    if size > max_bytes {
        return Err(evaluation_error(&TemplateError::Limit {
            expression: String::new(),
            limit: template::Limit::Output(max_bytes),
        }));
    }
    Ok(())
}

/// A rendered URL portd may call: http or https, and more than a scheme.
fn checked_url(url: &str) -> Result<(), PortError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(invalid_evaluated(format!(
            "invocationMethod.url must be an http or https URL, got {url:?}"
        )));
    }
    Ok(())
}

fn assemble_unchecked(
    input: &InvocationInput<'_>,
    rendered: &Value,
) -> Result<EvaluatedInvocation, PortError> {
    match &input.action.definition.invocation_method {
        InvocationMethod::Webhook(webhook) => {
            let url = match rendered.get("url") {
                Some(Value::String(s)) => s.clone(),
                other => {
                    return Err(invalid_evaluated(format!(
                        "invocationMethod.url must evaluate to a string, got {}",
                        other.unwrap_or(&Value::Null)
                    )));
                }
            };
            checked_url(&url)?;
            let method = match (&webhook.method, rendered.get("method")) {
                (None, _) => "POST".to_owned(),
                (Some(_), Some(Value::String(s)))
                    if METHODS.contains(&s.to_ascii_uppercase().as_str()) =>
                {
                    s.to_ascii_uppercase()
                }
                (Some(_), other) => {
                    return Err(invalid_evaluated(format!(
                        "invocationMethod.method must be one of POST, PUT, PATCH, DELETE, GET, got {}",
                        other.unwrap_or(&Value::Null)
                    )));
                }
            };
            let headers = match rendered.get("headers") {
                Some(Value::Object(rendered_headers)) => header_values(rendered_headers),
                _ => Map::new(),
            };
            let body = match (&webhook.body, rendered.get("body")) {
                (Some(_), Some(body)) => body.clone(),
                (Some(_), None) => Value::Null,
                (None, _) => legacy_message(input),
            };
            let agent = evaluated_flag(rendered.get("agent"), "agent")?;
            let synchronized = evaluated_flag(rendered.get("synchronized"), "synchronized")?;
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
        InvocationMethod::Other { kind, .. } => {
            // portd cannot talk to Kafka, GitHub or GitLab itself: these runs wait for a
            // pull-mode runner (or an integration) to claim them, with their fields evaluated.
            let mut payload = Map::new();
            payload.insert("type".into(), json!(kind.as_str()));
            if let Some(Value::Object(fields)) = rendered.get("fields") {
                for (k, v) in fields {
                    payload.insert(k.clone(), v.clone());
                }
            }
            if *kind == InvocationKind::UpsertEntity {
                let payload = Value::Object(payload);
                return Ok(EvaluatedInvocation {
                    delivery: upsert_entity_delivery(payload.clone()),
                    payload,
                });
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

/// Port's `UPSERT_ENTITY`: portd's delivery worker writes the entity from the
/// evaluated `{blueprintIdentifier, mapping}` itself, and the run ends with the
/// outcome, as a synchronized webhook's ends with its answer.
pub fn upsert_entity_delivery(payload: Value) -> PlannedDelivery {
    PlannedDelivery {
        mode: DeliveryMode::UpsertEntity,
        request: payload,
        synchronized: true,
        installation_id: None,
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
