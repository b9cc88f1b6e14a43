//! The type bytes of protocol 3.0 messages, named per direction. One byte means different
//! messages each way (`D` is Describe from the client and DataRow from the target, `S` Sync and
//! ParameterStatus), so code that reads a message names the direction it came from. Also the
//! single bytes some messages carry inside: what a Describe or Close names, error and notice
//! field codes, transaction states, and the answer to an SSLRequest.
//!
//! Only the messages witness reads or writes are here; others are relayed without a name.

/// Messages a client sends (after startup).
pub mod frontend {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, and the SASLInitialResponse and SASLResponse that share its byte.
    pub const PASSWORD: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
}

/// Messages a target (or witness, in its place) sends.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NO_DATA: u8 = b'n';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// What a Describe or Close names: the byte before the name.
pub mod described {
    pub const STATEMENT: u8 = b'S';
    pub const PORTAL: u8 = b'P';
}

/// Field codes of an ErrorResponse or NoticeResponse.
pub mod error_field {
    /// The severity, localized.
    pub const SEVERITY: u8 = b'S';
    /// The severity, never localized (PostgreSQL 9.6 and later).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// The SQLSTATE.
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const HINT: u8 = b'H';
    /// Where in the server's source the error was raised.
    pub const FILE: u8 = b'F';
    pub const LINE: u8 = b'L';
    pub const ROUTINE: u8 = b'R';
}

/// The transaction state a ReadyForQuery reports.
pub mod transaction {
    /// Not in a transaction block.
    pub const IDLE: u8 = b'I';
    pub const IN_BLOCK: u8 = b'T';
    /// In a failed transaction block.
    pub const FAILED: u8 = b'E';
}

/// The one byte that answers an SSLRequest or GSSENCRequest.
pub mod encryption {
    pub const ACCEPTED: u8 = b'S';
    pub const REFUSED: u8 = b'N';
}

/// The request codes of an Authentication message.
pub mod auth_request {
    /// Authenticated: no more requests follow.
    pub const OK: i32 = 0;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    /// SASL, with the mechanisms offered.
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}
