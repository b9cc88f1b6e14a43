//! Export bundles for long-term storage: sessions taken out of the ledger in one tar file that
//! verifies anywhere with the ledger's public key alone and opens only with the identity of an
//! `age` recipient the operator named.
//!
//! A bundle holds, in this order:
//! - `manifest.json`: the format, the ledger's public key, the recipients, and per session its
//!   metadata and where its files are;
//! - `signing.pub`: the ledger's public key (hex), for convenience; pin it out of band;
//! - `sessions/SESSION.jsonl`: the session's export (export.rs: every event with its committed
//!   bytes, the inclusion proof and the signed checkpoint). A sealed session's contents stay
//!   sealed in it;
//! - `keys/SESSION.age`: the session's data key, encrypted to the recipients with age: 33
//!   bytes, `2` (its AEAD, AES-256-GCM, as in the wrapped key file) and the key; 32 bytes, the
//!   key alone, is a key of an earlier release, for AES-256-GCM-SIV.
//!
//! Sessions recorded in clear have no data key; they go into a bundle only when asked, and then
//! in clear (`witness migrate --encrypt` seals them first).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use witness_core::kind::{SESSION_END, SESSION_START};
use witness_core::{SessionId, SessionInfo};

use crate::export::{read_session_export, ExportError, ExportScan};
use crate::index::SessionSummary;
use crate::keyring::{Keyring, KeyringError, Opener};
use crate::read::StoredEvent;
use crate::seal::{Aead, DataKey};
use crate::LedgerError;

pub const BUNDLE_FORMAT: &str = "witness-bundle";
/// Version 2: key entries may carry their AEAD (33 bytes); version 1 holds 32-byte keys only.
pub const BUNDLE_VERSION: u32 = 2;
/// A bundle is read whole into memory to be verified: an entry larger than this, or a bundle
/// larger than [`MAX_BUNDLE_BYTES`], is refused (split the export by --since/--until).
const MAX_ENTRY_BYTES: u64 = 4 << 30;
const MAX_BUNDLE_BYTES: u64 = 16 << 30;
/// Sessions one bundle holds at most.
const MAX_SESSIONS: usize = 100_000;

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub public_key: String,
    pub created_ns: i64,
    /// The age recipients the data keys are encrypted to.
    pub recipients: Vec<String>,
    pub sessions: Vec<BundledSession>,
}

/// One session of a bundle, as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundledSession {
    pub id: SessionId,
    pub info: SessionInfo,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub end_reason: Option<String>,
    /// Whether its contents are sealed (it then has a key entry).
    pub sealed: bool,
}

/// Why a bundle could not be written, verified or opened.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("cannot {action} the bundle: {source}")]
    Io { action: &'static str, source: std::io::Error },
    #[error("session {session} was recorded in clear: it has no data key to protect it in a bundle; leave it out, seal it first (`witness migrate --encrypt`), or include it in clear on purpose")]
    ClearSession { session: SessionId },
    #[error("session {session}'s data key was shredded: its contents are gone and cannot be bundled")]
    Shredded { session: SessionId },
    #[error("--recipient {given:?} is not an age recipient (age1…): {why}")]
    BadRecipient { given: String, why: String },
    #[error("encrypting to the recipients failed: {0}")]
    Encrypt(String),
    #[error("not a witness bundle: {0}")]
    NotABundle(String),
    #[error("the bundle is of version {found}, newer than this witness reads (1 to {BUNDLE_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("session {session}: {source}")]
    Export { session: SessionId, source: ExportError },
    #[error("the data key of session {session} does not open with the identities given: {why}")]
    KeyNotOpened { session: SessionId, why: String },
    #[error("the bundle is signed by {found}, not by the key given ({expected})")]
    WrongKey { expected: String, found: String },
}

/// What a bundle holds once verified: its manifest and, per session, its export's events
/// (sealed events still sealed).
pub struct VerifiedBundle {
    pub manifest: Manifest,
    pub public_key: VerifyingKey,
    pub sessions: Vec<(BundledSession, Vec<StoredEvent>)>,
    /// The age-encrypted data keys, by session.
    keys: BTreeMap<SessionId, Vec<u8>>,
}

/// Writes a bundle of `sessions` of the ledger at `ledger_root` to `out`, their data keys
/// encrypted to `recipients`. A session recorded in clear is refused unless `include_clear`.
pub fn write_bundle(
    ledger_root: &Path,
    keyring: &Keyring,
    public_key: &VerifyingKey,
    sessions: &[SessionSummary],
    recipients: &[String],
    include_clear: bool,
    out: impl Write,
) -> Result<Manifest, BundleError> {
    let parsed = recipients.iter().map(|r| parse_recipient(r)).collect::<Result<Vec<_>, _>>()?;
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut listed = Vec::new();
    // One read of the ledger for every session of the bundle.
    let mut scan = ExportScan::new(ledger_root, &sessions.iter().map(|s| s.id).collect::<Vec<_>>())?;
    for session in sessions {
        let id = session.id;
        let mut export = Vec::new();
        scan.write(id, &mut export)?;
        let (_, events) = read_session_export(&export[..], public_key).map_err(|source| BundleError::Export { session: id, source })?;
        let sealed = events.iter().any(|e| e.sealed.is_some());
        let key = keyring.data_key(id)?;
        match (sealed, &key) {
            (true, None) => return Err(BundleError::Shredded { session: id }),
            (_, Some(_)) => {}
            // Nothing to protect in a session with no event between its start and end.
            (false, None) if include_clear || events.iter().all(|e| [SESSION_START, SESSION_END].iter().any(|k| e.kind == k.as_str())) => {}
            (false, None) => return Err(BundleError::ClearSession { session: id }),
        }
        entries.push((format!("sessions/{id}.jsonl"), export));
        if let (true, Some(key)) = (sealed, &key) {
            entries.push((format!("keys/{id}.age"), encrypt_to(&parsed, &key_entry(key))?));
        }
        listed.push(BundledSession {
            id,
            info: session.info.clone(),
            started_ns: session.started_ns,
            ended_ns: session.ended_ns,
            end_reason: session.end_reason.clone(),
            sealed,
        });
    }
    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        version: BUNDLE_VERSION,
        public_key: hex::encode(public_key.as_bytes()),
        created_ns: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64),
        recipients: recipients.to_vec(),
        sessions: listed,
    };
    let mut tar = tar::Builder::new(out);
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    append(&mut tar, "manifest.json", &manifest_json)?;
    append(&mut tar, "signing.pub", format!("{}\n", manifest.public_key).as_bytes())?;
    for (name, bytes) in &entries {
        append(&mut tar, name, bytes)?;
    }
    tar.into_inner()
        .map_err(|source| BundleError::Io { action: "finish", source })?
        .flush()
        .map_err(|source| BundleError::Io { action: "write", source })?;
    Ok(manifest)
}

/// Reads and verifies a bundle: every session's export against the public key `pinned` (one
/// obtained out of band: a bundle's own key proves nothing), the manifest's facts of each session
/// against its signed start and end, every sealed session has its key entry, and nothing else is
/// in it. Needs no identity.
pub fn verify_bundle(input: impl Read, pinned: &VerifyingKey) -> Result<VerifiedBundle, BundleError> {
    let mut files = read_entries(input)?;
    let manifest: Manifest =
        serde_json::from_slice(&files.remove("manifest.json").ok_or_else(|| BundleError::NotABundle("no manifest.json".into()))?)
            .map_err(|e| BundleError::NotABundle(format!("manifest.json: {e}")))?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(BundleError::NotABundle(format!("manifest format is {:?}", manifest.format)));
    }
    if manifest.version > BUNDLE_VERSION || manifest.version == 0 {
        return Err(BundleError::UnsupportedVersion { found: manifest.version });
    }
    if manifest.sessions.len() > MAX_SESSIONS {
        return Err(BundleError::NotABundle(format!("it lists {} sessions, more than {MAX_SESSIONS}", manifest.sessions.len())));
    }
    // Hex only: the manifest is untrusted text, never a path to read.
    let own = hex::decode(&manifest.public_key)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| BundleError::NotABundle(format!("public key {:?} is not 64 hex digits of an Ed25519 key", manifest.public_key)))?;
    if pinned != &own {
        return Err(BundleError::WrongKey { expected: hex::encode(pinned.as_bytes()), found: manifest.public_key.clone() });
    }
    let public_key = own;
    let mut sessions = Vec::new();
    let mut keys = BTreeMap::new();
    for session in &manifest.sessions {
        let id = session.id;
        let export =
            files.remove(&format!("sessions/{id}.jsonl")).ok_or_else(|| BundleError::NotABundle(format!("session {id} has no export")))?;
        let (summary, events) =
            read_session_export(&export[..], &public_key).map_err(|source| BundleError::Export { session: id, source })?;
        if summary.session != id {
            return Err(BundleError::NotABundle(format!("sessions/{id}.jsonl holds session {}", summary.session)));
        }
        let sealed_events = events.iter().any(|e| e.sealed.is_some());
        if sealed_events != session.sealed {
            return Err(BundleError::NotABundle(format!(
                "session {id} is listed as {} but its events say otherwise",
                if session.sealed { "sealed" } else { "clear" }
            )));
        }
        if session.sealed {
            let key = files
                .remove(&format!("keys/{id}.age"))
                .ok_or_else(|| BundleError::NotABundle(format!("sealed session {id} has no key entry")))?;
            keys.insert(id, key);
        }
        check_facts(session, &events)?;
        sessions.push((session.clone(), events));
    }
    if let Some(extra) = files.keys().find(|name| name.as_str() != "signing.pub") {
        return Err(BundleError::NotABundle(format!("{extra} is in it, but the manifest names nothing of the kind")));
    }
    Ok(VerifiedBundle { manifest, public_key, sessions, keys })
}

impl VerifiedBundle {
    /// Opens every sealed event with the data keys the `identities` decrypt.
    pub fn open(
        mut self,
        identities: &[Box<dyn age::Identity + Send + Sync>],
    ) -> Result<Vec<(BundledSession, Vec<StoredEvent>)>, BundleError> {
        for (session, events) in &mut self.sessions {
            let Some(encrypted) = self.keys.get(&session.id) else { continue };
            let key = decrypt_key(encrypted, identities).map_err(|why| BundleError::KeyNotOpened { session: session.id, why })?;
            let opener = Opener::with_key(session.id, key);
            for event in events.iter_mut() {
                opener.unseal(event)?;
            }
        }
        Ok(self.sessions)
    }
}

/// An age recipient: X25519 (`age1…`, what age 1.x tools make) or post-quantum (`age1pq1…`).
#[allow(deprecated)] // X25519 recipients are deprecated by the age crate in favour of hybrid ones, which age 1.x tools do not read yet.
pub fn parse_recipient(text: &str) -> Result<Box<dyn age::Recipient + Send + Sync>, BundleError> {
    if let Ok(recipient) = text.parse::<age::x25519::Recipient>() {
        return Ok(Box::new(recipient));
    }
    match text.parse::<age::pq::Recipient>() {
        Ok(recipient) => Ok(Box::new(recipient)),
        Err(e) => Err(BundleError::BadRecipient { given: text.to_string(), why: e.to_string() }),
    }
}

/// The manifest's facts of a session must be what its signed `session.start` and `session.end`
/// say: the manifest itself is covered by no signature.
fn check_facts(session: &BundledSession, events: &[StoredEvent]) -> Result<(), BundleError> {
    let lie = |what: &str| BundleError::NotABundle(format!("the manifest's {what} of session {} is not what its records say", session.id));
    let start = events.first().filter(|e| e.kind == witness_core::kind::SESSION_START.as_str()).ok_or_else(|| lie("start"))?;
    if crate::index::session_info_from_attrs(&start.attrs) != session.info || start.time_ns != session.started_ns {
        return Err(lie("identity, connection, protocol, task, client address or start time"));
    }
    let end = events.last().filter(|e| e.kind == witness_core::kind::SESSION_END.as_str());
    let recorded_end = end.map(|e| (e.time_ns, e.attrs.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string()));
    if recorded_end != session.ended_ns.zip(session.end_reason.clone()) && !(end.is_none() && session.ended_ns.is_none()) {
        return Err(lie("end"));
    }
    Ok(())
}

fn encrypt_to(recipients: &[Box<dyn age::Recipient + Send + Sync>], plain: &[u8]) -> Result<Vec<u8>, BundleError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient))
        .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).map_err(|source| BundleError::Io { action: "encrypt", source })?;
    writer.write_all(plain).map_err(|source| BundleError::Io { action: "encrypt", source })?;
    writer.finish().map_err(|source| BundleError::Io { action: "encrypt", source })?;
    Ok(out)
}

/// A key entry's marker of an AES-256-GCM key (the wrapped key file's version for it).
const KEY_ENTRY_GCM: u8 = 2;

/// What a key entry holds before age encrypts it: the AEAD's marker and the key.
fn key_entry(key: &DataKey) -> zeroize::Zeroizing<Vec<u8>> {
    let mut entry = zeroize::Zeroizing::new(Vec::with_capacity(33));
    if key.aead() == Aead::Aes256Gcm {
        entry.push(KEY_ENTRY_GCM);
    }
    entry.extend_from_slice(key.bytes());
    entry
}

fn decrypt_key(encrypted: &[u8], identities: &[Box<dyn age::Identity + Send + Sync>]) -> Result<DataKey, String> {
    let decryptor = age::Decryptor::new(encrypted).map_err(|e| e.to_string())?;
    let mut reader = decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| e.to_string())?;
    // A fixed buffer, wiped on drop: no copy of the key is left behind by a growing Vec.
    let mut entry = zeroize::Zeroizing::new([0u8; 34]);
    let mut len = 0;
    while len < entry.len() {
        match reader.read(&mut entry[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let (aead, key) = match &entry[..len] {
        [KEY_ENTRY_GCM, key @ ..] if key.len() == 32 => (Aead::Aes256Gcm, key),
        key if key.len() == 32 => (Aead::Aes256GcmSiv, key),
        _ => return Err("the decrypted key entry is not a data key (2 and 32 bytes, or 32 bytes)".to_string()),
    };
    Ok(DataKey::from_bytes(key.try_into().expect("32 bytes"), aead))
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes).map_err(|source| BundleError::Io { action: "write", source })
}

fn read_entries(input: impl Read) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let mut archive = tar::Archive::new(input);
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| BundleError::NotABundle(format!("not a tar file: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| BundleError::NotABundle(format!("a damaged tar entry: {e}")))?;
        let name = entry.path().map_err(|e| BundleError::NotABundle(e.to_string()))?.to_string_lossy().into_owned();
        total += entry.size();
        if entry.size() > MAX_ENTRY_BYTES || total > MAX_BUNDLE_BYTES || files.len() > 2 * MAX_SESSIONS + 2 {
            return Err(BundleError::NotABundle(format!(
                "{name} is {} bytes, and the bundle more than witness reads into memory",
                entry.size()
            )));
        }
        let mut bytes = Vec::new();
        entry.take(MAX_ENTRY_BYTES).read_to_end(&mut bytes).map_err(|source| BundleError::Io { action: "read", source })?;
        if files.insert(name.clone(), bytes).is_some() {
            return Err(BundleError::NotABundle(format!("{name} is in it twice")));
        }
    }
    Ok(files)
}
