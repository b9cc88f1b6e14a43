//! A session's connections to its target. The first channel uses the session's own connection;
//! a channel opened while another holds it gets a connection of its own, closed with it.
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
use std::sync::Arc;
use std::time::Duration;

use russh::Disconnect;

use crate::back::{self, Link, TargetHandle};
use crate::SshTarget;

/// How long witness waits to say goodbye to a target that may no longer answer.
const GOODBYE: Duration = Duration::from_secs(1);

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
}

/// A channel's connection, held for as long as the channel is relayed.
pub(crate) enum Lease {
    /// The session's connection, free again when the lease is dropped.
    Main { handle: Arc<TargetHandle>, free: Arc<AtomicBool> },
    /// A connection of the channel's own, ended with the lease.
    Own { handle: TargetHandle, leaving: Arc<AtomicBool> },
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
        Targets { target, known_hosts, timeout, link, main: Arc::new(main), main_leaving, main_free: Arc::new(AtomicBool::new(true)) }
    }

    /// The session's connection, for global requests.
    pub(crate) fn main(&self) -> &TargetHandle {
        &self.main
    }

    /// How long a login or a channel open may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection for one channel: the session's when no channel holds it, else a new one.
    pub(crate) async fn lease(&self) -> Result<Lease, String> {
        if self.main_free.swap(false, Ordering::AcqRel) {
            return Ok(Lease::Main { handle: self.main.clone(), free: self.main_free.clone() });
        }
        let leaving = Arc::new(AtomicBool::new(false));
        match back::connect(&self.target, &self.known_hosts, self.timeout, self.link.clone(), leaving.clone()).await {
            Ok(handle) => Ok(Lease::Own { handle, leaving }),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Ends the session's connection (its channels' own connections end with their leases).
    pub(crate) async fn disconnect(&self, why: &str) {
        self.main_leaving.store(true, Ordering::Release);
        let _ = tokio::time::timeout(GOODBYE, self.main.disconnect(Disconnect::ByApplication, why, "en")).await;
    }
}

// === impl Lease ===

impl Lease {
    pub(crate) fn handle(&self) -> &TargetHandle {
        match self {
            Lease::Main { handle, .. } => handle,
            Lease::Own { handle, .. } => handle,
        }
    }

    /// Gives the connection back: the session's is free again, a channel's own is ended.
    pub(crate) async fn release(self) {
        if let Lease::Own { handle, leaving } = &self {
            leaving.store(true, Ordering::Release);
            let _ = tokio::time::timeout(GOODBYE, handle.disconnect(Disconnect::ByApplication, "the channel ended", "en")).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self {
            Lease::Main { free, .. } => free.store(true, Ordering::Release),
            // Dropping the handle ends the connection; its end is witness's doing.
            Lease::Own { leaving, .. } => leaving.store(true, Ordering::Release),
        }
    }
}
