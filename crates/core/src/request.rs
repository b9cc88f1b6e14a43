//! Requests as the gate decides on them: what a client asks a target to do, in the protocol's own
//! terms. Protocol crates build them from what they read on the wire; the gate hands them to the
//! policy. A new protocol adds a variant here (and rules that read it), nothing else in the
//! admission path.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// One request of a live session, before it reaches the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// SQL text a client sent: a query, or a prepared statement's text at each execution.
    Sql(&'a str),
    /// A request whose SQL witness cannot see: a fast-path function call, an execution of a
    /// statement it does not know, or text it cannot read as the target will. It is decided as
    /// the riskiest statement there is (`unparsed`).
    OpaqueSql,
    /// MySQL or MariaDB text a client sent (a query, a prepared statement's text at each
    /// execution): read in MySQL's dialect.
    MysqlSql(&'a str),
    /// A MySQL or MariaDB request whose SQL witness cannot see (text that is not UTF-8, an
    /// execution of a statement it did not see prepared): `unparsed`, with MySQL's own guards.
    OpaqueMysqlSql,
    /// An SSH operation and its text: the command line (exec, git), the subsystem's name, the
    /// forwarding's destination or the variable's name (env); empty for a shell.
    Ssh { operation: SshOperation, text: &'a str },
    /// An HTTP request: its method as sent (`*` when an override may have the upstream run
    /// another) and its path as witness reads it (percent-decoded,
    /// empty segments collapsed, without the connection's prefix). `uncertain` says why witness
    /// cannot be sure the upstream reads the path the same way (`..`, an encoded slash); such a
    /// request is decided as the strictest path there is.
    /// `query` (without its `?`, empty for none) is shown to approvers, not matched by rules.
    Http { method: &'a str, path: &'a str, query: &'a str, uncertain: Option<&'a str> },
    /// A Kubernetes API request as the API server's authorizer reads it.
    Kube(&'a KubeRequest),
}

/// A Kubernetes API request in the API server's own terms: a verb on a resource (in a namespace,
/// perhaps by name), or a verb on a path that names no resource (`/version`, `/api`), with any
/// impersonation its headers ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or
    /// another the API server knows; for a path without a resource, the method in lower case.
    pub verb: String,
    /// The resource asked for; `None` for a path that names none.
    pub resource: Option<KubeResource>,
    /// The path as witness reads it (without the connection's prefix).
    pub path: String,
    /// Why witness cannot be sure the API server reads the request as witness does; it is then
    /// decided as the strictest request there is.
    pub uncertain: Option<String>,
    /// What the request's `Impersonate-*` headers ask to act as: (`users`, `groups`, `uids` or
    /// `userextras/KEY`, the value).
    pub impersonate: Vec<(String, String)>,
    /// For an exec: the command and its arguments it asks to run.
    pub command: Vec<String>,
}

/// The resource of a Kubernetes API request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeResource {
    /// The API group: empty for the core group (`/api/v1`), else e.g. `apps`.
    pub group: String,
    pub version: String,
    /// `pods`, `secrets`, `deployments`, …
    pub resource: String,
    /// `exec`, `log`, `status`, … (empty for none).
    pub subresource: String,
    /// Empty for a cluster-scoped resource, or a list across every namespace.
    pub namespace: String,
    /// Empty for a collection.
    pub name: String,
}

/// What a client asks an SSH target for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SshOperation {
    /// An interactive login shell.
    Shell,
    /// One command (`ssh host CMD`, scp, rsync).
    Exec,
    /// The sftp subsystem.
    Sftp,
    /// Another subsystem.
    Subsystem,
    /// `git-upload-pack`: clone and fetch.
    GitFetch,
    /// `git-receive-pack`: push.
    GitPush,
    /// Local (`-L`, direct-tcpip) or remote (`-R`, tcpip-forward) port forwarding.
    PortForward,
    /// Agent forwarding (`-A`).
    AgentForward,
    /// X11 forwarding (`-X`).
    X11Forward,
    /// An environment variable the client sets for the session (`SetEnv`, `SendEnv`); the
    /// request's text is the variable's name.
    Env,
}

/// An operation name that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown ssh operation {given:?}: use one of {}", SshOperation::NAMES.join(", "))]
pub struct UnknownSshOperation {
    pub given: String,
}

// === impl Request ===

impl Request<'_> {
    /// The request as a person reads it in an approval or a log line: the SQL, the SSH
    /// operation with its text, or the HTTP method and path.
    pub fn describe(&self) -> Cow<'_, str> {
        match self {
            Request::Sql(text) | Request::MysqlSql(text) => Cow::Borrowed(text),
            Request::OpaqueSql | Request::OpaqueMysqlSql => Cow::Borrowed("a statement witness cannot see"),
            Request::Ssh { operation, text: "" } => Cow::Borrowed(operation.as_str()),
            Request::Ssh { operation, text } => Cow::Owned(format!("{operation}: {text}")),
            Request::Http { method, path, query, uncertain } => {
                let query = if query.is_empty() { String::new() } else { format!("?{query}") };
                match uncertain {
                    None => Cow::Owned(format!("{method} {path}{query}")),
                    Some(why) => Cow::Owned(format!("{method} {path}{query} (witness cannot read this path exactly: {why})")),
                }
            }
            Request::Kube(request) => Cow::Owned(request.to_string()),
        }
    }
}

// === impl KubeRequest ===

impl KubeRequest {
    /// The resource as rules name it: `pods`, `pods/exec`; the path for a request without one.
    pub fn resource_text(&self) -> Cow<'_, str> {
        match &self.resource {
            Some(r) if r.subresource.is_empty() => Cow::Borrowed(&r.resource),
            Some(r) => Cow::Owned(format!("{}/{}", r.resource, r.subresource)),
            None => Cow::Borrowed(&self.path),
        }
    }
}

/// `delete pods/api-2 in prod`, `get /version`, with what it impersonates and why it is uncertain.
impl fmt::Display for KubeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            None => write!(f, "{} {}", self.verb, self.path)?,
            Some(r) => {
                write!(f, "{} {}", self.verb, r.resource)?;
                if !r.group.is_empty() {
                    write!(f, ".{}", r.group)?;
                }
                if !r.name.is_empty() {
                    write!(f, " {}", r.name)?;
                }
                if !r.subresource.is_empty() {
                    write!(f, " ({})", r.subresource)?;
                }
                if !r.namespace.is_empty() {
                    write!(f, " in {}", r.namespace)?;
                }
            }
        }
        if !self.command.is_empty() {
            write!(f, ": {}", self.command.join(" "))?;
        }
        for (what, value) in &self.impersonate {
            write!(f, ", impersonating {what} {value}")?;
        }
        if let Some(why) = &self.uncertain {
            write!(f, " (witness cannot read this request exactly: {why})")?;
        }
        Ok(())
    }
}

// === impl SshOperation ===

impl SshOperation {
    pub const ALL: [SshOperation; 10] = [
        SshOperation::Shell,
        SshOperation::Exec,
        SshOperation::Sftp,
        SshOperation::Subsystem,
        SshOperation::GitFetch,
        SshOperation::GitPush,
        SshOperation::PortForward,
        SshOperation::AgentForward,
        SshOperation::X11Forward,
        SshOperation::Env,
    ];
    pub const NAMES: [&'static str; 10] =
        ["shell", "exec", "sftp", "subsystem", "git-fetch", "git-push", "port-forward", "agent-forward", "x11-forward", "env"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|&op| op == self).expect("every operation is in ALL")]
    }

    /// Forwardings open paths the recording sees only as bytes.
    pub fn is_forwarding(self) -> bool {
        matches!(self, SshOperation::PortForward | SshOperation::AgentForward | SshOperation::X11Forward)
    }
}

impl fmt::Display for SshOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SshOperation {
    type Err = UnknownSshOperation;

    fn from_str(s: &str) -> Result<SshOperation, UnknownSshOperation> {
        Self::NAMES.iter().position(|&n| n == s).map(|i| Self::ALL[i]).ok_or_else(|| UnknownSshOperation { given: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_through_their_names() {
        for operation in SshOperation::ALL {
            assert_eq!(operation.as_str().parse::<SshOperation>().unwrap(), operation);
        }
        assert!("telnet".parse::<SshOperation>().is_err());
    }

    #[test]
    fn requests_describe_themselves_for_people() {
        assert_eq!(Request::Sql("select 1").describe(), "select 1");
        assert_eq!(Request::Ssh { operation: SshOperation::Shell, text: "" }.describe(), "shell");
        assert_eq!(Request::Ssh { operation: SshOperation::Exec, text: "ls -l" }.describe(), "exec: ls -l");
        assert_eq!(Request::Http { method: "GET", path: "/api/x", query: "", uncertain: None }.describe(), "GET /api/x");
        let query = Request::Http { method: "POST", path: "/api/payments/42", query: "amount=900000", uncertain: None };
        assert_eq!(query.describe(), "POST /api/payments/42?amount=900000");
        let resource = KubeResource {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            namespace: "prod".into(),
            name: "web".into(),
            ..KubeResource::default()
        };
        let delete = KubeRequest { verb: "delete".into(), resource: Some(resource), ..KubeRequest::default() };
        assert_eq!(Request::Kube(&delete).describe(), "delete deployments.apps web in prod");
        let version = KubeRequest {
            verb: "get".into(),
            path: "/version".into(),
            impersonate: vec![("users".into(), "alice".into())],
            ..KubeRequest::default()
        };
        assert_eq!(Request::Kube(&version).describe(), "get /version, impersonating users alice");
    }
}
