//! Exit codes, and [`CliError`]: what a command fails with and which code it exits with.

use std::error::Error as _;
use std::fmt;

use port_client::ClientError;

/// The process exit codes of `port` (also listed in `port --help`).
pub mod exit {
    /// Success; with `--wait`/`--follow`, the run ended `SUCCESS`.
    pub const OK: u8 = 0;
    /// The run ended `FAILURE` or `DECLINED`, or did not end within `--timeout`.
    pub const RUN_FAILED: u8 = 1;
    /// Bad flags or arguments (clap's own code for them), an unreadable or invalid
    /// input file, an unknown profile.
    pub const USAGE: u8 = 2;
    /// The API refused the request, answered something unexpected, or could not be
    /// reached.
    pub const API: u8 = 3;
    /// Authentication failed: missing credentials, or credentials or a token refused.
    pub const AUTH: u8 = 4;
}

/// A failed command: printed as `error: <identifier>: <message>` on stderr, then the
/// process exits with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The exit code (see [`exit`]).
    pub code: u8,
    /// A stable, machine-matchable name: Port's error identifier (`not_found`, …) for
    /// API refusals, or one of the CLI's own (`invalid_file`, `run_failed`, …).
    pub identifier: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Stdout was closed (`port runs list | head -1`): stop quietly.
    pub(crate) silent: bool,
}

impl CliError {
    /// An error with an exit code, an identifier and a message.
    pub fn new(code: u8, identifier: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            identifier: identifier.into(),
            message: message.into(),
            silent: false,
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(identifier: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, identifier, message)
    }

    /// An authentication error (exit code 4).
    pub fn auth(identifier: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(exit::AUTH, identifier, message)
    }

    /// A run that failed, was declined or did not end in time (exit code 1).
    pub fn run(identifier: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(exit::RUN_FAILED, identifier, message)
    }

    /// Writing to stdout failed. A closed pipe ends the command quietly with success
    /// (as `head` expects); any other write error is reported.
    pub(crate) fn output(error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Self {
                silent: true,
                ..Self::new(exit::OK, "broken_pipe", "stdout was closed")
            }
        } else {
            Self::new(
                exit::USAGE,
                "output_error",
                format!("cannot write output: {error}"),
            )
        }
    }

    /// Whether nothing should be printed for this error.
    pub fn is_silent(&self) -> bool {
        self.silent
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.identifier, self.message)
    }
}

impl std::error::Error for CliError {}

/// An error's message followed by its sources' (`a: b: c`), skipping repeats.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Unauthorized { error, message, .. } => {
                let identifier = if error.is_empty() {
                    "unauthorized".to_owned()
                } else {
                    error
                };
                Self::auth(identifier, message)
            }
            ClientError::Api {
                status,
                error,
                message,
                ..
            } => {
                let identifier = if error.is_empty() {
                    format!("http_{status}")
                } else {
                    error
                };
                Self::new(exit::API, identifier, message)
            }
            ClientError::Transport(e) => Self::new(exit::API, "transport_error", chain(&e)),
            ClientError::Decode { context, message } => Self::new(
                exit::API,
                "unexpected_response",
                format!("{context}: {message}"),
            ),
            ClientError::Config(message) => {
                Self::new(exit::USAGE, "invalid_configuration", message)
            }
            timeout @ ClientError::Timeout { .. } => Self::run("timeout", timeout.to_string()),
            ClientError::Stream { run_id, message } => Self::new(
                exit::API,
                "log_stream_error",
                format!("log stream of run {run_id}: {message}"),
            ),
            other => {
                let message = match other.source() {
                    Some(_) => chain(&other),
                    None => other.to_string(),
                };
                Self::new(exit::API, "error", message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn client_errors_map_to_exit_codes() {
        let api: CliError = ClientError::Api {
            status: 404,
            error: "not_found".into(),
            message: "action nope was not found".into(),
            body: Box::new(Value::Null),
        }
        .into();
        assert_eq!(api.code, exit::API);
        assert_eq!(api.to_string(), "not_found: action nope was not found");

        let bare: CliError = ClientError::Api {
            status: 502,
            error: String::new(),
            message: "Bad Gateway".into(),
            body: Box::new(Value::Null),
        }
        .into();
        assert_eq!(bare.identifier, "http_502");

        let unauthorized: CliError = ClientError::Unauthorized {
            error: String::new(),
            message: "Unauthorized".into(),
            body: Box::new(Value::Null),
        }
        .into();
        assert_eq!(unauthorized.code, exit::AUTH);
        assert_eq!(unauthorized.identifier, "unauthorized");

        let timeout: CliError = ClientError::Timeout {
            what: "run r_1 to end".into(),
            waited: std::time::Duration::from_secs(1),
            last_status: None,
        }
        .into();
        assert_eq!(timeout.code, exit::RUN_FAILED);

        let config: CliError = ClientError::Config("invalid API URL".into()).into();
        assert_eq!(config.code, exit::USAGE);
    }

    #[test]
    fn a_closed_pipe_is_silent_success() {
        let closed = CliError::output(&std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(closed.is_silent());
        assert_eq!(closed.code, exit::OK);
        let other = CliError::output(&std::io::Error::other("disk full"));
        assert!(!other.is_silent());
    }
}
