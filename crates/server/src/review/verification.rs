//! The review API's verification of the ledger and of its index: a full `verify_ledger` that also
//! compares the index with the records, run on a thread of its own at most every few seconds (or
//! at once when a read found the index disagreeing with the records), the last report answered
//! meanwhile. An index found to differ is reported (a log line and an `index.altered` event in the
//! audit trail) and rebuilt from the segments before the report is answered.
//!
//! It does not decide what a reader is shown: `review.rs` turns a report into verify badges.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use witness_core::{kind, Direction, Event};
use witness_ledger::verify::{verify_ledger, VerifyOptions, VerifyReport};
use witness_ledger::{IndexCheck, IndexReport, Ledger, LedgerError};

use crate::audit::AuditTrail;

/// A verification at most this old is answered again rather than redone.
const VERIFY_FRESH: Duration = Duration::from_secs(5);
/// After a read asked for a recheck, a verification at most this old is still answered: a reader
/// paging through a session whose records the ledger lost (the index has the same gap) would
/// otherwise have the whole ledger verified at every page.
const RECHECK_FRESH: Duration = Duration::from_secs(1);
/// The audit event about an altered index names this many of its differences.
const PROBLEMS_RECORDED: usize = 20;

/// A verification report and when it was made.
type Verified = (Instant, Arc<VerifyReport>);

/// The verifications of one process.
#[derive(Default)]
pub(crate) struct Verifications {
    /// The last report and when it was made.
    last: Mutex<Option<Verified>>,
    /// Set while one runs, so that one runs at a time.
    running: AtomicBool,
    /// Set by a read that found the index disagreeing with the records: the next request starts
    /// a new verification however young the last report is.
    recheck: AtomicBool,
}

/// What a verification needs besides the cache.
#[derive(Clone)]
pub(crate) struct Verifier {
    pub ledger: Arc<Ledger>,
    pub audit: Arc<AuditTrail>,
}

// === impl Verifications ===

impl Verifications {
    /// Asks the next request to verify again (a read found the index disagreeing with the records).
    pub(crate) fn recheck(&self) {
        self.recheck.store(true, Ordering::Release);
    }

    /// The last report. When it is older than [`VERIFY_FRESH`], or a recheck was asked for, a new
    /// verification starts on a thread of its own and this answers the last one: a request never
    /// waits for a whole ledger to be read, except the very first.
    pub(crate) fn report(self: &Arc<Self>, verifier: &Verifier) -> Result<Arc<VerifyReport>, LedgerError> {
        let cached = lock(&self.last).clone();
        let recheck = self.recheck.load(Ordering::Acquire);
        let fresh = if recheck { RECHECK_FRESH } else { VERIFY_FRESH };
        match cached {
            Some((at, report)) if at.elapsed() < fresh => Ok(report),
            Some((_, report)) => {
                if !self.running.swap(true, Ordering::AcqRel) {
                    self.recheck.store(false, Ordering::Release);
                    let (verifications, verifier) = (self.clone(), verifier.clone());
                    // The audit trail is appended to from async code; this thread has none.
                    let runtime = tokio::runtime::Handle::try_current().ok();
                    std::thread::spawn(move || {
                        match verifier.verify(runtime.as_ref()) {
                            Ok(report) => *lock(&verifications.last) = Some((Instant::now(), Arc::new(report))),
                            Err(e) => tracing::error!(error = %e, "verifying the ledger for the review API failed"),
                        }
                        verifications.running.store(false, Ordering::Release);
                    });
                }
                Ok(report)
            }
            None => {
                self.recheck.store(false, Ordering::Release);
                let report = Arc::new(verifier.verify(tokio::runtime::Handle::try_current().ok().as_ref())?);
                *lock(&self.last) = Some((Instant::now(), report.clone()));
                Ok(report)
            }
        }
    }
}

// === impl Verifier ===

impl Verifier {
    /// Verifies the ledger and compares its index with the records; an index that differs is
    /// reported and rebuilt. The report keeps the differences: they were there when it was made.
    fn verify(&self, runtime: Option<&tokio::runtime::Handle>) -> Result<VerifyReport, LedgerError> {
        let options = VerifyOptions {
            public_key: Some(self.ledger.public_key()),
            allow_unsealed_tail: true,
            check_index: true,
            ..VerifyOptions::default()
        };
        let report = verify_ledger(&self.ledger.paths().root, &options)?;
        if let IndexCheck::Checked(index) = &report.index {
            if !index.problems.is_empty() {
                self.repair(index, runtime);
            }
        }
        Ok(report)
    }

    /// Logs what differs, rebuilds the index, and records both in the audit trail.
    fn repair(&self, index: &IndexReport, runtime: Option<&tokio::runtime::Handle>) {
        let total = index.problems.len() as u64 + index.problems_not_listed;
        let first = index.problems.first().map(ToString::to_string).unwrap_or_default();
        tracing::error!(
            differences = total,
            first = %first,
            "the ledger's index differs from its records: it was altered; rebuilding it from the segments"
        );
        let rebuilt = self.ledger.rebuild_index();
        let outcome = match &rebuilt {
            Ok(events) => format!("the index was rebuilt from the segments ({events} events)"),
            Err(e) => format!("rebuilding the index failed: {e}"),
        };
        match &rebuilt {
            Ok(_) => tracing::warn!("{outcome}"),
            Err(_) => tracing::error!("{outcome}"),
        }
        let listed: Vec<String> = index.problems.iter().take(PROBLEMS_RECORDED).map(ToString::to_string).collect();
        let mut sessions: Vec<String> = index.problems.iter().filter_map(|p| p.session.map(|s| s.to_string())).collect();
        sessions.dedup();
        let what = format!("the index differed from the ledger's records in {total} ways (first: {first}); {outcome}");
        let event = Event::note(kind::INDEX_ALTERED, Direction::Gateway, format!("witness index.altered: {what}"))
            .with_attr("actor", "witness")
            .with_attr("what", what)
            .with_attr("differences", listed)
            .with_attr("sessions", sessions)
            .with_attr("rebuilt", rebuilt.is_ok());
        let Some(runtime) = runtime else {
            tracing::error!("the audit trail cannot record the altered index: no async runtime here");
            return;
        };
        if let Err(e) = runtime.block_on(self.audit.append(&self.ledger, &event)) {
            tracing::error!(error = %e, "the audit trail cannot record the altered index");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
