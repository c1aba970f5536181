//! Secrets: Port's encrypted secret inputs, organization secrets, and values sealed at
//! rest with the server's key.
//!
//! Three kinds of secret pass through portd:
//! - **Secret inputs** (`"encryption": "aes256-gcm"`): encrypted the way Port does before
//!   anything else sees them, so a run's properties, payload, invocation and every answer
//!   hold only the ciphertext, and Port's agent (`fieldsToDecryptPaths`) or our receiver
//!   decrypts them with the client secret. Layout, as port-agent's `decrypt_field`
//!   (`app/utils.py`) reads it: key = the first 32 bytes of the organization's client
//!   secret (UTF-8; shorter secrets are refused), AES-256-GCM with a **16-byte** IV, no
//!   associated data, and `base64(IV[16] ‖ ciphertext ‖ tag[16])` in standard base64.
//! - **Organization secrets** (`/v1/organization/secrets`): named values templates read as
//!   `{{ .secrets.NAME }}`, evaluated only when an invocation is sent.
//! - **Client secrets**, which sign webhooks and key secret inputs.
//!
//! Organization and client secrets are sealed at rest by a [`Keyring`]: AES-256-GCM with a
//! 12-byte nonce under the server key, bound to the row it belongs to by associated data,
//! written as `pds1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`. The key id lets a
//! keyring holding the old and the new key read every value while a rotation is under way.
//!
//! Everything here is pure: callers supply the random IVs and nonces.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

/// Bytes of a secret input's IV (Port's layout; GCM's usual nonce is 12).
pub const INPUT_IV_BYTES: usize = 16;
/// Bytes of a sealed value's nonce.
pub const SEAL_NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const KEY_BYTES: usize = 32;
const SEALED_PREFIX: &str = "pds1:";

type InputCipher = AesGcm<Aes256, U16>;
type SealCipher = AesGcm<Aes256, U12>;

/// Why a secret could not be encrypted, decrypted or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the organization's client secret is shorter than 32 bytes: Port's secret inputs are keyed by its first 32 bytes"
    )]
    ClientSecretTooShort,
    #[error("the encrypted value is not base64")]
    NotBase64,
    #[error("the encrypted value is too short to hold an IV and a tag")]
    TooShort,
    #[error("the value does not decrypt with this key (another key, or altered data)")]
    Undecryptable,
    #[error("the decrypted value is not UTF-8 text")]
    NotText,
    #[error("the value was sealed with key {0}, which this keyring does not hold")]
    UnknownKey(String),
    #[error("the value is not sealed (expected `pds1:<key id>:<data>`)")]
    NotSealed,
    #[error("a server key is 32 bytes, written as 64 hexadecimal digits or in base64")]
    MalformedServerKey,
}

fn input_cipher(client_secret: &str) -> Result<InputCipher, SecretError> {
    let key = client_secret
        .as_bytes()
        .get(..KEY_BYTES)
        .ok_or(SecretError::ClientSecretTooShort)?;
    InputCipher::new_from_slice(key).map_err(|_| SecretError::ClientSecretTooShort)
}

/// Encrypts one secret input for delivery, as Port does: see the module's documentation.
pub fn encrypt_input(
    client_secret: &str,
    plaintext: &str,
    iv: [u8; INPUT_IV_BYTES],
) -> Result<String, SecretError> {
    let cipher = input_cipher(client_secret)?;
    let sealed = cipher
        .encrypt(Nonce::<U16>::from_slice(&iv), plaintext.as_bytes())
        .map_err(|_| SecretError::Undecryptable)?;
    let mut blob = Vec::with_capacity(INPUT_IV_BYTES + sealed.len());
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&sealed);
    Ok(BASE64.encode(blob))
}

/// Decrypts a secret input encrypted by [`encrypt_input`] (or by Port).
pub fn decrypt_input(client_secret: &str, encrypted: &str) -> Result<String, SecretError> {
    let cipher = input_cipher(client_secret)?;
    let blob = BASE64
        .decode(encrypted.trim())
        .map_err(|_| SecretError::NotBase64)?;
    if blob.len() < INPUT_IV_BYTES + TAG_BYTES {
        return Err(SecretError::TooShort);
    }
    let (iv, sealed) = blob.split_at(INPUT_IV_BYTES);
    let clear = cipher
        .decrypt(Nonce::<U16>::from_slice(iv), sealed)
        .map_err(|_| SecretError::Undecryptable)?;
    String::from_utf8(clear).map_err(|_| SecretError::NotText)
}

/// The server's key for sealing secrets at rest. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKey {
    bytes: [u8; KEY_BYTES],
    id: String,
}

impl ServerKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        // A short digest names the key in sealed values; it reveals nothing of a random key.
        let digest = Sha256::digest(bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Self { bytes, id }
    }

    /// Reads a key written as 64 hexadecimal digits or as base64 of 32 bytes
    /// (`PORTD_SECRET_KEY`, the key file).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_BYTES)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SecretError::MalformedServerKey)?
        } else {
            BASE64
                .decode(text)
                .map_err(|_| SecretError::MalformedServerKey)?
        };
        let bytes: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| SecretError::MalformedServerKey)?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as [`ServerKey::parse`] reads it back (base64).
    pub fn to_text(&self) -> String {
        BASE64.encode(self.bytes)
    }

    /// The short public name sealed values carry (8 hexadecimal digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> SealCipher {
        SealCipher::new(&self.bytes.into())
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerKey({}, ***)", self.id)
    }
}

/// The keys that seal secrets at rest: the current one seals, any of them opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    current: ServerKey,
    previous: Vec<ServerKey>,
}

impl Keyring {
    pub fn new(current: ServerKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Also opens values sealed with `key` (during and after a rotation).
    #[must_use]
    pub fn with_previous(mut self, key: ServerKey) -> Self {
        // By id: the ids name the keys, and comparing them leaks nothing of the keys.
        let known = |k: &ServerKey| k.id == key.id;
        if !known(&self.current) && !self.previous.iter().any(known) {
            self.previous.push(key);
        }
        self
    }

    pub fn current(&self) -> &ServerKey {
        &self.current
    }

    /// Seals `plaintext` under the current key, bound to `context` (the row it belongs
    /// to, so a sealed value copied to another row does not open there).
    pub fn seal(&self, plaintext: &str, context: &[u8], nonce: [u8; SEAL_NONCE_BYTES]) -> String {
        let sealed = self
            .current
            .cipher()
            .encrypt(
                Nonce::<U12>::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context,
                },
            )
            // AES-GCM fails only beyond 64 GiB of plaintext.
            .expect("AES-GCM seals any value portd stores");
        let mut blob = Vec::with_capacity(SEAL_NONCE_BYTES + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", self.current.id, BASE64.encode(blob))
    }

    /// Opens a value sealed by [`Keyring::seal`] with any key of the ring.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<String, SecretError> {
        let (key_id, data) = split_sealed(sealed).ok_or(SecretError::NotSealed)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_owned()))?;
        let blob = BASE64.decode(data).map_err(|_| SecretError::NotBase64)?;
        if blob.len() < SEAL_NONCE_BYTES + TAG_BYTES {
            return Err(SecretError::TooShort);
        }
        let (nonce, body) = blob.split_at(SEAL_NONCE_BYTES);
        let clear = key
            .cipher()
            .decrypt(
                Nonce::<U12>::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(clear).map_err(|_| SecretError::NotText)
    }

    /// Whether `stored` is sealed with the current key (nothing to do for a rotation).
    pub fn is_current(&self, stored: &str) -> bool {
        split_sealed(stored).is_some_and(|(id, _)| id == self.current.id)
    }
}

/// Whether a stored text is a sealed value (rather than one written in clear by a
/// portd without a key, before sealing existed).
pub fn is_sealed(stored: &str) -> bool {
    split_sealed(stored).is_some()
}

fn split_sealed(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(SEALED_PREFIX)?.split_once(':')
}

/// The name of an organization secret: 1 to 100 of `A-Z a-z 0-9 - _` (Port's rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(format!(
                "a secret name has 1 to {} characters, got {}",
                Self::MAX_LEN,
                name.len()
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "a secret name may hold only letters, digits, '-' and '_', not {bad:?}"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret's value. Never printed; [`SecretValue::expose`] is for templates and sealing.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Longest value accepted, in characters (a certificate chain fits; 256 KiB at most).
    pub const MAX_CHARS: usize = 64 * 1024;

    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        let chars = value.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(format!(
                "a secret value holds at most {} characters, got {chars}",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// Hides known secret values in text: every value at least `min_chars` long is replaced
/// by `replacement`, the longest first so a secret containing another is hidden whole.
///
/// Building one costs nothing beyond sorting the values, which matters because every
/// send of an invocation that reads secrets builds one; masking costs a substring search
/// per value, over texts portd bounds (answer excerpts, synchronized answers, errors)
/// and values an organization bounds (500, 1 MiB in all).
#[derive(Clone, Default)]
pub struct Masker {
    values: Vec<String>,
    replacement: &'static str,
}

impl Masker {
    pub fn new(
        values: impl IntoIterator<Item = impl AsRef<str>>,
        min_chars: usize,
        replacement: &'static str,
    ) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.as_ref().chars().count() >= min_chars.max(1))
            .map(|v| v.as_ref().to_owned())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self {
            values,
            replacement,
        }
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for value in &self.values {
            if text.contains(value.as_str()) {
                text = Cow::Owned(text.replace(value.as_str(), self.replacement));
            }
        }
        text
    }

    /// [`Self::mask`] applied to every string and key of a JSON value.
    pub fn mask_json(&self, value: &Value) -> Value {
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.mask(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.mask(k).into_owned(), self.mask_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masker({} values)", self.values.len())
    }
}

/// The sealing context of a client secret (associated data binding it to its row).
pub fn client_secret_context(client_id: &str) -> Vec<u8> {
    format!("credential\0{client_id}").into_bytes()
}

/// The sealing context of an organization secret.
pub fn org_secret_context(org: &str, name: &str) -> Vec<u8> {
    format!("org-secret\0{org}\0{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_SECRET: &str = "0123456789abcdef0123456789abcdefEXTRA";

    #[test]
    fn inputs_round_trip_and_follow_ports_layout() {
        let iv = [7u8; INPUT_IV_BYTES];
        let encrypted = encrypt_input(CLIENT_SECRET, "hunter2", iv).unwrap();
        let blob = BASE64.decode(&encrypted).unwrap();
        assert_eq!(&blob[..16], &iv, "the IV comes first");
        assert_eq!(blob.len(), 16 + "hunter2".len() + 16, "IV, ciphertext, tag");
        assert_eq!(decrypt_input(CLIENT_SECRET, &encrypted).unwrap(), "hunter2");
        // Only the first 32 bytes are the key.
        let same_key = "0123456789abcdef0123456789abcdefOTHER";
        assert_eq!(decrypt_input(same_key, &encrypted).unwrap(), "hunter2");
    }

    #[test]
    fn inputs_refuse_short_keys_and_altered_data() {
        assert_eq!(
            encrypt_input("short", "x", [0; 16]),
            Err(SecretError::ClientSecretTooShort)
        );
        let encrypted = encrypt_input(CLIENT_SECRET, "hunter2", [1; 16]).unwrap();
        let mut blob = BASE64.decode(&encrypted).unwrap();
        blob[20] ^= 1;
        assert_eq!(
            decrypt_input(CLIENT_SECRET, &BASE64.encode(&blob)),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            decrypt_input("another-secret-of-at-least-32-bytes!", &encrypted),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            decrypt_input(CLIENT_SECRET, "AAAA"),
            Err(SecretError::TooShort)
        );
        assert_eq!(
            decrypt_input(CLIENT_SECRET, "not base64!"),
            Err(SecretError::NotBase64)
        );
    }

    #[test]
    fn sealed_values_open_with_any_key_of_the_ring_and_only_in_their_row() {
        let old = ServerKey::from_bytes([1; 32]);
        let new = ServerKey::from_bytes([2; 32]);
        let sealed = Keyring::new(old.clone()).seal("v", b"row-1", [3; 12]);
        assert!(sealed.starts_with(&format!("pds1:{}:", old.id())));
        assert!(!sealed.contains('v') || !sealed.ends_with('v'));
        let rotating = Keyring::new(new.clone()).with_previous(old.clone());
        assert_eq!(rotating.open(&sealed, b"row-1").unwrap(), "v");
        assert!(!rotating.is_current(&sealed));
        assert_eq!(
            rotating.open(&sealed, b"row-2"),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            Keyring::new(new).open(&sealed, b"row-1"),
            Err(SecretError::UnknownKey(old.id().to_owned()))
        );
        assert_eq!(
            rotating.open("clear", b"row-1"),
            Err(SecretError::NotSealed)
        );
        assert!(is_sealed(&sealed) && !is_sealed("clear"));
    }

    #[test]
    fn server_keys_parse_from_hex_or_base64_and_never_print() {
        let key = ServerKey::from_bytes([0xab; 32]);
        assert_eq!(ServerKey::parse(&key.to_text()).unwrap(), key);
        assert_eq!(ServerKey::parse(&"ab".repeat(32)).unwrap(), key);
        assert_eq!(
            ServerKey::parse("too short"),
            Err(SecretError::MalformedServerKey)
        );
        assert!(!format!("{key:?}").contains(&key.to_text()));
        assert_eq!(key.id().len(), 8);
    }

    #[test]
    fn maskers_hide_the_longest_value_and_skip_short_ones() {
        let masker = Masker::new(["abc", "abcdef", "x"], 3, "***");
        assert_eq!(masker.mask("abcdefg abc x"), "***g *** x");
        assert!(matches!(masker.mask("nothing"), Cow::Borrowed(_)));
        assert_eq!(
            masker.mask_json(&serde_json::json!({ "abc": ["abcdef", 1] })),
            serde_json::json!({ "***": ["***", 1] })
        );
        assert!(Masker::new(Vec::<String>::new(), 1, "x").is_empty());
        assert!(!format!("{masker:?}").contains("abc"));
    }

    #[test]
    fn names_and_values_follow_ports_rules() {
        assert!(SecretName::parse("GITHUB_TOKEN-2").is_ok());
        assert!(SecretName::parse("").is_err());
        assert!(SecretName::parse("a.b").is_err());
        assert!(SecretName::parse(&"a".repeat(101)).is_err());
        let value = SecretValue::new("hunter2").unwrap();
        assert!(!format!("{value:?}").contains("hunter2"));
        assert!(SecretValue::new("x".repeat(SecretValue::MAX_CHARS + 1)).is_err());
        assert!(SecretValue::new("é".repeat(SecretValue::MAX_CHARS)).is_ok());
    }
}
