//! The SQLite writer: one thread owns the database's only write connection and runs
//! whole write transactions on it, several callers' writes in one transaction.
//!
//! Why: sqlx runs a SQLite connection on a thread of its own and sends it every statement
//! over a channel, so a run creation cost a dozen cross-thread round trips, several of
//! them while holding SQLite's only write lock. Here a hot write is a closure ([`Writer::run`])
//! that runs on the connection's own thread without a hop per statement, and the thread
//! takes every job waiting in its queue into one transaction (each in a savepoint, so one
//! job's failure undoes only that job): one `COMMIT` per batch, then one fsync of the WAL
//! for every batch that committed before it started, on a second thread while the writer
//! goes on with the next batch. A caller hears back only once its batch is on disk (with
//! [`Synchronous::Full`]). Jobs are served in arrival order, so the delivery worker's writes
//! and the API's share the writer fairly.
//!
//! Cold paths (administration, catalog edits) keep their statement-by-statement code as a
//! [`Session`]: a transaction the writer serves request by request from the task that
//! drives it, as part of a batch like any job.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use port_core::error::StoreError;
use port_core::ports::StoreResult;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Statement};
use tokio::sync::oneshot;

use crate::config::Synchronous;
use crate::db::{Arg, LocalRow, Row, Sql};

/// The most jobs one transaction takes, so that the first of a long queue is not kept
/// waiting for the last.
const MAX_BATCH: u64 = 512;

/// Prepared statements kept per connection: every static statement of the schema, plus
/// room for the shapes of the dynamic ones (IN lists of a few lengths).
const STATEMENT_CACHE: usize = 256;

/// Answers a caller once its batch's fate is known: `Ok` when durable, else why not.
type Ack = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// When a caller hears that its write committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Once its batch is on disk (with [`Synchronous::Full`]): what the API promises
    /// for every write it acknowledges.
    Synced,
    /// Once its batch committed: a process crash keeps it (the WAL is in the page
    /// cache), a power cut may not. For the delivery worker's bookkeeping (leases,
    /// attempts, outcomes), whose loss only means a delivery is sent again, which
    /// at-least-once delivery allows; so delivery never waits for the disk.
    Committed,
}

/// Work the writer thread runs inside the open transaction.
trait Work: Send {
    /// Runs the job; says whether it succeeded and how to answer its caller.
    fn run(self: Box<Self>, conn: &mut Connection) -> (bool, Ack);
    fn durability(&self) -> Durability;
    /// Answers the caller without running (the transaction could not start).
    fn fail(self: Box<Self>, error: StoreError);
}

struct Typed<F, T> {
    body: F,
    durability: Durability,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Work for Typed<F, T>
where
    F: FnOnce(&mut Connection) -> StoreResult<T> + Send,
    T: Send + 'static,
{
    fn durability(&self) -> Durability {
        self.durability
    }

    fn run(self: Box<Self>, conn: &mut Connection) -> (bool, Ack) {
        let Self { body, reply, .. } = *self;
        let result = body(conn);
        let ok = result.is_ok();
        let ack: Ack = Box::new(move |durable| {
            // The caller may have gone away; its write stands either way.
            let _ = reply.send(result.and_then(|value| durable.map(|()| value)));
        });
        (ok, ack)
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

enum Job {
    Work(Box<dyn Work>),
    Session(mpsc::Receiver<Request>),
}

/// One statement (or the end) of a [`Session`].
enum Request {
    Execute(Sql, oneshot::Sender<StoreResult<u64>>),
    FetchAll(Sql, oneshot::Sender<StoreResult<Vec<Row>>>),
    Commit(oneshot::Sender<StoreResult<()>>),
    Rollback(oneshot::Sender<StoreResult<()>>),
}

/// Counters, for tests and the bench's explanations.
#[derive(Debug, Default)]
pub(crate) struct WriterStats {
    /// Transactions committed.
    pub(crate) commits: AtomicU64,
    /// Jobs and sessions those transactions held.
    pub(crate) jobs: AtomicU64,
    /// WAL fsyncs.
    pub(crate) syncs: AtomicU64,
}

/// What the SQLite writer has done since the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterCounters {
    /// Write transactions committed.
    pub commits: u64,
    /// Jobs (whole writes, or statement-by-statement sessions) those transactions held:
    /// `jobs / commits` is the mean batch.
    pub jobs: u64,
    /// WAL fsyncs (with durable acknowledgements): each covers every batch committed
    /// before it began.
    pub syncs: u64,
}

/// The handle every clone of the store shares.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Resolves once the writer thread (and the sync thread) have finished.
    finished: Mutex<Option<oneshot::Receiver<()>>>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Work(_) => "Job::Work",
            Self::Session(_) => "Job::Session",
        })
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".to_owned())
}

impl Writer {
    /// Opens the write connection to the database at `path` (already created and
    /// migrated) and starts the writer thread.
    pub(crate) fn open(
        path: &Path,
        synchronous: Synchronous,
        busy_timeout: Duration,
    ) -> StoreResult<Self> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_local_err)?;
        conn.busy_timeout(busy_timeout).map_err(map_local_err)?;
        // FULL durability comes from the sync thread: SQLite itself commits with NORMAL,
        // and a batch is acknowledged after an fsync of the WAL that began after its commit.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(map_local_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let stats = Arc::new(WriterStats::default());
        let (jobs, queue) = mpsc::channel();
        let (finished_tx, finished) = oneshot::channel();
        let syncer = match synchronous {
            Synchronous::Full => Some(Syncer::start(wal_path(path), stats.clone())?),
            Synchronous::Normal => None,
        };
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("portd-sqlite-writer".to_owned())
            .spawn(move || {
                write_loop(&mut conn, &queue, syncer.as_ref(), &thread_stats);
                drop(conn);
                if let Some(syncer) = syncer {
                    syncer.finish();
                }
                let _ = finished_tx.send(());
            })
            .map_err(|e| StoreError::Other(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            finished: Mutex::new(Some(finished)),
            stats,
        })
    }

    fn send(&self, job: Job) -> StoreResult<()> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| closed())
    }

    /// Runs `body` in a write transaction on the writer thread, batched with whatever
    /// else waits; answers once the batch is as durable as asked. An `Err` from `body`
    /// undoes what it wrote and nothing else.
    pub(crate) async fn run<T, F>(&self, durability: Durability, body: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Work(Box::new(Typed {
            body,
            durability,
            reply,
        })))?;
        // Queued jobs are served even while the store closes, so a lost answer means
        // the job itself failed (it panicked, and the writer logged it).
        answer.await.map_err(|_| {
            StoreError::Other("the write failed inside the store's writer".to_owned())
        })?
    }

    /// A write transaction driven statement by statement from the calling task.
    pub(crate) fn session(&self) -> StoreResult<Session> {
        let (requests, queue) = mpsc::channel();
        self.send(Job::Session(queue))?;
        Ok(Session { requests })
    }

    pub(crate) fn counters(&self) -> WriterCounters {
        WriterCounters {
            commits: self.stats.commits.load(Ordering::Relaxed),
            jobs: self.stats.jobs.load(Ordering::Relaxed),
            syncs: self.stats.syncs.load(Ordering::Relaxed),
        }
    }

    /// Stops taking jobs, lets the writer finish those queued, and waits for it.
    pub(crate) async fn close(&self) {
        drop(
            self.jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(finished) = finished {
            let _ = finished.await;
        }
    }
}

/// A write transaction served by the writer thread one request at a time. Dropped
/// without [`Session::commit`], it rolls back.
#[derive(Debug)]
pub(crate) struct Session {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl Session {
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Request,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    pub(crate) async fn execute(&self, sql: &Sql) -> StoreResult<u64> {
        self.ask(|reply| Request::Execute(sql.clone(), reply)).await
    }

    pub(crate) async fn fetch_all(&self, sql: &Sql) -> StoreResult<Vec<Row>> {
        self.ask(|reply| Request::FetchAll(sql.clone(), reply))
            .await
    }

    /// Resolves once the transaction is durable.
    pub(crate) async fn commit(self) -> StoreResult<()> {
        self.ask(Request::Commit).await
    }

    pub(crate) async fn rollback(self) -> StoreResult<()> {
        self.ask(Request::Rollback).await
    }
}

/// Runs `future` to completion right here: the store's transaction bodies await only
/// their connection, which on the writer thread answers at once. A body that waits on
/// anything else is a bug, reported rather than blocked on.
pub(crate) fn now<T>(future: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Other(
            "a write transaction waited on something other than its connection".to_owned(),
        )),
    }
}

fn wal_path(database: &Path) -> PathBuf {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

// ---------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------

fn write_loop(
    conn: &mut Connection,
    queue: &mpsc::Receiver<Job>,
    syncer: Option<&Syncer>,
    stats: &WriterStats,
) {
    while let Ok(first) = queue.recv() {
        if let Err(e) = statement(conn, "BEGIN IMMEDIATE") {
            refuse(first, &e);
            continue;
        }
        let mut acks: Vec<(Durability, Ack)> = Vec::new();
        let mut next = Some(first);
        let mut taken: u64 = 0;
        let mut lost = None;
        while let Some(job) = next.take() {
            taken += 1;
            if let Err(e) = serve(conn, job, &mut acks) {
                lost = Some(e);
                break;
            }
            if taken < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        let outcome = match lost {
            Some(e) => Err(e),
            None => statement(conn, "COMMIT"),
        };
        match outcome {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.jobs.fetch_add(taken, Ordering::Relaxed);
                let (synced, committed): (Vec<_>, Vec<_>) = acks
                    .into_iter()
                    .partition(|(durability, _)| *durability == Durability::Synced);
                committed.into_iter().for_each(|(_, ack)| ack(Ok(())));
                let synced: Vec<Ack> = synced.into_iter().map(|(_, ack)| ack).collect();
                match syncer {
                    Some(syncer) if !synced.is_empty() => syncer.after_sync(synced),
                    _ => synced.into_iter().for_each(|ack| ack(Ok(()))),
                }
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = statement(conn, "ROLLBACK");
                }
                tracing::warn!(error = %e, jobs = taken, "a batch of writes was rolled back");
                for (_, ack) in acks {
                    ack(Err(e.clone()));
                }
            }
        }
    }
}

fn refuse(job: Job, error: &StoreError) {
    match job {
        Job::Work(work) => work.fail(error.clone()),
        Job::Session(requests) => {
            // Answer every request of the session with the error until it ends.
            while let Ok(request) = requests.recv() {
                match request {
                    Request::Execute(_, reply) => drop(reply.send(Err(error.clone()))),
                    Request::FetchAll(_, reply) => drop(reply.send(Err(error.clone()))),
                    Request::Commit(reply) | Request::Rollback(reply) => {
                        let _ = reply.send(Err(error.clone()));
                        return;
                    }
                }
            }
        }
    }
}

/// Serves one job inside the batch's transaction, in a savepoint of its own. `Err`
/// means the whole transaction is gone (SQLite rolls back by itself after some errors,
/// a full disk say): every job of the batch then fails.
fn serve(conn: &mut Connection, job: Job, acks: &mut Vec<(Durability, Ack)>) -> StoreResult<()> {
    if let Err(e) = statement(conn, "SAVEPOINT job") {
        refuse(job, &e);
        return Err(e);
    }
    let ok = match job {
        Job::Work(work) => {
            let durability = work.durability();
            // A job that panics must not take the writer, and every later write, with it:
            // its savepoint is undone and its caller hears that it failed.
            match std::panic::catch_unwind(AssertUnwindSafe(|| work.run(conn))) {
                Ok((true, ack)) => {
                    acks.push((durability, ack));
                    true
                }
                Ok((false, ack)) => {
                    // Its answer is its own error, known now.
                    ack(Ok(()));
                    false
                }
                Err(_) => {
                    tracing::error!("a write job panicked; its writes are undone");
                    false
                }
            }
        }
        Job::Session(requests) => serve_session(conn, &requests, acks),
    };
    if conn.is_autocommit() {
        return Err(StoreError::Unavailable(
            "SQLite rolled the write transaction back".to_owned(),
        ));
    }
    if ok {
        statement(conn, "RELEASE job")
    } else {
        statement(conn, "ROLLBACK TO job").and_then(|()| statement(conn, "RELEASE job"))
    }
}

/// Serves a session's requests until it commits (true), rolls back or goes away (false).
fn serve_session(
    conn: &mut Connection,
    requests: &mpsc::Receiver<Request>,
    acks: &mut Vec<(Durability, Ack)>,
) -> bool {
    while let Ok(request) = requests.recv() {
        match request {
            Request::Execute(sql, reply) => {
                let _ = reply.send(execute(conn, &sql));
            }
            Request::FetchAll(sql, reply) => {
                let _ = reply.send(fetch_all(conn, &sql));
            }
            Request::Commit(reply) => {
                acks.push((
                    Durability::Synced,
                    Box::new(move |durable| {
                        let _ = reply.send(durable);
                    }),
                ));
                return true;
            }
            Request::Rollback(reply) => {
                let _ = reply.send(Ok(()));
                return false;
            }
        }
        if conn.is_autocommit() {
            // The transaction is gone; nothing more of this session may run outside it.
            return false;
        }
    }
    false
}

fn statement(conn: &Connection, text: &str) -> StoreResult<()> {
    conn.prepare_cached(text)
        .and_then(|mut stmt| stmt.raw_execute())
        .map(|_| ())
        .map_err(map_local_err)
}

// ---------------------------------------------------------------------------------------
// The sync thread
// ---------------------------------------------------------------------------------------

/// Acknowledges committed batches once an fsync of the WAL that began after their
/// commit has finished; one fsync serves every batch waiting at the time.
struct Syncer {
    batches: mpsc::Sender<Vec<Ack>>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    fn start(wal: PathBuf, stats: Arc<WriterStats>) -> StoreResult<Self> {
        let (batches, queue) = mpsc::channel::<Vec<Ack>>();
        let thread = std::thread::Builder::new()
            .name("portd-sqlite-sync".to_owned())
            .spawn(move || {
                while let Ok(mut acks) = queue.recv() {
                    while let Ok(more) = queue.try_recv() {
                        acks.extend(more);
                    }
                    // fsync acts on the file, so a fresh descriptor is as good as
                    // SQLite's own, and opening it per sync survives SQLite recreating it.
                    let synced = std::fs::File::open(&wal)
                        .and_then(|file| file.sync_data())
                        .map_err(|e| {
                            StoreError::Unavailable(format!("fsync of the SQLite WAL failed: {e}"))
                        });
                    stats.syncs.fetch_add(1, Ordering::Relaxed);
                    for ack in acks {
                        ack(synced.clone());
                    }
                }
            })
            .map_err(|e| StoreError::Other(format!("cannot start the SQLite sync thread: {e}")))?;
        Ok(Self { batches, thread })
    }

    fn after_sync(&self, acks: Vec<Ack>) {
        if let Err(mpsc::SendError(acks)) = self.batches.send(acks) {
            for ack in acks {
                ack(Err(closed()));
            }
        }
    }

    /// Waits until every batch handed over is acknowledged.
    fn finish(self) {
        drop(self.batches);
        let _ = self.thread.join();
    }
}

// ---------------------------------------------------------------------------------------
// Statements on the writer's own connection
// ---------------------------------------------------------------------------------------

/// Binds `sql`'s arguments: `$N` (and `?N`) placeholders by their number, like sqlx.
fn prepare<'c>(conn: &'c Connection, sql: &Sql) -> StoreResult<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql.text()).map_err(map_local_err)?;
    bind(&mut stmt, sql.args())?;
    Ok(stmt)
}

fn bind(stmt: &mut Statement<'_>, args: &[Arg]) -> StoreResult<()> {
    for index in 1..=stmt.parameter_count() {
        let position = match stmt.parameter_name(index) {
            Some(name) => name
                .get(1..)
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| StoreError::Other(format!("unsupported placeholder {name}")))?,
            None => index - 1,
        };
        let arg = args.get(position).ok_or_else(|| {
            StoreError::Other(format!("placeholder {} has no argument", position + 1))
        })?;
        match arg {
            Arg::Int(v) => stmt.raw_bind_parameter(index, v),
            Arg::Text(v) => stmt.raw_bind_parameter(index, v.as_deref()),
            Arg::Bool(v) => stmt.raw_bind_parameter(index, i64::from(*v)),
        }
        .map_err(map_local_err)?;
    }
    Ok(())
}

/// Runs a statement; returns the rows it changed.
pub(crate) fn execute(conn: &Connection, sql: &Sql) -> StoreResult<u64> {
    let mut stmt = prepare(conn, sql)?;
    // Stepped to the end, so `RETURNING` statements run whole too.
    let mut rows = stmt.raw_query();
    while rows.next().map_err(map_local_err)?.is_some() {}
    drop(rows);
    Ok(conn.changes())
}

pub(crate) fn fetch_all(conn: &Connection, sql: &Sql) -> StoreResult<Vec<Row>> {
    let mut stmt = prepare(conn, sql)?;
    let columns: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_local_err)? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(Value::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_local_err)?;
        out.push(Row::Local(LocalRow::new(columns.clone(), values)));
    }
    Ok(out)
}

/// Maps SQLite's errors as [`crate::db::map_err`] maps sqlx's.
pub(crate) fn map_local_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.clone().unwrap_or_else(|| failure.to_string());
            // SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE.
            if matches!(failure.extended_code, 1555 | 2067) {
                return StoreError::AlreadyExists(message);
            }
            match failure.code {
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                    StoreError::Unavailable(message)
                }
                _ => StoreError::Other(message),
            }
        }
        _ => StoreError::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, synchronous: Synchronous) -> Writer {
        let path = dir.join("w.db");
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER) STRICT;",
        )
        .expect("schema");
        drop(conn);
        Writer::open(&path, synchronous, Duration::from_secs(5)).expect("writer")
    }

    fn insert(k: &str, v: i64) -> Sql {
        Sql::new("INSERT INTO t (k, v) VALUES ($1, $2)")
            .bind(k)
            .bind(v)
    }

    fn count(writer: &Writer) -> impl Future<Output = StoreResult<i64>> + '_ {
        writer.run(Durability::Synced, |conn| {
            let rows = fetch_all(conn, &Sql::new("SELECT COUNT(*) AS n FROM t"))?;
            rows[0].i64("n")
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_share_transactions_and_fsyncs_and_a_failure_undoes_only_its_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Arc::new(open(dir.path(), Synchronous::Full));
        let jobs: Vec<_> = (0..200)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .run(Durability::Synced, move |conn| {
                            execute(conn, &insert(&format!("k{i}"), i))?;
                            // Every tenth job writes, then fails: its row must vanish.
                            if i % 10 == 0 {
                                execute(conn, &insert(&format!("extra{i}"), i))?;
                                execute(conn, &insert(&format!("k{i}"), i))?;
                            }
                            Ok(i)
                        })
                        .await
                })
            })
            .collect();
        let mut failed = 0;
        for job in jobs {
            match job.await.expect("no panic") {
                Ok(_) => {}
                Err(StoreError::AlreadyExists(_)) => failed += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(failed, 20);
        assert_eq!(count(&writer).await.expect("count"), 180);
        let counters = writer.counters();
        assert!(
            counters.commits < 200,
            "200 concurrent jobs took {} transactions: no batching",
            counters.commits
        );
        assert!(counters.syncs >= 1 && counters.syncs <= counters.commits);
        writer.close().await;
        let err = writer
            .run(Durability::Synced, |_| Ok(()))
            .await
            .expect_err("closed");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_writes_never_wait_for_an_fsync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Arc::new(open(dir.path(), Synchronous::Full));
        let jobs: Vec<_> = (0..50)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .run(Durability::Committed, move |conn| {
                            execute(conn, &insert(&format!("k{i}"), i))
                        })
                        .await
                })
            })
            .collect();
        for job in jobs {
            assert_eq!(job.await.expect("no panic").expect("written"), 1);
        }
        assert_eq!(writer.counters().syncs, 0, "{:?}", writer.counters());
        // A synced write after them is what makes them (and itself) durable.
        count(&writer).await.expect("count");
        assert_eq!(writer.counters().syncs, 1);
    }

    #[tokio::test]
    async fn a_session_commits_and_a_dropped_session_rolls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = open(dir.path(), Synchronous::Normal);
        let session = writer.session().expect("session");
        assert_eq!(session.execute(&insert("a", 1)).await.expect("insert"), 1);
        let rows = session
            .fetch_all(&Sql::new("SELECT v FROM t WHERE k = $1").bind("a"))
            .await
            .expect("read own write");
        assert_eq!(rows[0].i64("v").expect("v"), 1);
        session.commit().await.expect("commit");

        let dropped = writer.session().expect("session");
        dropped.execute(&insert("b", 2)).await.expect("insert");
        drop(dropped);
        let rolled_back = writer.session().expect("session");
        rolled_back.execute(&insert("c", 3)).await.expect("insert");
        rolled_back.rollback().await.expect("rollback");
        assert_eq!(count(&writer).await.expect("count"), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = open(dir.path(), Synchronous::Full);
        let err = writer
            .run(Durability::Synced, |conn| -> StoreResult<()> {
                execute(conn, &insert("lost", 1))?;
                panic!("a bug in a job");
            })
            .await
            .expect_err("the job panicked");
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
        writer
            .run(Durability::Synced, |conn| execute(conn, &insert("kept", 2)))
            .await
            .expect("the writer still writes");
        assert_eq!(
            count(&writer).await.expect("count"),
            1,
            "the panicked job's row is undone"
        );
    }

    #[test]
    fn a_body_that_waits_on_something_else_is_refused() {
        let err = now(async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .expect_err("pending");
        assert!(matches!(err, StoreError::Other(_)));
    }
}
