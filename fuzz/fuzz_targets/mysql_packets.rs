//! Fuzzes the MySQL decoders of peer bytes: packet framing (cut into reads anywhere, with a
//! payload bound; the relay's `peek_frame` finds the same payloads as the reader), a server's
//! greeting, a client's handshake answer, OK, ERR and column definitions, text and binary rows,
//! an execution's parameters, `KILL` texts, and a command's answer followed packet by packet as
//! the relay does, with rows masked and not, and compressed packets (inflated within their
//! header's length). None may panic; packets come out the same however the reads were cut; what
//! round-trips (a greeting, an answer, bytes packed and unpacked) reads back as it was.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use witness_mask::{ApplyTo, ColumnPattern, DetectorSet, MaskRule, MaskStyle, Masking, SessionMasks};
use witness_proto_mysql::answer::{self, Column, ErrPacket, OkPacket};
use witness_proto_mysql::handshake::{capability, Greeting, HandshakeResponse};
use witness_proto_mysql::packet::{peek_frame, PacketReader};
use witness_proto_mysql::compress::{pack, Unpacker};
use witness_proto_mysql::{fuzzing, kill, values};

fn masks() -> std::sync::Arc<SessionMasks> {
    let rule = MaskRule {
        name: "fuzz".into(),
        connections: vec![],
        groups: vec![],
        columns: vec![ColumnPattern::new("*.email").unwrap()],
        json_paths: vec![],
        detectors: DetectorSet::all(),
        apply_to: ApplyTo::ClientAndRecording,
        style: MaskStyle::Redact,
    };
    Masking::new(vec![rule], b"fuzz").unwrap().for_session("mysql", &[]).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else { return };
    let cut = usize::from(seed).max(1);
    let packets = |chunk: usize| {
        let mut reader = PacketReader::new(1 << 16);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            reader.feed(piece);
            loop {
                match reader.next_packet() {
                    Ok(Some(packet)) => out.push(Ok(packet)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    };
    let whole = packets(bytes.len().max(1));
    assert_eq!(whole, packets(cut), "packets depend on where the reads were cut");

    // The relay's framing finds the payloads the reader joins (sequence numbers aside).
    let mut at = 0;
    for packet in whole.iter().flatten() {
        match peek_frame(&bytes[at..], 1 << 16) {
            Ok(Some(frame)) => {
                assert_eq!(&frame.payload[..], &packet.payload[..], "peek_frame and PacketReader disagree");
                at += frame.raw_len;
            }
            other => panic!("peek_frame found {other:?} where the reader found a payload"),
        }
    }

    let payloads: Vec<&[u8]> = whole.iter().flatten().map(|packet| &packet.payload[..]).collect();
    for payload in &payloads {
        if let Ok(greeting) = Greeting::parse(payload) {
            let both_parts = capability::SECURE_CONNECTION | capability::PLUGIN_AUTH;
            if greeting.scramble.len() == 20 && greeting.capabilities & both_parts == both_parts {
                let mut out = BytesMut::new();
                greeting.write(&mut out);
                let again = Greeting::parse(&out).expect("a greeting witness writes reads back");
                assert_eq!(again.scramble, greeting.scramble);
            }
        }
        let _ = HandshakeResponse::parse(payload);
        let _ = answer::kind(payload);
        let _ = OkPacket::parse(payload, u32::MAX);
        let _ = OkPacket::parse(payload, 0);
        let _ = ErrPacket::parse(payload);
        let _ = Column::parse(payload);
        let types: Vec<(u8, bool)> = payload.iter().take(usize::from(seed % 6)).map(|t| (*t, t % 2 == 0)).collect();
        // Written straight as JSON, a binary row reads as the values made one by one.
        let (only, unsigned): (Vec<u8>, Vec<bool>) = types.iter().copied().unzip();
        let mut written = Vec::new();
        match (values::binary_row_json(payload, &types), values::write_binary_row_json(payload, &only, &unsigned, &mut written)) {
            // Compared as text: serde_json's float parsing may round the last digit otherwise.
            (Ok(row), Ok(())) => assert_eq!(written, serde_json::to_vec(&row).unwrap()),
            (Err(_), Err(_)) => {}
            other => panic!("the two readings of a binary row disagree: {other:?}"),
        }
        if let Ok(text) = values::text_row(payload, usize::from(seed % 8)) {
            let mut written = Vec::new();
            values::write_text_row_json(&text, &mut written);
            let row: Vec<serde_json::Value> = text.iter().map(|v| v.map_or(serde_json::Value::Null, values::text_or_hex)).collect();
            assert_eq!(written, serde_json::to_vec(&row).unwrap());
        }
        fuzzing::execution(u16::from(seed % 5), payload);
        let _ = kill::kill_request(&String::from_utf8_lossy(payload));
    }
    // Compressed packets, cut into reads anywhere: what they hold, or an error, the same way.
    let unpacked = |chunk: usize| {
        let mut unpacker = Unpacker::default();
        for piece in bytes.chunks(chunk) {
            unpacker.feed(piece);
            loop {
                match unpacker.unpack() {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => return None,
                }
            }
        }
        Some(unpacker.plain)
    };
    assert_eq!(unpacked(bytes.len().max(1)), unpacked(cut), "unpacked bytes depend on where the reads were cut");
    let mut packed = BytesMut::new();
    assert_eq!(pack(bytes, seed, &mut packed).unwrap(), seed.wrapping_add(u8::from(!bytes.is_empty())));
    let mut unpacker = Unpacker::default();
    unpacker.feed(&packed);
    while unpacker.unpack().unwrap() {}
    assert_eq!(&unpacker.plain[..], bytes, "bytes packed unpack as they were");

    let masks = masks();
    fuzzing::answer(seed, u32::from(seed) << 16, &payloads, None);
    fuzzing::answer(seed, 0, &payloads, Some(&masks));
});
