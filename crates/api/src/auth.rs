//! Who calls, and what they may do: bearer tokens, browser logins (an HttpOnly, SameSite=Strict
//! cookie plus a CSRF token for every POST), and roles.
//!
//! A browser login keeps the token it was made with in memory and checks it again on every
//! request, so a revoked or expired token ends its console logins too. The cookie's value is
//! random; only its SHA-256 is kept, so the map cannot be used to find a cookie by timing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use witness_core::Principal;

use crate::{Api, ApiError, AuditRecord, Backend, Me, Role, State};

const COOKIE_NAME: &str = "witness_session";
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
    token: String,
    csrf: String,
    expires: Instant,
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
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let (token, csrf) = if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
            (token.to_string(), None)
        } else if let Some(cookie) = cookie_value(&parts.headers) {
            let (token, csrf) = api.logins.find(&cookie).ok_or_else(|| unauthorized("the login has ended; log in again"))?;
            if parts.method != Method::GET && parts.method != Method::HEAD {
                let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                if !bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "a browser request that changes something must carry the X-CSRF-Token its login answered",
                    ));
                }
            }
            (token, Some(csrf))
        } else {
            return Err(unauthorized("authenticate with the header `Authorization: Bearer TOKEN` (a witness token), or log in at /"));
        };
        let principal = api.backend.authenticate(&token).await.ok_or_else(|| unauthorized("the token is unknown, expired or revoked"))?;
        let roles = api.backend.roles(&principal);
        if roles.is_empty() {
            return Err(no_role(&principal.identity));
        }
        Ok(Caller { principal, roles, csrf })
    }
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
    api.backend.audit(&principal, AuditRecord { kind: "console.login", session: None, what: "token".into() }).await?;
    let (cookie, csrf) = api
        .logins
        .start(token)
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many console logins; try again later"))?;
    let secure = if api.settings.secure_cookies { "; Secure" } else { "" };
    let set_cookie = format!("{COOKIE_NAME}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", LOGIN_LIFETIME.as_secs());
    let me = Me { identity: principal.identity.clone(), groups: principal.groups.clone(), roles, csrf: Some(csrf) };
    tracing::info!(identity = %principal.identity, "console login");
    Ok(([(SET_COOKIE, set_cookie)], Json(me)).into_response())
}

/// `POST /api/logout`: ends the browser login (bearer callers have nothing to end).
pub(crate) async fn logout<B: Backend>(axum::extract::State(api): State<B>, caller: Caller, headers: HeaderMap) -> Response {
    if caller.csrf.is_some() {
        if let Some(cookie) = cookie_value(&headers) {
            api.logins.end(&cookie);
        }
    }
    let clear = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response()
}

/// `GET /api/me`.
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    Json(caller.me())
}

/// `GET /api/login/options`: how the console may log in.
pub(crate) async fn options() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "token": true, "oidc": false }))
}

impl Logins {
    /// Starts a login for `token`; returns the cookie value and the CSRF token.
    fn start(&self, token: String) -> Option<(String, String)> {
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
        logins.insert(hash(&cookie), Login { token, csrf: csrf.clone(), expires: now + LOGIN_LIFETIME });
        Some((cookie, csrf))
    }

    /// The token and CSRF token of a live login.
    fn find(&self, cookie: &str) -> Option<(String, String)> {
        let mut logins = self.lock();
        let key = hash(cookie);
        match logins.get(&key) {
            Some(login) if login.expires > Instant::now() => Some((login.token.clone(), login.csrf.clone())),
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

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
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
        let (cookie, csrf) = logins.start("wit_secret".into()).unwrap();
        assert_ne!(cookie, csrf);
        assert_eq!(logins.find(&cookie), Some(("wit_secret".into(), csrf)));
        assert_eq!(logins.find(&format!("{cookie}x")), None);
        assert!(!logins.lock().keys().any(|k| k.as_slice() == cookie.as_bytes()), "only the cookie's hash is kept");
        logins.end(&cookie);
        assert_eq!(logins.find(&cookie), None);
    }

    #[test]
    fn the_login_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "theme=dark; witness_session=abc123; other=1".parse().unwrap());
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc123"));
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "witness_session=; x=y".parse().unwrap());
        assert_eq!(cookie_value(&headers), None, "an emptied cookie is no login");
        headers.append(COOKIE, "not_witness_session=zzz".parse().unwrap());
        assert_eq!(cookie_value(&headers), None);
    }
}
