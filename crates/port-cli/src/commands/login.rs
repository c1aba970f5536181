//! `port login`: check credentials by fetching a token, then save them as a profile.

use crate::cli::GlobalArgs;
use crate::config::{Profile, Settings};
use crate::error::{CliError, exit};
use crate::output::{Details, Ui};

use super::{client_for, load_config};

pub(crate) async fn login(global: &GlobalArgs, ui: &Ui) -> Result<u8, CliError> {
    let (path, mut config) = load_config()?;
    let Some(path) = path else {
        return Err(CliError::usage(
            "no_config_dir",
            "cannot tell where to save the profile: set HOME or XDG_CONFIG_HOME",
        ));
    };
    let settings = Settings::resolve(&global.given(), &config, true)?;
    let client = client_for(&settings)?;
    client.access_token().await?;

    let profile = Profile {
        api_url: Some(settings.api_url.clone()),
        client_id: settings.client_id.clone(),
        client_secret: settings.client_secret.clone(),
    };
    config.profiles.insert(settings.profile.clone(), profile);
    config.save(&path)?;

    let client_id = settings.client_id.clone().unwrap_or_default();
    if ui.structured() {
        // Never the secret.
        ui.data(&serde_json::json!({
            "profile": settings.profile,
            "apiUrl": settings.api_url,
            "clientId": client_id,
            "configFile": path.display().to_string(),
        }))?;
    } else if !ui.quiet {
        let mut details = Details::new();
        details
            .field("Profile", settings.profile.as_str())
            .field("API", settings.api_url.as_str())
            .field("Client id", client_id.as_str())
            .field("Saved to", path.display().to_string());
        ui.line(&format!(
            "Logged in: the credentials were accepted and saved as profile {:?}.",
            settings.profile
        ))?;
        ui.text(&details.render(false))?;
    }
    Ok(exit::OK)
}
