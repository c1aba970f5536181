//! The catalog: blueprints, entities, and the record of which run touched which entity.

use serde_json::{Map, Value, json};

use crate::error::PortError;
use crate::id::{BlueprintIdentifier, EntityIdentifier, OrgId, RunId};
use crate::time::Timestamp;

/// Who created or last changed something, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// A blueprint. The definition is kept as written (schema, relations, mirror and
/// calculation properties…) because portd only interprets `title`, `schema` and
/// `relations`.
#[derive(Debug, Clone, PartialEq)]
pub struct Blueprint {
    pub org_id: OrgId,
    pub identifier: BlueprintIdentifier,
    pub title: Option<String>,
    /// Every key of the definition except `identifier`, in the order written.
    pub definition: Map<String, Value>,
    pub stamp: Stamp,
}

impl Blueprint {
    pub fn icon(&self) -> Option<&str> {
        self.definition.get("icon").and_then(Value::as_str)
    }

    /// `schema.properties`, or an empty map.
    pub fn property_schemas(&self) -> Map<String, Value> {
        self.definition
            .get("schema")
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("identifier".into(), json!(self.identifier));
        for (k, v) in &self.definition {
            m.insert(k.clone(), v.clone());
        }
        m.insert("createdAt".into(), json!(self.stamp.created_at));
        m.insert("createdBy".into(), json!(self.stamp.created_by));
        m.insert("updatedAt".into(), json!(self.stamp.updated_at));
        m.insert("updatedBy".into(), json!(self.stamp.updated_by));
        Value::Object(m)
    }
}

/// An entity of a blueprint.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub org_id: OrgId,
    pub blueprint: BlueprintIdentifier,
    pub identifier: EntityIdentifier,
    pub title: Option<String>,
    pub icon: Option<String>,
    /// `team` as written: a string or a list of strings.
    pub team: Option<Value>,
    pub properties: Map<String, Value>,
    pub relations: Map<String, Value>,
    pub stamp: Stamp,
}

impl Entity {
    /// The shape the seed shows in `payload.entity`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("identifier".into(), json!(self.identifier));
        m.insert("title".into(), json!(self.title));
        m.insert("icon".into(), json!(self.icon));
        m.insert("blueprint".into(), json!(self.blueprint));
        if let Some(team) = &self.team {
            m.insert("team".into(), team.clone());
        }
        m.insert("properties".into(), Value::Object(self.properties.clone()));
        m.insert("relations".into(), Value::Object(self.relations.clone()));
        m.insert("createdAt".into(), json!(self.stamp.created_at));
        m.insert("createdBy".into(), json!(self.stamp.created_by));
        m.insert("updatedAt".into(), json!(self.stamp.updated_at));
        m.insert("updatedBy".into(), json!(self.stamp.updated_by));
        Value::Object(m)
    }
}

/// What a run did to an entity; also how a resource changed in a change event
/// ([`crate::event::ChangeKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityOperation {
    Create,
    Update,
    Delete,
}

impl EntityOperation {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATE" => Some(Self::Create),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// An entity change bound to a run with `run_id` (the run page's "affected entities",
/// and `GET /v1/audit-log?run_id=`).
#[derive(Debug, Clone, PartialEq)]
pub struct AffectedEntity {
    pub org_id: OrgId,
    pub run_id: RunId,
    pub blueprint: BlueprintIdentifier,
    pub entity: EntityIdentifier,
    pub operation: EntityOperation,
    pub at: Timestamp,
    pub by: String,
    /// The entity after the change (before it, for deletions).
    pub snapshot: Value,
}

impl AffectedEntity {
    /// An audit-log record, shaped after Port's audit log entries.
    pub fn to_json(&self) -> Value {
        json!({
            "identifier": self.entity,
            "resourceType": "entity",
            "action": self.operation.as_str(),
            "trigger": { "by": { "userId": self.by }, "at": self.at, "origin": "API" },
            "context": { "blueprint": self.blueprint, "entity": self.entity, "runId": self.run_id },
            "diff": self.snapshot,
            "status": "SUCCESS",
        })
    }
}

/// The most paths one `include` or `exclude` may list.
pub const MAX_PROJECTION_PATHS: usize = 100;

/// How `include` / `exclude` entries name parts of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// Query parameters (Port's `include[]`, `exclude[]`): dot paths into the entity's
    /// JSON, such as `identifier`, `properties.language`, `relations.owner`.
    EntityJson,
    /// Search bodies: the same, and a bare name is also a property or relation
    /// identifier (`language`); meta-properties may be written `$identifier`,
    /// `$createdAt`…
    Identifiers,
}

/// The top-level keys of an entity answer.
const ENTITY_ANSWER_KEYS: [&str; 12] = [
    "identifier",
    "title",
    "icon",
    "blueprint",
    "team",
    "properties",
    "relations",
    "scorecards",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
];

/// A set of paths, as a tree: `whole` marks a path that ends here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PathTree {
    whole: bool,
    children: std::collections::BTreeMap<String, PathTree>,
    /// How many paths were given (at the root).
    paths: usize,
}

impl PathTree {
    fn insert(&mut self, path: &[&str]) {
        match path.split_first() {
            None => self.whole = true,
            Some((first, rest)) => self
                .children
                .entry((*first).to_owned())
                .or_default()
                .insert(rest),
        }
    }

    fn parse(entries: &[String], style: PathStyle, what: &str) -> Result<Self, PortError> {
        if entries.len() > MAX_PROJECTION_PATHS {
            return Err(PortError::invalid(format!(
                "{what}: at most {MAX_PROJECTION_PATHS} paths"
            )));
        }
        let mut tree = Self::default();
        for entry in entries {
            let trimmed = entry.trim();
            let meta = trimmed.strip_prefix('$');
            // Empty segments (`a..b`, a trailing dot) and empty entries name nothing:
            // they are skipped, as clients split and join these lists loosely.
            let path: Vec<&str> = meta
                .unwrap_or(trimmed)
                .split('.')
                .filter(|segment| !segment.is_empty())
                .collect();
            if path.is_empty() {
                continue;
            }
            // Port's search bodies name properties and relations by identifier
            // (`language`) and meta-properties with `$`; a bare top-level key
            // (`identifier`) is taken as that key too, as clients also write it so.
            let bare_identifier =
                style == PathStyle::Identifiers && meta.is_none() && path.len() == 1;
            if bare_identifier {
                tree.insert(&["properties", path[0]]);
                tree.insert(&["relations", path[0]]);
            }
            if !bare_identifier || ENTITY_ANSWER_KEYS.contains(&path[0]) {
                tree.insert(&path);
            }
            tree.paths += 1;
        }
        Ok(tree)
    }

    /// The parts of `value` on one of the paths; `None` when nothing is (an object
    /// none of whose keys is on a path is left out, not shown empty).
    fn keep(&self, value: Value) -> Option<Value> {
        if self.whole {
            return Some(value);
        }
        match value {
            Value::Object(map) => {
                let kept: Map<String, Value> = map
                    .into_iter()
                    .filter_map(|(key, v)| {
                        let child = self.children.get(&key)?;
                        child.keep(v).map(|kept| (key, kept))
                    })
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            _ => None,
        }
    }

    fn drop_from(&self, value: &mut Value) {
        if let Value::Object(map) = value {
            for (key, child) in &self.children {
                if child.whole {
                    map.remove(key);
                } else if let Some(inner) = map.get_mut(key) {
                    child.drop_from(inner);
                }
            }
        }
    }
}

/// `include` and `exclude` of an entity answer: keep only the included paths (all
/// when there is no `include`), then remove the excluded ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    include: Option<PathTree>,
    exclude: PathTree,
}

impl Projection {
    /// Parses the entries; an `include` without a path keeps everything.
    pub fn parse(
        include: &[String],
        exclude: &[String],
        style: PathStyle,
    ) -> Result<Self, PortError> {
        let include = PathTree::parse(include, style, "include")?;
        Ok(Self {
            include: (include.paths > 0).then_some(include),
            exclude: PathTree::parse(exclude, style, "exclude")?,
        })
    }

    pub fn apply(&self, entity: Value) -> Value {
        let mut shown = match &self.include {
            Some(tree) => tree
                .keep(entity)
                .unwrap_or_else(|| Value::Object(Map::new())),
            None => entity,
        };
        self.exclude.drop_from(&mut shown);
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity() -> Value {
        json!({
            "identifier": "svc", "title": "Service", "icon": null, "blueprint": "service",
            "properties": { "language": "go", "region": "eu" },
            "relations": { "owner": "team-a", "language": "x" },
            "createdAt": "t", "createdBy": "u", "updatedAt": "t", "updatedBy": "u"
        })
    }

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn show(include: &[&str], exclude: &[&str], style: PathStyle) -> Value {
        Projection::parse(&paths(include), &paths(exclude), style)
            .unwrap()
            .apply(entity())
    }

    #[test]
    fn include_keeps_dot_paths_in_the_entitys_order() {
        assert_eq!(show(&[], &[], PathStyle::EntityJson), entity());
        assert_eq!(
            show(
                &["properties.language", "identifier"],
                &[],
                PathStyle::EntityJson
            ),
            json!({ "identifier": "svc", "properties": { "language": "go" } })
        );
        assert_eq!(
            show(
                &["relations.owner", "blueprint", "properties.missing"],
                &[],
                PathStyle::EntityJson
            ),
            json!({ "blueprint": "service", "relations": { "owner": "team-a" } })
        );
        // A path through a value that is not an object keeps nothing of it.
        assert_eq!(show(&["title.x"], &[], PathStyle::EntityJson), json!({}));
        assert_eq!(
            show(
                &["properties", "properties.language"],
                &[],
                PathStyle::EntityJson
            )["properties"],
            json!({ "language": "go", "region": "eu" })
        );
    }

    #[test]
    fn exclude_removes_paths_after_include() {
        assert_eq!(
            show(
                &[],
                &[
                    "properties.region",
                    "createdAt",
                    "createdBy",
                    "updatedAt",
                    "updatedBy",
                    "relations"
                ],
                PathStyle::EntityJson
            ),
            json!({ "identifier": "svc", "title": "Service", "icon": null, "blueprint": "service", "properties": { "language": "go" } })
        );
        assert_eq!(
            show(
                &["identifier", "properties"],
                &["properties.language"],
                PathStyle::EntityJson
            ),
            json!({ "identifier": "svc", "properties": { "region": "eu" } })
        );
    }

    #[test]
    fn search_bodies_may_name_properties_and_relations_by_identifier() {
        assert_eq!(
            show(
                &["$identifier", "language", "$createdAt"],
                &[],
                PathStyle::Identifiers
            ),
            json!({ "identifier": "svc", "properties": { "language": "go" }, "relations": { "language": "x" }, "createdAt": "t" })
        );
        // In query parameters a bare name is a top-level key.
        assert_eq!(show(&["language"], &[], PathStyle::EntityJson), json!({}));
        assert_eq!(
            show(&["identifier"], &[], PathStyle::Identifiers),
            json!({ "identifier": "svc" })
        );
    }

    #[test]
    fn paths_are_read_loosely_and_bounded() {
        assert_eq!(
            show(
                &["properties..language.", " ", ""],
                &["", "."],
                PathStyle::EntityJson
            ),
            json!({ "properties": { "language": "go" } })
        );
        assert_eq!(show(&["", " "], &[], PathStyle::EntityJson), entity());
        let many: Vec<String> = (0..=MAX_PROJECTION_PATHS)
            .map(|i| format!("p{i}"))
            .collect();
        let err = Projection::parse(&[], &many, PathStyle::EntityJson).unwrap_err();
        assert_eq!(err.message, "exclude: at most 100 paths");
    }
}
