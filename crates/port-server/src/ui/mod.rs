//! The web UI: a small single-page app (hand-written HTML, CSS and JavaScript modules,
//! embedded in the binary) that talks to the same API as every other client. People
//! sign in with their e-mail address and password or by single sign-on (a session
//! cookie and its CSRF token: [`crate::session`], [`crate::oidc`]); operators may
//! still sign in with a client id and secret (a token in the tab's session storage).
//!
//! - `/`, `/runs/{id}`, `/actions`, `/actions/{id}`, `/actions/{id}/permissions`,
//!   `/automations`, `/automations/{id}`, `/users` and `/teams` serve the app shell;
//!   the page's own router draws the view from the path. The page offers only what
//!   the signed-in person may do (the actions they may run, approve and decline to
//!   approvers); the API decides.
//! - `/assets/{*path}` serves the embedded files, with their content types and an
//!   `ETag` so browsers revalidate cheaply.
//!
//! None of these routes needs to be signed in. Every response carries a strict
//! `Content-Security-Policy` (same origin only, no inline scripts or styles), so the
//! page can neither run injected code nor reach anything but this server.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// The policy of every UI response: this origin only, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The paths that serve the app shell (the page's router picks the view).
pub const PAGE_ROUTES: &[&str] = &[
    "/",
    "/runs/{run_id}",
    "/actions",
    "/actions/{action_id}",
    "/actions/{action_id}/permissions",
    "/automations",
    "/automations/{action_id}",
    "/users",
    "/teams",
];

/// The prefix of the embedded files.
pub const ASSETS_PREFIX: &str = "/assets/";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path under [`ASSETS_PREFIX`].
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../../assets/", $path)),
        }
    };
}

/// The app shell, served for every page route.
pub const SHELL: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Every file under `/assets/`.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("markdown.js", JS),
    asset!("views/access.js", JS),
    asset!("views/actions.js", JS),
    asset!("views/admin.js", JS),
    asset!("views/automations.js", JS),
    asset!("views/run.js", JS),
    asset!("views/run_rows.js", JS),
    asset!("views/runs.js", JS),
    asset!("views/signin.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Strong validators of the embedded files, by path (the shell under `""`).
static ETAGS: LazyLock<HashMap<&'static str, HeaderValue>> = LazyLock::new(|| {
    std::iter::once(("", SHELL.body))
        .chain(ASSETS.iter().map(|asset| (asset.path, asset.body)))
        .map(|(path, body)| (path, etag_of(body)))
        .collect()
});

fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The asset at `path` (relative to [`ASSETS_PREFIX`]).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The UI's routes, to merge into the API router. They take no bearer token.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for path in PAGE_ROUTES {
        router = router.route(path, get(shell));
    }
    router.route("/assets/{*path}", get(serve_asset))
}

async fn shell(headers: HeaderMap) -> Response {
    respond(&SHELL, ETAGS.get(""), &headers)
}

async fn serve_asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match asset(&path) {
        Some(found) => respond(found, ETAGS.get(found.path), &headers),
        None => ApiError::not_found(format!("asset {path}")).into_response(),
    }
}

/// The headers every UI response carries.
fn protect(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidated on every load (cheaply, by ETag), so an upgraded portd is picked up.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn respond(asset: &Asset, etag: Option<&HeaderValue>, request: &HeaderMap) -> Response {
    let unchanged = etag.is_some_and(|etag| {
        request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|candidate| {
                let candidate = candidate.trim();
                candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == etag.as_bytes()
            })
    });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
            asset.body,
        )
            .into_response()
    };
    if let Some(etag) = etag {
        response.headers_mut().insert(ETAG, etag.clone());
    }
    protect(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_once_and_typed_by_its_extension() {
        let mut seen = std::collections::HashSet::new();
        for asset in ASSETS {
            assert!(seen.insert(asset.path), "{} is listed twice", asset.path);
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            let expected = match asset.path.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                other => panic!("unexpected extension {other:?}"),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    /// Every module the page imports, and every file the shell links, is embedded:
    /// a missing one would only show up as a blank page.
    #[test]
    fn every_referenced_file_is_embedded() {
        let mut references = Vec::new();
        let shell = std::str::from_utf8(SHELL.body).unwrap();
        for attribute in ["src=\"/assets/", "href=\"/assets/"] {
            for (start, _) in shell.match_indices(attribute) {
                let rest = &shell[start + attribute.len()..];
                references.push(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            let dir = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            for (start, _) in text.match_indices("} from '") {
                let rest = &text[start + "} from '".len()..];
                let quoted = &rest[..rest.find('\'').unwrap()];
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for segment in quoted.split('/') {
                    match segment {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        other => parts.push(other),
                    }
                }
                references.push(parts.join("/"));
            }
        }
        assert!(references.len() > 5, "{references:?}");
        for reference in references {
            assert!(asset(&reference).is_some(), "{reference} is not embedded");
        }
    }

    #[test]
    fn nothing_inline_and_nothing_third_party() {
        let shell = std::str::from_utf8(SHELL.body).unwrap();
        assert!(!shell.contains("<script>"), "inline script in the shell");
        assert!(!shell.contains("<style"), "inline style in the shell");
        assert!(
            !shell.contains(" style="),
            "inline style attribute in the shell"
        );
        for asset in std::iter::once(&SHELL).chain(ASSETS) {
            // An SVG names its XML namespace by URL; that is not a request.
            let text = std::str::from_utf8(asset.body)
                .unwrap()
                .replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for needle in ["http://", "https://", "//fonts.", "@import", "eval("] {
                assert!(!text.contains(needle), "{} contains {needle}", asset.path);
            }
        }
    }

    #[test]
    fn etags_are_quoted_and_distinct() {
        assert_eq!(ETAGS.len(), ASSETS.len() + 1);
        for etag in ETAGS.values() {
            let text = etag.to_str().unwrap();
            assert!(text.starts_with('"') && text.ends_with('"'), "{text}");
        }
    }
}
