//! Fuzzes the JWT decoder: a client sends any bytes as its PostgreSQL password or API bearer
//! token, and witness decides whether it looks like a JWT and, if so, parses it. Neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    if witness_identity::looks_like_jwt(&token) {
        let _ = witness_identity::parse_untrusted_jwt(&token);
    }
    let _ = witness_identity::parse_untrusted_jwt(&token);
});
