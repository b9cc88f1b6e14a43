//! Fuzzes the parsers of what witness relays on SSH channels: SFTP in both directions and the
//! git receive-pack command list and report, fed arbitrary bytes cut at arbitrary points into
//! pieces for the client or the server, and git command lines. None of it may panic, hold more
//! than its documented bounds, or give a different outcome when the pieces are cut finer.
//!
//! The first input byte picks how many pieces (1 to 16); each of the next ones picks a piece's
//! direction (low bit) and length (the square of the other seven bits; the last piece takes
//! the rest). The remaining bytes are the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_proto_ssh::git::{self, GitError, ReceivePackStream};
use witness_proto_ssh::sftp::{self, SftpError, SftpStream};

const MAX_PIECES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let _ = git::parse_git_command(&String::from_utf8_lossy(data));
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count) % MAX_PIECES + 1;
    let (plan, payload) = rest.split_at(rest.len().min(count));
    let pieces = cut(plan, payload);
    // The same pieces, each cut once more in its middle.
    let halves: Vec<(bool, &[u8])> = pieces
        .iter()
        .flat_map(|&(client, piece)| {
            let (first, second) = piece.split_at(piece.len() / 2);
            [(client, first), (client, second)]
        })
        .collect();
    assert_eq!(run_sftp(&pieces), run_sftp(&halves), "sftp outcome depends on where the bytes were cut");
    assert_eq!(run_git(&pieces), run_git(&halves), "git outcome depends on where the bytes were cut");
});

/// Cuts `payload` into pieces as `plan` says: (from the client?, bytes).
fn cut<'a>(plan: &[u8], mut payload: &'a [u8]) -> Vec<(bool, &'a [u8])> {
    let mut pieces = Vec::with_capacity(plan.len());
    for (i, &choice) in plan.iter().enumerate() {
        let len = if i + 1 == plan.len() { payload.len() } else { usize::from(choice >> 1).pow(2).min(payload.len()) };
        let (piece, rest) = payload.split_at(len);
        pieces.push((choice & 1 == 0, piece));
        payload = rest;
    }
    pieces
}

/// What the SFTP parser made of the pieces: every op and reply in order, or the first error.
/// Pieces after an error are still fed, to exercise the failed state.
fn run_sftp(pieces: &[(bool, &[u8])]) -> Result<Vec<String>, SftpError> {
    let mut stream = SftpStream::new();
    let mut seen = Vec::new();
    let mut first_error = None;
    for &(client, piece) in pieces {
        let got = if client {
            stream.client_bytes(piece).map(|ops| ops.iter().map(|op| format!("> {op:?} {}", op.summary())).collect::<Vec<_>>())
        } else {
            stream.server_bytes(piece).map(|replies| replies.iter().map(|reply| format!("< {reply:?} {}", reply.summary())).collect())
        };
        match got {
            Ok(lines) => seen.extend(lines),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        assert!(stream.buffered_bytes() <= 2 * (sftp::MAX_PACKET_LEN as usize + 4), "sftp holds {} bytes", stream.buffered_bytes());
        assert!(stream.open_handles() <= sftp::MAX_OPEN_HANDLES);
        assert!(stream.pending_requests() <= sftp::MAX_PENDING_REQUESTS);
        assert!(stream.tracked_bytes() <= sftp::MAX_TRACKED_BYTES);
    }
    first_error.map_or(Ok(seen), Err)
}

/// What the receive-pack parser made of the pieces: the updates and the report, or the first
/// error.
fn run_git(pieces: &[(bool, &[u8])]) -> Result<Vec<String>, GitError> {
    let mut stream = ReceivePackStream::new();
    let mut seen = Vec::new();
    let mut first_error = None;
    for &(client, piece) in pieces {
        let got = if client {
            stream.client_bytes(piece).map(|updates| updates.map(|u| format!("> {u:?}")))
        } else {
            stream.server_bytes(piece).map(|report| report.map(|r| format!("< {r:?}")))
        };
        match got {
            Ok(line) => seen.extend(line),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        let bound = 3 * git::MAX_PKT_LEN + 2 * git::MAX_LIST_BYTES;
        assert!(stream.buffered_bytes() <= bound, "git holds {} bytes", stream.buffered_bytes());
    }
    first_error.map_or(Ok(seen), Err)
}
