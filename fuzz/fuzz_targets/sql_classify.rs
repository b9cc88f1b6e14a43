//! Fuzzes SQL classification: any text a client sends as a query goes through PostgreSQL's
//! reading of strings, comments and dollar quotes (or MySQL's), sqlparser's tokens and parser,
//! and the folding of WHERE conditions. None of it may panic, every statement gets a class, and
//! the same text always gets the same classes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_policy::{classify, classify_mysql};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    for reading in [classify, classify_mysql] {
        let statements = reading(sql);
        assert!(statements.iter().all(|s| !s.classes.is_empty()), "{sql:?}");
        assert_eq!(statements, reading(sql), "{sql:?}");
    }
});
