//! Port's own clients, the real ones, against a real portd: Ocean's Port client
//! (port-ocean, pinned) installed from PyPI into a virtualenv under `target/`, and the
//! driver script in `clients/ocean_driver.py` that makes its calls (the `ocean` test).
//!
//! The first run installs (about 20 s with a warm pip cache, a minute without); later
//! runs reuse the virtualenv as long as `clients/ocean-requirements.txt` is unchanged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::portd::{target_dir, workspace_root};

/// The port-ocean release the client notes were made from.
pub const OCEAN_VERSION: &str = "0.48.12";

/// The longest the driver may take: it makes a few dozen calls to a local portd.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(180);

fn clients_dir() -> PathBuf {
    workspace_root().join("crates/port-chaos/clients")
}

fn run(command: &mut std::process::Command, what: &str) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

/// The virtualenv's Python with Ocean's client installed: `target/venv-ocean`, made
/// (`python3 -m venv`, `pip install -r clients/ocean-requirements.txt`) unless it
/// holds exactly those requirements already. port-ocean declares Python >= 3.12; its
/// client runs on 3.11, hence `--ignore-requires-python`.
pub fn ocean_python() -> Result<PathBuf> {
    let requirements = clients_dir().join("ocean-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = target_dir()?.join("venv-ocean");
    let python = venv.join("bin/python");
    let marker = venv.join("installed-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&marker).is_ok_and(|had| had == wanted) {
        return Ok(python);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    run(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
        "python3 -m venv",
    )?;
    run(
        std::process::Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--ignore-requires-python",
                "--timeout",
                "30",
                "--retries",
                "2",
                "--requirement",
            ])
            .arg(&requirements),
        &format!("pip install port-ocean=={OCEAN_VERSION}"),
    )?;
    std::fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))?;
    Ok(python)
}

/// Runs `clients/ocean_driver.py` with `python` against portd at `base_url` with these
/// credentials; returns the JSON object it printed. Its stderr (Ocean's logs) is kept
/// in the error when it fails.
pub async fn drive_ocean(
    python: &Path,
    base_url: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<Value> {
    let script = clients_dir().join("ocean_driver.py");
    let child = tokio::process::Command::new(python)
        .arg(&script)
        .env("PORT_BASE_URL", base_url)
        .env("PORT_CLIENT_ID", client_id)
        .env("PORT_CLIENT_SECRET", client_secret)
        // Ocean's client must reach portd directly, whatever proxy the machine has.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
    let output = tokio::time::timeout(DRIVER_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("the Ocean driver did not finish within {DRIVER_TIMEOUT:?}"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "the Ocean driver failed ({}):\n{}\n{stdout}",
            output.status,
            stderr
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .with_context(|| format!("the Ocean driver printed no JSON object: {stdout}"))
}
