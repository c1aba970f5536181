//! The server key: what seals client secrets and organization secrets at rest
//! (`port_core::secret::Keyring`), where it comes from, and its rotation.
//!
//! The key is `PORTD_SECRET_KEY` when set (the same on every replica of a PostgreSQL
//! database), else `<data-dir>/secret.key`, created 0600 with 32 bytes from the OS on
//! first start. `PORTD_PREVIOUS_SECRET_KEY` adds an older key the ring still opens.
//! At every start the store re-seals with the current key whatever is not sealed with it
//! (values an older portd wrote in clear, or sealed with the previous key).
//!
//! `portd secrets rotate-key` with the key file writes the new key to
//! `secret.key.next` first, re-seals under it (the old key still opens), then renames
//! it over `secret.key`. A start that finds `secret.key.next` does the same, so a crash
//! at any point loses nothing: until the rename, the old key is in `secret.key` and the
//! new one in `secret.key.next`, and the ring holds both.
//!
//! The key is never logged or printed; its id (a digest's first 4 bytes) is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use port_core::secret::{Keyring, ServerKey};
use port_store::StoreAdmin;

use crate::config::{Config, NEXT_SECRET_KEY_FILE, SECRET_KEY_FILE};
use crate::serve_error::ServeError;

/// The variable holding the server key.
pub const ENV_SECRET_KEY: &str = "PORTD_SECRET_KEY";
/// The variable holding an older key the ring still opens.
pub const ENV_PREVIOUS_SECRET_KEY: &str = "PORTD_PREVIOUS_SECRET_KEY";
/// The variable holding the new key of `portd secrets rotate-key` with [`ENV_SECRET_KEY`].
pub const ENV_NEW_SECRET_KEY: &str = "PORTD_NEW_SECRET_KEY";

/// A server key as configured, read at start. Never printed, even malformed (it may be
/// a real key cut short).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(String);

impl KeyText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// The key, or an error naming `setting` (never the text).
    fn parse(&self, setting: &str) -> Result<ServerKey, ServeError> {
        if self.is_blank() {
            return Err(ServeError::Config(format!(
                "{setting} is set but empty (unset, portd keeps the key in {SECRET_KEY_FILE} \
                 in the data directory)"
            )));
        }
        ServerKey::parse(&self.0)
            .map_err(|e| ServeError::Config(format!("{setting} is not a server key: {e}")))
    }
}

impl From<String> for KeyText {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where the current key is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// [`ENV_SECRET_KEY`].
    Environment,
    /// The data directory's [`SECRET_KEY_FILE`].
    File(PathBuf),
}

/// The keys portd seals with, as found at start.
#[derive(Debug)]
pub struct ServerKeys {
    keyring: Keyring,
    source: KeySource,
    /// The key the current one replaces, if a rotation is under way.
    replaced: Option<ServerKey>,
    /// `secret.key.next`, to rename over `secret.key` once everything is sealed with the
    /// ring's current key.
    pending: Option<PathBuf>,
}

impl ServerKeys {
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn current_id(&self) -> &str {
        self.keyring.current().id()
    }
}

fn previous_key(config: &Config) -> Result<Option<ServerKey>, ServeError> {
    // Empty is unset here: a deployment template may pass an empty older key.
    config
        .previous_secret_key
        .as_ref()
        .filter(|text| !text.is_blank())
        .map(|text| text.parse(ENV_PREVIOUS_SECRET_KEY))
        .transpose()
}

/// Finds the server keys: [`ENV_SECRET_KEY`] (with [`ENV_PREVIOUS_SECRET_KEY`]), else the
/// key file, created on first start, with `secret.key.next` as the current key when a
/// rotation was interrupted. Call after [`crate::data_dir::prepare_data_dir`].
pub fn load(config: &Config) -> Result<ServerKeys, ServeError> {
    let previous = previous_key(config)?;
    let next_path = config.next_secret_key_path();
    if let Some(text) = &config.secret_key {
        let current = text.parse(ENV_SECRET_KEY)?;
        if next_path.exists() {
            tracing::warn!(
                file = %next_path.display(),
                "{ENV_SECRET_KEY} is set, so the key files are not used and the rotation \
                 interrupted in this file is not finished"
            );
        }
        let mut keyring = Keyring::new(current);
        if let Some(previous) = previous {
            keyring = keyring.with_previous(previous);
        }
        return Ok(ServerKeys {
            keyring,
            source: KeySource::Environment,
            replaced: None,
            pending: None,
        });
    }

    let path = config.secret_key_path();
    let (current, replaced, pending) = match (read_key_file(&path)?, read_key_file(&next_path)?) {
        (old, Some(next)) => {
            tracing::info!(
                file = %next_path.display(),
                key_id = next.id(),
                "finishing the rotation of the server key interrupted earlier"
            );
            (next, old, Some(next_path))
        }
        (Some(current), None) => (current, None, None),
        (None, None) => {
            let key = generate()?;
            write_key_file(&config.data_dir, SECRET_KEY_FILE, &key)?;
            tracing::info!(
                file = %path.display(),
                key_id = key.id(),
                "created the server key, which seals client secrets and organization \
                 secrets at rest: keep a copy apart from the database's backups"
            );
            (key, None, None)
        }
    };
    let mut keyring = Keyring::new(current);
    for older in replaced.iter().chain(&previous) {
        keyring = keyring.with_previous(older.clone());
    }
    Ok(ServerKeys {
        keyring,
        source: KeySource::File(path),
        replaced,
        pending,
    })
}

/// 32 bytes straight from the operating system's generator.
fn generate() -> Result<ServerKey, ServeError> {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| ServeError::Config(format!("no random bytes for a server key: {e}")))?;
    Ok(ServerKey::from_bytes(bytes))
}

/// The key in `path`, `None` when there is no such file.
fn read_key_file(path: &Path) -> Result<Option<ServerKey>, ServeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => ServerKey::parse(&text).map(Some).map_err(|_| {
            ServeError::Config(format!(
                "{} does not hold a server key (32 bytes as 64 hexadecimal digits or base64): \
                 restore it from where you keep it, or set {ENV_SECRET_KEY}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServeError::Config(format!(
            "cannot read the server key {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `key` to `dir/name` (see [`crate::data_dir::write_private_file`]).
fn write_key_file(dir: &Path, name: &str, key: &ServerKey) -> Result<PathBuf, ServeError> {
    crate::data_dir::write_private_file(dir, name, format!("{}\n", key.to_text()).as_bytes())
        .map_err(|e| {
            ServeError::Config(format!(
                "cannot write the server key {}: {e}",
                dir.join(name).display()
            ))
        })
}

/// Re-seals with `keys`' current key what `store` holds sealed otherwise or in clear,
/// then finishes a pending rotation (renames `secret.key.next` over `secret.key`).
/// Returns how many values were re-sealed.
pub async fn seal_store(store: &Arc<dyn StoreAdmin>, keys: &ServerKeys) -> Result<u64, ServeError> {
    let resealed = store.reseal_secrets().await.map_err(|e| {
        let keep = match &keys.source {
            KeySource::Environment => format!(
                "give portd the key they were sealed with as {ENV_PREVIOUS_SECRET_KEY}; \
                 replicas sharing a database need the same {ENV_SECRET_KEY}"
            ),
            KeySource::File(path) => format!(
                "restore the key they were sealed with to {}, or set it as \
                 {ENV_PREVIOUS_SECRET_KEY}; replicas sharing a database need the same \
                 {ENV_SECRET_KEY}",
                path.display()
            ),
        };
        ServeError::Config(format!(
            "cannot seal client secrets and organization secrets with the server key {}: \
             {e}; if they were sealed with another key, {keep}",
            keys.current_id()
        ))
    })?;
    if resealed > 0 {
        tracing::info!(
            secrets = resealed,
            key_id = keys.current_id(),
            "re-sealed secrets with the server key"
        );
    }
    if let (Some(next), KeySource::File(path)) = (&keys.pending, &keys.source) {
        let fail = |e: std::io::Error| {
            ServeError::Config(format!(
                "cannot move the new server key {} to {}: {e}",
                next.display(),
                path.display()
            ))
        };
        std::fs::rename(next, path).map_err(fail)?;
        if let Some(dir) = path.parent() {
            crate::data_dir::sync_dir(dir).map_err(fail)?;
        }
        tracing::info!(
            file = %path.display(),
            key_id = keys.current_id(),
            replaced = keys.replaced.as_ref().map(ServerKey::id),
            "the server key is rotated"
        );
    }
    Ok(resealed)
}

/// What `portd secrets rotate-key` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The key sealing secrets before (`None`: an interrupted rotation whose key file
    /// was gone).
    pub old_key_id: Option<String>,
    pub new_key_id: String,
    /// Values re-sealed with the new key.
    pub resealed: u64,
    pub source: KeySource,
    /// Whether this finished a rotation interrupted earlier instead of starting one.
    pub resumed: bool,
}

impl Rotation {
    /// What to tell the operator, line by line (never a key).
    pub fn report(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "re-sealed {} secret(s); the server key is now {} (was {})",
            self.resealed,
            self.new_key_id,
            self.old_key_id.as_deref().unwrap_or("unknown")
        )];
        match &self.source {
            KeySource::File(path) => lines.push(format!(
                "{} holds the new key; backups of the database made before now need the \
                 old one",
                path.display()
            )),
            KeySource::Environment => lines.extend([
                format!(
                    "next: give every replica {ENV_SECRET_KEY}=<the new key> and \
                     {ENV_PREVIOUS_SECRET_KEY}=<the old key>, and restart it; until then a \
                     replica without the new key cannot read client secrets or organization \
                     secrets"
                ),
                format!(
                    "once every replica runs with the new key, remove \
                     {ENV_PREVIOUS_SECRET_KEY}"
                ),
            ]),
        }
        lines
    }
}

/// `portd secrets rotate-key`: see the module. `progress` hears each step.
pub async fn rotate_key(
    config: &Config,
    new_key: Option<&KeyText>,
    progress: &mut dyn FnMut(String),
) -> Result<Rotation, ServeError> {
    crate::data_dir::prepare_data_dir(&config.data_dir)?;
    let new_key = new_key.filter(|text| !text.is_blank());
    let (keys, resumed) = match &config.secret_key {
        Some(current) => {
            let current = current.parse(ENV_SECRET_KEY)?;
            let new = new_key
                .ok_or_else(|| {
                    ServeError::Config(format!(
                        "{ENV_SECRET_KEY} holds the server key, so the new one comes from \
                         {ENV_NEW_SECRET_KEY} (32 bytes as 64 hexadecimal digits or base64, \
                         e.g. `openssl rand -hex 32`), which is not set"
                    ))
                })?
                .parse(ENV_NEW_SECRET_KEY)?;
            // By id: keys themselves are compared nowhere outside port-core.
            if new.id() == current.id() {
                return Err(ServeError::Config(format!(
                    "{ENV_NEW_SECRET_KEY} is the key {ENV_SECRET_KEY} already holds"
                )));
            }
            let mut keyring = Keyring::new(new).with_previous(current.clone());
            if let Some(previous) = previous_key(config)? {
                keyring = keyring.with_previous(previous);
            }
            let keys = ServerKeys {
                keyring,
                source: KeySource::Environment,
                replaced: Some(current),
                pending: None,
            };
            (keys, false)
        }
        None => {
            if new_key.is_some() {
                return Err(ServeError::Config(format!(
                    "{ENV_NEW_SECRET_KEY} is for a key held in {ENV_SECRET_KEY}; with the key \
                     file {}, rotate-key generates the new key",
                    config.secret_key_path().display()
                )));
            }
            let mut keys = load(config)?;
            let resumed = keys.pending.is_some();
            if resumed {
                progress(format!(
                    "finishing the rotation interrupted earlier: key {} in {}",
                    keys.current_id(),
                    config.next_secret_key_path().display()
                ));
            } else {
                let old = keys.keyring.current().clone();
                let new = generate()?;
                // The new key is on disk before anything is sealed with it.
                let next = write_key_file(&config.data_dir, NEXT_SECRET_KEY_FILE, &new)?;
                progress(format!(
                    "wrote the new key {} to {}",
                    new.id(),
                    next.display()
                ));
                let mut keyring = Keyring::new(new).with_previous(old.clone());
                if let Some(previous) = previous_key(config)? {
                    keyring = keyring.with_previous(previous);
                }
                keys = ServerKeys {
                    keyring,
                    source: keys.source,
                    replaced: Some(old),
                    pending: Some(next),
                };
            }
            (keys, resumed)
        }
    };
    progress(format!(
        "re-sealing client secrets and organization secrets with key {}",
        keys.current_id()
    ));
    let sealed = match crate::database::open_database(config, keys.keyring.clone()).await {
        Ok(store) => {
            let sealed = seal_store(&store, &keys).await;
            store.close().await;
            sealed
        }
        Err(e) => Err(e),
    };
    let resealed = sealed.map_err(|e| match &keys.pending {
        // Nothing is lost: the old key still opens everything until the rename.
        Some(next) => ServeError::Config(format!(
            "{e}; the new key stays in {}, and the next start of portd (or rotate-key) \
             finishes the rotation",
            next.display()
        )),
        None => e,
    })?;
    Ok(Rotation {
        old_key_id: keys.replaced.as_ref().map(|k| k.id().to_owned()),
        new_key_id: keys.current_id().to_owned(),
        resealed,
        source: keys.source,
        resumed,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_key_file_is_created_private_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&config(dir.path())).unwrap();
        let path = dir.path().join(SECRET_KEY_FILE);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(first.source(), &KeySource::File(path.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(ServerKey::parse(&text).unwrap().id(), first.current_id());
        let again = load(&config(dir.path())).unwrap();
        assert_eq!(again.keyring(), first.keyring());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SECRET_KEY_FILE], "no temporary file is left");
    }

    #[test]
    fn an_environment_key_is_used_as_given_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::from_bytes([7; 32]);
        let old = ServerKey::from_bytes([8; 32]);
        let keys = load(&Config {
            secret_key: Some(KeyText::new("07".repeat(32))),
            previous_secret_key: Some(KeyText::new(old.to_text())),
            ..config(dir.path())
        })
        .unwrap();
        assert_eq!(
            keys.keyring(),
            &Keyring::new(key.clone()).with_previous(old)
        );
        assert!(!dir.path().join(SECRET_KEY_FILE).exists());

        let cut_short = key.to_text()[..20].to_owned();
        let error = load(&Config {
            secret_key: Some(KeyText::new(cut_short.clone())),
            ..config(dir.path())
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(ENV_SECRET_KEY) && error.contains("64 hexadecimal digits"),
            "{error}"
        );
        assert!(!error.contains(&cut_short), "{error}");
        let shown = format!(
            "{:?}",
            Config {
                secret_key: Some(KeyText::new(key.to_text())),
                ..Config::default()
            }
        );
        assert!(!shown.contains(&key.to_text()), "{shown}");
    }

    #[test]
    fn a_pending_next_key_is_current_with_the_old_one_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let old = ServerKey::from_bytes([1; 32]);
        let new = ServerKey::from_bytes([2; 32]);
        write_key_file(dir.path(), SECRET_KEY_FILE, &old).unwrap();
        write_key_file(dir.path(), NEXT_SECRET_KEY_FILE, &new).unwrap();
        assert_eq!(mode(&dir.path().join(NEXT_SECRET_KEY_FILE)), 0o600);
        let keys = load(&config(dir.path())).unwrap();
        assert_eq!(
            keys.keyring(),
            &Keyring::new(new).with_previous(old.clone())
        );
        assert_eq!(keys.replaced, Some(old));
        assert_eq!(keys.pending, Some(dir.path().join(NEXT_SECRET_KEY_FILE)));
    }

    #[test]
    fn a_damaged_key_file_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRET_KEY_FILE), "half-a-key\n").unwrap();
        let error = load(&config(dir.path())).unwrap_err().to_string();
        assert!(
            error.contains("does not hold a server key") && !error.contains("half-a-key"),
            "{error}"
        );
    }
}
