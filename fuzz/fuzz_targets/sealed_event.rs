//! Fuzzes the opening of sealed event contents (read from segment files anyone with write access
//! could have altered): arbitrary bytes as sealed contents are refused with an error and never a
//! panic; arbitrary header and payload bytes sealed open to exactly themselves, only at their
//! own place; a header claiming to be sealed parses without a panic. Both AEADs a data key may
//! have (the first byte picks one).

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_ledger::seal::{clear_header, Aead, DataKey, KeyId, NonceSequence, SealPlace};
use witness_ledger::StoredHeader;

fuzz_target!(|data: &[u8]| {
    let aead = if data.first().is_some_and(|b| b & 1 == 1) { Aead::Aes256GcmSiv } else { Aead::Aes256Gcm };
    let key = DataKey::from_bytes([7; 32], aead);
    let place = SealPlace { session_id: [1; 16], seq: 3, kind: "pg.query" };
    let _ = key.open(&place, key.id(), data);

    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (header, payload) = data.split_at(split);
    let sealed = key.seal(&place, &NonceSequence::new(), header, payload);
    let opened = key.open(&place, key.id(), &sealed).expect("sealed contents open where they were sealed");
    assert_eq!((opened.header.as_slice(), opened.payload.as_slice()), (header, payload));
    assert!(key.open(&SealPlace { seq: 4, ..place }, key.id(), &sealed).is_err(), "opened at another seq");

    let parsed = StoredHeader::parse(data);
    if let Some(id) = parsed.sealed.as_deref().and_then(KeyId::from_hex) {
        let clear = StoredHeader::parse(&clear_header(id, &parsed.payload, None));
        assert_eq!(clear.sealed.as_deref().and_then(KeyId::from_hex), Some(id));
    }
});
