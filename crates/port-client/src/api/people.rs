//! People and what they may do: users (`/v1/users`), teams (`/v1/teams`), an action's
//! permissions, the audit trail (`/v1/audit-log`), withdrawing a run waiting for
//! approval, and a person's own credentials (`/v1/auth/credentials`).

use reqwest::Method;
use serde_json::{Value, json};

use super::catalog::to_json;
use crate::client::{PortClient, Repeat};
use crate::error::ClientError;
use crate::requests::{AuditQuery, Query, TeamRequest, UserUpdate};
use crate::types::{ActionPermissions, AuditEntry, PersonalCredentials, Run, Team, User};

fn v2() -> Query {
    vec![("version".to_owned(), "v2".to_owned())]
}

impl PortClient {
    /// `GET /v1/users`: the organization's users, by address.
    pub async fn list_users(&self) -> Result<Vec<User>, ClientError> {
        let call = self.call(Method::GET, &["users"], &Query::new(), None, Repeat::Safe);
        self.send(&call).await?.take_or_default("users")
    }

    /// `GET /v1/users/{email}`.
    pub async fn get_user(&self, email: &str) -> Result<User, ClientError> {
        let call = self.call(
            Method::GET,
            &["users", email],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("user")
    }

    /// `POST /v1/users/invite` `{invitee: {email, roles?, teams?}}`: adds a user with a
    /// role (`Admin` or `Member`, the default) and teams. Admins and organization
    /// credentials may. Not repeated: a retry of an invitation that was stored would
    /// get 409 for the caller's own invitee.
    pub async fn invite_user(
        &self,
        email: &str,
        role: Option<&str>,
        teams: &[String],
    ) -> Result<(), ClientError> {
        let mut invitee = serde_json::Map::new();
        invitee.insert("email".into(), json!(email));
        if let Some(role) = role {
            invitee.insert("roles".into(), json!([role]));
        }
        if !teams.is_empty() {
            invitee.insert("teams".into(), json!(teams));
        }
        let body = json!({ "invitee": invitee });
        let call = self.call(
            Method::POST,
            &["users", "invite"],
            &Query::new(),
            Some(&body),
            Repeat::Unsafe,
        );
        self.send(&call).await.map(drop)
    }

    /// `PATCH /v1/users/{email}` `{roles?, teams?}`: Port answers with the user's
    /// fields at the top level.
    pub async fn update_user(&self, email: &str, update: &UserUpdate) -> Result<User, ClientError> {
        let body = to_json(update)?;
        let call = self.call(
            Method::PATCH,
            &["users", email],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        let mut user: Value = self.send(&call).await?.decode()?;
        if let Value::Object(fields) = &mut user {
            fields.remove("ok");
        }
        serde_json::from_value(user).map_err(|e| ClientError::decode("PATCH /v1/users", e))
    }

    /// `DELETE /v1/users/{email}`.
    pub async fn delete_user(&self, email: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &["users", email],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }

    /// `GET /v1/teams`: the organization's teams, by name.
    pub async fn list_teams(&self) -> Result<Vec<Team>, ClientError> {
        let call = self.call(Method::GET, &["teams"], &Query::new(), None, Repeat::Safe);
        self.send(&call).await?.take_or_default("teams")
    }

    /// `GET /v1/teams/{name}`.
    pub async fn get_team(&self, name: &str) -> Result<Team, ClientError> {
        let call = self.call(
            Method::GET,
            &["teams", name],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("team")
    }

    /// `POST /v1/teams` `{name, users?, description?}`. Not repeated, like every
    /// create.
    pub async fn create_team(&self, team: &TeamRequest) -> Result<Team, ClientError> {
        let body = to_json(team)?;
        let call = self.call(
            Method::POST,
            &["teams"],
            &Query::new(),
            Some(&body),
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("team")
    }

    /// `PATCH /v1/teams/{name}`: the given keys replace (`users` the whole list).
    pub async fn update_team(&self, name: &str, team: &TeamRequest) -> Result<Team, ClientError> {
        self.write_team(Method::PATCH, name, team).await
    }

    /// `PUT /v1/teams/{name}`: the team becomes `team`.
    pub async fn replace_team(&self, name: &str, team: &TeamRequest) -> Result<Team, ClientError> {
        self.write_team(Method::PUT, name, team).await
    }

    async fn write_team(
        &self,
        method: Method,
        name: &str,
        team: &TeamRequest,
    ) -> Result<Team, ClientError> {
        let body = to_json(team)?;
        let call = self.call(
            method,
            &["teams", name],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("team")
    }

    /// `DELETE /v1/teams/{name}`.
    pub async fn delete_team(&self, name: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &["teams", name],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }

    /// `GET /v1/actions/{action}/permissions`.
    pub async fn action_permissions(&self, action: &str) -> Result<ActionPermissions, ClientError> {
        let call = self.call(
            Method::GET,
            &["actions", action, "permissions"],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("permissions")
    }

    /// `PATCH /v1/actions/{action}/permissions` with Port's body
    /// (`{"execute": {"roles": ["Member"]}, "approve": {"teams": ["Platform"]}}`): the
    /// keys given replace those of each grant. Admins and organization credentials may.
    pub async fn patch_action_permissions(
        &self,
        action: &str,
        patch: &Value,
    ) -> Result<ActionPermissions, ClientError> {
        let call = self.call(
            Method::PATCH,
            &["actions", action, "permissions"],
            &Query::new(),
            Some(patch),
            Repeat::Safe,
        );
        self.send(&call).await?.take("permissions")
    }

    /// `GET /v1/audit-log`: the records `query` asks for (see [`AuditQuery`]).
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        let call = self.call(
            Method::GET,
            &["audit-log"],
            &query.query(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take_or_default("audits")
    }

    /// `POST /v1/actions/runs/{id}/withdraw` `{reason?}`: a run still waiting for
    /// approval ends `FAILURE`, "Withdrawn by …". Its requester, an Admin or an
    /// organization credential may. Not repeated: a second withdrawal is refused.
    pub async fn withdraw(&self, run_id: &str, reason: Option<&str>) -> Result<Run, ClientError> {
        let body = match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        };
        let call = self.call(
            Method::POST,
            &["actions", "runs", run_id, "withdraw"],
            &v2(),
            Some(&body),
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("run")
    }

    /// `POST /v1/auth/credentials`: a client id and secret of the calling person's own
    /// (a person's token only; organization credentials get 403). The secret is in
    /// this answer only. Not repeated: a retry would make a second pair.
    pub async fn create_personal_credentials(&self) -> Result<PersonalCredentials, ClientError> {
        let call = self.call(
            Method::POST,
            &["auth", "credentials"],
            &Query::new(),
            None,
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("credentials")
    }
}
