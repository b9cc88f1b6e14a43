//! A PostgreSQL target as witness connects to it: address, database, the login witness holds, the
//! authentication methods it answers, and TLS. The password lives here and in the back half only;
//! it is never shown or recorded.

use std::fmt;
use std::sync::Arc;

use rustls::ClientConfig;

use crate::binding::{ChannelBindingMode, UnknownChoice};
use crate::catalog::Catalog;
use crate::tls::TlsMode;

/// One configured PostgreSQL connection.
#[derive(Clone)]
pub struct PgTarget {
    /// The connection's name, as clients give it in `dbname`.
    pub name: String,
    /// host:port of the target.
    pub address: String,
    pub database: String,
    /// The role witness logs in as.
    pub login: PgLogin,
    /// The password exchanges witness answers. A target that asks for another gets no credential.
    pub auth: Vec<AuthMethod>,
    pub channel_binding: ChannelBindingMode,
    pub tls_mode: TlsMode,
    /// The TLS client config for the mode (None for `disable`).
    pub tls: Option<Arc<ClientConfig>>,
    /// Table and column names looked up for masking, shared by the target's sessions.
    pub catalog: Arc<Catalog>,
}

/// A database role witness logs in as, and its password (None: the target asks for none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgLogin {
    pub user: String,
    pub password: Option<Secret>,
}

/// A password exchange a target may ask witness for. Asking for no password at all (trust) is
/// always answered, since nothing is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// SCRAM-SHA-256: the password never crosses the wire, and the target proves it knows it.
    ScramSha256,
    /// An MD5 hash of password and user, replayable by whoever reads it.
    Md5,
    /// The password itself, in the clear unless the connection is TLS.
    Password,
}

/// A credential. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

// === impl PgTarget ===

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("auth", &self.auth)
            .field("channel_binding", &self.channel_binding)
            .field("tls_mode", &self.tls_mode)
            .finish()
    }
}

impl PgTarget {
    /// The host part of the address, for TLS server names.
    pub fn host(&self) -> &str {
        match self.address.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => &self.address,
        }
    }
}

// === impl AuthMethod ===

impl AuthMethod {
    /// The default `auth` of a connection: SCRAM only.
    pub const DEFAULT: &'static [AuthMethod] = &[AuthMethod::ScramSha256];

    /// The name in a connection's `auth` list (as in pg_hba.conf).
    pub fn config_name(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Password => "password",
        }
    }

    /// What a target asking for this method asks for, in an error message.
    pub fn asked(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "SCRAM-SHA-256",
            AuthMethod::Md5 => "an MD5 password hash",
            AuthMethod::Password => "a cleartext password",
        }
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<AuthMethod, UnknownChoice> {
        Ok(match s {
            "scram-sha-256" => AuthMethod::ScramSha256,
            "md5" => AuthMethod::Md5,
            "password" => AuthMethod::Password,
            other => return Err(UnknownChoice { value: other.to_string(), choices: "\"scram-sha-256\", \"md5\" or \"password\"" }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str, password: &str) -> PgLogin {
        PgLogin { user: user.into(), password: Some(Secret::new(password.into())) }
    }

    fn target() -> PgTarget {
        PgTarget {
            name: "pg".into(),
            address: "127.0.0.1:5432".into(),
            database: "app".into(),
            login: login("app", "hunter2"),
            auth: AuthMethod::DEFAULT.to_vec(),
            channel_binding: ChannelBindingMode::Prefer,
            tls_mode: TlsMode::Prefer,
            tls: None,
            catalog: Default::default(),
        }
    }

    #[test]
    fn secrets_never_print() {
        let target = target();
        let shown = format!("{target:?} {:?}", target.login.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(target.host(), "127.0.0.1");
    }

    #[test]
    fn auth_methods_parse_by_their_pg_hba_names() {
        for method in [AuthMethod::ScramSha256, AuthMethod::Md5, AuthMethod::Password] {
            assert_eq!(method.config_name().parse(), Ok(method));
        }
        assert!("trust".parse::<AuthMethod>().unwrap_err().to_string().contains("\"md5\""));
    }
}
