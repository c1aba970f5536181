//! Extractors whose rejections are Port's envelope: JSON bodies (422 naming the field,
//! 413 over the limit), query strings (repeatable keys, typed getters) and the
//! authenticated caller (401).
//!
//! **NUL (U+0000).** PostgreSQL cannot store it in text, SQLite can: so that both stores
//! answer alike, no NUL gets past these extractors. A NUL in a JSON string or key (at
//! any depth) or a query value is 422 `invalid_request` naming the field; one in a path
//! segment names nothing that can exist: 404, like any other undecodable path. (JSON
//! and percent-decoding already refuse lone surrogates and invalid UTF-8.)

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use port_core::run::WireVersion;
use port_core::service::Caller;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The request body limit (port-api.md §1.5).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A JSON object body. Malformed JSON, a body that is not an object, or one of the
/// wrong shape is 422 `invalid_request` naming the field; a body over
/// [`BODY_LIMIT_BYTES`] is 413. The content type is not checked, because some Port
/// clients send JSON without one.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            // Also a body that did not arrive within the body read timeout.
            ApiError::invalid("the request body could not be read (cut short, or too slow)")
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json_object(&body_bytes(req, state).await?).map(ApiJson)
    }
}

/// A JSON body that may be an object or an array (the legacy action routes take one
/// action or an array of them); otherwise as [`ApiJson`].
#[derive(Debug, Clone)]
pub struct ApiJsonAny<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJsonAny<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&body_bytes(req, state).await?).map(ApiJsonAny)
    }
}

/// [`parse_json`] for a body that must be a JSON object: serde would otherwise read a
/// struct from an array (`[[]]`), which the document calls invalid.
pub fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => parse_json(bytes),
        Some(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::invalid("body: must be a JSON object")),
            Err(_) => parse_json(bytes),
        },
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option` field: the key
/// may be left out, but `null` is refused (the document types it without null).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Like [`present`] for a non-negative integer, which JSON may also write `2644.0`
/// (JSON Schema's `integer` accepts it).
pub fn present_whole<'de, D>(deserializer: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = serde_json::Number::deserialize(deserializer)?;
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid value: {value}, expected a non-negative integer"
            ))
        })
}

/// Parses a JSON body into `T`; the message names the field at fault. Text holding
/// NUL is refused (see the module's documentation).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("body: a JSON body is required"));
    }
    refuse_json_nul(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let detail = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("body: malformed JSON: {detail}"))
        } else if path == "." {
            ApiError::invalid(format!("body: {detail}"))
        } else {
            ApiError::invalid(format!("{path}: {detail}"))
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::invalid(format!(
            "body: malformed JSON: {}",
            strip_position(&e.to_string())
        ))
    })?;
    Ok(value)
}

/// The message of a field that holds NUL.
pub fn nul_refused(field: &str) -> String {
    format!("{field}: must not contain NUL (U+0000)")
}

/// 422 naming the first string or key of the body that holds NUL. JSON can only carry
/// NUL as the escape `\u0000` (a raw control byte is malformed), so bodies without one
/// are not parsed twice.
fn refuse_json_nul(bytes: &[u8]) -> ApiResult<()> {
    if !bytes.windows(6).any(|w| w == br"\u0000") {
        return Ok(());
    }
    // Malformed JSON is reported by the real parse that follows.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    match nul_field(&value, &mut String::new()) {
        Some(field) => Err(ApiError::invalid(nul_refused(&field))),
        None => Ok(()),
    }
}

/// The path (`a.b[2]`, as serde_path_to_error writes it; `body` for the root) of the
/// first string holding NUL, or of the object with such a key.
fn nul_field(value: &serde_json::Value, path: &mut String) -> Option<String> {
    use serde_json::Value;
    let here = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => Some(here(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_field(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => {
            if map.keys().any(|key| key.contains('\0')) {
                return Some(format!("{} (a key)", here(path)));
            }
            map.iter().find_map(|(key, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let found = nul_field(item, path);
                path.truncate(len);
                found
            })
        }
        _ => None,
    }
}

/// serde_json appends " at line L column C", which helps little once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters. A path that cannot be decoded names nothing that exists: 404.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A literal NUL cannot be in a URI; `%00` decodes to one inside some parameter,
        // as no route's literal segments hold it.
        if parts.uri.path().contains("%00") {
            return Err(ApiError::not_found(format!(
                "resource {}",
                parts.uri.path()
            )));
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(_) => Err(ApiError::not_found(format!(
                "resource {}",
                parts.uri.path()
            ))),
        }
    }
}

/// The query string as key/value pairs. Keys may repeat (`source=UI&source=API`), and
/// `key[]` counts as `key`. Unknown keys are ignored, as Port's clients send some (GHA
/// adds `runId`).
#[derive(Debug, Clone, Default)]
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = Self::parse(parts.uri.query().unwrap_or(""));
        if let Some((name, _)) = query
            .0
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            let field = if name.contains('\0') {
                "querystring (a parameter name)".to_owned()
            } else {
                format!("querystring.{name}")
            };
            return Err(ApiError::invalid(nul_refused(&field)));
        }
        Ok(query)
    }
}

impl QueryParams {
    pub fn parse(query: &str) -> Self {
        Self(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.trim_end_matches("[]").to_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: `true` or `false` (an empty value is neither, as the
    /// document says).
    pub fn flag(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.first(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(format!(
                "querystring.{name}: must be true or false"
            ))),
        }
    }

    pub fn flag_or(&self, name: &str, default: bool) -> ApiResult<bool> {
        Ok(self.flag(name)?.unwrap_or(default))
    }

    /// An integer parameter within `min..=max`.
    pub fn integer_in(&self, name: &str, min: u64, max: u64) -> ApiResult<Option<u64>> {
        match self.first(name) {
            None => Ok(None),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::invalid(format!(
                    "querystring.{name}: must be an integer from {min} to {max}"
                ))),
            },
        }
    }

    /// `version=v1|v2`, v1 when absent (port-api.md §1.6).
    pub fn version(&self) -> ApiResult<WireVersion> {
        match self.first("version") {
            None => Ok(WireVersion::V1),
            Some(raw) => WireVersion::parse(raw)
                .ok_or_else(|| ApiError::invalid("querystring.version: must be one of v1, v2")),
        }
    }

    /// `version=v1|v2`, v2 when absent (routes whose shapes Port documents as v2 only).
    pub fn version_or_v2(&self) -> ApiResult<WireVersion> {
        match self.first("version") {
            None => Ok(WireVersion::V2),
            Some(_) => self.version(),
        }
    }
}

/// The address of the peer that sent the request: `None` when the router is driven
/// without a socket (tests in process).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// The authenticated caller of a route: an `Authorization: Bearer` token (an
/// organization's or a person's credential), else the web UI's session cookie, with
/// its CSRF token on every request that may change something (see
/// [`crate::session`]). 401 without either; 403 `csrf_failed` for a cookie request
/// without its CSRF token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer_token(&parts.headers) {
            return state
                .authenticator()
                .verify(token, state.services())
                .await
                .map(Authenticated);
        }
        crate::session::cookie_caller(state, &parts.method, &parts.headers)
            .await?
            .map(Authenticated)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The token of `Authorization: Bearer <token>` (a bare token is accepted too).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized, to test error messages")]
    struct Body {
        status: String,
        count: Option<u32>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<Body>(br#"{"status": 1}"#).unwrap_err();
        assert_eq!(
            err.0.message,
            "status: invalid type: integer `1`, expected a string"
        );
        let err = parse_json::<Body>(br#"{"status": "x", "extra": 1}"#).unwrap_err();
        assert!(
            err.0.message.contains("unknown field `extra`"),
            "{}",
            err.0.message
        );
        let err = parse_json::<Body>(br#"{"status": "#).unwrap_err();
        assert!(
            err.0.message.starts_with("body: malformed JSON"),
            "{}",
            err.0.message
        );
        let err = parse_json::<Body>(b"").unwrap_err();
        assert_eq!(err.0.message, "body: a JSON body is required");
        let err = parse_json::<Body>(br#"{"status": "x"} trailing"#).unwrap_err();
        assert!(
            err.0.message.starts_with("body: malformed JSON"),
            "{}",
            err.0.message
        );
    }

    #[test]
    fn nul_is_refused_anywhere_in_json() {
        let message = |body: &str| {
            parse_json::<serde_json::Value>(body.as_bytes())
                .unwrap_err()
                .0
                .message
        };
        assert_eq!(
            message(r#"{"status": "a\u0000b"}"#),
            "status: must not contain NUL (U+0000)"
        );
        assert_eq!(
            message(r#"{"a": {"b": [1, {"c": "\u0000"}]}}"#),
            "a.b[1].c: must not contain NUL (U+0000)"
        );
        assert_eq!(
            message(r#"{"a": {"k\u0000": 1}}"#),
            "a (a key): must not contain NUL (U+0000)"
        );
        assert_eq!(
            message(r#""\u0000""#),
            "body: must not contain NUL (U+0000)"
        );
        // A backslash followed by `u0000` is text, not NUL.
        assert!(parse_json::<serde_json::Value>(br#"{"a": "\\u0000"}"#).is_ok());
        // serde_json already refuses lone surrogates.
        assert!(parse_json::<serde_json::Value>(br#"{"a": "\ud800"}"#).is_err());
    }

    #[tokio::test]
    async fn nul_is_refused_in_queries_and_paths() {
        let parts = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let mut query = parts("/v1/actions/runs?user_email=a%00b&limit=5");
        let err = QueryParams::from_request_parts(&mut query, &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.0.message,
            "querystring.user_email: must not contain NUL (U+0000)"
        );
        let mut name = parts("/v1/actions/runs?a%00=1");
        assert!(
            QueryParams::from_request_parts(&mut name, &())
                .await
                .is_err()
        );
        let mut path = parts("/v1/actions/runs/r_%00");
        let err = ApiPath::<String>::from_request_parts(&mut path, &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn query_keys_repeat() {
        let q = QueryParams::parse("source=UI&source[]=API&limit=5&active=true");
        assert_eq!(q.all("source"), ["UI", "API"]);
        assert_eq!(q.integer_in("limit", 1, 10).unwrap(), Some(5));
        assert!(q.integer_in("limit", 6, 10).is_err());
        assert_eq!(q.flag("active").unwrap(), Some(true));
        assert_eq!(q.version().unwrap(), WireVersion::V1);
        // An empty value is not absent: the document's enums and ranges exclude it.
        let empty = QueryParams::parse("limit=&active=&version=");
        assert!(empty.integer_in("limit", 1, 10).is_err());
        assert!(empty.flag("active").is_err());
        assert!(empty.version().is_err());
        assert!(empty.version_or_v2().is_err());
    }

    #[test]
    fn bearer_tokens_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer abc.def".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc.def"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }
}
