//! The route table's operations (health, readiness, metrics, this document) and the
//! token route.

use axum::Json;
use axum::routing::{delete, get, post};
use serde_json::json;

use crate::routes::auth;
use crate::routes::endpoint::{Endpoint, HttpMethod};
use crate::routes::operations::{healthz, metrics, readyz};

pub(super) const OPERATIONS: &[Endpoint] = &[
    // Operations.
    Endpoint {
        method: HttpMethod::Get,
        path: "/healthz",
        operation_id: "healthz",
        summary: "Liveness: the process answers",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || get(healthz),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/readyz",
        operation_id: "readyz",
        summary: "Readiness: the database answers (503 otherwise)",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[],
        route: || get(readyz),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/metrics",
        operation_id: "metrics",
        summary: "Prometheus metrics (text exposition format)",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "PrometheusText",
        query: &[],
        errors: &[],
        route: || get(metrics),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/openapi.json",
        operation_id: "openapi",
        summary: "This OpenAPI document",
        tag: "Operations",
        authenticated: false,
        success: 200,
        body: None,
        response: "Object",
        query: &[],
        // Replaced by `app_with`, which knows the full route list.
        errors: &[],
        route: || get(|| async { Json(json!({})) }),
    },
    // Auth.
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/auth/access_token",
        operation_id: "getAccessToken",
        summary: "Trade a client id and secret for an access token (3 hours)",
        tag: "Auth",
        authenticated: false,
        success: 200,
        body: Some("AccessTokenRequest"),
        response: "AccessTokenResponse",
        query: &[],
        errors: &[(
            429,
            "Too many failed attempts for this client id or from this address (see Retry-After)",
        )],
        route: || post(auth::access_token),
    },
    Endpoint {
        method: HttpMethod::Post,
        path: "/v1/auth/credentials",
        operation_id: "createPersonalCredentials",
        summary: "People: create your own client id and secret (the secret is shown this once); their tokens act as you, with your role and teams as they are when used (isMachine false, personalToken true)",
        tag: "Auth",
        authenticated: true,
        success: 201,
        body: None,
        response: "PersonalCredentialsResponse",
        query: &[],
        errors: &[(
            422,
            "invalid_request: the person holds as many personal credentials as one may",
        )],
        route: || post(auth::create_credentials),
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/auth/credentials",
        operation_id: "listPersonalCredentials",
        summary: "People: your personal credentials' client ids and creation times (never their secrets)",
        tag: "Auth",
        authenticated: true,
        success: 200,
        body: None,
        response: "PersonalCredentialsListResponse",
        query: &[],
        errors: &[],
        route: || get(auth::list_credentials),
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/auth/credentials/{client_id}",
        operation_id: "deletePersonalCredentials",
        summary: "People: delete one of your personal credentials (Admins and organization credentials: anyone's in the organization); its tokens stop working within seconds",
        tag: "Auth",
        authenticated: true,
        success: 200,
        body: None,
        response: "Ok",
        query: &[],
        errors: &[(
            404,
            "not_found: no personal credential by that id that the caller may delete",
        )],
        route: || delete(auth::delete_credentials),
    },
];
