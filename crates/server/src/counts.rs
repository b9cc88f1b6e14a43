//! What `/metrics` counts of the gate's work: logins refused and requests decided per client
//! protocol, and requests decided and targets that failed per connection. The gate adds to them;
//! the review API reads them. Every client protocol and every configured connection is present
//! (at zero) from the start, so a dashboard sees it before its first request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use witness_core::{AuthRefused, Protocol, Verdict};

/// The gate's counters, shared by the gate and the review API.
#[derive(Default)]
pub struct Counts {
    pub auth_failures: AuthFailures,
    pub decisions: DecisionCounts,
    pub connections: ByConnection,
}

impl Counts {
    /// Counters for these connections (the config's; they change only with a restart).
    pub fn new(connections: impl IntoIterator<Item = String>) -> Counts {
        Counts { connections: ByConnection::new(connections), ..Counts::default() }
    }

    /// A request of `protocol` on `connection` was decided.
    pub fn decided(&self, protocol: Protocol, connection: &str, verdict: &Verdict) {
        self.decisions.count(protocol, verdict);
        self.connections.decided(connection, verdict);
    }
}

/// Per configured connection: requests allowed, denied and held, and sessions whose target
/// failed. The set of names is fixed when witness starts, so that no lock is taken per request
/// and a client cannot add series: a name not configured is not counted.
#[derive(Default)]
pub struct ByConnection {
    counts: HashMap<String, [AtomicU64; 4]>,
}

/// What [`ByConnection::snapshot`] gives for one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub allowed: u64,
    pub denied: u64,
    pub held: u64,
    pub target_failures: u64,
}

const ALLOWED: usize = 0;
const DENIED: usize = 1;
const HELD: usize = 2;
const TARGET_FAILURES: usize = 3;

impl ByConnection {
    fn new(names: impl IntoIterator<Item = String>) -> ByConnection {
        ByConnection { counts: names.into_iter().map(|name| (name, Default::default())).collect() }
    }

    pub fn decided(&self, connection: &str, verdict: &Verdict) {
        let which = match verdict {
            Verdict::Allow { .. } => ALLOWED,
            Verdict::Deny { .. } => DENIED,
            Verdict::Hold(_) => HELD,
        };
        self.add(connection, which);
    }

    pub fn target_failed(&self, connection: &str) {
        self.add(connection, TARGET_FAILURES);
    }

    fn add(&self, connection: &str, which: usize) {
        if let Some(counts) = self.counts.get(connection) {
            counts[which].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every configured connection, by name.
    pub fn snapshot(&self) -> Vec<(String, ConnectionCounts)> {
        let mut out: Vec<(String, ConnectionCounts)> = self
            .counts
            .iter()
            .map(|(name, n)| {
                let n = |i: usize| n[i].load(Ordering::Relaxed);
                (
                    name.clone(),
                    ConnectionCounts { allowed: n(ALLOWED), denied: n(DENIED), held: n(HELD), target_failures: n(TARGET_FAILURES) },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// A counter per client protocol.
#[derive(Default)]
struct PerProtocol {
    counts: [AtomicU64; Protocol::CLIENTS.len()],
}

impl PerProtocol {
    fn add(&self, protocol: Protocol) {
        if let Some(i) = Protocol::CLIENTS.iter().position(|&p| p == protocol) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Protocol::CLIENTS.iter().zip(&self.counts).map(|(p, n)| (p.as_str(), n.load(Ordering::Relaxed)))
    }
}

/// Logins refused, by protocol: a wrong or revoked token, a JWT refused, an SSH key no identity
/// has (SSH clients offer their keys one by one, so each refused offer counts).
#[derive(Default)]
pub struct AuthFailures {
    refused: PerProtocol,
}

impl AuthFailures {
    /// Counts `result` if it is a refusal, and passes it on.
    pub fn count<T>(&self, protocol: Protocol, result: Result<T, AuthRefused>) -> Result<T, AuthRefused> {
        if result.is_err() {
            self.refused.add(protocol);
        }
        result
    }

    /// (protocol, refused logins), every client protocol present from the start.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.refused.snapshot().map(|(p, n)| (p.to_string(), n)).collect()
    }
}

/// Requests decided by policy, by protocol and decision.
#[derive(Default)]
pub struct DecisionCounts {
    allowed: PerProtocol,
    denied: PerProtocol,
    held: PerProtocol,
}

impl DecisionCounts {
    pub fn count(&self, protocol: Protocol, verdict: &Verdict) {
        match verdict {
            Verdict::Allow { .. } => self.allowed.add(protocol),
            Verdict::Deny { .. } => self.denied.add(protocol),
            Verdict::Hold(_) => self.held.add(protocol),
        }
    }

    /// (protocol, decision, count) for every pair.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (decision, counts) in [("allow", &self.allowed), ("deny", &self.denied), ("hold", &self.held)] {
            out.extend(counts.snapshot().map(|(p, n)| (p.to_string(), decision.to_string(), n)));
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_connection_counts_from_zero_and_no_other_is_added() {
        let counts = Counts::new(["app".to_string(), "web".to_string()]);
        counts.connections.decided("app", &Verdict::Allow { rule: None });
        counts.connections.decided("app", &Verdict::Deny { rule: "r".into(), message: "m".into(), classes: vec![] });
        counts.connections.target_failed("web");
        counts.connections.target_failed("made-up");
        let snapshot = counts.connections.snapshot();
        assert_eq!(
            snapshot,
            [
                ("app".to_string(), ConnectionCounts { allowed: 1, denied: 1, held: 0, target_failures: 0 }),
                ("web".to_string(), ConnectionCounts { allowed: 0, denied: 0, held: 0, target_failures: 1 }),
            ]
        );
    }
}
