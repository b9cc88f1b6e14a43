//! PostgreSQL for witness: the front half speaks to clients (TLS, authentication with a witness
//! token), the back half logs in to the target with a login witness holds (the connection's own,
//! or the one for the caller's groups), only by the exchanges the connection allows, and the relay
//! between them records every request before it is forwarded and every response before it reaches
//! the client.
//!
//! This crate knows the PostgreSQL protocol and nothing of tokens, policy or the ledger's format:
//! it asks its [`Gate`] who a client is, which target a connection name means, where to record,
//! and whether each request may run, and puts each request through the gate's one admission
//! path; [`PgGate`] adds what only PostgreSQL needs (SCRAM, column masking). Relayed messages are
//! forwarded as received, never re-encoded; a denied request is replaced by one the target
//! refuses, and that refusal by witness's.
//!
//! The modules depend on each other one way. `front` runs startup and hands `relay` a plain
//! `ReadySession`; `relay` drives `record` (what each message means, over `state`) and `mask`
//! (which writes rewritten rows through `to_client` and shows values as `recorded` does). A
//! `target` is configuration only: what masking learns of its catalog is kept per connection by
//! the front (`catalog`), and `catalog_lookup` alone asks the target for it.

#![forbid(unsafe_code)]

pub mod codec;
pub mod record;

mod back;
pub mod binary;
mod binding;
mod cancel;
mod catalog;
mod catalog_lookup;
pub mod copy;
mod front;
mod gate;
mod mask;
mod reading;
mod recorded;
mod relay;
mod state;
mod target;
mod tls;
mod to_client;

pub use witness_core::{AuthRefused, Interrupt, Subject};
pub use witness_gate::Gate;

pub use back::BackendError;
pub use binding::{tls_server_end_point, BindingUnavailable, ChannelBindingMode, UnknownChoice};
pub use cancel::CancelKeys;
pub use front::{attribute as sasl_attribute, serve_client, split_gs2, split_task_option, FrontAuth, PgFront, PgSettings};
pub use gate::{PgGate, ScramParams};
pub use rustls::ServerConfig as RustlsServerConfig;
pub use target::{AuthMethod, GroupLogin, PgLogin, PgTarget};
pub use tls::{client_config, pinned_client_config, server_config, verified_client_config, ClientIdentity, TlsMode, TlsSetupError};
