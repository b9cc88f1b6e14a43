//! Connections that have not logged in yet. They cost witness a socket and a handshake's state
//! each while proving nothing, so they are bounded apart from authenticated sessions: per source
//! address, in total, and in time (the login timeout). A new connection is never turned away
//! because of them: when a bound is reached, the connection that has waited longest under it is
//! closed instead, preferring one that has not sent a byte yet. An idle flood thus only ever
//! closes its own connections, and a client that logs in at once gets in however many others
//! wait.
//!
//! What this does not do: touch connections once they have logged in, or bound authenticated
//! sessions (the accept loop's semaphore does), or speak any protocol (`accept.rs` tells a
//! closed connection why, where its protocol lets it).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use witness_core::PendingLogin;

/// The bounds on connections that have not logged in (`[limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// From connecting to being authenticated.
    pub timeout: Duration,
    /// Connections waiting to log in, from all addresses together.
    pub max_total: usize,
    /// Connections waiting to log in from one address.
    pub max_per_address: usize,
}

/// Which bound a new connection met, so that an older one was closed to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crowded {
    /// The new connection's address had `max_per_address` waiting.
    Address,
    /// `max_total` were waiting.
    Total,
}

/// Why a connection that had not logged in was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Crowded(Crowded),
    TimedOut,
}

/// How a connection's wait to log in ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    LoggedIn,
    Cut(Cut),
}

/// The connections waiting to log in, shared by every listener.
pub struct Logins {
    limits: LoginLimits,
    state: Mutex<State>,
}

/// One connection's place among those waiting to log in; the accept loop holds it.
pub struct Ticket {
    id: u64,
    logins: Arc<Logins>,
    deadline: Instant,
    /// Told which bound closed the connection; dropped unsent when it logged in (or left).
    crowded: oneshot::Receiver<Crowded>,
}

struct State {
    waiting: Waiting<oneshot::Sender<Crowded>>,
    report: Report,
}

/// Connections waiting to log in, oldest first (ids grow with time). Plain data: what is kept per
/// connection is up to the caller.
struct Waiting<T> {
    entries: BTreeMap<u64, Entry<T>>,
    per_address: HashMap<IpAddr, usize>,
    next_id: u64,
}

struct Entry<T> {
    address: IpAddr,
    /// Has not sent a byte yet (known only for protocols whose clients speak first).
    silent: bool,
    value: T,
}

/// Cuts counted since the last log line, so that a flood makes one line per interval, not one
/// per connection.
#[derive(Default)]
struct Report {
    last_line: Option<Instant>,
    crowded_address: u64,
    crowded_total: u64,
    timed_out: u64,
}

/// At most one log line about cut connections per this interval.
const REPORT_EVERY: Duration = Duration::from_secs(10);

// === impl Logins ===

impl Logins {
    pub fn new(limits: LoginLimits) -> Arc<Logins> {
        Arc::new(Logins { limits, state: Mutex::new(State { waiting: Waiting::new(), report: Report::default() }) })
    }

    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// Counts a new connection from `address` among those waiting to log in, closing the one
    /// that waited longest under a bound it meets. `silent` says that it has not sent anything yet.
    /// The front gets the `PendingLogin` and says through it when the client has logged in.
    pub fn admit(self: &Arc<Self>, address: IpAddr, silent: bool) -> (Ticket, PendingLogin) {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            let (id, evicted) = state.waiting.admit(address, silent, tx, &self.limits);
            if let Some((crowded, tell)) = evicted {
                // The evicted connection's task reports its cut; it may already be gone.
                let _ = tell.send(crowded);
            }
            id
        };
        let logins = self.clone();
        let login = PendingLogin::new(move || {
            logins.leave(id);
        });
        (Ticket { id, logins: self.clone(), deadline: Instant::now() + self.limits.timeout, crowded: rx }, login)
    }

    /// Takes a connection out of the waiting ones (it logged in, or ended); whether it was still
    /// there.
    fn leave(&self, id: u64) -> bool {
        self.lock().waiting.remove(id).is_some()
    }

    /// Logs how many connections were cut since the last line, at most once per interval.
    pub fn report(&self, cut: Cut, address: IpAddr) {
        let mut state = self.lock();
        let report = &mut state.report;
        match cut {
            Cut::Crowded(Crowded::Address) => report.crowded_address += 1,
            Cut::Crowded(Crowded::Total) => report.crowded_total += 1,
            Cut::TimedOut => report.timed_out += 1,
        }
        let now = Instant::now();
        if report.last_line.is_some_and(|last| now < last + REPORT_EVERY) {
            return;
        }
        tracing::warn!(
            over_address_limit = report.crowded_address,
            over_total_limit = report.crowded_total,
            login_timed_out = report.timed_out,
            last_address = %address,
            max_unauthenticated_per_address = self.limits.max_per_address,
            max_unauthenticated = self.limits.max_total,
            login_timeout = ?self.limits.timeout,
            "closed connections that had not logged in (counts since the last such line, at most one per {} s); see [limits]",
            REPORT_EVERY.as_secs()
        );
        *report = Report { last_line: Some(now), ..Report::default() };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === impl Ticket ===

impl Ticket {
    /// The connection has sent its first byte: from now on it is closed to make room only after
    /// every silent one.
    pub fn spoke(&self) {
        self.logins.lock().waiting.spoke(self.id);
    }

    /// Waits until the connection logs in, or must be closed (crowded out, or the login timeout).
    /// Cancel-safe: it may be called again after being dropped unfinished.
    pub async fn outcome(&mut self) -> Outcome {
        tokio::select! {
            told = &mut self.crowded => return outcome_of(told),
            () = tokio::time::sleep_until(self.deadline) => {}
        }
        if self.logins.leave(self.id) {
            return Outcome::Cut(Cut::TimedOut);
        }
        // It left the waiting ones just now: logged in, or crowded out; the channel says which.
        outcome_of((&mut self.crowded).await)
    }

    /// The connection ended by itself before logging in.
    pub fn ended(self) {
        self.logins.leave(self.id);
    }
}

fn outcome_of(told: Result<Crowded, oneshot::error::RecvError>) -> Outcome {
    match told {
        Ok(crowded) => Outcome::Cut(Cut::Crowded(crowded)),
        // Dropped without a word: the connection left the waiting ones by logging in.
        Err(_) => Outcome::LoggedIn,
    }
}

// === impl Waiting ===

impl<T> Waiting<T> {
    fn new() -> Self {
        Waiting { entries: BTreeMap::new(), per_address: HashMap::new(), next_id: 0 }
    }

    /// Adds a connection; when that meets a bound, first removes and returns the connection that
    /// waited longest under it (silent ones before those that spoke), with the bound it met.
    fn admit(&mut self, address: IpAddr, silent: bool, value: T, limits: &LoginLimits) -> (u64, Option<(Crowded, T)>) {
        let crowded = if self.per_address.get(&address).copied().unwrap_or(0) >= limits.max_per_address {
            Some(Crowded::Address)
        } else if self.entries.len() >= limits.max_total {
            Some(Crowded::Total)
        } else {
            None
        };
        let evicted = crowded.and_then(|crowded| {
            let victim = self.longest_waiting(|entry| crowded == Crowded::Total || entry.address == address)?;
            self.remove(victim).map(|value| (crowded, value))
        });
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, Entry { address, silent, value });
        *self.per_address.entry(address).or_default() += 1;
        (id, evicted)
    }

    /// The oldest silent entry among those `eligible`, else the oldest of them.
    fn longest_waiting(&self, eligible: impl Fn(&Entry<T>) -> bool) -> Option<u64> {
        let mut oldest = None;
        for (id, entry) in self.entries.iter().filter(|(_, entry)| eligible(entry)) {
            if entry.silent {
                return Some(*id);
            }
            oldest.get_or_insert(*id);
        }
        oldest
    }

    fn spoke(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.silent = false;
        }
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let entry = self.entries.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&entry.address) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&entry.address);
            }
        }
        Some(entry.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step: a connection arrives (address, silent), speaks, or leaves.
    enum Step {
        Arrive(&'static str, bool),
        Speak(u64),
        Leave(u64),
    }
    use Step::*;

    /// Runs the steps with at most 4 waiting in total and 2 per address, and checks which
    /// connection each arrival closed (by its id, which is its arrival's number), if any.
    fn check(steps: &[(Step, Option<(Crowded, u64)>)]) {
        let limits = LoginLimits { timeout: Duration::from_secs(10), max_total: 4, max_per_address: 2 };
        let mut waiting = Waiting::new();
        for (i, (step, expect)) in steps.iter().enumerate() {
            let evicted = match step {
                Arrive(address, silent) => {
                    let id = waiting.next_id;
                    waiting.admit(address.parse().unwrap(), *silent, id, &limits).1
                }
                Speak(id) => {
                    waiting.spoke(*id);
                    None
                }
                Leave(id) => {
                    assert!(waiting.remove(*id).is_some(), "step {i}: {id} was not waiting");
                    None
                }
            };
            assert_eq!(evicted, *expect, "step {i}");
            assert!(waiting.per_address.values().all(|n| *n <= limits.max_per_address), "step {i}");
            assert_eq!(waiting.per_address.values().sum::<usize>(), waiting.entries.len(), "step {i}");
            assert!(waiting.entries.len() <= limits.max_total, "step {i}");
        }
    }

    #[test]
    fn a_full_address_closes_its_own_longest_waiting_connection() {
        check(&[
            (Arrive("10.0.0.1", true), None),
            (Arrive("10.0.0.2", true), None),
            (Arrive("10.0.0.1", true), None),
            (Arrive("10.0.0.1", true), Some((Crowded::Address, 0))),
            (Arrive("10.0.0.1", true), Some((Crowded::Address, 2))),
        ]);
    }

    #[test]
    fn a_full_house_closes_the_longest_waiting_connection_of_any_address() {
        check(&[
            (Arrive("10.0.0.1", true), None),
            (Arrive("10.0.0.2", true), None),
            (Arrive("10.0.0.3", true), None),
            (Arrive("10.0.0.4", true), None),
            (Arrive("10.0.0.5", true), Some((Crowded::Total, 0))),
            (Leave(2), None),
            (Arrive("10.0.0.6", true), None),
            (Arrive("10.0.0.6", true), Some((Crowded::Total, 1))),
        ]);
    }

    #[test]
    fn connections_that_said_nothing_go_before_those_logging_in() {
        check(&[
            (Arrive("10.0.0.1", false), None),
            (Arrive("10.0.0.1", true), None),
            (Arrive("10.0.0.1", true), Some((Crowded::Address, 1))),
            (Speak(2), None),
            (Arrive("10.0.0.1", true), Some((Crowded::Address, 0))),
            (Arrive("10.0.0.2", false), None),
            (Arrive("10.0.0.3", true), None),
            (Arrive("10.0.0.4", false), Some((Crowded::Total, 3))),
            (Arrive("10.0.0.5", false), Some((Crowded::Total, 5))),
        ]);
    }

    #[test]
    fn an_address_that_has_logged_in_frees_its_places() {
        check(&[
            (Arrive("10.0.0.1", true), None),
            (Arrive("10.0.0.1", true), None),
            (Leave(0), None),
            (Leave(1), None),
            (Arrive("10.0.0.1", true), None),
            (Arrive("10.0.0.1", true), None),
        ]);
    }
}
