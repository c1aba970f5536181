//! PostgreSQL for the suite (besides `port_store::ScratchSchema`, the throw-away schema
//! the kill -9 cycles run in): a private cluster (`initdb` into a temporary directory, started
//! and stopped with `pg_ctl`) that a test may stop with `-m immediate` without
//! disturbing anything else on the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// The variable naming the shared test server.
pub const ENV_TEST_DATABASE_URL: &str = "PORT_TEST_DATABASE_URL";

/// The shared test server's URL for a test that needs PostgreSQL. Without
/// [`ENV_TEST_DATABASE_URL`] it prints `skipped: …` and gives `None`, except under CI
/// (`CI` set), where the PostgreSQL tests must run: there it is an error.
pub fn test_database_url(test: &str) -> Result<Option<String>> {
    match std::env::var(ENV_TEST_DATABASE_URL) {
        Ok(url) if !url.trim().is_empty() => Ok(Some(url)),
        _ if std::env::var_os("CI").is_some() => {
            bail!("{test}: {ENV_TEST_DATABASE_URL} is not set, and CI must run PostgreSQL tests")
        }
        _ => {
            crate::visible(&format!("skipped: {test}: {ENV_TEST_DATABASE_URL} not set"));
            Ok(None)
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.
pub fn server_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    bin.join("initdb").is_file().then_some(bin)
}

/// Why a private cluster cannot be made here, if it cannot: no server binaries, or
/// running as root (which `initdb` refuses) without a `postgres` user to run it as.
pub fn private_cluster_unsupported() -> Option<String> {
    if server_bin_dir().is_none() {
        return Some("no PostgreSQL server binaries (initdb) found".to_owned());
    }
    let has_postgres_user = Command::new("id")
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if running_as_root() && !has_postgres_user {
        return Some("running as root with no `postgres` user for initdb to run as".to_owned());
    }
    None
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster of the test's own, on a free loopback port, in a temporary
/// directory. As root (which `initdb` refuses) it runs as the `postgres` user through
/// `runuser`. Stopped (immediately) and deleted when dropped.
#[derive(Debug)]
pub struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    // Last: removed after the server stopped.
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// `initdb` into a new temporary directory (not started yet).
    pub fn init(bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("port-chaos-pg-")
            .tempdir()
            .context("creating the cluster directory")?;
        let as_postgres = running_as_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !status.success() {
                bail!("chown postgres {} failed ({status})", dir.path().display());
            }
        }
        let cluster = Self {
            bin: bin.to_path_buf(),
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            socket_dir: dir.path().to_path_buf(),
            port: crate::portd::free_port()?,
            as_postgres,
            running: false,
            dir,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        Ok(cluster)
    }

    /// Runs one of the server's programs (as `postgres` when we are root).
    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{program} {} failed ({}):\n{}{}\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                crate::portd::log_tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=40 -c shared_buffers=16MB",
            self.port,
            self.socket_dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: the server quits at once, without a checkpoint
    /// (crash recovery runs at the next start).
    pub fn stop_immediate(&mut self) -> Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (TCP, as a deployment would use).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_immediate();
        }
    }
}
