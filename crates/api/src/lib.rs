//! The witness HTTP API. Callers authenticate with `Authorization: Bearer TOKEN` (a witness token
//! or a JWT from a configured issuer); errors are JSON (`{"error": "..."}`) with 401, 403 or 404.
//! Today it serves approvals: list what waits, approve, deny.
//!
//! The API knows nothing of how tokens are checked or where approvals wait: it asks its
//! [`Backend`]. It is the only crate that shapes JSON for clients, so the DTOs live here.

#![forbid(unsafe_code)]

mod approvals;

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use witness_core::Principal;

/// A request held for approval, as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub session: String,
    /// The identity whose request waits.
    pub requester: String,
    pub connection: String,
    pub task: Option<String>,
    /// The request's text (a statement), cut at 4 KiB.
    pub statement: String,
    /// The statement classes policy saw, e.g. ["delete", "delete-without-where"].
    pub classes: Vec<String>,
    pub rule: String,
    /// Groups whose members may decide.
    pub approvers: Vec<String>,
    /// Unix time in milliseconds.
    pub requested_at_ms: u64,
    pub expires_at_ms: u64,
    /// "waiting", or after a decision through this API "approved" / "denied".
    pub status: String,
    pub decided_by: Option<String>,
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecideError {
    #[error("no waiting approval {id}: it was decided, timed out, or its client left; list waiting ones with `witness approvals list`")]
    NotFound { id: String },
    #[error("{identity} asked for this approval and cannot decide it; another approver must")]
    OwnRequest { identity: String },
    #[error("{identity} is not an approver for this request: members of {} may decide it", needed.join(", "))]
    NotAnApprover { identity: String, needed: Vec<String> },
}

/// What the API needs from the rest of witness.
pub trait Backend: Send + Sync + 'static {
    /// The caller a bearer token stands for, or None.
    fn authenticate(&self, token: &str) -> impl Future<Output = Option<Principal>> + Send;
    /// Approvals the caller may see: those they may decide, and their own.
    fn approvals(&self, caller: &Principal) -> Vec<Approval>;
    fn decide(&self, caller: &Principal, id: &str, approve: bool) -> Result<Approval, DecideError>;
}

/// Builds the API's routes over `backend`.
pub fn router<B: Backend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/api/approvals", get(approvals::list::<B>))
        .route("/api/approvals/{id}/approve", post(approvals::approve::<B>))
        .route("/api/approvals/{id}/deny", post(approvals::deny::<B>))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint") })
        .with_state(backend)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(backend)).with_graceful_shutdown(shutdown).await
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl<B: Backend> FromRequestParts<Arc<B>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Arc<B>) -> Result<Caller, ApiError> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("authenticate with the header `Authorization: Bearer TOKEN` (a witness token)"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
        match backend.authenticate(token).await {
            Some(principal) => Ok(Caller(principal)),
            None => Err(unauthorized("the token is unknown, expired or revoked")),
        }
    }
}
