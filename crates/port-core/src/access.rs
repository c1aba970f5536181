//! People, teams and who may do what: users with a role (Admin or Member) in one
//! organization, teams of users, the principal behind a call, action permissions
//! (`execute` and `approve`, Port's shape) and the audit trail.
//!
//! Pure: the permission rules that need the catalog or jq (a grant's `policy`) are
//! evaluated by the services, which hold the ports; everything decidable from the
//! principal alone is decided here.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::id::{OrgId, RunId};
use crate::time::Timestamp;

/// Most users of one team, grant or invitation list; bounds what a tenant stores.
pub const MAX_NAMES_PER_LIST: usize = 1_000;
/// Most queries or conditions of one policy.
pub const MAX_POLICY_PARTS: usize = 16;
/// Most bytes of a policy's jq condition.
pub const MAX_CONDITION_BYTES: usize = 4 * 1024;

/// Why a user, team or permission document was refused; the caller's 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0:?} is not an e-mail address")]
    Email(String),
    #[error("{0:?} is not a role: roles are Admin and Member")]
    Role(String),
    #[error(
        "{0:?} is not a team name (Port's pattern ^[^;#/?\\s][^;#/?]*[^;#/?\\s]$, at most 100 characters)"
    )]
    TeamName(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl AccessError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

// Port's pattern for invitee e-mails and team names.
static NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^;#/?\s][^;#/?]*[^;#/?\s]$").expect("valid regex"));

/// A user's e-mail address, their identity within an organization; kept lower-case
/// so `Ada@x.io` and `ada@x.io` are one user.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, AccessError> {
        let value = value.trim();
        // Port's pattern lets inner spaces through; an address has none.
        let valid = value.len() <= 254
            && NAME_RE.is_match(value)
            && !value.chars().any(char::is_whitespace)
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            });
        if valid {
            Ok(Self(value.to_lowercase()))
        } else {
            Err(AccessError::Email(value.chars().take(300).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

/// A team's name, unique in its organization (Port names teams, not ids, everywhere).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeamName(String);

impl TeamName {
    pub fn parse(value: &str) -> Result<Self, AccessError> {
        if value.chars().count() <= 100 && NAME_RE.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(AccessError::TeamName(value.chars().take(120).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TeamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TeamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TeamName({})", self.0)
    }
}

/// A person's role in their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Manages users, teams, actions and permissions.
    Admin,
    /// Uses what the permissions grant them.
    Member,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::Member => "Member",
        }
    }

    /// Port's role names; `admin` and `member` in any case too.
    pub fn parse(value: &str) -> Result<Self, AccessError> {
        match value.to_ascii_lowercase().as_str() {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(AccessError::Role(value.chars().take(100).collect())),
        }
    }
}

/// Whether a user has signed in yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Invited (or created) and never signed in.
    Invited,
    /// Has signed in at least once.
    Active,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invited => "Invited",
            Self::Active => "Active",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Invited" => Some(Self::Invited),
            "Active" => Some(Self::Active),
            _ => None,
        }
    }
}

/// A person of one organization. The same address in two organizations is two users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub org_id: OrgId,
    pub email: Email,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    /// Names of the teams the user belongs to, sorted; stores derive it from
    /// memberships (writing a user replaces them).
    pub teams: Vec<TeamName>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    /// Port's user shape (`GET /v1/users/{email}`).
    pub fn to_json(&self) -> Value {
        json!({
            "email": self.email.as_str(),
            "firstName": self.first_name.clone().unwrap_or_default(),
            "lastName": self.last_name.clone().unwrap_or_default(),
            "status": self.status.as_str(),
            "type": "Standard",
            "providers": ["port"],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "orgs": [{"id": self.org_id.as_str()}],
            "roles": [{"name": self.role.as_str()}],
            "teams": self.teams.iter().map(|t| json!({"name": t.as_str()})).collect::<Vec<_>>(),
        })
    }

    pub fn principal(&self) -> Person {
        Person {
            email: self.email.clone(),
            role: self.role,
            teams: self.teams.clone(),
        }
    }
}

/// A team of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub org_id: OrgId,
    pub name: TeamName,
    pub description: Option<String>,
    /// Members, sorted.
    pub users: Vec<Email>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Team {
    /// Port's team shape; members as `{email}` objects.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name.as_str()));
        m.insert("provider".into(), json!("port"));
        if let Some(description) = &self.description {
            m.insert("description".into(), json!(description));
        }
        m.insert(
            "users".into(),
            json!(
                self.users
                    .iter()
                    .map(|u| json!({"email": u.as_str()}))
                    .collect::<Vec<_>>()
            ),
        );
        m.insert("createdAt".into(), json!(self.created_at));
        m.insert("updatedAt".into(), json!(self.updated_at));
        Value::Object(m)
    }
}

/// A person as a call's principal: who they are and what their role and teams are
/// at the time of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: Email,
    pub role: Role,
    pub teams: Vec<TeamName>,
}

/// Who is behind a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An organization credential (a machine: CI, Port's agent, Ocean, automations):
    /// acts for the whole organization and may do everything in it, as in Port.
    Organization { client_id: String },
    /// A person: signed in to the web UI, or using their personal credential.
    Person(Person),
}

impl Principal {
    pub fn person(&self) -> Option<&Person> {
        match self {
            Self::Person(person) => Some(person),
            Self::Organization { .. } => None,
        }
    }

    /// Organization credentials and Admins.
    pub fn is_admin(&self) -> bool {
        match self {
            Self::Organization { .. } => true,
            Self::Person(person) => person.role == Role::Admin,
        }
    }

    /// Whether this is an organization credential (Port's `isMachine`).
    pub fn is_machine(&self) -> bool {
        matches!(self, Self::Organization { .. })
    }
}

/// A grant's dynamic part: catalog queries (Port's search query objects, by name)
/// and jq conditions over their results; any condition that is `true` admits.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub queries: Map<String, Value>,
    pub conditions: Vec<String>,
}

impl Policy {
    fn parse(value: &Value, field: &str) -> Result<Option<Self>, AccessError> {
        let object = match value {
            Value::Null => return Ok(None),
            Value::Object(object) => object,
            _ => return Err(AccessError::field(field, "must be an object or null")),
        };
        if let Some(key) = object
            .keys()
            .find(|k| *k != "queries" && *k != "conditions")
        {
            return Err(AccessError::field(
                format!("{field}.{key}"),
                "is not a policy field (queries, conditions)",
            ));
        }
        let queries = match object.get("queries") {
            Some(Value::Object(q)) if !q.is_empty() && q.len() <= MAX_POLICY_PARTS => {
                if let Some((name, _)) = q.iter().find(|(_, v)| !v.is_object()) {
                    return Err(AccessError::field(
                        format!("{field}.queries.{name}"),
                        "must be a search query object",
                    ));
                }
                q.clone()
            }
            _ => {
                return Err(AccessError::field(
                    format!("{field}.queries"),
                    format!("must be an object of 1 to {MAX_POLICY_PARTS} named queries"),
                ));
            }
        };
        let conditions = match object.get("conditions") {
            Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_POLICY_PARTS => list
                .iter()
                .map(|c| match c.as_str() {
                    Some(s) if !s.trim().is_empty() && s.len() <= MAX_CONDITION_BYTES => {
                        Ok(s.to_owned())
                    }
                    _ => Err(AccessError::field(
                        format!("{field}.conditions"),
                        format!(
                            "each condition is a jq expression of 1 to {MAX_CONDITION_BYTES} bytes"
                        ),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(AccessError::field(
                    format!("{field}.conditions"),
                    format!("must be an array of 1 to {MAX_POLICY_PARTS} jq expressions"),
                ));
            }
        };
        Ok(Some(Self {
            queries,
            conditions,
        }))
    }

    fn to_json(&self) -> Value {
        json!({"queries": self.queries, "conditions": self.conditions})
    }
}

/// Who a grant names statically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grant {
    pub users: Vec<Email>,
    pub roles: Vec<Role>,
    pub teams: Vec<TeamName>,
    pub policy: Option<Policy>,
}

impl Grant {
    /// Whether the grant names the person (by address, role or team), ignoring its
    /// policy, which the services evaluate.
    pub fn names(&self, person: &Person) -> bool {
        self.users.contains(&person.email)
            || self.roles.contains(&person.role)
            || self.teams.iter().any(|t| person.teams.contains(t))
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "users".into(),
            json!(self.users.iter().map(Email::as_str).collect::<Vec<_>>()),
        );
        m.insert(
            "roles".into(),
            json!(self.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        );
        m.insert(
            "teams".into(),
            json!(self.teams.iter().map(TeamName::as_str).collect::<Vec<_>>()),
        );
        m.insert(
            "policy".into(),
            self.policy.as_ref().map_or(Value::Null, Policy::to_json),
        );
        m
    }

    /// Applies the present keys of a patch object; `ownedByTeam` is the caller's.
    fn patch(&mut self, object: &Map<String, Value>, field: &str) -> Result<(), AccessError> {
        if let Some(users) = object.get("users") {
            self.users = names(users, &format!("{field}.users"), Email::parse)?;
        }
        if let Some(roles) = object.get("roles") {
            self.roles = names(roles, &format!("{field}.roles"), Role::parse)?;
        }
        if let Some(teams) = object.get("teams") {
            self.teams = names(teams, &format!("{field}.teams"), TeamName::parse)?;
        }
        if let Some(policy) = object.get("policy") {
            self.policy = Policy::parse(policy, &format!("{field}.policy"))?;
        }
        Ok(())
    }
}

/// Reads a bounded array of strings, each parsed, duplicates dropped, order kept.
pub fn names<T: PartialEq>(
    value: &Value,
    field: &str,
    parse: impl Fn(&str) -> Result<T, AccessError>,
) -> Result<Vec<T>, AccessError> {
    let Value::Array(list) = value else {
        return Err(AccessError::field(field, "must be an array of strings"));
    };
    if list.len() > MAX_NAMES_PER_LIST {
        return Err(AccessError::field(
            field,
            format!("holds at most {MAX_NAMES_PER_LIST} names"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let Some(text) = item.as_str() else {
            return Err(AccessError::field(field, "must be an array of strings"));
        };
        let parsed = parse(text)?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// An action's permissions (`GET`/`PATCH /v1/actions/{id}/permissions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionPermissions {
    pub execute: Grant,
    /// DAY-2 and DELETE actions: members of the entity's teams may execute too.
    pub owned_by_team: bool,
    pub approve: Grant,
}

impl Default for ActionPermissions {
    /// What an action has until someone sets its permissions: Admins execute and
    /// approve, Members nothing (secure by default; Port's own default).
    fn default() -> Self {
        let admins = Grant {
            roles: vec![Role::Admin],
            ..Grant::default()
        };
        Self {
            execute: admins.clone(),
            owned_by_team: false,
            approve: admins,
        }
    }
}

impl ActionPermissions {
    /// Port's shape.
    pub fn to_json(&self) -> Value {
        let mut execute = self.execute.to_json();
        execute.insert("ownedByTeam".into(), json!(self.owned_by_team));
        json!({"execute": execute, "approve": self.approve.to_json()})
    }

    /// Applies a `PATCH` body: present keys replace, absent ones stay; unknown keys
    /// are refused, as Port's schema does.
    pub fn patch(&mut self, body: &Value) -> Result<(), AccessError> {
        let Value::Object(body) = body else {
            return Err(AccessError::field("body", "must be an object"));
        };
        for (key, value) in body {
            let Value::Object(object) = value else {
                return Err(AccessError::field(key.as_str(), "must be an object"));
            };
            let allowed: &[&str] = match key.as_str() {
                "execute" => &["users", "roles", "teams", "ownedByTeam", "policy"],
                "approve" => &["users", "roles", "teams", "policy"],
                _ => {
                    return Err(AccessError::field(
                        key.as_str(),
                        "is not a permission (execute, approve)",
                    ));
                }
            };
            if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(AccessError::field(
                    format!("{key}.{unknown}"),
                    "is not a field of this permission",
                ));
            }
        }
        let mut next = self.clone();
        if let Some(Value::Object(execute)) = body.get("execute") {
            next.execute.patch(execute, "execute")?;
            if let Some(owned) = execute.get("ownedByTeam") {
                next.owned_by_team = owned.as_bool().ok_or_else(|| {
                    AccessError::field("execute.ownedByTeam", "must be a boolean")
                })?;
            }
        }
        if let Some(Value::Object(approve)) = body.get("approve") {
            next.approve.patch(approve, "approve")?;
        }
        *self = next;
        Ok(())
    }

    /// Reads a stored document (as [`Self::to_json`] writes it).
    pub fn from_json(value: &Value) -> Result<Self, AccessError> {
        let mut permissions = Self {
            execute: Grant::default(),
            owned_by_team: false,
            approve: Grant::default(),
        };
        permissions.patch(value)?;
        Ok(permissions)
    }
}

/// What kind of thing an audit entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditResource {
    Run,
    Action,
    Permissions,
    User,
    Team,
}

impl AuditResource {
    pub const ALL: [AuditResource; 5] = [
        Self::Run,
        Self::Action,
        Self::Permissions,
        Self::User,
        Self::Team,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Action => "action",
            Self::Permissions => "permissions",
            Self::User => "user",
            Self::Team => "team",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// One line of the audit trail: who did what to which resource, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub org_id: OrgId,
    /// Orders the trail; stores assign it (`0` before it is stored).
    pub seq: u64,
    pub at: Timestamp,
    pub resource: AuditResource,
    /// The resource's identifier (a run id, an action identifier, an e-mail, a team name).
    pub identifier: String,
    /// What was done: `CREATE`, `UPDATE`, `DELETE`, `APPROVE`, `DECLINE`, `WITHDRAW`, ...
    pub action: String,
    /// The run it concerns, when it concerns one.
    pub run_id: Option<RunId>,
    /// The e-mail of a person or the client id of a credential.
    pub by: String,
    /// Whether `by` is an organization credential.
    pub by_machine: bool,
    /// The person an organization credential acted for (`run_as`).
    pub on_behalf_of: Option<Email>,
    /// What changed, when worth saying (`{before, after}` or details).
    pub diff: Value,
}

impl AuditEntry {
    /// The wire shape of `/v1/audit-log`, close to Port's.
    pub fn to_json(&self) -> Value {
        let mut context = Map::new();
        if let Some(run) = &self.run_id {
            context.insert("runId".into(), json!(run.as_str()));
        }
        if let Some(person) = &self.on_behalf_of {
            context.insert("onBehalfOf".into(), json!(person.as_str()));
        }
        json!({
            "identifier": self.identifier,
            "resourceType": self.resource.as_str(),
            "action": self.action,
            "status": "SUCCESS",
            "trigger": {
                "by": {
                    "userId": self.by,
                    "orgId": self.org_id.as_str(),
                    "isMachine": self.by_machine,
                },
                "at": self.at,
                "origin": if self.by_machine { "API" } else { "UI" },
            },
            "context": context,
            "diff": self.diff,
        })
    }
}

/// Filters of `GET /v1/audit-log`; all present ones must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditFilter {
    pub resources: Vec<AuditResource>,
    pub identifier: Option<String>,
    pub run_id: Option<RunId>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Newest first, at most this many.
    pub limit: u32,
}

/// A password hash in PHC string form (argon2id); never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A signed-in browser session; the store keeps only a hash of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Hex SHA-256 of the cookie's token.
    pub token_hash: String,
    pub org_id: OrgId,
    pub email: Email,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_lower_cased() {
        assert_eq!(
            Email::parse(" Ada@Example.io ").unwrap().as_str(),
            "ada@example.io"
        );
        for bad in ["", "ada", "@x.io", "ada@", "a b@x.io", "ada@x.io/", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_permissions_name_admins_only() {
        let permissions = ActionPermissions::default();
        let admin = Person {
            email: Email::parse("a@x.io").unwrap(),
            role: Role::Admin,
            teams: vec![],
        };
        let member = Person {
            role: Role::Member,
            ..admin.clone()
        };
        assert!(permissions.execute.names(&admin));
        assert!(!permissions.execute.names(&member));
        assert!(!permissions.approve.names(&member));
    }

    #[test]
    fn patches_replace_present_keys_and_refuse_unknown_ones() {
        let mut permissions = ActionPermissions::default();
        permissions
            .patch(&json!({"execute": {"teams": ["Platform"], "ownedByTeam": true}}))
            .unwrap();
        assert_eq!(permissions.execute.roles, vec![Role::Admin]);
        assert_eq!(
            permissions.execute.teams,
            vec![TeamName::parse("Platform").unwrap()]
        );
        assert!(permissions.owned_by_team);
        let before = permissions.clone();
        assert!(
            permissions
                .patch(&json!({"approve": {"ownedByTeam": true}}))
                .is_err()
        );
        assert!(
            permissions
                .patch(&json!({"execute": {"roles": ["Owner"]}}))
                .is_err()
        );
        assert_eq!(permissions, before, "a refused patch changes nothing");
        let round = ActionPermissions::from_json(&permissions.to_json()).unwrap();
        assert_eq!(round, permissions);
    }

    #[test]
    fn policies_are_bounded() {
        let mut permissions = ActionPermissions::default();
        let many: Vec<String> = (0..=MAX_POLICY_PARTS).map(|i| format!("{i} > 0")).collect();
        assert!(
            permissions
                .patch(&json!({"execute": {"policy": {"queries": {"q": {}}, "conditions": many}}}))
                .is_err()
        );
        permissions
            .patch(&json!({"execute": {"policy": {"queries": {"q": {"combinator": "and", "rules": []}}, "conditions": ["true"]}}}))
            .unwrap();
        assert!(permissions.execute.policy.is_some());
        permissions
            .patch(&json!({"execute": {"policy": null}}))
            .unwrap();
        assert!(permissions.execute.policy.is_none());
    }
}
