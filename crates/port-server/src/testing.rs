//! [`TestServer`]: a real portd on a free loopback port with a temporary SQLite
//! database and known bootstrap credentials, for this crate's and other crates' tests
//! (feature `testing`). It runs the delivery worker and the reaper like `portd`: runs
//! executed against it are really delivered (settings from the `PORTD_DELIVERY_*`
//! variables unless given with [`TestServer::start_with_delivery`]).

use port_delivery::DeliveryConfig;

use crate::bootstrap::random_alphanumeric;
use crate::config::Config;
use crate::server::{Extensions, RunningServer, ServeError, start_with};
use crate::state::AppState;

/// A running server that stops (and deletes its data) when dropped.
pub struct TestServer {
    server: Option<RunningServer>,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// `http://127.0.0.1:PORT/v1`.
    pub api_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub org_id: String,
    // Last, so it is removed after the server stopped using it.
    data_dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    pub async fn start() -> Result<Self, ServeError> {
        Self::start_with(Extensions::default()).await
    }

    pub async fn start_with(extensions: Extensions) -> Result<Self, ServeError> {
        Self::start_configured(extensions, |_| {}).await
    }

    /// A server whose delivery worker and reaper use `delivery` (e.g. a short retry
    /// schedule) instead of the environment's settings.
    pub async fn start_with_delivery(delivery: DeliveryConfig) -> Result<Self, ServeError> {
        Self::start_configured(Extensions::default(), |config| {
            config.delivery = Some(delivery);
        })
        .await
    }

    /// A server whose configuration `configure` adjusts first (the listen address, data
    /// directory and bootstrap credentials are set for it; anything else may change).
    pub async fn start_configured(
        extensions: Extensions,
        configure: impl FnOnce(&mut Config),
    ) -> Result<Self, ServeError> {
        let data_dir = tempfile::tempdir()?;
        let client_id = random_alphanumeric(32);
        let client_secret = random_alphanumeric(64);
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.path().to_path_buf(),
            bootstrap_client_id: Some(client_id.clone()),
            bootstrap_client_secret: Some(client_secret.clone()),
            print_bootstrap_credentials: false,
            ..Config::default()
        };
        configure(&mut config);
        let server = start_with(config, extensions).await?;
        let org_id = server
            .bootstrap_credentials()
            .map(|c| c.org_id.clone())
            .unwrap_or_default();
        Ok(Self {
            base_url: server.base_url(),
            api_url: server.api_url(),
            server: Some(server),
            client_id,
            client_secret,
            org_id,
            data_dir,
        })
    }

    pub fn state(&self) -> &AppState {
        self.server
            .as_ref()
            .expect("the server runs until dropped")
            .state()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// A valid access token for the bootstrap credentials, minted directly.
    pub async fn token(&self) -> String {
        let credential = self
            .state()
            .store()
            .find_credential(&self.client_id)
            .await
            .ok()
            .flatten()
            .expect("the bootstrap credential exists");
        self.state().authenticator().token_for(&credential).token
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        match self.server.take() {
            Some(server) => server.shutdown().await,
            None => Ok(()),
        }
    }
}
