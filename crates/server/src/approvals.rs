//! Requests held for a person's decision. The gate puts a request here when a rule says
//! `approve`; the session waits on its [`Held::outcome`]; an approver decides through the API.
//! A request leaves when it is decided, times out, or its session stops waiting (the client left,
//! the session ended): then it can no longer be decided, by anyone. The `[[notify]]` webhooks
//! hear of each request held and of each decision or timeout (`notify.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use witness_api::{Approval, DecideError};
use witness_core::{ApprovalOutcome, Held, Principal};

use crate::notify::{NoticeKind, Notifier};

/// The waiting requests of this witness process.
#[derive(Clone, Default)]
pub struct Approvals {
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    notifier: Option<Notifier>,
}

struct Waiting {
    approval: Approval,
    requester_credential: String,
    decide: oneshot::Sender<ApprovalOutcome>,
}

/// What is held: who asks, for what, under which rule.
pub struct HoldRequest<'a> {
    pub session: String,
    pub requester: &'a Principal,
    pub connection: &'a str,
    pub task: Option<&'a str>,
    pub statement: &'a str,
    pub classes: Vec<String>,
    pub rule: String,
    pub approvers: Vec<String>,
    pub timeout: Duration,
}

/// Statement text shown to approvers is cut here; the recording has all of it.
const MAX_SHOWN_STATEMENT: usize = 4096;

impl Approvals {
    /// A broker whose holds and decisions are told to `notifier`'s webhooks.
    pub fn notifying(notifier: Option<Notifier>) -> Approvals {
        Approvals { waiting: Default::default(), notifier }
    }

    fn notify(&self, kind: NoticeKind, approval: &Approval) {
        if let Some(notifier) = &self.notifier {
            notifier.send(kind, approval);
        }
    }

    /// Holds a request; the returned [`Held`] resolves when it is decided or times out.
    pub fn hold(&self, request: HoldRequest<'_>) -> Held {
        let id = new_id();
        let now = unix_ms(SystemTime::now());
        let approval = Approval {
            id: id.clone(),
            session: request.session,
            requester: request.requester.identity.clone(),
            connection: request.connection.to_string(),
            task: request.task.map(str::to_string),
            statement: cut(request.statement, MAX_SHOWN_STATEMENT),
            classes: request.classes.clone(),
            rule: request.rule.clone(),
            approvers: request.approvers.clone(),
            requested_at_ms: now,
            expires_at_ms: now.saturating_add(request.timeout.as_millis() as u64),
            status: "waiting".into(),
            decided_by: None,
            reason: None,
        };
        self.notify(NoticeKind::Held, &approval);
        let (decide, decided) = oneshot::channel();
        let requester_credential = request.requester.credential.clone();
        self.lock().insert(id.clone(), Waiting { approval, requester_credential, decide });
        let withdraw = Withdraw { approvals: self.clone(), id: id.clone() };
        let timeout = request.timeout;
        let outcome = async move {
            let withdraw = withdraw;
            let mut decided = decided;
            match tokio::time::timeout(timeout, &mut decided).await {
                Ok(Ok(outcome)) => outcome,
                // Removed without a decision: only withdrawal does that, and then nobody waits.
                Ok(Err(_)) => ApprovalOutcome::TimedOut,
                Err(_) => {
                    // Timed out, unless a decision got in between the timer and this lock.
                    let expired = withdraw.approvals.lock().remove(&withdraw.id);
                    if let Some(expired) = expired {
                        let mut approval = expired.approval;
                        approval.status = "timed-out".into();
                        withdraw.approvals.notify(NoticeKind::Decided, &approval);
                        ApprovalOutcome::TimedOut
                    } else {
                        decided.try_recv().unwrap_or(ApprovalOutcome::TimedOut)
                    }
                }
            }
        };
        let approvers = request.approvers.join(", ");
        Held {
            instructions: format!(
                "a member of {approvers} (not you) decides it with `witness approvals approve {id}` or `witness approvals deny {id}`, or POST /api/approvals/{id}/approve"
            ),
            approval_id: id,
            rule: request.rule,
            approvers: request.approvers,
            timeout,
            classes: request.classes,
            outcome: Box::pin(outcome),
        }
    }

    /// The waiting requests `caller` may decide, and their own, oldest first.
    pub fn visible_to(&self, caller: &Principal) -> Vec<Approval> {
        let mut list: Vec<Approval> = self
            .lock()
            .values()
            .filter(|w| w.approval.requester == caller.identity || may_decide(caller, &w.approval))
            .map(|w| w.approval.clone())
            .collect();
        list.sort_by(|a, b| (a.requested_at_ms, &a.id).cmp(&(b.requested_at_ms, &b.id)));
        list
    }

    /// Every waiting request, oldest first (for admins).
    pub fn all(&self) -> Vec<Approval> {
        let mut list: Vec<Approval> = self.lock().values().map(|w| w.approval.clone()).collect();
        list.sort_by(|a, b| (a.requested_at_ms, &a.id).cmp(&(b.requested_at_ms, &b.id)));
        list
    }

    /// Decides a waiting request. The requester cannot decide their own request, whatever their
    /// groups or role, and neither can anyone using the requester's credential. An admin may
    /// decide any other request; anyone else only one that names one of their groups.
    /// `reason` is what the approver says; the requester's client and the record get it.
    pub fn decide(
        &self,
        caller: &Principal,
        id: &str,
        approve: bool,
        admin: bool,
        reason: Option<String>,
    ) -> Result<Approval, DecideError> {
        let mut waiting = self.lock();
        let Some(w) = waiting.get(id) else {
            return Err(DecideError::NotFound { id: id.to_string() });
        };
        if w.approval.requester == caller.identity || w.requester_credential == caller.credential {
            return Err(DecideError::OwnRequest { identity: caller.identity.clone() });
        }
        if !admin && !may_decide(caller, &w.approval) {
            return Err(DecideError::NotAnApprover { identity: caller.identity.clone(), needed: w.approval.approvers.clone() });
        }
        let w = waiting.remove(id).expect("looked up under the same lock");
        let by = caller.identity.clone();
        let outcome = if approve {
            ApprovalOutcome::Approved { by: by.clone(), reason: reason.clone() }
        } else {
            ApprovalOutcome::Denied { by: by.clone(), reason: reason.clone() }
        };
        // Sent under the lock, so a timeout that fires now finds the decision (it takes the lock
        // before looking). "approved" means the decision was delivered; a session that stopped
        // waiting this instant (cancel, disconnect) does not act on it.
        let _ = w.decide.send(outcome);
        drop(waiting);
        let mut approval = w.approval;
        approval.status = if approve { "approved" } else { "denied" }.into();
        approval.decided_by = Some(by);
        approval.reason = reason;
        self.notify(NoticeKind::Decided, &approval);
        Ok(approval)
    }

    /// How many requests wait.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn may_decide(caller: &Principal, approval: &Approval) -> bool {
    approval.approvers.iter().any(|group| caller.groups.contains(group))
}

/// Removes a request when its session stops waiting for it.
struct Withdraw {
    approvals: Approvals,
    id: String,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.id);
    }
}

/// Short enough to type: `ap-` and 10 characters without look-alikes.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    let bytes: [u8; 10] = rand::random();
    let id: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("ap-{id}")
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, groups: &[&str]) -> Principal {
        Principal {
            identity: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            task: None,
            credential: format!("tok_{name}"),
        }
    }

    fn hold(approvals: &Approvals, requester: &Principal, timeout: Duration) -> Held {
        approvals.hold(HoldRequest {
            session: "s1".into(),
            requester,
            connection: "pg-local",
            task: Some("cleanup"),
            statement: "delete from t",
            classes: vec!["delete-without-where".into()],
            rule: "writes-need-approval".into(),
            approvers: vec!["dba".into()],
            timeout,
        })
    }

    #[tokio::test]
    async fn an_approver_decides_but_not_the_requester_nor_a_stranger() {
        let approvals = Approvals::default();
        let agent = principal("agent", &["dba"]);
        let held = hold(&approvals, &agent, Duration::from_secs(600));
        let id = held.approval_id.clone();
        assert!(matches!(approvals.decide(&agent, &id, true, false, None), Err(DecideError::OwnRequest { .. })), "even a requester in dba");
        let stranger = principal("stranger", &["dev"]);
        assert!(matches!(approvals.decide(&stranger, &id, true, false, None), Err(DecideError::NotAnApprover { .. })));
        assert!(approvals.visible_to(&stranger).is_empty());
        assert_eq!(approvals.visible_to(&agent).len(), 1, "requesters see their own");
        assert!(matches!(approvals.decide(&agent, &id, true, true, None), Err(DecideError::OwnRequest { .. })), "not even as an admin");
        assert_eq!(approvals.all().len(), 1, "admins see every waiting request");
        let dba = principal("alice", &["dba"]);
        let decided = approvals.decide(&dba, &id, true, false, None).unwrap();
        assert_eq!((decided.status.as_str(), decided.decided_by.as_deref()), ("approved", Some("alice")));
        assert_eq!(held.outcome.await, ApprovalOutcome::Approved { by: "alice".into(), reason: None });
        assert!(matches!(approvals.decide(&dba, &id, false, false, None), Err(DecideError::NotFound { .. })), "decided once");
    }

    #[tokio::test]
    async fn a_request_times_out_and_a_withdrawn_one_cannot_be_decided() {
        let approvals = Approvals::default();
        let agent = principal("agent", &[]);
        let held = hold(&approvals, &agent, Duration::from_millis(1));
        let id = held.approval_id.clone();
        assert_eq!(held.outcome.await, ApprovalOutcome::TimedOut);
        assert!(matches!(approvals.decide(&principal("alice", &["dba"]), &id, true, false, None), Err(DecideError::NotFound { .. })));

        let held = hold(&approvals, &agent, Duration::from_secs(600));
        let id = held.approval_id.clone();
        assert_eq!(approvals.waiting(), 1);
        drop(held);
        assert_eq!(approvals.waiting(), 0, "dropping the wait withdraws the request");
        assert!(matches!(approvals.decide(&principal("alice", &["dba"]), &id, true, false, None), Err(DecideError::NotFound { .. })));
    }

    #[tokio::test]
    async fn deciding_one_request_leaves_the_others_waiting() {
        let approvals = Approvals::default();
        let agent = principal("agent", &[]);
        let first = hold(&approvals, &agent, Duration::from_secs(600));
        let second = hold(&approvals, &agent, Duration::from_secs(600));
        assert_ne!(first.approval_id, second.approval_id);
        approvals.decide(&principal("alice", &["dba"]), &first.approval_id, false, false, None).unwrap();
        assert_eq!(first.outcome.await, ApprovalOutcome::Denied { by: "alice".into(), reason: None });
        let mut second_outcome = second.outcome;
        assert!(futures_poll_once(&mut second_outcome).is_none(), "the other request still waits");
        assert_eq!(approvals.waiting(), 1);
    }

    fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
