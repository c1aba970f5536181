//! Agent pull (`DeliveryMode::Agent`): the run waits in the outbox, a claim queue, for
//! a runner to take it: Port's agent (`agent: true` webhooks), Ocean (its
//! installation's `INTEGRATION_ACTION` runs) and portd's own pull-mode runners. The
//! queue's other side is [`port_core::service::pull`]: `claim-pending` leases
//! deliveries (`DeliveryStore::claim_agent_deliveries`, by installation and invocation
//! type), `ack` finishes them, a claim not acknowledged in time is handed out again,
//! and a synchronized run's answer is reported back. The delivery worker never pushes
//! these; this transport is how it knows.

use async_trait::async_trait;

use super::{Job, Transport};
use crate::outcome::{Abandoned, Carried};

/// Declines to push: agent deliveries are claimed by runners, not sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentTransport;

#[async_trait]
impl Transport for AgentTransport {
    fn pushes(&self) -> bool {
        false
    }

    /// Not called by the worker (see [`Transport::pushes`]); should anything else hand
    /// it a delivery, the delivery goes back to the outbox as it was, for a runner.
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
        Ok(Carried::Later(job.delivery.next_attempt_at))
    }
}
