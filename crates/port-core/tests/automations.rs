//! Automations against the in-memory store: the events a write records set off the
//! automations watching them, once each, and chains of automations stop at their bound.

use std::sync::Arc;

use futures::executor::block_on;

use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::automation::MAX_CHAIN_DEPTH;
use port_core::catalog::{AffectedEntity, Entity, EntityOperation, Stamp};
use port_core::id::{BlueprintIdentifier, EntityIdentifier, OrgId};
use port_core::ports::{EntityWriteMode, InProcessTemplates, NoNotifier, RunFilter, Store};
use port_core::run::{Run, RunSource, RunStatus};
use port_core::service::{AllowAllDestinations, Services};
use port_core::testing::{FixedClock, MemoryStore, test_ids};
use serde_json::{Map, Value, json};

struct World {
    memory: Arc<MemoryStore>,
    /// The same store, as the services' port.
    store_handle: Arc<dyn Store>,
    services: Services,
    clock: Arc<FixedClock>,
    org: OrgId,
}

/// Templates that answer "busy" while `busy` is set, then render in process.
#[derive(Default)]
struct SometimesBusy {
    busy: std::sync::atomic::AtomicBool,
    inner: InProcessTemplates,
}

#[async_trait::async_trait]
impl port_core::ports::TemplateEngine for SometimesBusy {
    async fn render(
        &self,
        org: &OrgId,
        template: &Value,
        context: &Value,
    ) -> Result<Value, port_core::template::TemplateError> {
        if self.busy.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(port_core::template::TemplateError::Unavailable {
                busy: true,
                message: "busy".into(),
            });
        }
        self.inner.render(org, template, context).await
    }

    fn max_output_bytes(&self) -> usize {
        self.inner.max_output_bytes()
    }
}

fn world() -> World {
    world_with(Arc::new(InProcessTemplates::default()))
}

fn world_with(templates: Arc<dyn port_core::ports::TemplateEngine>) -> World {
    let clock = Arc::new(FixedClock::at_default());
    let memory = Arc::new(MemoryStore::new());
    let services = Services::new(
        memory.clone(),
        clock.clone(),
        test_ids(clock.clone()),
        Arc::new(NoNotifier),
        Arc::new(AllowAllDestinations),
        templates,
    );
    World {
        store_handle: memory.clone(),
        memory,
        services,
        clock,
        org: OrgId::parse("org_BneDtWovPqXaA2VZ").expect("org id"),
    }
}

impl World {
    fn store(&self) -> &Arc<dyn Store> {
        &self.store_handle
    }

    async fn automation(&self, definition: Value) {
        let action = Action {
            meta: ActionMeta {
                id: self.services.ids.next(),
                created_at: self.clock.now_ts(),
                created_by: "admin".into(),
                updated_at: self.clock.now_ts(),
                updated_by: "admin".into(),
            },
            definition: ActionDefinition::from_v2(&definition).expect("a valid automation"),
        };
        self.store()
            .create_action(&self.org, &action)
            .await
            .expect("stored");
    }

    /// Writes entity `service/<id>` with property `n`, for `run` when given.
    async fn put_service(&self, id: &str, n: u64, run: Option<&Run>) {
        let now = self.clock.advance(1);
        let entity = Entity {
            org_id: self.org.clone(),
            blueprint: BlueprintIdentifier::parse("service").expect("blueprint"),
            identifier: EntityIdentifier::parse(id).expect("identifier"),
            title: Some(format!("Service {id}")),
            icon: None,
            team: None,
            properties: Map::from_iter([("n".to_owned(), json!(n))]),
            relations: Map::new(),
            stamp: Stamp {
                created_at: now,
                created_by: "alice".into(),
                updated_at: now,
                updated_by: "alice".into(),
            },
        };
        let affected = run.map(|run| AffectedEntity {
            org_id: self.org.clone(),
            run_id: run.id.clone(),
            blueprint: entity.blueprint.clone(),
            entity: entity.identifier.clone(),
            operation: EntityOperation::Update,
            at: now,
            by: "backend".into(),
            snapshot: entity.to_json(),
        });
        self.store()
            .put_entity(&entity, EntityWriteMode::Upsert, affected.as_ref(), &[])
            .await
            .expect("written");
    }

    async fn runs_of(&self, action: &str) -> Vec<Run> {
        let filter = RunFilter {
            action: Some(action.into()),
            limit: 1000,
            ..RunFilter::default()
        };
        let mut runs = self
            .store()
            .list_runs(&self.org, &filter)
            .await
            .expect("runs");
        runs.reverse();
        runs
    }

    /// Handles events until none is left (the runs started record events too); returns
    /// how many runs were started.
    async fn settle(&self) -> usize {
        let mut runs = 0;
        loop {
            let (events, started) = self.handle().await;
            runs += started;
            if events == 0 {
                return runs;
            }
        }
    }

    async fn handle(&self) -> (usize, usize) {
        let handled = self
            .services
            .handle_events("worker-1", 100)
            .await
            .expect("events handled");
        (handled.events, handled.runs)
    }
}

trait NowTs {
    fn now_ts(&self) -> port_core::Timestamp;
}

impl NowTs for FixedClock {
    fn now_ts(&self) -> port_core::Timestamp {
        port_core::ports::Clock::now(self)
    }
}

fn on_service_change(identifier: &str, condition: Option<Value>) -> Value {
    let mut trigger = json!({
        "type": "automation",
        "event": { "type": "ANY_ENTITY_CHANGE", "blueprintIdentifier": "service" },
    });
    if let Some(condition) = condition {
        trigger["condition"] = condition;
    }
    json!({
        "identifier": identifier,
        "title": "React to services",
        "trigger": trigger,
        "invocationMethod": {
            "type": "WEBHOOK",
            "url": "http://backend.example/hook",
            "body": {
                "entity": "{{ .event.context.entityIdentifier }}",
                "n": "{{ .event.diff.after.properties.n }}",
                "before": "{{ .event.diff.before }}",
                "origin": "{{ .trigger.origin }}",
                "run": "{{ .run.id }}",
            },
        },
        "publish": true,
    })
}

#[test]
fn an_entity_change_starts_one_run_of_each_automation_watching_it() {
    block_on(async {
        let w = world();
        w.automation(on_service_change("on_service", None)).await;
        w.automation(on_service_change(
            "on_big_service",
            Some(json!({"type": "JQ", "expressions": [".diff.after.properties.n > 5"], "combinator": "and"})),
        ))
        .await;
        let mut unpublished = on_service_change("unpublished", None);
        unpublished["publish"] = json!(false);
        w.automation(unpublished).await;

        w.put_service("checkout", 1, None).await;
        assert_eq!(w.store().pending_events().await.expect("count"), 1);
        assert_eq!(w.handle().await, (1, 1));
        // The run started records its own event, which sets nothing off.
        assert_eq!(w.store().pending_events().await.expect("count"), 1);
        assert_eq!(w.settle().await, 0);
        assert_eq!(w.store().pending_events().await.expect("count"), 0);

        let runs = w.runs_of("on_service").await;
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run.source, RunSource::Automation);
        assert_eq!(run.status(), RunStatus::InProgress);
        assert_eq!(run.chain_depth, 1);
        assert_eq!(
            run.entity.as_ref().map(|e| e.identifier.as_str()),
            Some("checkout")
        );
        let body = &run.payload.as_ref().expect("payload")["body"];
        assert_eq!(body["entity"], "checkout");
        assert_eq!(body["n"], 1);
        assert_eq!(body["before"], Value::Null);
        assert_eq!(body["origin"], "AUTOMATION");
        assert_eq!(body["run"], run.id.as_str());
        assert!(
            w.runs_of("on_big_service").await.is_empty(),
            "its condition does not hold"
        );
        assert!(w.runs_of("unpublished").await.is_empty());

        // The same content again is no change; a new one is.
        w.put_service("checkout", 1, None).await;
        w.put_service("checkout", 7, None).await;
        assert_eq!(w.store().pending_events().await.expect("count"), 1);
        assert_eq!(w.settle().await, 2);
        let big = w.runs_of("on_big_service").await;
        assert_eq!(big.len(), 1);
        assert_eq!(
            big[0].payload.as_ref().expect("payload")["body"]["before"]["properties"]["n"],
            1
        );
        assert_eq!(w.handle().await, (0, 0));
    });
}

#[test]
fn an_event_handled_again_after_a_crash_starts_nothing_twice() {
    block_on(async {
        let w = world();
        w.automation(on_service_change("on_service", None)).await;
        w.put_service("checkout", 1, None).await;
        // A worker that started the runs of an event and died before it was done: the
        // event is handled again and finds its run.
        w.memory.fail_completions(1);
        assert!(w.services.handle_events("worker-0", 10).await.is_err());
        assert_eq!(w.runs_of("on_service").await.len(), 1);
        w.clock
            .advance(port_core::service::automations::EVENT_LEASE_MS + 1);
        assert_eq!(w.settle().await, 0);
        assert_eq!(w.runs_of("on_service").await.len(), 1);

        w.put_service("checkout", 2, None).await;
        let now = w.clock.now_ts();
        let claimed = w
            .store()
            .claim_events("dead-worker", now, now.plus_millis(1_000), 10, u32::MAX)
            .await
            .expect("claimed");
        // A worker that claimed the event and died before it was done.
        assert_eq!(claimed.len(), 1);
        assert_eq!(w.handle().await, (0, 0), "the lease holds");
        w.clock.advance(1_001);
        // Another worker takes the event over.
        assert_eq!(w.settle().await, 1);
        assert_eq!(w.runs_of("on_service").await.len(), 2);
        assert_eq!(
            w.store()
                .complete_events("dead-worker", &[claimed[0].seq])
                .await
                .expect("complete"),
            0,
            "the dead worker's lease is gone"
        );
    });
}

#[test]
fn automations_that_set_each_other_off_stop_at_the_chain_bound() {
    block_on(async {
        let w = world();
        w.automation(on_service_change("ping_pong", None)).await;
        w.put_service("checkout", 0, None).await;
        // Play the backend: every run it receives writes the entity again, for the run.
        let mut served = 0;
        for n in 1.. {
            w.handle().await;
            let runs = w.runs_of("ping_pong").await;
            let fresh: Vec<Run> = runs[served..].to_vec();
            served = runs.len();
            if fresh.is_empty() {
                break;
            }
            for run in fresh.iter().filter(|r| r.status() == RunStatus::InProgress) {
                w.put_service("checkout", n, Some(run)).await;
            }
            assert!(n < 100, "the chain never ended");
        }
        let runs = w.runs_of("ping_pong").await;
        let depths: Vec<u32> = runs.iter().map(|r| r.chain_depth).collect();
        assert_eq!(depths, (1..=MAX_CHAIN_DEPTH + 1).collect::<Vec<_>>());
        let last = runs.last().expect("the last run");
        assert_eq!(last.status(), RunStatus::Failure);
        assert!(
            last.summary
                .as_deref()
                .unwrap_or_default()
                .contains("Automation chain too deep"),
            "{:?}",
            last.summary
        );
        assert!(last.payload.is_none(), "nothing was sent for it");
        assert_eq!(w.store().pending_events().await.expect("count"), 0);
    });
}

#[test]
fn a_busy_template_engine_delays_an_automation_and_never_drops_it() {
    block_on(async {
        let engine = Arc::new(SometimesBusy::default());
        let w = world_with(engine.clone());
        w.automation(on_service_change(
            "on_big_service",
            Some(json!({"type": "JQ", "expressions": [".diff.after.properties.n > 5"]})),
        ))
        .await;
        w.put_service("checkout", 9, None).await;
        engine.busy.store(true, std::sync::atomic::Ordering::SeqCst);
        // Busy is "not now": the pass goes on (for other organizations), the event
        // stays in the outbox.
        assert_eq!(w.handle().await, (0, 0));
        assert!(w.runs_of("on_big_service").await.is_empty());
        assert_eq!(w.store().pending_events().await.expect("count"), 1);
        engine
            .busy
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(w.settle().await, 1);
    });
}

/// A timer property armed through the entity service fires once when its time comes,
/// starting the automation watching it (and not the change automations), with Port's
/// timer context; a rewrite that keeps the value does not arm it again.
#[test]
fn an_expired_timer_starts_its_automation_once() {
    block_on(async {
        let w = world();
        let now = w.clock.now_ts();
        w.store()
            .create_blueprint(&port_core::catalog::Blueprint {
                org_id: w.org.clone(),
                identifier: BlueprintIdentifier::parse("environment").expect("blueprint"),
                title: None,
                definition: json!({ "schema": { "properties": {
                    "ttl": { "type": "string", "format": "timer" }
                }}})
                .as_object()
                .cloned()
                .expect("object"),
                stamp: Stamp {
                    created_at: now,
                    created_by: "admin".into(),
                    updated_at: now,
                    updated_by: "admin".into(),
                },
            })
            .await
            .expect("blueprint stored");
        w.automation(json!({
            "identifier": "teardown",
            "trigger": {
                "type": "automation",
                "event": {
                    "type": "TIMER_PROPERTY_EXPIRED",
                    "blueprintIdentifier": "environment",
                    "propertyIdentifier": "ttl"
                }
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": "http://backend.example/teardown",
                "body": {
                    "entity": "{{ .event.context.entityIdentifier }}",
                    "property": "{{ .event.context.propertyIdentifier }}",
                    "action": "{{ .event.action }}"
                }
            },
            "publish": true
        }))
        .await;
        let mut on_change = on_service_change("on_env_change", None);
        on_change["trigger"]["event"]["blueprintIdentifier"] = json!("environment");
        w.automation(on_change).await;

        let caller = port_core::service::Caller::machine(w.org.clone(), "alice");
        let expiry = now.plus_millis(5_000);
        let write = |ttl: port_core::Timestamp, title: &str| {
            let body = json!({
                "identifier": "env-1",
                "title": title,
                "properties": { "ttl": ttl.to_string() }
            });
            let services = w.services.clone();
            let caller = caller.clone();
            async move {
                services
                    .write_entity(
                        &caller,
                        "environment",
                        &body,
                        None,
                        &port_core::service::EntityWriteOptions {
                            kind: port_core::service::EntityWriteKind::Create {
                                upsert: true,
                                merge: false,
                            },
                            validation_only: false,
                            create_missing_related: false,
                            run_id: None,
                        },
                    )
                    .await
                    .expect("written")
            }
        };
        write(expiry, "one").await;
        assert_eq!(w.settle().await, 1, "the change automation only");
        assert_eq!(w.services.fire_due_timers(10).await.expect("fired"), 0);

        w.clock.advance(5_000);
        assert_eq!(w.services.fire_due_timers(10).await.expect("fired"), 1);
        assert_eq!(w.services.fire_due_timers(10).await.expect("fired"), 0);
        assert_eq!(w.settle().await, 1, "the timer automation only");
        let runs = w.runs_of("teardown").await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].source, RunSource::Automation);
        let body = &runs[0].payload.as_ref().expect("payload")["body"];
        assert_eq!(body["entity"], "env-1");
        assert_eq!(body["property"], "ttl");
        assert_eq!(body["action"], "TIMER_EXPIRED");

        // Kept value: not armed again; a new one is.
        write(expiry, "two").await;
        w.clock.advance(10_000);
        assert_eq!(w.services.fire_due_timers(10).await.expect("fired"), 0);
        write(w.clock.now_ts().plus_millis(1), "three").await;
        w.clock.advance(1);
        assert_eq!(w.services.fire_due_timers(10).await.expect("fired"), 1);
        w.settle().await;
        assert_eq!(w.runs_of("teardown").await.len(), 2);
        assert_eq!(w.runs_of("on_env_change").await.len(), 3);
    });
}
