//! Fuzzes everything that decodes ledger bytes read from disk: segment headers, frames, record
//! bodies, the committed part of events, the resynchronising walk over a damaged segment, and the
//! index's packed event blocks (an edited index holds any bytes). None of it may panic, loop
//! forever or read out of bounds, whatever the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_ledger::format::{decode_committed, decode_frame, decode_record, decode_segment_header, Frame};
use witness_ledger::segment::{FrameItem, FrameIter};
use witness_ledger::unpack_event_block;

fuzz_target!(|data: &[u8]| {
    if let Some(events) = unpack_event_block(data) {
        assert!(events.len() <= data.len() / 54, "every packed event takes its fixed 54 bytes at least");
    }
    let _ = decode_segment_header(data);
    let _ = decode_record(data);
    let _ = decode_committed(data, 0, [0; 32]);
    if let Frame::Complete { body, frame_len } = decode_frame(data) {
        assert!(frame_len <= data.len());
        let _ = decode_record(body);
    }
    let mut walked = 0usize;
    for item in FrameIter::new(data, 0) {
        walked += 1;
        assert!(walked <= data.len() + 1, "the walk must make progress");
        if let FrameItem::Frame { body, .. } = item {
            let _ = decode_record(body);
        }
    }
});
