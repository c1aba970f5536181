//! Named profiles in `$XDG_CONFIG_HOME/port/config.toml` (`~/.config/port/config.toml`),
//! and how a command's settings are resolved: flags, then environment variables, then
//! the profile, then defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The profile used when `--profile` and `PORT_PROFILE` are not given.
pub const DEFAULT_PROFILE: &str = "default";
/// Environment variable naming the profile.
pub const ENV_PROFILE: &str = "PORT_PROFILE";

/// One profile: where the API is and the credentials to use.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The API base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Profiles by name (`[profiles.NAME]` tables).
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The configuration file's path: `$XDG_CONFIG_HOME/port/config.toml` when that
/// variable is an absolute path (as the XDG spec requires), else
/// `$HOME/.config/port/config.toml`; `None` without either.
pub fn config_path(lookup: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let base = get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| get("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("port").join("config.toml"))
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(CliError::usage(
                    "invalid_config",
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        };
        toml::from_str(&text).map_err(|e| {
            CliError::usage(
                "invalid_config",
                format!("{}: {}", path.display(), e.message()),
            )
        })
    }

    /// Writes the file, readable and writable by its owner only (mode 0600), through a
    /// temporary file renamed over the old one, so that a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let fail = |e: std::io::Error| {
            CliError::usage(
                "config_not_saved",
                format!("cannot write {}: {e}", path.display()),
            )
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let text = toml::to_string_pretty(self).map_err(|e| {
            CliError::usage("config_not_saved", format!("cannot encode profiles: {e}"))
        })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.toml".to_owned());
        let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let written = (|| {
            let mut file = options.open(&temporary)?;
            #[cfg(unix)]
            {
                // `mode` applies to new files only; a leftover one is tightened too.
                use std::os::unix::fs::PermissionsExt as _;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(fail)
    }
}

/// What a command connects with, once flags, environment and profile are combined.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The API base URL.
    pub api_url: String,
    /// The client id, if any source gave one.
    pub client_id: Option<String>,
    /// The client secret, if any source gave one.
    pub client_secret: Option<String>,
    /// The profile consulted.
    pub profile: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("profile", &self.profile)
            .finish()
    }
}

/// Values given on the command line or in the environment (clap merges the two,
/// flags first); empty values count as absent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Given {
    /// `--api-url` / `PORT_API_URL`.
    pub api_url: Option<String>,
    /// `--client-id` / `PORT_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `--client-secret` / `PORT_CLIENT_SECRET`.
    pub client_secret: Option<String>,
    /// `--profile` / `PORT_PROFILE`.
    pub profile: Option<String>,
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty()).cloned()
}

impl Settings {
    /// Combines `given` (flags and environment) with the profile from `config` and the
    /// defaults. A profile named explicitly must exist unless `allow_missing_profile`
    /// (as for `port login`, which creates it); the default profile may be absent.
    pub fn resolve(
        given: &Given,
        config: &ConfigFile,
        allow_missing_profile: bool,
    ) -> Result<Self, CliError> {
        let named = non_empty(given.profile.as_ref());
        let profile_name = named.clone().unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        let profile = match config.profiles.get(&profile_name) {
            Some(profile) => profile.clone(),
            None if named.is_some() && !allow_missing_profile => {
                return Err(CliError::usage(
                    "profile_not_found",
                    format!(
                        "no profile named {profile_name:?}; create it with `port login --profile {profile_name}`"
                    ),
                ));
            }
            None => Profile::default(),
        };
        Ok(Self {
            api_url: non_empty(given.api_url.as_ref())
                .or_else(|| non_empty(profile.api_url.as_ref()))
                .unwrap_or_else(|| port_client::DEFAULT_API_URL.to_owned()),
            client_id: non_empty(given.client_id.as_ref())
                .or_else(|| non_empty(profile.client_id.as_ref())),
            client_secret: non_empty(given.client_secret.as_ref())
                .or_else(|| non_empty(profile.client_secret.as_ref())),
            profile: profile_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(name: &str, profile: Profile) -> ConfigFile {
        ConfigFile {
            profiles: BTreeMap::from([(name.to_owned(), profile)]),
        }
    }

    #[test]
    fn the_path_follows_xdg_then_home() {
        let env = |xdg: Option<&'static str>, home: Option<&'static str>| {
            move |name: &str| match name {
                "XDG_CONFIG_HOME" => xdg.map(str::to_owned),
                "HOME" => home.map(str::to_owned),
                _ => None,
            }
        };
        assert_eq!(
            config_path(env(Some("/x/cfg"), Some("/home/u"))),
            Some(PathBuf::from("/x/cfg/port/config.toml"))
        );
        assert_eq!(
            config_path(env(None, Some("/home/u"))),
            Some(PathBuf::from("/home/u/.config/port/config.toml"))
        );
        // Relative and empty values of XDG_CONFIG_HOME are ignored, as the spec says.
        assert_eq!(
            config_path(env(Some("rel"), Some("/home/u"))),
            Some(PathBuf::from("/home/u/.config/port/config.toml"))
        );
        assert_eq!(
            config_path(env(Some(""), Some("/home/u"))),
            Some(PathBuf::from("/home/u/.config/port/config.toml"))
        );
        assert_eq!(config_path(env(None, None)), None);
    }

    #[test]
    fn flags_and_environment_beat_the_profile_which_beats_defaults() {
        let config = config_with(
            "default",
            Profile {
                api_url: Some("https://profile/v1".into()),
                client_id: Some("profile-id".into()),
                client_secret: Some("profile-secret".into()),
            },
        );
        let given = Given {
            client_id: Some("flag-id".into()),
            api_url: Some(String::new()),
            ..Given::default()
        };
        let settings = Settings::resolve(&given, &config, false).unwrap();
        assert_eq!(settings.api_url, "https://profile/v1");
        assert_eq!(settings.client_id.as_deref(), Some("flag-id"));
        assert_eq!(settings.client_secret.as_deref(), Some("profile-secret"));
        assert_eq!(settings.profile, "default");

        let bare = Settings::resolve(&Given::default(), &ConfigFile::default(), false).unwrap();
        assert_eq!(bare.api_url, port_client::DEFAULT_API_URL);
        assert_eq!(bare.client_id, None);
    }

    #[test]
    fn a_named_profile_must_exist_unless_it_is_being_created() {
        let given = Given {
            profile: Some("staging".into()),
            ..Given::default()
        };
        let err = Settings::resolve(&given, &ConfigFile::default(), false).unwrap_err();
        assert_eq!(err.identifier, "profile_not_found");
        assert_eq!(err.code, crate::error::exit::USAGE);
        let created = Settings::resolve(&given, &ConfigFile::default(), true).unwrap();
        assert_eq!(created.profile, "staging");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let profile = Profile {
            client_secret: Some("hunter2".into()),
            ..Profile::default()
        };
        assert!(!format!("{profile:?}").contains("hunter2"));
        let settings = Settings::resolve(
            &Given {
                client_secret: Some("hunter2".into()),
                ..Given::default()
            },
            &ConfigFile::default(),
            false,
        )
        .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
