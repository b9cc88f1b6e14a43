//! Git over SSH: recognises the command a git client asks the SSH server to run
//! (`git-upload-pack '/srv/repo.git'` and its variants), and follows a `git-receive-pack`
//! channel far enough to record a push: the ref updates the client asks for and the server's
//! report of which ones it made.
//!
//! It is a pure, synchronous parser fed with the bytes the relay forwards. It deliberately does
//! not parse packfiles, the server's ref advertisement, push options or fetches
//! (`git-upload-pack`): after the parts it records, further bytes are skipped without being held.
//! After an error every later call returns [`GitError::Failed`].

/// The largest pkt-line, length prefix included, as git bounds it (`LARGE_PACKET_MAX`).
pub const MAX_PKT_LEN: usize = 65520;
/// The most bytes of pkt-lines accepted in a push's command list, and likewise in its report.
pub const MAX_LIST_BYTES: usize = 1 << 20;
/// The most ref updates (and ref statuses) accepted in one push.
pub const MAX_REF_UPDATES: usize = 10_000;

/// A git command line an SSH client asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCommand {
    pub service: GitService,
    /// The repository path as the shell would see it after unquoting.
    pub repository: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitService {
    /// Fetch and clone.
    UploadPack,
    /// Push.
    ReceivePack,
    /// `git archive --remote`.
    UploadArchive,
}

/// Follows a `git-receive-pack` channel: the client's command list, then the server's report.
pub struct ReceivePackStream {
    /// A partial pkt-line of the client's.
    client: PktReader,
    /// The command list has been returned; the client's further bytes (push options, the
    /// packfile) are skipped.
    client_done: bool,
    /// Bytes of the command list so far, to bound it.
    command_bytes: usize,
    updates: Vec<RefUpdate>,
    /// The client's capabilities came (on the first line that has any).
    capabilities_seen: bool,
    /// The client asked for side-band(-64k), so the server's report comes multiplexed.
    side_band: bool,
    /// A partial pkt-line of the server's.
    server: PktReader,
    server_phase: ServerPhase,
    /// A partial pkt-line of the report carried in side-band channel 1.
    band: PktReader,
    report: Report,
    /// Set by the first error: the stream cannot be resynchronised after it.
    failed: bool,
}

/// One ref update the client asks for. `old` is all zeros to create a ref, `new` to delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

/// What the server says it did with the push.
///
/// A fatal error the server sends on side-band channel 3 instead of a report comes back as
/// `unpack: Err(message)` with no refs: nothing was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// `Ok(())` for `unpack ok`, else the server's unpack error.
    pub unpack: Result<(), String>,
    pub refs: Vec<RefStatus>,
}

/// The outcome of one ref update: `ok <ref>` or `ng <ref> <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefStatus {
    pub name: String,
    pub ok: bool,
    pub reason: Option<String>,
}

/// Why a receive-pack stream cannot be followed. Each one ends the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("pkt-line length {:?} is not 4 hex digits", .prefix.escape_ascii().to_string())]
    BadPktPrefix { prefix: [u8; 4] },
    #[error("pkt-line length {len} is not allowed here; data lines are 4 to {max} bytes", max = MAX_PKT_LEN)]
    BadPktLen { len: usize },
    #[error("git push command list is longer than {max} bytes")]
    CommandsTooLarge { max: usize },
    #[error("git push updates more than {max} refs")]
    TooManyRefs { max: usize },
    #[error("git push report is longer than {max} bytes")]
    ReportTooLarge { max: usize },
    #[error("malformed git push report: {what}")]
    MalformedReport { what: &'static str },
    #[error("git side-band channel {band} does not exist; channels are 1, 2 and 3")]
    BadBand { band: u8 },
    #[error("git push stream already failed on an earlier error; the channel must be ended")]
    Failed,
}

/// Where the server's bytes are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerPhase {
    /// The ref advertisement, skipped up to its flush.
    Advertisement,
    Report,
    /// The report has been returned; anything after is skipped.
    Done,
}

/// The report as it comes in.
#[derive(Default)]
struct Report {
    unpack: Option<Result<(), String>>,
    refs: Vec<RefStatus>,
    bytes: usize,
}

/// Cuts bytes into pkt-lines, holding at most one (`MAX_PKT_LEN` bytes).
#[derive(Default)]
struct PktReader {
    buf: Vec<u8>,
    /// The last pkt-line handed out borrowed `buf`; clear it on the next call.
    handed_out: bool,
}

enum Pkt<'a> {
    /// `0000`.
    Flush,
    /// `0001` and `0002` (protocol v2 delimiters), which receive-pack does not use.
    Special(usize),
    /// A data line's payload, without the length.
    Data(&'a [u8]),
}

const NUL: u8 = 0;

// === impl GitService ===

impl GitService {
    pub fn as_str(self) -> &'static str {
        match self {
            GitService::UploadPack => "git-upload-pack",
            GitService::ReceivePack => "git-receive-pack",
            GitService::UploadArchive => "git-upload-archive",
        }
    }

    fn from_name(name: &str) -> Option<GitService> {
        match name {
            "upload-pack" => Some(GitService::UploadPack),
            "receive-pack" => Some(GitService::ReceivePack),
            "upload-archive" => Some(GitService::UploadArchive),
            _ => None,
        }
    }
}

/// Recognises `git-upload-pack '/srv/repo.git'`, `git receive-pack "repo"`, unquoted paths and
/// git's own quoting (`'it'\''s'`). Anything else, including any shell syntax that could run a
/// second command (`;`, `|`, `$(`, backquotes…), an empty path or a path with control
/// characters, is `None`.
pub fn parse_git_command(command: &str) -> Option<GitCommand> {
    let words = shell_words(command)?;
    let (service, repository) = match words.as_slice() {
        [program, repository] => (GitService::from_name(program.strip_prefix("git-")?)?, repository),
        [git, subcommand, repository] if git == "git" => (GitService::from_name(subcommand)?, repository),
        _ => return None,
    };
    if repository.is_empty() || repository.chars().any(char::is_control) {
        return None;
    }
    Some(GitCommand { service, repository: repository.clone() })
}

/// Splits a command line into words the way a POSIX shell would, for the subset a git client
/// produces; `None` for anything outside that subset.
fn shell_words(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\') => w.push(c),
                            _ => return None,
                        },
                        '$' | '`' => return None,
                        c => w.push(c),
                    }
                }
            }
            // Outside quotes a backslash quotes one character; git escapes `'` and `!` this way.
            '\\' => match chars.next()? {
                c @ ('\'' | '!' | '"' | '\\' | ' ') => word.get_or_insert_with(String::new).push(c),
                _ => return None,
            },
            c if c.is_alphanumeric() || "/._-~+@:,=%".contains(c) => word.get_or_insert_with(String::new).push(c),
            _ => return None,
        }
    }
    words.extend(word);
    Some(words)
}

// === impl ReceivePackStream ===

impl ReceivePackStream {
    pub fn new() -> ReceivePackStream {
        ReceivePackStream {
            client: PktReader::default(),
            client_done: false,
            command_bytes: 0,
            updates: Vec::new(),
            capabilities_seen: false,
            side_band: false,
            server: PktReader::default(),
            server_phase: ServerPhase::Advertisement,
            band: PktReader::default(),
            report: Report::default(),
            failed: false,
        }
    }

    /// Bytes the client sent. Returns `Some(updates)` once, when the command list (pkt-lines up
    /// to the first flush) is complete, `Some(vec![])` for a push with no commands, and `None`
    /// before and ever after. Lines that are not `<old-oid> <new-oid> <ref>` (shallow lines, the
    /// lines of a push certificate around its commands) are skipped.
    pub fn client_bytes(&mut self, mut bytes: &[u8]) -> Result<Option<Vec<RefUpdate>>, GitError> {
        if self.failed {
            return Err(GitError::Failed);
        }
        if self.client_done {
            return Ok(None);
        }
        loop {
            let line = match self.client.next(&mut bytes) {
                Ok(None) => return Ok(None),
                Ok(Some(Pkt::Flush)) => {
                    self.client_done = true;
                    self.client = PktReader::default();
                    return Ok(Some(std::mem::take(&mut self.updates)));
                }
                Ok(Some(Pkt::Special(len))) => return Err(self.fail(GitError::BadPktLen { len })),
                Ok(Some(Pkt::Data(line))) => line,
                Err(e) => return Err(self.fail(e)),
            };
            self.command_bytes += line.len() + 4;
            if self.command_bytes > MAX_LIST_BYTES {
                return Err(self.fail(GitError::CommandsTooLarge { max: MAX_LIST_BYTES }));
            }
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let command = match line.iter().position(|&b| b == NUL) {
                Some(nul) => {
                    if !self.capabilities_seen {
                        self.capabilities_seen = true;
                        self.side_band = line[nul + 1..].split(|&b| b == b' ').any(|cap| cap == b"side-band-64k" || cap == b"side-band");
                    }
                    &line[..nul]
                }
                None => line,
            };
            if let Some(update) = parse_command(command) {
                if self.updates.len() == MAX_REF_UPDATES {
                    return Err(self.fail(GitError::TooManyRefs { max: MAX_REF_UPDATES }));
                }
                self.updates.push(update);
            }
        }
    }

    /// Bytes the server sent. Skips the ref advertisement, then returns `Some(report)` once,
    /// when the report-status after the pack is complete (unwrapped from side-band when the
    /// client asked for it), and `None` before and ever after.
    pub fn server_bytes(&mut self, mut bytes: &[u8]) -> Result<Option<PushReport>, GitError> {
        if self.failed {
            return Err(GitError::Failed);
        }
        loop {
            if self.server_phase == ServerPhase::Done {
                return Ok(None);
            }
            let payload = match self.server.next(&mut bytes) {
                Ok(None) => return Ok(None),
                Ok(Some(Pkt::Flush)) if self.server_phase == ServerPhase::Advertisement => {
                    self.server_phase = ServerPhase::Report;
                    continue;
                }
                Ok(Some(Pkt::Data(_))) if self.server_phase == ServerPhase::Advertisement => continue,
                Ok(Some(pkt)) if !self.side_band => match self.report.on_pkt(pkt) {
                    Ok(None) => continue,
                    Ok(Some(report)) => return Ok(Some(self.finish(report))),
                    Err(e) => return Err(self.fail(e)),
                },
                Ok(Some(Pkt::Data(payload))) => payload,
                Ok(Some(Pkt::Flush)) => return Err(self.fail(GitError::MalformedReport { what: "side-band ended before the report" })),
                Ok(Some(Pkt::Special(len))) => return Err(self.fail(GitError::BadPktLen { len })),
                Err(e) => return Err(self.fail(e)),
            };
            let Some((&band, mut data)) = payload.split_first() else {
                return Err(self.fail(GitError::MalformedReport { what: "side-band packet without a channel" }));
            };
            match band {
                1 => loop {
                    let outcome = match self.band.next(&mut data) {
                        Ok(None) => break,
                        Ok(Some(pkt)) => self.report.on_pkt(pkt),
                        Err(e) => Err(e),
                    };
                    match outcome {
                        Ok(None) => {}
                        Ok(Some(report)) => return Ok(Some(self.finish(report))),
                        Err(e) => return Err(self.fail(e)),
                    }
                },
                2 => {}
                3 => {
                    let message = String::from_utf8_lossy(data.strip_suffix(b"\n").unwrap_or(data)).into_owned();
                    return Ok(Some(self.finish(PushReport { unpack: Err(message), refs: Vec::new() })));
                }
                band => return Err(self.fail(GitError::BadBand { band })),
            }
        }
    }

    /// Heap bytes held: partial pkt-lines (each at most `MAX_PKT_LEN`) and the updates and
    /// statuses collected so far (each list at most `MAX_LIST_BYTES` of lines).
    pub fn buffered_bytes(&self) -> usize {
        let updates: usize = self.updates.iter().map(|u| u.old.len() + u.new.len() + u.name.len()).sum();
        let refs: usize = self.report.refs.iter().map(|r| r.name.len() + r.reason.as_ref().map_or(0, String::len)).sum();
        self.client.buf.capacity() + self.server.buf.capacity() + self.band.buf.capacity() + updates + refs
    }

    fn finish(&mut self, report: PushReport) -> PushReport {
        self.server_phase = ServerPhase::Done;
        self.server = PktReader::default();
        self.band = PktReader::default();
        report
    }

    fn fail(&mut self, error: GitError) -> GitError {
        // Everything held is dropped; only the failure is remembered.
        *self = ReceivePackStream { failed: true, ..ReceivePackStream::new() };
        error
    }
}

impl Default for ReceivePackStream {
    fn default() -> ReceivePackStream {
        ReceivePackStream::new()
    }
}

/// `<old-oid> <new-oid> <ref>` with SHA-1 or SHA-256 hex oids; `None` for any other line.
fn parse_command(line: &[u8]) -> Option<RefUpdate> {
    let line = std::str::from_utf8(line).ok()?;
    let (old, rest) = line.split_once(' ')?;
    let (new, name) = rest.split_once(' ')?;
    let is_oid = |oid: &str| matches!(oid.len(), 40 | 64) && oid.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_oid(old) || old.len() != new.len() || !is_oid(new) || name.is_empty() || name.contains(' ') {
        return None;
    }
    Some(RefUpdate { old: old.to_string(), new: new.to_string(), name: name.to_string() })
}

// === impl Report ===

impl Report {
    /// Takes one pkt-line of the report; the whole report once its flush comes.
    fn on_pkt(&mut self, pkt: Pkt<'_>) -> Result<Option<PushReport>, GitError> {
        let line = match pkt {
            Pkt::Data(line) => line,
            Pkt::Special(len) => return Err(GitError::BadPktLen { len }),
            Pkt::Flush => {
                let Some(unpack) = self.unpack.take() else {
                    return Err(GitError::MalformedReport { what: "flush before the unpack line" });
                };
                return Ok(Some(PushReport { unpack, refs: std::mem::take(&mut self.refs) }));
            }
        };
        self.bytes += line.len() + 4;
        if self.bytes > MAX_LIST_BYTES {
            return Err(GitError::ReportTooLarge { max: MAX_LIST_BYTES });
        }
        let line = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
        if self.unpack.is_none() {
            let Some(result) = line.strip_prefix("unpack ") else {
                return Err(GitError::MalformedReport { what: "first line is not `unpack`" });
            };
            self.unpack = Some(if result == "ok" { Ok(()) } else { Err(result.to_string()) });
            return Ok(None);
        }
        let status = if let Some(name) = line.strip_prefix("ok ") {
            RefStatus { name: name.to_string(), ok: true, reason: None }
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            RefStatus { name: name.to_string(), ok: false, reason: Some(reason.to_string()).filter(|r| !r.is_empty()) }
        } else {
            // `option …` lines of report-status-v2 refine the line before; nothing to record.
            return Ok(None);
        };
        if self.refs.len() == MAX_REF_UPDATES {
            return Err(GitError::TooManyRefs { max: MAX_REF_UPDATES });
        }
        self.refs.push(status);
        Ok(None)
    }
}

// === impl PktReader ===

impl PktReader {
    /// The next pkt-line the bytes complete, consuming them from `input`; `None` once they are
    /// all consumed without completing one.
    fn next(&mut self, input: &mut &[u8]) -> Result<Option<Pkt<'_>>, GitError> {
        if self.handed_out {
            self.handed_out = false;
            self.buf.clear();
        }
        if !fill(&mut self.buf, input, 4) {
            return Ok(None);
        }
        let prefix = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        let len = std::str::from_utf8(&prefix).ok().and_then(|hex| usize::from_str_radix(hex, 16).ok());
        // from_str_radix takes a leading `+`, which git does not.
        let len = match len {
            Some(len) if prefix[0] != b'+' => len,
            _ => return Err(GitError::BadPktPrefix { prefix }),
        };
        match len {
            0 => {
                self.handed_out = true;
                return Ok(Some(Pkt::Flush));
            }
            1 | 2 => {
                self.handed_out = true;
                return Ok(Some(Pkt::Special(len)));
            }
            4..=MAX_PKT_LEN => {}
            _ => return Err(GitError::BadPktLen { len }),
        }
        self.buf.reserve_exact(len - self.buf.len());
        if !fill(&mut self.buf, input, len) {
            return Ok(None);
        }
        self.handed_out = true;
        Ok(Some(Pkt::Data(&self.buf[4..])))
    }
}

/// Moves bytes from `input` to `buf` until it holds `wanted`; whether it does.
fn fill(buf: &mut Vec<u8>, input: &mut &[u8], wanted: usize) -> bool {
    let n = wanted.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..n]);
    *input = &input[n..];
    buf.len() >= wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn check_command(command: &str, expected: Option<(GitService, &str)>) {
        let parsed = parse_git_command(command);
        let expected = expected.map(|(service, repository)| GitCommand { service, repository: repository.to_string() });
        assert_eq!(parsed, expected, "{command:?}");
    }

    #[test]
    fn git_commands() {
        use GitService::*;
        let table: &[(&str, Option<(GitService, &str)>)] = &[
            ("git-upload-pack '/srv/repo.git'", Some((UploadPack, "/srv/repo.git"))),
            ("git-receive-pack 'repo.git'", Some((ReceivePack, "repo.git"))),
            ("git-upload-archive '~/a.git'", Some((UploadArchive, "~/a.git"))),
            ("git upload-pack \"x\"", Some((UploadPack, "x"))),
            ("git receive-pack 'team/app.git'", Some((ReceivePack, "team/app.git"))),
            ("git-upload-pack /srv/repo.git", Some((UploadPack, "/srv/repo.git"))),
            ("git-upload-pack 'it'\\''s'", Some((UploadPack, "it's"))),
            ("git-upload-pack 'wow'\\!'.git'", Some((UploadPack, "wow!.git"))),
            ("git-upload-pack '/srv/my repo.git'", Some((UploadPack, "/srv/my repo.git"))),
            ("git-upload-pack \"a \\\"b\\\"\"", Some((UploadPack, "a \"b\""))),
            ("git-upload-pack  'x' ", Some((UploadPack, "x"))),
            ("git-upload-pack '$(reboot)'", Some((UploadPack, "$(reboot)"))),
            // Look-alikes.
            ("git-upload-pack", None),
            ("git-upload-pack ''", None),
            ("git-upload-pack 'a' 'b'", None),
            ("git-upload-packx 'a'", None),
            ("git-send-pack 'a'", None),
            ("git upload-pack", None),
            ("git git-upload-pack 'a'", None),
            ("gitupload-pack 'a'", None),
            ("/usr/bin/git-upload-pack 'a'", None),
            ("git-upload-pack 'a", None),
            ("git-upload-pack \"a", None),
            ("git-upload-pack a;reboot", None),
            ("git-upload-pack 'a';reboot", None),
            ("git-upload-pack 'a'|cat", None),
            ("git-upload-pack \"$(reboot)\"", None),
            ("git-upload-pack \"`reboot`\"", None),
            ("git-upload-pack $HOME", None),
            ("git-upload-pack 'a\nb'", None),
            ("git-upload-pack\t'a'", None),
            ("ls -la", None),
            ("", None),
        ];
        for (command, expected) in table {
            check_command(command, *expected);
        }
        assert_eq!(GitService::ReceivePack.as_str(), "git-receive-pack");
        assert_eq!(GitService::UploadArchive.as_str(), "git-upload-archive");
    }

    /// One pkt-line.
    fn pkt(payload: impl AsRef<[u8]>) -> Vec<u8> {
        let payload = payload.as_ref();
        let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
        out.extend_from_slice(payload);
        out
    }

    /// Side-band packets on `band` carrying `data`, cut into pieces of at most `piece` bytes so
    /// that inner pkt-lines straddle outer ones.
    fn banded(band: u8, data: &[u8], piece: usize) -> Vec<u8> {
        data.chunks(piece).flat_map(|chunk| pkt([&[band][..], chunk].concat())).collect()
    }

    const FLUSH: &[u8] = b"0000";
    const ZERO: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn update(old: &str, new: &str, name: &str) -> RefUpdate {
        RefUpdate { old: old.into(), new: new.into(), name: name.into() }
    }

    fn status(name: &str, reason: Option<&str>) -> RefStatus {
        RefStatus { name: name.into(), ok: reason.is_none(), reason: reason.map(Into::into) }
    }

    /// What a push looks like on the wire, and what must come of it.
    struct Push {
        client: Vec<u8>,
        server: Vec<u8>,
        updates: Result<Vec<RefUpdate>, GitError>,
        report: Result<Option<PushReport>, GitError>,
    }

    /// The updates from the client's bytes, and the report from the server's.
    type Outcome = (Result<Vec<RefUpdate>, GitError>, Result<Option<PushReport>, GitError>);

    /// Feeds the client's bytes, then the server's, each cut at every byte boundary and fed one
    /// byte at a time: every cut must give the same updates and report, once.
    fn check(push: &Push) {
        let run = |client_at: Option<usize>, server_at: Option<usize>| -> Outcome {
            let mut stream = ReceivePackStream::new();
            let pieces = |bytes: &[u8], at: Option<usize>| -> Vec<Vec<u8>> {
                match at {
                    Some(usize::MAX) => bytes.chunks(1).map(<[u8]>::to_vec).collect(),
                    Some(at) => vec![bytes[..at].to_vec(), bytes[at..].to_vec()],
                    None => vec![bytes.to_vec()],
                }
            };
            let mut updates = None;
            for piece in pieces(&push.client, client_at) {
                match stream.client_bytes(&piece) {
                    Ok(Some(got)) => {
                        assert!(updates.is_none(), "updates returned twice");
                        updates = Some(Ok(got));
                    }
                    Ok(None) => {}
                    Err(e) => return (Err(e), Err(GitError::Failed)),
                }
            }
            let mut report = None;
            for piece in pieces(&push.server, server_at) {
                match stream.server_bytes(&piece) {
                    Ok(Some(got)) => {
                        assert!(report.is_none(), "report returned twice");
                        report = Some(got);
                    }
                    Ok(None) => {}
                    Err(e) => return (updates.unwrap_or(Err(GitError::Failed)), Err(e)),
                }
                assert!(stream.buffered_bytes() <= 3 * MAX_PKT_LEN + 2 * MAX_LIST_BYTES);
            }
            (updates.unwrap_or(Err(GitError::Failed)), Ok(report))
        };
        let expected = (push.updates.clone(), push.report.clone());
        assert_eq!(run(None, None), expected, "whole");
        assert_eq!(run(Some(usize::MAX), Some(usize::MAX)), expected, "byte by byte");
        for at in 1..push.client.len() {
            assert_eq!(run(Some(at), None), expected, "client cut at {at}");
        }
        for at in 1..push.server.len() {
            assert_eq!(run(None, Some(at)), expected, "server cut at {at}");
        }
    }

    fn advertisement(capabilities: &str) -> Vec<u8> {
        [pkt(format!("{A} refs/heads/main\0{capabilities}\n")), pkt(format!("{B} refs/tags/v1\n")), FLUSH.to_vec()].concat()
    }

    fn commands(capabilities: &str) -> Vec<u8> {
        [
            pkt(format!("{A} {B} refs/heads/main\0 {capabilities}")),
            pkt(format!("{ZERO} {A} refs/heads/new")),
            pkt(format!("{B} {ZERO} refs/tags/old")),
            FLUSH.to_vec(),
            b"PACK\0\0\0\x02\0\0\0\x01 any bytes at all, 0000 included".to_vec(),
        ]
        .concat()
    }

    fn report_lines() -> Vec<u8> {
        [
            pkt("unpack ok\n"),
            pkt("ok refs/heads/main\n"),
            pkt("ng refs/heads/new pre-receive hook declined\n"),
            pkt("ok refs/tags/old\n"),
            FLUSH.to_vec(),
        ]
        .concat()
    }

    fn expected_report() -> PushReport {
        PushReport {
            unpack: Ok(()),
            refs: vec![
                status("refs/heads/main", None),
                status("refs/heads/new", Some("pre-receive hook declined")),
                status("refs/tags/old", None),
            ],
        }
    }

    fn expected_updates() -> Vec<RefUpdate> {
        vec![update(A, B, "refs/heads/main"), update(ZERO, A, "refs/heads/new"), update(B, ZERO, "refs/tags/old")]
    }

    #[test]
    fn push_without_side_band() {
        check(&Push {
            client: commands("report-status agent=git/2.43.0"),
            server: [advertisement("report-status delete-refs side-band-64k ofs-delta"), report_lines()].concat(),
            updates: Ok(expected_updates()),
            report: Ok(Some(expected_report())),
        });
    }

    #[test]
    fn push_with_side_band_64k() {
        let server = [
            advertisement("report-status delete-refs side-band-64k ofs-delta"),
            banded(2, b"remote: Resolving deltas: 100% (3/3)\n", 100),
            banded(1, &report_lines(), 17),
            FLUSH.to_vec(),
            b"anything after".to_vec(),
        ]
        .concat();
        check(&Push {
            client: commands("report-status side-band-64k quiet"),
            server,
            updates: Ok(expected_updates()),
            report: Ok(Some(expected_report())),
        });
    }

    #[test]
    fn fatal_error_on_side_band_3() {
        let server = [advertisement("side-band-64k"), banded(3, b"fatal: disk full\n", 100)].concat();
        let report = PushReport { unpack: Err("fatal: disk full".into()), refs: vec![] };
        check(&Push { client: commands("report-status side-band-64k"), server, updates: Ok(expected_updates()), report: Ok(Some(report)) });
    }

    #[test]
    fn unpack_failure() {
        let server =
            [advertisement(""), pkt("unpack index-pack abnormal exit\n"), pkt("ng refs/heads/main unpacker error\n"), FLUSH.to_vec()]
                .concat();
        let report =
            PushReport { unpack: Err("index-pack abnormal exit".into()), refs: vec![status("refs/heads/main", Some("unpacker error"))] };
        check(&Push { client: commands("report-status"), server, updates: Ok(expected_updates()), report: Ok(Some(report)) });
    }

    #[test]
    fn empty_push() {
        check(&Push { client: FLUSH.to_vec(), server: advertisement("report-status"), updates: Ok(vec![]), report: Ok(None) });
    }

    #[test]
    fn shallow_and_push_certificate_lines_are_skipped() {
        let client = [
            pkt(format!("shallow {A}")),
            pkt("push-cert\0report-status side-band-64k"),
            pkt("certificate version 0.1\n"),
            pkt("pusher Some One <one@example.com> 1700000000 +0000\n"),
            pkt("pushee ssh://git@example.com/repo.git\n"),
            pkt("\n"),
            pkt(format!("{A} {B} refs/heads/main\n")),
            pkt("-----BEGIN PGP SIGNATURE-----\n"),
            pkt("-----END PGP SIGNATURE-----\n"),
            pkt("push-cert-end\n"),
            FLUSH.to_vec(),
        ]
        .concat();
        let server = [
            advertisement("push-cert=1700000000-abc"),
            banded(1, &[pkt("unpack ok\n"), pkt("ok refs/heads/main\n"), FLUSH.to_vec()].concat(), 9),
        ]
        .concat();
        let report = PushReport { unpack: Ok(()), refs: vec![status("refs/heads/main", None)] };
        check(&Push { client, server, updates: Ok(vec![update(A, B, "refs/heads/main")]), report: Ok(Some(report)) });
    }

    #[test]
    fn sha256_and_malformed_commands() {
        let (old, new) = ("a".repeat(64), "b".repeat(64));
        let client = [
            pkt(format!("{old} {new} refs/heads/main\0report-status")),
            pkt(format!("{A} {new} refs/heads/mixed")),
            pkt(format!("{A} {B}")),
            pkt(format!("{A} {B} ")),
            pkt(format!("{A} {B} two words")),
            pkt(format!("{} {B} refs/heads/x", "g".repeat(40))),
            pkt(b"\xff\xfe"),
            FLUSH.to_vec(),
        ]
        .concat();
        check(&Push { client, server: vec![], updates: Ok(vec![update(&old, &new, "refs/heads/main")]), report: Ok(None) });
    }

    #[test]
    fn report_status_v2_option_lines() {
        let server =
            [advertisement(""), pkt("unpack ok\n"), pkt("ok refs/heads/main\n"), pkt("option refname refs/heads/main\n"), FLUSH.to_vec()]
                .concat();
        let report = PushReport { unpack: Ok(()), refs: vec![status("refs/heads/main", None)] };
        check(&Push { client: commands("report-status-v2"), server, updates: Ok(expected_updates()), report: Ok(Some(report)) });
    }

    #[test]
    fn malformed_streams() {
        let cases: Vec<(Vec<u8>, Vec<u8>, GitError)> = vec![
            (b"00zz".to_vec(), vec![], GitError::BadPktPrefix { prefix: *b"00zz" }),
            (b"+004".to_vec(), vec![], GitError::BadPktPrefix { prefix: *b"+004" }),
            (b"0003".to_vec(), vec![], GitError::BadPktLen { len: 3 }),
            (b"0001".to_vec(), vec![], GitError::BadPktLen { len: 1 }),
            (b"fff1".to_vec(), vec![], GitError::BadPktLen { len: 0xfff1 }),
            (
                FLUSH.to_vec(),
                [advertisement(""), pkt("ok refs/heads/main\n")].concat(),
                GitError::MalformedReport { what: "first line is not `unpack`" },
            ),
            (
                FLUSH.to_vec(),
                [advertisement(""), FLUSH.to_vec()].concat(),
                GitError::MalformedReport { what: "flush before the unpack line" },
            ),
            (
                commands("side-band-64k"),
                [advertisement(""), pkt("")].concat(),
                GitError::MalformedReport { what: "side-band packet without a channel" },
            ),
            (commands("side-band-64k"), [advertisement(""), pkt([4, b'x'])].concat(), GitError::BadBand { band: 4 }),
            (
                commands("side-band-64k"),
                [advertisement(""), pkt([2, b'x']), FLUSH.to_vec()].concat(),
                GitError::MalformedReport { what: "side-band ended before the report" },
            ),
            (commands("side-band-64k"), [advertisement(""), banded(1, b"00zz", 10)].concat(), GitError::BadPktPrefix { prefix: *b"00zz" }),
        ];
        for (client, server, error) in cases {
            let client_fails = server.is_empty();
            let (updates, report) =
                if client_fails { (Err(error), Err(GitError::Failed)) } else { (Ok(parse_updates(&client)), Err(error)) };
            check(&Push { client, server, updates, report });
        }
    }

    fn parse_updates(client: &[u8]) -> Vec<RefUpdate> {
        ReceivePackStream::new().client_bytes(client).unwrap().unwrap()
    }

    #[test]
    fn command_list_is_bounded() {
        let line = pkt(format!("{A} {B} refs/heads/{}", "x".repeat(60_000)));
        let mut stream = ReceivePackStream::new();
        let mut outcome = Ok(None);
        for _ in 0..=MAX_LIST_BYTES / line.len() {
            outcome = stream.client_bytes(&line);
        }
        assert_eq!(outcome, Err(GitError::CommandsTooLarge { max: MAX_LIST_BYTES }));
        assert_eq!(stream.client_bytes(FLUSH), Err(GitError::Failed));

        let many: Vec<u8> = (0..=MAX_REF_UPDATES).flat_map(|i| pkt(format!("{A} {B} refs/heads/{i}"))).collect();
        assert_eq!(ReceivePackStream::new().client_bytes(&many), Err(GitError::TooManyRefs { max: MAX_REF_UPDATES }));
    }

    #[test]
    fn report_is_bounded() {
        let mut stream = ReceivePackStream::new();
        stream.client_bytes(FLUSH).unwrap();
        stream.server_bytes(&[advertisement(""), pkt("unpack ok\n")].concat()).unwrap();
        let many: Vec<u8> = (0..=MAX_REF_UPDATES).flat_map(|i| pkt(format!("ok refs/heads/{i}\n"))).collect();
        assert_eq!(stream.server_bytes(&many), Err(GitError::TooManyRefs { max: MAX_REF_UPDATES }));
    }

    /// Random bytes, and real exchanges with random bytes flipped, cut at random points and fed
    /// in random directions: never a panic, and what is held stays within its bounds.
    #[test]
    fn random_bytes_never_panic() {
        let valid = [commands("side-band-64k"), advertisement(""), banded(1, &report_lines(), 7)].concat();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..3000 {
            let input: Vec<u8> = if round % 2 == 0 {
                (0..rng.below(400)).map(|_| b"0123456789abcdef\0\x01\x02 \n"[rng.below(21)]).collect()
            } else {
                rng.corrupt(&valid)
            };
            let _ = parse_git_command(&String::from_utf8_lossy(&input));
            let mut stream = ReceivePackStream::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at(rng.below(rest.len()) + 1);
                rest = tail;
                let _ = if rng.next() & 1 == 0 { stream.client_bytes(piece).map(|_| ()) } else { stream.server_bytes(piece).map(|_| ()) };
                assert!(stream.buffered_bytes() <= 3 * MAX_PKT_LEN + 2 * MAX_LIST_BYTES);
            }
        }
    }
}
