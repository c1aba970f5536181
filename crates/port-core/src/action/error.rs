//! Why an action body was refused, each refusal naming its field path, and the short
//! descriptions of received values those messages use.

use serde_json::Value;

use super::invocation_method::InvocationKind;
use crate::error::PortError;
use crate::id::IdError;

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

pub(super) fn wrong_type(path: &str, expected: &'static str, got: &Value) -> ActionError {
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
pub(super) fn describe_str(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::action::ActionDefinition;
    use crate::error::{ErrorKind, PortError};

    #[test]
    fn action_errors_are_invalid_requests() {
        let err: PortError = ActionDefinition::from_v2(&json!({})).unwrap_err().into();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(err.message, "identifier: is required");
    }
}
