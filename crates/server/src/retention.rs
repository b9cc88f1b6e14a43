//! Retention by crypto-shredding: `[[retention]]` rules say how long a session's contents are
//! kept after it ends; a sweep destroys the data keys of the sessions past it (keyring.rs in the
//! ledger), so their sealed contents are gone while their records, hashes and clear metadata
//! stay and the ledger still verifies. A session on legal hold (`witness hold`) is never shred.
//!
//! Order, so that no key is destroyed unrecorded: the `retention.shredded` record naming the
//! sessions, the rule and the time is in the audit trail and on disk (fsynced, whatever the
//! ledger's durability) first, then the keys go. A crash between the two leaves the keys, and
//! the next sweep records and destroys them again. Holds and shredding take one lock
//! (`holds/LOCK`), so a hold placed while a shred is under way waits for it, and a shred that
//! starts after a hold sees it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use witness_core::{kind, Direction, Event, Glob, Protocol, SessionId};
use witness_ledger::{Index, Ledger, SessionFilter, SessionSummary};

use crate::audit::AuditTrail;

/// Holds live here, one empty file per session held: `DATA_DIR/holds/SESSION`.
pub const HOLDS_DIR: &str = "holds";
/// Sessions named in one `retention.shredded` record at most; a bigger sweep writes several.
const MAX_SESSIONS_PER_RECORD: usize = 1000;

/// One `[[retention]]` rule: which sessions, and how long their contents are kept after they end.
/// A rule naming nothing matches every session (a default); the first rule that matches decides.
#[derive(Clone, Debug)]
pub struct RetentionRule {
    /// How the rule is named in the records: its position and what it matches.
    pub name: String,
    pub connection: Option<Glob>,
    pub protocol: Option<Protocol>,
    pub identity: Option<Glob>,
    /// Matches when one of the groups recorded at the session's start matches.
    pub group: Option<Glob>,
    pub keep: Duration,
}

/// A session whose contents are past their rule's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub session: SessionId,
    pub rule: String,
}

impl RetentionRule {
    fn matches(&self, session: &SessionSummary) -> bool {
        let info = &session.info;
        self.connection.as_ref().is_none_or(|g| g.matches(&info.connection))
            && self.protocol.is_none_or(|p| p == info.protocol)
            && self.identity.as_ref().is_none_or(|g| g.matches(&info.identity))
            && self.group.as_ref().is_none_or(|g| info.groups.iter().any(|group| g.matches(group)))
    }
}

/// The ended, unheld sessions of `sessions` whose first matching rule's time has passed at
/// `now_ns`. The audit trail is never expired; neither is a session no rule matches.
pub fn expired(rules: &[RetentionRule], sessions: &[SessionSummary], now_ns: i64, held: impl Fn(SessionId) -> bool) -> Vec<Expired> {
    sessions
        .iter()
        .filter(|s| s.info.protocol != Protocol::Audit && !held(s.id))
        .filter_map(|s| {
            let ended = s.ended_ns?;
            let rule = rules.iter().find(|r| r.matches(s))?;
            let keep_ns = i64::try_from(rule.keep.as_nanos()).unwrap_or(i64::MAX);
            (now_ns.saturating_sub(ended) >= keep_ns).then(|| Expired { session: s.id, rule: rule.name.clone() })
        })
        .collect()
}

/// Whether `session` is on legal hold.
pub fn is_held(data_dir: &Path, session: SessionId) -> bool {
    hold_path(data_dir, session).exists()
}

/// Puts `session` on legal hold (`held = true`) or releases it; returns whether that changed
/// anything. Durable before it returns; waits for a shred under way.
pub fn set_hold(data_dir: &Path, session: SessionId, held: bool) -> std::io::Result<bool> {
    let path = hold_path(data_dir, session);
    let dir = data_dir.join(HOLDS_DIR);
    fs::create_dir_all(&dir)?;
    let lock = holds_lock(data_dir)?;
    lock.lock()?;
    let changed = if held {
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file.sync_all().map(|()| true)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        }
    } else {
        match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        }
    };
    if changed {
        fs::File::open(&dir)?.sync_all()?;
    }
    Ok(changed)
}

fn hold_path(data_dir: &Path, session: SessionId) -> PathBuf {
    data_dir.join(HOLDS_DIR).join(session.to_string())
}

fn holds_lock(data_dir: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = data_dir.join(HOLDS_DIR);
    fs::create_dir_all(&dir)?;
    fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(dir.join("LOCK"))
}

/// Takes `holds/LOCK` without blocking the runtime: tries again every few milliseconds.
async fn lock_holds(data_dir: &Path) -> Result<fs::File, ShredError> {
    let file = holds_lock(data_dir).map_err(ShredError::Holds)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ShredError::Holds(std::io::Error::other("holds/LOCK stayed taken for 30 s (a witness hold command stuck?)")))
            }
            Err(fs::TryLockError::Error(e)) => return Err(ShredError::Holds(e)),
        }
    }
}

/// Why a shred did not happen, or happened only in part.
#[derive(Debug, thiserror::Error)]
pub enum ShredError {
    #[error("the audit trail cannot take the record, so no key was destroyed: {0}")]
    Record(#[from] witness_ledger::LedgerError),
    #[error("cannot take the holds' lock in the data dir, so no key was destroyed: {0}")]
    Holds(std::io::Error),
    #[error("the record is written, but destroying the key of session {session} failed: {source}; its contents are still readable: remove ledger/keys/{session}.key by hand")]
    Destroy { session: SessionId, source: witness_ledger::KeyringError },
}

/// Records that `sessions` are shredded (`why` and `attrs` say by what) and then destroys their
/// data keys. Returns how many keys were destroyed. Sessions without a key (never sealed, or
/// already shredded), still open, or on hold are left out of the record and keep their keys.
pub async fn shred(
    ledger: &Ledger,
    trail: &AuditTrail,
    data_dir: &Path,
    sessions: &[SessionId],
    why: &str,
    attrs: &[(&str, serde_json::Value)],
) -> Result<usize, ShredError> {
    let _holds = lock_holds(data_dir).await?;
    let keyring = ledger.keyring();
    let chosen: Vec<SessionId> = {
        let index = Index::open_snapshot(&ledger.paths().index)?;
        let ended = |id: SessionId| index.session(id).ok().flatten().is_some_and(|s| s.ended_ns.is_some());
        sessions.iter().copied().filter(|s| keyring.has_key(*s) && ended(*s) && !is_held(data_dir, *s)).collect()
    };
    let mut destroyed = 0;
    for batch in chosen.chunks(MAX_SESSIONS_PER_RECORD) {
        let names: Vec<String> = batch.iter().map(SessionId::to_string).collect();
        let summary = format!("shredded the contents of {} session(s): {why}", batch.len());
        let mut event =
            Event::note(kind::RETENTION_SHREDDED, Direction::Gateway, summary).with_attr("sessions", names).with_attr("why", why);
        for (name, value) in attrs {
            event = event.with_attr(name, value.clone());
        }
        trail.append(ledger, &event).await?;
        // On disk before any key goes, whatever the durability mode: a power loss must not leave
        // a destroyed key without its record. (Two fsyncs, rarely: done in place.)
        ledger.sync_to_disk()?;
        for session in batch {
            match keyring.shred(*session) {
                Ok(true) => destroyed += 1,
                Ok(false) => {}
                Err(source) => return Err(ShredError::Destroy { session: *session, source }),
            }
        }
    }
    Ok(destroyed)
}

/// One sweep: finds the expired sessions in the index, confirms each from its own records, and
/// shreds them, one record per rule.
pub async fn sweep(rules: &[RetentionRule], data_dir: &Path, ledger: &Ledger, trail: &AuditTrail) -> Result<usize, ShredError> {
    if rules.is_empty() {
        return Ok(0);
    }
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    // Index queries and two segment reads per candidate: blocking work, kept off the runtime's
    // other tasks (the gateway's runtime has several workers).
    let find = || -> Result<Vec<Expired>, ShredError> {
        let index = Index::open_snapshot(&ledger.paths().index)?;
        let sessions = index.list_sessions(&SessionFilter { open: Some(false), ..SessionFilter::default() })?;
        let keyring = ledger.keyring();
        let sealed: Vec<SessionSummary> = sessions.into_iter().filter(|s| keyring.has_key(s.id)).collect();
        let candidates = expired(rules, &sealed, now_ns, |id| is_held(data_dir, id));
        Ok(confirmed_by_records(&index, &ledger.paths().segments, rules, &sealed, candidates, now_ns))
    };
    let expired = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(find)?,
        _ => find()?,
    };
    let mut destroyed = 0;
    for rule in rules {
        let of_rule: Vec<SessionId> = expired.iter().filter(|e| e.rule == rule.name).map(|e| e.session).collect();
        if of_rule.is_empty() {
            continue;
        }
        let keep = humantime::format_duration(rule.keep).to_string();
        let attrs = [("rule", serde_json::Value::from(rule.name.clone())), ("keep", serde_json::Value::from(keep))];
        destroyed += shred(ledger, trail, data_dir, &of_rule, "retention", &attrs).await?;
    }
    Ok(destroyed)
}

/// The candidates the index found that their records confirm: the index only finds, so an edited
/// session row (another connection, group or end time) never gets a session shredded early or by
/// another rule. A session whose row disagrees with its records is left for verify to report.
fn confirmed_by_records(
    index: &Index,
    segments: &Path,
    rules: &[RetentionRule],
    rows: &[SessionSummary],
    candidates: Vec<Expired>,
    now_ns: i64,
) -> Vec<Expired> {
    let rows: std::collections::HashMap<SessionId, &SessionSummary> = rows.iter().map(|row| (row.id, row)).collect();
    candidates
        .into_iter()
        .filter(|candidate| {
            let Some(row) = rows.get(&candidate.session) else { return false };
            match index.recorded_session(segments, row) {
                Ok(recorded) if recorded.differences.is_empty() => {
                    expired(rules, std::slice::from_ref(&recorded.summary), now_ns, |_| false).first() == Some(candidate)
                }
                Ok(recorded) => {
                    let differences: Vec<String> = recorded.differences.iter().map(ToString::to_string).collect();
                    tracing::warn!(session = %candidate.session, ?differences, "retention: the index disagrees with the session's records, so it is not shredded; run witness verify");
                    false
                }
                Err(e) => {
                    tracing::warn!(session = %candidate.session, error = %e, "retention: cannot read the session's records, so it is not shredded");
                    false
                }
            }
        })
        .collect()
}

/// Sweeps at start and then every `every`, until `stop` turns true.
pub(crate) async fn sweep_loop(
    rules: Vec<RetentionRule>,
    every: Duration,
    data_dir: PathBuf,
    ledger: Arc<Ledger>,
    trail: Arc<AuditTrail>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if rules.is_empty() {
        return;
    }
    loop {
        match sweep(&rules, &data_dir, &ledger, &trail).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "retention: shredded the contents of expired sessions"),
            Err(e) => tracing::error!(error = %e, "retention: the sweep failed; it runs again at the next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use witness_core::SessionInfo;
    use witness_ledger::{LedgerConfig, MasterKey};

    /// A sealed ledger in `dir` with one ended session; its id.
    fn ledger_with_a_session(dir: &Path) -> (Ledger, SessionId) {
        let mut config = LedgerConfig::new(dir);
        config.master_key = Some(MasterKey::from_bytes([3; 32]));
        let ledger = Ledger::open(&config).unwrap();
        let info = SessionInfo {
            identity: "claude".into(),
            connection: "db".into(),
            protocol: Protocol::Postgres,
            task: None,
            client_addr: None,
            groups: Vec::new(),
        };
        let session = ledger.open_session_blocking(&info).unwrap();
        session.append_blocking(&Event::note(kind::PG_QUERY, Direction::Request, "select 1")).unwrap();
        let id = session.id();
        session.close_blocking("done").unwrap();
        // The index has the session once the indexer has caught up: a seal's batch reaches it.
        ledger.seal_blocking().unwrap();
        ledger.rebuild_index().unwrap();
        (ledger, id)
    }

    /// The record comes first: when the audit trail cannot take it, no key is destroyed; when it
    /// can, the key goes and the record names the session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_key_is_destroyed_without_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = tokio::task::block_in_place(|| ledger_with_a_session(dir.path()));
        let broken = AuditTrail::default();
        broken.append(&ledger, &Event::note(kind::RECORDING_VIEWED, Direction::Gateway, "first")).await.unwrap();
        broken.close().await;
        let refused = shred(&ledger, &broken, dir.path(), &[id], "purge", &[]).await;
        assert!(matches!(refused, Err(ShredError::Record(_))), "{refused:?}");
        assert!(ledger.keyring().has_key(id), "the key stays when its record could not be made");

        set_hold(dir.path(), id, true).unwrap();
        let trail = AuditTrail::default();
        assert_eq!(shred(&ledger, &trail, dir.path(), &[id], "purge", &[]).await.unwrap(), 0, "held: kept");
        assert!(ledger.keyring().has_key(id));
        set_hold(dir.path(), id, false).unwrap();
        assert_eq!(shred(&ledger, &trail, dir.path(), &[id], "purge", &[]).await.unwrap(), 1);
        assert!(!ledger.keyring().has_key(id) && ledger.keyring().was_shredded(id));
        trail.close().await;
        tokio::task::block_in_place(|| ledger.shutdown()).unwrap();
    }

    /// The index finds, the records decide: a row edited to match a short rule does not get its
    /// session shredded; the true row does, by the rule its records match.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_shreds_only_what_the_records_confirm() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = tokio::task::block_in_place(|| ledger_with_a_session(dir.path()));
        let trail = AuditTrail::default();
        let prod = [RetentionRule { connection: Some(Glob::new("prod-*")), ..rule("prod", None, 0) }];
        let edit = |connection: &str| {
            let index = rusqlite::Connection::open(&ledger.paths().index).unwrap();
            index.execute("UPDATE sessions SET connection = ?1 WHERE id = ?2", rusqlite::params![connection, &id.as_bytes()[..]]).unwrap();
        };
        edit("prod-db");
        assert_eq!(sweep(&prod, dir.path(), &ledger, &trail).await.unwrap(), 0, "the records say db, not prod-db");
        assert!(ledger.keyring().has_key(id));
        edit("db");
        let db = [RetentionRule { connection: Some(Glob::new("db")), ..rule("db", None, 0) }];
        assert_eq!(sweep(&db, dir.path(), &ledger, &trail).await.unwrap(), 1);
        assert!(!ledger.keyring().has_key(id));
        trail.close().await;
        tokio::task::block_in_place(|| ledger.shutdown()).unwrap();
    }

    fn session(connection: &str, protocol: Protocol, ended_ns: Option<i64>) -> SessionSummary {
        SessionSummary {
            id: SessionId::new(),
            info: SessionInfo {
                identity: "claude".into(),
                connection: connection.into(),
                protocol,
                task: None,
                client_addr: None,
                groups: Vec::new(),
            },
            started_ns: 0,
            ended_ns,
            end_reason: None,
            n_events: 2,
            last_event_ns: 0,
            n_denied: 0,
            n_held: 0,
        }
    }

    fn rule(name: &str, connection: Option<&str>, keep_s: u64) -> RetentionRule {
        RetentionRule {
            name: name.into(),
            connection: connection.map(Glob::new),
            protocol: None,
            identity: None,
            group: None,
            keep: Duration::from_secs(keep_s),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_open_held_and_audit_sessions_are_kept() {
        let s = 1_000_000_000i64;
        let rules = [rule("prod", Some("prod-*"), 100), rule("default", None, 10)];
        let prod_old = session("prod-db", Protocol::Postgres, Some(0));
        let prod_new = session("prod-db", Protocol::Postgres, Some(50 * s));
        let dev_old = session("dev-db", Protocol::Postgres, Some(0));
        let open = session("dev-db", Protocol::Postgres, None);
        let audit = session("review-api", Protocol::Audit, Some(0));
        let held = session("dev-db", Protocol::Ssh, Some(0));
        let all = [prod_old.clone(), prod_new, dev_old.clone(), open, audit, held.clone()];
        let found = expired(&rules, &all, 120 * s, |id| id == held.id);
        assert_eq!(
            found,
            vec![Expired { session: prod_old.id, rule: "prod".into() }, Expired { session: dev_old.id, rule: "default".into() }]
        );
        assert!(expired(&rules[..1], &[dev_old], 120 * s, |_| false).is_empty(), "no rule matches: kept");
    }

    #[test]
    fn a_group_rule_matches_the_groups_recorded_at_the_start() {
        let s = 1_000_000_000i64;
        let contractors = RetentionRule { group: Some(Glob::new("contract*")), ..rule("contractors", None, 10) };
        let rules = [contractors, rule("default", None, 1000)];
        let mut theirs = session("db", Protocol::Postgres, Some(0));
        theirs.info.groups = vec!["ai-agents".into(), "contractors-eu".into()];
        let mut ours = session("db", Protocol::Postgres, Some(0));
        ours.info.groups = vec!["ai-agents".into()];
        let unrecorded = session("db", Protocol::Postgres, Some(0));
        let found = expired(&rules, &[theirs.clone(), ours, unrecorded], 20 * s, |_| false);
        assert_eq!(found, vec![Expired { session: theirs.id, rule: "contractors".into() }], "the others fall to the default");
    }
}
