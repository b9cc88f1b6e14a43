//! `witness sessions list|show`: find sessions through the index and show them as their records
//! give them: a session's facts from its `session.start` and latest record, each event from its
//! record. Where the index disagrees with the records, a warning on stderr says how; an index entry
//! that leads to another session's record stops `show`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use witness_core::{PayloadType, Protocol, SessionId};
use witness_ledger::{
    check_indexed_event, open_index, read_event_at, IndexProblemKind, LedgerPaths, RecordedSession, SessionFilter, SessionSummary,
    StoredEvent,
};

use crate::locate::data_dir;
use crate::output::{parse_since, time};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// List sessions, oldest first.
    List(ListArgs),
    /// Show every event of one session, in order, with its payload.
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
    /// At most this many sessions.
    #[arg(long)]
    limit: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The session id, as `sessions list` prints it.
    id: SessionId,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, cmd: &SessionsCommand) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(cli)?;
    let index = open_index(&data_dir).with_context(|| format!("cannot read the ledger index in {}", data_dir.display()))?;
    match cmd {
        SessionsCommand::List(args) => {
            let filter = SessionFilter {
                identity: args.identity.clone(),
                connection: args.connection.clone(),
                task: args.task.clone(),
                exclude_protocol: args.protocol.is_none().then(|| Protocol::Audit.as_str().to_string()),
                protocol: args.protocol.clone(),
                text: args.text.clone(),
                since_ns: args.since,
                limit: args.limit,
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
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&sessions.iter().map(|r| r.summary.clone()).collect::<Vec<_>>());
            }
        }
        SessionsCommand::Show(args) => {
            let (session, events) = read_session(&data_dir, args.id)?;
            if args.json {
                let mut out = session_json(&session);
                out["events"] = events.iter().map(event_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_session(&session, &events);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A session's summary and every event of it, as its records give them.
pub fn read_session(data_dir: &std::path::Path, id: SessionId) -> anyhow::Result<(SessionSummary, Vec<StoredEvent>)> {
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
    let mut events = Vec::with_capacity(listed.len());
    for e in &listed {
        let stored = read_event_at(&paths.segments, e.segment_idx, e.offset)?;
        match check_indexed_event(id, e, &stored) {
            None => {}
            Some(misplaced @ IndexProblemKind::Misplaced { .. }) => anyhow::bail!(
                "session {id}: {misplaced}: the index was altered; `witness verify` names every difference, and deleting {} while witness is stopped rebuilds it from the segments",
                paths.index.display()
            ),
            Some(difference) => eprintln!("warning: session {id}: {difference}; shown as recorded"),
        }
        events.push(stored);
    }
    Ok((recorded.summary, events))
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

fn session_json(s: &SessionSummary) -> serde_json::Value {
    json!({
        "id": s.id,
        "identity": s.info.identity,
        "connection": s.info.connection,
        "protocol": s.info.protocol,
        "task": s.info.task,
        "client_addr": s.info.client_addr,
        "started": time(s.started_ns),
        "ended": s.ended_ns.map(time),
        "end_reason": s.end_reason,
        "status": status(s),
        "events": s.n_events,
    })
}

fn event_json(e: &StoredEvent) -> serde_json::Value {
    let mut out = json!({
        "seq": e.seq,
        "time": time(e.time_ns),
        "kind": e.kind,
        "direction": e.direction.as_str(),
        "summary": e.summary,
        "attrs": e.attrs,
        "payload_type": e.payload_type.as_str(),
        "payload_bytes": e.payload_len,
    });
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

/// The payload as text when it is meant as text and is valid UTF-8.
fn payload_text(e: &StoredEvent) -> Option<&str> {
    let bytes = e.payload.as_deref()?;
    match e.payload_type {
        PayloadType::Text | PayloadType::Json => std::str::from_utf8(bytes).ok(),
        PayloadType::Empty | PayloadType::Binary => None,
    }
}

fn print_table(sessions: &[SessionSummary]) {
    if sessions.is_empty() {
        println!("no sessions match");
        return;
    }
    println!(
        "{:<36}  {:<24}  {:<16}  {:<16}  {:<10}  {:>7}  {:<6}  TASK",
        "ID", "STARTED", "IDENTITY", "CONNECTION", "PROTOCOL", "EVENTS", "STATUS"
    );
    for s in sessions {
        println!(
            "{:<36}  {:<24}  {:<16}  {:<16}  {:<10}  {:>7}  {:<6}  {}",
            s.id.to_string(),
            time(s.started_ns),
            s.info.identity,
            s.info.connection,
            s.info.protocol.as_str(),
            s.n_events,
            status(s),
            s.info.task.as_deref().unwrap_or("-")
        );
    }
}

fn print_session(s: &SessionSummary, events: &[StoredEvent]) {
    println!("session     {}", s.id);
    println!("identity    {}", s.info.identity);
    println!("connection  {} ({})", s.info.connection, s.info.protocol);
    println!("task        {}", s.info.task.as_deref().unwrap_or("-"));
    println!("client      {}", s.info.client_addr.as_deref().unwrap_or("-"));
    println!("started     {}", time(s.started_ns));
    match s.ended_ns {
        Some(ended) => println!("ended       {} ({})", time(ended), s.end_reason.as_deref().unwrap_or("")),
        None => println!("ended       - (open)"),
    }
    println!();
    for e in events {
        let offset_ms = (e.time_ns - s.started_ns) as f64 / 1e6;
        println!("#{:<5} {}  +{:>10.3}ms  {:<8}  {:<18}  {}", e.seq, time(e.time_ns), offset_ms, e.direction.as_str(), e.kind, e.summary);
        if !e.attrs.is_empty() {
            println!("        attrs: {}", serde_json::Value::Object(e.attrs.clone()));
        }
        match (&e.payload, payload_text(e)) {
            (None, _) => println!("        payload: purged ({} bytes)", e.payload_len),
            (Some(_), Some(text)) => {
                for line in text.lines() {
                    println!("        | {line}");
                }
            }
            (Some(bytes), None) if !bytes.is_empty() => {
                let shown = &bytes[..bytes.len().min(64)];
                let more = if bytes.len() > shown.len() { "…" } else { "" };
                println!("        payload: {} bytes: {}{more}", bytes.len(), hex::encode(shown));
            }
            _ => {}
        }
    }
}
