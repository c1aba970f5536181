//! `port users`, `port teams`, `port actions permissions` and `port audit`: who is in
//! the organization, what they may do, and what they did.

use port_client::{ActionPermissions, AuditEntry, Grant, TeamRequest, User, UserUpdate};
use serde_json::Value;

use crate::cli::{AuditArgs, PermissionsCommand, TeamsCommand, UsersCommand};
use crate::error::{CliError, exit};
use crate::input::read_object;
use crate::output::{Cell, Details, Table, compact, time};

use super::Ctx;

fn user_details(user: &User) -> Details {
    let mut details = Details::new();
    details
        .field("Email", user.email.as_str())
        .optional("First name", user.first_name.as_deref())
        .optional("Last name", user.last_name.as_deref())
        .field("Role", Cell::opt(user.role()))
        .field("Status", Cell::opt(user.status.as_deref()))
        .lines(
            "Teams",
            user.team_names().into_iter().map(str::to_owned).collect(),
        )
        .field("Created", time(user.created_at.as_ref()));
    details
}

pub(crate) async fn users(ctx: &Ctx, command: &UsersCommand) -> Result<u8, CliError> {
    match command {
        UsersCommand::List => {
            if ctx.ui.structured() {
                let users = ctx.raw(&["users"], &[], "users").await?;
                return ctx.ui.data(&users).map(|()| exit::OK);
            }
            let users = ctx.client.list_users().await?;
            let mut table = Table::new(&["EMAIL", "ROLE", "STATUS", "TEAMS"]);
            for user in &users {
                table.row(vec![
                    user.email.as_str().into(),
                    Cell::opt(user.role()),
                    Cell::opt(user.status.as_deref()),
                    user.team_names().join(", ").into(),
                ]);
            }
            ctx.ui.text(&table.render(ctx.ui.color))?;
        }
        UsersCommand::Invite { email, role, teams } => {
            ctx.client
                .invite_user(email, role.map(|r| r.as_str()), teams)
                .await?;
            if ctx.ui.structured() {
                let user = ctx.raw(&["users", email], &[], "user").await?;
                return ctx.ui.data(&user).map(|()| exit::OK);
            }
            ctx.ui.line(&format!("user {email} invited"))?;
        }
        UsersCommand::Get { email } => {
            if ctx.ui.structured() {
                let user = ctx.raw(&["users", email], &[], "user").await?;
                return ctx.ui.data(&user).map(|()| exit::OK);
            }
            let user = ctx.client.get_user(email).await?;
            ctx.ui.text(&user_details(&user).render(ctx.ui.color))?;
        }
        UsersCommand::Update {
            email,
            role,
            teams,
            no_teams,
        } => {
            let update = UserUpdate {
                roles: role.map(|r| r.as_str().to_owned()),
                teams: (*no_teams || !teams.is_empty()).then(|| teams.clone()),
            };
            let user = ctx.client.update_user(email, &update).await?;
            if ctx.ui.structured() {
                return ctx.ui.data(&user).map(|()| exit::OK);
            }
            ctx.ui.text(&user_details(&user).render(ctx.ui.color))?;
        }
        UsersCommand::Delete { email } => {
            ctx.client.delete_user(email).await?;
            if !ctx.ui.structured() {
                ctx.ui.line(&format!("user {email} deleted"))?;
            }
        }
    }
    Ok(exit::OK)
}

fn team_details(team: &port_client::Team) -> Details {
    let mut details = Details::new();
    details
        .field("Name", team.name.as_str())
        .optional("Description", team.description.as_deref())
        .lines(
            "Members",
            team.users.iter().map(|u| u.email.clone()).collect(),
        )
        .field("Created", time(team.created_at.as_ref()));
    details
}

pub(crate) async fn teams(ctx: &Ctx, command: &TeamsCommand) -> Result<u8, CliError> {
    let team = match command {
        TeamsCommand::List => {
            if ctx.ui.structured() {
                let teams = ctx.raw(&["teams"], &[], "teams").await?;
                return ctx.ui.data(&teams).map(|()| exit::OK);
            }
            let teams = ctx.client.list_teams().await?;
            let mut table = Table::new(&["NAME", "MEMBERS", "DESCRIPTION"]);
            for team in &teams {
                table.row(vec![
                    team.name.as_str().into(),
                    team.users.len().to_string().into(),
                    Cell::opt(team.description.as_deref()),
                ]);
            }
            ctx.ui.text(&table.render(ctx.ui.color))?;
            return Ok(exit::OK);
        }
        TeamsCommand::Get { name } => {
            if ctx.ui.structured() {
                let team = ctx.raw(&["teams", name], &[], "team").await?;
                return ctx.ui.data(&team).map(|()| exit::OK);
            }
            ctx.client.get_team(name).await?
        }
        TeamsCommand::Create {
            name,
            users,
            description,
        } => {
            let request = TeamRequest {
                name: Some(name.clone()),
                users: Some(users.clone()),
                description: description.clone(),
            };
            ctx.client.create_team(&request).await?
        }
        TeamsCommand::Update {
            name,
            rename,
            users,
            no_users,
            description,
        } => {
            let request = TeamRequest {
                name: rename.clone(),
                users: (*no_users || !users.is_empty()).then(|| users.clone()),
                description: description.clone(),
            };
            ctx.client.update_team(name, &request).await?
        }
        TeamsCommand::Delete { name } => {
            ctx.client.delete_team(name).await?;
            if !ctx.ui.structured() {
                ctx.ui.line(&format!("team {name} deleted"))?;
            }
            return Ok(exit::OK);
        }
    };
    if ctx.ui.structured() {
        return ctx.ui.data(&team).map(|()| exit::OK);
    }
    ctx.ui.text(&team_details(&team).render(ctx.ui.color))?;
    Ok(exit::OK)
}

fn grant_lines(grant: &Grant) -> Vec<String> {
    let mut lines = Vec::new();
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    lines.push(format!("roles: {}", list(&grant.roles)));
    lines.push(format!("users: {}", list(&grant.users)));
    lines.push(format!("teams: {}", list(&grant.teams)));
    if let Some(owned) = grant.owned_by_team {
        lines.push(format!("ownedByTeam: {owned}"));
    }
    if let Some(policy) = grant.policy.as_ref().filter(|p| !p.is_null()) {
        lines.push(format!("policy: {}", compact(policy)));
    }
    lines
}

fn permissions_details(permissions: &ActionPermissions) -> Details {
    let mut details = Details::new();
    details
        .lines("Execute", grant_lines(&permissions.execute))
        .lines("Approve", grant_lines(&permissions.approve));
    details
}

pub(crate) async fn permissions(ctx: &Ctx, command: &PermissionsCommand) -> Result<u8, CliError> {
    let permissions = match command {
        PermissionsCommand::Get { id } => {
            if ctx.ui.structured() {
                let permissions = ctx
                    .raw(&["actions", id, "permissions"], &[], "permissions")
                    .await?;
                return ctx.ui.data(&permissions).map(|()| exit::OK);
            }
            ctx.client.action_permissions(id).await?
        }
        PermissionsCommand::Set { id, file } => {
            let patch = Value::Object(read_object(file)?);
            ctx.client.patch_action_permissions(id, &patch).await?
        }
    };
    if ctx.ui.structured() {
        return ctx.ui.data(&permissions).map(|()| exit::OK);
    }
    ctx.ui
        .text(&permissions_details(&permissions).render(ctx.ui.color))?;
    Ok(exit::OK)
}

fn audit_row(entry: &AuditEntry) -> Vec<Cell> {
    let trigger = entry.trigger.as_ref();
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_owned();
    vec![
        text(trigger.and_then(|t| t.get("at"))).into(),
        text(trigger.and_then(|t| t.pointer("/by/userId"))).into(),
        Cell::opt(entry.resource_type.as_deref()),
        Cell::opt(entry.action.as_deref()),
        Cell::opt(entry.identifier.as_deref()),
    ]
}

pub(crate) async fn audit(ctx: &Ctx, args: &AuditArgs) -> Result<u8, CliError> {
    let mut pairs: Vec<(&str, &str)> = args
        .resources
        .iter()
        .map(|r| ("resources", r.as_str()))
        .collect();
    for (key, value) in [
        ("identifier", &args.identifier),
        ("run_id", &args.run_id),
        ("from", &args.from),
        ("to", &args.to),
    ] {
        if let Some(value) = value {
            pairs.push((key, value.as_str()));
        }
    }
    let limit = args.limit.map(|l| l.to_string());
    if let Some(limit) = &limit {
        pairs.push(("limit", limit.as_str()));
    }
    let audits = ctx.raw(&["audit-log"], &pairs, "audits").await?;
    if ctx.ui.structured() {
        return ctx.ui.data(&audits).map(|()| exit::OK);
    }
    let entries: Vec<AuditEntry> = serde_json::from_value(audits).map_err(|e| {
        CliError::new(
            exit::API,
            "unexpected_response",
            format!("GET audit-log: {e}"),
        )
    })?;
    let mut table = Table::new(&["AT", "BY", "RESOURCE", "ACTION", "IDENTIFIER"]);
    for entry in &entries {
        table.row(audit_row(entry));
    }
    ctx.ui.text(&table.render(ctx.ui.color))?;
    Ok(exit::OK)
}
