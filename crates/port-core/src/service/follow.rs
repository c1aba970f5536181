//! What a live view of a run (the log stream) reads: the run's lines after a sequence
//! number, and [`OrgRuns`], a read-only view of one organization's runs for whatever
//! follows them on the caller's behalf (the server's run feeds read through it every
//! few seconds, for changes other replicas made).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Caller, Services};
use crate::error::{PortError, StoreError};
use crate::id::{OrgId, RunId};
use crate::ports::{
    CreateRunOutcome, IdempotencyKey, NewDelivery, RunFilter, RunStore, StoreResult,
};
use crate::run::Run;
use crate::run_log::{NewRunLog, RunLog};
use crate::time::Timestamp;

impl Services {
    /// Up to `limit` log lines of one of the caller's runs with a sequence number above
    /// `after_seq`, in sequence order. For callers who see every run the run is not
    /// looked up: a run of another organization, or none, simply has no lines; others
    /// get 404 for a run hidden from them, as [`Services::get_run`] answers.
    pub async fn logs_after(
        &self,
        caller: &Caller,
        run_id: &RunId,
        after_seq: u64,
        limit: u64,
    ) -> Result<Vec<RunLog>, PortError> {
        if !caller.principal.is_admin() {
            self.get_run(caller, run_id.as_str()).await?;
        }
        Ok(self
            .store
            .logs_after(&caller.org_id, run_id, after_seq, limit)
            .await?)
    }

    /// The caller's runs, read-only, for a follower that reads them through the
    /// [`RunStore`] port. Whether the caller may see a run is checked before it is
    /// followed ([`Services::run_version`], [`Services::logs_after`]), not here.
    pub fn org_runs(&self, caller: &Caller) -> OrgRuns {
        OrgRuns {
            store: self.store.clone(),
            org: caller.org_id.clone(),
        }
    }
}

/// One organization's runs and lines, read-only: reads of another organization find
/// nothing, and every write (and the reaper's cross-organization read) is refused.
#[derive(Clone)]
pub struct OrgRuns {
    store: Arc<dyn RunStore>,
    org: OrgId,
}

impl std::fmt::Debug for OrgRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrgRuns({})", self.org)
    }
}

fn read_only() -> StoreError {
    StoreError::Other("a view of an organization's runs is read-only".into())
}

#[async_trait]
impl RunStore for OrgRuns {
    async fn create_run(
        &self,
        _run: &Run,
        _delivery: Option<&NewDelivery>,
        _idempotency_key: Option<&IdempotencyKey>,
    ) -> StoreResult<CreateRunOutcome> {
        Err(read_only())
    }

    async fn get_run(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<Run>> {
        if *org != self.org {
            return Ok(None);
        }
        self.store.get_run(org, id).await
    }

    async fn run_version(&self, org: &OrgId, id: &RunId) -> StoreResult<Option<u64>> {
        if *org != self.org {
            return Ok(None);
        }
        self.store.run_version(org, id).await
    }

    async fn list_runs(&self, org: &OrgId, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        if *org != self.org {
            return Ok(Vec::new());
        }
        self.store.list_runs(org, filter).await
    }

    async fn save_transition(
        &self,
        _run: &Run,
        _expected_version: u64,
        _logs: &[NewRunLog],
        _delivery: Option<&NewDelivery>,
    ) -> StoreResult<Vec<RunLog>> {
        Err(read_only())
    }

    async fn list_logs(
        &self,
        org: &OrgId,
        run: &RunId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        if *org != self.org {
            return Ok(Vec::new());
        }
        self.store.list_logs(org, run, offset, limit).await
    }

    async fn logs_after(
        &self,
        org: &OrgId,
        run: &RunId,
        after_seq: u64,
        limit: u64,
    ) -> StoreResult<Vec<RunLog>> {
        if *org != self.org {
            return Ok(Vec::new());
        }
        self.store.logs_after(org, run, after_seq, limit).await
    }

    async fn in_progress_runs_created_before(
        &self,
        _created_before: Timestamp,
        _limit: u32,
    ) -> StoreResult<Vec<Run>> {
        Err(read_only())
    }
}
