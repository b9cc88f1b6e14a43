//! A session's protocol state as the target holds it: its prepared statements and portals, the
//! settings that change how it reads SQL text, and the requests it has yet to answer, in the order
//! it will answer them.
//!
//! Witness decides and records each execution by the statement the target will run, so this is
//! the target's view, not the client's:
//! - a name changes only when the target confirms the Parse, Bind or Close (ParseComplete,
//!   BindComplete, CloseComplete, which come in the order of the requests);
//! - after an error in an extended-protocol message the target skips every message up to the next
//!   Sync, so none of them changes anything;
//! - a simple Query drops the unnamed statement and portal, and the end of a transaction drops
//!   every portal;
//! - SQL that may create or drop names (PREPARE, DEALLOCATE, DISCARD, DECLARE, CLOSE) makes every
//!   named statement and portal unknown once it has run.
//!
//! The client side needs a name's meaning before the target has answered. Within one pipeline (the
//! messages up to a Sync) it reads the pipeline's own Parse, Bind and Close as if they succeed: if
//! one fails, the target skips the rest of the pipeline, so nothing decided on that assumption
//! runs. A name the pipeline did not set is read from the confirmed state, and only once the target
//! has answered every earlier pipeline ([`Lookup::Wait`]), so that an error there cannot leave a
//! name other than witness thinks. A client that pipelines across Syncs waits a round trip there.
//!
//! This module holds state and does no I/O; `record` turns messages into events with it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use crate::codec::{backend, transaction, Fields, Message};
use crate::reading::Settings;

/// Prepared statements and portals tracked per session; past this the confirmed names are
/// forgotten (their executions are then decided as unknown), so a client cannot grow witness's
/// memory without bound.
pub(crate) const MAX_TRACKED: usize = 10_000;

/// A prepared statement as the target holds it (or will, once it confirms the Parse).
#[derive(Debug)]
pub struct Statement {
    /// Unique in the session (shared with portals): descriptions are kept by it.
    pub id: u64,
    /// The text as the target reads it, or why witness cannot read it so (with the text as sent).
    pub text: Result<Arc<str>, (Arc<str>, &'static str)>,
    /// Running it may create or drop names (see [`crate::reading::may_change_names`]).
    pub changes_names: bool,
    /// Parameter types the Parse named (0: left to the target, which tells them in a
    /// ParameterDescription).
    pub param_types: Arc<[u32]>,
}

/// A portal as the target holds it: a statement bound to parameters.
#[derive(Debug)]
pub struct Portal {
    /// Unique in the session (shared with statements).
    pub id: u64,
    /// The statement it runs; None when witness does not know which.
    pub statement: Option<Arc<Statement>>,
    /// The statement's name as the Bind gave it.
    pub statement_name: String,
    /// Result formats the Bind asked for.
    pub formats: Arc<[i16]>,
    /// The parameters as recorded (within a budget), of `n_params` in all.
    pub params: Vec<Value>,
    pub n_params: usize,
    /// The parameters' types, when any was sent in binary (recorded beside them).
    pub binary_param_types: Option<Vec<u32>>,
}

/// What a name means, as far as witness can tell.
#[derive(Debug)]
pub enum Lookup<T> {
    Found(T),
    /// Witness does not know: never confirmed, forgotten, or changed by SQL it cannot follow.
    Unknown,
    /// Only the confirmed state can tell, and the target has not answered an earlier pipeline yet.
    Wait,
}

impl<T> Lookup<T> {
    /// What the name means (None inside: witness does not know), or None when only the target's
    /// answers to earlier pipelines can tell.
    pub fn settled(self) -> Option<Option<T>> {
        match self {
            Lookup::Found(found) => Some(Some(found)),
            Lookup::Unknown => Some(None),
            Lookup::Wait => None,
        }
    }
}

/// A request waiting for the target's answer, in the order the target answers. `request` is the
/// number the request's event carries (`request`), which its results carry as `answers`.
#[derive(Debug)]
pub enum Pending {
    /// Answered by ParseComplete.
    Parse { name: Box<[u8]>, statement: Arc<Statement> },
    /// Answered by BindComplete.
    Bind { name: Box<[u8]>, portal: Arc<Portal> },
    /// Answered by RowDescription or NoData (after ParameterDescription for a statement). `id`
    /// is the described statement's or portal's; None when witness does not know it.
    Describe { id: Option<u64> },
    /// Answered by one result (rows and a completion, suspension or error). `portal` is None when
    /// witness does not know it; `changes_names` when running it may create or drop names.
    Execute { request: u64, started: Instant, portal: Option<Arc<Portal>>, text: Arc<str>, denial: Option<Bytes>, changes_names: bool },
    /// Answered by CloseComplete.
    Close { statement: bool, name: Box<[u8]> },
    /// Answered by ReadyForQuery.
    Sync,
    /// A simple Query: answered by one result per statement, then ReadyForQuery.
    Query { request: u64, started: Instant, statements: u32, denial: Option<Bytes>, changes_names: bool },
    /// A fast-path function call: answered by FunctionCallResponse or an error, then ReadyForQuery.
    FunctionCall { request: u64, started: Instant, denial: Option<Bytes>, result_format: i16 },
}

impl Pending {
    /// Whether the target ends a pipeline with it (it answers ReadyForQuery).
    fn ends_pipeline(&self) -> bool {
        matches!(self, Pending::Sync | Pending::Query { .. } | Pending::FunctionCall { .. })
    }
}

/// The state both directions of a session share.
#[derive(Default)]
pub struct Tracker {
    shared: Mutex<Shared>,
    /// Woken whenever the target ends a pipeline.
    answered: Notify,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Pending>,
    /// Entries of the queue that end a pipeline: pipelines the target has yet to finish.
    open_pipelines: usize,
    /// An extended-protocol message failed: the target skips everything up to the next Sync.
    skipping: bool,
    confirmed: Names,
    settings: Settings,
    last_id: u64,
    /// Parameter types of statements, by id, as the target described them.
    param_types: HashMap<u64, Arc<[u32]>>,
}

/// Named (and unnamed, as the empty name) statements and portals.
#[derive(Default)]
pub(crate) struct Names {
    pub statements: HashMap<Box<[u8]>, Arc<Statement>>,
    pub portals: HashMap<Box<[u8]>, Arc<Portal>>,
}

impl Names {
    /// Every named statement and portal becomes unknown (the unnamed ones SQL cannot replace).
    fn forget_named(&mut self) {
        self.statements.retain(|name, _| name.is_empty());
        self.portals.retain(|name, _| name.is_empty());
    }
}

/// How far the target has answered what the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every pipeline sent so far is answered: the confirmed state is the target's.
    Settled,
    /// An extended-protocol message failed and the client has not sent the Sync that ends the
    /// skipping: the target will skip whatever the client sends next, up to that Sync.
    Skipping,
    /// The target still owes answers that may change names or settings.
    Open,
}

// === impl Tracker ===

impl Tracker {
    /// State for a session whose target reported `parameter_status` (ParameterStatus messages,
    /// whole) at startup.
    pub fn new(parameter_status: &[u8]) -> Tracker {
        let tracker = Tracker::default();
        let mut at = 0;
        while let crate::codec::Peek::Whole(len) = crate::codec::peek(&parameter_status[at..]) {
            let msg = crate::codec::message(&parameter_status[at..], len);
            if msg.tag == backend::PARAMETER_STATUS {
                tracker.parameter_status(msg.body);
            }
            at += len;
        }
        tracker
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new id for a statement or portal.
    pub fn next_id(&self) -> u64 {
        let mut shared = self.lock();
        shared.last_id += 1;
        shared.last_id
    }

    /// Queues a request the client sent (after it is decided, before it is forwarded).
    pub fn push(&self, pending: Pending) {
        let mut shared = self.lock();
        if pending.ends_pipeline() {
            shared.open_pipelines += 1;
        }
        shared.queue.push_back(pending);
    }

    /// How far the target has answered what was sent.
    pub fn progress(&self) -> Progress {
        let shared = self.lock();
        if shared.open_pipelines == 0 {
            Progress::Settled
        } else if shared.skipping && !shared.queue.iter().any(|pending| matches!(pending, Pending::Sync)) {
            Progress::Skipping
        } else {
            Progress::Open
        }
    }

    /// Returns once the target has answered every pipeline sent so far, or skips what comes next.
    pub async fn wait_settled(&self) {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            // Registered before the check, so an answer between the two is not missed.
            answered.as_mut().enable();
            if self.progress() != Progress::Open {
                return;
            }
            answered.await;
        }
    }

    /// The settings the target last reported.
    pub fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    /// The confirmed statement of a name (the caller has checked the target is settled).
    pub fn statement(&self, name: &[u8]) -> Option<Arc<Statement>> {
        self.lock().confirmed.statements.get(name).cloned()
    }

    /// The confirmed portal of a name (the caller has checked the target is settled).
    pub fn portal(&self, name: &[u8]) -> Option<Arc<Portal>> {
        self.lock().confirmed.portals.get(name).cloned()
    }

    /// Runs `f` on the request the target answers next.
    pub fn with_head<T>(&self, f: impl FnOnce(Option<&mut Pending>) -> T) -> T {
        f(self.lock().queue.front_mut())
    }

    /// A ParameterStatus: keeps what changes how text is read. Returns the parameter's name and
    /// value.
    pub fn parameter_status(&self, body: &[u8]) -> Option<(String, String)> {
        let mut f = Fields::new(body);
        let name = String::from_utf8_lossy(f.cstr().ok()?).into_owned();
        let value = String::from_utf8_lossy(f.cstr().ok()?).into_owned();
        let mut shared = self.lock();
        match name.as_str() {
            "standard_conforming_strings" => shared.settings.standard_conforming_strings = value == "on",
            "client_encoding" => shared.settings.client_encoding = value.clone(),
            _ => {}
        }
        Some((name, value))
    }

    /// A confirmation (ParseComplete, BindComplete, CloseComplete) for the request at the head;
    /// Err when the head is not what it confirms (witness lost track: the session must end).
    pub fn confirm(&self, msg: Message<'_>) -> Result<(), Desync> {
        let mut shared = self.lock();
        let shared = &mut *shared;
        let confirmed = &mut shared.confirmed;
        match (msg.tag, shared.queue.pop_front()) {
            (backend::PARSE_COMPLETE, Some(Pending::Parse { name, statement })) => {
                if confirmed.statements.len() >= MAX_TRACKED {
                    confirmed.statements.clear();
                }
                confirmed.statements.insert(name, statement);
            }
            (backend::BIND_COMPLETE, Some(Pending::Bind { name, portal })) => {
                if confirmed.portals.len() >= MAX_TRACKED {
                    confirmed.portals.clear();
                }
                confirmed.portals.insert(name, portal);
            }
            (backend::CLOSE_COMPLETE, Some(Pending::Close { statement, name })) => {
                if statement {
                    confirmed.statements.remove(&name);
                } else {
                    confirmed.portals.remove(&name);
                }
            }
            (tag, head) => {
                let expected = head.as_ref().map_or("nothing", describe);
                return Err(Desync { got: tag, expected });
            }
        }
        Ok(())
    }

    /// A ParameterDescription for the statement described at the head: its parameter types.
    pub fn parameter_description(&self, body: &[u8]) {
        let mut f = Fields::new(body);
        let Ok(n) = f.count() else { return };
        let types: Option<Vec<u32>> = (0..n).map(|_| f.i32().ok().map(|oid| oid as u32)).collect();
        let mut shared = self.lock();
        if let (Some(Pending::Describe { id: Some(id) }), Some(types)) = (shared.queue.front(), types) {
            let id = *id;
            if shared.param_types.len() >= MAX_TRACKED {
                shared.param_types.clear();
            }
            shared.param_types.insert(id, types.into());
        }
    }

    /// The types of a statement's parameters: those its Parse named, the rest as the target
    /// described them (0 where neither is known).
    pub fn param_types(&self, statement: &Statement) -> Vec<u32> {
        let described = self.lock().param_types.get(&statement.id).cloned();
        let n = statement.param_types.len().max(described.as_ref().map_or(0, |d| d.len()));
        (0..n)
            .map(|i| match statement.param_types.get(i).copied().unwrap_or(0) {
                0 => described.as_ref().and_then(|d| d.get(i).copied()).unwrap_or(0),
                named => named,
            })
            .collect()
    }

    /// The head's description (RowDescription or NoData) arrived: pops a Describe and returns the
    /// described id; None when the head is not a Describe (a simple query's result description).
    pub fn described(&self) -> Option<Option<u64>> {
        let mut shared = self.lock();
        match shared.queue.front() {
            Some(Pending::Describe { id }) => {
                let id = *id;
                shared.queue.pop_front();
                Some(id)
            }
            _ => None,
        }
    }

    /// The head's result ended (CommandComplete, EmptyQueryResponse, PortalSuspended): an
    /// execution is done with; a simple query goes on to its next statement.
    pub fn result_ended(&self) -> Option<Pending> {
        let mut shared = self.lock();
        if matches!(shared.queue.front(), Some(Pending::Execute { .. })) {
            let done = shared.queue.pop_front();
            if let Some(Pending::Execute { changes_names: true, .. }) = &done {
                shared.confirmed.forget_named();
            }
            return done;
        }
        None
    }

    /// An ErrorResponse: returns the failed request if it was an extended-protocol message (popped:
    /// the target now skips to the next Sync), or None when the error belongs to a simple query,
    /// function call or Sync at the head (their ReadyForQuery follows) or to nothing.
    pub fn failed(&self) -> Option<Pending> {
        let mut shared = self.lock();
        match shared.queue.front() {
            Some(
                Pending::Parse { .. } | Pending::Bind { .. } | Pending::Describe { .. } | Pending::Execute { .. } | Pending::Close { .. },
            ) => {
                shared.skipping = true;
                let failed = shared.queue.pop_front();
                if let Some(Pending::Execute { changes_names: true, .. }) = &failed {
                    shared.confirmed.forget_named();
                }
                drop(shared);
                // A client side waiting on a pipeline the target now skips can go on.
                self.answered.notify_waiters();
                failed
            }
            _ => None,
        }
    }

    /// ReadyForQuery with transaction `status`: ends the pipeline at the head. Returns what the
    /// target skipped before it (after an error) and what it ended.
    pub fn ready(&self, status: u8) -> (Vec<Pending>, Option<Pending>) {
        let mut guard = self.lock();
        let shared = &mut *guard;
        let mut skipped = Vec::new();
        let mut ended = None;
        while let Some(pending) = shared.queue.pop_front() {
            let answers = match &pending {
                // After an error only a Sync ends the skipping; a Query or function call in between
                // was skipped too.
                Pending::Sync => true,
                Pending::Query { .. } | Pending::FunctionCall { .. } => !shared.skipping,
                _ => false,
            };
            if pending.ends_pipeline() {
                shared.open_pipelines = shared.open_pipelines.saturating_sub(1);
            }
            if answers {
                ended = Some(pending);
                break;
            }
            skipped.push(pending);
        }
        shared.skipping = false;
        if let Some(Pending::Query { changes_names, .. }) = &ended {
            // A simple query replaces the unnamed statement and portal.
            shared.confirmed.statements.remove(&[][..]);
            shared.confirmed.portals.remove(&[][..]);
            if *changes_names {
                shared.confirmed.forget_named();
            }
        }
        if status == transaction::IDLE {
            // Outside a transaction no portal the protocol made survives.
            shared.confirmed.portals.clear();
        }
        drop(guard);
        self.answered.notify_waiters();
        (skipped, ended)
    }
}

/// The target answered with a message witness's model of the session did not expect.
#[derive(Debug, thiserror::Error)]
#[error("the target sent {} while witness expected {expected}; witness lost track of the session's state", *got as char)]
pub struct Desync {
    got: u8,
    expected: &'static str,
}

fn describe(pending: &Pending) -> &'static str {
    match pending {
        Pending::Parse { .. } => "ParseComplete",
        Pending::Bind { .. } => "BindComplete",
        Pending::Describe { .. } => "a description",
        Pending::Execute { .. } => "a result",
        Pending::Close { .. } => "CloseComplete",
        Pending::Sync => "ReadyForQuery",
        Pending::Query { .. } => "a query result",
        Pending::FunctionCall { .. } => "a function result",
    }
}

/// The client side's view of the names the current pipeline sets, over the confirmed state.
#[derive(Default)]
pub struct Overlay {
    statements: HashMap<Box<[u8]>, Option<Arc<Statement>>>,
    portals: HashMap<Box<[u8]>, Option<Arc<Portal>>>,
    /// An execution in this pipeline may change names: named ones not set since are unknown.
    forgot_named: bool,
    /// An execution in this pipeline may have changed settings the target reports only at its end.
    executed: bool,
}

impl Overlay {
    /// A statement name as the target will read it at this point of the pipeline.
    pub fn statement(&self, tracker: &Tracker, name: &[u8]) -> Lookup<Arc<Statement>> {
        match self.statements.get(name) {
            Some(Some(statement)) => Lookup::Found(statement.clone()),
            Some(None) => Lookup::Unknown,
            None if self.forgot_named && !name.is_empty() => Lookup::Unknown,
            None => match tracker.progress() {
                Progress::Settled => tracker.statement(name).map_or(Lookup::Unknown, Lookup::Found),
                // Skipped by the target whatever it means.
                Progress::Skipping => Lookup::Unknown,
                Progress::Open => Lookup::Wait,
            },
        }
    }

    /// A portal name as the target will read it at this point of the pipeline.
    pub fn portal(&self, tracker: &Tracker, name: &[u8]) -> Lookup<Arc<Portal>> {
        match self.portals.get(name) {
            Some(Some(portal)) => Lookup::Found(portal.clone()),
            Some(None) => Lookup::Unknown,
            None if self.forgot_named && !name.is_empty() => Lookup::Unknown,
            None => match tracker.progress() {
                Progress::Settled => tracker.portal(name).map_or(Lookup::Unknown, Lookup::Found),
                // Skipped by the target whatever it means.
                Progress::Skipping => Lookup::Unknown,
                Progress::Open => Lookup::Wait,
            },
        }
    }

    pub fn parsed(&mut self, name: &[u8], statement: Arc<Statement>) {
        self.bound_size();
        self.statements.insert(name.into(), Some(statement));
    }

    pub fn bound(&mut self, name: &[u8], portal: Arc<Portal>) {
        self.bound_size();
        self.portals.insert(name.into(), Some(portal));
    }

    pub fn closed(&mut self, statement: bool, name: &[u8]) {
        self.bound_size();
        if statement {
            self.statements.insert(name.into(), None);
        } else {
            self.portals.insert(name.into(), None);
        }
    }

    /// An execution in this pipeline: it may change settings, and perhaps names.
    pub fn executed(&mut self, changes_names: bool) {
        self.executed = true;
        if changes_names {
            self.forgot_named = true;
            self.statements.retain(|name, _| name.is_empty());
            self.portals.retain(|name, _| name.is_empty());
        }
    }

    /// Whether an execution earlier in this pipeline may have changed settings the target
    /// reports only when the pipeline ends.
    pub fn settings_in_flight(&self) -> bool {
        self.executed
    }

    /// The pipeline ended (Sync, Query or function call sent): what it set is the target's to
    /// confirm.
    pub fn end_pipeline(&mut self) {
        self.statements.clear();
        self.portals.clear();
        self.forgot_named = false;
        self.executed = false;
    }

    /// A client that sends names without end between Syncs: past the bound, every name it did
    /// not set again is unknown rather than remembered.
    fn bound_size(&mut self) {
        if self.statements.len() + self.portals.len() >= MAX_TRACKED {
            self.statements.clear();
            self.portals.clear();
            self.forgot_named = true;
            // The unnamed ones too: their last setting in this pipeline is forgotten.
            self.statements.insert(Box::from(&b""[..]), None);
            self.portals.insert(Box::from(&b""[..]), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(tracker: &Tracker, text: &str) -> Arc<Statement> {
        Arc::new(Statement { id: tracker.next_id(), text: Ok(Arc::from(text)), changes_names: false, param_types: Arc::from([]) })
    }

    fn text(lookup: Lookup<Arc<Statement>>) -> String {
        match lookup {
            Lookup::Found(s) => s.text.as_ref().map_or_else(|(t, _)| format!("unreadable {t}"), |t| t.to_string()),
            Lookup::Unknown => "unknown".into(),
            Lookup::Wait => "wait".into(),
        }
    }

    fn msg(tag: u8) -> Message<'static> {
        Message { tag, body: b"" }
    }

    #[test]
    fn a_name_changes_only_when_the_target_confirms_it() {
        let tracker = Tracker::default();
        let mut overlay = Overlay::default();
        // Pipeline 1: Parse s = DROP, Sync; confirmed.
        let drop = statement(&tracker, "drop table t");
        overlay.parsed(b"s", drop.clone());
        tracker.push(Pending::Parse { name: Box::from(&b"s"[..]), statement: drop });
        tracker.push(Pending::Sync);
        overlay.end_pipeline();
        assert_eq!(text(overlay.statement(&tracker, b"s")), "wait", "an earlier pipeline is unanswered");
        tracker.confirm(msg(backend::PARSE_COMPLETE)).unwrap();
        tracker.ready(transaction::IDLE);
        // Pipeline 2: a failing Parse, Close s, Sync: the target skips the Close.
        tracker.push(Pending::Parse { name: Box::from(&b""[..]), statement: statement(&tracker, "bad") });
        overlay.closed(true, b"s");
        tracker.push(Pending::Close { statement: true, name: Box::from(&b"s"[..]) });
        assert_eq!(text(overlay.statement(&tracker, b"s")), "unknown", "closed in this pipeline");
        tracker.push(Pending::Sync);
        overlay.end_pipeline();
        assert!(tracker.failed().is_some());
        let (skipped, ended) = tracker.ready(transaction::IDLE);
        assert_eq!((skipped.len(), matches!(ended, Some(Pending::Sync))), (1, true));
        // Pipeline 3: Parse s = SELECT 1 fails at the target (s exists).
        let select = statement(&tracker, "select 1");
        overlay.parsed(b"s", select.clone());
        tracker.push(Pending::Parse { name: Box::from(&b"s"[..]), statement: select });
        tracker.push(Pending::Sync);
        overlay.end_pipeline();
        assert!(tracker.failed().is_some());
        tracker.ready(transaction::IDLE);
        // Pipeline 4: s is what the target holds.
        assert_eq!(text(overlay.statement(&tracker, b"s")), "drop table t");
    }

    #[test]
    fn sql_that_may_change_names_makes_named_ones_unknown() {
        let tracker = Tracker::default();
        let mut overlay = Overlay::default();
        for name in [&b"s"[..], b""] {
            let s = statement(&tracker, "select 1");
            tracker.push(Pending::Parse { name: Box::from(name), statement: s });
            tracker.confirm(msg(backend::PARSE_COMPLETE)).unwrap();
        }
        overlay.executed(true);
        assert_eq!(text(overlay.statement(&tracker, b"s")), "unknown");
        assert_eq!(text(overlay.statement(&tracker, b"")), "select 1", "SQL cannot replace the unnamed statement");
        overlay.end_pipeline();
        tracker.push(Pending::Query { request: 1, started: Instant::now(), statements: 0, denial: None, changes_names: true });
        tracker.ready(transaction::IDLE);
        assert_eq!(text(overlay.statement(&tracker, b"s")), "unknown");
        assert_eq!(text(overlay.statement(&tracker, b"")), "unknown", "a simple query drops the unnamed statement");
    }

    #[test]
    fn the_end_of_a_transaction_drops_portals() {
        let tracker = Tracker::default();
        let overlay = Overlay::default();
        let portal = Arc::new(Portal {
            id: tracker.next_id(),
            statement: Some(statement(&tracker, "select 1")),
            statement_name: String::new(),
            formats: Arc::from([]),
            params: Vec::new(),
            n_params: 0,
            binary_param_types: None,
        });
        tracker.push(Pending::Bind { name: Box::from(&b"p"[..]), portal });
        tracker.confirm(msg(backend::BIND_COMPLETE)).unwrap();
        tracker.push(Pending::Sync);
        tracker.ready(transaction::IN_BLOCK);
        assert!(matches!(overlay.portal(&tracker, b"p"), Lookup::Found(_)), "in a transaction block the portal stays");
        tracker.push(Pending::Sync);
        tracker.ready(transaction::IDLE);
        assert!(matches!(overlay.portal(&tracker, b"p"), Lookup::Unknown));
    }

    #[test]
    fn a_confirmation_of_something_not_asked_is_a_desync() {
        let tracker = Tracker::default();
        tracker.push(Pending::Sync);
        assert!(tracker.confirm(msg(backend::BIND_COMPLETE)).is_err());
        assert!(tracker.confirm(msg(backend::PARSE_COMPLETE)).is_err(), "nothing pending");
    }
}
