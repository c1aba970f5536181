//! The state every handler shares: the domain services over the store, the token
//! authenticator, the web sign-in's settings, throttle and single sign-on client,
//! metrics, the readiness check, the notification hub and the server's stop signal.
//! Cheap to clone.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::extract::FromRef;
use port_core::ports::Notice;
use port_core::ports::{
    Clock, Entropy, IdGenerator, InProcessTemplates, Notifier, Store, TemplateEngine,
};
use port_core::service::{AllowAllDestinations, DestinationPolicy, Services};
use port_delivery::Hub;
use tokio_util::sync::CancellationToken;

use crate::adapters::{OsEntropy, SystemClock};
use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::oidc::Oidc;
use crate::search_gate::SearchGate;
use crate::session::WebSettings;
use crate::throttle::LoginThrottle;

/// Whether the server's dependencies (the database) answer: `GET /readyz`.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// `Err` carries a reason for the logs; it is not shown to callers.
    async fn ping(&self) -> Result<(), String>;
}

/// A check that always passes, for stores that live in memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysReady;

#[async_trait]
impl HealthCheck for AlwaysReady {
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

struct Inner {
    services: Services,
    /// The composition root's own handle: start-up (bootstrap, lease release, key
    /// rotation) and tests. Requests reach the data only through `services`.
    store: Arc<dyn Store>,
    authenticator: Authenticator,
    metrics: Arc<Metrics>,
    health: Arc<dyn HealthCheck>,
    hub: Arc<Hub>,
    stopping: CancellationToken,
    searches: SearchGate,
    /// The web sign-in's settings; replaceable at run time (tests learn their server's
    /// address only once it listens).
    web: RwLock<Arc<WebSettings>>,
    /// Failed password sign-ins, by e-mail address and source (like the token route's).
    sign_ins: LoginThrottle,
    oidc: Oidc,
}

/// The services' notifier: the hub, plus whatever other listeners were given (the
/// replica bus on PostgreSQL, extensions).
struct Fanout {
    hub: Arc<Hub>,
    also: Vec<Arc<dyn Notifier>>,
}

impl Notifier for Fanout {
    fn notify(&self, notice: Notice) {
        for also in &self.also {
            also.notify(notice.clone());
        }
        self.hub.notify(notice);
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl AppState {
    /// Starts building a state over `store`, with the system clock, OS entropy, a new
    /// hub as the only notifier, every webhook destination allowed, templates rendered
    /// in process and no readiness check.
    pub fn builder(store: Arc<dyn Store>) -> AppStateBuilder {
        AppStateBuilder {
            store,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            notifiers: Vec::new(),
            hub: None,
            destinations: Arc::new(AllowAllDestinations),
            templates: Arc::new(InProcessTemplates::default()),
            health: Arc::new(AlwaysReady),
            web: WebSettings::default(),
        }
    }

    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// The store, for start-up and tests; the routes use [`Self::services`].
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.services.clock
    }

    pub fn ids(&self) -> &IdGenerator {
        &self.inner.services.ids
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    pub fn health(&self) -> &Arc<dyn HealthCheck> {
        &self.inner.health
    }

    /// The in-process hub: every notice of the services reaches it. It wakes the
    /// delivery worker and feeds the log streams.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Entity searches' turns per organization.
    pub fn searches(&self) -> &SearchGate {
        &self.inner.searches
    }

    /// The web sign-in's settings (public URL, single sign-on).
    pub fn web(&self) -> Arc<WebSettings> {
        self.inner
            .web
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the web sign-in's settings (for sessions and sign-ins that start after).
    pub fn set_web(&self, settings: WebSettings) {
        *self
            .inner
            .web
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
    }

    /// The throttle of failed password sign-ins.
    pub fn sign_ins(&self) -> &LoginThrottle {
        &self.inner.sign_ins
    }

    /// The single sign-on client (its provider's discovery document and keys cached).
    pub fn oidc(&self) -> &Oidc {
        &self.inner.oidc
    }

    /// Cancelled when the server begins shutting down: the delivery worker, the reaper
    /// and open log streams stop on it.
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }
}

/// The state's metrics, for [`crate::metrics::track_requests`].
impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.inner.metrics.clone()
    }
}

/// Builds an [`AppState`]; every part has a production default.
pub struct AppStateBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    notifiers: Vec<Arc<dyn Notifier>>,
    hub: Option<Arc<Hub>>,
    destinations: Arc<dyn DestinationPolicy>,
    templates: Arc<dyn TemplateEngine>,
    health: Arc<dyn HealthCheck>,
    web: WebSettings,
}

impl AppStateBuilder {
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn entropy(mut self, entropy: Arc<dyn Entropy>) -> Self {
        self.entropy = entropy;
        self
    }

    /// Another listener for new deliveries and run changes (each one given is told);
    /// the hub hears them too.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// The hub to use (default: a new one).
    pub fn hub(mut self, hub: Arc<Hub>) -> Self {
        self.hub = Some(hub);
        self
    }

    pub fn destinations(mut self, destinations: Arc<dyn DestinationPolicy>) -> Self {
        self.destinations = destinations;
        self
    }

    /// Where actions' templates are rendered (default: in process, within the default
    /// budget; portd renders them in a sandbox).
    pub fn templates(mut self, templates: Arc<dyn TemplateEngine>) -> Self {
        self.templates = templates;
        self
    }

    pub fn health(mut self, health: Arc<dyn HealthCheck>) -> Self {
        self.health = health;
        self
    }

    /// The web sign-in's settings (default: no public URL, no single sign-on).
    pub fn web(mut self, web: WebSettings) -> Self {
        self.web = web;
        self
    }

    pub fn build(self) -> AppState {
        let hub = self.hub.unwrap_or_else(|| Arc::new(Hub::new()));
        let notifier: Arc<dyn Notifier> = Arc::new(Fanout {
            hub: hub.clone(),
            also: self.notifiers,
        });
        let services = Services::new(
            self.store.clone(),
            self.clock.clone(),
            IdGenerator::new(self.clock.clone(), self.entropy),
            notifier,
            self.destinations,
            self.templates,
        );
        AppState {
            inner: Arc::new(Inner {
                authenticator: Authenticator::new(self.store.clone(), self.clock),
                services,
                store: self.store,
                metrics: Arc::new(Metrics::new()),
                health: self.health,
                hub,
                stopping: CancellationToken::new(),
                searches: SearchGate::default(),
                web: RwLock::new(Arc::new(self.web)),
                sign_ins: LoginThrottle::default(),
                oidc: Oidc::new(),
            }),
        }
    }
}
