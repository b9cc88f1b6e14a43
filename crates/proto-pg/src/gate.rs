//! The gate's PostgreSQL extension: what the front asks of the rest of witness besides what
//! every protocol does (`witness_gate::Gate`). The server implements it; this crate only calls it.

use std::sync::Arc;

use witness_core::{AuthRefused, Principal, Subject};
use witness_gate::Gate;
use witness_mask::SessionMasks;

/// The salt and rounds of a SCRAM exchange, as the gate's challenge type exposes them.
pub trait ScramParams: Send {
    fn salt(&self) -> &[u8];
    fn iterations(&self) -> u32;
}

/// What the PostgreSQL front needs from the gate besides what every protocol does: SCRAM
/// against the token store's verifiers, and the masking rules for result columns.
pub trait PgGate: Gate {
    type Challenge: ScramParams;

    /// SCRAM parameters for `user`; for an unknown user too (so the exchange reveals nothing).
    fn scram_challenge(&self, user: &str) -> Self::Challenge;

    /// Checks a SCRAM client proof; returns the caller and the server signature.
    fn verify_scram(&self, challenge: Self::Challenge, auth_message: &[u8], proof: &[u8]) -> Result<(Principal, [u8; 32]), AuthRefused>;

    /// The masking rules for a session, or None when nothing is masked for it. Asked once, when
    /// the session starts.
    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>>;
}
