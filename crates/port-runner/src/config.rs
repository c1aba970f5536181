//! `runner.toml`: what to connect to, how runs arrive, and which command runs each
//! action.
//!
//! ```toml
//! [port]                      # each key falls back to PORT_API_URL / PORT_CLIENT_ID / PORT_CLIENT_SECRET
//! api_url = "http://127.0.0.1:3000/v1"
//! [receiver]
//! listen = "127.0.0.1:8080"   # webhook mode; or: mode = "pull"
//! [actions.create_microservice]
//! command = ["./scripts/create.sh"]
//! timeout = "10m"
//! concurrency = 4
//! env = { REGION_DEFAULT = "eu-west-1" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the webhook endpoint listens when the file does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A duration written as `10m`, `30s`, `1h30m`, `250ms`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"10m\" or a number of seconds")
            }

            fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<Self::Value, E> {
                Ok(DurationValue(Duration::from_secs(secs)))
            }

            fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<Self::Value, E> {
                u64::try_from(secs)
                    .map(|secs| DurationValue(Duration::from_secs(secs)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                parse_duration(text).map(DurationValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses `10m`, `30s`, `1h30m`, `1.5s`, `250ms` (units: ms, s, m, h, d).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("invalid duration {text:?}: expected e.g. 30s, 10m, 1h30m or 250ms");
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let seconds = match unit.trim() {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86_400.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?;
        rest = after.trim_start();
    }
    Ok(total)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    port: RawPort,
    #[serde(default)]
    receiver: RawReceiver,
    #[serde(default)]
    actions: BTreeMap<String, RawAction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    api_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// How runs reach the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// portd (or Port) sends signed webhooks to `listen`.
    #[default]
    Webhook,
    /// The runner claims runs of `agent: true` actions itself.
    Pull,
}

/// When pulled runs are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// Once reported, with heartbeats meanwhile (portd).
    #[default]
    Finish,
    /// Right after claiming (Port's cloud).
    Claim,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    #[serde(default)]
    mode: Mode,
    listen: Option<String>,
    tolerance: Option<DurationValue>,
    shutdown_grace: Option<DurationValue>,
    visibility_timeout: Option<DurationValue>,
    poll_interval: Option<DurationValue>,
    installation_id: Option<String>,
    #[serde(default)]
    ack: Ack,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    command: Vec<String>,
    timeout: Option<DurationValue>,
    concurrency: Option<usize>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    synchronized: bool,
    workdir: Option<PathBuf>,
}

/// Where the API is and who the runner is.
#[derive(Debug, Clone)]
pub struct PortSettings {
    pub api_url: String,
    pub client_id: String,
    /// Also the webhook signing secret.
    pub client_secret: Secret,
}

/// How runs arrive.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    pub mode: Mode,
    pub listen: String,
    pub tolerance: Option<Duration>,
    pub shutdown_grace: Option<Duration>,
    pub visibility_timeout: Option<Duration>,
    pub poll_interval: Option<Duration>,
    pub installation_id: Option<String>,
    pub ack: Ack,
}

/// The command one action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSettings {
    pub identifier: String,
    /// The program as written in the file, for messages.
    pub program_name: String,
    /// The program to start: relative paths resolved against the file's directory.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Where the command runs: `workdir` (relative to the file's directory), else the
    /// file's directory.
    pub workdir: PathBuf,
    pub timeout: Duration,
    pub concurrency: usize,
    pub env: BTreeMap<String, String>,
    pub synchronized: bool,
}

/// A whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: PortSettings,
    pub receiver: ReceiverSettings,
    pub actions: Vec<ActionSettings>,
}

/// The default command timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How many runs of one action run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A program path with a directory part is resolved against `base`; a bare name is
/// looked up in `PATH` when started.
fn resolve_program(program: &str, base: &Path) -> PathBuf {
    let path = Path::new(program);
    let has_dir = path.components().count() > 1;
    if has_dir && path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}

impl Config {
    /// Reads the file at `path`; missing `[port]` keys come from `env`
    /// (`PORT_API_URL`, `PORT_CLIENT_ID`, `PORT_CLIENT_SECRET`).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = std::path::absolute(&base).unwrap_or(base);
        Self::parse(&text, &base, env).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Parses a configuration whose relative paths are relative to `base`.
    pub fn parse(
        text: &str,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "configuration".into(),
            source,
        })?;
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let api_url = given(raw.port.api_url)
            .or_else(|| env(port_client::ENV_API_URL))
            .unwrap_or_else(|| port_client::DEFAULT_API_URL.to_owned());
        let client_id = given(raw.port.client_id)
            .or_else(|| env(port_client::ENV_CLIENT_ID))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "no client id: set [port] client_id or {}",
                    port_client::ENV_CLIENT_ID
                ))
            })?;
        let client_secret = given(raw.port.client_secret)
            .or_else(|| env(port_client::ENV_CLIENT_SECRET))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "no client secret: set [port] client_secret or {}",
                    port_client::ENV_CLIENT_SECRET
                ))
            })?;
        if raw.actions.is_empty() {
            return Err(ConfigError::Invalid(
                "no actions: add at least one [actions.<identifier>] with a command".into(),
            ));
        }
        let mut actions = Vec::with_capacity(raw.actions.len());
        for (identifier, action) in raw.actions {
            let Some((program, args)) = action.command.split_first() else {
                return Err(ConfigError::Invalid(format!(
                    "actions.{identifier}.command: must name a program"
                )));
            };
            if program.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "actions.{identifier}.command: the program is empty"
                )));
            }
            let concurrency = action.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
            if concurrency == 0 {
                return Err(ConfigError::Invalid(format!(
                    "actions.{identifier}.concurrency: must be at least 1"
                )));
            }
            let timeout = action.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
            if timeout.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "actions.{identifier}.timeout: must be more than zero"
                )));
            }
            let workdir = match action.workdir {
                Some(dir) if dir.is_relative() => base.join(dir),
                Some(dir) => dir,
                None => base.to_path_buf(),
            };
            actions.push(ActionSettings {
                program_name: program.clone(),
                program: resolve_program(program, base),
                args: args.to_vec(),
                workdir,
                timeout,
                concurrency,
                env: action.env,
                synchronized: action.synchronized,
                identifier,
            });
        }
        Ok(Self {
            port: PortSettings {
                api_url,
                client_id,
                client_secret: Secret(client_secret),
            },
            receiver: ReceiverSettings {
                mode: raw.receiver.mode,
                listen: given(raw.receiver.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
                tolerance: raw.receiver.tolerance.map(|d| d.0),
                shutdown_grace: raw.receiver.shutdown_grace.map(|d| d.0),
                visibility_timeout: raw.receiver.visibility_timeout.map(|d| d.0),
                poll_interval: raw.receiver.poll_interval.map(|d| d.0),
                installation_id: given(raw.receiver.installation_id),
                ack: raw.receiver.ack,
            },
            actions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [port]                      # each key falls back to PORT_API_URL / PORT_CLIENT_ID / PORT_CLIENT_SECRET
        api_url = "http://127.0.0.1:3000/v1"
        [receiver]
        listen = "127.0.0.1:8080"   # webhook mode; or: mode = "pull"
        [actions.create_microservice]
        command = ["./scripts/create.sh", "--fast"]
        timeout = "10m"
        concurrency = 4
        env = { REGION_DEFAULT = "eu-west-1" }
        [actions.cleanup]
        command = ["bash", "-c", "echo hi"]
        timeout = 30
        workdir = "work"
    "#;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT_CLIENT_ID" => Some("id-from-env".into()),
            "PORT_CLIENT_SECRET" => Some("secret-from-env".into()),
            "PORT_API_URL" => Some("http://ignored/v1".into()),
            _ => None,
        }
    }

    #[test]
    fn the_documented_example_parses_with_env_fallbacks() {
        let config = Config::parse(EXAMPLE, Path::new("/etc/runner"), env).unwrap();
        assert_eq!(config.port.api_url, "http://127.0.0.1:3000/v1");
        assert_eq!(config.port.client_id, "id-from-env");
        assert_eq!(config.port.client_secret.0, "secret-from-env");
        assert!(!format!("{config:?}").contains("secret-from-env"));
        assert_eq!(config.receiver.mode, Mode::Webhook);
        assert_eq!(config.receiver.listen, "127.0.0.1:8080");
        let [cleanup, create] = config.actions.as_slice() else {
            panic!("two actions");
        };
        assert_eq!(create.identifier, "create_microservice");
        assert_eq!(create.program, Path::new("/etc/runner/./scripts/create.sh"));
        assert_eq!(create.args, ["--fast"]);
        assert_eq!(create.workdir, Path::new("/etc/runner"));
        assert_eq!(create.timeout, Duration::from_secs(600));
        assert_eq!(create.concurrency, 4);
        assert_eq!(create.env["REGION_DEFAULT"], "eu-west-1");
        // Bare program names are looked up in PATH.
        assert_eq!(cleanup.program, Path::new("bash"));
        assert_eq!(cleanup.workdir, Path::new("/etc/runner/work"));
        assert_eq!(cleanup.timeout, Duration::from_secs(30));
        assert_eq!(cleanup.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn the_file_wins_over_the_environment_and_pull_mode_parses() {
        let text = r#"
            [port]
            client_id = "file-id"
            client_secret = "file-secret"
            [receiver]
            mode = "pull"
            visibility_timeout = "90s"
            poll_interval = "500ms"
            installation_id = "runner-eu"
            ack = "claim"
            [actions.a]
            command = ["/bin/true"]
        "#;
        let config = Config::parse(text, Path::new("/x"), env).unwrap();
        assert_eq!(config.port.client_id, "file-id");
        assert_eq!(config.port.client_secret.0, "file-secret");
        assert_eq!(config.port.api_url, "http://ignored/v1");
        assert_eq!(config.receiver.mode, Mode::Pull);
        assert_eq!(
            config.receiver.visibility_timeout,
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            config.receiver.poll_interval,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            config.receiver.installation_id.as_deref(),
            Some("runner-eu")
        );
        assert_eq!(config.receiver.ack, Ack::Claim);
        assert_eq!(config.actions[0].program, Path::new("/bin/true"));
    }

    #[test]
    fn mistakes_are_explained() {
        let no_env = |_: &str| None;
        let err = |text: &str| {
            Config::parse(text, Path::new("/x"), env)
                .unwrap_err()
                .to_string()
        };
        assert!(err("").contains("no actions"));
        assert!(err("[actions.a]\ncommand = []").contains("must name a program"));
        assert!(err("[actions.a]\ncommand = [\"x\"]\nconcurrency = 0").contains("at least 1"));
        assert!(
            err("[actions.a]\ncommand = [\"x\"]\ntimeout = \"soon\"").contains("invalid duration")
        );
        assert!(err("[actions.a]\ncommand = [\"x\"]\ncolour = 1").contains("unknown field"));
        assert!(
            err("[receiver]\nmode = \"push\"\n[actions.a]\ncommand = [\"x\"]")
                .contains("unknown variant")
        );
        let missing = Config::parse("[actions.a]\ncommand = [\"x\"]", Path::new("/x"), no_env)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("PORT_CLIENT_ID"), "{missing}");
    }

    #[test]
    fn durations_parse() {
        for (text, expected) in [
            ("10m", Duration::from_secs(600)),
            ("1h30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("45", Duration::from_secs(45)),
            ("2d", Duration::from_secs(172_800)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "m", "10 minutes", "-1s", "1x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
