//! The load generator's client: one bare HTTP/1.1 keep-alive connection per worker
//! (hyper's connection API, no pool, no TLS), so that the client costs about as much
//! per request as the bare server it is compared against.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request of a load loop.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// A JSON body, sent with `content-type: application/json`.
    pub body: Option<Bytes>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: None,
        }
    }

    pub fn post(path: impl Into<String>, body: Bytes) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            body: Some(body),
        }
    }
}

/// A keep-alive connection to one server.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection that opens on first use (and reopens after an error).
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Result<Self> {
        let authorization = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .context("token is not a header value")?;
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            authorization,
            sender: None,
        })
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP/1 handshake")?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the server closes.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("just set");
        sender.ready().await.context("connection not ready")?;
        Ok(sender)
    }

    /// Sends `call` and reads the whole answer. A transport error drops the connection
    /// (the next call reconnects) and is returned.
    pub async fn send(&mut self, call: &Call) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(&call.path)
            .header(header::HOST, self.host.clone());
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if call.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(call.body.clone().unwrap_or_default()))?;
        let outcome = async {
            let sender = self.sender().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        if outcome.is_err() {
            self.sender = None;
        }
        outcome
    }
}
