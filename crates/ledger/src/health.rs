//! Whether the ledger can still record, and how long records have waited for a checkpoint, for
//! the gateway's `/readyz` and `/metrics`. The writer sets these with relaxed atomics as it goes;
//! readers see a moment's state.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Shared by the writer and the [`crate::Ledger`].
#[derive(Debug, Default)]
pub(crate) struct LedgerHealth {
    /// Set by the first failed write: from then on every append is refused until restart.
    write_failed: AtomicBool,
    /// When the oldest record not yet under a checkpoint was staged (Unix ns); 0 when every
    /// record is under one.
    unsealed_since_ns: AtomicI64,
}

/// The ledger's health at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// A write failed; the ledger refuses every append (and so every request) until restart.
    pub write_failed: bool,
    /// Since when the oldest record not under a signed checkpoint has waited (Unix ns), if any.
    pub unsealed_since_ns: Option<i64>,
}

impl LedgerHealth {
    pub(crate) fn write_failed(&self) {
        self.write_failed.store(true, Ordering::Relaxed);
    }

    /// A record outside any checkpoint was staged at `now_ns`; the first one since the last
    /// checkpoint starts the wait.
    pub(crate) fn unsealed(&self, now_ns: i64) {
        let _ = self.unsealed_since_ns.compare_exchange(0, now_ns.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A checkpoint covers every record written so far.
    pub(crate) fn sealed(&self) {
        self.unsealed_since_ns.store(0, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Health {
        let since = self.unsealed_since_ns.load(Ordering::Relaxed);
        Health { write_failed: self.write_failed.load(Ordering::Relaxed), unsealed_since_ns: (since != 0).then_some(since) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unsealed_record_sets_the_wait_until_a_checkpoint() {
        let health = LedgerHealth::default();
        assert_eq!(health.snapshot(), Health { write_failed: false, unsealed_since_ns: None });
        health.unsealed(100);
        health.unsealed(200);
        assert_eq!(health.snapshot().unsealed_since_ns, Some(100));
        health.sealed();
        assert_eq!(health.snapshot().unsealed_since_ns, None);
        health.write_failed();
        assert!(health.snapshot().write_failed);
    }
}
