//! The accept loop the client listeners share (PostgreSQL, SSH and HTTP): it bounds connections, keeps
//! watch over each one until it logs in (closing it when `logins` says so), and drains sessions
//! at shutdown.
//!
//! What this does not do: speak a protocol, beyond the one message a PostgreSQL or HTTP connection
//! gets when it is closed before it has sent anything (the front has not seen it yet then).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use witness_core::PendingLogin;
use witness_proto_pg::codec::{self, Severity};

use crate::logins::{Crowded, Cut, LoginLimits, Logins, Outcome, Ticket};

/// At most this many authenticated sessions per listener; connections waiting to log in have
/// places of their own on top (`[limits] max_unauthenticated`), so that they never take these.
/// Past both, new connections wait in the kernel's backlog to be accepted.
const MAX_SESSIONS: usize = 4096;
/// How long shutdown waits for sessions to end after telling them to.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the loop waits after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A client listener: its protocol's name (for logs) and how its protocol begins.
pub struct Listener {
    pub protocol: &'static str,
    pub opening: Opening,
}

/// How a protocol begins, which decides what a connection closed before logging in is told.
pub enum Opening {
    /// The client speaks first (PostgreSQL). Until it does, the connection stays with the accept
    /// loop, which can tell it in the protocol's own terms why it is closed; it counts as silent,
    /// so it is the first to go when a bound is reached.
    ClientFirst { refusal: fn(Cut, SocketAddr, &LoginLimits) -> Vec<u8> },
    /// The server speaks first (SSH): the front gets the connection at once, and a connection
    /// closed before logging in is just closed.
    ServerFirst,
}

/// Accepts clients until told to stop, then waits up to the grace period for the sessions it
/// started (already told to end by the registry) before cutting the rest off.
pub async fn accept_loop<F, S>(listener: TcpListener, kind: Listener, logins: Arc<Logins>, mut stop: watch::Receiver<bool>, serve: S)
where
    S: Fn(TcpStream, SocketAddr, PendingLogin) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let protocol = kind.protocol;
    let permits = Arc::new(Semaphore::new(MAX_SESSIONS + logins.limits().max_total));
    let (kind, serve) = (Arc::new(kind), Arc::new(serve));
    let mut sessions = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (EMFILE) the next accept fails at once too: a pause
                // keeps the loop from spinning and the log from filling while sessions end.
                tracing::warn!(error = %e, protocol, "accepting a client failed; trying again in a moment");
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                }
            }
        };
        // Admitted here, in the order connections arrived, so that "waited longest" is true.
        let (ticket, login) = logins.admit(peer.ip(), matches!(kind.opening, Opening::ClientFirst { .. }));
        let (kind, logins, serve) = (kind.clone(), logins.clone(), serve.clone());
        sessions.spawn(async move {
            connection(Arrival { tcp, peer, ticket, login }, &kind, &logins, serve.as_ref()).await;
            drop(permit);
        });
        // Reap finished sessions so the set does not grow.
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, sessions.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(_) => {
                tracing::warn!(sessions = sessions.len(), "sessions did not end within the grace period; cutting them off");
                sessions.abort_all();
                while sessions.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// A connection just accepted, with its place among those waiting to log in.
struct Arrival {
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    login: PendingLogin,
}

/// One connection: counted among those waiting to log in until its front says it has, and closed
/// if it is crowded out or its login time runs out before that.
async fn connection<F, S>(arrival: Arrival, kind: &Listener, logins: &Logins, serve: &S)
where
    S: Fn(TcpStream, SocketAddr, PendingLogin) -> F,
    F: Future<Output = ()>,
{
    let Arrival { tcp, peer, mut ticket, login } = arrival;
    // A second handle on the socket, to shut it down whatever the front did with its own: russh
    // runs an SSH connection on a task of its own, which dropping the front's future leaves alone.
    let closer = match tcp.as_fd().try_clone_to_owned() {
        Ok(fd) => std::net::TcpStream::from(fd),
        Err(e) => {
            tracing::warn!(%peer, error = %e, protocol = kind.protocol, "cannot watch a new connection; closing it");
            ticket.ended();
            return;
        }
    };
    if let Opening::ClientFirst { refusal } = kind.opening {
        // A peek, not readiness, which may be a false alarm: the client has spoken once a byte
        // (or the end of its stream) is there to read.
        let mut first_byte = [0u8; 1];
        let silence = tokio::select! {
            _ = tcp.peek(&mut first_byte) => None,
            outcome = ticket.outcome() => Some(outcome),
        };
        match silence {
            None => ticket.spoke(),
            Some(Outcome::Cut(cut)) => {
                // Nothing was read, so the client is at the very start of the protocol, where
                // an error message is what it expects. Written on the second handle, straight
                // to the socket (whose empty buffer takes it whole): tokio's own would refuse
                // to write before its reactor has seen the socket become writable.
                let _ = (&closer).write(&refusal(cut, peer, logins.limits()));
                logins.report(cut, peer.ip());
                return;
            }
            // The front, which alone can log a client in, does not have the connection yet.
            Some(Outcome::LoggedIn) => {}
        }
    }
    let session = serve(tcp, peer, login);
    tokio::pin!(session);
    tokio::select! {
        () = &mut session => {
            ticket.ended();
            return;
        }
        outcome = ticket.outcome() => {
            if let Outcome::Cut(cut) = outcome {
                let _ = closer.shutdown(std::net::Shutdown::Both);
                logins.report(cut, peer.ip());
                return;
            }
        }
    }
    drop((closer, ticket));
    session.await;
}

/// Why a connection that had not logged in was closed: a message, and a hint of what to do.
fn cut_explained(cut: Cut, peer: SocketAddr, limits: &LoginLimits) -> (String, String) {
    let ip = peer.ip();
    match cut {
        Cut::Crowded(Crowded::Address) => (
            format!(
                "too many connections from {ip} that have not logged in (witness allows {} at a time); this one waited longest and is closed",
                limits.max_per_address
            ),
            format!("connect again; if this repeats, something at {ip} opens connections and does not log in (or raise [limits] max_unauthenticated_per_address)"),
        ),
        Cut::Crowded(Crowded::Total) => (
            format!(
                "too many connections that have not logged in (witness allows {} at a time from all addresses); this one from {ip} waited longest and is closed",
                limits.max_total
            ),
            "connect again; if this repeats, many connections are opened and left before logging in (or raise [limits] max_unauthenticated)".to_string(),
        ),
        Cut::TimedOut => (
            format!("witness closed the connection from {ip}: it did not log in within {}", humantime::format_duration(limits.timeout)),
            "log in right after connecting (or raise [limits] login_timeout)".to_string(),
        ),
    }
}

/// What a PostgreSQL client that had sent nothing is told when it is closed: a FATAL
/// ErrorResponse, which libpq shows once it has sent its startup packet.
pub fn pg_refusal(cut: Cut, peer: SocketAddr, limits: &LoginLimits) -> Vec<u8> {
    let sqlstate = if cut == Cut::TimedOut { "57014" } else { "53300" };
    let (message, hint) = cut_explained(cut, peer, limits);
    let mut out = BytesMut::new();
    codec::error_response(&mut out, Severity::Fatal, sqlstate, &message, Some(&hint));
    out.to_vec()
}

/// What an HTTP client that had sent nothing is told when it is closed: a 503 (408 when its time
/// ran out) with the reason in a JSON body, and the connection closed.
pub fn http_refusal(cut: Cut, peer: SocketAddr, limits: &LoginLimits) -> Vec<u8> {
    let status = if cut == Cut::TimedOut { "408 Request Timeout" } else { "503 Service Unavailable" };
    let (message, hint) = cut_explained(cut, peer, limits);
    let body = serde_json::json!({ "error": message, "hint": hint }).to_string();
    format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_why_in_a_postgresql_error() {
        let limits = LoginLimits { timeout: Duration::from_secs(10), max_total: 512, max_per_address: 128 };
        let peer: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let check = |cut: Cut, sqlstate: &str, words: &[&str]| {
            let bytes = pg_refusal(cut, peer, &limits);
            assert_eq!(bytes[0], b'E');
            assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize, bytes.len() - 1, "one whole message");
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains("SFATAL") && text.contains(&format!("C{sqlstate}")), "{text}");
            for word in words {
                assert!(text.contains(word), "{text:?} should say {word:?}");
            }
        };
        check(
            Cut::Crowded(Crowded::Address),
            "53300",
            &["too many connections from 192.0.2.7 that have not logged in", "128", "max_unauthenticated_per_address"],
        );
        check(
            Cut::Crowded(Crowded::Total),
            "53300",
            &["too many connections that have not logged in", "from 192.0.2.7", "512", "[limits] max_unauthenticated)"],
        );
        check(Cut::TimedOut, "57014", &["did not log in within 10s", "login_timeout"]);
    }

    #[test]
    fn http_clients_are_told_in_an_http_response() {
        let limits = LoginLimits { timeout: Duration::from_secs(10), max_total: 512, max_per_address: 128 };
        let peer: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let text = String::from_utf8(http_refusal(Cut::TimedOut, peer, &limits)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 ") && head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(body.contains("did not log in within 10s"), "{body}");
    }
}
