//! Live sessions as every protocol front sees them: who a session's requests come from, and why
//! a session may be ended from outside.

use crate::{Principal, SessionId, SessionInfo};

/// Why a live session is being ended from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The credential the session authenticated with was revoked.
    Revoked,
    /// Witness is shutting down.
    Shutdown,
}

/// Who a live session's requests come from, as the gate's decisions need it.
#[derive(Clone, Debug)]
pub struct Subject {
    pub session: SessionId,
    pub info: SessionInfo,
    pub principal: Principal,
}

/// A client credential was refused. The reason goes to the log; the client is told only that,
/// unless `client_reason` says more (a JWT's failed check reveals nothing about who exists).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct AuthRefused {
    pub reason: String,
    pub client_reason: Option<String>,
}
