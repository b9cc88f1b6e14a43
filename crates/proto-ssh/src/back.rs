//! The back half: witness logs in to the target with the credentials it holds, after checking the
//! target's host key against the pinned one (or, for `trust-on-first-use`, the one it saw first).
//! A mismatch refuses the session with both fingerprints, so a person can tell a re-keyed host
//! from an attack.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use witness_core::Secret;

use crate::SshTarget;

/// How witness logs in to a target.
pub enum TargetAuth {
    Key(Arc<PrivateKey>),
    Password(Secret),
}

/// Which host keys the target may present.
#[derive(Clone)]
pub enum HostKeyPolicy {
    /// Exactly these (from the config's `host_key`).
    Pinned(Vec<PublicKey>),
    /// The first key seen is kept in the known-hosts file and required from then on.
    TrustOnFirstUse,
}

/// Why witness could not log in to a target. Messages name the connection and the address, never
/// a credential; they are shown to the client as they are.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("connection {connection}: cannot reach the target at {address}: {reason}; is it up?")]
    Unreachable { connection: String, address: String, reason: String },
    #[error(
        "connection {connection}: the target at {address} presented host key {presented}, but witness expects {expected}; \
         if the host was re-keyed, update host_key in witness's config (or remove its line from {known_hosts}), otherwise \
         someone may be in the middle"
    )]
    HostKeyMismatch { connection: String, address: String, presented: String, expected: String, known_hosts: String },
    #[error("connection {connection}: the target at {address} refused witness's login as {user}; check the connection's key or password")]
    LoginRefused { connection: String, address: String, user: String },
    #[error("connection {connection}: logging in to the target at {address} took over {seconds} s")]
    Timeout { connection: String, address: String, seconds: u64 },
    #[error("connection {connection}: SSH with the target at {address} failed: {reason}")]
    Protocol { connection: String, address: String, reason: String },
}

/// A logged-in connection to a target.
pub(crate) type TargetHandle = client::Handle<TargetHandler>;

/// A channel the target opens back toward the client: an agent channel (after agent forwarding
/// was allowed) or a connection to a remote-forwarded port. The front decides, records and
/// relays it; dropping it refuses it.
pub(crate) enum Reverse {
    Agent {
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
    },
    Forwarded {
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        connected: (String, u32),
        originator: (String, u32),
    },
}

/// Reverse channels waiting for the front; more are refused.
pub(crate) const MAX_REVERSE_WAITING: usize = 16;

/// Why a target connection ended, once it has: set by russh's callback, watched by the front,
/// which tells the client (as a direct client would see its connection closed by the remote
/// host) and records it as the session's end.
pub(crate) type TargetEnded = Arc<tokio::sync::watch::Sender<Option<String>>>;

/// What a target connection passes on to the session's front: the channels the target opens
/// toward the client, and the connection's end.
#[derive(Clone)]
pub(crate) struct Link {
    pub reverse: tokio::sync::mpsc::Sender<Reverse>,
    pub ended: TargetEnded,
}

/// russh's client callbacks: only the host key check.
pub(crate) struct TargetHandler {
    connection: String,
    policy: HostKeyPolicy,
    known_hosts: PathBuf,
    /// Set when the key was refused, for the error message.
    refused: Arc<Mutex<Option<(String, String)>>>,
    /// Where channels the target opens toward the client go.
    reverse: tokio::sync::mpsc::Sender<Reverse>,
    /// Told when the connection ends, unless `leaving`.
    ended: TargetEnded,
    /// Set when witness ends the connection itself.
    leaving: Arc<AtomicBool>,
}

/// Serialises first-use writes to the known-hosts file within this process.
static KNOWN_HOSTS_LOCK: Mutex<()> = Mutex::new(());

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // Refused (dropped) when the front is gone or has too many waiting.
        let _ = self.reverse.try_send(Reverse::Agent { channel, reply });
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let _ = self.reverse.try_send(Reverse::Forwarded {
            channel,
            reply,
            connected: (connected_address.to_string(), connected_port),
            originator: (originator_address.to_string(), originator_port),
        });
        Ok(())
    }

    async fn disconnected(&mut self, reason: client::DisconnectReason<Self::Error>) -> Result<(), Self::Error> {
        let why = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) if info.message.is_empty() => "the target closed the connection".to_string(),
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let message: String = info.message.chars().filter(|c| !c.is_control()).take(200).collect();
                format!("the target closed the connection: {message}")
            }
            client::DisconnectReason::Error(e) => format!("the connection to the target failed: {e}"),
        };
        if !self.leaving.load(Ordering::Acquire) {
            self.ended.send_if_modified(|ended| ended.is_none() && ended.replace(why).is_none());
        }
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(e) => Err(e),
        }
    }

    async fn check_server_key(&mut self, presented: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(("an OpenSSH certificate".into(), "a plain host key (certificates are not supported)".into()));
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let expected: Vec<PublicKey> = match &self.policy {
            HostKeyPolicy::Pinned(keys) => keys.clone(),
            HostKeyPolicy::TrustOnFirstUse => match first_use(&self.known_hosts, &self.connection, key) {
                Ok(known) => vec![known],
                Err(e) => {
                    tracing::error!(connection = %self.connection, error = %e, "cannot read or write the known-hosts file");
                    *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((fingerprint, format!("a key from {} (unreadable: {e})", self.known_hosts.display())));
                    return Ok(false);
                }
            },
        };
        if expected.iter().any(|k| k.key_data() == key.key_data()) {
            return Ok(true);
        }
        let expected = expected.iter().map(|k| k.fingerprint(HashAlg::Sha256).to_string()).collect::<Vec<_>>().join(" or ");
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some((fingerprint, expected));
        Ok(false)
    }
}

/// The key remembered for `connection`, remembering `presented` if there is none yet.
fn first_use(path: &Path, connection: &str, presented: &PublicKey) -> std::io::Result<PublicKey> {
    let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    for line in text.lines() {
        if let Some((name, key)) = line.split_once(' ') {
            if name == connection {
                return PublicKey::from_openssh(key).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let line = presented.to_openssh().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    writeln!(file, "{connection} {line}")?;
    file.sync_all()?;
    tracing::info!(connection, fingerprint = %presented.fingerprint(HashAlg::Sha256), "trusting the target's host key on first use");
    Ok(presented.clone())
}

/// Connects and logs in to `target`.
pub(crate) async fn connect(
    target: &SshTarget,
    known_hosts: &Path,
    timeout: Duration,
    link: Link,
    leaving: Arc<AtomicBool>,
) -> Result<TargetHandle, TargetError> {
    let (connection, address) = (target.name.clone(), target.address.clone());
    let refused = Arc::new(Mutex::new(None));
    let handler = TargetHandler {
        connection: connection.clone(),
        policy: target.host_key.clone(),
        known_hosts: known_hosts.to_path_buf(),
        refused: refused.clone(),
        reverse: link.reverse,
        ended: link.ended,
        leaving,
    };
    let login = async {
        let tcp = tokio::net::TcpStream::connect(&target.address).await.map_err(|e| TargetError::Unreachable {
            connection: connection.clone(),
            address: address.clone(),
            reason: e.to_string(),
        })?;
        let _ = tcp.set_nodelay(true);
        let mut handle = match client::connect_stream(Arc::new(client_config()), tcp, handler).await {
            Ok(handle) => handle,
            Err(e) => {
                if let Some((presented, expected)) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(TargetError::HostKeyMismatch {
                        connection: connection.clone(),
                        address: address.clone(),
                        presented,
                        expected,
                        known_hosts: known_hosts.display().to_string(),
                    });
                }
                return Err(TargetError::Protocol { connection: connection.clone(), address: address.clone(), reason: e.to_string() });
            }
        };
        let protocol =
            |e: russh::Error| TargetError::Protocol { connection: connection.clone(), address: address.clone(), reason: e.to_string() };
        let result = match &target.auth {
            TargetAuth::Key(key) => {
                let hash =
                    if key.algorithm().is_rsa() { handle.best_supported_rsa_hash().await.map_err(protocol)?.flatten() } else { None };
                handle.authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key.clone(), hash)).await.map_err(protocol)?
            }
            TargetAuth::Password(password) => handle.authenticate_password(&target.user, password.expose()).await.map_err(protocol)?,
        };
        if !result.success() {
            return Err(TargetError::LoginRefused { connection: connection.clone(), address: address.clone(), user: target.user.clone() });
        }
        Ok(handle)
    };
    match tokio::time::timeout(timeout, login).await {
        Ok(result) => result,
        Err(_) => Err(TargetError::Timeout { connection: connection.clone(), address, seconds: timeout.as_secs() }),
    }
}

/// Ciphers witness offers targets, in its order of preference (on this leg witness is the client,
/// so its order decides): AES-GCM first, which ring runs on AES-NI at several times the speed of
/// ChaCha20-Poly1305; ChaCha20 and AES-CTR for targets without it.
const TARGET_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

fn client_config() -> client::Config {
    client::Config {
        // Full-size packets; the window is OpenSSH's (see CHANNEL_WINDOW).
        window_size: crate::CHANNEL_WINDOW,
        maximum_packet_size: 32768,
        nodelay: true,
        inactivity_timeout: None,
        preferred: russh::Preferred { cipher: std::borrow::Cow::Borrowed(TARGET_CIPHERS), ..Default::default() },
        ..Default::default()
    }
}

// === impl TargetAuth ===

impl TargetAuth {
    /// A private key in OpenSSH format (unencrypted: witness has nobody to ask for a passphrase).
    pub fn private_key(text: &str) -> Result<TargetAuth, String> {
        let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| format!("the private key is not an OpenSSH private key ({e})"))?;
        if key.is_encrypted() {
            return Err("the private key is encrypted; witness needs it decrypted (ssh-keygen -p -N '' -f KEY on a copy)".into());
        }
        Ok(TargetAuth::Key(Arc::new(key)))
    }

    pub fn password(password: String) -> TargetAuth {
        TargetAuth::Password(Secret::new(password))
    }
}

// === impl HostKeyPolicy ===

impl HostKeyPolicy {
    /// Reads a config value: `trust-on-first-use`, or one or more OpenSSH public key lines
    /// (`ssh-ed25519 AAAA…`), separated by newlines.
    pub fn parse(value: &str) -> Result<HostKeyPolicy, String> {
        if value.trim() == "trust-on-first-use" {
            return Ok(HostKeyPolicy::TrustOnFirstUse);
        }
        let keys = value
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| PublicKey::from_openssh(line).map_err(|e| format!("{line:?} is not an OpenSSH public key ({e})")))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("give the target's public host key (e.g. from `ssh-keyscan`) or \"trust-on-first-use\"".into());
        }
        Ok(HostKeyPolicy::Pinned(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPmLw1RZ/efeXFHdjHaUb764zyzux5NikL2gTr9EklW host";

    #[test]
    fn host_key_settings_parse() {
        assert!(matches!(HostKeyPolicy::parse("trust-on-first-use"), Ok(HostKeyPolicy::TrustOnFirstUse)));
        assert!(matches!(HostKeyPolicy::parse(KEY), Ok(HostKeyPolicy::Pinned(keys)) if keys.len() == 1));
        assert!(HostKeyPolicy::parse("ssh-ed25519 nope").is_err());
        assert!(HostKeyPolicy::parse("").is_err());
    }

    #[test]
    fn the_first_key_seen_is_kept_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/known_hosts");
        let key = PublicKey::from_openssh(KEY).unwrap();
        let other = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[7; 32])).public_key().clone();
        assert_eq!(first_use(&path, "web", &key).unwrap().key_data(), key.key_data());
        assert_eq!(first_use(&path, "web", &other).unwrap().key_data(), key.key_data(), "the first key stays");
        assert_eq!(first_use(&path, "db", &other).unwrap().key_data(), other.key_data(), "another connection has its own");
    }
}
