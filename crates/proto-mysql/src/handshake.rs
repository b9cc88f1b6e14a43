//! The login's first packets: the server's greeting (protocol 10: version, connection id,
//! scramble, capabilities, auth plugin) and the client's answer (capabilities, user, auth
//! response, database, plugin, attributes), and the short answer that asks for TLS first.
//! Both directions are read and written: witness answers a target's greeting as a client, and
//! will greet clients as a server.

use bytes::{BufMut, BytesMut};

use crate::wire::{put_lenenc, put_lenenc_bytes, put_nul_terminated, Fields, Truncated};

/// Capability flags, as both sides announce them.
pub mod capability {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

/// A server's greeting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20 bytes the client's auth response answers.
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities (in bytes MySQL reserves), when the server is MariaDB.
    pub mariadb_capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

/// A client's answer to the greeting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub mariadb_capabilities: u32,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Connection attributes (`_client_name`, `program_name`, …) in the order sent.
    pub attributes: Vec<(String, String)>,
}

/// The most bytes of connection attributes a client may send, as MySQL allows.
pub const MAX_ATTRIBUTES_BYTES: u64 = 64 << 10;

/// A greeting or answer witness cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the connection attributes are longer than {MAX_ATTRIBUTES_BYTES} bytes")]
    TooManyAttributes,
    #[error("the greeting speaks protocol {0}; witness speaks protocol 10 (MySQL 4.1 and later, MariaDB)")]
    Protocol(u8),
    #[error("the peer does not speak the 4.1 protocol (no CLIENT_PROTOCOL_41)")]
    Not41,
    #[error(transparent)]
    Truncated(#[from] Truncated),
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Greeting {
    pub fn parse(payload: &[u8]) -> Result<Greeting, HandshakeError> {
        let mut fields = Fields::new(payload);
        let protocol = fields.u8("protocol version")?;
        if protocol != 10 {
            return Err(HandshakeError::Protocol(protocol));
        }
        let server_version = text(fields.nul_terminated("server version")?);
        let connection_id = fields.uint(4, "connection id")? as u32;
        let mut scramble = fields.bytes(8, "scramble")?.to_vec();
        fields.u8("filler")?;
        let mut capabilities = fields.uint(2, "capabilities")? as u32;
        let (mut charset, mut status, mut mariadb_capabilities, mut auth_plugin) = (0, 0, 0, String::new());
        if !fields.is_empty() {
            charset = fields.u8("character set")?;
            status = fields.uint(2, "status")? as u16;
            capabilities |= (fields.uint(2, "capabilities")? as u32) << 16;
            let scramble_length = usize::from(fields.u8("scramble length")?);
            fields.bytes(6, "reserved bytes")?;
            let extended = fields.uint(4, "MariaDB capabilities")? as u32;
            // MariaDB clears CLIENT_LONG_PASSWORD (CLIENT_MYSQL) to say these bytes are its own.
            if capabilities & capability::LONG_PASSWORD == 0 {
                mariadb_capabilities = extended;
            }
            if capabilities & capability::SECURE_CONNECTION != 0 {
                let part = scramble_length.saturating_sub(8).max(13);
                let rest = fields.bytes(part, "scramble")?;
                // The second part ends with a NUL that is not part of the scramble.
                scramble.extend_from_slice(rest.strip_suffix(&[0]).unwrap_or(rest));
            }
            if capabilities & capability::PLUGIN_AUTH != 0 {
                auth_plugin = text(fields.nul_or_end());
            }
        }
        if capabilities & capability::PROTOCOL_41 == 0 {
            return Err(HandshakeError::Not41);
        }
        Ok(Greeting { server_version, connection_id, scramble, capabilities, mariadb_capabilities, charset, status, auth_plugin })
    }

    /// Writes the greeting; its scramble is witness's own, 20 bytes.
    pub fn write(&self, out: &mut BytesMut) {
        assert_eq!(self.scramble.len(), 20, "witness greets with a 20-byte scramble");
        out.put_u8(10);
        put_nul_terminated(out, self.server_version.as_bytes());
        out.put_u32_le(self.connection_id);
        out.extend_from_slice(&self.scramble[..8]);
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.charset);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8(self.scramble.len() as u8 + 1);
        out.put_bytes(0, 6);
        out.put_u32_le(if self.capabilities & capability::LONG_PASSWORD == 0 { self.mariadb_capabilities } else { 0 });
        out.extend_from_slice(&self.scramble[8..]);
        out.put_u8(0);
        put_nul_terminated(out, self.auth_plugin.as_bytes());
    }
}

impl HandshakeResponse {
    pub fn parse(payload: &[u8]) -> Result<HandshakeResponse, HandshakeError> {
        let mut fields = Fields::new(payload);
        let capabilities = fields.uint(4, "capabilities")? as u32;
        if capabilities & capability::PROTOCOL_41 == 0 {
            return Err(HandshakeError::Not41);
        }
        let max_packet = fields.uint(4, "max packet size")? as u32;
        let charset = fields.u8("character set")?;
        fields.bytes(19, "reserved bytes")?;
        let mariadb_capabilities = fields.uint(4, "MariaDB capabilities")? as u32;
        let mut response = HandshakeResponse { capabilities, max_packet, charset, mariadb_capabilities, ..Default::default() };
        if fields.is_empty() {
            // Only the part that asks for TLS.
            return Ok(response);
        }
        response.user = text(fields.nul_terminated("user")?);
        response.auth_response = if capabilities & capability::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            fields.lenenc_bytes("auth response")?.unwrap_or_default().to_vec()
        } else if capabilities & capability::SECURE_CONNECTION != 0 {
            let length = usize::from(fields.u8("auth response length")?);
            fields.bytes(length, "auth response")?.to_vec()
        } else {
            fields.nul_terminated("auth response")?.to_vec()
        };
        if capabilities & capability::CONNECT_WITH_DB != 0 && !fields.is_empty() {
            response.database = Some(text(fields.nul_terminated("database")?));
        }
        if capabilities & capability::PLUGIN_AUTH != 0 && !fields.is_empty() {
            response.auth_plugin = Some(text(fields.nul_or_end()));
        }
        if capabilities & capability::CONNECT_ATTRS != 0 && !fields.is_empty() {
            let total = fields.lenenc("attributes length")?.unwrap_or(0);
            if total > MAX_ATTRIBUTES_BYTES {
                return Err(HandshakeError::TooManyAttributes);
            }
            let mut attributes = Fields::new(fields.bytes(usize::try_from(total).unwrap_or(usize::MAX), "attributes")?);
            while !attributes.is_empty() {
                let key = text(attributes.lenenc_bytes("attribute name")?.unwrap_or_default());
                let value = text(attributes.lenenc_bytes("attribute value")?.unwrap_or_default());
                response.attributes.push((key, value));
            }
        }
        Ok(response)
    }

    /// The answer's first 32 bytes alone: what a client sends to ask for TLS (with
    /// `capability::SSL` set) before the rest, over TLS.
    pub fn write_tls_request(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.put_bytes(0, 19);
        out.put_u32_le(self.mariadb_capabilities);
    }

    pub fn write(&self, out: &mut BytesMut) {
        self.write_tls_request(out);
        put_nul_terminated(out, self.user.as_bytes());
        if self.capabilities & capability::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(out, &self.auth_response);
        } else {
            // Every plugin answer witness sends is at most 64 bytes (ed25519's signature).
            let length = self.auth_response.len().min(255);
            out.put_u8(length as u8);
            out.extend_from_slice(&self.auth_response[..length]);
        }
        if self.capabilities & capability::CONNECT_WITH_DB != 0 {
            put_nul_terminated(out, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & capability::PLUGIN_AUTH != 0 {
            put_nul_terminated(out, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & capability::CONNECT_ATTRS != 0 {
            let mut attributes = BytesMut::new();
            for (key, value) in &self.attributes {
                put_lenenc_bytes(&mut attributes, key.as_bytes());
                put_lenenc_bytes(&mut attributes, value.as_bytes());
            }
            put_lenenc(out, attributes.len() as u64);
            out.extend_from_slice(&attributes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_round_trip() {
        let greeting = Greeting {
            server_version: "5.5.5-10.11.6-MariaDB-0+deb12u1".into(),
            connection_id: 42,
            scramble: (1..=20).collect(),
            capabilities: capability::PROTOCOL_41 | capability::SECURE_CONNECTION | capability::PLUGIN_AUTH | capability::CONNECT_WITH_DB,
            mariadb_capabilities: 0x1d,
            charset: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        };
        let mut out = BytesMut::new();
        greeting.write(&mut out);
        assert_eq!(Greeting::parse(&out), Ok(greeting));
    }

    #[test]
    fn answers_round_trip_with_every_optional_part() {
        let answer = HandshakeResponse {
            capabilities: capability::PROTOCOL_41
                | capability::SECURE_CONNECTION
                | capability::PLUGIN_AUTH
                | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA
                | capability::CONNECT_WITH_DB
                | capability::CONNECT_ATTRS,
            max_packet: 1 << 24,
            charset: 45,
            mariadb_capabilities: 0,
            user: "claude".into(),
            auth_response: vec![7; 20],
            database: Some("mariadb-local".into()),
            auth_plugin: Some("mysql_native_password".into()),
            attributes: vec![("_client_name".into(), "libmariadb".into())],
        };
        let mut out = BytesMut::new();
        answer.write(&mut out);
        assert_eq!(HandshakeResponse::parse(&out), Ok(answer));
    }

    #[test]
    fn short_or_foreign_greetings_are_refused() {
        assert_eq!(Greeting::parse(&[9]), Err(HandshakeError::Protocol(9)));
        assert!(matches!(Greeting::parse(&[10, b'x']), Err(HandshakeError::Truncated(_))));
    }
}
