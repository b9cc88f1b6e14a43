//! What people do on the host with the `witness` CLI (create or revoke a token, add or remove a
//! key, show, replay, search or export recordings), handed to the audit trail.
//!
//! The CLI cannot append to the ledger itself: a running witness is its one writer (it holds
//! `ledger/LOCK`). So the CLI writes each action as one small synced file into
//! `DATA_DIR/audit-spool/` ([`spool`]): before it shows a recording, so that a view that cannot
//! be recorded is not shown, and after it changes a credential, so that the record can name the
//! token or key. The gateway appends what it finds there to its audit trail when it starts and
//! then every second ([`drain_loop`]), and removes a file only once its record is durable. An
//! action taken while no witness runs waits in the spool for the next start; the record keeps
//! the time it was taken (`acted_ns`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use witness_core::{kind, Direction, Event, EventKind};
use witness_ledger::Ledger;

use crate::audit::AuditTrail;

/// The spool's directory inside the data dir.
pub const SPOOL_DIR: &str = "audit-spool";
/// How often a running witness looks into the spool.
const DRAIN_EVERY: Duration = Duration::from_secs(1);
/// A spooled action is a few hundred bytes; a bigger file is not one witness wrote.
const MAX_ACTION_BYTES: u64 = 64 * 1024;
/// Kinds a host action may have: the audit trail's own vocabulary, nothing a session records.
const HOST_KINDS: [&EventKind; 10] = [
    &kind::TOKEN_CREATED,
    &kind::TOKEN_REVOKED,
    &kind::KEY_ADDED,
    &kind::KEY_REMOVED,
    &kind::RECORDING_VIEWED,
    &kind::RECORDING_SEARCHED,
    &kind::RECORDING_EXPORTED,
    &kind::RETENTION_SHREDDED,
    &kind::RETENTION_HELD,
    &kind::RETENTION_RELEASED,
];

/// One action taken with the CLI, as it waits in the spool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostAction {
    pub kind: String,
    /// The host user who ran the command (`root (uid 0)`).
    pub actor: String,
    /// What was done, in words (`token tok_… for claude`).
    pub what: String,
    /// The session it concerned, if one.
    pub session: Option<String>,
    /// When it was done, in nanoseconds since the Unix epoch.
    pub acted_ns: i64,
    /// Why, as the person gave it (a ticket), for a view of recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why an action could not be handed to the audit trail.
#[derive(Debug, thiserror::Error)]
#[error("cannot record this action for the audit trail in {dir}: {source}; nothing was shown or the change is not audited, check that the data dir is witness's and writable")]
pub struct SpoolError {
    dir: PathBuf,
    source: std::io::Error,
}

impl HostAction {
    /// An action of `kind` taken now by the user running this process.
    pub fn now(kind: &EventKind, actor: impl Into<String>, what: impl Into<String>) -> HostAction {
        let acted_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        HostAction { kind: kind.to_string(), actor: actor.into(), what: what.into(), session: None, acted_ns, reason: None }
    }

    pub fn of_session(mut self, session: impl Into<String>) -> HostAction {
        self.session = Some(session.into());
        self
    }

    pub fn because(mut self, reason: Option<String>) -> HostAction {
        self.reason = reason;
        self
    }

    /// The audit record of this action; `None` for a kind that is not a host action's.
    fn event(&self) -> Option<Event> {
        let kind = HOST_KINDS.iter().find(|k| k.as_str() == self.kind)?;
        let target = self.session.as_deref().map(|s| format!(" of session {s}")).unwrap_or_default();
        let summary = format!("{} {}: {}{target} (witness CLI on the host)", self.actor, self.kind, self.what);
        let mut event = Event::note((*kind).clone(), Direction::Gateway, summary)
            .with_attr("actor", self.actor.clone())
            .with_attr("credential", "host")
            .with_attr("what", self.what.clone())
            .with_attr("acted_ns", self.acted_ns);
        if let Some(session) = &self.session {
            event = event.with_attr("session", session.clone());
        }
        if let Some(reason) = &self.reason {
            event = event.with_attr("reason", reason.clone());
        }
        Some(event)
    }
}

/// Writes `action` into the spool of `data_dir` and syncs it; once this returns, the action
/// reaches the audit trail even if this process dies now.
pub fn spool(data_dir: &Path, action: &HostAction) -> Result<(), SpoolError> {
    let dir = data_dir.join(SPOOL_DIR);
    let failed = |source| SpoolError { dir: dir.clone(), source };
    fs::create_dir_all(&dir).map_err(failed)?;
    let unique: u64 = rand::random();
    // Named by time first, so that the drain appends actions in the order they were taken.
    let name = format!("{:020}-{unique:016x}", action.acted_ns);
    let partial = dir.join(format!("{name}.partial"));
    let body = serde_json::to_vec(action).map_err(|e| failed(e.into()))?;
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&partial).map_err(failed)?;
    file.write_all(&body).and_then(|()| file.sync_all()).map_err(failed)?;
    fs::rename(&partial, dir.join(format!("{name}.json"))).map_err(failed)?;
    fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(failed)
}

/// Appends what waits in the spool to the audit trail, at start, then every second, and once
/// more when `stop` turns true (what was spooled meanwhile goes in before the trail closes).
pub(crate) async fn drain_loop(
    data_dir: PathBuf,
    trail: Arc<AuditTrail>,
    ledger: Arc<Ledger>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        drain(&data_dir, &trail, &ledger).await;
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(DRAIN_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
}

/// One pass over the spool: each action in the order taken, its file removed once its record is
/// durable. A file that is not a host action is renamed `*.rejected` and logged, never recorded.
async fn drain(data_dir: &Path, trail: &AuditTrail, ledger: &Ledger) -> usize {
    let dir = data_dir.join(SPOOL_DIR);
    let Ok(entries) = fs::read_dir(&dir) else { return 0 };
    let mut waiting: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    waiting.sort();
    let mut recorded = 0;
    for path in waiting {
        let event = match read_action(&path) {
            Ok(action) => action.event().ok_or_else(|| format!("{:?} is not a kind the CLI records", action.kind)),
            Err(why) => Err(why),
        };
        let event = match event {
            Ok(event) => event,
            Err(why) => {
                tracing::error!(file = %path.display(), why, "the audit spool holds a file witness cannot take as a CLI action; renamed *.rejected, not recorded");
                let _ = fs::rename(&path, path.with_extension("rejected"));
                continue;
            }
        };
        // A purge (`witness purge`) is recorded by the shredding itself, before the key goes.
        let appended = match purged_session(&event) {
            Some(session) => {
                let attrs: Vec<(&str, serde_json::Value)> =
                    event.attrs.iter().filter(|(name, _)| name.as_str() != "session").map(|(n, v)| (n.as_str(), v.clone())).collect();
                match crate::retention::shred(ledger, trail, data_dir, &[session], "purge", &attrs).await {
                    Ok(_) => Ok(()),
                    // Recorded, but the key stayed: set the request aside (retrying would record
                    // the purge again and again) and say so.
                    Err(e @ crate::retention::ShredError::Destroy { .. }) => {
                        tracing::error!(file = %path.display(), error = %e, "a purge was recorded but its key could not be destroyed; renamed *.failed");
                        let _ = fs::rename(&path, path.with_extension("failed"));
                        continue;
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            None => trail.append(ledger, &event).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = appended {
            tracing::error!(error = %e, "the audit trail cannot record a CLI action; it stays in the spool");
            return recorded;
        }
        if let Err(e) = fs::remove_file(&path) {
            // Left in place it would be recorded twice; better to stop draining and say so.
            tracing::error!(file = %path.display(), error = %e, "cannot remove a recorded CLI action from the audit spool");
            return recorded;
        }
        recorded += 1;
    }
    recorded
}

/// Drains the spool of `data_dir` into `ledger` while no gateway runs (the CLI opened the
/// ledger itself): what `witness purge` and `witness hold` use to take effect at once.
pub async fn drain_offline(data_dir: &Path, ledger: &Ledger) -> usize {
    let trail = AuditTrail::default();
    let recorded = drain(data_dir, &trail, ledger).await;
    trail.close().await;
    recorded
}

/// The session a spooled purge names, if `event` is one.
fn purged_session(event: &Event) -> Option<witness_core::SessionId> {
    if event.kind != kind::RETENTION_SHREDDED {
        return None;
    }
    event.attrs.get("session")?.as_str()?.parse().ok()
}

/// The action a spool file holds, or why it holds none (unreadable, e.g. written by another
/// user than witness's; too large; not an action).
fn read_action(path: &Path) -> Result<HostAction, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot open it ({e}); run the CLI as witness's user"))?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size > MAX_ACTION_BYTES {
        return Err(format!("{size} bytes, more than an action takes"));
    }
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| format!("not an action: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_becomes_an_audit_record_naming_the_host_user_and_the_time_it_was_taken() {
        let action = HostAction::now(&kind::TOKEN_CREATED, "root (uid 0)", "token tok_1 for claude").of_session("abc");
        let event = action.event().expect("a host action's kind");
        assert_eq!(event.kind, kind::TOKEN_CREATED);
        assert_eq!(event.attrs["actor"], "root (uid 0)");
        assert_eq!(event.attrs["credential"], "host");
        assert_eq!(event.attrs["session"], "abc");
        assert_eq!(event.attrs["acted_ns"], action.acted_ns);
    }

    #[test]
    fn a_kind_that_sessions_record_is_not_a_host_action() {
        let action = HostAction::now(&kind::PG_QUERY, "root (uid 0)", "drop table t");
        assert!(action.event().is_none());
    }

    #[test]
    fn spooled_actions_are_read_back_in_the_order_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = HostAction { acted_ns: 1, ..HostAction::now(&kind::TOKEN_CREATED, "a", "one") };
        let second = HostAction { acted_ns: 2, ..HostAction::now(&kind::TOKEN_REVOKED, "a", "two") };
        spool(dir.path(), &second).unwrap();
        spool(dir.path(), &first).unwrap();
        let mut names: Vec<PathBuf> = fs::read_dir(dir.path().join(SPOOL_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        let read: Vec<HostAction> = names.iter().map(|p| read_action(p).unwrap()).collect();
        assert!(read_action(&dir.path().join("missing.json")).unwrap_err().contains("cannot open"));
        assert_eq!(read, vec![first, second]);
    }
}
