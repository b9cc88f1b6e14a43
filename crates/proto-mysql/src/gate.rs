//! The gate's MySQL extension: what the front asks of the rest of witness besides what every
//! protocol does (`witness_gate::Gate`). The server implements it; this crate only calls it.

use std::sync::Arc;

use witness_core::{AuthRefused, Principal, Subject};
use witness_gate::Gate;
use witness_mask::SessionMasks;

/// What the MySQL front needs from the gate besides what every protocol does.
pub trait MysqlGate: Gate {
    /// Checks a `mysql_native_password` answer to witness's `scramble` against the verifiers of
    /// `user`'s tokens; the token itself never crosses the wire.
    fn verify_native(&self, user: &str, scramble: &[u8], response: &[u8]) -> Result<Principal, AuthRefused>;

    /// The masking rules for a session, or None when nothing is masked for it. Asked once, when
    /// the session starts.
    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>>;

    /// The client's file that `sql`, an admitted query, may send into the target (a `LOAD DATA
    /// LOCAL INFILE` a rule allows), or None: the target may ask for no file while it runs.
    fn local_file(&self, subject: &Subject, sql: &str) -> Option<String>;
}
