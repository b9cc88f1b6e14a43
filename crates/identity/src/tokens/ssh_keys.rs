//! SSH public keys registered to identities (`witness identity add-key`), in the token store's
//! database. A key is found by its SHA-256 fingerprint (as OpenSSH prints it, `SHA256:…`), which
//! the SSH front computes from the key the client proved it holds. Removing a key revokes it: the
//! live sessions it opened end, as for a revoked token.
//!
//! This module reads OpenSSH public key lines itself (type, base64 blob, comment) rather than
//! depending on an SSH library: the identity crate knows keys only as blobs and fingerprints.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{now_ns, store_err, TokenStore};
use crate::{valid_group_name, valid_identity_name, AuthFailure, AuthenticatedIdentity, IdentityError};

/// What a registered key authenticates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SshKeyInfo {
    /// `SHA256:` and the unpadded base64 of the key blob's digest, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub identity: String,
    pub groups: Vec<String>,
    pub task: Option<String>,
    /// The key's type, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// The comment of the line it was registered from (often user@host).
    pub comment: String,
    pub created_ns: i64,
    pub revoked_ns: Option<i64>,
}

/// An OpenSSH public key line that cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum BadPublicKey {
    #[error("the line has no key: expected \"TYPE BASE64 [COMMENT]\" as in a .pub file")]
    Shape,
    #[error("the key is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("the key blob says {inner:?} but the line says {outer:?}; is the file damaged?")]
    TypeMismatch { outer: String, inner: String },
    #[error("{given:?} is not an SSH public key type this gateway accepts (ssh-ed25519, ecdsa-sha2-*, ssh-rsa)")]
    UnsupportedType { given: String },
}

/// The credential id of a key, as live sessions are registered under it.
pub fn ssh_key_credential(fingerprint: &str) -> String {
    format!("sshkey:{fingerprint}")
}

/// The `SHA256:…` fingerprint of a key blob.
pub fn ssh_fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// Reads an OpenSSH public key line: its type, its blob and its comment.
pub fn parse_public_key_line(line: &str) -> Result<(String, Vec<u8>, String), BadPublicKey> {
    let mut parts = line.split_whitespace();
    let (Some(key_type), Some(encoded)) = (parts.next(), parts.next()) else {
        return Err(BadPublicKey::Shape);
    };
    let comment = parts.collect::<Vec<_>>().join(" ");
    let accepted = key_type == "ssh-ed25519" || key_type == "ssh-rsa" || key_type.starts_with("ecdsa-sha2-");
    if !accepted {
        return Err(BadPublicKey::UnsupportedType { given: key_type.to_string() });
    }
    let blob = STANDARD.decode(encoded)?;
    let inner = blob
        .get(..4)
        .map(|len| u32::from_be_bytes(len.try_into().expect("four bytes")) as usize)
        .and_then(|len| blob.get(4..4 + len))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .ok_or(BadPublicKey::Shape)?;
    if inner != key_type {
        return Err(BadPublicKey::TypeMismatch { outer: key_type.to_string(), inner });
    }
    Ok((key_type.to_string(), blob, comment))
}

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ssh_keys (
    fingerprint TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    groups TEXT NOT NULL,
    task TEXT,
    key_type TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER
) WITHOUT ROWID;
";

const COLUMNS: &str = "fingerprint, identity, groups, task, key_type, comment, created_ns, revoked_ns";

impl TokenStore {
    /// Registers a public key (an OpenSSH `.pub` line) to an identity. Registering a key again
    /// (also a removed one) gives it the new identity and groups and makes it valid again.
    pub fn add_ssh_key(&self, identity: &str, groups: &[String], task: Option<&str>, line: &str) -> Result<SshKeyInfo, IdentityError> {
        if !valid_identity_name(identity) {
            return Err(IdentityError::BadName { given: identity.to_string() });
        }
        if let Some(bad) = groups.iter().find(|g| !valid_group_name(g)) {
            return Err(IdentityError::BadGroup { given: bad.clone() });
        }
        let (key_type, blob, comment) = parse_public_key_line(line).map_err(IdentityError::BadSshKey)?;
        let fingerprint = ssh_fingerprint(&blob);
        let conn = self.lock();
        conn.execute(
            "INSERT OR REPLACE INTO ssh_keys (fingerprint, identity, groups, task, key_type, comment, created_ns, revoked_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            params![fingerprint, identity, serde_json::to_string(groups).expect("strings serialize"), task, key_type, comment, now_ns()],
        )
        .map_err(store_err(&self.path))?;
        drop(conn);
        self.ssh_key(&fingerprint)?.ok_or(IdentityError::UnknownSshKey { fingerprint })
    }

    /// Every registered key, removed ones too.
    pub fn ssh_keys(&self) -> Result<Vec<SshKeyInfo>, IdentityError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM ssh_keys ORDER BY created_ns")).map_err(store_err(&self.path))?;
        let rows = stmt.query_map([], key_info).map_err(store_err(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(store_err(&self.path))
    }

    fn ssh_key(&self, fingerprint: &str) -> Result<Option<SshKeyInfo>, IdentityError> {
        let conn = self.lock();
        conn.query_row(&format!("SELECT {COLUMNS} FROM ssh_keys WHERE fingerprint = ?1"), params![fingerprint], key_info)
            .optional()
            .map_err(store_err(&self.path))
    }

    /// Removes (revokes) a key by its fingerprint; its live sessions end.
    pub fn remove_ssh_key(&self, fingerprint: &str) -> Result<SshKeyInfo, IdentityError> {
        let conn = self.lock();
        conn.execute("UPDATE ssh_keys SET revoked_ns = COALESCE(revoked_ns, ?2) WHERE fingerprint = ?1", params![fingerprint, now_ns()])
            .map_err(store_err(&self.path))?;
        drop(conn);
        self.ssh_key(fingerprint)?.ok_or_else(|| IdentityError::UnknownSshKey { fingerprint: fingerprint.to_string() })
    }

    /// The identity a key the client proved it holds authenticates, if it is registered and not
    /// removed. The credential id is [`ssh_key_credential`] of the fingerprint.
    pub fn verify_ssh_key(&self, fingerprint: &str) -> Result<AuthenticatedIdentity, AuthFailure> {
        match self.ssh_key(fingerprint) {
            Ok(Some(key)) if key.revoked_ns.is_none() => {
                Ok(AuthenticatedIdentity::new(key.identity, key.groups, key.task, ssh_key_credential(&key.fingerprint)))
            }
            _ => Err(AuthFailure::NoToken),
        }
    }

    /// Whether the key behind a credential id from [`ssh_key_credential`] is removed.
    pub(super) fn ssh_key_revoked(&self, credential: &str) -> Result<bool, IdentityError> {
        let Some(fingerprint) = credential.strip_prefix("sshkey:") else { return Ok(false) };
        Ok(self.ssh_key(fingerprint)?.is_some_and(|key| key.revoked_ns.is_some()))
    }
}

fn key_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<SshKeyInfo> {
    let groups: String = r.get(2)?;
    Ok(SshKeyInfo {
        fingerprint: r.get(0)?,
        identity: r.get(1)?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        task: r.get(3)?,
        key_type: r.get(4)?,
        comment: r.get(5)?,
        created_ns: r.get(6)?,
        revoked_ns: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 key line and the fingerprint `ssh-keygen -lf` prints for it.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPmLw1RZ/efeXFHdjHaUb764zyzux5NikL2gTr9EklW agent@ci";
    const FINGERPRINT: &str = "SHA256:Vsc4JyyuZkFLYilpTtWMdb8iaVs8d/aLwCgCojaHPRw";

    #[test]
    fn key_lines_parse_or_say_why_not() {
        let (key_type, blob, comment) = parse_public_key_line(KEY).unwrap();
        assert_eq!((key_type.as_str(), comment.as_str(), blob.len()), ("ssh-ed25519", "agent@ci", 51));
        assert_eq!(ssh_fingerprint(&blob), FINGERPRINT);
        assert!(matches!(parse_public_key_line("ssh-ed25519"), Err(BadPublicKey::Shape)));
        assert!(matches!(parse_public_key_line("ssh-dss AAAA"), Err(BadPublicKey::UnsupportedType { .. })));
        assert!(matches!(parse_public_key_line("ssh-ed25519 !!!"), Err(BadPublicKey::Base64(_))));
        let swapped = KEY.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(matches!(parse_public_key_line(&swapped), Err(BadPublicKey::TypeMismatch { .. })));
    }

    #[test]
    fn registered_keys_authenticate_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let info = store.add_ssh_key("claude", &["ai-agents".into()], Some("JIRA-7"), KEY).unwrap();
        let identity = store.verify_ssh_key(&info.fingerprint).unwrap();
        assert_eq!((identity.name(), identity.groups(), identity.task()), ("claude", &["ai-agents".to_string()][..], Some("JIRA-7")));
        let credential = identity.token_id().to_string();
        assert_eq!(credential, ssh_key_credential(&info.fingerprint));
        assert!(store.revoked_among(std::slice::from_ref(&credential)).unwrap().is_empty());
        assert!(store.verify_ssh_key("SHA256:unknown").is_err());
        store.remove_ssh_key(&info.fingerprint).unwrap();
        assert!(store.verify_ssh_key(&info.fingerprint).is_err());
        assert_eq!(store.revoked_among(std::slice::from_ref(&credential)).unwrap(), vec![credential]);
        assert!(matches!(store.remove_ssh_key("SHA256:nope"), Err(IdentityError::UnknownSshKey { .. })));
        // Registering again makes it valid again, under the new identity.
        store.add_ssh_key("ci", &[], None, KEY).unwrap();
        assert_eq!(store.verify_ssh_key(&info.fingerprint).unwrap().name(), "ci");
        assert_eq!(store.ssh_keys().unwrap().len(), 1);
    }
}
