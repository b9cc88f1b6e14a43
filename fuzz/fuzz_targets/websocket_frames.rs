//! Fuzzes the WebSocket frame reader that follows an upgraded connection for the recording: any
//! bytes, cut into reads anywhere, must not panic; what it hands out never exceeds what it was
//! given; and the payload it reads does not depend on where the reads were cut (an error found
//! one way is found the other way too).

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_proto_http::websocket::FrameReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let channels = cut & 1 == 1;
    let cut = usize::from(cut / 2).max(1);

    let mut whole = FrameReader::new(channels);
    let at_once = whole.feed(bytes);
    let mut pieces = FrameReader::new(channels);
    let mut in_reads = Ok(Vec::new());
    for chunk in bytes.chunks(cut) {
        match pieces.feed(chunk) {
            Ok(more) => in_reads.as_mut().expect("no error yet").extend(more),
            Err(e) => {
                in_reads = Err(e);
                break;
            }
        }
    }
    let payload = |result: &Result<Vec<witness_proto_http::websocket::Piece>, _>| {
        result.as_ref().ok().map(|pieces| pieces.iter().flat_map(|p| p.data.clone()).collect::<Vec<u8>>())
    };
    assert_eq!(at_once.is_ok(), in_reads.is_ok(), "an error depends on where the reads were cut");
    if let (Some(a), Some(b)) = (payload(&at_once), payload(&in_reads)) {
        assert!(a.len() <= bytes.len());
        assert_eq!(a, b, "the payload depends on where the reads were cut");
    }
});
