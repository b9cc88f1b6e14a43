//! Live sessions as every protocol front sees them: who a session's requests come from, and why
//! a session may be ended from outside.

use crate::{Principal, SessionId, SessionInfo};

/// Why a live session is being ended from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The credential the session authenticated with was revoked.
    Revoked,
    /// Witness is shutting down.
    Shutdown,
    /// An administrator ended the session, saying why.
    Ended { by: String, reason: String },
}

impl Interrupt {
    /// Why the session ends, as its `session.end` record and its client are told.
    pub fn describe(&self) -> String {
        match self {
            Interrupt::Revoked => "the credential this session logged in with was revoked".into(),
            Interrupt::Shutdown => "witness is shutting down".into(),
            Interrupt::Ended { by, reason } => format!("an administrator ({by}) ended this session: {reason}"),
        }
    }
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
