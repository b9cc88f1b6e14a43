//! Protocol-neutral vocabulary of witness: who opened a session, over which connection, and the
//! events a session is made of, and the verdicts the gate gives on requests.
//!
//! This crate does no I/O and knows nothing of wire protocols, policy rules or the ledger's byte
//! format. Protocol crates lower what they see into these types; the ledger records them.

#![forbid(unsafe_code)]

mod event;
mod glob;
pub mod kind;
mod live;
mod login;
mod principal;
mod request;
mod secret;
mod session;
mod verdict;

pub use event::{is_mostly_text, one_line_reason, shown_text, Direction, Event, EventKind, InvalidEventKind, PayloadType};
pub use glob::Glob;
pub use live::{AuthRefused, Interrupt, Subject};
pub use login::PendingLogin;
pub use principal::Principal;
pub use request::{KubeRequest, KubeResource, Request, SshOperation, UnknownSshOperation};
pub use secret::Secret;
pub use session::{InvalidSessionId, InvalidSessionIdPrefix, Protocol, SessionId, SessionIdPrefix, SessionInfo, UnknownProtocol};
pub use verdict::{ApprovalOutcome, Held, Verdict};
