//! Entity search (port-api.md §3.3): Port's rules and combinators, parsed once within
//! size limits, matched against entities, and run over the store a bounded page at a
//! time under a budget of entities and bytes examined, so no search loads a whole
//! catalog or scans without end.
//!
//! What portd pushes down to the store: `$blueprint` and `$identifier` rules (`=`,
//! `in`) at the top of the query narrow the primary-key range the store reads. Every
//! other rule is matched here, on pages of rows, because both databases keep an
//! entity as one JSON document and the same matcher then serves SQLite, PostgreSQL
//! and the memory fake alike.
//!
//! Supported: the string, number, date, empty and expiry operators, `containsAny`,
//! nested `{combinator, rules}` groups, the meta-properties `$identifier`, `$title`,
//! `$icon`, `$team`, `$blueprint`, `$createdAt`, `$updatedAt`, `$createdBy`,
//! `$updatedBy` (and `$datasource`, always empty here), property and relation keys,
//! and `relatedTo` over direct relations
//! (one hop). Refused with a message: `matchAny`, property-schema rules and rules
//! whose property or value refers to the calling user (portd has no users).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use crate::catalog::Entity;
use crate::error::{ErrorKind, PortError};
use crate::id::{BlueprintIdentifier, EntityIdentifier, OrgId};
use crate::ports::{BlueprintStore, EntityKey, EntityScan, EntityStore};
use crate::time::Timestamp;

fn invalid(path: &str, message: impl std::fmt::Display) -> PortError {
    PortError::invalid(format!("{path}: {message}"))
}

// ---------------------------------------------------------------------------------------
// The query
// ---------------------------------------------------------------------------------------

/// How deep queries may nest, so a hostile body cannot exhaust the stack.
pub const MAX_QUERY_DEPTH: usize = 16;
/// The most rules (leaves) a query may hold: each is matched against every entity
/// examined, so their number multiplies a search's cost.
pub const MAX_QUERY_RULES: usize = 100;
/// The most values a query's rules may hold in all (an `in` list counts each item).
pub const MAX_QUERY_VALUES: usize = 1000;

/// How the rules of a group combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combinator {
    And,
    Or,
}

/// What a rule reads from an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Identifier,
    Title,
    Icon,
    Team,
    Blueprint,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
    UpdatedBy,
    /// Where the entity came from, which Port derives from its writer's User-Agent
    /// (Ocean searches on it). portd records none: the field is always empty.
    Datasource,
    /// A property, or else a relation, of that key.
    Property(String),
}

impl Field {
    const META: &'static str = "$identifier, $title, $icon, $team, $blueprint, $createdAt, $updatedAt, $createdBy, $updatedBy, $datasource";

    fn parse(raw: &str, path: &str) -> Result<Self, PortError> {
        Ok(match raw {
            "$identifier" => Self::Identifier,
            "$title" => Self::Title,
            "$icon" => Self::Icon,
            "$team" => Self::Team,
            "$blueprint" => Self::Blueprint,
            "$createdAt" => Self::CreatedAt,
            "$updatedAt" => Self::UpdatedAt,
            "$createdBy" => Self::CreatedBy,
            "$updatedBy" => Self::UpdatedBy,
            "$datasource" => Self::Datasource,
            meta if meta.starts_with('$') => {
                return Err(invalid(
                    path,
                    format!(
                        "{meta:?} is not a meta-property portd knows ({})",
                        Self::META
                    ),
                ));
            }
            key => Self::Property(key.to_owned()),
        })
    }

    /// The value the rule reads; borrowed where the entity holds it, so that rules
    /// never copy large documents.
    fn read<'e>(&self, entity: &'e Entity) -> Cow<'e, Value> {
        let owned = |s: String| Cow::Owned(Value::String(s));
        match self {
            Self::Identifier => owned(entity.identifier.to_string()),
            Self::Title => entity.title.clone().map_or(Cow::Owned(Value::Null), owned),
            Self::Icon => entity.icon.clone().map_or(Cow::Owned(Value::Null), owned),
            Self::Team => entity
                .team
                .as_ref()
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            Self::Blueprint => owned(entity.blueprint.to_string()),
            Self::CreatedAt => owned(entity.stamp.created_at.to_string()),
            Self::UpdatedAt => owned(entity.stamp.updated_at.to_string()),
            Self::CreatedBy => owned(entity.stamp.created_by.clone()),
            Self::UpdatedBy => owned(entity.stamp.updated_by.clone()),
            Self::Datasource => Cow::Owned(Value::Null),
            Self::Property(key) => entity
                .properties
                .get(key)
                .or_else(|| entity.relations.get(key))
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
        }
    }
}

/// A date range preset, counted back from now (or the current UTC day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Today,
    Tomorrow,
    Yesterday,
    LastDay,
    LastWeek,
    Last2Weeks,
    LastMonth,
    Last3Months,
    Last6Months,
    Last12Months,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Preset {
    const ALLOWED: &'static str = "today, tomorrow, yesterday, lastDay, lastWeek, last2Weeks, lastMonth, last3Months, last6Months, last12Months";

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "today" => Self::Today,
            "tomorrow" => Self::Tomorrow,
            "yesterday" => Self::Yesterday,
            "lastDay" => Self::LastDay,
            "lastWeek" => Self::LastWeek,
            "last2Weeks" => Self::Last2Weeks,
            "lastMonth" => Self::LastMonth,
            "last3Months" => Self::Last3Months,
            "last6Months" => Self::Last6Months,
            "last12Months" => Self::Last12Months,
            _ => return None,
        })
    }

    /// The inclusive range of instants the preset means at `now`: whole UTC days for
    /// today, tomorrow and yesterday; for the others the time since now minus a day, 7,
    /// 14, 30, 90, 180 or 365 days.
    fn range(self, now: Timestamp) -> (Timestamp, Timestamp) {
        let today = now.unix_millis().div_euclid(DAY_MS) * DAY_MS;
        let day = |start: i64| {
            (
                Timestamp::from_unix_millis(start),
                Timestamp::from_unix_millis(start + DAY_MS - 1),
            )
        };
        let back = |days: i64| (now.plus_millis(-days * DAY_MS), now);
        match self {
            Self::Today => day(today),
            Self::Tomorrow => day(today + DAY_MS),
            Self::Yesterday => day(today - DAY_MS),
            Self::LastDay => back(1),
            Self::LastWeek => back(7),
            Self::Last2Weeks => back(14),
            Self::LastMonth => back(30),
            Self::Last3Months => back(90),
            Self::Last6Months => back(180),
            Self::Last12Months => back(365),
        }
    }
}

/// The dates a date rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateRange {
    Between(Timestamp, Timestamp),
    Preset(Preset),
}

impl DateRange {
    fn parse(value: &Value, path: &str) -> Result<Self, PortError> {
        let map = value
            .as_object()
            .ok_or_else(|| invalid(path, "must be {\"from\", \"to\"} dates or {\"preset\"}"))?;
        if let Some(preset) = map.get("preset") {
            let name = preset.as_str().unwrap_or_default();
            return Preset::parse(name).map(Self::Preset).ok_or_else(|| {
                invalid(
                    &format!("{path}.preset"),
                    format!("must be one of {}", Preset::ALLOWED),
                )
            });
        }
        let date = |key: &str| {
            map.get(key)
                .and_then(Value::as_str)
                .and_then(|s| Timestamp::parse(s).ok())
                .ok_or_else(|| invalid(&format!("{path}.{key}"), "must be an ISO-8601 date-time"))
        };
        Ok(Self::Between(date("from")?, date("to")?))
    }

    fn contains(self, at: Timestamp, now: Timestamp) -> bool {
        let (from, to) = match self {
            Self::Between(from, to) => (from, to),
            Self::Preset(preset) => preset.range(now),
        };
        from <= at && at <= to
    }
}

/// A bound of `>`, `>=`, `<`, `<=`: a number, or a date-time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Number(f64),
    Date(Timestamp),
}

/// A comparison of `>`, `>=`, `<`, `<=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

/// What a rule checks of the value it reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    NotEquals(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    ContainsAny(Vec<Value>),
    Contains(Value),
    DoesNotContain(Value),
    BeginsWith(Value),
    DoesNotBeginWith(Value),
    EndsWith(Value),
    DoesNotEndWith(Value),
    Compare(Order, Bound),
    Between(DateRange),
    NotBetween(DateRange),
    IsEmpty,
    IsNotEmpty,
    IsExpired,
    IsNotExpired,
}

/// One comparison of an entity field.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub field: Field,
    pub test: Test,
}

/// Which side of a relation `relatedTo` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Entities the given entities relate to.
    Upstream,
    /// Entities that relate to the given entities.
    Downstream,
    Both,
}

/// `relatedTo`: entities one relation away from the given entities of a blueprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedTo {
    pub blueprint: String,
    pub identifiers: Vec<String>,
    pub direction: Direction,
}

/// A node of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Group {
        combinator: Combinator,
        rules: Vec<Node>,
    },
    Rule(Rule),
    /// The index of a [`RelatedTo`] in [`EntityQuery::related`].
    Related(usize),
}

/// A search query: `{combinator, rules}` where a rule may itself be a query.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityQuery {
    pub root: Node,
    pub related: Vec<RelatedTo>,
    /// What matching costs per byte of an entity: one, plus one per group, plus per
    /// rule its number of values (at least one), since a rule compares each value
    /// with at most the whole document.
    pub weight: usize,
}

const OPERATORS: &str = "=, !=, in, notIn, containsAny, contains, doesNotContains, beginsWith, doesNotBeginsWith, endsWith, doesNotEndsWith, >, >=, <, <=, between, notBetween, isEmpty, isNotEmpty, isExpired, isNotExpired, relatedTo";

/// Counts what a query holds while it is parsed.
#[derive(Default)]
struct Parser {
    rules: usize,
    groups: usize,
    values: usize,
    related: Vec<RelatedTo>,
}

impl Parser {
    fn charge(&mut self, values: usize, path: &str) -> Result<(), PortError> {
        self.rules += 1;
        self.values += values.max(1);
        if self.rules > MAX_QUERY_RULES {
            return Err(invalid(
                path,
                format!("a query holds at most {MAX_QUERY_RULES} rules"),
            ));
        }
        if self.values > MAX_QUERY_VALUES {
            return Err(invalid(
                path,
                format!("a query's rules hold at most {MAX_QUERY_VALUES} values in all"),
            ));
        }
        Ok(())
    }

    fn node(&mut self, value: &Value, path: &str, depth: usize) -> Result<Node, PortError> {
        if depth > MAX_QUERY_DEPTH {
            return Err(invalid(
                path,
                format!("queries nest at most {MAX_QUERY_DEPTH} levels deep"),
            ));
        }
        let map = value.as_object().ok_or_else(|| {
            invalid(
                path,
                "must be an object (a rule or a {combinator, rules} group)",
            )
        })?;
        if map.contains_key("rules") || map.contains_key("combinator") {
            let combinator = match map.get("combinator").and_then(Value::as_str) {
                Some("and") => Combinator::And,
                Some("or") => Combinator::Or,
                _ => {
                    return Err(invalid(
                        &format!("{path}.combinator"),
                        "must be \"and\" or \"or\"",
                    ));
                }
            };
            let rules = map
                .get("rules")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(&format!("{path}.rules"), "must be an array"))?;
            if rules.len() > MAX_QUERY_RULES {
                return Err(invalid(
                    &format!("{path}.rules"),
                    format!("a group holds at most {MAX_QUERY_RULES} rules"),
                ));
            }
            self.groups += 1;
            let rules = rules
                .iter()
                .enumerate()
                .map(|(i, rule)| self.node(rule, &format!("{path}.rules[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?;
            return Ok(Node::Group { combinator, rules });
        }
        let op_path = format!("{path}.operator");
        let op = map
            .get("operator")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&op_path, "is required (a string)"))?;
        let value_path = format!("{path}.value");
        let value = map.get("value").cloned().unwrap_or(Value::Null);
        if op == "relatedTo" {
            return self.related(map, path);
        }
        if matches!(op, "matchAny") || map.contains_key("propertySchema") {
            return Err(invalid(
                &op_path,
                format!("{op} rules are not supported by portd"),
            ));
        }
        let property = match map.get("property") {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Object(_)) => {
                return Err(invalid(
                    &format!("{path}.property"),
                    "rules on the calling user's context are not supported by portd (it has no users)",
                ));
            }
            _ => {
                return Err(invalid(
                    &format!("{path}.property"),
                    "is required (a string)",
                ));
            }
        };
        let field = Field::parse(property, &format!("{path}.property"))?;
        let needs_value = !matches!(op, "isEmpty" | "isNotEmpty" | "isExpired" | "isNotExpired");
        if needs_value && value.is_object() && !matches!(op, "between" | "notBetween" | "=") {
            return Err(invalid(
                &value_path,
                "values that refer to the calling user's context are not supported by portd (it has no users)",
            ));
        }
        let list = |value: &Value| -> Result<Vec<Value>, PortError> {
            value
                .as_array()
                .cloned()
                .ok_or_else(|| invalid(&value_path, format!("must be an array for operator {op}")))
        };
        if needs_value && !map.contains_key("value") {
            return Err(invalid(&value_path, "is required"));
        }
        let test = match op {
            "=" if value.is_object() => Test::Between(DateRange::parse(&value, &value_path)?),
            "=" => Test::Equals(value),
            "!=" => Test::NotEquals(value),
            "in" => Test::In(list(&value)?),
            "notIn" => Test::NotIn(list(&value)?),
            "containsAny" => Test::ContainsAny(match value {
                Value::Array(items) => items,
                other => vec![other],
            }),
            "contains" => Test::Contains(value),
            "doesNotContains" => Test::DoesNotContain(value),
            "beginsWith" => Test::BeginsWith(value),
            "doesNotBeginsWith" => Test::DoesNotBeginWith(value),
            "endsWith" => Test::EndsWith(value),
            "doesNotEndsWith" => Test::DoesNotEndWith(value),
            ">" | ">=" | "<" | "<=" => {
                let order = match op {
                    ">" => Order::Greater,
                    ">=" => Order::GreaterOrEqual,
                    "<" => Order::Less,
                    _ => Order::LessOrEqual,
                };
                let bound = match &value {
                    Value::Number(n) => n.as_f64().map(Bound::Number),
                    Value::String(s) => Timestamp::parse(s).ok().map(Bound::Date),
                    _ => None,
                }
                .ok_or_else(|| {
                    invalid(
                        &value_path,
                        format!("must be a number or an ISO-8601 date-time for operator {op}"),
                    )
                })?;
                Test::Compare(order, bound)
            }
            "between" => Test::Between(DateRange::parse(&value, &value_path)?),
            "notBetween" => Test::NotBetween(DateRange::parse(&value, &value_path)?),
            "isEmpty" => Test::IsEmpty,
            "isNotEmpty" => Test::IsNotEmpty,
            "isExpired" => Test::IsExpired,
            "isNotExpired" => Test::IsNotExpired,
            other => {
                return Err(invalid(
                    &op_path,
                    format!("must be one of {OPERATORS}, got {other:?}"),
                ));
            }
        };
        let values = match &test {
            Test::In(v) | Test::NotIn(v) | Test::ContainsAny(v) => v.len(),
            _ => 1,
        };
        self.charge(values, path)?;
        Ok(Node::Rule(Rule { field, test }))
    }

    fn related(&mut self, map: &Map<String, Value>, path: &str) -> Result<Node, PortError> {
        const KEYS: [&str; 5] = ["operator", "blueprint", "value", "direction", "required"];
        if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(invalid(
                &format!("{path}.{key}"),
                "is not a key of a relatedTo rule",
            ));
        }
        let blueprint = map
            .get("blueprint")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("{path}.blueprint"), "is required (a string)"))?
            .to_owned();
        let value_path = format!("{path}.value");
        let identifiers: Vec<String> = match map.get("value") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(&value_path, "must list entity identifiers"))
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(invalid(
                    &value_path,
                    "is required (an entity identifier or a list of them)",
                ));
            }
        };
        let direction = match map.get("direction") {
            None => Direction::Both,
            Some(Value::String(d)) if d == "upstream" => Direction::Upstream,
            Some(Value::String(d)) if d == "downstream" => Direction::Downstream,
            Some(_) => {
                return Err(invalid(
                    &format!("{path}.direction"),
                    "must be \"upstream\" or \"downstream\"",
                ));
            }
        };
        if let Some(v) = map.get("required").filter(|v| !v.is_boolean()) {
            return Err(invalid(
                &format!("{path}.required"),
                format!("must be a boolean, got {v}"),
            ));
        }
        self.charge(identifiers.len(), path)?;
        self.related.push(RelatedTo {
            blueprint,
            identifiers,
            direction,
        });
        Ok(Node::Related(self.related.len() - 1))
    }
}

impl EntityQuery {
    /// Parses `{combinator: "and"|"or", rules: [...]}` within the size limits; `path`
    /// names it in messages.
    pub fn parse(value: &Value, path: &str) -> Result<Self, PortError> {
        let mut parser = Parser::default();
        let root = parser.node(value, path, 0)?;
        Ok(Self {
            root,
            related: parser.related,
            weight: 1 + parser.groups + parser.values,
        })
    }

    /// What a store scan may be narrowed to: the `$blueprint` and `$identifier` rules
    /// (`=`, `in`) that every match must pass, i.e. those at the top of an `and` group
    /// (or a lone rule). `None` leaves that column free.
    pub fn scope(&self) -> Scope {
        let mut scope = Scope::default();
        let top: &[Node] = match &self.root {
            Node::Group {
                combinator: Combinator::And,
                rules,
            } => rules,
            Node::Group { .. } | Node::Related(_) => &[],
            rule @ Node::Rule(_) => std::slice::from_ref(rule),
        };
        for node in top {
            let Node::Rule(rule) = node else { continue };
            let values: Vec<&Value> = match &rule.test {
                Test::Equals(v) => vec![v],
                Test::In(items) => items.iter().collect(),
                _ => continue,
            };
            let strings = || values.iter().filter_map(|v| v.as_str());
            match rule.field {
                Field::Blueprint => {
                    let set = strings()
                        .filter_map(|s| BlueprintIdentifier::parse(s).ok())
                        .collect();
                    scope.blueprints = Some(intersect(scope.blueprints.take(), set));
                }
                Field::Identifier => {
                    let set = strings()
                        .filter_map(|s| EntityIdentifier::parse(s).ok())
                        .collect();
                    scope.identifiers = Some(intersect(scope.identifiers.take(), set));
                }
                _ => {}
            }
        }
        scope
    }
}

fn intersect<T: Ord>(current: Option<BTreeSet<T>>, new: BTreeSet<T>) -> BTreeSet<T> {
    match current {
        None => new,
        Some(current) => current.into_iter().filter(|v| new.contains(v)).collect(),
    }
}

/// The part of a query the store can apply: which blueprints and identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    pub blueprints: Option<BTreeSet<BlueprintIdentifier>>,
    pub identifiers: Option<BTreeSet<EntityIdentifier>>,
}

impl Scope {
    /// Narrows the blueprints to `blueprint` (a blueprint-scoped search).
    pub fn within(mut self, blueprint: &BlueprintIdentifier) -> Self {
        self.blueprints = Some(intersect(
            self.blueprints.take(),
            BTreeSet::from([blueprint.clone()]),
        ));
        self
    }
}

// ---------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------

/// What `relatedTo` resolved to before the scan: the entities the given ones point at
/// (upstream), and the relations, per blueprint, whose values name them (downstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedRelated {
    upstream: HashSet<(String, String)>,
    /// (blueprint of the relating entity, relation key).
    downstream_relations: HashSet<(String, String)>,
    identifiers: HashSet<String>,
    direction: Option<Direction>,
}

impl ResolvedRelated {
    fn matches(&self, entity: &Entity) -> bool {
        let up = || {
            self.upstream
                .contains(&(entity.blueprint.to_string(), entity.identifier.to_string()))
        };
        let down = || {
            entity.relations.iter().any(|(key, value)| {
                self.downstream_relations
                    .contains(&(entity.blueprint.to_string(), key.clone()))
                    && as_list(value)
                        .iter()
                        .any(|v| v.as_str().is_some_and(|s| self.identifiers.contains(s)))
            })
        };
        match self.direction {
            Some(Direction::Upstream) => up(),
            Some(Direction::Downstream) => down(),
            Some(Direction::Both) => up() || down(),
            None => false,
        }
    }
}

/// A query ready to match: its `relatedTo` rules resolved, and the time presets and
/// expiries are judged at.
#[derive(Debug, Clone)]
pub struct Matcher<'q> {
    query: &'q EntityQuery,
    related: Vec<ResolvedRelated>,
    now: Timestamp,
}

impl<'q> Matcher<'q> {
    /// A matcher for a query without `relatedTo` rules (those match nothing here; use
    /// [`Matcher::resolve`] to look them up).
    pub fn new(query: &'q EntityQuery, now: Timestamp) -> Self {
        Self {
            query,
            related: vec![ResolvedRelated::default(); query.related.len()],
            now,
        }
    }

    /// Resolves the query's `relatedTo` rules against the organization's catalog: one
    /// read per given entity, plus the organization's blueprints.
    pub async fn resolve<S>(
        query: &'q EntityQuery,
        store: &S,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<Self, PortError>
    where
        S: EntityStore + BlueprintStore + ?Sized,
    {
        let mut matcher = Self::new(query, now);
        if query.related.is_empty() {
            return Ok(matcher);
        }
        let blueprints = store.list_blueprints(org).await?;
        for (slot, related) in matcher.related.iter_mut().zip(&query.related) {
            slot.direction = Some(related.direction);
            slot.identifiers = related.identifiers.iter().cloned().collect();
            let Some(target) = blueprints
                .iter()
                .find(|b| b.identifier.as_str() == related.blueprint)
            else {
                continue;
            };
            for blueprint in &blueprints {
                for (key, relation) in relation_targets(blueprint) {
                    if relation == related.blueprint {
                        slot.downstream_relations
                            .insert((blueprint.identifier.to_string(), key));
                    }
                }
            }
            let targets: Vec<(String, String)> = relation_targets(target);
            for identifier in &related.identifiers {
                let Ok(identifier) = EntityIdentifier::parse(identifier) else {
                    continue;
                };
                let Some(entity) = store
                    .get_entity(org, &target.identifier, &identifier)
                    .await?
                else {
                    continue;
                };
                for (key, value) in &entity.relations {
                    let Some((_, blueprint)) = targets.iter().find(|(k, _)| k == key) else {
                        continue;
                    };
                    for v in as_list(value) {
                        if let Some(id) = v.as_str() {
                            slot.upstream.insert((blueprint.clone(), id.to_owned()));
                        }
                    }
                }
            }
        }
        Ok(matcher)
    }

    pub fn matches(&self, entity: &Entity) -> bool {
        self.node(&self.query.root, entity)
    }

    fn node(&self, node: &Node, entity: &Entity) -> bool {
        match node {
            Node::Group {
                combinator: Combinator::And,
                rules,
            } => rules.iter().all(|r| self.node(r, entity)),
            Node::Group {
                combinator: Combinator::Or,
                rules,
            } => rules.iter().any(|r| self.node(r, entity)),
            Node::Rule(rule) => rule_matches(rule, entity, self.now),
            Node::Related(i) => self.related.get(*i).is_some_and(|r| r.matches(entity)),
        }
    }
}

/// `(relation key, target blueprint)` of a blueprint's relations.
fn relation_targets(blueprint: &crate::catalog::Blueprint) -> Vec<(String, String)> {
    blueprint
        .definition
        .get("relations")
        .and_then(Value::as_object)
        .map(|relations| {
            relations
                .iter()
                .filter_map(|(key, r)| {
                    r.get("target")
                        .and_then(Value::as_str)
                        .map(|t| (key.clone(), t.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Null => None,
        other => Some(Cow::Owned(other.to_string())),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    a == b || (a.is_number() && b.is_number() && a.as_f64() == b.as_f64())
}

/// A value as the list rules compare: its items, nothing for null, else itself.
fn as_list(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        Value::Null => &[],
        other => std::slice::from_ref(other),
    }
}

fn date_of(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|s| Timestamp::parse(s).ok())
}

fn rule_matches(rule: &Rule, entity: &Entity, now: Timestamp) -> bool {
    let field = rule.field.read(entity);
    let field: &Value = &field;
    let any_of = |candidates: &[Value]| {
        as_list(field)
            .iter()
            .any(|f| candidates.iter().any(|c| equal(f, c)))
    };
    let contains = |expected: &Value| match (field, text(expected)) {
        (Value::Array(items), _) => items.iter().any(|i| equal(i, expected)),
        (f, Some(needle)) => text(f).is_some_and(|hay| hay.contains(needle.as_ref())),
        _ => false,
    };
    let begins = |expected: &Value| matches!((text(field), text(expected)), (Some(h), Some(n)) if h.starts_with(n.as_ref()));
    let ends = |expected: &Value| matches!((text(field), text(expected)), (Some(h), Some(n)) if h.ends_with(n.as_ref()));
    let in_range = |range: &DateRange| date_of(field).is_some_and(|at| range.contains(at, now));
    match &rule.test {
        Test::Equals(expected) => equal(field, expected),
        Test::NotEquals(expected) => !equal(field, expected),
        Test::In(candidates) | Test::ContainsAny(candidates) => any_of(candidates),
        Test::NotIn(candidates) => !any_of(candidates),
        Test::Contains(expected) => contains(expected),
        Test::DoesNotContain(expected) => !contains(expected),
        Test::BeginsWith(expected) => begins(expected),
        Test::DoesNotBeginWith(expected) => !begins(expected),
        Test::EndsWith(expected) => ends(expected),
        Test::DoesNotEndWith(expected) => !ends(expected),
        Test::Compare(order, bound) => {
            let ordering = match bound {
                Bound::Number(n) => field.as_f64().and_then(|f| f.partial_cmp(n)),
                Bound::Date(at) => date_of(field).map(|f| f.cmp(at)),
            };
            ordering.is_some_and(|o| match order {
                Order::Greater => o.is_gt(),
                Order::GreaterOrEqual => o.is_ge(),
                Order::Less => o.is_lt(),
                Order::LessOrEqual => o.is_le(),
            })
        }
        Test::Between(range) => in_range(range),
        Test::NotBetween(range) => date_of(field).is_some() && !in_range(range),
        Test::IsEmpty | Test::IsNotEmpty => {
            let empty = match field {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            empty == matches!(rule.test, Test::IsEmpty)
        }
        // A timer property expires at its date-time.
        Test::IsExpired => date_of(field).is_some_and(|at| at <= now),
        Test::IsNotExpired => date_of(field).is_some_and(|at| at > now),
    }
}

// ---------------------------------------------------------------------------------------
// Running a search over the store
// ---------------------------------------------------------------------------------------

/// How much one search may do. A search reads the store a page at a time and stops
/// before the entity that would take it past `max_examined` entities, past
/// `max_examined_bytes` of their stored documents, or past `max_work`: each entity
/// costs its document's size times one more than the query's rules, since each rule
/// may read all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    pub max_examined: u64,
    pub max_examined_bytes: u64,
    pub max_work: u64,
    /// The most rows one store read returns (a read holds at most this many
    /// documents in memory).
    pub max_batch: usize,
    /// Pages shrink so that matching one costs about this much work (the first page
    /// is small, later ones follow the sizes seen).
    pub batch_work: u64,
}

impl SearchLimits {
    pub const DEFAULT_MAX_EXAMINED: u64 = 10_000;
    pub const DEFAULT_MAX_EXAMINED_BYTES: u64 = 32 * 1024 * 1024;
    pub const DEFAULT_MAX_WORK: u64 = 256 * 1024 * 1024;
    const FIRST_BATCH: usize = 4;
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            max_examined: Self::DEFAULT_MAX_EXAMINED,
            max_examined_bytes: Self::DEFAULT_MAX_EXAMINED_BYTES,
            max_work: Self::DEFAULT_MAX_WORK,
            max_batch: 100,
            batch_work: 4 * 1024 * 1024,
        }
    }
}

/// One search: which organization, what to match, where to start and how many to
/// return.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    pub org: &'a OrgId,
    pub matcher: &'a Matcher<'a>,
    pub scope: Scope,
    /// Start after this entity (a page's cursor).
    pub after: Option<EntityKey>,
    /// The most matches to return.
    pub limit: usize,
}

/// Why a search stopped before the end of what it had to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It found `limit` matches.
    PageFull,
    /// It examined as much as [`SearchLimits`] allow.
    Budget,
}

/// The matches of a search, and where it stopped if it did not reach the end.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub entities: Vec<Entity>,
    /// The last entity examined, when the search stopped early: the next page starts
    /// after it.
    pub resume_after: Option<EntityKey>,
    pub stopped: Option<Stopped>,
    pub examined: u64,
    pub examined_bytes: u64,
    pub work: u64,
}

impl SearchPage {
    /// It stopped for its budget before examining anything: a next page would stop
    /// there too.
    pub fn stuck(&self) -> bool {
        self.stopped == Some(Stopped::Budget) && self.examined == 0
    }
}

/// Runs a search: pages of the store in key order, each entity matched, until the scan
/// ends, `limit` matches are found, or the next entity would overrun the budget.
pub async fn search<S>(
    store: &S,
    request: SearchRequest<'_>,
    limits: SearchLimits,
) -> Result<SearchPage, PortError>
where
    S: EntityStore + ?Sized,
{
    let mut page = SearchPage {
        entities: Vec::new(),
        resume_after: None,
        stopped: None,
        examined: 0,
        examined_bytes: 0,
        work: 0,
    };
    let cost_per_byte = request.matcher.query.weight as u64;
    let mut after = request.after;
    let mut batch = SearchLimits::FIRST_BATCH.min(limits.max_batch).max(1);
    loop {
        let room = usize::try_from(limits.max_examined.saturating_sub(page.examined))
            .unwrap_or(usize::MAX);
        if room == 0 {
            page.stopped = Some(Stopped::Budget);
            page.resume_after = after;
            return Ok(page);
        }
        let want = batch.min(room);
        let scanned = store
            .scan_entities(
                request.org,
                &EntityScan {
                    blueprints: request.scope.blueprints.clone(),
                    identifiers: request.scope.identifiers.clone(),
                    after: after.clone(),
                    limit: want,
                },
            )
            .await?;
        let got = scanned.entities.len();
        for (entity, size) in scanned.entities.into_iter().zip(scanned.sizes) {
            let work = size.saturating_mul(cost_per_byte);
            let over = page.examined_bytes.saturating_add(size) > limits.max_examined_bytes
                || page.work.saturating_add(work) > limits.max_work;
            // An entity that alone overruns the budget stops the search without being
            // examined: then the search made no progress (see `SearchPage::stuck`).
            if over {
                page.stopped = Some(Stopped::Budget);
                page.resume_after = after;
                return Ok(page);
            }
            page.examined += 1;
            page.examined_bytes += size;
            page.work += work;
            after = Some(EntityKey::of(&entity));
            if request.matcher.matches(&entity) {
                page.entities.push(entity);
                if page.entities.len() >= request.limit {
                    page.stopped = Some(Stopped::PageFull);
                    page.resume_after = after;
                    return Ok(page);
                }
            }
        }
        if got < want {
            return Ok(page);
        }
        // Follow the sizes seen, so that large documents come a few at a time.
        let average = (scanned.bytes / got.max(1) as u64)
            .saturating_mul(cost_per_byte)
            .max(1);
        batch = usize::try_from(limits.batch_work / average)
            .unwrap_or(usize::MAX)
            .clamp(1, limits.max_batch);
    }
}

/// 422 `search_too_broad` for a search that could not finish within its budget.
pub fn too_broad(limits: &SearchLimits) -> PortError {
    PortError::new(
        ErrorKind::SearchTooBroad,
        format!(
            "the search would examine more than {} entities, {} MiB of them, or {} MiB times its rules; narrow it with $blueprint or $identifier rules (=, in) at the top of an \"and\", or page through one blueprint with POST /v1/blueprints/{{blueprint}}/entities/search",
            limits.max_examined,
            limits.max_examined_bytes / (1024 * 1024),
            limits.max_work / (1024 * 1024)
        ),
    )
}

/// Entities read from the store at a time by [`scan_within`].
const SCAN_PAGE: usize = 100;

/// Reads every entity of `blueprints` (in key order, a page at a time), handing each
/// to `visit`, and refuses with [`too_broad`] once more than `limits.max_examined`
/// entities or `limits.max_examined_bytes` of them would be read: the listing of a
/// blueprint and the search for an entity's dependents cost the server a bounded
/// amount of memory and work, however large a tenant's catalog.
pub async fn scan_within<S>(
    store: &S,
    org: &OrgId,
    blueprints: BTreeSet<BlueprintIdentifier>,
    limits: &SearchLimits,
    mut visit: impl FnMut(Entity) + Send,
) -> Result<(), PortError>
where
    S: EntityStore + ?Sized,
{
    let mut scan = EntityScan {
        blueprints: Some(blueprints),
        identifiers: None,
        after: None,
        limit: SCAN_PAGE,
    };
    let (mut examined, mut bytes) = (0_u64, 0_u64);
    loop {
        let page = store.scan_entities(org, &scan).await?;
        let full = page.entities.len() == SCAN_PAGE;
        examined += page.entities.len() as u64;
        bytes += page.bytes;
        if examined > limits.max_examined || bytes > limits.max_examined_bytes {
            return Err(too_broad(limits));
        }
        scan.after = page.entities.last().map(EntityKey::of);
        page.entities.into_iter().for_each(&mut visit);
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(query: Value) -> Result<EntityQuery, PortError> {
        EntityQuery::parse(&query, "query")
    }

    fn refusal(query: Value) -> String {
        parse(query).unwrap_err().message
    }

    fn rule(property: &str, operator: &str, value: Value) -> Value {
        json!({ "property": property, "operator": operator, "value": value })
    }

    #[test]
    fn refusals_name_the_rule_at_fault() {
        let one = |r: Value| json!({ "combinator": "and", "rules": [r] });
        assert_eq!(
            refusal(json!({ "combinator": "xor", "rules": [] })),
            "query.combinator: must be \"and\" or \"or\""
        );
        assert!(
            refusal(one(rule("x", "~", json!(1))))
                .starts_with("query.rules[0].operator: must be one of")
        );
        assert_eq!(
            refusal(one(rule("x", "in", json!("a")))),
            "query.rules[0].value: must be an array for operator in"
        );
        assert_eq!(
            refusal(one(json!({ "property": "x", "operator": "=" }))),
            "query.rules[0].value: is required"
        );
        assert!(
            refusal(one(rule("$owner", "=", json!("a"))))
                .contains("is not a meta-property portd knows")
        );
        assert!(
            refusal(one(rule("x", ">", json!("soon"))))
                .contains("must be a number or an ISO-8601 date-time")
        );
        assert!(
            refusal(one(rule("x", "between", json!({ "preset": "someday" }))))
                .starts_with("query.rules[0].value.preset: must be one of")
        );
        assert!(
            refusal(one(rule(
                "x",
                "between",
                json!({ "from": "2023-01-01T00:00:00Z" })
            )))
            .starts_with("query.rules[0].value.to")
        );
        assert!(refusal(one(json!({ "property": { "property": "email", "context": "user" }, "operator": "=", "value": "a" }))).contains("has no users"));
        assert!(
            refusal(one(rule(
                "x",
                "=",
                json!({ "property": "email", "context": "user" })
            )))
            .starts_with("query.rules[0].value")
        );
        assert!(
            refusal(one(
                json!({ "property": { "path": ["a"] }, "operator": "matchAny", "value": ["a"] })
            ))
            .contains("not supported")
        );
        assert!(
            refusal(one(
                json!({ "propertySchema": { "type": "string" }, "operator": "=", "value": "a" })
            ))
            .contains("not supported")
        );
        assert!(
            refusal(one(json!({ "operator": "relatedTo", "value": "a" })))
                .starts_with("query.rules[0].blueprint")
        );
        assert!(refusal(one(json!({ "operator": "relatedTo", "blueprint": "b", "value": "a", "direction": "sideways" }))).starts_with("query.rules[0].direction"));
        assert!(refusal(json!("rules")).starts_with("query: must be an object"));
        assert!(
            refusal(one(
                json!({ "operator": "relatedTo", "blueprint": "b", "value": "a", "direction": {} })
            ))
            .starts_with("query.rules[0].direction")
        );
        assert!(
            refusal(one(
                json!({ "operator": "relatedTo", "blueprint": "b", "value": "a", "depth": 2 })
            ))
            .starts_with("query.rules[0].depth: is not a key")
        );
        // Operators without a value ignore one.
        assert!(
            parse(one(
                json!({ "property": "x", "operator": "isEmpty", "value": { "a": 1 } })
            ))
            .is_ok()
        );
    }

    #[test]
    fn queries_are_bounded() {
        let mut deep = json!({ "combinator": "and", "rules": [] });
        for _ in 0..=MAX_QUERY_DEPTH {
            deep = json!({ "combinator": "and", "rules": [deep] });
        }
        assert!(refusal(deep).contains("levels deep"));
        let many: Vec<Value> = (0..=MAX_QUERY_RULES)
            .map(|i| rule("x", "=", json!(i)))
            .collect();
        assert!(
            refusal(json!({ "combinator": "or", "rules": many })).contains("at most 100 rules")
        );
        let values: Vec<Value> = (0..=MAX_QUERY_VALUES).map(|i| json!(i)).collect();
        assert!(
            refusal(json!({ "combinator": "or", "rules": [rule("x", "in", json!(values))] }))
                .contains("1000 values")
        );
        let fine: Vec<Value> = (0..MAX_QUERY_RULES)
            .map(|i| rule("x", "=", json!(i)))
            .collect();
        assert_eq!(
            parse(json!({ "combinator": "or", "rules": fine }))
                .unwrap()
                .weight,
            1 + 1 + 100
        );
        let groups: Vec<Value> = (0..=MAX_QUERY_RULES)
            .map(|_| json!({ "combinator": "or", "rules": [] }))
            .collect();
        assert!(
            refusal(json!({ "combinator": "or", "rules": groups }))
                .contains("a group holds at most 100 rules")
        );
        let weighed = parse(json!({ "combinator": "and", "rules": [
            { "combinator": "or", "rules": [rule("x", "in", json!([1, 2, 3]))] },
            json!({ "property": "x", "operator": "isEmpty" }),
        ] }))
        .unwrap();
        assert_eq!(weighed.weight, 1 + 2 + 3 + 1);
    }

    #[test]
    fn the_scope_comes_from_top_level_and_rules_only() {
        let scope = |q: Value| parse(q).unwrap().scope();
        let bps = |names: &[&str]| {
            Some(
                names
                    .iter()
                    .map(|n| BlueprintIdentifier::parse(n).unwrap())
                    .collect::<BTreeSet<_>>(),
            )
        };
        let s = scope(json!({ "combinator": "and", "rules": [
            rule("$blueprint", "in", json!(["a", "b", "c"])),
            rule("$blueprint", "!=", json!("b")),
            rule("$blueprint", "in", json!(["b", "c"])),
            rule("$identifier", "=", json!("x")),
        ] }));
        assert_eq!(s.blueprints, bps(&["b", "c"]));
        assert_eq!(
            s.identifiers,
            Some(BTreeSet::from([EntityIdentifier::parse("x").unwrap()]))
        );
        // Under `or`, or nested, a rule does not bound the scan.
        let s =
            scope(json!({ "combinator": "or", "rules": [rule("$blueprint", "=", json!("a"))] }));
        assert_eq!(s, Scope::default());
        let s = scope(
            json!({ "combinator": "and", "rules": [{ "combinator": "and", "rules": [rule("$blueprint", "=", json!("a"))] }] }),
        );
        assert_eq!(s, Scope::default());
        // A lone rule is its own top; within() narrows further.
        let s = scope(rule("$blueprint", "=", json!("a")));
        assert_eq!(
            s.clone()
                .within(&BlueprintIdentifier::parse("a").unwrap())
                .blueprints,
            bps(&["a"])
        );
        assert_eq!(
            s.within(&BlueprintIdentifier::parse("z").unwrap())
                .blueprints,
            bps(&[])
        );
    }

    #[test]
    fn presets_count_back_from_now() {
        // 2023-11-14T22:13:20Z.
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let (from, to) = Preset::Today.range(now);
        assert_eq!(from.to_string(), "2023-11-14T00:00:00.000Z");
        assert_eq!(to.to_string(), "2023-11-14T23:59:59.999Z");
        assert_eq!(
            Preset::Tomorrow.range(now).0.to_string(),
            "2023-11-15T00:00:00.000Z"
        );
        assert_eq!(
            Preset::Yesterday.range(now).1.to_string(),
            "2023-11-13T23:59:59.999Z"
        );
        assert_eq!(
            Preset::LastWeek.range(now),
            (now.plus_millis(-7 * DAY_MS), now)
        );
        assert_eq!(
            Preset::Last12Months.range(now).0,
            now.plus_millis(-365 * DAY_MS)
        );
    }
}
