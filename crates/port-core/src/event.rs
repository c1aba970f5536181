//! Domain events: what changed in the catalog or in a run, with the resource before and
//! after, written to the store's event outbox in the transaction that makes the change.
//!
//! The stores record them themselves (see [`crate::ports::EventStore`]): an entity
//! written or deleted, a run created, a run whose fields changed. Appending log lines
//! is not a change (Port's `RUN_UPDATED` ignores logs too), nor is an entity written
//! again with the same content (an integration's resync). Automations read the outbox
//! ([`crate::automation`]); the JSON of an event is Port's trigger data for them.

use serde_json::{Value, json};

use crate::catalog::Entity;
use crate::id::{EventId, ID_SUFFIX_LEN, OrgId};
use crate::run::Run;
use crate::time::Timestamp;

/// What kind of resource changed (`resourceType` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Entity,
    Run,
}

impl ResourceType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Entity => "entity",
            Self::Run => "run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "entity" => Some(Self::Entity),
            "run" => Some(Self::Run),
            _ => None,
        }
    }
}

/// How it changed (`action` on the wire): the same `CREATE`, `UPDATE`, `DELETE` as an
/// entity operation bound to a run, for runs too.
pub use crate::catalog::EntityOperation as ChangeKind;

/// Who "makes" a timer's expiry: no person, the clock.
pub const TIMER_ACTOR: &str = "timer";

/// `action` of a timer's expiry on the wire: it is no create, update or delete.
pub const TIMER_EXPIRED_ACTION: &str = "TIMER_EXPIRED";

/// A change, as the store is asked to record it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChangeEvent {
    pub org_id: OrgId,
    pub resource: ResourceType,
    pub kind: ChangeKind,
    /// The blueprint of an entity, the action of a run: what automations select on.
    pub scope: String,
    /// The entity's identifier or the run's id.
    pub subject: String,
    /// Set on the expiry of an entity's timer property (`TIMER_PROPERTY_EXPIRED`): the
    /// property. Such an event is no change of the entity (`kind` is `UPDATE`, `before`
    /// and `after` the entity as it is); change automations pass over it.
    pub timer: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Who made the change (the resource's `updatedBy`).
    pub by: String,
    /// How many automations led to the change: 0 when a person or a client made it, the
    /// depth of the run it was made for otherwise. Bounds chains of automations.
    pub depth: u32,
    pub at: Timestamp,
}

/// Everything of an entity but who last wrote it and when: two writes with the same
/// content are not a change.
fn same_content(before: &Entity, after: &Entity) -> bool {
    before.title == after.title
        && before.icon == after.icon
        && before.team == after.team
        && before.properties == after.properties
        && before.relations == after.relations
}

impl NewChangeEvent {
    /// The change of an entity from `before` to `after` (`None`: absent), made for a
    /// run of chain depth `depth` (0 when no run). `None` when nothing changed.
    pub fn of_entity(
        before: Option<&Entity>,
        after: Option<&Entity>,
        depth: u32,
        at: Timestamp,
    ) -> Option<Self> {
        let (kind, current) = match (before, after) {
            (None, None) => return None,
            (Some(b), Some(a)) if same_content(b, a) => return None,
            (Some(_), Some(a)) => (ChangeKind::Update, a),
            (None, Some(a)) => (ChangeKind::Create, a),
            (Some(b), None) => (ChangeKind::Delete, b),
        };
        Some(Self {
            org_id: current.org_id.clone(),
            resource: ResourceType::Entity,
            kind,
            scope: current.blueprint.to_string(),
            subject: current.identifier.to_string(),
            timer: None,
            before: before.map(Entity::to_json),
            after: after.map(Entity::to_json),
            by: current.stamp.updated_by.clone(),
            depth,
            at,
        })
    }

    /// The expiry of `entity`'s timer `property` (`at`, when it fired), by the system.
    pub fn timer_expired(entity: &Entity, property: &str, at: Timestamp) -> Self {
        let current = entity.to_json();
        Self {
            org_id: entity.org_id.clone(),
            resource: ResourceType::Entity,
            kind: ChangeKind::Update,
            scope: entity.blueprint.to_string(),
            subject: entity.identifier.to_string(),
            timer: Some(property.to_owned()),
            before: Some(current.clone()),
            after: Some(current),
            by: TIMER_ACTOR.to_owned(),
            depth: 0,
            at,
        }
    }

    /// A run created (`before` is `None`) or changed. `None` when the run's fields did
    /// not change (log lines only).
    pub fn of_run(before: Option<&Run>, after: &Run) -> Option<Self> {
        let kind = match before {
            None => ChangeKind::Create,
            Some(b) if b.version == after.version => return None,
            Some(_) => ChangeKind::Update,
        };
        Some(Self {
            org_id: after.org_id.clone(),
            resource: ResourceType::Run,
            kind,
            scope: after.action.identifier.to_string(),
            subject: after.id.to_string(),
            timer: None,
            before: before.map(Run::to_v2_json),
            after: Some(after.to_v2_json()),
            by: after.updated_by.clone(),
            depth: after.chain_depth,
            at: after.updated_at,
        })
    }
}

/// A recorded change, as the outbox gives it back.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The store's order of events: unique, increasing with each recorded change.
    pub seq: u64,
    pub change: NewChangeEvent,
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The event id of sequence number `seq`: `event_` and `seq` in base 62, 16 digits.
pub fn event_id(seq: u64) -> EventId {
    let mut out = [b'0'; ID_SUFFIX_LEN];
    let mut rest = seq;
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let suffix = std::str::from_utf8(&out).expect("base 62 digits are ASCII");
    EventId::from_suffix(suffix).expect("16 base 62 digits make an id")
}

impl ChangeEvent {
    pub fn id(&self) -> EventId {
        event_id(self.seq)
    }

    /// Port's trigger data of an automation: `{id, resourceType, action, trigger,
    /// context, diff}`.
    pub fn to_json(&self) -> Value {
        let c = &self.change;
        let context = match c.resource {
            ResourceType::Entity => json!({
                "blueprintIdentifier": c.scope,
                "entityIdentifier": c.subject,
                "propertyIdentifier": c.timer,
            }),
            ResourceType::Run => json!({
                "actionIdentifier": c.scope,
                "runId": c.subject,
            }),
        };
        json!({
            "id": self.id(),
            "resourceType": c.resource.as_str(),
            "action": if c.timer.is_some() { TIMER_EXPIRED_ACTION } else { c.kind.as_str() },
            "trigger": {
                "by": { "orgId": c.org_id, "userId": c.by },
                "origin": if c.depth > 0 { "AUTOMATION" } else { "API" },
                "at": c.at,
            },
            "context": context,
            "diff": { "before": c.before, "after": c.after },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_ordered_like_their_sequence_numbers() {
        assert_eq!(event_id(0).as_str(), "event_0000000000000000");
        assert_eq!(event_id(61).as_str(), "event_000000000000000z");
        assert_eq!(event_id(62).as_str(), "event_0000000000000010");
        let ids: Vec<_> = [1u64, 61, 62, 3_843, 3_844, u64::MAX]
            .iter()
            .map(|&n| event_id(n).to_string())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
