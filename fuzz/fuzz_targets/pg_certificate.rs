//! Fuzzes what witness reads of a PostgreSQL target's TLS certificate for SCRAM channel binding
//! (the signature algorithm, under `tls = "prefer"` or `"require"` from a certificate nobody
//! checked): it may refuse any bytes, but never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = witness_proto_pg::tls_server_end_point(data);
});
