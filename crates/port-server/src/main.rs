//! `portd`: parses the command line and runs the server or a subcommand.

use anyhow::Context as _;
use clap::Parser as _;
use port_server::config::{Command, CredentialsCommand, init_tracing};
use port_server::{Cli, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    }
}
