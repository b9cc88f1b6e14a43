//! Exporting one session so that it can be checked on its own, away from the ledger: every event
//! with the bytes its chain hash commits to, then the session's last Merkle leaf with an RFC 6962
//! inclusion proof to a signed checkpoint. `verify_session_export` checks such a file with nothing
//! but the ledger's public key. [`ExportScan`] exports many sessions from one read of the ledger.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use witness_core::{kind, SessionId};

use crate::error::LedgerError;
use crate::format::{chain_hash, decode_committed, decode_record, decode_segment_header, leaf_hash, Hash, Leaf, PayloadHash, Record};
use crate::merkle::{verify_inclusion, MerkleLevels};
use crate::read::{stored_event, StoredEvent, StoredHeader};
use crate::segment::{list_segments, FrameItem, FrameIter};
use crate::verify::ExportedCheckpoint;

pub const EXPORT_FORMAT: &str = "witness-session-export";
/// The version exports are written in. Version 1 (before payload digests could be BLAKE3) has no
/// `payload_hash` on its events; both are read.
pub const EXPORT_VERSION: u32 = 2;

/// The first line of an export.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub version: u32,
    pub session: SessionId,
    pub public_key: String,
}

/// One event line. `committed`, `chain_hash` and `payload` are what verification uses; the other
/// fields are there for people and are checked against `committed`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub seq: u64,
    pub ledger_seq: u64,
    pub time_ns: i64,
    pub kind: String,
    pub direction: u8,
    pub summary: String,
    #[serde(default)]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    pub payload_type: String,
    /// The payload in base64, or null once purged.
    pub payload: Option<String>,
    /// How the payload's digest in `committed` was made (`sha256` or `blake3`, by the format
    /// version of the segment the event is in).
    #[serde(default = "sha256")]
    pub payload_hash: String,
    /// Base64 of the record bytes from the session id to the payload digest.
    pub committed: String,
    pub chain_hash: String,
}

/// The last line: the session's head in the Merkle log and the proof that a checkpoint has it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportedProof {
    pub leaf_index: u64,
    pub leaf_seq: u64,
    pub leaf_head_hash: String,
    pub leaf_closed: bool,
    pub audit_path: Vec<String>,
    pub checkpoint: ExportedCheckpoint,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Header(ExportHeader),
    Event(ExportedEvent),
    Proof(ExportedProof),
}

/// What an export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub session: SessionId,
    pub events: u64,
    /// Events recorded after the session's last sealed head; not in the export.
    pub events_left_out: u64,
    pub closed: bool,
    pub tree_size: u64,
}

/// Why an export does not verify, with the line where it was found.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ExportError {
    pub line: usize,
    pub problem: ExportProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportProblem {
    #[error("cannot read the export: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a line of a witness session export: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the file does not start with a witness-session-export header")]
    NoHeader,
    #[error("the export says it is signed by key {found}, not the key given ({expected})")]
    WrongKey { expected: String, found: String },
    #[error("{field} is not valid {encoding}")]
    Encoding { field: &'static str, encoding: &'static str },
    #[error("the committed bytes do not decode as an event: {0}")]
    Committed(crate::format::FormatError),
    #[error("event belongs to session {found}, not {expected}")]
    WrongSession { expected: SessionId, found: SessionId },
    #[error("seq {found} where seq {expected} belongs: events were removed, duplicated or reordered")]
    Seq { expected: u64, found: u64 },
    #[error("hash chain broken: this event or the one before it was altered")]
    ChainBroken,
    #[error("payload does not match its digest: the payload was altered")]
    PayloadDigest,
    #[error("payload_hash {name:?} is not a digest witness knows (sha256, blake3)")]
    UnknownPayloadHash { name: String },
    #[error("the export is of version {found}, newer than this witness reads (1 to {EXPORT_VERSION}); check it with a newer witness")]
    UnsupportedVersion { found: u32 },
    #[error("field {0} differs from the recorded bytes")]
    FieldMismatch(&'static str),
    #[error("the session head in the proof does not match the last event")]
    LeafMismatch,
    #[error("the inclusion proof does not lead to the checkpoint's root")]
    ProofInvalid,
    #[error("the checkpoint's signature does not verify with the given key")]
    BadSignature,
    #[error("the export ends without its proof line")]
    NoProof,
    #[error("the export has no events")]
    NoEvents,
    #[error("lines follow the proof line; an export ends with its proof")]
    AfterProof,
}

/// Writes session `session` of the ledger in `ledger_root` as JSON lines to `out`.
pub fn export_session(ledger_root: &Path, session: SessionId, out: &mut impl Write) -> Result<ExportSummary, LedgerError> {
    ExportScan::new(ledger_root, &[session])?.write(session, out)
}

/// What one pass over a ledger's segments gathers to export some of its sessions: their events,
/// every session head's Merkle leaf, and the newest checkpoint. Exporting many sessions (a bundle)
/// reads the ledger once, and each audit path costs O(log² n) from the kept tree levels.
pub struct ExportScan {
    ledger_root: PathBuf,
    events: HashMap<[u8; 16], Vec<ExportedEvent>>,
    /// Each session's heads: its leaf's index in the log and the leaf.
    heads: HashMap<[u8; 16], Vec<(u64, Leaf)>>,
    leaves: MerkleLevels,
    checkpoint: Option<ExportedCheckpoint>,
}

impl ExportScan {
    /// Reads the ledger in `ledger_root` once, keeping what exporting `sessions` needs.
    pub fn new(ledger_root: &Path, sessions: &[SessionId]) -> Result<ExportScan, LedgerError> {
        let segments_dir = ledger_root.join("segments");
        let wanted: HashSet<[u8; 16]> = sessions.iter().map(|s| *s.as_bytes()).collect();
        let mut events: HashMap<[u8; 16], Vec<ExportedEvent>> = HashMap::new();
        let mut heads: HashMap<[u8; 16], Vec<(u64, Leaf)>> = HashMap::new();
        let mut leaves: Vec<Hash> = Vec::new();
        let mut checkpoint = None;
        let segments = list_segments(&segments_dir).map_err(LedgerError::io("list", &segments_dir))?;
        for segment in &segments {
            let bytes = fs::read(&segment.path).map_err(LedgerError::io("read", &segment.path))?;
            let header =
                decode_segment_header(&bytes).map_err(|source| LedgerError::BadSegment { segment: segment.path.clone(), source })?;
            let hash = header.payload_hash();
            for item in FrameIter::new(&bytes, header.first_ledger_seq) {
                let FrameItem::Frame { offset, body } = item else { continue };
                let record = decode_record(body).map_err(|source| LedgerError::Format { segment: segment.path.clone(), offset, source })?;
                match record {
                    Record::Event(e) if wanted.contains(&e.session_id) => {
                        events.entry(e.session_id).or_default().push(exported_event(&e, hash));
                    }
                    Record::Event(_) => {}
                    Record::Head(h) => {
                        if wanted.contains(&h.leaf.session_id) {
                            heads.entry(h.leaf.session_id).or_default().push((leaves.len() as u64, h.leaf));
                        }
                        leaves.push(leaf_hash(&h.leaf));
                    }
                    Record::Checkpoint(c) => checkpoint = Some(ExportedCheckpoint::from_record(&c)),
                }
            }
        }
        Ok(ExportScan { ledger_root: ledger_root.to_path_buf(), events, heads, leaves: MerkleLevels::new(leaves), checkpoint })
    }

    /// Writes the export of `session` (one of those scanned) as JSON lines to `out`. Its events
    /// leave the scan as they are written, so a bundle does not keep them twice.
    pub fn write(&mut self, session: SessionId, out: &mut impl Write) -> Result<ExportSummary, LedgerError> {
        let id = session.as_bytes();
        let events = self.events.remove(id).filter(|events| !events.is_empty()).ok_or(LedgerError::UnknownSession { session })?;
        let not_sealed = || {
            LedgerError::Io {
            action: "export",
            path: self.ledger_root.clone(),
            source: std::io::Error::other(format!(
                "session {session} has no signed checkpoint covering it yet; wait for the next checkpoint (every second while witness runs) and try again"
            )),
        }
        };
        // The session's newest head that the newest checkpoint covers: the export is as recent as
        // the signatures allow.
        let checkpoint = self.checkpoint.as_ref().ok_or_else(not_sealed)?;
        let heads = self.heads.get(id).map(Vec::as_slice).unwrap_or_default();
        let (leaf_index, leaf) = *heads.iter().rev().find(|(index, _)| *index < checkpoint.tree_size).ok_or_else(not_sealed)?;
        let tree_size = usize::try_from(checkpoint.tree_size).ok().filter(|&n| n <= self.leaves.len()).ok_or_else(|| LedgerError::Io {
            action: "export",
            path: self.ledger_root.clone(),
            source: std::io::Error::other(format!(
                "the newest checkpoint covers {} session heads, but the segments hold {}",
                checkpoint.tree_size,
                self.leaves.len()
            )),
        })?;
        let audit_path = self.leaves.inclusion_proof(leaf_index as usize, tree_size);
        let n_total = events.len() as u64;
        // A seq past what memory can hold keeps every event (the export's check refuses it then).
        let through = usize::try_from(leaf.seq).map_or(events.len(), |seq| seq.saturating_add(1));
        let n_included = events.len().min(through);
        let write = |out: &mut dyn Write, line: &Line| -> Result<(), LedgerError> {
            serde_json::to_writer(&mut *out, line).map_err(|e| LedgerError::io("write", "the export")(e.into()))?;
            out.write_all(b"\n").map_err(LedgerError::io("write", "the export"))
        };
        let header =
            ExportHeader { format: EXPORT_FORMAT.into(), version: EXPORT_VERSION, session, public_key: checkpoint.public_key.clone() };
        write(out, &Line::Header(header))?;
        for event in events.into_iter().take(n_included) {
            write(out, &Line::Event(event))?;
        }
        let proof = ExportedProof {
            leaf_index,
            leaf_seq: leaf.seq,
            leaf_head_hash: hex::encode(leaf.head_hash),
            leaf_closed: leaf.closed,
            audit_path: audit_path.iter().map(hex::encode).collect(),
            checkpoint: checkpoint.clone(),
        };
        write(out, &Line::Proof(proof))?;
        Ok(ExportSummary {
            session,
            events: n_included as u64,
            events_left_out: n_total - n_included as u64,
            closed: leaf.closed,
            tree_size: checkpoint.tree_size,
        })
    }
}

/// Checks an export read from `input` against the ledger key `key`, with nothing else.
pub fn verify_session_export(input: impl BufRead, key: &VerifyingKey) -> Result<ExportSummary, ExportError> {
    check_export(input, key, |_| {})
}

/// [`verify_session_export`], keeping the events as their committed bytes give them (a sealed
/// event still sealed: open it with the session's data key, see `bundle.rs`).
pub fn read_session_export(input: impl BufRead, key: &VerifyingKey) -> Result<(ExportSummary, Vec<StoredEvent>), ExportError> {
    let mut events = Vec::new();
    let summary = check_export(input, key, |event| events.push(event))?;
    Ok((summary, events))
}

fn check_export(input: impl BufRead, key: &VerifyingKey, mut each: impl FnMut(StoredEvent)) -> Result<ExportSummary, ExportError> {
    let mut lines = input.lines().enumerate().map(|(i, line)| (i + 1, line));
    let fail = |line: usize, problem: ExportProblem| ExportError { line, problem };
    let parse = |line: usize, text: std::io::Result<String>| -> Result<Line, ExportError> {
        let text = text.map_err(|e| fail(line, e.into()))?;
        serde_json::from_str(&text).map_err(|e| fail(line, e.into()))
    };
    let header = match lines.next() {
        Some((n, text)) => match parse(n, text)? {
            Line::Header(h) if h.format == EXPORT_FORMAT && (1..=EXPORT_VERSION).contains(&h.version) => h,
            Line::Header(h) if h.format == EXPORT_FORMAT => return Err(fail(n, ExportProblem::UnsupportedVersion { found: h.version })),
            _ => return Err(fail(n, ExportProblem::NoHeader)),
        },
        None => return Err(fail(1, ExportProblem::NoHeader)),
    };
    let expected_key = hex::encode(key.as_bytes());
    if header.public_key != expected_key {
        return Err(fail(1, ExportProblem::WrongKey { expected: expected_key, found: header.public_key }));
    }
    let mut head: Hash = [0; 32];
    let mut n_events = 0u64;
    let mut closed = false;
    while let Some((n, text)) = lines.next() {
        match parse(n, text)? {
            Line::Header(_) => return Err(fail(n, ExportProblem::NoHeader)),
            Line::Event(event) => {
                let checked = check_event(&event, header.session, n_events, &head).map_err(|p| fail(n, p))?;
                closed = checked.kind == kind::SESSION_END.as_str();
                head = decode_hash(&event.chain_hash, "chain_hash").map_err(|p| fail(n, p))?;
                n_events += 1;
                each(checked);
            }
            Line::Proof(proof) => {
                if n_events == 0 {
                    return Err(fail(n, ExportProblem::NoEvents));
                }
                check_proof(&proof, header.session, n_events - 1, &head, closed, key).map_err(|p| fail(n, p))?;
                if let Some((extra, _)) = lines.next() {
                    return Err(fail(extra, ExportProblem::AfterProof));
                }
                let summary = ExportSummary {
                    session: header.session,
                    events: n_events,
                    events_left_out: 0,
                    closed,
                    tree_size: proof.checkpoint.tree_size,
                };
                return Ok(summary);
            }
        }
    }
    Err(fail(n_events as usize + 2, ExportProblem::NoProof))
}

/// Checks one event line; returns the event as its committed bytes and payload give it.
fn check_event(event: &ExportedEvent, session: SessionId, expected_seq: u64, prev: &Hash) -> Result<StoredEvent, ExportProblem> {
    let committed = B64.decode(&event.committed).map_err(|_| ExportProblem::Encoding { field: "committed", encoding: "base64" })?;
    let chain = decode_hash(&event.chain_hash, "chain_hash")?;
    let recorded = decode_committed(&committed, event.ledger_seq, chain).map_err(ExportProblem::Committed)?;
    let found_session = SessionId::from_bytes(recorded.session_id);
    if found_session != session {
        return Err(ExportProblem::WrongSession { expected: session, found: found_session });
    }
    if recorded.seq != expected_seq {
        return Err(ExportProblem::Seq { expected: expected_seq, found: recorded.seq });
    }
    if chain_hash(prev, &committed) != chain {
        return Err(ExportProblem::ChainBroken);
    }
    let hash = PayloadHash::from_name(&event.payload_hash)
        .ok_or_else(|| ExportProblem::UnknownPayloadHash { name: event.payload_hash.clone() })?;
    let payload = match &event.payload {
        Some(payload) => {
            let payload = B64.decode(payload).map_err(|_| ExportProblem::Encoding { field: "payload", encoding: "base64" })?;
            if hash.digest(&payload) != recorded.payload_digest || payload.len() as u64 != recorded.payload_len {
                return Err(ExportProblem::PayloadDigest);
            }
            Some(payload)
        }
        None => None,
    };
    let header = StoredHeader::parse(recorded.header);
    let checks: [(&'static str, bool); 7] = [
        ("seq", event.seq == recorded.seq),
        ("time_ns", event.time_ns == recorded.time_ns),
        ("kind", event.kind == recorded.kind),
        ("direction", event.direction == recorded.direction),
        ("summary", event.summary == header.summary),
        ("attrs", event.attrs == header.attrs),
        ("payload_type", event.payload_type == header.payload),
    ];
    if let Some((field, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Err(ExportProblem::FieldMismatch(field));
    }
    let mut checked = stored_event(&recorded);
    checked.payload = payload;
    Ok(checked)
}

fn check_proof(
    proof: &ExportedProof,
    session: SessionId,
    last_seq: u64,
    head: &Hash,
    closed: bool,
    key: &VerifyingKey,
) -> Result<(), ExportProblem> {
    let leaf = Leaf {
        session_id: *session.as_bytes(),
        seq: proof.leaf_seq,
        head_hash: decode_hash(&proof.leaf_head_hash, "leaf_head_hash")?,
        closed: proof.leaf_closed,
    };
    if leaf.seq != last_seq || leaf.head_hash != *head || leaf.closed != closed {
        return Err(ExportProblem::LeafMismatch);
    }
    let path = proof.audit_path.iter().map(|h| decode_hash(h, "audit_path")).collect::<Result<Vec<_>, _>>()?;
    let checkpoint = &proof.checkpoint;
    if checkpoint.public_key != hex::encode(key.as_bytes()) || !checkpoint.signature_valid() {
        return Err(ExportProblem::BadSignature);
    }
    let root = decode_hash(&checkpoint.root, "checkpoint root")?;
    if !verify_inclusion(proof.leaf_index, checkpoint.tree_size, &leaf_hash(&leaf), &path, &root) {
        return Err(ExportProblem::ProofInvalid);
    }
    Ok(())
}

fn exported_event(e: &crate::format::EventRecord<'_>, hash: PayloadHash) -> ExportedEvent {
    let header = StoredHeader::parse(e.header);
    ExportedEvent {
        seq: e.seq,
        ledger_seq: e.ledger_seq,
        time_ns: e.time_ns,
        kind: e.kind.to_string(),
        direction: e.direction,
        summary: header.summary,
        attrs: header.attrs,
        payload_type: header.payload,
        payload: e.payload.map(|p| B64.encode(p)),
        payload_hash: hash.name().to_string(),
        committed: B64.encode(e.committed),
        chain_hash: hex::encode(e.chain_hash),
    }
}

/// What an event line of a version 1 export, which has no `payload_hash`, was digested with.
fn sha256() -> String {
    PayloadHash::Sha256.name().to_string()
}

fn decode_hash(text: &str, field: &'static str) -> Result<Hash, ExportProblem> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or(ExportProblem::Encoding { field, encoding: "hex of 32 bytes" })
}
