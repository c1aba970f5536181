//! Delivery inside portd: the outbox worker and the reaper of `port-delivery`, run as
//! background tasks of the server and woken in process through the state's hub.
//!
//! **Crash safety.** A run's delivery is written to the outbox in the transaction
//! that moves the run to `IN_PROGRESS`, so an acknowledged run never loses it. The
//! worker claims deliveries under a lease (the attempt timeout plus a margin: 40–60 s
//! by default). After a `kill -9`, the leases the dead process held would keep its
//! deliveries waiting that long; instead the worker's lease owner name is stable per
//! data directory (`<data-dir>/worker-id`, created on first start), and at startup,
//! before the worker runs, portd releases every lease held under that name
//! ([`port_core::ports::DeliveryStore::release_leases`]). Deliveries pending at the
//! crash are then claimed on the worker's first pass, right after the restart;
//! deliveries backing off after a failed attempt keep their schedule. On PostgreSQL
//! each replica needs its own data directory (or its own `PORTD_DELIVERY_WORKER_ID`):
//! two live workers must never share a name. A replica that does not come back leaves
//! its leases to expire (`PORTD_DELIVERY_LEASE_SECS`), after which any other replica
//! takes them over (the worker's safety poll finds them).

use std::path::Path;

use port_delivery::{
    AUTOMATIONS_POLL, DeliveryConfig, DeliveryWorker, ENV_WORKER_ID, spawn_automations,
    spawn_reaper,
};
use tokio::task::JoinHandle;

use crate::bootstrap::random_alphanumeric;
use crate::config::{Config, WORKER_ID_FILE};
use crate::serve_error::ServeError;
use crate::state::AppState;

/// The longest worker id read back from `<data-dir>/worker-id`.
const MAX_WORKER_ID_LEN: usize = 128;

/// The delivery settings of a server: `config.delivery` as given, else the
/// environment's with the worker id from the data directory (unless
/// `PORTD_DELIVERY_WORKER_ID` names one).
pub fn delivery_config(config: &Config) -> Result<DeliveryConfig, ServeError> {
    if let Some(given) = &config.delivery {
        given
            .validate()
            .map_err(|e| ServeError::Config(format!("delivery: {e}")))?;
        return Ok(given.clone());
    }
    let mut delivery = DeliveryConfig::from_env().map_err(|e| ServeError::Config(e.to_string()))?;
    let named = std::env::var(ENV_WORKER_ID).is_ok_and(|v| !v.trim().is_empty());
    if !named {
        match stable_worker_id(&config.data_dir) {
            Ok(id) => delivery.worker_id = id,
            Err(e) => tracing::warn!(
                error = %e,
                dir = %config.data_dir.display(),
                "cannot keep the delivery worker id in the data directory; after a crash, \
                 deliveries in flight wait for their leases to expire"
            ),
        }
    }
    Ok(delivery)
}

fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_WORKER_ID_LEN && !id.chars().any(char::is_control)
}

/// Reads `<dir>/worker-id`, creating it (and `dir`) with a new random id when it is
/// missing or unusable. The file is written to a temporary name and renamed, so a crash
/// never leaves half an id.
pub fn stable_worker_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(WORKER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if usable(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => tracing::warn!(file = %path.display(), "replacing an unusable worker id"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let id = format!("portd-{}", random_alphanumeric(16));
    crate::data_dir::write_private_file(dir, WORKER_ID_FILE, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// Takes back the leases a crashed predecessor held under this worker's name, then
/// spawns the worker, the reaper and the automations worker; all stop when
/// `state.stopping()` is cancelled.
pub async fn start_delivery(
    state: &AppState,
    delivery: DeliveryConfig,
) -> Result<Vec<JoinHandle<()>>, ServeError> {
    let released = state
        .store()
        .release_leases(&delivery.worker_id, state.clock().now())
        .await?;
    if released > 0 {
        tracing::info!(
            worker = %delivery.worker_id,
            deliveries = released,
            "took back deliveries left in flight by the previous run"
        );
    }
    let services = state.services().clone();
    let reaper = spawn_reaper(services.clone(), &delivery, state.stopping().clone());
    let automations = spawn_automations(
        services.clone(),
        delivery.worker_id.clone(),
        AUTOMATIONS_POLL,
        state.hub().clone(),
        state.stopping().clone(),
    );
    let worker = DeliveryWorker::spawn(
        services,
        state.hub().clone(),
        delivery,
        state.stopping().clone(),
    )
    .map_err(|e| ServeError::Config(format!("delivery: {e}")))?;
    Ok(vec![worker, reaper, automations])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_id_is_stable_per_directory() {
        let dir = tempfile_dir();
        let first = stable_worker_id(dir.path()).unwrap();
        assert!(first.starts_with("portd-"), "{first}");
        assert_eq!(stable_worker_id(dir.path()).unwrap(), first);
        let other = tempfile_dir();
        assert_ne!(stable_worker_id(other.path()).unwrap(), first);
        std::fs::write(dir.path().join(WORKER_ID_FILE), "\n").unwrap();
        let replaced = stable_worker_id(dir.path()).unwrap();
        assert!(usable(&replaced) && replaced != first);
    }

    #[test]
    fn a_given_delivery_config_is_used_as_is() {
        let given = DeliveryConfig {
            worker_id: "node-a".into(),
            ..DeliveryConfig::default()
        };
        let config = Config {
            delivery: Some(given.clone()),
            ..Config::default()
        };
        assert_eq!(delivery_config(&config).unwrap(), given);
        let broken = Config {
            delivery: Some(DeliveryConfig {
                retry_schedule: Vec::new(),
                ..DeliveryConfig::default()
            }),
            ..Config::default()
        };
        assert!(matches!(
            delivery_config(&broken),
            Err(ServeError::Config(_))
        ));
    }

    fn tempfile_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}
