//! Reading recorded events back: the structured header's JSON, and one record at a known place.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use witness_core::{Direction, PayloadType, SessionId};

use crate::error::LedgerError;
use crate::format::{decode_frame, decode_record, Frame, Record, FRAME_HEADER_LEN, MAX_BODY_LEN};
use crate::seal::KeyId;
use crate::segment::segment_file_name;

/// The structured header every event record carries, as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredHeader {
    pub summary: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// How to show the payload: empty, text, json or binary.
    pub payload: String,
    /// The id of the data key a sealed event's contents are sealed with (seal.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// The header as the session writes it, borrowing from the event.
#[derive(Serialize)]
pub(crate) struct HeaderRef<'a> {
    pub summary: &'a str,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub attrs: &'a serde_json::Map<String, serde_json::Value>,
    pub payload: &'a str,
}

/// One event read back from its segment.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub session_id: SessionId,
    pub seq: u64,
    pub ledger_seq: u64,
    pub time_ns: i64,
    pub kind: String,
    pub direction: Direction,
    pub summary: String,
    pub attrs: serde_json::Map<String, serde_json::Value>,
    pub payload_type: PayloadType,
    /// None when the payload was purged or its sealed contents shredded.
    pub payload: Option<Vec<u8>>,
    pub payload_len: u64,
    /// For a sealed event, whether its contents were opened (keyring.rs); None when the event
    /// was recorded in clear.
    pub sealed: Option<SealState>,
}

/// Where a sealed event's contents stand for a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealState {
    /// As read from the segment: summary and attributes empty, the payload ciphertext.
    Sealed(KeyId),
    /// Opened with the session's data key: the event as recorded.
    Opened,
    /// The session's data key was destroyed: the contents are gone.
    Shredded,
    /// The record's payload, which held the sealed contents, was purged.
    Purged,
}

impl StoredHeader {
    /// Parses a header; a header that is not the JSON witness writes becomes an empty summary
    /// rather than an error, because readers must still show the rest of a damaged ledger.
    pub fn parse(bytes: &[u8]) -> StoredHeader {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// Reads the event record at `offset` in segment `segment_idx`.
pub fn read_event_at(segments_dir: &Path, segment_idx: u64, offset: u64) -> Result<StoredEvent, LedgerError> {
    let path = segments_dir.join(segment_file_name(segment_idx));
    let mut file = File::open(&path).map_err(LedgerError::io("open", &path))?;
    file.seek(SeekFrom::Start(offset)).map_err(LedgerError::io("seek in", &path))?;
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    file.read_exact(&mut frame).map_err(LedgerError::io("read", &path))?;
    let body_len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    let bad = |source| LedgerError::Format { segment: path.clone(), offset, source };
    if body_len > MAX_BODY_LEN {
        return Err(bad(crate::format::FormatError::TooLong { field: "frame", len: body_len as u64, max: MAX_BODY_LEN as u64 }));
    }
    frame.resize(FRAME_HEADER_LEN + body_len, 0);
    file.read_exact(&mut frame[FRAME_HEADER_LEN..]).map_err(LedgerError::io("read", &path))?;
    let Frame::Complete { body, .. } = decode_frame(&frame) else {
        return Err(bad(crate::format::FormatError::Short { len: frame.len() }));
    };
    match decode_record(body).map_err(bad)? {
        Record::Event(e) => Ok(stored_event(&e)),
        _ => Err(bad(crate::format::FormatError::UnknownType(0))),
    }
}

pub(crate) fn stored_event(e: &crate::format::EventRecord<'_>) -> StoredEvent {
    let header = StoredHeader::parse(e.header);
    StoredEvent {
        session_id: SessionId::from_bytes(e.session_id),
        seq: e.seq,
        ledger_seq: e.ledger_seq,
        time_ns: e.time_ns,
        kind: e.kind.to_string(),
        direction: Direction::from_u8(e.direction).unwrap_or(Direction::Gateway),
        summary: header.summary,
        attrs: header.attrs,
        payload_type: PayloadType::from_name(&header.payload).unwrap_or(PayloadType::Binary),
        payload: e.payload.map(<[u8]>::to_vec),
        payload_len: e.payload_len,
        sealed: header.sealed.as_deref().map(|id| SealState::Sealed(KeyId::from_hex(id).unwrap_or(KeyId([0; 8])))),
    }
}
