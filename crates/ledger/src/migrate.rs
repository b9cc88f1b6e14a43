//! `witness migrate --encrypt`: a ledger's sessions rewritten, sealed, into a new ledger, for
//! operators who need every recording encrypted at rest. The old ledger is read (it must verify
//! first) and left as it is; the new one gets every session with its id, times, events and
//! metadata, each sealed with a new data key, and then, in its own audit session, a
//! `ledger.migrated` record naming the old ledger's key, its last signed checkpoint and every
//! session's last chain hash there: the new ledger's next checkpoint signs that link.
//!
//! Sessions already sealed in the old ledger are opened with its keyring and sealed again with
//! a new key; a session whose key was shredded keeps its start and end and loses nothing more
//! (its contents were already gone). Payloads purged in the old ledger stay absent. The old
//! audit trail (views, holds, shreds, credentials) moves too, in clear as it always is.
//!
//! What moves is what was verified: the old ledger is verified against its own `signing.pub`
//! first, each record's chain hash is computed again as it is copied, and records after the
//! last signed checkpoint (which nothing signed) are left behind; a session they would have
//! ended is closed saying so.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use witness_core::{kind, Direction, Event, EventKind, PayloadType, Protocol, SessionId, SessionInfo};

use crate::error::LedgerError;
use crate::format::{chain_hash, decode_record, decode_segment_header, Record};
use crate::index::session_info_from_attrs;
use crate::keyring::{Keyring, Opener};
use crate::read::{stored_event, StoredEvent, StoredHeader};
use crate::segment::{list_segments, FrameItem, FrameIter};
use crate::verify::{verify_ledger, VerifyOptions};
use crate::{Ledger, SessionWriter};

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationSummary {
    pub sessions: u64,
    pub events: u64,
    /// Sessions whose contents were already shredded: only their start and end moved.
    pub shredded: u64,
    /// Sessions the old ledger left open (closed in the new one, saying so).
    pub left_open: u64,
}

/// One old session being rewritten.
struct Moving {
    writer: SessionWriter,
    /// Opens the old session's sealed events; None when its key is gone (shredded).
    opener: Option<Opener>,
    shredded: bool,
    last_hash: [u8; 32],
    last_time_ns: i64,
}

/// Sessions named in one `ledger.migrated` record's payload at most.
const SESSIONS_PER_RECORD: usize = 50_000;

/// Rewrites every session of the ledger at `old_root` (opened with `old_keys`) into `new`, which
/// must seal (have a master key). Returns what it moved, after the `ledger.migrated` record is
/// durable and sealed by a checkpoint.
pub fn migrate_encrypted(old_root: &Path, old_keys: &Keyring, new: &Ledger) -> Result<MigrationSummary, LedgerError> {
    if !new.keyring().can_seal() {
        return Err(LedgerError::Migration("the new ledger has no master key: configure [ledger.encryption] first".into()));
    }
    let public_key = crate::keys::parse_public_key(&old_root.join("signing.pub").to_string_lossy())?;
    let report = verify_ledger(old_root, &VerifyOptions { public_key: Some(public_key), ..VerifyOptions::default() })?;
    if let Some(first) = report.problems.first() {
        return Err(LedgerError::Migration(format!("the old ledger does not verify ({first}); repair it or migrate from a backup")));
    }
    let checkpoint =
        report.last_checkpoint.clone().ok_or_else(|| LedgerError::Migration("the old ledger has no signed checkpoint".into()))?;
    // Records from here on are covered by no signature.
    let signed_records = checkpoint.n_records;
    let segments_dir = old_root.join("segments");
    let mut moving: HashMap<[u8; 16], Moving> = HashMap::new();
    let mut moved: Vec<(SessionId, [u8; 32])> = Vec::new();
    let mut summary = MigrationSummary::default();
    for segment in list_segments(&segments_dir).map_err(LedgerError::io("list", &segments_dir))? {
        let bytes = fs::read(&segment.path).map_err(LedgerError::io("read", &segment.path))?;
        let header = decode_segment_header(&bytes).map_err(|source| LedgerError::BadSegment { segment: segment.path.clone(), source })?;
        for item in FrameIter::new(&bytes, header.first_ledger_seq) {
            let FrameItem::Frame { offset, body } = item else { continue };
            let record = decode_record(body).map_err(|source| LedgerError::Format { segment: segment.path.clone(), offset, source })?;
            let Record::Event(e) = record else { continue };
            if e.ledger_seq >= signed_records {
                continue;
            }
            let mut stored = stored_event(&e);
            let id = SessionId::from_bytes(e.session_id);
            let changed =
                || LedgerError::Migration(format!("record {} changed while it was migrated: verify the old ledger again", e.ledger_seq));
            if e.kind == kind::SESSION_START.as_str() {
                if chain_hash(&[0; 32], e.committed) != e.chain_hash {
                    return Err(changed());
                }
                let info = session_info_from_attrs(&StoredHeader::parse(e.header).attrs);
                let writer = new.migrated_session(id, &info, e.time_ns, info.protocol != Protocol::Audit)?;
                let opener = old_keys.has_key(id).then(|| old_keys.opener(id)).transpose()?;
                moving.insert(e.session_id, Moving { writer, opener, shredded: false, last_hash: e.chain_hash, last_time_ns: e.time_ns });
                summary.sessions += 1;
                continue;
            }
            let Some(session) = moving.get_mut(&e.session_id) else { continue };
            if chain_hash(&session.last_hash, e.committed) != e.chain_hash {
                return Err(changed());
            }
            session.last_hash = e.chain_hash;
            session.last_time_ns = e.time_ns;
            if e.kind == kind::SESSION_END.as_str() {
                let session = moving.remove(&e.session_id).expect("just found");
                let reason = stored.attrs.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string();
                session.writer.close_blocking_at(&reason, e.time_ns)?;
                moved.push((id, e.chain_hash));
                continue;
            }
            if stored.sealed.is_some() {
                let Some(opener) = &session.opener else {
                    summary.shredded += u64::from(!session.shredded);
                    session.shredded = true;
                    continue;
                };
                opener.unseal(&mut stored)?;
            }
            session.writer.append_blocking_at(&event_of(&stored), e.time_ns)?;
            summary.events += 1;
        }
    }
    for (id, session) in moving {
        summary.left_open += 1;
        session.writer.close_blocking_at(
            "the old ledger had not closed this session by its last signed checkpoint when it was migrated",
            session.last_time_ns,
        )?;
        moved.push((SessionId::from_bytes(id), session.last_hash));
    }
    record_migration(new, old_root, &checkpoint, &moved, &summary)?;
    new.seal_blocking()?;
    Ok(summary)
}

/// The event a stored one was made from (a purged payload stays absent: empty).
fn event_of(stored: &StoredEvent) -> Event {
    Event {
        kind: EventKind::new(stored.kind.clone()).unwrap_or_else(|_| EventKind::new("invalid.kind").expect("a valid kind")),
        direction: stored.direction,
        summary: stored.summary.clone(),
        attrs: stored.attrs.clone(),
        payload_type: if stored.payload.is_some() { stored.payload_type } else { PayloadType::Empty },
        payload: stored.payload.clone().unwrap_or_default(),
    }
}

fn record_migration(
    new: &Ledger,
    old_root: &Path,
    checkpoint: &crate::verify::ExportedCheckpoint,
    moved: &[(SessionId, [u8; 32])],
    summary: &MigrationSummary,
) -> Result<(), LedgerError> {
    let info = SessionInfo {
        identity: "witness".into(),
        connection: "migration".into(),
        protocol: Protocol::Audit,
        task: None,
        client_addr: None,
        groups: Vec::new(),
    };
    let trail = new.open_session_blocking(&info)?;
    // The sessions moved, with their last chain hash in the old ledger, go in the payload (many
    // sessions would not fit a header), a record per SESSIONS_PER_RECORD.
    let chunks: Vec<&[(SessionId, [u8; 32])]> = if moved.is_empty() { vec![&[]] } else { moved.chunks(SESSIONS_PER_RECORD).collect() };
    for (part, chunk) in chunks.iter().enumerate() {
        let sessions: Vec<serde_json::Value> =
            chunk.iter().map(|(id, head)| serde_json::json!([id.to_string(), hex::encode(head)])).collect();
        let mut event = Event::note(
            kind::LEDGER_MIGRATED,
            Direction::Gateway,
            format!("migrated {} sessions ({} events) from {} and sealed them", summary.sessions, summary.events, old_root.display()),
        )
        .with_attr("from", old_root.display().to_string())
        .with_attr("old_checkpoint", serde_json::to_value(checkpoint).expect("a checkpoint serializes"))
        .with_attr("events", summary.events)
        .with_attr("shredded", summary.shredded)
        .with_attr("part", part + 1)
        .with_attr("parts", chunks.len());
        event.payload_type = PayloadType::Json;
        event.payload = serde_json::to_vec(&sessions).expect("JSON values serialize");
        trail.append_blocking(&event)?;
    }
    trail.close_blocking("migration done")?;
    Ok(())
}
