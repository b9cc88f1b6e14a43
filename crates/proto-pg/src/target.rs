//! A PostgreSQL target as witness connects to it: address, database, the logins witness holds
//! (its main one and one per group of callers), the authentication methods it answers, and TLS.
//! Passwords live here and in the back half only; they are never shown or recorded.
//!
//! Which login a session uses is decided here, from the caller's groups alone; what the login may
//! do is the target's business (its roles and grants), not witness's.
//!
//! A target is configuration only: what witness learns of it while running (its catalog's table
//! names) is kept by the front, per connection (`catalog::Catalogs`).

use std::fmt;
use std::sync::Arc;

use rustls::ClientConfig;
use witness_core::Secret;

use crate::binding::{ChannelBindingMode, UnknownChoice};
use crate::tls::TlsMode;

/// One configured PostgreSQL connection.
#[derive(Clone)]
pub struct PgTarget {
    /// The connection's name, as clients give it in `dbname`.
    pub name: String,
    /// host:port of the target.
    pub address: String,
    pub database: String,
    /// The connection's own login: for callers no group login names, and for witness's catalog
    /// lookups (which must see every table whatever role a session runs as).
    pub login: PgLogin,
    /// Logins by the caller's groups, in config order; the first that names one of the caller's
    /// groups is used.
    pub group_logins: Vec<GroupLogin>,
    /// The password exchanges witness answers. A target that asks for another gets no credential.
    pub auth: Vec<AuthMethod>,
    pub channel_binding: ChannelBindingMode,
    pub tls_mode: TlsMode,
    /// The TLS client config for the mode (None for `disable`).
    pub tls: Option<Arc<ClientConfig>>,
}

/// A database role witness logs in as, and its password (None: the target asks for none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgLogin {
    pub user: String,
    pub password: Option<Secret>,
}

/// A login used for callers in any of `groups`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLogin {
    pub groups: Vec<String>,
    pub login: PgLogin,
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

// === impl PgTarget ===

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("group_logins", &self.group_logins)
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

    /// The login for a caller in `groups`: the first group login naming one of them, else the
    /// connection's own.
    pub fn login_for(&self, groups: &[String]) -> &PgLogin {
        self.group_logins
            .iter()
            .find(|candidate| candidate.groups.iter().any(|group| groups.contains(group)))
            .map_or(&self.login, |candidate| &candidate.login)
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
            other => {
                return Err(UnknownChoice {
                    what: "auth method",
                    value: other.to_string(),
                    choices: "\"scram-sha-256\", \"md5\" or \"password\"",
                })
            }
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
            group_logins: vec![
                GroupLogin { groups: vec!["ai-agents".into(), "bots".into()], login: login("agent_ro", "ro-secret") },
                GroupLogin { groups: vec!["bots".into(), "etl".into()], login: login("etl_rw", "rw-secret") },
            ],
            auth: AuthMethod::DEFAULT.to_vec(),
            channel_binding: ChannelBindingMode::Prefer,
            tls_mode: TlsMode::Prefer,
            tls: None,
        }
    }

    #[test]
    fn secrets_never_print() {
        let target = target();
        let shown = format!("{target:?} {:?}", target.login.password);
        for secret in ["hunter2", "ro-secret", "rw-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(target.host(), "127.0.0.1");
    }

    #[test]
    fn the_first_login_naming_one_of_the_callers_groups_is_used() {
        let target = target();
        let check = |groups: &[&str], user: &str| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            assert_eq!(target.login_for(&groups).user, user, "{groups:?}");
        };
        check(&[], "app");
        check(&["dba"], "app");
        check(&["ai-agents"], "agent_ro");
        check(&["etl"], "etl_rw");
        check(&["bots"], "agent_ro");
        check(&["etl", "ai-agents"], "agent_ro");
        check(&["AI-AGENTS"], "app");
    }

    #[test]
    fn auth_methods_parse_by_their_pg_hba_names() {
        for method in [AuthMethod::ScramSha256, AuthMethod::Md5, AuthMethod::Password] {
            assert_eq!(method.config_name().parse(), Ok(method));
        }
        assert!("trust".parse::<AuthMethod>().unwrap_err().to_string().contains("\"md5\""));
    }
}
