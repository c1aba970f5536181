//! Replicas on one PostgreSQL database wake each other with `LISTEN`/`NOTIFY`.
//!
//! Each replica's services tell an in-process notifier what they just stored (a
//! delivery became due, a run changed or got log lines). That wakes the replica's own
//! delivery worker, automations worker and log streams at once; the other replicas
//! would only see the change at their next safety poll (about a second). The
//! [`ReplicaBus`] carries those notices to them:
//!
//! - **Publishing** ([`ReplicaBus::publish`], or the bus as a [`Notifier`]) never
//!   blocks and never fails: the notice goes into a bounded queue (dropped when it is
//!   full: the safety polls remain), and one task drains it, merges what it holds (one
//!   wake-up of the delivery workers, one notice per run) and sends it all with one
//!   statement, `SELECT pg_notify($1, p) FROM unnest($2)`, on a connection of its own,
//!   so a burst of changes costs one round trip, not one per change.
//! - **Listening**: a [`PgListener`] on another connection of its own hands every
//!   notice of *another* replica (each payload names its sender; a replica hears its
//!   own and skips them) to [`RemoteChanges::changed`]. A lost connection is made
//!   again with backoff; since notices sent meanwhile are lost, [`RemoteChanges::missed`]
//!   then says to re-read everything that depends on them.
//!
//! The channel is per schema (`portd_changes` in `public`, `portd_changes.<schema>`
//! elsewhere), so deployments or tests sharing a database in separate schemas never
//! wake each other. A payload is text, well under PostgreSQL's 8000-byte limit
//! ([`MAX_PAYLOAD_BYTES`]; a larger batch is split over several payloads of the same
//! statement): `v1 <replica id>` and then items separated by spaces: `d` (a delivery
//! is due), `r:<org id>:<run id>` (the run itself changed, which records a change event
//! that automations read) and `l:<org id>:<run id>` (the run got log lines only).
//! Unknown items are skipped, so a later format can add some.
//!
//! Notices are hints, never the truth: whoever receives one reads the store, and
//! whoever misses one catches up at its next poll.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use port_core::id::{OrgId, RunId};
use port_core::ports::{Notice, Notifier};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgNotification, PgPoolOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The channel of the `public` schema; other schemas append `.<schema>`.
pub const CHANNEL: &str = "portd_changes";

/// The largest payload sent, leaving room under PostgreSQL's limit (8000 bytes).
pub const MAX_PAYLOAD_BYTES: usize = 7_000;

/// Notices waiting to be sent; beyond this, new ones are dropped (the other replicas'
/// safety polls find the changes).
pub const QUEUE_CAPACITY: usize = 8_192;

/// The most notices merged into one round trip.
pub const MAX_BATCH: usize = 2_048;

/// The first and the longest wait before connecting again after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long connecting, or sending one batch, may take before the connection is
/// given up (a server that vanished without closing it).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL's longest identifier, and so channel name.
const MAX_CHANNEL_BYTES: usize = 63;

const FORMAT: &str = "v1";

/// What the bus's connections call themselves, before the replica's id.
const APPLICATION_NAME: &str = "portd replica bus";

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplicaNotice {
    /// A delivery became due: delivery workers claim.
    DeliveryReady,
    /// A run itself changed (and maybe got log lines). Run changes record a change
    /// event, so automations workers have something to read.
    RunChanged { org: OrgId, run: RunId },
    /// A run got log lines, and nothing else changed.
    RunLogged { org: OrgId, run: RunId },
}

impl ReplicaNotice {
    /// What other replicas need to know of a local notice, if anything.
    pub fn of(notice: &Notice) -> Option<Self> {
        match notice {
            Notice::DeliveryReady => Some(Self::DeliveryReady),
            // Says nothing of what changed: assume the most.
            Notice::RunChanged { org, run } => Some(Self::RunChanged {
                org: org.clone(),
                run: run.clone(),
            }),
            Notice::RunUpdated(update) if update.run.is_some() => Some(Self::RunChanged {
                org: update.org.clone(),
                run: update.run_id.clone(),
            }),
            Notice::RunUpdated(update) if !update.logs.is_empty() => Some(Self::RunLogged {
                org: update.org.clone(),
                run: update.run_id.clone(),
            }),
            Notice::RunUpdated(_) => None,
        }
    }

    /// The run the notice is about.
    pub fn run(&self) -> Option<(&OrgId, &RunId)> {
        match self {
            Self::DeliveryReady => None,
            Self::RunChanged { org, run } | Self::RunLogged { org, run } => Some((org, run)),
        }
    }

    fn write(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = match self {
            Self::DeliveryReady => write!(out, "d"),
            Self::RunChanged { org, run } => write!(out, "r:{org}:{run}"),
            Self::RunLogged { org, run } => write!(out, "l:{org}:{run}"),
        };
    }

    fn parse(item: &str) -> Option<Self> {
        if item == "d" {
            return Some(Self::DeliveryReady);
        }
        let (kind, rest) = item.split_once(':')?;
        let (org, run) = rest.split_once(':')?;
        let org = OrgId::parse(org).ok()?;
        let run = RunId::parse(run).ok()?;
        match kind {
            "r" => Some(Self::RunChanged { org, run }),
            "l" => Some(Self::RunLogged { org, run }),
            _ => None,
        }
    }
}

/// Where a replica's bus hands what the other replicas said.
pub trait RemoteChanges: Send + Sync + 'static {
    /// Another replica stored this change.
    fn changed(&self, notice: ReplicaNotice);
    /// Notices may have been lost (the listening connection was lost and made again):
    /// re-read whatever depends on them.
    fn missed(&self);
}

/// What a bus did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Notices queued by [`ReplicaBus::publish`].
    pub published: u64,
    /// Notices dropped because the queue was full.
    pub dropped: u64,
    /// Round trips that sent notices (each with one or more payloads).
    pub round_trips: u64,
    /// Payloads sent.
    pub payloads: u64,
    /// Notices of other replicas received.
    pub received: u64,
    /// Times the listening connection was made again after a loss.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    round_trips: AtomicU64,
    payloads: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    /// Whether a full queue was logged since the queue last had room.
    full_logged: AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> BusStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BusStats {
            published: read(&self.published),
            dropped: read(&self.dropped),
            round_trips: read(&self.round_trips),
            payloads: read(&self.payloads),
            received: read(&self.received),
            reconnects: read(&self.reconnects),
        }
    }
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("connecting to PostgreSQL for replica notices: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("connecting to PostgreSQL for replica notices timed out after {0:?}")]
    Timeout(Duration),
}

/// This replica's end of the bus: a [`Notifier`] whose notices reach the other
/// replicas, and the task handing theirs to a [`RemoteChanges`]. Stops when
/// [`ReplicaBus::close`] is called or the bus is dropped.
pub struct ReplicaBus {
    replica: String,
    channel: String,
    queue: mpsc::Sender<ReplicaNotice>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ReplicaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaBus")
            .field("replica", &self.replica)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl ReplicaBus {
    /// Connections the bus holds open: one to send, one to listen.
    pub const CONNECTIONS: u64 = 2;

    /// Connects to the database `url` names (the store's URL; its search path picks
    /// the channel), starts listening, and starts the sending task. Returns once this
    /// replica listens, so that every change made after is heard; a later loss of
    /// either connection is repaired in the background. Both connections name
    /// themselves `portd replica bus <replica id>` (`application_name`, as
    /// `pg_stat_activity` shows it).
    pub async fn start(url: &str, remote: Arc<dyn RemoteChanges>) -> Result<Arc<Self>, BusError> {
        let replica: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(12)
            .map(char::from)
            .collect();
        let options: PgConnectOptions = url.parse().map_err(BusError::Connect)?;
        let options = options.application_name(&format!("{APPLICATION_NAME} {replica}"));
        let mut sender = connect(&options).await?;
        let schema: Option<String> =
            timed(sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut sender)).await?;
        let channel = channel_for(schema.as_deref().unwrap_or("public"));
        let listener = listen(&options, &channel).await?;
        let (queue, notices) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let sending = tokio::spawn(
            Sender {
                options: options.clone(),
                channel: channel.clone(),
                replica: replica.clone(),
                notices,
                conn: Some(sender),
                counters: counters.clone(),
            }
            .run(stopped.clone()),
        );
        let listening = tokio::spawn(
            Listener {
                options,
                channel: channel.clone(),
                replica: replica.clone(),
                remote,
                counters: counters.clone(),
            }
            .run(listener, stopped),
        );
        tracing::info!(%channel, %replica, "replicas wake each other through PostgreSQL notifications");
        Ok(Arc::new(Self {
            replica,
            channel,
            queue,
            counters,
            stop,
            tasks: Mutex::new(vec![sending, listening]),
        }))
    }

    /// This replica's id in payloads: random per start.
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// The channel notices travel on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn stats(&self) -> BusStats {
        self.counters.snapshot()
    }

    /// Queues `notice` for the other replicas; never waits. When the queue is full the
    /// notice is dropped (the other replicas' safety polls find the change).
    pub fn publish(&self, notice: ReplicaNotice) {
        match self.queue.try_send(notice) {
            Ok(()) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                // Read first: a store on every notice would bounce the cache line.
                if self.counters.full_logged.load(Ordering::Relaxed) {
                    self.counters.full_logged.store(false, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.counters.full_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        capacity = QUEUE_CAPACITY,
                        "replica notices queue up faster than PostgreSQL takes them; dropping \
                         some (other replicas see those changes at their next poll)"
                    );
                }
            }
            // Closed: the bus is stopping.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Tells both tasks to stop (what is still queued is not sent) and close their
    /// connections, without waiting for them.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops both tasks, waiting at most a second for them to close their connections.
    pub async fn close(&self) {
        self.stop();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for mut task in tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for ReplicaBus {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Notifier for ReplicaBus {
    fn notify(&self, notice: Notice) {
        if let Some(notice) = ReplicaNotice::of(&notice) {
            self.publish(notice);
        }
    }
}

/// The channel of `schema`: `portd_changes` for `public`, else `portd_changes.<schema>`,
/// or a hash of the schema's name when that would be longer than an identifier.
pub fn channel_for(schema: &str) -> String {
    if schema == "public" {
        return CHANNEL.to_owned();
    }
    let named = format!("{CHANNEL}.{schema}");
    if named.len() <= MAX_CHANNEL_BYTES {
        return named;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{CHANNEL}.{hash:016x}")
}

async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(IO_TIMEOUT, future).await {
        Ok(result) => result.map_err(BusError::Connect),
        Err(_) => Err(BusError::Timeout(IO_TIMEOUT)),
    }
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, BusError> {
    timed(PgConnection::connect_with(options)).await
}

async fn listen(options: &PgConnectOptions, channel: &str) -> Result<PgListener, BusError> {
    timed(async {
        // A pool of one, as `PgListener::connect` makes: the listener takes its
        // connection from it again after a loss.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(channel).await?;
        Ok(listener)
    })
    .await
}

/// The doubled wait, up to [`BACKOFF_MAX`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}

/// Resolves once `stopped` says so (or its sender is gone).
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Notices merged for one round trip: one wake-up of the delivery workers, and one
/// notice per run, `RunChanged` when any of its notices was.
#[derive(Debug, Default)]
struct Batch {
    delivery_ready: bool,
    runs: Vec<(OrgId, RunId, bool)>,
    index: HashMap<(OrgId, RunId), usize>,
    notices: usize,
}

impl Batch {
    fn add(&mut self, notice: ReplicaNotice) {
        self.notices += 1;
        let (org, run, changed) = match notice {
            ReplicaNotice::DeliveryReady => {
                self.delivery_ready = true;
                return;
            }
            ReplicaNotice::RunChanged { org, run } => (org, run, true),
            ReplicaNotice::RunLogged { org, run } => (org, run, false),
        };
        match self.index.get(&(org.clone(), run.clone())) {
            Some(&at) => self.runs[at].2 |= changed,
            None => {
                self.index
                    .insert((org.clone(), run.clone()), self.runs.len());
                self.runs.push((org, run, changed));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.notices == 0
    }

    /// The merged notices, delivery wake-up first.
    fn notices(&self) -> impl Iterator<Item = ReplicaNotice> + '_ {
        let delivery = self.delivery_ready.then_some(ReplicaNotice::DeliveryReady);
        delivery
            .into_iter()
            .chain(self.runs.iter().map(|(org, run, changed)| {
                let (org, run) = (org.clone(), run.clone());
                if *changed {
                    ReplicaNotice::RunChanged { org, run }
                } else {
                    ReplicaNotice::RunLogged { org, run }
                }
            }))
    }

    /// The payloads carrying the batch, each at most `max_bytes`.
    fn encode(&self, replica: &str, max_bytes: usize) -> Vec<String> {
        encode(replica, self.notices(), max_bytes)
    }
}

/// Payloads of `v1 <replica>` followed by as many items as fit in `max_bytes` each.
fn encode(
    replica: &str,
    notices: impl Iterator<Item = ReplicaNotice>,
    max_bytes: usize,
) -> Vec<String> {
    let header = format!("{FORMAT} {replica}");
    let mut payloads = Vec::new();
    let mut payload = header.clone();
    let mut item = String::new();
    for notice in notices {
        item.clear();
        notice.write(&mut item);
        if payload.len() > header.len() && payload.len() + 1 + item.len() > max_bytes {
            payloads.push(std::mem::replace(&mut payload, header.clone()));
        }
        payload.push(' ');
        payload.push_str(&item);
    }
    if payload.len() > header.len() {
        payloads.push(payload);
    }
    payloads
}

/// The sender and notices of a payload; `None` when it is not one this format knows.
fn decode(payload: &str) -> Option<(&str, impl Iterator<Item = ReplicaNotice> + '_)> {
    let mut parts = payload.split(' ');
    if parts.next()? != FORMAT {
        return None;
    }
    let replica = parts.next()?;
    Some((replica, parts.filter_map(ReplicaNotice::parse)))
}

/// Drains the queue and sends what it held, a round trip at a time.
struct Sender {
    options: PgConnectOptions,
    channel: String,
    replica: String,
    notices: mpsc::Receiver<ReplicaNotice>,
    conn: Option<PgConnection>,
    counters: Arc<Counters>,
}

impl Sender {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut batch = Batch::default();
            tokio::select! {
                () = stopping(&mut stopped) => break,
                first = self.notices.recv() => match first {
                    Some(notice) => batch.add(notice),
                    None => break,
                },
            }
            // Whatever queued up meanwhile (during the last round trip) goes along.
            while batch.notices < MAX_BATCH {
                match self.notices.try_recv() {
                    Ok(notice) => batch.add(notice),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let sent = tokio::select! {
                () = stopping(&mut stopped) => break,
                sent = self.send(&batch) => sent,
            };
            match sent {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(e) => {
                    // The batch is lost: the other replicas' safety polls find it.
                    tracing::warn!(error = %e, retry_in = ?backoff, "could not send replica notices");
                    self.conn = None;
                    tokio::select! {
                        () = stopping(&mut stopped) => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = next_backoff(backoff);
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    async fn send(&mut self, batch: &Batch) -> Result<(), BusError> {
        let payloads = batch.encode(&self.replica, MAX_PAYLOAD_BYTES);
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(connect(&self.options).await?),
        };
        timed(
            sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
                .bind(&self.channel)
                .bind(&payloads)
                .execute(conn),
        )
        .await?;
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        self.counters
            .payloads
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Hands the other replicas' notices to `remote`, listening again after a loss.
struct Listener {
    options: PgConnectOptions,
    channel: String,
    replica: String,
    remote: Arc<dyn RemoteChanges>,
    counters: Arc<Counters>,
}

impl Listener {
    async fn run(self, listener: PgListener, mut stopped: watch::Receiver<bool>) {
        let mut listener = Some(listener);
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut current = match listener.take() {
                Some(listening) => listening,
                None => {
                    let made = tokio::select! {
                        () = stopping(&mut stopped) => return,
                        made = listen(&self.options, &self.channel) => made,
                    };
                    match made {
                        Ok(listening) => {
                            tracing::info!(channel = %self.channel, "listening to the other replicas again");
                            self.lost();
                            listening
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?backoff, "cannot listen to the other replicas");
                            tokio::select! {
                                () = stopping(&mut stopped) => return,
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = next_backoff(backoff);
                            continue;
                        }
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    () = stopping(&mut stopped) => return,
                    next = current.try_recv() => next,
                };
                match next {
                    Ok(Some(notification)) => {
                        backoff = BACKOFF_MIN;
                        self.handle(&notification);
                    }
                    // sqlx listens again on a new connection before saying so.
                    Ok(None) => {
                        tracing::warn!(channel = %self.channel, "lost the connection listening to the other replicas; listening again");
                        self.lost();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "listening to the other replicas failed; connecting again");
                        break;
                    }
                }
            }
            drop(current);
            tokio::select! {
                () = stopping(&mut stopped) => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = next_backoff(backoff);
        }
    }

    fn lost(&self) {
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        self.remote.missed();
    }

    fn handle(&self, notification: &PgNotification) {
        let Some((sender, notices)) = decode(notification.payload()) else {
            tracing::debug!(
                payload = notification.payload(),
                "skipping a replica notice of an unknown format"
            );
            return;
        };
        if sender == self.replica {
            return;
        }
        for notice in notices {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            self.remote.changed(notice);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn org(n: u8) -> OrgId {
        OrgId::from_suffix(&format!("{n:016}")).unwrap()
    }

    fn run(n: u32) -> RunId {
        RunId::from_suffix(&format!("{n:016}")).unwrap()
    }

    fn decoded(payload: &str) -> (String, Vec<ReplicaNotice>) {
        let (sender, notices) = decode(payload).unwrap();
        (sender.to_owned(), notices.collect())
    }

    #[test]
    fn a_batch_merges_its_notices_and_round_trips_through_payloads() {
        let mut batch = Batch::default();
        batch.add(ReplicaNotice::DeliveryReady);
        batch.add(ReplicaNotice::RunLogged {
            org: org(1),
            run: run(1),
        });
        batch.add(ReplicaNotice::DeliveryReady);
        batch.add(ReplicaNotice::RunLogged {
            org: org(1),
            run: run(2),
        });
        // A change of run 1 after its lines: the run changed.
        batch.add(ReplicaNotice::RunChanged {
            org: org(1),
            run: run(1),
        });
        batch.add(ReplicaNotice::RunLogged {
            org: org(1),
            run: run(1),
        });
        // Same run id, another organization: another notice.
        batch.add(ReplicaNotice::RunLogged {
            org: org(2),
            run: run(1),
        });
        let payloads = batch.encode("abc", MAX_PAYLOAD_BYTES);
        assert_eq!(payloads.len(), 1);
        assert!(
            payloads[0].starts_with("v1 abc d r:org_"),
            "{}",
            payloads[0]
        );
        let (sender, notices) = decoded(&payloads[0]);
        assert_eq!(sender, "abc");
        assert_eq!(
            notices,
            [
                ReplicaNotice::DeliveryReady,
                ReplicaNotice::RunChanged {
                    org: org(1),
                    run: run(1)
                },
                ReplicaNotice::RunLogged {
                    org: org(1),
                    run: run(2)
                },
                ReplicaNotice::RunLogged {
                    org: org(2),
                    run: run(1)
                },
            ]
        );
    }

    #[test]
    fn a_large_batch_is_split_into_payloads_under_the_limit() {
        let mut batch = Batch::default();
        for n in 0..1_000 {
            batch.add(ReplicaNotice::RunChanged {
                org: org(1),
                run: run(n),
            });
        }
        let payloads = batch.encode("replica", MAX_PAYLOAD_BYTES);
        assert!(payloads.len() > 1);
        let mut all = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD_BYTES, "{}", payload.len());
            let (sender, notices) = decoded(payload);
            assert_eq!(sender, "replica");
            all.extend(notices);
        }
        assert_eq!(all.len(), 1_000);
        assert_eq!(
            all[999],
            ReplicaNotice::RunChanged {
                org: org(1),
                run: run(999)
            }
        );
        assert!(
            Batch::default()
                .encode("replica", MAX_PAYLOAD_BYTES)
                .is_empty()
        );
    }

    #[test]
    fn unknown_formats_and_items_are_skipped() {
        assert!(decode("v2 abc d").is_none());
        assert!(decode("").is_none());
        let (_, notices) = decoded("v1 abc d x:1 r:nope:run_1 l:org_0000000000000001");
        assert_eq!(notices, [ReplicaNotice::DeliveryReady]);
    }

    #[test]
    fn local_notices_map_to_what_other_replicas_need() {
        use port_core::ports::RunUpdate;
        let lines = Notice::RunUpdated(Arc::new(RunUpdate {
            org: org(1),
            run_id: run(1),
            run: None,
            logs: vec![port_core::run_log::RunLog {
                seq: 1,
                id: port_core::id::LogId::from_suffix("0000000000000001").unwrap(),
                run_id: run(1),
                message: "hello".into(),
                created_at: port_core::time::Timestamp::from_unix_millis(1),
                created_by: "test".into(),
            }],
        }));
        assert_eq!(
            ReplicaNotice::of(&lines),
            Some(ReplicaNotice::RunLogged {
                org: org(1),
                run: run(1)
            })
        );
        let nothing = Notice::RunUpdated(Arc::new(RunUpdate {
            org: org(1),
            run_id: run(1),
            run: None,
            logs: Vec::new(),
        }));
        assert_eq!(ReplicaNotice::of(&nothing), None);
        assert_eq!(
            ReplicaNotice::of(&Notice::DeliveryReady),
            Some(ReplicaNotice::DeliveryReady)
        );
    }

    #[test]
    fn channels_are_per_schema_and_fit_an_identifier() {
        assert_eq!(channel_for("public"), "portd_changes");
        assert_eq!(channel_for("tenant_a"), "portd_changes.tenant_a");
        let long = "s".repeat(80);
        let channel = channel_for(&long);
        assert!(channel.len() <= MAX_CHANNEL_BYTES, "{channel}");
        assert_eq!(channel, channel_for(&long), "stable");
        assert_ne!(channel, channel_for(&"t".repeat(80)));
    }

    #[derive(Default)]
    struct Heard {
        notices: Mutex<Vec<ReplicaNotice>>,
        missed: AtomicU64,
    }

    impl RemoteChanges for Heard {
        fn changed(&self, notice: ReplicaNotice) {
            self.notices.lock().unwrap().push(notice);
        }
        fn missed(&self) {
            self.missed.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Heard {
        fn take(&self) -> Vec<ReplicaNotice> {
            std::mem::take(&mut *self.notices.lock().unwrap())
        }
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what} within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The shared test server, or `None` (outside CI) to skip.
    fn test_database() -> Option<String> {
        let url = std::env::var("PORT_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty());
        assert!(
            url.is_some() || std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: set PORT_TEST_DATABASE_URL"
        );
        url
    }

    /// Two buses on one scratch schema hear each other, not themselves; a bus in
    /// another schema hears neither.
    #[tokio::test]
    async fn replicas_hear_each_other_and_not_themselves() {
        let Some(base) = test_database() else {
            return;
        };
        let schema = crate::ScratchSchema::create(&base, "bus").await.unwrap();
        let other_schema = crate::ScratchSchema::create(&base, "bus").await.unwrap();
        let (a_heard, b_heard, c_heard) = (
            Arc::new(Heard::default()),
            Arc::new(Heard::default()),
            Arc::new(Heard::default()),
        );
        let a = ReplicaBus::start(&schema.url(), a_heard.clone())
            .await
            .unwrap();
        let b = ReplicaBus::start(&schema.url(), b_heard.clone())
            .await
            .unwrap();
        let c = ReplicaBus::start(&other_schema.url(), c_heard.clone())
            .await
            .unwrap();
        assert_eq!(a.channel(), b.channel());
        assert_ne!(a.channel(), c.channel());
        assert_ne!(a.replica_id(), b.replica_id());

        a.notify(Notice::DeliveryReady);
        for n in 0..500 {
            a.publish(ReplicaNotice::RunLogged {
                org: org(1),
                run: run(n % 50),
            });
        }
        a.publish(ReplicaNotice::RunChanged {
            org: org(1),
            run: run(7),
        });
        let mut heard = Vec::new();
        eventually("b hears a's notices", || {
            heard.extend(b_heard.take());
            heard.contains(&ReplicaNotice::RunChanged {
                org: org(1),
                run: run(7),
            }) && (0..50).all(|n| heard.iter().any(|h| h.run() == Some((&org(1), &run(n)))))
        })
        .await;
        assert!(heard.contains(&ReplicaNotice::DeliveryReady));
        let stats = a.stats();
        assert_eq!(stats.published, 502);
        assert!(stats.round_trips < 502, "bursts are merged: {stats:?}");
        b.publish(ReplicaNotice::DeliveryReady);
        eventually("a hears b", || {
            a_heard.take() == [ReplicaNotice::DeliveryReady]
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(a_heard.take().is_empty(), "a never hears itself");
        assert!(b_heard.take().is_empty(), "b never hears itself");
        assert!(c_heard.take().is_empty(), "another schema hears nothing");

        for bus in [a, b, c] {
            bus.close().await;
        }
        schema.drop_now().await.unwrap();
        other_schema.drop_now().await.unwrap();
    }

    /// Both connections of a bus are cut (as a PostgreSQL restart or a network
    /// failure would): the bus says notices may have been missed, and notices flow
    /// both ways again.
    #[tokio::test]
    async fn lost_connections_are_made_again() {
        let Some(base) = test_database() else {
            return;
        };
        let schema = crate::ScratchSchema::create(&base, "bus").await.unwrap();
        let (a_heard, b_heard) = (Arc::new(Heard::default()), Arc::new(Heard::default()));
        let a = ReplicaBus::start(&schema.url(), a_heard.clone())
            .await
            .unwrap();
        let b = ReplicaBus::start(&schema.url(), b_heard.clone())
            .await
            .unwrap();
        let mut admin = PgConnection::connect(&base).await.unwrap();
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(format!("{APPLICATION_NAME} {}", a.replica_id()))
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert_eq!(cut, [true, true], "a's two connections");
        admin.close().await.unwrap();

        // b's notices reach a again, and a knows it may have missed some meanwhile.
        eventually("a listens again", || {
            b.publish(ReplicaNotice::DeliveryReady);
            a_heard.missed.load(Ordering::Relaxed) > 0 && !a_heard.take().is_empty()
        })
        .await;
        // a's first send after the cut fails (and is lost); later ones arrive.
        eventually("a sends again", || {
            a.publish(ReplicaNotice::DeliveryReady);
            !b_heard.take().is_empty()
        })
        .await;
        assert_eq!(a.stats().reconnects, 1, "{:?}", a.stats());
        assert_eq!(b_heard.missed.load(Ordering::Relaxed), 0, "b lost nothing");

        for bus in [a, b] {
            bus.close().await;
        }
        schema.drop_now().await.unwrap();
    }
}
