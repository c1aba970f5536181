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
            blueprint_deletion_records_entity_events,
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
            organization_secrets,
            organization_secrets_are_isolated,
            organizations_are_isolated,
            concurrent_logs_and_patches,
            concurrent_claimers,
            entity_change_events,
            run_change_events,
            event_leases,
            concurrent_event_claimers,
            entity_timers,
            concurrent_timer_firers,
            timers_fire_fairly_across_organizations,
            event_claims_are_fair_across_organizations,
            users_and_teams,
            users_are_per_organization,
            team_rename_keeps_members,
            deleting_a_user_removes_what_is_theirs,
            sessions_expire,
            action_permissions,
            audit_trail,
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

// ---------------------------------------------------------------------------------------
// Secrets sealed at rest (the durable stores only: the fake keeps values in clear)
// ---------------------------------------------------------------------------------------

mod sealing {
    use std::sync::Arc;

    use anyhow::{Context, Result, ensure};
    use port_core::error::StoreError;
    use port_core::id::OrgId;
    use port_core::ports::{ClientSecret, Credential, OrgSecret, Organization};
    use port_core::secret::{Keyring, SecretName, SecretValue, ServerKey, is_sealed};
    use port_core::time::Timestamp;
    use port_store::{ScratchSchema, StoreAdmin, StoreOptions};
    use sqlx::Connection as _;
    use tempfile::TempDir;

    const CLIENT_SECRET: &str = "client-secret-in-clear-0123456789";
    const TOKEN: &str = "org-secret-in-clear-hunter2";

    fn old_key() -> ServerKey {
        ServerKey::from_bytes([1; 32])
    }

    fn new_key() -> ServerKey {
        ServerKey::from_bytes([2; 32])
    }

    fn org_id(n: u32) -> OrgId {
        OrgId::parse(&format!("org_7SDeR821bunhS8e{n}")).expect("valid org id")
    }

    fn name(text: &str) -> SecretName {
        SecretName::parse(text).expect("valid secret name")
    }

    fn sqlite_url(dir: &TempDir) -> String {
        format!("sqlite://{}", dir.path().join("portd.db").display())
    }

    /// One database, opened as many times (and with as many keys) as a test needs, and
    /// read with plain SQL to see what is really stored.
    enum Place {
        Sqlite(TempDir),
        Postgres(ScratchSchema),
    }

    impl Place {
        async fn sqlite() -> Result<Option<Self>> {
            Ok(Some(Self::Sqlite(tempfile::tempdir()?)))
        }

        async fn postgres() -> Result<Option<Self>> {
            Ok(crate::scratch_schema().await?.map(Self::Postgres))
        }

        fn url(&self) -> String {
            match self {
                Self::Sqlite(dir) => sqlite_url(dir),
                Self::Postgres(schema) => schema.url(),
            }
        }

        async fn open(&self, keyring: Option<Keyring>) -> Result<Arc<dyn StoreAdmin>> {
            let options = StoreOptions {
                keyring,
                ..StoreOptions::default()
            };
            Ok(port_store::open(&self.url(), &options).await?)
        }

        /// The first column of every row `sql` answers, as text.
        async fn texts(&self, sql: &str) -> Result<Vec<String>> {
            Ok(match self {
                Self::Sqlite(dir) => {
                    let mut conn = sqlx::SqliteConnection::connect(&sqlite_url(dir)).await?;
                    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut conn).await?;
                    conn.close().await?;
                    rows.into_iter().map(|(t,)| t).collect()
                }
                Self::Postgres(schema) => {
                    let mut conn = sqlx::PgConnection::connect(&schema.url()).await?;
                    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut conn).await?;
                    conn.close().await?;
                    rows.into_iter().map(|(t,)| t).collect()
                }
            })
        }

        async fn execute(&self, sql: &str) -> Result<()> {
            match self {
                Self::Sqlite(dir) => {
                    let mut conn = sqlx::SqliteConnection::connect(&sqlite_url(dir)).await?;
                    sqlx::query(sql).execute(&mut conn).await?;
                    conn.close().await?;
                }
                Self::Postgres(schema) => {
                    let mut conn = sqlx::PgConnection::connect(&schema.url()).await?;
                    sqlx::query(sql).execute(&mut conn).await?;
                    conn.close().await?;
                }
            }
            Ok(())
        }

        /// Every stored secret: client secrets, then organization secrets' values.
        async fn stored(&self) -> Result<Vec<String>> {
            let mut all = self
                .texts("SELECT client_secret FROM credentials ORDER BY client_id")
                .await?;
            all.extend(
                self.texts("SELECT value FROM org_secrets ORDER BY org_id, name")
                    .await?,
            );
            Ok(all)
        }

        async fn finish(self, test: &str) -> Result<()> {
            if let Self::Postgres(schema) = self {
                schema.drop_now().await?;
                crate::visible(&format!("postgres conformance: {test} ran"));
            }
            Ok(())
        }
    }

    /// Writes organization `n` with one credential and two secrets.
    async fn seed(store: &dyn StoreAdmin, n: u32) -> Result<()> {
        let org = org_id(n);
        store
            .create_organization(&Organization {
                id: org.clone(),
                name: format!("Org {n}"),
                created_at: Timestamp::from_unix_millis(1),
            })
            .await?;
        store
            .add_credential(&Credential {
                org_id: org.clone(),
                client_id: format!("client-{n}"),
                client_secret: ClientSecret::new(format!("{CLIENT_SECRET}-{n}")),
                created_at: Timestamp::from_unix_millis(1),
                user: None,
            })
            .await?;
        for secret_name in ["A", "B"] {
            store
                .create_secret(
                    &OrgSecret {
                        org_id: org.clone(),
                        name: name(secret_name),
                        description: None,
                        created_at: Timestamp::from_unix_millis(1),
                        updated_at: Timestamp::from_unix_millis(1),
                    },
                    &SecretValue::new(format!("{TOKEN}-{n}-{secret_name}"))
                        .map_err(anyhow::Error::msg)?,
                )
                .await?;
        }
        Ok(())
    }

    /// Reads back what [`seed`] wrote for organization `n`, in clear.
    async fn check_seeded(store: &dyn StoreAdmin, n: u32) -> Result<()> {
        let org = org_id(n);
        let client_secret = format!("{CLIENT_SECRET}-{n}");
        let found = store
            .find_credential(&format!("client-{n}"))
            .await?
            .context("credential found")?;
        assert_eq!(found.client_secret.expose(), client_secret);
        let listed = store.credentials(&org).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_secret.expose(), client_secret);
        let values: Vec<(String, String)> = store
            .secret_values(&org)
            .await?
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.expose().to_owned()))
            .collect();
        assert_eq!(
            values,
            ["A", "B"].map(|k| (k.to_owned(), format!("{TOKEN}-{n}-{k}")))
        );
        Ok(())
    }

    /// Every stored value is sealed with `key` and shows nothing of a clear value.
    fn all_sealed_with(stored: &[String], key: &ServerKey) -> Result<()> {
        let prefix = format!("pds1:{}:", key.id());
        for value in stored {
            ensure!(
                value.starts_with(&prefix),
                "not sealed with key {}: {value}",
                key.id()
            );
            ensure!(
                !value.contains(CLIENT_SECRET) && !value.contains(TOKEN),
                "clear text in {value}"
            );
        }
        Ok(())
    }

    /// The error a store gives reading a value it cannot open: clear, and without it.
    fn unopenable<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Result<String> {
        let Err(StoreError::Other(message)) = result else {
            anyhow::bail!("expected a storage error, got {result:?}");
        };
        ensure!(
            message.contains("a sealed secret could not be opened")
                && message.contains("PORTD_SECRET_KEY"),
            "{message}"
        );
        ensure!(
            !message.contains(CLIENT_SECRET) && !message.contains(TOKEN),
            "a value in {message}"
        );
        Ok(message)
    }

    async fn secrets_are_sealed_at_rest(place: &Place) -> Result<()> {
        let store = place.open(Some(Keyring::new(old_key()))).await?;
        seed(&*store, 1).await?;
        let stored = place.stored().await?;
        assert_eq!(stored.len(), 3);
        all_sealed_with(&stored, &old_key())?;
        check_seeded(&*store, 1).await?;
        // Updates are sealed too, each with a nonce of its own.
        let same = SecretValue::new(TOKEN).map_err(anyhow::Error::msg)?;
        for secret_name in ["A", "B"] {
            store
                .update_secret(
                    &org_id(1),
                    &name(secret_name),
                    Some(&same),
                    None,
                    Timestamp::from_unix_millis(2),
                )
                .await?
                .context("updated")?;
        }
        let stored = place.stored().await?;
        all_sealed_with(&stored, &old_key())?;
        assert_ne!(stored[1], stored[2], "one nonce per value");

        // A sealed value is bound to its row: copied to another, it does not open.
        place
            .execute(&format!(
                "UPDATE org_secrets SET value = '{}' WHERE name = 'B'",
                stored[1]
            ))
            .await?;
        let message = unopenable(store.secret_values(&org_id(1)).await)?;
        assert!(message.contains("secret B"), "{message}");
        store.close().await;
        Ok(())
    }

    async fn another_key_fails_clearly(place: &Place) -> Result<()> {
        let store = place.open(Some(Keyring::new(old_key()))).await?;
        seed(&*store, 1).await?;
        store.close().await;
        let before = place.stored().await?;

        let wrong = place.open(Some(Keyring::new(new_key()))).await?;
        let message = unopenable(wrong.find_credential("client-1").await)?;
        assert!(message.contains(old_key().id()), "names the key: {message}");
        unopenable(wrong.credentials(&org_id(1)).await)?;
        let message = unopenable(wrong.secret_values(&org_id(1)).await)?;
        assert!(message.contains(old_key().id()), "names the key: {message}");
        // What needs no value still works.
        assert_eq!(wrong.list_secrets(&org_id(1)).await?.len(), 2);
        // Resealing cannot open them either, and changes nothing.
        unopenable(wrong.reseal_secrets().await)?;
        assert_eq!(place.stored().await?, before);
        wrong.close().await;

        let keyless = place.open(None).await?;
        let message = unopenable(keyless.find_credential("client-1").await)?;
        assert!(message.contains(old_key().id()), "names the key: {message}");
        unopenable(keyless.secret_values(&org_id(1)).await)?;
        keyless.close().await;
        Ok(())
    }

    async fn reseal_moves_every_row_to_the_new_key(place: &Place) -> Result<()> {
        let store = place.open(Some(Keyring::new(old_key()))).await?;
        assert_eq!(store.reseal_secrets().await?, 0, "nothing to do");
        seed(&*store, 1).await?;
        seed(&*store, 2).await?;
        assert_eq!(store.reseal_secrets().await?, 0, "all current already");
        store.close().await;

        let rotating = place
            .open(Some(Keyring::new(new_key()).with_previous(old_key())))
            .await?;
        // Mid-rotation, both keys read.
        check_seeded(&*rotating, 1).await?;
        assert_eq!(rotating.reseal_secrets().await?, 6);
        all_sealed_with(&place.stored().await?, &new_key())?;
        assert_eq!(rotating.reseal_secrets().await?, 0, "nothing left to do");
        rotating.close().await;

        let rotated = place.open(Some(Keyring::new(new_key()))).await?;
        check_seeded(&*rotated, 1).await?;
        check_seeded(&*rotated, 2).await?;
        rotated.close().await;
        Ok(())
    }

    async fn reseal_seals_clear_legacy_rows(place: &Place) -> Result<()> {
        // Written before sealing existed: in clear, by a store without a key...
        let keyless = place.open(None).await?;
        seed(&*keyless, 1).await?;
        assert_eq!(keyless.reseal_secrets().await?, 0, "no key, nothing sealed");
        check_seeded(&*keyless, 1).await?;
        keyless.close().await;
        // ...or by plain SQL.
        place
            .execute(&format!(
                "INSERT INTO org_secrets (org_id, name, description, value, created_at, updated_at) \
                 VALUES ('{}', 'C', NULL, '{TOKEN}-1-C', 1, 1)",
                org_id(1)
            ))
            .await?;
        let stored = place.stored().await?;
        assert_eq!(stored.len(), 4);
        assert!(stored.iter().all(|v| !is_sealed(v)), "{stored:?}");

        let store = place.open(Some(Keyring::new(old_key()))).await?;
        // Clear values read as they are until resealed.
        let found = store
            .find_credential("client-1")
            .await?
            .context("credential found")?;
        assert_eq!(found.client_secret.expose(), format!("{CLIENT_SECRET}-1"));
        let legacy: Vec<String> = store
            .secret_values(&org_id(1))
            .await?
            .into_iter()
            .map(|(_, v)| v.expose().to_owned())
            .collect();
        assert_eq!(legacy, ["A", "B", "C"].map(|k| format!("{TOKEN}-1-{k}")));
        // New rows are sealed at once: only the clear ones are resealed.
        seed(&*store, 2).await?;
        assert_eq!(store.reseal_secrets().await?, 4);
        let stored = place.stored().await?;
        assert_eq!(stored.len(), 7);
        all_sealed_with(&stored, &old_key())?;
        assert_eq!(store.reseal_secrets().await?, 0);
        store.close().await;

        let reopened = place.open(Some(Keyring::new(old_key()))).await?;
        check_seeded(&*reopened, 2).await?;
        let third = reopened
            .secret_values(&org_id(1))
            .await?
            .into_iter()
            .find(|(k, _)| k.as_str() == "C")
            .context("legacy row kept")?;
        assert_eq!(third.1.expose(), format!("{TOKEN}-1-C"));
        reopened.close().await;
        Ok(())
    }

    macro_rules! sealing_tests {
        ($($name:ident),* $(,)?) => {
            mod sqlite {$(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let Some(place) = super::Place::sqlite().await? else { return Ok(()) };
                    let outcome = super::$name(&place).await;
                    place.finish(stringify!($name)).await?;
                    outcome
                }
            )*}
            mod postgres {$(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let Some(place) = super::Place::postgres().await? else { return Ok(()) };
                    let outcome = super::$name(&place).await;
                    place.finish(stringify!($name)).await?;
                    outcome
                }
            )*}
        };
    }

    sealing_tests!(
        secrets_are_sealed_at_rest,
        another_key_fails_clearly,
        reseal_moves_every_row_to_the_new_key,
        reseal_seals_clear_legacy_rows,
    );
}
