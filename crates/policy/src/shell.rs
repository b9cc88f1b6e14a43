//! SSH requests as policy sees them: the operation a client asks for on a channel (a shell, a
//! command, a subsystem, a forwarding) and, for commands, the command line split into the simple
//! commands a shell would run, so that `rm -rf *` is found in `cd /srv && rm -rf build`.
//!
//! Splitting is a matcher's aid, not a shell parser: it cuts at `;`, `&`, `|`, newlines and
//! `$(`/backticks outside quotes. A rule that must not be bypassed by quoting tricks should also
//! use `regex`, and the safest policy for a shell is to hold or deny the shell itself.

use std::fmt;
use std::str::FromStr;

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
}

/// An operation name that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown ssh operation {given:?}: use one of {}", SshOperation::NAMES.join(", "))]
pub struct UnknownSshOperation {
    pub given: String,
}

// === impl SshOperation ===

impl SshOperation {
    pub const ALL: [SshOperation; 9] = [
        SshOperation::Shell,
        SshOperation::Exec,
        SshOperation::Sftp,
        SshOperation::Subsystem,
        SshOperation::GitFetch,
        SshOperation::GitPush,
        SshOperation::PortForward,
        SshOperation::AgentForward,
        SshOperation::X11Forward,
    ];
    pub const NAMES: [&'static str; 9] =
        ["shell", "exec", "sftp", "subsystem", "git-fetch", "git-push", "port-forward", "agent-forward", "x11-forward"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|&op| op == self).expect("every operation is in ALL")]
    }

    /// Forwardings are off unless a rule that names them allows them: they open paths the
    /// recording sees only as bytes.
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

/// The simple commands of a command line: cut at `;`, `&&`, `||`, `|`, `&`, newlines, `$(`, `)`
/// and backticks outside quotes, each trimmed, empty ones left out. Quotes are kept as written.
pub fn split_commands(line: &str) -> Vec<&str> {
    let bytes = line.as_bytes();
    let mut commands = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            // A backslash inside double quotes escapes the next byte; single quotes escape nothing.
            Some(b'"') if b == b'\\' => i += 1,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'\\' => i += 1,
                b';' | b'&' | b'|' | b'\n' | b'`' | b'(' | b')' => {
                    push_trimmed(&mut commands, &line[start..i]);
                    start = i + 1;
                }
                b'$' if bytes.get(i + 1) == Some(&b'(') => {
                    push_trimmed(&mut commands, &line[start..i]);
                    i += 1;
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    push_trimmed(&mut commands, &line[start.min(line.len())..]);
    commands
}

fn push_trimmed<'a>(commands: &mut Vec<&'a str>, part: &'a str) {
    let part = part.trim();
    if !part.is_empty() {
        commands.push(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_into_simple_commands() {
        let check = |line: &str, expect: &[&str]| assert_eq!(split_commands(line), expect, "{line:?}");
        check("ls -la", &["ls -la"]);
        check("cd /srv && rm -rf build", &["cd /srv", "rm -rf build"]);
        check("a; b || c | d & e\nf", &["a", "b", "c", "d", "e", "f"]);
        check("echo $(rm -rf /) `id`", &["echo", "rm -rf /", "id"]);
        check("echo 'a; rm -rf /' \"b && c\"", &["echo 'a; rm -rf /' \"b && c\""]);
        check("echo \"x\\\"; y\"; z", &["echo \"x\\\"; y\"", "z"]);
        check("sh -c 'rm -rf /'", &["sh -c 'rm -rf /'"]);
        check("", &[]);
        check(" ; ;; ", &[]);
        check("unterminated 'quote; rm", &["unterminated 'quote; rm"]);
        check("trailing \\", &["trailing \\"]);
    }

    #[test]
    fn operation_names_round_trip() {
        for op in SshOperation::ALL {
            assert_eq!(op.as_str().parse::<SshOperation>().unwrap(), op);
        }
        assert!("forward".parse::<SshOperation>().is_err());
        assert!(SshOperation::PortForward.is_forwarding() && !SshOperation::Exec.is_forwarding());
    }
}
