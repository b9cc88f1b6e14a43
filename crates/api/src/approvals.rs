//! `/api/approvals`: requests held for a person's decision; list, approve, deny. Anyone logged in
//! may list: approvers and admins see what they may decide, a requester (an agent) sees its own
//! requests waiting. Only approvers and admins decide, optionally saying why (the requester's
//! client is told); each decision made here is also in the audit trail.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use witness_core::kind;

use crate::auth::{Caller, Requester};
use crate::{ApiError, Approval, AuditRecord, Backend, DecideError, DecideRequest, Role, State};

/// A reason is a sentence for the requester, not a document.
const MAX_REASON_CHARS: usize = 500;

pub(crate) async fn list<B: Backend>(
    axum::extract::State(api): State<B>,
    Requester(caller): Requester,
) -> Result<Json<Vec<Approval>>, ApiError> {
    Ok(Json(api.backend.approvals(&caller.principal)))
}

pub(crate) async fn approve<B: Backend>(
    state: State<B>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<DecideRequest>>,
) -> Result<Json<Approval>, ApiError> {
    decide(state, caller, &id, true, body.map(|Json(body)| body).unwrap_or_default()).await
}

pub(crate) async fn deny<B: Backend>(
    state: State<B>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<DecideRequest>>,
) -> Result<Json<Approval>, ApiError> {
    decide(state, caller, &id, false, body.map(|Json(body)| body).unwrap_or_default()).await
}

async fn decide<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    id: &str,
    approve: bool,
    request: DecideRequest,
) -> Result<Json<Approval>, ApiError> {
    caller.require(&[Role::Approver], "decide approvals")?;
    let reason = request.reason.map(|reason| reason.trim().to_string()).filter(|reason| !reason.is_empty());
    if reason.as_ref().is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("the reason is longer than {MAX_REASON_CHARS} characters")));
    }
    match api.backend.decide(&caller.principal, id, approve, reason.clone()) {
        Ok(approval) => {
            tracing::info!(approval = id, by = %caller.principal.identity, approve, "approval decided");
            let said = reason.map(|reason| format!(": {reason}")).unwrap_or_default();
            let what = format!("{} {id}{said}", if approve { "approved" } else { "denied" });
            // The decision is made and recorded in the requester's session; failing to add it to
            // the audit trail as well must not hide that it was made.
            if let Err(e) = api
                .backend
                .audit(
                    &caller.principal,
                    AuditRecord { kind: kind::APPROVAL_DECIDED, session: Some(approval.session.clone()), what, reason: None },
                )
                .await
            {
                tracing::error!(error = %e, approval = id, "the decision is not in the audit trail");
            }
            Ok(Json(approval))
        }
        Err(e) => Err(refusal(e)),
    }
}

/// The answer to a decision witness would not take: 404 for nothing to decide, 403 for a caller
/// who may not decide it.
pub(crate) fn refusal(e: DecideError) -> ApiError {
    let status = match e {
        DecideError::NotFound { .. } | DecideError::NoAccessRequest { .. } => StatusCode::NOT_FOUND,
        DecideError::OwnRequest { .. } | DecideError::NotAnApprover { .. } => StatusCode::FORBIDDEN,
    };
    ApiError::new(status, e.to_string())
}
