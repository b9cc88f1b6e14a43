//! `/api/approvals`: requests held for a person's decision; list, approve, deny. Approvers and
//! admins only; each decision made here is also in the audit trail.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use witness_core::kind;

use crate::auth::Caller;
use crate::{ApiError, Approval, AuditRecord, Backend, DecideError, Role, State};

pub(crate) async fn list<B: Backend>(axum::extract::State(api): State<B>, caller: Caller) -> Result<Json<Vec<Approval>>, ApiError> {
    caller.require(&[Role::Approver], "see approvals")?;
    Ok(Json(api.backend.approvals(&caller.principal)))
}

pub(crate) async fn approve<B: Backend>(state: State<B>, caller: Caller, Path(id): Path<String>) -> Result<Json<Approval>, ApiError> {
    decide(state, caller, &id, true).await
}

pub(crate) async fn deny<B: Backend>(state: State<B>, caller: Caller, Path(id): Path<String>) -> Result<Json<Approval>, ApiError> {
    decide(state, caller, &id, false).await
}

async fn decide<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    id: &str,
    approve: bool,
) -> Result<Json<Approval>, ApiError> {
    caller.require(&[Role::Approver], "decide approvals")?;
    match api.backend.decide(&caller.principal, id, approve) {
        Ok(approval) => {
            tracing::info!(approval = id, by = %caller.principal.identity, approve, "approval decided");
            let what = format!("{} {id}", if approve { "approved" } else { "denied" });
            // The decision is made and recorded in the requester's session; failing to add it to
            // the audit trail as well must not hide that it was made.
            if let Err(e) = api
                .backend
                .audit(&caller.principal, AuditRecord { kind: kind::APPROVAL_DECIDED, session: Some(approval.session.clone()), what })
                .await
            {
                tracing::error!(error = %e, approval = id, "the decision is not in the audit trail");
            }
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
