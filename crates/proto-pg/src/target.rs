//! A PostgreSQL target as witness connects to it: address, database, the login witness holds, and
//! TLS. The password lives here and in the back half only; it is never shown or recorded.

use std::fmt;
use std::sync::Arc;

use rustls::ClientConfig;

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
    pub user: String,
    pub password: Option<Secret>,
    pub tls_mode: TlsMode,
    /// The TLS client config for the mode (None for `disable`).
    pub tls: Option<Arc<ClientConfig>>,
    /// Table and column names looked up for masking, shared by the target's sessions.
    pub catalog: Arc<Catalog>,
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

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let target = PgTarget {
            name: "pg".into(),
            address: "127.0.0.1:5432".into(),
            database: "app".into(),
            user: "app".into(),
            password: Some(Secret::new("hunter2".into())),
            tls_mode: TlsMode::Prefer,
            tls: None,
            catalog: Default::default(),
        };
        let shown = format!("{target:?} {:?}", target.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(target.host(), "127.0.0.1");
    }
}
