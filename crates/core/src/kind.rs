//! The vocabulary of event kinds: every kind witness records, named once.
//!
//! The naming rule: `area.what`, lowercase ASCII, words inside either part joined by `_`. The
//! area is a protocol (`pg`, `ssh`, `sftp`, `git`, `http`) or the gateway's own business (`session`,
//! `approval`, `recording`, `token`, `key`, `console`, `login`, `index`). Code compares kinds with these
//! constants, never with string literals; a new protocol adds its kinds here.
//!
//! Ledgers written before the rule hold two kinds with a `-` (`ssh.target-refused`,
//! `ssh.target-error`); they keep verifying as recorded, and [`current_name`] reads them as the
//! kinds they mean today.

use std::borrow::Cow;

use crate::EventKind;

const fn named(name: &'static str) -> EventKind {
    EventKind(Cow::Borrowed(name))
}

// The gateway's own events, in every session.
/// The first event of every session; its attributes hold the session's [`crate::SessionInfo`].
pub const SESSION_START: EventKind = named("session.start");
/// The last event of every session; its attributes say why it ended.
pub const SESSION_END: EventKind = named("session.end");
/// How a held request's wait ended: approved, denied, timed out or withdrawn.
pub const APPROVAL_DECIDED: EventKind = named("approval.decided");

// The audit trail (its own session, protocol `audit`).
/// A recording (a session, its events, its terminal) was shown to someone.
pub const RECORDING_VIEWED: EventKind = named("recording.viewed");
/// Someone searched recordings for a text.
pub const RECORDING_SEARCHED: EventKind = named("recording.searched");
/// Someone exported a recording (`witness export`).
pub const RECORDING_EXPORTED: EventKind = named("recording.exported");
/// A reader asked to read a recording a `[[review.rules]]` rule covers.
pub const RECORDING_ACCESS_REQUESTED: EventKind = named("recording.access_requested");
/// Another reviewer granted (for the rule's window) or denied such a request.
pub const RECORDING_ACCESS_DECIDED: EventKind = named("recording.access_decided");
/// Someone logged in to the review console.
pub const CONSOLE_LOGIN: EventKind = named("console.login");
pub const TOKEN_CREATED: EventKind = named("token.created");
pub const TOKEN_REVOKED: EventKind = named("token.revoked");
/// An SSH public key was registered to an identity (`witness identity add-key`).
pub const KEY_ADDED: EventKind = named("key.added");
/// A registered SSH public key was removed.
pub const KEY_REMOVED: EventKind = named("key.removed");
/// A listener refused a login (a wrong, unknown or revoked token, a refused JWT).
pub const LOGIN_REFUSED: EventKind = named("login.refused");
/// An administrator ended a live session; the session's own `session.end` says who and why.
pub const SESSION_TERMINATED: EventKind = named("session.terminated");
/// The index disagreed with the segments when a reviewer's check compared them.
pub const INDEX_ALTERED: EventKind = named("index.altered");
/// The data keys of sessions were destroyed (by a `[[retention]]` rule's sweep or by `witness
/// purge`): their sealed contents are gone; the record names the sessions, the rule or reason.
pub const RETENTION_SHREDDED: EventKind = named("retention.shredded");
/// A session was put on legal hold (`witness hold`): retention does not shred it.
pub const RETENTION_HELD: EventKind = named("retention.held");
/// A session's legal hold was released.
pub const RETENTION_RELEASED: EventKind = named("retention.released");
/// A ledger's sessions were rewritten, sealed, into this one (`witness migrate --encrypt`): the
/// old ledger's key, last checkpoint and each session's last chain hash there.
pub const LEDGER_MIGRATED: EventKind = named("ledger.migrated");
/// Events `witness bench` makes up (protocol `synthetic`).
pub const BENCH_EVENT: EventKind = named("bench.event");

// PostgreSQL.
pub const PG_STARTUP: EventKind = named("pg.startup");
/// A simple-protocol query (its text is the payload).
pub const PG_QUERY: EventKind = named("pg.query");
/// A statement prepared by Parse.
pub const PG_PARSE: EventKind = named("pg.parse");
/// An extended-protocol execution of a prepared statement, with its parameters.
pub const PG_EXECUTE: EventKind = named("pg.execute");
pub const PG_FUNCTION_CALL: EventKind = named("pg.function_call");
pub const PG_FUNCTION_RESULT: EventKind = named("pg.function_result");
/// A statement's outcome: its command tag, columns and rows up to the cap, or its error.
pub const PG_RESULT: EventKind = named("pg.result");
pub const PG_COPY_IN: EventKind = named("pg.copy_in");
pub const PG_COPY_OUT: EventKind = named("pg.copy_out");
pub const PG_NOTICE: EventKind = named("pg.notice");
pub const PG_NOTIFICATION: EventKind = named("pg.notification");
/// A server setting the target reported (ParameterStatus).
pub const PG_PARAMETER: EventKind = named("pg.parameter");
pub const PG_CANCEL: EventKind = named("pg.cancel");

// SSH.
/// How the client logged in to witness.
pub const SSH_LOGIN: EventKind = named("ssh.login");
/// Witness could not log in to the target.
pub const SSH_TARGET_ERROR: EventKind = named("ssh.target_error");
/// The target (or the client, for a channel the target opened) refused a request.
pub const SSH_TARGET_REFUSED: EventKind = named("ssh.target_refused");
pub const SSH_CHANNEL: EventKind = named("ssh.channel");
pub const SSH_PTY: EventKind = named("ssh.pty");
pub const SSH_RESIZE: EventKind = named("ssh.resize");
pub const SSH_ENV: EventKind = named("ssh.env");
pub const SSH_SHELL: EventKind = named("ssh.shell");
pub const SSH_EXEC: EventKind = named("ssh.exec");
pub const SSH_SUBSYSTEM: EventKind = named("ssh.subsystem");
pub const SSH_SIGNAL: EventKind = named("ssh.signal");
/// Bytes from the client (keystrokes, a command's stdin).
pub const SSH_INPUT: EventKind = named("ssh.input");
/// Bytes from the target (a terminal's output, stdout or stderr).
pub const SSH_OUTPUT: EventKind = named("ssh.output");
pub const SSH_EOF: EventKind = named("ssh.eof");
pub const SSH_EXIT: EventKind = named("ssh.exit");
pub const SSH_CLOSE: EventKind = named("ssh.close");
/// A forwarding request, or a channel through one.
pub const SSH_FORWARD: EventKind = named("ssh.forward");
/// What a chunk of an SFTP stream asked for, and what it got.
pub const SFTP_REQUEST: EventKind = named("sftp.request");
pub const SFTP_REPLY: EventKind = named("sftp.reply");
/// The refs a git push updates, and the target's report on them.
pub const GIT_PUSH: EventKind = named("git.push");
pub const GIT_REPORT: EventKind = named("git.report");

// HTTP.
/// Which credential an HTTP client's first request on a connection presented.
pub const HTTP_LOGIN: EventKind = named("http.login");
/// A request's method, path, query, headers (credentials masked) and the start of its body.
pub const HTTP_REQUEST: EventKind = named("http.request");
/// The whole length and digest of a request body longer than what `http.request` holds.
pub const HTTP_REQUEST_BODY: EventKind = named("http.request_body");
/// A response's status, headers and timing and the start of its body, recorded as its body ends.
pub const HTTP_RESPONSE: EventKind = named("http.response");
/// A piece of a streamed response's body (one without a length: a watch, server-sent events,
/// `logs -f`), recorded as it passes, up to the recording cap.
pub const HTTP_RESPONSE_PART: EventKind = named("http.response_part");
/// A request refused before any rule saw it (another identity's credential on the connection).
pub const HTTP_REFUSED: EventKind = named("http.refused");
/// The upstream could not be reached or broke off its answer.
pub const HTTP_UPSTREAM_ERROR: EventKind = named("http.upstream_error");
/// A piece of a WebSocket's traffic after an upgrade: the payload of one or more frames.
pub const HTTP_WEBSOCKET: EventKind = named("http.websocket");
/// A WebSocket relayed after an upgrade ended; the summary says how.
pub const HTTP_WEBSOCKET_CLOSED: EventKind = named("http.websocket_closed");

// MySQL and MariaDB.
/// How the client logged in, and as whom witness logged in to the target.
pub const MYSQL_LOGIN: EventKind = named("mysql.login");
/// A text query (COM_QUERY; its text is the payload).
pub const MYSQL_QUERY: EventKind = named("mysql.query");
/// A statement prepared on the server (COM_STMT_PREPARE).
pub const MYSQL_PREPARE: EventKind = named("mysql.prepare");
/// An execution of a prepared statement, with its parameters typed.
pub const MYSQL_EXECUTE: EventKind = named("mysql.execute");
/// Another command: a ping, a change of database, a field list, a fetch from a cursor, …
pub const MYSQL_COMMAND: EventKind = named("mysql.command");
/// The client's file a `LOAD DATA LOCAL INFILE` sent, counted (as PostgreSQL's COPY data is).
pub const MYSQL_LOCAL_FILE: EventKind = named("mysql.local_file");
/// A command's outcome: OK with affected rows and warnings, columns and rows up to the cap, or
/// the error.
pub const MYSQL_RESULT: EventKind = named("mysql.result");

/// Every kind of the vocabulary.
pub const ALL: [&EventKind; 71] = [
    &SESSION_START,
    &SESSION_END,
    &APPROVAL_DECIDED,
    &RECORDING_VIEWED,
    &RECORDING_SEARCHED,
    &RECORDING_EXPORTED,
    &CONSOLE_LOGIN,
    &TOKEN_CREATED,
    &TOKEN_REVOKED,
    &KEY_ADDED,
    &KEY_REMOVED,
    &SESSION_TERMINATED,
    &LOGIN_REFUSED,
    &INDEX_ALTERED,
    &RECORDING_ACCESS_REQUESTED,
    &RECORDING_ACCESS_DECIDED,
    &RETENTION_SHREDDED,
    &RETENTION_HELD,
    &RETENTION_RELEASED,
    &LEDGER_MIGRATED,
    &BENCH_EVENT,
    &PG_STARTUP,
    &PG_QUERY,
    &PG_PARSE,
    &PG_EXECUTE,
    &PG_FUNCTION_CALL,
    &PG_FUNCTION_RESULT,
    &PG_RESULT,
    &PG_COPY_IN,
    &PG_COPY_OUT,
    &PG_NOTICE,
    &PG_NOTIFICATION,
    &PG_PARAMETER,
    &PG_CANCEL,
    &SSH_LOGIN,
    &SSH_TARGET_ERROR,
    &SSH_TARGET_REFUSED,
    &SSH_CHANNEL,
    &SSH_PTY,
    &SSH_RESIZE,
    &SSH_ENV,
    &SSH_SHELL,
    &SSH_EXEC,
    &SSH_SUBSYSTEM,
    &SSH_SIGNAL,
    &SSH_INPUT,
    &SSH_OUTPUT,
    &SSH_EOF,
    &SSH_EXIT,
    &SSH_CLOSE,
    &SSH_FORWARD,
    &SFTP_REQUEST,
    &SFTP_REPLY,
    &GIT_PUSH,
    &GIT_REPORT,
    &HTTP_LOGIN,
    &HTTP_REQUEST,
    &HTTP_REQUEST_BODY,
    &HTTP_RESPONSE,
    &HTTP_RESPONSE_PART,
    &HTTP_REFUSED,
    &HTTP_UPSTREAM_ERROR,
    &HTTP_WEBSOCKET,
    &HTTP_WEBSOCKET_CLOSED,
    &MYSQL_LOGIN,
    &MYSQL_QUERY,
    &MYSQL_PREPARE,
    &MYSQL_EXECUTE,
    &MYSQL_COMMAND,
    &MYSQL_LOCAL_FILE,
    &MYSQL_RESULT,
];

/// Kinds recorded before the naming rule, with the kind each means today.
const FORMER_NAMES: [(&str, &EventKind); 2] = [("ssh.target-refused", &SSH_TARGET_REFUSED), ("ssh.target-error", &SSH_TARGET_ERROR)];

/// The name a recorded kind has today: itself, unless it was recorded under a former name.
pub fn current_name(recorded: &str) -> &str {
    FORMER_NAMES.iter().find(|(former, _)| *former == recorded).map_or(recorded, |(_, kind)| kind.as_str())
}

/// Whether a name keeps the naming rule: `area.what`, lowercase letters, digits and `_`.
pub fn follows_the_rule(name: &str) -> bool {
    let word = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !part.starts_with('_')
            && !part.ends_with('_')
    };
    matches!(name.split_once('.'), Some((area, what)) if word(area) && word(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_follows_the_naming_rule_once() {
        let mut seen = std::collections::HashSet::new();
        for kind in ALL {
            assert!(follows_the_rule(kind.as_str()), "{kind:?} breaks the naming rule");
            seen.insert(kind.as_str());
        }
        assert_eq!(seen.len(), ALL.len(), "a kind is named twice");
        for bad in ["ssh.target-refused", "Pg.query", "pg", "pg.", ".query", "pg.copy.in", "pg._in"] {
            assert!(!follows_the_rule(bad), "{bad:?}");
        }
    }

    #[test]
    fn former_names_read_as_the_kinds_they_mean() {
        assert_eq!(current_name("ssh.target-refused"), "ssh.target_refused");
        assert_eq!(current_name("ssh.target-error"), "ssh.target_error");
        assert_eq!(current_name("pg.query"), "pg.query");
    }
}
