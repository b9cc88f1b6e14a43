//! `[limits]`: the bounds on connections that have not logged in yet, on the PostgreSQL and SSH
//! listeners together. They keep a flood of connections that never log in from holding witness's
//! sockets and handshakes; a client that logs in is never kept out by them.

use std::time::Duration;

use serde::Deserialize;

use crate::logins::LoginLimits;

/// `[limits]` as written in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// How long a client has from connecting to being authenticated (TLS, startup, the
    /// password or key exchange), e.g. "10s".
    #[serde(default = "default_login_timeout", deserialize_with = "super::duration")]
    pub login_timeout: Duration,
    /// Connections waiting to log in, from all addresses together; past it the one waiting
    /// longest is closed.
    #[serde(default = "default_max_unauthenticated")]
    pub max_unauthenticated: usize,
    /// Connections waiting to log in from one address; past it that address's connection waiting
    /// longest is closed.
    #[serde(default = "default_max_unauthenticated_per_address")]
    pub max_unauthenticated_per_address: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            login_timeout: default_login_timeout(),
            max_unauthenticated: default_max_unauthenticated(),
            max_unauthenticated_per_address: default_max_unauthenticated_per_address(),
        }
    }
}

fn default_login_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Enough for clients that open a pool's worth of connections at once.
fn default_max_unauthenticated() -> usize {
    512
}

fn default_max_unauthenticated_per_address() -> usize {
    128
}

/// The most connections the bounds may let wait: each holds a socket (and a TLS or SSH
/// handshake), and the victim of a full house is looked for among them.
const MOST_UNAUTHENTICATED: usize = 65_536;

impl LimitsSection {
    /// The checks of the section; the error is (key, problem).
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let key = |field: &str| format!("[limits] {field}");
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.login_timeout) {
            let problem = "is out of range; use 1s to 10m (clients on a slow link need a few seconds)";
            return Err((key("login_timeout"), problem.into()));
        }
        if !(1..=MOST_UNAUTHENTICATED).contains(&self.max_unauthenticated) {
            return Err((
                key("max_unauthenticated"),
                format!("{} is out of range; use 1 to {MOST_UNAUTHENTICATED}", self.max_unauthenticated),
            ));
        }
        if !(1..=self.max_unauthenticated).contains(&self.max_unauthenticated_per_address) {
            return Err((
                key("max_unauthenticated_per_address"),
                format!(
                    "{} is out of range; use 1 to max_unauthenticated ({})",
                    self.max_unauthenticated_per_address, self.max_unauthenticated
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            timeout: self.login_timeout,
            max_total: self.max_unauthenticated,
            max_per_address: self.max_unauthenticated_per_address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn check(text: &str, expect: Result<LoginLimits, &str>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.toml");
        std::fs::write(&path, text).unwrap();
        match (Config::load(&path), expect) {
            (Ok(config), Ok(limits)) => assert_eq!(config.limits.login_limits(), limits, "{text}"),
            (Err(error), Err(needle)) => {
                let error = error.to_string();
                assert!(error.contains(needle) && error.contains("witness.toml"), "{error:?} should name the file and {needle:?}");
            }
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn limits_load_with_defaults_or_say_what_is_wrong() {
        let limits =
            |seconds, max_total, max_per_address| LoginLimits { timeout: Duration::from_secs(seconds), max_total, max_per_address };
        check("", Ok(limits(10, 512, 128)));
        check("[limits]\nlogin_timeout = \"3s\"\nmax_unauthenticated = 8\nmax_unauthenticated_per_address = 4\n", Ok(limits(3, 8, 4)));
        check("[limits]\nmax_unauthenticated_per_address = 512\n", Ok(limits(10, 512, 512)));
        check("[limits]\nlogin_timeout = \"soon\"\n", Err("login_timeout"));
        check("[limits]\nlogin_timeout = \"100ms\"\n", Err("[limits] login_timeout: is out of range; use 1s to 10m"));
        check("[limits]\nlogin_timeout = \"1h\"\n", Err("[limits] login_timeout"));
        check("[limits]\nmax_unauthenticated = 0\n", Err("[limits] max_unauthenticated: 0 is out of range"));
        check("[limits]\nmax_unauthenticated = 100000\n", Err("use 1 to 65536"));
        check(
            "[limits]\nmax_unauthenticated = 8\n",
            Err("[limits] max_unauthenticated_per_address: 128 is out of range; use 1 to max_unauthenticated (8)"),
        );
        check("[limits]\nmax_unauthenticated_per_address = 0\n", Err("max_unauthenticated_per_address: 0"));
        check("[limits]\nmax_connections = 8\n", Err("max_connections"));
        assert_eq!(Config::default().limits.login_limits(), limits(10, 512, 128));
    }
}
