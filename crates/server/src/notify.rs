//! Notices of held requests and their decisions, sent to the `[[notify]]` webhooks so that
//! approvers hear of a request without watching the console. Sending never holds up a session:
//! the approvals broker drops a notice into a bounded queue and goes on; a worker delivers each
//! notice to every webhook, retrying a failure a few times with growing pauses, and logs what it
//! could not deliver. A notice carries what an approver needs to decide (requester, task,
//! connection, rule, statement) and a link to the console; the webhook's address is never logged
//! whole, since it may be the secret.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use witness_api::Approval;

use crate::config::{NotifyFormat, NotifyTarget};

/// Notices waiting to be sent; past this, new ones are dropped (and logged).
const QUEUE: usize = 1024;
/// Deliveries in flight at once, over every webhook.
const IN_FLIGHT: usize = 16;
/// Tries per notice and webhook, and the pause before each retry.
const RETRY_PAUSES: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(4), Duration::from_secs(15)];
/// One try may take this long.
const TRY_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to a held request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// A request waits for approval.
    Held,
    /// It was approved, denied or timed out (its `status` says which).
    Decided,
}

impl NoticeKind {
    fn event(self) -> &'static str {
        match self {
            NoticeKind::Held => "approval.held",
            NoticeKind::Decided => "approval.decided",
        }
    }
}

/// The sending end, held by the approvals broker. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<(NoticeKind, Approval)>,
}

impl Notifier {
    /// Starts the worker that delivers to `targets`; None when there are none.
    pub fn start(targets: Vec<NotifyTarget>, console_url: Option<String>) -> Option<Notifier> {
        if targets.is_empty() {
            return None;
        }
        let (queue, notices) = mpsc::channel(QUEUE);
        tokio::spawn(deliver_all(notices, Arc::new(targets), console_url));
        Some(Notifier { queue })
    }

    /// Queues a notice; never waits.
    pub fn send(&self, kind: NoticeKind, approval: &Approval) {
        if let Err(e) = self.queue.try_send((kind, approval.clone())) {
            tracing::warn!(approval = %approval.id, event = kind.event(), error = %e, "a notice was not sent: too many are waiting");
        }
    }
}

async fn deliver_all(mut notices: mpsc::Receiver<(NoticeKind, Approval)>, targets: Arc<Vec<NotifyTarget>>, console_url: Option<String>) {
    let client = match reqwest::Client::builder().timeout(TRY_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the HTTP client for [[notify]]; no notices will be sent");
            return;
        }
    };
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some((kind, approval)) = notices.recv().await {
        for target in targets.iter() {
            let body = body(target.format, kind, &approval, console_url.as_deref());
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let (client, target, id) = (client.clone(), target.clone(), approval.id.clone());
            tokio::spawn(async move {
                deliver(&client, &target, &body, &id, kind).await;
                drop(permit);
            });
        }
    }
}

/// POSTs one notice to one webhook, retrying; logs the outcome.
async fn deliver(client: &reqwest::Client, target: &NotifyTarget, body: &Value, approval: &str, kind: NoticeKind) {
    let bytes = body.to_string();
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        let problem = match client.post(&target.url).header("content-type", "application/json").body(bytes.clone()).send().await {
            Ok(answer) if answer.status().is_success() => return,
            Ok(answer) => format!("answered {}", answer.status()),
            // Without the URL, which reqwest's errors include.
            Err(e) => format!("could not be reached ({})", e.without_url()),
        };
        match pauses.next() {
            Some(pause) => {
                tracing::warn!(webhook = %target.name, approval, event = kind.event(), problem, "a notice failed; trying again");
                tokio::time::sleep(*pause).await;
            }
            None => {
                tracing::error!(webhook = %target.name, approval, event = kind.event(), problem, "a notice could not be delivered; giving up");
                return;
            }
        }
    }
}

/// The notice in the webhook's shape.
fn body(format: NotifyFormat, kind: NoticeKind, approval: &Approval, console_url: Option<&str>) -> Value {
    let link = console_url.map(|url| match kind {
        NoticeKind::Held => format!("{url}/#/approvals"),
        NoticeKind::Decided => format!("{url}/#/sessions/{}", approval.session),
    });
    let text = sentence(kind, approval);
    match format {
        NotifyFormat::Json => json!({ "event": kind.event(), "approval": approval, "link": link, "text": text }),
        NotifyFormat::Slack => {
            let link = link.map(|link| format!(" <{link}|Open in witness>")).unwrap_or_default();
            json!({ "text": format!("{}{link}", slack_escape(&text)) })
        }
    }
}

/// One line a person reads in a chat.
fn sentence(kind: NoticeKind, a: &Approval) -> String {
    let task = a.task.as_deref().map(|task| format!(" (task {task})")).unwrap_or_default();
    let statement: String = a.statement.split_whitespace().collect::<Vec<_>>().join(" ");
    let statement: String =
        if statement.chars().count() > 300 { format!("{}…", statement.chars().take(300).collect::<String>()) } else { statement };
    match kind {
        NoticeKind::Held => format!(
            "{}{task} asks to run on {}: {statement}. Rule \"{}\" holds it for {}: approval {}.",
            a.requester,
            a.connection,
            a.rule,
            a.approvers.join(", "),
            a.id
        ),
        NoticeKind::Decided => {
            let by = a.decided_by.as_deref().map(|by| format!(" by {by}")).unwrap_or_default();
            let reason = a.reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default();
            format!("Approval {} ({} on {}{task}) {}{by}{reason}.", a.id, a.requester, a.connection, a.status.replace('-', " "))
        }
    }
}

/// Slack reads `&`, `<` and `>` as markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> Approval {
        Approval {
            id: "ap-23456789ab".into(),
            session: "0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e".into(),
            requester: "claude".into(),
            connection: "app".into(),
            task: Some("JIRA-42".into()),
            statement: "delete from orders\n  where 1 < 2".into(),
            classes: vec!["delete".into()],
            rule: "deletes-need-approval".into(),
            approvers: vec!["dba".into()],
            requested_at_ms: 1,
            expires_at_ms: 2,
            status: "waiting".into(),
            decided_by: None,
            reason: None,
        }
    }

    #[test]
    fn notices_say_who_asks_for_what_and_where_to_decide() {
        let held = body(NotifyFormat::Json, NoticeKind::Held, &approval(), Some("https://w.example"));
        assert_eq!(held["event"], "approval.held");
        assert_eq!(held["link"], "https://w.example/#/approvals");
        assert_eq!(held["approval"]["statement"], "delete from orders\n  where 1 < 2");
        assert_eq!(
            held["text"],
            "claude (task JIRA-42) asks to run on app: delete from orders where 1 < 2. Rule \"deletes-need-approval\" holds it for dba: approval ap-23456789ab."
        );
        let slack = body(NotifyFormat::Slack, NoticeKind::Held, &approval(), Some("https://w.example"));
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("where 1 &lt; 2") && text.ends_with(" <https://w.example/#/approvals|Open in witness>"), "{text}");
        assert_eq!(slack.as_object().unwrap().len(), 1, "Slack's incoming webhooks take text");

        let mut decided = approval();
        (decided.status, decided.decided_by, decided.reason) = ("denied".into(), Some("dana".into()), Some("use the replica".into()));
        let notice = body(NotifyFormat::Json, NoticeKind::Decided, &decided, None);
        assert_eq!(notice["text"], "Approval ap-23456789ab (claude on app (task JIRA-42)) denied by dana: use the replica.");
        assert_eq!(notice["link"], Value::Null);
    }
}
