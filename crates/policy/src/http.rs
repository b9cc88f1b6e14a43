//! HTTP rules: `http = ["GET /api/*", "POST /api/payments/*"]`, a method glob and a path glob,
//! and the decision on one HTTP request. Methods are compared in upper case (a server that takes
//! `delete` for `DELETE` must not slip past a rule about `DELETE`). A path witness cannot read
//! exactly (`uncertain`) is decided as the strictest path there is: every deny and approve rule
//! whose method matches applies to it, and no allow rule that names paths does. A deny or approve
//! rule also meets the path in the forms many servers route alike (Express, ASP.NET): in any
//! case, and with or without a final `/`, so `/ADMIN/users/` meets `* /admin/*`; an allow rule
//! meets the path only as it is.

use std::fmt;
use std::str::FromStr;

use witness_core::Glob;

use crate::rules::{default_decision, most_severe, Caller, Decision, Policy, Rule};

/// One entry of a rule's `http` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    /// Upper case; `*` for any method.
    pub method: Glob,
    /// Matched against the whole path (`*` crosses `/`).
    pub path: Glob,
}

/// An `http` entry that is not "METHOD /path".
#[derive(Debug, thiserror::Error)]
#[error("invalid http route {given:?}: write a method glob, one space and a path glob starting with / or *, e.g. \"GET /api/*\" or \"* /admin/*\"")]
pub struct InvalidHttpRoute {
    pub given: String,
}

impl FromStr for HttpRoute {
    type Err = InvalidHttpRoute;

    fn from_str(s: &str) -> Result<HttpRoute, InvalidHttpRoute> {
        let invalid = || InvalidHttpRoute { given: s.to_string() };
        let (method, path) = s.split_once(' ').ok_or_else(invalid)?;
        let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'*' || b == b'?' || b == b'-');
        if !method_ok || !(path.starts_with('/') || path.starts_with('*')) || path.contains(' ') {
            return Err(invalid());
        }
        Ok(HttpRoute { method: Glob::new(&method.to_ascii_uppercase()), path: Glob::new(path) })
    }
}

impl fmt::Display for HttpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Decides on an HTTP request: `method` as sent (`*` when the request may have the upstream run
/// another: every deny and approve rule about its path meets it, whatever method it names),
/// `path` as witness reads it. `uncertain` says why
/// the path may not be what the upstream reads; it is then matched as the strictest path. Rules
/// about SQL or SSH never apply; rules naming no protocol's fields apply to every request.
pub fn decide_http(policy: &Policy, caller: &Caller<'_>, method: &str, path: &str, uncertain: Option<&str>) -> Decision {
    let method = method.to_ascii_uppercase();
    let request = Asked { method: &method, path, loose: loose_forms(path), uncertain, text: format!("{method} {path}") };
    let found = most_severe(policy.rules.iter().filter(|rule| rule.matches_caller(caller) && matches_http(rule, &request)));
    match found {
        Some(rule) => match (rule.decision(), uncertain) {
            // The rule applies because witness could not read the path, not because of what it is.
            (Decision::Deny { rule: name, .. }, Some(why))
                if !rule.http.iter().any(|r| r.method.matches(&method) && r.path.matches(path)) =>
            {
                let message = format!(
                    "witness cannot read this path exactly ({why}), so it is refused as the strictest path there is by rule \"{name}\"; write the path plainly"
                );
                Decision::Deny { rule: name, message }
            }
            (decision, _) => decision,
        },
        None => default_decision(policy.default),
    }
}

/// An HTTP request as rules are matched against it.
struct Asked<'a> {
    /// In upper case; `*` when the request may have the upstream run another.
    method: &'a str,
    path: &'a str,
    /// The path without and with its final `/`, in which deny and approve rules also meet it,
    /// in any case.
    loose: [String; 2],
    uncertain: Option<&'a str>,
    /// `METHOD /path`, for regexes.
    text: String,
}

fn matches_http(rule: &Rule, asked: &Asked<'_>) -> bool {
    if rule.is_ssh_rule() || rule.is_kube_rule() || !rule.sql.is_empty() || !rule.tables.is_empty() {
        return false;
    }
    let strict = rule.action != crate::Action::Allow;
    // `*`: the method the upstream runs is not known (an override names another).
    let any_method = strict && asked.method == "*";
    let route_match = rule.http.is_empty()
        || rule.http.iter().any(|r| {
            (any_method || r.method.matches(asked.method))
                && match asked.uncertain {
                    // Any path may be the one the upstream reads: every deny and hold applies, no allow.
                    Some(_) => strict,
                    None => {
                        r.path.matches(asked.path) || (strict && asked.loose.iter().any(|form| r.path.matches_ignoring_ascii_case(form)))
                    }
                }
        });
    // A request whose method is unknown meets a deny's or a hold's regex written for any method.
    let regex_match = rule
        .regex
        .as_ref()
        .is_none_or(|r| r.is_match(&asked.text) || (any_method && ANY_METHOD.iter().any(|m| r.is_match(&format!("{m} {}", asked.path)))));
    route_match && regex_match
}

/// The methods a request of unknown method is matched as, by regexes: HTTP's and WebDAV's, and
/// those method overrides are known to take.
const ANY_METHOD: [&str; 21] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "CONNECT",
    "TRACE",
    "LINK",
    "UNLINK",
    "PURGE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
];

/// The forms of `path` a server that ignores a final `/` routes alike: without it and with it.
fn loose_forms(path: &str) -> [String; 2] {
    let trimmed = path.trim_end_matches('/');
    let bare = if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() };
    [bare, format!("{trimmed}/")]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::shown;
    use crate::{Action, SqlClass};

    fn route(text: &str) -> HttpRoute {
        text.parse().unwrap()
    }

    fn policy(default: Action) -> Policy {
        let mut reads = Rule::new("api-reads", Action::Allow);
        reads.http = vec![route("GET /api/*"), route("HEAD /api/*")];
        let mut payments = Rule::new("payments-need-approval", Action::Approve);
        payments.http = vec![route("POST /api/payments/*")];
        payments.approvers = vec!["finance".into()];
        let mut admin = Rule::new("no-admin", Action::Deny);
        admin.http = vec![route("* /admin*")];
        admin.message = Some("the admin API is for people".into());
        let mut sql = Rule::new("no-drop", Action::Deny);
        sql.sql = vec![SqlClass::Drop];
        Policy { default, rules: vec![sql, reads, payments, admin] }
    }

    fn check(policy: &Policy, method: &str, path: &str, uncertain: Option<&str>, expect: &str) {
        let caller = Caller { identity: "claude", groups: &[], connection: "billing", task: None };
        let got = shown(decide_http(policy, &caller, method, path, uncertain));
        assert_eq!(got.trim(), expect, "{method} {path} ({uncertain:?})");
    }

    #[test]
    fn http_requests_meet_method_and_path_globs() {
        let open = policy(Action::Allow);
        check(&open, "GET", "/api/invoices", None, "allow api-reads");
        check(&open, "get", "/api/invoices", None, "allow api-reads");
        check(&open, "POST", "/api/payments/42", None, "approve payments-need-approval");
        check(&open, "post", "/api/payments/42", None, "approve payments-need-approval");
        check(&open, "GET", "/admin/users", None, "deny no-admin");
        check(&open, "DELETE", "/admin", None, "deny no-admin");
        check(&open, "PUT", "/other", None, "allow");
        let closed = policy(Action::Deny);
        check(&closed, "PUT", "/api/invoices", None, "deny default");
        check(&closed, "GET", "/api", None, "deny default");
    }

    #[test]
    fn denials_and_holds_meet_the_path_as_servers_that_ignore_case_and_a_final_slash_route_it() {
        let open = policy(Action::Allow);
        check(&open, "DELETE", "/ADMIN/users/7", None, "deny no-admin");
        check(&open, "POST", "/api/payments", None, "approve payments-need-approval");
        check(&open, "POST", "/API/Payments/42/", None, "approve payments-need-approval");
        // An allow covers the path only as it is.
        let closed = policy(Action::Deny);
        check(&closed, "GET", "/API/invoices", None, "deny default");
        check(&closed, "GET", "/api/invoices/", None, "allow api-reads");
    }

    #[test]
    fn a_request_whose_method_is_unknown_meets_the_denials_and_holds_of_its_path() {
        let open = policy(Action::Allow);
        check(&open, "*", "/admin/users", None, "deny no-admin");
        // A hold about POST meets it, though the request came as another method.
        let payments = Policy { default: Action::Allow, rules: vec![open.rules[2].clone()] };
        check(&payments, "*", "/api/payments/7", None, "approve payments-need-approval");
        // No allow meets it unless it names any method.
        let reads = Policy { default: Action::Deny, rules: vec![open.rules[1].clone()] };
        check(&reads, "*", "/api/invoices", None, "deny default");
        // The path is known: rules about other paths do not meet it; a regex meets it as any method.
        let mut no_user_deletes = Rule::new("no-user-deletes", Action::Deny);
        no_user_deletes.regex = Some(regex::Regex::new("^DELETE /users/").unwrap());
        let regex = Policy { default: Action::Allow, rules: vec![open.rules[3].clone(), no_user_deletes] };
        check(&regex, "*", "/users/7", None, "deny no-user-deletes");
        check(&regex, "*", "/reports", None, "allow");
        check(&regex, "POST", "/users/7", None, "allow");
    }

    #[test]
    fn an_uncertain_path_is_decided_as_the_strictest() {
        let open = policy(Action::Allow);
        // Every deny or approve rule whose method matches applies; deny wins over approve.
        check(&open, "GET", "/api/x/../../admin", Some("a .. segment"), "deny no-admin");
        check(&open, "POST", "/api/%2e%2e/admin", Some("an encoded dot"), "deny no-admin");
        // An allow rule about paths never covers an uncertain path.
        let closed = Policy { default: Action::Deny, rules: vec![policy(Action::Deny).rules[1].clone()] };
        check(&closed, "GET", "/api/a/../b", Some("a .. segment"), "deny default");
        let caller = Caller { identity: "claude", groups: &[], connection: "billing", task: None };
        match decide_http(&open, &caller, "GET", "/api/a;x/b", Some("a ; path parameter")) {
            Decision::Deny { message, .. } => assert!(message.contains("cannot read this path exactly (a ; path parameter)"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_parse_strictly() {
        assert_eq!(route("get /api/*").to_string(), "GET /api/*");
        assert_eq!(route("* *").to_string(), "* *");
        for bad in ["GET", "GET api/*", "/api/*", "GET  /api", "G%T /x", "GET /a b"] {
            assert!(bad.parse::<HttpRoute>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sql_and_ssh_rules_never_apply_to_http() {
        let mut ssh = Rule::new("no-shell", Action::Deny);
        ssh.ssh = vec![crate::SshOperation::Shell];
        let policy = Policy { default: Action::Allow, rules: vec![policy(Action::Allow).rules[0].clone(), ssh] };
        check(&policy, "DELETE", "/anything", None, "allow");
    }
}
