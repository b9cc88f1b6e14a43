//! Reading recordings: sessions, their events and terminals, the audit trail and the ledger's
//! verification. Auditors and admins only. A read of a recording (its events from the start, its
//! terminal) is appended to the audit trail before anything of it is answered; if the ledger
//! cannot take that record, nothing is shown.

use axum::extract::{Path, Query};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Caller;
use crate::{
    blocking, ApiError, AuditPage, AuditQuery, AuditRecord, Backend, EventPage, EventQuery, Role, SessionPage, SessionQuery, SessionView,
    State, VerifyStatus,
};

pub(crate) async fn sessions<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Query(query): Query<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    caller.require(&[Role::Auditor], "list recorded sessions")?;
    Ok(Json(blocking(&api.backend, move |b| b.sessions(&query)).await?))
}

pub(crate) async fn session<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    caller.require(&[Role::Auditor], "read recorded sessions")?;
    Ok(Json(blocking(&api.backend, move |b| b.session(&id)).await?))
}

pub(crate) async fn events<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    caller.require(&[Role::Auditor], "read recordings")?;
    let session = blocking(&api.backend, {
        let id = id.clone();
        move |b| b.session(&id)
    })
    .await?;
    // A read from the start is a view; the pages after it (and a live session's new events)
    // continue that view, so they are not recorded again.
    if query.after.is_none() {
        api.backend
            .audit(&caller.principal, AuditRecord { kind: "recording.viewed", session: Some(session.id), what: "events".into() })
            .await?;
    }
    Ok(Json(blocking(&api.backend, move |b| b.events(&id, &query)).await?))
}

pub(crate) async fn asciicast<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "replay recordings")?;
    let session = blocking(&api.backend, {
        let id = id.clone();
        move |b| b.session(&id)
    })
    .await?;
    if !session.terminal {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, format!("session {} has no terminal to replay", session.id)));
    }
    api.backend
        .audit(&caller.principal, AuditRecord { kind: "recording.viewed", session: Some(session.id), what: "asciicast".into() })
        .await?;
    let cast = blocking(&api.backend, move |b| b.asciicast(&id)).await?;
    Ok(([(CONTENT_TYPE, "application/x-asciicast")], cast).into_response())
}

pub(crate) async fn audit<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Role::Auditor], "read the audit trail")?;
    Ok(Json(blocking(&api.backend, move |b| b.audit_trail(&query)).await?))
}

pub(crate) async fn verify<B: Backend>(axum::extract::State(api): State<B>, caller: Caller) -> Result<Json<VerifyStatus>, ApiError> {
    caller.require(&[Role::Auditor, Role::Approver], "see the ledger's verification")?;
    Ok(Json(blocking(&api.backend, |b| b.verify()).await?))
}
