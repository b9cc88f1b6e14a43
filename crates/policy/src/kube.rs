//! Kubernetes rules: `kube = ["delete pods", "create pods/exec", "* secrets", "get /version"]`
//! (a verb glob and a resource glob, or a verb glob and a path glob for requests that name no
//! resource) and `namespaces = ["prod-*"]`, and the decision on one Kubernetes API request.
//!
//! A resource glob is matched against `resource` and `resource.group`, with the subresource after
//! a `/` as the API server's authorizer names them: `pods` is not `pods/exec`, `pods/*` is every
//! subresource of pods, and `*` crosses `/`. Where witness cannot be sure what a request does,
//! it decides as for the strictest case:
//! - a request whose path or method it cannot read exactly meets every deny and approve rule
//!   and no allow rule that names resources, verbs or namespaces;
//! - a request on a namespaced (or unknown) resource without a namespace spans every namespace:
//!   it meets every deny and approve rule that names namespaces, and no allow rule that does;
//!   cluster-scoped resources that Kubernetes itself defines and paths that name no resource are
//!   in no namespace and meet no rule that names namespaces;
//! - impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`) is refused unless an
//!   allow rule names the verb `impersonate` itself (`"impersonate users/ci-*"`): a rule about
//!   every verb does not let an agent act as someone else.

use std::fmt;
use std::str::FromStr;

use witness_core::{Glob, KubeRequest};

use crate::rules::{default_decision, most_severe, Caller, Decision, Policy, Rule};
use crate::Action;

/// The verb of impersonation, which only a rule naming it allows.
const IMPERSONATE: &str = "impersonate";

/// Cluster-scoped resources of Kubernetes itself: a request on one of them without a namespace is
/// in no namespace, rather than across all of them.
const CLUSTER_SCOPED: [&str; 22] = [
    "namespaces",
    "nodes",
    "persistentvolumes",
    "componentstatuses",
    "clusterroles",
    "clusterrolebindings",
    "customresourcedefinitions",
    "apiservices",
    "storageclasses",
    "csidrivers",
    "csinodes",
    "volumeattachments",
    "priorityclasses",
    "runtimeclasses",
    "ingressclasses",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "certificatesigningrequests",
    "tokenreviews",
    "selfsubjectaccessreviews",
];

/// One entry of a rule's `kube` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeRoute {
    /// Lower case; `*` for any verb.
    pub verb: Glob,
    /// A resource glob (`pods`, `pods/exec`, `deployments.apps`), or a path glob starting with
    /// `/` for requests that name no resource.
    pub target: Glob,
    /// The verb is `impersonate` itself, not a glob that happens to match it.
    names_impersonation: bool,
    /// The target is a path glob.
    by_path: bool,
}

/// A `kube` entry that is not "VERB RESOURCE" or "VERB /path".
#[derive(Debug, thiserror::Error)]
#[error("invalid kube entry {given:?}: write a verb glob, one space and a resource glob (e.g. \"delete pods\", \"create pods/exec\", \"* secrets\") or a path glob (e.g. \"get /version\")")]
pub struct InvalidKubeRoute {
    pub given: String,
}

impl FromStr for KubeRoute {
    type Err = InvalidKubeRoute;

    fn from_str(s: &str) -> Result<KubeRoute, InvalidKubeRoute> {
        let invalid = || InvalidKubeRoute { given: s.to_string() };
        let (verb, target) = s.split_once(' ').ok_or_else(invalid)?;
        let verb_ok = !verb.is_empty() && verb.bytes().all(|b| b.is_ascii_alphabetic() || b == b'*' || b == b'?');
        if !verb_ok || target.is_empty() || target.contains(' ') {
            return Err(invalid());
        }
        let verb = verb.to_ascii_lowercase();
        Ok(KubeRoute {
            names_impersonation: verb == IMPERSONATE,
            verb: Glob::new(&verb),
            target: Glob::new(target),
            by_path: target.starts_with('/'),
        })
    }
}

impl fmt::Display for KubeRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.target)
    }
}

impl KubeRoute {
    /// Whether this entry names the request's verb and what it acts on. `Impersonate` is matched
    /// only by an entry whose verb is that word.
    fn matches(&self, verb: &str, request: &KubeRequest) -> bool {
        if verb == IMPERSONATE && !self.names_impersonation {
            return false;
        }
        if !self.verb.matches(verb) {
            return false;
        }
        match &request.resource {
            None => self.by_path && self.target.matches(&request.path),
            Some(resource) if !self.by_path => {
                let (plain, grouped) = match resource.subresource.as_str() {
                    "" => (resource.resource.clone(), format!("{}.{}", resource.resource, resource.group)),
                    sub => (format!("{}/{sub}", resource.resource), format!("{}.{}/{sub}", resource.resource, resource.group)),
                };
                self.target.matches(&plain) || (!resource.group.is_empty() && self.target.matches(&grouped))
            }
            Some(_) => false,
        }
    }
}

/// Where a request stands with respect to namespaces.
enum Scope<'a> {
    In(&'a str),
    /// Cluster-scoped, or a path that names no resource.
    Cluster,
    /// A namespaced (or unknown) resource without a namespace: every namespace.
    Every,
}

fn scope(request: &KubeRequest) -> Scope<'_> {
    match &request.resource {
        None => Scope::Cluster,
        Some(r) if !r.namespace.is_empty() => Scope::In(&r.namespace),
        Some(r) if r.group.is_empty() || r.group.ends_with(".k8s.io") || r.group == "apiregistration.k8s.io" => {
            if CLUSTER_SCOPED.contains(&r.resource.as_str()) {
                Scope::Cluster
            } else {
                Scope::Every
            }
        }
        Some(_) => Scope::Every,
    }
}

/// Decides on a Kubernetes API request: its own verb and resource, then each impersonation it
/// asks for, the strictest decision winning. Rules about SQL, SSH or plain HTTP never apply;
/// rules naming no protocol's fields apply to every request.
pub fn decide_kube(policy: &Policy, caller: &Caller<'_>, request: &KubeRequest) -> Decision {
    let applicable: Vec<&Rule> =
        policy.rules.iter().filter(|rule| rule.matches_caller(caller) && !rule.is_other_protocols_rule()).collect();
    let text = request.to_string();
    let mut decision = decide_one(&applicable, policy.default, &request.verb, request, &text);
    for (what, value) in &request.impersonate {
        let target = format!("{what}/{value}");
        let names_it = |rule: &Rule| {
            rule.kube.iter().any(|route| route.names_impersonation && (route.target.matches(&target) || route.target.matches(what)))
        };
        // A deny or hold about every request applies; only a rule naming this impersonation
        // allows it, and never when witness cannot read the request exactly.
        let found = most_severe(applicable.iter().copied().filter(|rule| {
            let about_everything = rule.kube.is_empty() && rule.namespaces.is_empty() && rule.action != Action::Allow;
            let allowed_by_name = names_it(rule) && (rule.action != Action::Allow || request.uncertain.is_none());
            (about_everything || allowed_by_name) && rule.regex.as_ref().is_none_or(|r| r.is_match(&text))
        }));
        let this = match found {
            Some(rule) => rule.decision(),
            None => Decision::Deny {
                rule: "default".into(),
                message: format!(
                    "impersonating {what} {value:?} is off: a rule with kube = [\"impersonate {target}\"] and action = \"allow\" turns it on"
                ),
            },
        };
        decision = stricter(decision, this);
    }
    decision
}

/// The decision on one verb of a request, under the rules that apply to its caller.
fn decide_one(applicable: &[&Rule], default: Action, verb: &str, request: &KubeRequest, text: &str) -> Decision {
    let found = most_severe(applicable.iter().copied().filter(|rule| matches_kube(rule, verb, request, text)));
    match found {
        Some(rule) => match (rule.decision(), &request.uncertain) {
            // The rule applies because witness could not read the request, not because of what it is.
            (Decision::Deny { rule: name, .. }, Some(why))
                if !rule.kube.iter().any(|route| route.matches(verb, request)) && !rule.kube.is_empty() =>
            {
                let message = format!(
                    "witness cannot read this request exactly ({why}), so it is refused as the strictest request there is by rule \"{name}\"; write the path plainly"
                );
                Decision::Deny { rule: name, message }
            }
            (decision, _) => decision,
        },
        None => default_decision(default),
    }
}

fn matches_kube(rule: &Rule, verb: &str, request: &KubeRequest, text: &str) -> bool {
    let strict = rule.action != Action::Allow;
    let uncertain = request.uncertain.is_some();
    let route_match = rule.kube.is_empty() || if uncertain { strict } else { rule.kube.iter().any(|route| route.matches(verb, request)) };
    let namespace_match = rule.namespaces.is_empty()
        || match scope(request) {
            _ if uncertain => strict,
            Scope::In(namespace) => rule.namespaces.iter().any(|g| g.matches(namespace)),
            Scope::Cluster => false,
            Scope::Every => strict,
        };
    let regex_match = rule.regex.as_ref().is_none_or(|r| r.is_match(text));
    route_match && namespace_match && regex_match
}

/// The stricter of two decisions (deny over approve over allow; the first on a tie).
fn stricter(a: Decision, b: Decision) -> Decision {
    let severity = |d: &Decision| match d {
        Decision::Allow { .. } => 0,
        Decision::Approve { .. } => 1,
        Decision::Deny { .. } => 2,
    };
    if severity(&b) > severity(&a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::shown;
    use crate::SqlClass;
    use witness_core::KubeResource;

    fn route(text: &str) -> KubeRoute {
        text.parse().unwrap()
    }

    fn request(verb: &str, resource: &str, subresource: &str, namespace: &str) -> KubeRequest {
        let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
        KubeRequest {
            verb: verb.into(),
            resource: Some(KubeResource {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: String::new(),
            }),
            path: String::new(),
            uncertain: None,
            impersonate: Vec::new(),
            command: Vec::new(),
        }
    }

    fn policy(default: Action) -> Policy {
        let mut reads = Rule::new("reads", Action::Allow);
        reads.kube = vec![route("get *"), route("list *"), route("watch *"), route("get /*")];
        let mut exec = Rule::new("exec-needs-approval", Action::Approve);
        exec.kube = vec![route("create pods/exec")];
        exec.approvers = vec!["sre".into()];
        let mut prod = Rule::new("no-deletes-in-prod", Action::Deny);
        prod.kube = vec![route("delete *"), route("deletecollection *")];
        prod.namespaces = vec![Glob::new("prod-*")];
        let mut secrets = Rule::new("no-secrets", Action::Deny);
        secrets.kube = vec![route("* secrets")];
        let mut deploys = Rule::new("deploys", Action::Allow);
        deploys.kube = vec![route("patch deployments.apps")];
        let mut sql = Rule::new("no-drop", Action::Deny);
        sql.sql = vec![SqlClass::Drop];
        Policy { default, rules: vec![sql, reads, exec, prod, secrets, deploys] }
    }

    fn check(policy: &Policy, request: &KubeRequest, expect: &str) {
        let caller = Caller { identity: "claude", groups: &[], connection: "k8s", task: None };
        assert_eq!(shown(decide_kube(policy, &caller, request)), expect, "{request}");
    }

    #[test]
    fn verbs_resources_and_namespaces_decide() {
        let closed = policy(Action::Deny);
        check(&closed, &request("list", "pods", "", "prod-eu"), "allow reads");
        check(&closed, &request("get", "pods", "log", "prod-eu"), "allow reads");
        check(&closed, &request("create", "pods", "exec", "dev"), "approve exec-needs-approval");
        check(&closed, &request("create", "pods", "attach", "dev"), "deny default");
        check(&closed, &request("delete", "pods", "", "prod-eu"), "deny no-deletes-in-prod");
        check(&closed, &request("delete", "pods", "", "dev"), "deny default");
        check(&closed, &request("get", "secrets", "", "dev"), "deny no-secrets");
        check(&closed, &request("patch", "deployments.apps", "", "dev"), "allow deploys");
        check(&closed, &request("patch", "deployments.apps", "scale", "dev"), "deny default");
        let open = policy(Action::Allow);
        check(&open, &request("delete", "pods", "", "dev"), "allow");
        let version = KubeRequest { verb: "get".into(), path: "/version".into(), ..KubeRequest::default() };
        check(&closed, &version, "allow reads");
        check(&closed, &KubeRequest { verb: "post".into(), path: "/version".into(), ..KubeRequest::default() }, "deny default");
    }

    #[test]
    fn no_namespace_spans_them_all_unless_the_resource_is_cluster_scoped() {
        let open = policy(Action::Allow);
        // Every namespace, prod-* among them.
        check(&open, &request("deletecollection", "pods", "", ""), "deny no-deletes-in-prod");
        check(&open, &request("deletecollection", "widgets.example.com", "", ""), "deny no-deletes-in-prod");
        // In no namespace at all.
        check(&open, &request("delete", "nodes", "", ""), "allow");
        check(&open, &request("delete", "clusterroles.rbac.authorization.k8s.io", "", ""), "allow");
        // An allow rule about namespaces never covers every namespace.
        let mut dev = Rule::new("dev-only", Action::Allow);
        dev.namespaces = vec![Glob::new("dev")];
        let closed = Policy { default: Action::Deny, rules: vec![dev] };
        check(&closed, &request("list", "pods", "", "dev"), "allow dev-only");
        check(&closed, &request("list", "pods", "", ""), "deny default");
    }

    #[test]
    fn an_uncertain_request_is_decided_as_the_strictest() {
        let open = policy(Action::Allow);
        let mut odd = request("get", "pods", "", "dev");
        odd.uncertain = Some("a .. segment".into());
        let caller = Caller { identity: "claude", groups: &[], connection: "k8s", task: None };
        match decide_kube(&open, &caller, &odd) {
            Decision::Deny { rule, message } => {
                assert_eq!(rule, "no-deletes-in-prod");
                assert!(message.contains("cannot read this request exactly (a .. segment)"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let closed = Policy { default: Action::Deny, rules: vec![policy(Action::Deny).rules[1].clone()] };
        check(&closed, &odd, "deny default");
    }

    #[test]
    fn impersonation_needs_a_rule_that_names_it() {
        let mut everything = Rule::new("everything", Action::Allow);
        everything.kube = vec![route("* *")];
        let mut open = Policy { default: Action::Allow, rules: vec![everything] };
        let mut acting = request("get", "pods", "", "dev");
        acting.impersonate = vec![("users".into(), "alice".into())];
        check(&open, &acting, "deny default");
        let mut ci = Rule::new("ci-users", Action::Allow);
        ci.kube = vec![route("impersonate users/ci-*")];
        open.rules.push(ci);
        check(&open, &acting, "deny default");
        acting.impersonate = vec![("users".into(), "ci-bot".into())];
        check(&open, &acting, "allow everything");
        acting.impersonate.push(("groups".into(), "system:masters".into()));
        check(&open, &acting, "deny default");
        // A deny about everything still applies.
        let mut nothing = Rule::new("nothing", Action::Deny);
        nothing.identities = vec![Glob::new("claude")];
        open.rules.push(nothing);
        acting.impersonate.pop();
        check(&open, &acting, "deny nothing");
    }

    #[test]
    fn routes_parse_strictly() {
        assert_eq!(route("DELETE pods").to_string(), "delete pods");
        assert_eq!(route("get /version").to_string(), "get /version");
        for bad in ["delete", "delete  pods", "de-lete pods", "get a b", " pods"] {
            assert!(bad.parse::<KubeRoute>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rules_of_other_protocols_never_apply() {
        let mut http = Rule::new("no-http-deletes", Action::Deny);
        http.http = vec!["DELETE /*".parse().unwrap()];
        let policy = Policy { default: Action::Allow, rules: vec![policy(Action::Allow).rules[0].clone(), http] };
        check(&policy, &request("delete", "pods", "", "dev"), "allow");
    }
}
