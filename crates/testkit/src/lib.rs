//! Test harness for witness integration tests.
//!
//! Integration tests exercise the gateway against *real* servers rather than
//! mocks, because the interesting bugs live in protocol details (auth
//! handshakes, TLS negotiation, COPY framing) that mocks get wrong. Every
//! server started here lives in its own temporary directory and listens on a
//! free loopback port, so tests never depend on (or disturb) system services
//! and can run in parallel.
//!
//! * [`free_port`] — pick an unused loopback TCP port.
//! * [`Postgres`] — a throw-away PostgreSQL cluster with well-known roles
//!   for trust, md5 and SCRAM authentication, optionally with TLS.
//! * [`Python`] — a cached virtualenv for tests that drive real client
//!   libraries (e.g. psycopg).
//! * [`OidcProvider`] — a real OpenID provider (the certified `oidc-provider`
//!   npm package under Node.js) that mints JWT access tokens by the
//!   client-credentials grant.
//! * [`Sshd`] — a throw-away OpenSSH server (key-only login as the current
//!   user) with its host key for pinning, plus [`SshKeyPair`] for making
//!   further client keys.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod oidc;
mod postgres;
mod python;
mod sshd;
mod util;

pub use oidc::{OidcProvider, AGENT_CLIENT, CONSOLE_CLIENT, CONSOLE_PEOPLE, ED_CLIENT, OIDC_PROVIDER_VERSION, OPS_CLIENT, PSS_CLIENT};
pub use postgres::{pg_bin, Postgres, PostgresOptions, MD5_PASSWORD, SCRAM_PASSWORD, SUPERUSER_PASSWORD};
pub use python::Python;
pub use sshd::{ssh_client_options, SshKeyPair, Sshd, SshdOptions};

use std::net::{Ipv4Addr, TcpListener};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and letting the kernel choose;
/// the listener is dropped before returning so that the real server can bind
/// it. There is an unavoidable window in which another process could grab the
/// same port; callers that start servers (like [`Postgres::start`]) retry with
/// a fresh port when the bind fails.
///
/// A port is never handed out twice in one process: once its listener is
/// dropped the kernel may choose it again for the next call, and a test that
/// asks for two ports (an SSH and an API listener, say) must get two.
///
/// # Panics
///
/// Panics if the loopback interface cannot be bound at all.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("free_port: cannot bind 127.0.0.1:0: {e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("free_port: cannot read local address of listener: {e}")).port();
        if GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..500).map(|_| super::free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }
}
