//! [`RunContext`]: a handler's handle on its run.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use port_client::{
    ClientError, Entity, EntityDeleteOptions, FinalStatus, PortClient, RunLog, RunUpdate,
};
use port_core::secret::Masker;
use serde_json::Value;

/// What replaces a secret in text sent to the run.
pub const MASK: &str = "***";
/// Secrets shorter than this are not masked: masking every `a` or `1` in a log would
/// make it unreadable and protect nothing.
pub const MIN_MASKED_LEN: usize = 3;

/// How a run ended, as far as this context knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    Succeeded { summary: Option<String> },
    Failed { reason: String },
}

#[derive(Debug, Default)]
struct State {
    links: Vec<String>,
    ended: Option<Ended>,
}

struct Inner {
    client: PortClient,
    run_id: String,
    action: String,
    /// Whether the server sets the status from the HTTP answer (synchronized webhook
    /// runs): then `succeed` and `fail` only decide the answer.
    status_from_answer: bool,
    masker: Masker,
    state: Mutex<State>,
    /// Serializes link updates: each PATCH sends the whole list, so two in flight
    /// could land in the wrong order and lose a link.
    link_lock: tokio::sync::Mutex<()>,
}

/// A handler's handle on its run: progress reports, links, entities bound to the run,
/// and the run's end. Cheap to clone.
///
/// All text sent through it (logs, labels, summaries, failure reasons) has the values
/// of the run's secret inputs and the client secret replaced by `***`.
#[derive(Clone)]
pub struct RunContext {
    inner: Arc<Inner>,
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("run_id", &self.inner.run_id)
            .field("action", &self.inner.action)
            .field("status_from_answer", &self.inner.status_from_answer)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether an error says the run has already ended.
fn already_ended(error: &ClientError) -> bool {
    error.identifier() == Some("run_exhausted")
}

impl RunContext {
    /// A context for `run_id`. `status_from_answer` is true for synchronized webhook
    /// runs, whose status the server takes from the HTTP answer; `secrets` are values
    /// masked in everything sent.
    pub fn new(
        client: PortClient,
        run_id: impl Into<String>,
        action: impl Into<String>,
        status_from_answer: bool,
        secrets: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                run_id: run_id.into(),
                action: action.into(),
                status_from_answer,
                masker: Masker::new(secrets, MIN_MASKED_LEN, MASK),
                state: Mutex::new(State::default()),
                link_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The action's identifier.
    pub fn action(&self) -> &str {
        &self.inner.action
    }

    /// Whether the run's status follows the HTTP answer (a synchronized webhook run).
    pub fn status_from_answer(&self) -> bool {
        self.inner.status_from_answer
    }

    /// The API client, for anything else.
    pub fn client(&self) -> &PortClient {
        &self.inner.client
    }

    /// `text` with the secrets masked.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.inner.masker.mask(text)
    }

    /// Whether `succeed` or `fail` was called (or the server said the run had ended).
    pub fn has_ended(&self) -> bool {
        lock(&self.inner.state).ended.is_some()
    }

    pub(crate) fn ended(&self) -> Option<Ended> {
        lock(&self.inner.state).ended.clone()
    }

    /// The links added so far.
    pub fn links(&self) -> Vec<String> {
        lock(&self.inner.state).links.clone()
    }

    /// Adds a line to the run's log.
    pub async fn log(&self, message: impl AsRef<str>) -> Result<RunLog, ClientError> {
        let message = self.mask(message.as_ref());
        self.inner
            .client
            .add_log(&self.inner.run_id, &message, None, None)
            .await
    }

    async fn patch(&self, update: RunUpdate) -> Result<(), ClientError> {
        self.inner
            .client
            .patch_run(&self.inner.run_id, &update)
            .await
            .map(drop)
    }

    /// Sets the label shown next to the run's status.
    pub async fn status_label(&self, label: impl AsRef<str>) -> Result<(), ClientError> {
        self.patch(RunUpdate {
            status_label: Some(self.mask(label.as_ref()).into_owned()),
            ..RunUpdate::default()
        })
        .await
    }

    /// Adds a link to the run. The API replaces the whole list on each update, so the
    /// list is kept here and sent whole.
    pub async fn add_link(&self, url: impl Into<String>) -> Result<(), ClientError> {
        let _serial = self.inner.link_lock.lock().await;
        let links = {
            let mut state = lock(&self.inner.state);
            state.links.push(url.into());
            state.links.clone()
        };
        self.patch(RunUpdate {
            link: Some(links),
            ..RunUpdate::default()
        })
        .await
    }

    /// Sets the run's summary.
    pub async fn summary(&self, summary: impl AsRef<str>) -> Result<(), ClientError> {
        self.patch(RunUpdate {
            summary: Some(self.mask(summary.as_ref()).into_owned()),
            ..RunUpdate::default()
        })
        .await
    }

    /// Sets the run's external id (your backend's id for it).
    pub async fn external_run_id(&self, id: impl Into<String>) -> Result<(), ClientError> {
        self.patch(RunUpdate {
            external_run_id: Some(id.into()),
            ..RunUpdate::default()
        })
        .await
    }

    /// Creates or merges an entity, bound to the run (it shows among the run's affected
    /// entities and in `GET /v1/audit-log?run_id=`). The run must still be in progress.
    pub async fn upsert_entity(
        &self,
        blueprint: &str,
        entity: &Value,
    ) -> Result<Entity, ClientError> {
        self.inner
            .client
            .upsert_entity(blueprint, entity, Some(&self.inner.run_id))
            .await
    }

    /// Deletes an entity, bound to the run.
    pub async fn delete_entity(
        &self,
        blueprint: &str,
        identifier: &str,
    ) -> Result<(), ClientError> {
        let options = EntityDeleteOptions {
            run_id: Some(self.inner.run_id.clone()),
            ..EntityDeleteOptions::default()
        };
        self.inner
            .client
            .delete_entity(blueprint, identifier, &options)
            .await
    }

    /// Marks the first end; false when the run had already ended here.
    fn mark_ended(&self, ended: Ended) -> bool {
        let mut state = lock(&self.inner.state);
        if state.ended.is_some() {
            return false;
        }
        state.ended = Some(ended);
        true
    }

    /// Ends the run `SUCCESS`, with a summary. Only the first `succeed` or `fail`
    /// counts; later ones do nothing. For a synchronized run this decides the answer
    /// (and sets the summary) instead.
    pub async fn succeed(&self, summary: Option<&str>) -> Result<(), ClientError> {
        let summary = summary.map(|s| self.mask(s).into_owned());
        if !self.mark_ended(Ended::Succeeded {
            summary: summary.clone(),
        }) {
            return Ok(());
        }
        if self.inner.status_from_answer {
            return match summary {
                Some(summary) => self.summary(summary).await,
                None => Ok(()),
            };
        }
        let update = RunUpdate {
            status: Some(FinalStatus::Success),
            summary,
            ..RunUpdate::default()
        };
        match self.patch(update).await {
            Err(e) if already_ended(&e) => Ok(()),
            other => other,
        }
    }

    /// Ends the run `FAILURE`: logs the reason, then sets it as the summary with the
    /// status. Only the first `succeed` or `fail` counts. For a synchronized run this
    /// decides the answer (a 500 with the reason) instead.
    pub async fn fail(&self, reason: impl AsRef<str>) -> Result<(), ClientError> {
        let reason = self.mask(reason.as_ref()).into_owned();
        if !self.mark_ended(Ended::Failed {
            reason: reason.clone(),
        }) {
            return Ok(());
        }
        let logged = self
            .inner
            .client
            .add_log(
                &self.inner.run_id,
                &format!("Run failed: {reason}"),
                None,
                None,
            )
            .await;
        if let Err(e) = &logged
            && !already_ended(e)
        {
            tracing::warn!(run = %self.inner.run_id, error = %e, "could not log the failure reason");
        }
        let update = RunUpdate {
            status: (!self.inner.status_from_answer).then_some(FinalStatus::Failure),
            summary: Some(reason),
            ..RunUpdate::default()
        };
        match self.patch(update).await {
            Err(e) if already_ended(&e) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let masker = Masker::new(
            ["abc".to_owned(), "abcdef".to_owned(), "x".to_owned()],
            MIN_MASKED_LEN,
            MASK,
        );
        assert_eq!(
            masker.mask("key=abcdef, other=abc, x"),
            "key=***, other=***, x"
        );
        assert!(matches!(masker.mask("nothing here"), Cow::Borrowed(_)));
    }
}
