//! `port-server`: portd, the HTTP server that speaks Port's self-service actions and
//! action runs API (port-api.md), over `port-core`'s services and `port-store`'s
//! databases.
//!
//! - [`app`] / [`app_with`] build the router from an [`AppState`]; every route lives in
//!   one table ([`routes::ENDPOINTS`]) that also yields the OpenAPI document.
//! - [`start`] / [`serve`] run a real server from a [`Config`], with the delivery
//!   worker and the reaper of `port-delivery` ([`delivery`]); [`Extensions`] let other
//!   crates add routes, background tasks and a notifier.
//! - [`ui`] serves the web UI at `/` (runs, run pages, action forms).
//! - With the `testing` feature, [`testing::TestServer`] runs one on a free port.

pub mod accounts;
pub mod adapters;
pub mod app;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod connections;
pub mod data_dir;
pub mod database;
pub mod delivery;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod password;
pub mod replicas;
pub mod routes;
pub mod search_gate;
pub mod secret_key;
pub mod serve_error;
pub mod server;
pub mod session;
pub mod state;
pub mod throttle;
pub mod ui;

#[cfg(feature = "testing")]
pub mod testing;

pub use adapters::{DestinationMode, OsEntropy, PublicDestinations, SystemClock};
pub use app::{app, app_with};
pub use config::{Cli, Config};
pub use error::{ApiError, ApiResult};
pub use extract::{ApiJson, ApiPath, Authenticated, QueryParams};
pub use routes::{ENDPOINTS, Endpoint, HttpMethod};
pub use server::{
    BackgroundTask, Extensions, RunningServer, ServeError, Shutdown, TEMPLATE_WORKER,
    create_credentials, serve, serve_with, start, start_with,
};
pub use state::{AppState, AppStateBuilder, HealthCheck};
