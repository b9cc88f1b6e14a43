//! What the API answers and accepts, as JSON. The shapes are documented in `openapi.json`; a
//! test checks that every documented path is served.

use serde::{Deserialize, Serialize};
use witness_core::EventKind;

/// What a caller may do in the API and the console, from their groups and `[roles]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: recordings, audit trail, tokens, any approval.
    Admin,
    /// Read every recording and the audit trail.
    Auditor,
    /// Decide approvals that name one of the caller's groups.
    Approver,
}

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
    /// "waiting", or after a decision "approved" / "denied" (in notices also "timed-out").
    pub status: String,
    pub decided_by: Option<String>,
    /// What the approver said with the decision, if anything; the requester's client sees it.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A request to read a session's recording where a `[[review.rules]]` rule wants another
/// reviewer's approval first, as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: String,
    pub session: String,
    pub connection: String,
    /// The identity that asks to read.
    pub reader: String,
    /// Why, as the reader gave it (a ticket).
    pub reason: String,
    /// The rule's name.
    pub rule: String,
    /// Groups whose members may grant it (never the reader).
    pub approvers: Vec<String>,
    /// Unix time in milliseconds.
    pub requested_at_ms: u64,
    /// `pending`, `granted` (until `until_ms`), `denied` or `expired`.
    pub status: String,
    pub decided_by: Option<String>,
    #[serde(default)]
    pub decision_reason: Option<String>,
    /// When a grant ends, Unix time in milliseconds.
    pub until_ms: Option<u64>,
}

/// Whether a reader may read a session's recording now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadAccess {
    /// No `[[review.rules]]` rule covers the session.
    Open,
    /// A rule covers it, and this grant lets the reader read it now.
    Granted(AccessRequest),
    /// A rule covers it and the reader has no grant: the rule, and the reader's pending (or
    /// last) request if any.
    Needed { rule: String, approvers: Vec<String>, request: Option<AccessRequest> },
}

/// `POST /api/sessions/{id}/access`: why the reader wants to read it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AccessAsk {
    pub reason: Option<String>,
}

/// `POST /api/approvals/{id}/approve` and `/deny`: an optional body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DecideRequest {
    /// Why, in a sentence: recorded, and shown to the requester.
    pub reason: Option<String>,
}

/// Who is calling, as `/api/me` and `/api/login` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Me {
    pub identity: String,
    pub groups: Vec<String>,
    pub roles: Vec<Role>,
    /// For a browser login: the value to send as `X-CSRF-Token` with every POST.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

/// Which sessions to list (`GET /api/sessions`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SessionQuery {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub protocol: Option<String>,
    /// Sessions whose task contains this text.
    pub task: Option<String>,
    /// Sessions with a statement or command containing this text (ASCII case ignored).
    pub q: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// RFC 3339 time or Unix milliseconds.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// A session as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub identity: String,
    pub connection: String,
    pub protocol: String,
    pub task: Option<String>,
    pub client_addr: Option<String>,
    /// The caller's groups when the session opened (none recorded before witness kept them).
    pub groups: Vec<String>,
    pub started: String,
    pub started_ns: i64,
    pub ended: Option<String>,
    pub ended_ns: Option<i64>,
    pub end_reason: Option<String>,
    /// `open` or `closed`.
    pub status: String,
    pub events: u64,
    /// `verified` (covered by a signed checkpoint), `pending` (recorded, not yet covered, or
    /// still open) or `failed` (verification found a problem in it or in the ledger).
    pub verify: String,
    /// An SSH session with a terminal: `/api/sessions/{id}/asciicast` replays it.
    pub terminal: bool,
    /// Live in this witness now: an admin may end it (`POST /api/sessions/{id}/end`).
    pub live: bool,
    /// Requests witness refused in it, and requests it held for approval.
    pub denied: u64,
    pub held: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    /// How many sessions match in all (the page is `offset`, `limit` of them).
    pub total: u64,
}

/// Which events of a session to read (`GET /api/sessions/{id}/events`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventQuery {
    /// Events after this seq.
    pub after: Option<u64>,
    pub limit: Option<usize>,
    /// Comma-separated kind prefixes, e.g. `pg.,ssh.exec`.
    pub kinds: Option<String>,
}

/// One recorded event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventView {
    pub seq: u64,
    pub time: String,
    pub time_ns: i64,
    pub kind: String,
    /// `gateway`, `request` or `response`.
    pub direction: String,
    pub summary: String,
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// `empty`, `text`, `json` or `binary`.
    pub payload_type: String,
    pub payload_bytes: u64,
    /// Text and JSON payloads, cut at 64 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub payload_cut: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub payload_purged: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Ask again with `after` set to this for the next page; null at the end.
    pub next_after: Option<u64>,
}

/// What the audit trail records about an API caller's action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// One of core's `kind` vocabulary: `recording.viewed`, `recording.searched`, `token.created`,
    /// `token.revoked`, `session.terminated`, `approval.decided`, `console.login` (the gate adds
    /// `login.refused` of its own).
    pub kind: EventKind,
    /// The session concerned, if any.
    pub session: Option<String>,
    /// What was done, e.g. `events` or `asciicast` for a view, a token's id.
    pub what: String,
    /// Why, as the reader gave it (a ticket), for a view or a search of recordings.
    pub reason: Option<String>,
}

/// One entry of the audit trail (`GET /api/audit`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: String,
    pub time_ns: i64,
    pub kind: String,
    /// The identity that acted.
    pub actor: String,
    pub session: Option<String>,
    pub what: String,
    /// The reason the reader gave, for a view or search of recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub summary: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<usize>,
    /// Entries before this time (Unix ns), for the next page.
    pub before: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEntry>,
}

/// A token as listed: never its secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenView {
    pub id: String,
    pub identity: String,
    pub groups: Vec<String>,
    pub task: Option<String>,
    pub created: String,
    pub expires: Option<String>,
    pub revoked: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `POST /api/sessions/{id}/end`.
#[derive(Clone, Debug, Deserialize)]
pub struct EndSessionRequest {
    /// Why, in a sentence: recorded, and told to the session's client.
    pub reason: String,
}

/// `POST /api/tokens`.
#[derive(Clone, Debug, Deserialize)]
pub struct NewTokenRequest {
    pub identity: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// e.g. `8h`, `30m`; none: never expires.
    pub ttl: Option<String>,
    pub task: Option<String>,
}

/// A token just made: its secret is shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenView,
    pub token: String,
}

/// The ledger's verification (`GET /api/verify`), redone at most every few seconds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifyStatus {
    pub ok: bool,
    pub checked_at: String,
    pub records: u64,
    pub sessions: u64,
    pub checkpoints: u64,
    pub last_checkpoint: Option<CheckpointView>,
    /// Records written after the last checkpoint (the next one covers them).
    pub unsealed_records: u64,
    pub problems: Vec<ProblemView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointView {
    pub time: String,
    pub tree_size: u64,
    pub n_records: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProblemView {
    pub session: Option<String>,
    pub what: String,
}

/// What `/metrics` shows, gathered by the backend and written out as Prometheus text here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// (protocol, live sessions).
    pub live_sessions: Vec<(String, u64)>,
    /// (kind: `statement` or `command`, decision: `allow`/`deny`/`hold`, count).
    pub decisions: Vec<(String, String, u64)>,
    pub approvals_waiting: u64,
    /// Cumulative (upper bound in seconds, count); the last bound is infinite.
    pub append_latency_buckets: Vec<(f64, u64)>,
    pub append_latency_sum_seconds: f64,
    pub events_recorded: u64,
    pub bytes_recorded: u64,
    /// How long the oldest record not under a signed checkpoint has waited (0 when none).
    pub ledger_unsealed_seconds: f64,
    /// A ledger write failed: every request is refused until restart.
    pub ledger_write_failed: bool,
    /// (protocol, logins refused).
    pub auth_failures: Vec<(String, u64)>,
    /// Per configured connection.
    pub connections: Vec<ConnectionMetrics>,
}

/// One configured connection's counts, for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionMetrics {
    pub connection: String,
    pub allowed: u64,
    pub denied: u64,
    pub held: u64,
    /// Sessions that did not start because the target could not be reached or refused
    /// witness's login.
    pub target_failures: u64,
}

/// Whether witness can serve requests now (`/readyz`): the problems that keep it from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub problems: Vec<String>,
}

/// Where to send a browser to log in at the OpenID provider, and what the login needs when the
/// browser comes back: the `state` it must bring, the PKCE verifier and the nonce. The three are
/// kept in an HttpOnly cookie of that browser, so witness keeps no state per login begun (nobody
/// can crowd out other people's logins by beginning many).
#[derive(Clone, PartialEq, Eq)]
pub struct OidcRedirect {
    pub url: String,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
}

impl std::fmt::Debug for OidcRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcRedirect").field("url", &self.url).finish_non_exhaustive()
    }
}
