//! Single sign-on against a real OpenID Provider: panva's `oidc-provider` (from npm,
//! pinned by `oidc/package-lock.json`) under node, started by the test with its
//! development login and consent pages, which the browser goes through.
//!
//! The provider is installed with `npm ci` into `target/oidc-provider` on the first
//! run (a few seconds), and again only when the lock file changes. Without node and
//! npm the test prints `skipped` and passes, unless `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use port_core::access::Role;
use port_server::oidc::OidcSettings;
use port_server::session::WebSettings;
use port_server::testing::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::browser::{Browser, ci, find_program, target_dir, visible};
use crate::people::{add_person, sign_out};
use crate::with_browser;

const CLIENT_ID: &str = "portd-ui";
const CLIENT_SECRET: &str = "a-client-secret-only-the-test-knows";

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui/oidc")
}

fn run(command: &mut std::process::Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `target/oidc-provider` with the fixture and its locked dependencies installed;
/// `Err` says what is missing.
fn install() -> Result<(PathBuf, PathBuf), String> {
    let node = find_program(&["node"], &[]).ok_or("no node binary")?;
    let npm = find_program(&["npm"], &[]).ok_or("no npm binary")?;
    let fixture = fixture_dir();
    let dir = target_dir().join("oidc-provider");
    let lock = std::fs::read_to_string(fixture.join("package-lock.json"))
        .map_err(|e| format!("reading the fixture's lock file: {e}"))?;
    let marker = dir.join("installed-package-lock.json");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for file in ["package.json", "package-lock.json", "provider.mjs"] {
        std::fs::copy(fixture.join(file), dir.join(file))
            .map_err(|e| format!("copying {file}: {e}"))?;
    }
    let installed = std::fs::read_to_string(&marker).is_ok_and(|had| had == lock)
        && dir.join("node_modules/oidc-provider").is_dir();
    if !installed {
        visible("ui: npm ci (oidc-provider) into target/oidc-provider");
        run(
            std::process::Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            "npm ci",
        )?;
        std::fs::write(&marker, lock).map_err(|e| format!("writing the marker: {e}"))?;
    }
    Ok((node, dir))
}

/// The provider's process (killed when dropped) and its issuer.
struct Provider {
    issuer: String,
    _child: Child,
    // Kept open: a closed pipe would fail the provider's next write to stdout.
    _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

async fn start_provider(node: &Path, dir: &Path, redirect_uri: &str, accounts: Value) -> Provider {
    let mut child = Command::new(node)
        .arg(dir.join("provider.mjs"))
        .current_dir(dir)
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_REDIRECT_URI", redirect_uri)
        .env("OIDC_ACCOUNTS", accounts.to_string())
        // It exits when its stdin closes: whenever this process ends.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Its warnings (development keys, in-memory adapter) would only be noise here.
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("provider.log")).expect("the provider's log"),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("node starts the provider");
    let stdout = child.stdout.take().expect("the provider's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .ok()
        .and_then(|line| line.ok().flatten())
        .unwrap_or_else(|| {
            panic!(
                "the provider did not start; its log:\n{}",
                std::fs::read_to_string(dir.join("provider.log")).unwrap_or_default()
            )
        });
    let started: Value = serde_json::from_str(&line).expect("a JSON line");
    Provider {
        issuer: started["issuer"].as_str().expect("the issuer").to_owned(),
        _child: child,
        _stdout: lines,
    }
}

/// Goes through the provider's development pages as `login`: its login form, then
/// its consent form when it asks.
async fn provider_sign_in(b: &Browser, provider: &Provider, login: &str) {
    b.click("#sso").await;
    b.wait_for(
        "the provider's login page",
        "return location.href.startsWith(arguments[0]) && document.querySelector('input[name=login]')",
        vec![json!(provider.issuer)],
    )
    .await;
    b.fill("input[name=login]", login).await;
    b.fill("input[name=password]", "anything").await;
    b.click("button[type=submit]").await;
    let landed = b
        .wait_for(
            "portd or the consent page",
            "if (!location.href.startsWith(arguments[0])) return 'portd'; \
             return document.querySelector('input[name=prompt][value=consent]') ? 'consent' : null",
            vec![json!(provider.issuer)],
        )
        .await;
    if landed == "consent" {
        b.click("button[type=submit]").await;
    }
    b.wait_for(
        "the way back to portd",
        "return !location.href.startsWith(arguments[0]) && document.readyState === 'complete'",
        vec![json!(provider.issuer)],
    )
    .await;
}

/// Forgets every cookie of 127.0.0.1 (the provider's session included: cookies do not
/// tell ports apart), so the next sign-in at the provider asks again.
async fn forget_cookies(b: &Browser) {
    b.client
        .delete_all_cookies()
        .await
        .expect("cookies deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_by_single_sign_on_with_a_real_openid_provider() {
    let installed = tokio::task::spawn_blocking(install)
        .await
        .expect("the installer ran");
    let (node, dir) = match installed {
        Ok(found) => found,
        Err(missing) => {
            assert!(
                !ci(),
                "CI is set but the single sign-on test cannot run: {missing}"
            );
            visible(&format!("skipped: oidc-provider not available ({missing})"));
            return;
        }
    };
    let server = TestServer::start().await.expect("portd starts");
    add_person(&server, "ada@acme.io", Role::Member, false).await;
    let public = url::Url::parse(&server.base_url).expect("the base URL");
    let provider = start_provider(
        &node,
        &dir,
        &format!("{}/ui/oidc/callback", server.base_url),
        json!({
            "ada": {"email": "Ada@acme.io", "email_verified": true, "name": "Ada"},
            "eve": {"email": "eve@elsewhere.io", "email_verified": true},
            "mallory": {"email": "ada@acme.io", "email_verified": false},
        }),
    )
    .await;
    server.state().set_web(WebSettings {
        public_url: Some(public.clone()),
        oidc: Some(
            OidcSettings::new(
                &provider.issuer,
                CLIENT_ID.to_owned(),
                CLIENT_SECRET.to_owned(),
                &public,
            )
            .expect("valid settings"),
        ),
    });

    // A callback that is not the end of a flow this browser started goes nowhere.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = http
        .get(format!(
            "{}/ui/oidc/callback?code=stolen&state=guessed",
            server.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    assert_eq!(forged.headers()["location"], "/?sso_error=expired");
    // The login route sends browsers to the provider with PKCE, state and nonce.
    let login = http
        .get(format!("{}/ui/oidc/login", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let target = url::Url::parse(login.headers()["location"].to_str().unwrap()).unwrap();
    assert!(target.as_str().starts_with(&provider.issuer), "{target}");
    let params: std::collections::HashMap<_, _> = target.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert_eq!(params["client_id"], CLIENT_ID);
    for key in ["state", "nonce"] {
        assert!(params[key].len() >= 43, "{key}: {params:?}");
    }
    let flow_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["portd_oidc=", "HttpOnly", "SameSite=Lax", "Path=/ui/oidc"] {
        assert!(flow_cookie.contains(attribute), "{flow_cookie}");
    }

    with_browser(&server, async |b: &Browser| {
        b.goto("/").await;
        b.wait_text("#sso").await;

        // An address that is no user of portd: no self-sign-up.
        provider_sign_in(b, &provider, "eve").await;
        let error = b.wait_text("#sso-error").await;
        assert!(error.contains("not a user"), "{error}");
        assert_eq!(b.path().await, "/?sso_error=unknown_user");

        // The right address, which the provider has not verified.
        forget_cookies(b).await;
        b.goto("/").await;
        provider_sign_in(b, &provider, "mallory").await;
        let error = b.wait_text("#sso-error").await;
        assert!(error.contains("not verified"), "{error}");

        // Ada: signed in, her session a cookie like a password sign-in's.
        forget_cookies(b).await;
        b.goto("/").await;
        provider_sign_in(b, &provider, "ada").await;
        b.wait_for(
            "the signed-in header",
            "const e = document.querySelector('#identity'); return e && !e.hidden && e.textContent === 'ada@acme.io'",
            vec![],
        )
        .await;
        assert_eq!(b.path().await, "/");
        let stored = b
            .js(
                "return [sessionStorage.length, document.cookie]",
                vec![],
            )
            .await;
        assert_eq!(stored, json!([0, ""]));
        // The session works for the API, CSRF token and all.
        let status = b
            .js(
                "return fetch('/v1/actions', {credentials: 'same-origin'}).then(r => r.status)",
                vec![],
            )
            .await;
        assert_eq!(status, 200);
        let user = server
            .state()
            .services()
            .get_user(&crate::people::machine(&server), "ada@acme.io")
            .await
            .expect("ada");
        assert_eq!(user.status, port_core::access::UserStatus::Active);
        sign_out(b).await;
    })
    .await;
    drop(provider);
    server.shutdown().await.expect("portd stops");
}
