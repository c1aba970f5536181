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
//! Every stream of a run on this server follows the run's one [`RunFeed`] in the hub,
//! subscribed before anything is read so no change falls between the backlog and the
//! first notice. A change is serialized into the feed once; a stream sends only what
//! it has not sent yet (new lines, the run when it changed), writing the feed's shared
//! bytes. The backlog, and the lines of a stream that fell behind the feed's window,
//! come from the store a page at a time, the next page once the previous one was sent,
//! so a stream holds at most one page whatever its reader's pace. On PostgreSQL another
//! replica's change marks the feed stale as soon as the replica bus brings its notice
//! ([`crate::replicas`]), and one stream of the run reads the store for all; every few
//! seconds one does so anyway, for a notice that was lost.
//!
//! An organization holds at most `PORTD_MAX_STREAMS_PER_ORG` streams open (429
//! `too_many_requests` with `Retry-After` beyond). A stream ends when the server begins
//! shutting down, so a graceful shutdown is never held up by it; a client resumes with
//! `Last-Event-ID` on another replica or after the restart.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use port_core::id::RunId;
use port_core::run_log::RunLog;
use port_core::service::{Caller, OrgRuns};
use port_core::{ErrorKind, PortError};
use port_delivery::{Lines, RunFeed, StreamLimitReached, StreamSlot};
use tokio::sync::watch;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, Authenticated};
use crate::state::AppState;

/// Comments sent on a quiet stream so proxies and clients know it is alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a run's feed reads the store without a notice, for changes made elsewhere.
const SAFETY_POLL: Duration = Duration::from_secs(2);
/// Lines a stream takes from its feed at once, and about how many bytes.
const FEED_BATCH_LINES: usize = 64;
const FEED_BATCH_BYTES: usize = 256 * 1024;
/// Lines read from the store at once: few at first (a line may be 64 KiB), then as many
/// as fit in `STORE_PAGE_BYTES` at the size of the last page's lines.
const FIRST_STORE_PAGE: u64 = 8;
const MAX_STORE_PAGE: u64 = 256;
const STORE_PAGE_BYTES: u64 = 256 * 1024;

/// The header a reconnecting client resumes with.
pub const LAST_EVENT_ID: &str = "last-event-id";

const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";
const EVENT_END: &[u8] = b"\n\n";

/// Where a stream's next lines come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The store, until a page comes back short: the backlog, or after falling behind
    /// the feed's window.
    Store,
    /// The feed: lines and run changes as they are published.
    Live,
    /// The run has ended: the store's last lines, then `status` and `end`.
    Ending,
}

struct Follower {
    state: AppState,
    /// Whose stream it is: every read is of the caller's organization.
    caller: Caller,
    /// The caller's runs, read-only, for the feed's reads of the store.
    runs: OrgRuns,
    feed: Arc<RunFeed>,
    changes: watch::Receiver<u64>,
    /// Held for as long as the stream is open.
    _slot: StreamSlot,
    phase: Phase,
    /// The last log line sent.
    last_seq: u64,
    /// The version of the run last sent as `status`.
    last_version: Option<u64>,
    store_page: u64,
    /// The store had nothing after `last_seq` although the feed knows of later lines:
    /// wait for the next change instead of asking again at once.
    store_was_behind_feed: bool,
    /// Chunks to write, at most one page of events.
    pending: VecDeque<Bytes>,
    done: bool,
    poll: tokio::time::Interval,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
}

fn log_event(seq: u64, json: Bytes) -> [Bytes; 3] {
    [
        Bytes::from(format!("event: log\nid: {seq}\ndata: ")),
        json,
        Bytes::from_static(EVENT_END),
    ]
}

fn run_event(name: &'static str, json: Bytes) -> [Bytes; 3] {
    [
        Bytes::from(format!("event: {name}\ndata: ")),
        json,
        Bytes::from_static(EVENT_END),
    ]
}

impl Follower {
    fn queue(&mut self, chunks: [Bytes; 3]) {
        self.pending.extend(chunks);
    }

    fn queue_store_lines(&mut self, page: Vec<RunLog>) {
        for log in page {
            self.last_seq = self.last_seq.max(log.seq);
            let json = Bytes::from(log.to_json().to_string());
            self.queue(log_event(log.seq, json));
        }
    }

    /// Reads the next page of lines from the store; `true` when it came back short
    /// (the store has nothing more after them).
    async fn read_store_page(&mut self) -> Result<bool, PortError> {
        let page = self
            .state
            .services()
            .logs_after(
                &self.caller,
                self.feed.run_id(),
                self.last_seq,
                self.store_page,
            )
            .await?;
        let short = (page.len() as u64) < self.store_page;
        let bytes: u64 = page.iter().map(|log| log.message.len() as u64 + 200).sum();
        if let Some(average) = bytes.checked_div(page.len() as u64) {
            self.store_page = (STORE_PAGE_BYTES / average.max(1)).clamp(1, MAX_STORE_PAGE);
        }
        self.queue_store_lines(page);
        if short {
            self.feed.saw(self.last_seq);
        }
        Ok(short)
    }

    /// Queues what comes next; `false` when there is nothing to send until the feed
    /// changes.
    async fn fill(&mut self) -> Result<bool, PortError> {
        match self.phase {
            Phase::Store => {
                if self.read_store_page().await? {
                    self.phase = Phase::Live;
                    self.store_was_behind_feed = self.pending.is_empty()
                        && matches!(
                            self.feed.lines_after(self.last_seq, 1, usize::MAX),
                            Lines::Behind
                        );
                }
                Ok(true)
            }
            Phase::Ending => {
                if self.read_store_page().await? {
                    let run = self.feed.run();
                    if let Some(run) = run {
                        if self.last_version != Some(run.version) {
                            self.last_version = Some(run.version);
                            self.queue(run_event("status", run.json.clone()));
                        }
                        self.queue(run_event("end", run.json));
                    }
                    self.done = true;
                }
                Ok(true)
            }
            Phase::Live => {
                match self
                    .feed
                    .lines_after(self.last_seq, FEED_BATCH_LINES, FEED_BATCH_BYTES)
                {
                    Lines::Next(lines) => {
                        for line in lines {
                            self.last_seq = line.seq;
                            self.queue(log_event(line.seq, line.json));
                        }
                        return Ok(true);
                    }
                    Lines::Behind if !self.store_was_behind_feed => {
                        self.phase = Phase::Store;
                        return Ok(true);
                    }
                    Lines::Behind | Lines::UpToDate => {}
                }
                let Some(run) = self.feed.run() else {
                    return Ok(false);
                };
                if run.ended {
                    // Nothing is written to an ended run: the store holds its last lines.
                    self.phase = Phase::Ending;
                    return Ok(true);
                }
                if self.last_version == Some(run.version) {
                    return Ok(false);
                }
                self.last_version = Some(run.version);
                self.queue(run_event("status", run.json));
                Ok(true)
            }
        }
    }

    /// The next chunk to write, or `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.state.stopping().is_cancelled() {
                return None;
            }
            if let Some(chunk) = self.pending.pop_front() {
                self.keep_alive
                    .as_mut()
                    .reset(tokio::time::Instant::now() + KEEP_ALIVE);
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            match self.fill().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return self.failed(&e),
            }
            tokio::select! {
                biased;
                () = self.state.stopping().cancelled() => return None,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    self.store_was_behind_feed = false;
                }
                _ = self.poll.tick() => {}
                () = self.keep_alive.as_mut() => {
                    self.keep_alive
                        .as_mut()
                        .reset(tokio::time::Instant::now() + KEEP_ALIVE);
                    return Some(Bytes::from_static(KEEP_ALIVE_COMMENT));
                }
            }
            // A notice that said nothing about what changed, or the periodic look for
            // other replicas' changes: one stream of the run reads the store for all.
            if let Err(e) = self.feed.refresh(&self.runs, SAFETY_POLL).await {
                return self.failed(&e.into());
            }
        }
    }

    /// Ends the stream after a storage error; the client reconnects with
    /// `Last-Event-ID` and loses nothing.
    fn failed(&mut self, error: &PortError) -> Option<Bytes> {
        tracing::warn!(run = %self.feed.run_id(), %error, "a log stream could not read the store; closing it");
        self.done = true;
        None
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut follower| async move {
            let chunk = follower.next_chunk().await?;
            Some((Ok(chunk), follower))
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

/// 429 `too_many_requests` (with `Retry-After`, as every 429).
fn too_many_streams(reached: StreamLimitReached) -> ApiError {
    ApiError::new(
        ErrorKind::TooManyRequests,
        format!(
            "{reached}, the most one organization may hold: close one, or poll GET /v1/actions/runs/{{run_id}}/logs instead"
        ),
    )
}

pub(crate) async fn stream_logs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(run_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let slot = state
        .hub()
        .open_stream(&caller.org_id)
        .map_err(too_many_streams)?;
    let version = state.services().run_version(&caller, &run_id).await?;
    let run_id = RunId::parse(&run_id).map_err(|_| ApiError::not_found(format!("run {run_id}")))?;
    // Follow first: a change made while the store is read still reaches the feed.
    let feed = state.hub().follow(&caller.org_id, &run_id);
    let changes = feed.subscribe();
    if feed.run_version().is_none_or(|known| known < version) {
        let run = state.services().get_run(&caller, run_id.as_str()).await?;
        feed.publish_run(&run);
    }
    let runs = state.services().org_runs(&caller);
    let follower = Follower {
        state,
        caller,
        runs,
        feed,
        changes,
        _slot: slot,
        phase: Phase::Store,
        last_seq: resume_after(&headers),
        last_version: None,
        store_page: FIRST_STORE_PAGE,
        store_was_behind_feed: false,
        pending: VecDeque::new(),
        done: false,
        poll: safety_poll(),
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Asks nginx-like proxies not to buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(follower.into_stream()),
    )
        .into_response())
}
