//! People's passwords: argon2id hashes in PHC string form (`$argon2id$v=19$…`), for
//! `portd users create/set-password` and the sign-in page.
//!
//! Hashing and verifying take tens of milliseconds of CPU on purpose: callers on the
//! async runtime run them inside `tokio::task::spawn_blocking`.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, password_hash::SaltString};
use port_core::access::PasswordHash;
use rand::RngCore as _;

/// The longest password accepted, in bytes: argon2 takes any length, but a megabyte
/// "password" would only be a way to spend the server's CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The shortest password `portd users` accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why a password was refused before hashing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("a password has at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Checks a new password's length (what `portd users` and password changes accept).
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Err(PasswordError::TooShort)
    } else if password.len() > MAX_PASSWORD_BYTES {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum).
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

/// Hashes a password with a fresh random salt. CPU-heavy: call it inside
/// `spawn_blocking`.
pub fn hash_password(password: &str) -> PasswordHash {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    let phc = hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id with default parameters hashes any input");
    PasswordHash::new(phc.to_string())
}

/// Whether `password` matches `hash` (in constant time as far as the password goes);
/// false for a hash that is not a PHC string argon2 reads. Passwords longer than
/// [`MAX_PASSWORD_BYTES`] never match (without hashing them). CPU-heavy: call it inside
/// `spawn_blocking`.
pub fn verify_password(password: &str, hash: &PasswordHash) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match Phc::new(hash.as_str()) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of no one's password, to verify against when an address has no password,
/// so that a sign-in takes as long whether the address exists or not.
pub fn decoy_hash() -> &'static PasswordHash {
    static DECOY: LazyLock<PasswordHash> =
        LazyLock::new(|| hash_password("portd decoy: nobody's password"));
    &DECOY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let one = hash_password("correct horse");
        let two = hash_password("correct horse");
        assert!(one.as_str().starts_with("$argon2id$v=19$"), "{one:?}");
        assert_ne!(one, two, "each hash has its own salt");
        assert!(verify_password("correct horse", &one));
        assert!(verify_password("correct horse", &two));
        assert!(!verify_password("correct horsE", &one));
        assert!(!verify_password("", &one));
    }

    #[test]
    fn malformed_hashes_and_huge_passwords_never_match() {
        assert!(!verify_password("x", &PasswordHash::new("not a hash")));
        assert!(!verify_password("x", &PasswordHash::new("")));
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        let hash = hash_password(&long);
        assert!(!verify_password(&long, &hash));
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn new_passwords_are_bounded() {
        assert_eq!(check_new_password("short"), Err(PasswordError::TooShort));
        assert_eq!(
            check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::TooLong)
        );
        assert_eq!(check_new_password("long enough"), Ok(()));
    }
}
