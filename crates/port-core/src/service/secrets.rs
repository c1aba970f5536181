//! Secrets: the organization's named secrets (`/v1/organization/secrets`), the
//! encryption of secret inputs at execute time, and the rendering of an invocation's
//! secret-reading parts when it is sent.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use serde_json::{Map, Value, json};

use super::{Caller, Services};
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::OrgId;
use crate::invocation;
use crate::ports::OrgSecret;
use crate::secret::{self, INPUT_IV_BYTES, Masker, SecretName, SecretValue};

/// Secrets one organization keeps at most.
pub const MAX_SECRETS_PER_ORG: usize = 500;
/// Bytes of secret values one organization keeps at most, all secrets together: every
/// invocation that reads `.secrets` loads them all when it is sent.
pub const MAX_SECRET_BYTES_PER_ORG: usize = 1024 * 1024;
/// Longest description, in characters (Port's rule).
pub const MAX_SECRET_DESCRIPTION_CHARS: usize = 200;

/// Loads of an organization's secrets, one at a time per organization. A load reads
/// (and opens) up to [`MAX_SECRET_BYTES_PER_ORG`] from the store's shared connections,
/// and every execute and send of an action that reads `.secrets` makes one: without a
/// turn, one organization's burst of runs would hold every read connection.
#[derive(Debug, Default)]
pub struct SecretLoads {
    turns: Mutex<HashMap<OrgId, Arc<AsyncMutex<()>>>>,
}

/// An organization's turn to load its secrets; the next waiter goes on drop.
struct LoadTurn<'g> {
    gate: &'g SecretLoads,
    org: OrgId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl SecretLoads {
    async fn turn(&self, org: &OrgId) -> LoadTurn<'_> {
        let lock = self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(org.clone())
            .or_default()
            .clone();
        LoadTurn {
            gate: self,
            org: org.clone(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for LoadTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut turns = self
            .gate
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget organizations nobody waits for, so the map stays as small as the load.
        if turns
            .get(&self.org)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            turns.remove(&self.org);
        }
    }
}

/// A secret as the API shows it: never its value.
pub fn secret_json(secret: &OrgSecret) -> Value {
    let mut m = Map::new();
    m.insert("secretName".into(), json!(secret.name.as_str()));
    if let Some(description) = &secret.description {
        m.insert("description".into(), json!(description));
    }
    m.insert("createdAt".into(), json!(secret.created_at));
    m.insert("updatedAt".into(), json!(secret.updated_at));
    Value::Object(m)
}

fn secret_not_found(name: &str) -> PortError {
    PortError::not_found(format!("secret {name}"))
}

/// A name from a path: one that cannot exist is simply not found.
fn path_name(name: &str) -> Result<SecretName, PortError> {
    SecretName::parse(name).map_err(|_| secret_not_found(name))
}

fn checked_description(description: Option<&str>) -> Result<(), PortError> {
    match description {
        Some(d) if d.chars().count() > MAX_SECRET_DESCRIPTION_CHARS => Err(PortError::invalid(
            format!("body.description: at most {MAX_SECRET_DESCRIPTION_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

fn checked_value(value: String) -> Result<SecretValue, PortError> {
    SecretValue::new(value).map_err(|e| PortError::invalid(format!("body.secretValue: {e}")))
}

/// Secret values shorter than this are not masked: they would hide ordinary words and
/// reveal more than they hide.
const MIN_MASKED_CHARS: usize = 4;

/// What an invocation is sent as, once its secret-reading parts are rendered.
#[derive(Debug, Clone)]
pub struct Sendable<'r> {
    /// The request to send, without portd's deferred key (borrowed when nothing was
    /// deferred: the common case costs no copy).
    pub request: Cow<'r, Value>,
    /// Hides the secret values the rendering could see in whatever comes back.
    pub masker: Masker,
}

impl Sendable<'_> {
    /// `text` with every secret value replaced by `[REDACTED]`.
    pub fn mask(&self, text: &str) -> String {
        self.masker.mask(text).into_owned()
    }

    /// [`Self::mask`] applied to every string (and key) of a JSON value, such as a
    /// receiver's answer that echoes a header back.
    pub fn mask_json(&self, value: &Value) -> Value {
        self.masker.mask_json(value)
    }
}

/// Why a run failed when what it defers to sending time could not be rendered then.
pub fn unrenderable(error: &PortError) -> String {
    format!("the invocation could not be rendered: {}", error.message)
}

impl Services {
    pub async fn list_secrets(&self, caller: &Caller) -> Result<Vec<OrgSecret>, PortError> {
        caller.require_admin("read organization secrets")?;
        Ok(self.store.list_secrets(&caller.org_id).await?)
    }

    pub async fn get_secret(&self, caller: &Caller, name: &str) -> Result<OrgSecret, PortError> {
        caller.require_admin("read organization secrets")?;
        let name = path_name(name)?;
        self.store
            .get_secret(&caller.org_id, &name)
            .await?
            .ok_or_else(|| secret_not_found(name.as_str()))
    }

    /// Creates a secret; 409 `identifier_taken` when the name is, 422 beyond
    /// [`MAX_SECRETS_PER_ORG`].
    pub async fn create_secret(
        &self,
        caller: &Caller,
        name: &str,
        value: String,
        description: Option<String>,
    ) -> Result<OrgSecret, PortError> {
        caller.require_admin("create organization secrets")?;
        let name = SecretName::parse(name)
            .map_err(|e| PortError::invalid(format!("body.secretName: {e}")))?;
        let value = checked_value(value)?;
        checked_description(description.as_deref())?;
        // Counted before the insert: concurrent creations may pass the bound by as many
        // as run at once, which the connection cap bounds in turn.
        if self.store.list_secrets(&caller.org_id).await?.len() >= MAX_SECRETS_PER_ORG {
            return Err(PortError::invalid(format!(
                "an organization keeps at most {MAX_SECRETS_PER_ORG} secrets; delete one first"
            )));
        }
        self.check_total(&caller.org_id, None, value.expose().len())
            .await?;
        let now = self.clock.now();
        let created = OrgSecret {
            org_id: caller.org_id.clone(),
            name,
            description,
            created_at: now,
            updated_at: now,
        };
        match self.store.create_secret(&created, &value).await {
            Ok(()) => Ok(created),
            Err(StoreError::AlreadyExists(_)) => Err(PortError::new(
                ErrorKind::IdentifierTaken,
                format!("secret {} already exists", created.name),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a secret's value and/or description.
    pub async fn update_secret(
        &self,
        caller: &Caller,
        name: &str,
        value: Option<String>,
        description: Option<String>,
    ) -> Result<OrgSecret, PortError> {
        caller.require_admin("change organization secrets")?;
        let name = path_name(name)?;
        let value = value.map(checked_value).transpose()?;
        checked_description(description.as_deref())?;
        if let Some(value) = &value {
            self.check_total(&caller.org_id, Some(&name), value.expose().len())
                .await?;
        }
        self.store
            .update_secret(
                &caller.org_id,
                &name,
                value.as_ref(),
                description.as_deref(),
                self.clock.now(),
            )
            .await?
            .ok_or_else(|| secret_not_found(name.as_str()))
    }

    /// 422 when the organization's values would exceed [`MAX_SECRET_BYTES_PER_ORG`]
    /// with `adding` bytes (replacing `replacing`'s value).
    async fn check_total(
        &self,
        org: &OrgId,
        replacing: Option<&SecretName>,
        adding: usize,
    ) -> Result<(), PortError> {
        let _turn = self.secret_loads.turn(org).await;
        let kept: usize = self
            .store
            .secret_values(org)
            .await?
            .iter()
            .filter(|(name, _)| Some(name) != replacing)
            .map(|(_, value)| value.expose().len())
            .sum();
        if kept + adding > MAX_SECRET_BYTES_PER_ORG {
            return Err(PortError::invalid(format!(
                "an organization's secret values take at most {MAX_SECRET_BYTES_PER_ORG} bytes together; {kept} are taken"
            )));
        }
        Ok(())
    }

    pub async fn delete_secret(&self, caller: &Caller, name: &str) -> Result<(), PortError> {
        caller.require_admin("delete organization secrets")?;
        let name = path_name(name)?;
        if !self.store.delete_secret(&caller.org_id, &name).await? {
            return Err(secret_not_found(name.as_str()));
        }
        Ok(())
    }

    /// The organization's secrets as templates see them (`.secrets.NAME`), and a masker
    /// of their values.
    pub(super) async fn secrets_for_templates(
        &self,
        org: &OrgId,
    ) -> Result<(Map<String, Value>, Masker), PortError> {
        let _turn = self.secret_loads.turn(org).await;
        let values = self.store.secret_values(org).await?;
        let masker = Masker::new(
            values.iter().map(|(_, value)| value.expose()),
            MIN_MASKED_CHARS,
            "[REDACTED]",
        );
        let map = values
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), json!(value.expose())))
            .collect();
        Ok((map, masker))
    }

    /// The client secret that signs the organization's webhooks and keys its secret
    /// inputs: its oldest credential's.
    async fn signing_secret(&self, org: &OrgId) -> Result<String, PortError> {
        self.organization_credential(org)
            .await?
            .map(|credential| credential.client_secret.expose().to_owned())
            .ok_or_else(|| {
                PortError::invalid(format!(
                    "organization {org} has no credential to encrypt secret inputs with"
                ))
            })
    }

    /// Encrypts the secret inputs among `properties` as Port does (see
    /// [`crate::secret`]), before templates or the store see them. Non-string values
    /// are encrypted as their JSON text; `null` stays `null`.
    pub(super) async fn encrypt_secret_inputs(
        &self,
        org: &OrgId,
        properties: &mut Map<String, Value>,
        secret_keys: &[String],
    ) -> Result<(), PortError> {
        if !secret_keys.iter().any(|key| properties.contains_key(key)) {
            return Ok(());
        }
        let client_secret = self.signing_secret(org).await?;
        for key in secret_keys {
            // An input left empty (`null`) has nothing to hide.
            let Some(value) = properties.get_mut(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let clear = match &*value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut iv = [0u8; INPUT_IV_BYTES];
            self.ids.fill_random(&mut iv);
            let encrypted = secret::encrypt_input(&client_secret, &clear, iv)
                .map_err(|e| PortError::invalid(e.to_string()))?;
            *value = Value::String(encrypted);
        }
        Ok(())
    }

    /// Renders what an invocation left for sending time (the parts of its templates that
    /// read `.secrets`) with the organization's current secrets. An invocation without
    /// such parts is sent as it is. A template that fails now is
    /// `evaluate_invocation_method_error`, its message free of secret values.
    pub async fn sendable<'r>(
        &self,
        org: &OrgId,
        request: &'r Value,
    ) -> Result<Sendable<'r>, PortError> {
        let Some((parts, context)) = invocation::deferred_parts(request) else {
            return Ok(Sendable {
                request: Cow::Borrowed(request),
                masker: Masker::default(),
            });
        };
        let (secrets, masker) = self.secrets_for_templates(org).await?;
        let context = invocation::context_with_secrets(context, secrets);
        let rendered = self
            .templates
            .render(org, parts, &context)
            .await
            .map_err(|e| invocation::template_error(&e))?;
        let request = invocation::complete_deferred(request, &rendered)?;
        invocation::check_size(&request, self.templates.max_output_bytes())?;
        Ok(Sendable {
            request: Cow::Owned(request),
            masker,
        })
    }
}
