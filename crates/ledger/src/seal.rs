//! Sealed events: an event's summary, attributes and payload encrypted with its session's data
//! key, so that the segments hold ciphertext and destroying the key destroys the contents.
//!
//! A sealed event keeps its record layout (format.rs). Its header is a small clear JSON object
//! that says it is sealed and by which key (`"sealed": "<key id>"`), keeps the gate's decision
//! and the payload's type, and has an empty summary; its payload is the sealed contents:
//! `nonce (12) ‖ AEAD(u32 header length ‖ header JSON ‖ payload) ‖ tag (16)`. The associated
//! data binds the ciphertext to its session, seq, kind and key id, so sealed contents moved to
//! another record do not open. The chain commits to the ciphertext's digest: verifying needs no
//! key.
//!
//! The AEAD belongs to the data key ([`Aead`]), and is kept with it wherever it is kept (the
//! wrapped key file's version, keyring.rs; a bundle's key entry, bundle.rs), so a record need
//! not name it. New keys seal with AES-256-GCM; keys made before it was chosen seal with
//! AES-256-GCM-SIV, and their records open as they always did.
//!
//! Pure: no files, no clocks. The keys come from keyring.rs.

use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use ring::aead::{Aad, LessSafeKey, Nonce as GcmNonce, Tag, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};

use crate::format::{MAX_HEADER_LEN, MAX_PAYLOAD_LEN};

const SEAL_TAG: &[u8] = b"witness-seal-v1";
const KEY_ID_TAG: &[u8] = b"witness-data-key-id-v1";
/// The nonce of both AEADs: 96 bits. A session's writer makes each one from a random prefix of
/// its own and a counter of the contents it sealed ([`NonceSequence`]), so none repeats under a
/// key: each session has its own key and one writer.
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// What sealing adds to an event's header and payload: nonce, header length, tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 4 + TAG_LEN;
/// The largest sealed payload: a whole header and a whole payload, sealed.
pub const MAX_SEALED_LEN: usize = MAX_PAYLOAD_LEN + MAX_HEADER_LEN + SEAL_OVERHEAD;

/// The AEAD a data key seals with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aead {
    /// AES-256-GCM (ring's, with AES-NI and carry-less multiply): what new keys seal with. Chosen
    /// for speed on short records: with its key schedule and hash key made once per session, a
    /// few-hundred-byte event costs a fraction of what GCM-SIV's per-nonce key derivation does.
    /// Safe because a key's nonces never repeat (see [`NONCE_LEN`]).
    Aes256Gcm,
    /// AES-256-GCM-SIV: what keys made by earlier witness releases seal with; still opened.
    Aes256GcmSiv,
}

/// A session's 256-bit data key, its id and its AEAD. Never written anywhere but wrapped
/// (keyring.rs).
pub struct DataKey {
    key: [u8; 32],
    id: KeyId,
    aead: Aead,
    /// The cipher keyed once: a session seals every event with it.
    cipher: Cipher,
}

enum Cipher {
    Gcm(LessSafeKey),
    GcmSiv(Aes256GcmSiv),
}

/// The nonces of one writer: a random 4-byte prefix and a counter of the contents sealed, so
/// that no two seals under a key share one, even when a sealed record is made and then dropped
/// (too large to write) and the next takes its seq. Sealing takes one, never a nonce: a key
/// sealed through two sequences would risk a repeat, so each key has one writer, and it one.
pub struct NonceSequence {
    prefix: [u8; 4],
    sealed: AtomicU64,
}

/// The first 8 bytes of SHA-256("witness-data-key-id-v1" ‖ key): names a key without revealing
/// it, so that a reader holding the wrong key says so instead of calling the record damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

/// Why sealed contents could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed with key {sealed_with}, not with this session's key {held}")]
    OtherKey { sealed_with: String, held: String },
    #[error("the sealed contents do not open with their key: they were altered, or moved from another record")]
    DoesNotOpen,
    #[error("the sealed contents are {len} bytes, too short or too long to be sealed contents")]
    BadLength { len: usize },
}

/// Where a sealed event belongs; the associated data of its contents.
#[derive(Clone, Copy, Debug)]
pub struct SealPlace<'a> {
    pub session_id: [u8; 16],
    pub seq: u64,
    pub kind: &'a str,
}

/// An event's contents as they were before sealing.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
}

impl DataKey {
    pub fn from_bytes(key: [u8; 32], aead: Aead) -> DataKey {
        let id: [u8; 32] = Sha256::new().chain_update(KEY_ID_TAG).chain_update(key).finalize().into();
        let cipher = match aead {
            Aead::Aes256Gcm => Cipher::Gcm(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key"))),
            Aead::Aes256GcmSiv => Cipher::GcmSiv(Aes256GcmSiv::new(&key.into())),
        };
        DataKey { key, id: KeyId(id[..8].try_into().expect("8 bytes")), aead, cipher }
    }

    /// A new key, for the AEAD new sessions seal with.
    pub fn random() -> DataKey {
        DataKey::from_bytes(rand::random(), Aead::Aes256Gcm)
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn aead(&self) -> Aead {
        self.aead
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Seals `header` and `payload` for `place` under the next nonce of `nonces`, the sequence
    /// of this key's one writer.
    pub fn seal(&self, place: &SealPlace<'_>, nonces: &NonceSequence, header: &[u8], payload: &[u8]) -> Vec<u8> {
        let nonce = &nonces.next();
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + header.len() + payload.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(payload);
        let mut aad = [0u8; MAX_AAD_LEN];
        let aad = associated_data(&mut aad, place, self.id);
        let plain = &mut out[NONCE_LEN..];
        let tag: [u8; TAG_LEN] = match &self.cipher {
            Cipher::Gcm(key) => {
                let tag = key
                    .seal_in_place_separate_tag(GcmNonce::assume_unique_for_key(*nonce), Aad::from(aad), plain)
                    .expect("AES-256-GCM seals any length witness records");
                tag.as_ref().try_into().expect("16 bytes")
            }
            Cipher::GcmSiv(cipher) => cipher
                .encrypt_inout_detached(&Nonce::from(*nonce), aad, plain.into())
                .expect("AES-256-GCM-SIV seals any length witness records")
                .into(),
        };
        out.extend_from_slice(&tag);
        out
    }

    /// Opens contents sealed by [`DataKey::seal`] for the same place, with the key id the
    /// record's clear header names.
    pub fn open(&self, place: &SealPlace<'_>, sealed_with: KeyId, sealed: &[u8]) -> Result<Opened, SealError> {
        if sealed_with != self.id {
            return Err(SealError::OtherKey { sealed_with: hex::encode(sealed_with.0), held: hex::encode(self.id.0) });
        }
        if sealed.len() < SEAL_OVERHEAD || sealed.len() > MAX_SEALED_LEN {
            return Err(SealError::BadLength { len: sealed.len() });
        }
        let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("12 bytes");
        let (body, tag) = sealed[NONCE_LEN..].split_at(sealed.len() - NONCE_LEN - TAG_LEN);
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("16 bytes");
        let mut plain = body.to_vec();
        let mut aad = [0u8; MAX_AAD_LEN];
        let aad = associated_data(&mut aad, place, self.id);
        let opened = match &self.cipher {
            Cipher::Gcm(key) => key
                .open_in_place_separate_tag(GcmNonce::assume_unique_for_key(nonce), Aad::from(aad), Tag::from(*tag), &mut plain, 0..)
                .map(|_| ())
                .is_ok(),
            Cipher::GcmSiv(cipher) => {
                cipher.decrypt_inout_detached(&Nonce::from(nonce), aad, plain.as_mut_slice().into(), tag.into()).is_ok()
            }
        };
        if !opened {
            return Err(SealError::DoesNotOpen);
        }
        // Authentic, so written by witness: the length is within the plaintext. Checked anyway.
        let header_len = u32::from_le_bytes(plain[..4].try_into().expect("4 bytes")) as usize;
        if header_len > plain.len() - 4 {
            return Err(SealError::BadLength { len: sealed.len() });
        }
        let payload = plain.split_off(4 + header_len);
        plain.drain(..4);
        Ok(Opened { header: plain, payload })
    }
}

impl NonceSequence {
    #[allow(clippy::new_without_default)] // a new sequence is a deliberate act, not a default
    pub fn new() -> NonceSequence {
        NonceSequence { prefix: rand::random(), sealed: AtomicU64::new(0) }
    }

    /// The next nonce: never one given before by this sequence.
    fn next(&self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..].copy_from_slice(&self.sealed.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        nonce
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Best effort: a key copied by a move may remain elsewhere in memory, and ring does not
        // wipe the AES-GCM key schedule it keeps. Whoever can read witness's memory can read its
        // master key too, which opens every key not shredded; shredding is about the key files.
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({}, {:?})", hex::encode(self.id.0), self.aead)
    }
}

impl KeyId {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<KeyId> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(KeyId(id))
    }
}

/// The associated data of the longest kind (64 bytes, as records allow).
const MAX_AAD_LEN: usize = SEAL_TAG.len() + 16 + 8 + 1 + 64 + 8;

/// `"witness-seal-v1" ‖ session id ‖ seq ‖ kind length ‖ kind ‖ key id`, laid out in `buf`.
fn associated_data<'b>(buf: &'b mut [u8; MAX_AAD_LEN], place: &SealPlace<'_>, key: KeyId) -> &'b [u8] {
    // Records admit kinds of 1 to 64 bytes (format.rs), so the length byte is exact.
    assert!(place.kind.len() <= 64, "an event kind is at most 64 bytes");
    let kind = place.kind.as_bytes();
    let parts: [&[u8]; 6] = [SEAL_TAG, &place.session_id, &place.seq.to_le_bytes(), &[kind.len() as u8], kind, &key.0];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    &buf[..at]
}

/// The clear header of a sealed event: empty summary, the gate's decision if it made one, how
/// to show the payload, and the key it is sealed with.
/// Written as bytes, not through a JSON value: it is made for every sealed event.
pub fn clear_header(key: KeyId, payload_type: &str, decision: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + decision.map_or(0, str::len));
    out.extend_from_slice(b"{\"summary\":\"\",\"payload\":");
    serde_json::to_writer(&mut out, payload_type).expect("a string serializes");
    out.extend_from_slice(b",\"sealed\":\"");
    let mut id = [0u8; 16];
    hex::encode_to_slice(key.0, &mut id).expect("16 hex digits for 8 bytes");
    out.extend_from_slice(&id);
    out.push(b'"');
    if let Some(decision) = decision {
        out.extend_from_slice(b",\"attrs\":{\"decision\":");
        serde_json::to_writer(&mut out, decision).expect("a string serializes");
        out.push(b'}');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(seq: u64) -> SealPlace<'static> {
        SealPlace { session_id: [3; 16], seq, kind: "pg.query" }
    }

    #[test]
    fn sealed_contents_open_only_where_and_with_what_they_were_sealed() {
        for aead in [Aead::Aes256Gcm, Aead::Aes256GcmSiv] {
            opens_only_where_sealed(aead);
        }
    }

    fn opens_only_where_sealed(aead: Aead) {
        let key = DataKey::from_bytes([7; 32], aead);
        let sealed = key.seal(&place(4), &NonceSequence::new(), b"{\"summary\":\"select secret\"}", b"select secret");
        assert_eq!(sealed.len(), SEAL_OVERHEAD + 27 + 13);
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "the plaintext shows through");
        let opened = key.open(&place(4), key.id(), &sealed).unwrap();
        assert_eq!((opened.header.as_slice(), opened.payload.as_slice()), (&b"{\"summary\":\"select secret\"}"[..], &b"select secret"[..]));

        assert_eq!(key.open(&place(5), key.id(), &sealed), Err(SealError::DoesNotOpen), "moved to another seq");
        let other_kind = SealPlace { kind: "pg.parse", ..place(4) };
        assert_eq!(key.open(&other_kind, key.id(), &sealed), Err(SealError::DoesNotOpen), "moved to another kind");
        let other_session = SealPlace { session_id: [4; 16], ..place(4) };
        assert_eq!(key.open(&other_session, key.id(), &sealed), Err(SealError::DoesNotOpen), "moved to another session");
        let other = DataKey::from_bytes([8; 32], aead);
        assert!(matches!(other.open(&place(4), key.id(), &sealed), Err(SealError::OtherKey { .. })));
        assert_eq!(other.open(&place(4), other.id(), &sealed), Err(SealError::DoesNotOpen), "a key claiming another's id");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(key.open(&place(4), key.id(), &bad).is_err(), "flip at byte {i} went unnoticed");
        }
        for cut in 0..SEAL_OVERHEAD {
            assert!(key.open(&place(4), key.id(), &sealed[..cut]).is_err());
        }
    }

    #[test]
    fn contents_open_only_with_the_aead_of_their_key() {
        let (gcm, siv) = (DataKey::from_bytes([7; 32], Aead::Aes256Gcm), DataKey::from_bytes([7; 32], Aead::Aes256GcmSiv));
        let sealed = gcm.seal(&place(1), &NonceSequence::new(), b"{}", b"select 1");
        assert_eq!(siv.open(&place(1), siv.id(), &sealed), Err(SealError::DoesNotOpen));
        let sealed = siv.seal(&place(1), &NonceSequence::new(), b"{}", b"select 1");
        assert_eq!(gcm.open(&place(1), gcm.id(), &sealed), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn a_writers_nonces_never_repeat() {
        let nonces = NonceSequence::new();
        let given: std::collections::HashSet<[u8; NONCE_LEN]> = (0..1000).map(|_| nonces.next()).collect();
        assert_eq!(given.len(), 1000);
    }

    #[test]
    fn key_ids_name_keys_and_clear_headers_say_no_more() {
        assert_eq!(DataKey::from_bytes([7; 32], Aead::Aes256Gcm).id(), DataKey::from_bytes([7; 32], Aead::Aes256Gcm).id());
        assert_ne!(DataKey::from_bytes([7; 32], Aead::Aes256Gcm).id(), DataKey::from_bytes([8; 32], Aead::Aes256Gcm).id());
        let id = DataKey::from_bytes([7; 32], Aead::Aes256Gcm).id();
        assert_eq!(KeyId::from_hex(&id.to_hex()), Some(id));
        let header: serde_json::Value = serde_json::from_slice(&clear_header(id, "text", Some("deny"))).unwrap();
        assert_eq!(header, serde_json::json!({"summary": "", "payload": "text", "sealed": id.to_hex(), "attrs": {"decision": "deny"}}));
    }
}
