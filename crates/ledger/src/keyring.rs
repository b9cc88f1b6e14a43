//! The keys of sealed sessions: one random data key per session, kept wrapped by the master key
//! in `ledger/keys/SESSION.key`, never in the segments. Destroying a session's key file
//! destroys its contents (crypto-shredding); the segments, their hashes and the session's clear
//! metadata stay, so the ledger still verifies.
//!
//! The master key lives outside the ledger: a file (0600), an environment variable, or the output
//! of a command (a KMS client, `systemd-creds`). `keys/master.id` names the master key the
//! files are wrapped with, so a wrong one is refused at start rather than found at the first read.
//! Rotating it re-wraps every key file (each one replaced by rename), no segment is rewritten;
//! a key backup made before a rotation opens only with the master key of its time.
//!
//! Wrapped key file (81 bytes): `version (u8) ‖ master key id (8) ‖ nonce (24) ‖
//! XChaCha20-Poly1305(data key) (32) ‖ tag (16)`, with associated data
//! `"witness-data-key-v1" ‖ session id (16) ‖ master key id`, and then the version byte for
//! version 2. The version names the AEAD the data key seals with: 2 AES-256-GCM (every key made
//! now), 1 AES-256-GCM-SIV (keys made by earlier releases).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use witness_core::SessionId;

use crate::read::{SealState, StoredEvent, StoredHeader};
use crate::seal::{Aead, DataKey, KeyId, SealPlace};
use crate::LedgerPaths;

const WRAP_TAG: &[u8] = b"witness-data-key-v1";
const MASTER_ID_TAG: &[u8] = b"witness-master-key-id-v1";
const WRAPPED_LEN: usize = 1 + 8 + 24 + 32 + 16;
/// The wrapped key file's version for a data key sealing with AES-256-GCM-SIV.
const WRAP_VERSION_GCM_SIV: u8 = 1;
/// The wrapped key file's version for a data key sealing with AES-256-GCM.
const WRAP_VERSION_GCM: u8 = 2;
const MASTER_ID_FILE: &str = "master.id";
const KEY_SUFFIX: &str = ".key";
/// More output than this from a master key command is not a key.
const MAX_COMMAND_OUTPUT: usize = 4096;
/// A master key command (a KMS client) that takes longer is given up on.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A shredded session's key file is replaced by this marker, so that a reader can tell a key
/// destroyed on purpose from one that is lost.
const SHREDDED_SUFFIX: &str = ".shredded";
/// What a reader shows in place of a shredded event's summary.
pub const SHREDDED_SUMMARY: &str = "(contents destroyed: the session's data key was shredded)";
/// What a reader shows for a sealed event whose payload was purged from its record.
pub const PURGED_SUMMARY: &str = "(sealed contents purged from the record)";

/// Where the master key comes from (`[ledger.encryption]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A file holding 64 hex digits, mode 0600; created with a new random key when missing, by
    /// the gateway's start only.
    File(PathBuf),
    /// An environment variable holding 64 hex digits.
    Env(String),
    /// A command (program and arguments, no shell) that prints 64 hex digits.
    Command(Vec<String>),
}

/// The key that wraps data keys.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: KeyId,
}

/// Why a key could not be loaded, made, used or destroyed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the master key from {source_name} is not 64 hex digits; give it as `openssl rand -hex 32` prints one")]
    MalformedMaster { source_name: String },
    #[error("the master key from {source_name} is not there: {why}")]
    MissingMaster { source_name: String, why: String },
    #[error("the configured master key ({given}) is not the one this ledger's data keys are wrapped with ({expected}): configure that one ([ledger.encryption]); a lost master key cannot be recovered")]
    WrongMaster { given: String, expected: String },
    #[error("session {session} is sealed, and no master key is configured: set [ledger.encryption] in the config to read it")]
    NoMasterKey { session: SessionId },
    #[error(
        "the data key file of session {session} ({path}) is damaged; restore it from a backup made after the last master key rotation"
    )]
    DamagedKeyFile { session: SessionId, path: PathBuf },
    #[error(
        "{path} does not hold a master key id (16 hex digits); restore it from a backup, or delete it to take the id from the key files"
    )]
    DamagedMasterId { path: PathBuf },
    #[error("session {session} is sealed, but its data key file {path} is missing and was never shredded: restore ledger/keys from a backup made after the last master key rotation")]
    LostKey { session: SessionId, path: PathBuf },
    #[error("event {seq} of session {session}: {source}")]
    Unseal { session: SessionId, seq: u64, source: crate::seal::SealError },
}

/// The data keys of a ledger, with the master key that unwraps them (if one is configured).
#[derive(Clone)]
pub struct Keyring {
    dir: PathBuf,
    master: Option<MasterKey>,
}

/// One session's key, looked up once for reading many of its events.
pub struct Opener {
    session: SessionId,
    /// None: the key file is gone (shredded, or lost when `lost` names it).
    key: Option<DataKey>,
    /// The key file that should be there but is not, and no shred marker says why.
    lost: Option<PathBuf>,
}

// === impl MasterKeySource ===

impl MasterKeySource {
    /// Loads the master key; a file source that does not exist is an error.
    pub fn load(&self) -> Result<MasterKey, KeyringError> {
        let text = match self {
            MasterKeySource::File(path) => {
                fs::read_to_string(path).map_err(|e| KeyringError::MissingMaster { source_name: self.describe(), why: e.to_string() })?
            }
            // Not the error's own text: for a value that is not Unicode it holds the value.
            MasterKeySource::Env(name) => std::env::var(name).map_err(|e| KeyringError::MissingMaster {
                source_name: self.describe(),
                why: match e {
                    std::env::VarError::NotPresent => "it is not set".into(),
                    std::env::VarError::NotUnicode(_) => "its value is not text".into(),
                },
            })?,
            MasterKeySource::Command(argv) => self.run(argv)?,
        };
        if let MasterKeySource::File(path) = self {
            if let Ok(meta) = fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the master key file is readable by others; chmod 600 it");
                }
            }
        }
        MasterKey::from_hex(text.trim()).ok_or_else(|| KeyringError::MalformedMaster { source_name: self.describe() })
    }

    /// Loads the master key, first creating a file source's file with a new random key.
    pub fn load_or_create(&self) -> Result<MasterKey, KeyringError> {
        if let MasterKeySource::File(path) = self {
            if !path.exists() {
                let key = MasterKey::from_bytes(rand::random());
                // create_new: of two processes starting at once, one makes the key, the other reads it.
                match create_private(path, format!("{}\n", hex::encode(key.key)).as_bytes()) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "created a new master key; back it up apart from the data dir");
                        return Ok(key);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("create", path)(e)),
                }
            }
        }
        self.load()
    }

    /// How the source is named in messages (never the key).
    pub fn describe(&self) -> String {
        match self {
            MasterKeySource::File(path) => format!("file {}", path.display()),
            MasterKeySource::Env(name) => format!("environment variable {name}"),
            MasterKeySource::Command(argv) => format!("command {:?}", argv.join(" ")),
        }
    }

    /// Runs the key command: its standard output (bounded) is the key; it gets
    /// [`COMMAND_TIMEOUT`], and a failure says what it wrote on standard error.
    fn run(&self, argv: &[String]) -> Result<String, KeyringError> {
        use std::io::Read;
        let missing = |why: String| KeyringError::MissingMaster { source_name: self.describe(), why };
        let (program, args) = argv.split_first().ok_or_else(|| missing("the command is empty".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| missing(e.to_string()))?;
        let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let out = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stdout.by_ref().take(MAX_COMMAND_OUTPUT as u64 + 1).read_to_end(&mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.by_ref().take(1024).read_to_end(&mut text);
            text
        });
        let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match child.try_wait().map_err(|e| missing(e.to_string()))? {
                Some(status) => break status,
                None if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(missing(format!("it did not finish within {COMMAND_TIMEOUT:?}")));
                }
                None => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
        if !status.success() {
            let said = String::from_utf8_lossy(&stderr).trim().to_string();
            return Err(missing(format!("it exited with {status}{}", if said.is_empty() { String::new() } else { format!(": {said}") })));
        }
        if stdout.len() > MAX_COMMAND_OUTPUT {
            return Err(KeyringError::MalformedMaster { source_name: self.describe() });
        }
        String::from_utf8(stdout).map_err(|_| KeyringError::MalformedMaster { source_name: self.describe() })
    }
}

// === impl MasterKey ===

impl MasterKey {
    pub fn from_bytes(key: [u8; 32]) -> MasterKey {
        let id: [u8; 32] = Sha256::new().chain_update(MASTER_ID_TAG).chain_update(key).finalize().into();
        MasterKey { key, id: KeyId(id[..8].try_into().expect("8 bytes")) }
    }

    pub fn from_hex(text: &str) -> Option<MasterKey> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).ok()?;
        Some(MasterKey::from_bytes(key))
    }

    /// A new random master key, as 64 hex digits (for `witness keys rotate`).
    pub fn random() -> MasterKey {
        MasterKey::from_bytes(rand::random())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key)
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    fn wrap(&self, session: SessionId, data: &DataKey) -> [u8; WRAPPED_LEN] {
        let mut out = [0u8; WRAPPED_LEN];
        let version = match data.aead() {
            Aead::Aes256Gcm => WRAP_VERSION_GCM,
            Aead::Aes256GcmSiv => WRAP_VERSION_GCM_SIV,
        };
        out[0] = version;
        out[1..9].copy_from_slice(&self.id.0);
        let nonce: [u8; 24] = rand::random();
        out[9..33].copy_from_slice(&nonce);
        out[33..65].copy_from_slice(data.bytes());
        let cipher = XChaCha20Poly1305::new(&self.key.into());
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(nonce), &self.wrap_aad(session, version), out[33..65].as_mut().into())
            .expect("a 32-byte key seals");
        out[65..].copy_from_slice(&tag);
        out
    }

    /// The data key in a wrapped key file: None when it is not 81 bytes wrapped by this key.
    fn unwrap(&self, session: SessionId, wrapped: &[u8]) -> Option<DataKey> {
        let version = *wrapped.first()?;
        let aead = match version {
            WRAP_VERSION_GCM => Aead::Aes256Gcm,
            WRAP_VERSION_GCM_SIV => Aead::Aes256GcmSiv,
            _ => return None,
        };
        if wrapped.len() != WRAPPED_LEN || wrapped[1..9] != self.id.0 {
            return None;
        }
        let nonce: [u8; 24] = wrapped[9..33].try_into().expect("24 bytes");
        let mut key: [u8; 32] = wrapped[33..65].try_into().expect("32 bytes");
        let tag: &[u8; 16] = wrapped[65..].try_into().expect("16 bytes");
        let cipher = XChaCha20Poly1305::new(&self.key.into());
        let aad = self.wrap_aad(session, version);
        cipher.decrypt_inout_detached(&XNonce::from(nonce), &aad, key.as_mut().into(), tag.into()).ok()?;
        let data = DataKey::from_bytes(key, aead);
        zeroize::Zeroize::zeroize(&mut key);
        Some(data)
    }

    /// Version 2 on binds the version too, so a key's AEAD cannot be changed without the master
    /// key; version 1 files were written without it.
    fn wrap_aad(&self, session: SessionId, version: u8) -> Vec<u8> {
        let version: &[u8] = if version == WRAP_VERSION_GCM_SIV { &[] } else { &[version] };
        [WRAP_TAG, session.as_bytes(), &self.id.0, version].concat()
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id.to_hex())
    }
}

// === impl Keyring ===

impl Keyring {
    /// The keyring of the ledger at `paths`, for reading, with the configured master key if any.
    /// A master key other than the one the ledger's keys are wrapped with is refused.
    pub fn open(paths: &LedgerPaths, master: Option<MasterKey>) -> Result<Keyring, KeyringError> {
        let keyring = Keyring { dir: paths.keys.clone(), master };
        if let Some(master) = &keyring.master {
            if let Some(expected) = keyring.master_id()? {
                if expected != master.id {
                    return Err(KeyringError::WrongMaster { given: master.id.to_hex(), expected: expected.to_hex() });
                }
            }
        }
        Ok(keyring)
    }

    /// The keyring a gateway seals new sessions with: made on first use, the master key's id
    /// written down, and a master key other than that one refused.
    pub(crate) fn for_writing(paths: &LedgerPaths, master: MasterKey) -> Result<Keyring, KeyringError> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&paths.keys).map_err(io("create", &paths.keys))?;
        let keyring = Keyring::open(paths, Some(master.clone()))?;
        if keyring.master_id()?.is_none() {
            keyring.write_master_id(master.id)?;
        }
        Ok(keyring)
    }

    /// Whether a master key is configured (new sessions are then sealed).
    pub fn can_seal(&self) -> bool {
        self.master.is_some()
    }

    /// Makes, wraps and stores a new data key for `session`; on disk (fsynced, with its
    /// directory) before it returns, whatever the ledger's durability: a sealed record whose key
    /// a crash lost could never be read, and would pass for a shredded one.
    pub(crate) fn create(&self, session: SessionId) -> Result<DataKey, KeyringError> {
        let master = self.master.as_ref().expect("only a keyring with a master key seals");
        let key = DataKey::random();
        // Never over another key file: one key per session, and its one writer (seal.rs).
        let path = self.key_path(session);
        create_private(&path, &master.wrap(session, &key)).map_err(io("create", &path))?;
        sync_dir(&self.dir)?;
        Ok(key)
    }

    /// The data key of `session`: None when it has no key file (it was never sealed, or its
    /// key was shredded; [`Keyring::was_shredded`] tells which).
    pub fn data_key(&self, session: SessionId) -> Result<Option<DataKey>, KeyringError> {
        let path = self.key_path(session);
        let wrapped = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let master = self.master.as_ref().ok_or(KeyringError::NoMasterKey { session })?;
        if wrapped.len() == WRAPPED_LEN && wrapped[1..9] != master.id.0 {
            return Err(KeyringError::WrongMaster { given: master.id.to_hex(), expected: hex::encode(&wrapped[1..9]) });
        }
        master.unwrap(session, &wrapped).map(Some).ok_or(KeyringError::DamagedKeyFile { session, path })
    }

    /// Whether `session`'s key was destroyed by [`Keyring::shred`] (not lost).
    pub fn was_shredded(&self, session: SessionId) -> bool {
        self.dir.join(format!("{session}{SHREDDED_SUFFIX}")).exists()
    }

    /// Whether `session` has a data key file (its sealed contents can still be read).
    pub fn has_key(&self, session: SessionId) -> bool {
        self.key_path(session).exists()
    }

    /// Destroys `session`'s data key: its sealed contents can no longer be read by anyone.
    /// Returns false when there was no key to destroy.
    pub fn shred(&self, session: SessionId) -> Result<bool, KeyringError> {
        let path = self.key_path(session);
        if !path.exists() {
            return Ok(false);
        }
        // The marker first: a crash between the two leaves a key that is still there, never a
        // missing key without its marker.
        let marker = self.dir.join(format!("{session}{SHREDDED_SUFFIX}"));
        write_private(&marker, b"", true)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("remove", &path)(e)),
        }
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Looks up `session`'s key once, for reading its events.
    pub fn opener(&self, session: SessionId) -> Result<Opener, KeyringError> {
        let key = self.data_key(session)?;
        let lost = key.is_none() && !self.was_shredded(session);
        Ok(Opener { session, key, lost: lost.then(|| self.key_path(session)) })
    }

    /// Re-wraps every data key under `new` (each file replaced by rename; a rotation cut short
    /// is finished by running it again with the same two keys), then records `new` as the
    /// master key. Segments are not touched. Returns how many keys were re-wrapped. The
    /// gateway must be stopped (the caller holds the ledger's lock).
    pub fn rotate(paths: &LedgerPaths, old: &MasterKey, new: &MasterKey) -> Result<usize, KeyringError> {
        let keyring = Keyring { dir: paths.keys.clone(), master: Some(old.clone()) };
        if let Some(expected) = keyring.master_id()? {
            if expected != old.id && expected != new.id {
                return Err(KeyringError::WrongMaster { given: old.id.to_hex(), expected: expected.to_hex() });
            }
        }
        let mut rewrapped = 0;
        for session in keyring.sessions()? {
            let path = keyring.key_path(session);
            let wrapped = fs::read(&path).map_err(io("read", &path))?;
            if wrapped.len() == WRAPPED_LEN && wrapped[1..9] == new.id.0 {
                continue;
            }
            let key = old.unwrap(session, &wrapped).ok_or_else(|| KeyringError::DamagedKeyFile { session, path: path.clone() })?;
            let staged = path.with_extension("key.new");
            write_private(&staged, &new.wrap(session, &key), true)?;
            fs::rename(&staged, &path).map_err(io("replace", &path))?;
            rewrapped += 1;
        }
        sync_dir(&keyring.dir)?;
        keyring.write_master_id(new.id)?;
        Ok(rewrapped)
    }

    /// The sessions that have a key file.
    pub fn sessions(&self) -> Result<Vec<SessionId>, KeyringError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.dir)(e)),
        };
        let mut sessions = Vec::new();
        for entry in entries {
            let name = entry.map_err(io("list", &self.dir))?.file_name();
            let id = name.to_str().and_then(|n| n.strip_suffix(KEY_SUFFIX)).and_then(|n| n.parse::<SessionId>().ok());
            sessions.extend(id);
        }
        sessions.sort();
        Ok(sessions)
    }

    fn key_path(&self, session: SessionId) -> PathBuf {
        self.dir.join(format!("{session}{KEY_SUFFIX}"))
    }

    /// The id of the master key the ledger's keys are wrapped with: from `master.id`, or, when
    /// that is missing (lost, or never written), from the first key file.
    fn master_id(&self) -> Result<Option<KeyId>, KeyringError> {
        let path = self.dir.join(MASTER_ID_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => KeyId::from_hex(text.trim()).map(Some).ok_or(KeyringError::DamagedMasterId { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(session) = self.sessions()?.into_iter().next() else { return Ok(None) };
                let wrapped = fs::read(self.key_path(session)).map_err(io("read", &self.key_path(session)))?;
                Ok((wrapped.len() == WRAPPED_LEN).then(|| KeyId(wrapped[1..9].try_into().expect("8 bytes"))))
            }
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    fn write_master_id(&self, id: KeyId) -> Result<(), KeyringError> {
        let path = self.dir.join(MASTER_ID_FILE);
        let staged = self.dir.join("master.id.new");
        write_private(&staged, format!("{}\n", id.to_hex()).as_bytes(), true)?;
        fs::rename(&staged, &path).map_err(io("replace", &path))?;
        sync_dir(&self.dir)
    }
}

// === impl Opener ===

impl Opener {
    /// An opener holding `key`, for sealed events read from elsewhere than the ledger (a bundle).
    pub(crate) fn with_key(session: SessionId, key: DataKey) -> Opener {
        Opener { session, key: Some(key), lost: None }
    }

    /// Replaces a sealed event's clear header and sealed payload with what was sealed; marks it
    /// shredded (no payload, a summary saying so) when the key is gone. Events that are not
    /// sealed are left as they are.
    pub fn unseal(&self, event: &mut StoredEvent) -> Result<(), KeyringError> {
        let Some(SealState::Sealed(key_id)) = event.sealed else { return Ok(()) };
        if let Some(path) = &self.lost {
            return Err(KeyringError::LostKey { session: self.session, path: path.clone() });
        }
        let Some(sealed) = event.payload.as_deref() else {
            // The record's payload was purged: the sealed contents with it.
            event.summary = PURGED_SUMMARY.to_string();
            event.sealed = Some(SealState::Purged);
            return Ok(());
        };
        let Some(key) = &self.key else {
            event.summary = SHREDDED_SUMMARY.to_string();
            event.payload = None;
            event.sealed = Some(SealState::Shredded);
            return Ok(());
        };
        let (session, seq) = (self.session, event.seq);
        let place = SealPlace { session_id: *session.as_bytes(), seq, kind: &event.kind };
        let opened = key.open(&place, key_id, sealed).map_err(|source| KeyringError::Unseal { session, seq, source })?;
        let header = StoredHeader::parse(&opened.header);
        event.summary = header.summary;
        event.attrs = header.attrs;
        event.payload_type = witness_core::PayloadType::from_name(&header.payload).unwrap_or(witness_core::PayloadType::Binary);
        event.payload_len = opened.payload.len() as u64;
        event.payload = Some(opened.payload);
        event.sealed = Some(SealState::Opened);
        Ok(())
    }
}

fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_private(path: &Path, bytes: &[u8], sync: bool) -> Result<(), KeyringError> {
    let mut file = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))?;
    if sync {
        file.sync_all().map_err(io("sync", path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), KeyringError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyringError + 'a {
    move |source| KeyringError::Io { action, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key of an earlier release (version 1, AES-256-GCM-SIV) opens as one, survives a rotation
    /// as one, and a new key's version cannot be changed to make it another AEAD's.
    #[test]
    fn a_key_file_keeps_its_aead_through_rotation_and_its_version_is_bound() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LedgerPaths::new(dir.path());
        let (old, new) = (MasterKey::from_bytes([1; 32]), MasterKey::from_bytes([2; 32]));
        let keyring = Keyring::for_writing(&paths, old.clone()).unwrap();
        let (earlier, now) = (SessionId::new(), SessionId::new());
        let siv = DataKey::from_bytes([5; 32], Aead::Aes256GcmSiv);
        write_private(&keyring.key_path(earlier), &old.wrap(earlier, &siv), true).unwrap();
        let gcm = keyring.create(now).unwrap();
        assert_eq!(gcm.aead(), Aead::Aes256Gcm, "new keys seal with AES-256-GCM");
        assert_eq!(fs::read(keyring.key_path(earlier)).unwrap()[0], WRAP_VERSION_GCM_SIV);
        assert_eq!(fs::read(keyring.key_path(now)).unwrap()[0], WRAP_VERSION_GCM);

        assert_eq!(Keyring::rotate(&paths, &old, &new).unwrap(), 2);
        let keyring = Keyring::open(&paths, Some(new)).unwrap();
        let opened = keyring.data_key(earlier).unwrap().unwrap();
        assert_eq!((opened.aead(), opened.id()), (Aead::Aes256GcmSiv, siv.id()));
        assert_eq!(keyring.data_key(now).unwrap().unwrap().aead(), Aead::Aes256Gcm);

        let path = keyring.key_path(now);
        let mut wrapped = fs::read(&path).unwrap();
        wrapped[0] = WRAP_VERSION_GCM_SIV;
        fs::write(&path, &wrapped).unwrap();
        assert!(matches!(keyring.data_key(now), Err(KeyringError::DamagedKeyFile { .. })), "the version is bound to the key");
    }
}
