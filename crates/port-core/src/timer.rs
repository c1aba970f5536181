//! Timer properties: a blueprint property of `format: "timer"` holds the moment its
//! entity expires (a date-time string, as Port has it). When that moment passes, the
//! automations watching `TIMER_PROPERTY_EXPIRED` on the property run once.
//!
//! The stores keep one row per entity and timer property that is still to fire, written
//! in the transaction of the entity write ([`changes`] says what to write), and turn
//! due rows into events when asked ([`crate::ports::EventStore::fire_due_timers`]),
//! deleting each row in the transaction that records its event. So a timer fires once
//! however many workers look, and a restart loses none: the rows are the schedule.

use serde_json::Value;

use crate::catalog::{Blueprint, Entity};
use crate::time::Timestamp;

/// The format that makes a property a timer.
pub const TIMER_FORMAT: &str = "timer";

/// The identifiers of the blueprint's timer properties.
pub fn timer_properties(blueprint: &Blueprint) -> Vec<String> {
    blueprint
        .property_schemas()
        .into_iter()
        .filter(|(_, schema)| schema.get("format").and_then(Value::as_str) == Some(TIMER_FORMAT))
        .map(|(key, _)| key)
        .collect()
}

/// What an entity write does to the schedule of one of its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// (Re)arm the timer to fire at `expires_at`.
    Arm {
        property: String,
        expires_at: Timestamp,
    },
    /// The property no longer holds a time: nothing is to fire.
    Disarm { property: String },
}

fn expiry(entity: &Entity, property: &str) -> Option<Timestamp> {
    entity
        .properties
        .get(property)
        .and_then(Value::as_str)
        .and_then(|s| Timestamp::parse(s).ok())
}

/// How writing `after` over `before` changes the schedule of `properties` (the
/// blueprint's timer properties). A timer whose value is unchanged is left as it is,
/// so a timer that already fired is not armed again by a write that keeps its value
/// (an integration's resync, say); a new value arms it, even one in the past (it then
/// fires at once).
pub fn changes(properties: &[String], before: Option<&Entity>, after: &Entity) -> Vec<TimerChange> {
    properties
        .iter()
        .filter_map(|property| {
            let old = before.and_then(|b| expiry(b, property));
            let new = expiry(after, property);
            if before.is_some() && old == new {
                return None;
            }
            Some(match new {
                Some(expires_at) => TimerChange::Arm {
                    property: property.clone(),
                    expires_at,
                },
                None => TimerChange::Disarm {
                    property: property.clone(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::catalog::Stamp;

    fn blueprint() -> Blueprint {
        let definition = json!({
            "schema": { "properties": {
                "ttl": { "type": "string", "format": "timer" },
                "due": { "type": "string", "format": "timer" },
                "created": { "type": "string", "format": "date-time" },
            }}
        });
        Blueprint {
            org_id: "org_BneDtWovPqXaA2VZ".parse().expect("org"),
            identifier: "environment".parse().expect("blueprint"),
            title: None,
            definition: definition.as_object().cloned().expect("object"),
            stamp: stamp(),
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            created_at: Timestamp::from_unix_millis(0),
            created_by: "u".into(),
            updated_at: Timestamp::from_unix_millis(0),
            updated_by: "u".into(),
        }
    }

    fn entity(properties: Value) -> Entity {
        Entity {
            org_id: "org_BneDtWovPqXaA2VZ".parse().expect("org"),
            blueprint: "environment".parse().expect("blueprint"),
            identifier: "env-1".parse().expect("identifier"),
            title: None,
            icon: None,
            team: None,
            properties: properties.as_object().cloned().unwrap_or_else(Map::new),
            relations: Map::new(),
            stamp: stamp(),
        }
    }

    #[test]
    fn only_timer_formatted_properties_are_timers() {
        let mut found = timer_properties(&blueprint());
        found.sort();
        assert_eq!(found, ["due", "ttl"]);
    }

    #[test]
    fn a_new_entity_arms_the_timers_it_sets() {
        let props = timer_properties(&blueprint());
        let e = entity(json!({ "ttl": "2026-12-03T10:00:00.000Z", "due": "not a time" }));
        let mut got = changes(&props, None, &e);
        got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(
            got,
            [
                TimerChange::Arm {
                    property: "ttl".into(),
                    expires_at: Timestamp::parse("2026-12-03T10:00:00.000Z").expect("time"),
                },
                TimerChange::Disarm {
                    property: "due".into()
                },
            ]
        );
    }

    #[test]
    fn an_unchanged_value_leaves_the_schedule_alone_and_a_new_or_removed_one_changes_it() {
        let props = vec!["ttl".to_owned()];
        let before = entity(json!({ "ttl": "2026-12-03T10:00:00.000Z" }));
        // The same instant written differently is the same timer.
        let same = entity(json!({ "ttl": "2026-12-03T10:00:00Z", "other": 1 }));
        assert_eq!(changes(&props, Some(&before), &same), []);
        let later = entity(json!({ "ttl": "2026-12-03T11:00:00.000Z" }));
        assert_eq!(
            changes(&props, Some(&before), &later),
            [TimerChange::Arm {
                property: "ttl".into(),
                expires_at: Timestamp::parse("2026-12-03T11:00:00.000Z").expect("time"),
            }]
        );
        let cleared = entity(json!({}));
        assert_eq!(
            changes(&props, Some(&before), &cleared),
            [TimerChange::Disarm {
                property: "ttl".into()
            }]
        );
    }
}
