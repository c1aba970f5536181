//! Headless Chromium driven over WebDriver: `chromedriver` on a free loopback port,
//! started here and killed on drop, and a `fantoccini` session with helpers that wait
//! for the page.
//!
//! Without Chromium or chromedriver the tests print `skipped: chromium not installed`
//! and pass, unless `CI` is set: CI installs both (`.ci/run`), so there a missing
//! browser fails.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long a wait for something the page should show may last.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The laptop-sized window the tests use.
pub const LAPTOP: (u32, u32) = (1280, 900);

/// Writes straight to stderr: libtest captures the output of passing tests, and this
/// line is meant for CI logs.
pub fn visible(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn executable(path: &Path) -> bool {
    path.is_file()
}

pub fn find_program(names: &[&str], extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let from_path = names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)));
    extra
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|candidate| executable(candidate))
}

/// A program named by the environment variable `var`, else the first one found.
fn locate(var: &str, names: &[&str], extra: &[&str]) -> Result<PathBuf, String> {
    match std::env::var_os(var) {
        Some(given) if executable(Path::new(&given)) => Ok(PathBuf::from(given)),
        Some(given) => Err(format!("{var}={} is not a file", given.display())),
        None => find_program(names, extra).ok_or_else(|| format!("no {} binary", names[0])),
    }
}

/// The browser and its driver: `PORTD_CHROMIUM` / `PORTD_CHROMEDRIVER`, else Debian's
/// `chromium` and `chromium-driver` packages.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    // The real binary, not Debian's wrapper script, when it is there.
    let chromium = locate(
        "PORTD_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
        &["/usr/lib/chromium/chromium"],
    )?;
    let driver = locate(
        "PORTD_CHROMEDRIVER",
        &["chromedriver"],
        &["/usr/lib/chromium/chromedriver"],
    )?;
    Ok((chromium, driver))
}

/// A running chromedriver, killed (and waited for) when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Driver {
    async fn start(path: &Path, log: &Path) -> Self {
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("the driver's log file");
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let driver = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }
}

/// A browser session. Call [`Browser::close`] at the end; dropping it without (after a
/// panic) still kills the driver.
pub struct Browser {
    pub client: Client,
    pub base_url: String,
    // Dropped after the client: the driver, then the profile directory.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or returns `None` (after
    /// printing why) when they are not installed and `CI` is not set.
    pub async fn launch(base_url: &str) -> Option<Self> {
        let (chromium, driver_path) = match tools() {
            Ok(found) => found,
            Err(missing) => {
                assert!(
                    !ci(),
                    "CI is set but the browser tests cannot run ({missing}); .ci/run installs \
                     the chromium and chromium-driver packages"
                );
                visible(&format!("skipped: chromium not installed ({missing})"));
                return None;
            }
        };
        let profile = tempfile::tempdir().expect("a profile directory");
        let driver = Driver::start(&driver_path, &profile.path().join("chromedriver.log")).await;
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--window-size={},{}", LAPTOP.0, LAPTOP.1),
            format!(
                "--user-data-dir={}",
                profile.path().join("chromium").display()
            ),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a Chromium session: {e}; chromedriver's log:\n{}",
                    std::fs::read_to_string(profile.path().join("chromedriver.log"))
                        .unwrap_or_default()
                )
            });
        Some(Self {
            client,
            base_url: base_url.to_owned(),
            _driver: driver,
            _profile: profile,
        })
    }

    /// Ends the session (Chromium exits), then the driver is killed.
    pub async fn close(self) {
        let Self {
            client,
            _driver,
            _profile,
            ..
        } = self;
        let _ = client.close().await;
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base_url))
            .await
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Runs `script` (a function body; `arguments[0]`… are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something truthy, and returns it.
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.js(script, args.clone()).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self
                    .js(
                        "const m = document.querySelector('main') || document.body; \
                         return m ? m.innerText : ''",
                        vec![],
                    )
                    .await;
                panic!(
                    "timed out waiting for {what} on {}; the page says:\n{}",
                    self.path().await,
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching `css` and returns its text.
    pub async fn wait_text(&self, css: &str) -> String {
        let value = self
            .wait_for(
                &format!("an element {css}"),
                "const e = document.querySelector(arguments[0]); \
                 return e && !e.closest('[hidden]') ? (e.innerText || ' ') : null;",
                vec![json!(css)],
            )
            .await;
        value.as_str().unwrap_or_default().trim().to_owned()
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Replaces the value of the input `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.expect("clearing an input");
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// The id of the element that has the keyboard focus.
    pub async fn focused_id(&self) -> String {
        self.js(
            "return document.activeElement && document.activeElement.id",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Sizes the window to the whole page (at `width`) and saves a PNG screenshot.
    pub async fn screenshot_page(&self, width: u32, path: &Path) {
        let mut height = 800;
        // The viewport is what the screenshot shows; grow the window until it holds the
        // whole page (the window's frame, if any, is not part of the viewport).
        for _ in 0..4 {
            self.client
                .set_window_size(width, height)
                .await
                .expect("resizing the window");
            tokio::time::sleep(Duration::from_millis(150)).await;
            let sizes = self
                .js(
                    "window.scrollTo(0, 0); return [window.innerHeight, Math.ceil(Math.max(\
                     document.documentElement.scrollHeight, document.body.scrollHeight))]",
                    vec![],
                )
                .await;
            let viewport = sizes[0].as_u64().unwrap_or(0);
            let page = sizes[1].as_u64().unwrap_or(0).min(6000);
            if viewport >= page {
                break;
            }
            height = u32::try_from(u64::from(height) + page - viewport).unwrap_or(6000);
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("writing the screenshot");
        visible(&format!("ui: saved {}", path.display()));
        self.client
            .set_window_size(LAPTOP.0, LAPTOP.1)
            .await
            .expect("resizing the window");
    }
}

/// `target/ui-screenshots/`: CI keeps what is under `target/` as artifacts.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("ui-screenshots")
}

/// The workspace's `target/` (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // This binary is target/<profile>/deps/ui-<hash>.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            Path::to_path_buf,
        )
}
