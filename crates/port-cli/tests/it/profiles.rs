//! Profiles: `port login` saves one (mode 0600) in `$XDG_CONFIG_HOME/port/config.toml`;
//! later commands use it; flags and the environment win over it.

use std::collections::BTreeMap;

use port_cli::config::{ConfigFile, Given, Profile, Settings, config_path};

use crate::support::{Env, command, run_in, seed};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn profiles_round_trip_through_the_file_with_mode_0600() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    let xdg_text = xdg.display().to_string();
    let path = config_path(|name| (name == "XDG_CONFIG_HOME").then(|| xdg_text.clone())).unwrap();
    assert_eq!(path, xdg.join("port").join("config.toml"));
    assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::default());

    let config = ConfigFile {
        profiles: BTreeMap::from([
            (
                "default".to_owned(),
                Profile {
                    api_url: Some("http://127.0.0.1:3000/v1".into()),
                    client_id: Some("id-1".into()),
                    client_secret: Some("secret-1".into()),
                },
            ),
            (
                "staging".to_owned(),
                Profile {
                    api_url: Some("https://staging.example/v1".into()),
                    client_id: Some("id-2".into()),
                    client_secret: Some("secret-2".into()),
                },
            ),
        ]),
    };
    config.save(&path).unwrap();
    assert_eq!(ConfigFile::load(&path).unwrap(), config);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);

    // A file loosened by hand is tightened again when saved.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        config.save(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    let staging = Settings::resolve(
        &Given {
            profile: Some("staging".into()),
            ..Given::default()
        },
        &ConfigFile::load(&path).unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(staging.api_url, "https://staging.example/v1");
    assert_eq!(staging.client_id.as_deref(), Some("id-2"));

    std::fs::write(&path, "profiles = 3").unwrap();
    assert_eq!(
        ConfigFile::load(&path).unwrap_err().identifier,
        "invalid_config"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_a_profile_that_later_commands_use() {
    let env = Env::start().await;
    seed(&env).await;
    let home = tempfile::tempdir().unwrap();
    let secret = env.server.client_secret.as_str();

    // Refused credentials: exit 4 and nothing saved.
    let refused = run_in(
        home.path(),
        &[
            "login",
            "--api-url",
            &env.server.api_url,
            "--client-id",
            &env.server.client_id,
            "--client-secret",
            "not-the-secret",
        ],
    )
    .await;
    assert_eq!(refused.code, 4, "{refused:?}");
    let path = home.path().join("port").join("config.toml");
    assert!(!path.exists());

    // Accepted: saved with mode 0600; the confirmation never shows the secret.
    let login = run_in(
        home.path(),
        &[
            "login",
            "--profile",
            "local",
            "--api-url",
            &env.server.api_url,
            "--client-id",
            &env.server.client_id,
            "--client-secret",
            secret,
        ],
    )
    .await;
    assert_eq!(login.code, 0, "{login:?}");
    assert!(login.stdout.contains("profile \"local\""), "{login:?}");
    assert!(login.stdout.contains(&env.server.client_id), "{login:?}");
    assert!(!login.stdout.contains(secret) && !login.stderr.contains(secret));
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let saved = ConfigFile::load(&path).unwrap();
    assert_eq!(
        saved.profiles["local"].client_secret.as_deref(),
        Some(secret)
    );

    // The profile alone is enough, chosen by flag or by PORT_PROFILE.
    let listed = run_in(home.path(), &["blueprints", "list", "--profile", "local"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("microservice"));
    let by_env = command(home.path())
        .env("PORT_PROFILE", "local")
        .args(["actions", "list", "-o", "json"])
        .output()
        .await
        .unwrap();
    assert!(by_env.status.success(), "{by_env:?}");

    // Flags and the environment win over the profile.
    let overridden = run_in(
        home.path(),
        &[
            "blueprints",
            "list",
            "--profile",
            "local",
            "--client-secret",
            "wrong",
        ],
    )
    .await;
    assert_eq!(overridden.code, 4, "{overridden:?}");
    let env_overridden = command(home.path())
        .env("PORT_PROFILE", "local")
        .env("PORT_CLIENT_SECRET", "wrong")
        .args(["blueprints", "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(env_overridden.status.code(), Some(4));

    // No "default" profile was made, and an unknown one is a usage error.
    let without = run_in(home.path(), &["blueprints", "list"]).await;
    assert_eq!(without.code, 4, "{without:?}");
    let unknown = run_in(home.path(), &["blueprints", "list", "--profile", "nope"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.starts_with("error: profile_not_found: "));

    // Logging in again with the profile's saved credentials checks them again.
    let again = run_in(home.path(), &["login", "--profile", "local", "-o", "json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let shown: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(shown["profile"], "local");
    assert!(!again.stdout.contains(secret));
}
