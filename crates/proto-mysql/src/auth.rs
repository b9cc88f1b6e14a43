//! The answers to a server's scramble that the login plugins want, computed by witness for its
//! own login to a target, and checked by witness for clients that log in to it:
//! `mysql_native_password` (SHA-1 based; a server keeps `SHA1(SHA1(password))`, the verifier),
//! `caching_sha2_password`'s fast path (SHA-256 based; its full path sends the password itself,
//! over TLS, or encrypted to the target's pinned RSA key) and MariaDB's `client_ed25519` (an Ed25519 signature by a key derived from the
//! password).

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::VerifyingKey;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
pub const CLEAR_PASSWORD: &str = "mysql_clear_password";
pub const ED25519: &str = "client_ed25519";

/// What a server keeps of a `mysql_native_password` password: `SHA1(SHA1(password))`.
pub fn native_password_verifier(password: &[u8]) -> [u8; 20] {
    Sha1::digest(Sha1::digest(password)).into()
}

/// The `mysql_native_password` answer: `SHA1(password) XOR SHA1(scramble + verifier)`; empty
/// for an empty password.
pub fn native_password_response(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let hashed: [u8; 20] = Sha1::digest(password).into();
    let mask = Sha1::new().chain_update(scramble).chain_update(native_password_verifier(password)).finalize();
    hashed.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

/// Whether `response` answers `scramble` for the password whose verifier this is.
pub fn native_password_matches(verifier: &[u8; 20], scramble: &[u8], response: &[u8]) -> bool {
    if response.len() != 20 {
        return false;
    }
    let mask = Sha1::new().chain_update(scramble).chain_update(verifier).finalize();
    let hashed: Vec<u8> = response.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
    let candidate: [u8; 20] = Sha1::digest(&hashed).into();
    // Not secret-dependent in its timing beyond what SHA-1 leaks: compare all bytes.
    candidate.iter().zip(verifier).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// The `caching_sha2_password` fast answer: `SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble)`.
pub fn caching_sha2_response(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let once: [u8; 32] = Sha256::digest(password).into();
    let twice = Sha256::digest(once);
    let mask = Sha256::new().chain_update(twice).chain_update(scramble).finalize();
    once.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

/// `caching_sha2_password`'s full answer where the password may not travel in clear: the
/// password (NUL-terminated) XOR the scramble, repeated, encrypted with RSA-OAEP (SHA-1) to the
/// target's public key, which witness has pinned rather than asked for (a key sent over an
/// unverified connection could be anyone's).
pub fn caching_sha2_encrypted(password: &[u8], scramble: &[u8], key: &rsa::PublicKey) -> Result<Vec<u8>, rsa::Error> {
    let mut clear = password.to_vec();
    clear.push(0);
    if !scramble.is_empty() {
        for (i, byte) in clear.iter_mut().enumerate() {
            *byte ^= scramble[i % scramble.len()];
        }
    }
    key.encrypt(&mut rand::rng(), rsa::Oaep::<Sha1>::new(), &clear)
}

/// An RSA public key from PEM text: `BEGIN PUBLIC KEY` (as MySQL's `public_key.pem`) or `BEGIN
/// RSA PUBLIC KEY`.
pub fn rsa_public_key_from_pem(text: &str) -> Result<rsa::PublicKey, String> {
    use base64::Engine;
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let block = |label: &str| {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = text.find(&begin)? + begin.len();
        let stop = start + text[start..].find(&end)?;
        Some(text[start..stop].split_whitespace().collect::<String>())
    };
    let decode =
        |body: String| base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("its base64 does not decode: {e}"));
    if let Some(body) = block("PUBLIC KEY") {
        rsa::PublicKey::from_public_key_der(&decode(body)?).map_err(|e| format!("not an RSA public key: {e}"))
    } else if let Some(body) = block("RSA PUBLIC KEY") {
        rsa::PublicKey::from_pkcs1_der(&decode(body)?).map_err(|e| format!("not an RSA public key: {e}"))
    } else {
        Err("no -----BEGIN PUBLIC KEY----- block (PEM) in it".into())
    }
}

/// MariaDB's `client_ed25519` answer: the scramble signed with the Ed25519 key whose expanded
/// secret is `SHA512(password)`.
pub fn ed25519_response(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    let expanded: [u8; 64] = Sha512::digest(password).into();
    let secret = ExpandedSecretKey::from_bytes(&expanded);
    let public = VerifyingKey::from(&secret);
    raw_sign::<Sha512>(&secret, scramble, &public).to_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_answers_check_against_the_verifier_only() {
        let scramble: Vec<u8> = (0..20).collect();
        let verifier = native_password_verifier(b"wit_token");
        let response = native_password_response(b"wit_token", &scramble);
        assert!(native_password_matches(&verifier, &scramble, &response));
        assert!(!native_password_matches(&verifier, &scramble, &native_password_response(b"wit_tokeN", &scramble)));
        let other: Vec<u8> = (1..21).collect();
        assert!(!native_password_matches(&verifier, &other, &response), "an answer to another scramble");
        assert!(!native_password_matches(&verifier, &scramble, &response[..19]));
    }

    #[test]
    fn ed25519_signatures_verify_with_the_derived_key() {
        let expanded: [u8; 64] = Sha512::digest(b"secret").into();
        let public = VerifyingKey::from(&ExpandedSecretKey::from_bytes(&expanded));
        let signature = ed25519_dalek::Signature::from_slice(&ed25519_response(b"secret", b"0123456789abcdef0123456789abcdef")).unwrap();
        assert!(public.verify_strict(b"0123456789abcdef0123456789abcdef", &signature).is_ok());
    }
}
