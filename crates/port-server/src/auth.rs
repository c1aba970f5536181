//! Access tokens: `POST /v1/auth/access_token` trades a client id and secret for an
//! HS256 JWT, which every other route checks.
//!
//! Tokens are signed with a key derived from the credential's own client secret, so
//! any replica can verify one by looking the credential up by the token's `sub` (cached
//! briefly), no shared signing key is needed, and deleting a credential revokes its
//! tokens once the cache entry expires. Issuing a token keeps no state, so a new token
//! never revokes an earlier one (Port's agent asks for one before every call, Ocean
//! keeps one for its lifetime, both with the same credentials).
//!
//! Two kinds of credentials trade the same way. An organization credential is a
//! machine's: its tokens say `isMachine: true` and act for the whole organization. A
//! personal credential (`Credential.user`, created by a person through
//! `POST /v1/auth/credentials`) is a person's: its tokens say `isMachine: false`,
//! `personalToken: true` and carry their `email`, and each request made with one acts
//! as that person as they are at the time of the request (role and teams read again;
//! a deleted user's tokens stop working at once, whatever the credential cache holds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use port_core::ports::{ClientSecret, Clock, Credential, Store};
use port_core::service::{Caller, Services};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};
use crate::throttle::LoginThrottle;

/// Lifetime of an access token: Port's tokens live three hours.
pub const ACCESS_TOKEN_TTL_SECONDS: i64 = 3 * 60 * 60;

/// How long a credential lookup is reused; bounds how late a deleted credential stops working.
const CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(10);

/// Entries kept before the cache is cleared, so forged `sub`s cannot grow it without bound.
const CREDENTIAL_CACHE_CAPACITY: usize = 10_000;

/// What the key derivation mixes in, so the signing key is never the secret itself
/// (which also signs webhooks).
const TOKEN_KEY_CONTEXT: &[u8] = b"portd-access-token";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The client id.
    sub: String,
    /// The organization id.
    org: String,
    iat: i64,
    exp: i64,
    /// Port's claim for machine credentials (organization credentials): Ocean reads it
    /// (unverified) and processes action runs only for machine tokens. Tokens issued
    /// before it existed lack it and stay valid. What a token may do is decided by its
    /// credential, never by this claim.
    #[serde(rename = "isMachine", default)]
    is_machine: bool,
    /// Port's claim for a person's own token (a personal credential's).
    #[serde(rename = "personalToken", default, skip_serializing_if = "is_false")]
    personal_token: bool,
    /// The person a personal token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: i64,
}

type CachedCredential = (Instant, Option<Credential>);

/// Issues and verifies access tokens.
pub struct Authenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, CachedCredential>>,
    throttle: LoginThrottle,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

fn signing_key(secret: &ClientSecret) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(TOKEN_KEY_CONTEXT);
    mac.finalize().into_bytes().to_vec()
}

/// Compares secrets without leaking where they differ (or their lengths).
fn secrets_match(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
            throttle: LoginThrottle::default(),
        }
    }

    /// The token route's throttle of failed attempts.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// Checks a client id and secret and issues a token; 401 for unknown ids or wrong secrets.
    pub async fn issue(&self, client_id: &str, client_secret: &str) -> ApiResult<AccessToken> {
        let credential = self.store.find_credential(client_id).await?;
        let matches = match &credential {
            Some(credential) => secrets_match(client_secret, credential.client_secret.expose()),
            None => {
                // Same work as a real comparison, so timing does not reveal which ids exist.
                let _ = secrets_match(client_secret, "");
                false
            }
        };
        match credential {
            Some(credential) if matches => Ok(self.token_for(&credential)),
            _ => Err(ApiError::new(
                port_core::ErrorKind::Unauthorized,
                "invalid client id or client secret",
            )),
        }
    }

    /// Signs a token for a credential, valid from the clock's now.
    pub fn token_for(&self, credential: &Credential) -> AccessToken {
        let now = self.clock.now().unix_seconds();
        let claims = Claims {
            sub: credential.client_id.clone(),
            org: credential.org_id.to_string(),
            iat: now,
            exp: now + ACCESS_TOKEN_TTL_SECONDS,
            is_machine: credential.user.is_none(),
            personal_token: credential.user.is_some(),
            email: credential.user.as_ref().map(|email| email.to_string()),
        };
        let key = EncodingKey::from_secret(&signing_key(&credential.client_secret));
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .expect("HS256 signing of plain claims cannot fail");
        AccessToken {
            token,
            expires_in: ACCESS_TOKEN_TTL_SECONDS,
        }
    }

    /// Verifies a token and returns its caller: the organization for an organization
    /// credential's token, the person as they are now (through
    /// [`Services::person_caller`]) for a personal one. 401 for anything missing,
    /// forged, expired, belonging to a deleted credential or to a person who is no
    /// longer a user.
    pub async fn verify(&self, token: &str, services: &Services) -> ApiResult<Caller> {
        // The signature can only be checked with the credential's key, so the subject is
        // read first, unverified, and trusted only after the check below.
        let mut peek = Validation::new(Algorithm::HS256);
        peek.insecure_disable_signature_validation();
        peek.validate_exp = false;
        peek.required_spec_claims.clear();
        let unverified =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&[]), &peek)
                .map_err(|_| ApiError::unauthorized())?;
        // No client id holds NUL, and PostgreSQL could not even look one up.
        if unverified.claims.sub.contains('\0') {
            return Err(ApiError::unauthorized());
        }
        let credential = self
            .credential(&unverified.claims.sub)
            .await?
            .ok_or_else(ApiError::unauthorized)?;

        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the clock port below, so tests can move time.
        validation.validate_exp = false;
        validation.required_spec_claims =
            ["exp".to_owned(), "sub".to_owned()].into_iter().collect();
        let key = DecodingKey::from_secret(&signing_key(&credential.client_secret));
        let verified = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|_| ApiError::unauthorized())?;
        let claims = verified.claims;
        if claims.exp <= self.clock.now().unix_seconds() || claims.org != credential.org_id.as_str()
        {
            return Err(ApiError::unauthorized());
        }
        match &credential.user {
            None => Ok(Caller::machine(credential.org_id, &credential.client_id)),
            Some(email) => {
                // The claim is signed, but the credential decides: a token minted as a
                // machine's for what is now a person's credential (or for another
                // person) is refused.
                if claims.email.as_deref() != Some(email.as_str()) {
                    return Err(ApiError::unauthorized());
                }
                // Read on every request, not cached: a role change applies at once and a
                // deleted user's token stops at once.
                services
                    .person_caller(&credential.org_id, email)
                    .await?
                    .ok_or_else(ApiError::unauthorized)
            }
        }
    }

    async fn credential(&self, client_id: &str) -> ApiResult<Option<Credential>> {
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, credential)) = cache.get(client_id)
                && at.elapsed() < CREDENTIAL_CACHE_TTL
            {
                return Ok(credential.clone());
            }
        }
        let credential = self.store.find_credential(client_id).await?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CREDENTIAL_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(client_id.to_owned(), (Instant::now(), credential.clone()));
        Ok(credential)
    }

    /// Forgets cached lookups (after credentials change in this process).
    pub fn clear_cache(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", ""));
    }

    #[test]
    fn keys_depend_on_the_secret() {
        assert_ne!(
            signing_key(&ClientSecret::new("a")),
            signing_key(&ClientSecret::new("b"))
        );
        assert_ne!(signing_key(&ClientSecret::new("a")), b"a".to_vec());
    }
}
