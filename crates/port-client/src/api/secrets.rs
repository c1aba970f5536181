//! The organization's secrets (`/v1/organization/secrets`): templates read them as
//! `{{ .secrets.NAME }}` when a run's invocation is sent.
//!
//! Values go in and never come out: answers carry names, descriptions and dates
//! ([`Secret`]). A value sent here is kept out of everything this client shows: request
//! bodies are never logged (only method and path are), and an error that quotes the
//! value has it replaced by `[REDACTED]`.

use reqwest::Method;
use serde_json::{Map, Value};

use crate::client::{PortClient, Repeat};
use crate::error::ClientError;
use crate::requests::Query;
use crate::types::Secret;

const SECRETS: [&str; 2] = ["organization", "secrets"];

impl PortClient {
    /// `GET /v1/organization/secrets`: every secret, by name.
    pub async fn list_secrets(&self) -> Result<Vec<Secret>, ClientError> {
        let call = self.call(Method::GET, &SECRETS, &Query::new(), None, Repeat::Safe);
        self.send(&call).await?.take_or_default("secrets")
    }

    /// `GET /v1/organization/secrets/{name}`.
    pub async fn get_secret(&self, name: &str) -> Result<Secret, ClientError> {
        let call = self.call(
            Method::GET,
            &[SECRETS[0], SECRETS[1], name],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("secret")
    }

    /// `POST /v1/organization/secrets` `{secretName, secretValue, description?}`:
    /// creates a secret. A name already taken is a 409 `identifier_taken`
    /// ([`ClientError::status`] `Some(409)`); names are `[A-Za-z0-9_-]{1,100}`, and portd
    /// refuses (422) a value over 65 536 characters, a 501st secret or more than 1 MiB
    /// of values in all.
    ///
    /// Retried only when the server cannot have acted (a failed connection, a 429): a
    /// retry of a create that was stored but whose answer was lost would get 409 for
    /// the caller's own secret, indistinguishable from someone else's. After a
    /// transport error, [`Self::get_secret`] tells whether it exists, and
    /// [`Self::update_secret`] sets the value either way.
    pub async fn create_secret(
        &self,
        name: &str,
        value: &str,
        description: Option<&str>,
    ) -> Result<Secret, ClientError> {
        let mut body = Map::new();
        body.insert("secretName".into(), name.into());
        body.insert("secretValue".into(), value.into());
        if let Some(description) = description {
            body.insert("description".into(), description.into());
        }
        let call = self.call(
            Method::POST,
            &SECRETS,
            &Query::new(),
            Some(&Value::Object(body)),
            Repeat::Unsafe,
        );
        let answer = self.send(&call).await.map_err(|e| e.masking(value))?;
        answer.take("secret").map_err(|e| e.masking(value))
    }

    /// `PATCH /v1/organization/secrets/{name}` `{secretValue?, description?}`: replaces
    /// the value and/or the description (`None` keeps it). Invocations sent from then on
    /// use the new value, those of runs created before too. Repeating the same patch
    /// gives the same secret, so it is retried.
    pub async fn update_secret(
        &self,
        name: &str,
        value: Option<&str>,
        description: Option<&str>,
    ) -> Result<Secret, ClientError> {
        let mut body = Map::new();
        if let Some(value) = value {
            body.insert("secretValue".into(), value.into());
        }
        if let Some(description) = description {
            body.insert("description".into(), description.into());
        }
        let call = self.call(
            Method::PATCH,
            &[SECRETS[0], SECRETS[1], name],
            &Query::new(),
            Some(&Value::Object(body)),
            Repeat::Safe,
        );
        let mask = |e: ClientError| match value {
            Some(value) => e.masking(value),
            None => e,
        };
        let answer = self.send(&call).await.map_err(mask)?;
        answer.take("secret").map_err(mask)
    }

    /// `DELETE /v1/organization/secrets/{name}`. Retried like every DELETE: a retry
    /// after a lost answer may get 404 for the secret the first attempt deleted.
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &[SECRETS[0], SECRETS[1], name],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }
}
