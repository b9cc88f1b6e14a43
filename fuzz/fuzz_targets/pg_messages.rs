//! Fuzzes what witness decodes of PostgreSQL traffic from clients and targets: message framing,
//! startup parameters and options, SASL messages, error fields, binary values by type, COPY data in
//! every format, and the request and response trackers that turn messages into recorded events. None of it may panic on any bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use witness_proto_pg::copy::CopyFormat;
use witness_proto_pg::codec::{message, parse_error_fields, parse_startup_params, peek, Peek};
use witness_proto_pg::record::{Tracker, Requests, Responses, ToClient};

fuzz_target!(|data: &[u8]| {
    // Binary values of every type witness decodes, and COPY data in every format.
    for type_oid in [16, 17, 20, 21, 23, 25, 700, 701, 1009, 1082, 1114, 1186, 1231, 1700, 2249, 2950, 3802] {
        let _ = witness_proto_pg::binary::decode(type_oid, data);
    }
    let _ = witness_proto_pg::binary::numeric(data);
    for format in [
        CopyFormat::Text { header: true },
        CopyFormat::Csv { header: false, quote: b'"', escape: b'\\' },
        CopyFormat::Binary,
    ] {
        let mut rows = witness_proto_pg::copy::CopyRows::new(format);
        for piece in data.chunks(7) {
            rows.add(piece);
        }
        let _ = rows.finish();
    }
    let _ = parse_startup_params(data);
    let _ = parse_error_fields(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = witness_proto_pg::split_task_option(text);
        let _ = witness_proto_pg::split_gs2(text);
        let _ = witness_proto_pg::sasl_attribute(text, 'r');
    }
    // The same bytes as a stream of client messages and as a stream of target messages.
    let tracker = Tracker::default();
    let mut requests = Requests::default();
    let mut responses = Responses::new(4);
    let mut events = Vec::new();
    let mut at = 0;
    while let Peek::Whole(len) = peek(&data[at..]) {
        let msg = message(&data[at..], len);
        let _ = requests.see_and_queue(msg, &tracker);
        let _ = responses.on_message(msg, &tracker, &mut events, &mut ToClient::new(&mut BytesMut::new(), &[]));
        at += len;
    }
});
