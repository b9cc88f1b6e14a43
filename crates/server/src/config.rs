//! The witness config file (TOML): where data lives, how the ledger writes, what witness listens
//! on, and the connections it holds credentials for. Paths are relative to the directory witness
//! runs in. Secrets are never written in the file itself: they come from the environment or files.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use witness_identity::OidcIssuerConfig;
use witness_ledger::{Durability, LedgerConfig, MasterKeySource};
use witness_mask::{ApplyTo, ColumnPattern, DetectorSet, JsonPath, MaskRule, MaskStyle, Masking};
use witness_policy::{Action, Glob, Policy, Rule};
use witness_proto_mysql::MysqlAuth;
use witness_proto_pg::FrontAuth;

mod connections;
mod limits;
mod notify;
pub use connections::{
    ConnectionConfig, HttpConnection, KubernetesConnection, LoginConfig, MysqlConnection, PostgresConnection, SecretSource, SshConnection,
};
pub use limits::LimitsSection;
pub use notify::{NotifyConfig, NotifyFormat, NotifyTarget};

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the ledger, tokens and TLS material live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub ledger: LedgerSection,
    #[serde(default)]
    pub listen: ListenSection,
    #[serde(default)]
    pub postgres: PostgresSection,
    #[serde(default)]
    pub mysql: MysqlSection,
    #[serde(default)]
    pub ssh: SshSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub identity: IdentitySection,
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    #[serde(default)]
    pub policy: PolicySection,
    /// What is allowed, denied or held for approval, in order; see [`RuleConfig`].
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What values are masked, for whom; see [`MaskingConfig`].
    #[serde(default)]
    pub masking: Vec<MaskingConfig>,
    #[serde(default)]
    pub roles: RolesSection,
    #[serde(default)]
    pub console: ConsoleSection,
    #[serde(default)]
    pub review: ReviewSection,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Webhooks told of held requests and their decisions.
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
    /// How long sessions' contents are kept; see [`RetentionSection`].
    #[serde(default)]
    pub retention: Vec<RetentionSection>,
}

/// `[review]`: what reading recordings takes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSection {
    /// A reader gives a reason (a ticket) before a recording opens, in the console, the API
    /// (`X-Witness-Reason`) and the CLI (`--reason`); the audit trail keeps it with the view.
    #[serde(default)]
    pub require_reason: bool,
    /// Recordings whose reading needs another reviewer's grant; see [`ReviewRuleConfig`].
    #[serde(default)]
    pub rules: Vec<ReviewRuleConfig>,
}

/// `[[review.rules]]`: reading the recordings of these connections (their events and terminal, in
/// the console and API) needs a grant from a member of `approvers` other than the reader, which
/// lasts `window`. The first rule matching a session's connection applies.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRuleConfig {
    pub name: String,
    /// Connection names or globs (`prod-*`).
    pub connections: Vec<String>,
    /// Groups whose members may grant.
    pub approvers: Vec<String>,
    /// How long a grant lasts, e.g. "1h".
    #[serde(default = "default_grant_window", deserialize_with = "duration")]
    pub window: Duration,
}

fn default_grant_window() -> Duration {
    Duration::from_secs(3600)
}

/// `[console]`: the review console.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Mark the login cookies `Secure`: set it when browsers reach witness through HTTPS (a
    /// proxy in front of `[listen] api`); over plain HTTP browsers would then never send them.
    #[serde(default)]
    pub secure_cookies: bool,
    /// Log in through an OpenID provider (authorization code flow with PKCE) besides tokens.
    pub oidc: Option<ConsoleOidcConfig>,
    /// The console's address as people reach it (`https://witness.example.com`), for the links
    /// in notices; default: `http://` and `[listen] api`.
    pub public_url: Option<String>,
}

/// `[console.oidc]`: the console's client at an OpenID provider. The provider must also be an
/// `[[identity.oidc]]` issuer, whose claims settings name the identity, groups and task.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOidcConfig {
    pub issuer: String,
    pub client_id: String,
    /// For a confidential client: the secret from this environment variable or file. A public
    /// client (PKCE only) has neither.
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends the browser back. Default: `http://<[listen] api>/api/login/oidc/callback`.
    pub redirect_url: Option<String>,
    /// Default `["openid"]`; ask for the scope that brings the groups claim, e.g. `["openid", "groups"]`.
    #[serde(default = "default_console_scopes")]
    pub scopes: Vec<String>,
}

fn default_console_scopes() -> Vec<String> {
    vec!["openid".into()]
}

/// `[roles]`: which groups may use the review API and console, and for what. Identities in none
/// of these groups (agents) get 403 there. Members of a group that a rule names in `approvers`
/// are approvers too, so approvals work without this section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesSection {
    /// Everything: recordings, the audit trail, tokens, any approval.
    #[serde(default)]
    pub admin: Vec<String>,
    /// Read every recording and the audit trail.
    #[serde(default)]
    pub auditor: Vec<String>,
    /// Decide approvals that name one of their groups.
    #[serde(default)]
    pub approver: Vec<String>,
}

/// `[[masking]]`: values hidden from a client and/or the recording.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    pub name: String,
    /// Connection globs; default: every connection.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Groups the rule applies to; default: everyone.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Column globs: "table.column", "schema.table.column" or "column", e.g. "*.email".
    #[serde(default)]
    pub columns: Vec<String>,
    /// JSON paths naming values of JSON bodies on HTTP and Kubernetes connections, masked whole as
    /// columns are: "$.customers[*].email", "$..password".
    #[serde(default)]
    pub json_paths: Vec<String>,
    /// Content detectors and groups of them: email, credit-card, iban, phone, national-id,
    /// ip-address, aws-key, api-key, jwt, private-key, secret; pii, financial, secrets, all.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// "client-and-recording" (default) or "recording".
    #[serde(default = "default_apply_to", deserialize_with = "parsed")]
    pub apply_to: ApplyTo,
    /// "redact" (default), "partial" or "hash".
    #[serde(default = "default_mask_style", deserialize_with = "parsed")]
    pub style: MaskStyle,
}

/// `[identity]`: who may authenticate besides holders of witness tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// `[[identity.oidc]]`: OpenID issuers whose JWT access tokens are accepted as passwords.
    #[serde(default)]
    pub oidc: Vec<OidcIssuerConfig>,
}

/// `[policy]`: what happens to a request no rule matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// "allow" (default) or "deny".
    #[serde(default = "default_policy_default", deserialize_with = "parsed")]
    pub default: Action,
}

/// `[[rules]]`: one policy rule. Lists that are left out match everything.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// Connection name globs, e.g. "pg-*".
    #[serde(default)]
    pub connections: Vec<String>,
    /// Identity name globs.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Groups, any of which the caller must be in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Task globs, matched against the session's task.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Statement classes: select, insert, update, delete, update-without-where, …
    #[serde(default)]
    pub sql: Vec<String>,
    /// Table globs, e.g. "users" or "billing.*".
    #[serde(default)]
    pub tables: Vec<String>,
    /// SSH command globs, e.g. "rm -rf *": matched against the command line and each simple
    /// command in it.
    #[serde(default)]
    pub shell: Vec<String>,
    /// SSH operations: shell, exec, sftp, subsystem, git-fetch, git-push, port-forward,
    /// agent-forward, x11-forward, env.
    #[serde(default)]
    pub ssh: Vec<String>,
    /// HTTP method-and-path globs, e.g. "GET /api/*" or "* /admin/*".
    #[serde(default)]
    pub http: Vec<String>,
    /// Kubernetes verb-and-resource globs, e.g. "delete pods", "create pods/exec", "* secrets".
    #[serde(default)]
    pub kube: Vec<String>,
    /// Kubernetes namespace globs, e.g. "prod-*".
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A regular expression matched against the request's text.
    pub regex: Option<String>,
    /// allow | deny | approve
    #[serde(deserialize_with = "parsed")]
    pub action: Action,
    /// What a refused client is told.
    pub message: Option<String>,
    /// For approve: the groups whose members may decide.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// For approve: how long a request waits before it is denied, e.g. "10m".
    pub timeout: Option<String>,
}

/// `[ledger]`: how recordings are written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// "write" (survives a crash of witness) or "fsync" (survives a power loss).
    #[serde(default)]
    pub durability: Durability,
    /// A segment file is closed and a new one started at this size, in MiB.
    #[serde(default = "default_segment_mib")]
    pub segment_size_mib: u64,
    /// How often session heads and a signed checkpoint are written, e.g. "1s" or "500ms".
    #[serde(default = "default_checkpoint_interval", deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
    /// How often `[[retention]]` rules are applied (also at every start), e.g. "10m".
    #[serde(default = "default_retention_sweep", deserialize_with = "duration")]
    pub retention_sweep: Duration,
    /// `[ledger.encryption]`: seal every session's contents with its own data key, wrapped by
    /// this master key. Absent: recordings are written in clear.
    pub encryption: Option<EncryptionSection>,
}

/// `[ledger.encryption]`: where the master key comes from; exactly one of the three.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// A file holding the key as 64 hex digits (mode 0600), made with a new key on the first
    /// start when missing. Keep it (and its backup) apart from the data dir.
    pub master_key_file: Option<PathBuf>,
    /// An environment variable holding the key as 64 hex digits.
    pub master_key_env: Option<String>,
    /// A command and its arguments (no shell) that prints the key as 64 hex digits: a KMS
    /// client, `systemd-creds cat …`.
    pub master_key_command: Option<Vec<String>>,
}

/// `[listen]`: the addresses clients connect to. A protocol without an address is not served.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub postgres: Option<SocketAddr>,
    /// MySQL and MariaDB clients connect here, naming the connection as their database.
    pub mysql: Option<SocketAddr>,
    /// SSH clients log in here as CONNECTION@gateway.
    pub ssh: Option<SocketAddr>,
    /// HTTP clients send requests here as /c/CONNECTION/path (HTTP/1.1, plain or TLS).
    pub http: Option<SocketAddr>,
    /// The HTTP API and the review console.
    pub api: Option<SocketAddr>,
}

impl ListenSection {
    /// Whether no protocol has an address: witness would then serve nothing.
    pub fn is_empty(&self) -> bool {
        self.postgres.is_none() && self.mysql.is_none() && self.ssh.is_none() && self.http.is_none() && self.api.is_none()
    }
}

/// `[postgres]`: how the PostgreSQL front treats clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// "scram": tokens by SCRAM-SHA-256. "password": tokens (and JWTs) in cleartext where the
    /// connection is TLS or loopback (SCRAM elsewhere). Default: "password" when OIDC issuers are
    /// configured (a JWT cannot go through SCRAM), else "scram".
    #[serde(default, deserialize_with = "parsed_some")]
    pub auth: Option<FrontAuth>,
    /// PEM certificate and key offered to clients; default: a self-signed pair in DATA_DIR/tls.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Result rows recorded per statement (the total count is always recorded).
    #[serde(default = "default_max_rows")]
    pub max_rows_per_statement: usize,
}

/// `[mysql]`: how the MySQL front treats clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSection {
    /// "native": tokens by mysql_native_password, checked against a stored verifier. "password":
    /// tokens (and JWTs) in cleartext (mysql_clear_password) where the connection is TLS or
    /// loopback (native elsewhere). Default: "password" when OIDC issuers are configured (a JWT
    /// has no verifier), else "native". Clients offered TLS use `[postgres]`'s certificate.
    #[serde(default, deserialize_with = "parsed_some")]
    pub auth: Option<MysqlAuth>,
    /// Result rows recorded per statement (the total count is always recorded).
    #[serde(default = "default_max_rows")]
    pub max_rows_per_statement: usize,
    /// The connection of a client that names no database (mariadb-dump logs in without one).
    pub default_connection: Option<String>,
}

impl Default for MysqlSection {
    fn default() -> Self {
        MysqlSection { auth: None, max_rows_per_statement: default_max_rows(), default_connection: None }
    }
}

/// `[ssh]`: how the SSH front treats clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    /// Witness's own host key (OpenSSH format); made (Ed25519) on first start if missing.
    /// Default: DATA_DIR/ssh/host_ed25519.
    pub host_key: Option<PathBuf>,
    /// How long logging in to a target may take.
    #[serde(default = "default_ssh_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Clients idle this long are disconnected.
    #[serde(default = "default_ssh_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

/// `[http]`: how the HTTP front treats requests and upstreams.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Bytes of each request and response body kept in the record (the whole body's length and
    /// digest are recorded whatever its size).
    #[serde(default = "default_max_body_recorded")]
    pub max_body_recorded: usize,
    /// How long connecting to an upstream may take.
    #[serde(default = "default_http_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// With a suffix, clients may address a connection by host name, `NAME.SUFFIX` (e.g.
    /// "witness.local" for billing.witness.local), besides the /c/NAME path prefix.
    pub host_suffix: Option<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { max_body_recorded: default_max_body_recorded(), connect_timeout: default_http_connect_timeout(), host_suffix: None }
    }
}

fn default_max_body_recorded() -> usize {
    witness_proto_http::DEFAULT_MAX_BODY_RECORDED
}

fn default_http_connect_timeout() -> Duration {
    Duration::from_secs(15)
}

/// A config that cannot be used, with the file, the key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("config file {path}: {key}: {problem}")]
    Invalid { path: PathBuf, key: String, problem: String },
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            durability: Durability::Write,
            segment_size_mib: default_segment_mib(),
            checkpoint_interval: default_checkpoint_interval(),
            encryption: None,
            retention_sweep: default_retention_sweep(),
        }
    }
}

fn default_retention_sweep() -> Duration {
    Duration::from_secs(600)
}

/// `[[retention]]`: how long sessions' contents are kept after they end. The first rule that
/// matches a session decides; a rule naming no connection, protocol, identity or group is the
/// default; a session no rule matches is kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// A connection name or glob (`prod-*`).
    pub connection: Option<String>,
    /// `postgres`, `mysql`, `ssh`, `http` or `kubernetes`.
    pub protocol: Option<String>,
    /// An identity name or glob.
    pub identity: Option<String>,
    /// A group name or glob: sessions whose caller was in a matching group when it opened.
    /// Sessions recorded before groups were recorded match no group rule.
    pub group: Option<String>,
    /// How long after a session ends its contents are shredded, e.g. "90d".
    #[serde(deserialize_with = "duration")]
    pub keep: Duration,
}

impl EncryptionSection {
    /// The one source of the master key the section names.
    pub fn source(&self) -> Result<MasterKeySource, String> {
        match (&self.master_key_file, &self.master_key_env, &self.master_key_command) {
            (Some(file), None, None) => Ok(MasterKeySource::File(file.clone())),
            (None, Some(env), None) => Ok(MasterKeySource::Env(env.clone())),
            (None, None, Some(argv)) if !argv.is_empty() => Ok(MasterKeySource::Command(argv.clone())),
            (None, None, Some(_)) => Err("master_key_command is empty: give the program and its arguments".into()),
            _ => Err("name exactly one of master_key_file, master_key_env and master_key_command".into()),
        }
    }
}

impl LedgerSection {
    /// Where the master key comes from, when recordings are sealed.
    pub fn master_key_source(&self) -> Option<MasterKeySource> {
        self.encryption.as_ref().and_then(|e| e.source().ok())
    }
}

impl Default for SshSection {
    fn default() -> Self {
        SshSection { host_key: None, connect_timeout: default_ssh_connect_timeout(), idle_timeout: default_ssh_idle_timeout() }
    }
}

fn default_ssh_connect_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_ssh_idle_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl Default for PostgresSection {
    fn default() -> Self {
        PostgresSection { auth: None, tls_cert: None, tls_key: None, max_rows_per_statement: default_max_rows() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            ledger: LedgerSection::default(),
            listen: ListenSection::default(),
            postgres: PostgresSection::default(),
            mysql: MysqlSection::default(),
            ssh: SshSection::default(),
            http: HttpSection::default(),
            identity: IdentitySection::default(),
            connections: Vec::new(),
            policy: PolicySection::default(),
            rules: Vec::new(),
            retention: Vec::new(),
            masking: Vec::new(),
            roles: RolesSection::default(),
            console: ConsoleSection::default(),
            review: ReviewSection::default(),
            limits: LimitsSection::default(),
            notify: Vec::new(),
        }
    }
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection { default: default_policy_default() }
    }
}

fn default_policy_default() -> Action {
    Action::Allow
}

fn default_apply_to() -> ApplyTo {
    ApplyTo::ClientAndRecording
}

fn default_mask_style() -> MaskStyle {
    MaskStyle::Redact
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./witness-data")
}

fn default_segment_mib() -> u64 {
    64
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// Each entry of a list through its type's parser; the first that fails is the error.
fn parsed_each<T: std::str::FromStr>(list: &[String]) -> Result<Vec<T>, T::Err> {
    list.iter().map(|item| item.parse()).collect()
}

fn default_max_rows() -> usize {
    100
}

/// A value written as its name ("deny", "verify-full", "redact"), read by its type's parser, whose
/// error says what the choices are.
fn parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// [`parsed`] for a key that may be left out.
fn parsed_some<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    parsed(deserializer).map(Some)
}

/// Durations are written the way people write them: "1s", "250ms", "2m".
fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("{e}: write a duration such as \"1s\" or \"500ms\"")))
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: Config =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source: Box::new(source) })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| Err(ConfigError::Invalid { path: path.to_path_buf(), key, problem });
        if self.ledger.segment_size_mib == 0 || self.ledger.segment_size_mib > 4096 {
            return invalid("[ledger] segment_size_mib".into(), format!("{} is out of range; use 1 to 4096", self.ledger.segment_size_mib));
        }
        if self.ledger.checkpoint_interval < Duration::from_millis(10) {
            return invalid("[ledger] checkpoint_interval".into(), "is under 10ms; use e.g. \"1s\"".into());
        }
        if let Some(Err(problem)) = self.ledger.encryption.as_ref().map(EncryptionSection::source) {
            return invalid("[ledger.encryption]".into(), problem);
        }
        for (i, rule) in self.review.rules.iter().enumerate() {
            if rule.connections.is_empty() || rule.approvers.is_empty() {
                return invalid(format!("[[review.rules]] {} ({})", i + 1, rule.name), "needs connections and approvers".into());
            }
        }
        for (i, rule) in self.retention.iter().enumerate() {
            if let Some(Err(e)) = rule.protocol.as_deref().map(str::parse::<witness_core::Protocol>) {
                return invalid(format!("[[retention]] {} protocol", i + 1), e.to_string());
            }
        }
        if !self.retention.is_empty() && self.ledger.encryption.is_none() {
            let problem = "needs [ledger.encryption]: contents are shredded by destroying their keys, and recordings in clear have none";
            return invalid("[[retention]]".into(), problem.into());
        }
        if self.mysql.auth == Some(MysqlAuth::Native) && !self.identity.oidc.is_empty() {
            let problem =
                "is \"native\", but a JWT has no verifier; use \"password\" (cleartext only over TLS or loopback) with [[identity.oidc]]";
            return invalid("[mysql] auth".into(), problem.into());
        }
        if self.postgres.auth == Some(FrontAuth::Scram) && !self.identity.oidc.is_empty() {
            let problem = "is \"scram\", but a JWT cannot go through SCRAM; use \"password\" (cleartext only over TLS or loopback) with [[identity.oidc]]";
            return invalid("[postgres] auth".into(), problem.into());
        }
        for (i, issuer) in self.identity.oidc.iter().enumerate() {
            let key = |field: &str| format!("identity.oidc[{i}] {field}");
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| issuer.issuer.starts_with(p));
            if !issuer.issuer.starts_with("https://") && !loopback {
                return invalid(key("issuer"), format!("{:?} must be an https:// URL (plain http only on loopback)", issuer.issuer));
            }
            if issuer.audience.is_empty() {
                return invalid(key("audience"), "name the audience agents request their tokens for".into());
            }
        }
        if self.postgres.tls_cert.is_some() != self.postgres.tls_key.is_some() {
            return invalid("[postgres] tls_cert / tls_key".into(), "set both or neither".into());
        }
        if let Some(suffix) = &self.http.host_suffix {
            let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !suffix.split('.').all(label) {
                return invalid(
                    "[http] host_suffix".into(),
                    format!("{suffix:?} is not a domain name; write one such as \"witness.local\""),
                );
            }
        }
        let mut names = HashSet::new();
        for (i, c) in self.connections.iter().enumerate() {
            let key = |field: &str| format!("connections[{i}] ({}) {field}", c.name());
            if c.name().is_empty() || !c.name().chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) {
                return invalid(key("name"), "use letters, digits, '-', '_' and '.'".into());
            }
            if !names.insert(c.name()) {
                return invalid(key("name"), "is used by two connections; names must be unique".into());
            }
            // An HTTP connection has a URL, which its own check reads.
            if !matches!(c, ConnectionConfig::Http(_) | ConnectionConfig::Kubernetes(_)) && !c.address().contains(':') {
                return invalid(key("address"), format!("{:?} has no port; write host:port, e.g. 127.0.0.1:5432", c.address()));
            }
            c.check(&key).map_err(|(key, problem)| ConfigError::Invalid { path: path.to_path_buf(), key, problem })?;
        }
        if let Some(name) = &self.mysql.default_connection {
            if !self.connections.iter().any(|c| matches!(c, ConnectionConfig::Mysql(_)) && c.name() == name) {
                return invalid("[mysql] default_connection".into(), format!("{name:?} is not the name of a mysql connection"));
            }
        }
        self.limits.check().map_err(|(key, problem)| ConfigError::Invalid { path: path.to_path_buf(), key, problem })?;
        self.policy(path)?;
        self.masking(path, b"")?;
        Ok(())
    }

    /// The masking rules of the `[[masking]]` sections; `hash_key` keys the `hash` style.
    pub fn masking(&self, path: &Path, hash_key: &[u8]) -> Result<Masking, ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_path_buf(), key, problem };
        let mut rules = Vec::with_capacity(self.masking.len());
        let mut names = HashSet::new();
        for (i, m) in self.masking.iter().enumerate() {
            let key = |field: &str| format!("masking[{i}] ({}) {field}", m.name);
            if m.name.is_empty() || !names.insert(m.name.as_str()) {
                return Err(invalid(key("name"), "every masking rule needs a name of its own".into()));
            }
            let columns = m
                .columns
                .iter()
                .map(|c| ColumnPattern::new(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(key("columns"), e.to_string()))?;
            let json_paths = m
                .json_paths
                .iter()
                .map(|p| JsonPath::new(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(key("json_paths"), e.to_string()))?;
            let mut detectors = DetectorSet::EMPTY;
            for name in &m.detectors {
                let set = DetectorSet::from_name(name).ok_or_else(|| {
                    invalid(key("detectors"), format!("{name:?} is not a detector; use one of {}", DetectorSet::names().join(", ")))
                })?;
                detectors = detectors.union(set);
            }
            let rule = MaskRule {
                name: m.name.clone(),
                connections: m.connections.iter().map(|g| Glob::new(g)).collect(),
                groups: m.groups.clone(),
                columns,
                json_paths,
                detectors,
                apply_to: m.apply_to,
                style: m.style,
            };
            rule.check().map_err(|e| invalid(key("columns / json_paths / detectors"), e.to_string()))?;
            rules.push(rule);
        }
        Masking::new(rules, hash_key).map_err(|e| invalid("[[masking]]".into(), e.to_string()))
    }

    /// The policy the `[policy]` section and the `[[rules]]` make.
    /// The console's OpenID login, checked: its issuer is a configured one, its secret can be
    /// read, and it has a redirect URL.
    /// The `[[notify]]` webhooks, their addresses resolved.
    pub fn notify_targets(&self, path: &Path) -> Result<Vec<NotifyTarget>, ConfigError> {
        self.notify.iter().enumerate().map(|(i, notify)| notify.target(path, i + 1)).collect()
    }

    /// Where the console is, for links in notices.
    pub fn console_url(&self) -> Option<String> {
        match (&self.console.public_url, self.listen.api) {
            (Some(url), _) => Some(url.trim_end_matches('/').to_string()),
            (None, Some(api)) => Some(format!("http://{api}")),
            (None, None) => None,
        }
    }

    pub fn console_login(&self, path: &Path) -> Result<Option<witness_identity::ConsoleLogin>, ConfigError> {
        let Some(oidc) = &self.console.oidc else { return Ok(None) };
        let invalid =
            |key: &str, problem: String| ConfigError::Invalid { path: path.to_path_buf(), key: format!("[console.oidc] {key}"), problem };
        if !self.identity.oidc.iter().any(|i| i.issuer == oidc.issuer) {
            return Err(invalid(
                "issuer",
                format!("{:?} is not an [[identity.oidc]] issuer; add it there with the claims its ID tokens carry", oidc.issuer),
            ));
        }
        if !oidc.scopes.iter().any(|s| s == "openid") {
            return Err(invalid("scopes", "must include \"openid\" (the provider sends an ID token only then)".into()));
        }
        let client_secret = match (&oidc.client_secret_env, &oidc.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid("client_secret_env", "give client_secret_env or client_secret_file, not both".into()))
            }
            (Some(var), None) => {
                Some(std::env::var(var).map_err(|_| invalid("client_secret_env", format!("the environment variable {var} is not set")))?)
            }
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                    .map_err(|e| invalid("client_secret_file", format!("cannot read {}: {e}", file.display())))?,
            ),
            (None, None) => None,
        };
        let redirect_url = match (&oidc.redirect_url, self.listen.api) {
            (Some(url), _) => url.clone(),
            (None, Some(api)) => format!("http://{api}/api/login/oidc/callback"),
            (None, None) => return Err(invalid("redirect_url", "set it, or [listen] api so that it can be made from that".into())),
        };
        Ok(Some(witness_identity::ConsoleLogin {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret,
            redirect_url,
            scopes: oidc.scopes.clone(),
        }))
    }

    pub fn policy(&self, path: &Path) -> Result<Policy, ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_path_buf(), key, problem };
        let default = match self.policy.default {
            Action::Approve => {
                let problem =
                    "\"approve\" cannot be a default: no approvers are named for it; use \"allow\" or \"deny\", and approve rules";
                return Err(invalid("[policy] default".into(), problem.into()));
            }
            action => action,
        };
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut names = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("rules[{i}] ({}) {field}", r.name);
            if r.name.is_empty() || !names.insert(r.name.as_str()) {
                return Err(invalid(key("name"), "every rule needs a name of its own".into()));
            }
            let action = r.action;
            let mut rule = Rule::new(&r.name, action);
            let globs = |list: &[String]| list.iter().map(|g| Glob::new(g)).collect::<Vec<_>>();
            rule.connections = globs(&r.connections);
            rule.identities = globs(&r.identities);
            rule.tasks = globs(&r.tasks);
            rule.tables = globs(&r.tables);
            rule.shell = globs(&r.shell);
            rule.ssh = parsed_each(&r.ssh).map_err(|e: witness_policy::UnknownSshOperation| invalid(key("ssh"), e.to_string()))?;
            rule.groups = r.groups.clone();
            rule.sql = parsed_each(&r.sql).map_err(|e: witness_policy::UnknownSqlClass| invalid(key("sql"), e.to_string()))?;
            rule.http = parsed_each(&r.http).map_err(|e: witness_policy::InvalidHttpRoute| invalid(key("http"), e.to_string()))?;
            rule.kube = parsed_each(&r.kube).map_err(|e: witness_policy::InvalidKubeRoute| invalid(key("kube"), e.to_string()))?;
            rule.namespaces = r.namespaces.iter().map(|n| Glob::new(n)).collect();
            if rule.is_kube_rule() && (rule.is_http_rule() || rule.is_ssh_rule() || !rule.sql.is_empty() || !rule.tables.is_empty()) {
                return Err(invalid(
                    key("kube / namespaces"),
                    "a rule is about Kubernetes (kube, namespaces), HTTP (http), SQL (sql, tables) or SSH (shell, ssh), one of them; split it".into(),
                ));
            }
            if rule.is_http_rule() && (rule.is_ssh_rule() || !rule.sql.is_empty() || !rule.tables.is_empty()) {
                return Err(invalid(
                    key("http"),
                    "a rule is about HTTP (http), SQL (sql, tables) or SSH (shell, ssh), one of them; split it".into(),
                ));
            }
            if rule.is_ssh_rule() && (!rule.sql.is_empty() || !rule.tables.is_empty()) {
                return Err(invalid(
                    key("shell / ssh"),
                    "a rule is about SQL (sql, tables) or about SSH (shell, ssh), not both; split it in two".into(),
                ));
            }
            if let Some(pattern) = &r.regex {
                rule.regex = Some(regex::Regex::new(pattern).map_err(|e| invalid(key("regex"), e.to_string()))?);
            }
            rule.message = r.message.clone();
            rule.approvers = r.approvers.clone();
            if let Some(timeout) = &r.timeout {
                rule.timeout = humantime::parse_duration(timeout)
                    .map_err(|e| invalid(key("timeout"), format!("{e}: write a duration such as \"10m\"")))?;
            }
            if action == Action::Approve && rule.approvers.is_empty() {
                return Err(invalid(
                    key("approvers"),
                    "an approve rule needs the groups whose members may decide, e.g. approvers = [\"dba\"]".into(),
                ));
            }
            if action != Action::Approve && (!rule.approvers.is_empty() || r.timeout.is_some()) {
                return Err(invalid(key("approvers / timeout"), "only approve rules have approvers and a timeout".into()));
            }
            rules.push(rule);
        }
        Ok(Policy { default, rules })
    }

    /// How MySQL clients present their token, defaults applied.
    pub fn mysql_auth(&self) -> MysqlAuth {
        self.mysql.auth.unwrap_or(if self.identity.oidc.is_empty() { MysqlAuth::Native } else { MysqlAuth::Password })
    }

    /// Whether PostgreSQL clients send their token in cleartext (over TLS or loopback only).
    pub fn postgres_cleartext(&self) -> bool {
        match self.postgres.auth {
            Some(auth) => auth == FrontAuth::Password,
            None => !self.identity.oidc.is_empty(),
        }
    }

    /// The `[[review.rules]]`.
    pub fn read_rules(&self) -> Vec<crate::review::access::ReadRule> {
        self.review
            .rules
            .iter()
            .map(|r| crate::review::access::ReadRule {
                name: r.name.clone(),
                connections: r.connections.iter().map(|c| Glob::new(c)).collect(),
                approvers: r.approvers.clone(),
                window: r.window,
            })
            .collect()
    }

    /// The `[[retention]]` rules, named by their place and what they match.
    pub fn retention_rules(&self) -> Vec<crate::retention::RetentionRule> {
        self.retention
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let matched: Vec<String> =
                    [("connection", &r.connection), ("protocol", &r.protocol), ("identity", &r.identity), ("group", &r.group)]
                        .iter()
                        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key} {v}")))
                        .collect();
                let what = if matched.is_empty() { "every session".to_string() } else { matched.join(", ") };
                crate::retention::RetentionRule {
                    name: format!("[[retention]] {} ({what})", i + 1),
                    connection: r.connection.as_deref().map(Glob::new),
                    protocol: r.protocol.as_deref().and_then(|p| p.parse().ok()),
                    identity: r.identity.as_deref().map(Glob::new),
                    group: r.group.as_deref().map(Glob::new),
                    keep: r.keep,
                }
            })
            .collect()
    }

    pub fn ledger_config(&self, data_dir: &Path) -> LedgerConfig {
        let mut config = LedgerConfig::new(data_dir);
        config.durability = self.ledger.durability;
        config.segment_bytes = self.ledger.segment_size_mib << 20;
        config.checkpoint_interval = self.ledger.checkpoint_interval;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<(&str, Durability, usize), &str>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.toml");
        std::fs::write(&path, text).unwrap();
        match (Config::load(&path), expect) {
            (Ok(config), Ok((data_dir, durability, n_connections))) => {
                assert_eq!(config.data_dir, PathBuf::from(data_dir));
                assert_eq!(config.ledger.durability, durability);
                assert_eq!(config.connections.len(), n_connections);
            }
            (Err(error), Err(needle)) => {
                let text = error.to_string();
                assert!(text.contains(needle), "error {text:?} should mention {needle:?}");
                assert!(text.contains("witness.toml"), "error {text:?} should name the file");
            }
            (got, want) => panic!("config {text:?}: got {got:?}, want {want:?}"),
        }
    }

    const PG: &str = "[[connections]]\nname = \"pg-local\"\nprotocol = \"postgres\"\naddress = \"127.0.0.1:5432\"\n";

    #[test]
    fn configs_load_or_say_what_is_wrong() {
        check("", Ok(("./witness-data", Durability::Write, 0)));
        check("data_dir = \"/tmp/w\"\n[ledger]\ndurability = \"fsync\"\nsegment_size_mib = 8\n", Ok(("/tmp/w", Durability::Fsync, 0)));
        check(&format!("[listen]\npostgres = \"127.0.0.1:15432\"\n{PG}"), Ok(("./witness-data", Durability::Write, 1)));
        check("[ledger]\ndurability = \"sometimes\"\n", Err("durability"));
        check("[ledger]\ncheckpoint_interval = \"soon\"\n", Err("checkpoint_interval"));
        check("[ledger]\nsegment_size_mib = 0\n", Err("segment_size_mib"));
        check("data_dri = \"x\"\n", Err("data_dri"));
        check("[ledger\n", Err("invalid"));
        check("[listen]\npostgres = \"localhost\"\n", Err("postgres"));
        check(&format!("{PG}{PG}"), Err("unique"));
        check(
            &PG.replace("postgres\"", "ftp\""),
            Err("connection \"pg-local\": protocol \"ftp\" is not supported yet; use \"postgres\", \"mysql\", \"ssh\", \"http\" or \"kubernetes\""),
        );
        check(&PG.replace("protocol = \"postgres\"\n", ""), Err("connection \"pg-local\": say which protocol it speaks"));
        check(&PG.replace("127.0.0.1:5432", "db.internal"), Err("no port"));
        check(&format!("{PG}tls = \"maybe\"\n"), Err("verify-full"));
        check(&format!("{PG}password_env = \"A\"\npassword_file = \"b\"\n"), Err("one or the other"));
        check("[postgres]\nauth = \"md5\"\n", Err("scram"));
        let oidc = "[[identity.oidc]]\nissuer = \"https://idp.example.com\"\naudience = \"witness\"\n";
        check(oidc, Ok(("./witness-data", Durability::Write, 0)));
        check(&format!("[postgres]\nauth = \"scram\"\n{oidc}"), Err("cannot go through SCRAM"));
        check(&oidc.replace("https://idp", "http://idp"), Err("https://"));
        check(&format!("{oidc}audiense = \"x\"\n"), Err("audiense"));
        let rule = "[[rules]]\nname = \"r\"\n";
        check(
            &format!("[policy]\ndefault = \"deny\"\n{rule}sql = [\"drop\"]\naction = \"deny\"\n"),
            Ok(("./witness-data", Durability::Write, 0)),
        );
        check("[policy]\ndefault = \"approve\"\n", Err("[policy] default"));
        check(&format!("{rule}sql = [\"dropp\"]\naction = \"deny\"\n"), Err("use one of"));
        check(&format!("{rule}action = \"block\"\n"), Err("allow, deny or approve"));
        check(&format!("{rule}action = \"approve\"\n"), Err("approvers"));
        check(&format!("{rule}action = \"approve\"\napprovers = [\"dba\"]\ntimeout = \"soon\"\n"), Err("timeout"));
        check(&format!("{rule}action = \"deny\"\nregex = \"(\"\n"), Err("regex"));
        check(&format!("{rule}action = \"deny\"\n{rule}action = \"allow\"\n"), Err("name of its own"));
        let ssh = "[[connections]]\nname = \"web\"\nprotocol = \"ssh\"\naddress = \"127.0.0.1:22\"\nuser = \"deploy\"\n";
        check(
            &format!("[listen]\nssh = \"127.0.0.1:2222\"\n{ssh}private_key_file = \"k\"\nhost_key = \"trust-on-first-use\"\n"),
            Ok(("./witness-data", Durability::Write, 1)),
        );
        check(&format!("{ssh}host_key = \"trust-on-first-use\"\n"), Err("needs private_key_file"));
        check(&format!("{ssh}private_key_file = \"k\"\npassword_env = \"P\"\nhost_key = \"trust-on-first-use\"\n"), Err("exactly one"));
        check(&format!("{ssh}private_key_file = \"k\"\n"), Err("pin the target's host key"));
        check(&format!("{ssh}private_key_file = \"k\"\nhost_key = \"ssh-ed25519 x\"\n"), Err("not an OpenSSH public key"));
        check(
            &format!("{}private_key_file = \"k\"\nhost_key = \"trust-on-first-use\"\n", ssh.replace("user = \"deploy\"\n", "")),
            Err("user"),
        );
        check(&format!("{PG}host_key = \"trust-on-first-use\"\n"), Err("postgres connection \"pg-local\": unknown field `host_key`"));
        check(
            &format!("{PG}auth = [\"scram-sha-256\", \"md5\", \"password\"]\nchannel_binding = \"require\"\n"),
            Ok(("./witness-data", Durability::Write, 1)),
        );
        check(
            &format!("{PG}auth = [\"md5\", \"kerberos\"]\n"),
            Err("connection \"pg-local\": auth method \"kerberos\" is unknown; use \"scram-sha-256\""),
        );
        check(&format!("{PG}auth = [\"trust\"]\n"), Err("needs no \"trust\""));
        check(&format!("{PG}auth = []\n"), Err("lists no method"));
        check(&format!("{PG}channel_binding = \"always\"\n"), Err("channel_binding \"always\" is unknown"));
        check(&format!("{PG}channel_binding = \"require\"\ntls = \"disable\"\n"), Err("set tls = \"verify-full\""));
        check(&format!("{PG}channel_binding = \"require\"\nauth = [\"md5\"]\n"), Err("SCRAM only"));
        let login = "[[connections.logins]]\ngroups = [\"ai-agents\"]\nuser = \"agent_ro\"\n";
        check(&format!("{PG}{login}password_env = \"RO\"\n{login}password_file = \"ro\"\n"), Ok(("./witness-data", Durability::Write, 1)));
        check(&format!("{PG}{login}"), Err("pg-local) logins[0] password_env / password_file: a login needs its own password"));
        check(
            &format!("{PG}{login}password_env = \"RO\"\npassword_file = \"ro\"\n"),
            Err("logins[0] password_env / password_file: set one"),
        );
        check(&format!("{PG}{login}password_env = \"RO\"\n{login}"), Err("logins[1] password_env"));
        check(&format!("{PG}{}password_env = \"RO\"\n", login.replace("[\"ai-agents\"]", "[]")), Err("logins[0] groups"));
        check(&format!("{PG}{}password_env = \"RO\"\n", login.replace("agent_ro", "")), Err("logins[0] user"));
        check(&format!("{PG}{login}password_env = \"RO\"\npasword = \"x\"\n"), Err("pasword"));
        let ssh_web = "name = \"web\"\nprotocol = \"ssh\"\naddress = \"h:22\"\nuser = \"u\"\nprivate_key_file = \"k\"\nhost_key = \"trust-on-first-use\"\n";
        check(&format!("[[connections]]\n{ssh_web}auth = [\"md5\"]\n"), Err("ssh connection \"web\": unknown field `auth`"));
        check(&format!("{rule}ssh = [\"tunnel\"]\naction = \"deny\"\n"), Err("port-forward"));
        check(&format!("{rule}shell = [\"rm *\"]\nsql = [\"drop\"]\naction = \"deny\"\n"), Err("not both"));
        check(
            &format!("{rule}shell = [\"rm -rf *\"]\nssh = [\"exec\"]\naction = \"deny\"\n"),
            Ok(("./witness-data", Durability::Write, 0)),
        );
        let http = "[[connections]]\nname = \"billing\"\nprotocol = \"http\"\nurl = \"https://billing.internal\"\n";
        check(
            &format!("[listen]\nhttp = \"127.0.0.1:8081\"\n[http]\nmax_body_recorded = 1024\n{http}bearer_env = \"B\"\n"),
            Ok(("./witness-data", Durability::Write, 1)),
        );
        check(&format!("{http}[connections.headers]\nX-Api-Key = {{ env = \"K\" }}\n"), Ok(("./witness-data", Durability::Write, 1)));
        check("[http]\nhost_suffix = \".witness.local\"\n", Err("[http] host_suffix"));
        check(&format!("{http}[connections.headers]\nX-Api-Key = {{ env = \"K\", file = \"k\" }}\n"), Err("headers.X-Api-Key"));
        check(&format!("{http}bearer_env = \"B\"\nbearer_file = \"b\"\n"), Err("set one or the other"));
        check(&format!("{http}basic_user = \"svc\"\n"), Err("needs a password"));
        check(&format!("{http}basic_password_env = \"P\"\n"), Err("basic_user"));
        check(
            &format!("{http}basic_user = \"svc\"\nbasic_password_env = \"P\"\nbearer_env = \"B\"\n"),
            Err("choose a bearer token or basic auth"),
        );
        check(&http.replace("https://billing.internal", "billing.internal"), Err("url"));
        check(&format!("{http}address = \"h:1\"\n"), Err("unknown field `address`"));
        check(&format!("{rule}http = [\"GET /api/*\"]\naction = \"deny\"\n"), Ok(("./witness-data", Durability::Write, 0)));
        check(&format!("{rule}http = [\"GET\"]\naction = \"deny\"\n"), Err("invalid http route"));
        check(&format!("{rule}http = [\"GET /x\"]\nsql = [\"drop\"]\naction = \"deny\"\n"), Err("split it"));
        let kube = "[[connections]]\nname = \"k8s\"\nprotocol = \"kubernetes\"\nurl = \"https://10.0.0.1:6443\"\n";
        check(&format!("{kube}token_env = \"T\"\nsecret_readers = [\"alice\"]\n"), Ok(("./witness-data", Durability::Write, 1)));
        check(kube, Err("give witness's own credential"));
        check(&format!("{kube}client_cert_file = \"c\"\nclient_key_file = \"k\"\n"), Ok(("./witness-data", Durability::Write, 1)));
        check(&format!("{kube}client_cert_file = \"c\"\n"), Err("set both or neither"));
        check(
            &format!("{http}client_cert_file = \"c\"\nclient_key_file = \"k\"\n").replace("https://", "http://"),
            Err("use an https:// url"),
        );
        check(&format!("{kube}token_env = \"T\"\ntoken_file = \"t\"\n"), Err("set one or the other"));
        check(&format!("{kube}token_env = \"T\"\nbearer_env = \"B\"\n"), Err("unknown field `bearer_env`"));
        check(
            &format!("{rule}kube = [\"delete pods\"]\nnamespaces = [\"prod-*\"]\naction = \"deny\"\n"),
            Ok(("./witness-data", Durability::Write, 0)),
        );
        check(&format!("{rule}kube = [\"delete\"]\naction = \"deny\"\n"), Err("invalid kube entry"));
        check(&format!("{rule}namespaces = [\"prod\"]\nhttp = [\"GET /x\"]\naction = \"deny\"\n"), Err("split it"));
        let mask = "[[masking]]\nname = \"pii\"\n";
        check(
            &format!("{mask}columns = [\"*.email\"]\ndetectors = [\"email\", \"secrets\"]\n"),
            Ok(("./witness-data", Durability::Write, 0)),
        );
        check(&format!("{mask}detectors = [\"emails\"]\n"), Err("credit-card"));
        check(&format!("{mask}columns = [\"a..b\"]\n"), Err("masking[0] (pii) columns"));
        check(mask, Err("masks nothing"));
        check(&format!("{mask}columns = [\"x\"]\napply_to = \"client\"\n"), Err("client-and-recording"));
        check(&format!("{mask}columns = [\"x\"]\nstyle = \"blur\"\n"), Err("partial"));
        check(&format!("{mask}columns = [\"x\"]\n{mask}columns = [\"y\"]\n"), Err("name of its own"));
    }

    #[test]
    fn the_quickstart_config_loads_with_its_example_rules_uncommented() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart.toml"));
        let config = Config::load(path).unwrap();
        assert!(config.rules.is_empty() && config.masking.is_empty() && config.listen.api.is_some());
        let text = std::fs::read_to_string(path).unwrap();
        let (head, examples) = text.split_once("# Uncomment these two").unwrap();
        let uncommented: Vec<&str> = examples
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    // Section headers ([[rules]], [[masking]], [limits]) and keys; not prose.
                    if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let with_rules = dir.path().join("witness.toml");
        std::fs::write(&with_rules, format!("{head}\n#{}", uncommented.join("\n"))).unwrap();
        let config = Config::load(&with_rules).unwrap();
        let policy = config.policy(&with_rules).unwrap();
        let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["no-destructive-ddl", "writes-need-approval"]);
        assert_eq!(config.limits.login_limits(), LimitsSection::default().login_limits(), "the example [limits] shows the defaults");
        let masking = config.masking(&with_rules, b"key").unwrap();
        let agent = masking.for_session("pg-local", &["ai-agents".into()]).expect("the example masking rule applies to agents");
        assert!(agent.has_client_column_rules());
        assert!(masking.for_session("pg-local", &["dba".into()]).is_none());
    }

    #[test]
    fn the_console_login_needs_a_known_issuer_and_says_where_it_sends_browsers_back() {
        let load = |text: &str| -> (Config, std::path::PathBuf, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("witness.toml");
            std::fs::write(&path, text).unwrap();
            (Config::load(&path).unwrap(), path, dir)
        };
        let issuer = "[[identity.oidc]]\nissuer = \"https://idp.example.com\"\naudience = \"witness\"\n";
        let (config, path, _dir) = load(&format!(
            "[listen]\napi = \"127.0.0.1:8080\"\n{issuer}[console.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"console\"\n"
        ));
        let login = config.console_login(&path).unwrap().unwrap();
        assert_eq!(login.redirect_url, "http://127.0.0.1:8080/api/login/oidc/callback");
        assert_eq!((login.scopes, login.client_secret), (vec!["openid".to_string()], None));

        let (config, path, _dir) = load("[console.oidc]\nissuer = \"https://other.example.com\"\nclient_id = \"console\"\n");
        let error = config.console_login(&path).unwrap_err().to_string();
        assert!(error.contains("[console.oidc] issuer") && error.contains("not an [[identity.oidc]] issuer"), "{error}");

        let (config, path, _dir) =
            load(&format!("{issuer}[console.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\nscopes = [\"groups\"]\n"));
        assert!(config.console_login(&path).unwrap_err().to_string().contains("must include \"openid\""));
        let (config, path, _dir) = load(&format!("{issuer}[console.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\n"));
        assert!(config.console_login(&path).unwrap_err().to_string().contains("redirect_url"), "no [listen] api, no redirect_url");
        assert!(Config::default().console_login(Path::new("x")).unwrap().is_none());
    }
}
