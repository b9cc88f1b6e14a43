//! The back half: witness connects to the target and logs in with a login it holds, over TLS as
//! the connection's mode says, and collects what the target sends before it is ready
//! (parameters, cancel key).
//!
//! A credential goes only where the connection allows it: the target must ask for a password
//! exchange the connection's `auth` lists (SCRAM-SHA-256 by default; MD5 and cleartext only when
//! named), else witness sends nothing and says why. Over TLS, SCRAM is bound to the target's
//! certificate when the target offers it (`channel_binding`). Whether the certificate is the
//! right one is the `tls` mode's business, not this module's.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::binding::{self, BindingUnavailable, ChannelBindingMode, ScramBinding};
use crate::codec::{self, auth_request, backend, encryption, frontend, Fields, Peek, SSL_REQUEST};
use crate::target::{AuthMethod, PgLogin, PgTarget};
use crate::tls::TlsMode;
use witness_gate::Stream;

/// A target connection, logged in and ready for queries.
pub struct Backend {
    pub stream: Stream,
    /// The ParameterStatus messages the target sent, as bytes to forward to the client.
    pub parameter_status: BytesMut,
    /// The target's cancel key.
    pub key: Option<(i32, i32)>,
    /// The ReadyForQuery message, as bytes.
    pub ready: BytesMut,
    /// Bytes read past ReadyForQuery (none in practice), to be relayed first.
    pub leftover: BytesMut,
}

/// Why witness could not get a ready connection to the target. Every message names the
/// connection and the address; none contains the credential.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("connection {name:?}: cannot reach {address}: {source}; is the target running and the address right?")]
    Unreachable { name: String, address: String, source: std::io::Error },
    #[error("connection {name:?}: no answer from {address} within {seconds}s")]
    Timeout { name: String, address: String, seconds: u64 },
    #[error("connection {name:?}: {address} does not accept TLS, but the connection's tls mode requires it")]
    TlsRefused { name: String, address: String },
    #[error("connection {name:?}: TLS with {address} failed: {source}")]
    Tls { name: String, address: String, source: std::io::Error },
    #[error("connection {name:?}: the target at {address} refused the session of witness's user {user:?}: {message}")]
    LoginRefused { name: String, address: String, user: String, message: String },
    #[error(
        "connection {name:?}: the target at {address} asks for a password for {user:?} but witness holds none; set password_env or password_file (of the connection, or of the logins entry for {user:?})"
    )]
    NoPassword { name: String, address: String, user: String },
    #[error(
        "connection {name:?}: the target at {address} asks for {}, which the connection's auth does not list, so witness sent it no credential; if this is the real target, add {:?} to the connection's auth (and use tls = \"verify-full\", so that nobody in between can ask in its place)",
        method.asked(),
        method.config_name()
    )]
    MethodNotAllowed { name: String, address: String, method: AuthMethod },
    #[error(
        "connection {name:?}: channel_binding is \"require\", but {reason}, so witness sent it no credential; make the target offer SCRAM-SHA-256-PLUS over TLS (PostgreSQL 11 or later with ssl = on and a scram-sha-256 password), or set channel_binding = \"prefer\""
    )]
    ChannelBindingRequired { name: String, address: String, reason: BindingUnavailable },
    #[error(
        "connection {name:?}: the target at {address} offers SASL mechanisms {offered}, none of which witness can use here (SCRAM-SHA-256, or SCRAM-SHA-256-PLUS over TLS with channel_binding not \"disable\")"
    )]
    NoScramMechanism { name: String, address: String, offered: String },
    #[error("connection {name:?}: the target at {address} asks for authentication method {code}, which witness does not support")]
    UnsupportedAuth { name: String, address: String, code: i32 },
    #[error("connection {name:?}: the target at {address} broke the protocol: {what}")]
    Protocol { name: String, address: String, what: String },
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects and logs in with the connection's own login (witness's own queries). `client_params`
/// are startup parameters passed to the target (application_name, client_encoding, …).
pub async fn connect(target: &PgTarget, client_params: &[(String, String)]) -> Result<Backend, BackendError> {
    connect_as(target, &target.login, client_params).await
}

/// Connects and logs in as `login`. `client_params` are startup parameters passed through from
/// the client; user and database come from witness.
pub async fn connect_as(target: &PgTarget, login: &PgLogin, client_params: &[(String, String)]) -> Result<Backend, BackendError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(target, login, client_params)).await {
        Ok(result) => result,
        Err(_) => {
            Err(BackendError::Timeout { name: target.name.clone(), address: target.address.clone(), seconds: CONNECT_TIMEOUT.as_secs() })
        }
    }
}

async fn connect_inner(target: &PgTarget, login: &PgLogin, client_params: &[(String, String)]) -> Result<Backend, BackendError> {
    let unreachable = |source| BackendError::Unreachable { name: target.name.clone(), address: target.address.clone(), source };
    let tcp = TcpStream::connect(&target.address).await.map_err(unreachable)?;
    let _ = tcp.set_nodelay(true);
    let mut stream = negotiate_tls(target, tcp).await?;
    let end_point = end_point(&stream);

    let mut params: Vec<(&str, &str)> = vec![("user", &login.user), ("database", &target.database)];
    for (key, value) in client_params {
        params.push((key, value));
    }
    let mut out = BytesMut::new();
    codec::startup(&mut out, &params);
    write(target, &mut stream, &out).await?;

    let mut buf = BytesMut::with_capacity(8192);
    authenticate(target, login, &mut stream, &mut buf, end_point).await?;

    let mut connected = Backend { stream, parameter_status: BytesMut::new(), key: None, ready: BytesMut::new(), leftover: BytesMut::new() };
    loop {
        let msg = read_message(target, &mut connected.stream, &mut buf).await?;
        match msg.first() {
            Some(&backend::PARAMETER_STATUS) => connected.parameter_status.extend_from_slice(&msg),
            Some(&backend::BACKEND_KEY_DATA) => {
                let mut f = Fields::new(&msg[5..]);
                connected.key = Some((f.i32().unwrap_or(0), f.i32().unwrap_or(0)));
            }
            Some(&backend::NOTICE_RESPONSE) => {}
            Some(&backend::ERROR_RESPONSE) => return Err(login_refused(target, login, &msg)),
            Some(&backend::READY_FOR_QUERY) => {
                connected.ready = msg;
                connected.leftover = buf;
                return Ok(connected);
            }
            _ => return Err(protocol(target, format!("unexpected message {:?} during startup", msg.first().map(|&b| b as char)))),
        }
    }
}

/// The `tls-server-end-point` binding data of the connection, or why there is none.
fn end_point(stream: &Stream) -> Result<Vec<u8>, BindingUnavailable> {
    let Stream::ClientTls(tls) = stream else { return Err(BindingUnavailable::NoTls) };
    let certificate = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).ok_or(BindingUnavailable::NoCertificate)?;
    binding::tls_server_end_point(certificate)
}

async fn negotiate_tls(target: &PgTarget, mut tcp: TcpStream) -> Result<Stream, BackendError> {
    let Some(config) = &target.tls else { return Ok(Stream::Plain(tcp)) };
    let mut request = BytesMut::new();
    codec::untagged(&mut request, SSL_REQUEST, None);
    let io_err = |source| BackendError::Tls { name: target.name.clone(), address: target.address.clone(), source };
    tcp.write_all(&request).await.map_err(io_err)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io_err)?;
    match (answer[0], target.tls_mode) {
        (encryption::ACCEPTED, _) => {
            let server_name = ServerName::try_from(target.host().to_string())
                .map_err(|e| io_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let tls = connector.connect(server_name, tcp).await.map_err(io_err)?;
            Ok(Stream::ClientTls(Box::new(tls)))
        }
        (encryption::REFUSED, TlsMode::Prefer) => Ok(Stream::Plain(tcp)),
        (encryption::REFUSED, _) => Err(BackendError::TlsRefused { name: target.name.clone(), address: target.address.clone() }),
        (other, _) => Err(protocol(target, format!("answered the TLS request with {:?}", other as char))),
    }
}

async fn authenticate(
    target: &PgTarget,
    login: &PgLogin,
    stream: &mut Stream,
    buf: &mut BytesMut,
    end_point: Result<Vec<u8>, BindingUnavailable>,
) -> Result<(), BackendError> {
    let password = || {
        login.password.as_ref().map(|p| p.expose()).ok_or_else(|| BackendError::NoPassword {
            name: target.name.clone(),
            address: target.address.clone(),
            user: login.user.clone(),
        })
    };
    // Taken by the SASL start: a target gets one SCRAM exchange.
    let mut end_point = Some(end_point);
    let mut scram: Option<ScramSha256> = None;
    // Whether the target proved, in a SCRAM exchange bound to its certificate, that it knows the password.
    let mut bound = false;
    loop {
        let msg = read_message(target, stream, buf).await?;
        if msg[0] == backend::ERROR_RESPONSE {
            return Err(login_refused(target, login, &msg));
        }
        if msg[0] != backend::AUTHENTICATION {
            return Err(protocol(target, format!("sent {:?} instead of an authentication request", msg[0] as char)));
        }
        let mut f = Fields::new(&msg[5..]);
        let code = f.i32().map_err(|_| protocol(target, "empty authentication request".into()))?;
        let mut out = BytesMut::new();
        match code {
            auth_request::OK => {
                // A target that ends SCRAM before its final message never proved it knows the
                // password; libpq refuses that too.
                if scram.is_some() {
                    return Err(protocol(target, "ended SCRAM without its server signature".into()));
                }
                if target.channel_binding == ChannelBindingMode::Require && !bound {
                    return Err(binding_required(target, BindingUnavailable::NotScram { asked: "no password" }));
                }
                return Ok(());
            }
            auth_request::CLEARTEXT_PASSWORD => {
                answers(target, AuthMethod::Password)?;
                let mut body = password()?.as_bytes().to_vec();
                body.push(0);
                codec::frontend_message(&mut out, frontend::PASSWORD, &body);
            }
            auth_request::MD5_PASSWORD => {
                answers(target, AuthMethod::Md5)?;
                let salt: [u8; 4] =
                    f.bytes(4).ok().and_then(|s| s.try_into().ok()).ok_or_else(|| protocol(target, "MD5 request without salt".into()))?;
                let hash = postgres_protocol::authentication::md5_hash(login.user.as_bytes(), password()?.as_bytes(), salt);
                let mut body = hash.into_bytes();
                body.push(0);
                codec::frontend_message(&mut out, frontend::PASSWORD, &body);
            }
            auth_request::SASL => {
                answers(target, AuthMethod::ScramSha256)?;
                let (mut plain_offered, mut plus_offered) = (false, false);
                let mut offered = Vec::new();
                while let Ok(mechanism) = f.cstr() {
                    if mechanism.is_empty() {
                        break;
                    }
                    plain_offered |= mechanism == SCRAM_SHA_256.as_bytes();
                    plus_offered |= mechanism == SCRAM_SHA_256_PLUS.as_bytes();
                    offered.push(String::from_utf8_lossy(mechanism).into_owned());
                }
                let end_point = end_point.take().ok_or_else(|| protocol(target, "started SASL twice".into()))?;
                let choice =
                    binding::choose(target.channel_binding, plus_offered, end_point).map_err(|why| binding_required(target, why))?;
                let (mechanism, channel_binding) = match choice {
                    ScramBinding::EndPoint(hash) => (SCRAM_SHA_256_PLUS, ChannelBinding::tls_server_end_point(hash)),
                    ScramBinding::Unoffered => (SCRAM_SHA_256, ChannelBinding::unrequested()),
                    ScramBinding::Unbound => (SCRAM_SHA_256, ChannelBinding::unsupported()),
                };
                if mechanism == SCRAM_SHA_256 && !plain_offered {
                    return Err(BackendError::NoScramMechanism {
                        name: target.name.clone(),
                        address: target.address.clone(),
                        offered: offered.join(", "),
                    });
                }
                bound = mechanism == SCRAM_SHA_256_PLUS;
                let client = ScramSha256::new(password()?.as_bytes(), channel_binding);
                let first = client.message().to_vec();
                let mut body = Vec::with_capacity(first.len() + 24);
                body.extend_from_slice(mechanism.as_bytes());
                body.push(0);
                body.extend_from_slice(&(first.len() as i32).to_be_bytes());
                body.extend_from_slice(&first);
                codec::frontend_message(&mut out, frontend::PASSWORD, &body);
                scram = Some(client);
            }
            auth_request::SASL_CONTINUE => {
                let client = scram.as_mut().ok_or_else(|| protocol(target, "SASL continue before SASL start".into()))?;
                client.update(f.remaining()).map_err(|e| login_refused_text(target, login, e.to_string()))?;
                codec::frontend_message(&mut out, frontend::PASSWORD, client.message());
            }
            auth_request::SASL_FINAL => {
                let mut client = scram.take().ok_or_else(|| protocol(target, "SASL final before SASL start".into()))?;
                client
                    .finish(f.remaining())
                    .map_err(|e| login_refused_text(target, login, format!("the target's SCRAM signature is wrong ({e})")))?;
                continue;
            }
            other => return Err(BackendError::UnsupportedAuth { name: target.name.clone(), address: target.address.clone(), code: other }),
        }
        write(target, stream, &out).await?;
    }
}

/// Whether witness may answer a target that asks for `method`: only when the connection's `auth`
/// lists it, and with `channel_binding = "require"` only by SCRAM.
fn answers(target: &PgTarget, method: AuthMethod) -> Result<(), BackendError> {
    if method != AuthMethod::ScramSha256 && target.channel_binding == ChannelBindingMode::Require {
        return Err(binding_required(target, BindingUnavailable::NotScram { asked: method.asked() }));
    }
    if !target.auth.contains(&method) {
        return Err(BackendError::MethodNotAllowed { name: target.name.clone(), address: target.address.clone(), method });
    }
    Ok(())
}

fn binding_required(target: &PgTarget, reason: BindingUnavailable) -> BackendError {
    BackendError::ChannelBindingRequired { name: target.name.clone(), address: target.address.clone(), reason }
}

/// Reads one whole message (tag, length and body) from the target.
pub(crate) async fn read_message(target: &PgTarget, stream: &mut Stream, buf: &mut BytesMut) -> Result<BytesMut, BackendError> {
    loop {
        match codec::peek(buf) {
            Peek::Whole(n) => return Ok(buf.split_to(n)),
            Peek::TooLong(n) => return Err(protocol(target, format!("sent a message of {n} bytes during startup"))),
            Peek::Partial => {}
        }
        let n = stream.read_buf(buf).await.map_err(|source| BackendError::Unreachable {
            name: target.name.clone(),
            address: target.address.clone(),
            source,
        })?;
        if n == 0 {
            return Err(protocol(target, "closed the connection during login".into()));
        }
    }
}

pub(crate) async fn write(target: &PgTarget, stream: &mut Stream, bytes: &[u8]) -> Result<(), BackendError> {
    stream.write_all(bytes).await.map_err(|source| BackendError::Unreachable {
        name: target.name.clone(),
        address: target.address.clone(),
        source,
    })
}

fn login_refused(target: &PgTarget, login: &PgLogin, msg: &[u8]) -> BackendError {
    let fields = codec::parse_error_fields(&msg[5..]);
    // Only authentication failures (class 28) are about the credentials witness holds.
    let hint = if fields.sqlstate.starts_with("28") { "; check the login's user and password" } else { "" };
    login_refused_text(target, login, format!("{} (SQLSTATE {}){hint}", fields.message, fields.sqlstate))
}

fn login_refused_text(target: &PgTarget, login: &PgLogin, message: String) -> BackendError {
    BackendError::LoginRefused { name: target.name.clone(), address: target.address.clone(), user: login.user.clone(), message }
}

pub(crate) fn protocol(target: &PgTarget, what: String) -> BackendError {
    BackendError::Protocol { name: target.name.clone(), address: target.address.clone(), what }
}

/// Sends a cancel request for `key` to the target (plain TCP, as libpq does).
pub async fn send_cancel(address: &str, key: (i32, i32)) -> std::io::Result<()> {
    let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "cancel connect timed out"))??;
    let mut out = BytesMut::new();
    codec::untagged(&mut out, codec::CANCEL_REQUEST, Some(key));
    tcp.write_all(&out).await?;
    // The target closes the connection when it has taken the request.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut sink)).await;
    Ok(())
}
