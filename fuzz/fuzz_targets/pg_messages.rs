//! Fuzzes what witness decodes of PostgreSQL traffic from clients and targets: message framing,
//! startup parameters and options, SASL messages, error fields, and the request and response
//! trackers that turn messages into recorded events. None of it may panic on any bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use witness_proto_pg::codec::{message, parse_error_fields, parse_startup_params, peek, Peek};
use witness_proto_pg::record::{Tracker, Requests, Responses, ToClient};

fuzz_target!(|data: &[u8]| {
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
