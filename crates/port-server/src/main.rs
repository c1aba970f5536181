//! `portd`: parses the command line and runs the server or a subcommand.

use anyhow::Context as _;
use clap::Parser as _;
use port_server::accounts::{self, NewAccount};
use port_server::config::{
    Command, CredentialsCommand, SecretsCommand, UsersCommand, init_tracing,
};
use port_server::{Cli, Config};

fn main() -> anyhow::Result<()> {
    // A template worker is a plain loop over stdin: no runtime, no logging, no flags.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == port_server::TEMPLATE_WORKER)
    {
        std::process::exit(port_sandbox::worker::run());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let config = Config::from(cli.server);
    match cli.command {
        None => port_server::serve(config)
            .await
            .context("portd stopped with an error"),
        Some(Command::Credentials {
            command: CredentialsCommand::Create { org },
        }) => {
            let created = port_server::create_credentials(&config, org.as_deref())
                .await
                .context("could not create credentials")?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            Ok(())
        }
        Some(Command::Secrets {
            command: SecretsCommand::RotateKey { new_secret_key },
        }) => {
            let rotation = port_server::secret_key::rotate_key(
                &config,
                new_secret_key.as_ref(),
                &mut |step| println!("portd: {step}"),
            )
            .await
            .context("could not rotate the server key")?;
            for line in rotation.report() {
                println!("portd: {line}");
            }
            Ok(())
        }
        Some(Command::Users { command }) => users(&config, command).await,
    }
}

/// `portd users create|set-password`.
async fn users(config: &Config, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create {
            email,
            admin,
            first_name,
            last_name,
            teams,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(accounts::password_from_stdin().context("reading the password")?)
            } else {
                None
            };
            let has_password = password.is_some();
            let user = accounts::create_user(
                config,
                NewAccount {
                    email,
                    admin,
                    first_name,
                    last_name,
                    teams,
                    password,
                },
            )
            .await
            .context("could not create the user")?;
            println!(
                "portd: created {} ({}) in organization {}{}",
                user.email,
                user.role.as_str(),
                user.org_id,
                if has_password {
                    ", with a password"
                } else {
                    ""
                }
            );
            Ok(())
        }
        UsersCommand::SetPassword {
            email,
            password_stdin: _,
        } => {
            let password = accounts::password_from_stdin().context("reading the password")?;
            accounts::set_password(config, &email, password)
                .await
                .context("could not set the password")?;
            println!("portd: set the password of {email}");
            Ok(())
        }
    }
}
