//! A MySQL connection's target as configured: where it is, the login witness uses there, and
//! TLS. Configuration only; the state of live sessions is kept by the front.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use witness_core::Secret;

use crate::back::TargetLogin;

/// One `protocol = "mysql"` connection's target.
pub struct MysqlTarget {
    pub name: String,
    /// `host:port`.
    pub address: String,
    pub user: String,
    pub password: Option<Secret>,
    /// The database witness selects at login; None selects none.
    pub database: Option<String>,
    /// TLS to the target: its config (verifying or not, as the connection's mode says) and the
    /// server name; None speaks plain text.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Refuse a target that does not offer TLS (modes `require` and `verify-full`).
    pub tls_required: bool,
    /// The TLS config verifies the target's certificate (mode `verify-full`).
    pub tls_verified: bool,
    /// The target's RSA public key (`server_public_key_file`), for caching_sha2_password's full
    /// login without verified TLS.
    pub server_public_key: Option<Arc<rsa::PublicKey>>,
}

impl MysqlTarget {
    /// How witness logs in, for a client that agreed on `capabilities` and speaks `charset`.
    pub(crate) fn login(&self, capabilities: u32, charset: u8, attributes: Vec<(String, String)>) -> TargetLogin<'_> {
        TargetLogin {
            address: &self.address,
            user: &self.user,
            password: self.password.as_ref().map_or(&b""[..], |p| p.expose().as_bytes()),
            database: self.database.as_deref(),
            tls: self.tls.clone(),
            tls_required: self.tls_required,
            tls_verified: self.tls_verified,
            server_public_key: self.server_public_key.clone(),
            client_capabilities: Some(capabilities),
            charset,
            attributes,
        }
    }

    /// How witness logs in for its own queries (the catalog masking reads).
    pub(crate) fn witness_login(&self) -> TargetLogin<'_> {
        TargetLogin {
            client_capabilities: None,
            charset: 45, // utf8mb4_general_ci
            attributes: vec![("program_name".into(), "witness".into())],
            ..self.login(0, 45, Vec::new())
        }
    }
}
