//! The storage form of the documents kept as JSON text: runs and entities.
//!
//! This is our own format, not a wire view: the wire views drop what the API does not
//! show (approvers, vote times, the version) and may change with the API, while stored
//! documents must read back to exactly the value that was written. Absent optional
//! fields are left out, so `Some(Value::Null)` and `None` stay distinct.

use port_core::catalog::Entity;
use port_core::error::StoreError;
use port_core::id::ActionIdentifier;
use port_core::ports::StoreResult;
use port_core::run::{
    ActionRef, ApprovalPolicy, Decision, Outcome, Reference, Run, RunSource, RunState, RunStatus,
    Vote,
};
use port_core::time::Timestamp;
use serde_json::{Map, Value, json};

fn corrupt(what: &str, field: &str) -> StoreError {
    StoreError::Other(format!("stored {what} has an invalid field {field}"))
}

/// Reads fields of a stored document, naming the bad field on failure.
struct Doc<'a> {
    map: &'a Map<String, Value>,
    what: &'static str,
}

impl<'a> Doc<'a> {
    fn new(value: &'a Value, what: &'static str) -> StoreResult<Self> {
        value
            .as_object()
            .map(|map| Self { map, what })
            .ok_or_else(|| corrupt(what, "(root)"))
    }

    fn bad(&self, field: &str) -> StoreError {
        corrupt(self.what, field)
    }

    fn value(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field)
    }

    fn str(&self, field: &str) -> StoreResult<&'a str> {
        self.value(field)
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad(field))
    }

    fn opt_string(&self, field: &str) -> StoreResult<Option<String>> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(field)),
        }
    }

    fn bool(&self, field: &str) -> StoreResult<bool> {
        self.value(field)
            .and_then(Value::as_bool)
            .ok_or_else(|| self.bad(field))
    }

    fn i64(&self, field: &str) -> StoreResult<i64> {
        self.value(field)
            .and_then(Value::as_i64)
            .ok_or_else(|| self.bad(field))
    }

    fn timestamp(&self, field: &str) -> StoreResult<Timestamp> {
        self.i64(field).map(Timestamp::from_unix_millis)
    }

    fn object(&self, field: &str) -> StoreResult<Map<String, Value>> {
        self.value(field)
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| self.bad(field))
    }

    fn opt_object(&self, field: &str) -> StoreResult<Option<Map<String, Value>>> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(self.bad(field)),
        }
    }

    fn strings(&self, field: &str) -> StoreResult<Vec<String>> {
        self.value(field)
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .ok_or_else(|| self.bad(field))
    }
}

fn put_opt_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(key.to_owned(), Value::String(v.to_owned()));
    }
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    if let Some(v) = v {
        m.insert(key.to_owned(), v.clone());
    }
}

fn reference_to_json(r: &Reference) -> Value {
    let mut m = Map::new();
    m.insert("identifier".into(), json!(r.identifier));
    put_opt_str(&mut m, "title", r.title.as_deref());
    put_opt_str(&mut m, "icon", r.icon.as_deref());
    m.insert("deleted".into(), json!(r.deleted));
    Value::Object(m)
}

fn reference_from_json(v: &Value, field: &'static str) -> StoreResult<Reference> {
    let d = Doc::new(v, field)?;
    Ok(Reference {
        identifier: d.str("identifier")?.to_owned(),
        title: d.opt_string("title")?,
        icon: d.opt_string("icon")?,
        deleted: d.bool("deleted")?,
    })
}

fn outcome_of(status: RunStatus) -> Option<Outcome> {
    match status {
        RunStatus::Success => Some(Outcome::Success),
        RunStatus::Failure => Some(Outcome::Failure),
        RunStatus::Declined => Some(Outcome::Declined),
        RunStatus::InProgress | RunStatus::WaitingForApproval => None,
    }
}

fn policy_to_json(p: &ApprovalPolicy) -> Value {
    match p {
        ApprovalPolicy::NotRequired => json!({ "type": "NOT_REQUIRED" }),
        ApprovalPolicy::Any { approvers } => json!({ "type": "ANY", "approvers": approvers }),
        ApprovalPolicy::All { approvers } => json!({ "type": "ALL", "approvers": approvers }),
    }
}

fn policy_from_json(v: &Value) -> StoreResult<ApprovalPolicy> {
    let d = Doc::new(v, "approval policy")?;
    match d.str("type")? {
        "NOT_REQUIRED" => Ok(ApprovalPolicy::NotRequired),
        "ANY" => Ok(ApprovalPolicy::Any {
            approvers: d.strings("approvers")?,
        }),
        "ALL" => Ok(ApprovalPolicy::All {
            approvers: d.strings("approvers")?,
        }),
        _ => Err(d.bad("type")),
    }
}

fn vote_to_json(v: &Vote) -> Value {
    let mut m = Map::new();
    m.insert("userId".into(), json!(v.user_id));
    m.insert("decision".into(), json!(v.decision.as_str()));
    put_opt_str(&mut m, "description", v.description.as_deref());
    m.insert("at".into(), json!(v.at.unix_millis()));
    Value::Object(m)
}

fn vote_from_json(v: &Value) -> StoreResult<Vote> {
    let d = Doc::new(v, "vote")?;
    Ok(Vote {
        user_id: d.str("userId")?.to_owned(),
        decision: Decision::parse(d.str("decision")?).ok_or_else(|| d.bad("decision"))?,
        description: d.opt_string("description")?,
        at: d.timestamp("at")?,
    })
}

/// The whole run except its id, organization and chain depth, which are columns.
pub(crate) fn run_to_json(run: &Run) -> String {
    let mut m = Map::new();
    m.insert("status".into(), json!(run.status().as_str()));
    if let Some(at) = run.ended_at() {
        m.insert("endedAt".into(), json!(at.unix_millis()));
    }
    put_opt_str(&mut m, "statusLabel", run.status_label.as_deref());
    m.insert("link".into(), json!(run.link));
    put_opt_str(&mut m, "summary", run.summary.as_deref());
    put_opt_str(&mut m, "externalRunId", run.external_run_id.as_deref());
    if let Some(message) = &run.message {
        m.insert("message".into(), Value::Object(message.clone()));
    }
    m.insert("properties".into(), Value::Object(run.properties.clone()));
    m.insert("source".into(), json!(run.source.as_str()));
    m.insert("requiredApproval".into(), run.required_approval.clone());
    m.insert(
        "approvalPolicy".into(),
        policy_to_json(&run.approval_policy),
    );
    m.insert(
        "votes".into(),
        Value::Array(run.votes.iter().map(vote_to_json).collect()),
    );
    put_opt(&mut m, "payload", run.payload.as_ref());
    put_opt(&mut m, "response", run.response.as_ref());
    let mut action = Map::new();
    action.insert("identifier".into(), json!(run.action.identifier.as_str()));
    put_opt_str(&mut action, "title", run.action.title.as_deref());
    put_opt_str(&mut action, "icon", run.action.icon.as_deref());
    action.insert("deleted".into(), json!(run.action.deleted));
    m.insert("action".into(), Value::Object(action));
    if let Some(bp) = &run.blueprint {
        m.insert("blueprint".into(), reference_to_json(bp));
    }
    if let Some(entity) = &run.entity {
        m.insert("entity".into(), reference_to_json(entity));
    }
    m.insert("synchronized".into(), json!(run.synchronized));
    m.insert("createdAt".into(), json!(run.created_at.unix_millis()));
    m.insert("createdBy".into(), json!(run.created_by));
    if let Some(by) = &run.impersonated_by {
        m.insert("impersonatedBy".into(), json!(by));
    }
    m.insert("updatedAt".into(), json!(run.updated_at.unix_millis()));
    m.insert("updatedBy".into(), json!(run.updated_by));
    m.insert("version".into(), json!(run.version));
    Value::Object(m).to_string()
}

/// Reads a run document back; `id`, `org_id`, `version` and `chain_depth` come from
/// their columns.
pub(crate) fn run_from_json(
    text: &str,
    id: port_core::id::RunId,
    org_id: port_core::id::OrgId,
    version: u64,
    chain_depth: u32,
) -> StoreResult<Run> {
    let value: Value = serde_json::from_str(text).map_err(|_| corrupt("run", "(json)"))?;
    let d = Doc::new(&value, "run")?;
    let status = RunStatus::parse(d.str("status")?).ok_or_else(|| d.bad("status"))?;
    let state = match (status, outcome_of(status)) {
        (RunStatus::WaitingForApproval, _) => RunState::WaitingForApproval,
        (RunStatus::InProgress, _) => RunState::InProgress,
        (_, Some(outcome)) => RunState::Ended {
            outcome,
            at: d.timestamp("endedAt")?,
        },
        (_, None) => return Err(d.bad("status")),
    };
    let action = Doc::new(
        d.value("action").ok_or_else(|| d.bad("action"))?,
        "run action",
    )?;
    Ok(Run {
        id,
        org_id,
        state,
        status_label: d.opt_string("statusLabel")?,
        link: d.strings("link")?,
        summary: d.opt_string("summary")?,
        external_run_id: d.opt_string("externalRunId")?,
        message: d.opt_object("message")?,
        properties: d.object("properties")?,
        source: RunSource::parse(d.str("source")?).ok_or_else(|| d.bad("source"))?,
        required_approval: d
            .value("requiredApproval")
            .cloned()
            .ok_or_else(|| d.bad("requiredApproval"))?,
        approval_policy: policy_from_json(
            d.value("approvalPolicy")
                .ok_or_else(|| d.bad("approvalPolicy"))?,
        )?,
        votes: d
            .value("votes")
            .and_then(Value::as_array)
            .ok_or_else(|| d.bad("votes"))?
            .iter()
            .map(vote_from_json)
            .collect::<StoreResult<_>>()?,
        payload: d.value("payload").cloned(),
        response: d.value("response").cloned(),
        action: ActionRef {
            identifier: ActionIdentifier::parse(action.str("identifier")?)
                .map_err(|_| action.bad("identifier"))?,
            title: action.opt_string("title")?,
            icon: action.opt_string("icon")?,
            deleted: action.bool("deleted")?,
        },
        blueprint: d
            .value("blueprint")
            .map(|v| reference_from_json(v, "run blueprint"))
            .transpose()?,
        entity: d
            .value("entity")
            .map(|v| reference_from_json(v, "run entity"))
            .transpose()?,
        synchronized: d.bool("synchronized")?,
        created_at: d.timestamp("createdAt")?,
        created_by: d.str("createdBy")?.to_owned(),
        impersonated_by: d
            .value("impersonatedBy")
            .and_then(Value::as_str)
            .map(str::to_owned),
        updated_at: d.timestamp("updatedAt")?,
        updated_by: d.str("updatedBy")?.to_owned(),
        version,
        chain_depth,
    })
}

/// An entity's content; its keys and stamp are columns.
pub(crate) fn entity_to_json(entity: &Entity) -> String {
    let mut m = Map::new();
    put_opt_str(&mut m, "title", entity.title.as_deref());
    put_opt_str(&mut m, "icon", entity.icon.as_deref());
    put_opt(&mut m, "team", entity.team.as_ref());
    m.insert(
        "properties".into(),
        Value::Object(entity.properties.clone()),
    );
    m.insert("relations".into(), Value::Object(entity.relations.clone()));
    Value::Object(m).to_string()
}

/// The parts of an entity kept in its document.
pub(crate) struct EntityContent {
    pub title: Option<String>,
    pub icon: Option<String>,
    pub team: Option<Value>,
    pub properties: Map<String, Value>,
    pub relations: Map<String, Value>,
}

pub(crate) fn entity_from_json(text: &str) -> StoreResult<EntityContent> {
    let value: Value = serde_json::from_str(text).map_err(|_| corrupt("entity", "(json)"))?;
    let d = Doc::new(&value, "entity")?;
    Ok(EntityContent {
        title: d.opt_string("title")?,
        icon: d.opt_string("icon")?,
        team: d.value("team").cloned(),
        properties: d.object("properties")?,
        relations: d.object("relations")?,
    })
}

/// Any JSON value kept as text.
pub(crate) fn json_from_text(text: &str, what: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|_| corrupt(what, "(json)"))
}

pub(crate) fn object_from_text(text: &str, what: &str) -> StoreResult<Map<String, Value>> {
    match json_from_text(text, what)? {
        Value::Object(m) => Ok(m),
        _ => Err(corrupt(what, "(root)")),
    }
}

#[cfg(test)]
mod tests {
    use port_core::id::{OrgId, RunId};
    use port_core::run::{NewRun, start};

    use super::*;

    fn sample(policy: ApprovalPolicy) -> Run {
        let t = Timestamp::from_unix_millis(1_700_000_000_000);
        start(
            NewRun {
                id: RunId::parse("r_0000000000000001").unwrap(),
                org_id: OrgId::parse("org_0000000000000001").unwrap(),
                properties: json!({"name": "x", "z": 1, "a": [1, 2]})
                    .as_object()
                    .unwrap()
                    .clone(),
                source: RunSource::Api,
                required_approval: json!({"type": "ALL"}),
                approval_policy: policy,
                payload: Some(Value::Null),
                action: ActionRef {
                    identifier: ActionIdentifier::parse("deploy").unwrap(),
                    title: Some("Deploy".into()),
                    icon: None,
                    deleted: false,
                },
                blueprint: Some(Reference {
                    identifier: "service".into(),
                    title: None,
                    icon: None,
                    deleted: true,
                }),
                entity: None,
                synchronized: true,
                created_by: "me".into(),
                impersonated_by: None,
                chain_depth: 2,
            },
            t,
        )
        .run
    }

    fn round_trip(run: &Run) -> Run {
        run_from_json(
            &run_to_json(run),
            run.id.clone(),
            run.org_id.clone(),
            run.version,
            run.chain_depth,
        )
        .unwrap()
    }

    #[test]
    fn runs_read_back_exactly() {
        let mut run = sample(ApprovalPolicy::All {
            approvers: vec!["a".into(), "b".into()],
        });
        assert_eq!(round_trip(&run), run);
        run.votes.push(Vote {
            user_id: "a".into(),
            decision: Decision::Approved,
            description: None,
            at: run.created_at,
        });
        run.state = RunState::Ended {
            outcome: Outcome::Declined,
            at: run.created_at.plus_millis(5),
        };
        run.message = Some(Map::new());
        run.response = Some(json!({"ok": true}));
        run.link = vec!["https://x".into()];
        run.status_label = Some("done".into());
        run.external_run_id = Some("ext".into());
        assert_eq!(round_trip(&run), run);
        let run = sample(ApprovalPolicy::NotRequired);
        assert_eq!(round_trip(&run), run);
    }
}
