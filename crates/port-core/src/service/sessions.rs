//! People signing in: passwords, browser sessions, personal credentials, and the
//! caller a person's session or token stands for.
//!
//! Pure like the rest of the services: password hashing (argon2id) and cookies are the
//! server's; here a hash is only stored or handed out, a session is stored by the hash
//! of its token (a database dump gives no usable cookie), and tokens, client ids and
//! secrets come from the [`crate::ports::Entropy`] port.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use super::{Caller, Services};
use crate::access::{Email, PasswordHash, Principal, Session, User, UserStatus};
use crate::error::{ErrorKind, PortError};
use crate::id::OrgId;
use crate::ports::{ClientSecret, Credential};

/// How long a browser session lasts from sign-in (absolute, not sliding): a working
/// day, after which the person signs in again.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// Random bytes in a session token (256 bits).
const SESSION_TOKEN_BYTES: usize = 32;

/// The most accounts (one per organization) a sign-in with one address checks: each
/// costs a password verification, so a flood of look-alike accounts cannot make a
/// sign-in arbitrarily slow.
pub const MAX_SIGN_IN_CANDIDATES: usize = 8;

/// The most personal credentials one person may hold at once.
pub const MAX_PERSONAL_CREDENTIALS: usize = 10;

/// Lengths of generated client ids and secrets (as the organization's own).
const CLIENT_ID_LEN: usize = 32;
const CLIENT_SECRET_LEN: usize = 64;

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The hash a session is stored and looked up by: hex SHA-256 of its token. The token
/// is 256 random bits, so a fast hash is enough (nothing to brute-force).
pub fn session_token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A session just started: the token goes to the browser (once, in a cookie); the
/// store has only its hash.
#[derive(Debug, Clone)]
pub struct StartedSession {
    pub token: String,
    pub session: Session,
}

fn forbidden(message: impl Into<String>) -> PortError {
    PortError::new(ErrorKind::MissingPermissions, message)
}

fn user_not_found(email: &str) -> PortError {
    PortError::not_found(format!("user {email}"))
}

impl Services {
    /// The caller a person of `org` stands for, with their role and teams as stored
    /// now (so role and team changes apply to sessions and personal tokens at once);
    /// `None` when they are not (or no longer) a user of the organization.
    pub async fn person_caller(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> Result<Option<Caller>, PortError> {
        Ok(self
            .store
            .get_user(org, email)
            .await?
            .map(|user| Caller::person(&user)))
    }

    /// The accounts a password sign-in with `email` may be for: every user with this
    /// address who has a password (one per organization), oldest first, at most
    /// [`MAX_SIGN_IN_CANDIDATES`]. The server verifies the password against each in
    /// turn and signs in to the first that matches. Cross-organization by nature: a
    /// sign-in starts from an address.
    pub async fn password_candidates(
        &self,
        email: &Email,
    ) -> Result<Vec<(User, PasswordHash)>, PortError> {
        Ok(self
            .store
            .users_by_email(email)
            .await?
            .into_iter()
            .filter_map(|(user, hash)| hash.map(|hash| (user, hash)))
            .take(MAX_SIGN_IN_CANDIDATES)
            .collect())
    }

    /// Every user with this address (one per organization), oldest first, at most
    /// [`MAX_SIGN_IN_CANDIDATES`]: who a single sign-on identity may sign in as.
    pub async fn users_with_email(&self, email: &Email) -> Result<Vec<User>, PortError> {
        Ok(self
            .store
            .users_by_email(email)
            .await?
            .into_iter()
            .map(|(user, _)| user)
            .take(MAX_SIGN_IN_CANDIDATES)
            .collect())
    }

    /// Sets (or, with `None`, removes) the password of a user of the caller's
    /// organization. A person may set their own; Admins and organization credentials
    /// anyone's (`portd users set-password`).
    pub async fn set_password(
        &self,
        caller: &Caller,
        email: &str,
        hash: Option<&PasswordHash>,
    ) -> Result<(), PortError> {
        let email = Email::parse(email).map_err(|_| user_not_found(email))?;
        let own = caller
            .principal
            .person()
            .is_some_and(|person| person.email == email);
        if !own && !caller.principal.is_admin() {
            return Err(forbidden(
                "only Admins may set another user's password; a Member may set their own",
            ));
        }
        if self
            .store
            .set_password(&caller.org_id, &email, hash)
            .await?
        {
            Ok(())
        } else {
            Err(user_not_found(email.as_str()))
        }
    }

    /// Starts a browser session for `user` (whom the server has authenticated: by
    /// password or single sign-on) and marks them active. The token is returned once;
    /// only its hash is stored.
    pub async fn start_session(&self, user: &User) -> Result<StartedSession, PortError> {
        let now = self.clock.now();
        let mut bytes = [0u8; SESSION_TOKEN_BYTES];
        self.ids.fill_random(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let session = Session {
            token_hash: session_token_hash(&token),
            org_id: user.org_id.clone(),
            email: user.email.clone(),
            created_at: now,
            expires_at: now.plus_millis(SESSION_LIFETIME_MS),
        };
        self.store.create_session(&session).await?;
        if user.status == UserStatus::Invited
            && let Some(mut stored) = self.store.get_user(&user.org_id, &user.email).await?
            && stored.status == UserStatus::Invited
        {
            // Best effort: a lost race with an update only delays the status.
            stored.status = UserStatus::Active;
            stored.updated_at = now;
            self.store.update_user(&stored).await?;
        }
        Ok(StartedSession { token, session })
    }

    /// The user a live session belongs to, as stored now; `None` when the session is
    /// unknown, expired, or its user was deleted.
    pub async fn session_user(&self, token_hash: &str) -> Result<Option<User>, PortError> {
        let Some(session) = self.store.get_session(token_hash, self.clock.now()).await? else {
            return Ok(None);
        };
        Ok(self.store.get_user(&session.org_id, &session.email).await?)
    }

    /// The caller of a request made with a session's cookie (see [`Self::session_user`]).
    pub async fn session_caller(&self, token_hash: &str) -> Result<Option<Caller>, PortError> {
        Ok(self
            .session_user(token_hash)
            .await?
            .map(|user| Caller::person(&user)))
    }

    /// Signs a session out; false when there was none.
    pub async fn end_session(&self, token_hash: &str) -> Result<bool, PortError> {
        Ok(self.store.delete_session(token_hash).await?)
    }

    /// Creates a client id and secret for the calling person (`POST
    /// /v1/auth/credentials`); its tokens act as them, with their role and teams as
    /// they are when the token is used. The secret is in the answer only. Organization
    /// credentials are refused: they are the organization's already.
    pub async fn create_personal_credential(
        &self,
        caller: &Caller,
    ) -> Result<Credential, PortError> {
        let person = personal(caller)?;
        let held = self
            .personal_credentials_of(&caller.org_id, &person.email)
            .await?;
        if held.len() >= MAX_PERSONAL_CREDENTIALS {
            return Err(PortError::invalid(format!(
                "a person holds at most {MAX_PERSONAL_CREDENTIALS} personal credentials; \
                 delete one first"
            )));
        }
        let credential = Credential {
            org_id: caller.org_id.clone(),
            client_id: self.random_alphanumeric(CLIENT_ID_LEN),
            client_secret: ClientSecret::new(self.random_alphanumeric(CLIENT_SECRET_LEN)),
            created_at: self.clock.now(),
            user: Some(person.email.clone()),
        };
        self.store.add_credential(&credential).await?;
        Ok(credential)
    }

    /// The calling person's personal credentials, oldest first (their secrets are the
    /// caller's to not render).
    pub async fn list_personal_credentials(
        &self,
        caller: &Caller,
    ) -> Result<Vec<Credential>, PortError> {
        let person = personal(caller)?;
        self.personal_credentials_of(&caller.org_id, &person.email)
            .await
    }

    /// Deletes a personal credential of the organization: the caller's own, or, for
    /// Admins and organization credentials, anyone's (revoking a lost one, offboarding).
    /// Its tokens stop working once verifiers' short credential caches expire. Anything
    /// else (another person's for a Member, an organization credential, another
    /// organization's) is `not_found`.
    pub async fn delete_personal_credential(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> Result<(), PortError> {
        let deletable = self
            .store
            .credentials(&caller.org_id)
            .await?
            .into_iter()
            .any(|credential| {
                credential.client_id == client_id
                    && credential.user.as_ref().is_some_and(|owner| {
                        caller.principal.is_admin()
                            || caller.principal.person().is_some_and(|p| &p.email == owner)
                    })
            });
        if !deletable
            || !self
                .store
                .delete_credential(&caller.org_id, client_id)
                .await?
        {
            return Err(PortError::new(
                ErrorKind::NotFound,
                format!("no personal credential {client_id} that you may delete"),
            ));
        }
        Ok(())
    }

    async fn personal_credentials_of(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> Result<Vec<Credential>, PortError> {
        Ok(self
            .store
            .credentials(org)
            .await?
            .into_iter()
            .filter(|credential| credential.user.as_ref() == Some(email))
            .collect())
    }

    /// `len` characters of `[A-Za-z0-9]` from the entropy port, unbiased (bytes past
    /// the largest multiple of 62 are skipped).
    fn random_alphanumeric(&self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        let mut buf = [0u8; 64];
        while out.len() < len {
            self.ids.fill_random(&mut buf);
            for byte in buf {
                if byte < 248 && out.len() < len {
                    out.push(char::from(ALPHANUMERIC[usize::from(byte % 62)]));
                }
            }
        }
        out
    }
}

/// The person behind a call that only a person may make.
fn personal(caller: &Caller) -> Result<&crate::access::Person, PortError> {
    match &caller.principal {
        Principal::Person(person) => Ok(person),
        Principal::Organization { .. } => Err(forbidden(
            "personal credentials belong to people: sign in as a user (an organization \
             credential is the organization's already)",
        )),
    }
}
