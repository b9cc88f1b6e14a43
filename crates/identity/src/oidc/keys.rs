//! An issuer's signing keys, read from its JWKS, and which of them may check which token.
//!
//! A key's type decides the algorithms it verifies (RSA: RS*/PS*, P-256: ES256, P-384: ES384,
//! Ed25519: EdDSA), and a key's own `alg`, when given, narrows that to one: a token's header
//! cannot make a key be used in a way its owner did not publish it for. Symmetric keys, keys for
//! encryption and RSA keys under 2048 bits are skipped.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::jwt::accepted_algorithm;

/// A JWKS with more keys than this is cut: checking a token without a `kid` tries every fitting key.
const MAX_KEYS: usize = 64;

/// One usable public key.
#[derive(Debug)]
pub(super) struct Key {
    kid: Option<String>,
    key_type: KeyType,
    /// The key's own `alg`, if it names one.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// What a token's `kid` and `alg` find among the keys.
pub(super) enum Lookup<'a> {
    /// Keys that may check the signature: one for a `kid`, every fitting one without.
    Found(Vec<&'a Key>),
    /// The `kid` exists, but no key under it fits the algorithm.
    Mismatch,
    /// No such `kid`, or (without one) no key of the algorithm's type.
    Unknown,
}

/// The usable keys of a JWKS document, or why there are none.
pub(super) fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err("the JWKS has no \"keys\" array".into());
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        match Key::from_jwk(entry) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(why) => skipped.push(why),
        }
    }
    if keys.is_empty() {
        let why = if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) };
        return Err(format!(
            "the JWKS has no usable signing key among {} (RSA of at least 2048 bits, P-256, P-384 or Ed25519){why}",
            entries.len()
        ));
    }
    keys.truncate(MAX_KEYS);
    Ok(keys)
}

pub(super) fn lookup<'a>(keys: &'a [Key], kid: Option<&str>, alg: Algorithm) -> Lookup<'a> {
    let fits = |key: &&Key| KeyType::verifying(alg) == Some(key.key_type) && key.alg.is_none_or(|own| own == alg);
    let fitting: Vec<&Key> = match kid {
        Some(kid) => {
            let named: Vec<&Key> = keys.iter().filter(|key| key.kid.as_deref() == Some(kid)).collect();
            if named.is_empty() {
                return Lookup::Unknown;
            }
            let fitting: Vec<&Key> = named.into_iter().filter(fits).collect();
            if fitting.is_empty() {
                return Lookup::Mismatch;
            }
            fitting
        }
        None => keys.iter().filter(fits).collect(),
    };
    if fitting.is_empty() {
        Lookup::Unknown
    } else {
        Lookup::Found(fitting)
    }
}

// === impl Key ===

impl Key {
    /// A signing key from one JWK; `Ok(None)` for keys published for something else than
    /// signatures, `Err` for keys that witness cannot or will not use.
    fn from_jwk(entry: &Value) -> Result<Option<Key>, String> {
        let text = |name: &str| entry.get(name).and_then(Value::as_str);
        let kid = match entry.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err("a key's \"kid\" is not a string".into()),
        };
        let label = kid.as_deref().map(|k| format!("key {k:?}")).unwrap_or_else(|| "a key without kid".into());
        if text("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        if let Some(Value::Array(ops)) = entry.get("key_ops") {
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Ok(None);
            }
        }
        let part = |name: &str| text(name).ok_or_else(|| format!("{label} has no \"{name}\""));
        let decoded_len = |name: &str| -> Result<usize, String> {
            let bytes = URL_SAFE_NO_PAD.decode(part(name)?).map_err(|_| format!("{label}: \"{name}\" is not base64url"))?;
            Ok(bytes.len())
        };
        let kty = text("kty").ok_or_else(|| format!("{label} has no \"kty\""))?;
        let (key_type, decoding) = match (kty, text("crv")) {
            ("RSA", _) => {
                let modulus = URL_SAFE_NO_PAD.decode(part("n")?).map_err(|_| format!("{label}: \"n\" is not base64url"))?;
                let significant = modulus.iter().skip_while(|b| **b == 0).count();
                if significant < 256 {
                    return Err(format!("{label} is an RSA key under 2048 bits"));
                }
                let decoding = DecodingKey::from_rsa_components(part("n")?, part("e")?).map_err(|e| format!("{label}: {e}"))?;
                (KeyType::Rsa, decoding)
            }
            ("EC", Some(curve @ ("P-256" | "P-384"))) => {
                let (key_type, size) = if curve == "P-256" { (KeyType::P256, 32) } else { (KeyType::P384, 48) };
                if decoded_len("x")? != size || decoded_len("y")? != size {
                    return Err(format!("{label}: coordinates of the wrong size for {curve}"));
                }
                (key_type, DecodingKey::from_ec_components(part("x")?, part("y")?).map_err(|e| format!("{label}: {e}"))?)
            }
            ("OKP", Some("Ed25519")) => {
                if decoded_len("x")? != 32 {
                    return Err(format!("{label}: an Ed25519 key has 32 bytes"));
                }
                (KeyType::Ed25519, DecodingKey::from_ed_components(part("x")?).map_err(|e| format!("{label}: {e}"))?)
            }
            ("oct", _) => return Err(format!("{label} is a symmetric key, which is never used")),
            (kty, crv) => {
                return Err(format!("{label} has unsupported type {kty:?}{}", crv.map(|c| format!(" on curve {c:?}")).unwrap_or_default()))
            }
        };
        let alg = match text("alg") {
            None => None,
            Some(name) => match accepted_algorithm(name) {
                Some(alg) if KeyType::verifying(alg) == Some(key_type) => Some(alg),
                _ => return Err(format!("{label} names algorithm {name:?}, which witness does not accept for it")),
            },
        };
        Ok(Some(Key { kid, key_type, alg, decoding }))
    }

    /// Whether `signature` (base64url) is this key's signature of `signing_input` under `alg`.
    pub(super) fn verifies(&self, signing_input: &str, signature: &str, alg: Algorithm) -> bool {
        jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &self.decoding, alg).unwrap_or(false)
    }
}

// === impl KeyType ===

impl KeyType {
    /// The key type that verifies an algorithm; none for HMAC, which has no public key.
    fn verifying(alg: Algorithm) -> Option<KeyType> {
        match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => {
                Some(KeyType::Rsa)
            }
            Algorithm::ES256 => Some(KeyType::P256),
            Algorithm::ES384 => Some(KeyType::P384),
            Algorithm::EdDSA => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}
