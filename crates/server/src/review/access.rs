//! Grants to read recordings that `[[review.rules]]` cover: the rules, and the book of requests
//! readers made and reviewers decided. Kept in memory, as held statements are: a restart forgets
//! pending requests and grants (readers ask again).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use witness_api::{AccessRequest, DecideError, ReadAccess, SessionView};
use witness_core::{Glob, Principal};

/// Requests kept at most; beyond, the oldest denied or expired ones are forgotten, and a new
/// request is refused when none is.
const MAX_REQUESTS: usize = 10_000;
/// Pending requests one reader may have at once.
const MAX_PENDING_PER_READER: usize = 100;
/// A request nobody decided within this long is dropped.
const PENDING_FOR: Duration = Duration::from_secs(24 * 3600);

/// One `[[review.rules]]` rule: reading recordings of these connections takes a grant from a
/// member of `approvers` (not the reader), lasting `window`.
#[derive(Clone, Debug)]
pub struct ReadRule {
    pub name: String,
    pub connections: Vec<Glob>,
    pub approvers: Vec<String>,
    pub window: Duration,
}

/// The rules and the requests.
#[derive(Default)]
pub struct ReadGrants {
    rules: Vec<ReadRule>,
    book: Mutex<BTreeMap<String, AccessRequest>>,
}

impl ReadGrants {
    pub fn new(rules: Vec<ReadRule>) -> ReadGrants {
        ReadGrants { rules, book: Mutex::default() }
    }

    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether a rule covers the recordings of `connection`.
    pub fn covers(&self, connection: &str) -> bool {
        self.rule_for(connection).is_some()
    }

    /// The groups rules name as approvers (their members may decide, so they have the role).
    pub fn approver_groups(&self) -> impl Iterator<Item = &String> {
        self.rules.iter().flat_map(|r| r.approvers.iter())
    }

    /// The first rule covering the recordings of `connection`: the one that decides.
    fn rule_for(&self, connection: &str) -> Option<&ReadRule> {
        self.rules.iter().find(|r| r.connections.iter().any(|g| g.matches(connection)))
    }

    pub fn access(&self, reader: &Principal, session: &SessionView) -> ReadAccess {
        let Some(rule) = self.rule_for(&session.connection) else { return ReadAccess::Open };
        let now = now_ms();
        let mut book = self.lock();
        expire(&mut book, now);
        let mine = book.values().filter(|r| r.reader == reader.identity && r.session == session.id);
        if let Some(grant) = mine.clone().find(|r| r.status == "granted" && r.rule == rule.name) {
            return ReadAccess::Granted(grant.clone());
        }
        let request = mine.max_by_key(|r| r.requested_at_ms).cloned();
        ReadAccess::Needed { rule: rule.name.clone(), approvers: rule.approvers.clone(), request }
    }

    pub fn request(&self, reader: &Principal, session: &SessionView, reason: String) -> Result<AccessRequest, String> {
        let Some(rule) = self.rule_for(&session.connection) else {
            return Err(format!("no [[review.rules]] rule covers session {}: read it without asking", session.id));
        };
        let now = now_ms();
        let mut book = self.lock();
        expire(&mut book, now);
        let standing = book.values().find(|r| {
            r.reader == reader.identity
                && r.session == session.id
                && r.rule == rule.name
                && matches!(r.status.as_str(), "pending" | "granted")
        });
        if let Some(standing) = standing {
            return Ok(standing.clone());
        }
        if book.values().filter(|r| r.reader == reader.identity && r.status == "pending").count() >= MAX_PENDING_PER_READER {
            return Err(format!("{} has {MAX_PENDING_PER_READER} requests waiting already; wait for decisions", reader.identity));
        }
        if book.len() >= MAX_REQUESTS {
            let mut settled: Vec<(u64, String)> = book
                .values()
                .filter(|r| matches!(r.status.as_str(), "denied" | "expired"))
                .map(|r| (r.requested_at_ms, r.id.clone()))
                .collect();
            settled.sort();
            for (_, id) in settled.iter().take(book.len() + 1 - MAX_REQUESTS) {
                book.remove(id);
            }
            if book.len() >= MAX_REQUESTS {
                return Err(format!("{MAX_REQUESTS} requests to read recordings are pending or granted; decide some first"));
            }
        }
        let request = AccessRequest {
            id: format!("acc_{:016x}", rand::random::<u64>()),
            session: session.id.clone(),
            connection: session.connection.clone(),
            reader: reader.identity.clone(),
            reason,
            rule: rule.name.clone(),
            approvers: rule.approvers.clone(),
            requested_at_ms: now,
            status: "pending".into(),
            decided_by: None,
            decision_reason: None,
            until_ms: None,
        };
        book.insert(request.id.clone(), request.clone());
        Ok(request)
    }

    /// The caller's own requests and those the caller may decide, newest first.
    pub fn list(&self, caller: &Principal, admin: bool) -> Vec<AccessRequest> {
        let mut book = self.lock();
        expire(&mut book, now_ms());
        let mut out: Vec<AccessRequest> =
            book.values().filter(|r| r.reader == caller.identity || may_decide(caller, admin, r)).cloned().collect();
        // A decision whose record is being written is still pending to everyone.
        for request in &mut out {
            if matches!(request.status.as_str(), "granting" | "denying") {
                request.status = "pending".into();
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.requested_at_ms));
        out
    }

    pub fn decide(
        &self,
        caller: &Principal,
        admin: bool,
        id: &str,
        grant: bool,
        reason: Option<String>,
    ) -> Result<AccessRequest, DecideError> {
        let now = now_ms();
        let mut book = self.lock();
        expire(&mut book, now);
        let request = book.get_mut(id).filter(|r| r.status == "pending").ok_or_else(|| DecideError::NoAccessRequest { id: id.into() })?;
        if request.reader == caller.identity {
            return Err(DecideError::OwnRequest { identity: caller.identity.clone() });
        }
        if !may_decide(caller, admin, request) {
            return Err(DecideError::NotAnApprover { identity: caller.identity.clone(), needed: request.approvers.clone() });
        }
        let window = self.rules.iter().find(|r| r.name == request.rule).map_or(Duration::ZERO, |r| r.window);
        // Not in effect until `settle`: a grant counts only once its record is durable.
        request.status = if grant { "granting" } else { "denying" }.into();
        request.decided_by = Some(caller.identity.clone());
        request.decision_reason = reason;
        request.until_ms = grant.then(|| now + window.as_millis() as u64);
        let mut answer = request.clone();
        answer.status = if grant { "granted" } else { "denied" }.into();
        Ok(answer)
    }

    /// A decision's record is durable (`recorded`): it takes effect; or it could not be written:
    /// the request is pending again.
    pub fn settle(&self, id: &str, recorded: bool) {
        let mut book = self.lock();
        let Some(request) = book.get_mut(id) else { return };
        match (request.status.as_str(), recorded) {
            ("granting", true) => request.status = "granted".into(),
            ("denying", true) => request.status = "denied".into(),
            ("granting" | "denying", false) => {
                request.status = "pending".into();
                request.decided_by = None;
                request.decision_reason = None;
                request.until_ms = None;
            }
            _ => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AccessRequest>> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Members of the request's approver groups, or admins, other than the reader.
fn may_decide(caller: &Principal, admin: bool, request: &AccessRequest) -> bool {
    request.reader != caller.identity && (admin || caller.groups.iter().any(|g| request.approvers.contains(g)))
}

/// Grants past their window become `expired`; requests pending too long are dropped.
fn expire(book: &mut BTreeMap<String, AccessRequest>, now: u64) {
    for request in book.values_mut() {
        if request.status == "granted" && request.until_ms.is_some_and(|until| until <= now) {
            request.status = "expired".into();
        }
    }
    book.retain(|_, r| r.status != "pending" || now.saturating_sub(r.requested_at_ms) < PENDING_FOR.as_millis() as u64);
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(identity: &str, groups: &[&str]) -> Principal {
        Principal {
            identity: identity.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            task: None,
            credential: "tok".into(),
        }
    }

    fn session(connection: &str) -> SessionView {
        SessionView {
            id: "s-1".into(),
            identity: "claude".into(),
            connection: connection.into(),
            protocol: "postgres".into(),
            task: None,
            client_addr: None,
            groups: Vec::new(),
            started: String::new(),
            started_ns: 0,
            ended: None,
            ended_ns: None,
            end_reason: None,
            status: "closed".into(),
            events: 3,
            verify: "verified".into(),
            terminal: false,
            live: false,
            denied: 0,
            held: 0,
        }
    }

    #[test]
    fn a_covered_recording_opens_only_under_another_reviewers_grant() {
        let rule = ReadRule {
            name: "prod".into(),
            connections: vec![Glob::new("prod-*")],
            approvers: vec!["security".into()],
            window: Duration::from_secs(3600),
        };
        let grants = ReadGrants::new(vec![rule]);
        let (alice, bob, eve) = (who("alice", &["auditors"]), who("bob", &["security"]), who("eve", &["auditors"]));
        assert_eq!(grants.access(&alice, &session("dev-db")), ReadAccess::Open);
        let prod = session("prod-db");
        assert!(matches!(grants.access(&alice, &prod), ReadAccess::Needed { request: None, .. }));
        let request = grants.request(&alice, &prod, "INC-1".into()).unwrap();
        assert_eq!(grants.request(&alice, &prod, "again".into()).unwrap().id, request.id, "one standing request per reader");
        assert!(matches!(grants.decide(&alice, false, &request.id, true, None), Err(DecideError::OwnRequest { .. })));
        assert!(matches!(grants.decide(&eve, false, &request.id, true, None), Err(DecideError::NotAnApprover { .. })));
        assert_eq!(grants.list(&eve, false), vec![], "eve neither asked nor may decide");
        assert_eq!(grants.list(&bob, false).len(), 1);
        let granted = grants.decide(&bob, false, &request.id, true, Some("ok".into())).unwrap();
        assert!(granted.until_ms.unwrap() > granted.requested_at_ms);
        assert!(matches!(grants.access(&alice, &prod), ReadAccess::Needed { .. }), "not before its record is durable");
        grants.settle(&request.id, false);
        assert_eq!(grants.list(&bob, false)[0].status, "pending", "an unrecorded grant puts the request back");
        grants.decide(&bob, false, &request.id, true, None).unwrap();
        grants.settle(&request.id, true);
        assert!(matches!(grants.access(&alice, &prod), ReadAccess::Granted(_)));
        assert!(matches!(grants.access(&eve, &prod), ReadAccess::Needed { .. }), "a grant is the reader's alone");
        assert!(matches!(grants.decide(&bob, false, &request.id, false, None), Err(DecideError::NoAccessRequest { .. })), "decided once");
    }
}
