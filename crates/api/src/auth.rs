//! Who calls, and what they may do: bearer tokens, browser logins (an HttpOnly, SameSite=Strict
//! cookie plus a CSRF token for every POST), and roles.
//!
//! A browser login keeps the token it was made with in memory and checks it again on every
//! request, so a revoked or expired token ends its console logins too. A login through the
//! OpenID provider (authorization code with PKCE, `[console.oidc]`) keeps the identity its ID
//! token named for the login's lifetime (12 h). The cookie's value is random; only its
//! SHA-256 is kept, so the map cannot be used to find a cookie by timing. The provider's `state`,
//! with the PKCE verifier and the nonce, is kept in a short-lived HttpOnly cookie of the browser
//! that began the login, so a login begun in one browser cannot be finished in another and
//! witness holds nothing per login begun.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::extract::Query;
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use witness_core::{kind, Principal};

use crate::{Api, ApiError, AuditRecord, Backend, Me, OidcRedirect, Role, State};

const COOKIE_NAME: &str = "witness_session";
const STATE_COOKIE: &str = "witness_oidc_state";
/// A login at the provider must come back within this long.
const OIDC_LOGIN_TIMEOUT: Duration = Duration::from_secs(600);
const CSRF_HEADER: &str = "x-csrf-token";
/// A browser login lasts this long at most (its token may end it sooner).
const LOGIN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many browser logins at once; expired ones are dropped first.
const MAX_LOGINS: usize = 10_000;

/// Browser logins of this process.
#[derive(Default)]
pub(crate) struct Logins {
    by_cookie_hash: Mutex<HashMap<[u8; 32], Login>>,
}

struct Login {
    credential: Credential,
    csrf: String,
    expires: Instant,
}

/// What a browser login stands on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Credential {
    /// A witness token (or JWT), checked again on every request.
    Token(String),
    /// The identity an OpenID login proved.
    Identity(Principal),
}

/// The authenticated caller of a request, with their roles.
pub(crate) struct Caller {
    pub principal: Principal,
    pub roles: Vec<Role>,
    /// Set for a browser login: its CSRF token.
    pub csrf: Option<String>,
}

impl Caller {
    /// Refuses the request unless the caller has one of `roles` (admin has every role).
    pub fn require(&self, roles: &[Role], doing: &str) -> Result<(), ApiError> {
        if self.roles.contains(&Role::Admin) || roles.iter().any(|r| self.roles.contains(r)) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| role_name(*r)).collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not {doing}: that needs the role {} or admin", self.principal.identity, names.join(" or ")),
        ))
    }

    pub fn me(&self) -> Me {
        Me {
            identity: self.principal.identity.clone(),
            groups: self.principal.groups.clone(),
            roles: self.roles.clone(),
            csrf: self.csrf.clone(),
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Auditor => "auditor",
        Role::Approver => "approver",
    }
}

fn no_role(identity: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{identity} has no role in witness (admin, auditor or approver); an admin adds one of its groups to [roles] in the config"),
    )
}

impl<B: Backend> FromRequestParts<Arc<Api<B>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api<B>>) -> Result<Caller, ApiError> {
        let (principal, csrf) = authenticated(parts, api).await?;
        caller(api, principal, csrf)
    }
}

/// An authenticated caller who may have no role: an agent asking about its own requests.
pub(crate) struct Requester(pub Caller);

impl<B: Backend> FromRequestParts<Arc<Api<B>>> for Requester {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api<B>>) -> Result<Requester, ApiError> {
        let (principal, csrf) = authenticated(parts, api).await?;
        let roles = api.backend.roles(&principal);
        Ok(Requester(Caller { principal, roles, csrf }))
    }
}

/// Who sent the request (a bearer token, or a browser login whose CSRF token a change must
/// carry), and that login's CSRF token.
async fn authenticated<B: Backend>(parts: &Parts, api: &Arc<Api<B>>) -> Result<(Principal, Option<String>), ApiError> {
    let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
    let (token, csrf) = if let Some(header) = parts.headers.get(AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
        (token.to_string(), None)
    } else if let Some(cookie) = cookie_value(&parts.headers, COOKIE_NAME) {
        let (credential, csrf) = api.logins.find(&cookie).ok_or_else(|| unauthorized("the login has ended; log in again"))?;
        let changes = parts.method != Method::GET && parts.method != Method::HEAD;
        if changes && !csrf_sent(&parts.headers, &csrf) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a browser request that changes something must carry the X-CSRF-Token its login answered",
            ));
        }
        match credential {
            Credential::Token(token) => (token, Some(csrf)),
            Credential::Identity(principal) => return Ok((principal, Some(csrf))),
        }
    } else {
        return Err(unauthorized("authenticate with the header `Authorization: Bearer TOKEN` (a witness token), or log in at /"));
    };
    let principal = api.backend.authenticate(&token).await.ok_or_else(|| unauthorized("the token is unknown, expired or revoked"))?;
    Ok((principal, csrf))
}

/// The caller with their roles, refused when they have none.
fn caller<B: Backend>(api: &Api<B>, principal: Principal, csrf: Option<String>) -> Result<Caller, ApiError> {
    let roles = api.backend.roles(&principal);
    if roles.is_empty() {
        return Err(no_role(&principal.identity));
    }
    Ok(Caller { principal, roles, csrf })
}

#[derive(Deserialize)]
pub(crate) struct LoginRequest {
    token: String,
}

/// `POST /api/login`: a token in, a cookie out, for identities with a role.
pub(crate) async fn login<B: Backend>(
    axum::extract::State(api): State<B>,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let token = request.token.trim().to_string();
    let principal = api
        .backend
        .authenticate(&token)
        .await
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the token is unknown, expired or revoked"))?;
    let roles = api.backend.roles(&principal);
    if roles.is_empty() {
        return Err(no_role(&principal.identity));
    }
    api.backend.audit(&principal, AuditRecord { kind: kind::CONSOLE_LOGIN, session: None, what: "token".into(), reason: None }).await?;
    let (set_cookie, csrf) = start_login(&api, Credential::Token(token))?;
    let me = Me { identity: principal.identity.clone(), groups: principal.groups.clone(), roles, csrf: Some(csrf) };
    tracing::info!(identity = %principal.identity, "console login");
    Ok(([(SET_COOKIE, set_cookie)], Json(me)).into_response())
}

/// Starts a browser login; returns its Set-Cookie value and CSRF token.
fn start_login<B: Backend>(api: &Api<B>, credential: Credential) -> Result<(String, String), ApiError> {
    let (cookie, csrf) = api
        .logins
        .start(credential)
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many console logins; try again later"))?;
    let secure = if api.settings.secure_cookies { "; Secure" } else { "" };
    Ok((format!("{COOKIE_NAME}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", LOGIN_LIFETIME.as_secs()), csrf))
}

/// `GET /api/login/oidc`: sends the browser to the OpenID provider.
pub(crate) async fn oidc_begin<B: Backend>(axum::extract::State(api): State<B>) -> Response {
    if !api.backend.oidc_login_enabled() {
        return back_to_login("single sign-on is not set up: [console.oidc] is not in the config");
    }
    match api.backend.oidc_login_begin().await {
        Ok(redirect) => {
            // Lax: the provider sends the browser back by a top-level GET from its own site. The
            // three values are base64url, so they join with dots.
            let kept = format!("{}.{}.{}", redirect.state, redirect.verifier, redirect.nonce);
            let secure = if api.settings.secure_cookies { "; Secure" } else { "" };
            let state_cookie = format!(
                "{STATE_COOKIE}={kept}; HttpOnly; SameSite=Lax; Path=/api/login/oidc; Max-Age={}{secure}",
                OIDC_LOGIN_TIMEOUT.as_secs()
            );
            ([(SET_COOKIE, state_cookie), (LOCATION, redirect.url)], StatusCode::FOUND).into_response()
        }
        Err(e) => back_to_login(&e.to_string()),
    }
}

#[derive(Deserialize)]
pub(crate) struct OidcCallback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /api/login/oidc/callback`: the provider sent the browser back; log it in.
pub(crate) async fn oidc_callback<B: Backend>(
    axum::extract::State(api): State<B>,
    headers: HeaderMap,
    Query(callback): Query<OidcCallback>,
) -> Response {
    match finish_oidc(&api, &headers, callback).await {
        Ok((set_cookie, identity)) => {
            tracing::info!(%identity, "console login through the OpenID provider");
            let clear_state = format!("{STATE_COOKIE}=; HttpOnly; SameSite=Lax; Path=/api/login/oidc; Max-Age=0");
            // The provider's own error text is not echoed: only witness's reasons reach the page.
            let mut response = (StatusCode::FOUND, [(LOCATION, "/#/sessions")]).into_response();
            response.headers_mut().append(SET_COOKIE, set_cookie.parse().expect("cookie text is ASCII"));
            response.headers_mut().append(SET_COOKIE, clear_state.parse().expect("cookie text is ASCII"));
            response
        }
        Err(message) => back_to_login(&message),
    }
}

async fn finish_oidc<B: Backend>(api: &Api<B>, headers: &HeaderMap, callback: OidcCallback) -> Result<(String, String), String> {
    if let Some(error) = callback.error {
        // The code only (`access_denied`, …): free text from the query is not shown on witness's page.
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        tracing::info!(error = %code, description = callback.error_description.as_deref().unwrap_or(""), "the OpenID provider refused a console login");
        return Err(format!("the OpenID provider refused the login ({code}); see the witness log"));
    }
    let (Some(code), Some(state)) = (callback.code, callback.state) else {
        return Err("the OpenID provider sent no code and state back".into());
    };
    let kept = cookie_value(headers, STATE_COOKIE).unwrap_or_default();
    let mut parts = kept.split('.');
    let (expected, verifier, nonce) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if expected.is_empty() || verifier.is_empty() || nonce.is_empty() || !bool::from(expected.as_bytes().ct_eq(state.as_bytes())) {
        return Err("this login was not begun in this browser, or took longer than 10 minutes; log in again".into());
    }
    let begun = OidcRedirect { url: String::new(), state, verifier: verifier.to_string(), nonce: nonce.to_string() };
    let principal = api.backend.oidc_login_finish(&begun, &code).await.map_err(|e| e.to_string())?;
    if api.backend.roles(&principal).is_empty() {
        return Err(no_role(&principal.identity).message);
    }
    let record = AuditRecord { kind: kind::CONSOLE_LOGIN, session: None, what: "oidc".into(), reason: None };
    api.backend.audit(&principal, record).await.map_err(|e| e.to_string())?;
    let identity = principal.identity.clone();
    let (set_cookie, _) = start_login(api, Credential::Identity(principal)).map_err(|e| e.message)?;
    Ok((set_cookie, identity))
}

/// Back to the console's login page, which shows `message`.
fn back_to_login(message: &str) -> Response {
    (StatusCode::FOUND, [(LOCATION, format!("/#/login?error={}", percent_encode(message)))]).into_response()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /api/logout`: ends the browser login, whatever roles its identity has now (bearer
/// callers have nothing to end). Like every cookie POST it must carry the login's CSRF token.
pub(crate) async fn logout<B: Backend>(axum::extract::State(api): State<B>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(cookie) = cookie_value(&headers, COOKIE_NAME) {
        if let Some((_, csrf)) = api.logins.find(&cookie) {
            if !csrf_sent(&headers, &csrf) {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "logging out must carry the X-CSRF-Token the login answered"));
            }
            api.logins.end(&cookie);
        }
    }
    let clear = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok(([(SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

/// `GET /api/me`.
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    Json(caller.me())
}

/// `GET /api/login/options`: how the console may log in.
pub(crate) async fn options<B: Backend>(axum::extract::State(api): State<B>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "token": true, "oidc": api.backend.oidc_login_enabled() }))
}

impl Logins {
    /// Starts a login on `credential`; returns the cookie value and the CSRF token.
    fn start(&self, credential: Credential) -> Option<(String, String)> {
        let now = Instant::now();
        let mut logins = self.lock();
        if logins.len() >= MAX_LOGINS {
            logins.retain(|_, login| login.expires > now);
            if logins.len() >= MAX_LOGINS {
                return None;
            }
        }
        let cookie = random_text();
        let csrf = random_text();
        logins.insert(hash(&cookie), Login { credential, csrf: csrf.clone(), expires: now + LOGIN_LIFETIME });
        Some((cookie, csrf))
    }

    /// The credential and CSRF token of a live login.
    fn find(&self, cookie: &str) -> Option<(Credential, String)> {
        let mut logins = self.lock();
        let key = hash(cookie);
        match logins.get(&key) {
            Some(login) if login.expires > Instant::now() => Some((login.credential.clone(), login.csrf.clone())),
            Some(_) => {
                logins.remove(&key);
                None
            }
            None => None,
        }
    }

    fn end(&self, cookie: &str) {
        self.lock().remove(&hash(cookie));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Login>> {
        self.by_cookie_hash.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// Whether the request carries the login's CSRF token (compared in constant time).
fn csrf_sent(headers: &HeaderMap, csrf: &str) -> bool {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    bool::from(sent.as_bytes().ct_eq(csrf.as_bytes()))
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_found_by_its_cookie_only_until_it_ends() {
        let logins = Logins::default();
        let (cookie, csrf) = logins.start(Credential::Token("wit_secret".into())).unwrap();
        assert_ne!(cookie, csrf);
        assert_eq!(logins.find(&cookie), Some((Credential::Token("wit_secret".into()), csrf)));
        assert_eq!(logins.find(&format!("{cookie}x")), None);
        assert!(logins.lock().contains_key(&hash(&cookie)), "the login is kept under the cookie's hash");
        assert_eq!(logins.lock().len(), 1);
        logins.end(&cookie);
        assert_eq!(logins.find(&cookie), None);
    }

    #[test]
    fn the_login_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "theme=dark; witness_session=abc123; other=1".parse().unwrap());
        assert_eq!(cookie_value(&headers, COOKIE_NAME).as_deref(), Some("abc123"));
        assert_eq!(cookie_value(&headers, "theme").as_deref(), Some("dark"));
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "witness_session=; x=y".parse().unwrap());
        assert_eq!(cookie_value(&headers, COOKIE_NAME), None, "an emptied cookie is no login");
        headers.append(COOKIE, "not_witness_session=zzz".parse().unwrap());
        assert_eq!(cookie_value(&headers, COOKIE_NAME), None);
    }
}
