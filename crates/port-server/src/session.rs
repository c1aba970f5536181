//! People signing in to the web UI: e-mail and password (argon2id), a session cookie,
//! and the CSRF token that every state-changing request made with it must carry.
//!
//! - `POST /ui/session` (JSON or form `{email, password}`) checks the password, starts
//!   a session and sets the `portd_session` cookie (HttpOnly, SameSite=Strict, Path=/,
//!   Secure when `PORTD_PUBLIC_URL` is https); it answers `{ok, user, csrfToken}`.
//!   Failures are throttled like the token route's ([`crate::throttle`]), by address
//!   and e-mail address; an unknown address and a wrong password get the same answer
//!   after the same work (a decoy hash is verified when there is nothing to verify).
//! - `GET /ui/session`: the signed-in person and the CSRF token, or 401.
//! - `DELETE /ui/session`: signs out (needs the CSRF token while the session lives).
//! - `GET /ui/sign-in-options`: which ways of signing in this server offers.
//!
//! The store keeps only the hash of the session's token. The CSRF token is derived
//! from the session's token (HMAC keyed by it), so nothing more is stored and every
//! replica derives the same one; it cannot be computed without the cookie, which
//! scripts cannot read (HttpOnly) and other sites cannot send (SameSite=Strict), so a
//! request that carries it comes from the page. Bearer-token requests need none: a
//! browser never adds an `Authorization` header by itself.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, ORIGIN, RETRY_AFTER, SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use port_core::ErrorKind;
use port_core::access::{Email, User};
use port_core::service::Caller;
use port_core::service::sessions::{SESSION_LIFETIME_MS, session_token_hash};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use url::Url;

use crate::error::{ApiError, ApiResult};
use crate::extract::{PeerAddr, parse_json_object};
use crate::oidc::OidcSettings;
use crate::password::{decoy_hash, verify_password};
use crate::state::AppState;
use crate::throttle::Source;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "portd_session";

/// The header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the CSRF derivation mixes in, so the token is never the session's own.
const CSRF_CONTEXT: &[u8] = b"portd-csrf-v1";

/// The longest cookie value looked at: a session token is 43 characters.
const MAX_TOKEN_LEN: usize = 128;

/// How the web sign-in is set up: the address people reach portd at and single
/// sign-on. `PORTD_PUBLIC_URL`, `PORTD_OIDC_ISSUER`, `PORTD_OIDC_CLIENT_ID`,
/// `PORTD_OIDC_CLIENT_SECRET`.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    /// Where browsers reach portd (`https://portd.example.com`); decides the cookies'
    /// `Secure` attribute and the OIDC redirect URI.
    pub public_url: Option<Url>,
    pub oidc: Option<OidcSettings>,
}

impl WebSettings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the settings from `var` (the environment's variables, or a test's).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let public_url = var("PORTD_PUBLIC_URL")
            .map(|raw| parse_public_url(&raw))
            .transpose()?;
        let issuer = var("PORTD_OIDC_ISSUER");
        let client_id = var("PORTD_OIDC_CLIENT_ID");
        let client_secret = var("PORTD_OIDC_CLIENT_SECRET");
        let oidc = match (issuer, client_id, client_secret) {
            (None, None, None) => None,
            (Some(issuer), Some(client_id), Some(client_secret)) => {
                let public_url = public_url.as_ref().ok_or(
                    "PORTD_OIDC_ISSUER needs PORTD_PUBLIC_URL: the provider sends people back \
                     to PORTD_PUBLIC_URL/ui/oidc/callback",
                )?;
                Some(OidcSettings::new(
                    &issuer,
                    client_id,
                    client_secret,
                    public_url,
                )?)
            }
            _ => {
                return Err("single sign-on needs all of PORTD_OIDC_ISSUER, \
                            PORTD_OIDC_CLIENT_ID and PORTD_OIDC_CLIENT_SECRET"
                    .to_owned());
            }
        };
        Ok(Self { public_url, oidc })
    }

    /// Whether cookies are `Secure`: when people reach portd over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|url| url.scheme() == "https")
    }
}

fn parse_public_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim())
        .map_err(|e| format!("PORTD_PUBLIC_URL {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "PORTD_PUBLIC_URL {raw:?} must be an http(s) address without credentials, \
             query or fragment, like https://portd.example.com"
        ));
    }
    Ok(url)
}

/// `PORTD_PUBLIC_URL` without a trailing slash, followed by `path`.
pub fn public_address(public_url: &Url, path: &str) -> String {
    format!("{}{path}", public_url.as_str().trim_end_matches('/'))
}

/// The CSRF token of a session: HMAC-SHA256 keyed by the session's token.
pub fn csrf_token(session_token: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(CSRF_CONTEXT);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether the request carries the session's CSRF token (compared in constant time).
pub fn csrf_matches(headers: &HeaderMap, session_token: &str) -> bool {
    let Some(given) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    given
        .trim()
        .as_bytes()
        .ct_eq(csrf_token(session_token).as_bytes())
        .into()
}

/// Methods that change nothing, so need no CSRF token.
pub fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name`, from any `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// The session token of the request's cookie, if it has one that could be one.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
        .filter(|token| !token.is_empty() && token.len() <= MAX_TOKEN_LEN)
}

/// 403 `csrf_failed`.
pub fn csrf_failed() -> ApiError {
    ApiError::new(
        ErrorKind::CsrfFailed,
        format!(
            "a request made with the session cookie that changes something must carry the \
             session's {CSRF_HEADER} header (from POST or GET /ui/session)"
        ),
    )
}

fn session_expired() -> ApiError {
    ApiError::new(
        ErrorKind::Unauthorized,
        "not signed in, or the session ended: sign in again",
    )
}

/// The caller of a request authenticated by its session cookie: 401 when the session
/// is unknown, expired or its user gone; 403 `csrf_failed` when a state-changing
/// request lacks the CSRF token. `None` when the request has no session cookie.
pub async fn cookie_caller(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult<Option<Caller>> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let caller = state
        .services()
        .session_caller(&session_token_hash(token))
        .await?
        .ok_or_else(session_expired)?;
    if !is_safe_method(method) && !csrf_matches(headers, token) {
        return Err(csrf_failed());
    }
    Ok(Some(caller))
}

/// `Set-Cookie` for a new session.
fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let max_age = SESSION_LIFETIME_MS / 1000;
    cookie_value(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    ))
}

/// `Set-Cookie` that removes the session cookie.
fn cleared_session_cookie(secure: bool) -> HeaderValue {
    cookie_value(&format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    ))
}

pub(crate) fn cookie_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("cookies are made of header-safe characters")
}

/// Starts a session for `user` (authenticated by password or single sign-on): the
/// cookie to set and the CSRF token for the page.
pub(crate) async fn begin(state: &AppState, user: &User) -> ApiResult<(HeaderValue, String)> {
    let started = state.services().start_session(user).await?;
    let secure = state.web().secure_cookies();
    Ok((
        session_cookie(&started.token, secure),
        csrf_token(&started.token),
    ))
}

/// The UI's session routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/session", get(current).post(sign_in).delete(sign_out))
        .route("/ui/sign-in-options", get(options))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

impl SignIn {
    fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Self> {
        let form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !form {
            return parse_json_object(body);
        }
        let (mut email, mut password) = (None, None);
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "email" => email = Some(value.into_owned()),
                "password" => password = Some(value.into_owned()),
                _ => {}
            }
        }
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            _ => Err(ApiError::invalid("body: email and password are required")),
        }
    }
}

/// No cache may keep an answer holding a CSRF token.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Refuses a sign-in posted from another site (login CSRF: signing a victim in as the
/// attacker): browsers send `Origin` with every POST, and it must name this server.
fn same_origin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Not a browser (curl, tests): nothing to forge.
        return Ok(());
    };
    let Ok(origin) = Url::parse(origin) else {
        return Err(csrf_failed());
    };
    let origin_host = match (origin.host_str(), origin.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => return Err(csrf_failed()),
    };
    let public = state.web().public_url.as_ref().and_then(|url| {
        Some(format!(
            "{}:{}",
            url.host_str()?,
            url.port_or_known_default()?
        ))
    });
    let host = headers.get(HOST).and_then(|v| v.to_str().ok()).map(|host| {
        if host.contains(':') && !host.ends_with(']') {
            host.to_owned()
        } else {
            let default = if origin.scheme() == "https" { 443 } else { 80 };
            format!("{host}:{default}")
        }
    });
    if Some(&origin_host) == public.as_ref() || Some(&origin_host) == host.as_ref() {
        Ok(())
    } else {
        Err(csrf_failed())
    }
}

async fn sign_in(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match try_sign_in(&state, peer, &headers, &body).await {
        Ok(response) => no_store(response),
        Err(response) => response,
    }
}

async fn try_sign_in(
    state: &AppState,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Response> {
    same_origin(state, headers).map_err(IntoResponse::into_response)?;
    let request = SignIn::parse(headers, body).map_err(IntoResponse::into_response)?;
    let throttle = state.sign_ins();
    let attempt = throttle.attempt(&request.email.trim().to_lowercase(), Source::from(peer));
    // Refused before the password is checked: a throttled guess learns nothing.
    throttle
        .check(attempt, Instant::now())
        .map_err(too_many_failures)?;
    let candidates = match Email::parse(&request.email) {
        Ok(email) => state
            .services()
            .password_candidates(&email)
            .await
            .map_err(|e| ApiError::from(e).into_response())?,
        Err(_) => Vec::new(),
    };
    let password = request.password;
    let matched = tokio::task::spawn_blocking(move || {
        if candidates.is_empty() {
            // The same work as a real check, so the answer's timing does not tell
            // whether the address has an account.
            let _ = verify_password(&password, decoy_hash());
            return None;
        }
        candidates
            .into_iter()
            .find(|(_, hash)| verify_password(&password, hash))
            .map(|(user, _)| user)
    })
    .await
    .map_err(|e| ApiError::internal(e).into_response())?;
    let Some(user) = matched else {
        throttle.failed(attempt, Instant::now());
        return Err(
            ApiError::new(ErrorKind::Unauthorized, "wrong e-mail address or password")
                .into_response(),
        );
    };
    throttle.succeeded(attempt, Instant::now());
    let (cookie, csrf) = begin(state, &user)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((
        [(SET_COOKIE, cookie)],
        axum::Json(json!({"ok": true, "user": user.to_json(), "csrfToken": csrf})),
    )
        .into_response())
}

/// 429 `too_many_requests` with `Retry-After` in whole seconds (at least 1).
fn too_many_failures(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        ErrorKind::TooManyRequests,
        format!(
            "too many failed sign-ins for this address or from this network; try again in \
             {seconds} s"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

async fn current(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let secure = state.web().secure_cookies();
    let Some(token) = session_token(&headers) else {
        return session_expired().into_response();
    };
    match state
        .services()
        .session_user(&session_token_hash(token))
        .await
    {
        Ok(Some(user)) => no_store(
            axum::Json(json!({
                "ok": true,
                "user": user.to_json(),
                "csrfToken": csrf_token(token),
            }))
            .into_response(),
        ),
        Ok(None) => {
            // A stale cookie: have the browser drop it.
            let mut response = session_expired().into_response();
            response
                .headers_mut()
                .insert(SET_COOKIE, cleared_session_cookie(secure));
            response
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let secure = state.web().secure_cookies();
    if let Some(token) = session_token(&headers) {
        let hash = session_token_hash(token);
        let live = match state.services().session_user(&hash).await {
            Ok(user) => user.is_some(),
            Err(e) => return ApiError::from(e).into_response(),
        };
        // Signing someone out is a change too: only the page may ask for it.
        if live && !csrf_matches(&headers, token) {
            return csrf_failed().into_response();
        }
        if let Err(e) = state.services().end_session(&hash).await {
            return ApiError::from(e).into_response();
        }
    }
    (
        StatusCode::OK,
        [(SET_COOKIE, cleared_session_cookie(secure))],
        axum::Json(json!({"ok": true})),
    )
        .into_response()
}

async fn options(State(state): State<AppState>) -> Response {
    no_store(
        axum::Json(json!({
            "ok": true,
            "password": true,
            "sso": state.web().oidc.is_some(),
        }))
        .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_need_all_of_single_sign_on_and_a_public_url_for_it() {
        let none = WebSettings::from_vars(vars(&[])).unwrap();
        assert!(none.oidc.is_none() && !none.secure_cookies());
        let https =
            WebSettings::from_vars(vars(&[("PORTD_PUBLIC_URL", "https://p.example")])).unwrap();
        assert!(https.secure_cookies());
        assert!(
            WebSettings::from_vars(vars(&[("PORTD_OIDC_ISSUER", "https://id.example")])).is_err()
        );
        let oidc = [
            ("PORTD_OIDC_ISSUER", "https://id.example"),
            ("PORTD_OIDC_CLIENT_ID", "portd"),
            ("PORTD_OIDC_CLIENT_SECRET", "s"),
        ];
        assert!(
            WebSettings::from_vars(vars(&oidc)).is_err(),
            "no public URL"
        );
        let mut with_url = oidc.to_vec();
        with_url.push(("PORTD_PUBLIC_URL", "https://portd.example/"));
        let settings = WebSettings::from_vars(vars(&with_url)).unwrap();
        assert_eq!(
            settings.oidc.unwrap().redirect_uri,
            "https://portd.example/ui/oidc/callback"
        );
        for bad in ["ftp://x", "https://x/?a=1", "https://u:p@x", "not a url"] {
            assert!(
                WebSettings::from_vars(vars(&[("PORTD_PUBLIC_URL", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn csrf_tokens_are_derived_from_the_session_and_compared_exactly() {
        let token = "session-token";
        let csrf = csrf_token(token);
        assert_ne!(csrf, token);
        assert_eq!(csrf, csrf_token(token));
        assert_ne!(csrf, csrf_token("other"));
        let mut headers = HeaderMap::new();
        assert!(!csrf_matches(&headers, token));
        headers.insert(CSRF_HEADER, HeaderValue::from_str(&csrf).unwrap());
        assert!(csrf_matches(&headers, token));
        assert!(!csrf_matches(&headers, "other"));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("x"));
        assert!(!csrf_matches(&headers, token));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; portd_session=abc ; b=2"),
        );
        assert_eq!(session_token(&headers), Some("abc"));
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1"));
        headers.append(COOKIE, HeaderValue::from_static("portd_session=xyz"));
        assert_eq!(session_token(&headers), Some("xyz"));
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("xportd_session=1"));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn session_cookies_are_strict_http_only_and_secure_behind_tls() {
        let plain = session_cookie("t", false);
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("portd_session=t; Path=/;"), "{plain}");
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(
            session_cookie("t", true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        assert!(
            cleared_session_cookie(false)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }
}
