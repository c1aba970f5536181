//! The command line: `port [GLOBAL OPTIONS] <COMMAND>`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use port_client::FinalStatus;
use serde_json::Value;

use crate::config::Given;
use crate::input::parse_prop;
use crate::output::Format;

const EXIT_CODES: &str = "\
Exit codes:
  0  Success; with --wait or --follow, the run ended SUCCESS
  1  The run ended FAILURE or DECLINED, or did not end within --timeout
  2  Usage error: bad arguments, an unreadable or invalid file, an unknown profile
  3  API error: the server refused the request or could not be reached
  4  Authentication failed: missing or refused credentials

Settings come from flags, then the environment (PORT_API_URL, PORT_CLIENT_ID,
PORT_CLIENT_SECRET, PORT_PROFILE), then the profile in
$XDG_CONFIG_HOME/port/config.toml (default ~/.config/port/config.toml, written by
`port login`), then defaults. Errors are printed as `error: <identifier>: <message>`.";

const RUN_HELP: &str = "\
Examples:
  port run create_microservice --prop name=svc --prop replicas=3 --wait
  port run deploy --entity svc --props-file inputs.yaml --follow --timeout 10m

--prop values are JSON when they parse as JSON (3, true, null, [\"a\"], {\"k\":1},
\"quoted\"), else plain strings; they override --props-file keys.

With --wait or --follow the exit code follows the run: 0 when it ends SUCCESS,
1 when it ends FAILURE or DECLINED or does not end within --timeout.";

/// `port`: run Port self-service actions and watch them to the end, against portd or
/// Port's cloud.
#[derive(Debug, Parser)]
#[command(
    name = "port",
    version,
    about = "Run Port self-service actions and watch them to the end (portd or Port's cloud)",
    after_help = EXIT_CODES,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// API base URL [default: http://127.0.0.1:3000/v1]
    #[arg(
        long,
        global = true,
        env = "PORT_API_URL",
        hide_env_values = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub api_url: Option<String>,
    /// Client id
    #[arg(
        long,
        global = true,
        env = "PORT_CLIENT_ID",
        hide_env_values = true,
        value_name = "ID",
        help_heading = "Global options"
    )]
    pub client_id: Option<String>,
    /// Client secret
    #[arg(
        long,
        global = true,
        env = "PORT_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Global options"
    )]
    pub client_secret: Option<String>,
    /// Profile of the config file to use [default: default]
    #[arg(
        long,
        global = true,
        env = "PORT_PROFILE",
        hide_env_values = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub profile: Option<String>,
    /// Output format: table, or the API's JSON (pretty), or YAML
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t = Format::Table,
        value_name = "FORMAT",
        help_heading = "Global options"
    )]
    pub output: Format,
    /// No spinner, progress or confirmation messages
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// No colours (also when NO_COLOR is set or stdout is not a terminal)
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_color: bool,
}

impl GlobalArgs {
    /// The connection settings given by flags or the environment.
    pub fn given(&self) -> Given {
        Given {
            api_url: self.api_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            profile: self.profile.clone(),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check credentials by fetching a token, and save them as a profile
    #[command(
        after_help = "The profile is --profile (or PORT_PROFILE), \"default\" when not given. It keeps\n--api-url, --client-id and --client-secret (or their PORT_* variables); when\nthey are not given, the profile's saved values are checked again."
    )]
    Login,
    /// Create, update and read blueprints
    #[command(subcommand)]
    Blueprints(BlueprintsCommand),
    /// Create, update, read and delete actions
    #[command(subcommand)]
    Actions(ActionsCommand),
    /// Execute an action; optionally wait for its run or follow its logs
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// List, inspect, update and decide on runs
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Upsert, read and delete entities
    #[command(subcommand)]
    Entities(EntitiesCommand),
    /// Set, list and delete the organization's secrets (values are never shown)
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// List, invite, update and delete the organization's users
    #[command(subcommand)]
    Users(UsersCommand),
    /// List, create, update and delete teams
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Show who did what: runs, actions, permissions, users, teams (the audit log)
    Audit(AuditArgs),
}

/// A role: Admin or Member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Manages users, teams, actions and permissions
    Admin,
    /// Uses what the permissions grant
    Member,
}

impl RoleArg {
    /// Port's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::Member => "Member",
        }
    }
}

/// `port users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users
    List,
    /// Add a user (Admins); they sign in once their password or single sign-on is set
    Invite {
        /// Their e-mail address
        email: String,
        /// Their role [default: member]
        #[arg(long, value_enum, ignore_case = true, value_name = "ROLE")]
        role: Option<RoleArg>,
        /// A team they belong to (repeatable)
        #[arg(long = "team", value_name = "TEAM")]
        teams: Vec<String>,
    },
    /// Show a user
    Get {
        /// Their e-mail address
        email: String,
    },
    /// Change a user's role or teams (Admins)
    #[command(group(ArgGroup::new("change").args(["role", "teams", "no_teams"]).multiple(true).required(true)))]
    Update {
        /// Their e-mail address
        email: String,
        /// Their new role
        #[arg(long, value_enum, ignore_case = true, value_name = "ROLE")]
        role: Option<RoleArg>,
        /// A team (repeatable): the list replaces their teams
        #[arg(long = "team", value_name = "TEAM", conflicts_with = "no_teams")]
        teams: Vec<String>,
        /// Remove them from every team
        #[arg(long)]
        no_teams: bool,
    },
    /// Delete a user (Admins)
    Delete {
        /// Their e-mail address
        email: String,
    },
}

/// `port teams …`.
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// List teams
    List,
    /// Show a team and its members
    Get {
        /// Team name
        name: String,
    },
    /// Create a team (Admins)
    Create {
        /// Team name
        name: String,
        /// A member's e-mail address (repeatable)
        #[arg(long = "user", value_name = "EMAIL")]
        users: Vec<String>,
        /// What the team is
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Rename a team, or replace its members or description (Admins)
    #[command(group(ArgGroup::new("change").args(["rename", "users", "no_users", "description"]).multiple(true).required(true)))]
    Update {
        /// Team name
        name: String,
        /// Its new name
        #[arg(long, value_name = "NAME")]
        rename: Option<String>,
        /// A member (repeatable): the list replaces its members
        #[arg(long = "user", value_name = "EMAIL", conflicts_with = "no_users")]
        users: Vec<String>,
        /// Remove every member
        #[arg(long)]
        no_users: bool,
        /// Its new description
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Delete a team (its members stay users; Admins)
    Delete {
        /// Team name
        name: String,
    },
}

/// `port audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records of this kind (repeatable): entity (a run's entity changes, with
    /// --run-id), run, action, permissions, user, team
    #[arg(long = "resource", value_name = "KIND", value_parser = ["entity", "run", "action", "permissions", "user", "team"])]
    pub resources: Vec<String>,
    /// Only records about this identifier (a run id, action, e-mail, team, entity)
    #[arg(long, value_name = "ID")]
    pub identifier: Option<String>,
    /// Only records about this run
    #[arg(long, value_name = "RUN_ID")]
    pub run_id: Option<String>,
    /// Only records from this time on (ISO-8601, e.g. 2025-01-31T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only records up to this time (ISO-8601)
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// At most this many trail records (1-1000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

/// `port blueprints …`.
#[derive(Debug, Subcommand)]
pub enum BlueprintsCommand {
    /// Create blueprints from a JSON or YAML file, or update those that exist
    Apply {
        /// File with one blueprint or an array of them ('-' reads stdin)
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// List blueprints
    List,
    /// Show a blueprint
    Get {
        /// Blueprint identifier
        id: String,
    },
}

/// `port actions …`.
#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// Create actions from a JSON or YAML file, or update those that exist
    #[command(
        after_help = "An action with a string `trigger` (\"CREATE\", \"DAY-2\", \"DELETE\") is a legacy v1 action:\nit belongs to the blueprint of its `blueprint` key, or of --blueprint. Any other\naction is a v2 action or automation."
    )]
    Apply {
        /// File with one action or an array of them ('-' reads stdin)
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        /// Blueprint of v1 actions that have no `blueprint` key
        #[arg(long, value_name = "BLUEPRINT")]
        blueprint: Option<String>,
    },
    /// List actions and automations
    List {
        /// Only actions of this blueprint
        #[arg(long, value_name = "BLUEPRINT")]
        blueprint: Option<String>,
    },
    /// Show an action
    Get {
        /// Action identifier
        id: String,
    },
    /// Delete an action
    Delete {
        /// Action identifier
        id: String,
    },
    /// Show or change who may execute and approve an action
    #[command(subcommand)]
    Permissions(PermissionsCommand),
}

/// `port actions permissions …`.
#[derive(Debug, Subcommand)]
pub enum PermissionsCommand {
    /// Show who may execute and approve an action
    Get {
        /// Action identifier
        id: String,
    },
    /// Change them from a JSON or YAML file in Port's shape (Admins)
    #[command(
        after_help = "The file holds Port's permissions patch; the keys given replace those of each\ngrant, for example:\n  execute:\n    roles: [Member]\n    teams: [Platform]\n  approve:\n    users: [lead@example.com]"
    )]
    Set {
        /// Action identifier
        id: String,
        /// File with the patch ('-' reads stdin)
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// `port run ACTION …`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("watch").args(["wait", "follow"]).multiple(true)))]
pub struct RunArgs {
    /// Action identifier
    pub action: String,
    /// Entity to run on (DAY-2 and DELETE actions)
    #[arg(long, value_name = "ENTITY")]
    pub entity: Option<String>,
    /// An input, KEY=VALUE (repeatable)
    #[arg(long = "prop", value_name = "KEY=VALUE", value_parser = parse_prop)]
    pub props: Vec<(String, Value)>,
    /// JSON or YAML file with an object of inputs
    #[arg(long, value_name = "FILE")]
    pub props_file: Option<PathBuf>,
    /// Wait until the run ends; print its status, label, links and summary
    #[arg(long)]
    pub wait: bool,
    /// Stream the run's logs until it ends; then print its status and links
    #[arg(long)]
    pub follow: bool,
    /// Give up waiting after this long (e.g. 30s, 10m, 1h30m): exit code 1
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "watch")]
    pub timeout: Option<Duration>,
    /// Idempotency-Key: executing again with the same key returns the same run
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Execute as this user (their e-mail; organization credentials only)
    #[arg(long, value_name = "EMAIL")]
    pub run_as: Option<String>,
}

/// `port runs …`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first
    List {
        /// Only runs of this action
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only runs on this entity
        #[arg(long, value_name = "ENTITY")]
        entity: Option<String>,
        /// Only runs of this blueprint's actions
        #[arg(long, value_name = "BLUEPRINT")]
        blueprint: Option<String>,
        /// Only runs that have not ended
        #[arg(long)]
        active: bool,
        /// Only runs with this status (IN_PROGRESS, SUCCESS, FAILURE, WAITING_FOR_APPROVAL, DECLINED)
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// At most this many runs (1-1000)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Show a run
    Get {
        /// Run id
        id: String,
    },
    /// Print a run's logs; with -f, follow them until the run ends
    #[command(
        after_help = "With --follow the exit code follows the run: 0 when it ends SUCCESS, 1 when it\nends FAILURE or DECLINED or does not end within --timeout."
    )]
    Logs {
        /// Run id
        id: String,
        /// Follow new lines until the run ends
        #[arg(short, long)]
        follow: bool,
        /// With --follow, give up after this long (e.g. 30s, 10m): exit code 1
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "follow")]
        timeout: Option<Duration>,
    },
    /// Add a line to a run's log; --termination-status also ends the run
    Log {
        /// Run id
        id: String,
        /// The line
        message: String,
        /// End the run with this status
        #[arg(long, value_enum, ignore_case = true, value_name = "STATUS")]
        termination_status: Option<FinalArg>,
        /// Set the run's status label
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
    },
    /// Update a run: end it, label it, link it, summarise it
    Patch {
        /// Run id
        id: String,
        /// End the run with this status
        #[arg(long, value_enum, ignore_case = true, value_name = "STATUS")]
        status: Option<FinalArg>,
        /// Status label
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
        /// A link (repeatable; replaces the run's links)
        #[arg(long = "link", value_name = "URL")]
        links: Vec<String>,
        /// Markdown summary
        #[arg(long, value_name = "TEXT")]
        summary: Option<String>,
        /// Your backend's id for the run
        #[arg(long, value_name = "ID")]
        external_run_id: Option<String>,
    },
    /// Approve a run waiting for approval
    Approve {
        /// Run id
        id: String,
        /// Why
        #[arg(long, value_name = "REASON")]
        reason: Option<String>,
    },
    /// Decline a run waiting for approval
    Decline {
        /// Run id
        id: String,
        /// Why
        #[arg(long, value_name = "REASON")]
        reason: Option<String>,
    },
    /// Withdraw a run waiting for approval (its requester, or an Admin)
    Withdraw {
        /// Run id
        id: String,
        /// Why
        #[arg(long, value_name = "REASON")]
        reason: Option<String>,
    },
    /// Show how a run's invocation was delivered to its backend (portd)
    Deliveries {
        /// Run id
        id: String,
    },
}

/// `port entities …`.
#[derive(Debug, Subcommand)]
pub enum EntitiesCommand {
    /// Create or update (merge) entities, optionally as part of a run
    #[command(group(ArgGroup::new("source").args(["file", "id"]).required(true)))]
    Upsert {
        /// Blueprint identifier
        blueprint: String,
        /// JSON or YAML file with one entity or an array of them ('-' reads stdin)
        #[arg(short, long, value_name = "FILE", conflicts_with_all = ["props", "title"])]
        file: Option<PathBuf>,
        /// Entity identifier
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// A property, KEY=VALUE (repeatable; JSON values as for `port run`)
        #[arg(long = "prop", value_name = "KEY=VALUE", value_parser = parse_prop)]
        props: Vec<(String, Value)>,
        /// Entity title
        #[arg(long, value_name = "TITLE")]
        title: Option<String>,
        /// Bind the change to this run (it must be in progress)
        #[arg(long, value_name = "RUN_ID")]
        run_id: Option<String>,
    },
    /// Show an entity
    Get {
        /// Blueprint identifier
        blueprint: String,
        /// Entity identifier
        id: String,
    },
    /// Delete an entity
    Delete {
        /// Blueprint identifier
        blueprint: String,
        /// Entity identifier
        id: String,
        /// Bind the deletion to this run (it must be in progress)
        #[arg(long, value_name = "RUN_ID")]
        run_id: Option<String>,
    },
}

const SECRETS_SET_HELP: &str = "\
Examples:
  printf %s \"$TOKEN\" | port secrets set GITHUB_TOKEN --description \"CI pushes\"
  echo \"$TOKEN\" | port secrets set GITHUB_TOKEN
  port secrets set TLS_KEY --value-file key.pem

The value is read from stdin (or --value-file), never from the command line, where
shell history and the process list would keep it; one trailing newline is dropped.
An existing secret gets the new value (and --description, when given).
Templates read it as {{ .secrets.NAME }}.";

/// `port secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// List secrets: names, descriptions and dates, never values
    List,
    /// Create a secret, or replace its value, reading the value from stdin
    #[command(after_help = SECRETS_SET_HELP)]
    Set {
        /// Secret name: letters, digits, _ and - (at most 100)
        name: String,
        /// What the secret is for
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Read the value from this file instead of stdin
        #[arg(long, value_name = "PATH")]
        value_file: Option<PathBuf>,
        /// A value given on the command line, caught only to be refused: clap's own
        /// error would quote it.
        #[arg(hide = true, allow_hyphen_values = true, value_name = "VALUE")]
        value_argument: Vec<String>,
        /// `--value VALUE`, refused like a value argument.
        #[arg(long = "value", hide = true, allow_hyphen_values = true)]
        value_option: Option<String>,
    },
    /// Delete a secret
    Delete {
        /// Secret name
        name: String,
    },
}

/// A status a run may be ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FinalArg {
    #[value(name = "SUCCESS")]
    Success,
    #[value(name = "FAILURE")]
    Failure,
}

impl From<FinalArg> for FinalStatus {
    fn from(value: FinalArg) -> Self {
        match value {
            FinalArg::Success => Self::Success,
            FinalArg::Failure => Self::Failure,
        }
    }
}

/// Parses `30s`, `10m`, `1h30m`, `500ms`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string())?,
    };
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn props_parse_on_the_command_line() {
        let cli = Cli::try_parse_from([
            "port",
            "run",
            "deploy",
            "--prop",
            "replicas=3",
            "--prop",
            "region=eu-west-1",
            "--wait",
            "--timeout",
            "2m",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run: {:?}", cli.command);
        };
        assert_eq!(
            run.props,
            [
                ("replicas".to_owned(), serde_json::json!(3)),
                ("region".to_owned(), serde_json::json!("eu-west-1")),
            ]
        );
        assert_eq!(run.timeout, Some(Duration::from_secs(120)));
    }

    #[test]
    fn timeout_needs_something_to_wait_for() {
        let err = Cli::try_parse_from(["port", "run", "deploy", "--timeout", "1m"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(
            Cli::try_parse_from(["port", "run", "deploy", "--follow", "--timeout", "1m"]).is_ok()
        );
    }

    #[test]
    fn statuses_are_case_insensitive() {
        let cli =
            Cli::try_parse_from(["port", "runs", "patch", "r_1", "--status", "failure"]).unwrap();
        let Command::Runs(RunsCommand::Patch { status, .. }) = cli.command else {
            panic!("not a patch");
        };
        assert_eq!(status, Some(FinalArg::Failure));
    }

    #[test]
    fn secret_values_given_as_arguments_are_caught_not_taken() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Secrets(SecretsCommand::Set {
                description,
                value_argument,
                value_option,
                ..
            }) = cli.command
            else {
                panic!("not a set: {:?}", cli.command);
            };
            (description, value_argument, value_option)
        };
        assert_eq!(
            parse(&["port", "secrets", "set", "N", "--description", "CI"]),
            (Some("CI".into()), vec![], None)
        );
        assert_eq!(
            parse(&["port", "secrets", "set", "N", "-x1", "--description", "CI"]).1,
            ["-x1", "--description", "CI"]
        );
        assert_eq!(
            parse(&["port", "secrets", "set", "--value", "-v", "N"]).2,
            Some("-v".into())
        );
    }

    #[test]
    fn people_commands_parse() {
        let cli = Cli::try_parse_from([
            "port", "users", "invite", "ada@x.io", "--role", "ADMIN", "--team", "Platform",
        ])
        .unwrap();
        let Command::Users(UsersCommand::Invite { role, teams, .. }) = cli.command else {
            panic!("not an invite");
        };
        assert_eq!(
            (role, teams),
            (Some(RoleArg::Admin), vec!["Platform".into()])
        );
        assert!(
            Cli::try_parse_from(["port", "users", "update", "ada@x.io"]).is_err(),
            "an update changes something"
        );
        assert!(
            Cli::try_parse_from([
                "port",
                "users",
                "update",
                "ada@x.io",
                "--team",
                "A",
                "--no-teams"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["port", "audit", "--resource", "entities"]).is_err(),
            "resources are checked"
        );
        assert!(Cli::try_parse_from(["port", "run", "deploy", "--run-as", "ada@x.io"]).is_ok());
    }

    #[test]
    fn entity_upserts_need_a_file_or_an_id() {
        assert!(Cli::try_parse_from(["port", "entities", "upsert", "svc"]).is_err());
        assert!(
            Cli::try_parse_from([
                "port", "entities", "upsert", "svc", "-f", "x.json", "--prop", "a=1"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["port", "entities", "upsert", "svc", "--id", "a"]).is_ok());
    }
}
