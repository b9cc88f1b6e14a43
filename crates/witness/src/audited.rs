//! The CLI's own actions on credentials and recordings, handed to the gateway's audit trail
//! through the data dir's spool (see `witness_server::host_actions`), named by the host user who
//! ran the command.

use std::path::Path;

use witness_core::{EventKind, SessionId};
use witness_server::host_actions::{spool, HostAction};

use crate::Cli;

/// Characters of a reason kept, as the API keeps them.
const MAX_REASON_CHARS: usize = 500;

/// The host user running this command: the name `/etc/passwd` gives its uid (else the
/// environment's `USER`), and the uid itself.
pub fn host_user() -> String {
    let uid = rustix::process::getuid().as_raw();
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| user_name(&passwd, uid));
    let name = from_passwd.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "?".into());
    format!("{name} (uid {uid})")
}

/// The name of `uid` in a passwd file's text (`name:x:uid:gid:…` lines).
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Records that this command did `what` (to `session`, if it concerns one). Call it before
/// showing a recording and after changing a credential; an error means the action must not go
/// on unaudited.
pub fn record(data_dir: &Path, kind: &EventKind, what: impl Into<String>, session: Option<SessionId>) -> anyhow::Result<()> {
    let mut action = HostAction::now(kind, host_user(), what);
    if let Some(session) = session {
        action = action.of_session(session.to_string());
    }
    spool(data_dir, &action)?;
    Ok(())
}

/// Records a read (view, search or export) of recordings, with the reason `--read-reason` gives;
/// refused when the config requires a reason and none was given, before anything is shown.
pub fn read(cli: &Cli, data_dir: &Path, kind: &EventKind, what: impl Into<String>, session: Option<SessionId>) -> anyhow::Result<()> {
    let reason = cli.read_reason.as_deref().and_then(|given| witness_core::one_line_reason(given, MAX_REASON_CHARS));
    if reason.is_none() && cli.config.is_some() && crate::locate::load_config(cli)?.review.require_reason {
        anyhow::bail!(
            "reading recordings needs a reason here ([review] require_reason): give one with --read-reason, e.g. --read-reason \"INC-1234\""
        );
    }
    let mut action = HostAction::now(kind, host_user(), what).because(reason);
    if let Some(session) = session {
        action = action.of_session(session.to_string());
    }
    spool(data_dir, &action)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::user_name;

    #[test]
    fn a_uid_is_named_by_its_passwd_line() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nwitness:x:998:998::/var/lib/witness:/usr/sbin/nologin\n";
        assert_eq!(user_name(passwd, 998).as_deref(), Some("witness"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 5), None);
    }
}
