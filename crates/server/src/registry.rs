//! Live sessions, so that they can be ended from outside: when the token they authenticated with
//! is revoked, when an administrator ends one, and when witness shuts down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use witness_core::{Interrupt, Protocol, SessionId};

/// The registry of live sessions, shared by every listener.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    sessions: Mutex<HashMap<u64, Entry>>,
    /// Set once shutdown began: sessions registering after that are told at once.
    shutting_down: std::sync::atomic::AtomicBool,
    /// Bumped whenever a session ends, for shutdown to wait on.
    ended: watch::Sender<u64>,
}

struct Entry {
    session: SessionId,
    credential: String,
    protocol: Protocol,
    tx: watch::Sender<Option<Interrupt>>,
}

/// Unregisters its session when dropped.
pub struct Registration {
    registry: Registry,
    id: u64,
}

impl Registry {
    pub fn register(&self, session: SessionId, credential: &str, protocol: Protocol) -> (watch::Receiver<Option<Interrupt>>, Registration) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Checked under the map lock, which interrupt_all also takes: a session registering while
        // shutdown begins is either told by interrupt_all or sees the flag here.
        let mut sessions = self.lock();
        let initial = self.inner.shutting_down.load(Ordering::SeqCst).then_some(Interrupt::Shutdown);
        let (tx, rx) = watch::channel(initial);
        sessions.insert(id, Entry { session, credential: credential.to_string(), protocol, tx });
        drop(sessions);
        (rx, Registration { registry: self.clone(), id })
    }

    /// The distinct credentials of live sessions.
    pub fn live_credentials(&self) -> Vec<String> {
        let mut credentials: Vec<String> = self.lock().values().map(|e| e.credential.clone()).collect();
        credentials.sort();
        credentials.dedup();
        credentials
    }

    /// Ends the live sessions that authenticated with `credential`; returns how many were not
    /// ending already (a session takes a moment to end, and the revocation poll asks again
    /// meanwhile: it logs each revocation once).
    pub fn interrupt_credential(&self, credential: &str, why: Interrupt) -> usize {
        let sessions = self.lock();
        sessions
            .values()
            .filter(|e| e.credential == credential)
            .filter(|e| e.tx.send_if_modified(|interrupt| interrupt.is_none() && interrupt.replace(why.clone()).is_none()))
            .count()
    }

    /// Ends the live session recorded as `session`; false when no such session is live here.
    pub fn interrupt_session(&self, session: SessionId, why: Interrupt) -> bool {
        let sessions = self.lock();
        let Some(entry) = sessions.values().find(|e| e.session == session) else { return false };
        let _ = entry.tx.send(Some(why));
        true
    }

    /// Whether the session recorded as `session` is live here.
    pub fn is_live(&self, session: SessionId) -> bool {
        self.lock().values().any(|e| e.session == session)
    }

    /// Ends every live session (shutdown).
    pub fn interrupt_all(&self, why: Interrupt) {
        let sessions = self.lock();
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        for entry in sessions.values() {
            let _ = entry.tx.send(Some(why.clone()));
        }
    }

    /// Changes whenever a session ends.
    pub fn ended(&self) -> watch::Receiver<u64> {
        self.inner.ended.subscribe()
    }

    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// Live sessions by protocol; every client protocol is there from the start, at zero, so
    /// that a scraper sees the series before the first session.
    pub fn live_by_protocol(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(Protocol, u64)> = Protocol::CLIENTS.iter().map(|&p| (p, 0)).collect();
        for entry in self.lock().values() {
            match counts.iter_mut().find(|(p, _)| *p == entry.protocol) {
                Some((_, n)) => *n += 1,
                None => counts.push((entry.protocol, 1)),
            }
        }
        let mut counts: Vec<(&'static str, u64)> = counts.into_iter().map(|(p, n)| (p.as_str(), n)).collect();
        counts.sort();
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.inner.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.inner.ended.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_administrator_ends_one_session_and_no_other() {
        let registry = Registry::default();
        let (one, two) = (SessionId::new(), SessionId::new());
        let (a, _ga) = registry.register(one, "tok_a", Protocol::Postgres);
        let (b, _gb) = registry.register(two, "tok_a", Protocol::Postgres);
        let why = Interrupt::Ended { by: "alice".into(), reason: "runaway query".into() };
        assert!(registry.interrupt_session(one, why.clone()));
        assert_eq!(*a.borrow(), Some(why));
        assert_eq!(*b.borrow(), None, "the same token's other session goes on");
        assert!(!registry.interrupt_session(SessionId::new(), Interrupt::Shutdown), "an unknown session is not live");
        drop(_ga);
        assert!(!registry.is_live(one) && registry.is_live(two));
    }

    #[test]
    fn revocation_reaches_only_the_sessions_of_that_credential() {
        let registry = Registry::default();
        let (a, _ga) = registry.register(SessionId::new(), "tok_a", Protocol::Postgres);
        let (b, _gb) = registry.register(SessionId::new(), "tok_b", Protocol::Ssh);
        assert_eq!(registry.interrupt_credential("tok_a", Interrupt::Revoked), 1);
        assert_eq!(*a.borrow(), Some(Interrupt::Revoked));
        assert_eq!(registry.interrupt_credential("tok_a", Interrupt::Revoked), 0, "a session already ending is not counted again");
        assert_eq!(*b.borrow(), None);
        assert_eq!(registry.live_by_protocol(), vec![("http", 0), ("kubernetes", 0), ("mysql", 0), ("postgres", 1), ("ssh", 1)]);
        drop(_ga);
        assert_eq!(registry.live(), 1);
        registry.interrupt_all(Interrupt::Shutdown);
        assert_eq!(*b.borrow(), Some(Interrupt::Shutdown));
        let (late, _gl) = registry.register(SessionId::new(), "tok_c", Protocol::Ssh);
        assert_eq!(*late.borrow(), Some(Interrupt::Shutdown), "sessions starting during shutdown end at once");
    }
}
