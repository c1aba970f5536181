//! Whether runs wait for approval, and how that was written (`true`, `false`, absent,
//! or `{"type": "ANY" | "ALL"}`), so rendering gives back what was parsed.

use serde_json::{Map, Value};

use super::error::{ActionError, describe_str, wrong_type};
use super::fields::Fields;

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

    pub(super) fn parse(value: Option<&Value>) -> Result<Self, ActionError> {
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

    pub(super) fn to_value(self) -> Option<Value> {
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::ApprovalMode;
    use crate::action::ActionDefinition;
    use crate::action::tests::minimal_v2;

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
}
