//! The front half: the SSH server clients log in to. The user name picks the connection; a public
//! key registered to an identity or a witness token given as the password decides who the client
//! is. Once authenticated, witness opens the session's recording, logs in to the target (checking
//! its host key) and relays each channel the client opens (`channel`). TCP forwardings are decided
//! by the gate and recorded, allowed or not; X11 and Unix-socket forwarding are recorded and
//! always refused (witness does not relay them), and so is a cancel of a remote forwarding this
//! session did not make: nothing of them reaches the target.
//!
//! User names are the client's to choose: witness repeats at most [`SHOWN_NAME_CHARS`] of one,
//! escaped, in its log and its messages.
//!
//! What this module does not do: look at the bytes of a channel (that is `channel`'s work).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::HashAlg;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty, SshId};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use witness_core::{
    kind, AuthRefused, Direction, Event, Interrupt, PendingLogin, Principal, Protocol, Request, SessionId, SessionInfo, SshOperation,
    Subject, Verdict,
};
use witness_gate::{with_verdict, Credential, Registration};

use crate::back;
use crate::channel::{self, ChannelContext};
use crate::record;
use crate::targets::Targets;
use crate::{SshFront, SshGate, SshSettings, SshTarget};

/// Channels one session may have open at once (OpenSSH's MaxSessions is 10 by default); more are
/// refused, so a client cannot make witness hold unbounded tasks and target channels.
const MAX_CHANNELS: usize = 64;

/// How long a session's channels get, once the client has left, to record the target's closing
/// of their channels before they are ended.
const CHANNEL_SETTLE: Duration = Duration::from_millis(500);

/// Most characters of a user name witness repeats in its log and in messages to the client. A
/// name can be as long as a packet, and each refused login logs it: without a bound a client
/// without any credential could write kilobytes to the log per second and connection.
const SHOWN_NAME_CHARS: usize = 64;

/// Refused logins one connection may make before it is cut, so that a client cannot try keys or
/// tokens without end on one connection (each refusal takes a second too). Ten, as russh's
/// default, which leaves room for an agent holding several keys (OpenSSH offers them one by one).
const MAX_AUTH_ATTEMPTS: usize = 10;

/// What the ledger calls a Unix-socket forwarding (`-L PORT:SOCKET`, `-R SOCKET:…`): not an
/// operation rules can name, since witness refuses it whatever they say.
const STREAMLOCAL_FORWARD: &str = "streamlocal-forward";

/// Serves one client connection until it ends, then closes its recording; `login` is told once
/// the client is authenticated. russh runs the connection on a task of its own, which ends when
/// the socket is shut down.
pub async fn serve_client<G: SshGate>(front: Arc<SshFront<G>>, tcp: TcpStream, peer: SocketAddr, login: PendingLogin) {
    let _ = tcp.set_nodelay(true);
    let live: Arc<Mutex<Option<Live<G>>>> = Arc::new(Mutex::new(None));
    let end_reason: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (client_gone, gone) = tokio::sync::watch::channel(false);
    let refused_keys = Arc::new(Mutex::new(RefusedKeys::default()));
    let handler = Connection {
        front: front.clone(),
        peer,
        login: Some(login),
        principal: None,
        live: live.clone(),
        end_reason: end_reason.clone(),
        client_gone: gone,
        remote_forwards: HashSet::new(),
        refused_keys: refused_keys.clone(),
    };
    let result = match server::run_stream(front.config.clone(), tcp, handler).await {
        Ok(running) => running.await,
        Err(e) => Err(e),
    };
    // Every channel stops delivering to the client and closes its target channel, which gives
    // the target's commands their hangup.
    let _ = client_gone.send(true);
    let taken = live.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(mut live) = taken else {
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "SSH client left before a session opened");
        }
        let refused = std::mem::take(&mut *refused_keys.lock().unwrap_or_else(|p| p.into_inner()));
        if !refused.named.is_empty() {
            front.gate.keys_refused(&refused.claimed, &refused.named, refused.more);
        }
        return;
    };
    // Kept in place, so that the target connection's end, which witness causes below, is not
    // taken for the reason.
    let reason = end_reason.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| client_end(&result)).clone();
    // Channels end once the target has closed them; give them a moment to record the target's
    // last words (exit statuses). One the target keeps open (a command that ignores its hangup)
    // is ended with the target connection, as a direct client's leaving would.
    let settled = tokio::time::timeout(CHANNEL_SETTLE, async { while live.channels.join_next().await.is_some() {} }).await;
    if settled.is_err() {
        live.channels.abort_all();
        while live.channels.join_next().await.is_some() {}
    }
    live.targets.disconnect("the client left").await;
    let writer = live.context.writer.clone();
    drop(live);
    match Arc::try_unwrap(writer) {
        Ok(writer) => {
            if let Err(e) = writer.close(&reason).await {
                tracing::error!(error = %e, "cannot record the end of an SSH session");
            }
        }
        Err(_) => tracing::warn!("an SSH channel still holds the recorder; its drop records the session's end"),
    }
}

/// Why the client's connection ended, as the session's end: a client that closes its socket
/// without a goodbye (paramiko, a killed process; a reset when it left bytes unread) has closed
/// the connection; it did not fail.
fn client_end(result: &Result<(), russh::Error>) -> String {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    match result {
        Ok(()) => "the client disconnected".to_string(),
        Err(russh::Error::IO(e)) if matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe) => {
            "the client closed the connection".to_string()
        }
        Err(e) => format!("the client's connection failed: {e}"),
    }
}

/// russh's server config from witness's settings.
pub(crate) fn server_config(settings: &SshSettings) -> server::Config {
    server::Config {
        server_id: SshId::Standard("SSH-2.0-witness".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        // Refusals take a constant second (no timing hint about which identities exist), but
        // the "none" probe every OpenSSH client starts with is answered at once.
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        keys: settings.host_keys.clone(),
        window_size: crate::CHANNEL_WINDOW,
        maximum_packet_size: 32768,
        channel_buffer_size: 64,
        inactivity_timeout: Some(settings.inactivity_timeout),
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        preferred: russh::Preferred { cipher: std::borrow::Cow::Borrowed(CLIENT_CIPHERS), ..Default::default() },
        ..Default::default()
    }
}

/// Ciphers offered to clients; the client's order decides (OpenSSH puts ChaCha20-Poly1305 first).
/// russh's default list lacks AES-128-GCM, the fastest with ring on AES-NI, which clients that
/// prefer it (`-c aes128-gcm@openssh.com`) then get.
const CLIENT_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_256_CTR,
];

/// An authenticated connection's session: its recording, its target, its channels.
struct Live<G> {
    context: Arc<ChannelContext<G>>,
    targets: Arc<Targets>,
    channels: JoinSet<()>,
    /// Unregisters the session when dropped.
    _registration: Registration,
}

/// russh's per-connection handler.
struct Connection<G> {
    front: Arc<SshFront<G>>,
    peer: SocketAddr,
    /// Told of the first successful authentication.
    login: Option<PendingLogin>,
    /// Set by a successful authentication, with the user name (the connection) it was for and
    /// the method (`publickey`, `token`).
    principal: Option<(String, Principal, &'static str)>,
    live: Arc<Mutex<Option<Live<G>>>>,
    /// Why the session ended, when witness ended it.
    end_reason: Arc<Mutex<Option<String>>>,
    /// Set once the client's connection is gone.
    client_gone: tokio::sync::watch::Receiver<bool>,
    /// The remote forwardings (address, port) the target set up for this session: the only ones
    /// a cancel is passed on for.
    remote_forwards: HashSet<(String, u32)>,
    /// Keys refused until a login succeeds: what the audit trail names if none does.
    refused_keys: Arc<Mutex<RefusedKeys>>,
}

/// The keys a connection signed with that no identity has, while it has not logged in.
#[derive(Default)]
struct RefusedKeys {
    claimed: String,
    named: Vec<String>,
    more: usize,
}

/// Why witness refuses a forwarding whatever the rules say; recorded as the `rule` of its deny.
#[derive(Clone, Copy)]
enum Unforwardable {
    /// X11 and Unix-socket forwarding: witness does not relay them, so it cannot record them.
    Unsupported,
    /// A cancel of a remote forwarding this session did not make: passing it on would let the
    /// client send the target a request no rule decided.
    NotMade,
}

impl<G: SshGate> Connection<G> {
    fn accept(&mut self, user: &str, principal: Result<Principal, AuthRefused>, method: &'static str) -> Auth {
        // Debug-formatted: control characters in the name are escaped, not written to the log.
        let shown = shown_name(user);
        match principal {
            Ok(principal) => {
                tracing::info!(peer = %self.peer, connection = ?shown, identity = %principal.identity, method, "SSH client authenticated");
                if let Some(login) = self.login.take() {
                    login.logged_in();
                }
                self.principal = Some((user.to_string(), principal, method));
                *self.refused_keys.lock().unwrap_or_else(|p| p.into_inner()) = RefusedKeys::default();
                Auth::Accept
            }
            Err(refused) => {
                tracing::info!(peer = %self.peer, connection = ?shown, method, reason = %refused.reason, "SSH login refused");
                Auth::reject()
            }
        }
    }

    fn context(&self) -> Option<Arc<ChannelContext<G>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|live| live.context.clone())
    }

    fn refuse(&self, session: &mut Session, why: &str) {
        tracing::info!(peer = %self.peer, why, "ending an SSH session");
        *self.end_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
        let _ = session.disconnect(Disconnect::ByApplication, &format!("witness: {why}"), "en");
    }

    /// Opens the recording, logs in to the target and starts watching for revocation.
    async fn open(
        &mut self,
        target: Arc<SshTarget>,
        principal: Principal,
        method: &'static str,
        session: &mut Session,
    ) -> Result<(), String> {
        let info = SessionInfo {
            identity: principal.identity.clone(),
            connection: target.name.clone(),
            protocol: Protocol::Ssh,
            task: principal.task.clone(),
            client_addr: Some(self.peer.to_string()),
            groups: principal.groups.clone(),
        };
        let writer = self.front.gate.open_session(&info).await.map_err(|e| {
            tracing::error!(error = %e, "cannot open an SSH session's recording");
            "witness cannot record this session, so it does not start".to_string()
        })?;
        let login = Event::note(kind::SSH_LOGIN, Direction::Gateway, format!("logged in by {method}"))
            .with_attr("method", method)
            .with_attr("credential", principal.credential.clone());
        if writer.append(&login).await.is_err() {
            return Err("witness cannot record this session, so it does not start".to_string());
        }
        let subject = Subject { session: writer.id(), info, principal };
        let (reverse_tx, reverse_rx) = tokio::sync::mpsc::channel(back::MAX_REVERSE_WAITING);
        let (ended, target_ended) = tokio::sync::watch::channel(None);
        let link = back::Link { reverse: reverse_tx, ended: Arc::new(ended) };
        let settings = &self.front.settings;
        let leaving = Arc::new(AtomicBool::new(false));
        let target_handle =
            match back::connect(&target, &settings.known_hosts, settings.connect_timeout, link.clone(), leaving.clone()).await {
                Ok(handle) => handle,
                Err(e) => {
                    let message = e.to_string();
                    self.front.gate.target_failed(&subject.info.connection);
                    let event = Event::note(kind::SSH_TARGET_ERROR, Direction::Gateway, message.clone());
                    let _ = writer.append(&event).await;
                    let _ = writer.close(&message).await;
                    return Err(message);
                }
            };
        let registration = self.front.gate.register(&subject);
        let interrupt = registration.interrupt.clone();
        watch_interrupt(interrupt.clone(), session.handle(), self.end_reason.clone(), subject.session);
        watch_target(target_ended, session.handle(), self.end_reason.clone(), subject.session, target.name.clone());
        let context = Arc::new(ChannelContext {
            gate: self.front.gate.clone(),
            subject: Arc::new(subject),
            writer: Arc::new(writer),
            interrupt,
            client: session.handle(),
            client_gone: self.client_gone.clone(),
        });
        let mut channels = JoinSet::new();
        channels.spawn(reverse_channels(context.clone(), session.handle(), reverse_rx));
        let targets = Targets::new(target, settings.known_hosts.clone(), settings.connect_timeout, link, target_handle, leaving);
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Live { context, targets: Arc::new(targets), channels, _registration: registration });
        Ok(())
    }

    /// Records a forwarding request with the gate's verdict on it; whether it may go on (a held
    /// forwarding is refused: approvals are for commands).
    async fn forwarding(&self, operation: SshOperation, destination: &str, summary: String) -> bool {
        let Some(ctx) = self.context() else { return false };
        let verdict = channel::unheld(ctx.gate.decide(&ctx.subject, Request::Ssh { operation, text: destination }));
        let allowed = matches!(verdict, Verdict::Allow { .. });
        let event = record::forward(operation.as_str(), destination, allowed, summary, false);
        record_forward(&ctx, with_verdict(event, &verdict)).await && allowed
    }

    /// Records a forwarding request witness refuses whatever the rules say (`cancel`: a request
    /// to end one).
    async fn refuse_forwarding(&self, operation: &str, destination: &str, summary: String, why: Unforwardable, cancel: bool) {
        let Some(ctx) = self.context() else { return };
        let mut event = record::forward(operation, destination, false, summary, false);
        if cancel {
            event = event.with_attr("cancel", true);
        }
        record_forward(&ctx, with_verdict(event, &why.verdict())).await;
    }

    /// A global request to the target, bounded by the connect timeout: a target that never
    /// answers must not hold the client's connection (russh waits in this handler).
    async fn timed<T>(&self, request: impl std::future::Future<Output = Result<T, russh::Error>>) -> Result<T, String> {
        timed(self.front.settings.connect_timeout, request).await
    }

    fn track(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(live) = self.live.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            while live.channels.try_join_next().is_some() {}
            live.channels.spawn(task);
        }
    }

    /// The session's target connections, when the session has room for another channel.
    fn targets(&self) -> Option<Arc<Targets>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let live = live.as_mut()?;
        while live.channels.try_join_next().is_some() {}
        if live.channels.len() >= MAX_CHANNELS {
            tracing::warn!(peer = %self.peer, max = MAX_CHANNELS, "refusing a channel: the session has too many open");
            return None;
        }
        Some(live.targets.clone())
    }
}

/// A request to the target (a channel open, a global request), bounded by `limit`.
async fn timed<T>(limit: Duration, request: impl std::future::Future<Output = Result<T, russh::Error>>) -> Result<T, String> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(answered)) => Ok(answered),
        Ok(Err(e)) => Err(format!("the target refused: {e}")),
        Err(_) => Err(format!("the target did not answer within {} s", limit.as_secs())),
    }
}

/// The channel a client opened, as witness opens it on the target.
enum Opening {
    Session,
    /// A local forwarding: the target connects to `host:port`.
    DirectTcpip {
        host: String,
        port: u32,
        originator: String,
        originator_port: u32,
    },
}

/// Opens a channel's counterpart on a target connection (see `targets`), then answers the
/// client and relays the channel. Runs in the session's task set, so that a slow target login
/// or open never holds the client's other channels.
async fn open_and_relay<G: SshGate>(
    ctx: Arc<ChannelContext<G>>,
    targets: Arc<Targets>,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    opening: Opening,
) {
    let id = u32::from(channel.id());
    let opened = match targets.lease().await {
        Ok(lease) => {
            let target = lease.handle();
            let open = async {
                match &opening {
                    Opening::Session => target.channel_open_session().await,
                    Opening::DirectTcpip { host, port, originator, originator_port } => {
                        target.channel_open_direct_tcpip(host.as_str(), *port, originator.as_str(), *originator_port).await
                    }
                }
            };
            timed(targets.timeout(), open).await.map(|target_channel| (lease, target_channel))
        }
        Err(why) => Err(why),
    };
    match opened {
        Ok((lease, target_channel)) => {
            reply.accept().await;
            match opening {
                Opening::Session => channel::relay_session(ctx, channel, target_channel).await,
                Opening::DirectTcpip { .. } => channel::relay_tunnel(ctx, channel, target_channel).await,
            }
            lease.release().await;
        }
        Err(why) => {
            let message = match opening {
                Opening::Session => format!("the target could not open a channel: {why}"),
                Opening::DirectTcpip { host, port, .. } => format!("the target could not open {host}:{port}: {why}"),
            };
            let _ = ctx.writer.append(&record::channel_note(kind::SSH_TARGET_REFUSED, Direction::Response, id, message)).await;
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
        }
    }
}

/// Appends a forwarding's event; false (and the forwarding refused) when the ledger failed.
async fn record_forward<G: SshGate>(ctx: &ChannelContext<G>, event: Event) -> bool {
    if ctx.writer.append(&event).await.is_err() {
        tracing::error!(session = %ctx.subject.session, "cannot record a forwarding request; refusing it (the session ends with its next request)");
        return false;
    }
    true
}

/// A user name as witness shows it: at most [`SHOWN_NAME_CHARS`] characters, `…` marking a cut.
/// Callers show it Debug-formatted (`{:?}`), which escapes control characters.
fn shown_name(user: &str) -> String {
    let mut shown: String = user.chars().take(SHOWN_NAME_CHARS).collect();
    if user.chars().nth(SHOWN_NAME_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

// === impl Unforwardable ===

impl Unforwardable {
    fn verdict(self) -> Verdict {
        let (rule, message) = match self {
            Unforwardable::Unsupported => ("unsupported", "witness does not relay this kind of forwarding"),
            Unforwardable::NotMade => ("not-forwarded", "this session has no such forwarding to cancel"),
        };
        Verdict::Deny { rule: rule.into(), message: message.into(), classes: vec![] }
    }
}

/// Takes the channels the target opens toward the client (agent, remote-forwarded connections),
/// opens their counterpart on the client, records and relays them; refuses those no rule allows.
async fn reverse_channels<G: SshGate>(
    ctx: Arc<ChannelContext<G>>,
    client: server::Handle,
    mut reverse: tokio::sync::mpsc::Receiver<back::Reverse>,
) {
    let mut relays = JoinSet::new();
    while let Some(request) = reverse.recv().await {
        while relays.try_join_next().is_some() {}
        let (operation, destination, summary) = match &request {
            back::Reverse::Agent { .. } => (SshOperation::AgentForward, String::new(), "the target uses the forwarded agent".to_string()),
            back::Reverse::Forwarded { connected, originator, .. } => (
                SshOperation::PortForward,
                format!("{}:{}", connected.0, connected.1),
                format!("connection to the target's {}:{} from {}:{}", connected.0, connected.1, originator.0, originator.1),
            ),
        };
        let allowed = matches!(ctx.gate.decide(&ctx.subject, Request::Ssh { operation, text: &destination }), Verdict::Allow { .. })
            && relays.len() < MAX_CHANNELS;
        let event = record::forward(operation.as_str(), &destination, allowed, summary, true);
        if ctx.writer.append(&event).await.is_err() || !allowed {
            continue; // dropping the request refuses the target's channel
        }
        let opened = match request {
            back::Reverse::Agent { channel, reply } => client.channel_open_agent().await.map(|c| (c, channel, reply)),
            back::Reverse::Forwarded { channel, reply, connected, originator } => {
                client.channel_open_forwarded_tcpip(connected.0, connected.1, originator.0, originator.1).await.map(|c| (c, channel, reply))
            }
        };
        match opened {
            Ok((client_channel, target_channel, reply)) => {
                reply.accept().await;
                relays.spawn(channel::relay_tunnel(ctx.clone(), client_channel, target_channel));
            }
            Err(e) => {
                let refused = Event::note(kind::SSH_TARGET_REFUSED, Direction::Response, format!("the client refused the channel: {e}"));
                let _ = ctx.writer.append(&refused).await;
            }
        }
    }
    while relays.join_next().await.is_some() {}
}

/// Disconnects the client when the session is interrupted (credential revoked, shutdown, ended by
/// an administrator).
fn watch_interrupt(
    mut interrupt: tokio::sync::watch::Receiver<Option<Interrupt>>,
    client: server::Handle,
    end_reason: Arc<Mutex<Option<String>>>,
    session: SessionId,
) {
    tokio::spawn(async move {
        let Ok(why) = interrupt.wait_for(|i| i.is_some()).await.map(|i| i.clone()) else { return };
        let reason = why.unwrap_or(Interrupt::Shutdown).describe();
        tracing::info!(%session, reason, "ending an SSH session");
        *end_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
        let _ = client.disconnect(Disconnect::ByApplication, format!("witness: {reason}"), "en".into()).await;
    });
}

/// Disconnects the client when the target's connection ends under its session: the client
/// hears why, as a direct client hears that its connection was closed by the remote host, and
/// the session's end is recorded as the target's. The watch ends with the target connection.
fn watch_target(
    mut ended: tokio::sync::watch::Receiver<Option<String>>,
    client: server::Handle,
    end_reason: Arc<Mutex<Option<String>>>,
    session: SessionId,
    connection: String,
) {
    tokio::spawn(async move {
        let Ok(why) = ended.wait_for(|e| e.is_some()).await.map(|e| e.clone().unwrap_or_default()) else { return };
        {
            let mut reason = end_reason.lock().unwrap_or_else(|p| p.into_inner());
            if reason.is_some() {
                return; // witness ended the session itself
            }
            *reason = Some(why.clone());
        }
        tracing::info!(%session, connection, why, "the target's connection ended; ending the SSH session");
        let message = format!("witness: connection {connection}: {why} (closed by remote host)");
        let _ = client.disconnect(Disconnect::ByApplication, message, "en".into()).await;
    });
}

impl<G: SshGate> server::Handler for Connection<G> {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let principal = self.front.gate.authenticate(Protocol::Ssh, Credential::Bearer(password)).await;
        Ok(self.accept(user, principal, "token"))
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let principal = self.front.gate.verify_key(&fingerprint);
        if principal.is_err() {
            let mut refused = self.refused_keys.lock().unwrap_or_else(|p| p.into_inner());
            refused.claimed = user.to_string();
            if refused.named.len() < crate::MAX_REFUSED_KEYS_NAMED {
                refused.named.push(fingerprint);
            } else {
                refused.more += 1;
            }
            // russh hangs up on the next attempt: this connection will not log in.
            if refused.named.len() + refused.more >= MAX_AUTH_ATTEMPTS {
                let refused = std::mem::take(&mut *refused);
                self.front.gate.keys_refused(&refused.claimed, &refused.named, refused.more);
            }
        }
        Ok(self.accept(user, principal, "publickey"))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some((connection, principal, method)) = self.principal.clone() else { return Ok(()) };
        let target = match self.front.gate.target::<SshTarget>(&connection) {
            Ok(target) => target,
            Err(unknown) => {
                let names = unknown.known;
                let known = if names.is_empty() { "none is configured".to_string() } else { format!("use one of: {}", names.join(", ")) };
                let shown = shown_name(&connection);
                self.refuse(session, &format!("there is no SSH connection named {shown:?}; log in as CONNECTION@gateway ({known})"));
                return Ok(());
            }
        };
        if let Err(why) = self.open(target, principal, method, session).await {
            self.refuse(session, &why);
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(ctx), Some(targets)) = (self.context(), self.targets()) else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let id = u32::from(channel.id());
        let opened = record::channel_note(kind::SSH_CHANNEL, Direction::Request, id, "session channel").with_attr("type", "session");
        if ctx.writer.append(&opened).await.is_err() {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            self.refuse(session, "witness cannot record this session, so it ends");
            return Ok(());
        }
        self.track(open_and_relay(ctx, targets, channel, reply, Opening::Session));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let destination = format!("{host}:{port}");
        let summary = format!("local forwarding to {destination} (from {originator_address}:{originator_port})");
        let (Some(ctx), Some(targets)) = (self.context(), self.targets()) else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        if !self.forwarding(SshOperation::PortForward, &destination, summary).await {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        let opening = Opening::DirectTcpip { host: host.to_string(), port, originator: originator_address.to_string(), originator_port };
        self.track(open_and_relay(ctx, targets, channel, reply, opening));
        Ok(())
    }

    async fn tcpip_forward(&mut self, address: &str, port: &mut u32, _session: &mut Session) -> Result<bool, Self::Error> {
        let destination = format!("{address}:{port}");
        let summary = format!("remote forwarding of the target's {destination}");
        let Some(target) = self.targets() else { return Ok(false) };
        if !self.forwarding(SshOperation::PortForward, &destination, summary).await {
            return Ok(false);
        }
        match self.timed(target.main().tcpip_forward(address.to_string(), *port)).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                self.remote_forwards.insert((address.to_string(), *port));
                Ok(true)
            }
            Err(why) => {
                if let Some(ctx) = self.context() {
                    let refused =
                        Event::note(kind::SSH_TARGET_REFUSED, Direction::Response, format!("remote forwarding of {destination}: {why}"));
                    let _ = ctx.writer.append(&refused).await;
                }
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(&mut self, address: &str, port: u32, _session: &mut Session) -> Result<bool, Self::Error> {
        let destination = format!("{address}:{port}");
        let forwarding = (address.to_string(), port);
        let operation = SshOperation::PortForward.as_str();
        if !self.remote_forwards.contains(&forwarding) {
            let summary = format!("cancel of a remote forwarding of the target's {destination} this session did not make");
            self.refuse_forwarding(operation, &destination, summary, Unforwardable::NotMade, true).await;
            return Ok(false);
        }
        let (Some(ctx), Some(target)) = (self.context(), self.targets()) else { return Ok(false) };
        let summary = format!("cancel of the remote forwarding of the target's {destination}");
        let event = record::forward(operation, &destination, true, summary, false).with_attr("cancel", true);
        if !record_forward(&ctx, event).await {
            return Ok(false);
        }
        let cancelled = self.timed(target.main().cancel_tcpip_forward(address.to_string(), port)).await.is_ok();
        if cancelled {
            self.remote_forwards.remove(&forwarding);
        }
        Ok(cancelled)
    }

    async fn streamlocal_forward(&mut self, socket_path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        let summary = format!("remote forwarding of the target's Unix socket {socket_path} (refused: not supported)");
        self.refuse_forwarding(STREAMLOCAL_FORWARD, socket_path, summary, Unforwardable::Unsupported, false).await;
        Ok(false)
    }

    async fn cancel_streamlocal_forward(&mut self, socket_path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        // No Unix-socket forwarding is ever made, so there is none to cancel.
        let summary = format!("cancel of a remote forwarding of the target's Unix socket {socket_path} this session did not make");
        self.refuse_forwarding(STREAMLOCAL_FORWARD, socket_path, summary, Unforwardable::NotMade, true).await;
        Ok(false)
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let summary = format!("local forwarding to the Unix socket {socket_path} (refused: not supported)");
        self.refuse_forwarding(STREAMLOCAL_FORWARD, socket_path, summary, Unforwardable::Unsupported, false).await;
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        // Only the answer: the channel's task, which has the request in order with the channel's
        // others, decides again, records it, and asks the target only when it is allowed (the
        // gate's answer is the same there).
        let Some(ctx) = self.context() else { return Ok(false) };
        Ok(matches!(
            channel::unheld(ctx.gate.decide(&ctx.subject, Request::Ssh { operation: SshOperation::AgentForward, text: "" })),
            Verdict::Allow { .. }
        ))
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Refused whatever the rules say: witness does not relay X11 channels.
        let summary = "X11 forwarding (refused: not supported)".to_string();
        self.refuse_forwarding(SshOperation::X11Forward.as_str(), "", summary, Unforwardable::Unsupported, false).await;
        let _ = session.channel_failure(channel);
        Ok(())
    }

    // The requests below are relayed (and decided) by the channel's task; the reply to the
    // client is given here because russh pairs it with the channel's latest request.

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let _ = session.channel_success(channel);
        Ok(())
    }

    async fn env_request(&mut self, channel: ChannelId, _name: &str, _value: &str, session: &mut Session) -> Result<(), Self::Error> {
        let _ = session.channel_success(channel);
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let _ = session.channel_success(channel);
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, _command: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let _ = session.channel_success(channel);
        Ok(())
    }

    async fn subsystem_request(&mut self, channel: ChannelId, _name: &str, session: &mut Session) -> Result<(), Self::Error> {
        let _ = session.channel_success(channel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_shown_cut_and_escaped() {
        let exactly = "w".repeat(SHOWN_NAME_CHARS);
        let check = |name: &str, expect: &str| assert_eq!(format!("{:?}", shown_name(name)), expect, "{name:?}");
        check("web", r#""web""#);
        check("web\n2031-01-01 INFO forged", r#""web\n2031-01-01 INFO forged""#);
        check("web\0\u{1b}[2K", r#""web\0\u{1b}[2K""#);
        check(&exactly, &format!("{exactly:?}"));
        check(&"w".repeat(10_000), &format!("\"{exactly}…\""));
        check(&"é".repeat(65), &format!("\"{}…\"", "é".repeat(64)));
    }
}
