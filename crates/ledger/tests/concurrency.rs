//! Many sessions appending at once, from async tasks and from threads, keep their per-session
//! order, and the ledger verifies; the index has every event in order.

mod common;

use std::time::Duration;

use witness_ledger::verify::{verify_ledger, VerifyOptions};
use witness_ledger::{open_index, Durability, Ledger, SessionFilter};

use common::{config, event, info};

const TASKS: u64 = 48;
const THREADS: u64 = 8;
const EVENTS: u64 = 150;

#[test]
fn concurrent_sessions_keep_their_order_and_verify() {
    for durability in [Durability::Write, Durability::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.durability = durability;
        // Frequent checkpoints while sessions are open exercise heads of open sessions.
        config.checkpoint_interval = Duration::from_millis(2);
        let ledger = Ledger::open(&config).unwrap();

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let session = ledger.open_session(&info(&format!("task-{t}"), "concurrency")).await.unwrap();
                tasks.push(tokio::spawn(async move {
                    for i in 0..EVENTS {
                        let receipt = session.append(&event(i, (i * 7 % 300) as usize)).await.unwrap();
                        assert_eq!(receipt.seq(), i + 1, "seq follows session.start");
                    }
                    session.close("done").await.unwrap();
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let ledger = &ledger;
                scope.spawn(move || {
                    let session = ledger.open_session_blocking(&info(&format!("thread-{t}"), "concurrency")).unwrap();
                    for i in 0..EVENTS {
                        session.append_blocking(&event(i, 64)).unwrap();
                    }
                    session.close_blocking("done").unwrap();
                });
            }
        });
        let key = ledger.public_key();
        ledger.shutdown().unwrap();

        let report = verify_ledger(&dir.path().join("ledger"), &VerifyOptions { public_key: Some(key), ..Default::default() }).unwrap();
        assert!(report.problems.is_empty(), "{durability}: {:#?}", report.problems);
        assert_eq!(report.sessions, TASKS + THREADS);
        assert_eq!(report.events, (TASKS + THREADS) * (EVENTS + 2));
        assert_eq!(report.open_sessions, 0);

        let index = open_index(dir.path()).unwrap();
        let sessions = index.list_sessions(&SessionFilter::default()).unwrap();
        assert_eq!(sessions.len() as u64, TASKS + THREADS);
        for s in sessions {
            let events = index.events(s.id).unwrap();
            assert_eq!(events.len() as u64, EVENTS + 2, "{durability}: session {}", s.id);
            assert_eq!(events.first().unwrap().kind, "session.start");
            assert_eq!(events.last().unwrap().kind, "session.end");
            for (i, e) in events[1..=EVENTS as usize].iter().enumerate() {
                assert_eq!(e.summary, format!("event {i}"), "{durability}: session {} out of order", s.id);
            }
            assert!(events.windows(2).all(|w| w[0].ledger_seq < w[1].ledger_seq && w[0].time_ns <= w[1].time_ns));
        }
    }
}
