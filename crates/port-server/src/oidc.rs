//! Single sign-on by OpenID Connect: the authorization code flow with PKCE (S256),
//! `state` and `nonce`, for the web UI.
//!
//! Configured by `PORTD_OIDC_ISSUER`, `PORTD_OIDC_CLIENT_ID` and
//! `PORTD_OIDC_CLIENT_SECRET` (see [`crate::session::WebSettings`]); the provider sends
//! people back to `PORTD_PUBLIC_URL/ui/oidc/callback`, which must be registered with it.
//!
//! - `GET /ui/oidc/login` sends the browser to the provider's authorization endpoint
//!   (from its discovery document). The flow's `state`, `nonce` and PKCE verifier
//!   travel in a short-lived cookie (`portd_oidc`: HttpOnly, SameSite=Lax so that it
//!   comes back with the provider's redirect, Path=/ui/oidc, ten minutes), MACed with a
//!   key derived from the client secret: every replica can read it, nothing is stored.
//! - `GET /ui/oidc/callback` checks `state` (and `iss` when the provider sends it),
//!   exchanges the code (with the verifier, authenticating with the client secret),
//!   verifies the ID token (signature by a key of the provider's JWKS, asymmetric
//!   algorithms only; issuer, audience, `azp`, expiry, nonce), reads `email` from it or
//!   else from the userinfo endpoint (same `sub`), and signs in the user with that
//!   address: no self-sign-up, the user must exist. When the address is a user of
//!   several organizations, the oldest account is the one signed in.
//! - `email_verified`: an address the provider says is *not* verified (`false`) is
//!   refused; a provider that does not send the claim at all (several enterprise
//!   directories) is trusted for the addresses it manages, as the administrator chose
//!   it as the issuer.
//!
//! The issuer and every endpoint must be https; plain http is accepted only on loopback
//! (tests, a provider on the same host). Failures send the browser back to
//! `/?sso_error=<reason>`, which the sign-in page explains; details go to the log.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use port_core::access::Email;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;
use url::Url;

use crate::extract::QueryParams;
use crate::session::{self, cookie, cookie_value, public_address};
use crate::state::AppState;

/// The flow cookie's name.
pub const FLOW_COOKIE: &str = "portd_oidc";

/// Where the provider sends people back to, under `PORTD_PUBLIC_URL`.
pub const CALLBACK_PATH: &str = "/ui/oidc/callback";

/// How long a sign-in at the provider may take.
const FLOW_LIFETIME_SECONDS: i64 = 10 * 60;

/// The most bytes read of any answer of the provider.
const MAX_PROVIDER_ANSWER_BYTES: usize = 256 * 1024;

/// How long the discovery document and keys are reused.
const PROVIDER_CACHE_TTL: Duration = Duration::from_secs(60 * 60);

/// The soonest the keys are fetched again for a token signed by an unknown key (the
/// provider rotated them), so forged key ids cannot make portd hammer the provider.
const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Leeway on the ID token's times, for clocks a little apart.
const CLOCK_LEEWAY_SECONDS: u64 = 60;

/// What the flow cookie's MAC key mixes in.
const FLOW_KEY_CONTEXT: &[u8] = b"portd-oidc-flow-v1";

/// The signature algorithms accepted on ID tokens: asymmetric only, so a token can
/// never be "signed" with something the client knows (the client secret, as HS256).
const ACCEPTED_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A single sign-on provider's settings.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer identifier, as configured (and as the provider must name itself).
    pub issuer: String,
    pub client_id: String,
    client_secret: String,
    /// `PORTD_PUBLIC_URL/ui/oidc/callback`.
    pub redirect_uri: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl OidcSettings {
    /// Checks the issuer (https, or http on loopback) and derives the redirect URI.
    pub fn new(
        issuer: &str,
        client_id: String,
        client_secret: String,
        public_url: &Url,
    ) -> Result<Self, String> {
        let issuer = issuer.trim().to_owned();
        let parsed = Url::parse(&issuer)
            .map_err(|e| format!("PORTD_OIDC_ISSUER {issuer:?} is not a URL: {e}"))?;
        if !transport_allowed(&parsed) || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "PORTD_OIDC_ISSUER {issuer:?} must be an https URL without query or fragment \
                 (plain http only on loopback)"
            ));
        }
        if client_id.trim().is_empty() || client_secret.is_empty() {
            return Err(
                "PORTD_OIDC_CLIENT_ID and PORTD_OIDC_CLIENT_SECRET must not be empty".into(),
            );
        }
        Ok(Self {
            issuer,
            client_id: client_id.trim().to_owned(),
            client_secret,
            redirect_uri: public_address(public_url, CALLBACK_PATH),
        })
    }

    /// The flow cookie's MAC key: derived from the client secret, which every replica
    /// has and nobody else does.
    fn flow_key(&self) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.client_secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(FLOW_KEY_CONTEXT);
        mac.finalize().into_bytes().to_vec()
    }
}

/// https anywhere; http only to a loopback host.
fn transport_allowed(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(v4)) => v4.is_loopback(),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6).to_canonical().is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Why a single sign-on failed: the reason code the page shows, and the detail for
/// the log.
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    detail: String,
}

impl Failure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// Something went wrong with the provider or its answers.
    fn provider(detail: impl Into<String>) -> Self {
        Self::new("failed", detail)
    }
}

/// The parts of the provider's discovery document portd uses.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// The provider as last fetched.
struct Provider {
    /// The issuer it was fetched for (the settings may change).
    for_issuer: String,
    discovery: Discovery,
    keys: Vec<Jwk>,
    fetched: Instant,
    keys_fetched: Instant,
}

/// The single sign-on client: an HTTP client for the provider and its cached
/// discovery document and keys. Lives in the [`AppState`].
pub struct Oidc {
    /// Made on first use: most servers never sign anyone in by single sign-on.
    http: OnceLock<reqwest::Client>,
    /// A client that skips proxies, for providers on loopback.
    direct: OnceLock<reqwest::Client>,
    provider: Mutex<Option<Provider>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Oidc")
    }
}

impl Default for Oidc {
    fn default() -> Self {
        Self::new()
    }
}

fn http_client(direct: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        // Every address the provider names is checked before it is called; a redirect
        // would skip that.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("portd/", env!("CARGO_PKG_VERSION")));
    let builder = if direct { builder.no_proxy() } else { builder };
    builder
        .build()
        .expect("a reqwest client with rustls builds")
}

impl Oidc {
    pub fn new() -> Self {
        Self {
            http: OnceLock::new(),
            direct: OnceLock::new(),
            provider: Mutex::new(None),
        }
    }

    fn client_for(&self, url: &Url) -> &reqwest::Client {
        if url.scheme() == "http" {
            self.direct.get_or_init(|| http_client(true))
        } else {
            self.http.get_or_init(|| http_client(false))
        }
    }

    /// GETs a JSON document from the provider, bounded.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        address: &str,
        bearer: Option<&str>,
    ) -> Result<T, Failure> {
        let url = checked_url(address)?;
        let mut request = self
            .client_for(&url)
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::provider(format!("GET {address}: {e}")))?;
        read_json(address, response).await
    }

    /// The provider's discovery document and keys, fetched when missing, stale, or
    /// for another issuer; with `refresh_keys`, the keys again (rate-limited).
    async fn provider(
        &self,
        settings: &OidcSettings,
        refresh_keys: bool,
    ) -> Result<(Discovery, Vec<Jwk>), Failure> {
        let mut cached = self.provider.lock().await;
        let fresh = cached.as_ref().is_some_and(|p| {
            p.for_issuer == settings.issuer && p.fetched.elapsed() < PROVIDER_CACHE_TTL
        });
        if !fresh {
            let address = format!(
                "{}/.well-known/openid-configuration",
                settings.issuer.trim_end_matches('/')
            );
            let discovery: Discovery = self.get_json(&address, None).await?;
            if discovery.issuer.trim_end_matches('/') != settings.issuer.trim_end_matches('/') {
                return Err(Failure::provider(format!(
                    "the discovery document names issuer {:?}, not the configured {:?}",
                    discovery.issuer, settings.issuer
                )));
            }
            for endpoint in [
                &discovery.authorization_endpoint,
                &discovery.token_endpoint,
                &discovery.jwks_uri,
            ]
            .into_iter()
            .chain(discovery.userinfo_endpoint.as_ref())
            {
                checked_url(endpoint)?;
            }
            let keys = self.keys(&discovery.jwks_uri).await?;
            let now = Instant::now();
            *cached = Some(Provider {
                for_issuer: settings.issuer.clone(),
                discovery,
                keys,
                fetched: now,
                keys_fetched: now,
            });
        } else if refresh_keys
            && let Some(provider) = cached.as_mut()
            && provider.keys_fetched.elapsed() >= JWKS_REFRESH_MIN_INTERVAL
        {
            provider.keys = self.keys(&provider.discovery.jwks_uri).await?;
            provider.keys_fetched = Instant::now();
        }
        let provider = cached.as_ref().expect("filled above");
        Ok((provider.discovery.clone(), provider.keys.clone()))
    }

    /// The provider's signing keys: those of its JWKS that portd can use (keys for
    /// encryption, symmetric keys and kinds it does not know are left out).
    async fn keys(&self, jwks_uri: &str) -> Result<Vec<Jwk>, Failure> {
        #[derive(Deserialize)]
        struct KeySet {
            keys: Vec<Value>,
        }
        let set: KeySet = self.get_json(jwks_uri, None).await?;
        Ok(set
            .keys
            .into_iter()
            .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
            .filter(|key| {
                !matches!(key.algorithm, AlgorithmParameters::OctetKey(_))
                    && !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption))
            })
            .collect())
    }
}

/// An address the provider gave, allowed only over https (or http on loopback).
fn checked_url(address: &str) -> Result<Url, Failure> {
    let url = Url::parse(address)
        .map_err(|e| Failure::provider(format!("{address:?} is not a URL: {e}")))?;
    if transport_allowed(&url) {
        Ok(url)
    } else {
        Err(Failure::provider(format!(
            "{address:?} is not https (plain http is allowed only on loopback)"
        )))
    }
}

/// Reads a JSON answer of at most [`MAX_PROVIDER_ANSWER_BYTES`]; a non-2xx status is a
/// failure (with the provider's `error` when it gave one).
async fn read_json<T: serde::de::DeserializeOwned>(
    address: &str,
    mut response: reqwest::Response,
) -> Result<T, Failure> {
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Failure::provider(format!("{address}: {e}")))?
    {
        if body.len() + chunk.len() > MAX_PROVIDER_ANSWER_BYTES {
            return Err(Failure::provider(format!(
                "{address} answered more than {MAX_PROVIDER_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let error = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Err(Failure::provider(format!(
            "{address} answered {status} {error}"
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Failure::provider(format!("{address} answered malformed JSON: {e}")))
}

/// What the flow cookie holds.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    /// Unix seconds after which the flow is refused.
    expires: i64,
}

impl Flow {
    /// `<base64url(json)>.<base64url(mac)>`.
    fn seal(&self, settings: &OidcSettings) -> String {
        let json = serde_json::to_vec(self).expect("the flow serializes");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = flow_mac(settings, &payload);
        format!("{payload}.{mac}")
    }

    fn open(sealed: &str, settings: &OidcSettings, now: i64) -> Option<Self> {
        let (payload, mac) = sealed.split_once('.')?;
        let expected = flow_mac(settings, payload);
        if !bool::from(mac.as_bytes().ct_eq(expected.as_bytes())) {
            return None;
        }
        let flow: Self = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (flow.expires > now).then_some(flow)
    }
}

fn flow_mac(settings: &OidcSettings, payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&settings.flow_key())
        .expect("HMAC accepts keys of any length");
    mac.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// 32 random bytes, base64url: states, nonces and PKCE verifiers (43 characters, as
/// RFC 7636 asks).
fn random_token(state: &AppState) -> String {
    let mut bytes = [0u8; 32];
    state.ids().fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn flow_cookie(value: &str, secure: bool, max_age: i64) -> HeaderValue {
    cookie_value(&format!(
        "{FLOW_COOKIE}={value}; Path=/ui/oidc; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    ))
}

/// A 303 to `location`, setting `cookies`.
fn redirect(location: &str, cookies: &[HeaderValue]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie.clone());
    }
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// Back to the sign-in page, saying why.
fn fail(failure: &Failure, secure: bool) -> Response {
    tracing::warn!(reason = failure.reason, detail = %failure.detail, "single sign-on failed");
    redirect(
        &format!("/?sso_error={}", failure.reason),
        &[flow_cookie("", secure, 0)],
    )
}

/// The single sign-on routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/oidc/login", get(login))
        .route(CALLBACK_PATH, get(callback))
}

async fn login(State(state): State<AppState>) -> Response {
    let web = state.web();
    let secure = web.secure_cookies();
    let Some(settings) = web.oidc.as_ref() else {
        return crate::error::ApiError::not_found("single sign-on (not configured)")
            .into_response();
    };
    let (discovery, _) = match state.oidc().provider(settings, false).await {
        Ok(found) => found,
        Err(failure) => return fail(&failure, secure),
    };
    let flow = Flow {
        state: random_token(&state),
        nonce: random_token(&state),
        verifier: random_token(&state),
        expires: state.clock().now().unix_seconds() + FLOW_LIFETIME_SECONDS,
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes()));
    let Ok(mut target) = Url::parse(&discovery.authorization_endpoint) else {
        return fail(&Failure::provider("bad authorization endpoint"), secure);
    };
    target
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", &settings.redirect_uri)
        .append_pair("scope", "openid email profile")
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    redirect(
        target.as_str(),
        &[flow_cookie(
            &flow.seal(settings),
            secure,
            FLOW_LIFETIME_SECONDS,
        )],
    )
}

async fn callback(
    State(state): State<AppState>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let web = state.web();
    let secure = web.secure_cookies();
    let Some(settings) = web.oidc.as_ref() else {
        return crate::error::ApiError::not_found("single sign-on (not configured)")
            .into_response();
    };
    match sign_in(&state, settings, &query, &headers).await {
        Ok(session_cookie) => redirect("/", &[flow_cookie("", secure, 0), session_cookie]),
        Err(failure) => fail(&failure, secure),
    }
}

/// The callback's checks, the code's exchange and the session; the session cookie.
async fn sign_in(
    state: &AppState,
    settings: &OidcSettings,
    query: &QueryParams,
    headers: &HeaderMap,
) -> Result<HeaderValue, Failure> {
    let now = state.clock().now().unix_seconds();
    let flow = cookie(headers, FLOW_COOKIE)
        .and_then(|sealed| Flow::open(sealed, settings, now))
        .ok_or_else(|| {
            Failure::new(
                "expired",
                "no valid flow cookie (expired, tampered with, or another browser)",
            )
        })?;
    let given_state = query.first("state").unwrap_or_default();
    if !bool::from(given_state.as_bytes().ct_eq(flow.state.as_bytes())) {
        return Err(Failure::new(
            "expired",
            "the state does not match the flow's",
        ));
    }
    if let Some(error) = query.first("error") {
        return Err(Failure::new(
            "denied",
            format!("the provider answered {error}"),
        ));
    }
    let code = query
        .first("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Failure::provider("the callback has no code"))?;
    let oidc = state.oidc();
    let (discovery, keys) = oidc.provider(settings, false).await?;
    // RFC 9207: a provider that names itself in the callback must name the right one.
    if let Some(iss) = query.first("iss")
        && iss != discovery.issuer
    {
        return Err(Failure::provider(format!(
            "the callback names issuer {iss:?}, not {:?}",
            discovery.issuer
        )));
    }
    let tokens = exchange(oidc, settings, &discovery, code, &flow.verifier).await?;
    let claims = match verify_id_token(&tokens.id_token, settings, &discovery, &keys, &flow) {
        Err(VerifyError::UnknownKey) => {
            let (_, keys) = oidc.provider(settings, true).await?;
            verify_id_token(&tokens.id_token, settings, &discovery, &keys, &flow)
        }
        other => other,
    }
    .map_err(|e| Failure::provider(format!("the ID token was refused: {e}")))?;

    let (email, verified) = match claims.email.clone() {
        Some(email) => (email, claims.email_verified.clone()),
        None => {
            let endpoint = discovery.userinfo_endpoint.as_deref().ok_or_else(|| {
                Failure::new(
                    "no_email",
                    "no email in the ID token and no userinfo endpoint",
                )
            })?;
            let access = tokens.access_token.as_deref().ok_or_else(|| {
                Failure::new("no_email", "no email in the ID token and no access token")
            })?;
            let info: UserInfo = oidc.get_json(endpoint, Some(access)).await?;
            if info.sub != claims.sub {
                return Err(Failure::provider("userinfo is about another subject"));
            }
            let email = info.email.ok_or_else(|| {
                Failure::new("no_email", "the provider gave no email for this account")
            })?;
            (email, info.email_verified)
        }
    };
    if verified_flag(verified.as_ref()) == Some(false) {
        return Err(Failure::new(
            "unverified_email",
            format!("the provider has not verified {email}"),
        ));
    }
    let email = Email::parse(&email)
        .map_err(|_| Failure::new("unknown_user", format!("{email:?} is not an address")))?;
    let users = state
        .services()
        .users_with_email(&email)
        .await
        .map_err(|e| Failure::provider(format!("looking the user up: {e}")))?;
    let user = users.into_iter().next().ok_or_else(|| {
        Failure::new(
            "unknown_user",
            format!("{email} is not a user of any organization"),
        )
    })?;
    let (cookie, _csrf) = session::begin(state, &user)
        .await
        .map_err(|e| Failure::provider(format!("starting the session: {e}")))?;
    tracing::info!(email = %user.email, org = %user.org_id, "signed in by single sign-on");
    Ok(cookie)
}

/// `true`, `false`, or (as some providers send it) `"true"` / `"false"`; `None` when
/// absent or anything else.
fn verified_flag(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: String,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Value>,
}

/// Trades the code (and the PKCE verifier) for tokens at the token endpoint,
/// authenticating with the client secret as the provider prefers (HTTP Basic unless
/// it only takes the secret in the form).
async fn exchange(
    oidc: &Oidc,
    settings: &OidcSettings,
    discovery: &Discovery,
    code: &str,
    verifier: &str,
) -> Result<TokenAnswer, Failure> {
    let url = checked_url(&discovery.token_endpoint)?;
    let basic = discovery
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_none_or(|methods| {
            methods.iter().any(|m| m == "client_secret_basic")
                || !methods.iter().any(|m| m == "client_secret_post")
        });
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", settings.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let mut request = oidc
        .client_for(&url)
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json");
    if basic {
        // RFC 6749 §2.3.1: both parts form-encoded before Basic.
        let encode =
            |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        request = request.basic_auth(
            encode(&settings.client_id),
            Some(encode(&settings.client_secret)),
        );
    } else {
        form.push(("client_id", settings.client_id.as_str()));
        form.push(("client_secret", settings.client_secret.as_str()));
    }
    let response = request
        .form(&form)
        .send()
        .await
        .map_err(|e| Failure::provider(format!("POST {}: {e}", discovery.token_endpoint)))?;
    read_json(&discovery.token_endpoint, response).await
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error("it is signed by a key the provider does not publish")]
    UnknownKey,
    #[error("{0}")]
    Refused(String),
}

/// Verifies the ID token: an accepted algorithm, a key of the provider's set, then
/// issuer, audience, `azp`, expiry (with leeway) and the flow's nonce.
fn verify_id_token(
    token: &str,
    settings: &OidcSettings,
    discovery: &Discovery,
    keys: &[Jwk],
    flow: &Flow,
) -> Result<IdClaims, VerifyError> {
    let refused = |m: String| VerifyError::Refused(m);
    let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.to_string()))?;
    if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
        return Err(refused(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let key = match &header.kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or(VerifyError::UnknownKey)?;
    let decoding = DecodingKey::from_jwk(key).map_err(|e| refused(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[discovery.issuer.as_str()]);
    validation.set_audience(&[settings.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = CLOCK_LEEWAY_SECONDS;
    let claims = jsonwebtoken::decode::<IdClaims>(token, &decoding, &validation)
        .map_err(|e| refused(e.to_string()))?
        .claims;
    let audiences = match &claims.aud {
        Some(Value::Array(list)) => list.len(),
        _ => 1,
    };
    // OIDC Core 3.1.3.7: with several audiences, or any `azp`, `azp` must be us.
    if (audiences > 1 || claims.azp.is_some())
        && claims.azp.as_deref() != Some(settings.client_id.as_str())
    {
        return Err(refused("azp is not this client".to_owned()));
    }
    let nonce = claims.nonce.as_deref().unwrap_or_default();
    if !bool::from(nonce.as_bytes().ct_eq(flow.nonce.as_bytes())) {
        return Err(refused("the nonce is not this sign-in's".to_owned()));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(issuer: &str) -> Result<OidcSettings, String> {
        OidcSettings::new(
            issuer,
            "portd".into(),
            "secret".into(),
            &Url::parse("https://portd.example").unwrap(),
        )
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        assert!(settings("https://id.example").is_ok());
        assert!(settings("http://127.0.0.1:8080").is_ok());
        assert!(settings("http://[::1]:8080").is_ok());
        assert!(settings("http://localhost:8080/realms/x").is_ok());
        assert!(settings("http://id.example").is_err());
        assert!(settings("http://10.0.0.1").is_err());
        assert!(settings("ftp://id.example").is_err());
        assert!(settings("https://id.example/?a=b").is_err());
        assert!(format!("{:?}", settings("https://id.example").unwrap()).contains("***"));
    }

    #[test]
    fn flow_cookies_are_sealed_and_expire() {
        let settings = settings("https://id.example").unwrap();
        let flow = Flow {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires: 1_000,
        };
        let sealed = flow.seal(&settings);
        let opened = Flow::open(&sealed, &settings, 999).expect("valid");
        assert_eq!((opened.state, opened.nonce), ("s".into(), "n".into()));
        assert!(Flow::open(&sealed, &settings, 1_000).is_none(), "expired");
        let other = OidcSettings::new(
            "https://id.example",
            "portd".into(),
            "another secret".into(),
            &Url::parse("https://portd.example").unwrap(),
        )
        .unwrap();
        assert!(Flow::open(&sealed, &other, 0).is_none(), "another key");
        let (payload, mac) = sealed.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Flow {
                expires: i64::MAX,
                ..flow
            })
            .unwrap(),
        );
        assert!(Flow::open(&format!("{forged}.{mac}"), &settings, 0).is_none());
        assert!(Flow::open(payload, &settings, 0).is_none());
    }

    #[test]
    fn email_verified_reads_booleans_and_their_strings() {
        assert_eq!(verified_flag(Some(&Value::Bool(false))), Some(false));
        assert_eq!(verified_flag(Some(&Value::from("true"))), Some(true));
        assert_eq!(verified_flag(None), None);
        assert_eq!(verified_flag(Some(&Value::from(1))), None);
    }

    #[test]
    fn symmetric_and_unsigned_tokens_are_refused_before_any_key_is_used() {
        let settings = settings("https://id.example").unwrap();
        let discovery = Discovery {
            issuer: "https://id.example".into(),
            authorization_endpoint: "https://id.example/auth".into(),
            token_endpoint: "https://id.example/token".into(),
            jwks_uri: "https://id.example/jwks".into(),
            userinfo_endpoint: None,
            token_endpoint_auth_methods_supported: None,
        };
        let flow = Flow {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires: i64::MAX,
        };
        // HS256 with the client secret: what an attacker who knows the secret would try.
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "https://id.example", "aud": "portd", "sub": "x", "exp": i64::MAX / 2, "nonce": "n"}),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let err = verify_id_token(&token, &settings, &discovery, &[], &flow).unwrap_err();
        assert!(err.to_string().contains("not accepted"), "{err}");
    }
}
