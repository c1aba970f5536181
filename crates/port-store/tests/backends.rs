//! Runs the conformance suite against every backend: SQLite in a temporary directory,
//! PostgreSQL (when `PORT_TEST_DATABASE_URL` is set; each test in its own schema), and
//! port-core's in-memory `MemoryStore`. Also checks what only the durable stores have.

mod conformance;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use port_core::ports::Store;
use port_core::testing::MemoryStore;
use port_store::{BackendKind, ScratchSchema, StoreAdmin, StoreOptions, Synchronous};
use tempfile::TempDir;

const DATABASE_URL_VAR: &str = "PORT_TEST_DATABASE_URL";

/// Writes straight to stderr: libtest captures `eprintln!` of passing tests, and these
/// lines are meant for CI logs.
fn visible(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A store under test and whatever must outlive it.
pub struct Backend {
    store: Arc<dyn Store>,
    admin: Option<Arc<dyn StoreAdmin>>,
    _dir: Option<TempDir>,
    schema: Option<ScratchSchema>,
}

impl Backend {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Closes the store and drops its PostgreSQL schema, whatever the test's result.
    async fn finish(mut self, test: &str) -> Result<()> {
        if let Some(admin) = &self.admin {
            admin.close().await;
        }
        if let Some(schema) = self.schema.take() {
            schema.drop_now().await?;
            visible(&format!("postgres conformance: {test} ran"));
        }
        Ok(())
    }
}

pub async fn memory(_test: &str) -> Result<Option<Backend>> {
    Ok(Some(Backend {
        store: Arc::new(MemoryStore::new()),
        admin: None,
        _dir: None,
        schema: None,
    }))
}

pub async fn sqlite(_test: &str) -> Result<Option<Backend>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("portd.db").display());
    let admin = port_store::open(&url, &StoreOptions::default()).await?;
    assert_eq!(admin.backend(), BackendKind::Sqlite);
    Ok(Some(Backend {
        store: admin.clone(),
        admin: Some(admin),
        _dir: Some(dir),
        schema: None,
    }))
}

pub async fn postgres(_test: &str) -> Result<Option<Backend>> {
    let Some(schema) = scratch_schema().await? else {
        return Ok(None);
    };
    let admin = port_store::open(&schema.url(), &StoreOptions::default()).await?;
    assert_eq!(admin.backend(), BackendKind::Postgres);
    Ok(Some(Backend {
        store: admin.clone(),
        admin: Some(admin),
        _dir: None,
        schema: Some(schema),
    }))
}

/// A throw-away PostgreSQL schema for one test; `None` (after saying so once) when no
/// test database is configured.
async fn scratch_schema() -> Result<Option<ScratchSchema>> {
    static SAID: AtomicBool = AtomicBool::new(false);
    let Ok(base_url) = std::env::var(DATABASE_URL_VAR) else {
        if !SAID.swap(true, Ordering::SeqCst) {
            visible(&format!("skipped: {DATABASE_URL_VAR} not set"));
        }
        return Ok(None);
    };
    let schema = ScratchSchema::create(&base_url, "t")
        .await
        .context("create a schema in the test database")?;
    Ok(Some(schema))
}

/// One `#[tokio::test]` per conformance function, for the backend `setup` makes.
macro_rules! conformance_tests {
    ($setup:path) => {
        conformance_tests!(@each $setup;
            org_and_credentials,
            blueprint_crud,
            entities_and_affected_records,
            entity_scans,
            entity_search_semantics,
            entity_search_budget,
            actions_round_trip,
            runs_create_get_and_filter,
            runs_keyset_pagination,
            save_transition_refuses_lost_updates,
            logs_are_sequenced,
            idempotency_keys,
            idempotency_key_race,
            stale_in_progress_runs,
            webhook_delivery_lifecycle,
            leases_are_exclusive_and_expire,
            restarted_worker_releases_its_leases,
            claims_take_turns_across_organizations,
            claims_respect_organization_and_destination_room,
            agent_deliveries,
            agent_claims_are_routed,
            organization_settings_and_integrations,
            organizations_are_isolated,
            concurrent_logs_and_patches,
            concurrent_claimers,
        );
    };
    (@each $setup:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> anyhow::Result<()> {
            let Some(backend) = $setup(stringify!($name)).await? else {
                return Ok(());
            };
            let outcome = crate::conformance::$name(backend.store()).await;
            backend.finish(stringify!($name)).await?;
            outcome
        }
    )*};
}

mod sqlite {
    conformance_tests!(crate::sqlite);
}

mod postgres {
    conformance_tests!(crate::postgres);
}

mod memory {
    conformance_tests!(crate::memory);
}

// ---------------------------------------------------------------------------------------
// What only the durable stores have
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_is_durable_and_checkable() -> Result<()> {
    use port_core::ports::Organization;
    use port_core::time::Timestamp;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("portd.db");
    let org = Organization {
        id: port_core::id::OrgId::parse("org_7SDeR821bunhS8es")?,
        name: "Acme".into(),
        created_at: Timestamp::from_unix_millis(1),
    };
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let options = StoreOptions {
            sqlite_synchronous: synchronous,
            ..StoreOptions::default()
        };
        // A plain path selects SQLite too; reopening runs the (already applied) migrations again.
        let store = port_store::open(path.to_str().context("utf-8 path")?, &options).await?;
        store.ping().await?;
        assert!(store.integrity_check().await?);
        if synchronous == Synchronous::Full {
            store.create_organization(&org).await?;
            assert!(dir.path().join("portd.db-wal").exists(), "WAL mode");
        }
        assert_eq!(
            store.get_organization(&org.id).await?,
            Some(org.clone()),
            "survives reopening"
        );
        store.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_refuses_a_missing_directory() {
    let err = match port_store::open(
        "sqlite:///nonexistent-dir/portd.db",
        &StoreOptions::default(),
    )
    .await
    {
        Ok(_) => panic!("opened a database in a missing directory"),
        Err(e) => e,
    };
    assert!(
        matches!(err, port_store::OpenError::Connect { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_admin() -> Result<()> {
    let Some(schema) = scratch_schema().await? else {
        return Ok(());
    };
    let store = port_store::open(&schema.url(), &StoreOptions::default()).await?;
    store.ping().await?;
    assert!(store.integrity_check().await?);
    // Opening again finds the migrations applied.
    let again = port_store::open(&schema.url(), &StoreOptions::default()).await?;
    again.ping().await?;
    again.close().await;
    store.close().await;
    schema.drop_now().await?;
    visible("postgres conformance: postgres_admin ran");
    Ok(())
}

#[tokio::test]
async fn postgres_connection_errors_hide_the_password() {
    let url = "postgres://portd:hunter2@127.0.0.1:1/portd?connect_timeout=1";
    let options = StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..StoreOptions::default()
    };
    match port_store::open(url, &options).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(e) => {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}

/// PostgreSQL cannot store NUL in text: that is the request's fault (an input error),
/// never "unavailable" (a 503 with `Retry-After` that clients retry forever).
#[tokio::test]
async fn postgres_refuses_nul_as_invalid_input() -> Result<()> {
    let Some(schema) = scratch_schema().await? else {
        return Ok(());
    };
    let store = port_store::open(&schema.url(), &StoreOptions::default()).await?;
    let err = store
        .find_credential("client\u{0}id")
        .await
        .expect_err("PostgreSQL text cannot hold NUL");
    assert!(
        matches!(err, port_core::error::StoreError::InvalidInput(_)),
        "{err:?}"
    );
    assert_eq!(port_core::PortError::from(err).status(), 422);
    // The pool is still usable afterwards.
    store.ping().await?;
    store.close().await;
    schema.drop_now().await?;
    visible("postgres conformance: postgres_refuses_nul_as_invalid_input ran");
    Ok(())
}
