//! [`Invocation`]: what a handler is asked to do, read from either body Port sends.
//!
//! Two bodies reach a backend (port-api.md §6):
//! - the **legacy message** `{action, resourceType: "run", status: "TRIGGERED", trigger,
//!   context: {entity, blueprint, runId}, payload: {entity, action, properties}}`, sent
//!   when an action's invocation method has no `body` template (and by Port's agent);
//! - a **v2 body template**, evaluated by jq. Its shape is the action author's choice;
//!   the usual one is `{"{{ spreadValue() }}": "{{ .inputs }}", "port_context":
//!   {"runId": "{{ .run.id }}"}}`, often with a `RUN_ID` header.
//!
//! Secret inputs (`"encryption": "aes256-gcm"`) arrive encrypted, as Port sends them:
//! `base64(IV[16] ‖ ciphertext ‖ tag[16])`, AES-256-GCM keyed by the first 32 bytes of
//! the organization's client secret ([`port_core::secret`]). The receiver decrypts them
//! ([`Invocation::decrypt_secret_inputs`]) before a handler sees the invocation.

use std::collections::BTreeMap;
use std::fmt;

use port_core::secret::{self, SecretError};
use serde_json::{Map, Value};

use crate::context::MASK;

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

/// Why a secret input could not be decrypted. The message names the input, never its
/// value (nor its ciphertext).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretInputError {
    /// The value is not text, so it cannot be Port's base64 ciphertext.
    #[error("the secret input `{key}` is not encrypted: expected base64 text, found {found}")]
    NotEncrypted {
        /// The input's key.
        key: String,
        /// What was found instead (`a number`, `an object`, …).
        found: &'static str,
    },
    /// The value does not decrypt with the client secret: another organization's key,
    /// a client secret shorter than 32 bytes, a value that is not base64 (sent in
    /// clear?) or altered data.
    #[error("cannot decrypt the secret input `{key}`: {source}")]
    Undecryptable {
        /// The input's key.
        key: String,
        /// Why.
        #[source]
        source: SecretError,
    },
}

impl SecretInputError {
    /// The key of the input that did not decrypt.
    pub fn key(&self) -> &str {
        match self {
            Self::NotEncrypted { key, .. } | Self::Undecryptable { key, .. } => key,
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the inputs sit in a body, as JSON pointers (`""`: the body itself, the
/// `spreadValue()` form).
const LEGACY_INPUTS: &str = "/payload/properties";
const WRAPPED_LEGACY_INPUTS: &str = "/payload/payload/properties";
const SPREAD_INPUTS: &str = "";

/// One run to handle: the run, the action, the entity it acts on and the user inputs,
/// plus the body exactly as received.
///
/// Secret inputs: in an invocation handed to a handler, [`Invocation::properties`]
/// holds their **clear** values (decrypted by the receiver with the client secret),
/// [`Invocation::encrypted_input`] their values as delivered, and [`Invocation::raw`]
/// the body as delivered (still encrypted). `Debug` shows them as `***`.
#[derive(Clone, PartialEq)]
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
    /// The user inputs. Secret inputs hold their clear values once decrypted, which the
    /// receiver does before a handler runs (see [`Invocation::decrypt_secret_inputs`]).
    pub properties: Map<String, Value>,
    /// Keys of inputs that are secret (`censoredProperties`, `encryptedProperties`,
    /// inputs declared with `encryption`, [`crate::ActionOptions::secret_input`]): they
    /// arrive encrypted, are decrypted for the handler, and their clear values are
    /// masked in run logs.
    pub secret_keys: Vec<String>,
    /// Who triggered the run and how, when the body says.
    pub trigger: Option<Value>,
    /// The body as received: secret inputs still encrypted (see
    /// [`Invocation::decrypted_body`]).
    pub raw: Value,
    /// The delivery's `webhook-id` (the same on every retry of one delivery).
    pub webhook_id: Option<String>,
    /// Whether the run is synchronized: its status follows the handler's answer
    /// instead of reports.
    pub synchronized: bool,
    /// The decrypted secret inputs' values as delivered, by key.
    encrypted: BTreeMap<String, String>,
    /// Where `properties` were read from in `raw` (a JSON pointer), when they were.
    inputs_at: Option<&'static str>,
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Handlers log invocations with `{:?}`; clear secrets must not follow.
        let properties: Map<String, Value> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if self.is_secret(key) && !value.is_null() {
                    Value::String(MASK.to_owned())
                } else {
                    value.clone()
                };
                (key.clone(), shown)
            })
            .collect();
        f.debug_struct("Invocation")
            .field("run_id", &self.run_id)
            .field("action", &self.action)
            .field("format", &self.format)
            .field("blueprint", &self.blueprint)
            .field("entity", &self.entity)
            .field("properties", &properties)
            .field("secret_keys", &self.secret_keys)
            .field("trigger", &self.trigger)
            .field("raw", &self.raw)
            .field("webhook_id", &self.webhook_id)
            .field("synchronized", &self.synchronized)
            .finish_non_exhaustive()
    }
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
/// documentation's wrapped form (`{"payload": <message>}`), with where its inputs are.
fn legacy_message(body: &Map<String, Value>) -> Option<(&Map<String, Value>, &'static str)> {
    let is_message = |m: &Map<String, Value>| {
        m.get("resourceType").and_then(Value::as_str) == Some("run")
            || (m
                .get("context")
                .and_then(|c| c.get("runId"))
                .is_some_and(Value::is_string)
                && m.get("payload").is_some_and(Value::is_object))
    };
    if is_message(body) {
        return Some((body, LEGACY_INPUTS));
    }
    match body.get("payload") {
        Some(Value::Object(inner)) if body.len() == 1 && is_message(inner) => {
            Some((inner, WRAPPED_LEGACY_INPUTS))
        }
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
            encrypted: BTreeMap::new(),
            inputs_at: None,
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
    /// (`encryptedProperties`, `censoredProperties`) are read from `port_context`. The
    /// inputs are the `inputs` (or `properties`) object when the body has one (then
    /// secret keys listed beside it count too), else every key but `port_context` (the
    /// `spreadValue()` form).
    ///
    /// Secret inputs are left encrypted: see [`Invocation::decrypt_secret_inputs`].
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
        if let Some((message, inputs_at)) = legacy_message(object) {
            return Self::from_legacy(message, inputs_at, &body, run_id_hint, action_hint);
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
            .find_map(|key| Some((key, object.get(key)?.as_object()?)));
        let (properties, entity, trigger) = match explicit_inputs {
            Some((_, inputs)) => (
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
        let inputs_at = match explicit_inputs {
            Some((key, _)) => {
                // Beside explicit inputs these names cannot be inputs themselves.
                push_keys(&mut secret_keys, object.get("encryptedProperties"));
                push_keys(&mut secret_keys, object.get("censoredProperties"));
                if key == "inputs" {
                    "/inputs"
                } else {
                    "/properties"
                }
            }
            None => SPREAD_INPUTS,
        };
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
            encrypted: BTreeMap::new(),
            inputs_at: Some(inputs_at),
        })
    }

    fn from_legacy(
        message: &Map<String, Value>,
        inputs_at: &'static str,
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
            encrypted: BTreeMap::new(),
            inputs_at: Some(inputs_at),
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

    /// An input by key (a secret input's clear value, once decrypted).
    pub fn property(&self, key: &str) -> Option<&Value> {
        self.properties.get(key)
    }

    /// An input as a string, when it is one.
    pub fn property_str(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }

    /// Whether the input `key` is secret.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secret_keys.iter().any(|name| name.as_str().eq(key))
    }

    /// The secret inputs present, with their values: clear once decrypted, which they
    /// are in an invocation handed to a handler.
    pub fn secret_inputs(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.secret_keys
            .iter()
            .filter_map(|key| Some((key.as_str(), self.properties.get(key)?)))
    }

    /// A decrypted secret input's value as it was delivered
    /// (`base64(IV ‖ ciphertext ‖ tag)`), e.g. to pass it on still encrypted.
    pub fn encrypted_input(&self, key: &str) -> Option<&str> {
        self.encrypted.get(key).map(String::as_str)
    }

    /// Marks more inputs as secret (the action's own list, for bodies that do not
    /// name them). Keys already decrypted stay as they are.
    pub(crate) fn add_secret_keys(&mut self, keys: &[String]) {
        for key in keys {
            if !self.is_secret(key) {
                self.secret_keys.push(key.clone());
            }
        }
    }

    /// Decrypts the secret inputs in [`Invocation::properties`] with the organization's
    /// client secret (the key is its first 32 bytes), keeping each value as delivered
    /// for [`Invocation::encrypted_input`]. Absent and `null` inputs are left alone;
    /// inputs already decrypted are not decrypted again.
    ///
    /// The receiver and the pull loop call this before a handler runs; call it
    /// yourself only for invocations you read with [`Invocation::from_body`].
    ///
    /// All or nothing: on error nothing is changed, and the error names the first
    /// input that did not decrypt (never its value).
    pub fn decrypt_secret_inputs(&mut self, client_secret: &str) -> Result<(), SecretInputError> {
        let mut decrypted = Vec::new();
        for key in &self.secret_keys {
            if self.encrypted.contains_key(key) {
                continue;
            }
            let encrypted = match self.properties.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::String(encrypted)) => encrypted,
                Some(other) => {
                    return Err(SecretInputError::NotEncrypted {
                        key: key.clone(),
                        found: kind_of(other),
                    });
                }
            };
            let clear = secret::decrypt_input(client_secret, encrypted).map_err(|source| {
                SecretInputError::Undecryptable {
                    key: key.clone(),
                    source,
                }
            })?;
            decrypted.push((key.clone(), encrypted.clone(), clear));
        }
        for (key, encrypted, clear) in decrypted {
            self.properties.insert(key.clone(), Value::String(clear));
            self.encrypted.insert(key, encrypted);
        }
        Ok(())
    }

    /// The body as received, with each decrypted secret input's clear value put back
    /// where the inputs were read from (`payload.properties` of the legacy message,
    /// `inputs`/`properties` or the top level of a v2 body), as Port's agent forwards
    /// it after `fieldsToDecryptPaths`. Copies of a secret elsewhere in a v2 body stay
    /// encrypted.
    pub fn decrypted_body(&self) -> Value {
        let mut body = self.raw.clone();
        let inputs = self
            .inputs_at
            .filter(|_| !self.encrypted.is_empty())
            .and_then(|at| body.pointer_mut(at))
            .and_then(Value::as_object_mut);
        if let Some(inputs) = inputs {
            for key in self.encrypted.keys() {
                if let (Some(slot), Some(clear)) = (inputs.get_mut(key), self.properties.get(key)) {
                    *slot = clear.clone();
                }
            }
        }
        body
    }

    /// The values of secret inputs as they appear in text (strings as they are, other
    /// values as compact JSON): what run logs must never show. Clear values once
    /// decrypted.
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

    /// At least 32 bytes: the first 32 key secret inputs.
    const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef-extra";
    const OTHER_SECRET: &str = "another-organizations-secret-0123456789";

    fn encrypted(clear: &str) -> String {
        secret::encrypt_input(CLIENT_SECRET, clear, [9; secret::INPUT_IV_BYTES]).unwrap()
    }

    fn legacy_with_token(token: Value) -> Value {
        let mut body = legacy();
        body["payload"]["properties"]["token"] = token;
        body
    }

    #[test]
    fn secret_inputs_of_the_legacy_message_are_decrypted_for_the_handler() {
        let blob = encrypted("tok-very-secret");
        let mut inv = Invocation::from_body(legacy_with_token(json!(blob)), None, None).unwrap();
        // Read, not decrypted yet: the value is the ciphertext.
        assert_eq!(inv.property_str("token"), Some(blob.as_str()));
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(inv.property_str("token"), Some("tok-very-secret"));
        assert_eq!(inv.property_str("name"), Some("svc"));
        assert_eq!(inv.encrypted_input("token"), Some(blob.as_str()));
        assert_eq!(inv.encrypted_input("name"), None);
        assert!(inv.is_secret("token") && !inv.is_secret("name"));
        assert_eq!(
            inv.secret_inputs().collect::<Vec<_>>(),
            [("token", &json!("tok-very-secret"))]
        );
        // What the masker gets.
        assert_eq!(inv.secret_values(), ["tok-very-secret"]);
        // The body as received keeps the ciphertext; the decrypted body has it in clear
        // where the inputs were.
        assert_eq!(inv.raw["payload"]["properties"]["token"], json!(blob));
        let body = inv.decrypted_body();
        assert_eq!(
            body["payload"]["properties"]["token"],
            json!("tok-very-secret")
        );
        assert_eq!(body["payload"]["properties"]["name"], json!("svc"));
        // Decrypting again changes nothing.
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(inv.property_str("token"), Some("tok-very-secret"));
        // Debug output, which handlers log, masks the clear value.
        let debug = format!("{inv:?}");
        assert!(!debug.contains("tok-very-secret"), "{debug}");
        assert!(debug.contains(r#""token": String("***")"#), "{debug}");
    }

    #[test]
    fn a_secret_input_that_does_not_decrypt_is_refused_naming_the_input() {
        let blob = secret::encrypt_input(OTHER_SECRET, "tok-other", [3; 16]).unwrap();
        let mut inv = Invocation::from_body(legacy_with_token(json!(blob)), None, None).unwrap();
        let before = inv.clone();
        let error = inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap_err();
        assert_eq!(
            error,
            SecretInputError::Undecryptable {
                key: "token".into(),
                source: SecretError::Undecryptable
            }
        );
        assert_eq!(error.key(), "token");
        let message = error.to_string();
        assert!(message.contains("`token`"), "{message}");
        assert!(!message.contains(&blob) && !message.contains("tok-other"));
        // Nothing changed: no half-decrypted invocation.
        assert_eq!(inv, before);

        // A value sent in clear is not accepted as if it were the secret.
        let mut inv =
            Invocation::from_body(legacy_with_token(json!("hunter22")), None, None).unwrap();
        let error = inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap_err();
        assert_eq!(error.key(), "token");
        assert!(!error.to_string().contains("hunter22"), "{error}");
        assert_eq!(inv.property_str("token"), Some("hunter22"));

        let mut inv =
            Invocation::from_body(legacy_with_token(json!({ "a": 1 })), None, None).unwrap();
        assert_eq!(
            inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap_err(),
            SecretInputError::NotEncrypted {
                key: "token".into(),
                found: "an object"
            }
        );

        // A client secret too short to be a key.
        let mut inv =
            Invocation::from_body(legacy_with_token(json!(encrypted("x"))), None, None).unwrap();
        assert!(matches!(
            inv.decrypt_secret_inputs("short"),
            Err(SecretInputError::Undecryptable {
                source: SecretError::ClientSecretTooShort,
                ..
            })
        ));
    }

    #[test]
    fn absent_and_null_secret_inputs_need_no_key() {
        let mut body = legacy();
        body["payload"]["properties"] = json!({ "name": "svc", "token": null });
        let mut inv = Invocation::from_body(body, None, None).unwrap();
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(inv.property("token"), Some(&Value::Null));
        assert_eq!(inv.encrypted_input("token"), None);
        assert_eq!(inv.decrypted_body(), inv.raw);
    }

    #[test]
    fn v2_secret_inputs_are_decrypted_where_the_body_carries_them() {
        // Explicit inputs; secret keys in port_context and beside the inputs.
        let body = json!({
            "inputs": { "env": "prod", "password": encrypted("s3cr3t!"), "key": encrypted("k-123") },
            "encryptedProperties": ["key"],
            "port_context": { "runId": "r_5", "encryptedProperties": ["password"] }
        });
        let mut inv = Invocation::from_body(body, None, Some("deploy")).unwrap();
        assert_eq!(inv.secret_keys, ["password", "key"]);
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(inv.property_str("password"), Some("s3cr3t!"));
        assert_eq!(inv.property_str("key"), Some("k-123"));
        let decrypted = inv.decrypted_body();
        assert_eq!(decrypted["inputs"]["password"], json!("s3cr3t!"));
        assert_eq!(decrypted["inputs"]["key"], json!("k-123"));
        assert_eq!(decrypted["encryptedProperties"], json!(["key"]));

        // The spreadValue() form, with Port's legacy name for the list.
        let blob = encrypted("tok-spread");
        let body = json!({
            "name": "svc", "token": blob,
            "port_context": { "runId": "r_6", "censoredProperties": ["token"] }
        });
        let mut inv = Invocation::from_body(body, None, Some("deploy")).unwrap();
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(inv.property_str("token"), Some("tok-spread"));
        let decrypted = inv.decrypted_body();
        assert_eq!(decrypted["token"], json!("tok-spread"));
        assert_eq!(decrypted["port_context"]["runId"], json!("r_6"));
        assert_eq!(inv.raw["token"], json!(blob));
    }

    #[test]
    fn the_wrapped_legacy_message_is_decrypted_in_place_too() {
        let blob = encrypted("tok-wrapped");
        let body = json!({ "payload": legacy_with_token(json!(blob)) });
        let mut inv = Invocation::from_body(body, None, None).unwrap();
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(
            inv.decrypted_body()["payload"]["payload"]["properties"]["token"],
            json!("tok-wrapped")
        );
    }

    #[test]
    fn secret_keys_added_by_the_action_are_decrypted() {
        // A v2 body that does not say which inputs are secret.
        let body =
            json!({ "token": encrypted("tok-declared"), "port_context": { "runId": "r_7" } });
        let mut inv = Invocation::from_body(body, None, Some("deploy")).unwrap();
        assert!(inv.secret_keys.is_empty());
        inv.add_secret_keys(&["token".to_owned(), "token".to_owned()]);
        assert_eq!(inv.secret_keys, ["token"]);
        inv.decrypt_secret_inputs(CLIENT_SECRET).unwrap();
        assert_eq!(inv.property_str("token"), Some("tok-declared"));
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
