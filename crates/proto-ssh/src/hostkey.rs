//! Witness's own SSH host key: an Ed25519 key made on first start and kept (0600) in the data
//! directory, so clients see the same host key across restarts. It is not a target credential
//! and is never recorded; its public half is logged so that people can pin it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};

/// The host key cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read or create the SSH host key {path}: {source}; check the data directory's permissions")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the SSH host key {path} is not an OpenSSH private key ({reason}); move it away and witness makes a new one")]
    Invalid { path: PathBuf, reason: String },
}

/// Reads the host key at `path`, or makes one there (Ed25519, mode 0600) if there is none.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let io = |source| HostKeyError::Io { path: path.to_path_buf(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return PrivateKey::from_openssh(text.as_bytes())
                .map_err(|e| HostKeyError::Invalid { path: path.to_path_buf(), reason: e.to_string() })
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key.to_openssh(LineEnding::LF).map_err(|e| HostKeyError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    tracing::info!(path = %path.display(), fingerprint = %key.fingerprint(HashAlg::Sha256), "made a new SSH host key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/host_ed25519");
        let first = load_or_create_host_key(&path).unwrap();
        let again = load_or_create_host_key(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(load_or_create_host_key(&path), Err(HostKeyError::Invalid { .. })));
    }
}
