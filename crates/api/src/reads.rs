//! Reading recordings: sessions, their events and terminals, the audit trail and the ledger's
//! verification. Auditors and admins only. A read of a recording (a session's facts, its events,
//! its terminal) and a search of recorded statements and commands are appended to the audit trail
//! before anything of them is answered; if the ledger cannot take that record, nothing is shown.
//! So that paging through a session, a console following an open one and a console refreshing a
//! search do not flood the trail, a reader's later pages of a session (`after`), the same
//! session's facts again, and the same search again, are recorded once per half hour (for the
//! same reason).
//!
//! A reader may give a reason (a ticket) in `X-Witness-Reason` (percent-encoded UTF-8, at most
//! [`MAX_REASON_CHARS`] characters kept); with `[review] require_reason` a read or search of
//! recordings without one is answered 428 and shows nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use witness_core::kind;

use crate::auth::Caller;
use crate::{
    blocking, ApiError, AuditPage, AuditQuery, AuditRecord, Backend, EventPage, EventQuery, Role, SessionPage, SessionQuery, SessionView,
    State, VerifyStatus,
};

pub(crate) async fn sessions<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    caller.require(&[Role::Auditor], "list recorded sessions")?;
    if let Some(text) = query.q.as_deref().filter(|q| !q.is_empty()) {
        let reason = reason(&api, &headers)?;
        let what: String = text.chars().take(200).collect();
        let key = serde_json::json!(["search", text, reason]).to_string();
        let record = AuditRecord { kind: kind::RECORDING_SEARCHED, session: None, what: format!("text {what:?}"), reason };
        audit_once(&api, &caller, key, record).await?;
    }
    Ok(Json(blocking(&api.backend, move |b| b.sessions(&query)).await?))
}

pub(crate) async fn session<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    caller.require(&[Role::Auditor], "read recorded sessions")?;
    let reason = reason(&api, &headers)?;
    let session = blocking(&api.backend, move |b| b.session(&id)).await?;
    // Who opened a session, for which task, from where and when is recorded data like its events.
    // The console asks again every few seconds while it follows an open session: its repeats are
    // covered by the first record.
    let key = serde_json::json!(["session", session.id, reason]).to_string();
    let record = AuditRecord { kind: kind::RECORDING_VIEWED, session: Some(session.id.clone()), what: "session".into(), reason };
    audit_once(&api, &caller, key, record).await?;
    Ok(Json(session))
}

pub(crate) async fn events<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    caller.require(&[Role::Auditor], "read recordings")?;
    let reason = reason(&api, &headers)?;
    let session = blocking(&api.backend, {
        let id = id.clone();
        move |b| b.session(&id)
    })
    .await?;
    let grant = crate::access::check(&api, &caller, &session)?;
    let key = serde_json::json!(["events", session.id, reason, grant.as_ref().map(|g| &g.id)]).to_string();
    let record = AuditRecord { kind: kind::RECORDING_VIEWED, session: Some(session.id), what: under_grant("events", &grant), reason };
    if query.after.is_none() {
        // A read from the start is a view of its own.
        api.backend.audit(&caller.principal, record).await?;
        api.viewed.note(&caller.principal.identity, key);
    } else {
        // Later pages, and a live session's new events, continue a recent view.
        audit_once(&api, &caller, key, record).await?;
    }
    Ok(Json(blocking(&api.backend, move |b| b.events(&id, &query)).await?))
}

pub(crate) async fn asciicast<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "replay recordings")?;
    let reason = reason(&api, &headers)?;
    let session = blocking(&api.backend, {
        let id = id.clone();
        move |b| b.session(&id)
    })
    .await?;
    if !session.terminal {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, format!("session {} has no terminal to replay", session.id)));
    }
    let grant = crate::access::check(&api, &caller, &session)?;
    let what = under_grant("asciicast", &grant);
    api.backend.audit(&caller.principal, AuditRecord { kind: kind::RECORDING_VIEWED, session: Some(session.id), what, reason }).await?;
    let cast = blocking(&api.backend, move |b| b.asciicast(&id)).await?;
    Ok(([(CONTENT_TYPE, "application/x-asciicast")], cast).into_response())
}

/// What a view record says it showed, naming the grant it was read under.
fn under_grant(what: &str, grant: &Option<crate::AccessRequest>) -> String {
    match grant {
        Some(g) => format!("{what} (access {} granted by {})", g.id, g.decided_by.as_deref().unwrap_or("?")),
        None => what.to_string(),
    }
}

/// The header a reader gives a reason in.
pub const REASON_HEADER: &str = "x-witness-reason";
/// Characters of a reason kept: a ticket and a sentence.
pub const MAX_REASON_CHARS: usize = 500;

/// The reason a request gives for reading recordings; refused (428) when the config requires one
/// and there is none.
pub(crate) fn reason<B: Backend>(api: &crate::Api<B>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let given =
        headers.get(REASON_HEADER).and_then(|value| witness_core::one_line_reason(&percent_decoded(value.as_bytes()), MAX_REASON_CHARS));
    if given.is_none() && api.settings.require_reason {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "reading recordings needs a reason here (a ticket, say): send it as X-Witness-Reason, percent-encoded",
        ));
    }
    Ok(given)
}

/// `%XX` sequences decoded, the rest kept, read as UTF-8 (lossily).
fn percent_decoded(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// Appends `record` unless this caller's `key` was recorded within [`RECENT`]; notes it after.
async fn audit_once<B: Backend>(api: &crate::Api<B>, caller: &Caller, key: String, record: AuditRecord) -> Result<(), ApiError> {
    if api.viewed.recent(&caller.principal.identity, &key) {
        return Ok(());
    }
    api.backend.audit(&caller.principal, record).await?;
    api.viewed.note(&caller.principal.identity, key);
    Ok(())
}

/// How long a recorded view or search covers the same reader's repeats of it.
const RECENT: Duration = Duration::from_secs(30 * 60);
/// At most this many (reader, view) pairs are remembered; beyond, every read is recorded.
const MAX_RECENT: usize = 10_000;

/// The views and searches recorded lately, by reader.
#[derive(Default)]
pub(crate) struct RecentViews {
    at: Mutex<HashMap<(String, String), Instant>>,
}

impl RecentViews {
    fn recent(&self, reader: &str, key: &str) -> bool {
        let at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        at.get(&(reader.to_string(), key.to_string())).is_some_and(|t| t.elapsed() < RECENT)
    }

    fn note(&self, reader: &str, key: String) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        if at.len() >= MAX_RECENT {
            at.retain(|_, t| t.elapsed() < RECENT);
            if at.len() >= MAX_RECENT {
                // Forgetting only means recording again.
                return;
            }
        }
        at.insert((reader.to_string(), key), Instant::now());
    }
}
