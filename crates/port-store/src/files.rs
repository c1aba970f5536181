//! SQLite's files readable and writable by their owner only, whatever the umask: the
//! database holds every organization's client secret.
//!
//! SQLite creates a new database file with mode 0644 (less the umask), and its `-wal`,
//! `-shm` and `-journal` files with the database file's own mode (it `fchmod`s them to
//! it). So the database file is created here first, empty (an empty file is an empty
//! database) and 0600, and the files SQLite then makes follow it. Files an older portd
//! left more open are tightened, with a warning.

use std::io;
use std::path::{Path, PathBuf};

/// The mode of the database and its companion files.
pub const DATABASE_FILE_MODE: u32 = 0o600;

/// The files SQLite keeps beside `database`.
fn companions(database: &Path) -> [PathBuf; 3] {
    ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Creates `database` (mode 0600) if it is missing and tightens it and its companion
/// files to 0600 if they exist with more. Returns the files it tightened.
#[cfg(unix)]
pub fn secure_database_files(database: &Path) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DATABASE_FILE_MODE)
        .open(database)
    {
        Ok(file) => {
            // `mode` is masked by the umask, which may only remove bits; set it anyway
            // so the file is exactly 0600.
            file.set_permissions(std::fs::Permissions::from_mode(DATABASE_FILE_MODE))?;
            file.sync_all()?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        // A missing directory: SQLite's own error says it better.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut tightened = Vec::new();
    for path in std::iter::once(database.to_path_buf()).chain(companions(database)) {
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if metadata.permissions().mode() & 0o777 != DATABASE_FILE_MODE {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DATABASE_FILE_MODE))?;
            tightened.push(path);
        }
    }
    Ok(tightened)
}

/// Elsewhere the platform's defaults stand.
#[cfg(not(unix))]
pub fn secure_database_files(_database: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(Vec::new())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_the_database_owner_only_and_tightens_older_files() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("portd.db");
        assert!(secure_database_files(&database).unwrap().is_empty());
        assert_eq!(mode(&database), 0o600);
        assert_eq!(std::fs::metadata(&database).unwrap().len(), 0);

        let wal = dir.path().join("portd.db-wal");
        std::fs::write(&wal, b"").unwrap();
        for path in [&database, &wal] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let tightened = secure_database_files(&database).unwrap();
        assert_eq!(tightened, [database.clone(), wal.clone()]);
        assert_eq!((mode(&database), mode(&wal)), (0o600, 0o600));
    }
}
