//! Taking a compact JWS apart before any key is involved: the header is decoded here rather than
//! by `jsonwebtoken`, so that every refusal can say exactly what was wrong, and so that an
//! unsigned token is refused before anything else is looked at.
//!
//! Nothing here is trusted: the payload is parsed only to find the issuer whose keys must check
//! the signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{clip, OidcRefusal};

/// Longer tokens are refused unread: real access tokens are a few KiB at most.
pub(super) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A JWT taken apart, signature not yet checked.
pub(super) struct Jwt<'a> {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
    pub(super) claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub(super) signing_input: &'a str,
    /// The signature, still base64url (as `jsonwebtoken::crypto::verify` takes it); known to decode.
    pub(super) signature: &'a str,
}

/// True when `s` is shaped like a compact JWT: three base64url parts separated by dots (the last
/// may be empty, as in unsigned tokens, so that those reach [`OidcVerifier::verify`](super::OidcVerifier::verify) and are
/// refused there), the first of which is a JSON object with an `alg`.
///
/// A cheap test for callers that receive either a JWT or some other secret in the same field
/// (a PostgreSQL password): it does not say the token is valid.
pub fn looks_like_jwt(s: &str) -> bool {
    if s.len() > MAX_TOKEN_LEN {
        return false;
    }
    let parts: Vec<&str> = s.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return false;
    };
    let base64url = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    !header.is_empty()
        && !payload.is_empty()
        && base64url(header)
        && base64url(payload)
        && base64url(signature)
        && decode_json(header).is_some_and(|h| h.contains_key("alg"))
}

/// Splits and decodes a token, refusing unsigned and unacceptable algorithms.
pub(super) fn parse(token: &str) -> Result<Jwt<'_>, OidcRefusal> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(OidcRefusal::Malformed("the token is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(OidcRefusal::Malformed("a JWT has three parts separated by dots (encrypted tokens are not supported)"));
    };
    let header_json = decode_json(header).ok_or(OidcRefusal::Malformed("the header is not base64url-encoded JSON"))?;
    let Some(Value::String(alg)) = header_json.get("alg") else {
        return Err(OidcRefusal::Malformed("the header has no \"alg\" string"));
    };
    if alg.eq_ignore_ascii_case("none") || signature.is_empty() {
        return Err(OidcRefusal::Unsigned);
    }
    let alg = accepted_algorithm(alg).ok_or_else(|| OidcRefusal::UnsupportedAlgorithm { alg: clip(alg) })?;
    if header_json.contains_key("crit") {
        return Err(OidcRefusal::Malformed("the header lists \"crit\" extensions, which are not supported"));
    }
    let kid = match header_json.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(OidcRefusal::Malformed("the header's \"kid\" is not a string")),
    };
    let claims = decode_json(payload).ok_or(OidcRefusal::Malformed("the payload is not base64url-encoded JSON"))?;
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(OidcRefusal::Malformed("the signature is not base64url"));
    }
    Ok(Jwt { alg, kid, claims, signing_input: &token[..header.len() + 1 + payload.len()], signature })
}

/// The algorithms witness verifies: public-key ones only.
pub(super) fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}
