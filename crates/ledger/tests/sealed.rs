//! Sealed recordings: with a master key, a session's contents are encrypted with its own data
//! key; no file of the data dir holds them in clear; verification needs no key; destroying one
//! session's key destroys its contents alone; a wrong or missing master key is refused clearly;
//! sealed contents moved to another record do not open.

mod common;

use std::fs;
use std::path::Path;

use witness_core::{Direction, Event, EventKind, PayloadType, SessionId};
use witness_ledger::format::{decode_frame, decode_record, encode_event, seal_frame, EventFields, Frame, Record};
use witness_ledger::verify::{verify_ledger, ProblemKind, VerifyOptions};
use witness_ledger::{
    open_index, read_event_at, Keyring, KeyringError, Ledger, LedgerConfig, LedgerPaths, MasterKey, SealState, StoredEvent,
    SHREDDED_SUMMARY,
};

use common::{config, info, record_spans, SpanKind};

fn master(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

fn sealed_config(dir: &Path, key: MasterKey) -> LedgerConfig {
    let mut config = config(dir);
    config.master_key = Some(key);
    config
}

/// A statement whose summary, attribute and payload all carry `marker`.
fn statement(marker: &str) -> Event {
    Event {
        kind: EventKind::new("pg.query").unwrap(),
        direction: Direction::Request,
        summary: format!("select '{marker}-summary'"),
        attrs: serde_json::Map::from_iter([
            ("text".to_string(), serde_json::json!(format!("{marker}-attr"))),
            ("decision".into(), "allow".into()),
        ]),
        payload_type: PayloadType::Text,
        payload: format!("select '{marker}-payload' from secrets").into_bytes(),
    }
}

/// Records one session per marker, each with two statements, and closes them.
fn record(dir: &Path, key: MasterKey, markers: &[&str]) -> Vec<SessionId> {
    let ledger = Ledger::open(&sealed_config(dir, key)).unwrap();
    let ids = markers
        .iter()
        .map(|marker| {
            let session = ledger.open_session_blocking(&info("claude", "TASK-1")).unwrap();
            assert!(session.is_sealed());
            session.append_blocking(&statement(marker)).unwrap();
            session.append_blocking(&statement(marker)).unwrap();
            let id = session.id();
            session.close_blocking("done").unwrap();
            id
        })
        .collect();
    ledger.shutdown().unwrap();
    ids
}

fn read_all(dir: &Path, id: SessionId, keyring: &Keyring) -> Result<Vec<StoredEvent>, KeyringError> {
    let index = open_index(dir).unwrap();
    let opener = keyring.opener(id)?;
    let paths = LedgerPaths::new(dir);
    let mut events = Vec::new();
    for e in index.events(id).unwrap() {
        let mut stored = read_event_at(&paths.segments, e.segment_idx, e.offset).unwrap();
        opener.unseal(&mut stored)?;
        events.push(stored);
    }
    Ok(events)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

fn problems(dir: &Path) -> Vec<ProblemKind> {
    verify_ledger(&dir.join("ledger"), &VerifyOptions::default()).unwrap().problems.into_iter().map(|p| p.kind).collect()
}

#[test]
fn sealed_sessions_hold_no_plaintext_verify_without_a_key_and_shred_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let ids = record(dir.path(), master(1), &["ALPHA-MARKER", "BRAVO-MARKER"]);
    assert!(files_holding(dir.path(), b"ALPHA-MARKER").is_empty(), "plaintext in {:?}", files_holding(dir.path(), b"ALPHA-MARKER"));
    assert!(files_holding(dir.path(), b"BRAVO-MARKER").is_empty());
    assert_eq!(problems(dir.path()), vec![], "verification reads no key");

    let keyring = Keyring::open(&LedgerPaths::new(dir.path()), Some(master(1))).unwrap();
    let alpha = read_all(dir.path(), ids[0], &keyring).unwrap();
    assert_eq!(alpha.len(), 4);
    assert_eq!(alpha[0].sealed, None, "session.start stays in clear: the session lists after a shred");
    assert_eq!(alpha[1].sealed, Some(SealState::Opened));
    assert_eq!(alpha[1].summary, "select 'ALPHA-MARKER-summary'");
    assert_eq!(alpha[1].attrs["text"], "ALPHA-MARKER-attr");
    assert_eq!(alpha[1].payload.as_deref(), Some(&b"select 'ALPHA-MARKER-payload' from secrets"[..]));
    assert_eq!((alpha[1].payload_type, alpha[1].payload_len), (PayloadType::Text, 42));

    // Sealed contents read without a master key: a clear refusal, not garbage.
    let no_master = Keyring::open(&LedgerPaths::new(dir.path()), None).unwrap();
    assert!(matches!(read_all(dir.path(), ids[0], &no_master), Err(KeyringError::NoMasterKey { .. })));

    assert!(keyring.shred(ids[0]).unwrap());
    assert!(!keyring.shred(ids[0]).unwrap(), "already shredded");
    let shredded = read_all(dir.path(), ids[0], &keyring).unwrap();
    assert_eq!(
        (shredded[1].sealed, shredded[1].summary.as_str(), &shredded[1].payload),
        (Some(SealState::Shredded), SHREDDED_SUMMARY, &None)
    );
    assert_eq!(shredded[0].attrs["identity"], "claude", "metadata stays");
    let bravo = read_all(dir.path(), ids[1], &keyring).unwrap();
    assert_eq!(bravo[2].summary, "select 'BRAVO-MARKER-summary'", "the other session still opens");
    assert_eq!(problems(dir.path()), vec![], "the ledger verifies after the shred");
    let index = open_index(dir.path()).unwrap();
    assert_eq!(index.session(ids[0]).unwrap().unwrap().n_events, 4, "the shredded session still lists");

    // A key file deleted by hand (or lost) is not taken for a shred.
    fs::remove_file(LedgerPaths::new(dir.path()).keys.join(format!("{}.key", ids[1]))).unwrap();
    assert!(matches!(read_all(dir.path(), ids[1], &keyring), Err(KeyringError::LostKey { .. })));
}

#[test]
fn a_wrong_master_key_is_refused_at_start_and_at_reading() {
    let dir = tempfile::tempdir().unwrap();
    let ids = record(dir.path(), master(1), &["CHARLIE-MARKER"]);
    let refused = Ledger::open(&sealed_config(dir.path(), master(2))).err().expect("a wrong master key is refused");
    assert!(refused.to_string().contains("is not the one this ledger's data keys are wrapped with"), "{refused}");
    assert!(matches!(Keyring::open(&LedgerPaths::new(dir.path()), Some(master(2))), Err(KeyringError::WrongMaster { .. })));
    // The recordings stay readable with the right key.
    let keyring = Keyring::open(&LedgerPaths::new(dir.path()), Some(master(1))).unwrap();
    assert_eq!(read_all(dir.path(), ids[0], &keyring).unwrap()[1].attrs["text"], "CHARLIE-MARKER-attr");
}

#[test]
fn rotation_rewraps_keys_and_an_old_master_key_opens_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = record(dir.path(), master(1), &["DELTA-MARKER", "ECHO-MARKER"]);
    let paths = LedgerPaths::new(dir.path());
    let backup = fs::read(paths.keys.join(format!("{}.key", ids[0]))).unwrap();
    assert_eq!(Keyring::rotate(&paths, &master(1), &master(3)).unwrap(), 2);
    assert_eq!(Keyring::rotate(&paths, &master(1), &master(3)).unwrap(), 0, "a second run finds nothing left to do");
    let keyring = Keyring::open(&paths, Some(master(3))).unwrap();
    assert_eq!(read_all(dir.path(), ids[1], &keyring).unwrap()[1].attrs["text"], "ECHO-MARKER-attr");
    assert!(Keyring::open(&paths, Some(master(1))).is_err(), "the old master key is no longer the ledger's");
    // A backup of a key file from before the rotation opens only with the old master key; once
    // that is destroyed, shredding the current file destroys the contents for good.
    assert_ne!(fs::read(paths.keys.join(format!("{}.key", ids[0]))).unwrap(), backup);
    Ledger::open(&sealed_config(dir.path(), master(3))).unwrap().shutdown().unwrap();
    assert_eq!(problems(dir.path()), vec![]);
}

/// Sealed contents copied into another record, with every hash and CRC made to match, do not
/// open: the associated data binds them to their session, seq and kind.
#[test]
fn sealed_contents_moved_to_another_record_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let ids = record(dir.path(), master(1), &["FOXTROT-MARKER"]);
    let spans = record_spans(&dir.path().join("ledger"));
    let span_of = |seq| spans.iter().find(|s| s.kind == SpanKind::Event { session: ids[0], seq }).unwrap().clone();
    let (first, second) = (span_of(1), span_of(2));
    let segment = fs::read(&first.segment).unwrap();
    let frame = |span: &common::RecordSpan| segment[span.offset..span.offset + span.len].to_vec();
    let (a, b) = (frame(&first), frame(&second));
    let (Frame::Complete { body: a_body, .. }, Frame::Complete { body: b_body, .. }) = (decode_frame(&a), decode_frame(&b)) else {
        panic!()
    };
    let (Record::Event(a), Record::Event(b)) = (decode_record(a_body).unwrap(), decode_record(b_body).unwrap()) else { panic!() };
    // Record 2 rebuilt with record 1's sealed payload (and its header), its chain hash recomputed.
    let fields = EventFields {
        session_id: b.session_id,
        seq: b.seq,
        time_ns: b.time_ns,
        direction: b.direction,
        kind: b.kind,
        header: a.header,
        payload: a.payload.unwrap(),
    };
    let (mut forged, _) = encode_event(&fields, &a.chain_hash);
    seal_frame(&mut forged, b.ledger_seq);
    assert_eq!(forged.len(), second.len, "same length, so the segment's layout is unchanged");
    let mut tampered = segment.clone();
    tampered[second.offset..second.offset + second.len].copy_from_slice(&forged);
    fs::write(&first.segment, &tampered).unwrap();

    let keyring = Keyring::open(&LedgerPaths::new(dir.path()), Some(master(1))).unwrap();
    let refused = read_all(dir.path(), ids[0], &keyring).expect_err("moved contents are refused");
    assert!(refused.to_string().contains("do not open with their key"), "{refused}");
}

/// A ledger recorded in clear (and partly sealed, one session shredded) migrates into a new
/// ledger where every session is sealed, with its id, times and contents, and the migration is
/// recorded there with the old ledger's checkpoint.
#[test]
fn a_clear_ledger_migrates_into_a_sealed_one() {
    let old = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&config(old.path())).unwrap();
    let session = ledger.open_session_blocking(&info("claude", "TASK-2")).unwrap();
    session.append_blocking(&statement("GOLF-MARKER")).unwrap();
    let clear_id = session.id();
    session.close_blocking("done").unwrap();
    ledger.shutdown().unwrap();
    let sealed_ids = record(old.path(), master(1), &["HOTEL-MARKER", "INDIA-MARKER"]);
    Keyring::open(&LedgerPaths::new(old.path()), Some(master(1))).unwrap().shred(sealed_ids[1]).unwrap();
    assert!(!files_holding(old.path(), b"GOLF-MARKER").is_empty(), "the old ledger holds it in clear");

    let new = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sealed_config(new.path(), master(1))).unwrap();
    let old_keys = Keyring::open(&LedgerPaths::new(old.path()), Some(master(1))).unwrap();
    let summary = witness_ledger::migrate::migrate_encrypted(&old.path().join("ledger"), &old_keys, &ledger).unwrap();
    ledger.shutdown().unwrap();
    assert_eq!((summary.sessions, summary.events, summary.shredded, summary.left_open), (3, 3, 1, 0));
    for marker in ["GOLF-MARKER", "HOTEL-MARKER", "INDIA-MARKER"] {
        assert!(files_holding(new.path(), marker.as_bytes()).is_empty(), "{marker} in clear in the new ledger");
    }
    assert_eq!(problems(new.path()), vec![]);

    let keyring = Keyring::open(&LedgerPaths::new(new.path()), Some(master(1))).unwrap();
    let old_events = read_all(old.path(), clear_id, &Keyring::open(&LedgerPaths::new(old.path()), None).unwrap()).unwrap();
    let new_events = read_all(new.path(), clear_id, &keyring).unwrap();
    assert_eq!(new_events.len(), old_events.len());
    assert_eq!(new_events[1].sealed, Some(SealState::Opened), "sealed now");
    for (old, new) in old_events.iter().zip(&new_events) {
        assert_eq!((&old.kind, old.time_ns, &old.summary, &old.payload), (&new.kind, new.time_ns, &new.summary, &new.payload));
    }
    assert_eq!(read_all(new.path(), sealed_ids[0], &keyring).unwrap()[1].attrs["text"], "HOTEL-MARKER-attr");
    assert_eq!(read_all(new.path(), sealed_ids[1], &keyring).unwrap().len(), 2, "the shredded session: start and end");

    let index = open_index(new.path()).unwrap();
    let trail = index.list_sessions(&witness_ledger::SessionFilter { protocol: Some("audit".into()), ..Default::default() }).unwrap();
    let record = read_all(new.path(), trail[0].id, &keyring).unwrap().into_iter().find(|e| e.kind == "ledger.migrated").unwrap();
    let moved: Vec<(String, String)> = serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
    assert_eq!(moved.len(), 3);
    assert!(moved.iter().any(|(id, _)| *id == clear_id.to_string()));
    assert!(record.attrs["old_checkpoint"]["signature"].is_string(), "{:?}", record.attrs);
}
