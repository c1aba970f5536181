//! What the route table is made of: an [`Endpoint`] per route, with its method, its
//! documented query parameters ([`QueryParam`], with the constraints the server checks)
//! and its handler.

use axum::routing::MethodRouter;

use crate::state::AppState;

/// An HTTP method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// The lower-case name OpenAPI uses as the operation key.
    pub const fn openapi_key(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
        }
    }
}

/// The type of a query parameter, for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Boolean,
    Integer,
}

/// A documented query parameter, with the constraints the server checks (a value
/// outside them is 422 `invalid_request` naming `querystring.<name>`).
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    pub name: &'static str,
    pub kind: ParamKind,
    /// May be given more than once (`?source=UI&source=API`).
    pub repeated: bool,
    /// Whether the route refuses a request without it.
    pub required: bool,
    /// The accepted values (of each occurrence when repeated); empty: any.
    pub values: &'static [&'static str],
    /// The smallest and largest accepted integer.
    pub minimum: Option<u64>,
    pub maximum: Option<u64>,
    /// The pattern a string value must match.
    pub pattern: Option<&'static str>,
    /// The JSON Schema format a string value must have (`date-time`).
    pub format: Option<&'static str>,
    pub description: &'static str,
}

impl QueryParam {
    /// Only these values are accepted.
    pub const fn one_of(self, values: &'static [&'static str]) -> Self {
        Self { values, ..self }
    }

    /// An integer from `minimum` to `maximum`.
    pub const fn range(self, minimum: u64, maximum: u64) -> Self {
        Self {
            minimum: Some(minimum),
            maximum: Some(maximum),
            ..self
        }
    }

    /// A string matching `pattern`.
    pub const fn matching(self, pattern: &'static str) -> Self {
        Self {
            pattern: Some(pattern),
            ..self
        }
    }

    /// A string of this JSON Schema format (`date-time`).
    pub const fn formatted(self, format: &'static str) -> Self {
        Self {
            format: Some(format),
            ..self
        }
    }

    pub const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// Whether the server refuses some values (422): the document must say which.
    pub const fn is_validated(&self) -> bool {
        self.required
            || !self.values.is_empty()
            || self.minimum.is_some()
            || self.maximum.is_some()
            || self.pattern.is_some()
            || self.format.is_some()
            || !matches!(self.kind, ParamKind::String)
    }
}

pub(super) const fn param(
    name: &'static str,
    kind: ParamKind,
    description: &'static str,
) -> QueryParam {
    QueryParam {
        name,
        kind,
        repeated: false,
        required: false,
        values: &[],
        minimum: None,
        maximum: None,
        pattern: None,
        format: None,
        description,
    }
}

pub(super) const fn repeated(name: &'static str, description: &'static str) -> QueryParam {
    QueryParam {
        repeated: true,
        ..param(name, ParamKind::String, description)
    }
}

/// Port's run id (`r_` and 16 alphanumerics).
pub const RUN_ID_PATTERN: &str = "^r_[A-Za-z0-9]{16}$";

/// One route: how it is served and how it is documented.
#[derive(Clone, Copy)]
pub struct Endpoint {
    pub method: HttpMethod,
    /// The path in axum's and OpenAPI's common syntax: `/v1/actions/{action_identifier}`.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Whether a bearer token is required.
    pub authenticated: bool,
    /// The success status.
    pub success: u16,
    /// The component schema of the request body, if the route takes one.
    pub body: Option<&'static str>,
    /// The component schema of the success body.
    pub response: &'static str,
    pub query: &'static [QueryParam],
    /// The error statuses the route answers besides the common ones (401, 404, 500; 413
    /// and 422 with a body; 422 with a validated query parameter), with why.
    pub errors: &'static [(u16, &'static str)],
    /// The handler, as a method router for this method only.
    pub route: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({} {})", self.method.as_str(), self.path)
    }
}
