//! The commands: each takes its arguments and a connected [`Ctx`], prints its result and
//! returns the exit code (or a [`CliError`]).

mod catalog;
mod login;
mod people;
mod runs;
mod secrets;

use std::path::PathBuf;

use port_client::{Method, PortClient};
use serde_json::Value;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{ConfigFile, Settings, config_path};
use crate::error::CliError;
use crate::output::Ui;

/// What a command works with.
pub(crate) struct Ctx {
    pub(crate) client: PortClient,
    pub(crate) ui: Ui,
}

impl Ctx {
    /// `GET` a route and return the value under `key` of its answer, exactly as the API
    /// sent it: what `-o json` and `-o yaml` print. `segments` are percent-encoded.
    pub(crate) async fn raw(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        key: &str,
    ) -> Result<Value, CliError> {
        if let Some(dots) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(CliError::usage(
                "invalid_identifier",
                format!("{dots:?} is not an identifier"),
            ));
        }
        let path = segments
            .iter()
            .map(|s| encode_segment(s))
            .collect::<Vec<_>>()
            .join("/");
        let mut body = self
            .client
            .request_json(Method::GET, &path, query, None)
            .await?;
        match body.get_mut(key).map(Value::take) {
            Some(value) => Ok(value),
            None => Err(CliError::new(
                crate::error::exit::API,
                "unexpected_response",
                format!("GET {path}: the answer has no `{key}` key"),
            )),
        }
    }
}

/// Percent-encodes a path segment: everything but `A-Z a-z 0-9 - . _ ~`.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The configuration file's path and contents (empty when there is no file or no
/// home directory).
pub(crate) fn load_config() -> Result<(Option<PathBuf>, ConfigFile), CliError> {
    let path = config_path(env);
    let config = match &path {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    Ok((path, config))
}

/// A client for the resolved settings; missing credentials are an authentication
/// error (exit code 4).
pub(crate) fn client_for(settings: &Settings) -> Result<PortClient, CliError> {
    let (Some(id), Some(secret)) = (&settings.client_id, &settings.client_secret) else {
        return Err(CliError::auth(
            "missing_credentials",
            "no credentials: pass --client-id and --client-secret, set PORT_CLIENT_ID and \
             PORT_CLIENT_SECRET, or save a profile with `port login`",
        ));
    };
    Ok(PortClient::builder()
        .base_url(&settings.api_url)
        .credentials(id, secret)
        .user_agent(concat!("port-cli/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

fn connect(global: &GlobalArgs, ui: &Ui) -> Result<Ctx, CliError> {
    let (_, config) = load_config()?;
    let settings = Settings::resolve(&global.given(), &config, false)?;
    Ok(Ctx {
        client: client_for(&settings)?,
        ui: ui.clone(),
    })
}

pub(crate) async fn dispatch(cli: &Cli, ui: &Ui) -> Result<u8, CliError> {
    let ctx = || connect(&cli.global, ui);
    match &cli.command {
        Command::Login => login::login(&cli.global, ui).await,
        Command::Blueprints(command) => catalog::blueprints(&ctx()?, command).await,
        Command::Actions(command) => catalog::actions(&ctx()?, command).await,
        Command::Entities(command) => catalog::entities(&ctx()?, command).await,
        Command::Run(args) => runs::run(&ctx()?, args).await,
        Command::Runs(command) => runs::runs(&ctx()?, command).await,
        Command::Secrets(command) => secrets::secrets(ctx, command).await,
        Command::Users(command) => people::users(&ctx()?, command).await,
        Command::Teams(command) => people::teams(&ctx()?, command).await,
        Command::Audit(args) => people::audit(&ctx()?, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_stay_one_path_segment() {
        assert_eq!(encode_segment("r_AbC-1.2~x"), "r_AbC-1.2~x");
        assert_eq!(encode_segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
