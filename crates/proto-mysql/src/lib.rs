//! MySQL and MariaDB for witness. Today: the wire codec (packets, the login's packets, the
//! answers to a command) and witness's own login to a target with the credentials only it holds
//! (`back`). The front that clients log in to, the relay of their commands through the gate, and
//! the recording build on these.

pub mod answer;
pub mod auth;
pub mod back;
pub mod handshake;
pub mod packet;
pub mod wire;

pub use back::{LoginError, SimpleAnswer, TargetConnection, TargetLogin};
