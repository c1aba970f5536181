//! Actions: Port's v2 definition (the model), the legacy v1 shape that parses into it
//! and renders back from it, and the server-managed metadata (port-api.md §4).
//!
//! Conversions to and from `serde_json::Value` are written by hand: unknown keys must
//! survive in the order received, every refusal must name its field path, and rendering
//! must give back exactly what was parsed (absent stays absent, `false` stays `false`).
//!
//! The definition and the stored action are here; their parts have a (private) module
//! each, re-exported here: `trigger` (self-service and automation triggers),
//! `invocation_method`, `approval`, the legacy shape in `v1`, refusals in `error`, and
//! the JSON readers and writers they share in `fields`.

mod approval;
mod error;
mod fields;
mod invocation_method;
mod trigger;
mod v1;

use serde_json::{Map, Value};

use crate::id::{ActionId, ActionIdentifier, BlueprintIdentifier};
use crate::time::Timestamp;

pub use self::approval::{ApprovalMode, ApprovalWire, NotRequiredWire, RequiredApproval};
pub use self::error::ActionError;
pub use self::invocation_method::{BoolOrJq, InvocationKind, InvocationMethod, WebhookMethod};
pub use self::trigger::{Operation, SelfServiceTrigger, Trigger};

use self::error::wrong_type;
use self::fields::{Fields, extend, insert_opt_str};

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
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::invocation_method::Shape;
    use super::*;

    pub(super) fn microservice() -> BlueprintIdentifier {
        BlueprintIdentifier::parse("microservice").unwrap()
    }

    pub(super) fn seed_meta() -> ActionMeta {
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

    pub(super) fn minimal_v2() -> Value {
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
