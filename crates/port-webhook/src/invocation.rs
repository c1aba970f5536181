//! [`Invocation`]: what a handler is asked to do, read from either body Port sends.
//!
//! Two bodies reach a backend (port-api.md §6):
//! - the **legacy message** `{action, resourceType: "run", status: "TRIGGERED", trigger,
//!   context: {entity, blueprint, runId}, payload: {entity, action, properties}}`, sent
//!   when an action's invocation method has no `body` template (and by Port's agent);
//! - a **v2 body template**, evaluated by jq. Its shape is the action author's choice;
//!   the usual one is `{"{{ spreadValue() }}": "{{ .inputs }}", "port_context":
//!   {"runId": "{{ .run.id }}"}}`, often with a `RUN_ID` header.

use serde_json::{Map, Value};

/// The key v2 templates conventionally put portd/Port context under.
pub const PORT_CONTEXT_KEY: &str = "port_context";

/// Which body an invocation arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// The legacy (v1) message.
    Legacy,
    /// An evaluated v2 `body` template.
    Template,
}

/// Why a body is not an invocation this crate can route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationError {
    /// The body is not a JSON object.
    #[error("the body is not a JSON object")]
    NotAnObject,
    /// No run id in the body (`context.runId`, `port_context.runId`) nor in a `RUN_ID`
    /// header.
    #[error(
        "no run id: expected context.runId (legacy message), port_context.runId (v2 body) or a RUN_ID header"
    )]
    MissingRunId,
    /// No action identifier in the body, the URL path (`/actions/{action}`) nor an
    /// `X-Port-Action` header.
    #[error(
        "no action identifier: expected `action` (legacy message), port_context.action, a /actions/{{action}} path or an X-Port-Action header"
    )]
    MissingAction,
}

/// One run to handle: the run, the action, the entity it acts on and the user inputs,
/// plus the body exactly as received.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Invocation {
    /// The run to report on (`r_…`).
    pub run_id: String,
    /// The action's identifier, which selects the handler.
    pub action: String,
    /// Which body it came in.
    pub format: BodyFormat,
    /// The action's blueprint, when the body names it.
    pub blueprint: Option<String>,
    /// The entity a DAY-2 or DELETE run acts on: the whole entity in the legacy message,
    /// whatever the template put in `port_context.entity` (often its identifier).
    pub entity: Option<Value>,
    /// The user inputs.
    pub properties: Map<String, Value>,
    /// Keys of inputs that are secret (`censoredProperties`, `encryptedProperties`,
    /// inputs declared with `encryption`); their values are masked in run logs.
    pub secret_keys: Vec<String>,
    /// Who triggered the run and how, when the body says.
    pub trigger: Option<Value>,
    /// The body as received.
    pub raw: Value,
    /// The delivery's `webhook-id` (the same on every retry of one delivery).
    pub webhook_id: Option<String>,
    /// Whether the run is synchronized: its status follows the handler's answer
    /// instead of reports.
    pub synchronized: bool,
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An identifier given as a string or as `{"identifier": …}`.
fn identifier(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => non_empty_str(o.get("identifier")).map(str::to_owned),
        _ => None,
    }
}

/// `null`, `{}` and `""` mean "no entity" in Port's bodies.
fn entity(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::Null => None,
        Value::Object(o) if o.is_empty() => None,
        Value::String(s) if s.is_empty() => None,
        other => Some(other.clone()),
    }
}

fn push_keys(keys: &mut Vec<String>, value: Option<&Value>) {
    for key in value.and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = key.as_str()
            && !keys.iter().any(|k| k == key)
        {
            keys.push(key.to_owned());
        }
    }
}

/// Inputs declared with `encryption` in a `userInputs` schema.
fn push_encrypted_inputs(keys: &mut Vec<String>, user_inputs: Option<&Value>) {
    let properties = user_inputs
        .and_then(|u| u.get("properties"))
        .and_then(Value::as_object);
    for (key, schema) in properties.into_iter().flatten() {
        if schema.get("encryption").is_some_and(|e| !e.is_null()) && !keys.iter().any(|k| k == key)
        {
            keys.push(key.clone());
        }
    }
}

/// The legacy message inside `body`: the body itself, or the `payload` of the 2023
/// documentation's wrapped form (`{"payload": <message>}`).
fn legacy_message(body: &Map<String, Value>) -> Option<&Map<String, Value>> {
    let is_message = |m: &Map<String, Value>| {
        m.get("resourceType").and_then(Value::as_str) == Some("run")
            || (m
                .get("context")
                .and_then(|c| c.get("runId"))
                .is_some_and(Value::is_string)
                && m.get("payload").is_some_and(Value::is_object))
    };
    if is_message(body) {
        return Some(body);
    }
    match body.get("payload") {
        Some(Value::Object(inner)) if body.len() == 1 && is_message(inner) => Some(inner),
        _ => None,
    }
}

impl Invocation {
    /// An invocation of `action` for `run_id` with no inputs, for tests of handlers.
    pub fn new(run_id: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            action: action.into(),
            format: BodyFormat::Template,
            blueprint: None,
            entity: None,
            properties: Map::new(),
            secret_keys: Vec::new(),
            trigger: None,
            raw: Value::Object(Map::new()),
            webhook_id: None,
            synchronized: false,
        }
    }

    /// Adds an input (builder style, for tests).
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Reads an invocation from a body. `run_id_hint` is a `RUN_ID` header, used when
    /// the body has no run id; `action_hint` comes from the URL path or an
    /// `X-Port-Action` header, used when the body names no action (v2 bodies usually
    /// don't). A legacy message's own `action` wins over the hint.
    ///
    /// v2 bodies: the run id, action, entity, blueprint and secret keys
    /// (`encryptedProperties`) are read from `port_context`. The inputs are the
    /// `inputs` (or `properties`) object when the body has one, else every key but
    /// `port_context` (the `spreadValue()` form).
    pub fn from_body(
        body: Value,
        run_id_hint: Option<&str>,
        action_hint: Option<&str>,
    ) -> Result<Self, InvocationError> {
        let Value::Object(object) = &body else {
            return Err(InvocationError::NotAnObject);
        };
        let run_id_hint = run_id_hint.map(str::trim).filter(|s| !s.is_empty());
        let action_hint = action_hint.map(str::trim).filter(|s| !s.is_empty());
        if let Some(message) = legacy_message(object) {
            return Self::from_legacy(message, &body, run_id_hint, action_hint);
        }
        let context = object.get(PORT_CONTEXT_KEY).and_then(Value::as_object);
        let from_context = |key: &str| context.and_then(|c| c.get(key));
        let run_id = non_empty_str(from_context("runId"))
            .or_else(|| non_empty_str(from_context("run_id")))
            .or(run_id_hint)
            .ok_or(InvocationError::MissingRunId)?
            .to_owned();
        let action = identifier(from_context("action"))
            .or_else(|| action_hint.map(str::to_owned))
            .ok_or(InvocationError::MissingAction)?;
        let explicit_inputs = ["inputs", "properties"]
            .into_iter()
            .find_map(|key| object.get(key).and_then(Value::as_object));
        let (properties, entity, trigger) = match explicit_inputs {
            Some(inputs) => (
                inputs.clone(),
                entity(from_context("entity")).or_else(|| entity(object.get("entity"))),
                object
                    .get("trigger")
                    .cloned()
                    .or_else(|| from_context("trigger").cloned()),
            ),
            None => (
                object
                    .iter()
                    .filter(|(key, _)| *key != PORT_CONTEXT_KEY)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                entity(from_context("entity")),
                from_context("trigger").cloned(),
            ),
        };
        let blueprint = identifier(from_context("blueprint"));
        let mut secret_keys = Vec::new();
        push_keys(&mut secret_keys, from_context("encryptedProperties"));
        push_keys(&mut secret_keys, from_context("censoredProperties"));
        Ok(Self {
            run_id,
            action,
            format: BodyFormat::Template,
            blueprint,
            entity,
            properties,
            secret_keys,
            trigger,
            raw: body,
            webhook_id: None,
            synchronized: false,
        })
    }

    fn from_legacy(
        message: &Map<String, Value>,
        body: &Value,
        run_id_hint: Option<&str>,
        action_hint: Option<&str>,
    ) -> Result<Self, InvocationError> {
        let context = message.get("context");
        let payload = message.get("payload");
        let payload_action = payload.and_then(|p| p.get("action"));
        let run_id = non_empty_str(context.and_then(|c| c.get("runId")))
            .or(run_id_hint)
            .ok_or(InvocationError::MissingRunId)?
            .to_owned();
        let action = identifier(message.get("action"))
            .or_else(|| identifier(payload_action))
            .or_else(|| action_hint.map(str::to_owned))
            .ok_or(InvocationError::MissingAction)?;
        let blueprint = identifier(context.and_then(|c| c.get("blueprint")))
            .or_else(|| identifier(payload_action.and_then(|a| a.get("blueprint"))));
        let properties = payload
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut secret_keys = Vec::new();
        push_keys(
            &mut secret_keys,
            payload.and_then(|p| p.get("censoredProperties")),
        );
        push_keys(
            &mut secret_keys,
            payload_action.and_then(|a| a.get("encryptedProperties")),
        );
        push_keys(
            &mut secret_keys,
            payload_action.and_then(|a| a.get("censoredProperties")),
        );
        // v1 actions declare inputs at `userInputs`, v2 ones under `trigger`.
        push_encrypted_inputs(
            &mut secret_keys,
            payload_action.and_then(|a| a.get("userInputs")),
        );
        push_encrypted_inputs(
            &mut secret_keys,
            payload_action
                .and_then(|a| a.get("trigger"))
                .and_then(|t| t.get("userInputs")),
        );
        Ok(Self {
            run_id,
            action,
            format: BodyFormat::Legacy,
            blueprint,
            entity: entity(payload.and_then(|p| p.get("entity"))),
            properties,
            secret_keys,
            trigger: message.get("trigger").cloned(),
            raw: body.clone(),
            webhook_id: None,
            synchronized: false,
        })
    }

    /// The entity's identifier: the entity itself when it is a string, else its
    /// `identifier`.
    pub fn entity_identifier(&self) -> Option<&str> {
        match self.entity.as_ref()? {
            Value::String(s) => Some(s),
            Value::Object(o) => o.get("identifier").and_then(Value::as_str),
            _ => None,
        }
    }

    /// An input by key.
    pub fn property(&self, key: &str) -> Option<&Value> {
        self.properties.get(key)
    }

    /// An input as a string, when it is one.
    pub fn property_str(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }

    /// The values of secret inputs as they appear in text (strings as they are, other
    /// values as compact JSON): what run logs must never show.
    pub fn secret_values(&self) -> Vec<String> {
        self.secret_keys
            .iter()
            .filter_map(|key| self.properties.get(key))
            .filter_map(|value| match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn legacy() -> Value {
        json!({
            "action": "create_microservice",
            "resourceType": "run",
            "status": "TRIGGERED",
            "trigger": { "by": { "orgId": "org_1", "userId": "u" }, "origin": "UI", "at": "2024-01-01T00:00:00.000Z" },
            "context": { "entity": null, "blueprint": "microservice", "runId": "r_1" },
            "payload": {
                "entity": null,
                "action": {
                    "identifier": "create_microservice",
                    "userInputs": { "properties": {
                        "name": { "type": "string" },
                        "token": { "type": "string", "encryption": "aes256-gcm" }
                    } }
                },
                "properties": { "name": "svc", "token": "hunter22" },
                "censoredProperties": ["other"]
            }
        })
    }

    #[test]
    fn the_legacy_message_is_read() {
        let inv = Invocation::from_body(legacy(), None, Some("ignored")).unwrap();
        assert_eq!(inv.run_id, "r_1");
        assert_eq!(inv.action, "create_microservice");
        assert_eq!(inv.format, BodyFormat::Legacy);
        assert_eq!(inv.blueprint.as_deref(), Some("microservice"));
        assert_eq!(inv.entity, None);
        assert_eq!(inv.property_str("name"), Some("svc"));
        assert_eq!(inv.secret_keys, ["other", "token"]);
        assert_eq!(inv.secret_values(), ["hunter22"]);
        assert_eq!(inv.trigger.unwrap()["origin"], "UI");
    }

    #[test]
    fn the_wrapped_legacy_message_is_read_too() {
        let inv = Invocation::from_body(json!({ "payload": legacy() }), None, None).unwrap();
        assert_eq!(inv.run_id, "r_1");
        assert_eq!(inv.format, BodyFormat::Legacy);
    }

    #[test]
    fn day_two_entities_and_their_identifiers() {
        let mut body = legacy();
        body["payload"]["entity"] = json!({ "identifier": "svc-a", "title": "A" });
        let inv = Invocation::from_body(body, None, None).unwrap();
        assert_eq!(inv.entity_identifier(), Some("svc-a"));
    }

    #[test]
    fn spread_v2_bodies_take_the_path_and_header_hints() {
        let body = json!({ "name": "svc", "replicas": 2, "port_context": { "runId": "r_2" } });
        let inv = Invocation::from_body(body.clone(), None, Some("deploy")).unwrap();
        assert_eq!(inv.run_id, "r_2");
        assert_eq!(inv.action, "deploy");
        assert_eq!(inv.format, BodyFormat::Template);
        assert_eq!(
            Value::Object(inv.properties),
            json!({ "name": "svc", "replicas": 2 })
        );
        assert_eq!(
            Invocation::from_body(body, None, None).unwrap_err(),
            InvocationError::MissingAction
        );
    }

    #[test]
    fn v2_bodies_with_explicit_inputs_and_context() {
        let body = json!({
            "inputs": { "env": "prod", "password": "s3cr3t!" },
            "entity": { "identifier": "svc-b" },
            "port_context": {
                "runId": "r_3",
                "action": { "identifier": "deploy" },
                "blueprint": "service",
                "encryptedProperties": ["password"]
            }
        });
        let inv = Invocation::from_body(body, Some("r_ignored"), Some("other")).unwrap();
        assert_eq!(inv.run_id, "r_3");
        assert_eq!(inv.action, "deploy");
        assert_eq!(inv.blueprint.as_deref(), Some("service"));
        assert_eq!(inv.entity_identifier(), Some("svc-b"));
        assert_eq!(
            Value::Object(inv.properties.clone()),
            json!({ "env": "prod", "password": "s3cr3t!" })
        );
        assert_eq!(inv.secret_values(), ["s3cr3t!"]);
    }

    #[test]
    fn the_run_id_header_is_a_fallback() {
        let inv = Invocation::from_body(json!({ "x": 1 }), Some("r_4"), Some("a")).unwrap();
        assert_eq!(inv.run_id, "r_4");
        assert_eq!(
            Invocation::from_body(json!({ "x": 1 }), None, Some("a")).unwrap_err(),
            InvocationError::MissingRunId
        );
        assert_eq!(
            Invocation::from_body(json!([1]), Some("r"), Some("a")).unwrap_err(),
            InvocationError::NotAnObject
        );
    }
}
