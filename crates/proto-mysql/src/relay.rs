//! The relay between a logged-in client and its target. MySQL is one command at a time: the
//! client sends a command (numbered from 0), the target answers, and only then comes the next, so
//! one task reads a command, records it, puts it to the gate when it can change anything, sends it
//! on, and follows the answer to its end; commands a client pipelines wait in its buffer.
//!
//! Every command is recorded before the target sees it; each result is recorded before the packet
//! that ends it reaches the client (rows stream through as they come, read-sized batches at a
//! time). A denied command never reaches the target: the client gets witness's error instead,
//! numbered as the target's answer would have been. Prepared statements are decided at each
//! execution, on the text the target confirmed it prepared. What witness does not relay (a change
//! of user, replication, commands it does not know) is refused with an error the client reads.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use witness_core::{kind, Direction, Event, Interrupt, PayloadType, Request, Subject, Verdict};
use witness_gate::{admit, Admission, Refusal, Stream, Waiting, Wire, Withdrawal};
use witness_ledger::{LedgerError, SessionWriter};
use witness_mask::SessionMasks;

use crate::answer::ErrPacket;
use crate::back::{TargetConnection, MAX_TARGET_PAYLOAD};
use crate::catalog::Catalog;
use crate::compress::ClientLink;
use crate::front::{charset_name, code};
use crate::gate::MysqlGate;
use crate::kill::{self, KillGuard, Kills};
use crate::mask;
use crate::packet::{peek_frame, write_packets, Packet, PacketError, PacketReader, MAX_PACKET_PAYLOAD};
use crate::results::{clip, Answer, Expect, Step};
use crate::statements::Statements;
use crate::target::MysqlTarget;

/// The most one command from a client may hold, joined: MariaDB's default `max_allowed_packet`
/// (16 MiB) four times over, for large inserts and long data.
pub const MAX_CLIENT_PAYLOAD: usize = 64 << 20;
/// The most of a statement's text a record keeps; longer text is cut there and marked.
const MAX_TEXT_BYTES: usize = 8 << 20;
const READ_CHUNK: usize = 64 << 10;
/// The most bytes of an execution's parameters (as JSON) its record keeps.
const MAX_PARAMS_BYTES: usize = 64 << 10;
/// What a client may send on while a statement of its waits for approval, kept in memory.
const MAX_BUFFERED_WHILE_HELD: usize = 1 << 20;

/// Commands, by their first byte.
mod command {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0C;
    pub const PING: u8 = 0x0E;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1A;
    pub const SET_OPTION: u8 = 0x1B;
    pub const STMT_FETCH: u8 = 0x1C;
    pub const BINLOG_DUMP_GTID: u8 = 0x1E;
    pub const RESET_CONNECTION: u8 = 0x1F;
}

/// A session past login, as the front hands it over.
pub(crate) struct ReadySession {
    pub client: ClientLink,
    pub target: TargetConnection,
    pub session: SessionWriter,
    pub interrupt: watch::Receiver<Option<Interrupt>>,
    pub subject: Subject,
    /// Kept for the session's life: the gate's registration, and the connection's place for KILL.
    pub guards: (Box<dyn Send + Sync>, KillGuard),
    pub max_rows: usize,
    pub masks: Option<Arc<SessionMasks>>,
    pub kills: Kills,
    pub target_address: String,
    /// Where column masking learns which tables are base tables: the connection's catalog and
    /// its target (None when no column rule applies).
    pub catalog: Option<(Arc<Catalog>, Arc<MysqlTarget>)>,
    /// The character set (collation number) the target connection speaks.
    pub charset: u8,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    ClientQuit,
    ClientClosed,
    TargetClosed,
    ClientIo(std::io::Error),
    TargetIo(std::io::Error),
    ClientMalformed(PacketError),
    TargetMalformed(String),
    NotRecorded(LedgerError),
    Interrupted(Interrupt),
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::ClientQuit => "the client quit".into(),
            End::ClientClosed => "the client disconnected".into(),
            End::TargetClosed => "the target closed the connection".into(),
            End::ClientIo(e) => format!("client I/O error: {e}"),
            End::TargetIo(e) => format!("target I/O error: {e}"),
            End::ClientMalformed(e) => format!("the client sent malformed packets: {e}"),
            End::TargetMalformed(e) => format!("the target sent an answer witness cannot read: {e}"),
            End::NotRecorded(e) => format!("witness could not record the session: {e}"),
            End::Interrupted(interrupt) => interrupt.describe(),
        }
    }

    /// The error the client gets before its connection closes, where it should get one.
    fn client_error(&self) -> Option<ErrPacket> {
        let (code, sql_state) = match self {
            End::ClientQuit | End::ClientClosed | End::ClientIo(_) => return None,
            End::ClientMalformed(PacketError::TooLong { .. }) => (code::PACKET_TOO_LARGE, "08S01"),
            End::ClientMalformed(_) => (code::PACKETS_OUT_OF_ORDER, "08S01"),
            End::TargetClosed | End::TargetIo(_) | End::TargetMalformed(_) => (code::CONNECTION_KILLED, "70100"),
            End::NotRecorded(_) => (code::UNKNOWN_ERROR, "HY000"),
            End::Interrupted(_) => (code::CONNECTION_KILLED, "70100"),
        };
        Some(ErrPacket { code, sql_state: sql_state.into(), message: format!("witness ended this session: {}", self.describe()) })
    }
}

/// The sequence number of the answer to a command of `length` bytes (sent from packet 0).
fn answer_sequence(length: usize) -> u8 {
    (length / MAX_PACKET_PAYLOAD + 1) as u8
}

struct Relay<'g, G> {
    gate: &'g G,
    client: ClientLink,
    commands: PacketReader,
    target: Stream,
    answers: BytesMut,
    capabilities: u32,
    session: SessionWriter,
    interrupt: watch::Receiver<Option<Interrupt>>,
    subject: Subject,
    max_rows: usize,
    masks: Option<Arc<SessionMasks>>,
    kills: Kills,
    target_address: String,
    catalog: Option<(Arc<Catalog>, Arc<MysqlTarget>)>,
    charset: u8,
    statements: Statements,
    /// Where the client's bytes are read into, once per session.
    scratch: Vec<u8>,
}

/// Runs the session to its end, and records the end.
pub(crate) async fn run<G: MysqlGate>(ready: ReadySession, gate: &G) {
    let ReadySession { client, target, session, interrupt, subject, guards, max_rows, masks, kills, target_address, catalog, charset } =
        ready;
    let capabilities = target.capabilities;
    let (target, leftover) = target.into_parts();
    let mut commands = PacketReader::new(MAX_CLIENT_PAYLOAD);
    if client.is_compressed() {
        commands.unordered();
    }
    let mut relay = Relay {
        gate,
        client,
        commands,
        target,
        answers: BytesMut::from(&leftover[..]),
        capabilities,
        session,
        interrupt,
        subject,
        max_rows,
        masks,
        kills,
        target_address,
        catalog,
        charset,
        statements: Statements::default(),
        scratch: vec![0u8; READ_CHUNK],
    };
    let end = relay.serve().await;
    let reason = end.describe();
    match &end {
        End::ClientQuit | End::ClientClosed | End::ClientIo(_) => {
            tracing::debug!(session = %relay.session.id(), reason, "MySQL session ended")
        }
        _ => tracing::info!(session = %relay.session.id(), reason, "MySQL session ended"),
    }
    if let Some(err) = end.client_error() {
        // Numbered as an answer to the command in flight, or as the first packet of none.
        let mut out = BytesMut::new();
        write_packets(&mut out, 1, &err.to_payload());
        let _ = relay.client.write_all(&out).await;
        let _ = relay.client.flush().await;
    }
    let _ = relay.client.shutdown().await;
    // The target's session ends as a client's would: COM_QUIT, then the connection closed.
    let mut quit = BytesMut::new();
    write_packets(&mut quit, 0, &[command::QUIT]);
    let _ = relay.target.write_all(&quit).await;
    let _ = relay.target.shutdown().await;
    if let Err(e) = relay.session.close(&reason).await {
        tracing::error!(error = %e, "cannot record the end of a MySQL session");
    }
    drop(guards);
}

impl<G: MysqlGate> Relay<'_, G> {
    async fn serve(&mut self) -> End {
        loop {
            let packet = match self.next_command().await {
                Ok(packet) => packet,
                Err(end) => return end,
            };
            if let Err(end) = self.on_command(packet.payload).await {
                return end;
            }
        }
    }

    /// The client's next command, whole.
    async fn next_command(&mut self) -> Result<Packet, End> {
        self.commands.expect(0);
        let buffer = &mut self.scratch;
        loop {
            match self.commands.next_packet() {
                Ok(Some(packet)) => {
                    self.client.answer_after(self.commands.buffered());
                    return Ok(packet);
                }
                Ok(None) => {}
                Err(e) => return Err(End::ClientMalformed(e)),
            }
            tokio::select! {
                biased;
                _ = self.interrupt.wait_for(Option::is_some) => {}
                read = self.client.read(buffer) => match read {
                    Ok(0) => return Err(End::ClientClosed),
                    Ok(n) => {
                        self.commands.feed(&buffer[..n]);
                        continue;
                    }
                    Err(e) => return Err(End::ClientIo(e)),
                },
            }
            return Err(self.interrupted());
        }
    }

    fn interrupted(&self) -> End {
        End::Interrupted(self.interrupt.borrow().clone().unwrap_or(Interrupt::Shutdown))
    }

    async fn on_command(&mut self, payload: Vec<u8>) -> Result<(), End> {
        let Some(&command) = payload.first() else {
            return self.refuse(&payload, code::UNKNOWN_COMMAND, "08S01", "an empty command".into()).await;
        };
        match command {
            command::QUIT => {
                self.append(&Event::note(kind::MYSQL_COMMAND, Direction::Request, "COM_QUIT").with_attr("command", "quit")).await?;
                Err(End::ClientQuit)
            }
            command::QUERY => self.on_query(&payload).await,
            command::STMT_PREPARE => self.on_prepare(&payload).await,
            command::STMT_EXECUTE => self.on_execute(&payload).await,
            command::STMT_FETCH => self.on_fetch(&payload).await,
            command::STMT_SEND_LONG_DATA => self.on_long_data(&payload).await,
            command::STMT_CLOSE => {
                let id = statement_id(&payload);
                self.append(&command_event("COM_STMT_CLOSE", "stmt_close").with_attr("statement", id)).await?;
                self.statements.closed(id);
                self.send_command(&payload).await
            }
            command::STMT_RESET => {
                let id = statement_id(&payload);
                self.append(&command_event("COM_STMT_RESET", "stmt_reset").with_attr("statement", id)).await?;
                if let Some(statement) = self.statements.get_mut(id) {
                    statement.long_data.clear();
                }
                self.forward(&payload, Answer::new(Expect::Single, self.capabilities, 0, None, Vec::new())).await.map(drop)
            }
            command::INIT_DB => {
                let database = String::from_utf8_lossy(&payload[1..]).into_owned();
                let text = format!("USE `{}`", database.replace('`', "``"));
                let event = command_event(&format!("COM_INIT_DB {database}"), "init_db").with_attr("database", database);
                let verdict = self.gate.decide(&self.subject, Request::MysqlSql(&text));
                if self.admitted(&payload, event, verdict, "change of database").await? {
                    self.forward(&payload, Answer::new(Expect::Single, self.capabilities, 0, None, Vec::new())).await?;
                }
                Ok(())
            }
            command::FIELD_LIST => {
                let table = String::from_utf8_lossy(payload[1..].split(|b| *b == 0).next().unwrap_or_default()).into_owned();
                // Listing a table's columns is decided as reading the table.
                let text = format!("SELECT * FROM `{}` LIMIT 0", table.replace('`', "``"));
                let event = command_event(&format!("COM_FIELD_LIST {table}"), "field_list").with_attr("table", table);
                let verdict = self.gate.decide(&self.subject, Request::MysqlSql(&text));
                if self.admitted(&payload, event, verdict, "field list").await? {
                    let masks = self.masks.clone();
                    self.forward(&payload, Answer::new(Expect::FieldList, self.capabilities, 0, masks.as_deref(), Vec::new())).await?;
                }
                Ok(())
            }
            command::PING | command::RESET_CONNECTION | command::SET_OPTION => {
                let (name, short) = match command {
                    command::PING => ("COM_PING", "ping"),
                    command::RESET_CONNECTION => ("COM_RESET_CONNECTION", "reset_connection"),
                    _ => ("COM_SET_OPTION", "set_option"),
                };
                self.append(&command_event(name, short)).await?;
                if command == command::RESET_CONNECTION {
                    self.statements.clear();
                }
                let masks = self.masks.clone();
                self.forward(&payload, Answer::new(Expect::Single, self.capabilities, 0, masks.as_deref(), Vec::new())).await?;
                if command == command::RESET_CONNECTION {
                    // The reset also sets the character set back to the server's default, which
                    // witness may not read as the server does: the session's is set again.
                    self.restore_charset().await?;
                }
                Ok(())
            }
            command::STATISTICS => {
                self.append(&command_event("COM_STATISTICS", "statistics")).await?;
                self.forward(&payload, Answer::new(Expect::Statistics, self.capabilities, 0, None, Vec::new())).await.map(drop)
            }
            command::PROCESS_KILL => {
                let id = payload.get(1..5).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                self.on_kill(&payload, &format!("KILL {id}")).await
            }
            command::CHANGE_USER => {
                let message =
                    "witness does not relay COM_CHANGE_USER: witness logs in to the target itself; connect again as the identity you need";
                self.refused_command(&payload, "COM_CHANGE_USER", code::NOT_SUPPORTED, "42000", message).await
            }
            command::BINLOG_DUMP | command::BINLOG_DUMP_GTID | command::REGISTER_SLAVE | command::TABLE_DUMP => {
                let message = "witness does not relay replication";
                self.refused_command(&payload, "replication", code::NOT_SUPPORTED, "42000", message).await
            }
            other => {
                let message = format!("witness does not relay command 0x{other:02x}");
                self.refused_command(&payload, &format!("command 0x{other:02x}"), code::UNKNOWN_COMMAND, "08S01", &message).await
            }
        }
    }

    async fn on_query(&mut self, payload: &[u8]) -> Result<(), End> {
        let text = std::str::from_utf8(&payload[1..]);
        if let Ok(text) = text {
            if kill::is_kill(text) {
                return self.on_kill(payload, text).await;
            }
        }
        let event = text_event(kind::MYSQL_QUERY, &payload[1..]);
        if text.is_err() && may_kill(&payload[1..]) {
            return self.refuse_unreadable_kill(payload, event).await;
        }
        let request = text.map_or(Request::OpaqueMysqlSql, Request::MysqlSql);
        let verdict = self.gate.decide(&self.subject, request);
        if self.admitted(payload, event, verdict, "statement").await? {
            // Only a statement that names INFILE can load a file of the client's; the gate says
            // whether a rule lets it.
            let local_file = match text {
                Ok(text) if payload.windows(6).any(|w| w.eq_ignore_ascii_case(b"infile")) => self.gate.local_file(&self.subject, text),
                _ => None,
            };
            let masks = self.masks.clone();
            let answer = Answer::new(Expect::Results { binary: false }, self.capabilities, self.max_rows, masks.as_deref(), Vec::new())
                .with_local_file(local_file);
            self.forward(payload, answer).await?;
        }
        Ok(())
    }

    /// Refuses a statement whose text witness cannot read and which may hide a KILL of any
    /// session's thread, recording it with why.
    async fn refuse_unreadable_kill(&mut self, payload: &[u8], event: Event) -> Result<(), End> {
        self.append(&event.with_attr("refused", UNREADABLE_KILL)).await?;
        self.refuse(payload, code::SPECIFIC_ACCESS_DENIED, "42000", UNREADABLE_KILL.to_string()).await
    }

    /// A statement is prepared without a decision (preparing runs nothing); each execution is
    /// decided on its text.
    async fn on_prepare(&mut self, payload: &[u8]) -> Result<(), End> {
        self.append(&text_event(kind::MYSQL_PREPARE, &payload[1..])).await?;
        let masks = self.masks.clone();
        let answer = self.forward(payload, Answer::new(Expect::Prepare, self.capabilities, 0, masks.as_deref(), Vec::new())).await?;
        match answer.prepared {
            Some(prepared) => {
                let text = std::str::from_utf8(&payload[1..]).map(Arc::from).map_err(|_| Arc::from(&payload[1..]));
                self.statements.prepared(prepared.id, text, prepared.params);
            }
            None => self.statements.prepare_failed(),
        }
        Ok(())
    }

    async fn on_execute(&mut self, payload: &[u8]) -> Result<(), End> {
        let execution = match self.statements.execution(payload) {
            Ok(execution) => execution,
            Err(e) => return self.refuse(payload, code::UNKNOWN_ERROR, "HY000", format!("witness cannot read this execution: {e}")).await,
        };
        let id = self.statements.resolve(execution.id);
        let text = self.statements.get(id).map(|s| s.text.clone());
        let summary = match &text {
            Some(Ok(text)) => clip(text),
            Some(Err(_)) => format!("statement {id} (its text is not UTF-8)"),
            None => format!("statement {id}, which witness did not see prepared"),
        };
        let mut event = Event::note(kind::MYSQL_EXECUTE, Direction::Request, summary).with_attr("statement", id);
        if execution.flags != 0 {
            event = event.with_attr("cursor", execution.flags);
        }
        event = match &execution.params {
            Ok(params) => {
                // As many as fit in the record's share for them; the count says if some did not.
                let mut kept = Vec::new();
                let mut bytes = 0;
                for param in params {
                    bytes += param.to_string().len();
                    if bytes > MAX_PARAMS_BYTES {
                        break;
                    }
                    kept.push(param.clone());
                }
                if kept.len() < params.len() {
                    event = event.with_attr("params_total", params.len());
                }
                event.with_attr("params", kept)
            }
            Err(why) => event.with_attr("params_unread", why.clone()),
        };
        if let Some(Ok(text)) = &text {
            event = with_text(event, text.as_bytes());
        }
        if matches!(&text, Some(Err(bytes)) if may_kill(bytes)) {
            return self.refuse_unreadable_kill(payload, event).await;
        }
        let request = match &text {
            Some(Ok(text)) => Request::MysqlSql(text),
            _ => Request::OpaqueMysqlSql,
        };
        let verdict = self.gate.decide(&self.subject, request);
        if self.admitted(payload, event, verdict, "statement").await? {
            self.statements.executed(id, execution.types);
            let masks = self.masks.clone();
            let answer = Answer::new(Expect::Results { binary: true }, self.capabilities, self.max_rows, masks.as_deref(), Vec::new())
                .for_statement(id);
            let answer = self.forward(payload, answer).await?;
            if let (Some(columns), Some(statement)) = (answer.cursor, self.statements.get_mut(id)) {
                statement.cursor = columns;
            }
        }
        Ok(())
    }

    /// Rows of a cursor an admitted execution opened.
    async fn on_fetch(&mut self, payload: &[u8]) -> Result<(), End> {
        let id = self.statements.resolve(statement_id(payload));
        let rows = payload.get(5..9).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        self.append(&command_event(&format!("COM_STMT_FETCH {rows} rows"), "stmt_fetch").with_attr("statement", id)).await?;
        let columns = self.statements.get(id).map(|s| s.cursor.clone()).unwrap_or_default();
        let masks = self.masks.clone();
        if columns.is_empty() && masks.is_some() {
            // Rows whose columns witness does not know cannot be masked.
            let message = "witness cannot mask rows of a cursor it did not see opened".to_string();
            return self.refuse(payload, code::SPECIFIC_ACCESS_DENIED, "42000", message).await;
        }
        let answer = Answer::new(Expect::Rows, self.capabilities, self.max_rows, masks.as_deref(), columns).for_statement(id);
        self.forward(payload, answer).await.map(drop)
    }

    /// Data for one parameter, sent ahead of the execution (no answer comes).
    async fn on_long_data(&mut self, payload: &[u8]) -> Result<(), End> {
        let id = self.statements.resolve(statement_id(payload));
        let param = payload.get(5..7).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        let data = payload.get(7..).unwrap_or_default();
        let mut event = command_event(&format!("COM_STMT_SEND_LONG_DATA parameter {param}, {} bytes", data.len()), "stmt_send_long_data")
            .with_attr("statement", id)
            .with_attr("param", param)
            .with_attr("bytes", data.len());
        let kept = &data[..data.len().min(MAX_TEXT_BYTES)];
        if std::str::from_utf8(kept).is_ok() {
            // Text: masking's detectors read it before it is recorded.
            event.payload_type = PayloadType::Text;
            event.payload = kept.to_vec();
        } else if self.masks.is_some() {
            // Bytes the detectors cannot read are not kept where masking applies.
            event = event.with_attr("payload_withheld", true);
        } else {
            event.payload_type = PayloadType::Binary;
            event.payload = kept.to_vec();
        }
        self.append(&event).await?;
        if let Some(statement) = self.statements.get_mut(id) {
            statement.long_data.insert(param);
        }
        self.send_command(payload).await
    }

    /// `KILL [QUERY|CONNECTION] N`: N is a witness connection of the same identity on the same
    /// target, turned into its target thread; anything else is refused.
    async fn on_kill(&mut self, payload: &[u8], text: &str) -> Result<(), End> {
        let mut event = text_event(kind::MYSQL_QUERY, text.as_bytes()).with_attr("kill", true);
        let Some(request) = kill::kill_request(text) else {
            let message = "witness relays only KILL [QUERY | CONNECTION] with the id of one of your witness connections".to_string();
            self.append(&event.with_attr("refused", message.clone())).await?;
            return self.refuse(payload, code::SPECIFIC_ACCESS_DENIED, "42000", message).await;
        };
        let Some(thread) = self.kills.find(request.id, &self.target_address, &self.subject.info.identity) else {
            let message = format!("Unknown thread id: {}", request.id);
            self.append(&event.with_attr("refused", message.clone())).await?;
            return self.refuse(payload, code::NO_SUCH_THREAD, "HY000", message).await;
        };
        let what = if request.query_only { "QUERY" } else { "CONNECTION" };
        let sent = format!("KILL {what} {thread}");
        event = event.with_attr("target_thread", thread).with_attr("sent", sent.clone());
        // Like a PostgreSQL cancel request, ending one's own statement is not put to the rules.
        if self.admitted(payload, event, Verdict::Allow { rule: None }, "statement").await? {
            let mut command = vec![command::QUERY];
            command.extend_from_slice(sent.as_bytes());
            self.forward(&command, Answer::new(Expect::Results { binary: false }, self.capabilities, 0, None, Vec::new())).await?;
        }
        Ok(())
    }

    /// Sets the session's character set again on the target (after a reset), on witness's own
    /// account: recorded, and its answer kept from the client.
    async fn restore_charset(&mut self) -> Result<(), End> {
        let sql = format!("SET NAMES {}", charset_name(self.charset).unwrap_or("utf8mb4"));
        let event = command_event(&format!("{sql} (by witness, after COM_RESET_CONNECTION)"), "witness_set_names");
        self.append(&event).await?;
        let mut command = vec![command::QUERY];
        command.extend_from_slice(sql.as_bytes());
        self.send_command(&command).await?;
        loop {
            if let Some(frame) = peek_frame(&self.answers, MAX_TARGET_PAYLOAD).map_err(|e| End::TargetMalformed(e.to_string()))? {
                let ok = frame.payload.first() == Some(&0x00);
                let used = frame.raw_len;
                self.answers.advance(used);
                return if ok { Ok(()) } else { Err(End::TargetMalformed(format!("the target refused {sql}"))) };
            }
            match self.target.read_buf(&mut self.answers).await {
                Ok(0) => return Err(End::TargetClosed),
                Ok(_) => {}
                Err(e) => return Err(End::TargetIo(e)),
            }
        }
    }

    /// Records a command witness does not relay and refuses it.
    async fn refused_command(&mut self, payload: &[u8], name: &str, code: u16, sql_state: &str, message: &str) -> Result<(), End> {
        let event = command_event(name, "refused").with_attr("refused", message);
        self.append(&event).await?;
        self.refuse(payload, code, sql_state, message.to_string()).await
    }

    /// Puts a request through admission: true when it may go on, else the client has been told.
    async fn admitted(&mut self, payload: &[u8], event: Event, verdict: Verdict, what: &str) -> Result<bool, End> {
        // The recording gets the statement's text as masking leaves it; the decision was made on
        // the text itself.
        let event = match self.masks.as_deref() {
            Some(masks) => mask::request_event(masks, event),
            None => event,
        };
        let mut wire =
            MysqlWire { session: &self.session, client: &mut self.client, commands: &mut self.commands, interrupt: &mut self.interrupt };
        match admit(&mut wire, Some(event), verdict).await? {
            Admission::Admitted => Ok(true),
            Admission::Refused(Refusal::Withdrawn { why: Withdrawal::ClientLeft, .. }) => Err(End::ClientClosed),
            Admission::Refused(Refusal::Withdrawn { why: Withdrawal::SessionEnding, .. }) => Err(self.interrupted()),
            Admission::Refused(refusal) => {
                self.refuse(payload, code::SPECIFIC_ACCESS_DENIED, "42000", refusal.explain(what)).await?;
                Ok(false)
            }
        }
    }

    /// Answers a command with witness's error.
    async fn refuse(&mut self, command: &[u8], code: u16, sql_state: &str, message: String) -> Result<(), End> {
        let err = ErrPacket { code, sql_state: sql_state.into(), message };
        let mut out = BytesMut::new();
        write_packets(&mut out, answer_sequence(command.len()), &err.to_payload());
        self.client.write_all(&out).await.map_err(End::ClientIo)?;
        self.client.flush().await.map_err(End::ClientIo)
    }

    async fn append(&self, event: &Event) -> Result<(), End> {
        let masked = self.masks.as_deref().map(|masks| mask::request_event(masks, event.clone()));
        self.session.append(masked.as_ref().unwrap_or(event)).await.map(drop).map_err(End::NotRecorded)
    }

    /// Sends a command to the target as the client numbered it.
    async fn send_command(&mut self, payload: &[u8]) -> Result<(), End> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        write_packets(&mut out, 0, payload);
        self.target.write_all(&out).await.map_err(End::TargetIo)?;
        self.target.flush().await.map_err(End::TargetIo)
    }

    /// Sends a command and relays its answer to the end: each batch of packets read is recorded
    /// (the results it ends) before it is forwarded.
    async fn forward<'m>(&mut self, payload: &[u8], mut answer: Answer<'m>) -> Result<Answer<'m>, End> {
        self.send_command(payload).await?;
        let mut out = BytesMut::new();
        let mut events = Vec::new();
        let mut receipts = Vec::new();
        loop {
            let mut consumed = 0;
            // The sequence number of the client's first packet of a file the target asked for.
            let mut next_from_client = None;
            while !answer.is_done() {
                let frame = match peek_frame(&self.answers[consumed..], MAX_TARGET_PAYLOAD) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return Err(End::TargetMalformed(e.to_string())),
                };
                let tables = answer.tables_to_look_up();
                if !tables.is_empty() {
                    if let Some((catalog, target)) = &self.catalog {
                        let base = catalog.base_tables(target, &tables).await;
                        answer.looked_up(base);
                    } else {
                        answer.looked_up(Default::default());
                    }
                }
                match answer.on_payload(&frame.payload, &mut events) {
                    Ok(Step::Forward) => out.extend_from_slice(&self.answers[consumed..consumed + frame.raw_len]),
                    Ok(Step::Rewrite(rewritten)) => {
                        if write_packets(&mut out, frame.sequence, &rewritten) != frame.last_sequence.wrapping_add(1) {
                            return Err(End::TargetMalformed("a masked row would take another number of packets".into()));
                        }
                    }
                    Err(e) => return Err(End::TargetMalformed(e.to_string())),
                }
                consumed += frame.raw_len;
                if answer.local_file_asked.is_some() {
                    next_from_client = Some(frame.last_sequence.wrapping_add(1));
                    break;
                }
            }
            self.answers.advance(consumed);
            for event in events.drain(..) {
                receipts.push(self.session.submit(&event).await.map_err(End::NotRecorded)?);
            }
            for receipt in receipts.drain(..) {
                receipt.wait().await.map_err(End::NotRecorded)?;
            }
            if !out.is_empty() {
                self.client.write_all(&out).await.map_err(End::ClientIo)?;
                out.clear();
            }
            if let (Some(file), Some(sequence)) = (answer.local_file_asked.take(), next_from_client) {
                self.client.flush().await.map_err(End::ClientIo)?;
                if !self.answers.is_empty() {
                    return Err(End::TargetMalformed("the target sent more while it waited for a file".into()));
                }
                self.send_local_file(&file, sequence).await?;
                continue;
            }
            if answer.is_done() {
                self.client.flush().await.map_err(End::ClientIo)?;
                if !self.answers.is_empty() {
                    // MySQL answers one command at a time: bytes past an answer's end would be
                    // read as the next command's answer.
                    return Err(End::TargetMalformed("the target sent more than its answer".into()));
                }
                return Ok(answer);
            }
            self.client.flush().await.map_err(End::ClientIo)?;
            self.answers.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                _ = self.interrupt.wait_for(Option::is_some) => {}
                read = self.target.read_buf(&mut self.answers) => match read {
                    Ok(0) => return Err(End::TargetClosed),
                    Ok(_) => continue,
                    Err(e) => return Err(End::TargetIo(e)),
                },
            }
            return Err(self.interrupted());
        }
    }
}

impl<G: MysqlGate> Relay<'_, G> {
    /// The client's file the target asked for: its packets go on as the client numbers them, from
    /// `sequence`, to the empty one that ends it. A `mysql.local_file` record counts them, made
    /// before that end reaches the target, or with `complete: false` when the client or the
    /// session ends first (the target may have loaded some rows by then).
    async fn send_local_file(&mut self, file: &str, mut sequence: u8) -> Result<(), End> {
        let (mut bytes, mut packets) = (0u64, 0u64);
        let mut out = BytesMut::new();
        loop {
            self.commands.expect(sequence);
            let packet = match self.next_file_packet().await {
                Ok(packet) => packet,
                Err(end) => {
                    let event = local_file_event(file, bytes, packets).with_attr("complete", false).with_attr("ended", end.describe());
                    let _ = self.append(&event).await;
                    return Err(end);
                }
            };
            // Also drops what the compressed link keeps of the packets passed (a file has no
            // bound); nothing goes to the client while a file comes in.
            self.client.answer_after(self.commands.buffered());
            let last = packet.payload.is_empty();
            if last {
                self.append(&local_file_event(file, bytes, packets).with_attr("complete", true)).await?;
            } else {
                bytes += packet.payload.len() as u64;
                packets += 1;
            }
            out.clear();
            let next = write_packets(&mut out, sequence, &packet.payload);
            self.target.write_all(&out).await.map_err(End::TargetIo)?;
            if last {
                return self.target.flush().await.map_err(End::TargetIo);
            }
            sequence = next;
        }
    }

    /// The client's next packet of a file. The target says nothing until the file has ended: if
    /// it does, the packets still to come would be read as commands nobody decided on, so the
    /// session ends.
    async fn next_file_packet(&mut self) -> Result<Packet, End> {
        loop {
            match self.commands.next_packet() {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(End::ClientMalformed(e)),
            }
            tokio::select! {
                biased;
                _ = self.interrupt.wait_for(Option::is_some) => {}
                read = self.target.read_buf(&mut self.answers) => {
                    return Err(match read {
                        Ok(0) => End::TargetClosed,
                        Ok(_) => End::TargetMalformed("the target answered before the client's file ended".into()),
                        Err(e) => End::TargetIo(e),
                    });
                }
                read = self.client.read(&mut self.scratch) => match read {
                    Ok(0) => return Err(End::ClientClosed),
                    Ok(n) => {
                        self.commands.feed(&self.scratch[..n]);
                        continue;
                    }
                    Err(e) => return Err(End::ClientIo(e)),
                },
            }
            return Err(self.interrupted());
        }
    }
}

fn local_file_event(file: &str, bytes: u64, packets: u64) -> Event {
    Event::note(kind::MYSQL_LOCAL_FILE, Direction::Request, clip(&format!("local file {file}: {bytes} bytes")))
        .with_attr("file", file)
        .with_attr("bytes", bytes)
        .with_attr("packets", packets)
}

/// The client side's part in admission: events are recorded before anything goes on; while a
/// request is held, the client's next commands are read on and kept, and its leaving noticed.
struct MysqlWire<'a> {
    session: &'a SessionWriter,
    client: &'a mut ClientLink,
    commands: &'a mut PacketReader,
    interrupt: &'a mut watch::Receiver<Option<Interrupt>>,
}

impl Wire for MysqlWire<'_> {
    type Error = End;

    async fn record(&mut self, event: &Event) -> Result<(), End> {
        self.session.append(event).await.map(drop).map_err(End::NotRecorded)
    }

    async fn hold_begins(&mut self, waiting: &Waiting<'_>) -> Result<(), End> {
        // MySQL has no message a server may send while a command runs: the client waits as
        // for a slow statement, and the approvers are told through witness's own channels.
        tracing::info!(approval = waiting.approval_id, rule = waiting.rule, "MySQL statement held for approval");
        Ok(())
    }

    async fn withdrawn(&mut self) -> Withdrawal {
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            if self.commands.buffered() >= MAX_BUFFERED_WHILE_HELD {
                // Enough is kept; the client's next bytes wait in the kernel until the decision.
                let _ = self.interrupt.wait_for(Option::is_some).await;
                return Withdrawal::SessionEnding;
            }
            tokio::select! {
                _ = self.interrupt.wait_for(Option::is_some) => return Withdrawal::SessionEnding,
                read = self.client.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return Withdrawal::ClientLeft,
                    Ok(n) => self.commands.feed(&buffer[..n]),
                },
            }
        }
    }
}

fn statement_id(payload: &[u8]) -> u32 {
    payload.get(1..5).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn command_event(summary: &str, command: &str) -> Event {
    Event::note(kind::MYSQL_COMMAND, Direction::Request, clip(summary)).with_attr("command", command)
}

/// A statement's event: its text as the payload (cut past the cap, and marked), or its bytes
/// when they are not UTF-8 (decided as a statement witness cannot see).
fn text_event(kind: witness_core::EventKind, bytes: &[u8]) -> Event {
    let summary = match std::str::from_utf8(bytes) {
        Ok(text) => clip(text),
        Err(_) => "a statement whose text is not UTF-8".into(),
    };
    with_text(Event::note(kind, Direction::Request, summary), bytes)
}

fn with_text(mut event: Event, bytes: &[u8]) -> Event {
    let utf8 = std::str::from_utf8(bytes).is_ok();
    event.payload_type = if utf8 { PayloadType::Text } else { PayloadType::Binary };
    let mut kept = &bytes[..bytes.len().min(MAX_TEXT_BYTES)];
    if utf8 {
        while std::str::from_utf8(kept).is_err() {
            kept = &kept[..kept.len() - 1];
        }
    } else {
        event = event.with_attr("unreadable", "its text is not UTF-8, so witness decided it as a statement it cannot see");
    }
    if kept.len() < bytes.len() {
        event = event.with_attr("text_bytes", bytes.len()).with_attr("text_cut", true);
    }
    event.payload = kept.to_vec();
    event
}

/// Why text witness cannot read is refused when it may kill.
const UNREADABLE_KILL: &str =
    "witness relays KILL only as KILL [QUERY | CONNECTION] ID, and no PREPARE or EXECUTE, in text it can read (this is not UTF-8)";

/// Whether text witness cannot read may end another session's statement: it names KILL, or the
/// words PREPARE or EXECUTE, which run text built at run time.
fn may_kill(text: &[u8]) -> bool {
    let builds = |word: &[u8]| word.eq_ignore_ascii_case(b"prepare") || word.eq_ignore_ascii_case(b"execute");
    text.windows(4).any(|w| w.eq_ignore_ascii_case(b"kill")) || text.split(|b| !b.is_ascii_alphanumeric() && *b != b'_').any(builds)
}
