//! Port's webhook signatures.
//!
//! Port signs each webhook delivery with two headers: [`TIMESTAMP_HEADER`] (unix seconds,
//! decimal) and [`SIGNATURE_HEADER`], `v1,` followed by the standard base64 of
//! HMAC-SHA256 keyed with the organization's client secret over
//! `<timestamp>.<exact body bytes>`. The signature header may carry several
//! space-separated signatures (as in Standard Webhooks) so that a secret can be rotated
//! without dropping deliveries; one match is enough.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header carrying the signature(s): `v1,<base64>` entries separated by spaces.
pub const SIGNATURE_HEADER: &str = "X-Port-Signature";
/// The header carrying the signing time, in unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Port-Timestamp";
/// How far (in either direction) a delivery's timestamp may be from now.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The only signature scheme Port uses; entries of other versions are ignored.
const VERSION: &str = "v1";
/// Length of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;

/// Decodes standard-alphabet base64 with or without padding: we emit padded output, but
/// a proxy or a hand-written client that drops the padding still carries the same MAC.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {TIMESTAMP_HEADER} header is missing")]
    MissingTimestamp,
    #[error("the {TIMESTAMP_HEADER} header is not a unix timestamp in seconds")]
    InvalidTimestamp,
    #[error(
        "the {TIMESTAMP_HEADER} header ({timestamp}) is more than {tolerance_secs}s away from now ({now})"
    )]
    TimestampOutOfTolerance {
        timestamp: i64,
        now: i64,
        tolerance_secs: u64,
    },
    #[error("the {SIGNATURE_HEADER} header is missing")]
    MissingSignature,
    #[error("the {SIGNATURE_HEADER} header holds no well-formed v1 signature")]
    MalformedSignature,
    #[error("no signature in the {SIGNATURE_HEADER} header matches")]
    NoMatchingSignature,
}

/// The raw HMAC-SHA256 tag over `<timestamp>.<body>`.
fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> [u8; MAC_LEN] {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Signs a delivery: the value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp`
/// (which goes, in decimal, in [`TIMESTAMP_HEADER`]).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body);
    format!("{VERSION},{}", STANDARD.encode(tag))
}

/// Verifies a delivery signed with `secret`, as received: both header values, the exact
/// body bytes, and the receiver's clock.
pub fn verify(
    secret: &[u8],
    signature_header: &str,
    timestamp_header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    verify_with_any_secret(
        &[secret],
        signature_header,
        timestamp_header,
        body,
        now_unix,
        tolerance_secs,
    )
}

/// Like [`verify`], accepting a signature made with any of `secrets` (the current and
/// the previous client secret while one is rotated).
pub fn verify_with_any_secret(
    secrets: &[&[u8]],
    signature_header: &str,
    timestamp_header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let timestamp_text = timestamp_header.trim();
    let timestamp = parse_timestamp(timestamp_text)?;
    let skew = (i128::from(now_unix) - i128::from(timestamp)).unsigned_abs();
    if skew > u128::from(tolerance_secs) {
        return Err(SignatureError::TimestampOutOfTolerance {
            timestamp,
            now: now_unix,
            tolerance_secs,
        });
    }

    if signature_header.trim().is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let candidates: Vec<[u8; MAC_LEN]> = signature_header
        .split_ascii_whitespace()
        .filter_map(parse_entry)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::MalformedSignature);
    }

    // The MAC is over the timestamp exactly as sent, not as we would re-print it.
    let matched = secrets.iter().any(|secret| {
        let expected = mac(secret, timestamp_text, body);
        // Not short-circuiting over candidates keeps the time independent of which matched.
        candidates
            .iter()
            .fold(subtle::Choice::from(0), |acc, c| {
                acc | c[..].ct_eq(&expected[..])
            })
            .into()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatchingSignature)
    }
}

/// Parses a decimal, non-negative unix timestamp; signs, spaces and exponents are refused
/// because the signed text must be exactly what was sent.
fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    if text.is_empty() {
        return Err(SignatureError::MissingTimestamp);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::InvalidTimestamp);
    }
    text.parse().map_err(|_| SignatureError::InvalidTimestamp)
}

/// The MAC of one `v1,<base64>` entry; `None` for other versions and garbage.
fn parse_entry(entry: &str) -> Option<[u8; MAC_LEN]> {
    let (version, encoded) = entry.split_once(',')?;
    if version != VERSION {
        return None;
    }
    LENIENT_STANDARD.decode(encoded).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_713_277_889;

    #[test]
    fn known_vector() {
        // Computed with python3: base64(hmac.new(b"secret", b"1713277889.{\"a\":1}", sha256)).
        let expected = "v1,RfMvTpilMNQAYnHOtycC9FsqA5u/HKDV7D0VpQ1UYQk=";
        assert_eq!(sign(b"secret", NOW, br#"{"a":1}"#), expected);
        assert_eq!(
            verify(b"secret", expected, "1713277889", br#"{"a":1}"#, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn known_vector_empty_body() {
        let expected = "v1,54YN6hy3iehXc0+55uLuwArbXsHRdoHdtTDCRe19dWY=";
        assert_eq!(sign(b"whsec-rotated", 1_700_000_000, b""), expected);
    }

    #[test]
    fn unpadded_signature_is_accepted() {
        let header = "v1,RfMvTpilMNQAYnHOtycC9FsqA5u/HKDV7D0VpQ1UYQk";
        assert_eq!(
            verify(b"secret", header, "1713277889", br#"{"a":1}"#, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn header_errors() {
        let sig = sign(b"s", NOW, b"x");
        let check = |sig: &str, ts: &str| verify(b"s", sig, ts, b"x", NOW, 300);
        assert_eq!(check(&sig, ""), Err(SignatureError::MissingTimestamp));
        assert_eq!(check(&sig, "  "), Err(SignatureError::MissingTimestamp));
        assert_eq!(check(&sig, "abc"), Err(SignatureError::InvalidTimestamp));
        assert_eq!(check(&sig, "-5"), Err(SignatureError::InvalidTimestamp));
        assert_eq!(
            check(&sig, "+1713277889"),
            Err(SignatureError::InvalidTimestamp)
        );
        assert_eq!(
            check(&sig, "99999999999999999999999"),
            Err(SignatureError::InvalidTimestamp)
        );
        assert_eq!(
            check("", "1713277889"),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check("v1", "1713277889"),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            check("v1,!!!", "1713277889"),
            Err(SignatureError::MalformedSignature)
        );
        // Valid base64, wrong length for a SHA-256 MAC.
        assert_eq!(
            check("v1,AAAA", "1713277889"),
            Err(SignatureError::MalformedSignature)
        );
        let other_version = sig.replacen("v1,", "v2,", 1);
        assert_eq!(
            check(&other_version, "1713277889"),
            Err(SignatureError::MalformedSignature)
        );
        // Surrounding whitespace in the timestamp header is tolerated.
        assert_eq!(check(&sig, " 1713277889 "), Ok(()));
    }

    #[test]
    fn timestamp_is_signed_as_sent() {
        // A zero-padded timestamp parses to the same instant but is different signed text.
        let sig = sign(b"s", NOW, b"x");
        assert_eq!(
            verify(b"s", &sig, "01713277889", b"x", NOW, 300),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn tolerance_bounds_are_inclusive() {
        let ts = NOW - 300;
        let sig = sign(b"s", ts, b"x");
        assert_eq!(verify(b"s", &sig, &ts.to_string(), b"x", NOW, 300), Ok(()));
        let ts = NOW + 301;
        let sig = sign(b"s", ts, b"x");
        assert_eq!(
            verify(b"s", &sig, &ts.to_string(), b"x", NOW, 300),
            Err(SignatureError::TimestampOutOfTolerance {
                timestamp: ts,
                now: NOW,
                tolerance_secs: 300
            })
        );
    }

    #[test]
    fn any_secret_of_a_rotation_is_accepted() {
        let sig = sign(b"old", NOW, b"x");
        let ts = NOW.to_string();
        assert_eq!(
            verify_with_any_secret(&[b"new", b"old"], &sig, &ts, b"x", NOW, 300),
            Ok(())
        );
        assert_eq!(
            verify_with_any_secret(&[b"new"], &sig, &ts, b"x", NOW, 300),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify_with_any_secret(&[], &sig, &ts, b"x", NOW, 300),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    proptest! {
        #[test]
        fn sign_then_verify(
            secret in proptest::collection::vec(any::<u8>(), 0..80),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            ts in 0i64..4_000_000_000,
            skew in -300i64..=300,
        ) {
            let sig = sign(&secret, ts, &body);
            prop_assert_eq!(
                verify(&secret, &sig, &ts.to_string(), &body, ts + skew, DEFAULT_TOLERANCE_SECS),
                Ok(())
            );
        }

        #[test]
        fn changed_body_byte_fails(
            secret in proptest::collection::vec(any::<u8>(), 1..40),
            body in proptest::collection::vec(any::<u8>(), 1..300),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let sig = sign(&secret, NOW, &body);
            let mut tampered = body.clone();
            let i = index.index(tampered.len());
            tampered[i] ^= flip;
            prop_assert_eq!(
                verify(&secret, &sig, &NOW.to_string(), &tampered, NOW, 300),
                Err(SignatureError::NoMatchingSignature)
            );
        }

        #[test]
        fn other_secret_fails(
            secret in proptest::collection::vec(any::<u8>(), 0..40),
            other in proptest::collection::vec(any::<u8>(), 0..40),
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            prop_assume!(secret != other);
            let sig = sign(&secret, NOW, &body);
            prop_assert_eq!(
                verify(&other, &sig, &NOW.to_string(), &body, NOW, 300),
                Err(SignatureError::NoMatchingSignature)
            );
        }

        #[test]
        fn timestamp_outside_tolerance_fails(
            ts in 0i64..4_000_000_000,
            beyond in 1i64..1_000_000,
            future in any::<bool>(),
            tolerance in 0u64..10_000,
        ) {
            let offset = i64::try_from(tolerance).unwrap() + beyond;
            let now = if future { ts - offset } else { ts + offset };
            let sig = sign(b"secret", ts, b"{}");
            let result = verify(b"secret", &sig, &ts.to_string(), b"{}", now, tolerance);
            prop_assert!(
                matches!(result, Err(SignatureError::TimestampOutOfTolerance { .. })),
                "{:?}", result
            );
        }

        #[test]
        fn garbage_next_to_a_valid_signature_passes(
            garbage in "[!-~]{0,60}",
            valid_first in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let sig = sign(b"secret", NOW, &body);
            let header = if valid_first {
                format!("{sig} {garbage}")
            } else {
                format!("{garbage} {sig}")
            };
            prop_assert_eq!(verify(b"secret", &header, &NOW.to_string(), &body, NOW, 300), Ok(()));
        }

        #[test]
        fn arbitrary_headers_never_panic(
            sig_header in any::<String>(),
            ts_header in any::<String>(),
            now in any::<i64>(),
            tolerance in any::<u64>(),
        ) {
            let _ = verify(b"secret", &sig_header, &ts_header, b"body", now, tolerance);
        }

        #[test]
        fn v1_shaped_headers_never_panic(sig_header in "(v1,[A-Za-z0-9+/=]{0,50} ?){0,4}") {
            let result = verify(b"secret", &sig_header, &NOW.to_string(), b"body", NOW, 300);
            prop_assert!(result.is_err());
        }
    }
}
