//! The review API's backend: roles from `[roles]`, recorded sessions and their events read from
//! the ledger's index and segments, the audit trail (a session of its own in the ledger), tokens,
//! the ledger's verification (cached for a few seconds) and metrics.
//!
//! Reads open the index read-only for each request: the running ledger's indexer writes it, and
//! SQLite's WAL lets both go on at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use witness_api::{
    Approval, AuditEntry, AuditPage, AuditQuery, AuditRecord, Backend, BackendError, CheckpointView, CreatedToken, DecideError, EventPage,
    EventQuery, EventView, Metrics, NewTokenRequest, OidcRedirect, ProblemView, Role, SessionPage, SessionQuery, SessionView, TokenList,
    TokenView, VerifyStatus,
};
use witness_core::{Direction, Event, EventKind, PayloadType, Principal, Protocol, SessionId, SessionInfo};
use witness_identity::{ConsoleLogin, IdentityError, NewToken, OidcVerifier, TokenInfo};
use witness_ledger::verify::{verify_ledger, ProblemKind, VerifyOptions, VerifyReport};
use witness_ledger::{read_event_at, Index, SessionFilter, SessionSummary, SessionWriter, StoredEvent};

use crate::Gate;

/// A page of sessions holds at most this many.
const MAX_SESSIONS_PAGE: u64 = 500;
const DEFAULT_SESSIONS_PAGE: u64 = 50;
const MAX_EVENTS_PAGE: usize = 1000;
/// A page of events looks at this many events at most (of the kinds asked for or not); its
/// `next_after` then says where to go on.
const MAX_EVENTS_SCANNED: usize = 20_000;
/// A page of events ends once its payloads reach this size (it holds at least one event).
const MAX_PAGE_BYTES: usize = 8 << 20;
const DEFAULT_EVENTS_PAGE: usize = 200;
const MAX_AUDIT_PAGE: usize = 1000;
/// Text payloads (statements, command lines) are answered up to this size; the rest is in the
/// ledger (`witness sessions show`). JSON payloads (result rows, already capped per statement by
/// `max_rows_per_statement`) are answered whole, so that they stay JSON.
const MAX_TEXT_SHOWN: usize = 64 * 1024;
/// A verification at most this old is answered again rather than redone.
const VERIFY_FRESH: Duration = Duration::from_secs(5);

/// A verification report and when it was made.
type Verified = (Instant, Arc<VerifyReport>);

/// What the review API keeps between requests.
#[derive(Default)]
pub struct ReviewState {
    /// This process's audit trail, opened on its first record.
    audit: tokio::sync::OnceCell<SessionWriter>,
    /// The last verification and when it ran.
    verified: Arc<Mutex<Option<Verified>>>,
    /// Set while a verification runs, so that one runs at a time.
    verifying: Arc<AtomicBool>,
}

impl ReviewState {
    /// Ends the audit trail's session (at shutdown, before the ledger's last checkpoint).
    pub async fn close_audit_trail(&self) {
        if let Some(trail) = self.audit.get() {
            if let Err(e) = trail.clone().close("witness stopped").await {
                tracing::error!(error = %e, "cannot close the audit trail's session");
            }
        }
    }
}

impl Backend for Gate {
    async fn authenticate(&self, token: &str) -> Option<Principal> {
        self.bearer(token).await.map_err(|refused| tracing::info!(reason = %refused.reason, "API bearer credential refused")).ok()
    }

    fn roles(&self, caller: &Principal) -> Vec<Role> {
        let roles = self.roles.read().unwrap_or_else(|p| p.into_inner()).clone();
        let member = |groups: &[String]| caller.groups.iter().any(|g| groups.contains(g));
        let mut out = Vec::new();
        if member(&roles.admin) {
            out.push(Role::Admin);
        }
        if member(&roles.auditor) {
            out.push(Role::Auditor);
        }
        let names_approver = || self.current_policy().rules.iter().any(|rule| member(&rule.approvers));
        if member(&roles.approver) || names_approver() {
            out.push(Role::Approver);
        }
        out
    }

    fn approvals(&self, caller: &Principal) -> Vec<Approval> {
        if self.roles(caller).contains(&Role::Admin) {
            self.approvals.all()
        } else {
            self.approvals.visible_to(caller)
        }
    }

    fn decide(&self, caller: &Principal, id: &str, approve: bool) -> Result<Approval, DecideError> {
        let admin = self.roles(caller).contains(&Role::Admin);
        self.approvals.decide(caller, id, approve, admin)
    }

    fn sessions(&self, query: &SessionQuery) -> Result<SessionPage, BackendError> {
        let open = match query.status.as_deref() {
            None | Some("") => None,
            Some("open") => Some(true),
            Some("closed") => Some(false),
            Some(other) => return Err(BackendError::BadRequest(format!("status {other:?} is unknown: use open or closed"))),
        };
        let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let protocol = non_empty(&query.protocol);
        let filter = SessionFilter {
            identity: non_empty(&query.identity),
            connection: non_empty(&query.connection),
            // The audit trail is listed by /api/audit, unless asked for by name.
            exclude_protocol: protocol.is_none().then(|| Protocol::Audit.as_str().to_string()),
            protocol,
            task: non_empty(&query.task),
            text: non_empty(&query.q),
            open,
            since_ns: query.since.as_deref().filter(|t| !t.is_empty()).map(|t| parse_time("since", t)).transpose()?,
            until_ns: query.until.as_deref().filter(|t| !t.is_empty()).map(|t| parse_time("until", t)).transpose()?,
            newest_first: true,
            offset: query.offset.unwrap_or(0),
            limit: Some(query.limit.unwrap_or(DEFAULT_SESSIONS_PAGE).clamp(1, MAX_SESSIONS_PAGE)),
        };
        let index = self.index()?;
        let (sessions, total) = index.find_sessions(&filter).map_err(internal)?;
        let verified = self.verification()?;
        let sessions = sessions.iter().map(|s| self.session_view(&index, s, &verified)).collect::<Result<_, _>>()?;
        Ok(SessionPage { sessions, total })
    }

    fn session(&self, id: &str) -> Result<SessionView, BackendError> {
        let id = session_id(id)?;
        let index = self.index()?;
        let summary = index.session(id).map_err(internal)?.ok_or_else(|| no_session(id))?;
        let verified = self.verification()?;
        self.session_view(&index, &summary, &verified)
    }

    fn events(&self, id: &str, query: &EventQuery) -> Result<EventPage, BackendError> {
        let id = session_id(id)?;
        let index = self.index()?;
        let after = query.after;
        let kinds: Vec<&str> = query.kinds.as_deref().unwrap_or("").split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
        let limit = query.limit.unwrap_or(DEFAULT_EVENTS_PAGE).clamp(1, MAX_EVENTS_PAGE);
        let (scanned, more_beyond) =
            index.events_from(id, after.map_or(0, |a| a.saturating_add(1)), MAX_EVENTS_SCANNED).map_err(internal)?;
        let segments = &self.ledger.paths().segments;
        let (mut events, mut bytes) = (Vec::new(), 0);
        let mut next_after = if more_beyond { scanned.last().map(|e| e.seq) } else { None };
        for (i, e) in scanned.iter().enumerate() {
            if !kinds.is_empty() && !kinds.iter().any(|k| e.kind.starts_with(k)) {
                continue;
            }
            let view = event_view(&read_event_at(segments, e.segment_idx, e.offset).map_err(internal)?);
            bytes += view.payload_text.as_ref().map_or(0, String::len);
            events.push(view);
            if events.len() >= limit || bytes >= MAX_PAGE_BYTES {
                next_after = (i + 1 < scanned.len() || more_beyond).then_some(e.seq);
                break;
            }
        }
        Ok(EventPage { events, next_after })
    }

    fn asciicast(&self, id: &str) -> Result<String, BackendError> {
        let id = session_id(id)?;
        let events = self.read_events(&self.index()?, id)?;
        let cast = witness_proto_ssh::asciicast::from_events(&events)
            .ok_or_else(|| BackendError::NotFound(format!("session {id} has no terminal to replay")))?;
        let mut out = Vec::new();
        cast.write_asciicast(&mut out).map_err(internal)?;
        String::from_utf8(out).map_err(internal)
    }

    async fn audit(&self, actor: &Principal, record: AuditRecord) -> Result<(), BackendError> {
        let trail = self
            .review
            .audit
            .get_or_try_init(|| async {
                let info = SessionInfo {
                    identity: "witness".into(),
                    connection: "review-api".into(),
                    protocol: Protocol::Audit,
                    task: None,
                    client_addr: None,
                };
                self.ledger.open_session(&info).await
            })
            .await
            .map_err(unavailable)?;
        let kind = EventKind::new(record.kind).map_err(internal)?;
        let target = record.session.as_deref().map(|s| format!(" of session {s}")).unwrap_or_default();
        let summary = format!("{} {}: {}{target}", actor.identity, record.kind, record.what);
        let mut event = Event::note(kind, Direction::Gateway, summary)
            .with_attr("actor", actor.identity.clone())
            .with_attr("credential", actor.credential.clone())
            .with_attr("what", record.what);
        if let Some(session) = record.session {
            event = event.with_attr("session", session);
        }
        trail.append(&event).await.map(|_| ()).map_err(unavailable)
    }

    fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, BackendError> {
        let limit = query.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
        let index = self.index()?;
        let filter = SessionFilter { protocol: Some(Protocol::Audit.as_str().into()), newest_first: true, ..SessionFilter::default() };
        let (trails, _) = index.find_sessions(&filter).map_err(internal)?;
        let segments = &self.ledger.paths().segments;
        let mut entries = Vec::new();
        for trail in trails {
            let summaries = index.events(trail.id).map_err(internal)?;
            for e in summaries.iter().rev() {
                if e.kind.starts_with("session.") || query.before.is_some_and(|before| e.time_ns >= before) {
                    continue;
                }
                let stored = read_event_at(segments, e.segment_idx, e.offset).map_err(internal)?;
                let attr = |name: &str| stored.attrs.get(name).and_then(|v| v.as_str()).map(str::to_string);
                entries.push(AuditEntry {
                    time: time(stored.time_ns),
                    time_ns: stored.time_ns,
                    kind: stored.kind.clone(),
                    actor: attr("actor").unwrap_or_default(),
                    session: attr("session"),
                    what: attr("what").unwrap_or_default(),
                    summary: stored.summary.clone(),
                });
                if entries.len() >= limit {
                    break;
                }
            }
            // Trails are newest first and do not overlap in time (one per process run).
            if entries.len() >= limit {
                break;
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.time_ns));
        Ok(AuditPage { events: entries })
    }

    fn tokens(&self) -> Result<TokenList, BackendError> {
        let tokens = self.tokens.list().map_err(internal)?;
        Ok(TokenList { tokens: tokens.iter().map(token_view).collect() })
    }

    fn create_token(&self, request: &NewTokenRequest) -> Result<CreatedToken, BackendError> {
        let ttl = match request.ttl.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => Some(
                humantime::parse_duration(text)
                    .map_err(|e| BackendError::BadRequest(format!("ttl {text:?}: {e}; write it like 8h or 30m")))?,
            ),
        };
        let new = NewToken {
            identity: request.identity.trim().to_string(),
            groups: request.groups.iter().map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect(),
            ttl,
            task: request.task.clone().filter(|t| !t.trim().is_empty()),
        };
        let (info, secret) = self.tokens.create(&new).map_err(identity_error)?;
        Ok(CreatedToken { info: token_view(&info), token: secret })
    }

    fn revoke_token(&self, id: &str) -> Result<TokenView, BackendError> {
        self.tokens.revoke(id).map(|info| token_view(&info)).map_err(identity_error)
    }

    fn verify(&self) -> Result<VerifyStatus, BackendError> {
        let report = self.verification()?;
        let problems: Vec<ProblemView> = report
            .problems
            .iter()
            .filter(|p| !matches!(p.kind, ProblemKind::UnsealedTail { .. }))
            .map(|p| ProblemView { session: p.session.map(|s| s.to_string()), what: format!("{:?}", p.kind) })
            .collect();
        Ok(VerifyStatus {
            ok: problems.is_empty(),
            checked_at: time(now_ns()),
            records: report.records,
            sessions: report.sessions,
            checkpoints: report.checkpoints,
            last_checkpoint: report.last_checkpoint.as_ref().map(|c| CheckpointView {
                time: time(c.time_ns),
                tree_size: c.tree_size,
                n_records: c.n_records,
            }),
            unsealed_records: report.unsealed_records,
            problems,
        })
    }

    fn oidc_login_enabled(&self) -> bool {
        self.console_login.is_some() && self.oidc.is_some()
    }

    async fn oidc_login_begin(&self) -> Result<OidcRedirect, BackendError> {
        let (login, oidc) = self.console_oidc()?;
        let start = oidc.begin_login(login).await.map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(OidcRedirect { url: start.url, state: start.state, verifier: start.verifier, nonce: start.nonce })
    }

    async fn oidc_login_finish(&self, begun: &OidcRedirect, code: &str) -> Result<Principal, BackendError> {
        let (login, oidc) = self.console_oidc()?;
        let identity = oidc.finish_login(login, code, &begun.verifier, &begun.nonce).await.map_err(|e| {
            tracing::info!(error = %e, "console login through the OpenID provider refused");
            BackendError::BadRequest(e.to_string())
        })?;
        Ok(crate::gate::principal(identity))
    }

    fn metrics(&self) -> Metrics {
        let ledger = self.ledger.stats();
        Metrics {
            live_sessions: self.registry.live_by_protocol().into_iter().map(|(p, n)| (p.to_string(), n)).collect(),
            decisions: self.decisions.snapshot(),
            approvals_waiting: self.approvals.waiting() as u64,
            append_latency_buckets: ledger.latency_buckets,
            append_latency_sum_seconds: ledger.latency_sum_seconds,
            events_recorded: ledger.events,
            bytes_recorded: ledger.bytes,
        }
    }
}

impl Gate {
    /// The console's OpenID login and the verifier of its issuer, when `[console.oidc]` is set.
    fn console_oidc(&self) -> Result<(&ConsoleLogin, &OidcVerifier), BackendError> {
        match (&self.console_login, &self.oidc) {
            (Some(login), Some(oidc)) => Ok((login, oidc)),
            _ => Err(BackendError::NotFound("single sign-on is not set up: [console.oidc] is not in the config".into())),
        }
    }

    fn index(&self) -> Result<Index, BackendError> {
        Index::open_read_only(&self.ledger.paths().index).map_err(internal)
    }

    fn read_events(&self, index: &Index, id: SessionId) -> Result<Vec<StoredEvent>, BackendError> {
        let segments = &self.ledger.paths().segments;
        index
            .events(id)
            .map_err(internal)?
            .iter()
            .map(|e| read_event_at(segments, e.segment_idx, e.offset))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)
    }

    /// The last verification. When it is older than [`VERIFY_FRESH`], a new one starts on a
    /// thread of its own and this answers the last one: a request never waits for a whole
    /// ledger to be read, except the very first.
    fn verification(&self) -> Result<Arc<VerifyReport>, BackendError> {
        let cached = lock(&self.review.verified).clone();
        if let Some((at, report)) = &cached {
            if at.elapsed() < VERIFY_FRESH {
                return Ok(report.clone());
            }
        }
        let verify = {
            let root = self.ledger.paths().root.clone();
            let options =
                VerifyOptions { public_key: Some(self.ledger.public_key()), allow_unsealed_tail: true, ..VerifyOptions::default() };
            move || verify_ledger(&root, &options).map(Arc::new)
        };
        match cached {
            Some((_, report)) => {
                if !self.review.verifying.swap(true, Ordering::AcqRel) {
                    let (verified, verifying) = (self.review.verified.clone(), self.review.verifying.clone());
                    std::thread::spawn(move || {
                        match verify() {
                            Ok(report) => *lock(&verified) = Some((Instant::now(), report)),
                            Err(e) => tracing::error!(error = %e, "verifying the ledger for the review API failed"),
                        }
                        verifying.store(false, Ordering::Release);
                    });
                }
                Ok(report)
            }
            None => {
                let report = verify().map_err(internal)?;
                *lock(&self.review.verified) = Some((Instant::now(), report.clone()));
                Ok(report)
            }
        }
    }

    fn session_view(&self, index: &Index, s: &SessionSummary, verified: &VerifyReport) -> Result<SessionView, BackendError> {
        let ledger_wide_problem =
            verified.problems.iter().any(|p| p.session.is_none() && !matches!(p.kind, ProblemKind::UnsealedTail { .. }));
        let verify = if ledger_wide_problem || verified.problems.iter().any(|p| p.session == Some(s.id)) {
            "failed"
        } else {
            let last = index.last_ledger_seq(s.id).map_err(internal)?;
            let covered = verified.last_checkpoint.as_ref().is_some_and(|c| last.is_some_and(|last| last < c.n_records));
            if s.ended_ns.is_some() && covered {
                "verified"
            } else {
                "pending"
            }
        };
        let terminal = s.info.protocol == Protocol::Ssh && index.events(s.id).map_err(internal)?.iter().any(|e| e.kind == "ssh.pty");
        Ok(SessionView {
            id: s.id.to_string(),
            identity: s.info.identity.clone(),
            connection: s.info.connection.clone(),
            protocol: s.info.protocol.as_str().to_string(),
            task: s.info.task.clone(),
            client_addr: s.info.client_addr.clone(),
            started: time(s.started_ns),
            started_ns: s.started_ns,
            ended: s.ended_ns.map(time),
            ended_ns: s.ended_ns,
            end_reason: s.end_reason.clone(),
            status: if s.ended_ns.is_some() { "closed" } else { "open" }.to_string(),
            events: s.n_events,
            verify: verify.to_string(),
            terminal,
        })
    }
}

fn event_view(e: &StoredEvent) -> EventView {
    let (payload_text, payload_cut) = match (&e.payload, e.payload_type) {
        (Some(bytes), PayloadType::Text | PayloadType::Json) => match std::str::from_utf8(bytes) {
            Ok(text) if text.len() <= MAX_TEXT_SHOWN || e.payload_type == PayloadType::Json => (Some(text.to_string()), false),
            Ok(text) => {
                let mut end = MAX_TEXT_SHOWN;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                (Some(text[..end].to_string()), true)
            }
            Err(_) => (None, false),
        },
        _ => (None, false),
    };
    EventView {
        seq: e.seq,
        time: time(e.time_ns),
        time_ns: e.time_ns,
        kind: e.kind.clone(),
        direction: e.direction.as_str().to_string(),
        summary: e.summary.clone(),
        attrs: e.attrs.clone(),
        payload_type: e.payload_type.as_str().to_string(),
        payload_bytes: e.payload_len,
        payload_text,
        payload_cut,
        payload_purged: e.payload.is_none() && e.payload_len > 0,
    }
}

fn token_view(t: &TokenInfo) -> TokenView {
    TokenView {
        id: t.id.clone(),
        identity: t.identity.clone(),
        groups: t.groups.clone(),
        task: t.task.clone(),
        created: time(t.created_ns),
        expires: t.expires_ns.map(time),
        revoked: t.revoked_ns.map(time),
    }
}

fn session_id(text: &str) -> Result<SessionId, BackendError> {
    text.parse().map_err(|e: witness_core::InvalidSessionId| BackendError::BadRequest(e.to_string()))
}

fn no_session(id: SessionId) -> BackendError {
    BackendError::NotFound(format!("no session {id}"))
}

/// An RFC 3339 time or Unix milliseconds, as Unix nanoseconds.
fn parse_time(name: &str, text: &str) -> Result<i64, BackendError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms.saturating_mul(1_000_000));
    }
    let at = humantime::parse_rfc3339_weak(text)
        .map_err(|e| BackendError::BadRequest(format!("{name} {text:?}: {e}; give an RFC 3339 time or Unix milliseconds")))?;
    Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_nanos().min(i64::MAX as u128) as i64).unwrap_or(0))
}

fn time(ns: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)).to_string()
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn identity_error(e: IdentityError) -> BackendError {
    match e {
        IdentityError::UnknownToken { .. } => BackendError::NotFound(e.to_string()),
        IdentityError::BadName { .. } | IdentityError::BadGroup { .. } => BackendError::BadRequest(e.to_string()),
        other => internal(other),
    }
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("the audit trail cannot record this, so it is refused: {e}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
