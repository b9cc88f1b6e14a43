//! The front half: a client connects, perhaps asks for TLS, sends its startup packet (or a cancel
//! request), and authenticates with a witness token as its password, by SCRAM-SHA-256 or (only
//! over TLS or loopback) in cleartext. Then the login for the caller's groups is picked, the
//! session is recorded with it, the target logged in to, and the client told it is ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::BytesMut;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use witness_core::{kind, AuthRefused, Direction, Event, PendingLogin, Principal, Protocol, SessionInfo, Subject};
use witness_gate::{Credential, Stream};

use crate::back;
use crate::binding::UnknownChoice;
use crate::cancel::CancelKeys;
use crate::catalog::Catalogs;
use crate::codec::{
    self, auth_request, encryption, frontend, Fields, Peek, Severity, CANCEL_REQUEST, GSSENC_REQUEST, MAX_STARTUP_LEN, PROTOCOL_3_0,
    SSL_REQUEST,
};
use crate::gate::{PgGate, ScramParams};
use crate::record::startup_attrs;
use crate::relay::{self, Masking, ReadySession};
use crate::target::PgTarget;

/// Everything the front needs, shared by all client connections.
pub struct PgFront<G: PgGate> {
    pub gate: Arc<G>,
    /// Offered to clients that ask for TLS; None answers 'N'.
    pub tls: Option<Arc<ServerConfig>>,
    pub settings: PgSettings,
    /// The cancel keys of live sessions, to route a client's CancelRequest.
    cancels: CancelKeys,
    /// What masking has learned of each connection's catalog, shared by its sessions.
    catalogs: Catalogs,
}

/// How the front behaves.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// Result rows recorded per statement; the total count is always recorded.
    pub max_rows_per_statement: usize,
    pub auth: FrontAuth,
    /// Time a client has from connecting to being ready (TLS, startup, authentication).
    pub startup_timeout: Duration,
}

/// Which password exchange clients are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontAuth {
    /// SCRAM-SHA-256: the token never crosses the wire.
    Scram,
    /// The token in cleartext, where the connection is TLS or loopback; SCRAM elsewhere.
    Password,
}

impl std::str::FromStr for FrontAuth {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<FrontAuth, UnknownChoice> {
        match s {
            "scram" => Ok(FrontAuth::Scram),
            "password" => Ok(FrontAuth::Password),
            other => Err(UnknownChoice { what: "[postgres] auth", value: other.to_string(), choices: "\"scram\" or \"password\"" }),
        }
    }
}

impl<G: PgGate> PgFront<G> {
    pub fn new(gate: Arc<G>, tls: Option<Arc<ServerConfig>>, settings: PgSettings) -> PgFront<G> {
        PgFront { gate, tls, settings, cancels: CancelKeys::default(), catalogs: Catalogs::default() }
    }
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings { max_rows_per_statement: 100, auth: FrontAuth::Scram, startup_timeout: Duration::from_secs(60) }
    }
}

/// Why startup ended early; the client has already been told, where it could be.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
}

/// Client names that say nothing about a task (their application_name default).
const DEFAULT_APPLICATION_NAMES: &[&str] = &["", "psql", "pgbench", "pg_dump", "pg_restore", "PostgreSQL JDBC Driver"];

/// Serves one client connection from its first byte to its end; `login` is told once the client
/// is authenticated.
pub async fn serve_client<G: PgGate>(front: Arc<PgFront<G>>, tcp: TcpStream, peer: SocketAddr, login: PendingLogin) {
    let _ = tcp.set_nodelay(true);
    let started = tokio::time::timeout(front.settings.startup_timeout, startup(&front, tcp, peer, login)).await;
    match started {
        Err(_) => tracing::debug!(%peer, "client did not finish startup in time"),
        Ok(Err(e)) => tracing::info!(%peer, error = %e, "client session refused"),
        Ok(Ok(None)) => {}
        Ok(Ok(Some(ready))) => relay::run(ready, front.gate.as_ref()).await,
    }
}

async fn startup<G: PgGate>(
    front: &PgFront<G>,
    tcp: TcpStream,
    peer: SocketAddr,
    login: PendingLogin,
) -> Result<Option<ReadySession>, StartupError> {
    let mut stream = Stream::Plain(tcp);
    let params = loop {
        let packet = read_startup_packet(&mut stream).await?;
        let code = i32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        match code {
            SSL_REQUEST => match (&front.tls, &stream) {
                (Some(config), Stream::Plain(_)) => {
                    stream.write_all(&[encryption::ACCEPTED]).await?;
                    let Stream::Plain(tcp) = stream else { unreachable!("matched above") };
                    let tls = tokio_rustls::TlsAcceptor::from(config.clone()).accept(tcp).await?;
                    stream = Stream::ServerTls(Box::new(tls));
                }
                _ => stream.write_all(&[encryption::REFUSED]).await?,
            },
            GSSENC_REQUEST => stream.write_all(&[encryption::REFUSED]).await?,
            CANCEL_REQUEST => {
                let mut f = Fields::new(&packet[4..]);
                if let (Ok(pid), Ok(secret)) = (f.i32(), f.i32()) {
                    front.cancels.cancel((pid, secret), &peer.to_string()).await;
                }
                return Ok(None);
            }
            PROTOCOL_3_0 => break codec::parse_startup_params(&packet[4..]),
            other => {
                let message = format!("unsupported frontend protocol {}.{}: witness speaks protocol 3.0", other >> 16, other & 0xffff);
                return refuse(&mut stream, "0A000", message, None).await;
            }
        }
    };
    let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let Some(user) = param("user").map(str::to_string) else {
        let hint = "connect with user=IDENTITY and a witness token as the password";
        return refuse(&mut stream, "28000", "no user name in the startup packet".into(), Some(hint)).await;
    };
    if param("replication").is_some_and(|v| v != "false" && v != "0") {
        return refuse(&mut stream, "0A000", "witness does not relay replication connections".into(), None).await;
    }
    let connection = param("database").unwrap_or(&user).to_string();

    let cleartext_allowed = stream.is_tls() || peer.ip().is_loopback();
    let principal = match (front.settings.auth, cleartext_allowed) {
        (FrontAuth::Password, true) => cleartext_auth(front, &mut stream, &user).await?,
        _ => scram_auth(front, &mut stream, &user).await?,
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(refused) => {
            let mut message = format!("password authentication failed for user \"{user}\"");
            if let Some(why) = refused.client_reason {
                message = format!("{message}: {why}");
            }
            let hint = format!("witness takes a token (or a JWT from a configured issuer) as the password, with user= the identity it was created for; it may be for another identity, unknown, expired or revoked. Create one with `witness token create --identity {user}`");
            return refuse(&mut stream, "28P01", message, Some(&hint)).await;
        }
    };
    login.logged_in();
    let target = match front.gate.target::<PgTarget>(&connection) {
        Ok(target) => target,
        Err(unknown) => {
            let hint = format!("dbname picks the witness connection; configured PostgreSQL connections: {}", unknown.known.join(", "));
            return refuse(&mut stream, "3D000", format!("witness has no PostgreSQL connection named \"{connection}\""), Some(&hint)).await;
        }
    };

    let (options, task_option) = split_task_option(param("options").unwrap_or(""));
    let application_name = param("application_name").unwrap_or("");
    // The task the client names (`-c witness.task=…`, else a telling application_name). A task
    // the credential carries binds the session: rules keyed on tasks must not be stepped around
    // by naming another. The client's is used only when the credential has none; both are recorded.
    let client_task =
        task_option.or_else(|| (!DEFAULT_APPLICATION_NAMES.contains(&application_name)).then(|| application_name.to_string()));
    let task = principal.task.clone().or_else(|| client_task.clone());
    let info = SessionInfo {
        identity: principal.identity.clone(),
        connection: connection.clone(),
        protocol: Protocol::Postgres,
        task,
        client_addr: Some(peer.to_string()),
        groups: principal.groups.clone(),
    };
    let session = match front.gate.open_session(&info).await {
        Ok(session) => session,
        Err(e) => {
            let message = format!("witness cannot record this session, so it refuses it: {e}");
            return refuse(&mut stream, "58000", message, None).await;
        }
    };
    let passthrough: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "options" | "replication"))
        .cloned()
        .chain((!options.is_empty()).then(|| ("options".to_string(), options.clone())))
        .collect();
    // The database role the session runs as: what the target lets it do is the boundary that
    // holds whatever the statements' text hides, so the recording says which one it was.
    let login = target.login_for(&principal.groups);
    let mut attrs = startup_attrs(stream.is_tls(), &passthrough, &principal.credential, client_task.as_deref());
    attrs.insert("target_user".into(), login.user.clone().into());
    let startup_event = Event {
        attrs,
        ..Event::note(
            kind::PG_STARTUP,
            Direction::Gateway,
            format!("{} via {} (target {} as {})", principal.identity, connection, target.address, login.user),
        )
    };
    if let Err(e) = session.append(&startup_event).await {
        return refuse(&mut stream, "58000", format!("witness cannot record this session, so it refuses it: {e}"), None).await;
    }
    let backend = match back::connect_as(&target, login, &passthrough).await {
        Ok(backend) => backend,
        Err(e) => {
            let message = e.to_string();
            front.gate.target_failed(&connection);
            let _ = session.close(&format!("target unavailable: {message}")).await;
            return refuse(&mut stream, "08001", message, None).await;
        }
    };
    let subject = Subject { session: session.id(), info, principal: principal.clone() };
    let registration = front.gate.register(&subject);
    let (client_key, key_guard) = match backend.key {
        Some(key) => {
            let (ours, guard) = front.cancels.register(&target.address, key, session.clone());
            (ours, Some(guard))
        }
        None => ((0, 0), None),
    };
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(&backend.parameter_status);
    codec::backend_key_data(&mut out, client_key.0, client_key.1);
    out.extend_from_slice(&backend.ready);
    send(&mut stream, &out).await?;
    tracing::info!(identity = %principal.identity, connection, %peer, session = %session.id(), "PostgreSQL session started");
    // Masks are settled when the session starts; a reload applies to sessions that start later.
    let masking = front.gate.masks(&subject).map(|masks| Masking { masks, catalog: front.catalogs.of(&connection), target });
    Ok(Some(ReadySession {
        client: stream,
        backend,
        session,
        interrupt: registration.interrupt,
        subject,
        guards: (registration.guard, key_guard),
        max_rows: front.settings.max_rows_per_statement,
        masking,
    }))
}

/// SCRAM-SHA-256 as RFC 5802 and PostgreSQL run it. Some(principal) on success, None on refusal.
async fn scram_auth<G: PgGate>(
    front: &PgFront<G>,
    stream: &mut Stream,
    user: &str,
) -> Result<Result<Principal, AuthRefused>, StartupError> {
    let mut out = BytesMut::new();
    codec::authentication(&mut out, auth_request::SASL, b"SCRAM-SHA-256\0\0");
    send(stream, &out).await?;
    let mut buf = BytesMut::new();

    let first = read_password_message(stream, &mut buf).await?;
    let mut f = Fields::new(&first);
    let mechanism = f.cstr().map_err(|_| protocol_violation())?;
    if mechanism != b"SCRAM-SHA-256" {
        return Err(StartupError::Refused(format!("client chose SASL mechanism {:?}", String::from_utf8_lossy(mechanism))));
    }
    let len = f.i32().map_err(|_| protocol_violation())?;
    let client_first = f.bytes(len.max(0) as usize).map_err(|_| protocol_violation())?;
    let client_first = std::str::from_utf8(client_first).map_err(|_| protocol_violation())?;
    let (gs2_header, client_first_bare) = split_gs2(client_first).ok_or_else(protocol_violation)?;
    let client_nonce = attribute(client_first_bare, 'r').ok_or_else(protocol_violation)?;

    let challenge = front.gate.scram_challenge(user);
    let nonce = format!("{client_nonce}{}", B64.encode(rand::random::<[u8; 18]>()));
    let server_first = format!("r={nonce},s={},i={}", B64.encode(challenge.salt()), challenge.iterations());
    out.clear();
    codec::authentication(&mut out, auth_request::SASL_CONTINUE, server_first.as_bytes());
    send(stream, &out).await?;

    let final_message = read_password_message(stream, &mut buf).await?;
    let client_final = std::str::from_utf8(&final_message).map_err(|_| protocol_violation())?;
    let (without_proof, proof) = client_final.rsplit_once(",p=").ok_or_else(protocol_violation)?;
    let binding_ok = attribute(without_proof, 'c') == Some(&B64.encode(gs2_header.as_bytes()));
    if !binding_ok || attribute(without_proof, 'r') != Some(nonce.as_str()) {
        return Err(StartupError::Refused("SCRAM channel binding or nonce mismatch".into()));
    }
    let proof = B64.decode(proof).map_err(|_| protocol_violation())?;
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    match front.gate.verify_scram(challenge, auth_message.as_bytes(), &proof) {
        Ok((principal, server_signature)) => {
            out.clear();
            codec::authentication(&mut out, auth_request::SASL_FINAL, format!("v={}", B64.encode(server_signature)).as_bytes());
            codec::authentication(&mut out, auth_request::OK, b"");
            stream.write_all(&out).await?;
            Ok(Ok(principal))
        }
        Err(refused) => {
            tracing::info!(user, reason = %refused, "SCRAM authentication refused");
            Ok(Err(refused))
        }
    }
}

async fn cleartext_auth<G: PgGate>(
    front: &PgFront<G>,
    stream: &mut Stream,
    user: &str,
) -> Result<Result<Principal, AuthRefused>, StartupError> {
    let mut out = BytesMut::new();
    codec::authentication(&mut out, auth_request::CLEARTEXT_PASSWORD, b"");
    send(stream, &out).await?;
    let mut buf = BytesMut::new();
    let body = read_password_message(stream, &mut buf).await?;
    let password = Fields::new(&body).cstr().map_err(|_| protocol_violation())?;
    let password = String::from_utf8_lossy(password);
    match front.gate.authenticate(Protocol::Postgres, Credential::Password { user, password: &password }).await {
        Ok(principal) => {
            out.clear();
            codec::authentication(&mut out, auth_request::OK, b"");
            stream.write_all(&out).await?;
            Ok(Ok(principal))
        }
        Err(refused) => {
            tracing::info!(user, reason = %refused, "password authentication refused");
            Ok(Err(refused))
        }
    }
}

/// Reads one 'p' message (password, SASL initial or SASL response) and returns its body.
async fn read_password_message(stream: &mut Stream, buf: &mut BytesMut) -> Result<Vec<u8>, StartupError> {
    loop {
        match codec::peek(buf) {
            Peek::Whole(n) if n > MAX_STARTUP_LEN => return Err(protocol_violation()),
            Peek::Whole(n) => {
                let msg = buf.split_to(n);
                if msg[0] != frontend::PASSWORD {
                    return Err(StartupError::Refused(format!("expected a password message, got {:?}", msg[0] as char)));
                }
                return Ok(msg[5..].to_vec());
            }
            Peek::TooLong(_) => return Err(protocol_violation()),
            Peek::Partial => {}
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(StartupError::Refused("client left during authentication".into()));
        }
    }
}

/// Reads an untagged startup packet; returns it without its length.
async fn read_startup_packet(stream: &mut Stream) -> Result<Vec<u8>, StartupError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = i32::from_be_bytes(len);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(StartupError::Refused(format!("startup packet length {len} is out of range")));
    }
    let mut packet = vec![0u8; len as usize - 4];
    stream.read_exact(&mut packet).await?;
    Ok(packet)
}

/// Takes `witness.task` out of a startup `options` string (`-c witness.task=…`, spaces escaped by
/// backslashes as libpq does); returns the other options and the task.
pub fn split_task_option(options: &str) -> (String, Option<String>) {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    let mut task = None;
    let mut kept: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let setting = match words[i].as_str() {
            "-c" => words.get(i + 1).map(|w| (w.as_str(), 2)),
            w if w.starts_with("-c") => Some((&w[2..], 1)),
            w if w.starts_with("--") => Some((&w[2..], 1)),
            _ => None,
        };
        match setting {
            Some((value, used)) if value.starts_with("witness.task=") => {
                task = Some(value["witness.task=".len()..].to_string());
                i += used;
            }
            _ => {
                kept.push(words[i].replace(' ', "\\ "));
                i += 1;
            }
        }
    }
    (kept.join(" "), task.filter(|t| !t.is_empty()))
}

/// Splits a SCRAM client-first message into its GS2 header ("n,," or "y,,") and the bare part.
pub fn split_gs2(message: &str) -> Option<(&str, &str)> {
    let first = message.find(',')?;
    let second = first + 1 + message[first + 1..].find(',')?;
    let header = &message[..=second];
    if !(header.starts_with("n,") || header.starts_with("y,")) {
        return None;
    }
    Some((header, &message[second + 1..]))
}

/// The value of attribute `name` (as in `r=…`) in a SCRAM message.
pub fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| part.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

fn protocol_violation() -> StartupError {
    StartupError::Refused("protocol violation during authentication".into())
}

/// Writes witness's own messages to the client and flushes them (TLS buffers otherwise).
async fn send(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Sends a FATAL error to the client and ends startup.
async fn refuse(stream: &mut Stream, sqlstate: &str, message: String, hint: Option<&str>) -> Result<Option<ReadySession>, StartupError> {
    let mut out = BytesMut::new();
    codec::error_response(&mut out, Severity::Fatal, sqlstate, &message, hint);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    Err(StartupError::Refused(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_option_is_taken_out_of_options() {
        let check = |options: &str, kept: &str, task: Option<&str>| {
            assert_eq!(split_task_option(options), (kept.to_string(), task.map(str::to_string)), "{options:?}");
        };
        check("", "", None);
        check("-c witness.task=JIRA-12", "", Some("JIRA-12"));
        check("-c statement_timeout=5s -c witness.task=fix\\ the\\ report", "-c statement_timeout=5s", Some("fix the report"));
        check("-cwitness.task=a --search_path=x", "--search_path=x", Some("a"));
        check("--witness.task=b", "", Some("b"));
        check("-c witness.task=", "", None);
    }

    #[test]
    fn scram_messages_are_taken_apart() {
        assert_eq!(split_gs2("n,,n=,r=abc"), Some(("n,,", "n=,r=abc")));
        assert_eq!(split_gs2("y,,n=u,r=abc"), Some(("y,,", "n=u,r=abc")));
        assert_eq!(split_gs2("p=tls-server-end-point,,n=,r=x"), None);
        assert_eq!(attribute("n=,r=abc,x=1", 'r'), Some("abc"));
        assert_eq!(attribute("c=biws,r=n1", 'c'), Some("biws"));
        assert_eq!(attribute("c=biws", 'p'), None);
    }
}
