//! Transports: how a claimed delivery reaches its backend. One trait, one file per
//! implementation, one registration (the shape of svix-server's `queue/mod.rs`):
//!
//! - `webhook.rs`, [`WebhookTransport`]: portd signs and sends an HTTP request
//!   (`DeliveryMode::Webhook`);
//! - `agent.rs`, [`AgentTransport`]: a pull-mode runner claims the run from the
//!   outbox (`DeliveryMode::Agent`); the worker never pushes these;
//! - `upsert_entity.rs`, [`UpsertEntityTransport`]: portd writes the entity of Port's
//!   `UPSERT_ENTITY` itself, bound to the run (`DeliveryMode::UpsertEntity`);
//! - `approval_notification.rs`, [`ApprovalNotificationTransport`]: portd tells a run's
//!   approvers that it waits for them (`DeliveryMode::ApprovalNotification`);
//! - `signed.rs`: the signed HTTP attempt (and the vetted client) the webhook and
//!   approval notification transports share.
//!
//! The worker looks a delivery's transport up by its [`DeliveryMode`] in
//! [`Transports`], hands it a [`Job`] and records the [`Carried`] it gets back. A new
//! transport is a new file here implementing [`Transport`] and one line in
//! [`Transports::standard`] (see docs/architecture.md, "Where to change what", for
//! what the mode itself needs).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use port_core::Timestamp;
use port_core::ports::{Delivery, DeliveryMode};
use port_core::service::{Sendable, Services};

use crate::config::{DeliveryConfig, DeliveryError};
use crate::outcome::{Abandoned, Carried, millis};
use crate::resolve::VettingResolver;
use signed::SignedSender;

mod agent;
mod approval_notification;
mod signed;
mod upsert_entity;
mod webhook;

pub use agent::AgentTransport;
pub use approval_notification::ApprovalNotificationTransport;
pub use upsert_entity::UpsertEntityTransport;
pub use webhook::{USER_AGENT_VALUE, WEBHOOK_ID_HEADER, WebhookTransport};

/// Time kept free at the end of a lease for the store writes after an attempt.
pub const LEASE_GUARD: Duration = Duration::from_secs(2);

/// One claimed delivery, handed to its transport.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The delivery as claimed; its `id` stays the same on every attempt.
    pub delivery: &'a Delivery,
    /// Its run's evaluated invocation, with the parts that read `.secrets` rendered
    /// just now; what comes back is masked with it (by the worker).
    pub invocation: &'a Sendable<'a>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When the worker's lease on the delivery ends.
    pub lease_until: Timestamp,
}

impl Job<'_> {
    /// Whether an attempt starting at `now` and lasting at most `longest` ends with
    /// [`LEASE_GUARD`] to spare before the lease does. When it would not, a second
    /// worker could take the delivery over mid-attempt and send it too: hand it back
    /// ([`Carried::Later`]) instead.
    pub fn fits_in_lease(&self, now: Timestamp, longest: Duration) -> bool {
        now.plus_millis(millis(longest + LEASE_GUARD)) <= self.lease_until
    }
}

/// A way of carrying deliveries to their backends.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Whether the worker carries this transport's deliveries. `false`: they wait in
    /// the outbox for a claim (a runner's), and the worker gives back any it is handed
    /// without touching it, its run or its invocation; [`Self::carry`] is not called.
    fn pushes(&self) -> bool {
        true
    }

    /// Makes at most one attempt at `job`. Anything the transport itself needs from
    /// the store that fails is [`Abandoned`]: the delivery is left to its lease.
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned>;
}

/// The transports of a worker, by delivery mode.
#[derive(Clone, Default)]
pub struct Transports {
    by_mode: HashMap<DeliveryMode, Arc<dyn Transport>>,
}

impl Transports {
    /// portd's transports: the one place each is registered.
    pub fn standard(
        services: &Services,
        config: &DeliveryConfig,
        resolver: VettingResolver,
    ) -> Result<Self, DeliveryError> {
        // One client (and connection pool) for every transport that posts.
        let sender = SignedSender::new(services.clone(), config.timeout, resolver)
            .map_err(DeliveryError::HttpClient)?;
        Ok(Self::default()
            .with(
                DeliveryMode::Webhook,
                WebhookTransport::with_sender(sender.clone()),
            )
            .with(DeliveryMode::Agent, AgentTransport)
            .with(
                DeliveryMode::UpsertEntity,
                UpsertEntityTransport::new(services.clone()),
            )
            .with(
                DeliveryMode::ApprovalNotification,
                ApprovalNotificationTransport::with_sender(sender),
            ))
    }

    /// These transports with `transport` carrying `mode`'s deliveries (in place of
    /// whichever did).
    #[must_use]
    pub fn with(self, mode: DeliveryMode, transport: impl Transport + 'static) -> Self {
        self.with_shared(mode, Arc::new(transport))
    }

    /// Like [`Self::with`], for a transport shared with others.
    #[must_use]
    pub fn with_shared(mut self, mode: DeliveryMode, transport: Arc<dyn Transport>) -> Self {
        self.by_mode.insert(mode, transport);
        self
    }

    /// The transport of `mode`'s deliveries, if one is registered.
    pub fn get(&self, mode: DeliveryMode) -> Option<&dyn Transport> {
        self.by_mode.get(&mode).map(|t| &**t)
    }
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut modes: Vec<&str> = self.by_mode.keys().map(|m| m.as_str()).collect();
        modes.sort_unstable();
        f.debug_struct("Transports").field("modes", &modes).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Named(&'static str, Arc<AtomicUsize>);

    #[async_trait]
    impl Transport for Named {
        async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(Carried::Unsendable(format!("{} {}", self.0, job.attempt)))
        }
    }

    #[test]
    fn the_last_registration_of_a_mode_wins_and_modes_stay_apart() {
        let calls = Arc::new(AtomicUsize::new(0));
        let transports = Transports::default()
            .with(DeliveryMode::Webhook, Named("first", calls.clone()))
            .with(DeliveryMode::Webhook, Named("second", calls.clone()));
        assert!(transports.get(DeliveryMode::Webhook).is_some());
        assert!(transports.get(DeliveryMode::Agent).is_none());
        assert_eq!(
            format!("{transports:?}"),
            r#"Transports { modes: ["WEBHOOK"] }"#
        );
        let shared: Arc<dyn Transport> = Arc::new(Named("shared", calls));
        let both = transports
            .with_shared(DeliveryMode::Webhook, shared.clone())
            .with_shared(DeliveryMode::Agent, shared);
        assert!(both.get(DeliveryMode::Agent).is_some_and(|t| t.pushes()));
    }

    const SUFFIX: &str = "0123456789abcdef";

    #[test]
    fn the_lease_guard_is_kept() {
        let at = Timestamp::from_unix_millis(1_000_000);
        let delivery = Delivery {
            id: port_core::DeliveryId::from_suffix(SUFFIX).unwrap(),
            org_id: port_core::OrgId::from_suffix(SUFFIX).unwrap(),
            run_id: port_core::RunId::from_suffix(SUFFIX).unwrap(),
            mode: DeliveryMode::Webhook,
            request: serde_json::Value::Null,
            synchronized: false,
            installation_id: None,
            state: port_core::ports::DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: at,
            lease_owner: None,
            lease_until: None,
            created_at: at,
            updated_at: at,
        };
        let invocation = Sendable {
            request: std::borrow::Cow::Owned(serde_json::Value::Null),
            masker: port_core::secret::Masker::default(),
        };
        let job = Job {
            delivery: &delivery,
            invocation: &invocation,
            attempt: 1,
            lease_until: at.plus_millis(10_000),
        };
        let timeout = Duration::from_secs(8);
        assert!(job.fits_in_lease(at, timeout));
        assert!(!job.fits_in_lease(at.plus_millis(1), timeout));
    }
}
