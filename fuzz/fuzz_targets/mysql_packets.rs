//! Fuzzes the MySQL decoders of peer bytes: packet framing (cut into reads anywhere, with a
//! payload bound), a server's greeting, a client's handshake answer, OK, ERR and column
//! definitions. None may panic; packets come out the same however the reads were cut; what
//! round-trips (a greeting, an answer) reads back as it was.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use witness_proto_mysql::answer::{self, Column, ErrPacket, OkPacket};
use witness_proto_mysql::handshake::{capability, Greeting, HandshakeResponse};
use witness_proto_mysql::packet::PacketReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let cut = usize::from(cut).max(1);
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

    for packet in whole.into_iter().flatten() {
        let payload = &packet.payload;
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
    }
});
