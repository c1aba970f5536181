//! Application services: the use cases of runs, written against the ports; the routes
//! of runners ([`pull`]) and of the organization and its integrations have their own
//! files here.
//!
//! Every method takes the [`Caller`] (its organization and identity) and only ever
//! reads or writes that organization's data. Run changes go through
//! [`crate::run::transition`] and are stored with an optimistic version check; on a
//! conflict the run is re-read and the command applied again, so concurrent writers
//! never lose an update and a run never ends twice.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::access::{Principal, User};
use crate::action::{Action, ApprovalMode, Operation};
use crate::catalog::{AffectedEntity, Entity, EntityOperation};
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::{ActionIdentifier, BlueprintIdentifier, EntityIdentifier, LogId, OrgId, RunId};
use crate::inputs;
use crate::invocation::{self, Actor, InvocationInput, PlannedDelivery};
use crate::ports::{
    Clock, CreateRunOutcome, DeliveryMode, DeliveryStore, IdGenerator, IdempotencyKey, NewDelivery,
    Notice, Notifier, RunFilter, RunUpdate, Store, TemplateEngine,
};
use crate::run::{
    ActionRef, ApprovalPolicy, FinalStatus, NewRun, Reference, Run, RunCommand, RunEvent, RunPatch,
    RunSource, RunState, start, transition,
};
use crate::run_log::{NewRunLog, RunLog};
use crate::time::Timestamp;

pub mod access;
mod actions;
mod approvals;
pub mod automations;
mod blueprints;
mod deliveries;
mod delivery_log;
pub mod entities;
mod follow;
mod organization;
pub mod pull;
pub mod secrets;
pub mod sessions;
mod timeouts;

pub use actions::ActionFilter;
pub use approvals::{Approver, PENDING_APPROVER};
pub use entities::{EntityWriteKind, EntityWriteOptions, EntityWritten};
pub use follow::OrgRuns;
pub use pull::{ClaimRequest, ClaimedRun, PORT_AGENT_INSTALLATION};
pub use secrets::{SecretLoads, Sendable};

/// How long an idempotency key returns the same run.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The most bytes of runs (as JSON) one list page holds, whatever its `limit`.
pub const RUNS_PAGE_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Runs read from the store at a time while a page is filled.
const RUNS_PAGE_CHUNK: usize = 25;

/// The most runs one page reads for a caller who does not see every run (hidden ones
/// included): a person who may see few of many runs gets short pages, each bounded.
pub const RUNS_PAGE_MAX_EXAMINED: usize = 2_000;

/// A page of runs and whether more match after it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunsPage {
    pub runs: Vec<Run>,
    pub more: bool,
    /// Where the next page starts (`?before=`) when `more`: the last run read, which
    /// may be one hidden from the caller, so the next page does not read it again.
    pub next: Option<RunId>,
}

/// How many times a command is re-applied after losing a race to another writer.
const MAX_CONFLICT_RETRIES: usize = 16;

/// The authenticated caller of a service method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub org_id: OrgId,
    /// Who the run payloads and records name: a person's address or a client id.
    pub actor: Actor,
    /// Who is calling, which decides what the call may do.
    pub principal: Principal,
}

impl Caller {
    /// An organization credential: may do everything in its organization.
    pub fn machine(org_id: OrgId, client_id: &str) -> Self {
        Self {
            org_id,
            actor: Actor::machine(client_id),
            principal: Principal::Organization {
                client_id: client_id.to_owned(),
            },
        }
    }

    /// A person of the organization, with their role and teams as they are now.
    pub fn person(user: &User) -> Self {
        Self {
            org_id: user.org_id.clone(),
            actor: Actor {
                user_id: user.email.to_string(),
                email: Some(user.email.to_string()),
                first_name: user.first_name.clone(),
                last_name: user.last_name.clone(),
            },
            principal: Principal::Person(user.principal()),
        }
    }

    pub fn user_id(&self) -> &str {
        &self.actor.user_id
    }
}

/// Decides whether a webhook destination may be called (SSRF protection). The server
/// implements it with DNS; the default allows everything, as self-hosting expects.
///
/// Two moments use it: [`Self::check`] at execute time, so a refused URL answers Port's
/// error at once, and [`Self::allows`] when the delivery worker connects: it resolves
/// a host once, vets every address with `allows` (see
/// [`crate::destination::vet`]) and connects only to those, so a name that resolves
/// differently the second time (DNS rebinding) gains nothing.
#[async_trait]
pub trait DestinationPolicy: Send + Sync {
    /// Whether runs may be sent to `url`; 403 `private_destination` or
    /// `not_resolvable_destination` when not.
    async fn check(&self, url: &str) -> Result<(), PortError>;

    /// Whether a connection to `ip` may be opened.
    fn allows(&self, _ip: IpAddr) -> bool {
        true
    }
}

/// Allows every destination.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAllDestinations;

#[async_trait]
impl DestinationPolicy for AllowAllDestinations {
    async fn check(&self, _url: &str) -> Result<(), PortError> {
        Ok(())
    }
}

/// An execute request (`POST /v1/actions/{id}/runs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecuteRequest {
    pub properties: Value,
    pub entity: Option<String>,
    pub idempotency_key: Option<String>,
    pub source: Option<RunSource>,
    /// `?run_as=<email>`: an organization credential runs the action as this user
    /// (their execute permission is checked; the run records the credential as
    /// `impersonatedBy`). People may not (403).
    pub run_as: Option<String>,
}

/// The services of portd. Cheap to clone.
///
/// The store is theirs alone: adapters reach the data only through the use cases
/// here (the delivery worker through [`Self::outbox`], the one narrow view it needs).
#[derive(Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub ids: IdGenerator,
    pub notifier: Arc<dyn Notifier>,
    pub destinations: Arc<dyn DestinationPolicy>,
    /// Renders actions' templates (a sandbox in portd).
    pub templates: Arc<dyn TemplateEngine>,
    /// Each organization's turn to load its secrets.
    pub secret_loads: Arc<secrets::SecretLoads>,
}

impl Services {
    /// Services over `store`, with each organization's turn to load secrets fresh.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: IdGenerator,
        notifier: Arc<dyn Notifier>,
        destinations: Arc<dyn DestinationPolicy>,
        templates: Arc<dyn TemplateEngine>,
    ) -> Self {
        Self {
            store,
            clock,
            ids,
            notifier,
            destinations,
            templates,
            secret_loads: Arc::default(),
        }
    }

    /// The delivery outbox, for the delivery worker: cross-organization claims of due
    /// deliveries and the bookkeeping of their attempts (see [`DeliveryStore`]).
    pub fn outbox(&self) -> &dyn DeliveryStore {
        &*self.store
    }

    /// The credential whose client secret signs the organization's webhooks (its
    /// first), if it has one.
    pub async fn signing_credential(
        &self,
        org: &OrgId,
    ) -> Result<Option<crate::ports::Credential>, StoreError> {
        self.organization_credential(org).await
    }

    /// The organization's oldest organization (machine) credential, whose secret signs
    /// webhooks and encrypts secret inputs; a person's credential never does, whatever
    /// its age.
    pub(crate) async fn organization_credential(
        &self,
        org: &OrgId,
    ) -> Result<Option<crate::ports::Credential>, StoreError> {
        Ok(self
            .store
            .credentials(org)
            .await?
            .into_iter()
            .find(|credential| credential.user.is_none()))
    }

    /// The run a claimed delivery is for, as stored (`None` once it is gone).
    pub async fn run_of_delivery(
        &self,
        delivery: &crate::ports::Delivery,
    ) -> Result<Option<Run>, StoreError> {
        self.store.get_run(&delivery.org_id, &delivery.run_id).await
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Services")
    }
}

fn run_not_found(id: &str) -> PortError {
    PortError::new(ErrorKind::NotFound, format!("run {id} was not found"))
}

/// Rebuilds the delivery a run needs from its stored payload (the evaluated method).
pub fn planned_delivery(payload: &Value) -> PlannedDelivery {
    if payload.get("type").and_then(Value::as_str) == Some(DeliveryMode::UpsertEntity.as_str()) {
        return invocation::upsert_entity_delivery(payload.clone());
    }
    let is_webhook = payload.get("type").and_then(Value::as_str) == Some("WEBHOOK");
    let agent = payload
        .get("agent")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    PlannedDelivery {
        mode: if is_webhook && !agent {
            DeliveryMode::Webhook
        } else {
            DeliveryMode::Agent
        },
        request: payload.clone(),
        synchronized: is_webhook
            && payload
                .get("synchronized")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        installation_id: payload
            .get("installationId")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

impl Services {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn new_delivery(&self, run: &Run, now: Timestamp) -> Option<NewDelivery> {
        let payload = run.payload.as_ref()?;
        let planned = planned_delivery(payload);
        Some(NewDelivery {
            id: self.ids.next(),
            org_id: run.org_id.clone(),
            run_id: run.id.clone(),
            mode: planned.mode,
            request: planned.request,
            synchronized: planned.synchronized,
            installation_id: planned.installation_id,
            created_at: now,
            next_attempt_at: now,
        })
    }

    pub async fn get_action(&self, caller: &Caller, identifier: &str) -> Result<Action, PortError> {
        let id = ActionIdentifier::parse(identifier).map_err(|_| {
            PortError::new(
                ErrorKind::NotFound,
                format!("action {identifier} was not found"),
            )
        })?;
        self.store
            .get_action(&caller.org_id, &id)
            .await?
            .ok_or_else(|| {
                PortError::new(
                    ErrorKind::NotFound,
                    format!("action {identifier} was not found"),
                )
            })
    }

    pub async fn get_entity(
        &self,
        org: &OrgId,
        blueprint: &str,
        identifier: &str,
    ) -> Result<Option<Entity>, PortError> {
        let (Ok(bp), Ok(id)) = (
            BlueprintIdentifier::parse(blueprint),
            EntityIdentifier::parse(identifier),
        ) else {
            return Ok(None);
        };
        Ok(self.store.get_entity(org, &bp, &id).await?)
    }

    /// Executes an action: checks the caller's execute permission, validates the
    /// request, creates the run and, when it needs no approval, its delivery (when it
    /// does, its approval notification), all in one transaction; then records the
    /// audit entry.
    pub async fn execute(
        &self,
        caller: &Caller,
        action_identifier: &str,
        request: ExecuteRequest,
    ) -> Result<Run, PortError> {
        let requester = caller;
        let impersonated = match &request.run_as {
            None => None,
            Some(email) => {
                let Principal::Organization { client_id } = &caller.principal else {
                    return Err(access::forbidden(
                        "run_as is for organization credentials: a person runs actions as themselves",
                    ));
                };
                let user = self.get_user(caller, email).await?;
                Some((Caller::person(&user), client_id.clone()))
            }
        };
        let caller = impersonated.as_ref().map_or(caller, |(person, _)| person);
        let org = &caller.org_id;
        let action = self.get_action(caller, action_identifier).await?;
        let def = &action.definition;
        if !def.is_self_service() {
            return Err(PortError::new(
                ErrorKind::RunNonSelfServiceError,
                format!("action {action_identifier} is an automation and cannot be executed"),
            ));
        }
        let permissions = self.permissions_of(org, &def.identifier).await?;
        let person = caller.principal.person();
        // Someone only a name could admit is refused before their entity and inputs are
        // looked at.
        if let Some(person) = person
            && !permissions.execute.names(person)
            && !permissions.owned_by_team
            && permissions.execute.policy.is_none()
        {
            return Err(access::forbidden(format!(
                "{} may not execute action {}: the action's execute permission does not name them",
                person.email, def.identifier
            )));
        }
        let now = self.now();
        // DAY-2 and DELETE actions of a blueprint act on one of its entities.
        let needs_entity = def.blueprint().is_some()
            && matches!(def.operation(), Some(Operation::Day2 | Operation::Delete));
        let entity = match (&request.entity, def.blueprint()) {
            (Some(identifier), Some(bp)) if needs_entity => Some(
                self.get_entity(org, bp.as_str(), identifier)
                    .await?
                    .ok_or_else(|| {
                        PortError::new(
                            ErrorKind::NotFound,
                            format!("entity {identifier} of blueprint {bp} was not found"),
                        )
                    })?,
            ),
            (None, _) if needs_entity => {
                return Err(PortError::new(
                    ErrorKind::MissingSelfServiceActionEntity,
                    format!(
                        "action {action_identifier} runs on an entity: the request must name one in `entity`"
                    ),
                ));
            }
            _ => None,
        };

        let user_inputs = def
            .user_inputs()
            .map(|m| Value::Object(m.clone()))
            .unwrap_or_else(|| Value::Object(Map::new()));
        let properties = if request.properties.is_null() {
            Value::Object(Map::new())
        } else {
            request.properties.clone()
        };
        let validated = inputs::validate_inputs(&user_inputs, &properties)
            .map_err(|e| PortError::new(ErrorKind::UserInputsSchemaInvalid, e.to_string()))?;
        let mut missing = Vec::new();
        for reference in &validated.entity_references {
            let found = match &reference.blueprint {
                Some(bp) => self
                    .get_entity(org, bp, &reference.identifier)
                    .await?
                    .is_some(),
                None => true,
            };
            if !found {
                missing.push(format!(
                    "{}: entity {} does not exist",
                    reference.input, reference.identifier
                ));
            }
        }
        if !missing.is_empty() {
            return Err(PortError::new(
                ErrorKind::UserInputsSchemaInvalid,
                format!(
                    "user inputs do not match the action's schema: {}",
                    missing.join("; ")
                ),
            ));
        }

        let run_id: RunId = self.ids.next();
        let source = request.source.unwrap_or(RunSource::Api);
        let mut properties = validated.properties;
        // From here on nothing sees a secret input in clear: not the templates, the
        // stored run, its payload or the delivery (Port's agent and our receiver decrypt).
        self.encrypt_secret_inputs(org, &mut properties, &validated.secret_keys)
            .await?;
        if let Some(person) = person {
            let subject = access::Subject {
                action: &action,
                inputs: &properties,
                entity: entity.as_ref().map(Entity::to_json),
            };
            self.check_execute(caller, person, &permissions, entity.as_ref(), &subject)
                .await?;
        }
        let approval_policy = match def.required_approval.mode() {
            None => ApprovalPolicy::NotRequired,
            Some(ApprovalMode::Any) => ApprovalPolicy::Any {
                approvers: Vec::new(),
            },
            Some(ApprovalMode::All) => {
                let mut approvers = self
                    .named_approvers(org, &permissions, caller.user_id())
                    .await?;
                for listed in legacy_approvers(&action) {
                    if !approvers.contains(&listed) {
                        approvers.push(listed);
                    }
                }
                if approvers.is_empty() {
                    return Err(PortError::invalid(format!(
                        "action {} needs the approval of ALL its approvers, but its approve permission names no user who could approve this run (its requester excepted): set the action's approve permission first",
                        def.identifier
                    )));
                }
                ApprovalPolicy::All { approvers }
            }
        };
        let no_secrets = Map::new();
        let invocation = InvocationInput {
            org_id: org,
            action: &action,
            run_id: &run_id,
            entity: entity.as_ref(),
            properties: &properties,
            actor: &caller.actor,
            origin: source,
            at: now,
            secret_keys: &validated.secret_keys,
            secrets: &no_secrets,
            event: None,
        };
        let evaluated = self.evaluate_invocation(org, &invocation).await?;

        let blueprint = match def.blueprint() {
            Some(bp) => {
                let found = self.store.get_blueprint(org, bp).await?;
                Some(Reference {
                    identifier: bp.to_string(),
                    title: found.as_ref().and_then(|b| b.title.clone()),
                    icon: found.as_ref().and_then(|b| b.icon().map(str::to_owned)),
                    deleted: found.is_none(),
                })
            }
            None => None,
        };
        let started = start(
            NewRun {
                id: run_id,
                org_id: org.clone(),
                properties,
                source,
                required_approval: invocation::required_approval_wire(&def.required_approval),
                approval_policy,
                payload: Some(evaluated.payload.clone()),
                action: ActionRef {
                    identifier: def.identifier.clone(),
                    title: def.title.clone(),
                    icon: def.icon.clone(),
                    deleted: false,
                },
                blueprint,
                entity: entity.as_ref().map(|e| Reference {
                    identifier: e.identifier.to_string(),
                    title: e.title.clone(),
                    icon: e.icon.clone(),
                    deleted: false,
                }),
                // portd derives the status only from answers it receives itself; a pulled
                // synchronized run is reported by its runner, as Port's agent does.
                synchronized: evaluated.synchronized()
                    && evaluated.delivery.mode == DeliveryMode::Webhook,
                created_by: caller.user_id().to_owned(),
                impersonated_by: impersonated
                    .as_ref()
                    .map(|(_, client_id)| client_id.clone()),
                chain_depth: 0,
            },
            now,
        );
        let notification = if started.run.state == RunState::WaitingForApproval {
            self.approval_notification(&action, &started.run, &permissions, now)
                .await?
        } else {
            None
        };
        let delivery = if started.events.contains(&RunEvent::Dispatch) {
            Some(NewDelivery {
                id: self.ids.next(),
                org_id: org.clone(),
                run_id: started.run.id.clone(),
                mode: evaluated.delivery.mode,
                request: evaluated.delivery.request,
                synchronized: evaluated.delivery.synchronized,
                installation_id: evaluated.delivery.installation_id,
                created_at: now,
                next_attempt_at: now,
            })
        } else {
            notification
        };
        let key = request.idempotency_key.as_ref().map(|key| IdempotencyKey {
            org_id: org.clone(),
            key: key.clone(),
            created_at: now,
        });
        match self
            .store
            .create_run(&started.run, delivery.as_ref(), key.as_ref())
            .await?
        {
            CreateRunOutcome::Created => {
                self.after_change(&started.run, true, Vec::new(), delivery.is_some());
                let mut entry = self.run_audit_entry(
                    requester,
                    &started.run.id,
                    "CREATE",
                    json!({
                        "action": def.identifier.as_str(),
                        "status": started.run.status().as_str(),
                    }),
                );
                if let Some((person, _)) = &impersonated {
                    entry.on_behalf_of = person.principal.person().map(|p| p.email.clone());
                }
                self.record_audit(entry).await?;
                Ok(started.run)
            }
            // The run the key was used for, if the caller may see it.
            CreateRunOutcome::Existing(id) => self.get_run(caller, id.as_str()).await,
        }
    }

    /// Evaluates a run's invocation. Parts of the templates that read `.secrets` are
    /// rendered once with the secrets, so a broken one is the caller's 422 now, but
    /// what is kept is a render without them, with those parts' templates put back to
    /// be rendered when the invocation is sent ([`Self::sendable`]): no secret value is
    /// ever stored with a run.
    async fn evaluate_invocation(
        &self,
        org: &OrgId,
        invocation: &InvocationInput<'_>,
    ) -> Result<invocation::EvaluatedInvocation, PortError> {
        let templates =
            invocation::method_templates(&invocation.action.definition.invocation_method);
        let context = invocation::template_context(invocation);
        let secret_parts = invocation::SecretParts::of(&templates);
        let max_bytes = self.templates.max_output_bytes();
        if !secret_parts.is_empty() {
            let (secrets, masker) = self.secrets_for_templates(org).await?;
            // What this check says may quote what was rendered (a URL, a header):
            // never with a secret in it.
            let masked = |mut e: PortError| {
                e.message = masker.mask(&e.message).into_owned();
                e
            };
            let with_secrets = invocation::context_with_secrets(&context, secrets);
            let rendered = self
                .templates
                .render(org, &templates, &with_secrets)
                .await
                .map_err(|e| masked(invocation::template_error(&e)))?;
            let checked = invocation::assemble(invocation, &rendered, max_bytes).map_err(masked)?;
            if checked.delivery.mode == DeliveryMode::Webhook
                && let Some(url) = checked.payload.get("url").and_then(Value::as_str)
            {
                self.destinations.check(url).await.map_err(masked)?;
            }
        }
        let rendered = self
            .templates
            .render(org, &secret_parts.blanked(&templates), &context)
            .await
            .map_err(|e| invocation::template_error(&e))?;
        let mut evaluated = invocation::assemble(invocation, &rendered, max_bytes)?;
        if secret_parts.is_empty() {
            if evaluated.delivery.mode == DeliveryMode::Webhook
                && let Some(url) = evaluated.payload.get("url").and_then(Value::as_str)
            {
                self.destinations.check(url).await?;
            }
        } else {
            secret_parts.restore(&mut evaluated, &templates, &context);
            invocation::check_size(&evaluated.payload, max_bytes)?;
        }
        Ok(evaluated)
    }

    /// Tells listeners what was just stored: the run when `changed`, and new lines.
    fn after_change(&self, run: &Run, changed: bool, logs: Vec<RunLog>, delivery_written: bool) {
        if delivery_written {
            self.notifier.notify(Notice::DeliveryReady);
        }
        self.notifier.notify(Notice::RunUpdated(Arc::new(RunUpdate {
            org: run.org_id.clone(),
            run_id: run.id.clone(),
            run: changed.then(|| run.clone()),
            logs,
        })));
    }

    /// One of the caller's runs; 404 when there is none, or when the caller may not
    /// see it (existence is not leaked). Organization credentials and Admins see every
    /// run; a person the runs they requested, those they may approve, and every run of
    /// an action with `allowAnyoneToViewRuns: true`.
    pub async fn get_run(&self, caller: &Caller, id: &str) -> Result<Run, PortError> {
        let run = self.get_run_in(&caller.org_id, id).await?;
        if self
            .may_view(caller, &run, &mut access::AccessCache::default())
            .await?
        {
            Ok(run)
        } else {
            Err(run_not_found(id))
        }
    }

    /// The version of one of the caller's runs (404 like [`Self::get_run`]); read
    /// without the run for callers who see every run.
    pub async fn run_version(&self, caller: &Caller, id: &str) -> Result<u64, PortError> {
        if !caller.principal.is_admin() {
            return Ok(self.get_run(caller, id).await?.version);
        }
        let run_id = RunId::parse(id).map_err(|_| run_not_found(id))?;
        self.store
            .run_version(&caller.org_id, &run_id)
            .await?
            .ok_or_else(|| run_not_found(id))
    }

    async fn get_run_in(&self, org: &OrgId, id: &str) -> Result<Run, PortError> {
        let run_id = RunId::parse(id).map_err(|_| run_not_found(id))?;
        self.store
            .get_run(org, &run_id)
            .await?
            .ok_or_else(|| run_not_found(id))
    }

    /// The caller's runs that `filter` selects and the caller may see (at most
    /// `filter.limit` of them read, so a person may get fewer).
    pub async fn list_runs(
        &self,
        caller: &Caller,
        filter: &RunFilter,
    ) -> Result<Vec<Run>, PortError> {
        let runs = self.store.list_runs(&caller.org_id, filter).await?;
        if caller.principal.is_admin() {
            return Ok(runs);
        }
        let mut cache = access::AccessCache::default();
        let mut visible = Vec::with_capacity(runs.len());
        for run in runs {
            if self.may_view(caller, &run, &mut cache).await? {
                visible.push(run);
            }
        }
        Ok(visible)
    }

    /// One page of the runs the caller may see, newest first: at most `filter.limit`
    /// runs and at most [`RUNS_PAGE_MAX_BYTES`] of them (always at least one), read
    /// from the store a few at a time, so a page of large runs (payloads, summaries)
    /// costs the server a bounded amount of memory however large a `limit` the caller
    /// asks for. A person's page also ends after [`RUNS_PAGE_MAX_EXAMINED`] runs read
    /// (those hidden from them included); `next` says where the next page starts.
    pub async fn list_runs_page(
        &self,
        caller: &Caller,
        filter: &RunFilter,
    ) -> Result<RunsPage, PortError> {
        let limit = filter.limit as usize;
        let sees_all = caller.principal.is_admin();
        let mut cache = access::AccessCache::default();
        let mut runs: Vec<Run> = Vec::new();
        let mut bytes = 0;
        let mut examined = 0;
        let mut cursor = filter.before.clone();
        let page = |runs: Vec<Run>, more: bool, next: Option<RunId>| RunsPage {
            runs,
            more,
            next: if more { next } else { None },
        };
        loop {
            let want = (limit - runs.len()).min(RUNS_PAGE_CHUNK);
            let chunk_filter = RunFilter {
                before: cursor.clone(),
                // One extra run tells whether the store has more.
                limit: u32::try_from(want + 1).unwrap_or(u32::MAX),
                ..filter.clone()
            };
            let mut chunk = self.store.list_runs(&caller.org_id, &chunk_filter).await?;
            let store_has_more = chunk.len() > want;
            chunk.truncate(want);
            for run in chunk {
                examined += 1;
                if !sees_all && !self.may_view(caller, &run, &mut cache).await? {
                    cursor = Some(run.id.clone());
                    continue;
                }
                let size = run.approximate_json_size();
                if !runs.is_empty() && bytes + size > RUNS_PAGE_MAX_BYTES {
                    return Ok(page(runs, true, cursor));
                }
                bytes += size;
                cursor = Some(run.id.clone());
                runs.push(run);
            }
            if runs.len() >= limit || !store_has_more {
                return Ok(page(runs, store_has_more, cursor));
            }
            if examined >= RUNS_PAGE_MAX_EXAMINED {
                return Ok(page(runs, true, cursor));
            }
        }
    }

    /// Applies a command to a run and stores the result, re-applying it when another
    /// writer got there first. Returns the stored run and the log lines written.
    pub async fn apply(
        &self,
        org: &OrgId,
        id: &str,
        command: RunCommand,
        actor: &str,
    ) -> Result<(Run, Vec<RunLog>), PortError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let run = self.get_run_in(org, id).await?;
            let now = self.now();
            let outcome = transition(&run, command.clone(), actor, now)?;
            let mut logs = Vec::new();
            if let RunCommand::AddLog { message, .. } = &command {
                logs.push(NewRunLog::new(
                    self.ids.next::<LogId>(),
                    run.id.clone(),
                    message,
                    now,
                    actor,
                ));
            }
            for message in &outcome.system_logs {
                logs.push(NewRunLog::new(
                    self.ids.next::<LogId>(),
                    run.id.clone(),
                    message,
                    now,
                    crate::run::SYSTEM_ACTOR,
                ));
            }
            let delivery = if outcome.events.contains(&RunEvent::Dispatch) {
                self.new_delivery(&outcome.run, now)
            } else {
                None
            };
            if !outcome.changed(&run) && logs.is_empty() {
                return Ok((run, Vec::new()));
            }
            match self
                .store
                .save_transition(&outcome.run, run.version, &logs, delivery.as_ref())
                .await
            {
                Ok(saved) => {
                    let changed = outcome.changed(&run);
                    self.after_change(&outcome.run, changed, saved.clone(), delivery.is_some());
                    return Ok((outcome.run, saved));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PortError::new(
            ErrorKind::Conflict,
            format!("run {id} is changing too fast; try again"),
        ))
    }

    /// A backend reports on a run (Admins and organization credentials).
    pub async fn patch_run(
        &self,
        caller: &Caller,
        id: &str,
        patch: RunPatch,
    ) -> Result<Run, PortError> {
        caller.require_admin("update runs")?;
        Ok(self
            .apply(
                &caller.org_id,
                id,
                RunCommand::Patch(patch),
                caller.user_id(),
            )
            .await?
            .0)
    }

    pub async fn add_log(
        &self,
        caller: &Caller,
        id: &str,
        message: String,
        termination_status: Option<FinalStatus>,
        status_label: Option<String>,
    ) -> Result<RunLog, PortError> {
        caller.require_admin("write run logs")?;
        let command = RunCommand::AddLog {
            message,
            termination_status,
            status_label,
        };
        let (_, mut logs) = self
            .apply(&caller.org_id, id, command, caller.user_id())
            .await?;
        logs.drain(..)
            .next()
            .ok_or_else(|| PortError::internal("log line was not stored"))
    }

    pub async fn list_logs(
        &self,
        caller: &Caller,
        id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<RunLog>, PortError> {
        let run = self.get_run(caller, id).await?;
        Ok(self
            .store
            .list_logs(&caller.org_id, &run.id, offset, limit)
            .await?)
    }

    /// The caller approves a run waiting for approval (see [`Self::decide`]).
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        description: Option<String>,
    ) -> Result<Run, PortError> {
        self.decide(caller, id, crate::run::Decision::Approved, description)
            .await
    }

    /// The caller declines a run waiting for approval (see [`Self::decide`]).
    pub async fn decline(
        &self,
        caller: &Caller,
        id: &str,
        description: Option<String>,
    ) -> Result<Run, PortError> {
        self.decide(caller, id, crate::run::Decision::Declined, description)
            .await
    }

    /// Checks that an entity change may be bound to a run: the run exists in the
    /// caller's organization and is `IN_PROGRESS` (else `run_exhausted`, 400).
    pub async fn bindable_run(&self, caller: &Caller, run_id: &str) -> Result<Run, PortError> {
        let run = self.get_run(caller, run_id).await?;
        if run.state != RunState::InProgress {
            return Err(PortError::new(
                ErrorKind::RunExhausted,
                format!(
                    "run {run_id} is {} and no longer accepts changes",
                    run.status()
                ),
            )
            .on_entity_route());
        }
        Ok(run)
    }

    /// The record binding an entity change to a run.
    pub fn affected(
        &self,
        caller: &Caller,
        run: &Run,
        entity: &Entity,
        operation: EntityOperation,
    ) -> AffectedEntity {
        AffectedEntity {
            org_id: caller.org_id.clone(),
            run_id: run.id.clone(),
            blueprint: entity.blueprint.clone(),
            entity: entity.identifier.clone(),
            operation,
            at: self.now(),
            by: caller.user_id().to_owned(),
            snapshot: entity.to_json(),
        }
    }
}

/// The action's `approvers` list, our older extension: since approvers come from the
/// action's `approve` permission (as in Port), these are added to those an `ALL`
/// approval resolves to, for the actions that still carry one.
fn legacy_approvers(action: &Action) -> Vec<String> {
    action
        .definition
        .extra
        .get("approvers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
