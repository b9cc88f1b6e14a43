//! Follows one SFTP channel (version 3, draft-ietf-secsh-filexfer-02, as OpenSSH speaks it) in
//! both directions and turns its bytes into requests and replies for the ledger: which file was
//! opened, read, written, renamed or removed, how many bytes went each way per handle, and what
//! the server answered.
//!
//! It is a pure, synchronous parser: the relay feeds it the bytes it forwards, in order, and it
//! never does I/O. It deliberately does not keep file contents: the data of WRITE requests and
//! DATA replies is counted and skipped as it streams past, so at most one packet head is held
//! for them. It does not decode file attributes, directory listings or extension replies, and it
//! does not check that the peers follow the protocol's state machine beyond what it needs for
//! attribution (handle → path, request id → request).
//!
//! An error means the stream cannot be followed any more (oversized or malformed packet, a
//! table full), and every later call returns [`SftpError::Failed`]: end the channel, or record
//! its bytes raw from there on. Requests completed earlier in the chunk that failed are not
//! returned with the error, so record that chunk's bytes too.

use std::borrow::Cow;
use std::collections::HashMap;

/// The longest packet accepted, length prefix excluded. OpenSSH's sftp-server refuses packets
/// over `SFTP_MAX_MSG_LENGTH` (256 KiB); the slack covers a packet head around a full 256 KiB of
/// data from other implementations.
pub const MAX_PACKET_LEN: u32 = 256 * 1024 + 1024;
/// The longest handle accepted. OpenSSH's handles are 4 bytes; the draft allows up to 256.
pub const MAX_HANDLE_LEN: usize = 256;
/// How many handles may be open at once. OpenSSH's sftp-server is bound by its descriptor limit
/// (1024 by default), so a real client never gets near this.
pub const MAX_OPEN_HANDLES: usize = 4096;
/// How many requests may await an answer at once. OpenSSH's sftp keeps 64 in flight.
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// How many bytes of paths and handles the two tables may hold together. A path can be nearly
/// as long as a packet, so the entry counts alone would allow a gigabyte; real clients hold a
/// few kilobytes (64 requests in flight, a few open files).
pub const MAX_TRACKED_BYTES: usize = 1 << 20;

/// Follows one SFTP channel in both directions.
///
/// When the handle or request table is full (in entries or in bytes), the packet that would add
/// to it is refused with an error rather than the oldest entry being dropped: a dropped entry
/// would make later reads and writes on that handle unattributed in the ledger, which a client
/// could provoke on purpose.
///
/// Byte counts are added when a WRITE request or DATA reply is decoded from its head; the
/// request or reply itself is returned once its last byte has gone by.
pub struct SftpStream {
    /// Partial packets the client sent.
    client: Framer,
    /// Partial packets the server sent.
    server: Framer,
    /// A WRITE request decoded from its head, held until its last data byte has streamed past.
    held_op: Option<SftpOp>,
    /// A DATA reply decoded from its head, held likewise.
    held_reply: Option<SftpReply>,
    /// Open handles and requests awaiting an answer.
    tables: Tables,
    /// Set by the first error: the stream cannot be resynchronised after it.
    failed: bool,
}

/// One complete client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpOp {
    Init {
        version: u32,
    },
    Open {
        id: u32,
        path: String,
        read: bool,
        write: bool,
        create: bool,
        truncate: bool,
        append: bool,
        exclusive: bool,
    },
    /// Totals for that handle; the handle is forgotten.
    Close {
        id: u32,
        path: Option<String>,
        bytes_read: u64,
        bytes_written: u64,
    },
    Read {
        id: u32,
        path: Option<String>,
        offset: u64,
        len: u32,
    },
    Write {
        id: u32,
        path: Option<String>,
        offset: u64,
        len: u32,
    },
    Remove {
        id: u32,
        path: String,
    },
    Rename {
        id: u32,
        from: String,
        to: String,
    },
    Mkdir {
        id: u32,
        path: String,
    },
    Rmdir {
        id: u32,
        path: String,
    },
    Opendir {
        id: u32,
        path: String,
    },
    Readdir {
        id: u32,
        path: Option<String>,
    },
    /// STAT, or LSTAT when `link` is set.
    Stat {
        id: u32,
        path: String,
        link: bool,
    },
    Fstat {
        id: u32,
        path: Option<String>,
    },
    /// SETSTAT (its path) or FSETSTAT (its handle's path, if known), with what it sets.
    Setstat {
        id: u32,
        path: Option<String>,
        attrs: SetAttrs,
    },
    Realpath {
        id: u32,
        path: String,
    },
    Readlink {
        id: u32,
        path: String,
    },
    /// The two paths in the order the client sent them (OpenSSH sends them swapped).
    Symlink {
        id: u32,
        link: String,
        target: String,
    },
    /// `paths` lists the paths of the known OpenSSH extensions (for handles: their paths, if known).
    Extended {
        id: u32,
        name: String,
        paths: Vec<String>,
    },
    Unknown {
        kind: u8,
    },
}

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpReply {
    Version {
        version: u32,
    },
    /// `request` names the request it answers ("open", "write", …), if known.
    Status {
        id: u32,
        code: u32,
        message: String,
        request: Option<&'static str>,
    },
    Handle {
        id: u32,
        path: Option<String>,
    },
    Data {
        id: u32,
        len: u32,
        path: Option<String>,
    },
    Name {
        id: u32,
        count: u32,
    },
    Attrs {
        id: u32,
    },
    ExtendedReply {
        id: u32,
    },
    Unknown {
        kind: u8,
    },
}

/// Why an SFTP stream cannot be followed. Each one ends the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SftpError {
    #[error("sftp packet of {len} bytes is longer than the {max} bytes allowed")]
    PacketTooLarge { len: u32, max: u32 },
    #[error("sftp packet of length 0 has no type")]
    EmptyPacket,
    #[error("malformed sftp packet of type {kind}: {what}")]
    Malformed { kind: u8, what: &'static str },
    #[error("sftp handle of {len} bytes in a packet of type {kind} is longer than the {max} bytes allowed")]
    HandleTooLong { kind: u8, len: u32, max: usize },
    #[error("more than {max} sftp handles open at once; the channel is ended so that no file access goes unattributed")]
    TooManyHandles { max: usize },
    #[error("more than {max} sftp requests await an answer; the channel is ended so that no reply goes unattributed")]
    TooManyPending { max: usize },
    #[error("sftp requests in flight and open handles name more than {max} bytes of paths; the channel is ended")]
    TrackedTooLarge { max: usize },
    #[error("sftp stream already failed on an earlier error; the channel must be ended")]
    Failed,
}

/// What the stream remembers between packets, within `MAX_OPEN_HANDLES`,
/// `MAX_PENDING_REQUESTS` and `MAX_TRACKED_BYTES`.
#[derive(Default)]
struct Tables {
    /// Open handles (opaque bytes from HANDLE replies) and what was done with them.
    handles: HashMap<Vec<u8>, OpenHandle>,
    /// Requests awaiting an answer, by request id.
    pending: HashMap<u32, Pending>,
    /// Bytes of paths and handles held by both maps.
    bytes: usize,
}

/// What is known about an open handle.
struct OpenHandle {
    path: String,
    bytes_read: u64,
    bytes_written: u64,
}

/// A request awaiting its answer.
struct Pending {
    request: &'static str,
    wants: Wants,
}

/// What the answer to a pending request updates.
enum Wants {
    Nothing,
    /// OPEN or OPENDIR: the HANDLE reply names this path.
    Handle {
        path: String,
    },
    /// READ: the DATA reply's length counts for this handle.
    Data {
        handle: Vec<u8>,
    },
}

/// Cuts one direction's bytes into packets. Whole packets are buffered (at most
/// `MAX_PACKET_LEN`), except the one bulk type of the direction (WRITE, DATA), of which only the
/// head is buffered and the rest skipped.
struct Framer {
    /// The current packet from its length prefix on, up to what decoding needs.
    buf: Vec<u8>,
    /// The bulk packet type of this direction, and how many bytes of it (type byte included)
    /// hold every field before its data.
    bulk_kind: u8,
    bulk_head: u32,
    /// Bytes of a bulk packet still to be skipped.
    skip: usize,
    /// A bulk packet's head was handed out and its end is still to be reported.
    skipping: bool,
    /// The last frame handed out borrowed `buf`; clear it on the next call.
    handed_out: bool,
}

enum Frame<'a> {
    /// A whole packet (`len` bytes), or the head of a bulk one, from its type byte on.
    Packet { kind: u8, bytes: &'a [u8], len: u32 },
    /// The last byte of the bulk packet whose head came before has gone by.
    BulkEnd,
}

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_VERSION: u8 = 2;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_DATA: u8 = 103;
/// Type, id, handle length, handle, offset, data length.
const WRITE_HEAD: u32 = 1 + 4 + 4 + MAX_HANDLE_LEN as u32 + 8 + 4;
/// Type, id, data length.
const DATA_HEAD: u32 = 1 + 4 + 4;
/// A buffer that grew past this for one big packet is given back afterwards.
const KEEP_CAPACITY: usize = 64 * 1024;

const FXF_READ: u32 = 0x01;
const FXF_WRITE: u32 = 0x02;
const FXF_APPEND: u32 = 0x04;
const FXF_CREAT: u32 = 0x08;
const FXF_TRUNC: u32 = 0x10;
const FXF_EXCL: u32 = 0x20;

// === impl SftpStream ===

impl SftpStream {
    pub fn new() -> SftpStream {
        SftpStream {
            client: Framer::new(SSH_FXP_WRITE, WRITE_HEAD),
            server: Framer::new(SSH_FXP_DATA, DATA_HEAD),
            held_op: None,
            held_reply: None,
            tables: Tables::default(),
            failed: false,
        }
    }

    /// Bytes the client sent; returns the requests completed by them, in order. Partial packets are kept.
    pub fn client_bytes(&mut self, mut bytes: &[u8]) -> Result<Vec<SftpOp>, SftpError> {
        if self.failed {
            return Err(SftpError::Failed);
        }
        let mut ops = Vec::new();
        loop {
            let op = match self.client.next(&mut bytes) {
                Ok(None) => return Ok(ops),
                Ok(Some(Frame::BulkEnd)) => self.held_op.take(),
                Ok(Some(Frame::Packet { kind, bytes, len })) => match decode_request(kind, bytes, len, &mut self.tables) {
                    Ok(op) if kind == SSH_FXP_WRITE => {
                        self.held_op = Some(op);
                        None
                    }
                    Ok(op) => Some(op),
                    Err(e) => return Err(self.fail(e)),
                },
                Err(e) => return Err(self.fail(e)),
            };
            ops.extend(op);
        }
    }

    /// Bytes the server sent; returns the replies completed by them.
    pub fn server_bytes(&mut self, mut bytes: &[u8]) -> Result<Vec<SftpReply>, SftpError> {
        if self.failed {
            return Err(SftpError::Failed);
        }
        let mut replies = Vec::new();
        loop {
            let reply = match self.server.next(&mut bytes) {
                Ok(None) => return Ok(replies),
                Ok(Some(Frame::BulkEnd)) => self.held_reply.take(),
                Ok(Some(Frame::Packet { kind, bytes, len })) => match decode_reply(kind, bytes, len, &mut self.tables) {
                    Ok(reply) if kind == SSH_FXP_DATA => {
                        self.held_reply = Some(reply);
                        None
                    }
                    Ok(reply) => Some(reply),
                    Err(e) => return Err(self.fail(e)),
                },
                Err(e) => return Err(self.fail(e)),
            };
            replies.extend(reply);
        }
    }

    /// Heap bytes held for partial packets of both directions: at most `2 * (MAX_PACKET_LEN + 4)`.
    pub fn buffered_bytes(&self) -> usize {
        self.client.buf.capacity() + self.server.buf.capacity()
    }

    /// Handles open now: at most `MAX_OPEN_HANDLES`.
    pub fn open_handles(&self) -> usize {
        self.tables.handles.len()
    }

    /// Bytes of paths and handles held for open handles and awaited requests: at most
    /// `MAX_TRACKED_BYTES`.
    pub fn tracked_bytes(&self) -> usize {
        self.tables.bytes
    }

    /// Requests awaiting an answer now: at most `MAX_PENDING_REQUESTS`.
    pub fn pending_requests(&self) -> usize {
        self.tables.pending.len()
    }

    fn fail(&mut self, error: SftpError) -> SftpError {
        self.failed = true;
        self.client.buf = Vec::new();
        self.server.buf = Vec::new();
        error
    }
}

impl Default for SftpStream {
    fn default() -> SftpStream {
        SftpStream::new()
    }
}

// === impl SftpOp ===

impl SftpOp {
    /// The request's name in the protocol, lowercase: "open", "write", …
    pub fn name(&self) -> &'static str {
        match self {
            SftpOp::Init { .. } => "init",
            SftpOp::Open { .. } => "open",
            SftpOp::Close { .. } => "close",
            SftpOp::Read { .. } => "read",
            SftpOp::Write { .. } => "write",
            SftpOp::Remove { .. } => "remove",
            SftpOp::Rename { .. } => "rename",
            SftpOp::Mkdir { .. } => "mkdir",
            SftpOp::Rmdir { .. } => "rmdir",
            SftpOp::Opendir { .. } => "opendir",
            SftpOp::Readdir { .. } => "readdir",
            SftpOp::Stat { link: false, .. } => "stat",
            SftpOp::Stat { link: true, .. } => "lstat",
            SftpOp::Fstat { .. } => "fstat",
            SftpOp::Setstat { .. } => "setstat",
            SftpOp::Realpath { .. } => "realpath",
            SftpOp::Readlink { .. } => "readlink",
            SftpOp::Symlink { .. } => "symlink",
            SftpOp::Extended { .. } => "extended",
            SftpOp::Unknown { .. } => "unknown",
        }
    }

    /// One line for a person, e.g. `write /srv/a.txt 32768 B at 0`. Paths with spaces or
    /// control characters are quoted and escaped.
    pub fn summary(&self) -> String {
        let name = self.name();
        match self {
            SftpOp::Init { version } => format!("{name} v{version}"),
            SftpOp::Open { path, read, write, create, truncate, append, exclusive, .. } => {
                let flags = [
                    (*read, "read"),
                    (*write, "write"),
                    (*create, "create"),
                    (*truncate, "truncate"),
                    (*append, "append"),
                    (*exclusive, "exclusive"),
                ];
                let flags: Vec<&str> = flags.iter().filter(|(on, _)| *on).map(|(_, flag)| *flag).collect();
                format!("{name} {} ({})", shown(path), flags.join(", "))
            }
            SftpOp::Close { path, bytes_read, bytes_written, .. } => {
                format!("{name} {} (read {bytes_read} B, wrote {bytes_written} B)", shown_handle(path))
            }
            SftpOp::Read { path, offset, len, .. } | SftpOp::Write { path, offset, len, .. } => {
                format!("{name} {} {len} B at {offset}", shown_handle(path))
            }
            SftpOp::Remove { path, .. }
            | SftpOp::Mkdir { path, .. }
            | SftpOp::Rmdir { path, .. }
            | SftpOp::Opendir { path, .. }
            | SftpOp::Stat { path, .. }
            | SftpOp::Realpath { path, .. }
            | SftpOp::Readlink { path, .. } => format!("{name} {}", shown(path)),
            SftpOp::Readdir { path, .. } | SftpOp::Fstat { path, .. } => format!("{name} {}", shown_handle(path)),
            SftpOp::Setstat { path, attrs, .. } => match attrs.summary() {
                Some(set) => format!("{name} {} ({set})", shown_handle(path)),
                None => format!("{name} {}", shown_handle(path)),
            },
            SftpOp::Rename { from, to, .. } => format!("{name} {} -> {}", shown(from), shown(to)),
            SftpOp::Symlink { link, target, .. } => format!("{name} {} {}", shown(link), shown(target)),
            SftpOp::Extended { name: extension, paths, .. } => {
                let mut line = format!("{name} {}", shown(extension));
                for path in paths {
                    line.push(' ');
                    line.push_str(&shown(path));
                }
                line
            }
            SftpOp::Unknown { kind } => format!("{name} request type {kind}"),
        }
    }
}

// === impl SftpReply ===

impl SftpReply {
    /// The reply's name in the protocol, lowercase: "status", "data", …
    pub fn name(&self) -> &'static str {
        match self {
            SftpReply::Version { .. } => "version",
            SftpReply::Status { .. } => "status",
            SftpReply::Handle { .. } => "handle",
            SftpReply::Data { .. } => "data",
            SftpReply::Name { .. } => "name",
            SftpReply::Attrs { .. } => "attrs",
            SftpReply::ExtendedReply { .. } => "extended-reply",
            SftpReply::Unknown { .. } => "unknown",
        }
    }

    /// One line for a person, e.g. `status of open: permission denied "denied"`.
    pub fn summary(&self) -> String {
        let name = self.name();
        match self {
            SftpReply::Version { version } => format!("{name} {version}"),
            SftpReply::Status { code, message, request, .. } => {
                let of = request.map(|r| format!(" of {r}")).unwrap_or_default();
                let meaning = status_meaning(*code).map(Cow::Borrowed).unwrap_or_else(|| Cow::Owned(format!("code {code}")));
                if message.is_empty() {
                    format!("{name}{of}: {meaning}")
                } else {
                    format!("{name}{of}: {meaning} {message:?}")
                }
            }
            SftpReply::Handle { path, .. } => format!("{name} {}", shown_handle(path)),
            SftpReply::Data { len, path, .. } => format!("{name} {len} B from {}", shown_handle(path)),
            SftpReply::Name { count, .. } => format!("{name} {count} entries"),
            SftpReply::Attrs { .. } | SftpReply::ExtendedReply { .. } => name.to_string(),
            SftpReply::Unknown { kind } => format!("{name} reply type {kind}"),
        }
    }
}

// === impl Framer ===

impl Framer {
    fn new(bulk_kind: u8, bulk_head: u32) -> Framer {
        Framer { buf: Vec::new(), bulk_kind, bulk_head, skip: 0, skipping: false, handed_out: false }
    }

    /// The next frame the bytes complete, consuming them from `input`; `None` once they are all
    /// consumed without completing one.
    fn next(&mut self, input: &mut &[u8]) -> Result<Option<Frame<'_>>, SftpError> {
        if self.handed_out {
            self.handed_out = false;
            self.buf.clear();
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
        if self.skipping {
            let n = self.skip.min(input.len());
            *input = &input[n..];
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
            self.skipping = false;
            return Ok(Some(Frame::BulkEnd));
        }
        if !fill(&mut self.buf, input, 4) {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == 0 {
            return Err(SftpError::EmptyPacket);
        }
        if len > MAX_PACKET_LEN {
            return Err(SftpError::PacketTooLarge { len, max: MAX_PACKET_LEN });
        }
        if !fill(&mut self.buf, input, 5) {
            return Ok(None);
        }
        let kind = self.buf[4];
        let wanted = if kind == self.bulk_kind { len.min(self.bulk_head) } else { len };
        // Both fit in usize: they are at most MAX_PACKET_LEN + 4.
        let wanted = wanted as usize + 4;
        self.buf.reserve_exact(wanted - self.buf.len());
        if !fill(&mut self.buf, input, wanted) {
            return Ok(None);
        }
        if kind == self.bulk_kind {
            self.skip = len as usize + 4 - wanted;
            self.skipping = true;
        }
        self.handed_out = true;
        Ok(Some(Frame::Packet { kind, bytes: &self.buf[4..], len }))
    }
}

/// Moves bytes from `input` to `buf` until it holds `wanted`; whether it does.
fn fill(buf: &mut Vec<u8>, input: &mut &[u8], wanted: usize) -> bool {
    let n = wanted.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..n]);
    *input = &input[n..];
    buf.len() >= wanted
}

// === decoding ===

/// Decodes a client packet (`bytes` from the type byte on; for WRITE only its head).
fn decode_request(kind: u8, bytes: &[u8], len: u32, tables: &mut Tables) -> Result<SftpOp, SftpError> {
    let mut r = Reader { bytes: &bytes[1..], kind };
    if kind == SSH_FXP_INIT {
        return Ok(SftpOp::Init { version: r.u32("version")? });
    }
    if !matches!(kind, 3..=20 | 200) {
        return Ok(SftpOp::Unknown { kind });
    }
    let id = r.u32("request id")?;
    let mut wants = Wants::Nothing;
    let op = match kind {
        3 => {
            let path = r.path("filename")?;
            let flags = r.u32("pflags")?;
            wants = Wants::Handle { path: path.clone() };
            SftpOp::Open {
                id,
                path,
                read: flags & FXF_READ != 0,
                write: flags & FXF_WRITE != 0,
                create: flags & FXF_CREAT != 0,
                truncate: flags & FXF_TRUNC != 0,
                append: flags & FXF_APPEND != 0,
                exclusive: flags & FXF_EXCL != 0,
            }
        }
        4 => {
            let closed = tables.close(r.handle()?);
            let (path, bytes_read, bytes_written) = closed.map(|h| (Some(h.path), h.bytes_read, h.bytes_written)).unwrap_or_default();
            SftpOp::Close { id, path, bytes_read, bytes_written }
        }
        5 => {
            let handle = r.handle()?;
            let (offset, len) = (r.u64("offset")?, r.u32("length")?);
            wants = Wants::Data { handle: handle.to_vec() };
            SftpOp::Read { id, path: tables.path(handle), offset, len }
        }
        SSH_FXP_WRITE => {
            let handle = r.handle()?;
            let offset = r.u64("offset")?;
            let data_len = r.u32("data length")?;
            let head = 1 + 4 + 4 + handle.len() as u64 + 8 + 4;
            if u64::from(data_len) > u64::from(len).saturating_sub(head) {
                return Err(SftpError::Malformed { kind, what: "data longer than its packet" });
            }
            let open = tables.handles.get_mut(handle);
            let path = open.map(|h| {
                h.bytes_written += u64::from(data_len);
                h.path.clone()
            });
            SftpOp::Write { id, path, offset, len: data_len }
        }
        7 | 17 => SftpOp::Stat { id, path: r.path("path")?, link: kind == 7 },
        8 => SftpOp::Fstat { id, path: tables.path(r.handle()?) },
        9 => {
            let path = Some(r.path("path")?);
            SftpOp::Setstat { id, path, attrs: set_attrs(&mut r)? }
        }
        10 => {
            let path = tables.path(r.handle()?);
            SftpOp::Setstat { id, path, attrs: set_attrs(&mut r)? }
        }
        11 => {
            let path = r.path("path")?;
            wants = Wants::Handle { path: path.clone() };
            SftpOp::Opendir { id, path }
        }
        12 => SftpOp::Readdir { id, path: tables.path(r.handle()?) },
        13 => SftpOp::Remove { id, path: r.path("filename")? },
        14 => SftpOp::Mkdir { id, path: r.path("path")? },
        15 => SftpOp::Rmdir { id, path: r.path("path")? },
        16 => SftpOp::Realpath { id, path: r.path("path")? },
        18 => SftpOp::Rename { id, from: r.path("old path")?, to: r.path("new path")? },
        19 => SftpOp::Readlink { id, path: r.path("path")? },
        20 => SftpOp::Symlink { id, link: r.path("link path")?, target: r.path("target path")? },
        200 => {
            let name = r.path("extension name")?;
            let paths = extension_paths(&name, &mut r, tables)?;
            SftpOp::Extended { id, name, paths }
        }
        _ => return Ok(SftpOp::Unknown { kind }),
    };
    tables.ask(id, Pending { request: op.name(), wants })?;
    Ok(op)
}

/// The paths an extended request of a known OpenSSH extension names.
fn extension_paths(name: &str, r: &mut Reader<'_>, tables: &Tables) -> Result<Vec<String>, SftpError> {
    let paths = match name {
        "posix-rename@openssh.com" | "hardlink@openssh.com" => vec![r.path("old path")?, r.path("new path")?],
        "statvfs@openssh.com" | "lsetstat@openssh.com" | "expand-path@openssh.com" => vec![r.path("path")?],
        "fstatvfs@openssh.com" | "fsync@openssh.com" => tables.path(r.handle()?).into_iter().collect(),
        "copy-data" => {
            let from = r.handle()?;
            let _ = (r.u64("read offset")?, r.u64("read length")?);
            let to = r.handle()?;
            [from, to].iter().filter_map(|h| tables.path(h)).collect()
        }
        _ => Vec::new(),
    };
    Ok(paths)
}

/// Decodes a server packet (`bytes` from the type byte on; for DATA only its head).
fn decode_reply(kind: u8, bytes: &[u8], len: u32, tables: &mut Tables) -> Result<SftpReply, SftpError> {
    let mut r = Reader { bytes: &bytes[1..], kind };
    if kind == SSH_FXP_VERSION {
        return Ok(SftpReply::Version { version: r.u32("version")? });
    }
    if !matches!(kind, 101..=105 | 201) {
        return Ok(SftpReply::Unknown { kind });
    }
    let id = r.u32("request id")?;
    let asked = tables.answer(id);
    let reply = match kind {
        101 => {
            let code = r.u32("status code")?;
            // Draft 02 has no message; OpenSSH sends one (and a language tag, ignored).
            let message = if r.bytes.is_empty() { String::new() } else { r.path("message")? };
            SftpReply::Status { id, code, message, request: asked.map(|p| p.request) }
        }
        102 => {
            let handle = r.handle()?;
            let path = match asked.map(|p| p.wants) {
                Some(Wants::Handle { path }) => {
                    tables.open(handle, path.clone())?;
                    Some(path)
                }
                _ => None,
            };
            SftpReply::Handle { id, path }
        }
        SSH_FXP_DATA => {
            let data_len = r.u32("data length")?;
            if u64::from(data_len) > u64::from(len).saturating_sub(u64::from(DATA_HEAD)) {
                return Err(SftpError::Malformed { kind, what: "data longer than its packet" });
            }
            let path = match asked.map(|p| p.wants) {
                Some(Wants::Data { handle }) => tables.handles.get_mut(&handle).map(|h| {
                    h.bytes_read += u64::from(data_len);
                    h.path.clone()
                }),
                _ => None,
            };
            SftpReply::Data { id, len: data_len, path }
        }
        104 => SftpReply::Name { id, count: r.u32("count")? },
        105 => SftpReply::Attrs { id },
        _ => SftpReply::ExtendedReply { id },
    };
    Ok(reply)
}

// === impl Tables ===

impl Tables {
    /// Remembers a request until its answer; a request id still awaited is replaced.
    fn ask(&mut self, id: u32, pending: Pending) -> Result<(), SftpError> {
        let replaced = self.answer(id);
        if replaced.is_none() && self.pending.len() >= MAX_PENDING_REQUESTS {
            return Err(SftpError::TooManyPending { max: MAX_PENDING_REQUESTS });
        }
        self.add_bytes(pending.wants.bytes())?;
        self.pending.insert(id, pending);
        Ok(())
    }

    /// Forgets the request an answer is for, and returns it.
    fn answer(&mut self, id: u32) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        self.bytes -= pending.wants.bytes();
        Some(pending)
    }

    /// Remembers a handle the server opened; one still open is replaced.
    fn open(&mut self, handle: &[u8], path: String) -> Result<(), SftpError> {
        let replaced = self.close(handle);
        if replaced.is_none() && self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(SftpError::TooManyHandles { max: MAX_OPEN_HANDLES });
        }
        self.add_bytes(handle.len() + path.len())?;
        self.handles.insert(handle.to_vec(), OpenHandle { path, bytes_read: 0, bytes_written: 0 });
        Ok(())
    }

    /// Forgets a handle, and returns what was known of it.
    fn close(&mut self, handle: &[u8]) -> Option<OpenHandle> {
        let open = self.handles.remove(handle)?;
        self.bytes -= handle.len() + open.path.len();
        Some(open)
    }

    fn path(&self, handle: &[u8]) -> Option<String> {
        self.handles.get(handle).map(|h| h.path.clone())
    }

    fn add_bytes(&mut self, n: usize) -> Result<(), SftpError> {
        if self.bytes + n > MAX_TRACKED_BYTES {
            return Err(SftpError::TrackedTooLarge { max: MAX_TRACKED_BYTES });
        }
        self.bytes += n;
        Ok(())
    }
}

impl Wants {
    /// Bytes of paths and handles held.
    fn bytes(&self) -> usize {
        match self {
            Wants::Nothing => 0,
            Wants::Handle { path } => path.len(),
            Wants::Data { handle } => handle.len(),
        }
    }
}

/// Reads the fields of one packet; running out of bytes is a malformed packet.
/// What a SETSTAT sets, from its attributes (SFTP v3 ATTRS); None is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    pub size: Option<u64>,
    /// uid and gid.
    pub owner: Option<(u32, u32)>,
    /// Permission bits (and the file type bits, when the client sends them).
    pub mode: Option<u32>,
    /// Access and modification times, seconds since the epoch.
    pub times: Option<(u32, u32)>,
}

impl SetAttrs {
    /// `mode 0644, owner 1000:1000, atime …, mtime …, size …`, or None when nothing is set.
    fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(mode) = self.mode {
            parts.push(format!("mode {:04o}", mode & 0o7777));
        }
        if let Some((uid, gid)) = self.owner {
            parts.push(format!("owner {uid}:{gid}"));
        }
        if let Some((atime, mtime)) = self.times {
            parts.push(format!("atime {atime}, mtime {mtime}"));
        }
        if let Some(size) = self.size {
            parts.push(format!("size {size}"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// SFTP v3 attribute flags.
const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;

/// The attributes a SETSTAT carries, in their order on the wire; extended attributes after them
/// are not read.
fn set_attrs(r: &mut Reader<'_>) -> Result<SetAttrs, SftpError> {
    let flags = r.u32("attribute flags")?;
    let mut attrs = SetAttrs::default();
    if flags & ATTR_SIZE != 0 {
        attrs.size = Some(r.u64("size")?);
    }
    if flags & ATTR_UIDGID != 0 {
        attrs.owner = Some((r.u32("uid")?, r.u32("gid")?));
    }
    if flags & ATTR_PERMISSIONS != 0 {
        attrs.mode = Some(r.u32("permissions")?);
    }
    if flags & ATTR_ACMODTIME != 0 {
        attrs.times = Some((r.u32("atime")?, r.u32("mtime")?));
    }
    Ok(attrs)
}

struct Reader<'a> {
    bytes: &'a [u8],
    kind: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SftpError> {
        if self.bytes.len() < n {
            return Err(SftpError::Malformed { kind: self.kind, what });
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, SftpError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, SftpError> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], SftpError> {
        let len = self.u32(what)?;
        self.take(usize::try_from(len).unwrap_or(usize::MAX), what)
    }

    /// A string as text, invalid UTF-8 replaced.
    fn path(&mut self, what: &'static str) -> Result<String, SftpError> {
        Ok(String::from_utf8_lossy(self.string(what)?).into_owned())
    }

    fn handle(&mut self) -> Result<&'a [u8], SftpError> {
        let len = self.u32("handle")?;
        if len as usize > MAX_HANDLE_LEN {
            return Err(SftpError::HandleTooLong { kind: self.kind, len, max: MAX_HANDLE_LEN });
        }
        self.take(len as usize, "handle")
    }
}

// === summaries ===

/// A path as a person reads it: quoted and escaped when it is empty or has spaces or control
/// characters, so one op stays one unambiguous line.
fn shown(path: &str) -> Cow<'_, str> {
    if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Cow::Owned(format!("{path:?}"))
    } else {
        Cow::Borrowed(path)
    }
}

fn shown_handle(path: &Option<String>) -> Cow<'_, str> {
    match path {
        Some(path) => shown(path),
        None => Cow::Borrowed("<unknown handle>"),
    }
}

fn status_meaning(code: u32) -> Option<&'static str> {
    let meaning = match code {
        0 => "ok",
        1 => "eof",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "op unsupported",
        _ => return None,
    };
    Some(meaning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// Builds one packet: type, then fields; `build` puts the length in front.
    struct P(Vec<u8>);

    fn p(kind: u8) -> P {
        P(vec![kind])
    }

    impl P {
        fn u32(mut self, v: u32) -> P {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> P {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn str(self, s: impl AsRef<[u8]>) -> P {
            let s = s.as_ref();
            let mut me = self.u32(s.len() as u32);
            me.0.extend_from_slice(s);
            me
        }
        fn build(self) -> Vec<u8> {
            let mut out = (self.0.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(&self.0);
            out
        }
    }

    /// One direction's bytes in a conversation.
    enum Step {
        C(Vec<u8>),
        S(Vec<u8>),
    }
    use Step::{C, S};

    /// How a step's bytes are cut before they are fed.
    #[derive(Clone, Copy)]
    enum Cut {
        Whole,
        At(usize, usize),
        Bytewise,
    }

    /// Feeds a conversation; returns each completed op and reply as `> summary` / `< summary`.
    fn run(steps: &[Step], cut: Cut) -> Result<Vec<String>, SftpError> {
        let mut stream = SftpStream::new();
        let mut seen = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let (client, bytes) = match step {
                C(b) => (true, b),
                S(b) => (false, b),
            };
            let pieces: Vec<&[u8]> = match cut {
                Cut::At(step, at) if step == i => vec![&bytes[..at], &bytes[at..]],
                Cut::Bytewise => bytes.chunks(1).collect(),
                _ => vec![bytes],
            };
            for piece in pieces {
                if client {
                    seen.extend(stream.client_bytes(piece)?.iter().map(|op| format!("> {}", op.summary())));
                } else {
                    seen.extend(stream.server_bytes(piece)?.iter().map(|reply| format!("< {}", reply.summary())));
                }
                assert!(stream.buffered_bytes() <= 2 * (MAX_PACKET_LEN as usize + 4));
            }
        }
        Ok(seen)
    }

    /// Every cut of the conversation gives the same outcome: each step split at every byte
    /// boundary, and each step fed one byte at a time.
    fn check_outcome(steps: &[Step], expected: Result<Vec<String>, SftpError>) {
        assert_eq!(run(steps, Cut::Whole), expected, "whole");
        assert_eq!(run(steps, Cut::Bytewise), expected, "byte by byte");
        for (i, step) in steps.iter().enumerate() {
            let len = match step {
                C(b) | S(b) => b.len(),
            };
            for at in 1..len {
                assert_eq!(run(steps, Cut::At(i, at)), expected, "step {i} cut at {at}");
            }
        }
    }

    fn check(steps: &[Step], expected: &[&str]) {
        check_outcome(steps, Ok(expected.iter().map(|s| s.to_string()).collect()));
    }

    fn check_err(steps: &[Step], expected: SftpError) {
        check_outcome(steps, Err(expected));
    }

    fn cat(packets: &[Vec<u8>]) -> Vec<u8> {
        packets.concat()
    }

    const H: &[u8] = b"\0\0\0\x07";

    #[test]
    fn version_exchange() {
        check(&[C(p(1).u32(3).build()), S(p(2).u32(3).str("posix-rename@openssh.com").str("1").build())], &["> init v3", "< version 3"]);
    }

    #[test]
    fn write_sequence_counts_bytes_per_handle() {
        check(
            &[
                C(p(3).u32(1).str("/srv/a.txt").u32(FXF_WRITE | FXF_CREAT | FXF_TRUNC).u32(0).build()),
                S(p(102).u32(1).str(H).build()),
                C(cat(&[p(6).u32(2).str(H).u64(0).str(b"hello").build(), p(6).u32(3).str(H).u64(5).str(b"world!!").build()])),
                S(cat(&[p(101).u32(2).u32(0).str("").str("").build(), p(101).u32(3).u32(0).str("").str("").build()])),
                C(p(4).u32(4).str(H).build()),
                S(p(101).u32(4).u32(0).str("").str("").build()),
                // The handle is forgotten at CLOSE: a late write on it is unattributed.
                C(p(6).u32(5).str(H).u64(0).str(b"x").build()),
            ],
            &[
                "> open /srv/a.txt (write, create, truncate)",
                "< handle /srv/a.txt",
                "> write /srv/a.txt 5 B at 0",
                "> write /srv/a.txt 7 B at 5",
                "< status of write: ok",
                "< status of write: ok",
                "> close /srv/a.txt (read 0 B, wrote 12 B)",
                "< status of close: ok",
                "> write <unknown handle> 1 B at 0",
            ],
        );
    }

    #[test]
    fn read_sequence_counts_data_replies() {
        check(
            &[
                C(p(3).u32(7).str("/etc/motd").u32(FXF_READ).u32(0).build()),
                S(p(102).u32(7).str(H).build()),
                C(cat(&[p(5).u32(8).str(H).u64(0).u32(32768).build(), p(5).u32(9).str(H).u64(32768).u32(32768).build()])),
                // Answers out of order, and the second is split over two writes of the server.
                S(p(103).u32(9).str(b"abc").build()),
                S(p(103).u32(8).str(b"12345").build()),
                C(p(5).u32(10).str(H).u64(8).u32(32768).build()),
                S(p(101).u32(10).u32(1).str("End of file").str("").build()),
                C(p(4).u32(11).str(H).build()),
            ],
            &[
                "> open /etc/motd (read)",
                "< handle /etc/motd",
                "> read /etc/motd 32768 B at 0",
                "> read /etc/motd 32768 B at 32768",
                "< data 3 B from /etc/motd",
                "< data 5 B from /etc/motd",
                "> read /etc/motd 32768 B at 8",
                "< status of read: eof \"End of file\"",
                "> close /etc/motd (read 8 B, wrote 0 B)",
            ],
        );
    }

    #[test]
    fn path_requests() {
        check(
            &[
                C(cat(&[
                    p(13).u32(1).str("/tmp/x").build(),
                    p(18).u32(2).str("/a").str("/b").build(),
                    p(14).u32(3).str("/d").u32(0).build(),
                    p(15).u32(4).str("/d").build(),
                    p(17).u32(5).str("/s").build(),
                    p(7).u32(6).str("/l").build(),
                    p(16).u32(7).str(".").build(),
                    p(19).u32(8).str("/l").build(),
                    p(20).u32(9).str("/target").str("/link").build(),
                    p(9).u32(10).str("/s").u32(0).build(),
                    p(9).u32(12).str("/t").u32(0xf).u64(5).u32(1000).u32(100).u32(0o100640).u32(1).u32(2).build(),
                    p(42).u32(11).build(),
                ])),
                S(cat(&[
                    p(101).u32(1).u32(2).str("No such file").str("").build(),
                    p(101).u32(5).u32(3).build(),
                    p(105).u32(6).u32(0).build(),
                    p(104).u32(7).u32(1).str("/home/u").str("").u32(0).build(),
                    p(101).u32(99).u32(4).str("Failure").str("").build(),
                    p(101).u32(11).u32(8).str("").str("").build(),
                    p(101).u32(10).u32(77).str("").str("").build(),
                    p(150).build(),
                ])),
            ],
            &[
                "> remove /tmp/x",
                "> rename /a -> /b",
                "> mkdir /d",
                "> rmdir /d",
                "> stat /s",
                "> lstat /l",
                "> realpath .",
                "> readlink /l",
                "> symlink /target /link",
                "> setstat /s",
                "> setstat /t (mode 0640, owner 1000:100, atime 1, mtime 2, size 5)",
                "> unknown request type 42",
                "< status of remove: no such file \"No such file\"",
                "< status of stat: permission denied",
                "< attrs",
                "< name 1 entries",
                "< status: failure \"Failure\"",
                "< status: op unsupported",
                "< status of setstat: code 77",
                "< unknown reply type 150",
            ],
        );
    }

    #[test]
    fn directory_and_handle_requests() {
        check(
            &[
                C(p(11).u32(1).str("/srv").build()),
                S(p(102).u32(1).str(b"dir0").build()),
                C(cat(&[
                    p(12).u32(2).str(b"dir0").build(),
                    p(8).u32(3).str(b"dir0").build(),
                    p(10).u32(4).str(b"dir0").u32(0).build(),
                    p(12).u32(5).str(b"nope").build(),
                    p(4).u32(6).str(b"dir0").build(),
                ])),
            ],
            &[
                "> opendir /srv",
                "< handle /srv",
                "> readdir /srv",
                "> fstat /srv",
                "> setstat /srv",
                "> readdir <unknown handle>",
                "> close /srv (read 0 B, wrote 0 B)",
            ],
        );
    }

    #[test]
    fn openssh_extensions() {
        check(
            &[
                C(p(3).u32(1).str("/f").u32(FXF_WRITE | FXF_APPEND | FXF_EXCL | FXF_CREAT).u32(0).build()),
                S(p(102).u32(1).str(H).build()),
                C(cat(&[
                    p(200).u32(2).str("posix-rename@openssh.com").str("/a").str("/b").build(),
                    p(200).u32(3).str("statvfs@openssh.com").str("/").build(),
                    p(200).u32(4).str("hardlink@openssh.com").str("/a").str("/c").build(),
                    p(200).u32(5).str("fsync@openssh.com").str(H).build(),
                    p(200).u32(6).str("limits@openssh.com").build(),
                    p(200).u32(7).str("vendor@example.com").str("opaque").build(),
                ])),
                S(cat(&[p(201).u32(3).u64(4096).build(), p(101).u32(5).u32(0).build()])),
            ],
            &[
                "> open /f (write, create, append, exclusive)",
                "< handle /f",
                "> extended posix-rename@openssh.com /a /b",
                "> extended statvfs@openssh.com /",
                "> extended hardlink@openssh.com /a /c",
                "> extended fsync@openssh.com /f",
                "> extended limits@openssh.com",
                "> extended vendor@example.com",
                "< extended-reply",
                "< status of extended: ok",
            ],
        );
    }

    #[test]
    fn hostile_paths_stay_one_line() {
        check(
            &[C(cat(&[p(13).u32(1).str(b"/a\nb").build(), p(13).u32(2).str(b"/\xff\xfe").build(), p(13).u32(3).str("").build()]))],
            &["> remove \"/a\\nb\"", "> remove /\u{fffd}\u{fffd}", "> remove \"\""],
        );
    }

    #[test]
    fn exact_ops_and_replies() {
        let mut stream = SftpStream::new();
        let ops =
            stream.client_bytes(&cat(&[p(3).u32(9).str("/x").u32(FXF_READ).u32(0).build(), p(5).u32(10).str(H).u64(4).u32(16).build()]));
        let open = SftpOp::Open {
            id: 9,
            path: "/x".into(),
            read: true,
            write: false,
            create: false,
            truncate: false,
            append: false,
            exclusive: false,
        };
        assert_eq!(ops, Ok(vec![open, SftpOp::Read { id: 10, path: None, offset: 4, len: 16 }]));
        let replies = stream.server_bytes(&cat(&[p(102).u32(9).str(H).build(), p(101).u32(10).u32(4).str("bad").str("en").build()]));
        let status = SftpReply::Status { id: 10, code: 4, message: "bad".into(), request: Some("read") };
        assert_eq!(replies, Ok(vec![SftpReply::Handle { id: 9, path: Some("/x".into()) }, status]));
        assert_eq!((stream.open_handles(), stream.pending_requests()), (1, 0));
    }

    #[test]
    fn malformed_and_oversized_packets() {
        let too_long = (MAX_PACKET_LEN + 1).to_be_bytes().to_vec();
        check_err(&[C(too_long.clone())], SftpError::PacketTooLarge { len: MAX_PACKET_LEN + 1, max: MAX_PACKET_LEN });
        check_err(&[S(too_long)], SftpError::PacketTooLarge { len: MAX_PACKET_LEN + 1, max: MAX_PACKET_LEN });
        check_err(&[C(vec![0, 0, 0, 0])], SftpError::EmptyPacket);
        check_err(&[C(p(3).u32(1).u32(100).build())], SftpError::Malformed { kind: 3, what: "filename" });
        check_err(&[C(p(3).u32(1).u32(u32::MAX).build())], SftpError::Malformed { kind: 3, what: "filename" });
        check_err(&[C(p(3).u32(1).str("/x").build())], SftpError::Malformed { kind: 3, what: "pflags" });
        check_err(&[C(p(1).build())], SftpError::Malformed { kind: 1, what: "version" });
        check_err(&[C(p(18).u32(1).str("/a").build())], SftpError::Malformed { kind: 18, what: "new path" });
        check_err(&[C(p(4).u32(1).str([7; 257]).build())], SftpError::HandleTooLong { kind: 4, len: 257, max: MAX_HANDLE_LEN });
        check_err(
            &[C(p(6).u32(1).str([7; 257]).u64(0).str("x").build())],
            SftpError::HandleTooLong { kind: 6, len: 257, max: MAX_HANDLE_LEN },
        );
        check_err(&[C(p(6).u32(1).str(H).u64(0).u32(6).build())], SftpError::Malformed { kind: 6, what: "data longer than its packet" });
        check_err(&[C(p(6).u32(1).str(H).u64(0).build())], SftpError::Malformed { kind: 6, what: "data length" });
        check_err(&[S(p(103).u32(1).u32(1).build())], SftpError::Malformed { kind: 103, what: "data longer than its packet" });
        check_err(&[S(p(103).u32(1).build())], SftpError::Malformed { kind: 103, what: "data length" });
        check_err(&[S(p(102).u32(1).str([1; 300]).build())], SftpError::HandleTooLong { kind: 102, len: 300, max: MAX_HANDLE_LEN });
        check_err(&[S(p(101).u32(1).u32(0).u32(5).build())], SftpError::Malformed { kind: 101, what: "message" });
    }

    #[test]
    fn a_failed_stream_stays_failed() {
        let mut stream = SftpStream::new();
        assert_eq!(stream.client_bytes(&[0, 0, 0, 0]), Err(SftpError::EmptyPacket));
        assert_eq!(stream.client_bytes(&p(1).u32(3).build()), Err(SftpError::Failed));
        assert_eq!(stream.server_bytes(&p(2).u32(3).build()), Err(SftpError::Failed));
    }

    #[test]
    fn big_write_is_streamed_not_buffered() {
        let data = vec![0x5a; 255 * 1024];
        let packet = p(6).u32(1).str(H).u64(1 << 40).str(&data).build();
        let mut stream = SftpStream::new();
        stream.client_bytes(&p(3).u32(0).str("/big").u32(FXF_WRITE).u32(0).build()).unwrap();
        stream.server_bytes(&p(102).u32(0).str(H).build()).unwrap();
        let mut ops = Vec::new();
        for chunk in packet.chunks(1000) {
            ops.extend(stream.client_bytes(chunk).unwrap());
            assert!(stream.buffered_bytes() <= KEEP_CAPACITY, "{} bytes held", stream.buffered_bytes());
        }
        assert_eq!(ops, vec![SftpOp::Write { id: 1, path: Some("/big".into()), offset: 1 << 40, len: 255 * 1024 }]);
        let close = stream.client_bytes(&p(4).u32(2).str(H).build()).unwrap();
        assert_eq!(close, vec![SftpOp::Close { id: 2, path: Some("/big".into()), bytes_read: 0, bytes_written: 255 * 1024 }]);
    }

    #[test]
    fn pending_table_is_bounded() {
        let stats: Vec<Vec<u8>> = (0..MAX_PENDING_REQUESTS as u32).map(|id| p(17).u32(id).str("/").build()).collect();
        let mut stream = SftpStream::new();
        assert_eq!(stream.client_bytes(&cat(&stats)).map(|ops| ops.len()), Ok(MAX_PENDING_REQUESTS));
        // Reusing a pending id replaces it; a new one is refused.
        assert_eq!(stream.client_bytes(&p(17).u32(0).str("/").build()).map(|ops| ops.len()), Ok(1));
        assert_eq!(
            stream.client_bytes(&p(17).u32(u32::MAX).str("/").build()),
            Err(SftpError::TooManyPending { max: MAX_PENDING_REQUESTS })
        );
    }

    #[test]
    fn tracked_bytes_are_bounded_and_given_back() {
        let long = "/".repeat(200_000);
        let mut stream = SftpStream::new();
        for id in 0..5 {
            stream.client_bytes(&p(3).u32(id).str(&long).u32(FXF_READ).u32(0).build()).unwrap();
        }
        assert_eq!(stream.tracked_bytes(), 1_000_000);
        // Answered (a failed open, an open handle) and closed entries give their bytes back.
        stream.server_bytes(&p(101).u32(0).u32(2).str("").str("").build()).unwrap();
        stream.server_bytes(&p(102).u32(1).str(H).build()).unwrap();
        assert_eq!(stream.tracked_bytes(), 800_000 + H.len());
        stream.client_bytes(&p(4).u32(9).str(H).build()).unwrap();
        stream.server_bytes(&p(101).u32(9).u32(0).str("").str("").build()).unwrap();
        assert_eq!(stream.tracked_bytes(), 600_000);
        // A request id reused while awaited replaces its entry and its bytes.
        stream.client_bytes(&p(11).u32(5).str(&long).build()).unwrap();
        stream.client_bytes(&p(11).u32(5).str(&long).build()).unwrap();
        assert_eq!(stream.tracked_bytes(), 800_000);
        assert_eq!(stream.client_bytes(&p(11).u32(6).str(&long).build()).map(|ops| ops.len()), Ok(1));
        let refused = stream.client_bytes(&p(11).u32(7).str(&long).build()).map(|ops| ops.len());
        assert_eq!(refused, Err(SftpError::TrackedTooLarge { max: MAX_TRACKED_BYTES }));
    }

    #[test]
    fn handle_table_is_bounded() {
        let mut stream = SftpStream::new();
        for id in 0..=MAX_OPEN_HANDLES as u32 {
            stream.client_bytes(&p(3).u32(id).str("/f").u32(FXF_READ).u32(0).build()).unwrap();
            let handle = stream.server_bytes(&p(102).u32(id).str(id.to_be_bytes()).build());
            if id < MAX_OPEN_HANDLES as u32 {
                assert_eq!(handle.map(|r| r.len()), Ok(1));
            } else {
                assert_eq!(handle, Err(SftpError::TooManyHandles { max: MAX_OPEN_HANDLES }));
            }
        }
    }

    /// Random bytes, and valid packets with random bytes flipped, cut at random points and fed
    /// in random directions: never a panic, and the buffers and tables stay within their bounds.
    #[test]
    fn random_bytes_never_panic() {
        let valid = cat(&[
            p(1).u32(3).build(),
            p(3).u32(1).str("/a").u32(FXF_WRITE).u32(0).build(),
            p(102).u32(1).str(H).build(),
            p(6).u32(2).str(H).u64(0).str(b"data").build(),
            p(103).u32(2).str(b"data").build(),
            p(200).u32(3).str("copy-data").str(H).u64(0).u64(0).str(H).u64(0).build(),
            p(4).u32(4).str(H).build(),
        ]);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let mut input = if round % 2 == 0 { (0..rng.below(600)).map(|_| rng.next() as u8).collect() } else { rng.corrupt(&valid) };
            if round % 7 == 0 {
                input.splice(0..0, (MAX_PACKET_LEN - rng.below(8) as u32).to_be_bytes());
            }
            let mut stream = SftpStream::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at(rng.below(rest.len()) + 1);
                rest = tail;
                let _ = if rng.next() & 1 == 0 { stream.client_bytes(piece).map(|_| ()) } else { stream.server_bytes(piece).map(|_| ()) };
                assert!(stream.buffered_bytes() <= 2 * (MAX_PACKET_LEN as usize + 4));
                assert!(stream.open_handles() <= MAX_OPEN_HANDLES && stream.pending_requests() <= MAX_PENDING_REQUESTS);
                assert!(stream.tracked_bytes() <= MAX_TRACKED_BYTES);
            }
        }
    }
}
