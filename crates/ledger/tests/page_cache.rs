//! Segments give their pages back to the page cache once they are on disk: a busy gateway's
//! recordings do not pile up in memory, and later appends reuse the pages released. Measured with
//! `fincore` (util-linux), which counts a file's resident pages.

mod common;

use std::path::Path;
use std::process::Command;

use witness_ledger::verify::{verify_ledger, VerifyOptions};
use witness_ledger::{Durability, Ledger};

use common::{config, event, info};

/// What a segment may keep cached once released: its partial last page (the kernel keeps it, an
/// append could still write into it), with room for a larger page size.
const KEPT_AT_MOST: u64 = 64 << 10;

#[test]
fn synced_segments_leave_the_page_cache() {
    for durability in [Durability::Write, Durability::Fsync] {
        // Under the build directory, not /tmp: a tmpfs keeps every page, it has no disk to drop to.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut config = config(dir.path());
        config.durability = durability;
        // Rotated segments are released after their sync, the last one at shutdown.
        config.segment_bytes = 1 << 20;
        let ledger = Ledger::open(&config).unwrap();
        let session = ledger.open_session_blocking(&info("agent", "page cache")).unwrap();
        for i in 0..96 {
            session.append_blocking(&event(i, 64 << 10)).unwrap();
        }
        session.close_blocking("done").unwrap();
        let key = ledger.public_key();
        ledger.shutdown().unwrap();

        let segments = witness_ledger::segment::list_segments(&dir.path().join("ledger").join("segments")).unwrap();
        assert!(segments.len() >= 5, "{durability}: 6 MiB in 1 MiB segments rotates ({} segments)", segments.len());
        let mut total = 0;
        for segment in segments {
            let size = std::fs::metadata(&segment.path).unwrap().len();
            let resident = resident_bytes(&segment.path);
            total += size;
            assert!(
                resident <= KEPT_AT_MOST,
                "{durability}: {} keeps {resident} of its {size} bytes in the page cache after its sync",
                segment.path.display()
            );
        }
        assert!(total > 6 << 20, "{durability}: the segments hold the 6 MiB of events ({total} bytes)");
        // Released pages take nothing with them: the ledger is whole. (Checked after the page
        // counts: verify reads past the page cache, or releases what it read.)
        let report = verify_ledger(&dir.path().join("ledger"), &VerifyOptions { public_key: Some(key), ..Default::default() }).unwrap();
        assert!(report.problems.is_empty(), "{durability}: {:#?}", report.problems);
        assert_eq!(report.events, 96 + 2, "{durability}");
    }
}

/// Bytes of `file` in the page cache.
fn resident_bytes(file: &Path) -> u64 {
    let out =
        Command::new("fincore").args(["--bytes", "--noheadings", "--output", "RES"]).arg(file).output().expect("fincore (util-linux) runs");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("fincore prints a byte count")
}
