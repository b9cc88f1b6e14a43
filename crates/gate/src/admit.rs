//! The one admission path every request of every protocol takes once the gate has decided on
//! it: the verdict is written into the request's event, the event is recorded, a held request
//! waits for its decision (or for the client to give up) and that outcome is recorded as
//! `approval.decided`. Only then does the protocol react on its wire, from the returned
//! [`Admission`]: this module never touches a socket. The [`Wire`] a protocol hands in records
//! events its own way (PostgreSQL submits and collects receipts before it forwards; SSH waits
//! for each) and says what the client does while it waits.

use std::time::{Duration, Instant};

use serde_json::Value;
use witness_core::{kind, ApprovalOutcome, Direction, Event, Held, Verdict};

/// What a protocol's wire does during admission.
#[allow(async_fn_in_trait)] // implemented and awaited within one protocol's task; never boxed
pub trait Wire {
    /// A failure that ends the session (the ledger refused a record, the target went away).
    type Error;

    /// Records one event; the request behind it must not reach the target before the record is
    /// in the ledger.
    async fn record(&mut self, event: &Event) -> Result<(), Self::Error>;

    /// The request is held, and recorded as such: let through what came before it and tell the
    /// client how to get it decided.
    async fn hold_begins(&mut self, waiting: &Waiting<'_>) -> Result<(), Self::Error>;

    /// Resolves when the client gives up on the held request; pending while it waits. Dropped
    /// and called again freely: it must not lose what it reads.
    async fn withdrawn(&mut self) -> Withdrawal;

    /// The held request was approved, and the approver said `line` (who, and why); a protocol
    /// that can tell the client something beside the request's own answer does. By default,
    /// nothing is said: the request simply runs.
    async fn approved(&mut self, line: &str) -> Result<(), Self::Error> {
        let _ = line;
        Ok(())
    }
}

/// A held request as the client is told of it.
pub struct Waiting<'a> {
    pub approval_id: &'a str,
    pub rule: &'a str,
    /// How to get it decided (`witness approvals approve …`, the console's page).
    pub instructions: &'a str,
}

/// Why a client stopped waiting for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withdrawal {
    /// The client closed its connection or the channel the request was on.
    ClientLeft,
    /// The client cancelled the request (PostgreSQL's cancel request, Ctrl-C in psql).
    Cancelled,
    /// The session is being ended from outside (a revoked credential, shutdown).
    SessionEnding,
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// It goes on to the target.
    Admitted,
    /// It does not; the protocol tells the client (or, for a client that left, nobody).
    Refused(Refusal),
}

/// Why a request does not reach its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A rule denies it.
    Denied { rule: String, message: String },
    /// An approver denied it.
    /// An approver denied it, perhaps saying why.
    Disapproved { approval_id: String, rule: String, by: String, reason: Option<String> },
    /// Nobody decided within the rule's timeout.
    TimedOut { approval_id: String, rule: String, timeout: Duration },
    /// The client stopped waiting.
    Withdrawn { approval_id: String, why: Withdrawal },
}

/// Puts one decided request through admission: records `event` (if the protocol has one for
/// this request) with the verdict in its attributes and, for a hold, waits out the decision and
/// records it. Errors are the wire's: the session ends.
pub async fn admit<W: Wire>(wire: &mut W, event: Option<Event>, verdict: Verdict) -> Result<Admission, W::Error> {
    if let Some(event) = event {
        wire.record(&with_verdict(event, &verdict)).await?;
    }
    let held = match verdict {
        Verdict::Allow { .. } => return Ok(Admission::Admitted),
        Verdict::Deny { rule, message, .. } => return Ok(Admission::Refused(Refusal::Denied { rule, message })),
        Verdict::Hold(held) => held,
    };
    let Held { approval_id, rule, timeout, instructions, mut outcome, .. } = held;
    wire.hold_begins(&Waiting { approval_id: &approval_id, rule: &rule, instructions: &instructions }).await?;
    let started = Instant::now();
    let ended = tokio::select! {
        decided = &mut outcome => Ok(decided),
        why = wire.withdrawn() => Err(why),
    };
    // Withdraws the request from the approvals broker if it is still waiting.
    drop(outcome);
    let waited_ms = started.elapsed().as_millis() as u64;
    let (outcome_name, by, reason, admission) = match ended {
        Ok(ApprovalOutcome::Approved { by, reason }) => ("approved", Some(by), reason, Admission::Admitted),
        Ok(ApprovalOutcome::Denied { by, reason }) => {
            let refusal =
                Refusal::Disapproved { approval_id: approval_id.clone(), rule: rule.clone(), by: by.clone(), reason: reason.clone() };
            ("denied", Some(by), reason, Admission::Refused(refusal))
        }
        Ok(ApprovalOutcome::TimedOut) => {
            let refusal = Refusal::TimedOut { approval_id: approval_id.clone(), rule: rule.clone(), timeout };
            ("timed-out", None, None, Admission::Refused(refusal))
        }
        Err(why) => {
            let name = if why == Withdrawal::Cancelled { "cancelled" } else { "withdrawn" };
            (name, None, None, Admission::Refused(Refusal::Withdrawn { approval_id: approval_id.clone(), why }))
        }
    };
    let mut summary = format!("approval {approval_id} {}", outcome_name.replace('-', " "));
    match (&by, &admission) {
        (Some(by), _) => summary.push_str(&format!(" by {by}")),
        (None, Admission::Refused(Refusal::Withdrawn { why, .. })) => summary.push_str(&format!(": {}", why.describe())),
        _ => {}
    }
    let approved_line = match (&admission, &by, &reason) {
        (Admission::Admitted, Some(by), Some(reason)) => Some(format!("witness approval {approval_id} was approved by {by}: {reason}")),
        _ => None,
    };
    let mut decided = Event::note(kind::APPROVAL_DECIDED, Direction::Gateway, summary)
        .with_attr("approval_id", approval_id)
        .with_attr("rule", rule)
        .with_attr("outcome", outcome_name)
        .with_attr("waited_ms", waited_ms);
    if let Some(by) = by {
        decided = decided.with_attr("by", by);
    }
    if let Some(reason) = reason {
        decided = decided.with_attr("reason", reason);
    }
    wire.record(&decided).await?;
    if let Some(line) = approved_line {
        wire.approved(&line).await?;
    }
    Ok(admission)
}

/// The request's event with the gate's verdict in its attributes: `decision` and `rule` (none
/// for an allow no rule gave), the request's `classes` when refused or held, and a hold's
/// `approval_id` and `approvers`.
pub fn with_verdict(event: Event, verdict: &Verdict) -> Event {
    match verdict {
        Verdict::Allow { rule: None } => event,
        Verdict::Allow { rule: Some(rule) } => event.with_attr("decision", "allow").with_attr("rule", rule.clone()),
        Verdict::Deny { rule, classes, .. } => {
            event.with_attr("decision", "deny").with_attr("rule", rule.clone()).with_attr("classes", strings(classes))
        }
        Verdict::Hold(held) => event
            .with_attr("decision", "hold")
            .with_attr("rule", held.rule.clone())
            .with_attr("approval_id", held.approval_id.clone())
            .with_attr("approvers", strings(&held.approvers))
            .with_attr("classes", strings(&held.classes)),
    }
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

// === impl Withdrawal ===

impl Withdrawal {
    fn describe(self) -> &'static str {
        match self {
            Withdrawal::ClientLeft => "the client left",
            Withdrawal::Cancelled => "the client cancelled the request",
            Withdrawal::SessionEnding => "the session is ending",
        }
    }
}

// === impl Refusal ===

impl Refusal {
    /// One sentence for the client saying why its request did not run; `what` names the request
    /// as the client knows it ("statement", "exec", "shell").
    pub fn explain(&self, what: &str) -> String {
        match self {
            Refusal::Denied { rule, message } => format!("denied by witness rule \"{rule}\": {message}"),
            Refusal::Disapproved { approval_id, rule, by, reason } => {
                let said = reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default();
                format!("denied by {by} (witness approval {approval_id}, rule \"{rule}\"){said}")
            }
            Refusal::TimedOut { approval_id, rule, timeout } => {
                format!(
                    "witness approval {approval_id} (rule \"{rule}\") was not decided within {}; the {what} did not run",
                    humanize(*timeout)
                )
            }
            Refusal::Withdrawn { approval_id, why } => {
                format!("witness approval {approval_id} was withdrawn ({}); the {what} did not run", why.describe())
            }
        }
    }
}

/// A duration as people write it in config: `300 ms`, `90 s`, `10 min`, `2 h`.
pub fn humanize(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{} ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

impl Waiting<'_> {
    /// The line that tells the client its request waits; `what` names it as the client knows it.
    pub fn line(&self, what: &str) -> String {
        format!("witness holds this {what} for approval {} (rule \"{}\"); it runs once an approver allows it", self.approval_id, self.rule)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use witness_core::{kind, ApprovalOutcome, Direction, Event, Held, Verdict};

    use super::*;

    /// A wire that keeps what it is given; `withdraws` says whether (and why) its client gives up.
    #[derive(Default)]
    struct Recorded {
        events: Vec<Event>,
        hold_lines: Vec<String>,
        approved_lines: Vec<String>,
        withdraws: Option<Withdrawal>,
        refuse_records: bool,
    }

    impl Wire for Recorded {
        type Error = &'static str;

        async fn record(&mut self, event: &Event) -> Result<(), &'static str> {
            if self.refuse_records {
                return Err("the ledger refused");
            }
            self.events.push(event.clone());
            Ok(())
        }

        async fn hold_begins(&mut self, waiting: &Waiting<'_>) -> Result<(), &'static str> {
            self.hold_lines.push(waiting.line("statement"));
            Ok(())
        }

        async fn withdrawn(&mut self) -> Withdrawal {
            match self.withdraws {
                Some(why) => why,
                None => std::future::pending().await,
            }
        }

        async fn approved(&mut self, line: &str) -> Result<(), &'static str> {
            self.approved_lines.push(line.to_string());
            Ok(())
        }
    }

    fn request() -> Event {
        Event::text(kind::PG_QUERY, Direction::Request, "delete from t", "delete from t")
    }

    fn held(outcome: Option<ApprovalOutcome>) -> Verdict {
        Verdict::Hold(Held {
            approval_id: "ap-1".into(),
            rule: "writes".into(),
            approvers: vec!["dba".into()],
            timeout: Duration::from_secs(600),
            classes: vec!["delete-without-where".into()],
            instructions: "witness approvals approve ap-1".into(),
            outcome: match outcome {
                Some(outcome) => Box::pin(async move { outcome }),
                None => Box::pin(std::future::pending()),
            },
        })
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
    }

    #[test]
    fn an_allowed_request_is_recorded_with_the_rule_that_allowed_it() {
        let mut wire = Recorded::default();
        let admission = run(admit(&mut wire, Some(request()), Verdict::Allow { rule: Some("reads".into()) })).unwrap();
        assert_eq!(admission, Admission::Admitted);
        assert_eq!((wire.events[0].attrs["decision"].as_str(), wire.events[0].attrs["rule"].as_str()), (Some("allow"), Some("reads")));
        let mut plain = Recorded::default();
        run(admit(&mut plain, Some(request()), Verdict::Allow { rule: None })).unwrap();
        assert!(plain.events[0].attrs.is_empty(), "no rule, no decision attributes");
    }

    #[test]
    fn a_denied_request_is_recorded_before_it_is_refused() {
        let mut wire = Recorded::default();
        let verdict = Verdict::Deny { rule: "no-drop".into(), message: "ask a DBA".into(), classes: vec!["drop".into()] };
        let admission = run(admit(&mut wire, Some(request()), verdict)).unwrap();
        let Admission::Refused(refusal) = admission else { panic!("{admission:?}") };
        assert_eq!(refusal.explain("statement"), "denied by witness rule \"no-drop\": ask a DBA");
        assert_eq!(wire.events.len(), 1);
        assert_eq!(wire.events[0].attrs["decision"], "deny");
        assert_eq!(wire.events[0].attrs["classes"], serde_json::json!(["drop"]));
        // A refusal the ledger cannot record is the session's end, not a refusal.
        let mut failing = Recorded { refuse_records: true, ..Recorded::default() };
        let verdict = Verdict::Deny { rule: "no-drop".into(), message: "m".into(), classes: vec![] };
        assert_eq!(run(admit(&mut failing, Some(request()), verdict)), Err("the ledger refused"));
    }

    #[test]
    fn a_held_request_waits_and_its_decision_is_recorded_after_it() {
        let mut wire = Recorded::default();
        let approved =
            run(admit(&mut wire, Some(request()), held(Some(ApprovalOutcome::Approved { by: "dana".into(), reason: None })))).unwrap();
        assert_eq!(approved, Admission::Admitted);
        assert_eq!(
            wire.hold_lines,
            ["witness holds this statement for approval ap-1 (rule \"writes\"); it runs once an approver allows it"]
        );
        let kinds: Vec<&str> = wire.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["pg.query", "approval.decided"]);
        assert_eq!(wire.events[0].attrs["decision"], "hold");
        assert_eq!(wire.events[0].attrs["approval_id"], "ap-1");
        let decided = &wire.events[1];
        assert_eq!((decided.attrs["outcome"].as_str(), decided.attrs["by"].as_str()), (Some("approved"), Some("dana")));
        assert_eq!(decided.summary, "approval ap-1 approved by dana");
        assert!(wire.approved_lines.is_empty(), "nothing said, nothing told");

        let mut wire = Recorded::default();
        let said = ApprovalOutcome::Approved { by: "dana".into(), reason: Some("one-off cleanup".into()) };
        assert_eq!(run(admit(&mut wire, Some(request()), held(Some(said)))).unwrap(), Admission::Admitted);
        assert_eq!(wire.approved_lines, ["witness approval ap-1 was approved by dana: one-off cleanup"]);
        assert_eq!(wire.events[1].attrs["reason"], "one-off cleanup");

        let mut wire = Recorded::default();
        let denied =
            run(admit(&mut wire, Some(request()), held(Some(ApprovalOutcome::Denied { by: "dana".into(), reason: None })))).unwrap();
        let Admission::Refused(refusal) = denied else { panic!() };
        assert_eq!(refusal.explain("statement"), "denied by dana (witness approval ap-1, rule \"writes\")");
        assert_eq!(wire.events[1].attrs["outcome"], "denied");

        // What the approver says reaches the client and the record.
        let mut wire = Recorded::default();
        let said = ApprovalOutcome::Denied { by: "dana".into(), reason: Some("use the replica".into()) };
        let Admission::Refused(refusal) = run(admit(&mut wire, Some(request()), held(Some(said)))).unwrap() else { panic!() };
        assert_eq!(refusal.explain("statement"), "denied by dana (witness approval ap-1, rule \"writes\"): use the replica");
        assert_eq!(wire.events[1].attrs["reason"], "use the replica");

        let mut wire = Recorded::default();
        let Admission::Refused(refusal) = run(admit(&mut wire, Some(request()), held(Some(ApprovalOutcome::TimedOut)))).unwrap() else {
            panic!()
        };
        assert!(refusal.explain("exec").ends_with("was not decided within 10 min; the exec did not run"), "{}", refusal.explain("exec"));
        assert_eq!(
            (wire.events[1].attrs["outcome"].as_str(), wire.events[1].summary.as_str()),
            (Some("timed-out"), "approval ap-1 timed out")
        );
    }

    #[test]
    fn a_client_that_stops_waiting_withdraws_its_request() {
        for (why, outcome, summary) in [
            (Withdrawal::ClientLeft, "withdrawn", "approval ap-1 withdrawn: the client left"),
            (Withdrawal::Cancelled, "cancelled", "approval ap-1 cancelled: the client cancelled the request"),
            (Withdrawal::SessionEnding, "withdrawn", "approval ap-1 withdrawn: the session is ending"),
        ] {
            let mut wire = Recorded { withdraws: Some(why), ..Recorded::default() };
            let admission = run(admit(&mut wire, Some(request()), held(None))).unwrap();
            assert_eq!(admission, Admission::Refused(Refusal::Withdrawn { approval_id: "ap-1".into(), why }));
            assert_eq!((wire.events[1].attrs["outcome"].as_str(), wire.events[1].summary.as_str()), (Some(outcome), summary));
        }
    }
}
