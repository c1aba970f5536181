//! A small client of portd's API that keeps what the oracle needs: the status, the
//! headers and the JSON body of every answer, and transport failures as values.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// How long one request may take before it counts as unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body if the status is `status`, else an error showing the answer.
    pub fn expect(self, status: u16, what: &str) -> Result<Value> {
        if self.status != status {
            bail!(
                "{what}: expected {status}, got {}: {}",
                self.status,
                self.body
            );
        }
        Ok(self.body)
    }
}

/// The API of one portd with an access token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `http://host:port`.
    pub base_url: String,
    pub token: String,
}

impl Api {
    /// A client with no token yet.
    pub fn anonymous(base_url: &str) -> Result<Self> {
        Self::anonymous_with(base_url, None)
    }

    /// A client with no token yet whose connections come from `source` (any of
    /// 127.0.0.0/8 works on loopback), so that portd sees another address.
    pub fn anonymous_from(base_url: &str, source: std::net::IpAddr) -> Result<Self> {
        Self::anonymous_with(base_url, Some(source))
    }

    fn anonymous_with(base_url: &str, source: Option<std::net::IpAddr>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(16)
            .local_address(source)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: String::new(),
        })
    }

    /// Trades credentials for a token.
    pub async fn login(base_url: &str, client_id: &str, client_secret: &str) -> Result<Self> {
        let mut api = Self::anonymous(base_url)?;
        let body = api
            .send(
                Method::POST,
                "/v1/auth/access_token",
                Some(&json!({ "clientId": client_id, "clientSecret": client_secret })),
                &[],
            )
            .await
            .context("POST /v1/auth/access_token")?
            .expect(200, "login")?;
        api.token = body["accessToken"]
            .as_str()
            .context("the login answer has no accessToken")?
            .to_owned();
        Ok(api)
    }

    /// Sends a request with the token (if any) and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.send(Method::GET, path, None, &[])
            .await
            .with_context(|| format!("GET {path}"))
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.send(Method::POST, path, Some(body), &[])
            .await
            .with_context(|| format!("POST {path}"))
    }
}
