//! The error envelope: every failure leaves as `{"ok": false, "error", "message"}`
//! with Port's identifier and status (port-api.md §1.2, §10).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use port_core::error::StoreError;
use port_core::{ErrorKind, PortError};
use serde_json::json;

/// An HTTP-facing error: a domain refusal rendered as Port's envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(pub PortError);

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(PortError::new(kind, message))
    }

    /// 422 `invalid_request`: the body or the query does not match the route.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self(PortError::invalid(message))
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self(PortError::not_found(what))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            "missing, invalid or expired access token: send `Authorization: Bearer <token>` from POST /v1/auth/access_token",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            "request body is too large (limit is 1MiB)",
        )
    }

    /// A failure that must not reach the client in detail: logged here, generic outside.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self(PortError::internal("internal error"))
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The conversion below drops the detail from the response; keep it in the logs.
        if matches!(e, StoreError::Other(_) | StoreError::Unavailable(_)) {
            tracing::error!(error = %e, "storage failure");
        }
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            // Storage and internal messages may carry connection details: keep them in logs.
            tracing::error!(error = %self.0.message, kind = %self.0.kind, "request failed");
            match self.0.kind {
                ErrorKind::ServiceUnavailable => {
                    "the service is temporarily unavailable; try again".to_owned()
                }
                _ => "internal error".to_owned(),
            }
        } else {
            self.0.message
        };
        let body = json!({ "ok": false, "error": self.0.kind.identifier(), "message": message });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            // The database is down or busy, or the caller used up its share: tell clients
            // when to come back (RFC 9110, RFC 6585).
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// The `Retry-After` (seconds) of every 503 and 429 answer.
pub const RETRY_AFTER_SECS: &str = "2";

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_and_throttled_answers_carry_retry_after() {
        let down = ApiError::from(StoreError::Unavailable("connection refused".into()));
        let response = down.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[axum::http::header::RETRY_AFTER],
            RETRY_AFTER_SECS
        );
        let throttled =
            ApiError::from(PortError::new(ErrorKind::TooManyRequests, "slow down")).into_response();
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            throttled.headers()[axum::http::header::RETRY_AFTER],
            RETRY_AFTER_SECS
        );
        let broken = ApiError::internal("a bug").into_response();
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            broken
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .is_none()
        );
    }
}
