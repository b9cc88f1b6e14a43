//! `KILL` between witness's sessions. A client knows its connection by the id witness greeted it
//! with, never the target's thread id; `KILL [QUERY|CONNECTION] N` from any session (the mysql
//! client's Ctrl-C opens a second connection for it) is turned into a kill of the target thread
//! behind witness connection N, on the same target and of the same identity only. Another id
//! reaches nothing: a client cannot kill the target's other sessions, or another identity's, by
//! guessing their ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The target thread behind each live witness connection.
#[derive(Clone, Default)]
pub struct Kills {
    live: Arc<Mutex<HashMap<u32, Behind>>>,
}

/// Where a witness connection runs on its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behind {
    pub target: String,
    pub thread: u32,
    /// Whose connection it is.
    pub identity: String,
}

/// Unregisters a connection when dropped.
pub struct KillGuard {
    kills: Kills,
    id: u32,
}

/// What a `KILL` asks for, read from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillRequest {
    /// `KILL QUERY`: only the statement; else the connection.
    pub query_only: bool,
    pub id: u64,
}

impl Kills {
    pub fn register(&self, id: u32, behind: Behind) -> KillGuard {
        self.lock().insert(id, behind);
        KillGuard { kills: self.clone(), id }
    }

    /// The target thread behind witness connection `id`, if it is live on `target` for `identity`.
    pub fn find(&self, id: u64, target: &str, identity: &str) -> Option<u32> {
        let id = u32::try_from(id).ok()?;
        self.lock().get(&id).filter(|behind| behind.target == target && behind.identity == identity).map(|behind| behind.thread)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Behind>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        self.kills.lock().remove(&self.id);
    }
}

/// Reads `KILL [QUERY | CONNECTION] N[;]` (any case, any spaces); None for any other text,
/// `KILL` or not.
pub fn kill_request(text: &str) -> Option<KillRequest> {
    let mut words = text.trim().trim_end_matches(';').split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut word = words.next()?;
    let mut query_only = false;
    if word.eq_ignore_ascii_case("query") {
        query_only = true;
        word = words.next()?;
    } else if word.eq_ignore_ascii_case("connection") {
        word = words.next()?;
    }
    if words.next().is_some() || word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(KillRequest { query_only, id: word.parse().ok()? })
}

/// Whether text is a `KILL` of any form (so that one witness cannot map is refused, not run).
pub fn is_kill(text: &str) -> bool {
    text.trim_start().get(..4).is_some_and(|word| word.eq_ignore_ascii_case("kill"))
        && text.trim_start()[4..].starts_with(|c: char| c.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_are_read_in_their_plain_forms_only() {
        assert_eq!(kill_request("KILL QUERY 12"), Some(KillRequest { query_only: true, id: 12 }));
        assert_eq!(kill_request("  kill   connection 7 ;"), Some(KillRequest { query_only: false, id: 7 }));
        assert_eq!(kill_request("kill 3"), Some(KillRequest { query_only: false, id: 3 }));
        for other in ["kill user bob", "kill query id 5", "kill 3 4", "kill -1", "kill", "killer 3", "select 1"] {
            assert_eq!(kill_request(other), None, "{other}");
        }
        assert!(is_kill("KILL USER bob") && is_kill("kill\t3") && !is_kill("killer") && !is_kill("select 1"));
    }

    #[test]
    fn a_kill_reaches_only_a_witness_connection_of_the_same_identity_and_target() {
        let kills = Kills::default();
        let guard = kills.register(5, Behind { target: "db:3306".into(), thread: 88, identity: "claude".into() });
        assert_eq!(kills.find(5, "db:3306", "claude"), Some(88));
        assert_eq!(kills.find(5, "other:3306", "claude"), None);
        assert_eq!(kills.find(5, "db:3306", "mallory"), None, "another identity's connection");
        assert_eq!(kills.find(88, "db:3306", "claude"), None, "a target thread id is not a witness connection");
        drop(guard);
        assert_eq!(kills.find(5, "db:3306", "claude"), None);
    }
}
