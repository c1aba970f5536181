//! The data directory: its owner's only (0700), whatever the umask, because the SQLite
//! database and `credentials.json` in it hold every organization's client secret, and
//! `secret.key` the key that seals them.
//!
//! A missing directory is created 0700. An existing one that others may enter is
//! tightened to 0700, with a warning, when everything in it is portd's own (an older
//! portd made it 0755, or an operator made it empty for portd); if it holds anything
//! else, portd refuses to start rather than change the permissions of a directory that
//! may not be its own (`PORTD_DATA_DIR=/var/lib` by mistake). The files portd writes
//! there are 0600 (`port_store::secure_database_files`, the credentials, worker-id and
//! server key files).

use std::path::Path;

use crate::config::{
    CREDENTIALS_FILE, DATABASE_FILE, NEXT_SECRET_KEY_FILE, SECRET_KEY_FILE, WORKER_ID_FILE,
};
use crate::serve_error::ServeError;

/// The data directory's mode.
pub const DATA_DIR_MODE: u32 = 0o700;

/// The files portd writes in its data directory (and, being written, as `<name>.tmp`),
/// besides the database's.
const OWN_FILES: [&str; 4] = [
    CREDENTIALS_FILE,
    WORKER_ID_FILE,
    SECRET_KEY_FILE,
    NEXT_SECRET_KEY_FILE,
];

/// Whether `name` is a file portd keeps in its data directory.
fn is_portds_own(name: &str) -> bool {
    let database_files = ["", "-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| name.strip_prefix(DATABASE_FILE) == Some(suffix));
    database_files
        || OWN_FILES
            .iter()
            .any(|own| name == *own || name == format!("{own}.tmp"))
}

/// The mode of the files portd writes in the data directory.
pub const DATA_FILE_MODE: u32 = 0o600;

/// Writes `contents` to `dir/name` durably and whole, its owner's only: a new temporary
/// file created 0600 (the umask can only take bits away; a leftover one from a crash is
/// removed first so the mode applies), fsynced, renamed over `name`, and the directory
/// fsynced so the rename survives a crash too.
pub fn write_private_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write as _;
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.tmp"));
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(DATA_FILE_MODE);
    }
    let mut file = options.open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` (0700) or checks and tightens an existing one, and tightens the
/// credentials, worker-id and key files an older portd (or an operator) left open; see
/// the module. (The database's files are port-store's.)
#[cfg(unix)]
pub fn prepare_data_dir(dir: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt as _;

    private_dir(dir)?;
    for name in OWN_FILES {
        let path = dir.join(name);
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DATA_FILE_MODE))
                .map_err(|e| {
                    ServeError::Config(format!("cannot make {} private: {e}", path.display()))
                })?;
            if [SECRET_KEY_FILE, NEXT_SECRET_KEY_FILE].contains(&name) {
                tracing::warn!(
                    file = %path.display(),
                    "made the server key private (mode 600); others may have read it: \
                     rotate it with `portd secrets rotate-key`"
                );
            } else {
                tracing::warn!(file = %path.display(), "made a file of the data directory private (mode 600)");
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};

    let fail = |what: &str, e: std::io::Error| {
        ServeError::Config(format!("data directory {}: {what}: {e}", dir.display()))
    };
    match std::fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => Err(ServeError::Config(format!(
            "data directory {} is not a directory",
            dir.display()
        ))),
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                return Ok(());
            }
            let foreign: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| fail("cannot list it", e))?
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !is_portds_own(name))
                .collect();
            if let Some(example) = foreign.first() {
                return Err(ServeError::Config(format!(
                    "data directory {dir} is open to other users (mode {mode:03o}) and holds \
                     files portd did not create ({example}{more}); it keeps client secrets, so \
                     portd will not start there: run `chmod 700 {dir}`, or set PORTD_DATA_DIR \
                     to a directory of portd's own",
                    dir = dir.display(),
                    more = if foreign.len() > 1 { ", …" } else { "" },
                )));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
                .map_err(|e| fail("cannot make it private (chmod 700)", e))?;
            tracing::warn!(
                dir = %dir.display(),
                was = %format!("{mode:03o}"),
                "made the data directory private (mode 700): it keeps client secrets"
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| fail("cannot create its parent", e))?;
            }
            std::fs::DirBuilder::new()
                .mode(DATA_DIR_MODE)
                .create(dir)
                .map_err(|e| fail("cannot create it", e))?;
            // The umask can only have removed bits; make it exactly 0700 anyway.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
                .map_err(|e| fail("cannot make it private (chmod 700)", e))
        }
        Err(e) => Err(fail("cannot read it", e)),
    }
}

/// Elsewhere the platform's defaults stand.
#[cfg(not(unix))]
pub fn prepare_data_dir(dir: &Path) -> Result<(), ServeError> {
    std::fs::create_dir_all(dir)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("data");
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_open_directory_of_portds_files_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        for name in [
            "portd.db",
            "portd.db-wal",
            "credentials.json",
            "worker-id",
            "secret.key",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
            chmod(&dir.join(name), 0o644);
        }
        chmod(&dir, 0o755);
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("worker-id")), 0o600);
        assert_eq!(mode(&dir.join("credentials.json")), 0o600);
        assert_eq!(mode(&dir.join("secret.key")), 0o600);
        // An empty one too.
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        chmod(&empty, 0o777);
        prepare_data_dir(&empty).unwrap();
        assert_eq!(mode(&empty), 0o700);
    }

    #[test]
    fn an_open_directory_with_other_files_is_refused() {
        let root = tempfile::tempdir().unwrap();
        chmod(root.path(), 0o755);
        std::fs::write(root.path().join("notes.txt"), b"").unwrap();
        let error = prepare_data_dir(root.path()).unwrap_err().to_string();
        assert!(
            error.contains("mode 755") && error.contains("notes.txt"),
            "{error}"
        );
        assert!(error.contains("chmod 700"), "{error}");
        assert_eq!(mode(root.path()), 0o755, "left as it was");
    }

    #[test]
    fn only_portds_file_names_count_as_its_own() {
        for own in [
            "portd.db",
            "portd.db-wal",
            "portd.db-shm",
            "credentials.json",
            "worker-id.tmp",
            "secret.key",
            "secret.key.next",
            "secret.key.next.tmp",
        ] {
            assert!(is_portds_own(own), "{own}");
        }
        for other in ["portd.dbx", "notes.txt", ".ssh", "credentials.json.bak"] {
            assert!(!is_portds_own(other), "{other}");
        }
    }
}
