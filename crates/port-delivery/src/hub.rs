//! The in-process [`Notifier`]: wakes the delivery worker, and feeds run changes to the
//! log streams that follow them.
//!
//! A followed run has one [`RunFeed`], shared by every stream of it on this server. A
//! change is serialized into the feed once, whatever the number of followers, and each
//! follower takes what it has not sent yet: new log lines and, when the run itself
//! changed, the run. The feed keeps a bounded window of recent lines; a follower that
//! falls behind it reads the store by sequence number instead, so nothing is buffered
//! per follower beyond the page it is sending.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use port_core::error::StoreError;
use port_core::id::{OrgId, RunId};
use port_core::ports::{Notice, Notifier, RunStore, RunUpdate};
use port_core::run::Run;
use port_core::run_log::RunLog;
use tokio::sync::{Notify, broadcast, watch};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves its data consistent, even when interrupted.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// In-process notifications. Give it to `Services` as the notifier and to the
/// delivery worker; servers follow runs through it for their event streams.
///
/// Notices are hints, never the truth: a listener that misses one (a lagging stream,
/// a notice from another replica) catches up from the store.
#[derive(Debug)]
pub struct Hub {
    /// Holds one permit when nobody waits, so a notice sent while the worker is busy
    /// still wakes its next wait.
    delivery_ready: Notify,
    /// The same for the automations worker: a run changed, so it recorded an event.
    automations_ready: Notify,
    runs: broadcast::Sender<Notice>,
    feeds: Mutex<Feeds>,
    streams: Arc<OpenStreams>,
}

impl Hub {
    /// How many run changes a slow subscriber of [`Hub::subscribe_runs`] may fall
    /// behind before it lags.
    pub const DEFAULT_CAPACITY: usize = 1024;
    /// How many log streams one organization may hold open on one server.
    pub const DEFAULT_STREAMS_PER_ORG: usize = 100;

    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A hub whose run-change channel holds `capacity` notices per subscriber.
    pub fn with_capacity(capacity: usize) -> Self {
        let (runs, _) = broadcast::channel(capacity.max(1));
        Self {
            delivery_ready: Notify::new(),
            automations_ready: Notify::new(),
            runs,
            feeds: Mutex::new(Feeds::default()),
            streams: Arc::new(OpenStreams {
                limit: Self::DEFAULT_STREAMS_PER_ORG,
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same hub allowing `limit` open streams per organization (at least one).
    #[must_use]
    pub fn with_streams_per_org(mut self, limit: usize) -> Self {
        self.streams = Arc::new(OpenStreams {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        });
        self
    }

    /// How many streams one organization may hold open.
    pub fn streams_per_org(&self) -> usize {
        self.streams.limit
    }

    /// Takes one of `org`'s stream slots until the returned slot is dropped, or says
    /// that all of them are taken.
    pub fn open_stream(&self, org: &OrgId) -> Result<StreamSlot, StreamLimitReached> {
        let mut open = lock(&self.streams.open);
        let count = open.entry(org.clone()).or_insert(0);
        if *count >= self.streams.limit {
            return Err(StreamLimitReached {
                limit: self.streams.limit,
            });
        }
        *count += 1;
        Ok(StreamSlot {
            streams: self.streams.clone(),
            org: org.clone(),
        })
    }

    /// How many streams `org` holds open now.
    pub fn open_streams(&self, org: &OrgId) -> usize {
        lock(&self.streams.open).get(org).copied().unwrap_or(0)
    }

    /// The feed of one run, shared by everyone who follows it here. Follow (and
    /// subscribe to the feed) before reading the store, so no change falls between.
    pub fn follow(&self, org: &OrgId, run: &RunId) -> Arc<RunFeed> {
        let mut feeds = lock(&self.feeds);
        feeds.sweep();
        match feeds.by_run.entry((org.clone(), run.clone())) {
            Entry::Occupied(mut entry) => match entry.get().upgrade() {
                Some(feed) => feed,
                None => {
                    let feed = Arc::new(RunFeed::new(org.clone(), run.clone()));
                    entry.insert(Arc::downgrade(&feed));
                    feed
                }
            },
            Entry::Vacant(entry) => {
                let feed = Arc::new(RunFeed::new(org.clone(), run.clone()));
                entry.insert(Arc::downgrade(&feed));
                feed
            }
        }
    }

    /// How many runs are followed now (feeds with at least one follower).
    pub fn followed_runs(&self) -> usize {
        lock(&self.feeds)
            .by_run
            .values()
            .filter(|feed| feed.strong_count() > 0)
            .count()
    }

    fn followed(&self, org: &OrgId, run: &RunId) -> Option<Arc<RunFeed>> {
        let mut feeds = lock(&self.feeds);
        let key = (org.clone(), run.clone());
        let feed = feeds.by_run.get(&key)?.upgrade();
        if feed.is_none() {
            feeds.by_run.remove(&key);
        }
        feed
    }

    /// Every later run change, as [`Notice::RunChanged`] (ids only). A receiver that
    /// falls behind gets `RecvError::Lagged` and should re-read what it shows from the
    /// store.
    pub fn subscribe_runs(&self) -> broadcast::Receiver<Notice> {
        self.runs.subscribe()
    }

    /// Wakes the delivery worker now (what [`Notice::DeliveryReady`] does).
    pub fn wake_delivery_worker(&self) {
        self.delivery_ready.notify_one();
    }

    /// Resolves at the next wake-up, or at once if one came since the last wait. Meant
    /// for one consumer: the delivery worker.
    pub(crate) async fn delivery_ready(&self) {
        self.delivery_ready.notified().await;
    }

    /// Wakes the automations worker now: a change event may be waiting.
    pub fn wake_automations(&self) {
        self.automations_ready.notify_one();
    }

    /// Like [`Hub::delivery_ready`], for the automations worker.
    pub(crate) async fn automations_ready(&self) {
        self.automations_ready.notified().await;
    }

    /// Another replica changed run `run` (`fields`: the run itself, which records a
    /// change event; else only its log): subscribers hear of it, its followers here
    /// re-read it from the store, and the automations worker wakes when `fields`.
    pub fn changed_elsewhere(&self, org: &OrgId, run: &RunId, fields: bool) {
        if fields {
            self.wake_automations();
        }
        self.run_changed(org, run, None);
    }

    /// Notices from other replicas may have been lost: every worker looks at the store
    /// and every followed run is re-read, as if each had been told of a change.
    pub fn catch_up(&self) {
        self.wake_delivery_worker();
        self.wake_automations();
        let feeds: Vec<Arc<RunFeed>> = lock(&self.feeds)
            .by_run
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for feed in feeds {
            let _ = self.runs.send(Notice::RunChanged {
                org: feed.org.clone(),
                run: feed.run.clone(),
            });
            feed.mark_stale();
        }
    }

    /// Tells subscribers and the run's feed: what was stored when `update` says, else
    /// that the feed must read the store.
    fn run_changed(&self, org: &OrgId, run: &RunId, update: Option<&RunUpdate>) {
        // An error only means nobody listens right now, which is fine.
        let _ = self.runs.send(Notice::RunChanged {
            org: org.clone(),
            run: run.clone(),
        });
        let Some(feed) = self.followed(org, run) else {
            return;
        };
        match update {
            Some(update) => feed.publish(update),
            None => feed.mark_stale(),
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for Hub {
    fn notify(&self, notice: Notice) {
        match &notice {
            Notice::DeliveryReady => self.wake_delivery_worker(),
            // Says nothing of how the run changed: it may have recorded an event.
            Notice::RunChanged { org, run } => {
                self.wake_automations();
                self.run_changed(org, run, None);
            }
            Notice::RunUpdated(update) => {
                // A change of the run itself records a change event; log lines do not.
                if update.run.is_some() {
                    self.wake_automations();
                }
                self.run_changed(&update.org, &update.run_id, Some(update));
            }
        }
    }
}

/// The feeds of followed runs. Entries of runs nobody follows any more are swept out
/// whenever the map has doubled since the last sweep, so it stays within twice the
/// number of followed runs at amortized constant cost.
#[derive(Debug, Default)]
struct Feeds {
    by_run: HashMap<(OrgId, RunId), Weak<RunFeed>>,
    sweep_at: usize,
}

impl Feeds {
    fn sweep(&mut self) {
        if self.by_run.len() < self.sweep_at {
            return;
        }
        self.by_run.retain(|_, feed| feed.strong_count() > 0);
        self.sweep_at = (self.by_run.len() * 2).max(64);
    }
}

#[derive(Debug)]
struct OpenStreams {
    limit: usize,
    open: Mutex<HashMap<OrgId, usize>>,
}

/// One of an organization's open streams; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<OpenStreams>,
    org: OrgId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.streams.open);
        if let Some(count) = open.get_mut(&self.org) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.org);
            }
        }
    }
}

/// Every stream slot of the organization is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this organization already has {limit} log streams open")]
pub struct StreamLimitReached {
    pub limit: usize,
}

/// A log line as followers send it: its sequence number and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedLine {
    pub seq: u64,
    pub json: Bytes,
}

/// The run as followers send it, serialized once (the v2 shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSnapshot {
    pub version: u64,
    pub ended: bool,
    pub json: Bytes,
}

/// What a follower at some sequence number can take from the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lines {
    /// The lines right after it, in order.
    Next(Vec<FeedLine>),
    /// Later lines exist, but the next one is not in the feed's window: read the store.
    Behind,
    /// No later line is known.
    UpToDate,
}

/// One followed run: its recent lines and its latest state, serialized once for all of
/// its followers. Bounded: at most [`RunFeed::WINDOW_BYTES`] of lines (the oldest go
/// first) and one run.
#[derive(Debug)]
pub struct RunFeed {
    org: OrgId,
    run: RunId,
    state: Mutex<FeedState>,
    changes: watch::Sender<u64>,
    /// Held by the one follower reading the store for everyone.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct FeedState {
    lines: BTreeMap<u64, Bytes>,
    line_bytes: usize,
    /// The highest sequence number known to exist (from a notice or a read).
    newest_seq: u64,
    run: Option<RunSnapshot>,
    /// A notice said the store changed without saying how.
    stale: bool,
    refreshed_at: Option<Instant>,
}

impl FeedState {
    fn refresh_due(&self, every: Duration) -> bool {
        self.stale || self.refreshed_at.is_none_or(|at| at.elapsed() >= every)
    }
}

impl RunFeed {
    /// The most bytes of log lines a feed keeps for followers that are a little behind.
    pub const WINDOW_BYTES: usize = 256 * 1024;
    /// The most lines a feed keeps.
    pub const WINDOW_LINES: usize = 1024;
    /// Lines one refresh reads from the store.
    pub const REFRESH_PAGE: u64 = 64;

    fn new(org: OrgId, run: RunId) -> Self {
        Self {
            org,
            run,
            state: Mutex::new(FeedState::default()),
            changes: watch::channel(0).0,
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn org(&self) -> &OrgId {
        &self.org
    }

    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// Changes whenever something is published; `changed()` wakes the follower.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Publishes what a change stored: its lines, then the run if it changed.
    pub fn publish(&self, update: &RunUpdate) {
        self.publish_lines(&update.logs);
        if let Some(run) = &update.run {
            self.publish_run(run);
        }
    }

    /// Adds stored lines to the window (each serialized once), forgetting the oldest
    /// beyond the window's bounds.
    pub fn publish_lines(&self, logs: &[RunLog]) {
        if logs.is_empty() {
            return;
        }
        let serialized: Vec<(u64, Bytes)> = logs
            .iter()
            .map(|log| (log.seq, Bytes::from(log.to_json().to_string())))
            .collect();
        {
            let mut state = lock(&self.state);
            for (seq, json) in serialized {
                state.newest_seq = state.newest_seq.max(seq);
                state.line_bytes += json.len();
                if let Some(old) = state.lines.insert(seq, json) {
                    state.line_bytes -= old.len();
                }
            }
            while state.line_bytes > Self::WINDOW_BYTES || state.lines.len() > Self::WINDOW_LINES {
                let Some((_, oldest)) = state.lines.pop_first() else {
                    break;
                };
                state.line_bytes -= oldest.len();
            }
        }
        self.changed();
    }

    /// Replaces the feed's run by `run` if it is newer; serializes it only then.
    pub fn publish_run(&self, run: &Run) {
        if self.run_version().is_some_and(|known| known >= run.version) {
            return;
        }
        let snapshot = RunSnapshot {
            version: run.version,
            ended: run.is_terminal(),
            json: Bytes::from(run.to_v2_json().to_string()),
        };
        {
            let mut state = lock(&self.state);
            if state
                .run
                .as_ref()
                .is_some_and(|known| known.version >= snapshot.version)
            {
                return;
            }
            state.run = Some(snapshot);
        }
        self.changed();
    }

    /// The store changed in a way the feed does not know: the next follower to look
    /// refreshes it ([`RunFeed::refresh`]).
    pub fn mark_stale(&self) {
        lock(&self.state).stale = true;
        self.changed();
    }

    /// A follower read the store's log up to `seq`: later lines are news.
    pub fn saw(&self, seq: u64) {
        let mut state = lock(&self.state);
        state.newest_seq = state.newest_seq.max(seq);
    }

    /// Up to `max_lines` lines (and about `max_bytes`) right after `after`.
    pub fn lines_after(&self, after: u64, max_lines: usize, max_bytes: usize) -> Lines {
        let state = lock(&self.state);
        if state.newest_seq <= after {
            return Lines::UpToDate;
        }
        let mut next = Vec::new();
        let mut bytes = 0;
        for (&seq, json) in state.lines.range(after.saturating_add(1)..) {
            if seq != after + 1 + next.len() as u64 || next.len() >= max_lines || bytes >= max_bytes
            {
                break;
            }
            bytes += json.len();
            next.push(FeedLine {
                seq,
                json: json.clone(),
            });
        }
        if next.is_empty() {
            Lines::Behind
        } else {
            Lines::Next(next)
        }
    }

    /// The latest run known here.
    pub fn run(&self) -> Option<RunSnapshot> {
        lock(&self.state).run.clone()
    }

    pub fn run_version(&self) -> Option<u64> {
        lock(&self.state).run.as_ref().map(|run| run.version)
    }

    /// How many bytes of lines the window holds.
    pub fn window_bytes(&self) -> usize {
        lock(&self.state).line_bytes
    }

    fn refresh_due(&self, every: Duration) -> bool {
        lock(&self.state).refresh_due(every)
    }

    /// Reads what the store has that the feed may lack, when a notice said so or
    /// `every` has passed since the last look (changes made by another replica):
    /// lines after the newest known one, and the run if its version moved. One
    /// follower reads for all: a refresh already running, or not due, returns at once.
    pub async fn refresh(&self, store: &dyn RunStore, every: Duration) -> Result<(), StoreError> {
        if !self.refresh_due(every) {
            return Ok(());
        }
        let Ok(_reading) = self.refreshing.try_lock() else {
            return Ok(());
        };
        let after = {
            let mut state = lock(&self.state);
            if !state.refresh_due(every) {
                return Ok(());
            }
            // Cleared before reading, so a notice that comes meanwhile is kept.
            state.stale = false;
            state.refreshed_at = Some(Instant::now());
            state.newest_seq
        };
        let outcome = self.read_store(store, after).await;
        if outcome.is_err() {
            lock(&self.state).stale = true;
        }
        outcome
    }

    async fn read_store(&self, store: &dyn RunStore, after: u64) -> Result<(), StoreError> {
        let lines = store
            .logs_after(&self.org, &self.run, after, Self::REFRESH_PAGE)
            .await?;
        let more = lines.len() as u64 >= Self::REFRESH_PAGE;
        self.publish_lines(&lines);
        let version = store.run_version(&self.org, &self.run).await?;
        if version.is_some()
            && version != self.run_version()
            && let Some(run) = store.get_run(&self.org, &self.run).await?
        {
            self.publish_run(&run);
        }
        if more {
            self.mark_stale();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use port_core::{OrgId, RunId};

    use super::*;

    fn org() -> OrgId {
        OrgId::from_suffix("aaaaaaaaaaaaaaaa").unwrap()
    }

    fn run_id() -> RunId {
        RunId::from_suffix("bbbbbbbbbbbbbbbb").unwrap()
    }

    fn changed() -> Notice {
        Notice::RunChanged {
            org: org(),
            run: run_id(),
        }
    }

    fn line(seq: u64, message: &str) -> RunLog {
        RunLog {
            seq,
            id: port_core::id::LogId::from_suffix(&format!("{seq:016}")).unwrap(),
            run_id: run_id(),
            message: message.to_owned(),
            created_at: port_core::time::Timestamp::from_unix_millis(1_000),
            created_by: "runner".into(),
        }
    }

    fn lines_update(lines: &[(u64, &str)]) -> Notice {
        Notice::RunUpdated(Arc::new(RunUpdate {
            org: org(),
            run_id: run_id(),
            run: None,
            logs: lines.iter().map(|(seq, m)| line(*seq, m)).collect(),
        }))
    }

    fn seqs(lines: &Lines) -> Vec<u64> {
        match lines {
            Lines::Next(lines) => lines.iter().map(|l| l.seq).collect(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_wake_up_sent_before_the_wait_is_kept() {
        let hub = Hub::new();
        hub.notify(Notice::DeliveryReady);
        tokio::time::timeout(Duration::from_secs(1), hub.delivery_ready())
            .await
            .unwrap();
        // The permit was used up: the next wait blocks.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), hub.delivery_ready())
                .await
                .is_err()
        );
    }

    async fn woken(wait: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), wait)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn run_changes_wake_the_automations_worker_and_log_lines_do_not() {
        let hub = Hub::new();
        hub.notify(lines_update(&[(1, "one")]));
        hub.notify(Notice::DeliveryReady);
        assert!(
            !woken(hub.automations_ready()).await,
            "log lines record no event"
        );
        hub.notify(changed());
        assert!(
            woken(hub.automations_ready()).await,
            "a bare hint may be a change"
        );
    }

    #[tokio::test]
    async fn changes_made_elsewhere_send_followers_to_the_store() {
        let hub = Hub::new();
        let feed = hub.follow(&org(), &run_id());
        let mut subscriber = hub.subscribe_runs();
        lock(&feed.state).refreshed_at = Some(Instant::now());
        hub.changed_elsewhere(&org(), &run_id(), false);
        assert!(feed.refresh_due(Duration::from_secs(3600)));
        assert_eq!(subscriber.recv().await.unwrap(), changed());
        assert!(!woken(hub.automations_ready()).await);
        hub.changed_elsewhere(&org(), &run_id(), true);
        assert!(woken(hub.automations_ready()).await);

        lock(&feed.state).stale = false;
        hub.catch_up();
        assert!(
            feed.refresh_due(Duration::from_secs(3600)),
            "every feed re-reads"
        );
        assert!(woken(hub.delivery_ready()).await);
        assert!(woken(hub.automations_ready()).await);
    }

    #[tokio::test]
    async fn run_changes_reach_every_subscriber() {
        let hub = Hub::new();
        let mut a = hub.subscribe_runs();
        let mut b = hub.subscribe_runs();
        hub.notify(changed());
        hub.notify(Notice::DeliveryReady);
        hub.notify(lines_update(&[(1, "one")]));
        assert_eq!(a.recv().await.unwrap(), changed());
        assert_eq!(b.recv().await.unwrap(), changed());
        assert_eq!(a.recv().await.unwrap(), changed(), "updates travel as ids");
        assert!(
            a.try_recv().is_err(),
            "delivery wake-ups are not run changes"
        );
    }

    #[test]
    fn notifying_without_subscribers_is_fine() {
        Hub::with_capacity(0).notify(changed());
        Hub::new().notify(lines_update(&[(1, "one")]));
    }

    #[tokio::test]
    async fn followers_of_a_run_share_one_feed_that_gets_only_what_changed() {
        let hub = Hub::new();
        let feed = hub.follow(&org(), &run_id());
        let again = hub.follow(&org(), &run_id());
        assert!(Arc::ptr_eq(&feed, &again), "one feed per run");
        let other = hub.follow(&OrgId::from_suffix("cccccccccccccccc").unwrap(), &run_id());
        assert!(
            !Arc::ptr_eq(&feed, &other),
            "organizations never share a feed"
        );
        assert_eq!(hub.followed_runs(), 2);

        let mut changes = feed.subscribe();
        hub.notify(lines_update(&[(1, "one"), (2, "two")]));
        tokio::time::timeout(Duration::from_secs(1), changes.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seqs(&feed.lines_after(0, 10, usize::MAX)), [1, 2]);
        assert_eq!(seqs(&feed.lines_after(1, 10, usize::MAX)), [2]);
        assert_eq!(feed.lines_after(2, 10, usize::MAX), Lines::UpToDate);
        assert_eq!(seqs(&feed.lines_after(0, 1, usize::MAX)), [1]);
        assert!(feed.run().is_none(), "a log line leaves the run as it was");
        let (Lines::Next(next), Lines::Next(same)) = (
            feed.lines_after(1, 10, usize::MAX),
            again.lines_after(1, 10, usize::MAX),
        ) else {
            panic!("the second line");
        };
        let json: serde_json::Value = serde_json::from_slice(&next[0].json).unwrap();
        assert_eq!(json["message"], "two");
        assert_eq!(
            next[0].json.as_ptr(),
            same[0].json.as_ptr(),
            "serialized once, shared by every follower"
        );
        assert_eq!(
            other.lines_after(0, 10, usize::MAX),
            Lines::UpToDate,
            "the other organization's feed heard nothing"
        );

        drop((feed, again, other, changes));
        assert_eq!(hub.followed_runs(), 0);
        // A notice for a run nobody follows anymore costs a lookup.
        hub.notify(lines_update(&[(3, "three")]));
    }

    #[test]
    fn a_line_published_out_of_order_leaves_a_gap_that_sends_followers_to_the_store() {
        let hub = Hub::new();
        let feed = hub.follow(&org(), &run_id());
        hub.notify(lines_update(&[(1, "one")]));
        // Line 3's writer told the hub before line 2's did.
        hub.notify(lines_update(&[(3, "three")]));
        assert_eq!(seqs(&feed.lines_after(0, 10, usize::MAX)), [1]);
        assert_eq!(feed.lines_after(1, 10, usize::MAX), Lines::Behind);
        hub.notify(lines_update(&[(2, "two")]));
        assert_eq!(seqs(&feed.lines_after(1, 10, usize::MAX)), [2, 3]);
    }

    #[test]
    fn the_window_of_lines_is_bounded_and_the_oldest_go_first() {
        let hub = Hub::new();
        let feed = hub.follow(&org(), &run_id());
        let big = "x".repeat(60 * 1024);
        for seq in 1..=100 {
            hub.notify(lines_update(&[(seq, &big)]));
            assert!(feed.window_bytes() <= RunFeed::WINDOW_BYTES);
        }
        // A follower still at line 10 must read the store; one near the end need not.
        assert_eq!(feed.lines_after(10, 10, usize::MAX), Lines::Behind);
        assert_eq!(seqs(&feed.lines_after(98, 10, usize::MAX)), [99, 100]);
        for seq in 101..=2_000 {
            hub.notify(lines_update(&[(seq, "short")]));
        }
        assert_eq!(
            seqs(&feed.lines_after(2_000 - RunFeed::WINDOW_LINES as u64, 1, usize::MAX)),
            [2_001 - RunFeed::WINDOW_LINES as u64]
        );
        assert_eq!(
            feed.lines_after(1_999 - RunFeed::WINDOW_LINES as u64, 1, usize::MAX),
            Lines::Behind
        );
    }

    #[test]
    fn a_hint_without_content_marks_the_feed_stale() {
        let hub = Hub::new();
        let feed = hub.follow(&org(), &run_id());
        let changes = feed.subscribe();
        assert!(
            feed.refresh_due(Duration::from_secs(3600)),
            "never read yet"
        );
        lock(&feed.state).refreshed_at = Some(Instant::now());
        assert!(!feed.refresh_due(Duration::from_secs(3600)));
        hub.notify(changed());
        assert!(feed.refresh_due(Duration::from_secs(3600)));
        assert!(changes.has_changed().unwrap(), "followers wake up");
    }

    #[test]
    fn each_organization_has_its_own_stream_slots() {
        let hub = Hub::new().with_streams_per_org(2);
        let other = OrgId::from_suffix("cccccccccccccccc").unwrap();
        let first = hub.open_stream(&org()).unwrap();
        let second = hub.open_stream(&org()).unwrap();
        assert_eq!(
            hub.open_stream(&org()).unwrap_err(),
            StreamLimitReached { limit: 2 }
        );
        let theirs = hub.open_stream(&other).unwrap();
        assert_eq!(hub.open_streams(&org()), 2);
        drop(first);
        assert_eq!(hub.open_streams(&org()), 1);
        let third = hub.open_stream(&org()).unwrap();
        drop((second, third, theirs));
        assert_eq!(hub.open_streams(&org()), 0);
        assert_eq!(hub.open_streams(&other), 0);
    }
}
