//! What a handler is: [`Handler`], what it returns ([`Outcome`], [`HandlerError`]),
//! and how its action is run ([`ActionOptions`]).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::context::RunContext;
use crate::invocation::Invocation;

/// How long a handler may run by default before its run is failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How many runs of one action run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Handles the runs of one action.
///
/// Implemented by every `async fn(Invocation, RunContext) -> Result<Outcome,
/// HandlerError>` (and closures returning such futures), so plain functions are
/// registered as they are.
pub trait Handler: Send + Sync + 'static {
    /// Handles one run.
    fn call(
        &self,
        invocation: Invocation,
        context: RunContext,
    ) -> BoxFuture<'static, Result<Outcome, HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Invocation, RunContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
{
    fn call(
        &self,
        invocation: Invocation,
        context: RunContext,
    ) -> BoxFuture<'static, Result<Outcome, HandlerError>> {
        Box::pin(self(invocation, context))
    }
}

/// What a handler that finished normally reports.
///
/// For an asynchronous action the run ends `SUCCESS` with [`Outcome::summary`] (unless
/// the handler already ended it). For a synchronized action the outcome is the HTTP
/// answer: 200 with [`Outcome::response`], or `{"ok": true, "runId", "summary"}` when
/// there is none.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Outcome {
    /// The run's summary.
    pub summary: Option<String>,
    /// A synchronized action's answer body.
    pub response: Option<Value>,
}

impl Outcome {
    /// Done, nothing more to say.
    pub fn done() -> Self {
        Self::default()
    }

    /// Done, with a summary.
    pub fn with_summary(summary: impl Into<String>) -> Self {
        Self {
            summary: Some(summary.into()),
            response: None,
        }
    }

    /// Sets the answer body of a synchronized action.
    pub fn response(mut self, response: Value) -> Self {
        self.response = Some(response);
        self
    }

    /// Sets the summary.
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }
}

/// Why a handler failed: the reason its run ends `FAILURE` with.
///
/// Any [`std::error::Error`] converts into one (so `?` works on client, IO and other
/// errors; the message includes the error's sources), and [`HandlerError::new`] makes
/// one from text. Like `anyhow::Error`, it does not implement `std::error::Error`
/// itself, which is what allows the blanket conversion.
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// A failure with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            message: reason.into(),
        }
    }

    /// The reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandlerError").field(&self.message).finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Many errors repeat their source's message in their own.
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Self { message }
    }
}

/// How an action's runs are run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActionOptions {
    /// How long one run may take; then its handler is dropped and the run fails with
    /// "timed out after …". Counted from when the handler starts, not from when the
    /// delivery arrived.
    pub timeout: Duration,
    /// How many runs of this action are handled at once. Further deliveries are
    /// accepted and wait for a free slot (see the crate docs).
    pub concurrency: usize,
    /// A synchronized action: the handler's outcome is the HTTP answer, from which the
    /// server sets the run's status; the handler's status is never PATCHed.
    pub synchronized: bool,
    /// Inputs that are secret even when the body does not say so: a v2 body without
    /// `port_context.encryptedProperties`, a pulled run without a body. They are
    /// decrypted and masked like the secret inputs the body declares.
    pub secret_inputs: Vec<String>,
}

impl Default for ActionOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            synchronized: false,
            secret_inputs: Vec::new(),
        }
    }
}

impl ActionOptions {
    /// The defaults: asynchronous, 10 minutes, 8 at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the concurrency limit (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Marks the action synchronized (or not).
    pub fn synchronized(mut self, synchronized: bool) -> Self {
        self.synchronized = synchronized;
        self
    }

    /// Declares the input `key` secret (see [`ActionOptions::secret_inputs`]).
    pub fn secret_input(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !self.secret_inputs.contains(&key) {
            self.secret_inputs.push(key);
        }
        self
    }
}

/// `10m`, `1h30m`, `2.5s`, `150ms`: short and exact enough for run summaries.
pub fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if !millis.is_multiple_of(1000) {
        return if millis < 1000 {
            format!("{millis}ms")
        } else {
            format!("{:.1}s", duration.as_secs_f64())
        };
    }
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_duration(Duration::from_secs(61)), "1m1s");
        assert_eq!(human_duration(Duration::from_millis(150)), "150ms");
        assert_eq!(human_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn errors_keep_their_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error: HandlerError = Outer(std::io::Error::other("inner")).into();
        assert_eq!(error.message(), "outer: inner");
        assert_eq!(HandlerError::new("plain").to_string(), "plain");
    }
}
