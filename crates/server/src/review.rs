//! The review API's backend: roles from `[roles]`, recorded sessions and their events, the audit
//! trail (a session of its own in the ledger), tokens, the ledger's verification (cached for a few
//! seconds, `verification.rs`) and metrics.
//!
//! The index finds sessions and events; what is shown of them comes from their records. A
//! session's identity, connection, protocol, task, client, times and event count are read from its
//! `session.start` and latest record, and every event shown is its record, checked against the
//! index's entry. Where the index disagrees with the records the session is badged `failed` and
//! the verification runs again, which reports and rebuilds the index. An entry that leads to
//! another session's record is refused, never shown.
//!
//! Reads open the index read-only for each request, in one snapshot: the running ledger's indexer
//! writes it, and SQLite's WAL lets both go on at once.

pub mod access;
mod verification;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use witness_api::{
    AccessRequest, Approval, AuditEntry, AuditPage, AuditQuery, AuditRecord, Backend, BackendError, CheckpointView, ConnectionMetrics,
    CreatedToken, DecideError, EventPage, EventQuery, EventView, Metrics, NewTokenRequest, OidcRedirect, ProblemView, ReadAccess,
    Readiness, Role, SessionPage, SessionQuery, SessionView, TokenList, TokenView, VerifyStatus,
};
use witness_core::{kind, Direction, Event, Interrupt, PayloadType, Principal, Protocol, SessionId};
use witness_identity::{ConsoleLogin, IdentityError, NewToken, OidcVerifier, TokenInfo};
use witness_ledger::verify::{ProblemKind, VerifyReport};
use witness_ledger::{
    check_indexed_event, read_event_at, EventSummary, Index, IndexCheck, IndexProblemKind, Ledger, Opener, SessionFilter, SessionSummary,
    StoredEvent,
};

use crate::approvals::Approvals;
use crate::audit::{AuditTrail, RefusedLogins};
use crate::counts::Counts;
use crate::identities::{principal, Identities};
use crate::registry::Registry;
use crate::reloadable::Reloadable;

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
/// The review API's backend. It reads what the gate writes (the ledger, its counters, the
/// approvals waiting) and shares the gate's identities and rules, but depends on no gate: each
/// part is handed to it when witness starts.
pub struct Review {
    pub identities: Identities,
    pub ledger: Arc<Ledger>,
    pub registry: Registry,
    pub approvals: Approvals,
    pub rules: Arc<Reloadable>,
    pub counts: Arc<Counts>,
    /// The console's login through an OpenID provider, when `[console.oidc]` is set.
    pub console_login: Option<ConsoleLogin>,
    audit: Arc<AuditTrail>,
    /// Where refused API credentials are recorded (with the gate's, at one bounded rate).
    refused: Arc<RefusedLogins>,
    verifications: Arc<verification::Verifications>,
    /// `[[review.rules]]` and the grants to read what they cover.
    reads: access::ReadGrants,
}

impl Review {
    pub fn new(
        identities: Identities,
        ledger: Arc<Ledger>,
        registry: Registry,
        approvals: Approvals,
        rules: Arc<Reloadable>,
        counts: Arc<Counts>,
        refused: Arc<RefusedLogins>,
    ) -> Review {
        let audit = refused.trail().clone();
        Review {
            identities,
            ledger,
            registry,
            approvals,
            rules,
            counts,
            console_login: None,
            audit,
            refused,
            verifications: Default::default(),
            reads: access::ReadGrants::default(),
        }
    }

    /// With `[[review.rules]]`: reading the recordings they cover takes another reviewer's grant.
    pub fn with_read_rules(self, rules: Vec<access::ReadRule>) -> Review {
        Review { reads: access::ReadGrants::new(rules), ..self }
    }

    /// With the console's login through an OpenID provider (`[console.oidc]`).
    pub fn with_console_login(self, console_login: Option<ConsoleLogin>) -> Review {
        Review { console_login, ..self }
    }

    /// Ends the audit trail's session (at shutdown, before the ledger's last checkpoint).
    pub async fn close_audit_trail(&self) {
        self.audit.close().await;
    }
}

impl Backend for Review {
    fn read_access(&self, reader: &Principal, session: &SessionView) -> ReadAccess {
        self.reads.access(reader, session)
    }

    fn request_access(&self, reader: &Principal, session: &SessionView, reason: String) -> Result<AccessRequest, BackendError> {
        self.reads.request(reader, session, reason).map_err(BackendError::BadRequest)
    }

    fn access_requests(&self, caller: &Principal) -> Vec<AccessRequest> {
        self.reads.list(caller, self.roles(caller).contains(&Role::Admin))
    }

    fn decide_access(&self, caller: &Principal, id: &str, grant: bool, reason: Option<String>) -> Result<AccessRequest, DecideError> {
        self.reads.decide(caller, self.roles(caller).contains(&Role::Admin), id, grant, reason)
    }

    fn settle_access(&self, id: &str, recorded: bool) {
        self.reads.settle(id, recorded);
    }

    async fn authenticate(&self, token: &str) -> Option<Principal> {
        self.identities
            .bearer(token)
            .await
            .map_err(|refused| {
                tracing::info!(reason = %refused.reason, "API bearer credential refused");
                self.refused.record("api", "(token)", &refused.reason);
            })
            .ok()
    }

    fn roles(&self, caller: &Principal) -> Vec<Role> {
        let roles = self.rules.roles();
        let member = |groups: &[String]| caller.groups.iter().any(|g| groups.contains(g));
        let mut out = Vec::new();
        if member(&roles.admin) {
            out.push(Role::Admin);
        }
        if member(&roles.auditor) {
            out.push(Role::Auditor);
        }
        let names_approver = || {
            self.rules.policy().rules.iter().any(|rule| member(&rule.approvers))
                || self.reads.approver_groups().any(|g| member(std::slice::from_ref(g)))
        };
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

    fn decide(&self, caller: &Principal, id: &str, approve: bool, reason: Option<String>) -> Result<Approval, DecideError> {
        let admin = self.roles(caller).contains(&Role::Admin);
        self.approvals.decide(caller, id, approve, admin, reason)
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
        let (sessions, total) = if filter.text.is_some() && self.reads.has_rules() {
            // A search never reaches sessions a `[[review.rules]]` rule covers, grant or not: its
            // matches (and their count) would tell what they hold. Filtered before paging, so
            // neither the page nor the total says anything of them.
            let (offset, limit) = (filter.offset as usize, filter.limit.unwrap_or(DEFAULT_SESSIONS_PAGE) as usize);
            let all = SessionFilter { offset: 0, limit: Some(witness_ledger::MAX_TEXT_SEARCH_SESSIONS as u64), ..filter };
            let (found, _) = index.find_sessions(&all).map_err(internal)?;
            let readable: Vec<SessionSummary> = found.into_iter().filter(|s| !self.reads.covers(&s.info.connection)).collect();
            let total = readable.len() as u64;
            (readable.into_iter().skip(offset).take(limit).collect(), total)
        } else {
            index.find_sessions(&filter).map_err(internal)?
        };
        let verified = self.verification()?;
        let sessions = sessions.iter().map(|row| self.session_view(&index, row, &verified)).collect::<Result<_, _>>()?;
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
        let from = after.map_or(0, |a| a.saturating_add(1));
        let (scanned, more_beyond) = index.events_from(id, from, MAX_EVENTS_SCANNED).map_err(internal)?;
        if let Some(gap) = seq_gap(from, &scanned) {
            // Shown all the same: every event shown is its record, and a ledger that lost records
            // has the same gap in its index. The verification tells the two apart.
            self.index_disagrees(id, &gap);
        }
        let (mut events, mut bytes) = (Vec::new(), 0);
        let mut next_after = if more_beyond { scanned.last().map(|e| e.seq) } else { None };
        let opener = self.opener(id)?;
        for (i, e) in scanned.iter().enumerate() {
            if !kinds.is_empty() && !kinds.iter().any(|k| e.kind.starts_with(k)) {
                continue;
            }
            let view = event_view(&self.read_listed(id, e, &opener)?);
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
        let kind = record.kind.clone();
        let target = record.session.as_deref().map(|s| format!(" of session {s}")).unwrap_or_default();
        let summary = format!("{} {}: {}{target}", actor.identity, record.kind, record.what);
        let mut event = Event::note(kind, Direction::Gateway, summary)
            .with_attr("actor", actor.identity.clone())
            .with_attr("credential", actor.credential.clone())
            .with_attr("what", record.what);
        if let Some(session) = record.session {
            event = event.with_attr("session", session);
        }
        if let Some(reason) = record.reason {
            event = event.with_attr("reason", reason);
        }
        self.audit.append(&self.ledger, &event).await.map_err(unavailable)
    }

    fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, BackendError> {
        let limit = query.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
        let index = self.index()?;
        let filter = SessionFilter { protocol: Some(Protocol::Audit.as_str().into()), newest_first: true, ..SessionFilter::default() };
        let (trails, _) = index.find_sessions(&filter).map_err(internal)?;
        let mut entries = Vec::new();
        for trail in trails {
            let summaries = index.events(trail.id).map_err(internal)?;
            let opener = self.opener(trail.id)?;
            for e in summaries.iter().rev() {
                if e.kind == kind::SESSION_START.as_str()
                    || e.kind == kind::SESSION_END.as_str()
                    || query.before.is_some_and(|before| e.time_ns >= before)
                {
                    continue;
                }
                let stored = self.read_listed(trail.id, e, &opener)?;
                let attr = |name: &str| stored.attrs.get(name).and_then(|v| v.as_str()).map(str::to_string);
                entries.push(AuditEntry {
                    time: time(stored.time_ns),
                    time_ns: stored.time_ns,
                    kind: stored.kind.clone(),
                    actor: attr("actor").unwrap_or_default(),
                    session: attr("session"),
                    what: attr("what").unwrap_or_default(),
                    reason: attr("reason"),
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
        let tokens = self.identities.tokens.list().map_err(internal)?;
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
        let (info, secret) = self.identities.tokens.create(&new).map_err(identity_error)?;
        Ok(CreatedToken { info: token_view(&info), token: secret })
    }

    fn revoke_token(&self, id: &str) -> Result<TokenView, BackendError> {
        self.identities.tokens.revoke(id).map(|info| token_view(&info)).map_err(identity_error)
    }

    fn verify(&self) -> Result<VerifyStatus, BackendError> {
        let report = self.verification()?;
        let mut problems: Vec<ProblemView> = report
            .problems
            .iter()
            .filter(|p| !matches!(p.kind, ProblemKind::UnsealedTail { .. }))
            .map(|p| ProblemView { session: p.session.map(|s| s.to_string()), what: format!("{:?}", p.kind) })
            .collect();
        if let IndexCheck::Checked(index) = &report.index {
            problems.extend(index.problems.iter().map(|p| ProblemView {
                session: p.session.map(|s| s.to_string()),
                what: format!("the index differs from the ledger (it was altered; witness rebuilds it from the segments): {}", p.kind),
            }));
        }
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

    fn end_session(&self, id: &str, by: &Principal, reason: &str) -> Result<(), BackendError> {
        let id: SessionId = id.parse().map_err(|e: witness_core::InvalidSessionId| BackendError::BadRequest(e.to_string()))?;
        let why = Interrupt::Ended { by: by.identity.clone(), reason: reason.to_string() };
        if !self.registry.interrupt_session(id, why) {
            return Err(BackendError::NotFound(format!("session {id} is not live in this witness")));
        }
        tracing::info!(session = %id, by = %by.identity, reason, "an administrator ended a live session");
        Ok(())
    }

    fn oidc_login_enabled(&self) -> bool {
        self.console_login.is_some() && self.identities.oidc.is_some()
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
            self.refused.record("api", "(oidc)", &format!("console login through the OpenID provider: {e}"));
            BackendError::BadRequest(e.to_string())
        })?;
        Ok(principal(identity))
    }

    fn metrics(&self) -> Metrics {
        let ledger = self.ledger.stats();
        let health = self.ledger.health();
        Metrics {
            live_sessions: self.registry.live_by_protocol().into_iter().map(|(p, n)| (p.to_string(), n)).collect(),
            auth_failures: self.counts.auth_failures.snapshot(),
            decisions: self.counts.decisions.snapshot(),
            connections: self
                .counts
                .connections
                .snapshot()
                .into_iter()
                .map(|(connection, n)| ConnectionMetrics {
                    connection,
                    allowed: n.allowed,
                    denied: n.denied,
                    held: n.held,
                    target_failures: n.target_failures,
                })
                .collect(),
            approvals_waiting: self.approvals.waiting() as u64,
            append_latency_buckets: ledger.latency_buckets,
            append_latency_sum_seconds: ledger.latency_sum_seconds,
            events_recorded: ledger.events,
            bytes_recorded: ledger.bytes,
            ledger_unsealed_seconds: health.unsealed_since_ns.map_or(0.0, |since| (now_ns() - since).max(0) as f64 / 1e9),
            ledger_write_failed: health.write_failed,
        }
    }

    fn readiness(&self) -> Readiness {
        let mut problems = Vec::new();
        if self.ledger.health().write_failed {
            problems.push("the ledger cannot write (see witness's log): every request is refused until witness restarts".to_string());
        }
        Readiness { problems }
    }
}

impl Review {
    /// The console's OpenID login and the verifier of its issuer, when `[console.oidc]` is set.
    fn console_oidc(&self) -> Result<(&ConsoleLogin, &OidcVerifier), BackendError> {
        match (&self.console_login, &self.identities.oidc) {
            (Some(login), Some(oidc)) => Ok((login, oidc)),
            _ => Err(BackendError::NotFound("single sign-on is not set up: [console.oidc] is not in the config".into())),
        }
    }

    /// The index, in one snapshot for the whole request.
    fn index(&self) -> Result<Index, BackendError> {
        Index::open_snapshot(&self.ledger.paths().index).map_err(internal)
    }

    fn read_events(&self, index: &Index, id: SessionId) -> Result<Vec<StoredEvent>, BackendError> {
        let listed = index.events(id).map_err(internal)?;
        if let Some(gap) = seq_gap(0, &listed) {
            self.index_disagrees(id, &gap);
        }
        let opener = self.opener(id)?;
        listed.iter().map(|e| self.read_listed(id, e, &opener)).collect()
    }

    /// Opens the sealed events of session `id`, or says why they cannot be.
    fn opener(&self, id: SessionId) -> Result<Opener, BackendError> {
        self.ledger.keyring().opener(id).map_err(|e| BackendError::Unavailable(e.to_string()))
    }

    /// The record at the place the index gives for `listed`, an event of session `id`. A record
    /// of another session (or another event) there is refused; the same event listed with other
    /// facts is answered from its record. Either way the index is checked again.
    /// Sealed events are opened with `opener`, after the check (the index holds their clear part).
    fn read_listed(&self, id: SessionId, listed: &EventSummary, opener: &Opener) -> Result<StoredEvent, BackendError> {
        let stored = read_event_at(&self.ledger.paths().segments, listed.segment_idx, listed.offset).map_err(internal)?;
        let unseal = |mut stored: StoredEvent| {
            opener.unseal(&mut stored).map_err(|e| BackendError::Unavailable(e.to_string()))?;
            Ok(stored)
        };
        match check_indexed_event(id, listed, &stored) {
            None => unseal(stored),
            Some(misplaced @ IndexProblemKind::Misplaced { .. }) => {
                self.index_disagrees(id, &misplaced);
                Err(BackendError::Unavailable(format!(
                    "the index disagrees with the ledger about session {id} ({misplaced}): it was altered; witness is checking it and rebuilds it from the segments, try again in a few seconds"
                )))
            }
            Some(difference) => {
                self.index_disagrees(id, &difference);
                unseal(stored)
            }
        }
    }

    /// A read found the index disagreeing with the records: say so, and verify again at the next
    /// request (which reports and rebuilds the index).
    fn index_disagrees(&self, id: SessionId, difference: &IndexProblemKind) {
        tracing::warn!(session = %id, difference = %difference, "the index disagrees with the ledger's records; verifying the ledger and its index again");
        self.verifications.recheck();
    }

    /// The last verification (see `verification.rs`).
    fn verification(&self) -> Result<Arc<VerifyReport>, BackendError> {
        let verifier = verification::Verifier { ledger: self.ledger.clone(), audit: self.audit.clone() };
        self.verifications.report(&verifier).map_err(internal)
    }

    /// A session as its records give it (the index's row only led to them), badged with what the
    /// last verification says and with any disagreement found on the way.
    fn session_view(&self, index: &Index, row: &SessionSummary, verified: &VerifyReport) -> Result<SessionView, BackendError> {
        let recorded = index.recorded_session(&self.ledger.paths().segments, row).map_err(internal)?;
        for difference in &recorded.differences {
            self.index_disagrees(row.id, difference);
        }
        let s = &recorded.summary;
        let ledger_wide_problem =
            verified.problems.iter().any(|p| p.session.is_none() && !matches!(p.kind, ProblemKind::UnsealedTail { .. }));
        let index_problem = match &verified.index {
            IndexCheck::Checked(index) => index.problems.iter().any(|p| p.session.is_none() || p.session == Some(s.id)),
            IndexCheck::NotChecked | IndexCheck::Missing => false,
        };
        let failed = ledger_wide_problem
            || index_problem
            || !recorded.differences.is_empty()
            || verified.problems.iter().any(|p| p.session == Some(s.id));
        let verify = if failed {
            "failed"
        } else {
            let last = recorded.last_ledger_seq;
            let covered = verified.last_checkpoint.as_ref().is_some_and(|c| last.is_some_and(|last| last < c.n_records));
            if s.ended_ns.is_some() && covered {
                "verified"
            } else {
                "pending"
            }
        };
        let terminal =
            s.info.protocol == Protocol::Ssh && index.events(s.id).map_err(internal)?.iter().any(|e| e.kind == kind::SSH_PTY.as_str());
        Ok(SessionView {
            id: s.id.to_string(),
            identity: s.info.identity.clone(),
            connection: s.info.connection.clone(),
            protocol: s.info.protocol.as_str().to_string(),
            task: s.info.task.clone(),
            client_addr: s.info.client_addr.clone(),
            groups: s.info.groups.clone(),
            started: time(s.started_ns),
            started_ns: s.started_ns,
            ended: s.ended_ns.map(time),
            ended_ns: s.ended_ns,
            end_reason: s.end_reason.clone(),
            status: if s.ended_ns.is_some() { "closed" } else { "open" }.to_string(),
            events: s.n_events,
            verify: verify.to_string(),
            terminal,
            live: self.registry.is_live(s.id),
            denied: s.n_denied,
            held: s.n_held,
        })
    }
}

/// Where the index's events, listed from seq `from` on, skip or repeat a seq.
fn seq_gap(from: u64, listed: &[EventSummary]) -> Option<IndexProblemKind> {
    listed.iter().zip(from..).find(|(e, expected)| e.seq != *expected).map(|(e, expected)| {
        if e.seq > expected {
            IndexProblemKind::MissingEvent { seq: expected }
        } else {
            IndexProblemKind::ExtraEvent { seq: e.seq }
        }
    })
}

/// At most [`MAX_TEXT_SHOWN`] bytes of `text`, cut at a character boundary.
fn cut_text(text: &str) -> &str {
    let mut end = MAX_TEXT_SHOWN.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn event_view(e: &StoredEvent) -> EventView {
    let (payload_text, payload_cut) = match (&e.payload, e.payload_type) {
        (Some(bytes), PayloadType::Text | PayloadType::Json) => match std::str::from_utf8(bytes) {
            Ok(text) if text.len() <= MAX_TEXT_SHOWN || e.payload_type == PayloadType::Json => (Some(text.to_string()), false),
            Ok(text) => (Some(cut_text(text).to_string()), true),
            // Terminal output with a stray byte that is not UTF-8: its text, the byte escaped.
            Err(_) if e.payload_type == PayloadType::Text => {
                let text = witness_core::shown_text(bytes);
                let cut = cut_text(&text);
                (Some(cut.to_string()), cut.len() < text.len())
            }
            Err(_) => (None, false),
        },
        _ => (None, false),
    };
    EventView {
        seq: e.seq,
        time: time(e.time_ns),
        time_ns: e.time_ns,
        kind: kind::current_name(&e.kind).to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The index lists a session's events from `from` on; a skipped or repeated seq is named.
    #[test]
    fn a_gap_in_the_listed_seqs_is_named() {
        let cases: [(u64, &[u64], Option<IndexProblemKind>); 6] = [
            (0, &[], None),
            (0, &[0, 1, 2], None),
            (5, &[5, 6], None),
            (0, &[0, 2, 3], Some(IndexProblemKind::MissingEvent { seq: 1 })),
            (0, &[1], Some(IndexProblemKind::MissingEvent { seq: 0 })),
            (3, &[3, 3, 4], Some(IndexProblemKind::ExtraEvent { seq: 3 })),
        ];
        for (from, seqs, expect) in cases {
            let listed: Vec<EventSummary> = seqs
                .iter()
                .map(|&seq| EventSummary {
                    seq,
                    ledger_seq: seq,
                    time_ns: 0,
                    kind: "pg.query".into(),
                    direction: 0,
                    summary: String::new(),
                    payload_len: 0,
                    segment_idx: 0,
                    offset: 0,
                })
                .collect();
            assert_eq!(seq_gap(from, &listed), expect, "from {from}: {seqs:?}");
        }
    }
}
