//! Actions: the current (v2) routes and the legacy blueprint-scoped (v1) ones
//! (port-api.md §4).

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::catalog::to_json;
use crate::client::{PortClient, Repeat};
use crate::error::ClientError;
use crate::requests::{ActionQuery, ExecuteRequest, Query};
use crate::types::{Action, Run};

impl PortClient {
    /// `POST /v1/actions`: creates a v2 action or automation.
    pub async fn create_action(
        &self,
        action: &(impl Serialize + ?Sized),
    ) -> Result<Action, ClientError> {
        let body = to_json(action)?;
        let call = self.call(
            Method::POST,
            &["actions"],
            &Query::new(),
            Some(&body),
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("action")
    }

    /// `GET /v1/actions/{identifier}`.
    pub async fn get_action(&self, identifier: &str) -> Result<Action, ClientError> {
        let call = self.call(
            Method::GET,
            &["actions", identifier],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("action")
    }

    /// `GET /v1/actions` with filters (v2 shape).
    pub async fn list_actions(&self, filter: &ActionQuery) -> Result<Vec<Action>, ClientError> {
        let mut query = filter.query();
        query.push(("version".to_owned(), "v2".to_owned()));
        let call = self.call(Method::GET, &["actions"], &query, None, Repeat::Safe);
        self.send(&call).await?.take_or_default("actions")
    }

    /// `PUT /v1/actions/{identifier}`: replaces the action.
    pub async fn update_action(
        &self,
        identifier: &str,
        action: &(impl Serialize + ?Sized),
    ) -> Result<Action, ClientError> {
        let body = to_json(action)?;
        let call = self.call(
            Method::PUT,
            &["actions", identifier],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("action")
    }

    /// `DELETE /v1/actions/{identifier}`.
    pub async fn delete_action(&self, identifier: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &["actions", identifier],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }

    /// `POST /v1/actions/{action}/runs`: executes an action and returns its run (v2).
    ///
    /// Sends an `Idempotency-Key` (the request's, or a new UUID v4) that stays the same
    /// on every retry, so a retry after a lost answer returns the first run instead of
    /// creating a second one.
    pub async fn execute(
        &self,
        action: &str,
        request: &ExecuteRequest,
    ) -> Result<Run, ClientError> {
        self.execute_at(&["actions", action, "runs"], request).await
    }

    /// Legacy `POST /v1/blueprints/{blueprint}/actions/{action}/runs`, with the same
    /// idempotency as [`Self::execute`].
    pub async fn execute_blueprint_action(
        &self,
        blueprint: &str,
        action: &str,
        request: &ExecuteRequest,
    ) -> Result<Run, ClientError> {
        self.execute_at(
            &["blueprints", blueprint, "actions", action, "runs"],
            request,
        )
        .await
    }

    async fn execute_at(
        &self,
        segments: &[&str],
        request: &ExecuteRequest,
    ) -> Result<Run, ClientError> {
        let key = request
            .idempotency_key
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = request.body();
        let call = self.call(
            Method::POST,
            segments,
            &request.query(),
            Some(&body),
            Repeat::Safe,
        );
        let call = Self::with_header(call, "idempotency-key", &key)?;
        self.send(&call).await?.take("run")
    }

    /// Legacy `POST /v1/blueprints/{blueprint}/actions`: one v1 action or an array of
    /// them (the seed's form); returns the created actions.
    pub async fn create_blueprint_actions(
        &self,
        blueprint: &str,
        actions: &(impl Serialize + ?Sized),
    ) -> Result<Vec<Action>, ClientError> {
        let body = to_json(actions)?;
        let call = self.call(
            Method::POST,
            &["blueprints", blueprint, "actions"],
            &Query::new(),
            Some(&body),
            Repeat::Unsafe,
        );
        one_or_many(self.send(&call).await?.body)
    }

    /// Legacy `GET /v1/blueprints/{blueprint}/actions` (v1 shape).
    pub async fn list_blueprint_actions(
        &self,
        blueprint: &str,
    ) -> Result<Vec<Action>, ClientError> {
        let call = self.call(
            Method::GET,
            &["blueprints", blueprint, "actions"],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        one_or_many(self.send(&call).await?.body)
    }

    /// Legacy `PUT /v1/blueprints/{blueprint}/actions`: replaces the blueprint's whole
    /// list of actions.
    pub async fn replace_blueprint_actions(
        &self,
        blueprint: &str,
        actions: &(impl Serialize + ?Sized),
    ) -> Result<Vec<Action>, ClientError> {
        let body = to_json(actions)?;
        let call = self.call(
            Method::PUT,
            &["blueprints", blueprint, "actions"],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        one_or_many(self.send(&call).await?.body)
    }

    /// Legacy `GET /v1/blueprints/{blueprint}/actions/{action}` (v1 shape).
    pub async fn get_blueprint_action(
        &self,
        blueprint: &str,
        action: &str,
    ) -> Result<Action, ClientError> {
        let call = self.call(
            Method::GET,
            &["blueprints", blueprint, "actions", action],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("action")
    }

    /// Legacy `PUT /v1/blueprints/{blueprint}/actions/{action}`.
    pub async fn update_blueprint_action(
        &self,
        blueprint: &str,
        action: &str,
        definition: &(impl Serialize + ?Sized),
    ) -> Result<Action, ClientError> {
        let body = to_json(definition)?;
        let call = self.call(
            Method::PUT,
            &["blueprints", blueprint, "actions", action],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("action")
    }

    /// Legacy `DELETE /v1/blueprints/{blueprint}/actions/{action}`.
    pub async fn delete_blueprint_action(
        &self,
        blueprint: &str,
        action: &str,
    ) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &["blueprints", blueprint, "actions", action],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }
}

/// The legacy routes answer `{action}` for one and `{actions}` for several.
fn one_or_many(mut body: Value) -> Result<Vec<Action>, ClientError> {
    let context = "the legacy actions answer";
    if let Some(list) = body.get_mut("actions").map(Value::take) {
        return serde_json::from_value(list).map_err(|e| ClientError::decode(context, e));
    }
    match body.get_mut("action").map(Value::take) {
        Some(one) => Ok(vec![Action(one)]),
        None => Err(ClientError::decode(
            context,
            "neither `actions` nor `action`",
        )),
    }
}
