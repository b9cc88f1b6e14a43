//! `POST /api/sessions/{id}/end`: an administrator ends a live session, saying why. The end is
//! in the audit trail (`session.terminated`) before the session is told; the session's own
//! `session.end` then names the administrator and the reason, and its client is told the same.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use witness_core::kind;

use crate::auth::Caller;
use crate::{blocking, ApiError, AuditRecord, Backend, EndSessionRequest, Role, SessionView, State};

/// A reason is a sentence for the record, not a document.
const MAX_REASON_CHARS: usize = 500;

pub(crate) async fn end<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<EndSessionRequest>,
) -> Result<Json<SessionView>, ApiError> {
    caller.require(&[Role::Admin], "end live sessions")?;
    let reason = request.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "say why the session ends: {\"reason\": \"...\"} (it is recorded and the client is told)",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("the reason is longer than {MAX_REASON_CHARS} characters")));
    }
    let session = blocking(&api.backend, move |b| b.session(&id)).await?;
    if !session.live {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("session {} is not live in this witness ({}); nothing to end", session.id, session.status),
        ));
    }
    let record = AuditRecord { kind: kind::SESSION_TERMINATED, session: Some(session.id.clone()), what: reason.clone(), reason: None };
    api.backend.audit(&caller.principal, record).await?;
    let (id, by) = (session.id.clone(), caller.principal.clone());
    blocking(&api.backend, move |b| b.end_session(&id, &by, &reason)).await?;
    Ok(Json(session))
}
