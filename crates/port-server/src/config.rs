//! Configuration: the `portd` command line (flags with environment fallbacks) and the
//! [`Config`] it produces.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use port_core::template::Budget;
use port_delivery::DeliveryConfig;

use crate::adapters::DestinationMode;
use crate::connections::{ConnectionArgs, ConnectionLimits};
use crate::secret_key::KeyText;

/// Where portd listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// Where portd keeps its SQLite database and bootstrap credentials by default.
pub const DEFAULT_DATA_DIR: &str = "./.portd";

/// Log streams one organization may hold open by default.
pub const DEFAULT_MAX_STREAMS_PER_ORG: u32 = 100;

/// The SQLite file's name inside the data directory.
pub const DATABASE_FILE: &str = "portd.db";

/// The bootstrap credentials' file name inside the data directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// The file inside the data directory that keeps the delivery worker's lease owner name
/// across restarts (see [`crate::server::start_with`]).
pub const WORKER_ID_FILE: &str = "worker-id";

/// The server key's file inside the data directory, unless `PORTD_SECRET_KEY` is set
/// (see [`crate::secret_key`]).
pub const SECRET_KEY_FILE: &str = "secret.key";

/// The new key of a rotation under way: it replaces [`SECRET_KEY_FILE`] once every
/// secret is sealed with it.
pub const NEXT_SECRET_KEY_FILE: &str = "secret.key.next";

/// `portd`: a self-hostable server for Port's self-service actions and runs API.
#[derive(Debug, Parser)]
#[command(name = "portd", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage API credentials.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Manage the server key that seals client secrets and organization secrets at rest.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Manage the people of the bootstrap organization (the first Admin comes from here).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user of the bootstrap organization (from <data-dir>/credentials.json):
    /// a Member, or an Admin with --admin. With --password-stdin, the first line of
    /// stdin is their password for the web UI's sign-in.
    Create {
        /// Their e-mail address, which they sign in with.
        #[arg(long)]
        email: String,
        /// Make them an Admin (they manage users, teams, actions and permissions).
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// A team they belong to (repeatable); the team must exist.
        #[arg(long = "team")]
        teams: Vec<String>,
        /// Read their password from the first line of stdin (never from an argument,
        /// which the process list shows).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set the password of a user of the bootstrap organization, read from the first
    /// line of stdin.
    SetPassword {
        #[arg(long)]
        email: String,
        /// Read the password from the first line of stdin (required: passwords are
        /// never arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every client secret and organization secret with a new server key. With the
    /// key file (<data-dir>/secret.key) the new key is generated and replaces it; with
    /// PORTD_SECRET_KEY it is PORTD_NEW_SECRET_KEY. On SQLite, stop portd first.
    RotateKey {
        /// The new key when PORTD_SECRET_KEY holds the current one: 32 bytes as 64
        /// hexadecimal digits or base64. Prefer the environment: a flag shows in the
        /// process list.
        #[arg(long, env = "PORTD_NEW_SECRET_KEY", hide_env_values = true)]
        new_secret_key: Option<KeyText>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Print a new client id and secret: for a new organization named by --org, else
    /// for the bootstrap organization (from <data-dir>/credentials.json).
    Create {
        /// Create a new organization with this name.
        #[arg(long)]
        org: Option<String>,
    },
}

/// The server's settings.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTD_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Directory for the SQLite database and the bootstrap credentials.
    #[arg(long, env = "PORTD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Database URL: `postgres://…` selects PostgreSQL; default: SQLite in the data dir.
    #[arg(long, env = "PORTD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// On PostgreSQL, whether replicas wake each other with LISTEN/NOTIFY (deliveries,
    /// automations and log streams see another replica's change at once rather than at
    /// their next poll). Turn it off behind a pooler that cannot LISTEN (PgBouncer in
    /// transaction mode).
    #[arg(long, env = "PORTD_REPLICA_NOTICES", default_value_t = true, action = clap::ArgAction::Set)]
    pub replica_notices: bool,
    /// Which webhook destinations runs may call: `any` or `public` (refuses private addresses).
    #[arg(long, env = "PORTD_WEBHOOK_DESTINATIONS", default_value = "any")]
    pub webhook_destinations: DestinationMode,
    /// Log streams (`…/logs/stream`) one organization may hold open at once; beyond
    /// it, 429 with `Retry-After`.
    #[arg(long, env = "PORTD_MAX_STREAMS_PER_ORG", default_value_t = DEFAULT_MAX_STREAMS_PER_ORG,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_org: u32,
    /// Client id of the credentials created on first start (generated when unset).
    #[arg(long, env = "PORTD_BOOTSTRAP_CLIENT_ID", hide = true)]
    pub bootstrap_client_id: Option<String>,
    /// Client secret of the credentials created on first start (generated when unset).
    #[arg(
        long,
        env = "PORTD_BOOTSTRAP_CLIENT_SECRET",
        hide = true,
        hide_env_values = true
    )]
    pub bootstrap_client_secret: Option<String>,
    /// The server key sealing client secrets and organization secrets at rest: 32 bytes
    /// as 64 hexadecimal digits or base64 (default: <data-dir>/secret.key, created on
    /// first start). Prefer the environment: a flag shows in the process list.
    #[arg(long, env = "PORTD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<KeyText>,
    /// An older server key, still read (and re-sealed with the current one at start)
    /// while a rotation rolls across replicas.
    #[arg(long, env = "PORTD_PREVIOUS_SECRET_KEY", hide_env_values = true)]
    pub previous_secret_key: Option<KeyText>,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
}

/// Where and within which limits actions' templates are rendered.
#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// `process`: render templates in sandboxed worker processes (`portd
    /// template-worker`) with a wall clock and a memory limit; `in-process`: on the
    /// server's threads, bounded by the step budget only (for debugging).
    #[arg(long, env = "PORTD_TEMPLATE_SANDBOX", default_value = "process")]
    pub template_sandbox: SandboxMode,
    /// Wall clock of one template render, in milliseconds.
    #[arg(long, env = "PORTD_TEMPLATE_TIMEOUT_MS", default_value_t = 1000)]
    pub template_timeout_ms: u64,
    /// Evaluation steps one render may take.
    #[arg(long, env = "PORTD_TEMPLATE_MAX_STEPS", default_value_t = Budget::DEFAULT_STEPS)]
    pub template_max_steps: u64,
    /// Memory one render may allocate, in MiB.
    #[arg(long, env = "PORTD_TEMPLATE_MEMORY_MB", default_value_t = 256)]
    pub template_memory_mb: u64,
    /// Template workers rendering at once (0: as many as cores, at least 2).
    #[arg(long, env = "PORTD_TEMPLATE_WORKERS", default_value_t = 0)]
    pub template_workers: usize,
    /// The largest evaluated invocation (url, headers and body), in bytes of JSON.
    #[arg(long, env = "PORTD_MAX_INVOCATION_BYTES", default_value_t = Budget::DEFAULT_OUTPUT_BYTES)]
    pub max_invocation_bytes: usize,
}

/// Where templates are rendered (`PORTD_TEMPLATE_SANDBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxMode {
    Process,
    InProcess,
}

/// How the server renders templates.
#[derive(Debug, Clone)]
pub enum Templates {
    /// On the server's threads, within a budget (tests and library use).
    InProcess(Budget),
    /// In worker processes; `program: None` means this executable, run as
    /// `template-worker`.
    Sandbox {
        program: Option<PathBuf>,
        workers: usize,
        limits: port_sandbox::Limits,
    },
}

impl From<&TemplateArgs> for Templates {
    fn from(args: &TemplateArgs) -> Self {
        let budget = Budget {
            steps: args.template_max_steps,
            output_bytes: args.max_invocation_bytes,
            ..Budget::default()
        };
        match args.template_sandbox {
            SandboxMode::InProcess => Self::InProcess(budget),
            SandboxMode::Process => Self::Sandbox {
                program: None,
                workers: args.template_workers,
                limits: port_sandbox::Limits {
                    time: std::time::Duration::from_millis(args.template_timeout_ms.max(1)),
                    memory_bytes: args.template_memory_mb.max(16) * 1024 * 1024,
                    budget,
                    ..port_sandbox::Limits::default()
                },
            },
        }
    }
}

/// Everything [`crate::server::start`] needs.
#[derive(Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// On PostgreSQL, replicas wake each other through a [`port_store::ReplicaBus`]
    /// (`PORTD_REPLICA_NOTICES`, on by default).
    pub replica_notices: bool,
    pub webhook_destinations: DestinationMode,
    pub max_streams_per_org: u32,
    pub bootstrap_client_id: Option<String>,
    pub bootstrap_client_secret: Option<String>,
    /// The server key (`PORTD_SECRET_KEY`); `None` keeps it in the data directory's
    /// [`SECRET_KEY_FILE`].
    pub secret_key: Option<KeyText>,
    /// An older key the keyring also opens (`PORTD_PREVIOUS_SECRET_KEY`).
    pub previous_secret_key: Option<KeyText>,
    /// Print generated bootstrap credentials to stdout (off in tests).
    pub print_bootstrap_credentials: bool,
    /// The delivery worker's and the reaper's settings, used as given. `None` (what
    /// `portd` uses) reads them from the `PORTD_DELIVERY_*` / `PORTD_RUN_TIMEOUT_SECS` /
    /// `PORTD_REAPER_INTERVAL_SECS` variables, with the worker id kept in
    /// `<data-dir>/worker-id` unless `PORTD_DELIVERY_WORKER_ID` names one.
    pub delivery: Option<DeliveryConfig>,
    /// Timeouts and the connection cap (see [`crate::connections`]).
    pub connections: ConnectionLimits,
    /// How templates are rendered: in process by default (tests, embedding); `portd`
    /// renders them in a sandbox.
    pub templates: Templates,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(port_store::redact_url),
            )
            .field("replica_notices", &self.replica_notices)
            .field("webhook_destinations", &self.webhook_destinations)
            .field("max_streams_per_org", &self.max_streams_per_org)
            .field("bootstrap_client_id", &self.bootstrap_client_id)
            .field(
                "bootstrap_client_secret",
                &self.bootstrap_client_secret.as_ref().map(|_| "***"),
            )
            .field("secret_key", &self.secret_key)
            .field("previous_secret_key", &self.previous_secret_key)
            .field("delivery", &self.delivery)
            .field("connections", &self.connections)
            .field("templates", &self.templates)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            replica_notices: true,
            webhook_destinations: DestinationMode::Any,
            max_streams_per_org: DEFAULT_MAX_STREAMS_PER_ORG,
            bootstrap_client_id: None,
            bootstrap_client_secret: None,
            secret_key: None,
            previous_secret_key: None,
            print_bootstrap_credentials: true,
            delivery: None,
            connections: ConnectionLimits::default(),
            templates: Templates::InProcess(Budget::default()),
        }
    }
}

impl From<ServerArgs> for Config {
    fn from(args: ServerArgs) -> Self {
        Self {
            listen: args.listen,
            data_dir: args.data_dir,
            database_url: args.database_url.filter(|u| !u.trim().is_empty()),
            replica_notices: args.replica_notices,
            webhook_destinations: args.webhook_destinations,
            max_streams_per_org: args.max_streams_per_org,
            bootstrap_client_id: args.bootstrap_client_id.filter(|v| !v.is_empty()),
            bootstrap_client_secret: args.bootstrap_client_secret.filter(|v| !v.is_empty()),
            secret_key: args.secret_key,
            previous_secret_key: args.previous_secret_key,
            print_bootstrap_credentials: true,
            delivery: None,
            connections: args.connections.into(),
            templates: Templates::from(&args.templates),
        }
    }
}

impl Config {
    /// The database URL: the configured one, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join(DATABASE_FILE).display()),
        }
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.data_dir.join(CREDENTIALS_FILE)
    }

    pub fn worker_id_path(&self) -> PathBuf {
        self.data_dir.join(WORKER_ID_FILE)
    }

    pub fn secret_key_path(&self) -> PathBuf {
        self.data_dir.join(SECRET_KEY_FILE)
    }

    pub fn next_secret_key_path(&self) -> PathBuf {
        self.data_dir.join(NEXT_SECRET_KEY_FILE)
    }
}

/// Structured logs on stderr: JSON when `PORTD_LOG_FORMAT=json`, levels from
/// `PORTD_LOG` or `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("PORTD_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("PORTD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // A second initialisation (tests) is harmless; ignore it.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_debug_hide_secrets() {
        let cli = Cli::try_parse_from(["portd"]).unwrap();
        let config = Config::from(cli.server);
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert!(config.database_url().ends_with("portd.db"));
        let config = Config {
            bootstrap_client_secret: Some("s3cret".into()),
            database_url: Some("postgres://u:pw@db/portd".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
    }

    #[test]
    fn credentials_subcommand_parses() {
        let cli = Cli::try_parse_from(["portd", "credentials", "create", "--org", "acme"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Credentials { command: CredentialsCommand::Create { org: Some(ref o) } }) if o == "acme"
        ));
    }

    #[test]
    fn users_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "portd",
            "users",
            "create",
            "--email",
            "ada@example.io",
            "--admin",
            "--first-name",
            "Ada",
            "--password-stdin",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Users { command: UsersCommand::Create { ref email, admin: true, password_stdin: true, ref first_name, .. } })
                if email == "ada@example.io" && first_name.as_deref() == Some("Ada")
        ));
        assert!(
            Cli::try_parse_from(["portd", "users", "set-password", "--email", "a@x.io"]).is_err(),
            "a password comes from stdin only"
        );
        assert!(
            Cli::try_parse_from([
                "portd",
                "users",
                "set-password",
                "--email",
                "a@x.io",
                "--password-stdin"
            ])
            .is_ok()
        );
    }

    #[test]
    fn rotate_key_parses_and_keys_are_never_shown() {
        let key = "ab".repeat(32);
        let cli = Cli::try_parse_from([
            "portd",
            "--secret-key",
            &key,
            "secrets",
            "rotate-key",
            "--new-secret-key",
            &key,
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains(&key), "{shown}");
        assert!(matches!(
            cli.command,
            Some(Command::Secrets { command: SecretsCommand::RotateKey { new_secret_key: Some(ref k) } })
                if *k == KeyText::new(key.clone())
        ));
        let config = Config::from(cli.server);
        assert_eq!(config.secret_key, Some(KeyText::new(key.clone())));
        assert!(!format!("{config:?}").contains(&key));
    }
}
