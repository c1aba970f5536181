//! Automations' use case: reading the event outbox and starting, for each event, one
//! run of every published automation of its organization that watches it and whose
//! condition holds.
//!
//! Exactly once, across crashes and replicas: each run is created under the
//! idempotency key `automation:<event id>:<automation>`, in the run's transaction, and
//! the event leaves the outbox only after all its runs exist; an event whose lease ran
//! out (the replica died) is handled again and finds its runs already there.

use futures::future::join_all;
use serde_json::{Map, Value};

use super::Services;
use crate::action::Action;
use crate::automation::{AutomationTrigger, MAX_CHAIN_DEPTH};
use crate::error::{ErrorKind, PortError};
use crate::event::{ChangeEvent, ChangeKind, ResourceType};
use crate::id::{OrgId, RunId};
use crate::invocation::{self, Actor, InvocationInput};
use crate::ports::{CreateRunOutcome, IdempotencyKey, NewDelivery};
use crate::run::{
    ActionRef, ApprovalPolicy, FinalStatus, NewRun, Reference, RunCommand, RunEvent, RunPatch,
    RunSource, SYSTEM_ACTOR, start, transition,
};
use crate::template::TemplateError;
use crate::time::Timestamp;

/// How long a claimed batch of events is held before another worker may take it.
pub const EVENT_LEASE_MS: i64 = 60_000;

/// The most events of one organization in one batch: the rest of a backlog waits for
/// the next, behind no other organization's events.
pub const EVENTS_PER_ORG: u32 = 16;

/// How long one organization's events may take in one batch (the event at hand is
/// always finished): slow conditions cost their organization turns, not the others.
pub const ORG_TURN_MS: i64 = 250;

/// What handling one organization's share of a batch did.
#[derive(Default)]
struct OrgOutcome {
    /// Handled: to leave the outbox.
    done: Vec<u64>,
    runs: usize,
    /// Why it stopped early, other than a busy template engine.
    error: Option<PortError>,
}

/// What one pass over the outbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsHandled {
    /// Events read and removed from the outbox.
    pub events: usize,
    /// Runs started by automations (runs found already started are not counted).
    pub runs: usize,
}

/// An organization's published automations, parsed once per pass.
type Automations = Vec<(Action, AutomationTrigger)>;

impl Services {
    /// Handles up to `limit` events of the outbox as `owner` (a worker's id), at most
    /// [`EVENTS_PER_ORG`] of any one organization. Organizations are handled side by
    /// side, each one's events in order, so one organization's slow conditions or
    /// invocations never hold another's automations up; an organization whose template
    /// engine is busy keeps the rest of its events for the next pass.
    pub async fn handle_events(&self, owner: &str, limit: u32) -> Result<EventsHandled, PortError> {
        let now = self.now();
        let events = self
            .store
            .claim_events(
                owner,
                now,
                now.plus_millis(EVENT_LEASE_MS),
                limit,
                EVENTS_PER_ORG,
            )
            .await?;
        let mut by_org: Vec<(OrgId, Vec<&ChangeEvent>)> = Vec::new();
        for event in &events {
            let org = &event.change.org_id;
            match by_org.iter_mut().find(|(o, _)| o == org) {
                Some((_, list)) => list.push(event),
                None => by_org.push((org.clone(), vec![event])),
            }
        }
        let outcomes = join_all(
            by_org
                .iter()
                .map(|(org, list)| self.handle_org_events(org, list)),
        )
        .await;
        let mut handled = EventsHandled::default();
        let mut done = Vec::with_capacity(events.len());
        let mut failure = None;
        for outcome in outcomes {
            done.extend(outcome.done);
            handled.runs += outcome.runs;
            if let Some(e) = outcome.error {
                failure.get_or_insert(e);
            }
        }
        handled.events = done.len();
        if !done.is_empty() {
            self.store.complete_events(owner, &done).await?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(handled),
        }
    }

    /// One organization's claimed events, in order, until one cannot be handled now.
    async fn handle_org_events(&self, org: &OrgId, events: &[&ChangeEvent]) -> OrgOutcome {
        let mut outcome = OrgOutcome::default();
        let watching = match self.published_automations(org).await {
            Ok(list) => list,
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        };
        let turn_ends = self.now().plus_millis(ORG_TURN_MS);
        for event in events {
            // Past its turn, an organization's remaining events wait for the next pass
            // (still leased to this worker, which takes them back first): the batch,
            // and so every other organization's next events, never waits on one
            // organization's slow conditions for long.
            if !outcome.done.is_empty() && self.now() >= turn_ends {
                break;
            }
            match self.handle_event(event, &watching).await {
                Ok(runs) => {
                    outcome.runs += runs;
                    outcome.done.push(event.seq);
                }
                // Busy or down: this event and the organization's later ones wait for
                // the next pass (in order), and the other organizations go on.
                Err(e) if is_transient(&e) => break,
                Err(e) => {
                    outcome.error = Some(e);
                    break;
                }
            }
        }
        outcome
    }

    async fn handle_event(
        &self,
        event: &ChangeEvent,
        watching: &Automations,
    ) -> Result<usize, PortError> {
        let mut runs = 0;
        // Changes made for a run that ended the chain start nothing more.
        if event.change.depth <= MAX_CHAIN_DEPTH {
            for (action, trigger) in watching {
                if trigger.watches(event) && self.condition_holds(event, trigger).await? {
                    runs += usize::from(self.start_automation(event, action).await?);
                }
            }
        }
        Ok(runs)
    }

    /// Fires up to `limit` timers due now ([`crate::ports::EventStore::fire_due_timers`]):
    /// their expiries join the outbox, where [`Self::handle_events`] finds them.
    pub async fn fire_due_timers(&self, limit: u32) -> Result<u32, PortError> {
        Ok(self.store.fire_due_timers(self.now(), limit).await?)
    }

    async fn published_automations(&self, org: &OrgId) -> Result<Automations, PortError> {
        Ok(self
            .store
            .list_actions(org)
            .await?
            .into_iter()
            .filter(|a| a.definition.publish != Some(false))
            .filter_map(|a| a.definition.automation().map(|t| (a, t)))
            .collect())
    }

    /// Evaluates the trigger's condition against the event (Port's trigger data), within
    /// the organization's template budget. A condition that cannot be evaluated does
    /// not hold: the automation is not set off. A template engine that cannot take the
    /// render now is an error: the event stays in the outbox and is handled again.
    async fn condition_holds(
        &self,
        event: &ChangeEvent,
        trigger: &AutomationTrigger,
    ) -> Result<bool, PortError> {
        let Some(condition) = &trigger.condition else {
            return Ok(true);
        };
        match self
            .templates
            .render(
                &event.change.org_id,
                &condition.template(),
                &event.to_json(),
            )
            .await
        {
            Ok(rendered) => Ok(condition.holds(&rendered)),
            Err(e @ TemplateError::Unavailable { .. }) => Err(invocation::template_error(&e)),
            Err(_) => Ok(false),
        }
    }

    /// Starts the automation's run for the event; `false` when it already exists (the
    /// event was handled before a crash or by another replica).
    async fn start_automation(
        &self,
        event: &ChangeEvent,
        action: &Action,
    ) -> Result<bool, PortError> {
        let change = &event.change;
        let org = &change.org_id;
        let def = &action.definition;
        let now = self.now();
        let run_id: RunId = self.ids.next();
        let event_json = event.to_json();
        let actor = Actor {
            user_id: change.by.clone(),
            ..Actor::default()
        };
        let depth = change.depth + 1;
        let no_properties = Map::new();
        let no_secrets = Map::new();
        let input = InvocationInput {
            org_id: org,
            action,
            run_id: &run_id,
            entity: None,
            properties: &no_properties,
            actor: &actor,
            origin: RunSource::Automation,
            at: now,
            secret_keys: &[],
            secrets: &no_secrets,
            event: Some(&event_json),
        };
        // Past the chain's bound, or with an invocation that cannot be evaluated, the
        // run is still created, ended `FAILURE` with the reason, so people see why.
        let evaluated = if depth > MAX_CHAIN_DEPTH {
            Err(format!(
                "Automation chain too deep: more than {MAX_CHAIN_DEPTH} automations in a row \
                 led to this run, so it was not started"
            ))
        } else {
            match self.evaluate_invocation(org, &input).await {
                // The engine is busy or down: try the event again later rather than fail.
                Err(e) if is_transient(&e) => return Err(e),
                other => other
                    .map_err(|e| format!("The invocation could not be evaluated: {}", e.message)),
            }
        };
        let entity = (change.resource == ResourceType::Entity).then(|| Reference {
            identifier: change.subject.clone(),
            title: change
                .after
                .as_ref()
                .or(change.before.as_ref())
                .and_then(|e| e.get("title"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            icon: None,
            deleted: change.kind == ChangeKind::Delete,
        });
        let blueprint = (change.resource == ResourceType::Entity).then(|| Reference {
            identifier: change.scope.clone(),
            title: None,
            icon: None,
            deleted: false,
        });
        let started = start(
            NewRun {
                id: run_id,
                org_id: org.clone(),
                properties: Map::new(),
                source: RunSource::Automation,
                required_approval: Value::Bool(false),
                approval_policy: ApprovalPolicy::NotRequired,
                payload: evaluated.as_ref().ok().map(|e| e.payload.clone()),
                action: ActionRef {
                    identifier: def.identifier.clone(),
                    title: def.title.clone(),
                    icon: def.icon.clone(),
                    deleted: false,
                },
                blueprint,
                entity,
                synchronized: evaluated.as_ref().is_ok_and(|e| {
                    e.synchronized() && e.delivery.mode == crate::ports::DeliveryMode::Webhook
                }),
                created_by: change.by.clone(),
                impersonated_by: None,
                chain_depth: depth,
            },
            now,
        );
        let (run, delivery) = match evaluated {
            Ok(evaluated) => {
                let delivery = started
                    .events
                    .contains(&RunEvent::Dispatch)
                    .then(|| NewDelivery {
                        id: self.ids.next(),
                        org_id: org.clone(),
                        run_id: started.run.id.clone(),
                        mode: evaluated.delivery.mode,
                        request: evaluated.delivery.request,
                        synchronized: evaluated.delivery.synchronized,
                        installation_id: evaluated.delivery.installation_id,
                        created_at: now,
                        next_attempt_at: now,
                    });
                (started.run, delivery)
            }
            Err(reason) => (failed_at_once(started.run, reason, now)?, None),
        };
        let key = IdempotencyKey {
            org_id: org.clone(),
            key: format!("automation:{}:{}", event.id(), def.identifier),
            created_at: now,
        };
        match self
            .store
            .create_run(&run, delivery.as_ref(), Some(&key))
            .await?
        {
            CreateRunOutcome::Created => {
                self.after_change(&run, true, Vec::new(), delivery.is_some());
                Ok(true)
            }
            CreateRunOutcome::Existing(_) => Ok(false),
        }
    }
}

/// Whether an error says "not now" (the template engine busy or down) rather than
/// "never": such an event is handled again later.
fn is_transient(e: &PortError) -> bool {
    matches!(
        e.kind,
        ErrorKind::TooManyRequests | ErrorKind::ServiceUnavailable
    )
}

/// The run ended `FAILURE` before anything was sent, with `reason` as its summary.
fn failed_at_once(
    run: crate::run::Run,
    reason: String,
    now: Timestamp,
) -> Result<crate::run::Run, PortError> {
    let patch = RunPatch {
        status: Some(FinalStatus::Failure),
        status_label: Some("Not started".to_owned()),
        summary: Some(reason),
        ..RunPatch::default()
    };
    Ok(transition(&run, RunCommand::Patch(patch), SYSTEM_ACTOR, now)?.run)
}
