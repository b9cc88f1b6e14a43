//! The front half: witness greets a client as a MySQL server would (with the version and
//! capabilities its targets report), perhaps switches to TLS, and checks the client's token: by
//! `mysql_native_password` against the token's stored verifier (the token never crosses the
//! wire), or in cleartext (`mysql_clear_password`, only over TLS or loopback, and only where the
//! config asks for it: JWTs need it). The user names the identity and the database the witness
//! connection. Then the session is recorded, witness logs in to the target with its own
//! credentials and the capabilities the client agreed on, and the client is told it is in.
//!
//! The greeting comes before witness knows which target the client wants, so its version is the
//! one the listener's targets last reported: read from the first that answers when the listener
//! starts greeting, and from every login since.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use witness_core::{kind, AuthRefused, Direction, Event, PendingLogin, Principal, Protocol, SessionInfo, Subject};
use witness_gate::{Credential, Stream};

use crate::answer::ErrPacket;
use crate::auth;
use crate::back::{TargetConnection, RELAYED};
use crate::catalog::Catalogs;
use crate::compress::ClientLink;
use crate::gate::MysqlGate;
use crate::handshake::{capability, Greeting, HandshakeResponse};
use crate::kill::{Behind, Kills};
use crate::packet::write_packets;
use crate::relay::{self, ReadySession};
use crate::target::MysqlTarget;

/// The most a client's login packet may hold: user, auth answer, database and attributes.
const MAX_LOGIN_PAYLOAD: usize = 128 << 10;
/// How long the greeting waits for a target to say its version, before it uses a stand-in.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The version clients are greeted with when no target has answered yet.
const STAND_IN_VERSION: &str = "8.0.0-witness";

/// Everything the front needs, shared by all client connections.
pub struct MysqlFront<G: MysqlGate> {
    pub gate: Arc<G>,
    /// Offered to clients that ask for TLS; None does not offer it.
    pub tls: Option<Arc<ServerConfig>>,
    pub settings: MysqlSettings,
    /// The targets' addresses in config order: where the greeting's version is first asked.
    probe: Vec<String>,
    /// The version and capabilities a target last greeted witness with.
    seen: Mutex<Option<(String, u32)>>,
    next_id: AtomicU32,
    kills: Kills,
    /// Which tables each connection's target has, for column masking.
    catalogs: Catalogs,
}

/// How the front behaves.
#[derive(Clone, Debug)]
pub struct MysqlSettings {
    /// Result rows recorded per statement; the total count is always recorded.
    pub max_rows_per_statement: usize,
    pub auth: MysqlAuth,
    /// Time a client has from connecting to being logged in.
    pub startup_timeout: Duration,
    /// The connection of a client that names no database (tools such as mariadb-dump log in
    /// without one and select it afterwards); None refuses such a client.
    pub default_connection: Option<String>,
}

/// How clients present their token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MysqlAuth {
    /// `mysql_native_password`: the token is checked against its stored verifier.
    Native,
    /// The token in cleartext (`mysql_clear_password`) where the connection is TLS or loopback,
    /// so that JWTs work too; `mysql_native_password` elsewhere.
    Password,
}

/// A `[mysql] auth` value that is not one of the choices.
#[derive(Debug, thiserror::Error)]
#[error("[mysql] auth {0:?} is not a choice: use \"native\" or \"password\"")]
pub struct UnknownAuth(pub String);

impl std::str::FromStr for MysqlAuth {
    type Err = UnknownAuth;

    fn from_str(s: &str) -> Result<MysqlAuth, UnknownAuth> {
        match s {
            "native" => Ok(MysqlAuth::Native),
            "password" => Ok(MysqlAuth::Password),
            other => Err(UnknownAuth(other.to_string())),
        }
    }
}

impl Default for MysqlSettings {
    fn default() -> Self {
        MysqlSettings {
            max_rows_per_statement: 100,
            auth: MysqlAuth::Native,
            startup_timeout: Duration::from_secs(60),
            default_connection: None,
        }
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

/// Server error codes witness answers with, as MySQL numbers them.
pub(crate) mod code {
    pub const ACCESS_DENIED: u16 = 1045;
    pub const BAD_DB: u16 = 1049;
    pub const UNKNOWN_ERROR: u16 = 1105;
    pub const HANDSHAKE: u16 = 1043;
    pub const NOT_SUPPORTED: u16 = 1235;
    pub const UNKNOWN_COMMAND: u16 = 1047;
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub const NO_SUCH_THREAD: u16 = 1094;
    pub const CONNECTION_KILLED: u16 = 1927;
    pub const PACKET_TOO_LARGE: u16 = 1153;
    pub const PACKETS_OUT_OF_ORDER: u16 = 1156;
}

impl<G: MysqlGate> MysqlFront<G> {
    /// `probe`: the addresses of the listener's targets, in config order.
    pub fn new(gate: Arc<G>, tls: Option<Arc<ServerConfig>>, settings: MysqlSettings, probe: Vec<String>) -> MysqlFront<G> {
        MysqlFront {
            gate,
            tls,
            settings,
            probe,
            seen: Mutex::new(None),
            next_id: AtomicU32::new(1),
            kills: Kills::default(),
            catalogs: Catalogs::default(),
        }
    }

    /// The version and capabilities to greet with: as a target last said, or asked now.
    async fn target_greeting(&self) -> (String, u32) {
        if let Some(seen) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return seen;
        }
        for address in &self.probe {
            if let Ok(Ok(greeting)) = tokio::time::timeout(PROBE_TIMEOUT, TargetConnection::probe(address)).await {
                return self.saw(&greeting);
            }
        }
        (STAND_IN_VERSION.to_string(), RELAYED)
    }

    fn saw(&self, greeting: &Greeting) -> (String, u32) {
        let seen = (greeting.server_version.clone(), greeting.capabilities);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen.clone());
        seen
    }
}

/// Serves one client connection from its first byte to its end; `login` is told once the client
/// is authenticated.
pub async fn serve_client<G: MysqlGate>(front: Arc<MysqlFront<G>>, tcp: TcpStream, peer: SocketAddr, login: PendingLogin) {
    let _ = tcp.set_nodelay(true);
    let started = tokio::time::timeout(front.settings.startup_timeout, startup(&front, tcp, peer, login)).await;
    match started {
        Err(_) => tracing::debug!(%peer, "MySQL client did not log in in time"),
        Ok(Err(e)) => tracing::info!(%peer, error = %e, "MySQL client session refused"),
        Ok(Ok(ready)) => relay::run(ready, front.gate.as_ref()).await,
    }
}

/// The client side of the login: its stream and the sequence number of the next packet.
struct Login {
    stream: Stream,
    sequence: u8,
}

impl Login {
    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        self.sequence = write_packets(&mut out, self.sequence, payload);
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// Reads exactly one packet: a client that asks for TLS sends its TLS handshake right behind
    /// that request, and those bytes belong to the TLS acceptor, not to a buffer of ours.
    async fn receive(&mut self) -> Result<Vec<u8>, StartupError> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).await.map_err(left_during_login)?;
        let length = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if length > MAX_LOGIN_PAYLOAD {
            return Err(StartupError::Refused(format!("the client's login packet is longer than {MAX_LOGIN_PAYLOAD} bytes")));
        }
        if header[3] != self.sequence {
            return Err(StartupError::Refused(format!("the client's login packet {} came where {} was due", header[3], self.sequence)));
        }
        let mut payload = vec![0u8; length];
        self.stream.read_exact(&mut payload).await.map_err(left_during_login)?;
        self.sequence = header[3].wrapping_add(1);
        Ok(payload)
    }

    /// Sends an error and ends the login.
    async fn refuse<T>(&mut self, code: u16, sql_state: &str, message: String) -> Result<T, StartupError> {
        let err = ErrPacket { code, sql_state: sql_state.into(), message: message.clone() };
        let _ = self.send(&err.to_payload()).await;
        let _ = self.stream.shutdown().await;
        Err(StartupError::Refused(message))
    }
}

fn left_during_login(e: std::io::Error) -> StartupError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        StartupError::Refused("the client left during login".into())
    } else {
        StartupError::Io(e)
    }
}

/// A 20-byte scramble as servers make them: printable, no NUL (clients read it up to one).
fn scramble() -> Vec<u8> {
    let random: [u8; 20] = rand::random();
    random.iter().map(|b| 0x21 + b % 0x5E).collect()
}

async fn startup<G: MysqlGate>(
    front: &MysqlFront<G>,
    tcp: TcpStream,
    peer: SocketAddr,
    pending: PendingLogin,
) -> Result<ReadySession, StartupError> {
    let (version, target_capabilities) = front.target_greeting().await;
    let id = front.next_id.fetch_add(1, Ordering::Relaxed);
    // Connecting with a database, attributes and compression are between the client and witness.
    let mut offered = (RELAYED & (target_capabilities | capability::CONNECT_WITH_DB | capability::CONNECT_ATTRS)) | capability::COMPRESS;
    if front.tls.is_some() {
        offered |= capability::SSL;
    }
    let greeting = Greeting {
        server_version: version,
        connection_id: id,
        scramble: scramble(),
        capabilities: offered,
        mariadb_capabilities: 0,
        charset: 45,
        status: 0x0002,
        auth_plugin: auth::NATIVE_PASSWORD.into(),
    };
    let mut login = Login { stream: Stream::Plain(tcp), sequence: 0 };
    let mut out = BytesMut::new();
    greeting.write(&mut out);
    login.send(&out).await?;

    let mut answer = match HandshakeResponse::parse(&login.receive().await?) {
        Ok(answer) => answer,
        Err(e) => return login.refuse(code::HANDSHAKE, "08S01", format!("witness cannot read the login packet: {e}")).await,
    };
    if answer.capabilities & capability::SSL != 0 {
        let Some(config) = &front.tls else {
            return login.refuse(code::HANDSHAKE, "08S01", "witness offered no TLS on this listener".into()).await;
        };
        let Stream::Plain(tcp) = login.stream else { unreachable!("the stream is plain until TLS starts") };
        let tls = tokio_rustls::TlsAcceptor::from(config.clone()).accept(tcp).await?;
        login.stream = Stream::ServerTls(Box::new(tls));
        answer = match HandshakeResponse::parse(&login.receive().await?) {
            Ok(answer) => answer,
            Err(e) => return login.refuse(code::HANDSHAKE, "08S01", format!("witness cannot read the login packet: {e}")).await,
        };
    }
    let user = answer.user.clone();
    let cleartext_allowed = login.stream.is_tls() || peer.ip().is_loopback();
    let principal = match (front.settings.auth, cleartext_allowed) {
        (MysqlAuth::Password, true) => cleartext_auth(front, &mut login, &user).await?,
        _ => native_auth(front, &mut login, &answer, &greeting.scramble).await?,
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(refused) => {
            let why = refused.client_reason.unwrap_or_else(|| {
                format!("witness takes a token (create one with `witness token create --identity {user}`) as the password, with the identity as the user; this one is for another identity, unknown, expired or revoked")
            });
            let message = format!("Access denied for user '{user}': {why}");
            return login.refuse(code::ACCESS_DENIED, "28000", message).await;
        }
    };
    pending.logged_in();

    let named = answer.database.clone().filter(|d| !d.is_empty());
    let Some(connection) = named.or_else(|| front.settings.default_connection.clone()) else {
        let known = front.gate.target::<MysqlTarget>("").err().map(|unknown| unknown.known.join(", ")).unwrap_or_default();
        let message = format!(
            "name the witness connection as the database (e.g. `mariadb -u {user} -p CONNECTION`), or set [mysql] default_connection; configured MySQL connections: {known}"
        );
        return login.refuse(code::BAD_DB, "42000", message).await;
    };
    let target = match front.gate.target::<MysqlTarget>(&connection) {
        Ok(target) => target,
        Err(unknown) => {
            let message =
                format!("witness has no MySQL connection named '{connection}'; configured MySQL connections: {}", unknown.known.join(", "));
            return login.refuse(code::BAD_DB, "42000", message).await;
        }
    };
    let client_task = answer.attributes.iter().find(|(k, _)| k == "witness.task").map(|(_, v)| v.clone()).filter(|t| !t.is_empty());
    let info = SessionInfo {
        identity: principal.identity.clone(),
        connection: connection.clone(),
        protocol: Protocol::Mysql,
        task: principal.task.clone().or_else(|| client_task.clone()),
        client_addr: Some(peer.to_string()),
        groups: principal.groups.clone(),
    };
    let session = match front.gate.open_session(&info).await {
        Ok(session) => session,
        Err(e) => {
            return login.refuse(code::UNKNOWN_ERROR, "HY000", format!("witness cannot record this session, so it refuses it: {e}")).await
        }
    };
    let agreed = answer.capabilities & offered & !capability::SSL;
    let attributes: Vec<(String, String)> = answer.attributes.iter().filter(|(k, _)| k != "witness.task").cloned().collect();
    let mut event = Event::note(
        kind::MYSQL_LOGIN,
        Direction::Gateway,
        format!("{} via {} (target {} as {})", principal.identity, connection, target.address, target.user),
    )
    .with_attr("tls", login.stream.is_tls())
    .with_attr("compressed", agreed & capability::COMPRESS != 0)
    .with_attr("credential", principal.credential.clone())
    .with_attr("target_user", target.user.clone())
    .with_attr("charset", answer.charset)
    .with_attr("target_charset", readable_charset(answer.charset))
    .with_attr("connection_id", id);
    if let Some(plugin) = &answer.auth_plugin {
        event = event.with_attr("client_plugin", plugin.clone());
    }
    if let Some(task) = &client_task {
        event = event.with_attr("client_task", task.clone());
    }
    if !attributes.is_empty() {
        let shown: serde_json::Map<String, serde_json::Value> = attributes.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        event = event.with_attr("client_attributes", serde_json::Value::Object(shown));
    }
    if let Err(e) = session.append(&event).await {
        return login.refuse(code::UNKNOWN_ERROR, "HY000", format!("witness cannot record this session, so it refuses it: {e}")).await;
    }
    let charset = readable_charset(answer.charset);
    let backend = match TargetConnection::login(&target.login(agreed, charset, attributes)).await {
        Ok(backend) => backend,
        Err(e) => {
            front.gate.target_failed(&connection);
            // The target's own words (its user, witness's host) are for the operator's log.
            tracing::warn!(connection, error = %e, "cannot log in to a MySQL target");
            let message = format!("witness cannot log in to the target of '{connection}'; its log says why");
            let _ = session.close(&format!("target unavailable: {e}")).await;
            return login.refuse(code::UNKNOWN_ERROR, "HY000", message).await;
        }
    };
    front.saw(&backend.greeting);
    let witness_own = capability::CONNECT_WITH_DB | capability::CONNECT_ATTRS | capability::COMPRESS;
    if backend.capabilities & agreed & !witness_own != agreed & !witness_own {
        // The target no longer offers what the client was greeted with: its answers would not
        // be what the client reads. A new connection is greeted with what it offers now.
        let message = "the target's capabilities changed since witness greeted you; connect again".to_string();
        let _ = session.close(&message).await;
        return login.refuse(code::UNKNOWN_ERROR, "HY000", message).await;
    }
    let subject = Subject { session: session.id(), info, principal: principal.clone() };
    let registration = front.gate.register(&subject);
    let kill_guard = front.kills.register(
        id,
        Behind { target: target.address.clone(), thread: backend.greeting.connection_id, identity: principal.identity.clone() },
    );
    // The client is in: an OK (no rows, autocommit on).
    login.send(&[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]).await?;
    tracing::info!(identity = %principal.identity, connection, %peer, session = %session.id(), "MySQL session started");
    let masks = front.gate.masks(&subject);
    let catalog = masks.as_ref().filter(|m| m.has_column_rules()).map(|_| (front.catalogs.of(&connection), target.clone()));
    Ok(ReadySession {
        // Compressed from the first packet after the OK, both ways.
        client: ClientLink::new(login.stream, agreed & capability::COMPRESS != 0),
        target: backend,
        session,
        interrupt: registration.interrupt,
        subject,
        guards: (registration.guard, kill_guard),
        max_rows: front.settings.max_rows_per_statement,
        masks,
        kills: front.kills.clone(),
        target_address: target.address.clone(),
        catalog,
        charset,
    })
}

/// The character set (collation number) the target connection speaks: the client's, when every
/// byte below 0x80 is that ASCII character in it (UTF-8, latin1, ASCII, binary), so that the text
/// witness reads as UTF-8 means to the server what it means to witness; else utf8mb4. In GBK, Big5
/// or SJIS a backquote or backslash can be the second byte of a character.
fn readable_charset(collation: u8) -> u8 {
    if charset_name(collation).is_some() {
        collation
    } else {
        45 // utf8mb4_general_ci
    }
}

/// The name of a character set in which every byte below 0x80 is that ASCII character, by the
/// number of one of its collations; None for any other.
pub(crate) fn charset_name(collation: u8) -> Option<&'static str> {
    match collation {
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Some("latin1"),
        11 | 65 => Some("ascii"),
        63 => Some("binary"),
        33 | 83 | 192..=215 | 223 => Some("utf8mb3"),
        45 | 46 | 224..=247 => Some("utf8mb4"),
        _ => None,
    }
}

/// `mysql_native_password` against the token's verifier: the client's first answer if it used
/// that plugin, else after switching it to that plugin.
async fn native_auth<G: MysqlGate>(
    front: &MysqlFront<G>,
    login: &mut Login,
    answer: &HandshakeResponse,
    scramble: &[u8],
) -> Result<Result<Principal, AuthRefused>, StartupError> {
    let native = matches!(answer.auth_plugin.as_deref(), None | Some(auth::NATIVE_PASSWORD | ""));
    let response = if native && answer.auth_response.len() == 20 {
        answer.auth_response.clone()
    } else {
        let mut switch = vec![0xFE];
        switch.extend_from_slice(auth::NATIVE_PASSWORD.as_bytes());
        switch.push(0);
        switch.extend_from_slice(scramble);
        switch.push(0);
        login.send(&switch).await?;
        login.receive().await?
    };
    Ok(front.gate.verify_native(&answer.user, scramble, &response).inspect_err(|refused| {
        tracing::info!(user = answer.user, reason = %refused, "MySQL authentication refused");
    }))
}

/// The token in cleartext, by switching the client to `mysql_clear_password`.
async fn cleartext_auth<G: MysqlGate>(
    front: &MysqlFront<G>,
    login: &mut Login,
    user: &str,
) -> Result<Result<Principal, AuthRefused>, StartupError> {
    let mut switch = vec![0xFE];
    switch.extend_from_slice(auth::CLEAR_PASSWORD.as_bytes());
    switch.push(0);
    login.send(&switch).await?;
    let mut password = login.receive().await?;
    if password.last() == Some(&0) {
        password.pop();
    }
    let password = String::from_utf8_lossy(&password);
    let result = front.gate.authenticate(Protocol::Mysql, Credential::Password { user, password: &password }).await;
    if let Err(refused) = &result {
        tracing::info!(user, reason = %refused, "MySQL authentication refused");
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_character_sets_read_as_utf8_reads_them_pass() {
        assert_eq!(readable_charset(45), 45);
        assert_eq!(readable_charset(8), 8, "latin1_swedish_ci");
        assert_eq!(readable_charset(28), 45, "gbk_chinese_ci");
        assert_eq!(readable_charset(1), 45, "big5");
        assert_eq!(readable_charset(95), 45, "cp932");
        assert_eq!(readable_charset(255), 45, "utf8mb4_0900_ai_ci, which MariaDB does not know");
    }

    #[test]
    fn scrambles_have_no_nul_and_differ() {
        let (a, b) = (scramble(), scramble());
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|b| (0x21..0x7F).contains(b)));
        assert_ne!(a, b);
    }
}
