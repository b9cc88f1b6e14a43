//! `witness sessions list|show`: find sessions through the index and show them as their records
//! give them: a session's facts from its `session.start` and latest record, each event from its
//! record. Where the index disagrees with the records, a warning on stderr says how; an index entry
//! that leads to another session's record stops `show`. `show --follow` tails a live session by
//! polling the index, which the running witness commits every 20 ms.
//!
//! Every verb that takes a session id takes the start of one (`resolve_session`), so that people
//! can copy the first digits `sessions list` prints.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use witness_core::{kind, PayloadType, Protocol, SessionId, SessionIdPrefix};
use witness_ledger::{
    check_indexed_event, open_index, read_event_at, EventSummary, Index, IndexProblemKind, Keyring, LedgerPaths, Opener, RecordedSession,
    SealState, SessionFilter, SessionSummary, StoredEvent,
};

use crate::audited;
use crate::locate::data_dir;
use crate::output::{self, parse_since, time};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List(ListArgs),
    /// Show the events of one session, in order, with their payloads.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only sessions of this identity.
    #[arg(long)]
    identity: Option<String>,
    /// Only sessions through this connection.
    #[arg(long)]
    connection: Option<String>,
    /// Only sessions whose task contains this text.
    #[arg(long)]
    task: Option<String>,
    /// Only sessions of this protocol (postgres, ssh, …). The audit trail of the review API
    /// (protocol `audit`) is listed only when asked for by name.
    #[arg(long)]
    protocol: Option<String>,
    /// Only sessions with a statement or command containing this text (ASCII case ignored).
    #[arg(long)]
    text: Option<String>,
    /// Only sessions that started since: a time (2026-11-22T10:00:00Z) or a duration back (2h).
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// At most this many sessions (the newest, or with --oldest-first the oldest).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// List the oldest first.
    #[arg(long)]
    oldest_first: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The session: its id as `sessions list` prints it, or its first digits if no other
    /// session's id starts with them.
    id: SessionIdPrefix,
    /// Only events whose kind starts with one of these, comma-separated (pg.query,ssh.exec).
    #[arg(long, value_delimiter = ',', value_name = "PREFIXES")]
    kinds: Vec<String>,
    /// At most this many events (the first that match); with --follow, stop after them.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Go on printing events as they are recorded until the session ends (or witness stops).
    /// With --json: one JSON object per line, the session first, then each event.
    #[arg(long, short)]
    follow: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Which of a session's events `show` prints.
#[derive(Clone, Debug, Default)]
pub struct EventSelection {
    /// Kind prefixes; empty for every kind.
    pub kinds: Vec<String>,
    pub limit: Option<u64>,
}

/// How often `show --follow` looks for new events. The index is committed every 20 ms; people
/// reading along do not notice a fifth of a second.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `resolve_session` names at most this many of the sessions an ambiguous prefix matches.
const AMBIGUOUS_SHOWN: usize = 5;

pub fn run(cli: &Cli, cmd: &SessionsCommand) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(cli)?;
    let index = open_index(&data_dir).with_context(|| format!("cannot read the ledger index in {}", data_dir.display()))?;
    match cmd {
        SessionsCommand::List(args) => {
            if let Some(text) = &args.text {
                audited::read(cli, &data_dir, &kind::RECORDING_SEARCHED, format!("sessions list --text {text:?}"), None)?;
            }
            let filter = SessionFilter {
                identity: args.identity.clone(),
                connection: args.connection.clone(),
                task: args.task.clone(),
                exclude_protocol: args.protocol.is_none().then(|| Protocol::Audit.as_str().to_string()),
                protocol: args.protocol.clone(),
                text: args.text.clone(),
                since_ns: args.since,
                limit: args.limit,
                newest_first: !args.oldest_first,
                ..SessionFilter::default()
            };
            let segments = LedgerPaths::new(&data_dir).segments;
            let mut sessions = Vec::new();
            for row in index.list_sessions(&filter)? {
                let recorded = index.recorded_session(&segments, &row)?;
                warn_differences(&recorded);
                sessions.push(recorded);
            }
            if args.json {
                let list: Vec<_> = sessions.iter().map(recorded_json).collect();
                output::print_line(&serde_json::to_string_pretty(&list)?)?;
            } else {
                // A reader that has gone (`| head`) ends the output quietly (see `main`).
                let mut out = std::io::stdout().lock();
                print_table(&mut out, &sessions.iter().map(|r| r.summary.clone()).collect::<Vec<_>>())?;
                out.flush()?;
            }
        }
        SessionsCommand::Show(args) => {
            let id = resolve_session(&index, &args.id, &data_dir)?;
            drop(index);
            let what = if args.follow { "sessions show --follow" } else { "sessions show" };
            audited::read(cli, &data_dir, &kind::RECORDING_VIEWED, what, Some(id))?;
            let selection = EventSelection { kinds: args.kinds.clone(), limit: args.limit };
            let keyring = crate::locate::keyring(cli, &data_dir)?;
            let read = read_session_selected(&data_dir, id, &selection, &keyring)?;
            if args.follow {
                follow(&data_dir, read, &selection, args.json, &keyring)?;
            } else if args.json {
                let mut out = session_json(&read.summary);
                out["events"] = read.events.iter().map(event_json).collect();
                output::print_line(&serde_json::to_string_pretty(&out)?)?;
            } else {
                let mut out = std::io::stdout().lock();
                print_header(&mut out, &read.summary)?;
                for e in &read.events {
                    print_event(&mut out, read.summary.started_ns, e)?;
                }
                out.flush()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The one session whose id starts with `prefix`, or an error naming the sessions it could be.
pub fn resolve_session(index: &Index, prefix: &SessionIdPrefix, data_dir: &Path) -> anyhow::Result<SessionId> {
    let found = index.sessions_with_prefix(prefix, AMBIGUOUS_SHOWN + 1)?;
    match found.as_slice() {
        [id] => Ok(*id),
        [] => match prefix.whole_id() {
            Some(id) => anyhow::bail!("no session {id} in {}; list them with `witness sessions list`", data_dir.display()),
            None => anyhow::bail!("no session id starts with {prefix} in {}; list them with `witness sessions list`", data_dir.display()),
        },
        several => {
            let shown: Vec<String> = several.iter().take(AMBIGUOUS_SHOWN).map(ToString::to_string).collect();
            let more = if several.len() > AMBIGUOUS_SHOWN { ", …" } else { "" };
            anyhow::bail!("{prefix} is ambiguous: it starts the ids of {}{more}; give more of the id", shown.join(", "))
        }
    }
}

/// [`resolve_session`] in the index of `data_dir`, for verbs that read the session otherwise.
pub fn resolve_in(data_dir: &Path, prefix: &SessionIdPrefix) -> anyhow::Result<SessionId> {
    let index = open_index(data_dir).with_context(|| format!("cannot read the ledger index in {}", data_dir.display()))?;
    resolve_session(&index, prefix, data_dir)
}

/// A session's summary and every event of it, as its records give them.
pub fn read_session(data_dir: &Path, id: SessionId, keyring: &Keyring) -> anyhow::Result<(SessionSummary, Vec<StoredEvent>)> {
    let read = read_session_selected(data_dir, id, &EventSelection::default(), keyring)?;
    Ok((read.summary, read.events))
}

/// What `read_session_selected` read: the session, the events selected, and the seq after the
/// last event the index listed (where following goes on).
pub struct SessionRead {
    pub summary: SessionSummary,
    pub events: Vec<StoredEvent>,
    pub next_seq: u64,
    /// Whether the index already had the session's last event (its `session.end`).
    pub ended: bool,
}

/// A session's summary and the events `selection` picks, as their records give them. Only the
/// picked events are read from the segments.
/// Sealed events are opened with `keyring`.
pub fn read_session_selected(data_dir: &Path, id: SessionId, selection: &EventSelection, keyring: &Keyring) -> anyhow::Result<SessionRead> {
    let index = open_index(data_dir).with_context(|| format!("cannot read the ledger index in {}", data_dir.display()))?;
    let row =
        index.session(id)?.with_context(|| format!("no session {id} in {}; list them with `witness sessions list`", data_dir.display()))?;
    let paths = LedgerPaths::new(data_dir);
    let recorded = index.recorded_session(&paths.segments, &row)?;
    warn_differences(&recorded);
    let listed = index.events(id)?;
    if let Some((e, expected)) = listed.iter().zip(0..).find(|(e, expected)| e.seq != *expected) {
        eprintln!(
            "warning: session {id}: the index lists seq {} where seq {expected} comes next: the ledger lost records or the index was altered; `witness verify` tells which",
            e.seq
        );
    }
    let next_seq = listed.last().map_or(0, |e| e.seq + 1);
    let picked = listed.iter().filter(|e| selection.wants(&e.kind)).take(selection.limit.map_or(usize::MAX, |l| l as usize));
    let opener = keyring.opener(id)?;
    let mut events = Vec::new();
    for e in picked {
        events.push(read_listed_event(&paths, id, e, &opener)?);
    }
    let ended = row.ended_ns.is_some() && next_seq >= row.n_events;
    Ok(SessionRead { summary: recorded.summary, events, next_seq, ended })
}

/// One event the index lists, read from its record and checked against the index's entry.
fn read_listed_event(paths: &LedgerPaths, id: SessionId, e: &EventSummary, opener: &Opener) -> anyhow::Result<StoredEvent> {
    let mut stored = read_event_at(&paths.segments, e.segment_idx, e.offset)?;
    match check_indexed_event(id, e, &stored) {
        None => {}
        Some(misplaced @ IndexProblemKind::Misplaced { .. }) => anyhow::bail!(
            "session {id}: {misplaced}: the index was altered; `witness verify` names every difference, and deleting {} while witness is stopped rebuilds it from the segments",
            paths.index.display()
        ),
        Some(difference) => eprintln!("warning: session {id}: {difference}; shown as recorded"),
    }
    opener.unseal(&mut stored)?;
    Ok(stored)
}

/// Prints what `read` holds, then every selected event recorded after it, until the session
/// ends, the limit is reached, or no witness is running to record more.
fn follow(data_dir: &Path, read: SessionRead, selection: &EventSelection, json: bool, keyring: &Keyring) -> anyhow::Result<()> {
    let paths = LedgerPaths::new(data_dir);
    let id = read.summary.id;
    let opener = keyring.opener(id)?;
    let started_ns = read.summary.started_ns;
    let mut shown = 0u64;
    let show = |e: &StoredEvent| -> anyhow::Result<()> {
        if json {
            output::print_line(&serde_json::to_string(&event_json(e))?)?;
        } else {
            print_event(&mut std::io::stdout().lock(), started_ns, e)?;
        }
        std::io::stdout().flush().context("cannot write to standard output")?;
        Ok(())
    };
    if json {
        output::print_line(&serde_json::to_string(&session_json(&read.summary))?)?;
    } else {
        print_header(&mut std::io::stdout().lock(), &read.summary)?;
    }
    for e in &read.events {
        show(e)?;
        shown += 1;
    }
    let limit = selection.limit.unwrap_or(u64::MAX);
    let mut next_seq = read.next_seq;
    let mut ended = read.ended;
    let mut idle = false;
    while !ended && shown < limit {
        // Asked before reading the index: a witness that stops after this has indexed everything
        // it recorded by the time it lets go of the ledger, so the read below sees it.
        let writer_running = paths.writer_running()?;
        if writer_running && idle {
            std::thread::sleep(FOLLOW_POLL);
        }
        let index = if writer_running { Index::open_snapshot(&paths.index)? } else { open_index(data_dir)? };
        let Some(row) = index.session(id)? else { anyhow::bail!("session {id} is no longer in the index {}", paths.index.display()) };
        let (listed, more) = index.events_from(id, next_seq, 4096)?;
        for e in &listed {
            next_seq = e.seq + 1;
            if selection.wants(&e.kind) && shown < limit {
                show(&read_listed_event(&paths, id, e, &opener)?)?;
                shown += 1;
            }
        }
        idle = listed.is_empty();
        ended = !more && row.ended_ns.is_some() && next_seq >= row.n_events;
        if !ended && idle && !writer_running {
            eprintln!(
                "witness: witness is not running, so session {id} records nothing more; it stays open until witness starts again and closes it"
            );
            break;
        }
    }
    Ok(())
}

/// Tells on stderr how the index's row differs from the session's records (what is shown).
fn warn_differences(recorded: &RecordedSession) {
    if recorded.differences.is_empty() {
        return;
    }
    let differences: Vec<String> = recorded.differences.iter().map(ToString::to_string).collect();
    eprintln!(
        "warning: session {}: the index differs from its records ({}); shown as recorded; `witness verify` names every difference",
        recorded.summary.id,
        differences.join("; ")
    );
}

fn recorded_json(recorded: &RecordedSession) -> serde_json::Value {
    let mut out = session_json(&recorded.summary);
    if !recorded.differences.is_empty() {
        out["index_differences"] = recorded.differences.iter().map(ToString::to_string).collect();
    }
    out
}

fn status(s: &SessionSummary) -> &'static str {
    if s.ended_ns.is_some() {
        "closed"
    } else {
        "open"
    }
}

pub fn session_json(s: &SessionSummary) -> serde_json::Value {
    json!({
        "id": s.id,
        "identity": s.info.identity,
        "connection": s.info.connection,
        "protocol": s.info.protocol,
        "task": s.info.task,
        "client_addr": s.info.client_addr,
        "groups": s.info.groups,
        "started": time(s.started_ns),
        "ended": s.ended_ns.map(time),
        "end_reason": s.end_reason,
        "status": status(s),
        "events": s.n_events,
    })
}

pub fn event_json(e: &StoredEvent) -> serde_json::Value {
    let mut out = json!({
        "seq": e.seq,
        "time": time(e.time_ns),
        "kind": kind::current_name(&e.kind),
        "direction": e.direction.as_str(),
        "summary": e.summary,
        "attrs": e.attrs,
        "payload_type": e.payload_type.as_str(),
        "payload_bytes": e.payload_len,
    });
    if let Some(state) = e.sealed {
        out["sealed"] = json!(match state {
            SealState::Opened => "opened",
            SealState::Shredded => "shredded",
            SealState::Purged => "purged",
            SealState::Sealed(_) => "sealed",
        });
    }
    match (&e.payload, payload_text(e)) {
        (None, _) => out["payload_purged"] = json!(true),
        (Some(_), Some(text)) => out["payload_text"] = json!(text),
        (Some(bytes), None) if !bytes.is_empty() => {
            use base64::Engine;
            out["payload_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        _ => {}
    }
    out
}

/// The payload as text when it is meant as text: a JSON payload when it is valid UTF-8, a text
/// payload always (a stray byte that is not UTF-8 escaped as `\xNN`).
fn payload_text(e: &StoredEvent) -> Option<std::borrow::Cow<'_, str>> {
    let bytes = e.payload.as_deref()?;
    match e.payload_type {
        PayloadType::Text => Some(witness_core::shown_text(bytes)),
        PayloadType::Json => std::str::from_utf8(bytes).ok().map(std::borrow::Cow::Borrowed),
        PayloadType::Empty | PayloadType::Binary => None,
    }
}

fn print_table(out: &mut impl Write, sessions: &[SessionSummary]) -> std::io::Result<()> {
    if sessions.is_empty() {
        return writeln!(out, "no sessions match");
    }
    writeln!(
        out,
        "{:<36}  {:<24}  {:<16}  {:<16}  {:<10}  {:>7}  {:<6}  TASK",
        "ID", "STARTED", "IDENTITY", "CONNECTION", "PROTOCOL", "EVENTS", "STATUS"
    )?;
    for s in sessions {
        writeln!(
            out,
            "{:<36}  {:<24}  {:<16}  {:<16}  {:<10}  {:>7}  {:<6}  {}",
            s.id.to_string(),
            time(s.started_ns),
            s.info.identity,
            s.info.connection,
            s.info.protocol.as_str(),
            s.n_events,
            status(s),
            s.info.task.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

// === impl EventSelection ===

impl EventSelection {
    /// Whether an event of this kind is picked (the limit aside).
    pub fn wants(&self, kind: &str) -> bool {
        let kind = kind::current_name(kind);
        self.kinds.is_empty() || self.kinds.iter().any(|prefix| kind.starts_with(prefix.as_str()))
    }
}

pub fn print_header(out: &mut impl Write, s: &SessionSummary) -> std::io::Result<()> {
    writeln!(out, "session     {}", s.id)?;
    writeln!(out, "identity    {}", s.info.identity)?;
    writeln!(out, "connection  {} ({})", s.info.connection, s.info.protocol)?;
    writeln!(out, "task        {}", s.info.task.as_deref().unwrap_or("-"))?;
    writeln!(out, "client      {}", s.info.client_addr.as_deref().unwrap_or("-"))?;
    if !s.info.groups.is_empty() {
        writeln!(out, "groups      {}", s.info.groups.join(", "))?;
    }
    writeln!(out, "started     {}", time(s.started_ns))?;
    match s.ended_ns {
        Some(ended) => writeln!(out, "ended       {} ({})", time(ended), s.end_reason.as_deref().unwrap_or(""))?,
        None => writeln!(out, "ended       - (open)")?,
    }
    writeln!(out)
}

pub fn print_event(out: &mut impl Write, started_ns: i64, e: &StoredEvent) -> std::io::Result<()> {
    let offset_ms = (e.time_ns - started_ns) as f64 / 1e6;
    writeln!(
        out,
        "#{:<5} {}  +{:>10.3}ms  {:<8}  {:<18}  {}",
        e.seq,
        time(e.time_ns),
        offset_ms,
        e.direction.as_str(),
        kind::current_name(&e.kind),
        e.summary
    )?;
    if !e.attrs.is_empty() {
        writeln!(out, "        attrs: {}", serde_json::Value::Object(e.attrs.clone()))?;
    }
    match (&e.payload, payload_text(e)) {
        (None, _) => writeln!(out, "        payload: purged ({} bytes)", e.payload_len)?,
        (Some(_), Some(text)) => {
            for line in text.lines() {
                writeln!(out, "        | {line}")?;
            }
        }
        (Some(bytes), None) if !bytes.is_empty() => {
            let shown = &bytes[..bytes.len().min(64)];
            let more = if bytes.len() > shown.len() { "…" } else { "" };
            writeln!(out, "        payload: {} bytes: {}{more}", bytes.len(), hex::encode(shown))?;
        }
        _ => {}
    }
    Ok(())
}
