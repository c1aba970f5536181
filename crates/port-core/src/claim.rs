//! Fair claims of due webhooks: which due deliveries one claim of the delivery worker
//! takes, so that no organization's backlog and no hanging receiver takes the slots
//! others need.
//!
//! The worker caps what it has in flight in all, per organization, and per
//! organization and [`Destination`]. A claim takes only deliveries that fit under those
//! caps ([`ClaimLimits`]); the rest stay in the outbox, unleased, until a slot frees.
//! So a delivery never waits while holding a lease (which could expire and let a second
//! worker send it too) or a slot of the worker. Among what fits, [`plan`] gives each
//! slot to the organization with the fewest attempts in flight. Both stores and the
//! in-memory fake share [`plan`]; they only differ in how they find the candidates.

use std::collections::{BTreeMap, VecDeque};

use crate::destination::Destination;
use crate::id::{DeliveryId, OrgId};
use crate::time::Timestamp;

/// How many due deliveries of one organization a claim looks at beyond the ones it can
/// take, to get past deliveries whose destination is full. An organization with more
/// than this many due deliveries to full destinations ahead of its others waits for
/// those: head-of-line blocking that only ever costs that organization.
pub const LOOKAHEAD_SLACK: u32 = 64;

/// What a worker has in flight, per organization and per organization and destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    total: u32,
    by_org: BTreeMap<OrgId, u32>,
    by_destination: BTreeMap<(OrgId, Destination), u32>,
}

impl InFlight {
    /// Counts one more delivery of `org` to `destination` (none: an unusable URL).
    pub fn add(&mut self, org: &OrgId, destination: Option<&Destination>) {
        self.total += 1;
        *self.by_org.entry(org.clone()).or_default() += 1;
        if let Some(destination) = destination {
            *self
                .by_destination
                .entry((org.clone(), destination.clone()))
                .or_default() += 1;
        }
    }

    /// Forgets one delivery counted by [`Self::add`] with the same arguments.
    pub fn remove(&mut self, org: &OrgId, destination: Option<&Destination>) {
        self.total = self.total.saturating_sub(1);
        decrement(&mut self.by_org, org);
        if let Some(destination) = destination {
            decrement(
                &mut self.by_destination,
                &(org.clone(), destination.clone()),
            );
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn of_org(&self, org: &OrgId) -> u32 {
        self.by_org.get(org).copied().unwrap_or(0)
    }

    pub fn of_destination(&self, org: &OrgId, destination: &Destination) -> u32 {
        self.by_destination
            .get(&(org.clone(), destination.clone()))
            .copied()
            .unwrap_or(0)
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, u32>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

/// How much one claim may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Deliveries in all: the worker's free slots.
    pub total: u32,
    /// In flight per organization, `in_flight` included.
    pub per_org: u32,
    /// In flight per organization and destination, `in_flight` included.
    pub per_destination: u32,
    /// What the claiming worker already has in flight.
    pub in_flight: InFlight,
}

impl ClaimLimits {
    /// Up to `total` deliveries, with no cap per organization or destination.
    pub fn up_to(total: u32) -> Self {
        Self {
            total,
            per_org: u32::MAX,
            per_destination: u32::MAX,
            in_flight: InFlight::default(),
        }
    }

    /// How many of `org`'s deliveries this claim may take.
    pub fn org_room(&self, org: &OrgId) -> u32 {
        self.per_org
            .saturating_sub(self.in_flight.of_org(org))
            .min(self.total)
    }

    /// How many of `org`'s due deliveries, oldest due first, a store offers to [`plan`]:
    /// none when the organization has no room, so a full organization's backlog costs
    /// a claim nothing.
    pub fn lookahead(&self, org: &OrgId) -> u32 {
        match self.org_room(org) {
            0 => 0,
            room => room.saturating_add(LOOKAHEAD_SLACK),
        }
    }

    fn destination_room(&self, org: &OrgId, destination: &Destination) -> u32 {
        self.per_destination
            .saturating_sub(self.in_flight.of_destination(org, destination))
    }
}

/// A due, unleased webhook delivery a store offers to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: DeliveryId,
    pub org_id: OrgId,
    pub next_attempt_at: Timestamp,
    /// From the delivery's URL; `None` when it has none usable (it fails at once).
    pub destination: Option<Destination>,
}

/// Chooses what one claim takes from `candidates`: each organization's due, unleased
/// deliveries, at most [`ClaimLimits::lookahead`] of them, the oldest due.
///
/// Each slot goes to the organization with the fewest attempts in flight (the worker's,
/// plus what this claim already took), the oldest due delivery first among equals. So
/// when slots free one at a time under a backlog, the organization with the longest
/// queue, or the oldest one, does not get every slot: an organization with fewer
/// attempts in flight always comes first, and organizations with as many take turns.
/// A delivery whose organization or destination has no room left is skipped and waits
/// for a later claim. Returns the ids in the order chosen.
pub fn plan(candidates: Vec<Candidate>, limits: &ClaimLimits) -> Vec<DeliveryId> {
    struct Queue {
        due: VecDeque<Candidate>,
        room: u32,
        load: u32,
    }
    let mut queues: BTreeMap<OrgId, Queue> = BTreeMap::new();
    for candidate in candidates {
        let org = candidate.org_id.clone();
        queues
            .entry(org.clone())
            .or_insert_with(|| Queue {
                due: VecDeque::new(),
                room: limits.org_room(&org),
                load: limits.in_flight.of_org(&org),
            })
            .due
            .push_back(candidate);
    }
    for queue in queues.values_mut() {
        queue
            .due
            .make_contiguous()
            .sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    }
    let mut destination_room: BTreeMap<(OrgId, Destination), u32> = BTreeMap::new();
    let mut chosen = Vec::new();
    let total = usize::try_from(limits.total).unwrap_or(usize::MAX);
    while chosen.len() < total {
        // Drop what can no longer fit (rooms only shrink during a claim), then pick.
        let mut next: Option<(u32, Timestamp, DeliveryId, OrgId)> = None;
        for (org, queue) in &mut queues {
            if queue.room == 0 {
                continue;
            }
            while let Some(head) = queue.due.front() {
                match &head.destination {
                    Some(destination)
                        if *room_left(&mut destination_room, limits, org, destination) == 0 =>
                    {
                        queue.due.pop_front();
                    }
                    _ => break,
                }
            }
            if let Some(head) = queue.due.front() {
                let key = (
                    queue.load,
                    head.next_attempt_at,
                    head.id.clone(),
                    org.clone(),
                );
                if next.as_ref().is_none_or(|best| key < *best) {
                    next = Some(key);
                }
            }
        }
        let Some((_, _, _, org)) = next else {
            break;
        };
        let queue = queues.get_mut(&org).expect("the chosen queue exists");
        let head = queue.due.pop_front().expect("the chosen queue has a head");
        queue.room -= 1;
        queue.load += 1;
        if let Some(destination) = &head.destination {
            *room_left(&mut destination_room, limits, &org, destination) -= 1;
        }
        chosen.push(head.id);
    }
    chosen
}

/// What is left of an (organization, destination)'s room during one claim.
fn room_left<'m>(
    rooms: &'m mut BTreeMap<(OrgId, Destination), u32>,
    limits: &ClaimLimits,
    org: &OrgId,
    destination: &Destination,
) -> &'m mut u32 {
    rooms
        .entry((org.clone(), destination.clone()))
        .or_insert_with(|| limits.destination_room(org, destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(n: u8) -> OrgId {
        OrgId::from_suffix(&format!("{:0>16}", n)).unwrap()
    }

    fn candidate(id: &str, org_n: u8, due: i64, host: &str) -> Candidate {
        Candidate {
            id: DeliveryId::from_suffix(&format!("{id:0>16}")).unwrap(),
            org_id: org(org_n),
            next_attempt_at: Timestamp::from_unix_millis(due),
            destination: Destination::of_url(&format!("http://{host}/")),
        }
    }

    fn names(ids: Vec<DeliveryId>) -> Vec<String> {
        ids.iter()
            .map(|id| {
                id.as_str()
                    .trim_start_matches("msg_")
                    .trim_start_matches('0')
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn organizations_take_turns_oldest_first_within_a_turn() {
        let mut all = Vec::new();
        for i in 0..5 {
            all.push(candidate(&format!("a{i}"), 1, i, "a.test"));
        }
        all.push(candidate("b0", 2, 100, "b.test"));
        all.push(candidate("b1", 2, 101, "b.test"));
        all.push(candidate("c0", 3, 50, "c.test"));
        let chosen = plan(all, &ClaimLimits::up_to(6));
        assert_eq!(names(chosen), ["a0", "c0", "b0", "a1", "b1", "a2"]);
    }

    #[test]
    fn full_organizations_and_destinations_are_skipped() {
        let mut limits = ClaimLimits {
            total: 10,
            per_org: 3,
            per_destination: 2,
            in_flight: InFlight::default(),
        };
        let a_hung = Destination::of_url("http://hung.test/").unwrap();
        limits.in_flight.add(&org(1), Some(&a_hung));
        limits.in_flight.add(&org(1), Some(&a_hung));
        for _ in 0..3 {
            limits.in_flight.add(&org(3), None);
        }
        assert_eq!(limits.org_room(&org(1)), 1);
        assert_eq!(
            limits.lookahead(&org(3)),
            0,
            "a full organization is not read"
        );
        let all = vec![
            candidate("a0", 1, 0, "hung.test"),
            candidate("a1", 1, 1, "hung.test"),
            candidate("a2", 1, 2, "ok.test"),
            candidate("a3", 1, 3, "ok.test"),
            candidate("b0", 2, 5, "hung.test"),
            candidate("b1", 2, 6, "hung.test"),
            candidate("b2", 2, 7, "hung.test"),
            candidate("c0", 3, 0, "c.test"),
        ];
        let chosen = plan(all, &limits);
        // org 2 has nothing in flight, so it comes first, with its own slots to the
        // host org 1 fills; org 1 has one slot left, not for its full destination; org
        // 3 is full.
        assert_eq!(names(chosen), ["b0", "b1", "a2"]);
    }

    #[test]
    fn a_slot_goes_to_the_organization_with_the_fewest_in_flight() {
        // Slots free one at a time under a backlog: the organization with the oldest
        // queue must not get every one.
        let mut limits = ClaimLimits {
            total: 1,
            per_org: 16,
            per_destination: 16,
            in_flight: InFlight::default(),
        };
        for _ in 0..15 {
            limits.in_flight.add(&org(1), None);
        }
        for _ in 0..16 {
            limits.in_flight.add(&org(2), None);
        }
        let all = vec![
            candidate("a0", 1, 0, "a.test"),
            candidate("b0", 2, 0, "b.test"),
            candidate("c0", 3, 1_000, "c.test"),
        ];
        assert_eq!(names(plan(all.clone(), &limits)), ["c0"]);
        limits.total = 3;
        assert_eq!(names(plan(all, &limits)), ["c0", "a0"], "org 2 is full");
    }

    #[test]
    fn the_total_cuts_the_claim_short() {
        let all = vec![
            candidate("a0", 1, 3, "a.test"),
            candidate("b0", 2, 1, "b.test"),
            candidate("c0", 3, 2, "c.test"),
        ];
        assert_eq!(
            names(plan(all.clone(), &ClaimLimits::up_to(2))),
            ["b0", "c0"]
        );
        assert!(plan(all, &ClaimLimits::up_to(0)).is_empty());
    }

    #[test]
    fn in_flight_counts_come_and_go() {
        let mut in_flight = InFlight::default();
        let host = Destination::of_url("http://h.test/").unwrap();
        in_flight.add(&org(1), Some(&host));
        in_flight.add(&org(1), None);
        assert_eq!((in_flight.total(), in_flight.of_org(&org(1))), (2, 2));
        assert_eq!(in_flight.of_destination(&org(1), &host), 1);
        in_flight.remove(&org(1), Some(&host));
        in_flight.remove(&org(1), None);
        assert_eq!(in_flight, InFlight::default());
    }
}
