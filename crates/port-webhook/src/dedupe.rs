//! Drops repeated deliveries: portd sends the same `webhook-id` on every attempt of one
//! delivery, and an attempt whose answer was lost is sent again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::dispatch::RunResult;

/// How many delivery ids are remembered by default.
pub const DEFAULT_DEDUPE_CAPACITY: usize = 10_000;
/// How long a delivery id is remembered by default: longer than portd's whole retry
/// schedule (about 45 minutes).
pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// A delivery already accepted.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// An asynchronous run: the duplicate is acknowledged and dropped.
    Async,
    /// A synchronized run: the duplicate gets the same answer, once there is one.
    Sync(watch::Receiver<Option<RunResult>>),
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<String, Seen>,
    // Insertion order, for eviction by age and by count.
    order: VecDeque<(String, Instant)>,
}

impl Entries {
    fn evict_oldest(&mut self) {
        if let Some((oldest, _)) = self.order.pop_front() {
            self.by_id.remove(&oldest);
        }
    }
}

/// Remembers accepted delivery ids, bounded in count and in time.
#[derive(Debug)]
pub(crate) struct Dedupe {
    entries: Mutex<Entries>,
    capacity: usize,
    ttl: Duration,
}

impl Dedupe {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Records `id` as `seen` unless it is already known; returns what was recorded
    /// before for a duplicate. Checking and recording are one step, so two copies
    /// arriving together run once.
    pub(crate) fn first_or_previous(&self, id: &str, seen: Seen) -> Option<Seen> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some((_, at)) = entries.order.front()
            && now.saturating_duration_since(*at) > self.ttl
        {
            entries.evict_oldest();
        }
        if let Some(previous) = entries.by_id.get(id) {
            return Some(previous.clone());
        }
        while entries.order.len() >= self.capacity {
            entries.evict_oldest();
        }
        entries.by_id.insert(id.to_owned(), seen);
        entries.order.push_back((id.to_owned(), now));
        None
    }

    /// Forgets `id` (its delivery was not accepted after all).
    pub(crate) fn forget(&self, id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.by_id.remove(id).is_some() {
            entries.order.retain(|(known, _)| known != id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_and_capacity_evicts_the_oldest() {
        let dedupe = Dedupe::new(2, Duration::from_secs(60));
        assert!(dedupe.first_or_previous("a", Seen::Async).is_none());
        assert!(dedupe.first_or_previous("a", Seen::Async).is_some());
        assert!(dedupe.first_or_previous("b", Seen::Async).is_none());
        assert!(dedupe.first_or_previous("c", Seen::Async).is_none());
        assert_eq!(dedupe.len(), 2);
        // "a" was evicted to make room for "c".
        assert!(dedupe.first_or_previous("a", Seen::Async).is_none());
        dedupe.forget("a");
        assert!(dedupe.first_or_previous("a", Seen::Async).is_none());
    }

    #[tokio::test]
    async fn old_ids_expire() {
        let dedupe = Dedupe::new(100, Duration::from_millis(20));
        assert!(dedupe.first_or_previous("a", Seen::Async).is_none());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(dedupe.first_or_previous("a", Seen::Async).is_none());
        assert_eq!(dedupe.len(), 1);
    }
}
