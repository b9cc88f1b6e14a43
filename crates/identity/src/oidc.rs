//! OIDC / JWT identities: an agent presents an access token (a JWT) from an OpenID provider the
//! operator trusts, instead of a witness token.
//!
//! Why: agents that run on a platform with an identity provider (a company IdP's
//! client-credentials grant, workload identity) should not need a second, long-lived secret
//! from witness. Their provider signs short-lived tokens; witness only checks them.
//!
//! What [`OidcVerifier::verify`] checks, in this order, and the [`OidcRefusal`] each failure gives:
//! 1. shape: three base64url parts with a JSON header and payload (`Malformed`);
//! 2. `alg`: "none" or an empty signature is `Unsigned`, before anything else; only RSA
//!    (RS*, PS*), ECDSA (ES256, ES384) and EdDSA are accepted (`UnsupportedAlgorithm`): never
//!    HMAC, whose "key" would be a secret shared with every resource server;
//! 3. the unverified `iss` claim picks one of the configured issuers, by exact match
//!    (`WrongIssuer`); nothing is fetched for an unknown issuer;
//! 4. the header's `kid` picks one of that issuer's keys (`UnknownKey`), whose type must fit
//!    `alg` (`KeyAlgorithmMismatch`), so a token cannot choose how its key is used;
//! 5. the signature (`BadSignature`); claims are trusted only from here on;
//! 6. `exp` (required) and `nbf` with [`OIDC_CLOCK_LEEWAY`] (`Expired`, `NotYetValid`), `aud`
//!    (`WrongAudience`), then the identity and task claims (`BadIdentityClaim`, `BadTaskClaim`).
//!
//! Keys: an issuer's discovery document (`{issuer}/.well-known/openid-configuration`) names its
//! `jwks_uri`; both are fetched on the first token of that issuer and the keys are cached. A token
//! naming an unknown `kid` triggers a refetch, since providers rotate keys, but fetches of one
//! issuer (failed ones included) happen at most once per [`OIDC_REFETCH_INTERVAL`], so a flood
//! of made-up kids, or an outage, costs the provider one request per interval. Concurrent
//! verifications share one fetch.
//!
//! Deliberately absent: HMAC and encrypted (JWE) tokens, token introspection and revocation (a
//! token is good until `exp`: keep their lifetime short), `crit` header extensions, redirects
//! when fetching keys, and plain `http://` issuers other than loopback ones (for tests).

mod fetch;
mod jwt;
mod keys;
mod login;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{valid_group_name, valid_identity_name, AuthenticatedIdentity};
use keys::{Key, Lookup};

pub use jwt::looks_like_jwt;
pub use login::{ConsoleLogin, LoginError, LoginStart};

/// For the fuzz target: parses an untrusted token as far as it can go without keys (shape,
/// header, algorithm, claims), so that every byte a client controls goes through the decoder.
#[doc(hidden)]
pub fn parse_untrusted(token: &str) -> Result<(), OidcRefusal> {
    jwt::parse(token).map(|_| ())
}

/// How far the clocks of witness and the provider may disagree when checking `exp` and `nbf`.
pub const OIDC_CLOCK_LEEWAY: Duration = Duration::from_secs(60);

/// The least time between two key fetches of one issuer.
pub const OIDC_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// One trusted token issuer and how to read its tokens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The issuer exactly as the provider writes it in `iss`, e.g. `https://idp.example.com/realms/ops`.
    pub issuer: String,
    /// The audience witness requires in `aud`: the resource agents request their tokens for.
    pub audience: String,
    /// The claim with the identity's groups: an array of strings or one string. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim with the task the token was issued for. Default: none, tokens have no task.
    #[serde(default)]
    pub task_claim: Option<String>,
    /// The claim that names the identity. Default `sub` (for the client-credentials grant, most
    /// providers put the client id there).
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
}

/// Verifies JWT access tokens of a fixed set of issuers. Cheap to clone: clones share the key
/// caches, so build one per configuration and hand clones to the sessions.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

/// Why a JWT was refused; each variant names the check that failed. Clients should get one
/// message for all of them, the log the variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcRefusal {
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the token is unsigned (alg \"none\" or an empty signature); only signed tokens are accepted")]
    Unsigned,
    #[error("the token's algorithm {alg:?} is not accepted; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA")]
    UnsupportedAlgorithm { alg: String },
    #[error("the token's issuer {found:?} is not a configured OIDC issuer")]
    WrongIssuer { found: String },
    #[error("cannot get the signing keys of issuer {issuer}: {reason}")]
    KeysUnavailable { issuer: String, reason: String },
    #[error("the issuer publishes no signing key {} (its keys are refetched for an unknown kid at most every 10 s)", show_kid(.kid))]
    UnknownKey { kid: Option<String> },
    #[error("the token's algorithm {alg} does not fit the type of the issuer's key {}", show_kid(.kid))]
    KeyAlgorithmMismatch { alg: String, kid: Option<String> },
    #[error("the token's signature does not verify: it was altered, or not signed by its issuer")]
    BadSignature,
    #[error("the token expired at unix time {expired_at}; get a fresh one")]
    Expired { expired_at: i64 },
    #[error("the token is not valid before unix time {not_before}; check the clocks of witness and the provider")]
    NotYetValid { not_before: i64 },
    #[error("the token is for audience {found:?} but witness requires {expected:?}; request the token for that resource")]
    WrongAudience { expected: String, found: Vec<String> },
    #[error("the token's {claim:?} claim is missing or not an identity name (1 to 64 letters, digits, '.', '_', '-', '@')")]
    BadIdentityClaim { claim: String },
    #[error("the token's {claim:?} claim is not a task (a string of 1 to 128 characters without control characters)")]
    BadTaskClaim { claim: String },
}

// === impl OidcIssuerConfig ===

impl OidcIssuerConfig {
    /// An issuer with the default claims: identity from `sub`, groups from `groups`, no task.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> OidcIssuerConfig {
        OidcIssuerConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            groups_claim: default_groups_claim(),
            task_claim: None,
            identity_claim: default_identity_claim(),
        }
    }
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_identity_claim() -> String {
    "sub".into()
}

// === impl OidcVerifier ===

impl OidcVerifier {
    /// A verifier for tokens of these issuers. Nothing is fetched until a token of an issuer
    /// arrives, so an unreachable provider does not keep witness from starting.
    pub fn new(issuers: Vec<OidcIssuerConfig>) -> OidcVerifier {
        let issuers = issuers
            .into_iter()
            .map(|config| Issuer { config, cache: Mutex::new(KeyCache::default()), fetch_gate: tokio::sync::Mutex::new(()) })
            .collect();
        OidcVerifier {
            inner: Arc::new(Inner {
                issuers,
                http: OnceLock::new(),
                #[cfg(test)]
                clock_skew_secs: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Verifies a JWT access token and returns who it authenticates.
    ///
    /// Fetches the issuer's discovery document and JWKS on first use, caches the keys, and
    /// refetches the JWKS when a token names an unknown `kid` (at most once per
    /// [`OIDC_REFETCH_INTERVAL`] per issuer). Never holds a lock across a fetch but the issuer's
    /// own fetch gate, so tokens of other issuers, and tokens whose key is cached, do not wait.
    pub async fn verify(&self, token: &str) -> Result<AuthenticatedIdentity, OidcRefusal> {
        let (issuer, claims) = self.signed_claims(token).await?;
        check_audience(&issuer.config.audience, &claims)?;
        identity_from_claims(&issuer.config, &claims, token)
    }

    /// The issuer and the claims of a JWT whose issuer is configured, whose signature verifies
    /// with that issuer's key and which is within its lifetime (steps 1 to 6 but the audience).
    async fn signed_claims(&self, token: &str) -> Result<(&Issuer, Map<String, Value>), OidcRefusal> {
        let jwt = jwt::parse(token)?;
        let Some(Value::String(iss)) = jwt.claims.get("iss") else {
            return Err(OidcRefusal::Malformed("the payload has no \"iss\" string claim"));
        };
        let issuer =
            self.inner.issuers.iter().find(|i| i.config.issuer == *iss).ok_or_else(|| OidcRefusal::WrongIssuer { found: clip(iss) })?;

        let keys = self.signing_keys(issuer, jwt.kid.as_deref(), jwt.alg).await?;
        let candidates = match keys::lookup(&keys, jwt.kid.as_deref(), jwt.alg) {
            Lookup::Found(candidates) => candidates,
            Lookup::Mismatch => {
                return Err(OidcRefusal::KeyAlgorithmMismatch { alg: format!("{:?}", jwt.alg), kid: jwt.kid.as_deref().map(clip) })
            }
            Lookup::Unknown => return Err(OidcRefusal::UnknownKey { kid: jwt.kid.as_deref().map(clip) }),
        };
        if !candidates.iter().any(|key| key.verifies(jwt.signing_input, jwt.signature, jwt.alg)) {
            return Err(OidcRefusal::BadSignature);
        }

        check_lifetime(&jwt.claims, unix_now())?;
        Ok((issuer, jwt.claims))
    }

    /// The issuer's current keys, fetched first if they are missing or lack the token's key and
    /// the last fetch is at least [`OIDC_REFETCH_INTERVAL`] old.
    async fn signing_keys(&self, issuer: &Issuer, kid: Option<&str>, alg: jsonwebtoken::Algorithm) -> Result<Arc<[Key]>, OidcRefusal> {
        let cached = issuer.cache.lock().unwrap_or_else(|e| e.into_inner()).keys.clone();
        if !matches!(keys::lookup(&cached, kid, alg), Lookup::Unknown) {
            return Ok(cached);
        }

        // One fetch per issuer at a time: whoever waited here finds the keys the fetch before it
        // got, or the interval not yet over.
        let _gate = issuer.fetch_gate.lock().await;
        let jwks_uri = {
            let cache = issuer.cache.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(keys::lookup(&cache.keys, kid, alg), Lookup::Unknown) {
                return Ok(cache.keys.clone());
            }
            if cache.last_attempt.is_some_and(|at| self.now().saturating_duration_since(at) < OIDC_REFETCH_INTERVAL) {
                return match &cache.last_error {
                    Some(reason) => Err(OidcRefusal::KeysUnavailable { issuer: issuer.config.issuer.clone(), reason: reason.clone() }),
                    None => Ok(cache.keys.clone()),
                };
            }
            cache.jwks_uri.clone()
        };

        let fetched = self.fetch_keys(&issuer.config.issuer, jwks_uri).await;
        let mut cache = issuer.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.last_attempt = Some(self.now());
        match fetched {
            Ok((jwks_uri, keys)) => {
                cache.jwks_uri = Some(jwks_uri);
                cache.keys = keys.into();
                cache.last_error = None;
                Ok(cache.keys.clone())
            }
            Err(reason) => {
                // Discover again next time: the provider may have moved its JWKS.
                cache.jwks_uri = None;
                cache.last_error = Some(reason.clone());
                Err(OidcRefusal::KeysUnavailable { issuer: issuer.config.issuer.clone(), reason })
            }
        }
    }

    /// Discovery (unless the JWKS URI is known), then the JWKS.
    async fn fetch_keys(&self, issuer: &str, jwks_uri: Option<String>) -> Result<(String, Vec<Key>), String> {
        let client = self.inner.http.get_or_init(fetch::client).as_ref().map_err(Clone::clone)?;
        let jwks_uri = match jwks_uri {
            Some(uri) => uri,
            None => fetch::discover_jwks_uri(client, issuer).await?,
        };
        let keys = fetch::fetch_jwks(client, &jwks_uri).await?;
        Ok((jwks_uri, keys))
    }

    fn now(&self) -> Instant {
        #[cfg(test)]
        {
            Instant::now() + Duration::from_secs(self.inner.clock_skew_secs.load(std::sync::atomic::Ordering::Relaxed))
        }
        #[cfg(not(test))]
        {
            Instant::now()
        }
    }
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier").field("issuers", &self.inner.issuers.iter().map(|i| &i.config).collect::<Vec<_>>()).finish()
    }
}

// === private types ===

struct Inner {
    issuers: Vec<Issuer>,
    /// Built on the first fetch: loading the system's root certificates is not free, and a
    /// witness without OIDC tokens never needs it. An error here is reported as
    /// `KeysUnavailable` on every fetch.
    http: OnceLock<Result<reqwest::Client, String>>,
    /// Tests move the fetch clock forward instead of sleeping through the refetch interval.
    #[cfg(test)]
    clock_skew_secs: std::sync::atomic::AtomicU64,
}

struct Issuer {
    config: OidcIssuerConfig,
    /// Locked only briefly, never across a fetch.
    cache: Mutex<KeyCache>,
    /// Held across a fetch, so that one issuer is fetched by one verification at a time.
    fetch_gate: tokio::sync::Mutex<()>,
}

struct KeyCache {
    /// Shared with verifications in progress: a refetch swaps the whole set.
    keys: Arc<[Key]>,
    /// From discovery, kept so that a refetch needs one request, not two.
    jwks_uri: Option<String>,
    /// When the last fetch (successful or not) ended; the refetch interval counts from here.
    last_attempt: Option<Instant>,
    /// Why the last fetch failed, if it did: repeated to tokens until the next attempt.
    last_error: Option<String>,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache { keys: Arc::from(Vec::new()), jwks_uri: None, last_attempt: None, last_error: None }
    }
}

// === claim checks (after the signature) ===

fn check_lifetime(claims: &Map<String, Value>, now: i64) -> Result<(), OidcRefusal> {
    let leeway = OIDC_CLOCK_LEEWAY.as_secs() as i64;
    let exp = numeric_date(claims, "exp")?
        .ok_or(OidcRefusal::Malformed("the payload has no \"exp\" claim: only tokens that expire are accepted"))?;
    if now > exp.saturating_add(leeway) {
        return Err(OidcRefusal::Expired { expired_at: exp });
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(OidcRefusal::NotYetValid { not_before: nbf });
        }
    }
    Ok(())
}

/// A NumericDate claim: seconds since the epoch, possibly with a fraction (which is dropped).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, OidcRefusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(seconds) => Ok(Some(seconds)),
            None => match n.as_f64() {
                Some(seconds) if seconds.is_finite() => Ok(Some(seconds.floor() as i64)),
                _ => Err(OidcRefusal::Malformed("\"exp\" or \"nbf\" is not a number of seconds")),
            },
        },
        Some(_) => Err(OidcRefusal::Malformed("\"exp\" or \"nbf\" is not a number of seconds")),
    }
}

fn check_audience(expected: &str, claims: &Map<String, Value>) -> Result<(), OidcRefusal> {
    let found: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if found.contains(&expected) {
        return Ok(());
    }
    // The token is signed, but its claims can still be large: report a few, clipped.
    Err(OidcRefusal::WrongAudience { expected: expected.to_string(), found: found.into_iter().take(8).map(clip).collect() })
}

fn identity_from_claims(config: &OidcIssuerConfig, claims: &Map<String, Value>, token: &str) -> Result<AuthenticatedIdentity, OidcRefusal> {
    let name = match claims.get(&config.identity_claim) {
        Some(Value::String(name)) if valid_identity_name(name) => name.clone(),
        _ => return Err(OidcRefusal::BadIdentityClaim { claim: config.identity_claim.clone() }),
    };

    // Groups grant rights, so anything unexpected is dropped rather than guessed at.
    let listed: Vec<&str> = match claims.get(&config.groups_claim) {
        Some(Value::String(group)) => vec![group.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut groups: Vec<String> = Vec::new();
    for group in listed.into_iter().filter(|g| valid_group_name(g)).take(MAX_GROUPS) {
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
    }

    // A task that is there but unreadable is refused: dropping it could dodge a task rule.
    let task = match &config.task_claim {
        None => None,
        Some(claim) => match claims.get(claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(task)) if valid_task(task) => Some(task.clone()),
            Some(_) => return Err(OidcRefusal::BadTaskClaim { claim: claim.clone() }),
        },
    };

    // The id names the token in recordings and logs without being a usable credential.
    let digest = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => Sha256::digest(jti.as_bytes()),
        _ => Sha256::digest(token.as_bytes()),
    };
    let token_id = format!("oidc:{}", &hex::encode(digest)[..16]);

    Ok(AuthenticatedIdentity::new(name, groups, task, token_id))
}

/// More groups than this in one token is a misconfigured provider; the rest are ignored.
const MAX_GROUPS: usize = 64;

fn valid_task(task: &str) -> bool {
    !task.is_empty() && task.chars().count() <= 128 && !task.chars().any(char::is_control)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Values from tokens go into error messages and logs: at most 128 characters of them.
fn clip(value: &str) -> String {
    value.chars().take(128).collect()
}

fn show_kid(kid: &Option<String>) -> String {
    match kid {
        Some(kid) => format!("{kid:?}"),
        None => "(the token names no kid and no single key fits)".into(),
    }
}
