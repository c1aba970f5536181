//! Validating a run's user inputs against its action's `userInputs`.
//!
//! Port describes each input with JSON-Schema keywords (`type`, `enum`, `pattern`,
//! `minimum`, `items`, ...) mixed with its own (`title`, `blueprint`, `dependsOn`,
//! `visible`, `encryption`, ...). We build a plain JSON Schema from the standard keywords
//! only, validate with it, and gather what the rest of the domain needs from Port's own
//! keys: which entities the inputs refer to and which inputs are secret.

use std::fmt;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, PatternOptions, ValidationError, Validator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Property types Port accepts in `userInputs`.
const KNOWN_TYPES: &[&str] = &["string", "number", "boolean", "object", "array"];

/// Keywords of a property that are standard JSON Schema and copied as they are.
/// `items`, `properties`, `required`, `additionalProperties` and `format` are handled
/// apart because they need translating; everything else (Port's keys, `$ref`, `default`)
/// is dropped, so validation never reaches outside the definition.
const COPIED_KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// Where a definition-level problem with no better home is reported.
const ROOT_FIELD: &str = "properties";

/// A run's inputs once they passed validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidatedInputs {
    /// The submitted properties with schema `default`s filled in for absent keys.
    pub properties: Map<String, Value>,
    /// Inputs with `format: entity` (or arrays of them, `type: array` +
    /// `items.format: entity`): which entities must exist. Values may be a string
    /// identifier or an object with an `identifier` key.
    pub entity_references: Vec<EntityReference>,
    /// Keys of inputs with an `encryption` setting (Port calls these encrypted/censored
    /// properties).
    pub secret_keys: Vec<String>,
}

/// One entity an input refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityReference {
    /// The input's key.
    pub input: String,
    /// The blueprint the input is restricted to, when the definition says.
    pub blueprint: Option<String>,
    pub identifier: String,
}

/// Inputs (or an inputs definition) that were refused, with every field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputsError {
    pub fields: Vec<FieldError>,
}

impl fmt::Display for InputsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("user inputs do not match the action's schema")?;
        for (i, field) in self.fields.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{field}")?;
        }
        Ok(())
    }
}

impl InputsError {
    fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            fields: vec![FieldError::new(field, message)],
        }
    }
}

/// One problem with one input: `field` is the input's top-level key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validates a run's submitted `properties` against its action's `userInputs`, filling
/// in defaults and collecting entity references and secret keys.
///
/// Extra keys that the definition does not know are kept: Port tolerates them.
pub fn validate_inputs(
    user_inputs: &Value,
    submitted: &Value,
) -> Result<ValidatedInputs, InputsError> {
    let Value::Object(submitted) = submitted else {
        return Err(InputsError::single(ROOT_FIELD, "must be an object"));
    };
    let definitions = property_definitions(user_inputs);

    // Defaults are filled before validating (as AJV's `useDefaults` does for Port), so a
    // required input with a default may be omitted.
    let mut properties = submitted.clone();
    for (key, definition) in definitions {
        if properties.contains_key(key) {
            continue;
        }
        if let Some(default) = definition.get("default").filter(|d| is_static_default(d)) {
            properties.insert(key.clone(), default.clone());
        }
    }

    let schema = root_schema(user_inputs);
    let validator = compile(&schema).map_err(|error| InputsError {
        fields: vec![schema_error(&error)],
    })?;
    let instance = Value::Object(properties);
    let mut fields: Vec<FieldError> = validator
        .iter_errors(&instance)
        .map(|error| field_error(&error, definitions))
        .collect();
    if !fields.is_empty() {
        sort_by_definition_order(&mut fields, definitions);
        return Err(InputsError { fields });
    }
    let Value::Object(properties) = instance else {
        unreachable!("built as an object above")
    };

    let entity_references = entity_references(definitions, &properties);
    let secret_keys = definitions
        .iter()
        .filter(|(_, definition)| definition.get("encryption").is_some_and(|e| !e.is_null()))
        .map(|(key, _)| key.clone())
        .collect();
    Ok(ValidatedInputs {
        properties,
        entity_references,
        secret_keys,
    })
}

/// Checks that a `userInputs` definition is itself well-formed: an object with an object
/// `properties`, each property an object with a known `type` and a key matching
/// `^[A-Za-z0-9@_=\-]+$`, and `required` listing existing keys (or a `jqQuery` object).
/// Used when actions are created.
pub fn check_user_inputs_definition(user_inputs: &Value) -> Result<(), InputsError> {
    let Value::Object(root) = user_inputs else {
        return Err(InputsError::single("userInputs", "must be an object"));
    };
    let Some(Value::Object(properties)) = root.get("properties") else {
        return Err(InputsError::single(ROOT_FIELD, "must be an object"));
    };

    let mut fields = Vec::new();
    for (key, definition) in properties {
        if !is_valid_key(key) {
            fields.push(FieldError::new(key, "key must match ^[A-Za-z0-9@_=\\-]+$"));
        }
        let problems_before = fields.len();
        check_property(key, definition, &mut fields);
        // A property that is structurally fine may still carry bad keyword values
        // (an invalid `pattern`, a string `minimum`): compiling it finds those.
        if fields.len() == problems_before
            && let Err(error) = compile(&property_schema(definition))
        {
            fields.push(FieldError::new(key, format!("invalid definition: {error}")));
        }
    }

    match root.get("required") {
        None => {}
        Some(Value::Array(required)) => {
            for entry in required {
                match entry.as_str() {
                    Some(key) if properties.contains_key(key) => {}
                    Some(key) => fields.push(FieldError::new(
                        "required",
                        format!("{key:?} is not one of the inputs"),
                    )),
                    None => fields.push(FieldError::new(
                        "required",
                        format!("{entry} is not an input key"),
                    )),
                }
            }
        }
        Some(Value::Object(dynamic)) if dynamic.get("jqQuery").is_some_and(Value::is_string) => {}
        Some(_) => fields.push(FieldError::new(
            "required",
            "must be an array of input keys or an object with a jqQuery",
        )),
    }

    if let Some(order) = root.get("order") {
        let all_strings = order
            .as_array()
            .is_some_and(|keys| keys.iter().all(Value::is_string));
        if !all_strings {
            fields.push(FieldError::new("order", "must be an array of input keys"));
        }
    }

    if fields.is_empty() {
        Ok(())
    } else {
        Err(InputsError { fields })
    }
}

fn check_property(key: &str, definition: &Value, fields: &mut Vec<FieldError>) {
    let Value::Object(definition) = definition else {
        fields.push(FieldError::new(key, "must be an object"));
        return;
    };
    match definition.get("type") {
        None => fields.push(FieldError::new(key, "has no type")),
        Some(Value::String(ty)) if KNOWN_TYPES.contains(&ty.as_str()) => {}
        Some(ty) => fields.push(FieldError::new(
            key,
            format!(
                "has type {ty}, which is not one of {}",
                KNOWN_TYPES.join(", ")
            ),
        )),
    }
    match definition.get("items") {
        None => {}
        Some(Value::Object(items)) => match items.get("type") {
            None => {}
            Some(Value::String(ty)) if KNOWN_TYPES.contains(&ty.as_str()) => {}
            Some(ty) => fields.push(FieldError::new(
                key,
                format!(
                    "has items of type {ty}, which is not one of {}",
                    KNOWN_TYPES.join(", ")
                ),
            )),
        },
        Some(_) => fields.push(FieldError::new(key, "has items that are not an object")),
    }
}

fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '=' | '-'))
}

/// The definition's `properties`, or none when it has no usable ones (definitions are
/// checked when actions are created; a stored one that is off validates as no inputs).
fn property_definitions(user_inputs: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match user_inputs.get("properties") {
        Some(Value::Object(properties)) => properties,
        _ => EMPTY.get_or_init(Map::new),
    }
}

/// A default given as `{"jqQuery": ...}` is computed by Port's UI from the context; we
/// cannot evaluate it here, so it is not filled in.
fn is_static_default(default: &Value) -> bool {
    !(default.is_null()
        || default
            .as_object()
            .is_some_and(|o| o.contains_key("jqQuery")))
}

/// The JSON Schema for a whole `userInputs`. `required` as `{"jqQuery": ...}` is dynamic
/// and so requires nothing here.
fn root_schema(user_inputs: &Value) -> Value {
    let properties: Map<String, Value> = property_definitions(user_inputs)
        .iter()
        .map(|(key, definition)| (key.clone(), property_schema(definition)))
        .collect();
    let mut schema = json!({ "type": "object", "properties": properties });
    if let Some(required @ Value::Array(_)) = user_inputs.get("required") {
        schema["required"] = required.clone();
    }
    schema
}

/// Translates one Port property definition into JSON Schema.
fn property_schema(definition: &Value) -> Value {
    let Value::Object(definition) = definition else {
        // Not a schema we understand: accept anything rather than guess.
        return json!({});
    };
    let mut schema = Map::new();
    for keyword in COPIED_KEYWORDS {
        if let Some(value) = definition.get(*keyword) {
            schema.insert((*keyword).to_owned(), value.clone());
        }
    }
    if let Some(items) = definition.get("items") {
        let items = match items {
            // Tuple form: each position has its own schema.
            Value::Array(positions) => {
                Value::Array(positions.iter().map(property_schema).collect())
            }
            other => property_schema(other),
        };
        schema.insert("items".to_owned(), items);
    }
    if let Some(Value::Object(nested)) = definition.get("properties") {
        let nested: Map<String, Value> = nested
            .iter()
            .map(|(key, definition)| (key.clone(), property_schema(definition)))
            .collect();
        schema.insert("properties".to_owned(), Value::Object(nested));
    }
    if let Some(required @ Value::Array(_)) = definition.get("required") {
        schema.insert("required".to_owned(), required.clone());
    }
    match definition.get("additionalProperties") {
        Some(allowed @ Value::Bool(_)) => {
            schema.insert("additionalProperties".to_owned(), allowed.clone());
        }
        Some(nested @ Value::Object(_)) => {
            schema.insert("additionalProperties".to_owned(), property_schema(nested));
        }
        _ => {}
    }

    match definition.get("format").and_then(Value::as_str) {
        Some("entity") => {
            // An entity is named by its identifier, or given as the entity object itself.
            schema.insert("type".to_owned(), json!(["string", "object"]));
            schema.insert("required".to_owned(), json!(["identifier"]));
            schema.insert(
                "properties".to_owned(),
                json!({ "identifier": { "type": "string" } }),
            );
            // Enumerated identifiers would refuse the object form.
            schema.remove("enum");
            schema.remove("const");
        }
        Some("url") => {
            schema.insert("format".to_owned(), json!("uri"));
        }
        Some(format @ ("date-time" | "email" | "ipv4" | "ipv6")) => {
            schema.insert("format".to_owned(), json!(format));
        }
        // Port's other formats (yaml, user, team, markdown, ...) are free text to us.
        _ => {}
    }
    Value::Object(schema)
}

/// Backtracking steps one `pattern` match may take on a user input.
const PATTERN_BACKTRACK_LIMIT: usize = 100_000;

// Boxed: the error is large and only taken on a broken definition.
fn compile(schema: &Value) -> Result<Validator, Box<ValidationError<'static>>> {
    // Draft 7 is what Port's own validator (AJV) defaults to; formats are asserted,
    // which drafts 2019-09 and later would only annotate.
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        // Patterns are the action author's, inputs the caller's: backtracking (only
        // look-around and back-references need it) and compiled sizes are bounded, so
        // no pair of them can spin a request thread.
        .with_pattern_options(
            PatternOptions::fancy_regex()
                .backtrack_limit(PATTERN_BACKTRACK_LIMIT)
                .size_limit(crate::catalog_rules::PATTERN_SIZE_LIMIT)
                .dfa_size_limit(crate::catalog_rules::PATTERN_SIZE_LIMIT),
        )
        .build(schema)
        .map_err(Box::new)
}

/// The top-level key a JSON pointer starts with, unescaped.
fn top_level_key(pointer: &str) -> Option<String> {
    let first = pointer.strip_prefix('/')?.split('/').next()?;
    Some(first.replace("~1", "/").replace("~0", "~"))
}

/// A definition that does not compile, reported on the property at fault: during
/// compilation the error's instance path points into the schema itself.
fn schema_error(error: &ValidationError<'_>) -> FieldError {
    let path = error.instance_path.as_str();
    let field = path
        .strip_prefix("/properties")
        .and_then(top_level_key)
        .unwrap_or_else(|| ROOT_FIELD.to_owned());
    FieldError::new(field, format!("invalid definition: {error}"))
}

/// Longest rendering of a submitted value we quote back in a message.
const MAX_QUOTED_LEN: usize = 120;

fn field_error(error: &ValidationError<'_>, definitions: &Map<String, Value>) -> FieldError {
    let Some(field) = top_level_key(error.instance_path.as_str()) else {
        return root_field_error(error);
    };
    let definition = definitions.get(&field);
    let secret = definition.is_some_and(|d| d.get("encryption").is_some_and(|e| !e.is_null()));
    // Secret values must not be echoed back; large ones would drown the message.
    let masked = secret || error.instance.to_string().len() > MAX_QUOTED_LEN;

    let message = match &error.kind {
        ValidationErrorKind::Type { .. } | ValidationErrorKind::Required { .. }
            if definition.is_some_and(|d| holds_entity_at(d, error.instance_path.as_str())) =>
        {
            // The schema's view (string or object, `identifier` required) reads poorly.
            let shown = if masked {
                "value".to_owned()
            } else {
                error.instance.to_string()
            };
            format!("{shown} is not an entity identifier nor an object with an identifier")
        }
        ValidationErrorKind::Format { format } => {
            let shown = if masked {
                "value".to_owned()
            } else {
                error.instance.to_string()
            };
            let name = if format == "uri" {
                "url"
            } else {
                format.as_str()
            };
            format!("{shown} is not a valid {name}")
        }
        _ if masked => error.masked().to_string(),
        _ => error.to_string(),
    };
    FieldError::new(field, message)
}

fn root_field_error(error: &ValidationError<'_>) -> FieldError {
    match &error.kind {
        ValidationErrorKind::Required { property } => {
            let field = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            FieldError::new(field, "is required")
        }
        _ => FieldError::new(ROOT_FIELD, error.to_string()),
    }
}

/// Orders errors as the inputs are defined (and so as a form shows them); errors on
/// unknown keys go last, each group keeping the validator's order.
fn sort_by_definition_order(fields: &mut [FieldError], definitions: &Map<String, Value>) {
    fields.sort_by_key(|f| {
        definitions
            .keys()
            .position(|key| *key == f.field)
            .unwrap_or(usize::MAX)
    });
}

fn entity_references(
    definitions: &Map<String, Value>,
    properties: &Map<String, Value>,
) -> Vec<EntityReference> {
    let mut references = Vec::new();
    for (key, definition) in definitions {
        let Some(value) = properties.get(key) else {
            continue;
        };
        let blueprint_of = |d: &Value| {
            d.get("blueprint")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let items = definition.get("items");
        if is_entity(definition) {
            push_reference(&mut references, key, blueprint_of(definition), value);
        } else if definition.get("type").and_then(Value::as_str) == Some("array")
            && items.is_some_and(is_entity)
        {
            // Port puts the blueprint on the items; accept it on the array too.
            let blueprint = items
                .and_then(blueprint_of)
                .or_else(|| blueprint_of(definition));
            for element in value.as_array().into_iter().flatten() {
                push_reference(&mut references, key, blueprint.clone(), element);
            }
        }
    }
    references
}

/// Whether the value at `pointer` (starting with the input's key) is one meant to name an
/// entity: the input itself, or an element of an array input of entities.
fn holds_entity_at(definition: &Value, pointer: &str) -> bool {
    if is_entity(definition) {
        return true;
    }
    let depth = pointer.split('/').count() - 1;
    definition.get("type").and_then(Value::as_str) == Some("array")
        && definition.get("items").is_some_and(is_entity)
        && depth >= 2
}

fn is_entity(definition: &Value) -> bool {
    definition.get("format").and_then(Value::as_str) == Some("entity")
        && definition.get("type").and_then(Value::as_str) != Some("array")
}

fn push_reference(
    references: &mut Vec<EntityReference>,
    input: &str,
    blueprint: Option<String>,
    value: &Value,
) {
    let identifier = match value {
        Value::String(identifier) => identifier,
        Value::Object(entity) => match entity.get("identifier") {
            Some(Value::String(identifier)) => identifier,
            _ => return,
        },
        _ => return,
    };
    references.push(EntityReference {
        input: input.to_owned(),
        blueprint,
        identifier: identifier.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Value {
        json!({
            "properties": {
                "name": {"title": "Service name", "type": "string"},
                "region": {"title": "Cloud Region", "type": "string"}
            }
        })
    }

    fn rich() -> Value {
        json!({
            "properties": {
                "name": {"title": "Service name", "type": "string", "icon": "Service",
                         "minLength": 3, "pattern": "^[a-z][a-z0-9-]*$"},
                "env": {"type": "string", "enum": ["prod", "dev"],
                        "enumColors": {"prod": "red", "dev": "green"}},
                "count": {"type": "number", "minimum": 1, "maximum": 5, "default": 2},
                "svc": {"type": "string", "format": "entity", "blueprint": "microservice",
                        "dataset": {"combinator": "and", "rules": []}},
                "deps": {"type": "array",
                         "items": {"type": "string", "format": "entity", "blueprint": "microservice"}},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "token": {"type": "string", "encryption": "aes256-gcm", "minLength": 8},
                "site": {"type": "string", "format": "url"},
                "notes": {"type": "string", "format": "markdown", "visible": false,
                          "dependsOn": ["name"]},
                "owner": {"type": "string", "format": "team", "default": {"jqQuery": ".user.team"}}
            },
            "required": ["name"],
            "order": ["name", "env", "count"]
        })
    }

    fn errors(user_inputs: &Value, submitted: &Value) -> Vec<(String, String)> {
        validate_inputs(user_inputs, submitted)
            .expect_err("should be refused")
            .fields
            .into_iter()
            .map(|f| (f.field, f.message))
            .collect()
    }

    fn fields(user_inputs: &Value, submitted: &Value) -> Vec<String> {
        errors(user_inputs, submitted)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    #[test]
    fn seed_action_inputs_pass() {
        let submitted = json!({"name": "my-microservice", "region": "eu-west-1"});
        let validated = validate_inputs(&seed(), &submitted).unwrap();
        assert_eq!(Value::Object(validated.properties), submitted);
        assert!(validated.entity_references.is_empty());
        assert!(validated.secret_keys.is_empty());
        assert_eq!(check_user_inputs_definition(&seed()), Ok(()));
    }

    #[test]
    fn submitted_must_be_an_object() {
        assert_eq!(fields(&seed(), &json!([1])), ["properties"]);
        assert_eq!(fields(&seed(), &Value::Null), ["properties"]);
    }

    #[test]
    fn extra_keys_are_kept() {
        let validated = validate_inputs(&seed(), &json!({"name": "a", "other": [1]})).unwrap();
        assert_eq!(validated.properties["other"], json!([1]));
    }

    #[test]
    fn missing_required_is_named() {
        assert_eq!(
            errors(&rich(), &json!({})),
            [("name".to_owned(), "is required".to_owned())]
        );
    }

    #[test]
    fn wrong_type() {
        let errs = errors(&rich(), &json!({"name": "svc", "count": "three"}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, "count");
        assert!(errs[0].1.contains("is not of type"), "{}", errs[0].1);
    }

    #[test]
    fn enum_values() {
        assert_eq!(
            fields(&rich(), &json!({"name": "svc", "env": "qa"})),
            ["env"]
        );
        assert!(validate_inputs(&rich(), &json!({"name": "svc", "env": "dev"})).is_ok());
    }

    #[test]
    fn pattern_and_min_length() {
        let errs = errors(&rich(), &json!({"name": "A!"}));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|(f, _)| f == "name"));
        assert!(errs.iter().any(|(_, m)| m.contains("does not match")));
        assert!(errs.iter().any(|(_, m)| m.contains("shorter than 3")));
    }

    #[test]
    fn minimum_and_maximum() {
        assert_eq!(
            errors(&rich(), &json!({"name": "svc", "count": 9})),
            [(
                "count".to_owned(),
                "9 is greater than the maximum of 5".to_owned()
            )]
        );
        assert_eq!(
            fields(&rich(), &json!({"name": "svc", "count": 0})),
            ["count"]
        );
        assert!(validate_inputs(&rich(), &json!({"name": "svc", "count": 5})).is_ok());
    }

    #[test]
    fn array_items_and_max_items() {
        let errs = errors(&rich(), &json!({"name": "svc", "tags": ["a", 2]}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, "tags");
        assert!(errs[0].1.contains("2 is not of type"), "{}", errs[0].1);
        assert_eq!(
            fields(
                &rich(),
                &json!({"name": "svc", "tags": ["a", "b", "c", "d"]})
            ),
            ["tags"]
        );
    }

    #[test]
    fn every_bad_field_is_named_in_definition_order() {
        let err = validate_inputs(
            &rich(),
            &json!({"count": 9, "env": "qa", "site": "not a url"}),
        )
        .unwrap_err();
        let named: Vec<_> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(named, ["name", "env", "count", "site"]);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "user inputs do not match the action's schema: name: is required; env: "
            ),
            "{text}"
        );
        assert!(
            text.contains("count: 9 is greater than the maximum of 5"),
            "{text}"
        );
        assert!(
            text.contains("site: \"not a url\" is not a valid url"),
            "{text}"
        );
    }

    #[test]
    fn display_matches_the_documented_shape() {
        let definition = json!({
            "properties": {
                "name": {"type": "string"},
                "count": {"type": "number", "maximum": 5}
            },
            "required": ["name"]
        });
        let err = validate_inputs(&definition, &json!({"count": 9})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user inputs do not match the action's schema: name: is required; count: 9 is greater than the maximum of 5"
        );
    }

    #[test]
    fn defaults_are_filled_in_and_validated() {
        let validated = validate_inputs(&rich(), &json!({"name": "svc"})).unwrap();
        assert_eq!(validated.properties["count"], json!(2));
        // A jq default is computed elsewhere, never copied in as an object.
        assert!(!validated.properties.contains_key("owner"));
        // A submitted value wins over the default.
        let validated = validate_inputs(&rich(), &json!({"name": "svc", "count": 4})).unwrap();
        assert_eq!(validated.properties["count"], json!(4));

        // A required input with a default may be left out.
        let definition = json!({
            "properties": {"env": {"type": "string", "default": "dev"}},
            "required": ["env"]
        });
        let validated = validate_inputs(&definition, &json!({})).unwrap();
        assert_eq!(validated.properties["env"], json!("dev"));
    }

    #[test]
    fn entity_references_are_collected() {
        let submitted = json!({
            "name": "svc",
            "svc": "payments",
            "deps": ["auth", {"identifier": "billing", "title": "Billing"}]
        });
        let validated = validate_inputs(&rich(), &submitted).unwrap();
        let reference = |identifier: &str, input: &str| EntityReference {
            input: input.to_owned(),
            blueprint: Some("microservice".to_owned()),
            identifier: identifier.to_owned(),
        };
        assert_eq!(
            validated.entity_references,
            [
                reference("payments", "svc"),
                reference("auth", "deps"),
                reference("billing", "deps"),
            ]
        );

        let submitted = json!({"name": "svc", "svc": {"identifier": "payments", "properties": {}}});
        let validated = validate_inputs(&rich(), &submitted).unwrap();
        assert_eq!(validated.entity_references, [reference("payments", "svc")]);
    }

    #[test]
    fn entity_values_must_be_identifiers() {
        assert_eq!(fields(&rich(), &json!({"name": "svc", "svc": 3})), ["svc"]);
        assert_eq!(
            fields(&rich(), &json!({"name": "svc", "svc": {"title": "x"}})),
            ["svc"]
        );
        assert_eq!(
            errors(&rich(), &json!({"name": "svc", "deps": [true]})),
            [(
                "deps".to_owned(),
                "true is not an entity identifier nor an object with an identifier".to_owned()
            )]
        );
        assert_eq!(
            fields(&rich(), &json!({"name": "svc", "svc": {"identifier": 7}})),
            ["svc"]
        );
        // The array itself keeps the plain message.
        let errs = errors(&rich(), &json!({"name": "svc", "deps": "auth"}));
        assert!(errs[0].1.contains("is not of type \"array\""), "{errs:?}");
    }

    #[test]
    fn secret_keys_are_collected_and_not_echoed() {
        let validated =
            validate_inputs(&rich(), &json!({"name": "svc", "token": "s3cr3t-value"})).unwrap();
        assert_eq!(validated.secret_keys, ["token"]);

        let err =
            validate_inputs(&rich(), &json!({"name": "svc", "token": "hunter2"})).unwrap_err();
        assert_eq!(err.fields[0].field, "token");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn formats() {
        let definition = json!({"properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "ip": {"type": "string", "format": "ipv4"},
            "ip6": {"type": "string", "format": "ipv6"},
            "site": {"type": "string", "format": "url"},
            "doc": {"type": "string", "format": "yaml"},
            "who": {"type": "string", "format": "user"},
        }});
        let good = json!({
            "when": "2024-04-16T14:31:29Z", "mail": "a@example.com", "ip": "10.0.0.1",
            "ip6": "::1", "site": "https://example.com/x", "doc": "a: [", "who": "anyone"
        });
        assert!(validate_inputs(&definition, &good).is_ok());
        let bad = json!({
            "when": "yesterday", "mail": "nope", "ip": "300.1.1.1", "ip6": "x", "site": "nope"
        });
        assert_eq!(
            fields(&definition, &bad),
            ["when", "mail", "ip", "ip6", "site"]
        );
    }

    #[test]
    fn dynamic_required_is_no_static_requirement() {
        let definition = json!({
            "properties": {"name": {"type": "string"}},
            "required": {"jqQuery": "if .form.x then [\"name\"] else [] end"}
        });
        assert!(validate_inputs(&definition, &json!({})).is_ok());
        assert_eq!(check_user_inputs_definition(&definition), Ok(()));
    }

    #[test]
    fn port_only_keys_do_not_reach_the_validator() {
        // `$ref` and unknown keywords would otherwise try to resolve or be compiled.
        let definition = json!({"properties": {"x": {
            "type": "string", "$ref": "https://example.com/schema.json",
            "sort": {"property": "title", "order": "ASC"}, "disabled": true
        }}});
        assert!(validate_inputs(&definition, &json!({"x": "y"})).is_ok());
    }

    #[test]
    fn non_object_definitions_mean_no_inputs() {
        assert!(validate_inputs(&Value::Null, &json!({"a": 1})).is_ok());
        assert!(validate_inputs(&json!({"properties": []}), &json!({})).is_ok());
    }

    #[test]
    fn a_broken_definition_is_reported_on_its_property() {
        let definition = json!({"properties": {"n": {"type": "number", "minimum": "one"}}});
        let err = validate_inputs(&definition, &json!({"n": 1})).unwrap_err();
        assert_eq!(err.fields.len(), 1);
        assert_eq!(err.fields[0].field, "n");
    }

    #[test]
    fn definition_checks() {
        assert_eq!(check_user_inputs_definition(&rich()), Ok(()));
        let fields_of = |definition: Value| -> Vec<String> {
            check_user_inputs_definition(&definition)
                .unwrap_err()
                .fields
                .into_iter()
                .map(|f| f.field)
                .collect()
        };
        assert_eq!(fields_of(json!([])), ["userInputs"]);
        assert_eq!(fields_of(json!({})), ["properties"]);
        assert_eq!(fields_of(json!({"properties": []})), ["properties"]);
        assert_eq!(
            fields_of(json!({"properties": {"bad key": {"type": "string"}}})),
            ["bad key"]
        );
        assert_eq!(
            fields_of(json!({"properties": {"x": {"title": "X"}}})),
            ["x"]
        );
        assert_eq!(
            fields_of(json!({"properties": {"x": {"type": "text"}}})),
            ["x"]
        );
        assert_eq!(fields_of(json!({"properties": {"x": "string"}})), ["x"]);
        assert_eq!(
            fields_of(json!({"properties": {"x": {"type": "array", "items": {"type": "date"}}}})),
            ["x"]
        );
        assert_eq!(
            fields_of(json!({"properties": {"x": {"type": "string", "pattern": "("}}})),
            ["x"]
        );
        assert_eq!(
            fields_of(json!({"properties": {"x": {"type": "string"}}, "required": ["y"]})),
            ["required"]
        );
        assert_eq!(
            fields_of(json!({"properties": {"x": {"type": "string"}}, "required": "x"})),
            ["required"]
        );
        assert_eq!(
            fields_of(json!({"properties": {"x": {"type": "string"}}, "order": "x"})),
            ["order"]
        );
        // Every bad property is named, not just the first.
        assert_eq!(
            fields_of(json!({"properties": {
                "a": {"type": "nope"}, "ok": {"type": "boolean"}, "b": {}
            }})),
            ["a", "b"]
        );
        let keys_ok = json!({"properties": {"a-b_c@d=e1": {"type": "object"}}, "required": []});
        assert_eq!(check_user_inputs_definition(&keys_ok), Ok(()));
    }
}
