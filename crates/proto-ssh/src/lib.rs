//! SSH for witness: the front half is an SSH server clients log in to (`ssh -p 2222 CONNECTION@gateway`,
//! with a registered public key or a witness token as password), the back half is an SSH client
//! that logs in to the target with the credentials witness holds, after checking the target's
//! pinned (or first-seen) host key. Between them every channel is relayed and recorded: what the
//! client asks for (pty, shell, exec, subsystem, env, resize, signal), every byte each way, exit
//! status, and for SFTP and git the operations inside the stream.
//!
//! This crate knows SSH and nothing of tokens, policy rules or the ledger's format: it asks its
//! [`Gate`] who a client is, which target a connection name means, where to record, and whether
//! each operation may run, puts each operation through the gate's one admission path, and acts
//! on the outcome without knowing the rule behind it. [`SshGate`] adds what only SSH needs: the
//! identity a public key is registered to.

#![forbid(unsafe_code)]

pub mod asciicast;
pub mod git;
pub mod sftp;

mod back;
mod channel;
mod front;
mod hostkey;
mod outbox;
mod record;
mod targets;
#[cfg(test)]
mod test_rng;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use witness_core::{AuthRefused, Principal};
pub use witness_gate::Gate;

pub use back::{HostKeyPolicy, TargetAuth, TargetError};
pub use front::serve_client;
pub use hostkey::{load_or_create_host_key, HostKeyError};
pub use russh::keys::PrivateKey;

/// The window witness gives each channel's sender, on both legs: OpenSSH's own (64 packets of 32
/// KiB). An OpenSSH peer reads ahead into its channel buffer up to the window it is given, and it
/// grows that buffer by reallocating it; given 8 MiB, an `ssh` uploading 256 MiB took 190,000 to
/// 250,000 page faults (against 540 at 2 MiB, as direct), twice its system time, and the upload
/// ran at 0.66 of direct instead of 0.88. On a link with a long round trip a larger window would
/// carry more per channel; on loopback and a LAN 2 MiB keeps the pipeline full.
const CHANNEL_WINDOW: u32 = 2 << 20;

/// An SSH target witness holds credentials for.
pub struct SshTarget {
    /// The connection name clients log in as.
    pub name: String,
    /// host:port
    pub address: String,
    /// The user witness logs in to the target as.
    pub user: String,
    pub auth: TargetAuth,
    pub host_key: HostKeyPolicy,
}

/// How the SSH front treats clients.
#[derive(Clone)]
pub struct SshSettings {
    /// Witness's own host keys (made on first start).
    pub host_keys: Vec<PrivateKey>,
    /// Where first-seen target host keys are kept (`trust-on-first-use` connections).
    pub known_hosts: PathBuf,
    /// How long a login to a target may take.
    pub connect_timeout: Duration,
    /// Clients idle this long are disconnected.
    pub inactivity_timeout: Duration,
}

/// What the SSH front needs from the gate besides what every protocol does.
pub trait SshGate: Gate {
    /// The identity a public key (by its `SHA256:` fingerprint) is registered to.
    fn verify_key(&self, fingerprint: &str) -> Result<Principal, AuthRefused>;
    /// A client that offered only keys no identity has left without logging in; `claimed` is the
    /// user name it gave, `fingerprints` the keys it signed with (at most
    /// [`MAX_REFUSED_KEYS_NAMED`]), `more` how many others it tried. One record per connection:
    /// clients offer their keys in turn, so a refused key alone is not a failed login.
    fn keys_refused(&self, claimed: &str, fingerprints: &[String], more: usize);
}

/// Refused keys a connection's record names; the rest are counted.
pub const MAX_REFUSED_KEYS_NAMED: usize = 8;

/// The SSH listener's shared state: the gate, russh's server config, and the settings.
pub struct SshFront<G> {
    pub gate: Arc<G>,
    pub settings: SshSettings,
    config: Arc<russh::server::Config>,
}

impl<G: SshGate> SshFront<G> {
    pub fn new(gate: Arc<G>, settings: SshSettings) -> SshFront<G> {
        let config = front::server_config(&settings);
        SshFront { gate, settings, config: Arc::new(config) }
    }
}
