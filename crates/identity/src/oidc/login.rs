//! Logging a person in to the review console through the OpenID provider: the authorization
//! code flow with PKCE (RFC 7636, S256) and a nonce.
//!
//! [`OidcVerifier::begin_login`] makes the provider's authorization URL with a fresh `state`,
//! `nonce` and code verifier; the caller keeps the three (tied to the browser) until the provider
//! sends the browser back. [`OidcVerifier::finish_login`] trades the code for tokens at the token
//! endpoint and checks the ID token as access tokens are checked (issuer, key, signature,
//! lifetime), with the client id as its audience and the nonce it was sent with; the identity,
//! groups and task come from its claims as the issuer's `[[identity.oidc]]` entry says.

use base64::Engine;
use rand::Rng;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{check_audience, clip, fetch, identity_from_claims, OidcRefusal, OidcVerifier};
use crate::AuthenticatedIdentity;

/// The console's client at the provider (`[console.oidc]`). Its Debug form leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleLogin {
    /// One of the verifier's issuers.
    pub issuer: String,
    pub client_id: String,
    /// None for a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back: witness's `/api/login/oidc/callback`.
    pub redirect_url: String,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ConsoleLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "(set)"))
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A login begun: send the browser to `url`; keep `state`, `verifier` and `nonce` for its return.
#[derive(Clone)]
pub struct LoginStart {
    pub url: String,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
}

/// Why a console login through the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the OpenID provider {issuer} cannot be reached or answered badly: {reason}")]
    Provider { issuer: String, reason: String },
    #[error("the OpenID provider refused the login: {0}")]
    Refused(String),
    #[error("the ID token from the provider was refused: {0}")]
    IdToken(#[from] OidcRefusal),
    #[error("[console.oidc] issuer {0} is not one of the [[identity.oidc]] issuers")]
    UnknownIssuer(String),
}

impl OidcVerifier {
    /// The provider's authorization URL for a new login, with what to keep until it returns.
    pub async fn begin_login(&self, login: &ConsoleLogin) -> Result<LoginStart, LoginError> {
        let provider = |reason: String| LoginError::Provider { issuer: login.issuer.clone(), reason };
        let client = self.inner.http.get_or_init(fetch::client).as_ref().map_err(|e| provider(e.clone()))?;
        let endpoint = fetch::discover_endpoint(client, &login.issuer, "authorization_endpoint").await.map_err(provider)?;
        let (state, verifier, nonce) = (random_text(), random_text(), random_text());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = Url::parse(&endpoint).map_err(|e| provider(format!("{endpoint:?}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &login.client_id)
            .append_pair("redirect_uri", &login.redirect_url)
            .append_pair("scope", &login.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(LoginStart { url: url.into(), state, verifier, nonce })
    }

    /// Trades the provider's `code` for tokens and checks the ID token; returns who logged in.
    pub async fn finish_login(
        &self,
        login: &ConsoleLogin,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<AuthenticatedIdentity, LoginError> {
        let provider = |reason: String| LoginError::Provider { issuer: login.issuer.clone(), reason };
        let issuer = self
            .inner
            .issuers
            .iter()
            .find(|i| i.config.issuer == login.issuer)
            .ok_or_else(|| LoginError::UnknownIssuer(login.issuer.clone()))?;
        let client = self.inner.http.get_or_init(fetch::client).as_ref().map_err(|e| provider(e.clone()))?;
        let endpoint = fetch::discover_endpoint(client, &login.issuer, "token_endpoint").await.map_err(provider)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", login.redirect_url.as_str()),
            ("client_id", login.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(secret) = &login.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let (status, answer) = fetch::post_form(client, &endpoint, &form).await.map_err(provider)?;
        if !(200..300).contains(&status) {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("an error");
            let description = answer.get("error_description").and_then(Value::as_str).unwrap_or("");
            return Err(LoginError::Refused(format!("HTTP {status}, {} {}", clip(error), clip(description))));
        }
        let id_token = answer.get("id_token").and_then(Value::as_str).ok_or_else(|| provider("the token answer has no id_token".into()))?;
        let (signer, claims) = self.signed_claims(id_token).await?;
        if signer.config.issuer != login.issuer {
            return Err(OidcRefusal::WrongIssuer { found: clip(&signer.config.issuer) }.into());
        }
        check_audience(&login.client_id, &claims)?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(LoginError::Refused("the ID token's nonce is not the one this login sent (a replayed or mixed-up login)".into()));
        }
        Ok(identity_from_claims(&issuer.config, &claims, id_token)?)
    }
}

/// 32 random bytes as base64url: a state, nonce or PKCE verifier (43 characters, within the
/// 43 to 128 that RFC 7636 allows).
fn random_text() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
