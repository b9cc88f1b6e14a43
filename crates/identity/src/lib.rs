//! Identity: who opens a session. Service-account tokens are created here, stored only as hashes
//! (a SHA-256 for password checks and a SCRAM-SHA-256 verifier), and checked in constant time.
//! Only this crate builds an [`AuthenticatedIdentity`].
//!
//! Agents that hold a JWT access token from an OpenID provider instead are checked by
//! [`OidcVerifier`] (module `oidc`): signature against the issuer's published keys, then issuer,
//! audience and lifetime; the identity, groups and task come from configured claims.
//!
//! This crate knows nothing of wire protocols: a protocol crate runs the SCRAM exchange and hands
//! the proof to [`ScramChallenge::verify`], or hands a bearer token to [`OidcVerifier::verify`].

#![forbid(unsafe_code)]

mod oidc;
mod scram;
mod tokens;

pub use oidc::{
    looks_like_jwt, parse_untrusted as parse_untrusted_jwt, ConsoleLogin, LoginError, LoginStart, OidcIssuerConfig, OidcRefusal,
    OidcVerifier, OIDC_CLOCK_LEEWAY, OIDC_REFETCH_INTERVAL,
};
pub use scram::{ScramChallenge, SCRAM_ITERATIONS};
pub use tokens::ssh_keys::{parse_public_key_line, ssh_fingerprint, ssh_key_credential, BadPublicKey, SshKeyInfo};
pub use tokens::{NewToken, TokenInfo, TokenStore};

use std::path::PathBuf;

/// An identity that proved who it is. Only this crate makes these, after a check succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedIdentity {
    name: String,
    groups: Vec<String>,
    task: Option<String>,
    token_id: String,
}

/// Why a credential was refused. Clients get one message for all of these (no hint whether an
/// identity exists); the log gets the variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no valid token for this identity")]
    NoToken,
    #[error("the token does not match")]
    WrongToken,
    #[error("the SCRAM proof is malformed")]
    MalformedProof,
}

/// Errors of the token store itself.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("token store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no token {id}; list tokens with `witness token list`")]
    UnknownToken { id: String },
    #[error("identity name {given:?} is invalid: use 1 to 64 characters from letters, digits, '.', '_', '-' and '@'")]
    BadName { given: String },
    #[error("the SSH public key is refused: {0}")]
    BadSshKey(#[source] tokens::ssh_keys::BadPublicKey),
    #[error("no SSH key {fingerprint}; list keys with `witness identity keys`")]
    UnknownSshKey { fingerprint: String },
    #[error("group name {given:?} is invalid: use 1 to 64 characters from letters, digits, '.', '_' and '-'")]
    BadGroup { given: String },
}

impl AuthenticatedIdentity {
    /// For this crate's checks only, after they succeeded: callers must have validated `name` with
    /// [`valid_identity_name`] and every group with `valid_group_name`.
    pub(crate) fn new(name: String, groups: Vec<String>, task: Option<String>, token_id: String) -> AuthenticatedIdentity {
        debug_assert!(valid_identity_name(&name) && groups.iter().all(|g| valid_group_name(g)));
        AuthenticatedIdentity { name, groups, task, token_id }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The task the token was created for, if any.
    pub fn task(&self) -> Option<&str> {
        self.task.as_deref()
    }

    /// The id of the token that authenticated this identity (safe to record: not the secret).
    pub fn token_id(&self) -> &str {
        &self.token_id
    }
}

/// Identity names appear in logs, recordings and PostgreSQL user names: keep them plain.
pub fn valid_identity_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn valid_group_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
