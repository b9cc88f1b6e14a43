//! The witness process: reads the config, builds the gate (identity, targets, ledger, policy,
//! approvals), listens for clients and for API callers, ends sessions whose token is revoked,
//! reloads the policy on SIGHUP, and shuts down cleanly, ending live sessions before the ledger's
//! final checkpoint.
//!
//! Protocol details live in the proto crates; this crate wires them to the rest.

#![forbid(unsafe_code)]

mod accept;
mod approvals;
mod audit;
pub mod config;
mod counts;
pub mod data_dir;
mod gate;
pub mod host_actions;
mod identities;
mod logins;
mod notify;
mod registry;
mod reloadable;
pub mod retention;
mod review;
mod targets;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use witness_core::{Interrupt, Secret};
use witness_identity::{OidcVerifier, TokenStore};
use witness_ledger::Ledger;
use witness_proto_http::{HttpFront, HttpSettings, HttpTarget};
use witness_proto_mysql::{MysqlFront, MysqlSettings, MysqlTarget};
use witness_proto_pg::{FrontAuth, GroupLogin, PgFront, PgLogin, PgSettings, PgTarget};
use witness_proto_ssh::{HostKeyPolicy, SshFront, SshSettings, SshTarget, TargetAuth};

use crate::accept::{accept_loop, Listener, Opening};
use crate::audit::{AuditTrail, RefusedLogins};
use crate::config::{ConnectionConfig, HttpConnection, KubernetesConnection, MysqlConnection, PostgresConnection, SshConnection};
use crate::counts::Counts;
use crate::identities::Identities;
use crate::logins::Logins;
use crate::reloadable::Reloadable;
use crate::review::Review;
use crate::targets::Targets;

pub use approvals::Approvals;
pub use config::{Config, ConfigError};
pub use gate::Gateway;
pub use registry::Registry;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address} for {protocol}: {source}; is another process using the port?")]
    Listen { protocol: &'static str, address: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Target(String),
    #[error("TLS for clients: {0}")]
    Tls(String),
    #[error(transparent)]
    Identity(#[from] witness_identity::IdentityError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read or create the masking key {path}: {source}; check the data directory's permissions")]
    MaskKey { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    SshHostKey(#[from] witness_proto_ssh::HostKeyError),
    #[error(
        "{config} has no [listen] addresses, so witness would serve nothing; give it a [listen] section, e.g. \
         `postgres = \"127.0.0.1:15432\"` and `api = \"127.0.0.1:8080\"`, or try `witness serve --config examples/quickstart.toml`"
    )]
    NothingToListenOn { config: String },
}

/// Refuses a config that listens on nothing, before anything is opened or created: a gateway
/// without listeners would run, record nothing and look as if it worked.
pub fn check_listeners(config: &Config, config_path: Option<&Path>) -> Result<(), ServeError> {
    if !config.listen.is_empty() {
        return Ok(());
    }
    let config = match config_path {
        Some(path) => format!("the config {}", path.display()),
        None => "the default config (no --config was given)".into(),
    };
    Err(ServeError::NothingToListenOn { config })
}

/// The key of the `hash` masking style, in the data directory: made once, so the same value
/// hashes the same across restarts.
const MASK_KEY_FILE: &str = "mask.key";

fn mask_key(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(MASK_KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the key is shorter than 32 bytes")),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let key: [u8; 32] = rand::random();
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key.to_vec())
}

/// The addresses witness listens on once it has bound them: with port 0 in the config, the port
/// the system chose. Handed to the caller of [`serve`] when every listener is ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    pub postgres: Option<SocketAddr>,
    pub mysql: Option<SocketAddr>,
    pub ssh: Option<SocketAddr>,
    /// HTTP clients (`/c/CONNECTION/…`).
    pub http: Option<SocketAddr>,
    /// The HTTP API and the review console.
    pub api: Option<SocketAddr>,
}

/// How often revoked tokens are looked for, to end their sessions.
const REVOCATION_POLL: Duration = Duration::from_millis(500);

/// Serves until the future that `shutdown` returns completes, then ends live sessions and returns.
/// `shutdown` is called once every listener is ready, with the addresses they are bound to (so
/// the caller can tell people where to connect). The caller shuts the ledger down afterwards (it
/// is the last holder of it once this returns). `config_path` is read again on SIGHUP for new
/// policy rules.
pub async fn serve<F: Future<Output = ()>>(
    config: &Config,
    config_path: Option<&Path>,
    data_dir: &Path,
    ledger: Arc<Ledger>,
    shutdown: impl FnOnce(Listening) -> F,
) -> Result<(), ServeError> {
    check_listeners(config, config_path)?;
    let tokens = Arc::new(TokenStore::open(data_dir)?);
    let config_name = config_path.unwrap_or(Path::new("(defaults)"));
    let targets = targets(config, config_name)?;
    let registry = Registry::default();
    let policy = config.policy(config_name)?;
    let hash_key = mask_key(data_dir).map_err(|e| ServeError::MaskKey { path: data_dir.join(MASK_KEY_FILE), source: e })?;
    let masking = config.masking(config_name, &hash_key)?;
    let identities = Identities {
        tokens: tokens.clone(),
        oidc: (!config.identity.oidc.is_empty()).then(|| OidcVerifier::new(config.identity.oidc.clone())),
    };
    let rules = Arc::new(Reloadable::new(policy, masking, config.roles.clone()));
    let counts = Arc::new(Counts::new(config.connections.iter().map(|c| c.name().to_string())));
    let approvals = Approvals::notifying(notify::Notifier::start(config.notify_targets(config_name)?, config.console_url()));
    let audit = Arc::new(AuditTrail::default());
    let refused = Arc::new(RefusedLogins::new(audit.clone(), ledger.clone()));
    let review = Arc::new(
        Review::new(
            identities.clone(),
            ledger.clone(),
            registry.clone(),
            approvals.clone(),
            rules.clone(),
            counts.clone(),
            refused.clone(),
        )
        .with_console_login(config.console_login(config_name)?)
        .with_read_rules(config.read_rules()),
    );
    let gate = Arc::new(Gateway {
        identities,
        ledger,
        targets,
        registry: registry.clone(),
        rules: rules.clone(),
        approvals,
        classes: Default::default(),
        counts,
        refused,
    });
    let mut listeners = JoinSet::new();
    // Tells the accept loops to stop accepting and drain their sessions.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let host_actions = tokio::spawn(host_actions::drain_loop(data_dir.to_path_buf(), audit.clone(), gate.ledger.clone(), stop_rx.clone()));
    let retention = tokio::spawn(retention::sweep_loop(
        config.retention_rules(),
        config.ledger.retention_sweep,
        data_dir.to_path_buf(),
        gate.ledger.clone(),
        audit.clone(),
        stop_rx.clone(),
    ));
    // Connections that have not logged in yet, on every client listener.
    let mut clients = ClientListeners { tasks: &mut listeners, logins: Logins::new(config.limits.login_limits()), stop: stop_rx.clone() };
    let mut listening = Listening::default();

    if let Some(address) = config.listen.postgres {
        let tls = tls::client_facing(config, data_dir).map_err(ServeError::Tls)?;
        let settings = PgSettings {
            max_rows_per_statement: config.postgres.max_rows_per_statement,
            auth: if config.postgres_cleartext() { FrontAuth::Password } else { FrontAuth::Scram },
            ..PgSettings::default()
        };
        let front = Arc::new(PgFront::new(gate.clone(), Some(tls), settings));
        let kind = Listener { protocol: "PostgreSQL", opening: Opening::ClientFirst { refusal: accept::pg_refusal } };
        let serve = move |tcp, peer, login| witness_proto_pg::serve_client(front.clone(), tcp, peer, login);
        listening.postgres = Some(clients.start(address, kind, gate.targets.count::<PgTarget>(), serve).await?);
    }
    if let Some(address) = config.listen.mysql {
        // The PostgreSQL listener's certificate: configured, or self-signed in DATA_DIR/tls.
        let tls = tls::client_facing(config, data_dir).map_err(ServeError::Tls)?;
        let settings = MysqlSettings {
            max_rows_per_statement: config.mysql.max_rows_per_statement,
            auth: config.mysql_auth(),
            default_connection: config.mysql.default_connection.clone(),
            ..MysqlSettings::default()
        };
        let probe = config
            .connections
            .iter()
            .filter_map(|c| match c {
                ConnectionConfig::Mysql(c) => Some(c.address.clone()),
                _ => None,
            })
            .collect();
        let front = Arc::new(MysqlFront::new(gate.clone(), Some(tls), settings, probe));
        let kind = Listener { protocol: "MySQL", opening: Opening::ServerFirst };
        let serve = move |tcp, peer, login| witness_proto_mysql::serve_client(front.clone(), tcp, peer, login);
        listening.mysql = Some(clients.start(address, kind, gate.targets.count::<MysqlTarget>(), serve).await?);
    }
    if let Some(address) = config.listen.ssh {
        let host_key_path = config.ssh.host_key.clone().unwrap_or_else(|| data_dir.join("ssh").join("host_ed25519"));
        let settings = SshSettings {
            host_keys: vec![witness_proto_ssh::load_or_create_host_key(&host_key_path)?],
            known_hosts: data_dir.join("ssh").join("known_hosts"),
            connect_timeout: config.ssh.connect_timeout,
            inactivity_timeout: config.ssh.idle_timeout,
        };
        let front = Arc::new(SshFront::new(gate.clone(), settings));
        let kind = Listener { protocol: "SSH", opening: Opening::ServerFirst };
        let serve = move |tcp, peer, login| witness_proto_ssh::serve_client(front.clone(), tcp, peer, login);
        listening.ssh = Some(clients.start(address, kind, gate.targets.count::<SshTarget>(), serve).await?);
    }
    if let Some(address) = config.listen.http {
        let settings = HttpSettings {
            max_body_recorded: config.http.max_body_recorded,
            connect_timeout: config.http.connect_timeout,
            host_suffix: config.http.host_suffix.clone(),
        };
        // The PostgreSQL listener's certificate: configured, or self-signed in DATA_DIR/tls.
        let tls = tls::client_facing(config, data_dir).map_err(ServeError::Tls)?;
        let front = Arc::new(HttpFront::new(gate.clone(), settings, Some(tls)));
        let kind = Listener { protocol: "HTTP", opening: Opening::ClientFirst { refusal: accept::http_refusal } };
        let serve = move |tcp, peer, login| witness_proto_http::serve_client(front.clone(), tcp, peer, login);
        listening.http = Some(clients.start(address, kind, gate.targets.count::<HttpTarget>(), serve).await?);
    }
    if let Some(address) = config.listen.api {
        let listener = TcpListener::bind(address).await.map_err(|source| ServeError::Listen { protocol: "the API", address, source })?;
        let address = listener.local_addr().map_err(|source| ServeError::Listen { protocol: "the API", address, source })?;
        listening.api = Some(address);
        tracing::info!(%address, "API listener ready");
        let mut stop = stop_rx.clone();
        let api = witness_api::serve(
            listener,
            review.clone(),
            witness_api::ApiSettings { secure_cookies: config.console.secure_cookies, require_reason: config.review.require_reason },
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            },
        );
        listeners.spawn(async move {
            if let Err(e) = api.await {
                tracing::error!(error = %e, "the API stopped");
            }
        });
    }
    let revocations = tokio::spawn(revocation_loop(tokens, registry.clone()));
    let reloads = config_path.map(|path| tokio::spawn(reload_loop(path.to_path_buf(), rules)));

    shutdown(listening).await;
    tracing::info!(live_sessions = registry.live(), "shutting down: ending live sessions");
    let _ = stop_tx.send(true);
    registry.interrupt_all(Interrupt::Shutdown);
    // Each accept loop waits (up to the grace period) for its sessions to end and record it.
    while listeners.join_next().await.is_some() {}
    revocations.abort();
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    if let Err(e) = retention.await {
        tracing::error!(error = %e, "the retention sweep stopped");
    }
    // What the CLI spooled since the last pass goes in before the trail closes.
    if let Err(e) = host_actions.await {
        tracing::error!(error = %e, "the audit spool's drain stopped");
    }
    review.close_audit_trail().await;
    Ok(())
}

/// The client listeners: each binds its address and runs an accept loop; all share the bounds on
/// connections waiting to log in and the signal to stop. A protocol's listener is its front and
/// one call of [`ClientListeners::start`].
struct ClientListeners<'a> {
    tasks: &'a mut JoinSet<()>,
    logins: Arc<Logins>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl ClientListeners<'_> {
    /// Binds `address` and serves each accepted connection with `serve`; returns the address
    /// bound (the system's choice for port 0).
    async fn start<S, F>(&mut self, address: SocketAddr, kind: Listener, connections: usize, serve: S) -> Result<SocketAddr, ServeError>
    where
        S: Fn(tokio::net::TcpStream, SocketAddr, witness_core::PendingLogin) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let protocol = kind.protocol;
        let listener = TcpListener::bind(address).await.map_err(|source| ServeError::Listen { protocol, address, source })?;
        let address = listener.local_addr().map_err(|source| ServeError::Listen { protocol, address, source })?;
        tracing::info!(%address, connections, "{protocol} listener ready");
        self.tasks.spawn(accept_loop(listener, kind, self.logins.clone(), self.stop.clone(), serve));
        Ok(address)
    }
}

/// On SIGHUP, reads the config again and applies its policy (`[policy]` and `[[rules]]`) to every
/// session from its next request on. A config that does not load keeps the policy in force.
/// Other sections (listeners, connections) need a restart.
async fn reload_loop(path: PathBuf, rules: Arc<Reloadable>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; policy reload is off");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let key = rules.masking().hash_key().to_vec();
        match Config::load(&path).and_then(|config| Ok((config.policy(&path)?, config.masking(&path, &key)?, config.roles))) {
            Ok((policy, masking, roles)) => {
                let n_rules = policy.rules.len();
                rules.replace(policy, masking, roles);
                tracing::info!(config = %path.display(), rules = n_rules, "SIGHUP: policy reloaded; live sessions use it from their next request (masking from their next session)");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: the config does not load; the policy in force stays"),
        }
    }
}

/// Ends the live sessions whose token is revoked. It asks about the tokens of live sessions each
/// time (not about revocations since the last look), so a session that registered late, or a
/// revocation whose commit was slow, is still caught.
async fn revocation_loop(tokens: Arc<TokenStore>, registry: Registry) {
    loop {
        tokio::time::sleep(REVOCATION_POLL).await;
        let live = registry.live_credentials();
        if live.is_empty() {
            continue;
        }
        match tokens.revoked_among(&live) {
            Ok(revoked) => {
                for token in revoked {
                    let n = registry.interrupt_credential(&token, Interrupt::Revoked);
                    if n > 0 {
                        tracing::info!(token, sessions = n, "token revoked: ending its live sessions");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read revocations from the token store"),
        }
    }
}

/// Every connection's target, built by its protocol's rules.
fn targets(config: &Config, config_name: &Path) -> Result<Targets, ServeError> {
    let mut targets = Targets::default();
    for (i, c) in config.connections.iter().enumerate() {
        match c {
            ConnectionConfig::Postgres(c) => targets.insert(c.name.clone(), pg_target(i, c, config_name)?),
            ConnectionConfig::Mysql(c) => targets.insert(c.name.clone(), mysql_target(c)?),
            ConnectionConfig::Ssh(c) => targets.insert(c.name.clone(), ssh_target(c)?),
            ConnectionConfig::Http(c) => targets.insert(c.name.clone(), http_target(c)?),
            ConnectionConfig::Kubernetes(c) => targets.insert(c.name.clone(), kube_target(c)?),
        }
    }
    Ok(targets)
}

fn pg_target(i: usize, c: &PostgresConnection, config_name: &Path) -> Result<PgTarget, ServeError> {
    let invalid = |key: String, problem: String| {
        ServeError::Config(ConfigError::Invalid {
            path: config_name.to_path_buf(),
            key: format!("connections[{i}] ({}) {key}", c.name),
            problem,
        })
    };
    let tls = witness_proto_pg::client_config(c.tls, c.ca_file.as_deref())
        .map_err(|e| ServeError::Target(format!("connection {}: {e}", c.name)))?;
    let mut group_logins = Vec::with_capacity(c.logins.len());
    for (j, login) in c.logins.iter().enumerate() {
        let password = login.password().map_err(|(key, problem)| invalid(format!("logins[{j}] {key}"), problem))?;
        group_logins.push(GroupLogin {
            groups: login.groups.clone(),
            login: PgLogin { user: login.user.clone(), password: Some(Secret::new(password)) },
        });
    }
    Ok(PgTarget {
        name: c.name.clone(),
        address: c.address.clone(),
        database: c.database.clone().unwrap_or_else(|| "postgres".into()),
        login: PgLogin {
            user: c.user.clone().unwrap_or_else(|| "postgres".into()),
            password: c.password().map_err(ServeError::Target)?.map(Secret::new),
        },
        group_logins,
        auth: c.auth.clone(),
        channel_binding: c.channel_binding,
        tls_mode: c.tls,
        tls,
    })
}

fn mysql_target(c: &MysqlConnection) -> Result<MysqlTarget, ServeError> {
    let fail = |e: String| ServeError::Target(format!("connection {}: {e}", c.name));
    let config = witness_proto_pg::client_config(c.tls, c.ca_file.as_deref()).map_err(|e| fail(e.to_string()))?;
    let host = c.address.rsplit_once(':').map_or(c.address.as_str(), |(host, _)| host).trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| fail(format!("address: {e}")))?;
    Ok(MysqlTarget {
        name: c.name.clone(),
        address: c.address.clone(),
        user: c.user.clone(),
        password: c.password().map_err(ServeError::Target)?.map(Secret::new),
        database: c.database.clone(),
        tls: config.map(|config| (config, name)),
        tls_required: matches!(c.tls, witness_proto_pg::TlsMode::Require | witness_proto_pg::TlsMode::VerifyFull),
        tls_verified: c.tls == witness_proto_pg::TlsMode::VerifyFull,
        server_public_key: match &c.server_public_key_file {
            // Over TLS a MySQL server takes the password in clear, not encrypted to its key.
            Some(_) if c.tls != witness_proto_pg::TlsMode::Disable => {
                return Err(fail(
                    "server_public_key_file is for tls = \"disable\": over TLS a MySQL server takes the password in clear, which witness sends only with tls = \"verify-full\"".into(),
                ))
            }
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| fail(format!("server_public_key_file {}: {e}", path.display())))?;
                let key = witness_proto_mysql::auth::rsa_public_key_from_pem(&text)
                    .map_err(|e| fail(format!("server_public_key_file {}: {e}", path.display())))?;
                Some(std::sync::Arc::new(key))
            }
            None => None,
        },
    })
}

fn ssh_target(c: &SshConnection) -> Result<SshTarget, ServeError> {
    let auth = match c.private_key().map_err(ServeError::Target)? {
        Some(text) => TargetAuth::private_key(&text).map_err(|e| ServeError::Target(format!("connection {}: {e}", c.name)))?,
        None => match c.password().map_err(ServeError::Target)? {
            Some(password) => TargetAuth::password(password),
            None => {
                return Err(ServeError::Target(format!("connection {}: no private key or password to log in to the target with", c.name)))
            }
        },
    };
    let host_key = HostKeyPolicy::parse(c.host_key.as_deref().unwrap_or_default())
        .map_err(|e| ServeError::Target(format!("connection {}: host_key: {e}", c.name)))?;
    Ok(SshTarget { name: c.name.clone(), address: c.address.clone(), user: c.user.clone().unwrap_or_default(), auth, host_key })
}

fn http_target(c: &HttpConnection) -> Result<HttpTarget, ServeError> {
    let trust = UpstreamTrust { ca_file: c.ca_file.as_deref(), pinned: c.certificate_sha256.as_deref() };
    let tls = upstream_tls(&c.name, &c.url, trust, c.client_cert_file.as_deref(), c.client_key_file.as_deref())?;
    HttpTarget::new(&c.name, &c.url, c.credentials().map_err(ServeError::Target)?, tls)
        .map_err(|e| ServeError::Target(format!("connection {}: {e}", c.name)))
}

fn kube_target(c: &KubernetesConnection) -> Result<HttpTarget, ServeError> {
    let trust = UpstreamTrust { ca_file: c.ca_file.as_deref(), pinned: c.certificate_sha256.as_deref() };
    let tls = upstream_tls(&c.name, &c.url, trust, c.client_cert_file.as_deref(), c.client_key_file.as_deref())?;
    let credentials = c.token().map_err(ServeError::Target)?.map(witness_proto_http::UpstreamCredential::Bearer).into_iter().collect();
    let settings = witness_proto_http::KubeTarget {
        secret_readers: c.secret_readers.iter().map(|g| witness_core::Glob::new(g)).collect(),
        secret_reader_groups: c.secret_reader_groups.clone(),
    };
    HttpTarget::new(&c.name, &c.url, credentials, tls)
        .map(|target| target.kubernetes(settings))
        .map_err(|e| ServeError::Target(format!("connection {}: {e}", c.name)))
}

/// What vouches for an https upstream's certificate: CAs (`ca_file`, default the system's), or
/// a pin (`certificate_sha256`).
struct UpstreamTrust<'a> {
    ca_file: Option<&'a Path>,
    pinned: Option<&'a str>,
}

/// TLS towards an `https` upstream: its certificate checked against its CAs or its pin, and
/// witness's client certificate presented when the connection has one.
fn upstream_tls(
    name: &str,
    url: &str,
    trust: UpstreamTrust<'_>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, ServeError> {
    if !url.starts_with("https://") {
        return Ok(None);
    }
    let failed = |e: String| ServeError::Target(format!("connection {name}: {e}"));
    let read = |path: &Path| std::fs::read(path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())));
    let identity = match (client_cert, client_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?, format!("{} and {}", cert.display(), key.display()))),
        _ => None,
    };
    let identity = identity.as_ref().map(|(cert_pem, key_pem, source)| witness_proto_pg::ClientIdentity { cert_pem, key_pem, source });
    let config = match (trust.pinned, trust.ca_file) {
        (Some(_), Some(_)) => return Err(failed("give ca_file or certificate_sha256, not both".into())),
        (Some(pin), None) => {
            let sha256 = parse_sha256(pin).ok_or_else(|| {
                failed(format!("certificate_sha256 {pin:?} is not a SHA-256 in hex (64 digits, colons allowed; `openssl x509 -noout -fingerprint -sha256 -in CERT`)"))
            })?;
            witness_proto_pg::pinned_client_config(sha256, identity)
        }
        (None, ca_file) => witness_proto_pg::verified_client_config(ca_file, identity),
    };
    config.map(Some).map_err(|e| failed(e.to_string()))
}

/// A SHA-256 written as 64 hex digits, in either case, with or without colons between bytes,
/// and with openssl's `sha256 Fingerprint=` before it or not.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let text = text.rsplit_once('=').map_or(text, |(_, digits)| digits);
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    hex::decode(digits).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::{mysql_target, parse_sha256};
    use crate::config::MysqlConnection;

    #[test]
    fn a_pinned_mysql_key_is_for_connections_without_tls() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("public_key.pem");
        let private = dir.path().join("private_key.pem");
        let openssl = |args: &[&str]| assert!(std::process::Command::new("openssl").args(args).status().unwrap().success());
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", private.to_str().unwrap()]);
        openssl(&["pkey", "-pubout", "-in", private.to_str().unwrap(), "-out", key.to_str().unwrap()]);
        let connection = |tls: &str| -> MysqlConnection {
            toml::from_str(&format!(
                "name = \"m\"\naddress = \"127.0.0.1:3306\"\nuser = \"app\"\ntls = \"{tls}\"\nserver_public_key_file = \"{}\"\n",
                key.display()
            ))
            .unwrap()
        };
        assert!(mysql_target(&connection("disable")).unwrap().server_public_key.is_some());
        for tls in ["prefer", "require", "verify-full"] {
            let refused = mysql_target(&connection(tls)).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(refused.contains("server_public_key_file is for tls = \"disable\""), "{tls}: {refused}");
        }
        std::fs::write(&key, "not a key").unwrap();
        let unreadable = mysql_target(&connection("disable")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(unreadable.contains("no -----BEGIN PUBLIC KEY----- block"), "{unreadable}");
    }

    #[test]
    fn pins_are_read_as_openssl_and_people_write_them() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for written in [hex.clone(), colons.clone(), format!("sha256 Fingerprint={colons}"), format!(" {hex}\n")] {
            assert_eq!(parse_sha256(&written), Some([0xab; 32]), "{written}");
        }
        for bad in ["", "abcd", &"ab".repeat(33), &"zz".repeat(32)] {
            assert_eq!(parse_sha256(bad), None, "{bad}");
        }
    }
}
