//! `GET /v1/audit-log`: who did what, in Port's audit entry shape. Two records answer
//! it: the entity changes bound to a run (`resources=entity`, by `run_id`), which
//! whoever may see the run may read, and the trail of runs executed, approved,
//! declined and withdrawn, actions, permissions, users and teams changed, which Admins
//! and organization credentials read (the services decide both).

use axum::Json;
use axum::extract::State;
use port_core::access::{AuditEntry, AuditFilter, AuditResource};
use port_core::id::RunId;
use port_core::time::Timestamp;
use serde_json::Value;

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authenticated, QueryParams};
use crate::state::AppState;

/// The values of `resources`: entity changes, then the trail's kinds.
pub(crate) const RESOURCES: &[&str] = &["entity", "run", "action", "permissions", "user", "team"];

/// Default and largest number of trail entries answered.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;

/// What a query asks for.
struct AuditQuery {
    /// The entity changes bound to this run.
    entity_changes_of: Option<String>,
    /// The trail's entries (none asked when `resources` is empty).
    trail: AuditFilter,
}

fn timestamp(query: &QueryParams, name: &str) -> ApiResult<Option<Timestamp>> {
    query
        .first(name)
        .map(|raw| {
            Timestamp::parse(raw).map_err(|_| {
                ApiError::invalid(format!(
                    "querystring.{name}: must be an ISO-8601 date-time such as 2025-01-31T12:00:00.000Z"
                ))
            })
        })
        .transpose()
}

/// Reads the query. Without `resources`, a `run_id` asks for the run's entity changes
/// (what Port's clients ask `?run_id=` for) and no `run_id` for the whole trail.
fn audit_query(query: &QueryParams) -> ApiResult<AuditQuery> {
    let named = query.all("resources");
    if let Some(bad) = named.iter().find(|r| !RESOURCES.contains(r)) {
        return Err(ApiError::invalid(format!(
            "querystring.resources: {bad:?} must be one of {}",
            RESOURCES.join(", ")
        )));
    }
    let run_id = match query.first("run_id") {
        Some(raw) => Some(
            RunId::parse(raw)
                .map_err(|_| ApiError::invalid("querystring.run_id: must be a run id"))?,
        ),
        None => None,
    };
    let (entity, resources) = if named.is_empty() {
        match run_id {
            Some(_) => (true, Vec::new()),
            None => (false, AuditResource::ALL.to_vec()),
        }
    } else {
        let mut kinds = Vec::new();
        for name in &named {
            if let Some(kind) = AuditResource::parse(name)
                && !kinds.contains(&kind)
            {
                kinds.push(kind);
            }
        }
        (named.contains(&"entity"), kinds)
    };
    let entity_changes_of = match (entity, &run_id) {
        (false, _) => None,
        (true, Some(run)) => Some(run.to_string()),
        (true, None) => {
            return Err(ApiError::invalid(
                "querystring.run_id: is required with resources=entity (entity changes are kept per run)",
            ));
        }
    };
    let limit = query
        .integer_in("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);
    Ok(AuditQuery {
        entity_changes_of,
        trail: AuditFilter {
            resources,
            identifier: query.first("identifier").map(str::to_owned),
            run_id,
            from: timestamp(query, "from")?,
            to: timestamp(query, "to")?,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        },
    })
}

/// `GET /v1/audit-log` → `{ok, audits}`: the run's entity changes (oldest first), then
/// the trail's entries (newest first, at most `limit`); every filter given must hold.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let AuditQuery {
        entity_changes_of,
        trail,
    } = audit_query(&query)?;
    let mut audits = Vec::new();
    if let Some(run_id) = entity_changes_of {
        let changes = state.services().run_audit(&caller, &run_id).await?;
        audits.extend(
            changes
                .iter()
                .filter(|change| {
                    trail
                        .identifier
                        .as_deref()
                        .is_none_or(|id| change.entity.as_str() == id)
                        && trail.from.is_none_or(|from| change.at >= from)
                        && trail.to.is_none_or(|to| change.at <= to)
                })
                .map(|change| change.to_json()),
        );
    }
    if !trail.resources.is_empty() {
        let entries = state.services().audit_log(&caller, trail).await?;
        audits.extend(entries.iter().map(AuditEntry::to_json));
    }
    Ok(ok("audits", Value::Array(audits)))
}
