//! Witness's own login to a MySQL or MariaDB target, with credentials only witness holds: the
//! greeting read, TLS asked for when the connection says so, the target's auth plugin answered
//! (`mysql_native_password`, `caching_sha2_password` — its full path only over verified TLS,
//! where the password may travel, or encrypted to the target's pinned RSA key — and MariaDB's
//! `client_ed25519`), and auth switches followed. What comes
//! back is a logged-in [`TargetConnection`] that sends commands and reads answers packet by packet.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use witness_gate::Stream;

use crate::answer::{self, ErrPacket};
use crate::auth;
use crate::handshake::{capability, Greeting, HandshakeResponse};
use crate::packet::{write_packets, Packet, PacketError, PacketReader};
use crate::wire::Truncated;

/// The most one answer payload from a target may hold (a row, a column definition), joined in
/// memory: MySQL 8's default `max_allowed_packet`.
pub const MAX_TARGET_PAYLOAD: usize = 64 << 20;
/// The most a login packet from a target may hold: a greeting or an auth step is a few hundred
/// bytes.
const MAX_LOGIN_PAYLOAD: usize = 64 << 10;

/// The capabilities witness asks a target for (those the target offers).
const WANTED: u32 = capability::LONG_PASSWORD
    | capability::LONG_FLAG
    | capability::PROTOCOL_41
    | capability::TRANSACTIONS
    | capability::SECURE_CONNECTION
    | capability::MULTI_RESULTS
    | capability::PS_MULTI_RESULTS
    | capability::PLUGIN_AUTH
    | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA;

/// How witness logs in to a target.
pub struct TargetLogin<'a> {
    /// `host:port`.
    pub address: &'a str,
    pub user: &'a str,
    pub password: &'a [u8],
    pub database: Option<&'a str>,
    /// TLS with this config and server name; `required` refuses a target that does not offer it.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub tls_required: bool,
    /// The TLS config verifies the target's certificate: only then may the password itself
    /// travel (caching_sha2_password's full exchange).
    pub tls_verified: bool,
    /// The target's RSA public key, pinned: otherwise caching_sha2_password's full exchange
    /// sends the password encrypted to it.
    pub server_public_key: Option<Arc<rsa::PublicKey>>,
    /// The capabilities a client behind witness agreed on, whose answers witness relays as the
    /// target sends them: the target is asked for those (that it offers) instead of witness's own.
    pub client_capabilities: Option<u32>,
    /// The character set (collation number) the connection speaks.
    pub charset: u8,
    /// Connection attributes passed on to the target (the client's program name, …).
    pub attributes: Vec<(String, String)>,
}

/// The capabilities a relayed client may agree on: those that change nothing witness reads, or
/// that it reads both ways. `LOCAL_FILES` lets the target ask the client for a file, which the
/// relay passes only for a `LOAD DATA LOCAL` a rule allows, naming that file. Compression is
/// witness's own with the client (`compress`), never with the target; `DEPRECATE_EOF`, session
/// tracking, query attributes and MariaDB's extensions are not offered.
pub const RELAYED: u32 = capability::LONG_PASSWORD
    | capability::FOUND_ROWS
    | capability::LONG_FLAG
    | capability::CONNECT_WITH_DB
    | capability::PROTOCOL_41
    | capability::INTERACTIVE
    | capability::TRANSACTIONS
    | capability::SECURE_CONNECTION
    | capability::MULTI_STATEMENTS
    | capability::MULTI_RESULTS
    | capability::PS_MULTI_RESULTS
    | capability::PLUGIN_AUTH
    | capability::CONNECT_ATTRS
    | capability::LOCAL_FILES
    | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA;

/// Why witness could not log in to a target.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot reach {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("the connection to the target broke during login: {0}")]
    Io(#[from] std::io::Error),
    #[error("the target's login packets are malformed: {0}")]
    Packet(#[from] PacketError),
    #[error("the target's login packets are malformed: {0}")]
    Truncated(#[from] Truncated),
    #[error("the target greets in a way witness cannot use: {0}")]
    Handshake(#[from] crate::handshake::HandshakeError),
    #[error("the target does not offer TLS, and the connection requires it")]
    NoTls,
    #[error("the target refused witness's login: {} ({})", .0.message, .0.code)]
    Refused(ErrPacket),
    #[error("the target asks for auth plugin {0:?}, which witness does not speak")]
    UnknownPlugin(String),
    #[error("caching_sha2_password wants the whole password, which witness sends only over TLS to a verified target or encrypted to a pinned key: set tls = \"verify-full\" or server_public_key_file on the connection, or log in once that way so the target caches the password")]
    FullAuthNeedsTls,
    #[error("the password cannot be encrypted to the target's public key: {0}")]
    Rsa(rsa::Error),
    #[error("the target closed the connection during login")]
    Closed,
}

/// A logged-in connection to a target.
pub struct TargetConnection {
    stream: Stream,
    reader: PacketReader,
    /// The sequence number of the next packet witness sends in the current exchange.
    next_sequence: u8,
    pub greeting: Greeting,
    /// The capabilities both sides agreed on.
    pub capabilities: u32,
}

impl TargetConnection {
    /// Logs in as `login` says.
    pub async fn login(login: &TargetLogin<'_>) -> Result<TargetConnection, LoginError> {
        let (mut connection, greeting) = TargetConnection::greeted(login.address).await?;
        let wanted = match login.client_capabilities {
            Some(client) => client & RELAYED & !(capability::CONNECT_WITH_DB | capability::CONNECT_ATTRS),
            None => WANTED,
        };
        let mut capabilities = wanted & greeting.capabilities;
        if login.database.is_some() {
            capabilities |= capability::CONNECT_WITH_DB & greeting.capabilities;
        }
        if !login.attributes.is_empty() {
            capabilities |= capability::CONNECT_ATTRS & greeting.capabilities;
        }
        // With TLS configured but not required (`prefer`), a target that offers none is spoken
        // to in plain text; required, it is refused, as is a login with no TLS set up to use.
        let offers_tls = greeting.capabilities & capability::SSL != 0;
        if login.tls_required && (!offers_tls || login.tls.is_none()) {
            return Err(LoginError::NoTls);
        }
        let mut answer = HandshakeResponse {
            capabilities,
            max_packet: MAX_TARGET_PAYLOAD as u32,
            charset: login.charset,
            user: login.user.to_string(),
            database: login.database.map(str::to_string),
            auth_plugin: Some(greeting.auth_plugin.clone()),
            attributes: login.attributes.clone(),
            ..Default::default()
        };
        connection.next_sequence = 1;
        if let (Some((config, name)), true) = (&login.tls, offers_tls) {
            answer.capabilities |= capability::SSL;
            let mut request = BytesMut::new();
            answer.write_tls_request(&mut request);
            connection.send(&request).await?;
            let TargetConnection { stream, reader, next_sequence, greeting, capabilities } = connection;
            let Stream::Plain(tcp) = stream else { unreachable!("the stream is plain until TLS starts") };
            let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), tcp).await?;
            connection = TargetConnection { stream: Stream::ClientTls(Box::new(tls)), reader, next_sequence, greeting, capabilities };
        }
        connection.capabilities = answer.capabilities;
        answer.auth_response = plugin_response(&greeting.auth_plugin, login.password, &greeting.scramble)?;
        let mut payload = BytesMut::new();
        answer.write(&mut payload);
        connection.send(&payload).await?;
        connection.greeting = greeting;
        connection.finish_login(login).await?;
        connection.reader = PacketReader::new(MAX_TARGET_PAYLOAD);
        connection.reader.expect(connection.next_sequence);
        Ok(connection)
    }

    /// Follows the target's answers to the login until it accepts or refuses it.
    async fn finish_login(&mut self, login: &TargetLogin<'_>) -> Result<(), LoginError> {
        let password = login.password;
        loop {
            let reply = self.receive().await?.payload;
            match reply.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(LoginError::Refused(ErrPacket::parse(&reply)?)),
                // An auth switch: another plugin, with a scramble of its own.
                Some(0xFE) => {
                    let mut fields = crate::wire::Fields::new(&reply[1..]);
                    let plugin = String::from_utf8_lossy(fields.nul_terminated("auth plugin")?).into_owned();
                    let rest = fields.rest();
                    // The SHA-based plugins' 20 bytes come with a NUL after them; ed25519's 32
                    // are all scramble, a last 0 byte included.
                    let scramble = match plugin.as_str() {
                        auth::ED25519 => rest.to_vec(),
                        _ => rest.strip_suffix(&[0]).unwrap_or(rest).to_vec(),
                    };
                    let response = plugin_response(&plugin, password, &scramble)?;
                    self.send(&response).await?;
                    self.greeting.scramble = scramble;
                    self.greeting.auth_plugin = plugin;
                }
                // More from the plugin: caching_sha2_password says whether its cache knew us.
                Some(0x01) => match reply.get(1) {
                    Some(3) => {} // fast path succeeded; the OK follows
                    Some(4) if self.stream.is_tls() && login.tls_verified => {
                        let mut clear = password.to_vec();
                        clear.push(0);
                        self.send(&clear).await?;
                    }
                    // Over TLS a server reads the password in clear, which an unverified peer
                    // is not given (nor an encrypted one, which the server would not decrypt).
                    Some(4) if self.stream.is_tls() => return Err(LoginError::FullAuthNeedsTls),
                    Some(4) => {
                        let Some(key) = &login.server_public_key else { return Err(LoginError::FullAuthNeedsTls) };
                        let encrypted = auth::caching_sha2_encrypted(password, &self.greeting.scramble, key).map_err(LoginError::Rsa)?;
                        self.send(&encrypted).await?;
                    }
                    _ => return Err(LoginError::UnknownPlugin(self.greeting.auth_plugin.clone())),
                },
                _ => return Err(LoginError::UnknownPlugin(self.greeting.auth_plugin.clone())),
            }
        }
    }

    /// The stream, and bytes read past the login (none from a target that waits for a command).
    pub fn into_parts(self) -> (Stream, Vec<u8>) {
        let leftover = self.reader.take_buffered();
        (self.stream, leftover)
    }

    /// Reads a target's greeting and hangs up, without logging in: its version and capabilities,
    /// for greeting clients before witness knows which target they want.
    pub async fn probe(address: &str) -> Result<Greeting, LoginError> {
        Ok(TargetConnection::greeted(address).await?.1)
    }

    /// Connects and reads the greeting.
    async fn greeted(address: &str) -> Result<(TargetConnection, Greeting), LoginError> {
        let tcp = TcpStream::connect(address).await.map_err(|source| LoginError::Connect { address: address.to_string(), source })?;
        let _ = tcp.set_nodelay(true);
        let mut connection = TargetConnection {
            stream: Stream::Plain(tcp),
            reader: PacketReader::new(MAX_LOGIN_PAYLOAD),
            next_sequence: 0,
            greeting: Greeting::default(),
            capabilities: 0,
        };
        connection.reader.expect(0);
        let greeting = Greeting::parse(&connection.receive().await?.payload)?;
        Ok((connection, greeting))
    }

    /// Sends one payload as the next packet(s) of the current exchange.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), std::io::Error> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        self.next_sequence = write_packets(&mut out, self.next_sequence, payload);
        self.reader.expect(self.next_sequence);
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// Starts a command: its packet numbered 0, the answer from 1.
    pub async fn command(&mut self, payload: &[u8]) -> Result<(), std::io::Error> {
        self.next_sequence = 0;
        self.send(payload).await
    }

    /// The next whole payload from the target.
    pub async fn receive(&mut self) -> Result<Packet, LoginError> {
        loop {
            if let Some(packet) = self.reader.next_packet()? {
                self.next_sequence = packet.sequence.wrapping_add(1);
                return Ok(packet);
            }
            let mut buffer = [0u8; 16 << 10];
            let read = self.stream.read(&mut buffer).await?;
            if read == 0 {
                return Err(LoginError::Closed);
            }
            self.reader.feed(&buffer[..read]);
        }
    }

    /// Runs a text query and reads its first result: the rows' values as text (None for NULL),
    /// or the OK's affected rows, or the ERR. For witness's own use (probes, tests), not for
    /// relaying a client's commands.
    pub async fn simple_query(&mut self, sql: &str) -> Result<SimpleAnswer, LoginError> {
        let mut command = vec![0x03];
        command.extend_from_slice(sql.as_bytes());
        self.command(&command).await?;
        let first = self.receive().await?.payload;
        match answer::kind(&first) {
            answer::Kind::Ok => return Ok(SimpleAnswer::Done(answer::OkPacket::parse(&first, self.capabilities)?.affected_rows)),
            answer::Kind::Err => return Ok(SimpleAnswer::Failed(ErrPacket::parse(&first)?)),
            _ => {}
        }
        let columns = crate::wire::Fields::new(&first).lenenc("column count")?.unwrap_or(0);
        for _ in 0..columns {
            self.receive().await?;
        }
        let deprecate_eof = self.capabilities & capability::DEPRECATE_EOF != 0;
        if !deprecate_eof {
            self.receive().await?; // the EOF after the column definitions
        }
        let mut rows = Vec::new();
        loop {
            let payload = self.receive().await?.payload;
            // Rows end with an EOF (witness does not ask for DEPRECATE_EOF); a row may well start
            // with 0x00, an empty first value.
            match answer::kind(&payload) {
                answer::Kind::Eof => break,
                answer::Kind::Err => return Ok(SimpleAnswer::Failed(ErrPacket::parse(&payload)?)),
                _ => {}
            }
            let mut fields = crate::wire::Fields::new(&payload);
            let mut row = Vec::new();
            for _ in 0..columns {
                row.push(fields.lenenc_bytes("value")?.map(|v| String::from_utf8_lossy(v).into_owned()));
            }
            rows.push(row);
        }
        Ok(SimpleAnswer::Rows(rows))
    }
}

/// What [`TargetConnection::simple_query`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimpleAnswer {
    Rows(Vec<Vec<Option<String>>>),
    Done(u64),
    Failed(ErrPacket),
}

/// The answer `plugin` wants to `scramble`.
fn plugin_response(plugin: &str, password: &[u8], scramble: &[u8]) -> Result<Vec<u8>, LoginError> {
    match plugin {
        auth::NATIVE_PASSWORD | "" => Ok(auth::native_password_response(password, scramble)),
        auth::CACHING_SHA2_PASSWORD => Ok(auth::caching_sha2_response(password, scramble)),
        auth::ED25519 => Ok(auth::ed25519_response(password, scramble)),
        other => Err(LoginError::UnknownPlugin(other.to_string())),
    }
}
