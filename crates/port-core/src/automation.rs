//! Automations: actions whose `trigger.type` is `automation`, started by change events
//! ([`crate::event`]) instead of people.
//!
//! A trigger names an event type and the blueprint (entity events) or action (run
//! events) it watches, and optionally a `JQ` condition: expressions evaluated against
//! the event's trigger data and combined with `and` or `or`. This module is the pure
//! part: parsing and checking a trigger when the action is saved, deciding whether an
//! event is one the trigger watches, and reading a condition's results. The services
//! evaluate conditions with the organization's template budget and start the runs.

use serde_json::{Map, Value};

use crate::event::{ChangeEvent, ChangeKind, ResourceType};
use crate::id::{ActionIdentifier, BlueprintIdentifier};
use crate::template::{SourceLimits, TemplateError};

/// How many automations may lead to a run: a run an automation would start past this
/// depth ends `FAILURE` at once, saying why, and its own changes start nothing. Stops
/// automations that set each other off (A updates an entity, B's run updates it back)
/// from running forever.
pub const MAX_CHAIN_DEPTH: u32 = 8;

/// The most expressions a condition may have.
pub const MAX_CONDITION_EXPRESSIONS: usize = 32;

/// `trigger.event.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutomationEvent {
    EntityCreated,
    EntityUpdated,
    EntityDeleted,
    AnyEntityChange,
    TimerPropertyExpired,
    RunCreated,
    RunUpdated,
    AnyRunChange,
}

impl AutomationEvent {
    pub const ALL: [Self; 8] = [
        Self::EntityCreated,
        Self::EntityUpdated,
        Self::EntityDeleted,
        Self::AnyEntityChange,
        Self::TimerPropertyExpired,
        Self::RunCreated,
        Self::RunUpdated,
        Self::AnyRunChange,
    ];
    const ALLOWED: &'static str = "ENTITY_CREATED, ENTITY_UPDATED, ENTITY_DELETED, \
        ANY_ENTITY_CHANGE, TIMER_PROPERTY_EXPIRED, RUN_CREATED, RUN_UPDATED, ANY_RUN_CHANGE";

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EntityCreated => "ENTITY_CREATED",
            Self::EntityUpdated => "ENTITY_UPDATED",
            Self::EntityDeleted => "ENTITY_DELETED",
            Self::AnyEntityChange => "ANY_ENTITY_CHANGE",
            Self::TimerPropertyExpired => "TIMER_PROPERTY_EXPIRED",
            Self::RunCreated => "RUN_CREATED",
            Self::RunUpdated => "RUN_UPDATED",
            Self::AnyRunChange => "ANY_RUN_CHANGE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The resource whose changes this event type watches.
    pub const fn resource(self) -> ResourceType {
        match self {
            Self::RunCreated | Self::RunUpdated | Self::AnyRunChange => ResourceType::Run,
            _ => ResourceType::Entity,
        }
    }

    fn accepts(self, kind: ChangeKind) -> bool {
        match self {
            Self::EntityCreated | Self::RunCreated => kind == ChangeKind::Create,
            Self::EntityUpdated | Self::RunUpdated => kind == ChangeKind::Update,
            Self::EntityDeleted => kind == ChangeKind::Delete,
            Self::AnyEntityChange | Self::AnyRunChange => true,
            // Timer expiries are their own events, not changes (see `watches`).
            Self::TimerPropertyExpired => false,
        }
    }
}

/// How a condition's expressions combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combinator {
    And,
    Or,
}

/// `trigger.condition` of `type: "JQ"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JqCondition {
    pub expressions: Vec<String>,
    pub combinator: Combinator,
}

impl JqCondition {
    /// The template that evaluates every expression at once: a list of whole-string
    /// templates, each rendering to its expression's JSON value.
    pub fn template(&self) -> Value {
        Value::Array(
            self.expressions
                .iter()
                .map(|e| Value::String(format!("{{{{ {e} }}}}")))
                .collect(),
        )
    }

    /// Whether the rendered [`Self::template`] holds: jq's truth (anything but `false`
    /// and `null`), combined.
    pub fn holds(&self, rendered: &Value) -> bool {
        let results = rendered.as_array().map(Vec::as_slice).unwrap_or_default();
        let truthy = |v: &Value| !matches!(v, Value::Null | Value::Bool(false));
        match self.combinator {
            Combinator::And => results.iter().all(truthy),
            Combinator::Or => results.iter().any(truthy),
        }
    }
}

/// What an automation watches: the event type, the blueprint or action, and a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomationTrigger {
    pub event: AutomationEvent,
    /// The blueprint (entity events) or the action (run events) watched.
    pub scope: String,
    /// The timer property of a `TIMER_PROPERTY_EXPIRED` trigger.
    pub property: Option<String>,
    pub condition: Option<JqCondition>,
}

/// Why an automation trigger was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("{path}: is required")]
    Missing { path: &'static str },
    #[error("{path}: must be {expected}")]
    WrongType {
        path: &'static str,
        expected: &'static str,
    },
    #[error("{path}: must be one of {allowed}, got {got:?}")]
    NotOneOf {
        path: &'static str,
        allowed: &'static str,
        got: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: &'static str, message: String },
    #[error("trigger.condition.expressions: {source}")]
    Template {
        #[source]
        source: TemplateError,
    },
}

fn string_at<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &'static str,
) -> Result<Option<&'a str>, TriggerError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TriggerError::WrongType {
            path,
            expected: "a string",
        }),
    }
}

impl AutomationTrigger {
    /// Parses and checks an automation trigger (its keys but `type`), as Port's API
    /// documents it; condition expressions are held to the template source limits.
    pub fn parse(fields: &Map<String, Value>) -> Result<Self, TriggerError> {
        let event = match fields.get("event") {
            None => {
                return Err(TriggerError::Missing {
                    path: "trigger.event",
                });
            }
            Some(Value::Object(event)) => event,
            Some(_) => {
                return Err(TriggerError::WrongType {
                    path: "trigger.event",
                    expected: "an object",
                });
            }
        };
        let type_name =
            string_at(event, "type", "trigger.event.type")?.ok_or(TriggerError::Missing {
                path: "trigger.event.type",
            })?;
        let kind = AutomationEvent::parse(type_name).ok_or_else(|| TriggerError::NotOneOf {
            path: "trigger.event.type",
            allowed: AutomationEvent::ALLOWED,
            got: type_name.to_owned(),
        })?;
        let scope = match kind.resource() {
            ResourceType::Entity => {
                let path = "trigger.event.blueprintIdentifier";
                let bp = string_at(event, "blueprintIdentifier", path)?
                    .ok_or(TriggerError::Missing { path })?;
                BlueprintIdentifier::parse(bp).map_err(|e| TriggerError::Invalid {
                    path,
                    message: e.to_string(),
                })?;
                bp.to_owned()
            }
            ResourceType::Run => {
                let path = "trigger.event.actionIdentifier";
                let action = string_at(event, "actionIdentifier", path)?
                    .ok_or(TriggerError::Missing { path })?;
                ActionIdentifier::parse(action).map_err(|e| TriggerError::Invalid {
                    path,
                    message: e.to_string(),
                })?;
                action.to_owned()
            }
        };
        let property = if kind == AutomationEvent::TimerPropertyExpired {
            let path = "trigger.event.propertyIdentifier";
            Some(
                string_at(event, "propertyIdentifier", path)?
                    .ok_or(TriggerError::Missing { path })?
                    .to_owned(),
            )
        } else {
            None
        };
        let condition = match fields.get("condition") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => Some(parse_condition(c)?),
            Some(_) => {
                return Err(TriggerError::WrongType {
                    path: "trigger.condition",
                    expected: "an object",
                });
            }
        };
        Ok(Self {
            event: kind,
            scope,
            property,
            condition,
        })
    }

    /// Whether `event` is one this trigger watches (its condition aside).
    pub fn watches(&self, event: &ChangeEvent) -> bool {
        let change = &event.change;
        let kind_matches = match &change.timer {
            Some(property) => {
                self.event == AutomationEvent::TimerPropertyExpired
                    && self.property.as_ref() == Some(property)
            }
            None => self.event.accepts(change.kind),
        };
        self.event.resource() == change.resource && kind_matches && self.scope == change.scope
    }
}

fn parse_condition(c: &Map<String, Value>) -> Result<JqCondition, TriggerError> {
    match string_at(c, "type", "trigger.condition.type")? {
        Some("JQ") => {}
        Some(other) => {
            return Err(TriggerError::NotOneOf {
                path: "trigger.condition.type",
                allowed: "JQ",
                got: other.to_owned(),
            });
        }
        None => {
            return Err(TriggerError::Missing {
                path: "trigger.condition.type",
            });
        }
    }
    let path = "trigger.condition.expressions";
    let Some(Value::Array(items)) = c.get("expressions") else {
        return Err(TriggerError::WrongType {
            path,
            expected: "an array of strings",
        });
    };
    if items.len() > MAX_CONDITION_EXPRESSIONS {
        return Err(TriggerError::Invalid {
            path,
            message: format!("at most {MAX_CONDITION_EXPRESSIONS} expressions"),
        });
    }
    let mut expressions = Vec::with_capacity(items.len());
    for item in items {
        let Some(e) = item.as_str() else {
            return Err(TriggerError::WrongType {
                path,
                expected: "an array of strings",
            });
        };
        // The expression is rendered as one whole-string template: `}}` would end it.
        if e.contains("}}") || e.trim().is_empty() {
            return Err(TriggerError::Invalid {
                path,
                message: format!("{e:?} is not one jq expression"),
            });
        }
        expressions.push(e.to_owned());
    }
    let combinator = match string_at(c, "combinator", "trigger.condition.combinator")? {
        None | Some("and") => Combinator::And,
        Some("or") => Combinator::Or,
        Some(other) => {
            return Err(TriggerError::NotOneOf {
                path: "trigger.condition.combinator",
                allowed: "and, or",
                got: other.to_owned(),
            });
        }
    };
    let condition = JqCondition {
        expressions,
        combinator,
    };
    crate::template::check(&condition.template(), &SourceLimits::default())
        .map_err(|source| TriggerError::Template { source })?;
    Ok(condition)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::NewChangeEvent;
    use crate::id::OrgId;
    use crate::time::Timestamp;

    fn trigger(v: Value) -> Result<AutomationTrigger, TriggerError> {
        AutomationTrigger::parse(v.as_object().expect("an object"))
    }

    fn event(resource: ResourceType, kind: ChangeKind, scope: &str) -> ChangeEvent {
        ChangeEvent {
            seq: 1,
            change: NewChangeEvent {
                org_id: OrgId::parse("org_BneDtWovPqXaA2VZ").expect("org id"),
                resource,
                kind,
                scope: scope.into(),
                subject: "x".into(),
                timer: None,
                before: None,
                after: Some(json!({})),
                by: "u".into(),
                depth: 0,
                at: Timestamp::from_unix_millis(0),
            },
        }
    }

    #[test]
    fn triggers_watch_their_event_types_and_scope() {
        let t =
            trigger(json!({"event": {"type": "ENTITY_UPDATED", "blueprintIdentifier": "service"}}))
                .expect("valid");
        assert!(t.watches(&event(ResourceType::Entity, ChangeKind::Update, "service")));
        assert!(!t.watches(&event(ResourceType::Entity, ChangeKind::Create, "service")));
        assert!(!t.watches(&event(ResourceType::Entity, ChangeKind::Update, "other")));
        assert!(!t.watches(&event(ResourceType::Run, ChangeKind::Update, "service")));
        let any =
            trigger(json!({"event": {"type": "ANY_RUN_CHANGE", "actionIdentifier": "deploy"}}))
                .expect("valid");
        for kind in [ChangeKind::Create, ChangeKind::Update] {
            assert!(any.watches(&event(ResourceType::Run, kind, "deploy")));
        }
    }

    #[test]
    fn bad_triggers_name_the_field() {
        let cases = [
            (json!({}), "trigger.event: is required"),
            (
                json!({"event": {"type": "NOPE"}}),
                "trigger.event.type: must be one of",
            ),
            (
                json!({"event": {"type": "RUN_CREATED", "blueprintIdentifier": "x"}}),
                "trigger.event.actionIdentifier: is required",
            ),
            (
                json!({"event": {"type": "TIMER_PROPERTY_EXPIRED", "blueprintIdentifier": "x"}}),
                "trigger.event.propertyIdentifier: is required",
            ),
            (
                json!({"event": {"type": "ENTITY_CREATED", "blueprintIdentifier": "x"},
                       "condition": {"type": "SEARCH", "expressions": []}}),
                "trigger.condition.type: must be one of JQ",
            ),
            (
                json!({"event": {"type": "ENTITY_CREATED", "blueprintIdentifier": "x"},
                       "condition": {"type": "JQ", "expressions": [".a | {b: {c: 1}}"]}}),
                "is not one jq expression",
            ),
            (
                json!({"event": {"type": "ENTITY_CREATED", "blueprintIdentifier": "x"},
                       "condition": {"type": "JQ", "expressions": [".a"], "combinator": "xor"}}),
                "trigger.condition.combinator: must be one of and, or",
            ),
        ];
        for (input, expected) in cases {
            let error = trigger(input.clone()).expect_err("refused").to_string();
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn conditions_combine_jq_truth() {
        let and = JqCondition {
            expressions: vec![".a".into(), ".b".into()],
            combinator: Combinator::And,
        };
        assert_eq!(and.template(), json!(["{{ .a }}", "{{ .b }}"]));
        assert!(and.holds(&json!([true, 0])));
        assert!(!and.holds(&json!([true, null])));
        let or = JqCondition {
            combinator: Combinator::Or,
            ..and
        };
        assert!(or.holds(&json!([false, "x"])));
        assert!(!or.holds(&json!([false, null])));
    }
}
