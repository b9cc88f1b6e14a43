//! `[[connections]]`: the targets witness holds credentials for, one variant per protocol, chosen
//! by the entry's `protocol` key. Each variant has only its own fields, so a key of another
//! protocol is an error naming the connection; adding a protocol adds a variant here (and a
//! target builder in the server), not fields to a shared struct.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use witness_core::Protocol;
use witness_proto_pg::{AuthMethod, ChannelBindingMode, TlsMode};

use super::parsed;

/// One `[[connections]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "toml::Table")]
pub enum ConnectionConfig {
    Postgres(PostgresConnection),
    Mysql(MysqlConnection),
    Ssh(SshConnection),
    Http(HttpConnection),
    Kubernetes(KubernetesConnection),
}

/// `protocol = "postgres"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// What clients ask for: the dbname.
    pub name: String,
    /// host:port of the target.
    pub address: String,
    /// The target's database (default: postgres).
    pub database: Option<String>,
    /// The role witness logs in as when no group login applies (default: postgres).
    pub user: Option<String>,
    /// The name of an environment variable holding the target password.
    pub password_env: Option<String>,
    /// A file holding the target password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// disable | prefer (default) | require | verify-full
    #[serde(default, deserialize_with = "parsed")]
    pub tls: TlsMode,
    /// CA certificates (PEM) for tls = "verify-full"; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// The password exchanges witness answers when the target asks: "scram-sha-256" (the
    /// default, alone), "md5", "password" (cleartext). A target asking for another gets no
    /// credential. One that asks for no password (trust) gets none either, and is allowed.
    #[serde(default = "default_auth", deserialize_with = "auth_methods")]
    pub auth: Vec<AuthMethod>,
    /// "prefer" (default): bind SCRAM to the target's TLS certificate when it offers
    /// SCRAM-SHA-256-PLUS; "require": log in only so; "disable": never bind.
    #[serde(default, deserialize_with = "parsed")]
    pub channel_binding: ChannelBindingMode,
    /// `[[connections.logins]]`, the database role witness logs in as for callers in some
    /// groups; the first entry naming one of the caller's groups is used, else `user`.
    #[serde(default)]
    pub logins: Vec<LoginConfig>,
}

/// `protocol = "mysql"`: a MySQL or MariaDB server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConnection {
    /// What clients ask for: the database they connect to (`mariadb -u IDENTITY NAME`).
    pub name: String,
    /// host:port of the target.
    pub address: String,
    /// The target's database witness selects at login; default: none.
    pub database: Option<String>,
    /// The user witness logs in as.
    pub user: String,
    /// The name of an environment variable holding the target password...
    pub password_env: Option<String>,
    /// ... or a file holding it (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// disable | prefer (default) | require | verify-full
    #[serde(default, deserialize_with = "parsed")]
    pub tls: TlsMode,
    /// CA certificates (PEM) for tls = "verify-full"; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// The target's RSA public key (PEM, MySQL's `public_key.pem`): caching_sha2_password's full
    /// login sends the password encrypted to it where TLS is not verified.
    pub server_public_key_file: Option<PathBuf>,
}

/// `protocol = "ssh"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConnection {
    /// What clients log in as: `ssh NAME@gateway`.
    pub name: String,
    /// host:port of the target.
    pub address: String,
    /// The user witness logs in to the target as.
    pub user: Option<String>,
    /// The private key witness logs in with (OpenSSH format, unencrypted), from a file...
    pub private_key_file: Option<PathBuf>,
    /// ... or from an environment variable holding the key's text...
    pub private_key_env: Option<String>,
    /// ... or a password from an environment variable or a file.
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The target's public host key ("ssh-ed25519 AAAA…", as `ssh-keyscan` prints it), or
    /// "trust-on-first-use" (the first key seen is kept in DATA_DIR/ssh/known_hosts).
    pub host_key: Option<String>,
}

/// `protocol = "http"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnection {
    /// What clients address: `/c/NAME/…`.
    pub name: String,
    /// The upstream: `http://host:port/base` or `https://…`; requests' paths go after `base`.
    pub url: String,
    /// CA certificates (PEM) that sign an https upstream's certificate; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// Or the SHA-256 of the one certificate the upstream may present (hex, colons allowed, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it): a pin, for a self-signed upstream.
    pub certificate_sha256: Option<String>,
    /// A bearer token witness sends as `Authorization: Bearer …`, from an environment variable...
    pub bearer_env: Option<String>,
    /// ... or a file (trailing newline ignored).
    pub bearer_file: Option<PathBuf>,
    /// Basic auth witness sends: the user, and its password from an environment variable or a file.
    pub basic_user: Option<String>,
    pub basic_password_env: Option<String>,
    pub basic_password_file: Option<PathBuf>,
    /// `[connections.headers]`: headers witness sends with every request, each value from an
    /// environment variable or a file, e.g. `X-Api-Key = { env = "BILLING_KEY" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretSource>,
    /// A client certificate (PEM) witness presents to an https upstream that asks for one...
    pub client_cert_file: Option<PathBuf>,
    /// ... and its private key (PEM).
    pub client_key_file: Option<PathBuf>,
}

/// `protocol = "kubernetes"`: an API server, reached with witness's own service-account token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConnection {
    /// What clients address: `/c/NAME/…` (`witness kubeconfig` writes that server URL).
    pub name: String,
    /// The API server: `https://host:6443` (or `http://` on loopback, for tests).
    pub url: String,
    /// CA certificates (PEM) that sign the API server's certificate (a cluster's own CA, as in
    /// a kubeconfig's certificate-authority); default: the system's.
    pub ca_file: Option<PathBuf>,
    /// Or the SHA-256 of the one certificate the API server may present, as for HTTP.
    pub certificate_sha256: Option<String>,
    /// The bearer token witness sends (a service account's), from an environment variable...
    pub token_env: Option<String>,
    /// ... or a file (`/var/run/secrets/kubernetes.io/serviceaccount/token`; trailing newline
    /// ignored).
    pub token_file: Option<PathBuf>,
    /// Or a client certificate (PEM; a kubeconfig's client-certificate) with its key.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Identity globs that see Secret objects' data; everyone else gets it masked.
    #[serde(default)]
    pub secret_readers: Vec<String>,
    /// Groups whose members see Secret objects' data.
    #[serde(default)]
    pub secret_reader_groups: Vec<String>,
}

/// Where a secret comes from: an environment variable or a file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// `[[connections.logins]]`: a database role, with its own password, for callers in `groups`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Callers in any of these groups log in as `user`.
    pub groups: Vec<String>,
    pub user: String,
    /// The name of an environment variable holding the role's password...
    pub password_env: Option<String>,
    /// ... or a file holding it (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

// === impl ConnectionConfig ===

impl TryFrom<toml::Table> for ConnectionConfig {
    type Error = String;

    fn try_from(mut table: toml::Table) -> Result<ConnectionConfig, String> {
        let name = table.get("name").and_then(|v| v.as_str()).map_or_else(|| "(unnamed)".to_string(), |n| format!("{n:?}"));
        let protocol = match table.remove("protocol") {
            Some(toml::Value::String(protocol)) => protocol,
            Some(_) => return Err(format!("connection {name}: protocol must be a string, e.g. protocol = \"postgres\"")),
            None => {
                return Err(format!("connection {name}: say which protocol it speaks, e.g. protocol = \"postgres\", \"ssh\" or \"http\""))
            }
        };
        let within = |e: toml::de::Error| format!("{protocol} connection {name}: {}", e.message());
        match protocol.as_str() {
            "postgres" => table.try_into().map(ConnectionConfig::Postgres).map_err(within),
            "mysql" => table.try_into().map(ConnectionConfig::Mysql).map_err(within),
            "ssh" => table.try_into().map(ConnectionConfig::Ssh).map_err(within),
            "http" => table.try_into().map(ConnectionConfig::Http).map_err(within),
            "kubernetes" => table.try_into().map(ConnectionConfig::Kubernetes).map_err(within),
            other => Err(format!(
                "connection {name}: protocol {other:?} is not supported yet; use \"postgres\", \"mysql\", \"ssh\", \"http\" or \"kubernetes\""
            )),
        }
    }
}

impl ConnectionConfig {
    pub fn name(&self) -> &str {
        match self {
            ConnectionConfig::Postgres(c) => &c.name,
            ConnectionConfig::Mysql(c) => &c.name,
            ConnectionConfig::Ssh(c) => &c.name,
            ConnectionConfig::Http(c) => &c.name,
            ConnectionConfig::Kubernetes(c) => &c.name,
        }
    }

    pub fn address(&self) -> &str {
        match self {
            ConnectionConfig::Postgres(c) => &c.address,
            ConnectionConfig::Mysql(c) => &c.address,
            ConnectionConfig::Ssh(c) => &c.address,
            ConnectionConfig::Http(c) => &c.url,
            ConnectionConfig::Kubernetes(c) => &c.url,
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            ConnectionConfig::Postgres(_) => Protocol::Postgres,
            ConnectionConfig::Mysql(_) => Protocol::Mysql,
            ConnectionConfig::Ssh(_) => Protocol::Ssh,
            ConnectionConfig::Http(_) => Protocol::Http,
            ConnectionConfig::Kubernetes(_) => Protocol::Kubernetes,
        }
    }

    /// The checks of the protocol's own fields; the error is (key, problem).
    pub(super) fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        match self {
            ConnectionConfig::Postgres(c) => c.check(key),
            ConnectionConfig::Mysql(c) => c.check(key),
            ConnectionConfig::Ssh(c) => c.check(key),
            ConnectionConfig::Http(c) => c.check(key),
            ConnectionConfig::Kubernetes(c) => c.check(key),
        }
    }
}

// === impl PostgresConnection ===

impl PostgresConnection {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err((key("password_env / password_file"), "set one or the other".into()));
        }
        if self.channel_binding == ChannelBindingMode::Require {
            if self.tls == TlsMode::Disable {
                return Err((
                    key("channel_binding"),
                    "\"require\" binds to the target's TLS certificate; set tls = \"verify-full\" (or \"require\")".into(),
                ));
            }
            if !self.auth.contains(&AuthMethod::ScramSha256) {
                return Err((key("channel_binding"), "\"require\" works through SCRAM only; put \"scram-sha-256\" in auth".into()));
            }
        }
        for (i, login) in self.logins.iter().enumerate() {
            let key = |field: &str| key(&format!("logins[{i}] {field}"));
            if login.groups.is_empty() || login.groups.iter().any(String::is_empty) {
                return Err((key("groups"), "name the groups whose callers log in as this user, e.g. groups = [\"ai-agents\"]".into()));
            }
            if login.user.is_empty() {
                return Err((key("user"), "name the database role witness logs in as for these groups".into()));
            }
            match (&login.password_env, &login.password_file) {
                (Some(_), Some(_)) => return Err((key("password_env / password_file"), "set one or the other".into())),
                (None, None) => {
                    return Err((
                        key("password_env / password_file"),
                        "a login needs its own password: name an environment variable (password_env) or a file (password_file)".into(),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The target password, from the environment or a file. None when neither is configured, or
    /// when the environment variable is unset (witness then logs in without one, as for trust).
    pub fn password(&self) -> Result<Option<String>, String> {
        password(&self.name, self.password_env.as_deref(), self.password_file.as_ref())
    }
}

// === impl MysqlConnection ===

impl MysqlConnection {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err((key("password_env / password_file"), "set one or the other".into()));
        }
        if self.ca_file.is_some() && self.tls != TlsMode::VerifyFull {
            return Err((key("ca_file"), "a CA verifies the target only with tls = \"verify-full\"".into()));
        }
        Ok(())
    }

    /// The target password, as for PostgreSQL connections.
    pub fn password(&self) -> Result<Option<String>, String> {
        password(&self.name, self.password_env.as_deref(), self.password_file.as_ref())
    }
}

// === impl SshConnection ===

impl SshConnection {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        let sources =
            [self.private_key_file.is_some(), self.private_key_env.is_some(), self.password_env.is_some(), self.password_file.is_some()];
        match sources.iter().filter(|s| **s).count() {
            1 => {}
            0 => {
                return Err((
                    key("private_key_file"),
                    "an ssh connection needs private_key_file, private_key_env, password_env or password_file".into(),
                ))
            }
            _ => return Err((key("private_key_file / private_key_env / password_env / password_file"), "set exactly one".into())),
        }
        if self.user.as_deref().is_none_or(str::is_empty) {
            return Err((key("user"), "name the user witness logs in to the target as, e.g. user = \"deploy\"".into()));
        }
        match &self.host_key {
            None => Err((
                key("host_key"),
                "pin the target's host key (e.g. from `ssh-keyscan -t ed25519 HOST`) or write \"trust-on-first-use\"".into(),
            )),
            Some(value) => witness_proto_ssh::HostKeyPolicy::parse(value).map(|_| ()).map_err(|problem| (key("host_key"), problem)),
        }
    }

    /// The private key's text, from its file or environment variable, if one is configured.
    pub fn private_key(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.private_key_file {
            return std::fs::read_to_string(path)
                .map(Some)
                .map_err(|e| format!("connection {}: cannot read private_key_file {}: {e}", self.name, path.display()));
        }
        if let Some(var) = &self.private_key_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("connection {}: the environment variable {var} (private_key_env) is not set", self.name));
        }
        Ok(None)
    }

    /// The target password, as for PostgreSQL connections.
    pub fn password(&self) -> Result<Option<String>, String> {
        password(&self.name, self.password_env.as_deref(), self.password_file.as_ref())
    }
}

// === impl HttpConnection ===

impl HttpConnection {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err((key("url"), "give the upstream's URL, e.g. url = \"https://billing.internal:8443\"".into()));
        }
        if self.bearer_env.is_some() && self.bearer_file.is_some() {
            return Err((key("bearer_env / bearer_file"), "set one or the other".into()));
        }
        let basic_password = [self.basic_password_env.is_some(), self.basic_password_file.is_some()];
        match (&self.basic_user, basic_password) {
            (Some(_), [true, false] | [false, true]) | (None, [false, false]) => {}
            (Some(_), [true, true]) => return Err((key("basic_password_env / basic_password_file"), "set one or the other".into())),
            (Some(_), _) => {
                return Err((key("basic_password_env / basic_password_file"), "basic auth needs a password from one of them".into()))
            }
            (None, _) => return Err((key("basic_user"), "name the user whose password basic_password_* gives".into())),
        }
        if self.basic_user.is_some() && (self.bearer_env.is_some() || self.bearer_file.is_some()) {
            return Err((key("bearer_* / basic_*"), "both set Authorization; choose a bearer token or basic auth".into()));
        }
        check_client_cert(&self.url, &self.client_cert_file, &self.client_key_file, key)?;
        for (name, source) in &self.headers {
            if name.eq_ignore_ascii_case("authorization")
                && (self.basic_user.is_some() || self.bearer_env.is_some() || self.bearer_file.is_some())
            {
                return Err((key("headers"), "Authorization is set by bearer_* or basic_* already".into()));
            }
            if source.env.is_some() == source.file.is_some() {
                return Err((key(&format!("headers.{name}")), "give the value as { env = \"VARIABLE\" } or { file = \"PATH\" }".into()));
            }
        }
        Ok(())
    }

    /// The credentials witness adds to every request, read from the environment and files.
    pub fn credentials(&self) -> Result<Vec<witness_proto_http::UpstreamCredential>, String> {
        use witness_core::Secret;
        use witness_proto_http::UpstreamCredential;
        let read = |what: &str, env: Option<&String>, file: Option<&PathBuf>| secret(&self.name, what, env, file);
        let mut credentials = Vec::new();
        if let Some(token) = read("bearer", self.bearer_env.as_ref(), self.bearer_file.as_ref())? {
            credentials.push(UpstreamCredential::Bearer(Secret::new(token)));
        }
        if let Some(user) = &self.basic_user {
            let password = read("basic_password", self.basic_password_env.as_ref(), self.basic_password_file.as_ref())?.unwrap_or_default();
            credentials.push(UpstreamCredential::Basic { user: user.clone(), password: Secret::new(password) });
        }
        for (name, source) in &self.headers {
            let value = read(&format!("headers.{name}"), source.env.as_ref(), source.file.as_ref())?.unwrap_or_default();
            credentials.push(UpstreamCredential::Header { name: name.clone(), value: Secret::new(value) });
        }
        Ok(credentials)
    }
}

// === impl KubernetesConnection ===

impl KubernetesConnection {
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err((key("url"), "give the API server's URL, e.g. url = \"https://10.0.0.1:6443\"".into()));
        }
        check_client_cert(&self.url, &self.client_cert_file, &self.client_key_file, key)?;
        match (&self.token_env, &self.token_file, &self.client_cert_file) {
            (Some(_), Some(_), _) => Err((key("token_env / token_file"), "set one or the other".into())),
            (None, None, None) => Err((
                key("token_env / token_file"),
                "give witness's own credential for the API server: a token (a service account's) from an environment variable or a file, or client_cert_file and client_key_file".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The bearer token witness sends, read from the environment or its file; None when witness
    /// logs in with a client certificate alone.
    pub fn token(&self) -> Result<Option<witness_core::Secret>, String> {
        Ok(secret(&self.name, "token", self.token_env.as_ref(), self.token_file.as_ref())?.map(witness_core::Secret::new))
    }
}

/// A client certificate needs its key (and the key its certificate), and an https upstream.
fn check_client_cert(
    url: &str,
    cert: &Option<PathBuf>,
    key_file: &Option<PathBuf>,
    key: &dyn Fn(&str) -> String,
) -> Result<(), (String, String)> {
    match (cert, key_file) {
        (Some(_), None) | (None, Some(_)) => Err((key("client_cert_file / client_key_file"), "set both or neither".into())),
        (Some(_), Some(_)) if !url.starts_with("https://") => {
            Err((key("client_cert_file"), "a client certificate is presented over TLS only: use an https:// url".into()))
        }
        _ => Ok(()),
    }
}

/// A secret of an HTTP connection from the environment or a file: unlike a PostgreSQL password, an
/// unset variable is an error (the upstream would refuse every request).
fn secret(connection: &str, what: &str, env: Option<&String>, file: Option<&PathBuf>) -> Result<Option<String>, String> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| format!("connection {connection}: the environment variable {var} ({what}) is not set"));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| format!("connection {connection}: cannot read {what} file {}: {e}", path.display()));
    }
    Ok(None)
}

/// A connection's password from the environment or a file; an unset variable means none (with a
/// warning), an unreadable file is an error.
fn password(connection: &str, env: Option<&str>, file: Option<&PathBuf>) -> Result<Option<String>, String> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(value) => Ok(Some(value)),
            Err(_) => {
                tracing::warn!(
                    connection,
                    var,
                    "the password environment variable is not set; logging in to the target without a password"
                );
                Ok(None)
            }
        };
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| format!("connection {connection}: cannot read password_file {}: {e}", path.display()));
    }
    Ok(None)
}

impl LoginConfig {
    /// The login's password, from its environment variable or file; the error is (key, problem).
    /// Unlike the connection's own password, an unset variable is an error: a login names a role
    /// that exists for its password.
    pub fn password(&self) -> Result<String, (&'static str, String)> {
        if let Some(var) = &self.password_env {
            return std::env::var(var).map_err(|_| ("password_env", format!("the environment variable {var} is not set")));
        }
        match &self.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| ("password_file", format!("cannot read {}: {e}", path.display()))),
            None => Err(("password_env / password_file", "set one of them".into())),
        }
    }
}

fn default_auth() -> Vec<AuthMethod> {
    AuthMethod::DEFAULT.to_vec()
}

/// `auth = [...]`: each name through `AuthMethod`'s parser; "trust" and an empty list are
/// refused with what to write instead.
fn auth_methods<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<AuthMethod>, D::Error> {
    use serde::de::Error;
    let names = Vec::<String>::deserialize(deserializer)?;
    if names.is_empty() {
        return Err(D::Error::custom("auth lists no method; leave it out for [\"scram-sha-256\"]"));
    }
    names
        .iter()
        .map(|name| match name.as_str() {
            "trust" => Err(D::Error::custom(
                "auth needs no \"trust\": a target that asks for no password gets no credential and is always allowed",
            )),
            name => name.parse().map_err(|e: witness_proto_pg::UnknownChoice| D::Error::custom(e)),
        })
        .collect()
}
