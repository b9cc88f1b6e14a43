//! The ledger's error type. Every variant says what failed and, where there is one, what to do.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use witness_core::SessionId;

use crate::format::FormatError;
use crate::keys::KeyError;
use crate::segment::FrameFault;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no ledger in {path} (no segments and no signing key): check --data-dir or --config; witness creates the ledger when it first starts")]
    NoLedger { path: PathBuf },
    #[error("the ledger in {path} is in use by another witness process; stop that process or use another data dir")]
    Locked { path: PathBuf },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
    #[error("cannot migrate: {0}")]
    Migration(String),
    #[error("writing the ledger failed, so this was not recorded and must be refused; witness records nothing more until it is restarted: {source}")]
    WriteFailed {
        #[source]
        source: Arc<io::Error>,
    },
    #[error("the ledger writer has stopped, so this was not recorded and must be refused")]
    Stopped,
    #[error("the ledger's indexer has stopped (witness is shutting down), so the index was not rebuilt; it is brought up to date at the next start")]
    IndexerStopped,
    #[error("{segment}: damaged at offset {offset} ({fault}) with intact records after it, so it is not a torn tail; run `witness verify` and restore the segment from a backup")]
    Damaged { segment: PathBuf, offset: u64, fault: FrameFault },
    #[error("{segment} offset {offset}: record has ledger_seq {found} where {expected} belongs; run `witness verify` and restore the segment from a backup")]
    OutOfOrder { segment: PathBuf, offset: u64, expected: u64, found: u64 },
    #[error("{segment}: bad segment header ({source}); run `witness verify` and restore the segment from a backup")]
    BadSegment {
        segment: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("{dir}: segment {missing} is missing between the segments before and after it; restore it from a backup")]
    MissingSegment { dir: PathBuf, missing: u64 },
    #[error("{segment} offset {offset}: record cannot be decoded: {source}")]
    Format {
        segment: PathBuf,
        offset: u64,
        #[source]
        source: FormatError,
    },
    #[error("event {what} is {len} bytes, over the limit of {max} for one record; split it into several events")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("session {session} is already closed; open a new session to record more")]
    SessionClosed { session: SessionId },
    #[error("session {session} stopped recording after an earlier append failed; end it and open a new one")]
    SessionBroken { session: SessionId },
    #[error("no session {session} in this ledger; list sessions with `witness sessions list`")]
    UnknownSession { session: SessionId },
    #[error("index {path}: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl LedgerError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LedgerError {
        let path = path.into();
        move |source| LedgerError::Io { action, path, source }
    }
}
