//! Choosing and tuning a database: URLs, options, and why opening one failed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use port_core::secret::Keyring;

/// SQLite's `synchronous` setting for the writer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every write is on disk before it is acknowledged: an accepted run or log line
    /// survives a power cut. The default. Implemented as group commit: the writer thread
    /// commits a batch of writes with `NORMAL` and they wait for an fsync of the WAL that
    /// began after that commit, one fsync serving every batch waiting at the time. (The
    /// delivery worker's own bookkeeping is answered at commit: see `port-store::writer`.)
    #[default]
    Full,
    /// In WAL mode, commits are fsynced at checkpoints only: faster, never corrupt,
    /// but the last transactions before a power cut (not a process crash) may be lost.
    Normal,
}

impl Synchronous {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Tuning knobs; [`StoreOptions::default`] suits a single portd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// SQLite only: see [`Synchronous`].
    pub sqlite_synchronous: Synchronous,
    /// SQLite only: read-only connections beside the single writer.
    pub sqlite_read_connections: u32,
    /// SQLite only: how long a statement waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// PostgreSQL only: the pool's size.
    pub pg_max_connections: u32,
    /// How long a call waits for a free connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Seals client secrets and organization secrets at rest (and opens them, with any
    /// key of the ring). portd always passes one; `None`, the default, writes values in
    /// clear and is meant for tests and embedders that protect the database otherwise.
    /// Values written in clear are read either way, and [`crate::StoreAdmin::reseal_secrets`]
    /// seals them once a keyring is set.
    pub keyring: Option<Keyring>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            sqlite_synchronous: Synchronous::Full,
            sqlite_read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            pg_max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            keyring: None,
        }
    }
}

/// Which database a URL names.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `sqlite://PATH`, `sqlite:PATH` or a plain path: the embedded default.
    Sqlite { path: PathBuf },
    /// `postgres://…` or `postgresql://…`, passed to the driver as written.
    Postgres { url: String },
}

impl StoreConfig {
    /// Reads a database URL. Query parameters of `sqlite://` URLs are refused rather
    /// than ignored: the store sets its own pragmas (see [`StoreOptions`]).
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(OpenError::InvalidUrl {
                url: String::new(),
                reason: "the database URL is empty".into(),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres {
                url: url.to_owned(),
            });
        }
        let path = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            rest
        } else if url.contains("://") {
            return Err(OpenError::UnsupportedUrl(redact_url(url)));
        } else {
            return Ok(Self::Sqlite {
                path: PathBuf::from(url),
            });
        };
        let invalid = |reason: &str| OpenError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if path.contains('?') {
            return Err(invalid(
                "query parameters are not supported; use the store options",
            ));
        }
        if path.is_empty() || path.starts_with(":memory:") {
            return Err(invalid(
                "a file path is required (in-memory databases are not supported)",
            ));
        }
        Ok(Self::Sqlite {
            path: PathBuf::from(path),
        })
    }

    /// A description safe for logs: PostgreSQL passwords are masked.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Postgres { url } => redact_url(url),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreConfig({})", self.redacted())
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Masks the password of `scheme://user:password@host/…` and any `password=` parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// Why a store could not be opened. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL {0}: expected sqlite://PATH, a plain path, or postgres://…")]
    UnsupportedUrl(String),
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot open database {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot make the files of database {target} private (mode 0600): {source}")]
    Files {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot migrate database {target}: {source}")]
    Migrate {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot open the writer of database {target}: {reason}")]
    Writer { target: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend() {
        let sqlite = |p: &str| StoreConfig::Sqlite {
            path: PathBuf::from(p),
        };
        assert_eq!(
            StoreConfig::parse("data/portd.db").unwrap(),
            sqlite("data/portd.db")
        );
        assert_eq!(
            StoreConfig::parse("sqlite://portd.db").unwrap(),
            sqlite("portd.db")
        );
        assert_eq!(
            StoreConfig::parse("sqlite:///var/lib/portd.db").unwrap(),
            sqlite("/var/lib/portd.db")
        );
        assert_eq!(
            StoreConfig::parse("sqlite:portd.db").unwrap(),
            sqlite("portd.db")
        );
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db?sslmode=disable",
        ] {
            assert_eq!(
                StoreConfig::parse(url).unwrap(),
                StoreConfig::Postgres { url: url.into() }
            );
        }
        assert!(matches!(
            StoreConfig::parse("mysql://h/db"),
            Err(OpenError::UnsupportedUrl(_))
        ));
        assert!(matches!(
            StoreConfig::parse("sqlite://x.db?mode=rwc"),
            Err(OpenError::InvalidUrl { .. })
        ));
        assert!(matches!(
            StoreConfig::parse("sqlite::memory:"),
            Err(OpenError::InvalidUrl { .. })
        ));
        assert!(matches!(
            StoreConfig::parse(" "),
            Err(OpenError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn passwords_never_show() {
        let config =
            StoreConfig::parse("postgres://portd:s3cret@db:5432/portd?password=other&x=1").unwrap();
        let shown = format!("{config} {config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://portd:***@db:5432/portd?password=***&x=1"),
            "{shown}"
        );
        assert_eq!(redact_url("postgres://db/portd"), "postgres://db/portd");
        let err = StoreConfig::parse("redis://u:hunter2@h")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
