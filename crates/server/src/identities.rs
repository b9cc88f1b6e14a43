//! Who a credential belongs to: witness tokens (found by their hash in the token store) and JWTs
//! of the configured OpenID issuers. The gate asks it for clients of every protocol, the review
//! API for bearer tokens and console logins; both see the same identities and groups.

use std::sync::Arc;

use witness_core::{AuthRefused, Principal};
use witness_identity::{looks_like_jwt, AuthenticatedIdentity, OidcVerifier, TokenStore};

/// The token store and the JWT verifier, cheap to clone (clones share both).
#[derive(Clone)]
pub struct Identities {
    pub tokens: Arc<TokenStore>,
    /// Verifies JWTs of the configured OpenID issuers, if any.
    pub oidc: Option<OidcVerifier>,
}

impl Identities {
    /// A credential presented without an identity (an API bearer token, an SSH password): a JWT
    /// when it looks like one and issuers are configured, else a witness token found by its hash.
    pub async fn bearer(&self, token: &str) -> Result<Principal, AuthRefused> {
        if let (Some(oidc), true) = (&self.oidc, looks_like_jwt(token)) {
            return oidc
                .verify(token)
                .await
                .map(principal)
                .map_err(|refusal| AuthRefused { reason: format!("the JWT was refused: {refusal}"), client_reason: None });
        }
        self.tokens.verify_bearer(token).map(principal).map_err(|failure| AuthRefused { reason: failure.to_string(), client_reason: None })
    }

    /// A cleartext password given with a user name: a JWT from a configured issuer, or a token
    /// of `user`.
    pub async fn password(&self, user: &str, password: &str) -> Result<Principal, AuthRefused> {
        if let (Some(oidc), true) = (&self.oidc, looks_like_jwt(password)) {
            let identity = oidc.verify(password).await.map_err(|refusal| {
                let reason = format!("the JWT was refused: {refusal}");
                AuthRefused { reason: reason.clone(), client_reason: Some(reason) }
            })?;
            if identity.name() != user {
                let reason = format!("the JWT is for \"{}\"; connect with user={}", identity.name(), identity.name());
                return Err(AuthRefused { reason: reason.clone(), client_reason: Some(reason) });
            }
            return Ok(principal(identity));
        }
        self.tokens.verify_secret(user, password).map(principal).map_err(|failure| {
            // A valid token of another identity: the caller holds it, so naming whose it is tells
            // them nothing new and saves a guess.
            match self.tokens.verify_bearer(password) {
                Ok(holder) if holder.name() != user => {
                    let reason = format!("the token is for \"{}\"; connect with user={}", holder.name(), holder.name());
                    AuthRefused { reason: reason.clone(), client_reason: Some(reason) }
                }
                _ => AuthRefused { reason: failure.to_string(), client_reason: None },
            }
        })
    }
}

/// The principal of an identity the token store or an issuer vouched for.
pub fn principal(identity: AuthenticatedIdentity) -> Principal {
    Principal {
        identity: identity.name().to_string(),
        groups: identity.groups().to_vec(),
        task: identity.task().map(str::to_string),
        credential: identity.token_id().to_string(),
    }
}
