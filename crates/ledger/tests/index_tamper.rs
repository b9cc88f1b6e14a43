//! Edits to the index (a session's identity, task, connection, times or count changed, its row
//! deleted, a row made up, an event's summary or kind changed, a block deleted, the index's own
//! bookkeeping changed): verify names each one, a session read through the index shows its
//! records' facts, the running ledger rebuilds the index whatever was added to it, and a live
//! index that merely lags its records is never taken for an edited one.

mod common;

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};
use witness_core::SessionId;
use witness_ledger::verify::{verify_ledger, VerifyOptions, VerifyReport};
use witness_ledger::{open_index, IndexCheck, Ledger, LedgerPaths, RecordedSession, SessionFilter, SessionSummary};

use common::{config, event, info};

/// Events of the long session: more than two blocks of 1024 when the index is built from the
/// segments, so a block in the middle can go.
const LONG_SESSION_EVENTS: u64 = 2100;

/// What a read of the edited session through the index shows.
#[derive(Clone, Copy, Debug)]
enum Shown {
    /// The records' facts, and the difference said.
    Restored,
    /// The records' facts; the edit is in events the read does not look at (verify finds it).
    Unchanged,
    /// The read cannot get to the records and says why.
    Flagged,
    /// The session row is gone or the index cannot be read.
    Nothing,
    /// The records' facts, but the row's counts of refused and held requests, which a read does
    /// not count over every record (verify compares them).
    Counts,
}

struct Case {
    name: &'static str,
    /// Edits the index; gets the long session's id.
    edit: fn(&Connection, &[u8]),
    /// The session read through the index afterwards: the long one, or the made-up one.
    reads: [u8; 16],
    /// Whether the problem names the edited session.
    names_session: bool,
    /// A text the problem says.
    says: &'static str,
    shown: Shown,
}

fn sql(sql: &'static str) -> impl Fn(&Connection, &[u8]) {
    move |conn, id| {
        conn.execute(sql, params![id]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

const CASES: &[Case] = &[
    Case {
        name: "identity",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET identity = 'mallory' WHERE id = ?1")(c, id),
        names_session: true,
        says: r#"identity is "mallory" in the index but "agent-1" in the ledger"#,
        shown: Shown::Restored,
    },
    Case {
        name: "task",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET task = 'routine cleanup' WHERE id = ?1")(c, id),
        names_session: true,
        says: r#"task is "routine cleanup" in the index but "index test" in the ledger"#,
        shown: Shown::Restored,
    },
    Case {
        name: "connection",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET connection = 'staging' WHERE id = ?1")(c, id),
        names_session: true,
        says: r#"connection is "staging" in the index but "pg-test" in the ledger"#,
        shown: Shown::Restored,
    },
    Case {
        name: "protocol",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET protocol = 'ssh' WHERE id = ?1")(c, id),
        names_session: true,
        says: r#"protocol is "ssh" in the index but "postgres" in the ledger"#,
        shown: Shown::Restored,
    },
    Case {
        name: "client address",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET client_addr = NULL WHERE id = ?1")(c, id),
        names_session: true,
        says: r#"client address is none in the index but "127.0.0.1:50000" in the ledger"#,
        shown: Shown::Restored,
    },
    Case {
        name: "groups",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET groups = '[\"ai-agents\",\"admins\"]' WHERE id = ?1")(c, id),
        names_session: true,
        says: r#"groups is ["ai-agents", "admins"] in the index but ["ai-agents"] in the ledger"#,
        shown: Shown::Restored,
    },
    Case {
        name: "start time",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET started_ns = started_ns + 3600000000000 WHERE id = ?1")(c, id),
        names_session: true,
        says: "start time (ns) is",
        shown: Shown::Restored,
    },
    Case {
        name: "end",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET ended_ns = NULL, end_reason = NULL WHERE id = ?1")(c, id),
        names_session: true,
        says: "end time (ns) is not ended in the index but",
        shown: Shown::Restored,
    },
    Case {
        name: "event count",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET n_events = 3 WHERE id = ?1")(c, id),
        names_session: true,
        says: "event count is 3 in the index but 2102 in the ledger",
        shown: Shown::Restored,
    },
    Case {
        name: "denied count",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET n_denied = 5 WHERE id = ?1")(c, id),
        names_session: true,
        says: "requests denied is 5 in the index but 0 in the ledger",
        shown: Shown::Counts,
    },
    Case {
        name: "held count",
        reads: LONG,
        edit: |c, id| sql("UPDATE sessions SET n_held = 1 WHERE id = ?1")(c, id),
        names_session: true,
        says: "requests held is 1 in the index but 0 in the ledger",
        shown: Shown::Counts,
    },
    Case {
        name: "row deleted",
        reads: LONG,
        edit: |c, id| sql("DELETE FROM sessions WHERE id = ?1")(c, id),
        names_session: true,
        says: "recorded in the ledger but missing from the index",
        shown: Shown::Nothing,
    },
    Case {
        name: "block deleted",
        reads: LONG,
        edit: |c, id| sql("DELETE FROM event_blocks WHERE session_id = ?1 AND first_seq = 1024")(c, id),
        names_session: true,
        says: "event seq 1024 is in the ledger but missing from the index",
        shown: Shown::Unchanged,
    },
    Case {
        name: "first block deleted",
        reads: LONG,
        edit: |c, id| sql("DELETE FROM event_blocks WHERE session_id = ?1 AND first_seq = 0")(c, id),
        names_session: true,
        says: "event seq 0 is in the ledger but missing from the index",
        shown: Shown::Flagged,
    },
    Case {
        name: "block count",
        reads: LONG,
        edit: |c, id| sql("UPDATE event_blocks SET n_events = 10 WHERE session_id = ?1 AND first_seq = 1024")(c, id),
        names_session: true,
        says: "blocks of its events do not hold what their columns say",
        shown: Shown::Unchanged,
    },
    Case {
        name: "summary",
        reads: LONG,
        edit: |c, id| edit_event_bytes(c, id, b"sql.queryevent 3", b"sql.queryevent 9"),
        names_session: true,
        says: r#"event seq 4: summary is "event 9" in the index but "event 3" in the ledger"#,
        shown: Shown::Unchanged,
    },
    Case {
        name: "kind",
        reads: LONG,
        edit: |c, id| edit_event_bytes(c, id, b"sql.queryevent 3", b"sql.xueryevent 3"),
        names_session: true,
        says: r#"event seq 4: kind is "sql.xuery" in the index but "sql.query" in the ledger"#,
        shown: Shown::Unchanged,
    },
    Case {
        name: "made-up session",
        reads: MADE_UP,
        edit: |c, _| {
            c.execute(
                "INSERT INTO sessions (id, identity, connection, protocol, task, client_addr, started_ns, n_events, last_event_ns)
                 VALUES (?1, 'agent-1', 'pg-test', 'postgres', 'index test', NULL, 1, 1, 1)",
                params![&MADE_UP[..]],
            )
            .unwrap();
        },
        names_session: false,
        says: "listed in the index but the ledger has no record of it",
        shown: Shown::Flagged,
    },
    Case {
        name: "resume point",
        reads: LONG,
        edit: |c, _| sql("UPDATE meta SET value = '1' WHERE key = 'resume_records' AND ?1 IS NOT NULL")(c, b"x"),
        names_session: false,
        says: "listed in the index but the ledger has no record of it",
        shown: Shown::Unchanged,
    },
    Case {
        name: "ledger key",
        reads: LONG,
        edit: |c, _| sql("UPDATE meta SET value = 'ab' WHERE key = 'ledger_key' AND ?1 IS NOT NULL")(c, b"x"),
        names_session: false,
        says: "the index says it belongs to the ledger signed by ab",
        shown: Shown::Unchanged,
    },
    Case {
        name: "table dropped",
        reads: LONG,
        edit: |c, _| c.execute_batch("DROP TABLE event_blocks").unwrap(),
        names_session: false,
        says: "the index cannot be read",
        shown: Shown::Nothing,
    },
];

/// Stands for the long session's id, which the test learns when it records it.
const LONG: [u8; 16] = [0; 16];
const MADE_UP: [u8; 16] = [0x01, 0x92, 0xf0, 0xc4, 0x6b, 0x7e, 0x7a, 0x3c, 0x9d, 0x2e, 0x5f, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e];

#[test]
fn verify_names_every_edit_of_the_index_and_reads_show_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (key, long) = build_ledger(dir.path());
    let paths = LedgerPaths::new(dir.path());
    let options = VerifyOptions { public_key: Some(key), check_index: true, ..VerifyOptions::default() };
    let intact = verify_ledger(&paths.root, &options).unwrap();
    assert!(intact.problems.is_empty(), "{:?}", intact.problems);
    let IndexCheck::Checked(report) = &intact.index else { panic!("the index was not compared: {:?}", intact.index) };
    assert!(report.problems.is_empty(), "the untouched index agrees with the ledger: {:#?}", report.problems);
    assert_eq!(report.sessions_compared, 3);
    assert!(report.records_compared >= LONG_SESSION_EVENTS, "{report:?}");
    let recorded = read_through_index(dir.path(), long).expect("the session is in the index");
    assert!(recorded.differences.is_empty(), "{:?}", recorded.differences);
    assert_eq!((recorded.summary.info.identity.as_str(), recorded.summary.n_events), ("agent-1", LONG_SESSION_EVENTS + 2));

    let pristine = std::fs::read(&paths.index).unwrap();
    for case in CASES {
        std::fs::write(&paths.index, &pristine).unwrap();
        let conn = Connection::open(&paths.index).unwrap();
        (case.edit)(&conn, &long.as_bytes()[..]);
        drop(conn);

        let report = verify_ledger(&paths.root, &options).unwrap();
        assert!(report.problems.is_empty(), "{}: an edited index is not a damaged ledger: {:?}", case.name, report.problems);
        let problems = index_problems(&report);
        let found = problems.iter().find(|p| p.to_string().contains(case.says));
        let Some(found) = found else { panic!("{}: no problem says {:?}: {problems:#?}", case.name, case.says) };
        if case.names_session {
            assert_eq!(found.session, Some(long), "{}: {found}", case.name);
        }

        let reads = if case.reads == LONG { long } else { SessionId::from_bytes(case.reads) };
        let read = read_through_index(dir.path(), reads);
        match (case.shown, read) {
            (Shown::Restored, Some(read)) => {
                assert_eq!(read.summary, recorded.summary, "{}: the records' facts are shown, not the row's", case.name);
                assert!(!read.differences.is_empty(), "{}: the read says the row differs", case.name);
            }
            (Shown::Unchanged, Some(read)) => {
                assert_eq!(read.summary, recorded.summary, "{}", case.name);
            }
            (Shown::Flagged, Some(read)) => assert!(!read.differences.is_empty(), "{}: {read:?}", case.name),
            (Shown::Nothing, None) => {}
            (Shown::Counts, Some(read)) => {
                let expected = SessionSummary { n_denied: read.summary.n_denied, n_held: read.summary.n_held, ..recorded.summary.clone() };
                assert_eq!(read.summary, expected, "{}: the records' facts", case.name);
                assert!(read.summary.n_denied + read.summary.n_held > 0, "{}: the row's counts are shown", case.name);
            }
            (shown, read) => panic!("{}: expected {shown:?}, read {read:?}", case.name),
        }
    }
}

#[test]
fn the_running_ledger_rebuilds_an_edited_index_and_keeps_recording() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&config(dir.path())).unwrap();
    let paths = ledger.paths().clone();
    let sessions: Vec<_> = (0..3).map(|i| ledger.open_session_blocking(&info(&format!("agent-{i}"), "rebuild")).unwrap()).collect();
    for (i, session) in sessions.iter().enumerate() {
        for n in 0..(20 * (i as u64 + 1)) {
            session.append_blocking(&event(n, 40)).unwrap();
        }
    }
    let options =
        VerifyOptions { public_key: Some(ledger.public_key()), allow_unsealed_tail: true, check_index: true, ..Default::default() };
    let indexed = |session: SessionId| poll_index(&paths.index, session);
    indexed(sessions[2].id());

    // Edit the live index: a row changed, one deleted, and a trigger that would rewrite every row
    // the indexer writes from now on.
    let conn = Connection::open(&paths.index).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute("UPDATE sessions SET identity = 'mallory' WHERE id = ?1", params![&sessions[0].id().as_bytes()[..]]).unwrap();
    conn.execute("DELETE FROM sessions WHERE id = ?1", params![&sessions[1].id().as_bytes()[..]]).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER rename AFTER INSERT ON sessions BEGIN UPDATE sessions SET identity = 'mallory' WHERE id = NEW.id; END;",
    )
    .unwrap();
    drop(conn);
    let edited = verify_ledger(&paths.root, &options).unwrap();
    assert!(index_problems(&edited).len() >= 2, "{:?}", edited.index);

    // Records keep coming before, while and after the index is rebuilt: the rebuild reads some
    // that the writer also sends the indexer, which must index them once.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let rebuilding = AtomicBool::new(true);
    // Appends that have returned, so are in the segments: the rebuild reads at least those.
    let durable = AtomicU64::new(0);
    let (rebuilt, durable_before, appended) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut n = 100;
            // Bounded, so that a rebuild that fails cannot leave it writing for ever.
            while (rebuilding.load(Ordering::Acquire) && n < 200_000) || n < 2000 {
                sessions[n as usize % 3].append_blocking(&event(n, 16)).unwrap();
                durable.fetch_add(1, Ordering::Release);
                n += 1;
            }
            n - 100
        });
        // Let the writer get going, so that the rebuild has records to race with.
        while durable.load(Ordering::Acquire) < 500 {
            std::thread::yield_now();
        }
        let durable_before = durable.load(Ordering::Acquire);
        let rebuilt = ledger.rebuild_index().unwrap();
        rebuilding.store(false, Ordering::Release);
        (rebuilt, durable_before, writer.join().unwrap())
    });
    assert!(
        rebuilt >= 123 + durable_before && appended >= 1900,
        "the rebuild indexed the records there were: {rebuilt} of at least {} ({appended} appended in all)",
        123 + durable_before
    );
    let late = ledger.open_session_blocking(&info("agent-late", "rebuild")).unwrap();
    late.append_blocking(&event(0, 8)).unwrap();
    indexed(late.id());
    let report = verify_ledger(&paths.root, &options).unwrap();
    assert_eq!(index_problems(&report), [], "the rebuilt index agrees with the ledger");

    for session in sessions.into_iter().chain([late]) {
        session.close_blocking("done").unwrap();
    }
    ledger.shutdown().unwrap();
    let index = open_index(dir.path()).unwrap();
    let listed = index.list_sessions(&SessionFilter::default()).unwrap();
    let identities: Vec<&str> = listed.iter().map(|s| s.info.identity.as_str()).collect();
    assert_eq!(identities, ["agent-0", "agent-1", "agent-2", "agent-late"], "no trigger survived the rebuild");
    for s in &listed {
        let events = index.events(s.id).unwrap();
        assert_eq!(events.len() as u64, s.n_events, "{}: every event once", s.info.identity);
        assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64), "{}: in order, no gaps", s.info.identity);
    }
    let report = verify_ledger(&paths.root, &VerifyOptions { check_index: true, ..Default::default() }).unwrap();
    assert!(report.problems.is_empty() && index_problems(&report).is_empty(), "{report:?}");
}

/// While sessions record, the index lags its records by an indexer poll: verify compares only what
/// the index says it covers, so a lagging index is never reported.
#[test]
fn a_lagging_index_is_not_an_edited_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = witness_ledger::LedgerConfig::new(dir.path());
    config.checkpoint_interval = Duration::from_millis(5);
    let ledger = Ledger::open(&config).unwrap();
    let root = ledger.paths().root.clone();
    let options =
        VerifyOptions { public_key: Some(ledger.public_key()), allow_unsealed_tail: true, check_index: true, ..Default::default() };
    let writers_left = std::sync::atomic::AtomicUsize::new(2);
    // Set once a verification compared a non-empty index while the writers wrote; the writers
    // wait for it halfway, so that such a comparison surely happens.
    let compared = (std::sync::Mutex::new(false), std::sync::Condvar::new());
    let mut rounds = 0;
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (ledger, writers_left, compared) = (&ledger, &writers_left, &compared);
            scope.spawn(move || {
                for s in 0..40 {
                    if s == 20 {
                        let mut seen = compared.0.lock().unwrap();
                        while !*seen {
                            seen = compared.1.wait(seen).unwrap();
                        }
                    }
                    let session = ledger.open_session_blocking(&info(&format!("writer-{t}-{s}"), "lag")).unwrap();
                    for i in 0..50 {
                        session.append_blocking(&event(i, 32)).unwrap();
                    }
                    session.close_blocking("done").unwrap();
                }
                writers_left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            });
        }
        // Verify over and over while the writers write, and at least a few times.
        while rounds < 5 || writers_left.load(std::sync::atomic::Ordering::Acquire) > 0 {
            let writing = writers_left.load(std::sync::atomic::Ordering::Acquire) > 0;
            let report = verify_ledger(&root, &options).unwrap();
            assert!(report.problems.is_empty(), "round {rounds}: {:?}", report.problems);
            assert_eq!(index_problems(&report), [], "round {rounds}");
            if let (true, IndexCheck::Checked(index)) = (writing, &report.index) {
                if index.records_compared > 0 {
                    *compared.0.lock().unwrap() = true;
                    compared.1.notify_all();
                }
            }
            rounds += 1;
        }
    });
    assert!(*compared.0.lock().unwrap(), "the index was compared while it grew");
    ledger.shutdown().unwrap();
}

/// Three sessions: agent-1's long and closed (the one edited), agent-2's short and closed,
/// agent-3's open. The index is then built anew from the segments, so that its blocks are the
/// catch-up's (1024 events each). Returns the key and agent-1's session.
fn build_ledger(data_dir: &Path) -> (ed25519_dalek::VerifyingKey, SessionId) {
    let ledger = Ledger::open(&config(data_dir)).unwrap();
    let long = ledger.open_session_blocking(&info("agent-1", "index test")).unwrap();
    let short = ledger.open_session_blocking(&info("agent-2", "index test")).unwrap();
    let open = ledger.open_session_blocking(&info("agent-3", "index test")).unwrap();
    for i in 0..LONG_SESSION_EVENTS {
        long.append_blocking(&event(i, 8)).unwrap();
        if i < 10 {
            short.append_blocking(&event(i, 8)).unwrap();
            open.append_blocking(&event(i, 8)).unwrap();
        }
    }
    let id = long.id();
    long.close_blocking("done").unwrap();
    short.close_blocking("done").unwrap();
    let key = ledger.public_key();
    ledger.shutdown().unwrap();
    drop(open);
    let paths = LedgerPaths::new(data_dir);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", paths.index.display()));
    }
    open_index(data_dir).unwrap();
    (key, id)
}

/// The session as a reader gets it through the index, if the index lists it.
fn read_through_index(data_dir: &Path, id: SessionId) -> Option<RecordedSession> {
    let paths = LedgerPaths::new(data_dir);
    let index = witness_ledger::Index::open_snapshot(&paths.index).ok()?;
    let row = index.session(id).ok()??;
    index.recorded_session(&paths.segments, &row).ok()
}

fn index_problems(report: &VerifyReport) -> Vec<witness_ledger::IndexProblem> {
    match &report.index {
        IndexCheck::Checked(index) => index.problems.clone(),
        other => panic!("the index was not compared: {other:?}"),
    }
}

/// Replaces `from` with `to` (the same length) in the session's event blocks, where it occurs first.
fn edit_event_bytes(conn: &Connection, id: &[u8], from: &[u8], to: &[u8]) {
    let blocks: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT first_seq, events FROM event_blocks WHERE session_id = ?1 ORDER BY first_seq")
        .unwrap()
        .query_map(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (first_seq, mut bytes) in blocks {
        if let Some(at) = bytes.windows(from.len()).position(|w| w == from) {
            bytes[at..at + to.len()].copy_from_slice(to);
            conn.execute("UPDATE event_blocks SET events = ?3 WHERE session_id = ?1 AND first_seq = ?2", params![id, first_seq, bytes])
                .unwrap();
            return;
        }
    }
    panic!("{:?} is in no block", String::from_utf8_lossy(from));
}

/// Waits (bounded) until the running ledger's indexer has the session.
fn poll_index(index: &Path, session: SessionId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = witness_ledger::Index::open_read_only(index).ok().and_then(|i| i.session(session).ok().flatten());
        if found.is_some() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the indexer never indexed session {session}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
