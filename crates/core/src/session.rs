//! Session identity: the id that names a session everywhere, and what is known about a session
//! when it opens (who, through which connection, for which task, from where).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A session id: 16 bytes laid out like a UUIDv7 (48 bits of Unix milliseconds, then random
/// bits), so ids sort by the time their session opened and never collide across gateways.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

/// The string given as a session id is not 32 hex digits (dashes allowed, as in a UUID).
#[derive(Debug, thiserror::Error)]
#[error("invalid session id {given:?}: expected a UUID such as 0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e")]
pub struct InvalidSessionId {
    pub given: String,
}

/// The start of a session id as a person types it: 1 to 32 hex digits, dashes and case ignored.
/// A whole id is a prefix too. Which sessions it names is the index's to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIdPrefix {
    /// Lowercase hex digits, no dashes.
    digits: String,
}

/// The string given as the start of a session id is not 1 to 32 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid session id {given:?}: expected a session id such as 0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e, or its first hex digits")]
pub struct InvalidSessionIdPrefix {
    pub given: String,
}

/// Which protocol a session speaks. The ledger stores its name; new protocols extend this enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
    Mysql,
    Ssh,
    Http,
    Kubernetes,
    /// Sessions made up by `witness bench` and tests; never by a client.
    Synthetic,
    /// Witness's own audit trail: who viewed which recording, created or revoked which token,
    /// decided which approval. One such session per witness process, opened on first need.
    Audit,
}

/// A protocol name that witness does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown protocol {given:?}: expected one of postgres, mysql, ssh, http, kubernetes, synthetic, audit")]
pub struct UnknownProtocol {
    pub given: String,
}

/// What is known about a session when it opens. Every field here is safe to record: it never
/// holds a target credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The authenticated identity that opened the session (a token's identity, a JWT subject).
    pub identity: String,
    /// The configured connection name the session goes through (not the target address).
    pub connection: String,
    pub protocol: Protocol,
    /// The task the agent said it works on, when it said one.
    pub task: Option<String>,
    /// The client's socket address as the gateway saw it.
    pub client_addr: Option<String>,
    /// The caller's groups when the session opened (from its token, key or identity provider),
    /// so that rules about groups (retention, say) can be applied after the session ended.
    /// Empty in sessions recorded before groups were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

// === impl SessionId ===

impl SessionId {
    /// A new id for a session opening now.
    pub fn new() -> SessionId {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut bytes: [u8; 16] = rand::random();
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        // Version 7 and the RFC 4122 variant, so tools that parse UUIDs accept these ids.
        bytes[6] = (bytes[6] & 0x0f) | 0x70;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        SessionId(bytes)
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> SessionId {
        SessionId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        SessionId::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<SessionId, InvalidSessionId> {
        let invalid = || InvalidSessionId { given: s.to_string() };
        let digits: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
        if digits.len() != 32 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| invalid())?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| invalid())?;
        }
        Ok(SessionId(bytes))
    }
}

// === impl SessionIdPrefix ===

impl SessionIdPrefix {
    /// The smallest and the largest id that start with this prefix: the ids it names are the
    /// ones between them, both included, in byte order.
    pub fn bounds(&self) -> ([u8; 16], [u8; 16]) {
        let mut low = [0u8; 16];
        let mut high = [0xffu8; 16];
        for (i, digit) in self.digits.bytes().enumerate() {
            let nibble = (digit as char).to_digit(16).expect("only hex digits are kept") as u8;
            let shift = if i % 2 == 0 { 4 } else { 0 };
            low[i / 2] = (low[i / 2] & !(0xf << shift)) | (nibble << shift);
            high[i / 2] = (high[i / 2] & !(0xf << shift)) | (nibble << shift);
        }
        (low, high)
    }

    pub fn matches(&self, id: SessionId) -> bool {
        let (low, high) = self.bounds();
        low <= id.0 && id.0 <= high
    }

    /// The id itself, when the prefix is a whole id.
    pub fn whole_id(&self) -> Option<SessionId> {
        (self.digits.len() == 32).then(|| SessionId(self.bounds().0))
    }
}

impl FromStr for SessionIdPrefix {
    type Err = InvalidSessionIdPrefix;

    fn from_str(s: &str) -> Result<SessionIdPrefix, InvalidSessionIdPrefix> {
        let digits: String = s.chars().filter(|&c| c != '-').map(|c| c.to_ascii_lowercase()).collect();
        if digits.is_empty() || digits.len() > 32 || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(InvalidSessionIdPrefix { given: s.to_string() });
        }
        Ok(SessionIdPrefix { digits })
    }
}

impl fmt::Display for SessionIdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits)
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// === impl Protocol ===

impl Protocol {
    /// The protocols clients reach targets with (not witness's own sessions): what per-protocol
    /// metrics show, each from the start.
    pub const CLIENTS: [Protocol; 5] = [Protocol::Postgres, Protocol::Mysql, Protocol::Ssh, Protocol::Http, Protocol::Kubernetes];

    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
            Protocol::Kubernetes => "kubernetes",
            Protocol::Synthetic => "synthetic",
            Protocol::Audit => "audit",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Protocol, UnknownProtocol> {
        Ok(match s {
            "postgres" => Protocol::Postgres,
            "mysql" => Protocol::Mysql,
            "ssh" => Protocol::Ssh,
            "http" => Protocol::Http,
            "kubernetes" => Protocol::Kubernetes,
            "synthetic" => Protocol::Synthetic,
            "audit" => Protocol::Audit,
            _ => return Err(UnknownProtocol { given: s.to_string() }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_names_the_ids_that_start_with_it() {
        let id: SessionId = "0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e".parse().unwrap();
        for (given, matches) in [
            ("0", true),
            ("0192F0C4-6", true),
            ("0192f0c46b7e7a3c9d2e5f1a2b3c4d5e", true),
            ("0192f0c4-6b7f", false),
            ("1", false),
            ("0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5f", false),
        ] {
            let prefix: SessionIdPrefix = given.parse().unwrap();
            assert_eq!(prefix.matches(id), matches, "{given}");
        }
        let whole: SessionIdPrefix = id.to_string().parse().unwrap();
        assert_eq!(whole.whole_id(), Some(id));
        assert_eq!("019".parse::<SessionIdPrefix>().unwrap().bounds().0[..2], [0x01, 0x90]);
        assert_eq!("019".parse::<SessionIdPrefix>().unwrap().bounds().1[..2], [0x01, 0x9f]);
        for bad in ["", "-", "xyz", "0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e0"] {
            assert!(bad.parse::<SessionIdPrefix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_ids_round_trip_through_text_and_start_with_their_time() {
        let first = SessionId::new();
        let text = first.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<SessionId>().unwrap(), first);
        assert_eq!(text.replace('-', "").parse::<SessionId>().unwrap(), first);
        assert!("not-an-id".parse::<SessionId>().is_err());
        assert!("zz".repeat(16).parse::<SessionId>().is_err());
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&first.as_bytes()[..6]);
        let opened_ms = u64::from_be_bytes(millis);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(now_ms - opened_ms < 60_000, "the id starts with the time its session opened");
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in
            [Protocol::Postgres, Protocol::Mysql, Protocol::Ssh, Protocol::Http, Protocol::Kubernetes, Protocol::Synthetic, Protocol::Audit]
        {
            assert_eq!(p.as_str().parse::<Protocol>().unwrap(), p);
        }
        assert!("ftp".parse::<Protocol>().is_err());
    }
}
