//! Identifiers: generated ids (`r_…`, `log_…`, `action_…`, `org_…`, `e_…`) and the
//! user-chosen identifiers of actions, blueprints, entities and property keys.
//!
//! Generated ids are a prefix plus 16 characters of `[A-Za-z0-9]`, as in Port. The
//! first 8 characters encode the creation time in milliseconds in an alphabet whose
//! ASCII order equals its numeric order, so ids sort by time and lists can page with
//! an id cursor.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Digits in ASCII order, so that lexicographic order of encoded numbers is numeric order.
pub const ID_ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of the part after the prefix.
pub const ID_SUFFIX_LEN: usize = 16;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be {prefix} followed by 16 characters of [A-Za-z0-9], got {value:?}")]
    Generated {
        kind: &'static str,
        prefix: &'static str,
        value: String,
    },
    #[error("{kind} {value:?} does not match {pattern}")]
    Pattern {
        kind: &'static str,
        pattern: &'static str,
        value: String,
    },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
}

/// Builds the 16-character suffix of a time-ordered id from a millisecond timestamp
/// and 8 random characters' worth of entropy (`random` indexes are taken modulo 62).
pub fn time_ordered_suffix(unix_millis: u64, random: [u8; 8]) -> String {
    let mut out = [0u8; ID_SUFFIX_LEN];
    let mut n = unix_millis;
    for slot in out[..8].iter_mut().rev() {
        *slot = ID_ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    for (slot, r) in out[8..].iter_mut().zip(random) {
        *slot = ID_ALPHABET[(r % 62) as usize];
    }
    // The alphabet is ASCII, so this cannot fail.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

fn is_valid_suffix(s: &str) -> bool {
    s.len() == ID_SUFFIX_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The trait impls every string newtype here shares; `parse` is each type's own.
macro_rules! string_newtype_impls {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! generated_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The fixed prefix of this kind of id.
            pub const PREFIX: &'static str = $prefix;

            /// Parses and validates an id received from outside.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                match value.strip_prefix($prefix) {
                    Some(rest) if is_valid_suffix(rest) => Ok(Self(value.to_owned())),
                    _ => Err(IdError::Generated { kind: $kind, prefix: $prefix, value: value.to_owned() }),
                }
            }

            /// Builds an id from a generated suffix (see [`time_ordered_suffix`]).
            pub fn from_suffix(suffix: &str) -> Result<Self, IdError> {
                Self::parse(&format!("{}{}", $prefix, suffix))
            }

        }

        string_newtype_impls!($name);
    };
}

generated_id!(
    /// An action run id, e.g. `r_QOz6WoOB1Q2lmhZZ`.
    RunId, "r_", "run id");
generated_id!(
    /// A run log line id, e.g. `log_Wo7cIcCftqhj4lNy`.
    LogId, "log_", "log id");
generated_id!(
    /// The internal id of an action (not its user-chosen identifier), e.g. `action_ed2B0O9CbEYkuqvN`.
    ActionId, "action_", "action id");
generated_id!(
    /// An organization id, e.g. `org_7SDeR821bunhS8es`.
    OrgId, "org_", "organization id");
generated_id!(
    /// A generated entity identifier, used when an entity is created without one.
    GeneratedEntityId, "e_", "entity id");
generated_id!(
    /// A domain event id, e.g. `event_GH2680QIOEzwwNZB` (see [`crate::event::event_id`]).
    EventId, "event_", "event id");
generated_id!(
    /// A delivery (outbox row) id; also sent as the `webhook-id` header.
    DeliveryId, "msg_", "delivery id");

// Port's patterns (port-api.md §1.3). `regex` has no look-ahead, so the `(?!\.{1,2}$)`
// part of each pattern is checked by hand in `check_user_identifier`.
static ACTION_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}0-9@_.+:=-]+$").expect("valid regex"));
static BLUEPRINT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}0-9@_.+:\\/-]+$").expect("valid regex"));
static ENTITY_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}0-9@_.+:\\/=-]+$").expect("valid regex"));
static INTEGRATION_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9@_.+:=-]+$").expect("valid regex"));
static KEY_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9@_=\-]+$").expect("valid regex"));

fn check_user_identifier(
    value: &str,
    kind: &'static str,
    pattern: &'static str,
    re: &Regex,
    max: Option<usize>,
) -> Result<(), IdError> {
    if let Some(max) = max
        && value.chars().count() > max
    {
        return Err(IdError::TooLong { kind, max });
    }
    if value == "." || value == ".." || !re.is_match(value) {
        return Err(IdError::Pattern {
            kind,
            pattern,
            value: value.to_owned(),
        });
    }
    Ok(())
}

macro_rules! user_identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $pattern:literal, $re:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Port's pattern for this identifier.
            pub const PATTERN: &'static str = $pattern;

            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_user_identifier(value, $kind, $pattern, &$re, $max)?;
                Ok(Self(value.to_owned()))
            }

        }

        string_newtype_impls!($name);
    };
}

user_identifier!(
    /// The user-chosen identifier of an action, e.g. `create_microservice`.
    ActionIdentifier, "action identifier", r"^(?!\.{1,2}$)[\p{L}0-9@_.+:=-]+$", ACTION_RE, None);
user_identifier!(
    /// The identifier of a blueprint, e.g. `microservice`.
    BlueprintIdentifier, "blueprint identifier", r"^(?!\.{1,2}$)[\p{L}0-9@_.+:\\/-]+$", BLUEPRINT_RE, Some(100));
user_identifier!(
    /// The identifier of an entity, e.g. `my-microservice`.
    EntityIdentifier, "entity identifier", r"^(?!\.{1,2}$)[\p{L}0-9@_.+:\\/=-]+$", ENTITY_RE, Some(1000));
user_identifier!(
    /// The identifier of an integration installation (Ocean's `OCEAN__INTEGRATION__IDENTIFIER`,
    /// an INTEGRATION_ACTION's `installationId`), e.g. `my-github-integration`. It is a path
    /// segment, so it has no `/`.
    IntegrationIdentifier, "integration identifier", r"^(?!\.{1,2}$)[A-Za-z0-9@_.+:=-]+$", INTEGRATION_RE, Some(100));
user_identifier!(
    /// A property, relation or user-input key.
    PropertyKey, "property key", r"^[A-Za-z0-9@_=\-]+$", KEY_RE, Some(100));

impl From<GeneratedEntityId> for EntityIdentifier {
    fn from(id: GeneratedEntityId) -> Self {
        // `e_` + alphanumerics always matches the entity pattern.
        Self(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ids_parse() {
        assert!(RunId::parse("r_QOz6WoOB1Q2lmhZZ").is_ok());
        assert!(LogId::parse("log_Wo7cIcCftqhj4lNy").is_ok());
        assert!(ActionId::parse("action_ed2B0O9CbEYkuqvN").is_ok());
        assert!(OrgId::parse("org_7SDeR821bunhS8es").is_ok());
        assert!(RunId::parse("r_short").is_err());
        assert!(RunId::parse("log_Wo7cIcCftqhj4lNy").is_err());
        assert!(RunId::parse("r_QOz6WoOB1Q2lmh-Z").is_err());
    }

    #[test]
    fn user_identifiers_follow_ports_patterns() {
        assert!(ActionIdentifier::parse("create_microservice").is_ok());
        assert!(ActionIdentifier::parse("..").is_err());
        assert!(ActionIdentifier::parse("a/b").is_err());
        assert!(BlueprintIdentifier::parse("a/b").is_ok());
        assert!(EntityIdentifier::parse("my-microservice").is_ok());
        assert!(EntityIdentifier::parse("with space").is_err());
        assert!(PropertyKey::parse("region").is_ok());
        assert!(PropertyKey::parse("ré").is_err());
        assert!(BlueprintIdentifier::parse(&"x".repeat(101)).is_err());
        assert!(IntegrationIdentifier::parse("my-github-integration").is_ok());
        assert!(IntegrationIdentifier::parse("a/b").is_err());
        assert!(IntegrationIdentifier::parse("..").is_err());
        assert!(IntegrationIdentifier::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn time_ordered_suffixes_sort_by_time() {
        let a = time_ordered_suffix(1_700_000_000_000, [255; 8]);
        let b = time_ordered_suffix(1_700_000_000_001, [0; 8]);
        assert!(a < b);
        assert_eq!(a.len(), ID_SUFFIX_LEN);
        assert!(RunId::from_suffix(&a).is_ok());
    }
}
