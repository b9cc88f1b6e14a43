//! Fuzzes the standalone verifier of session exports, which reads files a user was handed: it
//! must refuse anything malformed with an error and never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_ledger::export::verify_session_export;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let _ = verify_session_export(std::io::BufReader::new(data), &key);
});
