//! PostgreSQL for witness: the front half speaks to clients (TLS, authentication with a witness
//! token), the back half logs in to the target with a login witness holds (the connection's own,
//! or the one for the caller's groups), only by the exchanges the connection allows, and the relay
//! between them records every request before it is forwarded and every response before it reaches
//! the client.
//!
//! This crate knows the PostgreSQL protocol and nothing of tokens, policy or the ledger's format:
//! it asks its [`Gate`] who a client is, which target a connection name means, where to record,
//! and whether each request may run, and puts each request through the gate's one admission
//! path; [`PgGate`] adds what only PostgreSQL needs (SCRAM, column masking). Relayed messages are forwarded as received, never
//! re-encoded; a denied request is replaced by one the target refuses, and that refusal by witness's.

#![forbid(unsafe_code)]

pub mod codec;
pub mod record;

mod back;
pub mod binary;
mod binding;
mod cancel;
mod catalog;
pub mod copy;
mod front;
mod mask;
mod reading;
mod relay;
mod state;
mod target;
mod tls;

use std::sync::Arc;

use witness_core::Principal;
pub use witness_core::{AuthRefused, Interrupt, Subject};
pub use witness_gate::Gate;
use witness_policy::mask::SessionMasks;

pub use back::BackendError;
pub use binding::{tls_server_end_point, BindingUnavailable, ChannelBindingMode, UnknownChoice};
pub use cancel::CancelKeys;
pub use front::{attribute as sasl_attribute, serve_client, split_gs2, split_task_option, FrontAuth, PgFront, PgSettings};
pub use rustls::ServerConfig as RustlsServerConfig;
pub use target::{AuthMethod, GroupLogin, PgLogin, PgTarget};
pub use tls::{client_config, server_config, TlsMode, TlsSetupError};

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
