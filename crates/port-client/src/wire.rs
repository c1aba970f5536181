//! Serde helpers for Port's wire quirks: ISO-8601 timestamps, `null` where a collection
//! is expected, and `link` sent as one string or a list.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `Option<OffsetDateTime>` as an RFC 3339 string (`2022-12-07T12:53:52.916Z`) or null.
pub(crate) mod opt_time {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => {
                let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => OffsetDateTime::parse(&text, &Rfc3339)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {text:?}: {e}"))),
            None => Ok(None),
        }
    }
}

/// A collection that may arrive as `null`: `null` becomes the empty value.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Port's `link`: a list of URLs, though writers may send one string (or null).
pub(crate) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(one) => Ok(vec![one]),
        list @ Value::Array(_) => serde_json::from_value(list).map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a list of strings, got {other}"
        ))),
    }
}

/// Takes `key` out of a JSON object and decodes it.
pub(crate) fn take<T: DeserializeOwned>(body: &mut Value, key: &str) -> Result<T, String> {
    let value = body
        .get_mut(key)
        .map(Value::take)
        .ok_or_else(|| format!("the body has no `{key}` key"))?;
    serde_json::from_value(value).map_err(|e| format!("`{key}`: {e}"))
}

/// Like [`take`], but an absent key or `null` gives `T::default()`.
pub(crate) fn take_or_default<T: DeserializeOwned + Default>(
    body: &mut Value,
    key: &str,
) -> Result<T, String> {
    match body.get_mut(key).map(Value::take) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => serde_json::from_value(value).map_err(|e| format!("`{key}`: {e}")),
    }
}
