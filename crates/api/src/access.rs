//! Reading recordings just in time: where a `[[review.rules]]` rule covers a session, its events
//! and terminal open to a reader only with a grant from another reviewer (a member of the rule's
//! approver groups), for the rule's window, as held statements wait for an approver. The reader
//! asks with a reason (`POST /api/sessions/{id}/access`); approvers list (`GET /api/access`) and
//! decide (`POST /api/access/{id}/approve|deny`). Asking and deciding are in the audit trail;
//! a read under a grant names the grant in its `recording.viewed` record.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use witness_core::kind;

use crate::auth::Caller;
use crate::reads::{reason, MAX_REASON_CHARS};
use crate::{blocking, AccessAsk, AccessRequest, ApiError, AuditRecord, Backend, DecideRequest, ReadAccess, Role, SessionView, State};

pub(crate) async fn ask<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<AccessAsk>>,
) -> Result<Json<AccessRequest>, ApiError> {
    caller.require(&[Role::Auditor], "ask to read recordings")?;
    let given = body.and_then(|Json(body)| body.reason).and_then(|r| witness_core::one_line_reason(&r, MAX_REASON_CHARS));
    let reason = match given {
        Some(reason) => reason,
        None => reason(&api, &headers)?.ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "say why you need to read this recording (a ticket): {\"reason\": \"…\"}")
        })?,
    };
    let session = blocking(&api.backend, move |b| b.session(&id)).await?;
    let request = api.backend.request_access(&caller.principal, &session, reason.clone())?;
    let what = format!("{} (rule {}): {reason}", request.id, request.rule);
    let record = AuditRecord { kind: kind::RECORDING_ACCESS_REQUESTED, session: Some(session.id), what, reason: Some(reason) };
    api.backend.audit(&caller.principal, record).await?;
    Ok(Json(request))
}

pub(crate) async fn list<B: Backend>(axum::extract::State(api): State<B>, caller: Caller) -> Json<Vec<AccessRequest>> {
    Json(api.backend.access_requests(&caller.principal))
}

pub(crate) async fn approve<B: Backend>(
    state: State<B>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<DecideRequest>>,
) -> Result<Json<AccessRequest>, ApiError> {
    decide(state, caller, &id, true, body.map(|Json(body)| body).unwrap_or_default()).await
}

pub(crate) async fn deny<B: Backend>(
    state: State<B>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<DecideRequest>>,
) -> Result<Json<AccessRequest>, ApiError> {
    decide(state, caller, &id, false, body.map(|Json(body)| body).unwrap_or_default()).await
}

async fn decide<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    id: &str,
    grant: bool,
    request: DecideRequest,
) -> Result<Json<AccessRequest>, ApiError> {
    let reason = request.reason.and_then(|r| witness_core::one_line_reason(&r, MAX_REASON_CHARS));
    match api.backend.decide_access(&caller.principal, id, grant, reason.clone()) {
        Ok(decided) => {
            let said = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            let what = format!("{} {id} of {} (rule {}){said}", if grant { "granted" } else { "denied" }, decided.reader, decided.rule);
            let record = AuditRecord { kind: kind::RECORDING_ACCESS_DECIDED, session: Some(decided.session.clone()), what, reason };
            // The decision takes effect once its record is durable; a grant the trail cannot take
            // never does, so nothing is read under an unrecorded grant.
            let recorded = api.backend.audit(&caller.principal, record).await;
            api.backend.settle_access(id, recorded.is_ok());
            recorded?;
            Ok(Json(decided))
        }
        Err(e) => Err(crate::approvals::refusal(e)),
    }
}

/// What a read of `session`'s contents needs: Ok with the grant it reads under (None where no
/// rule covers the session), or 403 with `access` saying which rule and what request stands.
pub(crate) fn check<B: Backend>(api: &crate::Api<B>, caller: &Caller, session: &SessionView) -> Result<Option<AccessRequest>, ApiError> {
    match api.backend.read_access(&caller.principal, session) {
        ReadAccess::Open => Ok(None),
        ReadAccess::Granted(grant) => Ok(Some(grant)),
        ReadAccess::Needed { rule, approvers, request } => {
            let state = match &request {
                Some(r) if r.status == "pending" => format!("your request {} waits for a member of {}", r.id, approvers.join(", ")),
                _ => format!(
                    "ask with POST /api/sessions/{}/access and a reason; a member of {} grants it",
                    session.id,
                    approvers.join(", ")
                ),
            };
            let message = format!("reading session {} needs another reviewer's approval (rule {rule}): {state}", session.id);
            let access = serde_json::json!({ "rule": rule, "approvers": approvers, "request": request });
            Err(ApiError::new(StatusCode::FORBIDDEN, message).with("access", access))
        }
    }
}
