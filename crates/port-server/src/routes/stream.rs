//! `GET /v1/actions/runs/{run_id}/logs/stream` (portd): a run's log as server-sent
//! events, live.
//!
//! - `log` events, `id:` the line's sequence number, data the `runLog` JSON: first the
//!   lines so far (after `Last-Event-ID`, when the client resumes), then new ones.
//! - `status` events, data the v2 run: the run as it is once the backlog is sent, then
//!   every change to it.
//! - `end`, data the final v2 run, once the run has ended and its last lines were sent;
//!   the stream closes after it.
//!
//! The stream listens to the hub's run changes, subscribed before anything is read so
//! no change falls between the backlog and the first notice. A notice is only a hint:
//! on each one for this run (or after falling behind, or every few seconds for changes
//! made by another replica) the stream reads the store again. It ends when the server
//! begins shutting down, so a graceful shutdown is never held up by an open stream; a
//! client resumes with `Last-Event-ID` on another replica or after the restart.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use port_core::error::StoreError;
use port_core::id::{OrgId, RunId};
use port_core::ports::Notice;
use port_core::run::Run;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::ApiResult;
use crate::extract::{ApiPath, Authenticated};
use crate::state::AppState;

/// Comments sent on a quiet stream so proxies and clients know it is alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream reads the store without a notice, for changes made elsewhere.
const SAFETY_POLL: Duration = Duration::from_secs(2);
/// Log lines read per query.
const LOG_PAGE: u64 = 500;

/// The header a reconnecting client resumes with.
pub const LAST_EVENT_ID: &str = "last-event-id";

struct Follower {
    state: AppState,
    org: OrgId,
    run: RunId,
    notices: broadcast::Receiver<Notice>,
    /// The last log line sent.
    last_seq: u64,
    /// The version of the run last sent as `status`.
    last_version: Option<u64>,
    pending: VecDeque<Event>,
    /// A run whose log is still being sent, page by page; its status comes after.
    backlog: Option<Run>,
    done: bool,
    poll: tokio::time::Interval,
}

impl Follower {
    /// Queues what changed since the last look: new log lines, then the run's status if
    /// it changed, then `end` if it ended. The run is read before the lines, so when
    /// it has ended, every line it will ever have is read after it. Lines are read a
    /// page at a time, the next page once the previous one was sent, so a long log
    /// never sits in memory whole.
    async fn absorb(&mut self, run: Run) -> Result<(), StoreError> {
        let page = self
            .state
            .store()
            .logs_after(&self.org, &self.run, self.last_seq, LOG_PAGE)
            .await?;
        let full = page.len() as u64 >= LOG_PAGE;
        for log in page {
            self.last_seq = self.last_seq.max(log.seq);
            self.pending.push_back(
                Event::default()
                    .event("log")
                    .id(log.seq.to_string())
                    .data(log.to_json().to_string()),
            );
        }
        if full {
            self.backlog = Some(run);
            return Ok(());
        }
        if self.last_version != Some(run.version) {
            self.last_version = Some(run.version);
            self.pending.push_back(
                Event::default()
                    .event("status")
                    .data(run.to_v2_json().to_string()),
            );
        }
        if run.is_terminal() {
            self.pending.push_back(
                Event::default()
                    .event("end")
                    .data(run.to_v2_json().to_string()),
            );
            self.done = true;
        }
        Ok(())
    }

    async fn refresh(&mut self) -> Result<(), StoreError> {
        match self.state.store().get_run(&self.org, &self.run).await? {
            Some(run) => self.absorb(run).await,
            None => {
                // Runs are never deleted; should one vanish, there is nothing to follow.
                self.done = true;
                Ok(())
            }
        }
    }

    /// The next event, or `None` when the stream is over.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.state.stopping().is_cancelled() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if let Some(run) = self.backlog.take() {
                if let Err(e) = self.absorb(run).await {
                    return self.failed(&e);
                }
                continue;
            }
            let look = tokio::select! {
                biased;
                () = self.state.stopping().cancelled() => return None,
                notice = self.notices.recv() => match notice {
                    Ok(Notice::RunChanged { org, run }) => org == self.org && run == self.run,
                    Ok(Notice::DeliveryReady) => false,
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.poll.tick() => true,
            };
            if !look {
                continue;
            }
            // Notices that piled up meanwhile are covered by this one read.
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) =
                self.notices.try_recv()
            {}
            if let Err(e) = self.refresh().await {
                return self.failed(&e);
            }
        }
    }

    /// Ends the stream after a storage error; the client reconnects with
    /// `Last-Event-ID` and loses nothing.
    fn failed(&mut self, error: &StoreError) -> Option<Event> {
        tracing::warn!(run = %self.run, %error, "a log stream could not read the store; closing it");
        self.done = true;
        None
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next_event().await?;
            Some((Ok(event), follower))
        })
    }
}

fn safety_poll() -> tokio::time::Interval {
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + SAFETY_POLL, SAFETY_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll
}

/// The sequence number a resuming client last saw (`Last-Event-ID`); anything else
/// starts from the first line.
fn resume_after(headers: &HeaderMap) -> u64 {
    headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn stream_logs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // Subscribe first: a change made while the backlog is read still wakes the stream.
    let notices = state.hub().subscribe_runs();
    let run = state.services().get_run(&caller, &run_id).await?;
    let mut follower = Follower {
        state,
        org: caller.org_id,
        run: run.id.clone(),
        notices,
        last_seq: resume_after(&headers),
        last_version: None,
        pending: VecDeque::new(),
        backlog: None,
        done: false,
        poll: safety_poll(),
    };
    follower.absorb(run).await?;
    let sse = Sse::new(follower.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // Asks nginx-like proxies not to buffer the stream.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}
