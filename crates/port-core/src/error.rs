//! Port's error identifiers and the domain error that carries one.
//!
//! Every refusal the domain makes maps to one of Port's identifiers (port-api.md §10)
//! and an HTTP status, so that adapters render `{"ok": false, "error", "message"}`
//! without deciding anything themselves.

use std::fmt;

/// One of Port's error identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    InvalidRequest,
    BadRequest,
    Unauthorized,
    NotFound,
    InternalError,
    MissingPermissions,
    IdentifierTaken,
    UserInputsSchemaInvalid,
    RunNonSelfServiceError,
    MissingSelfServiceActionEntity,
    EntityDoesNotPassCondition,
    InvalidEvaluatedInvocationMethod,
    EvaluateInvocationMethodError,
    NotResolvableDestination,
    PrivateDestination,
    RunSynchronizedError,
    RunNotWaitingForApproval,
    /// A finished run refused a change. 422 on run routes; entity routes answer 400
    /// (see [`PortError::status`] and [`PortError::on_entity_route`]).
    RunExhausted,
    BlueprintSchemaMismatch,
    RequiredRelation,
    RelationManyViolation,
    HasDependents,
    PayloadTooLarge,
    ServiceUnavailable,
    Conflict,
    /// The caller used up a share it is allowed (its organization's template
    /// evaluations, streams, sign-in attempts…): 429, to retry after a pause.
    TooManyRequests,
    /// A search would read more of the catalog than one request may (portd's own
    /// identifier: Port documents none for it).
    SearchTooBroad,
    /// A state-changing request made with the web UI's session cookie lacked the
    /// session's `X-CSRF-Token` (portd's own identifier: Port's clients never use
    /// cookies).
    CsrfFailed,
}

impl ErrorKind {
    /// The wire identifier, e.g. `run_exhausted`.
    pub const fn identifier(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::BadRequest | Self::PayloadTooLarge => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::InternalError => "internal_error",
            Self::MissingPermissions => "missing_permissions",
            Self::IdentifierTaken => "identifier_taken",
            Self::UserInputsSchemaInvalid => "user_inputs_schema_invalid",
            Self::RunNonSelfServiceError => "run_non_self_service_error",
            Self::MissingSelfServiceActionEntity => "missing_self_service_action_entity",
            Self::EntityDoesNotPassCondition => "entity_does_not_pass_condition",
            Self::InvalidEvaluatedInvocationMethod => "invalid_evaluated_invocation_method",
            Self::EvaluateInvocationMethodError => "evaluate_invocation_method_error",
            Self::NotResolvableDestination => "not_resolvable_destination",
            Self::PrivateDestination => "private_destination",
            Self::RunSynchronizedError => "run_synchronized_error",
            Self::RunNotWaitingForApproval => "run_not_waiting_for_approval",
            Self::RunExhausted => "run_exhausted",
            Self::BlueprintSchemaMismatch => "blueprint_schema_mismatch",
            Self::RequiredRelation => "required_relation",
            Self::RelationManyViolation => "relation_many_violation",
            Self::HasDependents => "has_dependents",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Conflict => "conflict",
            Self::TooManyRequests => "too_many_requests",
            Self::SearchTooBroad => "search_too_broad",
            Self::CsrfFailed => "csrf_failed",
        }
    }

    /// The HTTP status Port answers with.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::MissingPermissions
            | Self::NotResolvableDestination
            | Self::PrivateDestination
            | Self::HasDependents
            | Self::CsrfFailed => 403,
            Self::NotFound => 404,
            Self::IdentifierTaken | Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::TooManyRequests => 429,
            Self::InternalError => 500,
            Self::ServiceUnavailable => 503,
            Self::InvalidRequest
            | Self::UserInputsSchemaInvalid
            | Self::RunNonSelfServiceError
            | Self::MissingSelfServiceActionEntity
            | Self::EntityDoesNotPassCondition
            | Self::InvalidEvaluatedInvocationMethod
            | Self::EvaluateInvocationMethodError
            | Self::RunSynchronizedError
            | Self::RunNotWaitingForApproval
            | Self::RunExhausted
            | Self::BlueprintSchemaMismatch
            | Self::RequiredRelation
            | Self::RelationManyViolation
            | Self::SearchTooBroad => 422,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.identifier())
    }
}

/// A refusal with Port's identifier and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PortError {
    pub kind: ErrorKind,
    pub message: String,
    /// Overrides the kind's default status (entity routes answer `run_exhausted` with 400).
    pub status_override: Option<u16>,
}

impl PortError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status_override: None,
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} was not found"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, message)
    }

    /// Entity routes answer `run_exhausted` with 400 instead of 422 (port-api.md §3.3).
    pub fn on_entity_route(mut self) -> Self {
        if self.kind == ErrorKind::RunExhausted {
            self.status_override = Some(400);
        }
        self
    }

    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or_else(|| self.kind.status())
    }
}

/// Storage failures, kept apart from domain refusals so adapters can retry or answer 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the connection.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A concurrent writer changed the row first; the caller may re-read and retry.
    #[error("concurrent modification of {0}")]
    Conflict(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The database refused a value the request carried (PostgreSQL's data exceptions,
    /// e.g. a NUL character in text): the caller's input, not the store, is at fault.
    #[error("invalid value: {0}")]
    InvalidInput(String),
    #[error("storage error: {0}")]
    Other(String),
}

impl From<StoreError> for PortError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => PortError::new(ErrorKind::ServiceUnavailable, m),
            StoreError::Conflict(m) => PortError::new(ErrorKind::Conflict, m),
            StoreError::AlreadyExists(m) => PortError::new(ErrorKind::IdentifierTaken, m),
            StoreError::InvalidInput(m) => PortError::invalid(m),
            // Internal details stay in logs, not in responses.
            StoreError::Other(_) => PortError::internal("internal error"),
        }
    }
}
