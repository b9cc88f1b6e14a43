//! A ledger an older witness wrote (format version 1, SHA-256 payload digests; the fixture in
//! `tests/fixtures/ledger-v1`) keeps verifying after this build opens it and appends: the old
//! segment stays as it was, new records go into a segment of the current version (BLAKE3 payload
//! digests), a session the old witness left open is closed across the two, and session exports of
//! either kind verify on their own.

mod common;

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use witness_core::SessionId;
use witness_ledger::export::{export_session, verify_session_export, ExportProblem};
use witness_ledger::format::{decode_segment_header, encode_segment_header, SegmentHeader, FORMAT_VERSION};
use witness_ledger::verify::{verify_ledger, ProblemKind, VerifyOptions};
use witness_ledger::{open_index, Ledger, SessionFilter};

use common::{config, event, info};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ledger-v1");

/// A copy of the fixture as a data dir's ledger.
fn v1_ledger(data_dir: &Path) {
    let ledger = data_dir.join("ledger");
    fs::create_dir_all(ledger.join("segments")).unwrap();
    for file in ["signing.key", "signing.pub", "segments/000000000000.seg"] {
        fs::copy(Path::new(FIXTURE).join(file), ledger.join(file)).unwrap();
    }
    fs::set_permissions(ledger.join("signing.key"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn problems(data_dir: &Path) -> Vec<ProblemKind> {
    verify_ledger(&data_dir.join("ledger"), &VerifyOptions::default()).unwrap().problems.into_iter().map(|p| p.kind).collect()
}

fn segment(data_dir: &Path, idx: u64) -> Vec<u8> {
    fs::read(data_dir.join(format!("ledger/segments/{idx:012}.seg"))).unwrap()
}

/// An export of `session` as JSON lines.
fn export(data_dir: &Path, session: SessionId) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    export_session(&data_dir.join("ledger"), session, &mut out).unwrap();
    String::from_utf8(out).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Checks export lines alone, with the ledger's public key.
fn check(data_dir: &Path, lines: &[serde_json::Value]) -> Result<(), ExportProblem> {
    let key = fs::read_to_string(data_dir.join("ledger/signing.pub")).unwrap();
    let key = witness_ledger::parse_public_key(&key).unwrap();
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    verify_session_export(BufReader::new(text.as_bytes()), &key).map(|_| ()).map_err(|e| e.problem)
}

/// Exports a session, checks the export alone, and returns the `payload_hash` of each event line
/// that carries a payload.
fn exported_payload_hashes(data_dir: &Path, session: SessionId) -> Vec<String> {
    let lines = export(data_dir, session);
    check(data_dir, &lines).expect("the export verifies on its own");
    let events = lines.iter().filter(|line| line["type"] == "event" && line["payload"].is_string());
    events.map(|line| line["payload_hash"].as_str().unwrap().to_string()).collect()
}

fn segment_count(data_dir: &Path) -> usize {
    fs::read_dir(data_dir.join("ledger/segments")).unwrap().count()
}

#[test]
fn a_version_1_ledger_verifies_and_takes_new_records_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    v1_ledger(dir.path());
    assert_eq!(problems(dir.path()), vec![], "the fixture verifies as it is");
    let old_segment = segment(dir.path(), 0);
    assert_eq!(decode_segment_header(&old_segment).unwrap().version, 1);

    // This build opens it (closing the session the old witness left open) and records a session.
    let ledger = Ledger::open(&config(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&info("agent-after-upgrade", "UPG-2")).unwrap();
    for i in 0..4 {
        session.append_blocking(&event(i, 300)).unwrap();
    }
    let new_id = session.id();
    session.close_blocking("done").unwrap();
    ledger.shutdown().unwrap();

    assert_eq!(segment(dir.path(), 0), old_segment, "the version 1 segment is left as it was");
    assert_eq!(decode_segment_header(&segment(dir.path(), 1)).unwrap().version, FORMAT_VERSION);
    assert_eq!(problems(dir.path()), vec![], "both versions verify, and the chains run across them");

    let index = open_index(dir.path()).unwrap();
    let (sessions, _) = index.find_sessions(&SessionFilter::default()).unwrap();
    assert_eq!(sessions.len(), 3);
    assert!(sessions.iter().all(|s| s.ended_ns.is_some()), "the session left open was closed: {sessions:#?}");
    let old_session =
        |reason: &str| sessions.iter().find(|s| s.info.identity == "fixture" && s.end_reason.as_deref() == Some(reason)).unwrap().id;
    let closed_before = old_session("client terminated the session");
    let left_open = old_session("witness stopped before the session ended");

    // Exports say per event how its payload was digested, and verify.
    let before = exported_payload_hashes(dir.path(), closed_before);
    assert!(!before.is_empty() && before.iter().all(|h| h == "sha256"), "{before:?}");
    // Its events are in the old segment, its end (recorded by this build's recovery) in the new.
    let across = exported_payload_hashes(dir.path(), left_open);
    let (end, recorded) = across.split_last().unwrap();
    assert!(!recorded.is_empty() && recorded.iter().all(|h| h == "sha256") && end == "blake3", "{across:?}");
    let after = exported_payload_hashes(dir.path(), new_id);
    assert!(!after.is_empty() && after.iter().all(|h| h == "blake3"), "{after:?}");
}

/// The segment's version, not a guess, decides the digest: a version 1 segment relabelled as the
/// current version (its header's CRC made right) fails on every payload.
#[test]
fn the_segment_version_decides_how_payloads_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    v1_ledger(dir.path());
    let path = dir.path().join("ledger/segments/000000000000.seg");
    let mut bytes = fs::read(&path).unwrap();
    let header = decode_segment_header(&bytes).unwrap();
    let relabelled = encode_segment_header(SegmentHeader { version: FORMAT_VERSION, ..header });
    bytes[..relabelled.len()].copy_from_slice(&relabelled);
    fs::write(&path, bytes).unwrap();
    let found = problems(dir.path());
    assert!(!found.is_empty(), "a relabelled segment must not verify");
    assert!(found.iter().all(|p| matches!(p, ProblemKind::PayloadDigest)), "{found:?}");
}

/// An export's `payload_hash` is checked like the rest of it: a version 1 export, which has none,
/// reads as SHA-256; a name witness does not know, or the other hash's name, does not verify; an
/// export from a newer witness says so.
#[test]
fn exports_name_their_payload_digest_and_version_1_exports_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    v1_ledger(dir.path());
    Ledger::open(&config(dir.path())).unwrap().shutdown().unwrap();
    let index = open_index(dir.path()).unwrap();
    let (sessions, _) = index.find_sessions(&SessionFilter::default()).unwrap();
    let session = sessions.iter().find(|s| s.end_reason.as_deref() == Some("client terminated the session")).unwrap().id;
    let lines = export(dir.path(), session);
    assert_eq!(check(dir.path(), &lines).map_err(|e| e.to_string()), Ok(()));
    let with_payload =
        lines.iter().position(|line| line["type"] == "event" && line["payload"].as_str().is_some_and(|p| !p.is_empty())).unwrap();

    // As a version 1 exporter wrote it: no payload_hash, header version 1.
    let mut v1 = lines.clone();
    v1[0]["version"] = 1.into();
    for line in &mut v1 {
        line.as_object_mut().unwrap().remove("payload_hash");
    }
    assert_eq!(check(dir.path(), &v1).map_err(|e| e.to_string()), Ok(()));

    let mut unknown = lines.clone();
    unknown[with_payload]["payload_hash"] = "md5".into();
    assert!(matches!(check(dir.path(), &unknown), Err(ExportProblem::UnknownPayloadHash { name }) if name == "md5"));
    let mut swapped = lines.clone();
    swapped[with_payload]["payload_hash"] = "blake3".into();
    assert!(matches!(check(dir.path(), &swapped), Err(ExportProblem::PayloadDigest)));
    let mut newer = lines.clone();
    newer[0]["version"] = 99.into();
    assert!(matches!(check(dir.path(), &newer), Err(ExportProblem::UnsupportedVersion { found: 99 })));
}

/// A version 1 ledger whose last record was torn by a crash: the torn bytes are cut, the next
/// segment takes the appends, and opening the ledger again appends to that one.
#[test]
fn a_torn_version_1_tail_is_cut_before_the_new_segment_starts() {
    let dir = tempfile::tempdir().unwrap();
    v1_ledger(dir.path());
    let path = dir.path().join("ledger/segments/000000000000.seg");
    let intact = fs::read(&path).unwrap();
    let mut torn = intact.clone();
    torn.extend_from_slice(&intact[32..32 + 40]);
    fs::write(&path, torn).unwrap();

    Ledger::open(&config(dir.path())).unwrap().shutdown().unwrap();
    assert_eq!(fs::read(&path).unwrap(), intact, "the torn bytes are cut, nothing else");
    assert_eq!(segment_count(dir.path()), 2);
    let ledger = Ledger::open(&config(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&info("agent-after-upgrade", "UPG-3")).unwrap();
    session.append_blocking(&event(0, 100)).unwrap();
    session.close_blocking("done").unwrap();
    ledger.shutdown().unwrap();
    assert_eq!(segment_count(dir.path()), 2, "a last segment of the current version is appended to");
    assert_eq!(problems(dir.path()), vec![]);
}
