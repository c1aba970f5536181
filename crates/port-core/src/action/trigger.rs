//! What starts a run: a self-service trigger (its [`Operation`], blueprint, inputs form
//! and condition) or an automation's trigger, kept as received once it is checked.

use std::fmt;

use serde_json::{Map, Value};

use super::error::{ActionError, describe_str, wrong_type};
use super::fields::{Fields, extend};
use crate::id::BlueprintIdentifier;

/// What a self-service action does to its blueprint's entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Day2,
    Delete,
}

impl Operation {
    pub const ALL: [Self; 3] = [Self::Create, Self::Day2, Self::Delete];
    pub(super) const ALLOWED: &'static str = "CREATE, DAY-2, DELETE";

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

    pub(super) fn parse_v2(value: &Value) -> Result<Self, ActionError> {
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

    pub(super) fn to_v2(&self) -> Value {
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
pub(super) fn parse_user_inputs(
    value: &Value,
    path: &str,
) -> Result<Map<String, Value>, ActionError> {
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
