//! A scripted HTTP server: each test decides the answers, the server records requests.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use port_client::{PortClient, PortClientBuilder};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn bearer(&self) -> Option<String> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
    }

    /// The value of one query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

enum ReplyBody {
    Bytes(Vec<u8>),
    /// Sent piece by piece, each after its delay.
    Chunks(Vec<(Duration, String)>),
}

/// A scripted answer.
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: ReplyBody::Bytes(body.to_string().into_bytes()),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: ReplyBody::Bytes(body.as_bytes().to_vec()),
        }
    }

    /// Port's error envelope.
    pub fn error(status: u16, error: &str, message: &str) -> Self {
        Self::json(
            status,
            json!({ "ok": false, "error": error, "message": message }),
        )
    }

    /// An event stream sent in pieces: `(delay in ms, text)`.
    pub fn sse(chunks: &[(u64, &str)]) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: ReplyBody::Chunks(
                chunks
                    .iter()
                    .map(|(ms, text)| (Duration::from_millis(*ms), (*text).to_owned()))
                    .collect(),
            ),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `tok-<n>`, valid for 3 hours.
    pub fn token(n: usize) -> Self {
        Self::json(
            200,
            json!({ "ok": true, "accessToken": format!("tok-{n}"), "expiresIn": 10800, "tokenType": "Bearer" }),
        )
    }

    fn into_response(self) -> Response {
        let body = match self.body {
            ReplyBody::Bytes(bytes) => Body::from(bytes),
            ReplyBody::Chunks(chunks) => Body::from_stream(futures::stream::iter(chunks).then(
                |(delay, text)| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Bytes::from(text))
                },
            )),
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(self.status).expect("a valid status");
        for (name, value) in self.headers {
            response.headers_mut().insert(
                axum::http::HeaderName::try_from(name).expect("a valid header name"),
                value.parse().expect("a valid header value"),
            );
        }
        response
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Option<Reply> + Send + Sync;

#[derive(Clone)]
struct Shared {
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<Recorded>>>,
}

/// The server. Its handler gets each request and how many earlier requests had the same
/// method and path; `None` means the default: a token `tok-<n>` on the token route,
/// 404 `not_found` elsewhere.
pub struct ScriptServer {
    pub api_url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let nth = {
        let mut log = shared.log.lock().expect("the log lock");
        let nth = log
            .iter()
            .filter(|r| r.method == recorded.method && r.path == recorded.path)
            .count();
        log.push(recorded.clone());
        nth
    };
    let reply = (shared.handler)(&recorded, nth).unwrap_or_else(|| {
        if recorded.method == "POST" && recorded.path == "/v1/auth/access_token" {
            Reply::token(nth)
        } else {
            Reply::error(
                404,
                "not_found",
                &format!("route {} was not found", recorded.path),
            )
        }
    });
    reply.into_response()
}

impl ScriptServer {
    pub async fn start(
        handler: impl Fn(&Recorded, usize) -> Option<Reply> + Send + Sync + 'static,
    ) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            handler: Arc::new(handler),
            log: log.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("a local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the script server runs");
        });
        Self {
            api_url: format!("http://{address}/v1"),
            log,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("the log lock").clone()
    }

    /// The requests with this method and path.
    pub fn to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    pub fn token_requests(&self) -> usize {
        self.to("POST", "/v1/auth/access_token").len()
    }

    /// A builder with credentials and quick retries.
    pub fn builder(&self) -> PortClientBuilder {
        PortClient::builder()
            .base_url(&self.api_url)
            .credentials("client-id", "client-secret")
            .base_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(50))
            .timeout(Duration::from_secs(10))
    }

    pub fn client(&self) -> PortClient {
        self.builder().build().expect("a valid client")
    }
}

/// A v2 run as portd renders it.
pub fn run_json(id: &str, status: &str) -> Value {
    let ended = matches!(status, "SUCCESS" | "FAILURE" | "DECLINED");
    let mut run = json!({
        "id": id,
        "status": status,
        "statusLabel": null,
        "action": { "identifier": "deploy", "title": "Deploy", "icon": null, "deleted": false },
        "properties": {},
        "source": "API",
        "requiredApproval": false,
        "approval": null,
        "link": [],
        "payload": null,
        "createdAt": "2024-08-15T12:30:00.000Z",
        "updatedAt": "2024-08-15T12:30:00.000Z",
        "createdBy": "client-id",
        "updatedBy": "client-id",
    });
    if ended {
        run["endedAt"] = json!("2024-08-15T12:31:00.000Z");
    }
    run
}

/// A run log as portd renders it.
pub fn log_json(run_id: &str, n: usize) -> Value {
    json!({
        "id": format!("log_{n:016}"),
        "runId": run_id,
        "message": format!("line {n}"),
        "createdAt": "2024-08-15T12:30:01.000Z",
        "createdBy": "client-id",
    })
}
