//! Replicas on one PostgreSQL database wake each other: this server's notices go to the
//! others through a [`ReplicaBus`] (`LISTEN`/`NOTIFY`), and theirs reach this server's
//! hub as if made here, except that the hub only learns *that* a run changed, so its
//! followers re-read it from the store ([`Hub::changed_elsewhere`]). Without the bus,
//! another replica's change is seen at the next safety poll: about a second for
//! deliveries, 200 ms for automations, two seconds for log streams.

use std::sync::Arc;

use port_delivery::Hub;
use port_store::{BackendKind, RemoteChanges, ReplicaBus, ReplicaNotice};

use crate::config::Config;

/// Hands the other replicas' notices to the hub.
struct ToHub(Arc<Hub>);

impl RemoteChanges for ToHub {
    fn changed(&self, notice: ReplicaNotice) {
        match notice {
            ReplicaNotice::DeliveryReady => self.0.wake_delivery_worker(),
            ReplicaNotice::RunChanged { org, run } => self.0.changed_elsewhere(&org, &run, true),
            ReplicaNotice::RunLogged { org, run } => self.0.changed_elsewhere(&org, &run, false),
        }
    }

    fn missed(&self) {
        self.0.catch_up();
    }
}

/// The bus of a server on PostgreSQL with replica notices on, else `None`. A bus that
/// cannot start is logged and done without: replicas still see each other's changes
/// at their polls.
pub async fn start_bus(
    config: &Config,
    backend: BackendKind,
    hub: &Arc<Hub>,
) -> Option<Arc<ReplicaBus>> {
    if backend != BackendKind::Postgres {
        return None;
    }
    if !config.replica_notices {
        tracing::info!(
            "replica notices are off (PORTD_REPLICA_NOTICES=false): other replicas' changes \
             are seen at the next poll"
        );
        return None;
    }
    match ReplicaBus::start(&config.database_url(), Arc::new(ToHub(hub.clone()))).await {
        Ok(bus) => Some(bus),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "replicas cannot wake each other; other replicas' changes are seen at the next poll"
            );
            None
        }
    }
}
