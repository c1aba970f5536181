//! [`PortClient`], its builder, and the one request loop every call goes through:
//! authentication, retries, and mapping answers to values or [`ClientError`]s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::error::ClientError;
use crate::requests::Query;
use crate::retry::{RetryPolicy, is_transient};
use crate::types::AccessToken;
use crate::wire;

/// Default API base URL: a local portd.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:3000/v1";
/// Environment variable with the API base URL.
pub const ENV_API_URL: &str = "PORT_API_URL";
/// Environment variable with the client id.
pub const ENV_CLIENT_ID: &str = "PORT_CLIENT_ID";
/// Environment variable with the client secret.
pub const ENV_CLIENT_SECRET: &str = "PORT_CLIENT_SECRET";

/// Refresh a cached token this long before it expires.
const DEFAULT_TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Assumed lifetime of a token whose answer states none (Port's tokens live 3 hours).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3 * 60 * 60);
/// Longest error-body excerpt kept in a [`ClientError::Api`] message.
const MAX_ERROR_EXCERPT: usize = 512;

/// A string that never shows up in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the client authenticates.
#[derive(Clone, Debug)]
enum Credentials {
    /// Client credentials, traded for tokens at `POST /auth/access_token`.
    Client { id: String, secret: Secret },
    /// A fixed bearer token; a 401 cannot be repaired.
    Token(Secret),
}

/// Builds a [`PortClient`].
#[derive(Clone)]
pub struct PortClientBuilder {
    base_url: String,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    token: Option<Secret>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    token_margin: Duration,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for PortClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortClientBuilder")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for PortClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PortClientBuilder {
    /// A builder for [`DEFAULT_API_URL`] without credentials.
    pub fn new() -> Self {
        Self {
            base_url: DEFAULT_API_URL.to_owned(),
            client_id: None,
            client_secret: None,
            token: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("port-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            token_margin: DEFAULT_TOKEN_MARGIN,
            http: None,
        }
    }

    /// A builder from `PORT_API_URL`, `PORT_CLIENT_ID` and `PORT_CLIENT_SECRET`
    /// (unset or empty variables keep the defaults).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut builder = Self::new();
        if let Some(url) = get(ENV_API_URL) {
            builder.base_url = url;
        }
        builder.client_id = get(ENV_CLIENT_ID);
        builder.client_secret = get(ENV_CLIENT_SECRET).map(Secret);
        builder
    }

    /// The API base URL, e.g. `https://api.getport.io/v1` or `http://127.0.0.1:3000/v1`.
    /// A URL without a path (`https://api.port.io`) gets `/v1`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Client credentials, traded for access tokens as needed.
    pub fn credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.client_id = Some(client_id.into());
        self.client_secret = Some(Secret(client_secret.into()));
        self
    }

    /// A fixed access token, used instead of client credentials.
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }

    /// The whole retry policy.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Retries after the first attempt (default 4; 0 disables retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The first backoff (default 250 ms).
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.retry.base_delay = delay;
        self
    }

    /// The longest backoff (default 10 s).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.retry.max_delay = delay;
        self
    }

    /// The longest wait a `Retry-After` may impose (default 60 s).
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.retry.max_retry_after = delay;
        self
    }

    /// Per-attempt timeout of ordinary requests (default 30 s; log streams have none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connection timeout (default 10 s). Ignored with [`Self::http_client`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` (default `port-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Refresh cached tokens this long before they expire (default 60 s; at most half
    /// a token's lifetime is used).
    pub fn token_refresh_margin(mut self, margin: Duration) -> Self {
        self.token_margin = margin;
        self
    }

    /// A preconfigured reqwest client (proxies, custom CA roots …). It must not set a
    /// total timeout, or log streams would be cut.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client. Fails with [`ClientError::Config`] on a bad base URL or
    /// without credentials (neither a token nor both client id and secret).
    pub fn build(self) -> Result<PortClient, ClientError> {
        let base = normalise_base_url(&self.base_url)?;
        let credentials = match (self.token, self.client_id, self.client_secret) {
            (Some(token), _, _) => Credentials::Token(token),
            (None, Some(id), Some(secret)) => Credentials::Client { id, secret },
            (None, Some(_), None) => {
                return Err(ClientError::Config(format!(
                    "a client id is set but no client secret ({ENV_CLIENT_SECRET})"
                )));
            }
            (None, None, Some(_)) => {
                return Err(ClientError::Config(format!(
                    "a client secret is set but no client id ({ENV_CLIENT_ID})"
                )));
            }
            (None, None, None) => {
                return Err(ClientError::Config(format!(
                    "no credentials: set {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET}, or give an access token"
                )));
            }
        };
        let user_agent = HeaderValue::from_str(&self.user_agent).map_err(|_| {
            ClientError::Config("the user agent is not a valid header value".into())
        })?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .build()
                .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(PortClient {
            inner: Arc::new(Inner {
                http,
                base,
                credentials,
                retry: self.retry,
                timeout: self.timeout,
                user_agent,
                token_margin: self.token_margin,
                token: Mutex::new(None),
            }),
        })
    }
}

/// Accepts `…/v1`, `…/v1/` and a bare host (which gets `/v1`); the result ends with
/// `/` so that relative paths resolve below it.
fn normalise_base_url(raw: &str) -> Result<Url, ClientError> {
    let mut url = Url::parse(raw.trim())
        .map_err(|e| ClientError::Config(format!("invalid API URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ClientError::Config(format!(
            "invalid API URL {raw:?}: expected http(s)://host[:port][/v1]"
        )));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let path = if path.is_empty() {
        "/v1".to_owned()
    } else {
        path
    };
    url.set_path(&format!("{path}/"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    retry: RetryPolicy,
    timeout: Duration,
    user_agent: HeaderValue,
    token_margin: Duration,
    // A tokio mutex held across the token request: concurrent callers wait for one
    // fetch instead of each asking for a token.
    token: Mutex<Option<CachedToken>>,
}

/// A client of Port's API (portd or Port's cloud). Cheap to clone; clones share the
/// connection pool and the token cache.
///
/// # Authentication
/// Client credentials are traded for a token on first use; the token is cached until
/// shortly before it expires. A 401 answer drops the token, fetches a new one and
/// resends the request once; a second 401 is returned as [`ClientError::Unauthorized`].
///
/// # Retries
/// Connection failures and 429/502/503/504 answers are retried with exponential
/// backoff and jitter, waiting for `Retry-After` when the server sends it, up to
/// [`RetryPolicy::max_retries`] times, for requests that are safe to repeat:
/// GET, PUT and DELETE; run and secret PATCHes (repeating one changes nothing more);
/// execute, which carries an `Idempotency-Key`; the token request and searches. Other
/// POSTs and PATCHes (adding a log line, approving, claiming runs, redelivering,
/// creating a secret) are retried only when the server cannot have acted on them: a
/// failed connection attempt or a 429.
#[derive(Clone)]
pub struct PortClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for PortClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortClient")
            .field("base_url", &self.inner.base.as_str())
            .field("credentials", &self.inner.credentials)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Whether repeating a request is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Retry on any transient failure.
    Safe,
    /// Retry only when the server certainly did not act (connect failure, 429).
    Unsafe,
}

/// One prepared request, sent as many times as the retry policy allows.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) repeat: Repeat,
    pub(crate) authenticated: bool,
    pub(crate) headers: HeaderMap,
    /// Ordinary calls have a per-attempt timeout; streams must not.
    pub(crate) timeout: bool,
}

impl Call {
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.url.path())
    }
}

/// A successful answer, read whole.
pub(crate) struct Answer {
    pub(crate) body: Value,
    pub(crate) context: String,
}

/// What one exchange produced.
enum Received {
    Whole(StatusCode, bytes::Bytes),
    Streaming(reqwest::Response),
}

impl Answer {
    /// Decodes the value under `key`.
    pub(crate) fn take<T: DeserializeOwned>(mut self, key: &str) -> Result<T, ClientError> {
        wire::take(&mut self.body, key).map_err(|m| ClientError::decode(&self.context, m))
    }

    /// Decodes the value under `key`, or the default when it is absent or null.
    pub(crate) fn take_or_default<T: DeserializeOwned + Default>(
        mut self,
        key: &str,
    ) -> Result<T, ClientError> {
        wire::take_or_default(&mut self.body, key)
            .map_err(|m| ClientError::decode(&self.context, m))
    }

    /// Decodes the whole body.
    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        serde_json::from_value(self.body).map_err(|e| ClientError::decode(&self.context, e))
    }
}

impl PortClient {
    /// A builder; see [`PortClientBuilder`].
    pub fn builder() -> PortClientBuilder {
        PortClientBuilder::new()
    }

    /// A client configured from `PORT_API_URL` (default [`DEFAULT_API_URL`]),
    /// `PORT_CLIENT_ID` and `PORT_CLIENT_SECRET`.
    pub fn from_env() -> Result<Self, ClientError> {
        PortClientBuilder::from_env().build()
    }

    /// The API base URL, ending with `/` (e.g. `http://127.0.0.1:3000/v1/`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The current access token: the cached one, or a new one from
    /// `POST /auth/access_token`.
    pub async fn access_token(&self) -> Result<AccessToken, ClientError> {
        match &self.inner.credentials {
            Credentials::Token(token) => Ok(AccessToken {
                token: token.0.clone(),
                expires_in: None,
            }),
            Credentials::Client { .. } => {
                let mut cache = self.inner.token.lock().await;
                if let Some(cached) = cache.as_ref()
                    && Instant::now() < cached.refresh_at
                {
                    return Ok(AccessToken {
                        token: cached.token.0.clone(),
                        expires_in: None,
                    });
                }
                let (token, expires_in) = self.fetch_token().await?;
                *cache = Some(CachedToken {
                    token: Secret(token.clone()),
                    refresh_at: Instant::now() + self.refresh_after(expires_in),
                });
                Ok(AccessToken {
                    token,
                    expires_in: Some(expires_in),
                })
            }
        }
    }

    /// How long a token is used: its lifetime less the margin, the margin being at most
    /// half the lifetime so that short-lived tokens are still used at all.
    fn refresh_after(&self, expires_in: u64) -> Duration {
        let lifetime = if expires_in == 0 {
            DEFAULT_TOKEN_LIFETIME
        } else {
            Duration::from_secs(expires_in)
        };
        lifetime - self.inner.token_margin.min(lifetime / 2)
    }

    async fn fetch_token(&self) -> Result<(String, u64), ClientError> {
        let Credentials::Client { id, secret } = &self.inner.credentials else {
            return Err(ClientError::Config("no client credentials".into()));
        };
        let body = json!({ "clientId": id, "clientSecret": secret.0 });
        let call = Call {
            method: Method::POST,
            url: self.url(&["auth", "access_token"], &[]),
            body: Some(serde_json::to_vec(&body).unwrap_or_default()),
            // Asking again for a token is harmless: the server hands out the same one.
            repeat: Repeat::Safe,
            authenticated: false,
            headers: HeaderMap::new(),
            timeout: true,
        };
        // Boxed: sending may fetch a token, which sends (this unauthenticated call).
        let mut answer = Box::pin(self.send(&call)).await?;
        // Decoded by hand: a serde error message could quote the token.
        let token = match answer.body.get_mut("accessToken").map(Value::take) {
            Some(Value::String(token)) if !token.is_empty() => token,
            _ => {
                return Err(ClientError::decode(
                    answer.context,
                    "no `accessToken` string in the token answer",
                ));
            }
        };
        let expires_in = answer
            .body
            .get("expiresIn")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok((token, expires_in))
    }

    /// Forgets `used` if it is still the cached token (another request may already have
    /// replaced it).
    async fn invalidate_token(&self, used: &str) {
        let mut cache = self.inner.token.lock().await;
        if cache.as_ref().is_some_and(|c| c.token.0 == used) {
            *cache = None;
        }
    }

    /// The URL of `segments` below the base, each segment percent-encoded (so an
    /// identifier with `/` stays one segment), plus `query`.
    pub(crate) fn url(&self, segments: &[&str], query: &[(String, String)]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // The base ends with `/`, which leaves an empty last segment.
            path.pop_if_empty();
            path.extend(segments);
        }
        append_query(&mut url, query);
        url
    }

    /// A call with a JSON body (or none).
    pub(crate) fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &Query,
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Call {
        Call {
            method,
            url: self.url(segments, query),
            // Serializing a `Value` cannot fail: its keys are strings.
            body: body.map(|b| serde_json::to_vec(b).unwrap_or_default()),
            repeat,
            authenticated: true,
            headers: HeaderMap::new(),
            timeout: true,
        }
    }

    /// Sends a call and reads its answer, retrying as the policy allows.
    pub(crate) async fn send(&self, call: &Call) -> Result<Answer, ClientError> {
        let context = call.describe();
        let Received::Whole(status, bytes) = self.exchange(call, true).await? else {
            return Err(ClientError::decode(&context, "the answer was not read"));
        };
        if !status.is_success() {
            return Err(error_from(status, &bytes));
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::decode(&context, e))?
        };
        Ok(Answer { body, context })
    }

    /// Sends a call and returns the response with its body unread (for streams).
    pub(crate) async fn send_streaming(
        &self,
        call: &Call,
    ) -> Result<reqwest::Response, ClientError> {
        match self.exchange(call, false).await? {
            Received::Streaming(response) => Ok(response),
            Received::Whole(status, bytes) => Err(error_from(status, &bytes)),
        }
    }

    /// Sends a call, retrying transport failures and transient statuses and repairing
    /// one 401; returns the final answer, successful or not.
    async fn exchange(&self, call: &Call, read_body: bool) -> Result<Received, ClientError> {
        let policy = &self.inner.retry;
        let mut retries = 0u32;
        let mut refreshed = false;
        loop {
            let token = if call.authenticated {
                Some(self.access_token().await?)
            } else {
                None
            };
            let mut request = self
                .inner
                .http
                .request(call.method.clone(), call.url.clone())
                .header(reqwest::header::USER_AGENT, self.inner.user_agent.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .headers(call.headers.clone());
            if call.timeout {
                request = request.timeout(self.inner.timeout);
            }
            if let Some(token) = &token {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        ClientError::Config("the access token is not a valid header value".into())
                    })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            if let Some(body) = &call.body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    // A failed connection never reached the server: safe to repeat for
                    // any request. Other failures may have been acted on.
                    let repeatable = e.is_connect() || call.repeat == Repeat::Safe;
                    if repeatable && retries < policy.max_retries {
                        let delay = policy.backoff(retries);
                        tracing::debug!(request = %call.describe(), error = %e, retry = retries + 1, ?delay, "retrying after a transport error");
                        retries += 1;
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(ClientError::Transport(e));
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && let Some(token) = &token
                && !refreshed
                && matches!(self.inner.credentials, Credentials::Client { .. })
            {
                // The server may expire a token the client still believes valid: get a
                // new one and resend, once.
                tracing::debug!(request = %call.describe(), "401: refreshing the access token");
                refreshed = true;
                self.invalidate_token(token.expose()).await;
                continue;
            }
            // A 429 means the request was refused before being processed.
            let repeatable = call.repeat == Repeat::Safe || status == StatusCode::TOO_MANY_REQUESTS;
            if is_transient(status) && repeatable && retries < policy.max_retries {
                let delay = policy
                    .server_delay(status, response.headers())
                    .unwrap_or_else(|| policy.backoff(retries));
                tracing::debug!(request = %call.describe(), %status, retry = retries + 1, ?delay, "retrying a transient answer");
                retries += 1;
                tokio::time::sleep(delay).await;
                continue;
            }
            if status.is_success() && !read_body {
                return Ok(Received::Streaming(response));
            }
            match response.bytes().await {
                Ok(bytes) => return Ok(Received::Whole(status, bytes)),
                Err(e) if call.repeat == Repeat::Safe && retries < policy.max_retries => {
                    let delay = policy.backoff(retries);
                    tracing::debug!(request = %call.describe(), error = %e, retry = retries + 1, ?delay, "retrying after the answer broke off");
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(ClientError::Transport(e)),
            }
        }
    }

    /// Sends any request and returns the JSON answer (`null` for an empty body), with
    /// the client's authentication, retries and error mapping: the escape hatch for
    /// routes this client has no method for.
    ///
    /// `path` is relative to the base URL (`actions/runs`); a leading `/` or `/v1/` is
    /// accepted too. It is used as written: percent-encode identifiers yourself.
    /// GET, HEAD, PUT, DELETE and OPTIONS are treated as safe to repeat; other methods
    /// are retried only when the server cannot have acted on them.
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let relative = path.trim_start_matches('/');
        let relative = match relative.strip_prefix("v1/") {
            Some(rest) if self.inner.base.path().ends_with("/v1/") => rest,
            _ if relative == "v1" && self.inner.base.path().ends_with("/v1/") => "",
            _ => relative,
        };
        let mut url = self
            .inner
            .base
            // `./` keeps a first segment with a colon from reading as a URL scheme.
            .join(&format!("./{relative}"))
            .map_err(|e| ClientError::Config(format!("invalid path {path:?}: {e}")))?;
        let pairs: Query = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        append_query(&mut url, &pairs);
        let repeat = if matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ) {
            Repeat::Safe
        } else {
            Repeat::Unsafe
        };
        let call = Call {
            method,
            url,
            body: body.map(|b| serde_json::to_vec(&b).unwrap_or_default()),
            repeat,
            authenticated: true,
            headers: HeaderMap::new(),
            timeout: true,
        };
        Ok(self.send(&call).await?.body)
    }

    /// Adds a header to a call (for `Idempotency-Key` and similar).
    pub(crate) fn with_header(
        mut call: Call,
        name: &'static str,
        value: &str,
    ) -> Result<Call, ClientError> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| ClientError::Config(format!("invalid {name} header value")))?;
        call.headers.insert(HeaderName::from_static(name), value);
        Ok(call)
    }
}

fn append_query(url: &mut Url, query: &[(String, String)]) {
    if query.is_empty() {
        return;
    }
    let mut pairs = url.query_pairs_mut();
    for (key, value) in query {
        pairs.append_pair(key, value);
    }
}

/// Maps a non-2xx answer to a [`ClientError`], reading Port's error envelope when the
/// body is one.
pub(crate) fn error_from(status: StatusCode, bytes: &[u8]) -> ClientError {
    let (error, message, body) = match serde_json::from_slice::<Value>(bytes) {
        Ok(body) => {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_owned());
            (error, message, body)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let mut excerpt: String = text.trim().chars().take(MAX_ERROR_EXCERPT).collect();
            if excerpt.is_empty() {
                excerpt = status.canonical_reason().unwrap_or_default().to_owned();
            }
            (String::new(), excerpt, Value::String(text.into_owned()))
        }
    };
    if status == StatusCode::UNAUTHORIZED {
        ClientError::Unauthorized {
            error,
            message,
            body: Box::new(body),
        }
    } else {
        ClientError::Api {
            status: status.as_u16(),
            error,
            message,
            body: Box::new(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised() {
        for (given, expected) in [
            ("http://127.0.0.1:3000/v1", "http://127.0.0.1:3000/v1/"),
            ("http://127.0.0.1:3000/v1/", "http://127.0.0.1:3000/v1/"),
            ("https://api.getport.io", "https://api.getport.io/v1/"),
            ("https://api.port.io/", "https://api.port.io/v1/"),
            (
                "https://proxy.example/port/v1?x=1",
                "https://proxy.example/port/v1/",
            ),
        ] {
            assert_eq!(
                normalise_base_url(given).unwrap().as_str(),
                expected,
                "{given}"
            );
        }
        assert!(normalise_base_url("ftp://x").is_err());
        assert!(normalise_base_url("not a url").is_err());
    }

    #[test]
    fn identifiers_stay_one_segment() {
        let client = PortClient::builder().access_token("t").build().unwrap();
        let url = client.url(
            &["blueprints", "a/b", "entities", "x y%"],
            &[("run_id".into(), "r_1".into())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:3000/v1/blueprints/a%2Fb/entities/x%20y%25?run_id=r_1"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let builder = PortClient::builder().credentials("my-id", "my-secret");
        assert!(!format!("{builder:?}").contains("my-secret"));
        let client = builder.build().unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("my-id"));
        assert!(!shown.contains("my-secret"));
        let token_client = PortClient::builder()
            .access_token("tok-123")
            .build()
            .unwrap();
        assert!(!format!("{token_client:?}").contains("tok-123"));
    }

    #[test]
    fn configuration_comes_from_the_environment() {
        let env = |name: &str| match name {
            ENV_API_URL => Some("https://api.getport.io/v1".to_owned()),
            ENV_CLIENT_ID => Some("id".to_owned()),
            ENV_CLIENT_SECRET => Some("secret".to_owned()),
            _ => None,
        };
        let client = PortClientBuilder::from_lookup(env).build().unwrap();
        assert_eq!(client.base_url().as_str(), "https://api.getport.io/v1/");
        let defaults =
            PortClientBuilder::from_lookup(|name| (name != ENV_API_URL).then(|| "x".to_owned()))
                .build()
                .unwrap();
        assert_eq!(defaults.base_url().as_str(), "http://127.0.0.1:3000/v1/");
        let missing =
            PortClientBuilder::from_lookup(|name| (name == ENV_CLIENT_ID).then(|| "x".to_owned()))
                .build()
                .unwrap_err();
        assert!(matches!(missing, ClientError::Config(m) if m.contains(ENV_CLIENT_SECRET)));
        assert!(PortClientBuilder::from_lookup(|_| None).build().is_err());
    }

    #[test]
    fn error_bodies_map_to_typed_errors() {
        let api = error_from(
            StatusCode::NOT_FOUND,
            br#"{"ok":false,"error":"not_found","message":"run r_x was not found"}"#,
        );
        assert_eq!(api.identifier(), Some("not_found"));
        assert!(api.is_not_found());
        let html = error_from(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(
            matches!(&html, ClientError::Api { status: 502, error, message, .. } if error.is_empty() && message == "<html>bad gateway</html>")
        );
        let unauthorized = error_from(StatusCode::UNAUTHORIZED, b"");
        assert!(
            matches!(unauthorized, ClientError::Unauthorized { message, .. } if message == "Unauthorized")
        );
    }

    #[tokio::test]
    async fn token_lifetimes_keep_a_margin() {
        let client = PortClient::builder().credentials("a", "b").build().unwrap();
        assert_eq!(client.refresh_after(10_800), Duration::from_secs(10_740));
        assert_eq!(client.refresh_after(60), Duration::from_secs(30));
        assert_eq!(
            client.refresh_after(0),
            DEFAULT_TOKEN_LIFETIME - DEFAULT_TOKEN_MARGIN
        );
    }
}
