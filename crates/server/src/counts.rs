//! What `/metrics` counts of the gate's work, per client protocol: logins refused and requests
//! decided. The gate adds to them; the review API reads them. Every client protocol is present
//! (at zero) from the start, so a dashboard sees a protocol before its first request.

use std::sync::atomic::{AtomicU64, Ordering};

use witness_core::{AuthRefused, Protocol, Verdict};

/// The gate's counters, shared by the gate and the review API.
#[derive(Default)]
pub struct Counts {
    pub auth_failures: AuthFailures,
    pub decisions: DecisionCounts,
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
