//! Running portd: open the store, bootstrap credentials, bind, start the delivery
//! worker and the reaper (and, on PostgreSQL, the replica bus: see
//! [`crate::replicas`]), serve until a shutdown signal, then drain requests and
//! background tasks.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::ffi::OsString;

use port_core::ports::{InProcessTemplates, Notifier, Store, TemplateEngine};
use port_delivery::Hub;
use port_sandbox::{SandboxConfig, TemplateSandbox};
use port_store::{ReplicaBus, StoreAdmin};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapters::{DestinationMode, PublicDestinations};
use crate::app::app_with;
use crate::bootstrap::{self, Bootstrapped, CredentialsFile};
use crate::config::{Config, Templates};
use crate::connections::{self, ConnectionPlan, Reserve};
use crate::delivery::{delivery_config, start_delivery};
use crate::routes::Endpoint;
use crate::secret_key::{self, KeySource};
use crate::state::{AppState, HealthCheck};

// Defined apart so that what the server runs can return it without importing the server.
pub use crate::database::PG_ACQUIRE_TIMEOUT;
use crate::database::{open_database, store_options};
pub use crate::serve_error::{ServeError, Shutdown};

/// A task started with the server and awaited when it stops (e.g. the delivery worker).
pub type BackgroundTask = Box<dyn FnOnce(AppState, Shutdown) -> BoxFuture<'static, ()> + Send>;

/// What other crates add to a server: routes, background tasks and another listener
/// for the services' notices (the state's hub always hears them too).
#[derive(Default)]
pub struct Extensions {
    pub endpoints: Vec<Endpoint>,
    pub tasks: Vec<BackgroundTask>,
    pub notifier: Option<Arc<dyn Notifier>>,
}

struct StoreHealth(Arc<dyn StoreAdmin>);

#[async_trait]
impl HealthCheck for StoreHealth {
    async fn ping(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Opens the configured database, after making the data directory private (see
/// [`crate::data_dir`]; it holds the credentials file on PostgreSQL too), with the
/// server key sealing secrets: anything not sealed with it yet is re-sealed, and a
/// rotation interrupted earlier is finished (see [`crate::secret_key`]).
pub async fn open_store(config: &Config) -> Result<Arc<dyn StoreAdmin>, ServeError> {
    crate::data_dir::prepare_data_dir(&config.data_dir)?;
    let keys = secret_key::load(config)?;
    let source = match keys.source() {
        KeySource::Environment => secret_key::ENV_SECRET_KEY.to_owned(),
        KeySource::File(path) => path.display().to_string(),
    };
    tracing::info!(key_id = keys.current_id(), %source, "secrets are sealed with the server key");
    if config.database_url.is_some() && matches!(keys.source(), KeySource::File(_)) {
        // Each replica has its own data directory, so its own key file.
        tracing::info!(
            "replicas sharing this PostgreSQL database need the same key: set \
             PORTD_SECRET_KEY on each"
        );
    }
    let store = open_database(config, keys.keyring().clone()).await?;
    if let Err(e) = secret_key::seal_store(&store, &keys).await {
        store.close().await;
        return Err(e);
    }
    Ok(store)
}

/// The template engine `templates` asks for; a sandbox is tried once at start, so a
/// worker that cannot run stops portd with a clear message instead of failing runs.
async fn template_engine(templates: &Templates) -> Result<Arc<dyn TemplateEngine>, ServeError> {
    match templates {
        Templates::InProcess(budget) => Ok(Arc::new(InProcessTemplates {
            budget: budget.clone(),
        })),
        Templates::Sandbox {
            program,
            workers,
            limits,
        } => {
            let program = match program {
                Some(path) => path.clone(),
                None => std::env::current_exe()?,
            };
            let mut config = SandboxConfig::new(program, [OsString::from(TEMPLATE_WORKER)]);
            if *workers > 0 {
                config.workers = *workers;
                config.per_org = (*workers / 2).max(1);
            }
            config.limits = limits.clone();
            let sandbox = TemplateSandbox::new(config);
            sandbox.warm_up().await.map_err(|e| {
                ServeError::Config(format!("the template sandbox does not work: {e}"))
            })?;
            Ok(Arc::new(sandbox))
        }
    }
}

/// How many worker processes [`template_engine`] starts for `templates` (for the
/// descriptors they need; see [`Reserve`]).
fn template_workers(templates: &Templates) -> usize {
    match templates {
        Templates::InProcess(_) => 0,
        Templates::Sandbox { workers, .. } if *workers > 0 => *workers,
        // The sandbox's own default.
        Templates::Sandbox { .. } => SandboxConfig::new(std::path::PathBuf::new(), []).workers,
    }
}

/// The argument that makes `portd` a template worker (see `port_sandbox::worker`).
pub const TEMPLATE_WORKER: &str = "template-worker";

/// The URL clients should use, from the bound address (`0.0.0.0` becomes loopback).
fn api_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    format!("http://{host}:{}/v1", addr.port())
}

/// A server that is accepting connections.
pub struct RunningServer {
    local_addr: SocketAddr,
    state: AppState,
    store: Arc<dyn StoreAdmin>,
    /// On PostgreSQL, how this replica and the others wake each other.
    bus: Option<Arc<ReplicaBus>>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
    bootstrapped: Option<Bootstrapped>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://host:port` (no trailing slash).
    pub fn base_url(&self) -> String {
        api_url(self.local_addr).trim_end_matches("/v1").to_owned()
    }

    /// `http://host:port/v1`.
    pub fn api_url(&self) -> String {
        api_url(self.local_addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn store(&self) -> &Arc<dyn StoreAdmin> {
        &self.store
    }

    /// The replica bus, on PostgreSQL with replica notices on.
    pub fn replica_bus(&self) -> Option<&Arc<ReplicaBus>> {
        self.bus.as_ref()
    }

    /// The credentials this start created, if it bootstrapped an empty database.
    pub fn bootstrap_credentials(&self) -> Option<&CredentialsFile> {
        self.bootstrapped.as_ref().map(|b| &b.credentials)
    }

    /// A handle background work can wait on.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Begins shutting down without waiting (for `Drop` impls).
    pub fn trigger_shutdown(&self) {
        self.state.stopping().cancel();
        let _ = self.stop.send(true);
        if let Some(bus) = &self.bus {
            bus.stop();
        }
    }

    /// Stops accepting connections, ends log streams, lets in-flight requests, webhook
    /// attempts and background tasks finish, and closes the database.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.trigger_shutdown();
        let served = match self.server.take() {
            Some(server) => server.await?,
            None => Ok(()),
        };
        for task in self.tasks.drain(..) {
            task.await?;
        }
        if let Some(bus) = self.bus.take() {
            bus.close().await;
        }
        self.store.close().await;
        served?;
        Ok(())
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// Starts a server with the built-in routes only.
pub async fn start(config: Config) -> Result<RunningServer, ServeError> {
    start_with(config, Extensions::default()).await
}

/// Opens the store, binds the listener, bootstraps credentials on an empty database
/// (printing generated ones once to stdout), and starts serving, the delivery worker,
/// the reaper and the extensions' background tasks. Returns once connections are
/// accepted. See [`crate::delivery`] for how deliveries survive a crash.
pub async fn start_with(
    config: Config,
    extensions: Extensions,
) -> Result<RunningServer, ServeError> {
    bootstrap::check_bootstrap_secret(config.bootstrap_client_secret.as_deref())?;
    let open_files = connections::raise_open_files_limit();
    let store = open_store(&config).await?;
    let delivery = delivery_config(&config)?;
    let reserve = Reserve::new(
        store.backend(),
        &store_options(&config),
        delivery.max_in_flight,
        template_workers(&config.templates),
    );
    let plan = match ConnectionPlan::new(config.connections, open_files, reserve) {
        Ok(plan) => plan,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    if plan.max_connections < config.connections.max_connections {
        tracing::warn!(
            asked = config.connections.max_connections,
            allowed = plan.max_connections,
            open_files = ?plan.open_files,
            reserved = reserve.total(),
            "lowered the connection cap to fit the open-files limit"
        );
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen.clone(),
            source,
        })?;
    let local_addr = listener.local_addr()?;

    let data: Arc<dyn Store> = store.clone();
    let hub =
        Arc::new(Hub::new().with_streams_per_org(
            usize::try_from(config.max_streams_per_org).unwrap_or(usize::MAX),
        ));
    // Listening before anything is served or delivered, so that no change another
    // replica makes from now on goes unheard.
    let bus = crate::replicas::start_bus(&config, store.backend(), &hub).await;
    let mut builder = AppState::builder(data)
        .health(Arc::new(StoreHealth(store.clone())))
        .hub(hub);
    if let Some(bus) = &bus {
        builder = builder.notifier(bus.clone());
    }
    if config.webhook_destinations == DestinationMode::Public {
        builder = builder.destinations(Arc::new(PublicDestinations));
    }
    if let Some(notifier) = extensions.notifier {
        builder = builder.notifier(notifier);
    }
    builder = builder.templates(template_engine(&config.templates).await?);
    builder = builder.web(crate::session::WebSettings::from_env().map_err(ServeError::Config)?);
    let state = builder.build();

    let bootstrapped = bootstrap::bootstrap(
        state.store().as_ref(),
        state.ids(),
        state.clock().as_ref(),
        config.bootstrap_client_id.clone(),
        config.bootstrap_client_secret.clone(),
        &config.credentials_path(),
        &api_url(local_addr),
    )
    .await?;
    if let Some(created) = &bootstrapped {
        announce(created, &config);
    }

    let mut tasks = start_delivery(&state, delivery).await?;
    let (stop, stopped) = watch::channel(false);
    let router = app_with(state.clone(), &extensions.endpoints);
    let server = tokio::spawn(connections::serve(
        listener,
        router,
        plan,
        state.clone(),
        Shutdown(stopped.clone()),
    ));
    tasks.extend(
        extensions
            .tasks
            .into_iter()
            .map(|task| tokio::spawn(task(state.clone(), Shutdown(stopped.clone())))),
    );
    tracing::info!(
        address = %local_addr,
        max_connections = plan.max_connections,
        open_files = ?plan.open_files,
        "portd is listening"
    );
    Ok(RunningServer {
        local_addr,
        state,
        store,
        bus,
        stop,
        server: Some(server),
        tasks,
        bootstrapped,
    })
}

/// Shows bootstrap credentials once: generated secrets go to stdout (never to the
/// logs), given ones are only acknowledged.
fn announce(created: &Bootstrapped, config: &Config) {
    let path = config.credentials_path();
    tracing::info!(
        org_id = %created.credentials.org_id,
        client_id = %created.credentials.client_id,
        file = %path.display(),
        "created the first organization and its credentials"
    );
    if created.generated && config.print_bootstrap_credentials {
        let c = &created.credentials;
        let text = format!(
            "portd: created organization {} with these credentials (shown once; also in {}):\n\
             PORT_CLIENT_ID={}\nPORT_CLIENT_SECRET={}\nPORT_API_URL={}\n",
            c.org_id,
            path.display(),
            c.client_id,
            c.client_secret,
            c.api_url
        );
        // A closed stdout (a supervisor that stopped reading) must not stop the server.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush());
    }
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    wait_for_signals(terminate_signal()).await;
}

/// SIGTERM's handler, installed at once (`None` when it cannot be, or elsewhere).
#[cfg(unix)]
fn terminate_signal() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}

#[cfg(not(unix))]
fn terminate_signal() -> Option<()> {
    None
}

#[cfg(unix)]
async fn wait_for_signals(terminate: Option<tokio::signal::unix::Signal>) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            futures::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match terminate {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_terminate: Option<()>) {
    if tokio::signal::ctrl_c().await.is_err() {
        futures::future::pending::<()>().await;
    }
}

/// Serves until SIGTERM or ctrl-c, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    serve_with(config, Extensions::default()).await
}

pub async fn serve_with(config: Config, extensions: Extensions) -> Result<(), ServeError> {
    // SIGTERM's handler goes in before the first request is answered: a SIGTERM sent as
    // soon as portd answers would otherwise kill it instead of stopping it gracefully.
    let terminate = terminate_signal();
    let server = start_with(config, extensions).await?;
    wait_for_signals(terminate).await;
    tracing::info!("shutting down");
    server.shutdown().await
}

/// `portd credentials create [--org NAME]`: new credentials for a new organization, or
/// for the bootstrap organization named in `<data-dir>/credentials.json`.
pub async fn create_credentials(
    config: &Config,
    org_name: Option<&str>,
) -> Result<CredentialsFile, ServeError> {
    let store = open_store(config).await?;
    let data: Arc<dyn Store> = store.clone();
    let state = AppState::builder(data).build();
    let org_id = match org_name {
        Some(name) => {
            bootstrap::create_organization(
                state.store().as_ref(),
                state.ids(),
                state.clock().as_ref(),
                name,
            )
            .await?
            .id
        }
        None => {
            let path = config.credentials_path();
            let file = bootstrap::read_credentials_file(&path).map_err(|e| {
                ServeError::Config(format!(
                    "no bootstrap organization found ({}: {e}); start portd once, or pass --org NAME",
                    path.display()
                ))
            })?;
            let id = port_core::id::OrgId::parse(&file.org_id)
                .map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))?;
            if state.store().get_organization(&id).await?.is_none() {
                return Err(ServeError::Config(format!(
                    "organization {id} of {} is not in the database; pass --org NAME",
                    path.display()
                )));
            }
            id
        }
    };
    let credential = bootstrap::create_credential(
        state.store().as_ref(),
        state.clock().as_ref(),
        &org_id,
        None,
        None,
    )
    .await?;
    store.close().await;
    Ok(CredentialsFile {
        client_id: credential.client_id,
        client_secret: credential.client_secret.expose().to_owned(),
        org_id: org_id.to_string(),
        api_url: format!("http://{}/v1", config.listen),
    })
}
