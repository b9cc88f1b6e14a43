//! One channel relayed between the client and the target, in two tasks: the client side reads what
//! the client sends (requests, bytes, EOF, close), decides on shell, exec and subsystem requests
//! with the gate, records, and only then forwards; the target side records what the target sends
//! (bytes, exit status, EOF, close) before it reaches the client. An SFTP channel is recorded as
//! SFTP operations and byte counts, a `git-receive-pack` channel also as the ref updates it pushes
//! and the target's report on them.
//!
//! Replies to the client's channel requests are sent by the front as the requests arrive (russh
//! pairs a reply with the channel's latest request); a request the gate denies is answered on the
//! channel itself: a line on stderr, exit status 126, and the channel closes. Environment
//! variables and agent forwarding are decided here too, in order with the channel's other
//! requests: a refused one is recorded and never reaches the target.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use russh::{client, server, Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use serde_json::json;
use witness_core::{kind, Direction, Event, Interrupt, Request, SshOperation, Subject, Verdict};
use witness_gate::{admit, with_verdict, Admission, Refusal, Waiting, Wire, Withdrawal};
use witness_ledger::SessionWriter;

use crate::git::{parse_git_command, GitService, ReceivePackStream};
use crate::outbox::{self, Input, Outbox, Output};
use crate::record::{self, channel_note};
use crate::sftp::SftpStream;
use crate::SshGate;

/// The exit status a client sees for a command witness refused (as a shell's "cannot execute").
pub(crate) const REFUSED_EXIT_STATUS: u32 = 126;

/// What a relayed channel needs from its session.
pub(crate) struct ChannelContext<G> {
    pub gate: Arc<G>,
    pub subject: Arc<Subject>,
    pub writer: Arc<SessionWriter>,
    /// The session's interrupt (revocation, shutdown): a held request stops waiting on it.
    pub interrupt: tokio::sync::watch::Receiver<Option<Interrupt>>,
    /// For what a channel half cannot send (exit signals) and for ending the session when the
    /// ledger fails.
    pub client: server::Handle,
    /// Set once the client's connection is gone: nothing more can reach it.
    pub client_gone: tokio::sync::watch::Receiver<bool>,
}

/// What the channel turned out to carry, which decides how its bytes are recorded.
enum Mode {
    /// No shell, exec or subsystem yet.
    Idle,
    /// Bytes recorded as they are (shell, exec, git fetch, other subsystems, tunnels).
    Bytes,
    Sftp(SftpStream),
    GitPush(ReceivePackStream),
}

/// State both halves of a channel look at.
struct Shared {
    mode: Mode,
    /// Requests forwarded to the target with want-reply, oldest first, so that the target's
    /// answers can be told apart.
    asked: VecDeque<&'static str>,
}

type SharedState = Arc<Mutex<Shared>>;

/// The client's side of a channel, as a decision that may wait needs it.
struct Client<'a> {
    read: &'a mut ChannelReadHalf,
    write: &'a ChannelWriteHalf<server::Msg>,
    /// Messages that arrived while a request waited for approval.
    waiting: &'a mut VecDeque<ChannelMsg>,
}

/// Messages kept while a request waits for approval; past this the client is not read (russh's
/// queue and the SSH window hold it back).
const MAX_WAITING: usize = 64;

/// The channel ended in a way the session cannot survive: the ledger refused a record.
struct LedgerFailed;

/// Relays a session channel until either side closes it.
pub(crate) async fn relay_session<G: SshGate>(ctx: Arc<ChannelContext<G>>, client: Channel<server::Msg>, target: Channel<client::Msg>) {
    relay(ctx, client, target, Mode::Idle).await
}

/// Relays a direct-tcpip channel (a local port forwarding a rule allowed): bytes each way.
pub(crate) async fn relay_tunnel<G: SshGate>(ctx: Arc<ChannelContext<G>>, client: Channel<server::Msg>, target: Channel<client::Msg>) {
    relay(ctx, client, target, Mode::Bytes).await
}

async fn relay<G: SshGate>(ctx: Arc<ChannelContext<G>>, client: Channel<server::Msg>, target: Channel<client::Msg>, mode: Mode) {
    let id = u32::from(client.id());
    // A session channel holds the target's end of output back until its exit status (below).
    let session_channel = matches!(mode, Mode::Idle);
    let shared: SharedState = Arc::new(Mutex::new(Shared { mode, asked: VecDeque::new() }));
    let (client_read, client_write) = client.split();
    let (target_read, target_write) = target.split();
    // Each half tells the other when it is done, so that neither waits for a window or a
    // message that will never come; both run in this task, so ending the task ends both.
    let (client_done, client_ended) = tokio::sync::watch::channel(false);
    let (target_done, target_ended) = tokio::sync::watch::channel(false);
    let client_side = async {
        let stop = Stop::new(&ctx, target_ended);
        let (outbox, inbox) = outbox::outbox(outbox::TOWARD_TARGET_BYTES);
        // The reader drops the outbox when it ends; the writer ends once it has written the rest.
        let toward = Toward { target: &target_write, outbox };
        let reading_stop = stop.clone();
        let reading = async {
            let outcome = client_to_target(&ctx, id, client_read, &client_write, toward, &shared, reading_stop).await;
            // The client's channel is closed (or was refused): nothing more can reach it, so the
            // target side stops delivering now, not once the client's last bytes reach the
            // target (which may wait on the target side).
            let _ = client_done.send(true);
            outcome
        };
        let (outcome, ()) = tokio::join!(reading, outbox::write_to_target(inbox, &target_write, stop));
        if outcome.is_err() {
            end_session(&ctx.client, "witness cannot record this session, so it ends (see witness's log)").await;
        }
        // Closing the target's channel gives its command the hangup a direct client's close
        // would; the target side then ends at the target's close.
        let _ = target_write.close().await;
    };
    let target_side = async {
        let stop = Stop::new(&ctx, client_ended);
        let (outbox, inbox) = outbox::outbox(outbox::TOWARD_CLIENT_BYTES);
        let reading = target_to_client(&ctx, id, target_read, outbox, &shared, stop.clone(), session_channel);
        tokio::join!(reading, outbox::deliver_to_client(inbox, &client_write, &ctx.client, stop));
        let _ = target_done.send(true);
    };
    tokio::join!(client_side, target_side);
}

/// When one half of a channel must stop waiting: the other half has ended, or the client's
/// connection is gone (a write would wait for a window that never opens).
#[derive(Clone)]
pub(crate) struct Stop {
    other_ended: tokio::sync::watch::Receiver<bool>,
    client_gone: tokio::sync::watch::Receiver<bool>,
}

impl Stop {
    fn new<G>(ctx: &ChannelContext<G>, other_ended: tokio::sync::watch::Receiver<bool>) -> Stop {
        Stop { other_ended, client_gone: ctx.client_gone.clone() }
    }

    /// `send`'s output, or None when the channel stopped first.
    pub(crate) async fn unless<F: std::future::Future>(&mut self, send: F) -> Option<F::Output> {
        if self.stopped() {
            return None;
        }
        let Stop { other_ended, client_gone } = self;
        tokio::select! {
            output = send => Some(output),
            _ = other_ended.wait_for(|ended| *ended) => None,
            _ = client_gone.wait_for(|gone| *gone) => None,
        }
    }

    fn stopped(&self) -> bool {
        *self.other_ended.borrow() || *self.client_gone.borrow()
    }
}

/// Where the client side sends: requests straight to the target, bytes through the outbox.
struct Toward<'a> {
    target: &'a ChannelWriteHalf<client::Msg>,
    outbox: Outbox<Input>,
}

/// The client side: requests and bytes from the client, decided and recorded, then forwarded.
async fn client_to_target<G: SshGate>(
    ctx: &ChannelContext<G>,
    id: u32,
    mut client_read: ChannelReadHalf,
    client_write: &ChannelWriteHalf<server::Msg>,
    toward: Toward<'_>,
    shared: &SharedState,
    mut stop: Stop,
) -> Result<(), LedgerFailed> {
    let Toward { target, outbox } = toward;
    let record = |event: Event| async move { append(&ctx.writer, &event).await };
    // What the client sent while a request waited for approval, handled once it is decided.
    let mut waiting = VecDeque::new();
    // Once the target side has ended, witness has closed the client's channel (or the session
    // is ending): russh drops the close the client answers with unseen, so nothing more comes,
    // and waiting for it would hold the channel (and its target connection) until the client
    // disconnects.
    while let Some(Some(message)) = stop.unless(next_message(&mut waiting, &mut client_read)).await {
        let mut client = Client { read: &mut client_read, write: client_write, waiting: &mut waiting };
        // A request that starts something, or changes what it starts with, waits until the
        // bytes before it have reached the target; resizes and signals need not.
        if matches!(
            message,
            ChannelMsg::RequestPty { .. }
                | ChannelMsg::SetEnv { .. }
                | ChannelMsg::RequestShell { .. }
                | ChannelMsg::Exec { .. }
                | ChannelMsg::RequestSubsystem { .. }
                | ChannelMsg::AgentForward { .. }
        ) {
            stop.unless(outbox.flush()).await;
        }
        match message {
            ChannelMsg::Data { data } => {
                let (data, ended) = gather(data, &mut client);
                for event in input_events(id, &data, shared) {
                    record(event).await?;
                }
                if !stop.unless(outbox.push(Input::Data(data))).await.unwrap_or(false) || ended {
                    break;
                }
            }
            ChannelMsg::ExtendedData { data, ext } => {
                record(record::data(kind::SSH_INPUT, Direction::Request, id, Some("stderr"), &data)).await?;
                stop.unless(outbox.push(Input::ExtendedData(ext, data))).await;
            }
            ChannelMsg::Eof => {
                record(channel_note(kind::SSH_EOF, Direction::Request, id, "end of input from the client")).await?;
                stop.unless(outbox.push(Input::Eof)).await;
            }
            ChannelMsg::Close => {
                record(channel_note(kind::SSH_CLOSE, Direction::Request, id, "the client closed the channel")).await?;
                break;
            }
            ChannelMsg::RequestPty { term, col_width, row_height, pix_width, pix_height, terminal_modes, .. } => {
                record(record::pty(id, &term, col_width, row_height)).await?;
                ask(shared, "pty");
                let _ = stop.unless(target.request_pty(true, &term, col_width, row_height, pix_width, pix_height, &terminal_modes)).await;
            }
            ChannelMsg::SetEnv { variable_name, variable_value, .. } => {
                // A variable can change what a decided command runs (LD_PRELOAD, BASH_ENV, PATH),
                // so it reaches the target only when a rule allows it; a refused one is dropped
                // (the client was answered already, and OpenSSH asks for no answer).
                let verdict = unheld(ctx.gate.decide(&ctx.subject, Request::Ssh { operation: SshOperation::Env, text: &variable_name }));
                let mut event = channel_note(kind::SSH_ENV, Direction::Request, id, format!("env {variable_name}"))
                    .with_attr("name", variable_name.clone());
                // Locale and terminal values are kept; others may carry secrets (a token sent
                // with SendEnv), so only their length is.
                if variable_name == "LANG" || variable_name == "TERM" || variable_name.starts_with("LC_") {
                    event = event.with_attr("value", variable_value.clone());
                } else {
                    event = event.with_attr("value_bytes", variable_value.len());
                }
                record(with_verdict(event, &verdict)).await?;
                if matches!(verdict, Verdict::Allow { .. }) {
                    let _ = stop.unless(target.set_env(false, variable_name, variable_value)).await;
                }
            }
            ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height } => {
                record(record::resize(id, col_width, row_height)).await?;
                let _ = stop.unless(target.window_change(col_width, row_height, pix_width, pix_height)).await;
            }
            ChannelMsg::Signal { signal } => {
                let name = signal_name(&signal);
                record(channel_note(kind::SSH_SIGNAL, Direction::Request, id, format!("signal {name}")).with_attr("signal", name)).await?;
                let _ = stop.unless(target.signal(signal)).await;
            }
            ChannelMsg::RequestShell { .. } => {
                let event = channel_note(kind::SSH_SHELL, Direction::Request, id, "shell");
                if !start(ctx, id, SshOperation::Shell, "", event, &mut client).await? {
                    break;
                }
                shared_lock(shared).mode = Mode::Bytes;
                ask(shared, "shell");
                let _ = stop.unless(target.request_shell(true)).await;
            }
            ChannelMsg::Exec { command, .. } => {
                let command = String::from_utf8_lossy(&command).into_owned();
                let git = parse_git_command(&command);
                let operation = match git.as_ref().map(|g| g.service) {
                    Some(GitService::ReceivePack) => SshOperation::GitPush,
                    Some(GitService::UploadPack | GitService::UploadArchive) => SshOperation::GitFetch,
                    None => SshOperation::Exec,
                };
                let mut event = witness_core::Event::text(
                    kind::SSH_EXEC,
                    Direction::Request,
                    record::clip(&command, record::COMMAND_SUMMARY_CHARS),
                    command.clone(),
                )
                .with_attr("channel", id)
                .with_attr("operation", operation.as_str());
                if let Some(git) = &git {
                    event = event.with_attr("git_service", git.service.as_str()).with_attr("repository", git.repository.clone());
                }
                if !start(ctx, id, operation, &command, event, &mut client).await? {
                    break;
                }
                shared_lock(shared).mode =
                    if operation == SshOperation::GitPush { Mode::GitPush(ReceivePackStream::new()) } else { Mode::Bytes };
                ask(shared, "exec");
                let _ = stop.unless(target.exec(true, command)).await;
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                let operation = if name == "sftp" { SshOperation::Sftp } else { SshOperation::Subsystem };
                let event =
                    channel_note(kind::SSH_SUBSYSTEM, Direction::Request, id, format!("subsystem {name}")).with_attr("name", name.clone());
                if !start(ctx, id, operation, &name, event, &mut client).await? {
                    break;
                }
                shared_lock(shared).mode = if operation == SshOperation::Sftp { Mode::Sftp(SftpStream::new()) } else { Mode::Bytes };
                ask(shared, "subsystem");
                let _ = stop.unless(target.request_subsystem(true, name)).await;
            }
            // The front answered the client with the gate's answer; here it is recorded before
            // the target is asked, so the request cannot reach the target ahead of its record.
            ChannelMsg::AgentForward { .. } => {
                let verdict = unheld(ctx.gate.decide(&ctx.subject, Request::Ssh { operation: SshOperation::AgentForward, text: "" }));
                let allowed = matches!(verdict, Verdict::Allow { .. });
                let event = record::forward(SshOperation::AgentForward.as_str(), "", allowed, "agent forwarding".into(), false);
                record(with_verdict(event, &verdict)).await?;
                if allowed {
                    let _ = stop.unless(target.agent_forward(false)).await;
                }
            }
            ChannelMsg::RequestX11 { .. } => {}
            _ => {}
        }
    }
    Ok(())
}

/// The target side: everything the target sends, recorded, then queued for the client in
/// `toward_client` (which delivers it in order). Once the client's side has ended (the client
/// closed the channel or left) nothing more is delivered, but the target's messages are still
/// read, so that its connection never waits on this channel, and its exit is still recorded.
///
/// On a session channel the target's end of output is held back until its exit status (or its
/// close): a client that has sent its own end of input takes the end of output as the end of
/// the channel and may close it (OpenSSH's ControlMaster does), and an exit status that arrives
/// after the client's close cannot be delivered.
async fn target_to_client<G: SshGate>(
    ctx: &ChannelContext<G>,
    id: u32,
    mut target_read: ChannelReadHalf,
    toward_client: Outbox<Output>,
    shared: &SharedState,
    stop: Stop,
    session_channel: bool,
) {
    let mut eof_held = false;
    // Whether the target ended the channel (false: its connection ended under it).
    let mut closed = false;
    let result: Result<(), LedgerFailed> = async {
        // A message read ahead while gathering data, handled next.
        let mut pending = VecDeque::new();
        while let Some(message) = next_message(&mut pending, &mut target_read).await {
            match message {
                ChannelMsg::Data { data } => {
                    if stop.stopped() {
                        continue; // nobody to deliver to: read and drop
                    }
                    let (data, ended) = gather_ready(data, &mut target_read, &mut pending);
                    for event in output_events(id, &data, shared) {
                        append(&ctx.writer, &event).await?;
                    }
                    toward_client.push(Output::Data(data)).await;
                    if ended {
                        break;
                    }
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    if stop.stopped() {
                        continue;
                    }
                    append(&ctx.writer, &record::data(kind::SSH_OUTPUT, Direction::Response, id, Some("stderr"), &data)).await?;
                    toward_client.push(Output::ExtendedData(ext, data)).await;
                }
                ChannelMsg::Eof => {
                    append(&ctx.writer, &channel_note(kind::SSH_EOF, Direction::Response, id, "end of output from the target")).await?;
                    if session_channel {
                        eof_held = true;
                    } else {
                        toward_client.push(Output::Eof).await;
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    let event = channel_note(kind::SSH_EXIT, Direction::Response, id, format!("exit status {exit_status}"))
                        .with_attr("status", exit_status);
                    append(&ctx.writer, &event).await?;
                    toward_client.push(Output::ExitStatus(exit_status)).await;
                    release_eof(&mut eof_held, &toward_client).await;
                }
                ChannelMsg::ExitSignal { signal_name: signal, core_dumped, error_message, lang_tag } => {
                    let name = signal_name(&signal);
                    let event = channel_note(kind::SSH_EXIT, Direction::Response, id, format!("killed by signal {name}"))
                        .with_attr("signal", name)
                        .with_attr("core_dumped", core_dumped)
                        .with_attr("message", error_message.clone());
                    append(&ctx.writer, &event).await?;
                    toward_client.push(Output::ExitSignal { signal, core_dumped, message: error_message, lang: lang_tag }).await;
                    release_eof(&mut eof_held, &toward_client).await;
                }
                ChannelMsg::Success => {
                    shared_lock(shared).asked.pop_front();
                }
                ChannelMsg::Failure => {
                    let asked = shared_lock(shared).asked.pop_front().unwrap_or("request");
                    let event =
                        channel_note(kind::SSH_TARGET_REFUSED, Direction::Response, id, format!("the target refused the {asked} request"))
                            .with_attr("request", asked);
                    append(&ctx.writer, &event).await?;
                    if asked != "pty" {
                        let line = format!("witness: the target refused the {asked} request\r\n");
                        toward_client.push(Output::ExtendedData(1, Bytes::from(line))).await;
                        toward_client.push(Output::ExitStatus(REFUSED_EXIT_STATUS)).await;
                        closed = true;
                        break;
                    }
                }
                ChannelMsg::Close => {
                    append(&ctx.writer, &channel_note(kind::SSH_CLOSE, Direction::Response, id, "the target closed the channel")).await?;
                    release_eof(&mut eof_held, &toward_client).await;
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        end_session(&ctx.client, "witness cannot record this session, so it ends (see witness's log)").await;
    }
    // A channel whose target connection ended is left for the front, which tells the client why
    // before it disconnects it (closing the channel first would end an OpenSSH client with no
    // word of why).
    if closed || result.is_err() {
        toward_client.push(Output::Close).await;
    }
}

/// Queues the end of output held back for an exit status, if there is one.
async fn release_eof(eof_held: &mut bool, toward_client: &Outbox<Output>) {
    if std::mem::take(eof_held) {
        toward_client.push(Output::Eof).await;
    }
}

/// Decides on a shell, exec or subsystem request and puts it through admission. Returns whether
/// it may go on; a refused request has been answered on the channel and closed it.
async fn start<G: SshGate>(
    ctx: &ChannelContext<G>,
    id: u32,
    operation: SshOperation,
    text: &str,
    event: Event,
    client: &mut Client<'_>,
) -> Result<bool, LedgerFailed> {
    let verdict = ctx.gate.decide(&ctx.subject, Request::Ssh { operation, text });
    let mut wire = ChannelWire { writer: &ctx.writer, client, interrupt: ctx.interrupt.clone(), operation };
    let refusal = match admit(&mut wire, Some(event), verdict).await? {
        Admission::Admitted => return Ok(true),
        Admission::Refused(Refusal::Withdrawn { why: Withdrawal::ClientLeft, .. }) => {
            let close = channel_note(kind::SSH_CLOSE, Direction::Request, id, "the client closed the channel while it waited");
            append(&ctx.writer, &close).await?;
            return Ok(false);
        }
        Admission::Refused(refusal) => refusal.explain(operation.as_str()),
    };
    let _ = client.write.extended_data_bytes(1, Bytes::from(format!("{refusal}\r\n"))).await;
    append(
        &ctx.writer,
        &channel_note(kind::SSH_EXIT, Direction::Gateway, id, format!("refused by witness: exit status {REFUSED_EXIT_STATUS}"))
            .with_attr("status", REFUSED_EXIT_STATUS),
    )
    .await?;
    let _ = client.write.exit_status(REFUSED_EXIT_STATUS).await;
    let _ = client.write.eof().await;
    let _ = client.write.close().await;
    Ok(false)
}

/// A channel's part in admission: each event waits for its receipt; while a request is held the
/// client's next messages are kept (a bounded number) for after, and the client closing the
/// channel or the session ending withdraws it.
struct ChannelWire<'c, 'a> {
    writer: &'c SessionWriter,
    client: &'c mut Client<'a>,
    interrupt: tokio::sync::watch::Receiver<Option<Interrupt>>,
    operation: SshOperation,
}

impl Wire for ChannelWire<'_, '_> {
    type Error = LedgerFailed;

    async fn record(&mut self, event: &Event) -> Result<(), LedgerFailed> {
        append(self.writer, event).await
    }

    async fn hold_begins(&mut self, waiting: &Waiting<'_>) -> Result<(), LedgerFailed> {
        let line = format!("{}\r\nwitness: {}\r\n", waiting.line(self.operation.as_str()), waiting.instructions);
        let _ = self.client.write.extended_data_bytes(1, Bytes::from(line)).await;
        Ok(())
    }

    async fn withdrawn(&mut self) -> Withdrawal {
        loop {
            tokio::select! {
                _ = self.interrupt.wait_for(|i| i.is_some()) => return Withdrawal::SessionEnding,
                message = self.client.read.wait(), if self.client.waiting.len() < MAX_WAITING => match message {
                    None | Some(ChannelMsg::Close) => return Withdrawal::ClientLeft,
                    Some(message) => self.client.waiting.push_back(message),
                },
            }
        }
    }
}

/// A verdict for a request that cannot wait (a forwarding, a variable): a hold becomes a
/// refusal, and dropping it withdraws its approval. Approvals are for commands.
pub(crate) fn unheld(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Hold(held) => {
            drop(held);
            Verdict::Deny {
                rule: "approval".into(),
                message: "forwardings and environment variables cannot wait for approval".into(),
                classes: vec![],
            }
        }
        verdict => verdict,
    }
}

/// The next message of a channel half: one read ahead earlier first, else the next to arrive;
/// None once the channel is gone.
async fn next_message(read_ahead: &mut VecDeque<ChannelMsg>, read: &mut ChannelReadHalf) -> Option<ChannelMsg> {
    match read_ahead.pop_front() {
        Some(message) => Some(message),
        None => read.wait().await,
    }
}

/// Data messages that are already waiting are recorded and forwarded as one: a bulk transfer
/// costs one record per up to this many bytes instead of one per SSH packet (16 KiB from
/// OpenSSH's stdin). Only what has arrived is taken; nothing waits for more.
const GATHER_BYTES: usize = 256 << 10;

/// `first` and the data messages the client has already sent after it, as one chunk; a message
/// of another kind read on the way is kept for next. True when the channel has ended.
fn gather(first: Bytes, client: &mut Client<'_>) -> (Bytes, bool) {
    gather_ready(first, client.read, client.waiting)
}

/// [`gather`] on any channel half, keeping other messages in `next`.
fn gather_ready(first: Bytes, read: &mut ChannelReadHalf, next: &mut VecDeque<ChannelMsg>) -> (Bytes, bool) {
    if !next.is_empty() {
        return (first, false);
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = first.len();
    let mut ended = false;
    while total < GATHER_BYTES {
        match ready_now(read.wait()) {
            Some(Some(ChannelMsg::Data { data })) => {
                total += data.len();
                chunks.push(data);
            }
            Some(Some(other)) => {
                next.push_back(other);
                break;
            }
            Some(None) => {
                ended = true;
                break;
            }
            None => break,
        }
    }
    if chunks.is_empty() {
        return (first, ended);
    }
    let mut joined = Vec::with_capacity(total);
    joined.extend_from_slice(&first);
    for chunk in &chunks {
        joined.extend_from_slice(chunk);
    }
    (Bytes::from(joined), ended)
}

/// The output of a future that is ready now, without waiting. Dropping the unready future is
/// safe here: a channel's `wait` is a queue receive, which loses nothing when cancelled.
pub(crate) fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// The events for bytes the client sent, by what the channel carries (two when they complete
/// a push's ref updates: `git.push`, then the bytes).
fn input_events(id: u32, data: &[u8], shared: &SharedState) -> Vec<Event> {
    let mut shared = shared_lock(shared);
    match &mut shared.mode {
        Mode::Sftp(stream) => vec![match stream.client_bytes(data) {
            Ok(ops) => {
                let summary = summarize(ops.iter().map(|op| op.summary()), data.len());
                let list: Vec<_> = ops.iter().map(|op| json!({"op": op.name(), "summary": op.summary()})).collect();
                record::stream_ops(kind::SFTP_REQUEST, Direction::Request, id, data.len(), summary, json!(list))
            }
            Err(e) => {
                // Not SFTP as witness understands it: recorded as bytes from here on.
                tracing::warn!(channel = id, error = %e, "cannot follow the SFTP stream; recording its bytes");
                shared.mode = Mode::Bytes;
                record::data(kind::SSH_INPUT, Direction::Request, id, None, data).with_attr("sftp_error", e.to_string())
            }
        }],
        Mode::GitPush(stream) => {
            let bytes = record::data(kind::SSH_INPUT, Direction::Request, id, None, data);
            match stream.client_bytes(data) {
                Ok(Some(updates)) => {
                    let list: Vec<_> = updates.iter().map(|u| json!({"old": u.old, "new": u.new, "ref": u.name})).collect();
                    let summary =
                        updates.iter().map(|u| format!("{} {}..{}", u.name, short(&u.old), short(&u.new))).collect::<Vec<_>>().join(", ");
                    let push = Event::note(kind::GIT_PUSH, Direction::Request, format!("push {summary}"))
                        .with_attr("channel", id)
                        .with_attr("updates", json!(list));
                    vec![push, bytes]
                }
                Ok(None) => vec![bytes],
                Err(e) => vec![bytes.with_attr("git_error", e.to_string())],
            }
        }
        Mode::Idle | Mode::Bytes => vec![record::data(kind::SSH_INPUT, Direction::Request, id, None, data)],
    }
}

/// An object id as people read it: its first 7 digits.
fn short(oid: &str) -> &str {
    oid.get(..7).unwrap_or(oid)
}

/// The events for bytes the target sent (more than one when a git push report completes).
fn output_events(id: u32, data: &[u8], shared: &SharedState) -> Vec<Event> {
    let mut shared = shared_lock(shared);
    match &mut shared.mode {
        Mode::Sftp(stream) => match stream.server_bytes(data) {
            Ok(replies) => {
                let summary = summarize(replies.iter().map(|r| r.summary()), data.len());
                let list: Vec<_> = replies.iter().map(|r| json!({"reply": r.name(), "summary": r.summary()})).collect();
                vec![record::stream_ops(kind::SFTP_REPLY, Direction::Response, id, data.len(), summary, json!(list))]
            }
            Err(e) => {
                tracing::warn!(channel = id, error = %e, "cannot follow the SFTP replies; recording their bytes");
                shared.mode = Mode::Bytes;
                vec![record::data(kind::SSH_OUTPUT, Direction::Response, id, Some("stdout"), data).with_attr("sftp_error", e.to_string())]
            }
        },
        Mode::GitPush(stream) => {
            let mut events = vec![record::data(kind::SSH_OUTPUT, Direction::Response, id, Some("stdout"), data)];
            let report = match stream.server_bytes(data) {
                Ok(report) => report,
                Err(e) => {
                    events[0] = events[0].clone().with_attr("git_error", e.to_string());
                    None
                }
            };
            if let Some(report) = report {
                let refs: Vec<_> = report.refs.iter().map(|r| json!({"ref": r.name, "ok": r.ok, "reason": r.reason})).collect();
                let unpack = match &report.unpack {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.clone(),
                };
                let summary = report
                    .refs
                    .iter()
                    .map(|r| if r.ok { format!("{} ok", r.name) } else { format!("{} rejected", r.name) })
                    .collect::<Vec<_>>()
                    .join(", ");
                events.push(
                    Event::note(kind::GIT_REPORT, Direction::Response, format!("push report: {summary}"))
                        .with_attr("channel", id)
                        .with_attr("unpack", unpack)
                        .with_attr("refs", json!(refs)),
                );
            }
            events
        }
        Mode::Idle | Mode::Bytes => vec![record::data(kind::SSH_OUTPUT, Direction::Response, id, Some("stdout"), data)],
    }
}

async fn append(writer: &SessionWriter, event: &Event) -> Result<(), LedgerFailed> {
    writer.append(event).await.map(|_| ()).map_err(|e| {
        tracing::error!(session = %writer.id(), error = %e, "cannot record an SSH event; ending the session (fail closed)");
        LedgerFailed
    })
}

async fn end_session(client: &server::Handle, why: &str) {
    let _ = client.disconnect(russh::Disconnect::ByApplication, why.to_string(), "en".to_string()).await;
}

fn ask(shared: &SharedState, request: &'static str) {
    let mut shared = shared_lock(shared);
    // Bounded: a target that never answers cannot make this grow past a handful.
    if shared.asked.len() < 64 {
        shared.asked.push_back(request);
    }
}

fn shared_lock(shared: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn summarize(items: impl Iterator<Item = String>, n_bytes: usize) -> String {
    let items: Vec<String> = items.collect();
    match items.len() {
        0 => format!("{n_bytes} bytes"),
        1 => items.into_iter().next().expect("one item"),
        n => format!("{} (+{} more)", items[0], n - 1),
    }
}

pub(crate) fn signal_name(signal: &Sig) -> String {
    match signal {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => name.chars().take(32).collect(),
    }
}
