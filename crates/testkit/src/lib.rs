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
//!   for trust, md5, cleartext and SCRAM authentication, optionally with TLS.
//! * [`MariaDb`] — a throw-away MariaDB server (Debian's) with well-known users for
//!   `mysql_native_password` and `ed25519` authentication, a `customers` table to read, and
//!   optionally TLS.
//! * [`Python`] — a cached virtualenv for tests that drive real client
//!   libraries (e.g. psycopg).
//! * [`NodePackages`] — cached npm packages for tests that run Node.js programs (MySQL drivers).
//! * [`OidcProvider`] — a real OpenID provider (the certified `oidc-provider`
//!   npm package under Node.js) that mints JWT access tokens by the
//!   client-credentials grant.
//! * [`Sshd`] — a throw-away OpenSSH server (key-only login as the current
//!   user) with its host key for pinning, plus [`SshKeyPair`] for making
//!   further client keys.
//! * [`CachingSha2Server`] — a stand-in for a MySQL 8 server's `caching_sha2_password` login
//!   (Python, with OpenSSL checking the RSA-encrypted password), where no MySQL 8 can run.
//! * [`KubeApiServer`] — a stand-in Kubernetes API server (Python's `http.server`) that the
//!   real kubectl can list, watch, create, delete, read logs and exec through (WebSocket), and
//!   that lists every request it got.
//! * [`Nginx`] — a throw-away nginx (Debian's) on a free port with its files in a temp dir: an
//!   HTTP upstream for tests, and the origin and reverse proxy of the HTTP benchmark.
//! * [`WebhookReceiver`] — a real HTTP server (Python's `http.server`) that keeps the POSTs
//!   it gets, for the webhooks witness sends.
//! * [`cpu_ticks`] — the CPU time a process (or its finished children) used,
//!   for benchmarks that charge a proxy its cost per request or per byte.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod caching_sha2;
mod kube;
mod mariadb;
mod nginx;
mod node;
mod oidc;
mod postgres;
mod python;
mod sshd;
mod util;
mod webhooks;

pub use caching_sha2::CachingSha2Server;
pub use kube::{KubeApiServer, KUBE_SECRET_MARKER};
pub use mariadb::{MariaDb, ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, ED25519_PASSWORD, ED25519_USER, NATIVE_PASSWORD, NATIVE_USER};
pub use nginx::Nginx;
pub use node::NodePackages;
pub use oidc::{OidcProvider, AGENT_CLIENT, CONSOLE_CLIENT, CONSOLE_PEOPLE, ED_CLIENT, OIDC_PROVIDER_VERSION, OPS_CLIENT, PSS_CLIENT};
pub use postgres::{pg_bin, Postgres, PostgresOptions, CLEARTEXT_PASSWORD, MD5_PASSWORD, SCRAM_PASSWORD, SUPERUSER_PASSWORD};
pub use python::Python;
pub use sshd::{ssh_client_options, SshKeyPair, Sshd, SshdOptions};
pub use webhooks::WebhookReceiver;

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

/// User plus system CPU time of process `pid` (`"self"` for this one), all its
/// threads, in clock ticks (10 ms on Linux), read from `/proc/PID/stat`; with
/// `children`, that of its children it has waited for instead. None when the
/// process is gone or /proc cannot tell.
pub fn cpu_ticks(pid: &str, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) end with ')':
    // utime is the 12th of them; stime, cutime and cstime follow.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let at = if children { 13 } else { 11 };
    Some(fields.get(at)?.parse::<u64>().ok()? + fields.get(at + 1)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..500).map(|_| super::free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    /// The ticks of this process grow while it computes; a finished child's show up among its
    /// children's; a process that does not exist has none.
    #[test]
    fn cpu_ticks_follow_the_work_done() {
        let before = super::cpu_ticks("self", false).expect("this process has a /proc entry");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        // Busy until at least two ticks have passed (bounded: a stuck counter fails the test).
        while super::cpu_ticks("self", false).unwrap() < before + 2 && started.elapsed().as_secs() < 30 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(super::cpu_ticks("self", false).unwrap() >= before + 2, "30 s of computing did not move the ticks ({x})");

        let children_before = super::cpu_ticks("self", true).unwrap();
        let burn = "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done";
        assert!(std::process::Command::new("sh").args(["-c", burn]).status().unwrap().success());
        assert!(super::cpu_ticks("self", true).unwrap() > children_before, "a finished child's CPU is not counted");

        assert_eq!(super::cpu_ticks("4194305", false), None, "no process has a pid above pid_max's limit");
    }
}
