//! The router: the route table's endpoints (plus any added by other crates) under
//! Port's error envelope, the body limit, request ids, tracing and metrics.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, Router, middleware};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::extract::BODY_LIMIT_BYTES;
use crate::metrics::track_requests;
use crate::openapi;
use crate::routes::{ENDPOINTS, Endpoint, method_not_allowed, route_not_found};
use crate::state::AppState;

/// The header carrying the request id (generated when absent, echoed on the response).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The full application: every route of [`ENDPOINTS`].
pub fn app(state: AppState) -> Router {
    app_with(state, &[])
}

/// The application with more endpoints (e.g. the delivery crate's routes), which are
/// served and documented like the built-in ones.
pub fn app_with(state: AppState, extra: &[Endpoint]) -> Router {
    let endpoints = all_endpoints(extra);
    let document = Arc::new(openapi::document(&endpoints));
    let mut router: Router<AppState> = Router::new();
    for endpoint in &endpoints {
        let method_router = if endpoint.path == "/openapi.json" {
            let document = document.clone();
            get(move || async move { Json(document.as_ref().clone()) })
        } else {
            (endpoint.route)()
        };
        router = router.route(endpoint.path, method_router);
    }
    router
        .merge(crate::ui::router())
        .merge(crate::session::router())
        .merge(crate::oidc::router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .layer(
            TraceLayer::new_for_http()
                // Only the method, path and request id: query strings, headers (the
                // Authorization token) and bodies (secrets) stay out of logs.
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %request_id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The built-in endpoints followed by `extra`.
pub fn all_endpoints(extra: &[Endpoint]) -> Vec<Endpoint> {
    ENDPOINTS.iter().chain(extra).copied().collect()
}
