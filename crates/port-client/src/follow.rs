//! Watching a run: [`PortClient::wait_for_run`] and [`PortClient::follow_logs`].

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use crate::client::{Call, PortClient, Repeat};
use crate::error::ClientError;
use crate::sse::{SseEvent, SseParser};
use crate::types::{LogEvent, Run, RunLog};

/// First and longest pause between polls.
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);
/// Page size of `GET …/logs` (the route's maximum).
const LOG_PAGE: u32 = 50;
/// A stream silent this long is taken as dead and reopened (servers send keep-alives).
const STREAM_IDLE: Duration = Duration::from_secs(90);

fn next_poll_delay(delay: Duration) -> Duration {
    (delay * 2).min(POLL_MAX)
}

impl PortClient {
    /// Polls the run (200 ms, doubling to 2 s) until it ends — `SUCCESS`, `FAILURE`,
    /// `DECLINED`, or any status with an `endedAt` — and returns it. Fails with
    /// [`ClientError::Timeout`] after `timeout`, or with the first error a poll returns
    /// after its own retries.
    pub async fn wait_for_run(&self, run_id: &str, timeout: Duration) -> Result<Run, ClientError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut delay = POLL_MIN;
        let last_status = loop {
            let run = self.get_run(run_id).await?;
            if run.has_ended() {
                return Ok(run);
            }
            let now = Instant::now();
            if now >= deadline {
                break run.status;
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = next_poll_delay(delay);
        };
        Err(ClientError::Timeout {
            what: format!("run {run_id} to end"),
            waited: started.elapsed(),
            last_status: Some(last_status),
        })
    }

    /// Follows a run's log as it is written: every log line once and in order, status
    /// changes while it runs, and finally [`LogEvent::Ended`], after which the stream
    /// ends. An `Err` item is final too.
    ///
    /// Uses portd's server-sent events route (`GET /actions/runs/{id}/logs/stream`),
    /// reconnecting with `Last-Event-ID` when the connection drops. Against a server
    /// without it (the route answers 404, as Port's cloud does), or one that refuses
    /// another stream (429 once the retries are spent), it polls
    /// `GET …/logs?offset=` and `GET …/runs/{id}` instead.
    pub fn follow_logs(
        &self,
        run_id: &str,
    ) -> impl Stream<Item = Result<LogEvent, ClientError>> + Send + 'static {
        let follower = Follower {
            client: self.clone(),
            run_id: run_id.to_owned(),
            mode: Mode::Stream,
            pending: VecDeque::new(),
            body: None,
            parser: SseParser::new(),
            last_event_id: None,
            reconnects: 0,
            terminal: None,
            offset: 0,
            last_run: None,
            poll_wait: None,
            poll_backoff: POLL_MIN,
        };
        futures::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|item| (item, follower))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Poll,
    Done,
}

struct Follower {
    client: PortClient,
    run_id: String,
    mode: Mode,
    pending: VecDeque<Result<LogEvent, ClientError>>,
    // Stream mode.
    body: Option<BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    parser: SseParser,
    last_event_id: Option<String>,
    /// Reconnections since the last event; too many and polling takes over.
    reconnects: u32,
    /// A terminal status seen on the stream, held back until `end`.
    terminal: Option<Run>,
    // Poll mode.
    offset: u64,
    last_run: Option<Run>,
    /// The pause before the next poll.
    poll_wait: Option<Duration>,
    /// Grows while polls find nothing new; back to the minimum when they do.
    poll_backoff: Duration,
}

impl Follower {
    async fn next(&mut self) -> Option<Result<LogEvent, ClientError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    self.mode = Mode::Done;
                    self.pending.clear();
                }
                return Some(item);
            }
            match self.mode {
                Mode::Done => return None,
                Mode::Stream => self.step_stream().await,
                Mode::Poll => self.step_poll().await,
            }
        }
    }

    fn fail(&mut self, error: ClientError) {
        self.pending.push_back(Err(error));
    }

    fn stream_error(&self, message: impl Into<String>) -> ClientError {
        ClientError::Stream {
            run_id: self.run_id.clone(),
            message: message.into(),
        }
    }

    fn switch_to_polling(&mut self) {
        tracing::debug!(run_id = %self.run_id, "following the run by polling");
        self.body = None;
        self.mode = Mode::Poll;
        // Log event ids are sequence numbers from 1: the last one is how many lines
        // were already yielded.
        self.offset = self
            .last_event_id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
    }

    async fn connect(&mut self) {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = &self.last_event_id
            && let Ok(value) = HeaderValue::from_str(id)
        {
            headers.insert("last-event-id", value);
        }
        let call = Call {
            method: Method::GET,
            url: self
                .client
                .url(&["actions", "runs", &self.run_id, "logs", "stream"], &[]),
            body: None,
            repeat: Repeat::Safe,
            authenticated: true,
            headers,
            timeout: false,
        };
        match self.client.send_streaming(&call).await {
            Ok(response) => {
                let is_event_stream = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream"));
                if is_event_stream {
                    self.parser = SseParser::new();
                    self.body = Some(response.bytes_stream().boxed());
                } else {
                    self.switch_to_polling();
                }
            }
            // No stream route here (or no such run: polling will say so), or the
            // organization holds all the streams portd allows it (429, still so after
            // the client's retries): polling works all the same.
            Err(e)
                if e.status() == Some(StatusCode::NOT_FOUND.as_u16())
                    || e.status() == Some(StatusCode::METHOD_NOT_ALLOWED.as_u16())
                    || e.status() == Some(StatusCode::NOT_IMPLEMENTED.as_u16())
                    || e.status() == Some(StatusCode::TOO_MANY_REQUESTS.as_u16()) =>
            {
                self.switch_to_polling();
            }
            Err(e) => self.fail(e),
        }
    }

    async fn step_stream(&mut self) {
        let Some(body) = self.body.as_mut() else {
            return self.connect().await;
        };
        let chunk = match tokio::time::timeout(STREAM_IDLE, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => return self.reconnect(&format!("the stream broke: {e}")).await,
            Ok(None) => return self.reconnect("the server closed the stream").await,
            Err(_) => return self.reconnect("the stream went silent").await,
        };
        for event in self.parser.feed(&chunk) {
            self.reconnects = 0;
            self.on_event(event).await;
            if self.mode != Mode::Stream {
                break;
            }
        }
    }

    async fn reconnect(&mut self, why: &str) {
        self.body = None;
        let policy = self.client.retry_policy().clone();
        if self.reconnects >= policy.max_retries.max(1) {
            // The stream keeps failing without delivering anything; polling still works
            // through proxies that break streaming.
            tracing::debug!(run_id = %self.run_id, why, "giving up on the event stream");
            return self.switch_to_polling();
        }
        let delay = self
            .parser
            .retry()
            .unwrap_or_else(|| policy.backoff(self.reconnects));
        tracing::debug!(run_id = %self.run_id, why, ?delay, "reconnecting to the event stream");
        self.reconnects += 1;
        tokio::time::sleep(delay).await;
    }

    async fn on_event(&mut self, event: SseEvent) {
        match event.event.as_str() {
            "log" => match decode::<RunLog>(&event.data, "runLog") {
                Ok(log) => {
                    if event.id.is_some() {
                        self.last_event_id = event.id;
                    }
                    self.pending.push_back(Ok(LogEvent::Log(log)));
                }
                Err(e) => {
                    let error = self.stream_error(format!("bad `log` event: {e}"));
                    self.fail(error);
                }
            },
            "status" => match decode::<Run>(&event.data, "run") {
                // A terminal status is announced by `end`, after the last log lines.
                Ok(run) if run.has_ended() => self.terminal = Some(run),
                Ok(run) => self.pending.push_back(Ok(LogEvent::Status(Box::new(run)))),
                Err(e) => {
                    let error = self.stream_error(format!("bad `status` event: {e}"));
                    self.fail(error);
                }
            },
            "end" => {
                self.body = None;
                self.mode = Mode::Done;
                let run = match decode::<Run>(&event.data, "run") {
                    Ok(run) if run.has_ended() => Some(run),
                    _ => self.terminal.take(),
                };
                let run = match run {
                    Some(run) => Ok(run),
                    None => self.client.get_run(&self.run_id).await,
                };
                self.pending
                    .push_back(run.map(|run| LogEvent::Ended(Box::new(run))));
            }
            // Unknown events are someone else's extension.
            _ => {}
        }
    }

    async fn step_poll(&mut self) {
        if let Some(delay) = self.poll_wait.take() {
            tokio::time::sleep(delay).await;
        }
        let before = self.pending.len();
        if let Err(e) = self.drain_logs().await {
            return self.fail(e);
        }
        let run = match self.client.get_run(&self.run_id).await {
            Ok(run) => run,
            Err(e) => return self.fail(e),
        };
        if run.has_ended() {
            // Nothing is written to an ended run, so this drain gets the last lines.
            if let Err(e) = self.drain_logs().await {
                return self.fail(e);
            }
            self.mode = Mode::Done;
            self.pending.push_back(Ok(LogEvent::Ended(Box::new(run))));
            return;
        }
        if self.last_run.as_ref() != Some(&run) {
            self.last_run = Some(run.clone());
            self.pending.push_back(Ok(LogEvent::Status(Box::new(run))));
        }
        self.poll_backoff = if self.pending.len() > before {
            POLL_MIN
        } else {
            next_poll_delay(self.poll_backoff)
        };
        self.poll_wait = Some(self.poll_backoff);
    }

    async fn drain_logs(&mut self) -> Result<(), ClientError> {
        loop {
            let page = self
                .client
                .logs(&self.run_id, self.offset, LOG_PAGE)
                .await?;
            let full = page.len() >= LOG_PAGE as usize;
            self.offset += page.len() as u64;
            self.pending
                .extend(page.into_iter().map(|log| Ok(LogEvent::Log(log))));
            if !full {
                return Ok(());
            }
        }
    }
}

/// Decodes an event's data: the object itself, or wrapped as `{key: …}`.
fn decode<T: serde::de::DeserializeOwned>(data: &str, key: &str) -> Result<T, String> {
    let mut value: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
    if let Some(inner) = value.get_mut(key).map(Value::take) {
        value = inner;
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}
