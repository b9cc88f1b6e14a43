//! SSH requests as policy sees them: the operation a client asks for on a channel (a shell, a
//! command, a subsystem, a forwarding) and, for commands, the command line split into the simple
//! commands a shell would run, so that `rm -rf *` is found in `cd /srv && rm -rf build`.
//!
//! Splitting is a matcher's aid, not a shell parser: it cuts at `;`, `&`, `|`, newlines and
//! command substitutions, then reads each simple command the way it would run: wrappers (`sudo`,
//! `env`, `nohup`, `VAR=value`, `then`, `{`, …) dropped, the program by its base name
//! (`/bin/rm` is `rm`), quotes and repeated blanks removed, and `sh -c '…'` read inside. A deny
//! list of globs is still a best effort against someone who means to get around it (a script
//! file, an alias, `eval` of a built string): where it matters, deny by default and allow what is
//! known, or hold the shell itself for approval.

use witness_core::SshOperation;

/// Off unless a rule names it in `ssh`, whatever the default and whatever rules about commands
/// or everything say: forwardings, and environment variables, which can choose what a decided
/// command really runs (`LD_PRELOAD`, `BASH_ENV`, `PATH`) before it runs.
pub(crate) fn needs_a_rule(operation: SshOperation) -> bool {
    operation.is_forwarding() || operation == SshOperation::Env
}

/// Environment variables a client may set without a rule: the language and formats, which
/// OpenSSH's stock configuration sends and accepts (`SendEnv`/`AcceptEnv LANG LC_*`).
pub(crate) fn is_locale_variable(name: &str) -> bool {
    name == "LANG" || name.starts_with("LC_")
}

/// The simple commands of a command line, each as written (trimmed) and as it would run
/// (normalised: see the module doc), for rules to match against.
pub fn simple_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    collect_commands(line, 0, &mut out);
    out
}

/// Shells whose `-c` argument is itself a command line.
const SHELLS: [&str; 6] = ["sh", "bash", "dash", "zsh", "ksh", "busybox"];
/// Words that run the command after them (their own options are skipped too).
const WRAPPERS: [&str; 16] = [
    "sudo", "env", "command", "exec", "nohup", "time", "nice", "ionice", "doas", "stdbuf", "timeout", "xargs", "builtin", "setsid",
    "chroot", "su",
];
/// Shell keywords that may stand before a command.
const KEYWORDS: [&str; 10] = ["!", "{", "then", "do", "else", "if", "elif", "while", "until", "("];

fn collect_commands(line: &str, depth: usize, out: &mut Vec<String>) {
    for command in split_commands(line) {
        out.push(command.to_string());
        let normal = normalize(command);
        let words: Vec<&str> = normal.split(' ').collect();
        if depth < 3 && words.len() > 2 && SHELLS.contains(&words[0]) {
            if let Some(at) = command.find(" -c ") {
                collect_commands(unquote(command[at + 4..].trim()).as_str(), depth + 1, out);
            }
        }
        if normal != command {
            out.push(normal);
        }
    }
}

/// A simple command as it would run: wrappers and assignments before the program dropped, the
/// program by its base name, quotes and backslashes removed, blanks collapsed.
fn normalize(command: &str) -> String {
    let words: Vec<String> = command.split_whitespace().map(unquote).filter(|w| !w.is_empty()).collect();
    let mut start = 0;
    while start < words.len() {
        let word = words[start].as_str();
        let assignment = word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        });
        let wrapper = WRAPPERS.contains(&basename(word));
        // A wrapper's options and their values (`nice -n 5`, `timeout 10s`, `sudo -u root`).
        let option = start > 0
            && is_wrapper_option(&words[..start])
            && (word.starts_with('-') || is_number(word) || follows_option(&words[..start]));
        if !(assignment || wrapper || KEYWORDS.contains(&word) || option) {
            break;
        }
        start += 1;
    }
    let mut words: Vec<&str> = words[start.min(words.len())..].iter().map(String::as_str).collect();
    if let Some(program) = words.first_mut() {
        *program = basename(program);
    }
    words.join(" ")
}

/// Whether the word before an option is a wrapper (whose options are skipped with it).
fn is_wrapper_option(before: &[String]) -> bool {
    before.last().is_some_and(|w| WRAPPERS.contains(&basename(w)) || w.starts_with('-'))
}

/// `5`, `10s`, `1.5m`: values wrappers such as nice and timeout take.
fn is_number(word: &str) -> bool {
    let digits = word.trim_end_matches(['s', 'm', 'h', 'd']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Whether the word before is an option that takes a value (`-u root`, `-n 5`).
fn follows_option(before: &[String]) -> bool {
    before.last().is_some_and(|w| matches!(w.as_str(), "-u" | "-g" | "-n" | "-c" | "-p" | "-s" | "-k" | "-o" | "-i" | "-C"))
        && before.len() >= 2
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// A word without its quotes and backslashes (`"rm"` → `rm`, `\rm` → `rm`).
fn unquote(word: &str) -> String {
    word.chars().filter(|c| !matches!(c, '\'' | '"' | '\\')).collect()
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
            // Command substitution runs inside double quotes too.
            Some(b'"') if b == b'`' || (b == b'$' && bytes.get(i + 1) == Some(&b'(')) => {
                push_trimmed(&mut commands, &line[start..i]);
                if b == b'$' {
                    i += 1;
                }
                start = i + 1;
            }
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
        check("echo \"$(rm -rf /)\"", &["echo \"", "rm -rf /)\""]);
        check("echo 'a; rm -rf /' \"b && c\"", &["echo 'a; rm -rf /' \"b && c\""]);
        check("echo \"x\\\"; y\"; z", &["echo \"x\\\"; y\"", "z"]);
        check("sh -c 'rm -rf /'", &["sh -c 'rm -rf /'"]);
        check("", &[]);
        check(" ; ;; ", &[]);
        check("unterminated 'quote; rm", &["unterminated 'quote; rm"]);
        check("trailing \\", &["trailing \\"]);
    }

    #[test]
    fn simple_commands_are_read_as_they_would_run() {
        let check = |line: &str, expect: &[&str]| assert_eq!(simple_commands(line), expect, "{line:?}");
        check("ls -la", &["ls -la"]);
        check("/bin/rm  -rf x", &["/bin/rm  -rf x", "rm -rf x"]);
        check("sudo -u root FOO=1 rm -rf x", &["sudo -u root FOO=1 rm -rf x", "rm -rf x"]);
        check("env -i PATH=/bin \\rm -rf x", &["env -i PATH=/bin \\rm -rf x", "rm -rf x"]);
        check("\"rm\" -rf x", &["\"rm\" -rf x", "rm -rf x"]);
        check("if true; then rm -rf x; fi", &["if true", "true", "then rm -rf x", "rm -rf x", "fi"]);
        check("bash -c 'cd /; rm -rf x'", &["bash -c 'cd /; rm -rf x'", "cd /", "rm -rf x", "bash -c cd /; rm -rf x"]);
        check("nohup nice -n 5 /usr/bin/shutdown now", &["nohup nice -n 5 /usr/bin/shutdown now", "shutdown now"]);
        check("timeout 10s sudo -u deploy rm -rf /srv", &["timeout 10s sudo -u deploy rm -rf /srv", "rm -rf /srv"]);
    }

    #[test]
    fn operation_names_round_trip() {
        for op in SshOperation::ALL {
            assert_eq!(op.as_str().parse::<SshOperation>().unwrap(), op);
        }
        assert!("forward".parse::<SshOperation>().is_err());
        assert!(SshOperation::PortForward.is_forwarding() && !SshOperation::Exec.is_forwarding());
        assert!(needs_a_rule(SshOperation::Env) && !SshOperation::Env.is_forwarding() && !needs_a_rule(SshOperation::Shell));
    }
}
