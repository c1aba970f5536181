//! `port secrets`: the organization's secrets. Values go in from stdin or a file and
//! are never printed; answers carry names, descriptions and dates only.

use crate::cli::SecretsCommand;
use crate::error::{CliError, exit};
use crate::input::read_secret_value;
use crate::output::{Cell, Table, time};

use super::Ctx;

/// Runs a `port secrets` command; `connect` is called once its own arguments (and the
/// value) are known to be usable, so a usage error comes first, as clap's do.
pub(crate) async fn secrets(
    connect: impl FnOnce() -> Result<Ctx, CliError>,
    command: &SecretsCommand,
) -> Result<u8, CliError> {
    let value = match command {
        SecretsCommand::Set {
            value_file,
            value_argument,
            value_option,
            ..
        } => {
            // Without echoing what was given: it is in the shell's history already, it
            // need not be in a terminal log too.
            if !value_argument.is_empty() || value_option.is_some() {
                return Err(CliError::usage(
                    "value_in_arguments",
                    "secret values are not taken from the command line, where shell history \
                     and the process list keep them: pipe the value in \
                     (printf %s \"$VALUE\" | port secrets set NAME) or give --value-file PATH",
                ));
            }
            Some(read_secret_value(value_file.as_deref())?)
        }
        SecretsCommand::List | SecretsCommand::Delete { .. } => None,
    };
    let ctx = &connect()?;
    match command {
        SecretsCommand::List => {
            if ctx.ui.structured() {
                let secrets = ctx
                    .raw(&["organization", "secrets"], &[], "secrets")
                    .await?;
                return ctx.ui.data(&secrets).map(|()| exit::OK);
            }
            let secrets = ctx.client.list_secrets().await?;
            let mut table = Table::new(&["NAME", "DESCRIPTION", "CREATED", "UPDATED"]);
            for secret in &secrets {
                table.row(vec![
                    secret.secret_name.as_str().into(),
                    Cell::opt(secret.description.as_deref()),
                    time(secret.created_at.as_ref()).into(),
                    time(secret.updated_at.as_ref()).into(),
                ]);
            }
            ctx.ui.text(&table.render(ctx.ui.color))?;
        }
        SecretsCommand::Set {
            name, description, ..
        } => {
            // Read above for every `Set`.
            let value = value.unwrap_or_default();
            let description = description.as_deref();
            let verb = match ctx.client.create_secret(name, &value, description).await {
                Ok(_) => "created",
                // Taken: set means "this is the value now", so replace it.
                Err(e) if e.status() == Some(409) => {
                    ctx.client
                        .update_secret(name, Some(&value), description)
                        .await?;
                    "updated"
                }
                Err(e) => return Err(e.into()),
            };
            if ctx.ui.structured() {
                let secret = ctx
                    .raw(&["organization", "secrets", name], &[], "secret")
                    .await?;
                return ctx.ui.data(&secret).map(|()| exit::OK);
            }
            ctx.ui.line(&format!("secret {name} {verb}"))?;
        }
        SecretsCommand::Delete { name } => {
            ctx.client.delete_secret(name).await?;
            if !ctx.ui.structured() {
                ctx.ui.line(&format!("secret {name} deleted"))?;
            }
        }
    }
    Ok(exit::OK)
}
