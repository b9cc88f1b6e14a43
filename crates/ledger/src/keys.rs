//! The ledger's Ed25519 signing key: created on first start (mode 0600), loaded after that, and
//! public keys given by users as a file or as hex.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} does not hold a 64-digit hex Ed25519 key; restore it from backup (a new key cannot sign for the old ledger)")]
    Malformed { path: PathBuf },
    #[error("public key {given:?} is neither a readable file nor 64 hex digits of an Ed25519 key")]
    BadPublicKey { given: String },
}

/// Loads the signing key at `path`, or creates it (and `public_path`) when it does not exist.
pub fn load_or_create(path: &Path, public_path: &Path) -> Result<SigningKey, KeyError> {
    let io = |action, source| KeyError::Io { action, path: path.to_path_buf(), source };
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path).map_err(|e| io("stat", e))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the ledger signing key is readable by others; chmod 600 it");
            }
            let key = parse_hex32(text.trim()).map(|seed| SigningKey::from_bytes(&seed));
            let key = key.ok_or_else(|| KeyError::Malformed { path: path.to_path_buf() })?;
            // The private key is the truth; a missing or different public key file is rewritten.
            let public_hex = hex::encode(key.verifying_key().as_bytes());
            let stored = fs::read_to_string(public_path).unwrap_or_default();
            if stored.trim() != public_hex {
                if !stored.is_empty() {
                    tracing::warn!(path = %public_path.display(), "the public key file did not match the signing key; rewrote it");
                }
                write_public(public_path, &key.verifying_key())?;
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut UnwrapErr(SysRng));
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| io("create", e))?;
            writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("sync", e))?;
            write_public(public_path, &key.verifying_key())?;
            tracing::info!(path = %path.display(), public_key = %hex::encode(key.verifying_key().as_bytes()), "created the ledger signing key");
            Ok(key)
        }
        Err(e) => Err(io("read", e)),
    }
}

/// Reads a public key given either as a path to a file holding its hex, or as the hex itself.
pub fn parse_public_key(given: &str) -> Result<VerifyingKey, KeyError> {
    let text = match fs::read_to_string(given) {
        Ok(text) => text,
        Err(_) => given.to_string(),
    };
    let bad = || KeyError::BadPublicKey { given: given.to_string() };
    let bytes = parse_hex32(text.trim()).ok_or_else(bad)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// The public key is no secret, but like everything in the data dir it is witness's alone (0600).
fn write_public(path: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| writeln!(file, "{}", hex::encode(key.as_bytes())))
        .map_err(|source| KeyError::Io { action: "write", path: path.to_path_buf(), source })
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_and_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let (key_path, pub_path) = (dir.path().join("signing.key"), dir.path().join("signing.pub"));
        let created = load_or_create(&key_path, &pub_path).unwrap();
        assert_eq!(fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = load_or_create(&key_path, &pub_path).unwrap();
        assert_eq!(created.to_bytes(), loaded.to_bytes());
        let public = parse_public_key(pub_path.to_str().unwrap()).unwrap();
        assert_eq!(public, created.verifying_key());
        assert_eq!(parse_public_key(&hex::encode(public.as_bytes())).unwrap(), public);
        assert!(parse_public_key("abc").is_err());
    }

    #[test]
    fn a_damaged_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("signing.key");
        fs::write(&key_path, "not hex").unwrap();
        let err = load_or_create(&key_path, &dir.path().join("signing.pub")).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    }
}
