//! The seam between protocol crates and the rest of witness.
//!
//! A protocol crate (proto-pg, proto-ssh, …) reads its wire and lowers what it sees into core's
//! vocabulary: a [`Credential`] to authenticate, a connection name to find a target, a
//! [`Request`] to decide, [`Event`]s to record. It asks the [`Gate`] for everything else and
//! knows nothing of tokens, policy rules, approvals or the ledger's internals. Every protocol
//! puts its requests through the one admission path, [`admit`]: the verdict goes into the
//! request's event, the event into the ledger, a held request waits for its decision, and only
//! then does the protocol react on its wire (PostgreSQL with an error and a substitute request,
//! SSH with stderr and exit status 126).
//!
//! What is truly protocol-specific (SCRAM verifiers for PostgreSQL, public keys for SSH, masking
//! of result columns) is an extension trait in the protocol's own crate, on top of [`Gate`].

#![forbid(unsafe_code)]

pub mod admit;
mod stream;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use witness_core::{AuthRefused, Interrupt, Principal, Protocol, Request, SessionInfo, Subject, Verdict};
use witness_ledger::{LedgerError, SessionWriter};

pub use admit::{admit, with_verdict, Admission, Refusal, Waiting, Wire, Withdrawal};
pub use stream::Stream;

/// What every protocol front asks of the rest of witness.
pub trait Gate: Send + Sync + 'static {
    /// Checks a credential a client of `protocol` presented. Refusals are counted per protocol.
    fn authenticate(&self, protocol: Protocol, credential: Credential<'_>) -> impl Future<Output = Result<Principal, AuthRefused>> + Send;

    /// The target a connection name means, as the protocol crate's own type `T` (PgTarget,
    /// SshTarget, …). A connection of another protocol is not found.
    fn target<T: Send + Sync + 'static>(&self, connection: &str) -> Result<Arc<T>, UnknownTarget>;

    /// Opens the recording of a new session.
    fn open_session(&self, info: &SessionInfo) -> impl Future<Output = Result<SessionWriter, LedgerError>> + Send;

    /// Decides on one request of a live session before it reaches the target. A hold carries
    /// the future of its decision; [`admit`] waits it out.
    fn decide(&self, subject: &Subject, request: Request<'_>) -> Verdict;

    /// Registers a live session, so that it can be ended from outside (a revoked credential,
    /// shutdown). Dropping the registration unregisters it.
    fn register(&self, subject: &Subject) -> Registration;

    /// The target of `connection` could not be reached, or refused witness's own login, so a
    /// session did not start: counted for operators (`/metrics`).
    fn target_failed(&self, connection: &str);
}

/// A credential as a client presents it.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// A password given with a user name (PostgreSQL's cleartext password): a witness token of
    /// that identity, or a JWT issued to it.
    Password { user: &'a str, password: &'a str },
    /// A token given without an identity (the SSH password, an HTTP bearer token): a witness
    /// token found by its hash, or a JWT.
    Bearer(&'a str),
}

/// A live session's registration: the receiver changes when the session must end.
pub struct Registration {
    pub interrupt: watch::Receiver<Option<Interrupt>>,
    /// Unregisters the session when dropped.
    pub guard: Box<dyn Send + Sync>,
}

/// No connection of the asked protocol has this name.
#[derive(Debug, thiserror::Error)]
#[error("there is no connection {given:?}{}", known_list(.known))]
pub struct UnknownTarget {
    pub given: String,
    /// The names of the connections of the asked protocol, sorted.
    pub known: Vec<String>,
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!("; known connections: {}", known.join(", "))
    }
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password { user, .. } => write!(f, "Password {{ user: {user:?}, .. }}"),
            Credential::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}
