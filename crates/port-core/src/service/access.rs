//! Users, teams, action permissions and the audit trail: who may run, approve and see
//! what, decided here for every route.
//!
//! Organization credentials (machines) may do everything in their organization. People
//! act by their role, teams and the action permissions: Admins manage users, teams,
//! permissions, actions and blueprints and read the audit log; Members list users and
//! teams, read actions and their permissions, and execute, approve and see runs as the
//! permissions grant (see [`Services::execute`], [`Services::decide`],
//! [`Services::get_run`]).
//!
//! A grant admits a person when it names them (users, roles, teams; `ownedByTeam` on
//! execute) or when its `policy` admits them: its queries run through the bounded
//! search, then its jq conditions through the [`crate::ports::TemplateEngine`] (its
//! budget) against `{user, action, inputs, entity, results}`; a condition giving `true`
//! admits. A policy that errors or runs out of budget admits nobody, and says why.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{Caller, Services};
use crate::access::{
    AccessError, ActionPermissions, AuditEntry, AuditFilter, AuditResource, Email, Grant, Person,
    Policy, Role, Team, TeamName, User, UserStatus, names,
};
use crate::action::Action;
use crate::catalog::Entity;
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::{ActionIdentifier, OrgId, RunId};
use crate::run::{ApprovalPolicy, Run};
use crate::search::{EntityQuery, Stopped};
use crate::template::{SourceLimits, TemplateError};

/// Most entities one policy query may give its conditions; a query matching more
/// admits nobody (a cut list could admit or refuse wrongly).
pub const MAX_POLICY_RESULTS: usize = 1_000;
/// Most bytes (JSON) of all of one policy's query results together.
pub const MAX_POLICY_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// Longest team description, in characters.
pub const MAX_TEAM_DESCRIPTION_CHARS: usize = 4_096;
/// Longest first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// `GET /v1/audit-log`'s `limit`: default and largest.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 1_000;

/// A user to create (`portd users create`, or an Admin through the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: Email,
    pub role: Role,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub teams: Vec<TeamName>,
}

impl From<AccessError> for PortError {
    fn from(e: AccessError) -> Self {
        PortError::invalid(e.to_string())
    }
}

pub(crate) fn forbidden(message: impl Into<String>) -> PortError {
    PortError::new(ErrorKind::MissingPermissions, message)
}

fn user_not_found(email: &str) -> PortError {
    PortError::not_found(format!("user {email}"))
}

fn team_not_found(name: &str) -> PortError {
    PortError::not_found(format!("team {name}"))
}

fn action_not_found(identifier: &str) -> PortError {
    PortError::not_found(format!("action {identifier}"))
}

/// Refuses keys of a body object that are not in `allowed` (Port's schemas are closed).
fn object<'v>(
    value: &'v Value,
    field: &str,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, PortError> {
    let Value::Object(map) = value else {
        return Err(PortError::invalid(format!("{field}: must be an object")));
    };
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let at = if field == "body" {
            key.clone()
        } else {
            format!("{field}.{key}")
        };
        return Err(PortError::invalid(format!(
            "{at}: is not a field here (expected {})",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

/// The role a `roles` list gives: its first (Port's users have one role here).
fn role_of(value: &Value, field: &str) -> Result<Role, PortError> {
    names(value, field, Role::parse)?
        .into_iter()
        .next()
        .ok_or_else(|| PortError::invalid(format!("{field}: must name a role (Admin, Member)")))
}

fn optional_text(
    map: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, PortError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(PortError::invalid(format!(
            "{key}: must be a string of at most {max} characters"
        ))),
    }
}

/// Which grant of an action's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GrantKind {
    Execute,
    Approve,
}

impl GrantKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::Approve => "approve",
        }
    }
}

/// Whether a policy admitted a person, and if not, why (for the 403's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    Deny(String),
}

/// What a grant is evaluated about: the action, the run's (or request's) inputs and
/// the entity it runs on.
pub(crate) struct Subject<'a> {
    pub action: &'a Action,
    pub inputs: &'a Map<String, Value>,
    pub entity: Option<Value>,
}

/// What one call learns while it decides access, so that a run list reads each action
/// and its permissions (and runs a policy's queries) once, not once per run.
#[derive(Default)]
pub(crate) struct AccessCache {
    actions: HashMap<String, Option<Action>>,
    permissions: HashMap<String, ActionPermissions>,
    results: HashMap<(String, GrantKind), Result<Value, String>>,
}

/// The user as a policy's conditions see them.
fn user_json(person: &Person) -> Value {
    json!({
        "email": person.email.as_str(),
        "role": person.role.as_str(),
        "teams": person.teams.iter().map(TeamName::as_str).collect::<Vec<_>>(),
    })
}

/// The conditions as one template: a list of whole-string templates, each rendering to
/// its condition's value.
fn conditions_template(policy: &Policy) -> Value {
    Value::Array(
        policy
            .conditions
            .iter()
            .map(|c| Value::String(format!("{{{{ {c} }}}}")))
            .collect(),
    )
}

/// The teams an entity belongs to (`team`: a string or a list of them).
pub(crate) fn entity_teams(entity: &Entity) -> Vec<&str> {
    match &entity.team {
        Some(Value::String(team)) => vec![team.as_str()],
        Some(Value::Array(teams)) => teams.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Checks a permissions document's policies as far as can be done without running
/// them: each query parses within the search limits, each condition within the
/// template source limits.
fn check_policies(permissions: &ActionPermissions) -> Result<(), PortError> {
    for (kind, grant) in [
        ("execute", &permissions.execute),
        ("approve", &permissions.approve),
    ] {
        let Some(policy) = &grant.policy else {
            continue;
        };
        for (name, query) in &policy.queries {
            EntityQuery::parse(query, &format!("{kind}.policy.queries.{name}"))?;
        }
        crate::template::check(&conditions_template(policy), &SourceLimits::default())
            .map_err(|e| PortError::invalid(format!("{kind}.policy.conditions: {e}")))?;
    }
    Ok(())
}

impl Caller {
    /// 403 `missing_permissions` unless the caller is an Admin or an organization
    /// credential; `what` completes "only Admins and organization credentials may …".
    pub fn require_admin(&self, what: &str) -> Result<(), PortError> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(forbidden(format!(
                "only Admins and organization credentials may {what}"
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

impl Services {
    /// The organization's users, by address (anyone of the organization may list them).
    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<User>, PortError> {
        Ok(self.store.list_users(&caller.org_id).await?)
    }

    /// One user of the organization (404 when there is none).
    pub async fn get_user(&self, caller: &Caller, email: &str) -> Result<User, PortError> {
        let parsed = Email::parse(email).map_err(|_| user_not_found(email))?;
        self.store
            .get_user(&caller.org_id, &parsed)
            .await?
            .ok_or_else(|| user_not_found(email))
    }

    /// `POST /v1/users/invite`: `{invitee: {email, roles?, teams?}}`; the role is the
    /// first of `roles` (Member when none). The user exists at once, `Invited` until
    /// they first sign in. portd sends no e-mail.
    pub async fn invite_user(&self, caller: &Caller, body: &Value) -> Result<User, PortError> {
        caller.require_admin("invite users")?;
        let body = object(body, "body", &["invitee"])?;
        let invitee = object(
            body.get("invitee")
                .ok_or_else(|| PortError::invalid("invitee: is required"))?,
            "invitee",
            &["email", "roles", "teams"],
        )?;
        let email = match invitee.get("email") {
            Some(Value::String(email)) => Email::parse(email)?,
            _ => return Err(PortError::invalid("invitee.email: is required (a string)")),
        };
        let role = match invitee.get("roles") {
            None => Role::Member,
            Some(Value::Array(list)) if list.is_empty() => Role::Member,
            Some(roles) => role_of(roles, "invitee.roles")?,
        };
        let teams = match invitee.get("teams") {
            None => Vec::new(),
            Some(teams) => names(teams, "invitee.teams", TeamName::parse)?,
        };
        self.create_user(
            caller,
            NewUser {
                email,
                role,
                first_name: None,
                last_name: None,
                teams,
            },
        )
        .await
    }

    /// Creates a user (`portd users create`); 409 `identifier_taken` when the address
    /// is a user of the organization already, 422 when a team does not exist.
    pub async fn create_user(&self, caller: &Caller, new: NewUser) -> Result<User, PortError> {
        caller.require_admin("create users")?;
        for (field, name) in [("firstName", &new.first_name), ("lastName", &new.last_name)] {
            if name
                .as_ref()
                .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
            {
                return Err(PortError::invalid(format!(
                    "{field}: must be at most {MAX_NAME_CHARS} characters"
                )));
            }
        }
        let mut teams = new.teams;
        teams.sort();
        teams.dedup();
        let now = self.now();
        let user = User {
            org_id: caller.org_id.clone(),
            email: new.email,
            first_name: new.first_name,
            last_name: new.last_name,
            role: new.role,
            status: UserStatus::Invited,
            teams,
            created_at: now,
            updated_at: now,
        };
        self.store.create_user(&user).await.map_err(|e| match e {
            StoreError::AlreadyExists(_) => PortError::new(
                ErrorKind::IdentifierTaken,
                format!("{} is a user of the organization already", user.email),
            ),
            other => other.into(),
        })?;
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::User,
            user.email.as_str(),
            "CREATE",
            json!({ "after": user.to_json() }),
        ))
        .await?;
        Ok(user)
    }

    /// `PATCH /v1/users/{email}`: `{roles?, teams?}` (present keys replace). The
    /// organization's last Admin is never demoted (422).
    pub async fn update_user(
        &self,
        caller: &Caller,
        email: &str,
        body: &Value,
    ) -> Result<User, PortError> {
        caller.require_admin("change users")?;
        let body = object(body, "body", &["roles", "teams"])?;
        let before = self.get_user(caller, email).await?;
        let mut user = before.clone();
        if let Some(roles) = body.get("roles") {
            user.role = role_of(roles, "roles")?;
        }
        if let Some(teams) = body.get("teams") {
            user.teams = names(teams, "teams", TeamName::parse)?;
            user.teams.sort();
        }
        if before.role == Role::Admin && user.role != Role::Admin {
            self.keep_an_admin(caller, &before, "demoted").await?;
        }
        user.updated_at = self.now();
        if !self.store.update_user(&user).await? {
            return Err(user_not_found(email));
        }
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::User,
            user.email.as_str(),
            "UPDATE",
            json!({ "before": before.to_json(), "after": user.to_json() }),
        ))
        .await?;
        Ok(user)
    }

    /// Deletes a user with their memberships, password, sessions and personal
    /// credentials. The organization's last Admin is never deleted (422).
    pub async fn delete_user(&self, caller: &Caller, email: &str) -> Result<(), PortError> {
        caller.require_admin("delete users")?;
        let before = self.get_user(caller, email).await?;
        if before.role == Role::Admin {
            self.keep_an_admin(caller, &before, "deleted").await?;
        }
        if !self
            .store
            .delete_user(&caller.org_id, &before.email)
            .await?
        {
            return Err(user_not_found(email));
        }
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::User,
            before.email.as_str(),
            "DELETE",
            json!({ "before": before.to_json() }),
        ))
        .await
    }

    /// 422 when `admin` is the organization's only Admin. (Two Admins demoting each
    /// other at the same instant may both pass; the organization's credentials still
    /// manage it then.)
    async fn keep_an_admin(
        &self,
        caller: &Caller,
        admin: &User,
        what: &str,
    ) -> Result<(), PortError> {
        let others = self
            .store
            .list_users(&caller.org_id)
            .await?
            .into_iter()
            .filter(|u| u.role == Role::Admin && u.email != admin.email)
            .count();
        if others == 0 {
            return Err(PortError::invalid(format!(
                "{} is the organization's last Admin and cannot be {what}; make another user an Admin first",
                admin.email
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Teams
// ---------------------------------------------------------------------------------------

/// A team document's fields, as a body gives them.
struct TeamFields {
    name: Option<TeamName>,
    description: Option<Option<String>>,
    users: Option<Vec<Email>>,
}

fn team_fields(body: &Value) -> Result<TeamFields, PortError> {
    let body = object(body, "body", &["name", "description", "users"])?;
    let name = match body.get("name") {
        None => None,
        Some(Value::String(name)) => Some(TeamName::parse(name)?),
        Some(_) => return Err(PortError::invalid("name: must be a string")),
    };
    let description = body
        .contains_key("description")
        .then(|| optional_text(body, "description", MAX_TEAM_DESCRIPTION_CHARS))
        .transpose()?;
    let users = body
        .get("users")
        .map(|users| names(users, "users", Email::parse))
        .transpose()?;
    Ok(TeamFields {
        name,
        description,
        users,
    })
}

fn team_store_error(e: StoreError, name: &TeamName) -> PortError {
    match e {
        StoreError::AlreadyExists(_) => PortError::new(
            ErrorKind::IdentifierTaken,
            format!("a team named {name} already exists"),
        ),
        other => other.into(),
    }
}

impl Services {
    /// The organization's teams, by name (anyone of the organization may list them).
    pub async fn list_teams(&self, caller: &Caller) -> Result<Vec<Team>, PortError> {
        Ok(self.store.list_teams(&caller.org_id).await?)
    }

    /// One team (404 when there is none).
    pub async fn get_team(&self, caller: &Caller, name: &str) -> Result<Team, PortError> {
        let parsed = TeamName::parse(name).map_err(|_| team_not_found(name))?;
        self.store
            .get_team(&caller.org_id, &parsed)
            .await?
            .ok_or_else(|| team_not_found(name))
    }

    /// `POST /v1/teams`: `{name, description?, users?}`; 409 when the name is taken,
    /// 422 when a member is not a user of the organization.
    pub async fn create_team(&self, caller: &Caller, body: &Value) -> Result<Team, PortError> {
        caller.require_admin("create teams")?;
        let fields = team_fields(body)?;
        let name = fields
            .name
            .ok_or_else(|| PortError::invalid("name: is required"))?;
        let now = self.now();
        let mut users = fields.users.unwrap_or_default();
        users.sort();
        let team = Team {
            org_id: caller.org_id.clone(),
            name,
            description: fields.description.flatten(),
            users,
            created_at: now,
            updated_at: now,
        };
        self.store
            .create_team(&team)
            .await
            .map_err(|e| team_store_error(e, &team.name))?;
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::Team,
            team.name.as_str(),
            "CREATE",
            json!({ "after": team.to_json() }),
        ))
        .await?;
        Ok(team)
    }

    /// `PATCH` (`replace == false`: present keys replace) or `PUT` (`replace == true`:
    /// the body is the whole team; an absent description or member list empties it)
    /// `/v1/teams/{name}`. A new `name` renames the team, members kept.
    pub async fn update_team(
        &self,
        caller: &Caller,
        name: &str,
        body: &Value,
        replace: bool,
    ) -> Result<Team, PortError> {
        caller.require_admin("change teams")?;
        let fields = team_fields(body)?;
        let before = self.get_team(caller, name).await?;
        let mut team = before.clone();
        if let Some(name) = fields.name {
            team.name = name;
        }
        match fields.description {
            Some(description) => team.description = description,
            None if replace => team.description = None,
            None => {}
        }
        match fields.users {
            Some(users) => team.users = users,
            None if replace => team.users = Vec::new(),
            None => {}
        }
        team.users.sort();
        team.updated_at = self.now();
        if !self
            .store
            .update_team(&before.name, &team)
            .await
            .map_err(|e| team_store_error(e, &team.name))?
        {
            return Err(team_not_found(name));
        }
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::Team,
            before.name.as_str(),
            "UPDATE",
            json!({ "before": before.to_json(), "after": team.to_json() }),
        ))
        .await?;
        Ok(team)
    }

    /// Deletes a team and its memberships (grants naming it then name nobody).
    pub async fn delete_team(&self, caller: &Caller, name: &str) -> Result<(), PortError> {
        caller.require_admin("delete teams")?;
        let before = self.get_team(caller, name).await?;
        if !self.store.delete_team(&caller.org_id, &before.name).await? {
            return Err(team_not_found(name));
        }
        self.record_audit(self.audit_entry(
            caller,
            AuditResource::Team,
            before.name.as_str(),
            "DELETE",
            json!({ "before": before.to_json() }),
        ))
        .await
    }
}

// ---------------------------------------------------------------------------------------
// Action permissions and the audit trail
// ---------------------------------------------------------------------------------------

impl Services {
    /// An action's permissions: as set, or [`ActionPermissions::default`] (Admins only)
    /// until someone sets them; 404 for an unknown action. Anyone of the organization
    /// may read them.
    pub async fn action_permissions(
        &self,
        caller: &Caller,
        action: &str,
    ) -> Result<ActionPermissions, PortError> {
        let action = self.get_action(caller, action).await?;
        self.permissions_of(&caller.org_id, &action.definition.identifier)
            .await
    }

    /// `PATCH /v1/actions/{id}/permissions` (Admins and organization credentials):
    /// present keys replace, checked (names, policies' queries and conditions) before
    /// they are stored with their audit entry, in one transaction.
    pub async fn patch_action_permissions(
        &self,
        caller: &Caller,
        action: &str,
        body: &Value,
    ) -> Result<ActionPermissions, PortError> {
        caller.require_admin("change action permissions")?;
        let found = self.get_action(caller, action).await?;
        let identifier = &found.definition.identifier;
        let before = self.permissions_of(&caller.org_id, identifier).await?;
        let mut after = before.clone();
        after.patch(body)?;
        check_policies(&after)?;
        let audit = self.audit_entry(
            caller,
            AuditResource::Permissions,
            identifier.as_str(),
            "UPDATE",
            json!({ "before": before.to_json(), "after": after.to_json() }),
        );
        if !self
            .store
            .put_permissions(&caller.org_id, identifier, &after, &audit)
            .await?
        {
            return Err(action_not_found(action));
        }
        Ok(after)
    }

    /// The organization's audit trail (Admins and organization credentials), newest
    /// first; `limit` 0 means [`AUDIT_DEFAULT_LIMIT`], larger than
    /// [`AUDIT_MAX_LIMIT`] is 422.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        mut filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>, PortError> {
        caller.require_admin("read the audit log")?;
        if filter.limit == 0 {
            filter.limit = AUDIT_DEFAULT_LIMIT;
        }
        if filter.limit > AUDIT_MAX_LIMIT {
            return Err(PortError::invalid(format!(
                "limit: must be between 1 and {AUDIT_MAX_LIMIT}"
            )));
        }
        Ok(self.store.list_audit(&caller.org_id, &filter).await?)
    }

    /// An audit entry of the caller's, stamped now.
    pub(crate) fn audit_entry(
        &self,
        caller: &Caller,
        resource: AuditResource,
        identifier: &str,
        action: &str,
        diff: Value,
    ) -> AuditEntry {
        AuditEntry {
            org_id: caller.org_id.clone(),
            seq: 0,
            at: self.now(),
            resource,
            identifier: identifier.to_owned(),
            action: action.to_owned(),
            run_id: None,
            by: caller.user_id().to_owned(),
            by_machine: caller.principal.is_machine(),
            on_behalf_of: None,
            diff,
        }
    }

    /// An audit entry about a run.
    pub(crate) fn run_audit_entry(
        &self,
        caller: &Caller,
        run: &RunId,
        action: &str,
        diff: Value,
    ) -> AuditEntry {
        AuditEntry {
            run_id: Some(run.clone()),
            ..self.audit_entry(caller, AuditResource::Run, run.as_str(), action, diff)
        }
    }

    pub(crate) async fn record_audit(&self, entry: AuditEntry) -> Result<(), PortError> {
        Ok(self.store.record_audit(&entry).await?)
    }

    /// The permissions an action has now: as set, or the default.
    pub(crate) async fn permissions_of(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
    ) -> Result<ActionPermissions, PortError> {
        Ok(self
            .store
            .get_permissions(org, action)
            .await?
            .unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------
// Deciding: grants, policies, approvers, visibility
// ---------------------------------------------------------------------------------------

impl Services {
    /// An action by identifier, read once per call (`None` once it is deleted).
    pub(crate) async fn cached_action(
        &self,
        org: &OrgId,
        identifier: &str,
        cache: &mut AccessCache,
    ) -> Result<Option<Action>, PortError> {
        if let Some(found) = cache.actions.get(identifier) {
            return Ok(found.clone());
        }
        let found = match ActionIdentifier::parse(identifier) {
            Ok(id) => self.store.get_action(org, &id).await?,
            Err(_) => None,
        };
        cache.actions.insert(identifier.to_owned(), found.clone());
        Ok(found)
    }

    /// An action's permissions, read once per call (the default for a deleted action).
    pub(crate) async fn cached_permissions(
        &self,
        org: &OrgId,
        identifier: &str,
        cache: &mut AccessCache,
    ) -> Result<ActionPermissions, PortError> {
        if let Some(found) = cache.permissions.get(identifier) {
            return Ok(found.clone());
        }
        let found = match ActionIdentifier::parse(identifier) {
            Ok(id) => self.permissions_of(org, &id).await?,
            Err(_) => ActionPermissions::default(),
        };
        cache
            .permissions
            .insert(identifier.to_owned(), found.clone());
        Ok(found)
    }

    /// Runs a policy for a person: its queries (each through the bounded search, at
    /// most [`MAX_POLICY_RESULTS`] entities), then its conditions in one render within
    /// the template engine's budget. Errors of the policy itself are a [`Verdict::Deny`]
    /// saying why; only a store or template engine that cannot answer now is an error.
    pub(crate) async fn policy_verdict(
        &self,
        caller: &Caller,
        kind: GrantKind,
        policy: &Policy,
        person: &Person,
        subject: &Subject<'_>,
        cache: &mut AccessCache,
    ) -> Result<Verdict, PortError> {
        let key = (
            subject.action.definition.identifier.as_str().to_owned(),
            kind,
        );
        let results = match cache.results.get(&key) {
            Some(results) => results.clone(),
            None => {
                let results = self.policy_results(caller, kind, policy).await?;
                cache.results.insert(key, results.clone());
                results
            }
        };
        let results = match results {
            Ok(results) => results,
            Err(why) => return Ok(Verdict::Deny(why)),
        };
        let context = json!({
            "user": user_json(person),
            "action": subject.action.to_v2_json(),
            "inputs": subject.inputs,
            "entity": subject.entity.clone().unwrap_or(Value::Null),
            "results": results,
        });
        let rendered = match self
            .templates
            .render(&caller.org_id, &conditions_template(policy), &context)
            .await
        {
            Ok(rendered) => rendered,
            Err(e @ TemplateError::Unavailable { .. }) => {
                return Err(crate::invocation::template_error(&e));
            }
            Err(e) => {
                return Ok(Verdict::Deny(format!(
                    "the action's {} policy could not be evaluated: {e}",
                    kind.as_str()
                )));
            }
        };
        let admitted = rendered
            .as_array()
            .is_some_and(|results| results.iter().any(|r| r == &Value::Bool(true)));
        Ok(if admitted {
            Verdict::Admit
        } else {
            Verdict::Deny(format!(
                "no condition of the action's {} policy holds for {}",
                kind.as_str(),
                person.email
            ))
        })
    }

    /// A policy's query results, `{name: [entities]}`, or why they could not be had.
    async fn policy_results(
        &self,
        caller: &Caller,
        kind: GrantKind,
        policy: &Policy,
    ) -> Result<Result<Value, String>, PortError> {
        let mut results = Map::new();
        let mut bytes = 0;
        for (name, query) in &policy.queries {
            let what = format!("the action's {} policy query {name}", kind.as_str());
            let parsed = match EntityQuery::parse(query, &format!("queries.{name}")) {
                Ok(parsed) => parsed,
                Err(e) => return Ok(Err(format!("{what} is invalid: {}", e.message))),
            };
            let scope = parsed.scope();
            let page = match self
                .search_entities(caller, &parsed, scope, None, MAX_POLICY_RESULTS + 1)
                .await
            {
                Ok(page) => page,
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::ServiceUnavailable | ErrorKind::TooManyRequests
                    ) =>
                {
                    return Err(e);
                }
                Err(e) => return Ok(Err(format!("{what} failed: {}", e.message))),
            };
            if page.stopped == Some(Stopped::Budget) {
                return Ok(Err(format!(
                    "{what} would examine more of the catalog than a search may"
                )));
            }
            if page.entities.len() > MAX_POLICY_RESULTS {
                return Ok(Err(format!(
                    "{what} matches more than {MAX_POLICY_RESULTS} entities"
                )));
            }
            let mut entities = Vec::with_capacity(page.entities.len());
            for entity in &page.entities {
                let json = entity.to_json();
                bytes += serde_json::to_vec(&json).map_or(usize::MAX, |v| v.len());
                if bytes > MAX_POLICY_RESULT_BYTES {
                    return Ok(Err(format!(
                        "the action's {} policy queries give more than {} MiB of entities",
                        kind.as_str(),
                        MAX_POLICY_RESULT_BYTES / (1024 * 1024)
                    )));
                }
                entities.push(json);
            }
            results.insert(name.clone(), Value::Array(entities));
        }
        Ok(Ok(Value::Object(results)))
    }

    /// Whether a grant admits a person: it names them, or its policy admits them.
    pub(crate) async fn grant_verdict(
        &self,
        caller: &Caller,
        kind: GrantKind,
        grant: &Grant,
        person: &Person,
        subject: &Subject<'_>,
        cache: &mut AccessCache,
    ) -> Result<Verdict, PortError> {
        if grant.names(person) {
            return Ok(Verdict::Admit);
        }
        match &grant.policy {
            Some(policy) => {
                self.policy_verdict(caller, kind, policy, person, subject, cache)
                    .await
            }
            None => Ok(Verdict::Deny(format!(
                "the action's {} permission does not name {}",
                kind.as_str(),
                person.email
            ))),
        }
    }

    /// The execute permission for `person`: named, a member of one of the entity's
    /// teams with `ownedByTeam`, or admitted by the policy; else 403 saying why.
    pub(crate) async fn check_execute(
        &self,
        caller: &Caller,
        person: &Person,
        permissions: &ActionPermissions,
        entity: Option<&Entity>,
        subject: &Subject<'_>,
    ) -> Result<(), PortError> {
        let owned = permissions.owned_by_team
            && entity.is_some_and(|e| {
                entity_teams(e)
                    .iter()
                    .any(|t| person.teams.iter().any(|p| p.as_str() == *t))
            });
        if owned {
            return Ok(());
        }
        let mut cache = AccessCache::default();
        match self
            .grant_verdict(
                caller,
                GrantKind::Execute,
                &permissions.execute,
                person,
                subject,
                &mut cache,
            )
            .await?
        {
            Verdict::Admit => Ok(()),
            Verdict::Deny(why) => Err(forbidden(format!(
                "{} may not execute action {}: {why}",
                person.email, subject.action.definition.identifier
            ))),
        }
    }

    /// The approvers the approve grant names among the organization's users (its
    /// static part: users, roles, teams), by address; the requester only when the
    /// grant names them in `users` (no one approves their own run otherwise).
    pub(crate) async fn named_approvers(
        &self,
        org: &OrgId,
        permissions: &ActionPermissions,
        requester: &str,
    ) -> Result<Vec<String>, PortError> {
        let grant = &permissions.approve;
        Ok(self
            .store
            .list_users(org)
            .await?
            .into_iter()
            .filter(|user| grant.names(&user.principal()))
            .filter(|user| user.email.as_str() != requester || grant.users.contains(&user.email))
            .map(|user| user.email.to_string())
            .collect())
    }

    /// Whether `person` may approve or decline `run` now (they are not its requester
    /// unless named in the approve grant's `users`; for an `ALL` run with designated
    /// approvers, they are one; else the approve grant admits them); 403 saying why.
    pub(crate) async fn check_decide(
        &self,
        caller: &Caller,
        person: &Person,
        run: &Run,
        cache: &mut AccessCache,
    ) -> Result<(), PortError> {
        let org = &caller.org_id;
        let permissions = self
            .cached_permissions(org, run.action.identifier.as_str(), cache)
            .await?;
        if run.created_by == person.email.as_str()
            && !permissions.approve.users.contains(&person.email)
        {
            return Err(forbidden(format!(
                "{} requested run {} and may not decide on it: only an approver the action's approve permission names in users may decide on their own runs",
                person.email, run.id
            )));
        }
        if let ApprovalPolicy::All { approvers } = &run.approval_policy
            && !approvers.is_empty()
        {
            return if approvers.iter().any(|a| a == person.email.as_str()) {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "{} is not one of the approvers of run {}",
                    person.email, run.id
                )))
            };
        }
        match self
            .approve_verdict(caller, person, run, &permissions, cache)
            .await?
        {
            Verdict::Admit => Ok(()),
            Verdict::Deny(why) => Err(forbidden(format!(
                "{} may not approve or decline run {}: {why}",
                person.email, run.id
            ))),
        }
    }

    async fn approve_verdict(
        &self,
        caller: &Caller,
        person: &Person,
        run: &Run,
        permissions: &ActionPermissions,
        cache: &mut AccessCache,
    ) -> Result<Verdict, PortError> {
        if permissions.approve.names(person) {
            return Ok(Verdict::Admit);
        }
        if permissions.approve.policy.is_none() {
            return Ok(Verdict::Deny(format!(
                "the action's approve permission does not name {}",
                person.email
            )));
        }
        let org = &caller.org_id;
        let Some(action) = self
            .cached_action(org, run.action.identifier.as_str(), cache)
            .await?
        else {
            return Ok(Verdict::Deny(format!(
                "action {} no longer exists",
                run.action.identifier
            )));
        };
        let entity = match (&run.blueprint, &run.entity) {
            (Some(bp), Some(e)) => self
                .get_entity(org, &bp.identifier, &e.identifier)
                .await?
                .map(|e| e.to_json()),
            _ => None,
        };
        let subject = Subject {
            action: &action,
            inputs: &run.properties,
            entity,
        };
        self.grant_verdict(
            caller,
            GrantKind::Approve,
            &permissions.approve,
            person,
            &subject,
            cache,
        )
        .await
    }

    /// Whether the caller may see a run: organization credentials and Admins see every
    /// run; a person sees the runs they requested, the runs of actions with
    /// `allowAnyoneToViewRuns`, and the runs they may approve.
    pub(crate) async fn may_view(
        &self,
        caller: &Caller,
        run: &Run,
        cache: &mut AccessCache,
    ) -> Result<bool, PortError> {
        let Some(person) = caller.principal.person() else {
            return Ok(true);
        };
        if caller.principal.is_admin() || run.created_by == person.email.as_str() {
            return Ok(true);
        }
        if run
            .approval_policy
            .approvers()
            .iter()
            .any(|a| a == person.email.as_str())
        {
            return Ok(true);
        }
        let org = &caller.org_id;
        let action = self
            .cached_action(org, run.action.identifier.as_str(), cache)
            .await?;
        if action
            .as_ref()
            .is_some_and(|a| a.definition.allow_anyone_to_view_runs == Some(true))
        {
            return Ok(true);
        }
        let permissions = self
            .cached_permissions(org, run.action.identifier.as_str(), cache)
            .await?;
        Ok(self
            .approve_verdict(caller, person, run, &permissions, cache)
            .await?
            == Verdict::Admit)
    }
}
