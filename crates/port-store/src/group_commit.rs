//! Group commit for SQLite: durable acknowledgements without an fsync inside the single
//! writer's critical section.
//!
//! With `synchronous=FULL` every `COMMIT` fsyncs the WAL while it holds the only write
//! lock, so writes queue behind the disk one by one. Instead the writer commits with
//! `synchronous=NORMAL` (the commit reaches the page cache; never corrupt, SQLite still
//! syncs around checkpoints), releases the lock, and then waits here until an
//! `fdatasync` of the WAL file that *started after* its commit has finished. One such
//! sync covers every commit that finished before it started, so concurrent writers
//! share it. Nothing is acknowledged before its commit is on disk: the guarantee of
//! `synchronous=FULL`, at the cost of one fsync per batch instead of one per write.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use port_core::error::StoreError;
use port_core::ports::StoreResult;
use tokio::sync::Mutex;

/// Shared by every write transaction of one SQLite store.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// `<database>-wal`: fsync acts on the file, so a fresh descriptor is as good as
    /// SQLite's own, and opening it per sync survives SQLite recreating the file.
    wal: PathBuf,
    /// Commits that have returned, counted from 1.
    committed: AtomicU64,
    /// The highest commit number known to be on disk; held while a sync runs, so that
    /// waiters queue behind it and then find their commit covered.
    synced_through: Mutex<u64>,
}

impl GroupCommit {
    pub(crate) fn new(database: &std::path::Path) -> Arc<Self> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        Arc::new(Self {
            wal: PathBuf::from(wal),
            committed: AtomicU64::new(0),
            synced_through: Mutex::new(0),
        })
    }

    /// Called right after a `COMMIT` returned: resolves once that commit is on disk.
    pub(crate) async fn committed(&self) -> StoreResult<()> {
        let ticket = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        let mut synced_through = self.synced_through.lock().await;
        if *synced_through >= ticket {
            return Ok(());
        }
        // Every commit numbered up to here returned before the sync starts.
        let covered = self.committed.load(Ordering::Acquire);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&wal)?.sync_data())
            .await
            .map_err(|e| StoreError::Other(format!("the WAL sync task failed: {e}")))?
            .map_err(|e| StoreError::Unavailable(format!("fsync of the SQLite WAL failed: {e}")))?;
        *synced_through = covered;
        Ok(())
    }

    /// Commits made durable so far (for tests).
    #[cfg(test)]
    async fn synced_through(&self) -> u64 {
        *self.synced_through.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_syncs_and_all_wait_for_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = dir.path().join("portd.db");
        std::fs::write(dir.path().join("portd.db-wal"), b"frames").expect("wal file");
        let group = GroupCommit::new(&database);
        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let group = Arc::clone(&group);
                tokio::spawn(async move { group.committed().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.expect("no panic").expect("synced");
        }
        assert_eq!(group.synced_through().await, 64, "every commit covered");
    }

    #[tokio::test]
    async fn a_missing_wal_is_an_error_not_an_acknowledgement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let group = GroupCommit::new(&dir.path().join("portd.db"));
        let err = group.committed().await.expect_err("nothing to sync");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert_eq!(group.synced_through().await, 0);
    }
}
