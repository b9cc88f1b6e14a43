//! Fuzzes the reading of HTTP request paths and the decision on them: any path a client sends
//! is split into its connection and the rest, percent-decoded and checked for what upstreams read
//! differently, then decided by method-and-path rules. None of it may panic; a path read as
//! certain has no `.`/`..` segment and no encoded slash left in it; and a path read as uncertain
//! is never allowed by a rule that names paths.

#![no_main]

use libfuzzer_sys::fuzz_target;
use witness_policy::{decide_http, Action, Caller, Decision, Policy, Rule};
use witness_proto_http::path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let (method, raw) = raw.split_once(' ').unwrap_or(("GET", raw));
    let rest = match path::address(raw) {
        Some(addressed) => addressed.rest,
        None => raw,
    };
    let read = path::read(rest);
    assert!(read.path.starts_with('/'), "{rest:?} read as {:?}", read.path);
    if read.uncertain.is_none() {
        assert!(!read.path.split('/').any(|segment| segment == "." || segment == ".."), "{rest:?}");
        assert!(!read.path.contains('\\'), "{rest:?}");
    }
    let mut reads = Rule::new("reads", Action::Allow);
    reads.http = vec!["* /*".parse().unwrap()];
    let mut admin = Rule::new("no-admin", Action::Deny);
    admin.http = vec!["* /admin*".parse().unwrap()];
    let policy = Policy { default: Action::Deny, rules: vec![reads, admin] };
    let caller = Caller { identity: "fuzz", groups: &[], connection: "c", task: None };
    let decision = decide_http(&policy, &caller, method, &read.path, read.uncertain);
    if read.uncertain.is_some() {
        assert!(!matches!(decision, Decision::Allow { .. }), "{method} {rest:?} was allowed though uncertain");
    }
});
