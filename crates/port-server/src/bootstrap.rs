//! Organizations and credentials: the first start's bootstrap and
//! `portd credentials create`.

use std::io::Write as _;
use std::path::Path;

use port_core::id::OrgId;
use port_core::ports::{ClientSecret, Clock, Credential, IdGenerator, Organization, Store};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::serve_error::ServeError;

/// Length of generated client ids (as Port's).
pub const CLIENT_ID_LEN: usize = 32;
/// Length of generated client secrets.
pub const CLIENT_SECRET_LEN: usize = 64;

/// The shortest `PORTD_BOOTSTRAP_CLIENT_SECRET` accepted: the token route throttles
/// guesses, but a short secret would still fall to a patient attacker.
pub const MIN_BOOTSTRAP_SECRET_LEN: usize = 32;

/// Refuses a given bootstrap secret shorter than [`MIN_BOOTSTRAP_SECRET_LEN`]
/// characters, at every start (a configured short secret is a mistake even once the
/// database has credentials).
pub fn check_bootstrap_secret(secret: Option<&str>) -> Result<(), ServeError> {
    match secret.map(|s| s.chars().count()) {
        Some(len) if len < MIN_BOOTSTRAP_SECRET_LEN => Err(ServeError::Config(format!(
            "PORTD_BOOTSTRAP_CLIENT_SECRET has {len} characters; it needs at least \
             {MIN_BOOTSTRAP_SECRET_LEN} (e.g. `openssl rand -hex 32`), or leave it unset and \
             portd generates one"
        ))),
        _ => Ok(()),
    }
}

/// The contents of `<data-dir>/credentials.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsFile {
    pub client_id: String,
    pub client_secret: String,
    pub org_id: String,
    pub api_url: String,
}

impl std::fmt::Debug for CredentialsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsFile")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("org_id", &self.org_id)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// `len` random characters of `[A-Za-z0-9]` from the OS-seeded generator.
pub fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Creates an organization.
pub async fn create_organization(
    store: &dyn Store,
    ids: &IdGenerator,
    clock: &dyn Clock,
    name: &str,
) -> Result<Organization, ServeError> {
    let org = Organization {
        id: ids.next::<OrgId>(),
        name: name.to_owned(),
        created_at: clock.now(),
    };
    store.create_organization(&org).await?;
    Ok(org)
}

/// Adds credentials to an organization; the id and secret are generated unless given.
pub async fn create_credential(
    store: &dyn Store,
    clock: &dyn Clock,
    org: &OrgId,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<Credential, ServeError> {
    let credential = Credential {
        org_id: org.clone(),
        client_id: client_id.unwrap_or_else(|| random_alphanumeric(CLIENT_ID_LEN)),
        client_secret: ClientSecret::new(
            client_secret.unwrap_or_else(|| random_alphanumeric(CLIENT_SECRET_LEN)),
        ),
        created_at: clock.now(),
        user: None,
    };
    store.add_credential(&credential).await?;
    Ok(credential)
}

/// What the first start created.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub credentials: CredentialsFile,
    /// Whether the secret was generated (and so must be shown once).
    pub generated: bool,
}

/// On a database without credentials: creates an organization and its first
/// credentials (from the given id and secret, or generated) and writes them to
/// `credentials_path` with mode 0600. Returns `None` when credentials already exist.
pub async fn bootstrap(
    store: &dyn Store,
    ids: &IdGenerator,
    clock: &dyn Clock,
    client_id: Option<String>,
    client_secret: Option<String>,
    credentials_path: &Path,
    api_url: &str,
) -> Result<Option<Bootstrapped>, ServeError> {
    if store.count_credentials().await? > 0 {
        return Ok(None);
    }
    if client_id.is_some() != client_secret.is_some() {
        return Err(ServeError::Config(
            "set both PORTD_BOOTSTRAP_CLIENT_ID and PORTD_BOOTSTRAP_CLIENT_SECRET, or neither"
                .into(),
        ));
    }
    let generated = client_secret.is_none();
    let org = create_organization(store, ids, clock, "default").await?;
    let credential = create_credential(store, clock, &org.id, client_id, client_secret).await?;
    let credentials = CredentialsFile {
        client_id: credential.client_id.clone(),
        client_secret: credential.client_secret.expose().to_owned(),
        org_id: org.id.to_string(),
        api_url: api_url.to_owned(),
    };
    write_credentials_file(credentials_path, &credentials)?;
    Ok(Some(Bootstrapped {
        credentials,
        generated,
    }))
}

/// Writes the credentials file, readable by its owner only.
pub fn write_credentials_file(path: &Path, credentials: &CredentialsFile) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` only applies to new files; an older file is tightened too.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let text = serde_json::to_string_pretty(credentials).map_err(std::io::Error::other)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

pub fn read_credentials_file(path: &Path) -> std::io::Result<CredentialsFile> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}
