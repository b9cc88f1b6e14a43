//! Randomised tampering: over many trials, flip a byte (with and without fixing the CRC), delete,
//! duplicate, reorder or truncate one record anywhere in a ledger; verify must find every one and
//! name the session the record belonged to.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use witness_ledger::format::FRAME_HEADER_LEN;
use witness_ledger::verify::{verify_ledger, VerifyOptions};
use witness_ledger::Ledger;

use common::{config, event, info, record_spans, RecordSpan, SpanKind};

#[derive(Clone, Copy, Debug)]
enum Tampering {
    FlipByte,
    FlipByteAndFixCrc,
    Delete,
    Duplicate,
    Reorder,
    Truncate,
}

const TRIALS: usize = 600;

#[test]
fn verify_detects_every_tampering_and_names_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let public_key = build_ledger(dir.path());
    let root = dir.path().join("ledger");
    let options = VerifyOptions { public_key: Some(public_key), ..VerifyOptions::default() };
    let intact = verify_ledger(&root, &options).unwrap();
    assert!(intact.problems.is_empty(), "the untouched ledger must verify: {:?}", intact.problems);
    assert!(intact.segments >= 4 && intact.checkpoints >= 3, "the ledger should span segments and checkpoints: {intact:?}");

    let spans = record_spans(&root);
    let pristine: BTreeMap<PathBuf, Vec<u8>> = spans.iter().map(|s| (s.segment.clone(), std::fs::read(&s.segment).unwrap())).collect();
    let seed: u64 = std::env::var("WITNESS_TAMPER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = [
        Tampering::FlipByte,
        Tampering::FlipByteAndFixCrc,
        Tampering::Delete,
        Tampering::Duplicate,
        Tampering::Reorder,
        Tampering::Truncate,
    ];
    let mut named = 0;
    for trial in 0..TRIALS {
        for (path, bytes) in &pristine {
            std::fs::write(path, bytes).unwrap();
        }
        let tampering = kinds[trial % kinds.len()];
        let target = rng.random_range(0..spans.len());
        let must_name = tamper(&spans, target, tampering, &mut rng);
        let report = verify_ledger(&root, &options).unwrap();
        let context = format!("trial {trial} (seed {seed}): {tampering:?} of record {} {:?}", spans[target].ledger_seq, spans[target].kind);
        assert!(!report.problems.is_empty(), "{context} went undetected");
        if let (true, Some(session)) = (must_name, spans[target].session()) {
            let sessions: BTreeSet<_> = report.problems.iter().filter_map(|p| p.session).collect();
            assert!(sessions.contains(&session), "{context}: the report does not name session {session}: {:#?}", report.problems);
            named += 1;
        }
    }
    assert!(named > TRIALS / 2, "most trials should have a session to name, only {named} did");
}

/// Fills a ledger with interleaved sessions, mid-run seals and small segments; returns its key.
fn build_ledger(data_dir: &Path) -> ed25519_dalek::VerifyingKey {
    let ledger = Ledger::open(&config(data_dir)).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut sessions: Vec<_> =
        (0..12).map(|i| ledger.open_session_blocking(&info(&format!("agent-{i}"), "tamper test")).unwrap()).collect();
    let mut next: Vec<u64> = vec![0; sessions.len()];
    for step in 0..240 {
        let i = rng.random_range(0..sessions.len());
        sessions[i].append_blocking(&event(next[i], rng.random_range(0..300))).unwrap();
        next[i] += 1;
        if step % 60 == 59 {
            ledger.seal_blocking().unwrap();
        }
    }
    // Close most sessions, leave a few open so both closed and open heads are in the log.
    for session in sessions.drain(..9) {
        session.close_blocking("done").unwrap();
    }
    let key = ledger.public_key();
    ledger.shutdown().unwrap();
    drop(sessions);
    key
}

/// Applies one tampering to the files; returns whether the record's session must be named.
fn tamper(spans: &[RecordSpan], target: usize, tampering: Tampering, rng: &mut StdRng) -> bool {
    let span = &spans[target];
    let mut bytes = std::fs::read(&span.segment).unwrap();
    let (start, end) = (span.offset, span.offset + span.len);
    let mut must_name = true;
    match tampering {
        Tampering::FlipByte => {
            let at = rng.random_range(start..end);
            bytes[at] ^= rng.random_range(1..=255u8);
        }
        Tampering::FlipByteAndFixCrc => {
            // An attacker who knows the format: change the body, then make the CRC match again.
            let at = rng.random_range(start + FRAME_HEADER_LEN..end);
            bytes[at] ^= rng.random_range(1..=255u8);
            let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[start..start + 4]), &bytes[start + FRAME_HEADER_LEN..end]);
            bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        }
        Tampering::Delete => {
            bytes.drain(start..end);
        }
        Tampering::Duplicate => {
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Tampering::Reorder => {
            // Swap with a neighbour in the same segment.
            let same_segment = |i: usize| spans.get(i).filter(|s| s.segment == span.segment);
            let neighbour = same_segment(target + 1).or_else(|| target.checked_sub(1).and_then(same_segment));
            let Some(other) = neighbour else {
                bytes.drain(start..end);
                std::fs::write(&span.segment, bytes).unwrap();
                return true;
            };
            let (first, second) = if other.offset > span.offset { (span, other) } else { (other, span) };
            let mut swapped = bytes[second.offset..second.offset + second.len].to_vec();
            swapped.extend_from_slice(&bytes[first.offset..first.offset + first.len]);
            bytes.splice(first.offset..second.offset + second.len, swapped);
        }
        Tampering::Truncate => {
            let cut = rng.random_range(start + 1..end);
            bytes.truncate(cut);
            // The session can only be named if its id survived the cut.
            let id_end = match span.kind {
                SpanKind::Event { .. } => start + FRAME_HEADER_LEN + 9 + 16,
                SpanKind::Head { .. } => start + FRAME_HEADER_LEN + 17 + 16,
                SpanKind::Checkpoint => end,
            };
            must_name = cut >= id_end;
        }
    }
    std::fs::write(&span.segment, bytes).unwrap();
    must_name
}
