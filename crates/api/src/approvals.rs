//! `/api/approvals`: requests held for a person's decision; list, approve, deny.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::{ApiError, Approval, Backend, Caller, DecideError};

pub(crate) async fn list<B: Backend>(State(backend): State<Arc<B>>, Caller(caller): Caller) -> Json<Vec<Approval>> {
    Json(backend.approvals(&caller))
}

pub(crate) async fn approve<B: Backend>(
    State(backend): State<Arc<B>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    decide(&*backend, &caller, &id, true)
}

pub(crate) async fn deny<B: Backend>(
    State(backend): State<Arc<B>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    decide(&*backend, &caller, &id, false)
}

fn decide<B: Backend>(backend: &B, caller: &witness_core::Principal, id: &str, approve: bool) -> Result<Json<Approval>, ApiError> {
    match backend.decide(caller, id, approve) {
        Ok(approval) => {
            tracing::info!(approval = id, by = %caller.identity, approve, "approval decided");
            Ok(Json(approval))
        }
        Err(e) => {
            let status = match e {
                DecideError::NotFound { .. } => StatusCode::NOT_FOUND,
                DecideError::OwnRequest { .. } | DecideError::NotAnApprover { .. } => StatusCode::FORBIDDEN,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}
