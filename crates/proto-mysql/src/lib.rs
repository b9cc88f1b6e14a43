//! MySQL and MariaDB for witness: the front half greets clients and checks their tokens, the
//! back half logs in to the target with credentials only witness holds, and the relay between
//! them records every command before the target sees it and every result before the client has
//! it whole, putting each statement to the gate first.
//!
//! This crate knows the MySQL protocol and nothing of tokens, policy or the ledger's format: it
//! asks its [`Gate`] who a client is, which target a connection name means, where to record, and
//! whether each statement may run; [`MysqlGate`] adds what only MySQL needs (verifying
//! `mysql_native_password` answers, masking rules). Packets are relayed as received, except
//! masked rows and witness's own errors.
//!
//! The modules depend on each other one way: `front` logs in and hands `relay` a plain
//! `ReadySession` (its client stream compressed by `compress` when the client asked); `relay` follows answers with `results` (which masks rows with `mask`) and
//! prepared statements with `statements`; `packet`, `wire`, `handshake`, `answer`, `values` and
//! `auth` are the pure codec under them all, and `back` witness's own login to a target.

#![forbid(unsafe_code)]

pub mod answer;
pub mod auth;
pub mod back;
mod catalog;
pub mod compress;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
pub mod handshake;
pub mod kill;
mod mask;
pub mod packet;
mod relay;
mod results;
mod statements;
mod target;
pub mod values;
pub mod wire;

pub use witness_gate::Gate;

pub use back::{LoginError, SimpleAnswer, TargetConnection, TargetLogin};
pub use front::{serve_client, MysqlAuth, MysqlFront, MysqlSettings, UnknownAuth};
pub use gate::MysqlGate;
pub use relay::MAX_CLIENT_PAYLOAD;
pub use target::MysqlTarget;
