//! `portd users create` and `portd users set-password`: people of the bootstrap
//! organization made from the command line, where the first Admin comes from (no one
//! can invite anyone before there is an Admin, and organization credentials are not
//! people). They open the database like `portd credentials create` does, and act as
//! the machine `portd` (which is what the audit trail records).

use std::sync::Arc;

use port_core::access::{Email, Role, TeamName, User};
use port_core::id::OrgId;
use port_core::ports::Store;
use port_core::service::Caller;
use port_core::service::access::NewUser;

use crate::bootstrap;
use crate::config::Config;
use crate::password::{check_new_password, hash_password};
use crate::serve_error::ServeError;
use crate::server::open_store;
use crate::state::AppState;

/// Who the audit trail says made the change.
pub const COMMAND_LINE_ACTOR: &str = "portd";

/// What `portd users create` was asked for.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub email: String,
    pub admin: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub teams: Vec<String>,
    /// The password, when one was given on stdin.
    pub password: Option<String>,
}

fn config_error(message: impl std::fmt::Display) -> ServeError {
    ServeError::Config(message.to_string())
}

/// Reads a password from the first line of `input` (without its line ending), as
/// `--password-stdin` takes it; refuses one too short or too long.
pub fn read_password(input: &mut dyn std::io::BufRead) -> Result<String, ServeError> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    check_new_password(&password).map_err(config_error)?;
    Ok(password)
}

/// Reads the password from this process's stdin.
pub fn password_from_stdin() -> Result<String, ServeError> {
    read_password(&mut std::io::stdin().lock())
}

/// The bootstrap organization, named in `<data-dir>/credentials.json`.
async fn bootstrap_org(config: &Config, store: &dyn Store) -> Result<OrgId, ServeError> {
    let path = config.credentials_path();
    let file = bootstrap::read_credentials_file(&path).map_err(|e| {
        config_error(format!(
            "no bootstrap organization found ({}: {e}); start portd once first",
            path.display()
        ))
    })?;
    let id =
        OrgId::parse(&file.org_id).map_err(|e| config_error(format!("{}: {e}", path.display())))?;
    if store.get_organization(&id).await?.is_none() {
        return Err(config_error(format!(
            "organization {id} of {} is not in the database",
            path.display()
        )));
    }
    Ok(id)
}

/// Hashes off the async threads: argon2id takes tens of milliseconds on purpose.
async fn hashed(password: String) -> Result<port_core::access::PasswordHash, ServeError> {
    Ok(tokio::task::spawn_blocking(move || hash_password(&password)).await?)
}

/// `portd users create`: the user, in the bootstrap organization, with a password
/// when one was given.
pub async fn create_user(config: &Config, account: NewAccount) -> Result<User, ServeError> {
    let email = Email::parse(&account.email).map_err(config_error)?;
    let teams = account
        .teams
        .iter()
        .map(|t| TeamName::parse(t).map_err(config_error))
        .collect::<Result<Vec<_>, _>>()?;
    let hash = match account.password {
        Some(password) => Some(hashed(password).await?),
        None => None,
    };
    let store = open_store(config).await?;
    let result = async {
        let data: Arc<dyn Store> = store.clone();
        let state = AppState::builder(data).build();
        let org = bootstrap_org(config, state.store().as_ref()).await?;
        let caller = Caller::machine(org, COMMAND_LINE_ACTOR);
        let new = NewUser {
            email,
            role: if account.admin {
                Role::Admin
            } else {
                Role::Member
            },
            first_name: account.first_name.filter(|n| !n.trim().is_empty()),
            last_name: account.last_name.filter(|n| !n.trim().is_empty()),
            teams,
        };
        let services = state.services();
        let user = services
            .create_user(&caller, new)
            .await
            .map_err(config_error)?;
        if let Some(hash) = &hash {
            services
                .set_password(&caller, user.email.as_str(), Some(hash))
                .await
                .map_err(config_error)?;
        }
        Ok(user)
    }
    .await;
    store.close().await;
    result
}

/// `portd users set-password`: replaces the password of a user of the bootstrap
/// organization.
pub async fn set_password(
    config: &Config,
    email: &str,
    password: String,
) -> Result<(), ServeError> {
    let email = Email::parse(email).map_err(config_error)?;
    let hash = hashed(password).await?;
    let store = open_store(config).await?;
    let result = async {
        let data: Arc<dyn Store> = store.clone();
        let state = AppState::builder(data).build();
        let org = bootstrap_org(config, state.store().as_ref()).await?;
        let caller = Caller::machine(org, COMMAND_LINE_ACTOR);
        state
            .services()
            .set_password(&caller, email.as_str(), Some(&hash))
            .await
            .map_err(config_error)
    }
    .await;
    store.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_the_first_line_without_its_ending() {
        let mut input = std::io::Cursor::new(b"correct horse\r\nsecond line\n".to_vec());
        assert_eq!(read_password(&mut input).unwrap(), "correct horse");
        let mut input = std::io::Cursor::new(b"  spaces kept  ".to_vec());
        assert_eq!(read_password(&mut input).unwrap(), "  spaces kept  ");
        let mut short = std::io::Cursor::new(b"short\n".to_vec());
        assert!(read_password(&mut short).is_err());
        let mut empty = std::io::Cursor::new(Vec::new());
        assert!(read_password(&mut empty).is_err());
    }
}
