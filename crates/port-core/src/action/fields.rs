//! JSON helpers: an object being read with its path for error messages, and the writers
//! that keep keys in order.

use serde_json::{Map, Value};

use super::error::{ActionError, wrong_type};
use super::invocation_method::BoolOrJq;

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn extend(out: &mut Map<String, Value>, from: &Map<String, Value>) {
    out.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
}

pub(super) fn insert_opt_str(out: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        out.insert(key.to_owned(), value.into());
    }
}

/// An object being read, with its path for error messages (empty at the root).
pub(super) struct Fields<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) path: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(value: &'a Value, path: &'a str) -> Result<Self, ActionError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            other => {
                let shown = if path.is_empty() { "action" } else { path };
                Err(wrong_type(shown, "an object", other))
            }
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        join(self.path, key)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub(super) fn required(&self, key: &str) -> Result<&'a Value, ActionError> {
        self.get(key).ok_or_else(|| ActionError::Missing {
            path: self.path(key),
        })
    }

    pub(super) fn required_str(&self, key: &str) -> Result<&'a str, ActionError> {
        let value = self.required(key)?;
        value
            .as_str()
            .ok_or_else(|| wrong_type(&self.path(key), "a string", value))
    }

    /// Absent is `None`; `null` is refused like any other wrong type, because it could
    /// not be rendered back.
    pub(super) fn string(&self, key: &str) -> Result<Option<&'a str>, ActionError> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong_type(&self.path(key), "a string", v))
            })
            .transpose()
    }

    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, ActionError> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| wrong_type(&self.path(key), "a boolean", v))
            })
            .transpose()
    }

    pub(super) fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ActionError> {
        self.get(key)
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| wrong_type(&self.path(key), "an object", v))
            })
            .transpose()
    }

    pub(super) fn bool_or_jq(&self, key: &str) -> Result<Option<BoolOrJq>, ActionError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(BoolOrJq::Bool(*b))),
            Some(Value::String(s)) => Ok(Some(BoolOrJq::Jq(s.clone()))),
            Some(other) => Err(wrong_type(
                &self.path(key),
                "a boolean or a jq string",
                other,
            )),
        }
    }

    /// The keys not handled, in the order received.
    pub(super) fn rest(&self, handled: &[&str]) -> Map<String, Value> {
        self.map
            .iter()
            .filter(|(k, _)| !handled.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
