//! Rules of the catalog: what a blueprint definition and an entity body must look
//! like, how an entity is checked against its blueprint's schema, how entity writes
//! merge (port-api.md §3). Search queries live in [`crate::search`].
//!
//! Every refusal names the field at fault, as Port's messages do.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::catalog::{Blueprint, Entity};
use crate::error::{ErrorKind, PortError};
use crate::id::{BlueprintIdentifier, EntityIdentifier, PropertyKey};
use crate::time::Timestamp;

/// Keys the server sets on blueprints and entities; ignored when a client sends them back.
const SERVER_MANAGED: [&str; 4] = ["createdAt", "createdBy", "updatedAt", "updatedBy"];

/// Property types a blueprint may declare (`integer` is JSON Schema's, accepted too).
const PROPERTY_TYPES: [&str; 6] = ["string", "number", "integer", "boolean", "object", "array"];

/// The blueprint maps `PATCH` merges key by key instead of replacing.
const MERGED_BLUEPRINT_MAPS: [&str; 4] = [
    "relations",
    "mirrorProperties",
    "calculationProperties",
    "aggregationProperties",
];

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(path: &str, message: impl std::fmt::Display) -> PortError {
    PortError::invalid(format!("{path}: {message}"))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PortError> {
    value
        .as_object()
        .ok_or_else(|| invalid(path, format!("must be an object, got {}", describe(value))))
}

// ---------------------------------------------------------------------------------------
// Blueprints
// ---------------------------------------------------------------------------------------

/// A blueprint body as written, checked: the identifier apart, every other key kept in
/// order (server-managed keys dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct BlueprintBody {
    pub identifier: BlueprintIdentifier,
    pub title: Option<String>,
    pub definition: Map<String, Value>,
}

/// Parses and checks a blueprint definition (`POST`/`PUT /v1/blueprints`): `identifier`,
/// `title` and `schema.properties` are required; property types, enums and `required`
/// must make sense; relations need a `target`.
pub fn parse_blueprint(value: &Value) -> Result<BlueprintBody, PortError> {
    let map = object(value, "blueprint")?;
    let identifier = match map.get("identifier") {
        Some(Value::String(s)) => {
            BlueprintIdentifier::parse(s).map_err(|e| invalid("identifier", e))?
        }
        Some(other) => {
            return Err(invalid(
                "identifier",
                format!("must be a string, got {}", describe(other)),
            ));
        }
        None => return Err(invalid("identifier", "is required")),
    };
    let definition: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "identifier" && !SERVER_MANAGED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let title = check_blueprint_definition(&definition)?;
    Ok(BlueprintBody {
        identifier,
        title,
        definition,
    })
}

/// Merges a `PATCH` body into a stored definition: top-level keys replace, except
/// `schema.properties` and the relation-like maps, which merge key by key.
pub fn merge_blueprint(
    existing: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = existing.clone();
    for (key, value) in patch {
        if key == "identifier" || SERVER_MANAGED.contains(&key.as_str()) {
            continue;
        }
        let merged = match (key.as_str(), out.get(key), value) {
            ("schema", Some(Value::Object(old)), Value::Object(new)) => {
                let mut schema = old.clone();
                for (k, v) in new {
                    match (k.as_str(), schema.get(k), v) {
                        (
                            "properties",
                            Some(Value::Object(old_props)),
                            Value::Object(new_props),
                        ) => {
                            let mut props = old_props.clone();
                            props.extend(new_props.iter().map(|(k, v)| (k.clone(), v.clone())));
                            schema.insert(k.clone(), Value::Object(props));
                        }
                        _ => {
                            schema.insert(k.clone(), v.clone());
                        }
                    }
                }
                Value::Object(schema)
            }
            (k, Some(Value::Object(old)), Value::Object(new))
                if MERGED_BLUEPRINT_MAPS.contains(&k) =>
            {
                let mut merged = old.clone();
                merged.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(merged)
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    out
}

/// Checks a definition (every key but `identifier`) and returns its title.
pub fn check_blueprint_definition(
    definition: &Map<String, Value>,
) -> Result<Option<String>, PortError> {
    let title = match definition.get("title") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("title", "must not be empty")),
        Some(other) => {
            return Err(invalid(
                "title",
                format!("must be a string, got {}", describe(other)),
            ));
        }
        None => return Err(invalid("title", "is required")),
    };
    for key in ["icon", "description"] {
        if let Some(v) = definition
            .get(key)
            .filter(|v| !v.is_string() && !v.is_null())
        {
            return Err(invalid(
                key,
                format!("must be a string, got {}", describe(v)),
            ));
        }
    }
    let schema = object(
        definition
            .get("schema")
            .ok_or_else(|| invalid("schema", "is required"))?,
        "schema",
    )?;
    let properties = object(
        schema
            .get("properties")
            .ok_or_else(|| invalid("schema.properties", "is required"))?,
        "schema.properties",
    )?;
    for (key, property) in properties {
        check_property_definition(key, property)?;
    }
    if let Some(required) = schema.get("required") {
        let list = required.as_array().ok_or_else(|| {
            invalid(
                "schema.required",
                format!("must be an array, got {}", describe(required)),
            )
        })?;
        for item in list {
            match item.as_str() {
                Some(key) if properties.contains_key(key) => {}
                Some(key) => {
                    return Err(invalid(
                        "schema.required",
                        format!("{key:?} is not a property of the schema"),
                    ));
                }
                None => {
                    return Err(invalid(
                        "schema.required",
                        "must list property keys (strings)",
                    ));
                }
            }
        }
    }
    if let Some(relations) = definition.get("relations") {
        for (key, relation) in object(relations, "relations")? {
            let path = format!("relations.{key}");
            PropertyKey::parse(key).map_err(|e| invalid(&path, e))?;
            let relation = object(relation, &path)?;
            match relation.get("target") {
                Some(Value::String(target)) => {
                    BlueprintIdentifier::parse(target)
                        .map_err(|e| invalid(&format!("{path}.target"), e))?;
                }
                Some(other) => {
                    return Err(invalid(
                        &format!("{path}.target"),
                        format!("must be a string, got {}", describe(other)),
                    ));
                }
                None => return Err(invalid(&format!("{path}.target"), "is required")),
            }
            for flag in ["required", "many"] {
                if let Some(v) = relation.get(flag).filter(|v| !v.is_boolean()) {
                    return Err(invalid(
                        &format!("{path}.{flag}"),
                        format!("must be a boolean, got {}", describe(v)),
                    ));
                }
            }
        }
    }
    for key in [
        "mirrorProperties",
        "calculationProperties",
        "aggregationProperties",
    ] {
        if let Some(v) = definition.get(key) {
            object(v, key)?;
        }
    }
    Ok(Some(title))
}

fn check_property_definition(key: &str, property: &Value) -> Result<(), PortError> {
    let path = format!("schema.properties.{key}");
    PropertyKey::parse(key).map_err(|e| invalid(&path, e))?;
    let property = object(property, &path)?;
    match property.get("type") {
        Some(Value::String(ty)) if PROPERTY_TYPES.contains(&ty.as_str()) => {}
        Some(Value::String(ty)) => {
            return Err(invalid(
                &format!("{path}.type"),
                format!("must be one of {}, got {ty:?}", PROPERTY_TYPES.join(", ")),
            ));
        }
        Some(other) => {
            return Err(invalid(
                &format!("{path}.type"),
                format!("must be a string, got {}", describe(other)),
            ));
        }
        None => return Err(invalid(&format!("{path}.type"), "is required")),
    }
    if let Some(values) = property.get("enum").filter(|v| !v.is_array()) {
        return Err(invalid(
            &format!("{path}.enum"),
            format!("must be an array, got {}", describe(values)),
        ));
    }
    if let Some(format) = property.get("format").filter(|v| !v.is_string()) {
        return Err(invalid(
            &format!("{path}.format"),
            format!("must be a string, got {}", describe(format)),
        ));
    }
    if let Some(Value::String(pattern)) = property.get("pattern") {
        bounded_regex(pattern).map_err(|_| {
            invalid(
                &format!("{path}.pattern"),
                "is not a valid regular expression",
            )
        })?;
    }
    Ok(())
}

/// Compiled size a tenant's regular expression may reach (the `regex` crate matches in
/// linear time; this bounds the compile and its memory).
pub const PATTERN_SIZE_LIMIT: usize = 1024 * 1024;

/// A blueprint property's `pattern`, compiled within [`PATTERN_SIZE_LIMIT`].
fn bounded_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

// ---------------------------------------------------------------------------------------
// Entities: the body
// ---------------------------------------------------------------------------------------

/// An entity body as written. `None` means the key was absent; `Some(None)` that it was
/// `null`, which a merge uses to clear a field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityBody {
    pub identifier: Option<EntityIdentifier>,
    pub title: Option<Option<String>>,
    pub icon: Option<Option<String>>,
    pub team: Option<Option<Value>>,
    pub properties: Option<Map<String, Value>>,
    pub relations: Option<Map<String, Value>>,
}

const ENTITY_KEYS: [&str; 7] = [
    "identifier",
    "title",
    "icon",
    "team",
    "properties",
    "relations",
    "blueprint",
];

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Option<String>>, PortError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(invalid(
            key,
            format!("must be a string, got {}", describe(other)),
        )),
    }
}

/// Parses an entity body. Unknown keys are refused; server-managed keys are ignored; a
/// `blueprint` key must name the route's blueprint. Search-query identifiers, teams and
/// relation values are not supported and are refused.
pub fn parse_entity_body(
    value: &Value,
    blueprint: &BlueprintIdentifier,
) -> Result<EntityBody, PortError> {
    let map = object(value, "entity")?;
    if let Some(key) = map
        .keys()
        .find(|k| !ENTITY_KEYS.contains(&k.as_str()) && !SERVER_MANAGED.contains(&k.as_str()))
    {
        return Err(invalid(key, "is not allowed"));
    }
    match map.get("blueprint") {
        None => {}
        Some(Value::String(b)) if b == blueprint.as_str() => {}
        Some(_) => {
            return Err(invalid(
                "blueprint",
                format!("must be {}, the blueprint of the route", blueprint.as_str()),
            ));
        }
    }
    let identifier = match map.get("identifier") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(EntityIdentifier::parse(s).map_err(|e| invalid("identifier", e))?)
        }
        Some(Value::Object(_)) => {
            return Err(invalid(
                "identifier",
                "search queries are not supported here",
            ));
        }
        Some(other) => {
            return Err(invalid(
                "identifier",
                format!("must be a string, got {}", describe(other)),
            ));
        }
    };
    let team = match map.get("team") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v @ Value::String(_)) => Some(Some(v.clone())),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(Some(Value::Array(items.clone())))
        }
        Some(other) => {
            return Err(invalid(
                "team",
                format!(
                    "must be a string or an array of strings, got {}",
                    describe(other)
                ),
            ));
        }
    };
    let properties = map
        .get("properties")
        .map(|v| object(v, "properties").cloned())
        .transpose()?;
    let relations = match map.get("relations") {
        None => None,
        Some(v) => {
            let relations = object(v, "relations")?;
            for (key, value) in relations {
                let path = format!("relations.{key}");
                match value {
                    Value::Null => {}
                    Value::String(s) => {
                        EntityIdentifier::parse(s).map_err(|e| invalid(&path, e))?;
                    }
                    Value::Array(items) => {
                        for item in items {
                            let s = item
                                .as_str()
                                .ok_or_else(|| invalid(&path, "must list entity identifiers"))?;
                            EntityIdentifier::parse(s).map_err(|e| invalid(&path, e))?;
                        }
                    }
                    Value::Object(_) => {
                        return Err(invalid(&path, "search queries are not supported here"));
                    }
                    other => {
                        return Err(invalid(
                            &path,
                            format!(
                                "must be an identifier, a list of identifiers or null, got {}",
                                describe(other)
                            ),
                        ));
                    }
                }
            }
            Some(relations.clone())
        }
    };
    Ok(EntityBody {
        identifier,
        title: optional_string(map, "title")?,
        icon: optional_string(map, "icon")?,
        team,
        properties,
        relations,
    })
}

impl EntityBody {
    /// Replaces `entity`'s fields wholesale with this body's (absent keys become empty).
    pub fn replace_into(&self, entity: &mut Entity) {
        entity.title = self.title.clone().flatten();
        entity.icon = self.icon.clone().flatten();
        entity.team = self.team.clone().flatten();
        entity.properties = self.properties.clone().unwrap_or_default();
        entity.relations = self.relations.clone().unwrap_or_default();
    }

    /// Merges this body into `entity`: present keys change, properties and relations
    /// merge key by key.
    pub fn merge_into(&self, entity: &mut Entity) {
        if let Some(title) = &self.title {
            entity.title = title.clone();
        }
        if let Some(icon) = &self.icon {
            entity.icon = icon.clone();
        }
        if let Some(team) = &self.team {
            entity.team = team.clone();
        }
        if let Some(properties) = &self.properties {
            entity
                .properties
                .extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(relations) = &self.relations {
            entity
                .relations
                .extend(relations.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entities: checking against the blueprint
// ---------------------------------------------------------------------------------------

/// A related entity that an entity's relations point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationTarget {
    pub relation: String,
    pub blueprint: BlueprintIdentifier,
    pub identifier: EntityIdentifier,
}

fn schema_mismatch(problems: &[String]) -> PortError {
    PortError::new(
        ErrorKind::BlueprintSchemaMismatch,
        format!(
            "the entity does not match the blueprint's schema: {}",
            problems.join("; ")
        ),
    )
}

/// Checks an entity's properties and relations against its blueprint: property types,
/// enums, formats, lengths, ranges and patterns, `schema.required`, unknown keys, and
/// relation keys, cardinality and required relations. Returns the related entities the
/// caller must make sure exist.
pub fn check_entity(
    blueprint: &Blueprint,
    entity: &Entity,
) -> Result<Vec<RelationTarget>, PortError> {
    let schemas = blueprint.property_schemas();
    let mut problems = Vec::new();
    for (key, value) in &entity.properties {
        match schemas.get(key) {
            None => problems.push(format!(
                "properties.{key}: is not a property of blueprint {}",
                blueprint.identifier
            )),
            Some(schema) if !value.is_null() => {
                if let Err(message) = check_value(schema, value) {
                    problems.push(format!("properties.{key}: {message}"));
                }
            }
            Some(_) => {}
        }
    }
    let required = blueprint
        .definition
        .get("schema")
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in required.iter().filter_map(Value::as_str) {
        if entity.properties.get(key).is_none_or(Value::is_null) {
            problems.push(format!("properties.{key}: is required"));
        }
    }
    if !problems.is_empty() {
        return Err(schema_mismatch(&problems));
    }

    let relation_schemas = blueprint
        .definition
        .get("relations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut targets = Vec::new();
    for (key, value) in &entity.relations {
        let Some(schema) = relation_schemas.get(key) else {
            problems.push(format!(
                "relations.{key}: is not a relation of blueprint {}",
                blueprint.identifier
            ));
            continue;
        };
        let Some(target) = schema
            .get("target")
            .and_then(Value::as_str)
            .and_then(|t| BlueprintIdentifier::parse(t).ok())
        else {
            continue;
        };
        let many = schema.get("many").and_then(Value::as_bool).unwrap_or(false);
        let identifiers: Vec<&str> = match value {
            Value::String(s) if !many => vec![s.as_str()],
            Value::Array(items) if many => items.iter().filter_map(Value::as_str).collect(),
            Value::Null => Vec::new(),
            _ => {
                let expected = if many {
                    "a list of identifiers"
                } else {
                    "a single identifier"
                };
                return Err(PortError::new(
                    ErrorKind::RelationManyViolation,
                    format!("relations.{key}: relation {key} takes {expected}"),
                ));
            }
        };
        for identifier in identifiers {
            if let Ok(identifier) = EntityIdentifier::parse(identifier) {
                targets.push(RelationTarget {
                    relation: key.clone(),
                    blueprint: target.clone(),
                    identifier,
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(schema_mismatch(&problems));
    }
    for (key, schema) in &relation_schemas {
        let required = schema
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let present = entity
            .relations
            .get(key)
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
        if required && !present {
            return Err(PortError::new(
                ErrorKind::RequiredRelation,
                format!("relations.{key}: relation {key} is required"),
            ));
        }
    }
    Ok(targets)
}

static URL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#]+\S*$").expect("valid regex")
});
static EMAIL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^@\s]+@[^@\s]+$").expect("valid regex"));

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.as_i64().is_some()
                || value.as_u64().is_some()
                || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

fn format_matches(format: &str, value: &str) -> bool {
    match format {
        // A timer holds the moment it expires.
        "date-time" | crate::timer::TIMER_FORMAT => Timestamp::parse(value).is_ok(),
        "url" => URL_RE.is_match(value),
        "email" | "idn-email" => EMAIL_RE.is_match(value),
        "ipv4" => value.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => value.parse::<Ipv6Addr>().is_ok(),
        // Port's other formats (markdown, yaml, user, team, …) are free text here.
        _ => true,
    }
}

/// Checks one non-null value against a property schema; the message names what is wrong.
fn check_value(schema: &Value, value: &Value) -> Result<(), String> {
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    if !type_matches(ty, value) {
        let article = if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        return Err(format!("must be {article} {ty}, got {}", describe(value)));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("must be one of {}", shown.join(", ")));
    }
    if let Value::String(s) = value {
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && !format_matches(format, s)
        {
            return Err(format!("must be a valid {format}"));
        }
        let length = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| length < min)
        {
            return Err("is too short".to_owned());
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| length > max)
        {
            return Err("is too long".to_owned());
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && bounded_regex(pattern).is_ok_and(|re| !re.is_match(s))
        {
            return Err(format!("must match {pattern}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| n < min)
        {
            return Err("is below the minimum".to_owned());
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| n > max)
        {
            return Err("is above the maximum".to_owned());
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            if !item.is_null() {
                check_value(item_schema, item).map_err(|m| format!("item {i}: {m}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::Stamp;
    use crate::id::OrgId;

    fn microservice() -> Blueprint {
        let body = parse_blueprint(&json!({
            "identifier": "microservice",
            "title": "Service",
            "schema": {
                "properties": {
                    "region": { "type": "string", "title": "Region", "enum": ["eu-west-1", "us-east-1"] },
                    "replicas": { "type": "number" },
                    "homepage": { "type": "string", "format": "url" }
                },
                "required": ["region"]
            },
            "relations": { "owner": { "target": "team", "required": false, "many": false } }
        }))
        .unwrap();
        Blueprint {
            org_id: OrgId::parse("org_7SDeR821bunhS8es").unwrap(),
            identifier: body.identifier,
            title: body.title,
            definition: body.definition,
            stamp: stamp(),
        }
    }

    #[test]
    fn a_pattern_too_large_to_compile_cheaply_is_refused() {
        // Compiles to more than a mebibyte of program (the regex crate's own limit is
        // ten): refused when the blueprint is saved, never compiled per entity.
        let huge = json!({
            "identifier": "huge",
            "title": "Huge",
            "schema": { "properties": { "x": { "type": "string", "pattern": "[a-z]{1000}{20}" } } }
        });
        let error = parse_blueprint(&huge).unwrap_err();
        assert!(error.message.contains("pattern"), "{}", error.message);
        assert!(
            regex::Regex::new("[a-z]{1000}{20}").is_ok(),
            "the default limit allows it"
        );
        let fine = json!({
            "identifier": "fine",
            "title": "Fine",
            "schema": { "properties": { "x": { "type": "string", "pattern": "^[a-z]{2,8}$" } } }
        });
        parse_blueprint(&fine).unwrap();
    }

    fn stamp() -> Stamp {
        let at = Timestamp::from_unix_millis(0);
        Stamp {
            created_at: at,
            created_by: "u".into(),
            updated_at: at,
            updated_by: "u".into(),
        }
    }

    fn entity(body: Value) -> Entity {
        let bp = microservice();
        let parsed = parse_entity_body(&body, &bp.identifier).unwrap();
        let mut e = Entity {
            org_id: bp.org_id.clone(),
            blueprint: bp.identifier.clone(),
            identifier: parsed
                .identifier
                .clone()
                .unwrap_or_else(|| EntityIdentifier::parse("x").unwrap()),
            title: None,
            icon: None,
            team: None,
            properties: Map::new(),
            relations: Map::new(),
            stamp: stamp(),
        };
        parsed.replace_into(&mut e);
        e
    }

    #[test]
    fn blueprint_definitions_are_checked() {
        assert!(
            parse_blueprint(
                &json!({"identifier": "a", "title": "A", "schema": {"properties": {}}})
            )
            .is_ok()
        );
        let err =
            parse_blueprint(&json!({"identifier": "a", "schema": {"properties": {}}})).unwrap_err();
        assert_eq!(err.message, "title: is required");
        let err = parse_blueprint(&json!({"identifier": "a", "title": "A", "schema": {"properties": {"x": {"type": "date"}}}}))
            .unwrap_err();
        assert!(
            err.message
                .starts_with("schema.properties.x.type: must be one of")
        );
        let err = parse_blueprint(&json!({"identifier": "a", "title": "A", "schema": {"properties": {}, "required": ["x"]}}))
            .unwrap_err();
        assert_eq!(
            err.message,
            "schema.required: \"x\" is not a property of the schema"
        );
    }

    #[test]
    fn entities_are_checked_against_the_schema() {
        let bp = microservice();
        assert!(
            check_entity(
                &bp,
                &entity(json!({"identifier": "a", "properties": {"region": "eu-west-1"}}))
            )
            .is_ok()
        );
        let err = check_entity(
            &bp,
            &entity(json!({"identifier": "a", "properties": {"region": 3, "nope": 1}})),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BlueprintSchemaMismatch);
        assert!(
            err.message
                .contains("properties.region: must be a string, got a number"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("properties.nope: is not a property"),
            "{}",
            err.message
        );
        let err =
            check_entity(&bp, &entity(json!({"identifier": "a", "properties": {}}))).unwrap_err();
        assert!(err.message.contains("properties.region: is required"));
        let err = check_entity(
            &bp,
            &entity(json!({"identifier": "a", "properties": {"region": "mars"}})),
        )
        .unwrap_err();
        assert!(err.message.contains("must be one of"));
        let err = check_entity(
            &bp,
            &entity(json!({"identifier": "a", "properties": {"region": "eu-west-1", "homepage": "not a url"}})),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("properties.homepage: must be a valid url")
        );
        let targets = check_entity(
            &bp,
            &entity(json!({"identifier": "a", "properties": {"region": "eu-west-1"}, "relations": {"owner": "t1"}})),
        )
        .unwrap();
        assert_eq!(targets[0].blueprint.as_str(), "team");
        let err = check_entity(
            &bp,
            &entity(json!({"identifier": "a", "properties": {"region": "eu-west-1"}, "relations": {"owner": ["t1"]}})),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RelationManyViolation);
    }

    #[test]
    fn unknown_entity_keys_are_refused() {
        let bp = BlueprintIdentifier::parse("microservice").unwrap();
        let err = parse_entity_body(&json!({"identifier": "a", "colour": "red"}), &bp).unwrap_err();
        assert_eq!(err.message, "colour: is not allowed");
        assert!(parse_entity_body(&json!({"identifier": "a", "createdAt": "x"}), &bp).is_ok());
    }

    #[test]
    fn merges_keep_what_is_not_mentioned() {
        let mut e = entity(
            json!({"identifier": "a", "title": "A", "properties": {"region": "eu-west-1", "replicas": 2}}),
        );
        let bp = BlueprintIdentifier::parse("microservice").unwrap();
        parse_entity_body(&json!({"properties": {"replicas": 3}}), &bp)
            .unwrap()
            .merge_into(&mut e);
        assert_eq!(e.title.as_deref(), Some("A"));
        assert_eq!(
            e.properties,
            json!({"region": "eu-west-1", "replicas": 3})
                .as_object()
                .unwrap()
                .clone()
        );
    }
}
