//! Tests about calls: what the services ask of their ports, not only what ends up stored.
//! They use the `mockall` mocks of the ports (`Mock…`, feature `testing`) and a store
//! composed of the in-memory fake with mocks in front of the calls under test.
//!
//! The composed store shows its run writes to [`MockRunWrites`], a mock of just the
//! calls these tests are about, which can fail a write or let it through to the
//! in-memory store (a `MockRunStore` would have to answer every run call itself).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::executor::block_on;
use serde_json::{Map, Value, json};

use port_core::ErrorKind;
use port_core::Timestamp;
use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::catalog::{AffectedEntity, Blueprint, Entity, Stamp};
use port_core::claim::ClaimLimits;
use port_core::error::StoreError;
use port_core::event::ChangeEvent;
use port_core::id::{
    ActionIdentifier, BlueprintIdentifier, DeliveryId, EntityIdentifier, IntegrationIdentifier,
    OrgId, RunId,
};
use port_core::integration::Integration;

use port_core::access::{
    ActionPermissions, AuditEntry, AuditFilter, Email, PasswordHash, Session, Team, TeamName, User,
};
use port_core::ports::{
    AccessStore, ActionStore, AgentClaim, BlueprintStore, Clock, CreateRunOutcome, Credential,
    Delivery, DeliveryAttempt, DeliveryState, DeliveryStore, DirectoryStore, EntityDeletion,
    EntityScan, EntityStore, EntityWriteMode, EventStore, IdempotencyKey, InProcessTemplates,
    IntegrationStore, MockEventStore, MockNotifier, NewDelivery, Notice, Notifier, OrgSecret,
    OrgStore, Organization, RunFilter, RunStore, ScannedEntities, SecretStore, StoreResult,
};
use port_core::run::{FinalStatus, Run, RunPatch, RunSource, RunStatus};
use port_core::run_log::{NewRunLog, RunLog};
use port_core::secret::{SecretName, SecretValue};
use port_core::service::{AllowAllDestinations, Caller, ExecuteRequest, Services};
use port_core::testing::{FixedClock, MemoryStore, test_ids};

/// The run writes of the services, as these tests see them: the composed store calls
/// this first, and writes only when it answers `Ok`.
#[mockall::automock]
trait RunWrites: Send {
    /// A new run, with its idempotency key.
    fn create_run(&self, run: &Run, idempotency_key: Option<String>) -> StoreResult<()>;
    /// A run's transition.
    fn save_transition(&self, run: &Run) -> StoreResult<()>;
}

/// The in-memory store, with [`MockRunWrites`] in front of its run writes and, when
/// given, a [`MockEventStore`] in place of its outbox.
struct Composed {
    memory: Arc<MemoryStore>,
    runs: Mutex<MockRunWrites>,
    events: Option<MockEventStore>,
}

impl Composed {
    fn runs(&self) -> MutexGuard<'_, MockRunWrites> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`MockNotifier`] that the test can give new expectations while the services hold it.
#[derive(Default)]
struct Notices(Mutex<MockNotifier>);

impl Notices {
    fn mock(&self) -> MutexGuard<'_, MockNotifier> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Notifier for Notices {
    fn notify(&self, notice: Notice) {
        self.mock().notify(notice);
    }
}

struct World {
    memory: Arc<MemoryStore>,
    store: Arc<Composed>,
    notices: Arc<Notices>,
    services: Services,
    caller: Caller,
}

impl World {
    /// Services over `memory`, its outbox replaced by `events` when given.
    fn over(
        memory: Arc<MemoryStore>,
        clock: Arc<FixedClock>,
        events: Option<MockEventStore>,
    ) -> Self {
        let store = Arc::new(Composed {
            memory: memory.clone(),
            runs: Mutex::new(MockRunWrites::new()),
            events,
        });
        let notices = Arc::new(Notices::default());
        let services = Services::new(
            store.clone(),
            clock.clone(),
            test_ids(clock.clone()),
            notices.clone(),
            Arc::new(AllowAllDestinations),
            Arc::new(InProcessTemplates::default()),
        );
        World {
            memory,
            store,
            notices,
            services,
            caller: Caller::machine(org(), "alice"),
        }
    }

    fn new() -> Self {
        Self::over(
            Arc::new(MemoryStore::new()),
            Arc::new(FixedClock::at_default()),
            None,
        )
    }

    /// Checks every expectation set so far on the run writes and the notifier, and
    /// clears them.
    fn checkpoint(&self) {
        self.store.runs().checkpoint();
        self.notices.mock().checkpoint();
    }

    /// Lets every run write through and every notice go, for set-up steps.
    fn allow_everything(&self) {
        let mut runs = self.store.runs();
        runs.expect_create_run().returning(|_, _| Ok(()));
        runs.expect_save_transition().returning(|_| Ok(()));
        self.notices.mock().expect_notify().return_const(());
    }

    /// The `deploy` action: a webhook, no approval.
    async fn deploy_action(&self) {
        self.services
            .create_action(
                &self.caller,
                &json!({
                    "identifier": "deploy",
                    "title": "Deploy",
                    "trigger": {
                        "type": "self-service",
                        "operation": "CREATE",
                        "userInputs": { "properties": {}, "required": [] },
                    },
                    "invocationMethod": { "type": "WEBHOOK", "url": "http://backend.example/hook" },
                }),
            )
            .await
            .expect("action created");
    }

    async fn stored_runs(&self) -> Vec<Run> {
        let filter = RunFilter {
            limit: 100,
            ..RunFilter::default()
        };
        self.memory
            .list_runs(&org(), &filter)
            .await
            .expect("runs listed")
    }
}

fn org() -> OrgId {
    OrgId::parse("org_BneDtWovPqXaA2VZ").expect("org id")
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("the database is down".into())
}

fn is_run_updated(notice: &Notice, run: &RunId, status: RunStatus) -> bool {
    matches!(
        notice,
        Notice::RunUpdated(update)
            if &update.run_id == run
                && update.run.as_ref().is_some_and(|stored| stored.status() == status)
    )
}

// ---------------------------------------------------------------------------------------
// A failed write never notifies.

#[test]
fn an_execute_whose_run_is_not_stored_notifies_no_one() {
    block_on(async {
        let w = World::new();
        w.deploy_action().await;
        w.store
            .runs()
            .expect_create_run()
            .times(1)
            .returning(|_, _| Err(unavailable()));
        w.notices.mock().expect_notify().never();

        let error = w
            .services
            .execute(&w.caller, "deploy", ExecuteRequest::default())
            .await
            .expect_err("the store refused the run");
        assert_eq!(error.kind, ErrorKind::ServiceUnavailable);
        w.checkpoint();
        assert!(w.stored_runs().await.is_empty(), "nothing was stored");
    });
}

#[test]
fn an_execute_whose_run_is_stored_notifies_its_listeners_once() {
    block_on(async {
        let w = World::new();
        w.deploy_action().await;
        w.store
            .runs()
            .expect_create_run()
            .times(1)
            .withf(|run, key| {
                run.action.identifier.as_str() == "deploy" && key.as_deref() == Some("once")
            })
            .returning(|_, _| Ok(()));
        // The run's listeners hear of the new run once; the delivery worker is woken once
        // for its delivery.
        w.notices
            .mock()
            .expect_notify()
            .times(1)
            .withf(|notice| matches!(notice, Notice::RunUpdated(update) if update.run.is_some()))
            .return_const(());
        w.notices
            .mock()
            .expect_notify()
            .times(1)
            .withf(|notice| *notice == Notice::DeliveryReady)
            .return_const(());

        let run = w
            .services
            .execute(
                &w.caller,
                "deploy",
                ExecuteRequest {
                    idempotency_key: Some("once".into()),
                    ..ExecuteRequest::default()
                },
            )
            .await
            .expect("executed");
        assert_eq!(run.status(), RunStatus::InProgress);
        w.checkpoint();
        assert_eq!(w.stored_runs().await.len(), 1);
    });
}

#[test]
fn a_patch_whose_transition_is_not_stored_notifies_no_one_and_a_stored_one_notifies_once() {
    block_on(async {
        let w = World::new();
        w.deploy_action().await;
        w.allow_everything();
        let run = w
            .services
            .execute(&w.caller, "deploy", ExecuteRequest::default())
            .await
            .expect("executed");
        w.checkpoint();
        let success = || RunPatch {
            status: Some(FinalStatus::Success),
            summary: Some("deployed".into()),
            ..RunPatch::default()
        };

        // The store fails the transition: no one hears of it, and the run is as it was.
        w.store
            .runs()
            .expect_save_transition()
            .times(1)
            .returning(|_| Err(unavailable()));
        w.notices.mock().expect_notify().never();
        let error = w
            .services
            .patch_run(&w.caller, run.id.as_str(), success())
            .await
            .expect_err("the store refused the transition");
        assert_eq!(error.kind, ErrorKind::ServiceUnavailable);
        w.checkpoint();
        let stored = w.memory.get_run(&org(), &run.id).await.expect("read");
        assert_eq!(stored.expect("stored").status(), RunStatus::InProgress);

        // The same patch stored: one notice, carrying the ended run.
        w.store
            .runs()
            .expect_save_transition()
            .times(1)
            .withf(|run| run.status() == RunStatus::Success)
            .returning(|_| Ok(()));
        let id = run.id.clone();
        w.notices
            .mock()
            .expect_notify()
            .times(1)
            .withf(move |notice| is_run_updated(notice, &id, RunStatus::Success))
            .return_const(());
        let patched = w
            .services
            .patch_run(&w.caller, run.id.as_str(), success())
            .await
            .expect("patched");
        assert_eq!(patched.status(), RunStatus::Success);
        w.checkpoint();
    });
}

// ---------------------------------------------------------------------------------------
// An event fires one automation once.

#[test]
fn an_event_fires_the_automation_watching_it_once() {
    block_on(async {
        let memory = Arc::new(MemoryStore::new());
        let clock = Arc::new(FixedClock::at_default());
        let now = clock.now();

        // A published automation watching services, and a service written: one event.
        let automation = Action {
            meta: ActionMeta {
                id: test_ids(clock.clone()).next(),
                created_at: now,
                created_by: "admin".into(),
                updated_at: now,
                updated_by: "admin".into(),
            },
            definition: ActionDefinition::from_v2(&json!({
                "identifier": "on_service_change",
                "title": "React to services",
                "trigger": {
                    "type": "automation",
                    "event": { "type": "ANY_ENTITY_CHANGE", "blueprintIdentifier": "service" },
                },
                "invocationMethod": {
                    "type": "WEBHOOK",
                    "url": "http://backend.example/hook",
                    "body": { "entity": "{{ .event.context.entityIdentifier }}" },
                },
                "publish": true,
            }))
            .expect("a valid automation"),
        };
        memory
            .create_action(&org(), &automation)
            .await
            .expect("automation stored");
        let service = Entity {
            org_id: org(),
            blueprint: BlueprintIdentifier::parse("service").expect("blueprint"),
            identifier: EntityIdentifier::parse("checkout").expect("identifier"),
            title: Some("Checkout".into()),
            icon: None,
            team: None,
            properties: Map::new(),
            relations: Map::new(),
            stamp: Stamp {
                created_at: now,
                created_by: "alice".into(),
                updated_at: now,
                updated_by: "alice".into(),
            },
        };
        memory
            .put_entity(&service, EntityWriteMode::Upsert, None, &[])
            .await
            .expect("entity written");
        let events = memory
            .claim_events("set-up", now, now.plus_millis(60_000), 10, 10)
            .await
            .expect("events read");
        assert_eq!(events.len(), 1, "one change event");
        let seq = events[0].seq;
        let key = format!("automation:{}:on_service_change", events[0].id());

        // The outbox is a mock that gives that event once, and expects it back once.
        let mut outbox = MockEventStore::new();
        outbox
            .expect_claim_events()
            .times(1)
            .withf(|owner, _, _, _, _| owner == "worker-1")
            .return_once(move |_, _, _, _, _| Ok(events));
        outbox
            .expect_complete_events()
            .times(1)
            .withf(move |owner, seqs| owner == "worker-1" && seqs == [seq])
            .returning(|_, seqs| Ok(seqs.len() as u64));
        let w = World::over(memory, clock, Some(outbox));
        w.store
            .runs()
            .expect_create_run()
            .times(1)
            .withf(move |run, idempotency_key| {
                run.source == RunSource::Automation
                    && run.action.identifier.as_str() == "on_service_change"
                    && idempotency_key.as_deref() == Some(key.as_str())
            })
            .returning(|_, _| Ok(()));
        w.notices.mock().expect_notify().return_const(());

        let handled = w
            .services
            .handle_events("worker-1", 100)
            .await
            .expect("events handled");
        assert_eq!((handled.events, handled.runs), (1, 1));
        w.checkpoint();
        assert_eq!(w.stored_runs().await.len(), 1, "one run stored");

        // The outbox mock checks its expectations as it goes.
        let World {
            store, services, ..
        } = w;
        drop(services);
        let composed = Arc::into_inner(store).expect("the services are gone");
        composed.events.expect("an outbox mock").checkpoint();
    });
}

// ---------------------------------------------------------------------------------------
// The composed store: everything else goes to the in-memory fake.

#[async_trait]
impl OrgStore for Composed {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()> {
        self.memory.create_organization(org).await
    }
    async fn get_organization(&self, org: &OrgId) -> StoreResult<Option<Organization>> {
        self.memory.get_organization(org).await
    }
    async fn add_credential(&self, credential: &Credential) -> StoreResult<()> {
        self.memory.add_credential(credential).await
    }
    async fn find_credential(&self, client_id: &str) -> StoreResult<Option<Credential>> {
        self.memory.find_credential(client_id).await
    }
    async fn credentials(&self, org: &OrgId) -> StoreResult<Vec<Credential>> {
        self.memory.credentials(org).await
    }
    async fn count_credentials(&self) -> StoreResult<u64> {
        self.memory.count_credentials().await
    }
    async fn delete_credential(&self, org: &OrgId, client_id: &str) -> StoreResult<bool> {
        self.memory.delete_credential(org, client_id).await
    }
    async fn organization_settings(&self, org: &OrgId) -> StoreResult<Option<Map<String, Value>>> {
        self.memory.organization_settings(org).await
    }
    async fn update_organization(
        &self,
        org: &OrgId,
        name: Option<&str>,
        settings: Option<&Map<String, Value>>,
    ) -> StoreResult<bool> {
        self.memory.update_organization(org, name, settings).await
    }
}

#[async_trait]
impl BlueprintStore for Composed {
    async fn create_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()> {
        self.memory.create_blueprint(blueprint).await
    }
    async fn update_blueprint(&self, blueprint: &Blueprint) -> StoreResult<()> {
        self.memory.update_blueprint(blueprint).await
    }
    async fn get_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
    ) -> StoreResult<Option<Blueprint>> {
        self.memory.get_blueprint(org, id).await
    }
    async fn list_blueprints(&self, org: &OrgId) -> StoreResult<Vec<Blueprint>> {
        self.memory.list_blueprints(org).await
    }
    async fn delete_blueprint(
        &self,
        org: &OrgId,
        id: &BlueprintIdentifier,
        by: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        self.memory.delete_blueprint(org, id, by, at).await
    }
}

#[async_trait]
impl EntityStore for Composed {
    async fn put_entity(
        &self,
        entity: &Entity,
        mode: EntityWriteMode,
        affected: Option<&AffectedEntity>,
        timers: &[String],
    ) -> StoreResult<bool> {
        self.memory.put_entity(entity, mode, affected, timers).await
    }
    async fn get_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
    ) -> StoreResult<Option<Entity>> {
        self.memory.get_entity(org, blueprint, id).await
    }
    async fn list_entities(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
    ) -> StoreResult<Vec<Entity>> {
        self.memory.list_entities(org, blueprint).await
    }
    async fn delete_entity(
        &self,
        org: &OrgId,
        blueprint: &BlueprintIdentifier,
        id: &EntityIdentifier,
        deletion: &EntityDeletion<'_>,
    ) -> StoreResult<bool> {
        self.memory
            .delete_entity(org, blueprint, id, deletion)
            .await
    }
    async fn affected_entities(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<AffectedEntity>> {
        self.memory.affected_entities(org, run).await
    }
    async fn scan_entities(&self, org: &OrgId, scan: &EntityScan) -> StoreResult<ScannedEntities> {
        self.memory.scan_entities(org, scan).await
    }
}

#[async_trait]
impl ActionStore for Composed {
    async fn create_action(&self, org: &OrgId, action: &Action) -> StoreResult<()> {
        self.memory.create_action(org, action).await
    }
    async fn update_action(&self, org: &OrgId, action: &Action) -> StoreResult<()> {
        self.memory.update_action(org, action).await
    }
    async fn get_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<Option<Action>> {
        self.memory.get_action(org, id).await
    }
    async fn list_actions(&self, org: &OrgId) -> StoreResult<Vec<Action>> {
        self.memory.list_actions(org).await
    }
    async fn delete_action(&self, org: &OrgId, id: &ActionIdentifier) -> StoreResult<bool> {
        self.memory.delete_action(org, id).await
    }
}

#[async_trait]
impl RunStore for Composed {
    async fn create_run(
        &self,
        run: &Run,
        delivery: Option<&NewDelivery>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> StoreResult<CreateRunOutcome> {
        self.runs()
            .create_run(run, idempotency_key.map(|key| key.key.clone()))?;
        self.memory.create_run(run, delivery, idempotency_key).await
    }
    async fn get_run(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<Run>> {
        self.memory.get_run(org, id).await
    }
    async fn run_version(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<u64>> {
        self.memory.run_version(org, id).await
    }
    async fn list_runs(&self, org: &OrgId, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        self.memory.list_runs(org, filter).await
    }
    async fn save_transition(
        &self,
        run: &Run,
        expected_version: u64,
        logs: &[NewRunLog],
        delivery: Option<&NewDelivery>,
    ) -> StoreResult<Vec<RunLog>> {
        self.runs().save_transition(run)?;
        self.memory
            .save_transition(run, expected_version, logs, delivery)
            .await
    }
    async fn list_logs(
        &self,
        org: &OrgId,
        run: &RunId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        self.memory.list_logs(org, run, offset, limit).await
    }
    async fn logs_after(
        &self,
        org: &OrgId,
        run: &RunId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        self.memory.logs_after(org, run, after_seq, limit).await
    }
    async fn in_progress_runs_created_before(
        &self,
        created_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        self.memory
            .in_progress_runs_created_before(created_before, limit)
            .await
    }
}

#[async_trait]
impl DeliveryStore for Composed {
    async fn claim_due_webhooks(
        &self,
        owner: &str,
        now: Timestamp,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> StoreResult<Vec<Delivery>> {
        self.memory
            .claim_due_webhooks(owner, now, lease_ms, limits)
            .await
    }
    async fn record_attempt(&self, attempt: &DeliveryAttempt) -> StoreResult<()> {
        self.memory.record_attempt(attempt).await
    }
    async fn reschedule(
        &self,
        id: &DeliveryId,
        owner: &str,
        next_attempt_at: Timestamp,
    ) -> StoreResult<()> {
        self.memory.reschedule(id, owner, next_attempt_at).await
    }
    async fn finish(
        &self,
        id: &DeliveryId,
        state: DeliveryState,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.memory.finish(id, state, now).await
    }
    async fn release_leases(&self, owner: &str, now: Timestamp) -> StoreResult<u64> {
        self.memory.release_leases(owner, now).await
    }
    async fn next_due_after(&self, after: Timestamp) -> StoreResult<Option<Timestamp>> {
        self.memory.next_due_after(after).await
    }
    async fn deliveries_of_run(
        &self,
        org: &OrgId,
        run: &RunId,
    ) -> StoreResult<Vec<(Delivery, Vec<DeliveryAttempt>)>> {
        self.memory.deliveries_of_run(org, run).await
    }
    async fn redeliver(&self, org: &OrgId, run: &RunId, now: Timestamp) -> StoreResult<bool> {
        self.memory.redeliver(org, run, now).await
    }
    async fn claim_agent_deliveries(
        &self,
        org: &OrgId,
        claim: &AgentClaim<'_>,
    ) -> StoreResult<Vec<Delivery>> {
        self.memory.claim_agent_deliveries(org, claim).await
    }
    async fn ack_agent_deliveries(
        &self,
        org: &OrgId,
        runs: &[RunId],
        now: Timestamp,
    ) -> StoreResult<u64> {
        self.memory.ack_agent_deliveries(org, runs, now).await
    }
    async fn heartbeat_agent_delivery(
        &self,
        org: &OrgId,
        run: &RunId,
        now: Timestamp,
        extend_ms: i64,
    ) -> StoreResult<bool> {
        self.memory
            .heartbeat_agent_delivery(org, run, now, extend_ms)
            .await
    }
}

#[async_trait]
impl IntegrationStore for Composed {
    async fn create_integration(&self, integration: &Integration) -> StoreResult<()> {
        self.memory.create_integration(integration).await
    }
    async fn get_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<Option<Integration>> {
        self.memory.get_integration(org, id).await
    }
    async fn update_integration(&self, integration: &Integration) -> StoreResult<bool> {
        self.memory.update_integration(integration).await
    }
    async fn delete_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<bool> {
        self.memory.delete_integration(org, id).await
    }
    async fn count_integrations(&self, org: &OrgId) -> StoreResult<u64> {
        self.memory.count_integrations(org).await
    }
}

#[async_trait]
impl SecretStore for Composed {
    async fn create_secret(&self, secret: &OrgSecret, value: &SecretValue) -> StoreResult<()> {
        self.memory.create_secret(secret, value).await
    }
    async fn update_secret(
        &self,
        org: &OrgId,
        name: &SecretName,
        value: Option<&SecretValue>,
        description: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Option<OrgSecret>> {
        self.memory
            .update_secret(org, name, value, description, at)
            .await
    }
    async fn get_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<Option<OrgSecret>> {
        self.memory.get_secret(org, name).await
    }
    async fn list_secrets(&self, org: &OrgId) -> StoreResult<Vec<OrgSecret>> {
        self.memory.list_secrets(org).await
    }
    async fn delete_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<bool> {
        self.memory.delete_secret(org, name).await
    }
    async fn secret_values(&self, org: &OrgId) -> StoreResult<Vec<(SecretName, SecretValue)>> {
        self.memory.secret_values(org).await
    }
}

#[async_trait]
impl EventStore for Composed {
    async fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        per_org: u32,
    ) -> StoreResult<Vec<ChangeEvent>> {
        match &self.events {
            Some(mock) => {
                mock.claim_events(owner, now, lease_until, limit, per_org)
                    .await
            }
            None => {
                self.memory
                    .claim_events(owner, now, lease_until, limit, per_org)
                    .await
            }
        }
    }
    async fn complete_events(&self, owner: &str, seqs: &[u64]) -> StoreResult<u64> {
        match &self.events {
            Some(mock) => mock.complete_events(owner, seqs).await,
            None => self.memory.complete_events(owner, seqs).await,
        }
    }
    async fn fire_due_timers(&self, now: Timestamp, limit: u32) -> StoreResult<u32> {
        match &self.events {
            Some(mock) => mock.fire_due_timers(now, limit).await,
            None => self.memory.fire_due_timers(now, limit).await,
        }
    }
    async fn next_timer(&self) -> StoreResult<Option<Timestamp>> {
        match &self.events {
            Some(mock) => mock.next_timer().await,
            None => self.memory.next_timer().await,
        }
    }
    async fn pending_events(&self) -> StoreResult<u64> {
        match &self.events {
            Some(mock) => mock.pending_events().await,
            None => self.memory.pending_events().await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Every port trait has a mock, those whose methods take references in generic
// positions (`Option<&…>`, `…<'_>`) included.

#[test]
fn the_entity_store_mock_counts_deletions_with_their_borrowed_arguments() {
    let mut entities = port_core::ports::MockEntityStore::new();
    entities
        .expect_delete_entity()
        .withf(|org_id, blueprint, id, deletion| {
            *org_id == org()
                && blueprint.as_str() == "service"
                && id.as_str() == "checkout"
                && deletion.by == "someone"
                && deletion.affected.is_none()
        })
        .times(2)
        .returning(|_, _, _, _| Ok(true));
    entities.expect_get_entity().never();
    let entities: Arc<dyn EntityStore> = Arc::new(entities);

    let blueprint = BlueprintIdentifier::parse("service").expect("blueprint");
    let id = EntityIdentifier::parse("checkout").expect("identifier");
    for _ in 0..2 {
        let by = String::from("someone");
        let deletion = EntityDeletion {
            by: &by,
            at: Timestamp::from_unix_millis(1_700_000_000_000),
            affected: None,
        };
        let deleted = block_on(entities.delete_entity(&org(), &blueprint, &id, &deletion));
        assert!(deleted.expect("deleted"));
    }
    // Dropping the mock checks `times(2)` and `never()`.
    drop(entities);
}

#[async_trait]
impl DirectoryStore for Composed {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.memory.create_user(user).await
    }
    async fn get_user(&self, org: &OrgId, email: &Email) -> StoreResult<Option<User>> {
        self.memory.get_user(org, email).await
    }
    async fn list_users(&self, org: &OrgId) -> StoreResult<Vec<User>> {
        self.memory.list_users(org).await
    }
    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        self.memory.update_user(user).await
    }
    async fn delete_user(&self, org: &OrgId, email: &Email) -> StoreResult<bool> {
        self.memory.delete_user(org, email).await
    }
    async fn users_by_email(
        &self,
        email: &Email,
    ) -> StoreResult<Vec<(User, Option<PasswordHash>)>> {
        self.memory.users_by_email(email).await
    }
    async fn set_password(
        &self,
        org: &OrgId,
        email: &Email,
        hash: Option<&PasswordHash>,
    ) -> StoreResult<bool> {
        self.memory.set_password(org, email, hash).await
    }
    async fn create_team(&self, team: &Team) -> StoreResult<()> {
        self.memory.create_team(team).await
    }
    async fn get_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<Option<Team>> {
        self.memory.get_team(org, name).await
    }
    async fn list_teams(&self, org: &OrgId) -> StoreResult<Vec<Team>> {
        self.memory.list_teams(org).await
    }
    async fn update_team(&self, name: &TeamName, team: &Team) -> StoreResult<bool> {
        self.memory.update_team(name, team).await
    }
    async fn delete_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<bool> {
        self.memory.delete_team(org, name).await
    }
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        self.memory.create_session(session).await
    }
    async fn get_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        self.memory.get_session(token_hash, now).await
    }
    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        self.memory.delete_session(token_hash).await
    }
    async fn count_users(&self) -> StoreResult<u64> {
        self.memory.count_users().await
    }
}

#[async_trait]
impl AccessStore for Composed {
    async fn get_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
    ) -> StoreResult<Option<ActionPermissions>> {
        self.memory.get_permissions(org, action).await
    }
    async fn put_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
        permissions: &ActionPermissions,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        self.memory
            .put_permissions(org, action, permissions, audit)
            .await
    }
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.memory.record_audit(entry).await
    }
    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        self.memory.list_audit(org, filter).await
    }
}
