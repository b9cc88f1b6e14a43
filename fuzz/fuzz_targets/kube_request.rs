//! Fuzzes the reading of Kubernetes API requests and the decision on them: any method, path,
//! query and headers a client sends are read as the API server's authorizer reads them, then
//! decided by verb, resource and namespace rules. None of it may panic; a request read as
//! uncertain is never allowed by a rule that names resources or namespaces; impersonation is
//! never allowed by a rule that does not name it; and Secret data masking never panics on the
//! bytes either (a watch event is peer bytes too).

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use witness_policy::{decide_kube, Action, Caller, Decision, Glob, Policy, Rule};
use witness_proto_http::{kube, path};

fuzz_target!(|data: &[u8]| {
    let _ = kube::mask_document(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else { return };
    let (raw, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    if !raw.starts_with('/') {
        return;
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(": ") else { continue };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    let read = path::read(raw);
    let uncertain = read.uncertain;
    let request = kube::read_request(&method, raw, &read, query, &headers, uncertain);
    let _ = kube::recorded(&request);

    let mut reads = Rule::new("reads", Action::Allow);
    reads.kube = vec!["* *".parse().unwrap(), "* /*".parse().unwrap()];
    reads.namespaces = vec![Glob::new("dev")];
    let mut everywhere = Rule::new("everything-else", Action::Allow);
    everywhere.kube = vec!["* *".parse().unwrap(), "* /*".parse().unwrap()];
    let mut prod = Rule::new("no-prod", Action::Deny);
    prod.namespaces = vec![Glob::new("prod")];
    for rules in [vec![reads, prod.clone()], vec![everywhere, prod]] {
        let policy = Policy { default: Action::Deny, rules };
        let caller = Caller { identity: "fuzz", groups: &[], connection: "k8s", task: None };
        let decision = decide_kube(&policy, &caller, &request);
        let allowed = matches!(decision, Decision::Allow { .. });
        if request.uncertain.is_some() || !request.impersonate.is_empty() {
            assert!(!allowed, "{request} was allowed");
        }
        let in_prod = request.resource.as_ref().is_some_and(|r| r.namespace == "prod");
        assert!(!(allowed && in_prod), "{request} was allowed in prod");
    }
});
