//! Runs, their logs and approvals (port-api.md §5), and portd's delivery extensions:
//! deliveries, redelivery, and the claim / ack / heartbeat routes of pull-mode runners.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::catalog::to_json;
use crate::client::{PortClient, Repeat};
use crate::error::ClientError;
use crate::requests::{Query, RunQuery, RunUpdate};
use crate::types::{Approver, Delivery, FinalStatus, Run, RunLog, RunPage};

/// Header Port's own runners send on the claiming routes.
const RESERVED_USAGE: &str = "x-port-reserved-usage";

fn v2() -> Query {
    vec![("version".to_owned(), "v2".to_owned())]
}

impl PortClient {
    /// `GET /v1/actions/runs` (v2 shape): one page, newest first.
    pub async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, ClientError> {
        let call = self.call(
            Method::GET,
            &["actions", "runs"],
            &query.query(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.decode()
    }

    /// `GET /v1/actions/runs/{id}?version=v2`.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, ClientError> {
        let call = self.call(
            Method::GET,
            &["actions", "runs", run_id],
            &v2(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("run")
    }

    /// `PATCH /v1/actions/runs/{id}?version=v2`: sets the given fields; a `status`
    /// ends the run. Retried like a PUT: repeating an identical patch is a no-op success.
    pub async fn patch_run(&self, run_id: &str, update: &RunUpdate) -> Result<Run, ClientError> {
        let body = to_json(update)?;
        let call = self.call(
            Method::PATCH,
            &["actions", "runs", run_id],
            &v2(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("run")
    }

    /// `PATCH /v1/actions/runs/{id}/approval` with `APPROVE`.
    pub async fn approve(
        &self,
        run_id: &str,
        description: Option<&str>,
    ) -> Result<Run, ClientError> {
        self.decide(run_id, "APPROVE", description).await
    }

    /// `PATCH /v1/actions/runs/{id}/approval` with `DECLINE`.
    pub async fn decline(
        &self,
        run_id: &str,
        description: Option<&str>,
    ) -> Result<Run, ClientError> {
        self.decide(run_id, "DECLINE", description).await
    }

    async fn decide(
        &self,
        run_id: &str,
        decision: &str,
        description: Option<&str>,
    ) -> Result<Run, ClientError> {
        let mut body = Map::new();
        body.insert("status".into(), json!(decision));
        if let Some(description) = description {
            body.insert("description".into(), json!(description));
        }
        // Not repeated: a second approval of the same run is refused.
        let call = self.call(
            Method::PATCH,
            &["actions", "runs", run_id, "approval"],
            &v2(),
            Some(&Value::Object(body)),
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("run")
    }

    /// `GET /v1/actions/runs/{id}/approvers`; with `include_pending`, designated
    /// approvers who have not decided yet are listed too.
    pub async fn approvers(
        &self,
        run_id: &str,
        include_pending: bool,
    ) -> Result<Vec<Approver>, ClientError> {
        let query = vec![(
            "include_pending_approvers".to_owned(),
            include_pending.to_string(),
        )];
        let call = self.call(
            Method::GET,
            &["actions", "runs", run_id, "approvers"],
            &query,
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take_or_default("approvers")
    }

    /// `POST /v1/actions/runs/{id}/logs`: adds a log line; `termination_status` also
    /// ends the run (once). Not retried after the server may have stored it, since a
    /// repeat would add the line twice.
    pub async fn add_log(
        &self,
        run_id: &str,
        message: &str,
        termination_status: Option<FinalStatus>,
        status_label: Option<&str>,
    ) -> Result<RunLog, ClientError> {
        let mut body = Map::new();
        body.insert("message".into(), json!(message));
        if let Some(status) = termination_status {
            body.insert("terminationStatus".into(), json!(status.as_str()));
        }
        if let Some(label) = status_label {
            body.insert("statusLabel".into(), json!(label));
        }
        let call = self.call(
            Method::POST,
            &["actions", "runs", run_id, "logs"],
            &Query::new(),
            Some(&Value::Object(body)),
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("runLog")
    }

    /// `GET /v1/actions/runs/{id}/logs?offset=&limit=`: up to `limit` (1–50) lines after
    /// skipping `offset`, oldest first.
    pub async fn logs(
        &self,
        run_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<RunLog>, ClientError> {
        let query = vec![
            ("offset".to_owned(), offset.to_string()),
            ("limit".to_owned(), limit.to_string()),
        ];
        let call = self.call(
            Method::GET,
            &["actions", "runs", run_id, "logs"],
            &query,
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take_or_default("runLogs")
    }

    /// `PATCH /v1/actions/runs/{id}/response`: stores a synchronized run's response, as
    /// Port's agent does.
    pub async fn set_run_response(
        &self,
        run_id: &str,
        response: &Value,
    ) -> Result<(), ClientError> {
        let call = self.call(
            Method::PATCH,
            &["actions", "runs", run_id, "response"],
            &Query::new(),
            Some(&json!({ "response": response })),
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }

    /// `GET /v1/actions/runs/{id}/deliveries` (portd): the run's deliveries with their
    /// attempts.
    pub async fn deliveries(&self, run_id: &str) -> Result<Vec<Delivery>, ClientError> {
        let call = self.call(
            Method::GET,
            &["actions", "runs", run_id, "deliveries"],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take_or_default("deliveries")
    }

    /// `POST /v1/actions/runs/{id}/deliveries/redeliver` (portd): sends the run's latest
    /// delivery again.
    pub async fn redeliver(&self, run_id: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::POST,
            &["actions", "runs", run_id, "deliveries", "redeliver"],
            &Query::new(),
            // An empty object rather than no body, for JSON extractors.
            Some(&json!({})),
            Repeat::Unsafe,
        );
        self.send(&call).await.map(drop)
    }

    /// `POST /v1/actions/runs/claim-pending`: leases up to `limit` runs waiting for a
    /// pull-mode runner for `visibility_timeout_ms`; a run not acknowledged in time is
    /// handed out again. `installation_id` limits the claim to runs bound to that
    /// runner installation. The runs come in the v2 shape, with `payload`.
    ///
    /// Not repeated after the server may have acted: a lost answer's runs come back
    /// once their lease expires.
    pub async fn claim_pending(
        &self,
        limit: u32,
        visibility_timeout_ms: u64,
        installation_id: Option<&str>,
    ) -> Result<Vec<Run>, ClientError> {
        let mut body = Map::new();
        body.insert("limit".into(), json!(limit));
        body.insert("visibilityTimeoutMs".into(), json!(visibility_timeout_ms));
        if let Some(installation) = installation_id {
            body.insert("installationId".into(), json!(installation));
        }
        let call = self.call(
            Method::POST,
            &["actions", "runs", "claim-pending"],
            &Query::new(),
            Some(&Value::Object(body)),
            Repeat::Unsafe,
        );
        let call = Self::with_header(call, RESERVED_USAGE, "true")?;
        self.send(&call).await?.take_or_default("runs")
    }

    /// `PATCH /v1/actions/runs/ack` `{runIds}`: confirms claimed runs so they are not
    /// handed out again; returns how many were still pending. Acknowledging twice is
    /// harmless, so it is retried.
    pub async fn ack(&self, run_ids: &[impl AsRef<str>]) -> Result<u64, ClientError> {
        let ids: Vec<&str> = run_ids.iter().map(AsRef::as_ref).collect();
        let call = self.call(
            Method::PATCH,
            &["actions", "runs", "ack"],
            &Query::new(),
            Some(&json!({ "runIds": ids })),
            Repeat::Safe,
        );
        let call = Self::with_header(call, RESERVED_USAGE, "true")?;
        let answer = self.send(&call).await?;
        Ok(answer
            .body
            .get("ackedCount")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// `POST /v1/actions/runs/{id}/heartbeat` (portd): extends the runner's lease on a
    /// run it is working on. Extending twice is harmless, so it is retried.
    pub async fn heartbeat(&self, run_id: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::POST,
            &["actions", "runs", run_id, "heartbeat"],
            &Query::new(),
            Some(&json!({})),
            Repeat::Safe,
        );
        let call = Self::with_header(call, RESERVED_USAGE, "true")?;
        self.send(&call).await.map(drop)
    }
}
