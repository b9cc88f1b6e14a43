//! The witness HTTP API and the review console it serves.
//!
//! Callers authenticate with `Authorization: Bearer TOKEN` (a witness token or a JWT from a
//! configured issuer) or, in the browser, with the cookie `POST /api/login` sets (then every POST
//! carries the `X-CSRF-Token` the login answered). What a caller may do follows from their roles
//! (`[roles]` in the config); an identity with no role gets 403 everywhere. Errors are JSON
//! (`{"error": "..."}`) with 400, 401, 403, 404 or 503. Every read of a recording is first
//! appended to the audit trail; if that fails, the read is refused.
//!
//! The API knows nothing of how tokens are checked, where sessions are stored or where approvals
//! wait: it asks its [`Backend`]. It is the only crate that shapes JSON (and the Prometheus text
//! of `/metrics`) for clients, so the DTOs live here.
//!
//! The console is embedded only with the `console` feature (on by default), whose build needs
//! Node.js and npm; without it `/` answers 404 and the API is the same.

#![forbid(unsafe_code)]

mod access;
mod approvals;
mod auth;
mod console;
mod dto;
mod live;
mod metrics;
mod openapi;
mod reads;
mod tokens;

#[cfg(feature = "console")]
pub use console::NODE_PROJECT as CONSOLE_NODE_PROJECT;

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use witness_core::Principal;

pub use dto::*;

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecideError {
    #[error("no waiting approval {id}: it was decided, timed out, or its client left; list waiting ones with `witness approvals list`")]
    NotFound { id: String },
    #[error("no pending request to read a recording {id}: it was decided, or witness restarted since; list them at /api/access")]
    NoAccessRequest { id: String },
    #[error("{identity} asked for this approval and cannot decide it; another approver must")]
    OwnRequest { identity: String },
    #[error("{identity} is not an approver for this request: members of {} may decide it", needed.join(", "))]
    NotAnApprover { identity: String, needed: Vec<String> },
}

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The ledger could not take the audit record (or is stopping): nothing is shown.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// What the API needs from the rest of witness. Methods that read the ledger block; the API
/// calls them on blocking threads.
pub trait Backend: Send + Sync + 'static {
    /// The caller a bearer token stands for, or None.
    fn authenticate(&self, token: &str) -> impl Future<Output = Option<Principal>> + Send;
    /// The caller's roles, from their groups; empty for agents.
    fn roles(&self, caller: &Principal) -> Vec<Role>;
    /// Approvals the caller may see: those they may decide, and their own.
    fn approvals(&self, caller: &Principal) -> Vec<Approval>;
    /// Decides a waiting request; `reason` is what the approver says (the requester is told).
    fn decide(&self, caller: &Principal, id: &str, approve: bool, reason: Option<String>) -> Result<Approval, DecideError>;
    fn sessions(&self, query: &SessionQuery) -> Result<SessionPage, BackendError>;
    fn session(&self, id: &str) -> Result<SessionView, BackendError>;
    fn events(&self, id: &str, query: &EventQuery) -> Result<EventPage, BackendError>;
    /// The session's terminal as asciicast v2.
    fn asciicast(&self, id: &str) -> Result<String, BackendError>;
    /// Appends `record` to the audit trail, done by `actor`; returns once it is durable.
    fn audit(&self, actor: &Principal, record: AuditRecord) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, BackendError>;
    fn tokens(&self) -> Result<TokenList, BackendError>;
    fn create_token(&self, request: &NewTokenRequest) -> Result<CreatedToken, BackendError>;
    fn revoke_token(&self, id: &str) -> Result<TokenView, BackendError>;
    /// Whether `reader` may read session `session`'s recording now (`[[review.rules]]`).
    fn read_access(&self, reader: &Principal, session: &SessionView) -> ReadAccess;
    /// Asks to read a session a `[[review.rules]]` rule covers; returns the pending request (the
    /// reader's existing one when there is one). BadRequest when no rule covers it.
    fn request_access(&self, reader: &Principal, session: &SessionView, reason: String) -> Result<AccessRequest, BackendError>;
    /// Requests to read recordings the caller made or may decide.
    fn access_requests(&self, caller: &Principal) -> Vec<AccessRequest>;
    /// Decides a pending request to read a recording: the grant (for the rule's window) or the
    /// denial takes effect only at [`Backend::settle_access`], once its record is durable.
    fn decide_access(&self, caller: &Principal, id: &str, grant: bool, reason: Option<String>) -> Result<AccessRequest, DecideError>;
    /// Makes a decision take effect (`recorded`), or puts the request back to pending when the
    /// audit trail could not take its record: nothing is read under an unrecorded grant.
    fn settle_access(&self, id: &str, recorded: bool);
    /// Ends the live session `id`, saying who ended it and why; NotFound when it is not live.
    fn end_session(&self, id: &str, by: &Principal, reason: &str) -> Result<(), BackendError>;
    fn verify(&self) -> Result<VerifyStatus, BackendError>;
    fn metrics(&self) -> Metrics;
    /// What keeps witness from serving requests now, if anything.
    fn readiness(&self) -> Readiness;
    /// Whether the console may log in through an OpenID provider (`[console.oidc]`).
    fn oidc_login_enabled(&self) -> bool;
    /// Begins such a login: where to send the browser, and what to keep until it comes back.
    fn oidc_login_begin(&self) -> impl Future<Output = Result<OidcRedirect, BackendError>> + Send;
    /// Ends it: the provider sent the browser back with `code` for the login begun as `begun`.
    fn oidc_login_finish(&self, begun: &OidcRedirect, code: &str) -> impl Future<Output = Result<Principal, BackendError>> + Send;
}

/// How the API is served.
#[derive(Clone, Debug, Default)]
pub struct ApiSettings {
    /// Mark the login cookie `Secure` (when witness is behind HTTPS).
    pub secure_cookies: bool,
    /// Reading a recording takes a reason (`X-Witness-Reason`), kept in the audit trail.
    pub require_reason: bool,
}

/// The state every handler gets.
pub(crate) struct Api<B> {
    pub backend: Arc<B>,
    pub logins: auth::Logins,
    pub settings: ApiSettings,
    pub viewed: reads::RecentViews,
}

pub(crate) type State<B> = axum::extract::State<Arc<Api<B>>>;

/// Builds the API's and the console's routes over `backend`.
pub fn router<B: Backend>(backend: Arc<B>, settings: ApiSettings) -> Router {
    let api = Arc::new(Api { backend, logins: auth::Logins::default(), settings, viewed: reads::RecentViews::default() });
    Router::new()
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/login", post(auth::login::<B>))
        .route("/api/login/options", get(auth::options::<B>))
        .route("/api/login/oidc", get(auth::oidc_begin::<B>))
        .route("/api/login/oidc/callback", get(auth::oidc_callback::<B>))
        .route("/api/logout", post(auth::logout::<B>))
        .route("/api/me", get(auth::me))
        .route("/api/sessions", get(reads::sessions::<B>))
        .route("/api/sessions/{id}", get(reads::session::<B>))
        .route("/api/sessions/{id}/events", get(reads::events::<B>))
        .route("/api/sessions/{id}/asciicast", get(reads::asciicast::<B>))
        .route("/api/sessions/{id}/end", post(live::end::<B>))
        .route("/api/sessions/{id}/access", post(access::ask::<B>))
        .route("/api/access", get(access::list::<B>))
        .route("/api/access/{id}/approve", post(access::approve::<B>))
        .route("/api/access/{id}/deny", post(access::deny::<B>))
        .route("/api/audit", get(reads::audit::<B>))
        .route("/api/verify", get(reads::verify::<B>))
        .route("/api/approvals", get(approvals::list::<B>))
        .route("/api/approvals/{id}/approve", post(approvals::approve::<B>))
        .route("/api/approvals/{id}/deny", post(approvals::deny::<B>))
        .route("/api/tokens", get(tokens::list::<B>).post(tokens::create::<B>))
        .route("/api/tokens/{id}/revoke", post(tokens::revoke::<B>))
        .route("/metrics", get(metrics::metrics::<B>))
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz::<B>))
        .route("/", get(console::index))
        .route("/assets/{file}", get(console::asset))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint; the endpoints are listed at /api/openapi.json") })
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    settings: ApiSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(backend, settings)).with_graceful_shutdown(shutdown).await
}

/// An error answer: a status and `{"error": message}`, with more fields where the caller can act
/// on them (`access` for a recording that needs a reviewer's approval).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), extra: None }
    }

    pub(crate) fn with(mut self, field: &'static str, value: serde_json::Value) -> ApiError {
        self.extra = Some((field, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some((field, value)) = self.extra {
            body[field] = value;
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> ApiError {
        match e {
            BackendError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            BackendError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            BackendError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            BackendError::Internal(m) => {
                tracing::error!(error = %m, "API request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "witness could not answer; its log says why")
            }
        }
    }
}

/// Runs a blocking backend call on a blocking thread.
pub(crate) async fn blocking<B: Backend, T: Send + 'static>(
    backend: &Arc<B>,
    call: impl FnOnce(&B) -> Result<T, BackendError> + Send + 'static,
) -> Result<T, ApiError> {
    let backend = backend.clone();
    match tokio::task::spawn_blocking(move || call(&backend)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::from(BackendError::Internal(format!("a backend call failed: {e}")))),
    }
}
