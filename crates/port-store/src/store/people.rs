//! People of each organization (users, teams and their members, passwords, browser
//! sessions) and who may do what (action permissions, the audit trail).
//!
//! Teams have an internal id, so a rename keeps the memberships; memberships and
//! sessions go with their user and their team by foreign key, personal credentials by
//! `delete_user` itself. Reads that combine a user with their teams (or a team with its
//! members) are one statement, so they see one snapshot.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use port_core::access::{
    ActionPermissions, AuditEntry, AuditFilter, AuditResource, Email, PasswordHash, Role, Session,
    Team, TeamName, User, UserStatus,
};
use port_core::error::StoreError;
use port_core::id::{ActionIdentifier, OrgId, RunId};
use port_core::ports::{AccessStore, DirectoryStore, StoreResult};
use port_core::time::Timestamp;

use crate::codec;
use crate::db::{Conn, Row, Sql, from_i64, taken};

use super::{SqlStore, parse_col, rows};

/// Most names bound in one `IN (…)` list or rows in one insert: far below both drivers'
/// limits on bound parameters, whatever list a caller passes.
const CHUNK: usize = 300;

/// Reads a stored address (kept lower-case, as `Email::parse` makes it).
pub(super) fn email_from(text: &str, column: &str) -> StoreResult<Email> {
    Email::parse(text)
        .map_err(|_| StoreError::Other(format!("column {column} holds an invalid e-mail address")))
}

fn team_name_from(text: &str, column: &str) -> StoreResult<TeamName> {
    TeamName::parse(text)
        .map_err(|_| StoreError::Other(format!("column {column} holds an invalid team name")))
}

/// What the user queries select, with the name of each team (NULL for none): one row
/// per membership, ordered so that a user's rows are consecutive.
fn user_query(password: bool, filter: &str, order: &str) -> String {
    let password = if password {
        ", u.password_hash AS password_hash"
    } else {
        ""
    };
    format!(
        "SELECT u.org_id AS org_id, u.email AS email, u.first_name AS first_name, \
         u.last_name AS last_name, u.role AS role, u.status AS status, \
         u.created_at AS created_at, u.updated_at AS updated_at{password}, t.name AS team \
         FROM users u \
         LEFT JOIN team_members m ON m.org_id = u.org_id AND m.email = u.email \
         LEFT JOIN teams t ON t.org_id = m.org_id AND t.id = m.team_id \
         WHERE {filter} ORDER BY {order}, t.name"
    )
}

/// Folds the rows of [`user_query`] into users (and their password hashes when
/// selected), in the rows' order.
fn users_from_rows(
    found: &[Row],
    password: bool,
) -> StoreResult<Vec<(User, Option<PasswordHash>)>> {
    let mut users: Vec<(User, Option<PasswordHash>)> = Vec::new();
    for row in found {
        let org_id: OrgId = parse_col(row, "org_id")?;
        let email = email_from(&row.text("email")?, "email")?;
        let same = users
            .last()
            .is_some_and(|(u, _)| u.org_id == org_id && u.email == email);
        if !same {
            let role = row.text("role")?;
            let status = row.text("status")?;
            let user = User {
                org_id,
                email,
                first_name: row.opt_text("first_name")?,
                last_name: row.opt_text("last_name")?,
                role: Role::parse(&role)
                    .map_err(|_| StoreError::Other("column role holds an invalid role".into()))?,
                status: UserStatus::parse(&status).ok_or_else(|| {
                    StoreError::Other("column status holds an invalid status".into())
                })?,
                teams: Vec::new(),
                created_at: row.timestamp("created_at")?,
                updated_at: row.timestamp("updated_at")?,
            };
            let hash = if password {
                row.opt_text("password_hash")?.map(PasswordHash::new)
            } else {
                None
            };
            users.push((user, hash));
        }
        if let Some(team) = row.opt_text("team")?
            && let Some((user, _)) = users.last_mut()
        {
            user.teams.push(team_name_from(&team, "name")?);
        }
    }
    Ok(users)
}

/// What the team queries select, with each member (NULL for none): one row per
/// membership, a team's rows consecutive, members by address.
fn team_query(filter: &str) -> String {
    format!(
        "SELECT t.id AS id, t.org_id AS org_id, t.name AS name, t.description AS description, \
         t.created_at AS created_at, t.updated_at AS updated_at, m.email AS member \
         FROM teams t \
         LEFT JOIN team_members m ON m.org_id = t.org_id AND m.team_id = t.id \
         WHERE {filter} ORDER BY t.name, m.email"
    )
}

fn teams_from_rows(found: &[Row]) -> StoreResult<Vec<Team>> {
    let mut teams: Vec<(i64, Team)> = Vec::new();
    for row in found {
        let id = row.i64("id")?;
        if teams.last().is_none_or(|(last, _)| *last != id) {
            teams.push((
                id,
                Team {
                    org_id: parse_col(row, "org_id")?,
                    name: team_name_from(&row.text("name")?, "name")?,
                    description: row.opt_text("description")?,
                    users: Vec::new(),
                    created_at: row.timestamp("created_at")?,
                    updated_at: row.timestamp("updated_at")?,
                },
            ));
        }
        if let Some(member) = row.opt_text("member")?
            && let Some((_, team)) = teams.last_mut()
        {
            team.users.push(email_from(&member, "email")?);
        }
    }
    Ok(teams.into_iter().map(|(_, team)| team).collect())
}

const SESSION_COLUMNS: &str = "token_hash, org_id, email, created_at, expires_at";

fn session_from_row(row: &Row) -> StoreResult<Session> {
    Ok(Session {
        token_hash: row.text("token_hash")?,
        org_id: parse_col(row, "org_id")?,
        email: email_from(&row.text("email")?, "email")?,
        created_at: row.timestamp("created_at")?,
        expires_at: row.timestamp("expires_at")?,
    })
}

const AUDIT_COLUMNS: &str = "seq, org_id, at, resource, identifier, operation, run_id, by_user, \
                             by_machine, on_behalf_of, diff";

fn audit_from_row(row: &Row) -> StoreResult<AuditEntry> {
    let resource = row.text("resource")?;
    Ok(AuditEntry {
        org_id: parse_col(row, "org_id")?,
        seq: from_i64(row.i64("seq")?, "seq")?,
        at: row.timestamp("at")?,
        resource: AuditResource::parse(&resource)
            .ok_or_else(|| StoreError::Other("column resource holds an invalid value".into()))?,
        identifier: row.text("identifier")?,
        action: row.text("operation")?,
        run_id: row
            .opt_text("run_id")?
            .map(|id| {
                id.parse::<RunId>()
                    .map_err(|_| StoreError::Other("column run_id holds an invalid value".into()))
            })
            .transpose()?,
        by: row.text("by_user")?,
        by_machine: row.boolean("by_machine")?,
        on_behalf_of: row
            .opt_text("on_behalf_of")?
            .map(|email| email_from(&email, "on_behalf_of"))
            .transpose()?,
        diff: codec::json_from_text(&row.text("diff")?, "audit entry")?,
    })
}

async fn insert_audit(conn: &mut Conn<'_>, entry: &AuditEntry) -> StoreResult<()> {
    let sql = Sql::new(
        "INSERT INTO audit_log (org_id, at, resource, identifier, operation, run_id, by_user, \
         by_machine, on_behalf_of, diff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&entry.org_id)
    .bind(entry.at)
    .bind(entry.resource.as_str())
    .bind(&entry.identifier)
    .bind(&entry.action)
    .bind(entry.run_id.as_ref().map(RunId::as_str))
    .bind(&entry.by)
    .bind(entry.by_machine)
    .bind(entry.on_behalf_of.as_ref().map(Email::as_str))
    .bind(entry.diff.to_string());
    conn.execute(&sql).await?;
    Ok(())
}

/// Writes memberships, `(team id, address)` pairs, a chunk of rows per statement.
async fn insert_members(
    conn: &mut Conn<'_>,
    org: &OrgId,
    pairs: &[(i64, &str)],
) -> StoreResult<()> {
    for chunk in pairs.chunks(CHUNK) {
        let mut sql = Sql::new("INSERT INTO team_members (org_id, team_id, email) VALUES ");
        for (i, (team, email)) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.push_bind(org)
                .push(", ")
                .push_bind(*team)
                .push(", ")
                .push_bind(*email)
                .push(")");
        }
        conn.execute(&sql).await?;
    }
    Ok(())
}

impl SqlStore {
    /// The organization's rows of `table` whose `key` is one of `wanted` (sorted and
    /// distinct), `columns` of each, a chunk at a time, kept from deletion until the
    /// transaction ends; locked in key order, so concurrent writers never wait on each
    /// other in a cycle.
    async fn locked_by_key(
        &self,
        conn: &mut Conn<'_>,
        org: &OrgId,
        (table, columns, key): (&'static str, &'static str, &'static str),
        wanted: &[&str],
    ) -> StoreResult<Vec<Row>> {
        let mut found = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(CHUNK) {
            let mut sql = Sql::new(format!(
                "SELECT {columns} FROM {table} WHERE org_id = $1 AND {key} IN ("
            ))
            .bind(org);
            for (i, value) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(*value);
            }
            sql.push(&format!(") ORDER BY {key}"))
                .push(self.key_share());
            found.extend(conn.fetch_all(&sql).await?);
        }
        Ok(found)
    }

    /// The ids of the organization's teams called `names` (duplicates ignored), kept
    /// from deletion until the transaction ends; [`StoreError::InvalidInput`] naming a
    /// team that does not exist.
    async fn team_ids(
        &self,
        conn: &mut Conn<'_>,
        org: &OrgId,
        names: &[TeamName],
    ) -> StoreResult<Vec<i64>> {
        let wanted = distinct(names.iter().map(TeamName::as_str));
        let mut found = BTreeMap::new();
        for row in self
            .locked_by_key(conn, org, ("teams", "id, name", "name"), &wanted)
            .await?
        {
            found.insert(row.text("name")?, row.i64("id")?);
        }
        if let Some(missing) = wanted.iter().find(|name| !found.contains_key(**name)) {
            return Err(StoreError::InvalidInput(format!(
                "team {missing} does not exist"
            )));
        }
        Ok(found.into_values().collect())
    }

    /// The distinct addresses of `emails`, every one a user of the organization, kept
    /// from deletion until the transaction ends; [`StoreError::InvalidInput`] naming one
    /// that is not.
    async fn members<'e>(
        &self,
        conn: &mut Conn<'_>,
        org: &OrgId,
        emails: &'e [Email],
    ) -> StoreResult<Vec<&'e str>> {
        let wanted = distinct(emails.iter().map(Email::as_str));
        let mut found = BTreeSet::new();
        for row in self
            .locked_by_key(conn, org, ("users", "email", "email"), &wanted)
            .await?
        {
            found.insert(row.text("email")?);
        }
        if let Some(missing) = wanted.iter().find(|email| !found.contains(**email)) {
            return Err(StoreError::InvalidInput(format!(
                "{missing} is not a user of the organization"
            )));
        }
        Ok(wanted)
    }

    /// Makes `email` a member of exactly `teams` (which must all exist).
    async fn set_memberships(
        &self,
        conn: &mut Conn<'_>,
        org: &OrgId,
        email: &Email,
        teams: &[TeamName],
    ) -> StoreResult<()> {
        let ids = self.team_ids(conn, org, teams).await?;
        conn.execute(
            &Sql::new("DELETE FROM team_members WHERE org_id = $1 AND email = $2")
                .bind(org)
                .bind(email.as_str()),
        )
        .await?;
        let pairs: Vec<(i64, &str)> = ids.into_iter().map(|id| (id, email.as_str())).collect();
        insert_members(conn, org, &pairs).await
    }

    /// Makes exactly `team.users` (who must all be users) the members of team `id`.
    async fn set_members(&self, conn: &mut Conn<'_>, id: i64, team: &Team) -> StoreResult<()> {
        let members = self.members(conn, &team.org_id, &team.users).await?;
        conn.execute(
            &Sql::new("DELETE FROM team_members WHERE org_id = $1 AND team_id = $2")
                .bind(&team.org_id)
                .bind(id),
        )
        .await?;
        let pairs: Vec<(i64, &str)> = members.into_iter().map(|email| (id, email)).collect();
        insert_members(conn, &team.org_id, &pairs).await
    }
}

#[async_trait]
impl DirectoryStore for SqlStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let sql = Sql::new(
            "INSERT INTO users (org_id, email, first_name, last_name, role, status, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&user.org_id)
        .bind(user.email.as_str())
        .bind(user.first_name.as_deref())
        .bind(user.last_name.as_deref())
        .bind(user.role.as_str())
        .bind(user.status.as_str())
        .bind(user.created_at)
        .bind(user.updated_at);
        conn.execute(&sql)
            .await
            .map_err(taken(|| format!("user {}", user.email)))?;
        self.set_memberships(&mut conn, &user.org_id, &user.email, &user.teams)
            .await?;
        tx.commit().await
    }

    async fn get_user(&self, org: &OrgId, email: &Email) -> StoreResult<Option<User>> {
        let sql = Sql::new(user_query(
            false,
            "u.org_id = $1 AND u.email = $2",
            "u.email",
        ))
        .bind(org)
        .bind(email.as_str());
        let found = self.read_all(&sql).await?;
        Ok(users_from_rows(&found, false)?
            .into_iter()
            .next()
            .map(|(user, _)| user))
    }

    async fn list_users(&self, org: &OrgId) -> StoreResult<Vec<User>> {
        let sql = Sql::new(user_query(false, "u.org_id = $1", "u.email")).bind(org);
        let found = self.read_all(&sql).await?;
        Ok(users_from_rows(&found, false)?
            .into_iter()
            .map(|(user, _)| user)
            .collect())
    }

    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let sql = Sql::new(
            "UPDATE users SET first_name = $3, last_name = $4, role = $5, status = $6, \
             updated_at = $7 WHERE org_id = $1 AND email = $2",
        )
        .bind(&user.org_id)
        .bind(user.email.as_str())
        .bind(user.first_name.as_deref())
        .bind(user.last_name.as_deref())
        .bind(user.role.as_str())
        .bind(user.status.as_str())
        .bind(user.updated_at);
        if conn.execute(&sql).await? == 0 {
            return Ok(false);
        }
        self.set_memberships(&mut conn, &user.org_id, &user.email, &user.teams)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_user(&self, org: &OrgId, email: &Email) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        // The user first: memberships and sessions go with it (foreign keys), and its row
        // lock makes a concurrent `add_credential` for them wait, so the credentials
        // deleted next include any it added.
        let deleted = conn
            .execute(
                &Sql::new("DELETE FROM users WHERE org_id = $1 AND email = $2")
                    .bind(org)
                    .bind(email.as_str()),
            )
            .await?;
        conn.execute(
            &Sql::new("DELETE FROM credentials WHERE org_id = $1 AND user_email = $2")
                .bind(org)
                .bind(email.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn users_by_email(
        &self,
        email: &Email,
    ) -> StoreResult<Vec<(User, Option<PasswordHash>)>> {
        let sql = Sql::new(user_query(true, "u.email = $1", "u.created_at, u.org_id"))
            .bind(email.as_str());
        users_from_rows(&self.read_all(&sql).await?, true)
    }

    async fn set_password(
        &self,
        org: &OrgId,
        email: &Email,
        hash: Option<&PasswordHash>,
    ) -> StoreResult<bool> {
        let sql = Sql::new("UPDATE users SET password_hash = $3 WHERE org_id = $1 AND email = $2")
            .bind(org)
            .bind(email.as_str())
            .bind(hash.map(PasswordHash::as_str));
        Ok(self.write_one(sql).await? > 0)
    }

    async fn create_team(&self, team: &Team) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let sql = Sql::new(
            "INSERT INTO teams (org_id, name, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&team.org_id)
        .bind(team.name.as_str())
        .bind(team.description.as_deref())
        .bind(team.created_at)
        .bind(team.updated_at);
        let row = conn
            .fetch_optional(&sql)
            .await
            .map_err(taken(|| format!("team {}", team.name)))?
            .ok_or_else(|| StoreError::Other("a team insert returned no id".into()))?;
        self.set_members(&mut conn, row.i64("id")?, team).await?;
        tx.commit().await
    }

    async fn get_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<Option<Team>> {
        let sql = Sql::new(team_query("t.org_id = $1 AND t.name = $2"))
            .bind(org)
            .bind(name.as_str());
        Ok(teams_from_rows(&self.read_all(&sql).await?)?
            .into_iter()
            .next())
    }

    async fn list_teams(&self, org: &OrgId) -> StoreResult<Vec<Team>> {
        let sql = Sql::new(team_query("t.org_id = $1")).bind(org);
        teams_from_rows(&self.read_all(&sql).await?)
    }

    async fn update_team(&self, name: &TeamName, team: &Team) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let sql = Sql::new(
            "UPDATE teams SET name = $3, description = $4, created_at = $5, updated_at = $6 \
             WHERE org_id = $1 AND name = $2 RETURNING id",
        )
        .bind(&team.org_id)
        .bind(name.as_str())
        .bind(team.name.as_str())
        .bind(team.description.as_deref())
        .bind(team.created_at)
        .bind(team.updated_at);
        let Some(row) = conn
            .fetch_optional(&sql)
            .await
            .map_err(taken(|| format!("team {}", team.name)))?
        else {
            return Ok(false);
        };
        self.set_members(&mut conn, row.i64("id")?, team).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_team(&self, org: &OrgId, name: &TeamName) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM teams WHERE org_id = $1 AND name = $2")
            .bind(org)
            .bind(name.as_str());
        Ok(self.write_one(sql).await? > 0)
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let user = Sql::new(format!(
            "SELECT email FROM users WHERE org_id = $1 AND email = $2{}",
            self.key_share()
        ))
        .bind(&session.org_id)
        .bind(session.email.as_str());
        if conn.fetch_optional(&user).await?.is_none() {
            return Err(StoreError::InvalidInput(format!(
                "{} is not a user",
                session.email
            )));
        }
        // The user's expired sessions go as a new one starts, so they never pile up.
        conn.execute(
            &Sql::new("DELETE FROM sessions WHERE org_id = $1 AND email = $2 AND expires_at <= $3")
                .bind(&session.org_id)
                .bind(session.email.as_str())
                .bind(session.created_at),
        )
        .await?;
        let sql = Sql::new(format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&session.token_hash)
        .bind(&session.org_id)
        .bind(session.email.as_str())
        .bind(session.created_at)
        .bind(session.expires_at);
        // The message names no hash: it stands for a secret.
        conn.execute(&sql)
            .await
            .map_err(taken(|| "session".to_owned()))?;
        tx.commit().await
    }

    async fn get_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        let sql = Sql::new(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1 AND expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash);
        Ok(self.write_one(sql).await? > 0)
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let row = self
            .read_optional(&Sql::new("SELECT COUNT(*) AS n FROM users"))
            .await?;
        from_i64(row.map_or(Ok(0), |r| r.i64("n"))?, "count")
    }
}

#[async_trait]
impl AccessStore for SqlStore {
    async fn get_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
    ) -> StoreResult<Option<ActionPermissions>> {
        let sql = Sql::new(
            "SELECT document FROM action_permissions WHERE org_id = $1 AND action_identifier = $2",
        )
        .bind(org)
        .bind(action);
        let Some(row) = self.read_optional(&sql).await? else {
            return Ok(None);
        };
        let document = codec::json_from_text(&row.text("document")?, "action permissions")?;
        ActionPermissions::from_json(&document)
            .map(Some)
            .map_err(|e| {
                StoreError::Other(format!(
                    "stored permissions of action {action} are invalid: {e}"
                ))
            })
    }

    async fn put_permissions(
        &self,
        org: &OrgId,
        action: &ActionIdentifier,
        permissions: &ActionPermissions,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        // The action is kept from deletion until the permissions are written with it.
        let exists = Sql::new(format!(
            "SELECT identifier FROM actions WHERE org_id = $1 AND identifier = $2{}",
            self.key_share()
        ))
        .bind(org)
        .bind(action);
        if conn.fetch_optional(&exists).await?.is_none() {
            return Ok(false);
        }
        let sql = Sql::new(
            "INSERT INTO action_permissions (org_id, action_identifier, document) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (org_id, action_identifier) DO UPDATE SET document = excluded.document",
        )
        .bind(org)
        .bind(action)
        .bind(permissions.to_json().to_string());
        conn.execute(&sql).await?;
        insert_audit(&mut conn, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_audit(&mut tx.conn(), entry).await?;
        tx.commit().await
    }

    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut sql = Sql::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1"
        ))
        .bind(org);
        // At most the five kinds, however often the filter repeats them.
        let resources: BTreeSet<&str> = filter.resources.iter().map(|r| r.as_str()).collect();
        if !resources.is_empty() {
            sql.push(" AND resource IN (");
            for (i, resource) in resources.into_iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(resource);
            }
            sql.push(")");
        }
        if let Some(identifier) = &filter.identifier {
            sql.push(" AND identifier = ").push_bind(identifier);
        }
        if let Some(run) = &filter.run_id {
            sql.push(" AND run_id = ").push_bind(run);
        }
        if let Some(from) = filter.from {
            sql.push(" AND at >= ").push_bind(from);
        }
        if let Some(to) = filter.to {
            sql.push(" AND at <= ").push_bind(to);
        }
        sql.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        rows(self.read_all(&sql).await?, audit_from_row)
    }
}

/// The distinct values, sorted.
fn distinct<'v>(values: impl Iterator<Item = &'v str>) -> Vec<&'v str> {
    values.collect::<BTreeSet<_>>().into_iter().collect()
}
