//! In-memory fakes of every port, for tests here and in other crates (feature `testing`).
//!
//! [`MemoryStore`] keeps the same semantics as the durable stores in `port-store`; their
//! shared conformance suite runs against it too, so a test written against the fake
//! holds against the real thing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::access::{
    ActionPermissions, AuditEntry, AuditFilter, Email, PasswordHash, Session, Team, TeamName, User,
};
use crate::action::Action;
use crate::catalog::{AffectedEntity, Blueprint, Entity};
use crate::claim::{self, Candidate, ClaimLimits};
use crate::destination::Destination;
use crate::error::StoreError;
use crate::event::{ChangeEvent, NewChangeEvent};
use crate::id::{
    ActionIdentifier, BlueprintIdentifier, DeliveryId, EntityIdentifier, ID_ALPHABET,
    IntegrationIdentifier, OrgId, RunId,
};
use crate::integration::Integration;
use crate::ports::{
    AccessStore, ActionStore, AgentClaim, BlueprintStore, Clock, CreateRunOutcome, Credential,
    Delivery, DeliveryAttempt, DeliveryMode, DeliveryState, DeliveryStore, DirectoryStore,
    EntityDeletion, EntityKey, EntityScan, EntityStore, EntityWriteMode, Entropy, EventStore,
    IdGenerator, IdempotencyKey, IntegrationStore, NewDelivery, Notice, Notifier, OrgSecret,
    OrgStore, Organization, RunFilter, RunStore, ScannedEntities, SecretStore, StoreResult,
};
use crate::run::{Run, RunStatus};
use crate::run_log::{NewRunLog, RunLog};
use crate::secret::{SecretName, SecretValue};
use crate::time::Timestamp;
use crate::timer::TimerChange;

use crate::service::IDEMPOTENCY_WINDOW_MS;

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FixedClock {
    ms: AtomicI64,
}

impl FixedClock {
    pub fn new(now: Timestamp) -> Self {
        Self {
            ms: AtomicI64::new(now.unix_millis()),
        }
    }

    /// A clock at 2023-11-14T22:13:20Z, a date far from any edge.
    pub fn at_default() -> Self {
        Self::new(Timestamp::from_unix_millis(1_700_000_000_000))
    }

    pub fn set(&self, now: Timestamp) {
        self.ms.store(now.unix_millis(), Ordering::SeqCst);
    }

    /// Moves the clock by `ms` (negative goes back) and returns the new time.
    pub fn advance(&self, ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(self.ms.fetch_add(ms, Ordering::SeqCst).saturating_add(ms))
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.ms.load(Ordering::SeqCst))
    }
}

/// Deterministic "randomness": a counter written in the id alphabet, so ids generated
/// within one millisecond still sort in the order they were made.
#[derive(Debug, Default)]
pub struct SeqEntropy {
    next: AtomicU64,
}

impl SeqEntropy {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Entropy for SeqEntropy {
    fn random_bytes(&self) -> [u8; 8] {
        let mut n = self.next.fetch_add(1, Ordering::SeqCst);
        let base = ID_ALPHABET.len() as u64;
        let mut out = [0u8; 8];
        for slot in out.iter_mut().rev() {
            // Below 62, so it fits a byte and maps to itself modulo 62.
            *slot = (n % base) as u8;
            n /= base;
        }
        out
    }
}

/// Ids from `clock` and a fresh [`SeqEntropy`].
pub fn test_ids(clock: Arc<dyn Clock>) -> IdGenerator {
    IdGenerator::new(clock, Arc::new(SeqEntropy::new()))
}

/// A notifier that remembers what it was told.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    notices: Mutex<Vec<Notice>>,
}

impl RecordingNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything notified so far, oldest first.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Returns and forgets everything notified so far.
    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Notifier for RecordingNotifier {
    fn notify(&self, notice: Notice) {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(notice);
    }
}

#[derive(Default)]
struct State {
    orgs: BTreeMap<OrgId, Organization>,
    credentials: BTreeMap<String, Credential>,
    blueprints: BTreeMap<(OrgId, BlueprintIdentifier), Blueprint>,
    entities: BTreeMap<(OrgId, BlueprintIdentifier, EntityIdentifier), Entity>,
    /// In insertion order.
    affected: Vec<AffectedEntity>,
    actions: BTreeMap<(OrgId, ActionIdentifier), Action>,
    runs: BTreeMap<(OrgId, RunId), Run>,
    /// Per run, in sequence order.
    logs: BTreeMap<(OrgId, RunId), Vec<RunLog>>,
    idempotency: HashMap<(OrgId, String), (RunId, Timestamp)>,
    deliveries: BTreeMap<DeliveryId, Delivery>,
    attempts: Vec<DeliveryAttempt>,
    settings: BTreeMap<OrgId, Map<String, Value>>,
    integrations: BTreeMap<(OrgId, IntegrationIdentifier), Integration>,
    /// Values in clear: the fake has no server key.
    secrets: BTreeMap<(OrgId, SecretName), (OrgSecret, SecretValue)>,
    /// The event outbox by sequence number, each with its lease (owner, until).
    events: BTreeMap<u64, (ChangeEvent, Option<(String, Timestamp)>)>,
    last_event_seq: u64,
    /// Armed timers: when each entity's timer property expires.
    timers: BTreeMap<(OrgId, BlueprintIdentifier, EntityIdentifier, String), Timestamp>,
    /// How many of the next `complete_events` calls fail, as if the process died first.
    failing_completions: usize,
    /// Users without their `teams` (derived from `teams` on every read).
    users: BTreeMap<(OrgId, Email), User>,
    passwords: BTreeMap<(OrgId, Email), PasswordHash>,
    teams: BTreeMap<(OrgId, TeamName), Team>,
    sessions: BTreeMap<String, Session>,
    permissions: BTreeMap<(OrgId, ActionIdentifier), ActionPermissions>,
    audit: Vec<AuditEntry>,
}

impl State {
    fn record(&mut self, change: Option<NewChangeEvent>) {
        if let Some(change) = change {
            self.last_event_seq += 1;
            let seq = self.last_event_seq;
            self.events.insert(seq, (ChangeEvent { seq, change }, None));
        }
    }

    /// A stored user with the teams they belong to.
    fn user_with_teams(&self, user: &User) -> User {
        let mut user = user.clone();
        user.teams = self
            .teams
            .values()
            .filter(|t| t.org_id == user.org_id && t.users.contains(&user.email))
            .map(|t| t.name.clone())
            .collect();
        user
    }

    /// Makes `email` a member of exactly `teams` of its organization; every team must exist.
    fn set_memberships(
        &mut self,
        org: &OrgId,
        email: &Email,
        teams: &[TeamName],
    ) -> StoreResult<()> {
        if let Some(missing) = teams
            .iter()
            .find(|t| !self.teams.contains_key(&(org.clone(), (*t).clone())))
        {
            return Err(StoreError::InvalidInput(format!(
                "team {missing} does not exist"
            )));
        }
        for team in self.teams.values_mut().filter(|t| &t.org_id == org) {
            let member = teams.contains(&team.name);
            let listed = team.users.contains(email);
            if member && !listed {
                team.users.push(email.clone());
                team.users.sort();
            } else if !member && listed {
                team.users.retain(|u| u != email);
            }
        }
        Ok(())
    }

    fn check_members(&self, team: &Team) -> StoreResult<()> {
        match team.users.iter().find(|u| {
            !self
                .users
                .contains_key(&(team.org_id.clone(), (*u).clone()))
        }) {
            Some(missing) => Err(StoreError::InvalidInput(format!(
                "{missing} is not a user of the organization"
            ))),
            None => Ok(()),
        }
    }

    fn push_audit(&mut self, entry: &AuditEntry) {
        let mut entry = entry.clone();
        entry.seq = self.audit.len() as u64 + 1;
        self.audit.push(entry);
    }

    /// The chain depth of the run an entity write is bound to (0 without one).
    fn depth_of(&self, affected: Option<&AffectedEntity>) -> u32 {
        affected
            .and_then(|a| self.runs.get(&(a.org_id.clone(), a.run_id.clone())))
            .map_or(0, |run| run.chain_depth)
    }
}

/// Every storage port in memory, behind one mutex: each call is one atomic step, as a
/// transaction is in the durable stores.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` [`EventStore::complete_events`] calls fail: the events stay,
    /// as when a worker dies after handling them.
    pub fn fail_completions(&self, n: usize) {
        self.state().failing_completions = n;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test must not poison the store for the other assertions.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn new_delivery(d: &NewDelivery) -> Delivery {
    Delivery {
        id: d.id.clone(),
        org_id: d.org_id.clone(),
        run_id: d.run_id.clone(),
        mode: d.mode,
        request: d.request.clone(),
        synchronized: d.synchronized,
        installation_id: d.installation_id.clone(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: d.next_attempt_at,
        lease_owner: None,
        lease_until: None,
        created_at: d.created_at,
        updated_at: d.created_at,
    }
}

fn lease_free(d: &Delivery, now: Timestamp) -> bool {
    d.lease_until.is_none_or(|until| until <= now)
}

/// Leases the first `limit` deliveries matching `pick`, oldest due first.
fn claim_matching(
    state: &mut State,
    owner: &str,
    now: Timestamp,
    lease_ms: i64,
    limit: u32,
    count_claim: bool,
    pick: impl Fn(&Delivery) -> bool,
) -> Vec<Delivery> {
    let mut due: Vec<(Timestamp, DeliveryId)> = state
        .deliveries
        .values()
        .filter(|d| {
            d.state == DeliveryState::Pending
                && d.next_attempt_at <= now
                && lease_free(d, now)
                && pick(d)
        })
        .map(|d| (d.next_attempt_at, d.id.clone()))
        .collect();
    due.sort();
    due.truncate(limit as usize);
    let mut out = Vec::with_capacity(due.len());
    for (_, id) in due {
        if let Some(d) = state.deliveries.get_mut(&id) {
            d.lease_owner = Some(owner.to_owned());
            d.lease_until = Some(now.plus_millis(lease_ms));
            d.updated_at = now;
            if count_claim {
                d.attempts += 1;
            }
            out.push(d.clone());
        }
    }
    out
}

#[async_trait]
impl OrgStore for MemoryStore {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()> {
        let mut s = self.state();
        if s.orgs.contains_key(&org.id) {
            return Err(StoreError::AlreadyExists(format!(
                "organization {}",
                org.id
            )));
        }
        s.orgs.insert(org.id.clone(), org.clone());
        Ok(())
    }

    async fn get_organization(&self, org: &OrgId) -> StoreResult<Option<Organization>> {
        Ok(self.state().orgs.get(org).cloned())
    }

    async fn add_credential(&self, credential: &Credential) -> StoreResult<()> {
        let mut s = self.state();
        if !s.orgs.contains_key(&credential.org_id) {
            return Err(StoreError::Other(format!(
                "organization {} does not exist",
                credential.org_id
            )));
        }
        if let Some(user) = &credential.user
            && !s
                .users
                .contains_key(&(credential.org_id.clone(), user.clone()))
        {
            return Err(StoreError::InvalidInput(format!(
                "{user} is not a user of the organization"
            )));
        }
        if s.credentials.contains_key(&credential.client_id) {
            return Err(StoreError::AlreadyExists("credential".to_owned()));
        }
        s.credentials
            .insert(credential.client_id.clone(), credential.clone());
        Ok(())
    }

    async fn find_credential(&self, client_id: &str) -> StoreResult<Option<Credential>> {
        Ok(self.state().credentials.get(client_id).cloned())
    }

    async fn credentials(&self, org: &OrgId) -> StoreResult<Vec<Credential>> {
        let s = self.state();
        let mut out: Vec<Credential> = s
            .credentials
            .values()
            .filter(|c| &c.org_id == org)
            .cloned()
            .collect();
        out.sort_by_key(|c| (c.created_at, c.client_id.clone()));
        Ok(out)
    }

    async fn count_credentials(&self) -> StoreResult<u64> {
        Ok(self.state().credentials.len() as u64)
    }

    async fn delete_credential(&self, org: &OrgId, client_id: &str) -> StoreResult<bool> {
        let mut s = self.state();
        if s.credentials
            .get(client_id)
            .is_some_and(|c| &c.org_id == org)
        {
            s.credentials.remove(client_id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn organization_settings(&self, org: &OrgId) -> StoreResult<Option<Map<String, Value>>> {
        let s = self.state();
        Ok(s.orgs
            .contains_key(org)
            .then(|| s.settings.get(org).cloned().unwrap_or_default()))
    }

    async fn update_organization(
        &self,
        org: &OrgId,
        name: Option<&str>,
        settings: Option<&Map<String, Value>>,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let Some(found) = s.orgs.get_mut(org) else {
            return Ok(false);
        };
        if let Some(name) = name {
            found.name = name.to_owned();
        }
        if let Some(settings) = settings {
            s.settings.insert(org.clone(), settings.clone());
        }
        Ok(true)
    }
}

#[async_trait]
impl IntegrationStore for MemoryStore {
    async fn create_integration(&self, integration: &Integration) -> StoreResult<()> {
        let mut s = self.state();
        if !s.orgs.contains_key(&integration.org_id) {
            return Err(StoreError::Other(format!(
                "organization {} does not exist",
                integration.org_id
            )));
        }
        let key = (integration.org_id.clone(), integration.identifier.clone());
        if s.integrations.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!(
                "integration {}",
                integration.identifier
            )));
        }
        s.integrations.insert(key, integration.clone());
        Ok(())
    }

    async fn get_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<Option<Integration>> {
        Ok(self
            .state()
            .integrations
            .get(&(org.clone(), id.clone()))
            .cloned())
    }

    async fn update_integration(&self, integration: &Integration) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (integration.org_id.clone(), integration.identifier.clone());
        let Some(stored) = s.integrations.get_mut(&key) else {
            return Ok(false);
        };
        // Creation is the store's record, whatever the caller's copy says.
        let (created_at, created_by) = (stored.created_at, stored.created_by.clone());
        *stored = Integration {
            created_at,
            created_by,
            ..integration.clone()
        };
        Ok(true)
    }

    async fn delete_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<bool> {
        Ok(self
            .state()
            .integrations
            .remove(&(org.clone(), id.clone()))
            .is_some())
    }

    async fn count_integrations(&self, org: &OrgId) -> StoreResult<u64> {
        Ok(self
            .state()
            .integrations
            .keys()
            .filter(|(o, _)| o == org)
            .count() as u64)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        per_org: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        let mut s = self.state();
        let mut out = Vec::new();
        let mut taken: HashMap<OrgId, u32> = HashMap::new();
        for (event, lease) in s.events.values_mut() {
            if out.len() >= limit as usize {
                break;
            }
            if lease
                .as_ref()
                .is_some_and(|(holder, until)| holder != owner && *until > now)
            {
                continue;
            }
            let of_org = taken.entry(event.change.org_id.clone()).or_default();
            if *of_org >= per_org {
                continue;
            }
            *of_org += 1;
            *lease = Some((owner.to_owned(), lease_until));
            out.push(event.clone());
        }
        Ok(out)
    }

    async fn complete_events(&self, owner: &str, seqs: &[u64]) -> StoreResult<u64> {
        let mut s = self.state();
        if s.failing_completions > 0 {
            s.failing_completions -= 1;
            return Err(StoreError::Other("injected: the worker died".into()));
        }
        let mut done = 0;
        for seq in seqs {
            let held = s
                .events
                .get(seq)
                .is_some_and(|(_, lease)| lease.as_ref().is_some_and(|(o, _)| o == owner));
            if held {
                s.events.remove(seq);
                done += 1;
            }
        }
        Ok(done)
    }

    async fn pending_events(&self) -> StoreResult<u64> {
        Ok(self.state().events.len() as u64)
    }

    async fn fire_due_timers(&self, now: Timestamp, limit: u32) -> StoreResult<u32> {
        let mut s = self.state();
        // As the stores do: each organization with timers gets an equal share of the
        // batch, then the earliest of those fire.
        let mut by_org: BTreeMap<OrgId, Vec<_>> = BTreeMap::new();
        for (key, at) in &s.timers {
            by_org
                .entry(key.0.clone())
                .or_default()
                .push((*at, key.clone()));
        }
        let share = (limit as usize).div_ceil(by_org.len().max(1)).max(1);
        let mut due = Vec::new();
        for (_, mut timers) in by_org {
            timers.retain(|(at, _)| *at <= now);
            timers.sort();
            timers.truncate(share);
            due.extend(timers);
        }
        due.sort();
        due.truncate(limit as usize);
        let mut fired = 0;
        for (_, key) in due {
            s.timers.remove(&key);
            let (org, blueprint, identifier, property) = key;
            let Some(entity) = s.entities.get(&(org, blueprint, identifier)).cloned() else {
                continue;
            };
            s.record(Some(NewChangeEvent::timer_expired(&entity, &property, now)));
            fired += 1;
        }
        Ok(fired)
    }

    async fn next_timer(&self) -> StoreResult<Option<Timestamp>> {
        Ok(self.state().timers.values().min().copied())
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn create_secret(&self, secret: &OrgSecret, value: &SecretValue) -> StoreResult<()> {
        let mut s = self.state();
        if !s.orgs.contains_key(&secret.org_id) {
            return Err(StoreError::Other(format!(
                "organization {} does not exist",
                secret.org_id
            )));
        }
        let key = (secret.org_id.clone(), secret.name.clone());
        if s.secrets.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!("secret {}", secret.name)));
        }
        s.secrets.insert(key, (secret.clone(), value.clone()));
        Ok(())
    }

    async fn update_secret(
        &self,
        org: &OrgId,
        name: &SecretName,
        value: Option<&SecretValue>,
        description: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Option<OrgSecret>> {
        let mut s = self.state();
        let Some((secret, stored)) = s.secrets.get_mut(&(org.clone(), name.clone())) else {
            return Ok(None);
        };
        if let Some(value) = value {
            *stored = value.clone();
        }
        if let Some(description) = description {
            secret.description = Some(description.to_owned());
        }
        secret.updated_at = at;
        Ok(Some(secret.clone()))
    }

    async fn get_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<Option<OrgSecret>> {
        Ok(self
            .state()
            .secrets
            .get(&(org.clone(), name.clone()))
            .map(|(secret, _)| secret.clone()))
    }

    async fn list_secrets(&self, org: &OrgId) -> StoreResult<Vec<OrgSecret>> {
        // Keys sort by organization, then name.
        Ok(self
            .state()
            .secrets
            .iter()
            .filter(|((o, _), _)| o == org)
            .map(|(_, (secret, _))| secret.clone())
            .collect())
    }

    async fn delete_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<bool> {
        Ok(self
            .state()
            .secrets
            .remove(&(org.clone(), name.clone()))
            .is_some())
    }

    async fn secret_values(&self, org: &OrgId) -> StoreResult<Vec<(SecretName, SecretValue)>> {
        Ok(self
            .state()
            .secrets
            .iter()
            .filter(|((o, _), _)| o == org)
            .map(|((_, name), (_, value))| (name.clone(), value.clone()))
            .collect())
    }
}

#[async_trait]
impl BlueprintStore for MemoryStore {
    async fn create_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()> {
        let mut s = self.state();
        let key = (blueprint.org_id.clone(), blueprint.identifier.clone());
        if s.blueprints.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!(
                "blueprint {}",
                blueprint.identifier
            )));
        }
        s.blueprints.insert(key, blueprint.clone());
        Ok(())
    }

    async fn update_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()> {
        let mut s = self.state();
        match s
            .blueprints
            .get_mut(&(blueprint.org_id.clone(), blueprint.identifier.clone()))
        {
            Some(stored) => {
                *stored = blueprint.clone();
                Ok(())
            }
            None => Err(StoreError::Conflict(format!(
                "blueprint {} no longer exists",
                blueprint.identifier
            ))),
        }
    }

    async fn get_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
    ) -> StoreResult<Option<Blueprint>> {
        Ok(self
            .state()
            .blueprints
            .get(&(org.clone(), id.clone()))
            .cloned())
    }

    async fn list_blueprints(&self, org: &OrgId) -> StoreResult<Vec<Blueprint>> {
        let s = self.state();
        let mut out: Vec<Blueprint> = s
            .blueprints
            .values()
            .filter(|b| &b.org_id == org)
            .cloned()
            .collect();
        out.sort_by_key(|b| (b.stamp.created_at, b.identifier.clone()));
        Ok(out)
    }

    async fn delete_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
        by: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let (deleted, kept) = std::mem::take(&mut s.entities)
            .into_iter()
            .partition::<BTreeMap<_, _>, _>(|((o, b, _), _)| o == org && b == id);
        s.entities = kept;
        // In identifier order, as the key orders them; each the deleter's.
        for before in deleted.values() {
            let mut event = NewChangeEvent::of_entity(Some(before), None, 0, at);
            if let Some(event) = &mut event {
                event.by = by.to_owned();
            }
            s.record(event);
        }
        s.timers.retain(|(o, b, _, _), _| !(o == org && b == id));
        s.actions
            .retain(|(o, _), a| !(o == org && a.definition.blueprint() == Some(id)));
        // Permissions go with their action (the stores' foreign key).
        let State {
            actions,
            permissions,
            ..
        } = &mut *s;
        permissions.retain(|key, _| actions.contains_key(key));
        Ok(s.blueprints.remove(&(org.clone(), id.clone())).is_some())
    }
}

#[async_trait]
impl EntityStore for MemoryStore {
    async fn put_entity(
        &self,
        entity: &Entity,
        mode: EntityWriteMode,
        affected: Option<&AffectedEntity>,
        timers: &[String],
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (
            entity.org_id.clone(),
            entity.blueprint.clone(),
            entity.identifier.clone(),
        );
        let before = s.entities.get(&key).cloned();
        let exists = before.is_some();
        if exists && mode == EntityWriteMode::CreateOnly {
            return Err(StoreError::AlreadyExists(format!(
                "entity {}",
                entity.identifier
            )));
        }
        let depth = s.depth_of(affected);
        s.record(NewChangeEvent::of_entity(
            before.as_ref(),
            Some(entity),
            depth,
            entity.stamp.updated_at,
        ));
        for change in crate::timer::changes(timers, before.as_ref(), entity) {
            let (property, expires_at) = match change {
                TimerChange::Arm {
                    property,
                    expires_at,
                } => (property, Some(expires_at)),
                TimerChange::Disarm { property } => (property, None),
            };
            let timer = (key.0.clone(), key.1.clone(), key.2.clone(), property);
            match expires_at {
                Some(at) => s.timers.insert(timer, at),
                None => s.timers.remove(&timer),
            };
        }
        s.entities.insert(key, entity.clone());
        if let Some(affected) = affected {
            s.affected.push(affected.clone());
        }
        Ok(!exists)
    }

    async fn get_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
    ) -> StoreResult<Option<Entity>> {
        Ok(self
            .state()
            .entities
            .get(&(org.clone(), blueprint.clone(), id.clone()))
            .cloned())
    }

    async fn list_entities(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
    ) -> StoreResult<Vec<Entity>> {
        let s = self.state();
        let mut out: Vec<Entity> = s
            .entities
            .values()
            .filter(|e| &e.org_id == org && &e.blueprint == blueprint)
            .cloned()
            .collect();
        out.sort_by_key(|e| (e.stamp.created_at, e.identifier.clone()));
        Ok(out)
    }

    async fn delete_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
        deletion: &EntityDeletion<'_>,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let Some(before) = s
            .entities
            .remove(&(org.clone(), blueprint.clone(), id.clone()))
        else {
            return Ok(false);
        };
        s.timers
            .retain(|(o, b, e, _), _| !(o == org && b == blueprint && e == id));
        let depth = s.depth_of(deletion.affected);
        if let Some(affected) = deletion.affected {
            s.affected.push(affected.clone());
        }
        let mut event = NewChangeEvent::of_entity(Some(&before), None, depth, deletion.at);
        if let Some(event) = &mut event {
            event.by = deletion.by.to_owned();
        }
        s.record(event);
        Ok(true)
    }

    async fn affected_entities(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<AffectedEntity>> {
        let s = self.state();
        let mut out: Vec<AffectedEntity> = s
            .affected
            .iter()
            .filter(|a| &a.org_id == org && &a.run_id == run)
            .cloned()
            .collect();
        // Stable: records of one instant stay in insertion order.
        out.sort_by_key(|a| a.at);
        Ok(out)
    }

    async fn scan_entities(&self, org: &OrgId, scan: &EntityScan) -> StoreResult<ScannedEntities> {
        let s = self.state();
        let mut page = ScannedEntities::default();
        for entity in s.entities.values() {
            if page.entities.len() >= scan.limit {
                break;
            }
            let key = EntityKey::of(entity);
            let wanted = &entity.org_id == org
                && scan.after.as_ref().is_none_or(|after| &key > after)
                && scan
                    .blueprints
                    .as_ref()
                    .is_none_or(|set| set.contains(&entity.blueprint))
                && scan
                    .identifiers
                    .as_ref()
                    .is_none_or(|set| set.contains(&entity.identifier));
            if wanted {
                // What the SQL stores keep as the entity's document.
                let document = serde_json::json!({
                    "title": entity.title, "icon": entity.icon, "team": entity.team,
                    "properties": entity.properties, "relations": entity.relations,
                });
                let size = document.to_string().len() as u64;
                page.bytes += size;
                page.sizes.push(size);
                page.entities.push(entity.clone());
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl ActionStore for MemoryStore {
    async fn create_action(&self, org: &OrgId, action: &Action) -> StoreResult<()> {
        let mut s = self.state();
        let key = (org.clone(), action.definition.identifier.clone());
        if s.actions.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!(
                "action {}",
                action.definition.identifier
            )));
        }
        s.actions.insert(key, action.clone());
        Ok(())
    }

    async fn update_action(&self, org: &OrgId, action: &Action) -> StoreResult<()> {
        let mut s = self.state();
        match s
            .actions
            .get_mut(&(org.clone(), action.definition.identifier.clone()))
        {
            Some(stored) => {
                *stored = action.clone();
                Ok(())
            }
            None => Err(StoreError::Conflict(format!(
                "action {} no longer exists",
                action.definition.identifier
            ))),
        }
    }

    async fn get_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<Option<Action>> {
        Ok(self
            .state()
            .actions
            .get(&(org.clone(), id.clone()))
            .cloned())
    }

    async fn list_actions(&self, org: &OrgId) -> StoreResult<Vec<Action>> {
        let s = self.state();
        let mut out: Vec<Action> = s
            .actions
            .iter()
            .filter(|((o, _), _)| o == org)
            .map(|(_, a)| a.clone())
            .collect();
        out.sort_by_key(|a| (a.meta.created_at, a.definition.identifier.clone()));
        Ok(out)
    }

    async fn delete_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (org.clone(), id.clone());
        s.permissions.remove(&key);
        Ok(s.actions.remove(&key).is_some())
    }
}

#[async_trait]
impl DirectoryStore for MemoryStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut s = self.state();
        if !s.orgs.contains_key(&user.org_id) {
            return Err(StoreError::Other(format!(
                "organization {} does not exist",
                user.org_id
            )));
        }
        let key = (user.org_id.clone(), user.email.clone());
        if s.users.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!("user {}", user.email)));
        }
        if let Some(missing) = user
            .teams
            .iter()
            .find(|t| !s.teams.contains_key(&(user.org_id.clone(), (*t).clone())))
        {
            return Err(StoreError::InvalidInput(format!(
                "team {missing} does not exist"
            )));
        }
        s.users.insert(key, user.clone());
        s.set_memberships(&user.org_id, &user.email, &user.teams)
    }

    async fn get_user(&self, org: &OrgId, email: &Email) -> StoreResult<Option<User>> {
        let s = self.state();
        Ok(s.users
            .get(&(org.clone(), email.clone()))
            .map(|u| s.user_with_teams(u)))
    }

    async fn list_users(&self, org: &OrgId) -> StoreResult<Vec<User>> {
        let s = self.state();
        Ok(s.users
            .values()
            .filter(|u| &u.org_id == org)
            .map(|u| s.user_with_teams(u))
            .collect())
    }

    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (user.org_id.clone(), user.email.clone());
        if !s.users.contains_key(&key) {
            return Ok(false);
        }
        s.set_memberships(&user.org_id, &user.email, &user.teams)?;
        // The contract replaces names, role, status and `updated_at`: the creation stays.
        let created_at = s.users.get(&key).map_or(user.created_at, |u| u.created_at);
        s.users.insert(
            key,
            User {
                created_at,
                ..user.clone()
            },
        );
        Ok(true)
    }

    async fn delete_user(&self, org: &OrgId, email: &Email) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (org.clone(), email.clone());
        if s.users.remove(&key).is_none() {
            return Ok(false);
        }
        s.passwords.remove(&key);
        for team in s.teams.values_mut().filter(|t| &t.org_id == org) {
            team.users.retain(|u| u != email);
        }
        s.sessions
            .retain(|_, session| !(&session.org_id == org && &session.email == email));
        s.credentials
            .retain(|_, c| !(&c.org_id == org && c.user.as_ref() == Some(email)));
        Ok(true)
    }

    async fn users_by_email(
        &self,
        email: &Email,
    ) -> StoreResult<Vec<(User, Option<PasswordHash>)>> {
        let s = self.state();
        let mut found: Vec<(User, Option<PasswordHash>)> = s
            .users
            .values()
            .filter(|u| &u.email == email)
            .map(|u| {
                let hash = s
                    .passwords
                    .get(&(u.org_id.clone(), u.email.clone()))
                    .cloned();
                (s.user_with_teams(u), hash)
            })
            .collect();
        found.sort_by_key(|(u, _)| u.created_at);
        Ok(found)
    }

    async fn set_password(
        &self,
        org: &OrgId,
        email: &Email,
        hash: Option<&PasswordHash>,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (org.clone(), email.clone());
        if !s.users.contains_key(&key) {
            return Ok(false);
        }
        match hash {
            Some(hash) => s.passwords.insert(key, hash.clone()),
            None => s.passwords.remove(&key),
        };
        Ok(true)
    }

    async fn create_team(&self, team: &Team) -> StoreResult<()> {
        let mut s = self.state();
        let key = (team.org_id.clone(), team.name.clone());
        if s.teams.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!("team {}", team.name)));
        }
        s.check_members(team)?;
        let mut team = team.clone();
        team.users.sort();
        team.users.dedup();
        s.teams.insert(key, team);
        Ok(())
    }

    async fn get_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<Option<Team>> {
        Ok(self
            .state()
            .teams
            .get(&(org.clone(), name.clone()))
            .cloned())
    }

    async fn list_teams(&self, org: &OrgId) -> StoreResult<Vec<Team>> {
        Ok(self
            .state()
            .teams
            .values()
            .filter(|t| &t.org_id == org)
            .cloned()
            .collect())
    }

    async fn update_team(&self, name: &TeamName, team: &Team) -> StoreResult<bool> {
        let mut s = self.state();
        let old = (team.org_id.clone(), name.clone());
        if !s.teams.contains_key(&old) {
            return Ok(false);
        }
        let new = (team.org_id.clone(), team.name.clone());
        if new != old && s.teams.contains_key(&new) {
            return Err(StoreError::AlreadyExists(format!("team {}", team.name)));
        }
        s.check_members(team)?;
        s.teams.remove(&old);
        let mut team = team.clone();
        team.users.sort();
        team.users.dedup();
        s.teams.insert(new, team);
        Ok(true)
    }

    async fn delete_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<bool> {
        Ok(self
            .state()
            .teams
            .remove(&(org.clone(), name.clone()))
            .is_some())
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut s = self.state();
        if !s
            .users
            .contains_key(&(session.org_id.clone(), session.email.clone()))
        {
            return Err(StoreError::InvalidInput(format!(
                "{} is not a user",
                session.email
            )));
        }
        s.sessions
            .insert(session.token_hash.clone(), session.clone());
        Ok(())
    }

    async fn get_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        Ok(self
            .state()
            .sessions
            .get(token_hash)
            .filter(|session| session.expires_at > now)
            .cloned())
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        Ok(self.state().sessions.remove(token_hash).is_some())
    }

    async fn count_users(&self) -> StoreResult<u64> {
        Ok(self.state().users.len() as u64)
    }
}

#[async_trait]
impl AccessStore for MemoryStore {
    async fn get_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
    ) -> StoreResult<Option<ActionPermissions>> {
        Ok(self
            .state()
            .permissions
            .get(&(org.clone(), action.clone()))
            .cloned())
    }

    async fn put_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
        permissions: &ActionPermissions,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (org.clone(), action.clone());
        if !s.actions.contains_key(&key) {
            return Ok(false);
        }
        s.permissions.insert(key, permissions.clone());
        s.push_audit(audit);
        Ok(true)
    }

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.state().push_audit(entry);
        Ok(())
    }

    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        Ok(self
            .state()
            .audit
            .iter()
            .rev()
            .filter(|e| &e.org_id == org && audit_matches(e, filter))
            .take(filter.limit as usize)
            .cloned()
            .collect())
    }
}

/// Whether an audit entry passes every present filter.
fn audit_matches(entry: &AuditEntry, filter: &AuditFilter) -> bool {
    (filter.resources.is_empty() || filter.resources.contains(&entry.resource))
        && filter
            .identifier
            .as_ref()
            .is_none_or(|id| &entry.identifier == id)
        && filter
            .run_id
            .as_ref()
            .is_none_or(|run| entry.run_id.as_ref() == Some(run))
        && filter.from.is_none_or(|from| entry.at >= from)
        && filter.to.is_none_or(|to| entry.at <= to)
}

fn matches_filter(run: &Run, filter: &RunFilter) -> bool {
    let reference_is = |r: &Option<crate::run::Reference>, want: &Option<String>| match want {
        None => true,
        Some(want) => r.as_ref().is_some_and(|r| &r.identifier == want),
    };
    reference_is(&run.entity, &filter.entity)
        && reference_is(&run.blueprint, &filter.blueprint)
        && filter
            .action
            .as_ref()
            .is_none_or(|a| run.action.identifier.as_str() == a)
        && filter
            .active
            .is_none_or(|active| run.status().is_active() == active)
        && filter.status.is_none_or(|status| run.status() == status)
        && filter.user.as_ref().is_none_or(|u| &run.created_by == u)
        && (filter.sources.is_empty() || filter.sources.contains(&run.source))
        && filter
            .external_run_id
            .as_ref()
            .is_none_or(|x| run.external_run_id.as_ref() == Some(x))
        && filter.before.as_ref().is_none_or(|before| &run.id < before)
}

/// Checks a delivery before anything is written, so a refused call changes nothing.
fn check_delivery(s: &State, delivery: &NewDelivery, run: &Run) -> StoreResult<()> {
    if s.deliveries.contains_key(&delivery.id) {
        return Err(StoreError::AlreadyExists(format!(
            "delivery {}",
            delivery.id
        )));
    }
    let own_run = delivery.org_id == run.org_id && delivery.run_id == run.id;
    if !own_run
        && !s
            .runs
            .contains_key(&(delivery.org_id.clone(), delivery.run_id.clone()))
    {
        return Err(StoreError::Other(format!(
            "run {} does not exist",
            delivery.run_id
        )));
    }
    Ok(())
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create_run(
        &self,
        run: &Run,
        delivery: Option<&NewDelivery>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> StoreResult<CreateRunOutcome> {
        let mut s = self.state();
        if let Some(key) = idempotency_key {
            let map_key = (key.org_id.clone(), key.key.clone());
            if let Some((existing, at)) = s.idempotency.get(&map_key)
                && *at > key.created_at.plus_millis(-IDEMPOTENCY_WINDOW_MS)
            {
                return Ok(CreateRunOutcome::Existing(existing.clone()));
            }
        }
        let run_key = (run.org_id.clone(), run.id.clone());
        if s.runs.contains_key(&run_key) {
            return Err(StoreError::AlreadyExists(format!("run {}", run.id)));
        }
        if let Some(d) = delivery {
            check_delivery(&s, d, run)?;
            s.deliveries.insert(d.id.clone(), new_delivery(d));
        }
        s.runs.insert(run_key, run.clone());
        s.record(NewChangeEvent::of_run(None, run));
        if let Some(key) = idempotency_key {
            s.idempotency.insert(
                (key.org_id.clone(), key.key.clone()),
                (run.id.clone(), key.created_at),
            );
        }
        Ok(CreateRunOutcome::Created)
    }

    async fn get_run(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<Run>> {
        Ok(self.state().runs.get(&(org.clone(), id.clone())).cloned())
    }

    async fn run_version(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<u64>> {
        Ok(self
            .state()
            .runs
            .get(&(org.clone(), id.clone()))
            .map(|run| run.version))
    }

    async fn list_runs(&self, org: &OrgId, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let s = self.state();
        Ok(s.runs
            .iter()
            .rev()
            .filter(|((o, _), run)| o == org && matches_filter(run, filter))
            .take(filter.limit as usize)
            .map(|(_, run)| run.clone())
            .collect())
    }

    async fn save_transition(
        &self,
        run: &Run,
        expected_version: u64,
        logs: &[NewRunLog],
        delivery: Option<&NewDelivery>,
    ) -> StoreResult<Vec<RunLog>> {
        if let Some(log) = logs.iter().find(|l| l.run_id != run.id) {
            return Err(StoreError::Other(format!(
                "log {} belongs to another run",
                log.id
            )));
        }
        let mut s = self.state();
        let key = (run.org_id.clone(), run.id.clone());
        let before = match s.runs.get(&key) {
            None => {
                return Err(StoreError::Conflict(format!(
                    "run {} does not exist",
                    run.id
                )));
            }
            Some(stored) if stored.version != expected_version => {
                return Err(StoreError::Conflict(format!("run {}", run.id)));
            }
            Some(stored) => stored.clone(),
        };
        if let Some(d) = delivery {
            check_delivery(&s, d, run)?;
        }
        if run.version != expected_version {
            s.record(NewChangeEvent::of_run(Some(&before), run));
            s.runs.insert(key.clone(), run.clone());
        }
        let stored = s.logs.entry(key).or_default();
        let mut seq = stored.last().map_or(0, |l| l.seq);
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            seq += 1;
            let log = RunLog::from_new(log.clone(), seq);
            stored.push(log.clone());
            out.push(log);
        }
        if let Some(d) = delivery {
            s.deliveries.insert(d.id.clone(), new_delivery(d));
        }
        Ok(out)
    }

    async fn list_logs(
        &self,
        org: &OrgId,
        run: &RunId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        let s = self.state();
        let Some(logs) = s.logs.get(&(org.clone(), run.clone())) else {
            return Ok(Vec::new());
        };
        Ok(logs
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn logs_after(
        &self,
        org: &OrgId,
        run: &RunId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        let s = self.state();
        let Some(logs) = s.logs.get(&(org.clone(), run.clone())) else {
            return Ok(Vec::new());
        };
        Ok(logs
            .iter()
            .filter(|l| l.seq > after_seq)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn in_progress_runs_created_before(
        &self,
        created_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        let s = self.state();
        let mut out: Vec<Run> = s
            .runs
            .values()
            .filter(|r| r.status() == RunStatus::InProgress && r.created_at < created_before)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out.truncate(limit as usize);
        Ok(out)
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn claim_due_webhooks(
        &self,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<Delivery>> {
        let mut s = self.state();
        let mut by_org: BTreeMap<OrgId, Vec<&Delivery>> = BTreeMap::new();
        for d in s.deliveries.values().filter(|d| {
            d.mode.is_pushed()
                && d.state == DeliveryState::Pending
                && d.next_attempt_at <= now
                && lease_free(d, now)
        }) {
            by_org.entry(d.org_id.clone()).or_default().push(d);
        }
        let mut candidates = Vec::new();
        for (org, mut due) in by_org {
            due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
            due.truncate(limits.lookahead(&org) as usize);
            candidates.extend(due.into_iter().map(|d| Candidate {
                id: d.id.clone(),
                org_id: d.org_id.clone(),
                next_attempt_at: d.next_attempt_at,
                destination: Destination::of_request(&d.request),
            }));
        }
        let mut out = Vec::new();
        for id in claim::plan(candidates, limits) {
            if let Some(d) = s.deliveries.get_mut(&id) {
                d.lease_owner = Some(owner.to_owned());
                d.lease_until = Some(now.plus_millis(lease_ms));
                d.updated_at = now;
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt) -> StoreResult<()> {
        let mut s = self.state();
        let Some(d) = s.deliveries.get(&attempt.delivery_id) else {
            return Err(StoreError::Other(format!(
                "delivery {} does not exist",
                attempt.delivery_id
            )));
        };
        if d.org_id != attempt.org_id || d.run_id != attempt.run_id {
            return Err(StoreError::Other(format!(
                "attempt does not match delivery {}",
                attempt.delivery_id
            )));
        }
        if s.attempts
            .iter()
            .any(|a| a.delivery_id == attempt.delivery_id && a.number == attempt.number)
        {
            return Err(StoreError::AlreadyExists(format!(
                "attempt {} of delivery {}",
                attempt.number, attempt.delivery_id
            )));
        }
        if let Some(d) = s.deliveries.get_mut(&attempt.delivery_id) {
            d.attempts += 1;
            d.updated_at = attempt.ended_at;
        }
        s.attempts.push(attempt.clone());
        Ok(())
    }

    async fn reschedule(
        &self,
        id: &DeliveryId,
        owner: &str,
        next_attempt_at: Timestamp,
    ) -> StoreResult<()> {
        let mut s = self.state();
        match s.deliveries.get_mut(id) {
            Some(d)
                if d.state == DeliveryState::Pending && d.lease_owner.as_deref() == Some(owner) =>
            {
                d.lease_owner = None;
                d.lease_until = None;
                d.next_attempt_at = next_attempt_at;
                Ok(())
            }
            _ => Err(StoreError::Conflict(format!(
                "delivery {id} is not leased by this worker"
            ))),
        }
    }

    async fn finish(
        &self,
        id: &DeliveryId,
        state: DeliveryState,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut s = self.state();
        match s.deliveries.get_mut(id) {
            Some(d) => {
                d.state = state;
                d.lease_owner = None;
                d.lease_until = None;
                d.updated_at = now;
                Ok(())
            }
            None => Err(StoreError::Other(format!("delivery {id} does not exist"))),
        }
    }

    async fn release_leases(&self, owner: &str, now: Timestamp) -> StoreResult<u64> {
        let mut s = self.state();
        let mut released = 0;
        for d in s.deliveries.values_mut() {
            if d.mode.is_pushed()
                && d.state == DeliveryState::Pending
                && d.lease_owner.as_deref() == Some(owner)
            {
                d.lease_owner = None;
                d.lease_until = None;
                d.updated_at = now;
                released += 1;
            }
        }
        Ok(released)
    }

    async fn next_due_after(&self, after: Timestamp) -> StoreResult<Option<Timestamp>> {
        let s = self.state();
        Ok(s.deliveries
            .values()
            .filter(|d| d.mode.is_pushed() && d.state == DeliveryState::Pending)
            .map(|d| d.next_attempt_at)
            .filter(|due| *due > after)
            .min())
    }

    async fn deliveries_of_run(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<(Delivery, Vec<DeliveryAttempt>)>> {
        let s = self.state();
        let mut deliveries: Vec<Delivery> = s
            .deliveries
            .values()
            .filter(|d| &d.org_id == org && &d.run_id == run)
            .cloned()
            .collect();
        deliveries.sort_by_key(|d| (d.created_at, d.id.clone()));
        Ok(deliveries
            .into_iter()
            .map(|d| {
                let mut attempts: Vec<DeliveryAttempt> = s
                    .attempts
                    .iter()
                    .filter(|a| a.delivery_id == d.id)
                    .cloned()
                    .collect();
                attempts.sort_by_key(|a| a.number);
                (d, attempts)
            })
            .collect())
    }

    async fn redeliver(&self, org: &OrgId, run: &RunId, now: Timestamp) -> StoreResult<bool> {
        let mut s = self.state();
        let latest = s
            .deliveries
            .values()
            .filter(|d| {
                &d.org_id == org && &d.run_id == run && d.mode != DeliveryMode::ApprovalNotification
            })
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
            .map(|d| d.id.clone());
        let Some(d) = latest.and_then(|id| s.deliveries.get_mut(&id)) else {
            return Ok(false);
        };
        d.state = DeliveryState::Pending;
        d.next_attempt_at = now;
        d.lease_owner = None;
        d.lease_until = None;
        d.updated_at = now;
        Ok(true)
    }

    async fn claim_agent_deliveries(
        &self,
        org: &OrgId,
        claim: &AgentClaim<'_>,
    ) -> StoreResult<Vec<Delivery>> {
        let mut s = self.state();
        let excluded: Vec<RunId> = s
            .runs
            .values()
            .filter(|r| &r.org_id == org && claim.exclude_actions.contains(&r.action.identifier))
            .map(|r| r.id.clone())
            .collect();
        Ok(claim_matching(
            &mut s,
            claim.owner,
            claim.now,
            claim.visibility_ms,
            claim.limit,
            true,
            |d| {
                d.mode == DeliveryMode::Agent
                    && &d.org_id == org
                    && d.installation_id.as_deref() == claim.installation_id
                    && claim.invocation_type.is_none_or(|kind| {
                        d.request.get("type").and_then(Value::as_str) == Some(kind.as_str())
                    })
                    && !excluded.contains(&d.run_id)
            },
        ))
    }

    async fn ack_agent_deliveries(
        &self,
        org: &OrgId,
        runs: &[RunId],
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut s = self.state();
        let mut acked = 0;
        for d in s.deliveries.values_mut() {
            if &d.org_id == org
                && d.mode == DeliveryMode::Agent
                && d.state == DeliveryState::Pending
                && runs.contains(&d.run_id)
            {
                d.state = DeliveryState::Delivered;
                d.lease_owner = None;
                d.lease_until = None;
                d.updated_at = now;
                acked += 1;
            }
        }
        Ok(acked)
    }

    async fn heartbeat_agent_delivery(
        &self,
        org: &OrgId,
        run: &RunId,
        now: Timestamp,
        extend_ms: i64,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let mut extended = false;
        for d in s.deliveries.values_mut() {
            if &d.org_id == org
                && &d.run_id == run
                && d.mode == DeliveryMode::Agent
                && d.state == DeliveryState::Pending
                && d.lease_until.is_some_and(|until| until > now)
            {
                d.lease_until = Some(now.plus_millis(extend_ms));
                d.updated_at = now;
                extended = true;
            }
        }
        Ok(extended)
    }
}

/// The seed tutorial's two legacy (v1) actions of the `microservice` blueprint, and the
/// `payload.action` its CREATE invocation carries: one copy for every crate's tests.
pub mod seed {
    pub const CREATE_MICROSERVICE: &str = r#"{
        "identifier": "create_microservice",
        "title": "Create Microservice",
        "userInputs": {
            "properties": {
                "name": { "title": "Service name", "type": "string" },
                "region": { "title": "Cloud Region", "type": "string" }
            }
        },
        "invocationMethod": { "url": "https://getport.io", "agent": false, "type": "WEBHOOK" },
        "trigger": "CREATE",
        "description": "Create new microservice"
    }"#;

    pub const DEPLOY_MICROSERVICE: &str = r#"{
        "identifier": "deploy_microservice",
        "title": "Deploy Microservice",
        "userInputs": {
            "properties": {
                "environment": { "title": "Environment", "type": "string" }
            }
        },
        "invocationMethod": { "url": "https://getport.io", "agent": false, "type": "WEBHOOK" },
        "trigger": "DAY-2",
        "description": "Deploy the microservice in a specified environment"
    }"#;

    /// The seed's `payload.action` of the CREATE invocation.
    pub const CREATE_PAYLOAD_ACTION: &str = r#"{
        "id": "action_ed2B0O9CbEYkuqvN",
        "identifier": "create_microservice",
        "title": "Create Microservice",
        "userInputs": {
            "properties": {
                "name": { "title": "Service name", "type": "string" },
                "region": { "title": "Cloud Region", "type": "string" }
            }
        },
        "invocationMethod": { "url": "https://getport.io", "agent": false, "type": "WEBHOOK" },
        "trigger": "CREATE",
        "description": "Create new microservice",
        "blueprint": "microservice",
        "createdAt": "2022-12-07T09:48:28.659Z",
        "createdBy": "auth0|638879fa62c686d381b36ecb",
        "updatedAt": "2022-12-07T09:48:28.659Z",
        "updatedBy": "auth0|638879fa62c686d381b36ecb"
    }"#;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RunId;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = FixedClock::at_default();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        assert_eq!(clock.advance(1500), t0.plus_millis(1500));
        clock.set(t0);
        assert_eq!(clock.now(), t0);
    }

    #[test]
    fn test_ids_are_deterministic_and_ordered() {
        let clock = Arc::new(FixedClock::at_default());
        let a = test_ids(clock.clone());
        let b = test_ids(clock.clone());
        let first: Vec<RunId> = (0..100).map(|_| a.next()).collect();
        let again: Vec<RunId> = (0..100).map(|_| b.next()).collect();
        assert_eq!(first, again);
        assert!(first.windows(2).all(|w| w[0] < w[1]));
        clock.advance(1);
        let later: RunId = a.next();
        assert!(later > first[99]);
    }
}
