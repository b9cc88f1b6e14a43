//! Crash test: a child process appends under load and is killed with SIGKILL at a random moment;
//! after reopening, every append the child had acknowledged is present and the ledger verifies.
//!
//! The child is this same test binary, run again with WITNESS_CRASH_CHILD_DIR set: it prints
//! "ack SESSION SEQ" only after the ledger acknowledged that append.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::RngExt;
use witness_core::SessionId;
use witness_ledger::verify::{verify_ledger, VerifyOptions};
use witness_ledger::{open_index, Durability, Ledger};

use common::{config, event, info};

const CHILD_ENV: &str = "WITNESS_CRASH_CHILD_DIR";
const ROUNDS: usize = 6;

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return run_child(&dir);
    }
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["acknowledged_appends_survive_sigkill", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = rng.random_range(20..4000);
        let mut acked: BTreeSet<(SessionId, u64)> = BTreeSet::new();
        while acked.len() < kill_after {
            let line = lines.next().expect("the child stopped before it was killed").unwrap();
            if let Some(ack) = parse_ack(&line) {
                acked.insert(ack);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Acks the child printed before it died are still in the pipe.
        for line in lines {
            if let Some(ack) = parse_ack(&line.unwrap()) {
                acked.insert(ack);
            }
        }

        let ledger = Ledger::open(&config(dir.path())).expect("the ledger opens after a crash");
        let key = ledger.public_key();
        ledger.shutdown().unwrap();
        let report = verify_ledger(&dir.path().join("ledger"), &VerifyOptions { public_key: Some(key), ..Default::default() }).unwrap();
        assert!(report.problems.is_empty(), "round {round}: the recovered ledger does not verify: {:#?}", report.problems);
        assert_eq!(report.open_sessions, 0, "round {round}: recovery closes the sessions the crash left open");

        let index = open_index(dir.path()).unwrap();
        let sessions: BTreeSet<SessionId> = acked.iter().map(|(s, _)| *s).collect();
        for session in sessions {
            let events = index.events(session).unwrap();
            let summary = index.session(session).unwrap().expect("every acknowledged session is indexed");
            assert!(summary.ended_ns.is_some(), "round {round}: session {session} was closed by recovery or by the child");
            for (s, seq) in acked.range((session, 0)..=(session, u64::MAX)) {
                let found = events.iter().find(|e| e.seq == *seq);
                let found = found.unwrap_or_else(|| panic!("round {round}: acknowledged event {s} seq {seq} is missing after the crash"));
                assert_eq!(found.summary, format!("event {}", seq - 1), "round {round}: event {s} seq {seq} changed");
            }
        }
    }
}

fn parse_ack(line: &str) -> Option<(SessionId, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The child: four threads append to sessions of varying length until killed, printing each ack.
fn run_child(dir: &str) {
    let mut config = config(std::path::Path::new(dir));
    config.durability = Durability::Write;
    config.checkpoint_interval = Duration::from_millis(5);
    let ledger = Ledger::open(&config).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let ledger = &ledger;
            scope.spawn(move || {
                let mut rng = rand::rng();
                loop {
                    let session = ledger.open_session_blocking(&info(&format!("crash-{thread}"), "crash test")).unwrap();
                    for i in 0..rng.random_range(1..200u64) {
                        let receipt = session.append_blocking(&event(i, rng.random_range(0..600))).unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {} {}", session.id(), receipt.seq()).unwrap();
                        out.flush().unwrap();
                    }
                    if rng.random_bool(0.7) {
                        session.close_blocking("finished").unwrap();
                    }
                }
            });
        }
    });
}
