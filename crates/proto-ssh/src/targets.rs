//! A session's connections to its target. The first channel uses the session's own connection;
//! a channel opened while another holds it gets a connection of its own, which goes back to a
//! small pool of idle connections when the channel ends (so that a run of short commands beside
//! a long one logs in a few times, not once a command). Logins are made one at a time, so that a
//! client opening many channels at once never has the target refuse logins it started together
//! (OpenSSH's `MaxStartups`).
//!
//! Why: russh reads a connection in one loop that hands each message to its channel's bounded
//! queue and waits while that queue is full, and it opens a channel's window as data arrives,
//! not as it is consumed. A channel whose client stops reading therefore stops its whole
//! connection: on a shared connection every other channel would stop with it (new channels time
//! out, a second command waits for the first's reader). On a connection of its own, the stopped
//! loop is exactly the withholding of that one channel's window the target's sender must see,
//! and what witness holds for it stays bounded by russh's queue and the window.
//!
//! What this module does not do: relay anything (that is `channel`'s work).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::Disconnect;

use crate::back::{self, Link, TargetHandle};
use crate::SshTarget;

/// How long witness waits to say goodbye to a target that may no longer answer.
const GOODBYE: Duration = Duration::from_secs(1);

/// Idle connections a session keeps for its next channels; more are closed.
const MAX_IDLE: usize = 4;

/// The session's target and its connections to it.
pub(crate) struct Targets {
    target: Arc<SshTarget>,
    known_hosts: PathBuf,
    /// How long a login or a channel open may take.
    timeout: Duration,
    link: Link,
    /// The connection made at login: global requests (remote forwardings) and the first channel.
    main: Arc<TargetHandle>,
    /// Set when witness itself ends `main`, so that its end is not taken for the target's.
    main_leaving: Arc<AtomicBool>,
    /// Whether no channel holds `main`.
    main_free: Arc<AtomicBool>,
    /// Connections of channels that have ended, for the next ones.
    idle: Arc<Mutex<Vec<Own>>>,
    /// Held while logging in: one login at a time.
    login: tokio::sync::Mutex<()>,
}

/// A connection of a channel's own, and the flag that says witness ends it (its end is then
/// not the target's). An idle one is flagged so too: it carries no channel whose client to tell.
pub(crate) struct Own {
    handle: TargetHandle,
    leaving: Arc<AtomicBool>,
}

/// A channel's connection, held for as long as the channel is relayed.
pub(crate) enum Lease {
    /// The session's connection, free again when the lease is dropped.
    Main { handle: Arc<TargetHandle>, free: Arc<AtomicBool> },
    /// A connection of the channel's own, back to the pool (or ended) with the lease.
    Own { own: Option<Own>, idle: Arc<Mutex<Vec<Own>>> },
}

// === impl Targets ===

impl Targets {
    pub(crate) fn new(
        target: Arc<SshTarget>,
        known_hosts: PathBuf,
        timeout: Duration,
        link: Link,
        main: TargetHandle,
        main_leaving: Arc<AtomicBool>,
    ) -> Targets {
        Targets {
            target,
            known_hosts,
            timeout,
            link,
            main: Arc::new(main),
            main_leaving,
            main_free: Arc::new(AtomicBool::new(true)),
            idle: Arc::new(Mutex::new(Vec::new())),
            login: tokio::sync::Mutex::new(()),
        }
    }

    /// The session's connection, for global requests.
    pub(crate) fn main(&self) -> &TargetHandle {
        &self.main
    }

    /// How long a login or a channel open may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection for one channel: the session's when no channel holds it, else an idle one,
    /// else a new one.
    pub(crate) async fn lease(&self) -> Result<Lease, String> {
        if self.main_free.swap(false, Ordering::AcqRel) {
            return Ok(Lease::Main { handle: self.main.clone(), free: self.main_free.clone() });
        }
        let _one_at_a_time = self.login.lock().await;
        let own = match self.take_idle() {
            Some(own) => own,
            None => {
                let leaving = Arc::new(AtomicBool::new(false));
                let handle = back::connect(&self.target, &self.known_hosts, self.timeout, self.link.clone(), leaving.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Own { handle, leaving }
            }
        };
        own.leaving.store(false, Ordering::Release);
        Ok(Lease::Own { own: Some(own), idle: self.idle.clone() })
    }

    /// An idle connection that is still open.
    fn take_idle(&self) -> Option<Own> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(own) = idle.pop() {
            if !own.handle.is_closed() {
                return Some(own);
            }
        }
        None
    }

    /// Ends the session's connection and its idle ones (its channels' own connections end with
    /// their leases).
    pub(crate) async fn disconnect(&self, why: &str) {
        self.main_leaving.store(true, Ordering::Release);
        let _ = tokio::time::timeout(GOODBYE, self.main.disconnect(Disconnect::ByApplication, why, "en")).await;
        let idle: Vec<Own> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for own in idle {
            own.end(why).await;
        }
    }
}

// === impl Lease ===

impl Lease {
    pub(crate) fn handle(&self) -> &TargetHandle {
        match self {
            Lease::Main { handle, .. } => handle,
            Lease::Own { own, .. } => &own.as_ref().expect("held until the lease goes").handle,
        }
    }

    /// Gives the connection back once its channel has ended: the session's is free again, a
    /// channel's own goes to the idle pool, or is ended when the pool is full.
    pub(crate) async fn release(mut self) {
        if let Lease::Own { own, idle } = &mut self {
            let Some(own) = own.take() else { return };
            own.leaving.store(true, Ordering::Release);
            let full = {
                let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < MAX_IDLE && !own.handle.is_closed() {
                    idle.push(own);
                    None
                } else {
                    Some(own)
                }
            };
            if let Some(own) = full {
                own.end("the channel ended").await;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self {
            Lease::Main { free, .. } => free.store(true, Ordering::Release),
            // A lease dropped without release (its task ended early): dropping the handle ends
            // the connection, and its end is witness's doing.
            Lease::Own { own: Some(own), .. } => own.leaving.store(true, Ordering::Release),
            Lease::Own { own: None, .. } => {}
        }
    }
}

// === impl Own ===

impl Own {
    async fn end(self, why: &str) {
        self.leaving.store(true, Ordering::Release);
        let _ = tokio::time::timeout(GOODBYE, self.handle.disconnect(Disconnect::ByApplication, why, "en")).await;
    }
}
