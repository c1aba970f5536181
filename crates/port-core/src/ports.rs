//! Ports: the traits the domain needs from the outside world. Adapters implement them
//! (`port-store` for storage, `port-server` for the clock, ids and notifications);
//! [`crate::testing`] has in-memory fakes of each.
//!
//! Every storage method that reads or writes organization data takes the [`OrgId`]
//! and must filter by it; the only cross-organization methods are the ones the
//! delivery worker and authentication need, and they say so.
//!
//! With the `testing` feature every trait here has a `mockall` mock (`Mock…`). `automock`
//! needs the lifetimes of references in generic positions (`Option<&…>`, `…<'_>`)
//! named, so the methods that take one name every lifetime of their arguments up to
//! it, in order, `self`'s first: `async_trait` matches an implementation's elided
//! lifetimes to the trait's by position, so implementations elide them all, as usual.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::access::{
    ActionPermissions, AuditEntry, AuditFilter, Email, PasswordHash, Session, Team, TeamName, User,
};
use crate::action::{Action, InvocationKind};
use crate::catalog::{AffectedEntity, Blueprint, Entity};
use crate::claim::ClaimLimits;
use crate::error::StoreError;
use crate::event::ChangeEvent;
use crate::id::{
    ActionIdentifier, BlueprintIdentifier, DeliveryId, EntityIdentifier, IntegrationIdentifier,
    OrgId, RunId, time_ordered_suffix,
};
use crate::integration::Integration;
use crate::run::{Run, RunSource, RunStatus};
use crate::run_log::{NewRunLog, RunLog};
use crate::secret::{SecretName, SecretValue};
use crate::time::Timestamp;

pub type StoreResult<T> = Result<T, StoreError>;

/// The source of "now".
#[cfg_attr(feature = "testing", mockall::automock)]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The source of randomness for ids, IVs and nonces: 8 random bytes per call, from a
/// cryptographically secure generator in production.
#[cfg_attr(feature = "testing", mockall::automock)]
pub trait Entropy: Send + Sync + 'static {
    fn random_bytes(&self) -> [u8; 8];

    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.random_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Generates time-ordered ids from a clock and an entropy source.
#[derive(Clone)]
pub struct IdGenerator {
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl IdGenerator {
    pub fn new(clock: Arc<dyn Clock>, entropy: Arc<dyn Entropy>) -> Self {
        Self { clock, entropy }
    }

    /// A fresh 16-character suffix.
    pub fn suffix(&self) -> String {
        let ms = u64::try_from(self.clock.now().unix_millis()).unwrap_or(0);
        time_ordered_suffix(ms, self.entropy.random_bytes())
    }

    /// Fills `dest` with random bytes from the same source (IVs and nonces).
    pub fn fill_random(&self, dest: &mut [u8]) {
        self.entropy.fill(dest);
    }

    /// A fresh id of any generated kind, e.g. `ids.next::<RunId>()`.
    pub fn next<T: GeneratedId>(&self) -> T {
        T::from_generated_suffix(&self.suffix())
    }
}

impl fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdGenerator")
    }
}

/// Implemented by generated id newtypes so [`IdGenerator::next`] can build them.
pub trait GeneratedId: Sized {
    fn from_generated_suffix(suffix: &str) -> Self;
}

macro_rules! impl_generated {
    ($($t:ty),*) => {$(
        impl GeneratedId for $t {
            fn from_generated_suffix(suffix: &str) -> Self {
                // Suffixes from `time_ordered_suffix` are always 16 alphanumerics.
                <$t>::from_suffix(suffix).expect("generated suffixes are valid")
            }
        }
    )*};
}
impl_generated!(
    RunId,
    crate::id::LogId,
    crate::id::ActionId,
    OrgId,
    crate::id::GeneratedEntityId,
    DeliveryId
);

/// A client secret. It signs webhooks, so it never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only to sign, verify or hand it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: Timestamp,
}

/// A client id and secret pair belonging to an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub org_id: OrgId,
    pub client_id: String,
    pub client_secret: ClientSecret,
    pub created_at: Timestamp,
    /// The person a personal credential belongs to; `None` for an organization
    /// (machine) credential. A personal credential acts as its user, with their role
    /// and teams, and goes when the user does.
    pub user: Option<Email>,
}

/// An organization secret as the API shows it: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSecret {
    pub org_id: OrgId,
    pub name: SecretName,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Organization secrets. Values go in and come out only through [`SecretValue`]; an
/// adapter keeps them sealed at rest.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Fails with [`StoreError::AlreadyExists`] when the name is taken.
    async fn create_secret(&self, secret: &OrgSecret, value: &SecretValue) -> StoreResult<()>;
    /// Replaces the value and/or the description (the present ones) and sets
    /// `updated_at`; `None` when the secret does not exist.
    async fn update_secret<'s, 'o, 'n, 'v, 'd>(
        &'s self,
        org: &'o OrgId,
        name: &'n SecretName,
        value: Option<&'v SecretValue>,
        description: Option<&'d str>,
        at: Timestamp,
    ) -> StoreResult<Option<OrgSecret>>;
    async fn get_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<Option<OrgSecret>>;
    /// Sorted by name.
    async fn list_secrets(&self, org: &OrgId) -> StoreResult<Vec<OrgSecret>>;
    async fn delete_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<bool>;
    /// Every secret's value, for rendering an invocation as it is sent.
    async fn secret_values(&self, org: &OrgId) -> StoreResult<Vec<(SecretName, SecretValue)>>;
}

#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()>;
    async fn get_organization(&self, org: &OrgId) -> StoreResult<Option<Organization>>;
    async fn add_credential(&self, credential: &Credential) -> StoreResult<()>;
    /// Cross-organization by nature: authentication starts from a client id.
    async fn find_credential(&self, client_id: &str) -> StoreResult<Option<Credential>>;
    /// The organization's credentials, personal ones included, oldest first; the first
    /// organization credential (`user: None`) signs webhooks.
    async fn credentials(&self, org: &OrgId) -> StoreResult<Vec<Credential>>;
    async fn count_credentials(&self) -> StoreResult<u64>;
    /// Deletes one of the organization's credentials; false when it has none by that id.
    async fn delete_credential(&self, org: &OrgId, client_id: &str) -> StoreResult<bool>;
    /// The organization's settings (`PATCH /v1/organization`), `{}` until set; `None`
    /// when the organization does not exist.
    async fn organization_settings(&self, org: &OrgId) -> StoreResult<Option<Map<String, Value>>>;
    /// Renames the organization and/or replaces its settings (the present ones);
    /// false when it does not exist.
    async fn update_organization<'s, 'o, 'n, 't>(
        &'s self,
        org: &'o OrgId,
        name: Option<&'n str>,
        settings: Option<&'t Map<String, Value>>,
    ) -> StoreResult<bool>;
}

/// Ocean's integrations, one organization's at a time.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Fails with [`StoreError::AlreadyExists`] when the identifier is taken.
    async fn create_integration(&self, integration: &Integration) -> StoreResult<()>;
    async fn get_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<Option<Integration>>;
    /// Replaces an existing integration's document; false when it does not exist.
    async fn update_integration(&self, integration: &Integration) -> StoreResult<bool>;
    async fn delete_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<bool>;
    async fn count_integrations(&self, org: &OrgId) -> StoreResult<u64>;
}

#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait BlueprintStore: Send + Sync {
    /// Fails with [`StoreError::AlreadyExists`] when the identifier is taken.
    async fn create_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()>;
    /// Replaces an existing blueprint.
    async fn update_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()>;
    async fn get_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
    ) -> StoreResult<Option<Blueprint>>;
    async fn list_blueprints(&self, org: &OrgId) -> StoreResult<Vec<Blueprint>>;
    /// Deletes the blueprint with its entities (and their timers) and its blueprint-bound
    /// actions and, atomically, records one change event per deleted entity (`DELETE` by
    /// `by` at `at`, depth 0), in identifier order.
    async fn delete_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
        by: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
}

/// How an entity write should treat an existing entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityWriteMode {
    /// Fail with [`StoreError::AlreadyExists`] if it exists.
    CreateOnly,
    /// Create or replace.
    Upsert,
}

#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait EntityStore: Send + Sync {
    /// Writes an entity and, atomically with it, the record binding it to a run and the
    /// change event ([`crate::event::NewChangeEvent::of_entity`] of the stored entity and this one,
    /// at the depth of the bound run, 0 without one; none when the content is the same).
    /// `timers` are the identifiers of the blueprint's timer properties: the store arms
    /// and disarms the entity's timers as [`crate::timer::changes`] says, comparing the
    /// entity it replaces, in the same transaction.
    /// Returns whether the entity was created (as opposed to replaced).
    async fn put_entity<'s, 'e, 'a>(
        &'s self,
        entity: &'e Entity,
        mode: EntityWriteMode,
        affected: Option<&'a AffectedEntity>,
        timers: &[String],
    ) -> StoreResult<bool>;
    async fn get_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
    ) -> StoreResult<Option<Entity>>;
    async fn list_entities(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
    ) -> StoreResult<Vec<Entity>>;
    /// Deletes an entity (and its timers) and, atomically, records the binding to a run
    /// and the change event (`DELETE` by `by` at `at`, at the depth of the bound run), when it existed.
    async fn delete_entity<'s, 'o, 'b, 'i, 'd, 'e>(
        &'s self,
        org: &'o OrgId,
        blueprint: &'b BlueprintIdentifier,
        id: &'i EntityIdentifier,
        deletion: &'d EntityDeletion<'e>,
    ) -> StoreResult<bool>;
    /// Entity changes bound to a run, oldest first.
    async fn affected_entities(&self, org: &OrgId, run: &RunId)
    -> StoreResult<Vec<AffectedEntity>>;
    /// One page of the organization's entities in `(blueprint, identifier)` order (byte
    /// order, as Rust compares strings): at most `scan.limit` of them, after
    /// `scan.after`, within `scan.blueprints` and `scan.identifiers` when given. Searches
    /// read the catalog this way, a bounded page at a time, over the primary key.
    async fn scan_entities(&self, org: &OrgId, scan: &EntityScan) -> StoreResult<ScannedEntities>;
}

/// Who deletes an entity, when, and for which run (the record binding it to the run).
#[derive(Debug, Clone, Copy)]
pub struct EntityDeletion<'a> {
    pub by: &'a str,
    pub at: Timestamp,
    pub affected: Option<&'a AffectedEntity>,
}

/// Where an entity sits in a scan of the catalog: scans go in this key's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey {
    pub blueprint: BlueprintIdentifier,
    pub identifier: EntityIdentifier,
}

impl EntityKey {
    pub fn of(entity: &Entity) -> Self {
        Self {
            blueprint: entity.blueprint.clone(),
            identifier: entity.identifier.clone(),
        }
    }
}

/// A page request of [`EntityStore::scan_entities`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityScan {
    /// Only entities of these blueprints (`None`: every blueprint; empty: none).
    pub blueprints: Option<BTreeSet<BlueprintIdentifier>>,
    /// Only entities with these identifiers (`None`: any; empty: none).
    pub identifiers: Option<BTreeSet<EntityIdentifier>>,
    /// Start strictly after this key.
    pub after: Option<EntityKey>,
    /// The most entities to return.
    pub limit: usize,
}

/// A page of a scan, with what reading it cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScannedEntities {
    pub entities: Vec<Entity>,
    /// The size of each entity's stored document, in the same order.
    pub sizes: Vec<u64>,
    /// The size of the stored documents read (their JSON text) in all, what a search
    /// budgets.
    pub bytes: u64,
}

#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait ActionStore: Send + Sync {
    /// Fails with [`StoreError::AlreadyExists`] when the identifier is taken.
    async fn create_action(&self, org: &OrgId, action: &Action) -> StoreResult<()>;
    async fn update_action(&self, org: &OrgId, action: &Action) -> StoreResult<()>;
    async fn get_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<Option<Action>>;
    async fn list_actions(&self, org: &OrgId) -> StoreResult<Vec<Action>>;
    async fn delete_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<bool>;
}

/// Filters of `GET /v1/actions/runs`; all present ones must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFilter {
    pub entity: Option<String>,
    pub blueprint: Option<String>,
    pub action: Option<String>,
    pub active: Option<bool>,
    pub status: Option<RunStatus>,
    /// Matches `createdBy` (users are identified by id or e-mail alike here).
    pub user: Option<String>,
    pub sources: Vec<RunSource>,
    pub external_run_id: Option<String>,
    /// Only runs with ids lower than this one (the previous page's last id).
    pub before: Option<RunId>,
    pub limit: u32,
}

/// The outcome of storing a new run under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRunOutcome {
    Created,
    /// The key was already used for this run; nothing was written.
    Existing(RunId),
}

#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a new run, its first delivery (when it starts `IN_PROGRESS`), its
    /// idempotency key and its `CREATE` change event, in one transaction.
    async fn create_run<'s, 'r, 'd, 'k>(
        &'s self,
        run: &'r Run,
        delivery: Option<&'d NewDelivery>,
        idempotency_key: Option<&'k IdempotencyKey>,
    ) -> StoreResult<CreateRunOutcome>;
    async fn get_run(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<Run>>;
    /// The stored run's version, without reading the run: how live views (log streams)
    /// learn cheaply whether a run changed elsewhere.
    async fn run_version(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<u64>>;
    /// Newest first.
    async fn list_runs(&self, org: &OrgId, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    /// Stores a transition in one transaction: the run (unless unchanged) with its
    /// `UPDATE` change event, its new log lines and a delivery. Fails with [`StoreError::Conflict`] when the stored run's
    /// version is no longer `expected_version`, so no update is ever lost.
    async fn save_transition<'s, 'r, 'l, 'd>(
        &'s self,
        run: &'r Run,
        expected_version: u64,
        logs: &'l [NewRunLog],
        delivery: Option<&'d NewDelivery>,
    ) -> StoreResult<Vec<RunLog>>;
    /// Log lines in sequence order, `offset` lines skipped.
    async fn list_logs(
        &self,
        org: &OrgId,
        run: &RunId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>>;
    /// Log lines with a sequence number above `after_seq`, for streaming.
    async fn logs_after(
        &self,
        org: &OrgId,
        run: &RunId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>>;
    /// Cross-organization: `IN_PROGRESS` runs created before `created_before`, for
    /// the reaper of stale runs.
    async fn in_progress_runs_created_before(
        &self,
        created_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Run>>;
}

/// An idempotency key of an execute request, kept at least 24 hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub org_id: OrgId,
    pub key: String,
    pub created_at: Timestamp,
}

/// How a run's invocation reaches its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// portd sends an HTTP request.
    Webhook,
    /// A pull-mode runner claims it (`agent: true`).
    Agent,
    /// portd upserts an entity itself from the evaluated `mapping` (Port's
    /// `UPSERT_ENTITY`), bound to the run, which ends with the outcome.
    UpsertEntity,
    /// portd tells the run's approvers that it waits for them (an action's
    /// `approvalNotification` of type webhook); its outcome never changes the run.
    ApprovalNotification,
}

impl DeliveryMode {
    /// The modes the delivery worker carries itself (claims, attempts, retries);
    /// the others wait for a runner's claim.
    pub const PUSHED: [Self; 3] = [
        Self::Webhook,
        Self::UpsertEntity,
        Self::ApprovalNotification,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "WEBHOOK",
            Self::Agent => "AGENT",
            Self::UpsertEntity => "UPSERT_ENTITY",
            Self::ApprovalNotification => "APPROVAL_NOTIFICATION",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "WEBHOOK" => Some(Self::Webhook),
            "AGENT" => Some(Self::Agent),
            "UPSERT_ENTITY" => Some(Self::UpsertEntity),
            "APPROVAL_NOTIFICATION" => Some(Self::ApprovalNotification),
            _ => None,
        }
    }

    /// Whether the delivery worker carries this mode's deliveries.
    pub const fn is_pushed(self) -> bool {
        !matches!(self, Self::Agent)
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or, in agent mode, for a claim or an ack).
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "DELIVERED" => Some(Self::Delivered),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A delivery written to the outbox with its run's transition to `IN_PROGRESS`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Sent as `webhook-id`: the same on every attempt, so receivers can deduplicate.
    pub id: DeliveryId,
    pub org_id: OrgId,
    pub run_id: RunId,
    pub mode: DeliveryMode,
    /// The evaluated invocation method: `{type, url, method, headers, body, synchronized, …}`.
    pub request: Value,
    pub synchronized: bool,
    /// For agent deliveries: which runner installation may claim it (None: any).
    pub installation_id: Option<String>,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub org_id: OrgId,
    pub run_id: RunId,
    pub mode: DeliveryMode,
    pub request: Value,
    pub synchronized: bool,
    pub installation_id: Option<String>,
    pub state: DeliveryState,
    /// Attempts started so far (webhook) or times claimed (agent).
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    /// Who holds the lease and until when; an expired lease may be taken over.
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which of an organization's pending agent deliveries one claim takes, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct AgentClaim<'a> {
    /// Who holds the claims (a runner's client id).
    pub owner: &'a str,
    /// Only deliveries bound to this installation; `None`: only unbound ones.
    pub installation_id: Option<&'a str>,
    /// Only deliveries whose evaluated invocation has this `type` (Port's agent takes
    /// `WEBHOOK` runs only); `None`: any.
    pub invocation_type: Option<InvocationKind>,
    /// Runs of these actions are left for later claims (Ocean's `exclude`).
    pub exclude_actions: &'a [ActionIdentifier],
    pub now: Timestamp,
    pub visibility_ms: i64,
    pub limit: u32,
}

/// One attempt at sending a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub delivery_id: DeliveryId,
    pub org_id: OrgId,
    pub run_id: RunId,
    pub number: u32,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The start of the answer's body, for people debugging their receiver.
    pub response_excerpt: Option<String>,
    pub duration_ms: u64,
}

#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Cross-organization (the delivery worker serves every organization): leases
    /// pending webhook deliveries that are due at `now` and not leased by someone else
    /// (or whose lease expired), until `now + lease_ms`, as many as `limits` lets in:
    /// fair across organizations and within each organization's and destination's room
    /// ([`crate::claim::plan`] over each organization's oldest
    /// [`ClaimLimits::lookahead`] due deliveries). Returned in the order chosen. Two
    /// claimers never hold one delivery.
    async fn claim_due_webhooks(
        &self,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<Delivery>>;
    /// Records an attempt (and counts it) while the lease is held.
    async fn record_attempt(&self, attempt: &DeliveryAttempt) -> StoreResult<()>;
    /// Releases the lease and schedules the next attempt.
    async fn reschedule(
        &self,
        id: &DeliveryId,
        owner: &str,
        next_attempt_at: Timestamp,
    ) -> StoreResult<()>;
    /// Ends the delivery (`Delivered` or `Failed`) and releases the lease.
    async fn finish(
        &self,
        id: &DeliveryId,
        state: DeliveryState,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Records an attempt and ends the delivery with it: what
    /// [`DeliveryStore::record_attempt`] then [`DeliveryStore::finish`] do, which a store
    /// may do in one write (the worker's common case: an answered delivery).
    async fn record_final_attempt(
        &self,
        attempt: &DeliveryAttempt,
        state: DeliveryState,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.record_attempt(attempt).await?;
        self.finish(&attempt.delivery_id, state, now).await
    }
    /// Cross-organization: drops every lease `owner` holds on pending webhook
    /// deliveries, so they are claimable again at once (or at their `next_attempt_at`, if
    /// later); returns how many were released. For a worker that restarts under the same
    /// stable id after a crash: what its dead predecessor was sending is sent again
    /// without waiting for the leases to expire. Never call it while another live worker
    /// uses `owner`.
    async fn release_leases(&self, owner: &str, now: Timestamp) -> StoreResult<u64>;
    /// The earliest `next_attempt_at` after `after` of a pending webhook delivery, so
    /// the worker can sleep exactly until then. Deliveries due already are not asked
    /// about: the worker just claimed what it could of them, and the rest wait for a
    /// slot (a finished attempt wakes it), another worker, or an expired lease (its
    /// safety poll). One index probe, however long the backlog.
    async fn next_due_after(&self, after: Timestamp) -> StoreResult<Option<Timestamp>>;
    /// The organization's deliveries of a run with their attempts, oldest first.
    async fn deliveries_of_run(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<(Delivery, Vec<DeliveryAttempt>)>>;
    /// Makes the run's latest delivery of its invocation (never an approval notice)
    /// pending and due at `now` again (manual redelivery).
    async fn redeliver(&self, org: &OrgId, run: &RunId, now: Timestamp) -> StoreResult<bool>;

    /// Agent mode: leases up to `claim.limit` of the organization's pending agent
    /// deliveries that `claim` selects, oldest due first, for `claim.visibility_ms`; an
    /// unacknowledged claim is served again once it expires.
    async fn claim_agent_deliveries<'s, 'o, 'c, 'a>(
        &'s self,
        org: &'o OrgId,
        claim: &'c AgentClaim<'a>,
    ) -> StoreResult<Vec<Delivery>>;
    /// Agent mode: marks the runs' agent deliveries delivered; returns how many were pending.
    async fn ack_agent_deliveries(
        &self,
        org: &OrgId,
        runs: &[RunId],
        now: Timestamp,
    ) -> StoreResult<u64>;
    /// Agent mode: extends a live claim of the run's delivery to `now + extend_ms`.
    async fn heartbeat_agent_delivery(
        &self,
        org: &OrgId,
        run: &RunId,
        now: Timestamp,
        extend_ms: i64,
    ) -> StoreResult<bool>;
}

/// The event outbox: the change events the other ports record with their writes,
/// read by whoever reacts to them (automations), at least once, in `seq` order within
/// a claim. Cross-organization, like the delivery worker's claims: one worker serves
/// every organization, and each event names its own.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Leases up to `limit` events, oldest first, that no one else holds a lease on (or
    /// whose lease ended before `now`) to `owner` until `lease_until`, at most
    /// `per_org` of them of any one organization: each organization's oldest, so one
    /// organization's backlog never keeps another's events waiting behind it. Events
    /// `owner` already holds are given again: a worker restarted under its stable id
    /// takes back at once what it held when it died.
    async fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        per_org: u32,
    ) -> StoreResult<Vec<ChangeEvent>>;
    /// Removes handled events, those of `seqs` that `owner` still holds; returns how many.
    async fn complete_events(&self, owner: &str, seqs: &[u64]) -> StoreResult<u64>;
    /// Records the expiry of up to `limit` timers due at `now` as
    /// [`crate::event::NewChangeEvent::timer_expired`] events of their entity as it is,
    /// removing each from the schedule in the transaction that records its event, so
    /// each fires once however many callers race; returns how many fired. The schedule
    /// is what [`EntityStore::put_entity`] writes from [`crate::timer::changes`].
    /// Fair: each organization with timers gets an equal share of `limit` (its earliest
    /// due), and the earliest of those fire, so one organization's mass expiry never
    /// holds another's timers back; a batch may thus fire fewer than `limit` while
    /// timers are due.
    async fn fire_due_timers(&self, now: Timestamp, limit: u32) -> StoreResult<u32>;
    /// When the earliest scheduled timer is due, if any is.
    async fn next_timer(&self) -> StoreResult<Option<Timestamp>>;
    /// How many events wait to be handled.
    async fn pending_events(&self) -> StoreResult<u64>;
}

/// People and teams of each organization, their passwords and browser sessions.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Fails with [`StoreError::AlreadyExists`] when the address is taken in the
    /// organization, and with [`StoreError::InvalidInput`] when a team it names does not
    /// exist. Memberships are written from `user.teams`.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// The user with their teams (sorted).
    async fn get_user(&self, org: &OrgId, email: &Email) -> StoreResult<Option<User>>;
    /// The organization's users, by address.
    async fn list_users(&self, org: &OrgId) -> StoreResult<Vec<User>>;
    /// Replaces names, role, status, `updated_at` and the memberships (from
    /// `user.teams`); false when the user does not exist; [`StoreError::InvalidInput`] when
    /// a team does not exist.
    async fn update_user(&self, user: &User) -> StoreResult<bool>;
    /// Deletes the user with their memberships, password, sessions and personal
    /// credentials, atomically; false when there was none.
    async fn delete_user(&self, org: &OrgId, email: &Email) -> StoreResult<bool>;
    /// Cross-organization by nature (sign-in starts from an address): every user with
    /// this address, with their password hash if they have one; oldest first.
    async fn users_by_email(&self, email: &Email)
    -> StoreResult<Vec<(User, Option<PasswordHash>)>>;
    /// Sets (or, with `None`, removes) a user's password; false when the user does
    /// not exist.
    async fn set_password<'s, 'o, 'e, 'h>(
        &'s self,
        org: &'o OrgId,
        email: &'e Email,
        hash: Option<&'h PasswordHash>,
    ) -> StoreResult<bool>;
    /// Fails with [`StoreError::AlreadyExists`] when the name is taken, and with
    /// [`StoreError::InvalidInput`] when a member is not a user of the organization.
    async fn create_team(&self, team: &Team) -> StoreResult<()>;
    async fn get_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<Option<Team>>;
    /// The organization's teams, by name.
    async fn list_teams(&self, org: &OrgId) -> StoreResult<Vec<Team>>;
    /// Replaces the team called `name` with `team` (which may carry a new name: a
    /// rename keeps its members and grants nothing else), members included; false
    /// when there is none; [`StoreError::AlreadyExists`] when the new name is taken;
    /// [`StoreError::InvalidInput`] when a member is not a user.
    async fn update_team(&self, name: &TeamName, team: &Team) -> StoreResult<bool>;
    /// Deletes the team and its memberships; false when there was none.
    async fn delete_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<bool>;
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// Cross-organization by nature: a cookie names no organization. Expired
    /// sessions are never returned.
    async fn get_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool>;
    /// How many users exist in all organizations (first-run checks).
    async fn count_users(&self) -> StoreResult<u64>;
}

/// Action permissions and the audit trail.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// The permissions set for an action; `None` until set (the services then use
    /// [`ActionPermissions::default`]). Deleting an action deletes them.
    async fn get_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
    ) -> StoreResult<Option<ActionPermissions>>;
    /// Sets an action's permissions and records `audit` in the same transaction;
    /// false when the action does not exist.
    async fn put_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
        permissions: &ActionPermissions,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// Appends to the trail (its `seq` is assigned by the store).
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The organization's trail matching the filter, newest first, at most
    /// `filter.limit` entries.
    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
}

/// Every storage port at once; what the services hold.
pub trait Store:
    OrgStore
    + BlueprintStore
    + EntityStore
    + ActionStore
    + RunStore
    + DeliveryStore
    + IntegrationStore
    + SecretStore
    + EventStore
    + DirectoryStore
    + AccessStore
{
}

impl<
    T: OrgStore
        + BlueprintStore
        + EntityStore
        + ActionStore
        + RunStore
        + DeliveryStore
        + IntegrationStore
        + SecretStore
        + EventStore
        + DirectoryStore
        + AccessStore,
> Store for T
{
}

/// Something happened that in-process listeners (the delivery worker, log streams)
/// may want to know about without polling.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A delivery became due.
    DeliveryReady,
    /// A run changed or got log lines, without saying how: listeners that need to know
    /// read the store.
    RunChanged { org: OrgId, run: RunId },
    /// A run changed or got log lines, with what was stored, so that live views need
    /// not read the run again (the services send this one).
    RunUpdated(Arc<RunUpdate>),
}

impl Notice {
    /// The run a run notice is about.
    pub fn run(&self) -> Option<(&OrgId, &RunId)> {
        match self {
            Self::DeliveryReady => None,
            Self::RunChanged { org, run } => Some((org, run)),
            Self::RunUpdated(update) => Some((&update.org, &update.run_id)),
        }
    }
}

/// What one change to a run stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    pub org: OrgId,
    pub run_id: RunId,
    /// The run as stored, when the change was to the run itself (not only new lines).
    pub run: Option<Run>,
    /// The log lines stored, in sequence order.
    pub logs: Vec<RunLog>,
}

/// Fire-and-forget notifications; listeners that miss one catch up by polling.
#[cfg_attr(feature = "testing", mockall::automock)]
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, notice: Notice);
}

/// A notifier for callers that need none.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _notice: Notice) {}
}

/// Renders an action's templates for a run. portd renders them in a sandboxed process
/// with a wall clock and a memory limit (`port-sandbox`); [`InProcessTemplates`]
/// renders them on the caller's thread. Either way, a template that exceeds a budget is
/// a [`TemplateError::Limit`](crate::template::TemplateError::Limit), never a crash.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait TemplateEngine: Send + Sync + 'static {
    /// Renders `template` against `context` for an organization (engines may use it to
    /// share their capacity fairly between organizations).
    async fn render(
        &self,
        org: &OrgId,
        template: &Value,
        context: &Value,
    ) -> Result<Value, crate::template::TemplateError>;

    /// The largest evaluated invocation, in bytes of JSON.
    fn max_output_bytes(&self) -> usize;
}

/// Renders templates on the calling thread within a [`Budget`](crate::template::Budget):
/// steps, value depth, recursion and output are bounded, time and memory only through
/// them. For tests and library use; a server facing tenants uses a sandbox.
#[derive(Debug, Clone, Default)]
pub struct InProcessTemplates {
    pub budget: crate::template::Budget,
}

#[async_trait]
impl TemplateEngine for InProcessTemplates {
    async fn render(
        &self,
        _org: &OrgId,
        template: &Value,
        context: &Value,
    ) -> Result<Value, crate::template::TemplateError> {
        crate::template::render_within(template, context, &self.budget)
    }

    fn max_output_bytes(&self) -> usize {
        self.budget.output_bytes
    }
}
