//! Verify on a ledger a running witness is writing to: records after the last checkpoint and a
//! record still being written at the end are expected while a process holds the ledger's lock,
//! and damage before them is still damage. Without a writer the same torn tail is damage, and a
//! place with no ledger at all is told apart from a damaged one.

mod common;

use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use witness_ledger::verify::{verify_ledger, ProblemKind, VerifyOptions, VerifyReport};
use witness_ledger::{FrameFault, IndexCheck, Ledger, LedgerError};

use common::{config, event, info, record_spans};

fn verify(data_dir: &Path) -> VerifyReport {
    let options = VerifyOptions { check_index: true, ..Default::default() };
    verify_ledger(&data_dir.join("ledger"), &options).unwrap()
}

fn index_agrees(report: &VerifyReport) -> bool {
    !matches!(&report.index, IndexCheck::Checked(index) if !index.problems.is_empty())
}

/// A sealed ledger of two closed sessions, its writer stopped.
fn sealed_ledger(data_dir: &Path) {
    let ledger = Ledger::open(&config(data_dir)).unwrap();
    for s in 0..2 {
        let session = ledger.open_session_blocking(&info(&format!("agent-{s}"), "live")).unwrap();
        for i in 0..5 {
            session.append_blocking(&event(i, 100)).unwrap();
        }
        session.close_blocking("done").unwrap();
    }
    ledger.shutdown().unwrap();
}

/// Takes the ledger's lock as a running witness holds it.
fn hold_lock(data_dir: &Path) -> File {
    let lock = File::options().read(true).write(true).open(data_dir.join("ledger/LOCK")).unwrap();
    lock.try_lock().unwrap();
    lock
}

/// How many times verify runs while sessions append (a cron job failed 10 of 15 such runs).
const RUNS: u64 = 15;
/// Appends the writers may make before the first verify run ends, and after each run.
const APPENDS_PER_RUN: u64 = 500;

/// The appends writers may still make: the verify loop raises it after each run, so the ledger
/// grows while verify reads it but never faster than verify keeps up with.
struct Budget {
    left: Mutex<u64>,
    raised: Condvar,
}

impl Budget {
    /// Takes one append, waiting for the next raise when none is left; false once `stop` is set.
    fn take(&self, stop: &AtomicBool) -> bool {
        let mut left = self.left.lock().unwrap();
        while *left == 0 {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            left = self.raised.wait(left).unwrap();
        }
        *left -= 1;
        true
    }

    /// Allows `n` more appends (0 to wake writers that should look at `stop`).
    fn raise(&self, n: u64) {
        *self.left.lock().unwrap() += n;
        self.raised.notify_all();
    }
}

/// Sessions append from two threads, with frequent checkpoints and small segments (so rotation
/// happens), while verify runs again and again: every run passes, knows the writer is running,
/// and sees more records than the one before it at least once.
#[test]
fn verify_passes_again_and_again_while_sessions_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.checkpoint_interval = std::time::Duration::from_millis(3);
    let ledger = Ledger::open(&config).unwrap();
    let stop = AtomicBool::new(false);
    let appended = AtomicU64::new(0);
    let budget = Budget { left: Mutex::new(APPENDS_PER_RUN), raised: Condvar::new() };
    let mut tails_seen = 0;
    let mut unsealed_seen = 0;
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (ledger, stop, appended, budget) = (&ledger, &stop, &appended, &budget);
            scope.spawn(move || {
                let mut n = 0u64;
                'sessions: loop {
                    let session = ledger.open_session_blocking(&info(&format!("writer-{t}"), "live")).unwrap();
                    for i in 0..50 {
                        if !budget.take(stop) {
                            session.close_blocking("done").unwrap();
                            break 'sessions;
                        }
                        session.append_blocking(&event(i, (n as usize * 37) % 300)).unwrap();
                        n += 1;
                        appended.fetch_add(1, Ordering::Relaxed);
                    }
                    session.close_blocking("done").unwrap();
                }
            });
        }
        // Verify only once appends are under way, so that every run reads a ledger in motion.
        while appended.load(Ordering::Relaxed) < 200 {
            std::thread::yield_now();
        }
        let mut records = Vec::new();
        for run in 0..RUNS {
            let report = verify(dir.path());
            assert!(report.problems.is_empty(), "run {run}: {:#?}", report.problems);
            assert!(report.writer_running, "run {run}: the ledger's lock is held");
            assert!(index_agrees(&report), "run {run}: {:?}", report.index);
            tails_seen += u64::from(report.unfinished_tail.is_some());
            unsealed_seen += u64::from(report.unsealed_records > 0);
            records.push(report.records);
            budget.raise(APPENDS_PER_RUN);
        }
        stop.store(true, Ordering::SeqCst);
        budget.raise(0);
        assert!(records.windows(2).any(|w| w[1] > w[0]), "the ledger grew while verify ran: {records:?}");
    });
    eprintln!("{tails_seen} of {RUNS} runs found a record being written, {unsealed_seen} found records not yet checkpointed");
    ledger.shutdown().unwrap();
    let report = verify(dir.path());
    assert!(report.problems.is_empty() && !report.writer_running, "{:#?}", report.problems);
    assert_eq!((report.unsealed_records, report.unfinished_tail), (0, None), "shutdown seals everything");
}

/// Records after the last checkpoint of a running ledger are not yet checkpointed, not a
/// problem.
#[test]
fn records_after_the_last_checkpoint_pass_while_the_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&config(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&info("agent", "live")).unwrap();
    for i in 0..3 {
        session.append_blocking(&event(i, 10)).unwrap();
    }
    let report = verify(dir.path());
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(report.writer_running);
    assert_eq!(report.unsealed_records, 4, "session.start and three events");
    session.close_blocking("done").unwrap();
    ledger.shutdown().unwrap();
}

/// Half a record at the end of the last segment: damage when no process holds the ledger, a
/// record being written while one does; damage before it is reported either way.
#[test]
fn a_torn_tail_is_damage_unless_a_writer_holds_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    sealed_ledger(dir.path());
    let spans = record_spans(&dir.path().join("ledger"));
    let (first, last) = (&spans[0], spans.last().unwrap());
    let first_bytes = fs::read(&first.segment).unwrap();
    let mut torn = fs::read(&last.segment).unwrap();
    let torn_at = torn.len() as u64;
    torn.extend_from_slice(&first_bytes[first.offset..first.offset + first.len / 2]);
    fs::write(&last.segment, &torn).unwrap();

    let unheld = verify(dir.path());
    let kinds: Vec<&ProblemKind> = unheld.problems.iter().map(|p| &p.kind).collect();
    assert_eq!(kinds, [&ProblemKind::BadFrame { fault: FrameFault::Incomplete }], "no writer: the torn tail is damage");
    assert!(!unheld.writer_running);

    let lock = hold_lock(dir.path());
    let held = verify(dir.path());
    assert!(held.problems.is_empty(), "{:#?}", held.problems);
    assert!(held.writer_running);
    let tail = held.unfinished_tail.expect("the record being written is reported");
    assert_eq!((tail.offset, tail.bytes), (torn_at, (first.len / 2) as u64));
    assert_eq!(held.records, spans.len() as u64, "every complete record was checked");

    // One changed byte in the first record: damage, writer or not.
    let mut bytes = fs::read(&first.segment).unwrap();
    bytes[first.offset + first.len - 1] ^= 0x20;
    fs::write(&first.segment, &bytes).unwrap();
    let damaged = verify(dir.path());
    assert!(damaged.writer_running);
    assert!(
        matches!(damaged.problems.first().map(|p| &p.kind), Some(ProblemKind::BadFrame { fault: FrameFault::Corrupt(_) })),
        "{:#?}",
        damaged.problems
    );
    drop(lock);
}

/// A torn tail with intact records after it is damage even while a writer runs: only the very end
/// of the last segment can be a record being written.
#[test]
fn damage_followed_by_records_is_damage_while_a_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    sealed_ledger(dir.path());
    let spans = record_spans(&dir.path().join("ledger"));
    let last = spans.last().unwrap();
    let middle = spans.iter().rev().find(|s| s.segment == last.segment && s.offset < last.offset).unwrap();
    let mut bytes = fs::read(&last.segment).unwrap();
    bytes[middle.offset..middle.offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&last.segment, &bytes).unwrap();
    let _lock = hold_lock(dir.path());
    let report = verify(dir.path());
    assert!(report.writer_running);
    assert!(!report.problems.is_empty(), "a damaged length mid-segment is damage");
    assert_eq!(report.unfinished_tail, None);
}

/// An empty or missing data dir holds no ledger, which is not a damaged one; a signing key with
/// no segments is a ledger whose segments were removed.
#[test]
fn no_ledger_is_told_apart_from_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    for root in [dir.path().join("ledger"), dir.path().join("missing/ledger")] {
        let result = verify_ledger(&root, &VerifyOptions::default());
        assert!(matches!(result, Err(LedgerError::NoLedger { .. })), "{result:?}");
    }
    sealed_ledger(dir.path());
    for segment in fs::read_dir(dir.path().join("ledger/segments")).unwrap() {
        fs::remove_file(segment.unwrap().path()).unwrap();
    }
    let report = verify(dir.path());
    assert_eq!(report.problems.first().map(|p| &p.kind), Some(&ProblemKind::MissingSegment { idx: 0 }), "{:#?}", report.problems);
}
