//! Entity searches take turns per organization: each search is bounded (see
//! `port_core::search::SearchLimits`), and an organization runs one at a time
//! ([`SEARCHES_PER_ORG`]), so many parallel searches of one tenant queue behind each
//! other and use at most one core, instead of taking every core from the others. A search that waits
//! longer than [`SEARCH_QUEUE_WAIT`] for its turn is answered 429 `too_many_requests`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use port_core::id::OrgId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Searches one organization runs at the same time.
pub const SEARCHES_PER_ORG: usize = 1;

/// How long a search waits for its organization's turn before its 429.
pub const SEARCH_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Per-organization turns for searches.
#[derive(Debug, Default)]
pub struct SearchGate {
    turns: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
}

/// A search's turn; dropping it lets the next one of its organization run.
#[derive(Debug)]
pub struct SearchTurn {
    _permit: OwnedSemaphorePermit,
}

impl SearchGate {
    /// Waits (at most `wait`) for one of `org`'s search turns; `None` when none came.
    pub async fn turn(&self, org: &OrgId, wait: Duration) -> Option<SearchTurn> {
        let semaphore = self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(org.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(SEARCHES_PER_ORG)))
            .clone();
        match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Some(SearchTurn { _permit: permit }),
            // The semaphore is never closed; a timeout means the turn did not come.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_organization_has_its_own_turns() {
        let gate = SearchGate::default();
        let a = OrgId::parse("org_AAAAAAAAAAAAAAAA").unwrap();
        let b = OrgId::parse("org_BBBBBBBBBBBBBBBB").unwrap();
        let short = Duration::from_millis(20);
        let held: Vec<SearchTurn> = futures_held(&gate, &a, SEARCHES_PER_ORG).await;
        assert!(
            gate.turn(&a, short).await.is_none(),
            "a's turns are all taken"
        );
        assert!(
            gate.turn(&b, short).await.is_some(),
            "b is not held up by a"
        );
        drop(held);
        assert!(gate.turn(&a, short).await.is_some(), "a's turns come back");
    }

    async fn futures_held(gate: &SearchGate, org: &OrgId, n: usize) -> Vec<SearchTurn> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(gate.turn(org, Duration::from_millis(20)).await.unwrap());
        }
        held
    }
}
