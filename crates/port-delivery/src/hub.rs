//! The in-process [`Notifier`]: wakes the delivery worker and fans run changes out to
//! streams.

use port_core::ports::{Notice, Notifier};
use tokio::sync::{Notify, broadcast};

/// In-process notifications. Give it to `Services` as the notifier and to the
/// delivery worker; servers subscribe to run changes for their event streams.
///
/// Notices are hints, never the truth: a listener that misses one (a lagging stream,
/// a notice from another replica) catches up from the store.
#[derive(Debug)]
pub struct Hub {
    /// Holds one permit when nobody waits, so a notice sent while the worker is busy
    /// still wakes its next wait.
    delivery_ready: Notify,
    runs: broadcast::Sender<Notice>,
}

impl Hub {
    /// How many run changes a slow subscriber may fall behind before it lags.
    pub const DEFAULT_CAPACITY: usize = 1024;

    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A hub whose run-change channel holds `capacity` notices per subscriber.
    pub fn with_capacity(capacity: usize) -> Self {
        let (runs, _) = broadcast::channel(capacity.max(1));
        Self {
            delivery_ready: Notify::new(),
            runs,
        }
    }

    /// Every later [`Notice::RunChanged`]. A receiver that falls behind gets
    /// `RecvError::Lagged` and should re-read what it shows from the store.
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
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for Hub {
    fn notify(&self, notice: Notice) {
        match notice {
            Notice::DeliveryReady => self.wake_delivery_worker(),
            // An error only means nobody listens right now, which is fine.
            notice @ Notice::RunChanged { .. } => drop(self.runs.send(notice)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use port_core::{OrgId, RunId};

    use super::*;

    fn changed() -> Notice {
        Notice::RunChanged {
            org: OrgId::from_suffix("aaaaaaaaaaaaaaaa").unwrap(),
            run: RunId::from_suffix("bbbbbbbbbbbbbbbb").unwrap(),
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

    #[tokio::test]
    async fn run_changes_reach_every_subscriber() {
        let hub = Hub::new();
        let mut a = hub.subscribe_runs();
        let mut b = hub.subscribe_runs();
        hub.notify(changed());
        hub.notify(Notice::DeliveryReady);
        assert_eq!(a.recv().await.unwrap(), changed());
        assert_eq!(b.recv().await.unwrap(), changed());
        assert!(
            a.try_recv().is_err(),
            "delivery wake-ups are not run changes"
        );
    }

    #[test]
    fn notifying_without_subscribers_is_fine() {
        Hub::with_capacity(0).notify(changed());
    }
}
