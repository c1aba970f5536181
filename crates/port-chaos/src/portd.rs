//! The real `portd` binary as a child process: found (or built) next to the running
//! executable, started on a free loopback port with the suite's settings, killed with
//! SIGKILL, and always reaped when dropped.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};

/// Names the `portd` binary to use instead of looking for one.
pub const ENV_PORTD_BIN: &str = "PORTD_BIN";

/// The crates whose sources make up `portd`: a binary older than any of them is stale.
const PORTD_CRATES: &[&str] = &["port-server", "port-store", "port-core", "port-delivery"];

/// The workspace root (this crate lives in `crates/port-chaos`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The directory cargo put the running executable in (`target/<profile>`, also for test
/// binaries, which live in its `deps/`).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe
        .parent()
        .context("the executable has no directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Cargo's target directory (`target/`), where the suite keeps what it installs.
pub fn target_dir() -> Result<PathBuf> {
    let profile = profile_dir()?;
    Ok(profile
        .parent()
        .map_or_else(|| profile.clone(), Path::to_path_buf))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir`.
fn newest_under(dir: &Path) -> Option<SystemTime> {
    let mut newest = modified(dir);
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_under(&path)
        } else {
            modified(&path)
        };
        newest = newest.max(time);
    }
    newest
}

/// Whether `binary` exists and is newer than every source of portd.
fn fresh(binary: &Path) -> bool {
    let Some(built) = modified(binary) else {
        return false;
    };
    let root = workspace_root();
    PORTD_CRATES.iter().all(|name| {
        let krate = root.join("crates").join(name);
        let sources = newest_under(&krate.join("src"))
            .max(newest_under(&krate.join("migrations")))
            .max(modified(&krate.join("Cargo.toml")));
        sources.is_none_or(|time| time <= built)
    })
}

/// The `portd` binary: `$PORTD_BIN`, else `portd` beside the running executable when it
/// is up to date (as after `cargo test --workspace` or `cargo build`), else built with
/// `cargo build -p port-server --bin portd` first.
pub fn binary() -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(ENV_PORTD_BIN).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(given);
        if !path.is_file() {
            bail!("{ENV_PORTD_BIN}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let dir = profile_dir()?;
    let path = dir.join(format!("portd{}", std::env::consts::EXE_SUFFIX));
    if fresh(&path) {
        return Ok(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "-p", "port-server", "--bin", "portd"]);
    if dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().context("running cargo build for portd")?;
    if !status.success() || !path.is_file() {
        bail!(
            "`cargo build -p port-server --bin portd` failed ({status}); {} is missing",
            path.display()
        );
    }
    Ok(path)
}

/// How to start portd.
#[derive(Debug, Clone)]
pub struct PortdSettings {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// `PORTD_LOG`.
    pub log_filter: String,
    /// Where stdout and stderr go (appended).
    pub log_file: PathBuf,
    /// More environment variables.
    pub env: Vec<(String, String)>,
}

/// A running portd, killed and reaped when dropped.
#[derive(Debug)]
pub struct Portd {
    child: Child,
    port: u16,
    log_file: PathBuf,
}

impl Portd {
    /// Starts portd on a free port; it may not answer yet (see [`Portd::ready`]).
    pub fn spawn(settings: &PortdSettings) -> Result<Self> {
        Self::spawn_limited(settings, None)
    }

    /// [`Portd::spawn`] with the open-files limit (soft and hard, `ulimit -n` in `sh`
    /// before `exec`) set to `open_files`, so a test can use up portd's descriptors
    /// without using up its own.
    pub fn spawn_limited(settings: &PortdSettings, open_files: Option<u64>) -> Result<Self> {
        let port = free_port()?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.log_file)
            .with_context(|| format!("opening {}", settings.log_file.display()))?;
        let mut command = match open_files {
            None => Command::new(&settings.binary),
            Some(limit) => {
                // `exec` keeps the process id: killing it kills portd.
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\""))
                    .arg(&settings.binary);
                shell
            }
        };
        command
            .env("PORTD_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTD_DATA_DIR", &settings.data_dir)
            .env("PORTD_BOOTSTRAP_CLIENT_ID", &settings.client_id)
            .env("PORTD_BOOTSTRAP_CLIENT_SECRET", &settings.client_secret)
            .env("PORTD_LOG", &settings.log_filter)
            .env_remove("PORTD_LOG_FORMAT")
            .env_remove("PORTD_WEBHOOK_DESTINATIONS")
            .env_remove("PORTD_DELIVERY_WORKER_ID")
            .env_remove("PORTD_RUN_TIMEOUT_SECS")
            .env_remove("PORTD_DELIVERY_RETRY_SCHEDULE")
            .env_remove("PORTD_DELIVERY_TIMEOUT_SECS")
            .env_remove("PORTD_DELIVERY_LEASE_SECS")
            .env_remove("PORTD_REPLICA_NOTICES")
            .env_remove("PORTD_DELIVERY_MAX_IN_FLIGHT")
            .env_remove("PORTD_DELIVERY_MAX_IN_FLIGHT_PER_ORG")
            .env_remove("PORTD_DELIVERY_MAX_IN_FLIGHT_PER_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        match &settings.database_url {
            Some(url) => command.env("PORTD_DATABASE_URL", url),
            None => command.env_remove("PORTD_DATABASE_URL"),
        };
        for (name, value) in &settings.env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", settings.binary.display()))?;
        Ok(Self {
            child,
            port,
            log_file: settings.log_file.clone(),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/healthz` answers; fails if the process exits or `within` passes.
    pub async fn ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/healthz", self.base_url());
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "portd exited during startup ({status}); its log:\n{}",
                    self.log_tail(30)
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "portd did not answer within {within:?}; its log:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> Result<()> {
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().context("killing portd")?;
        self.child.wait().context("reaping portd")?;
        Ok(())
    }

    /// SIGTERM (a graceful stop) via `kill -TERM`, then waits up to `within`.
    pub fn terminate(&mut self, within: Duration) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM failed ({status})");
        }
        let deadline = Instant::now() + within;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.kill()?;
                bail!("portd did not stop within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of the log file.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_file, lines)
    }
}

impl Drop for Portd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a directory its owner's only (0700): portd refuses a data directory open to
/// others that holds files it did not create, such as the log the suite keeps there.
pub fn make_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", dir.display()))?;
    }
    Ok(())
}

/// The last `lines` lines of a text file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
