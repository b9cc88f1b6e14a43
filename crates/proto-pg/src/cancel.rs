//! Cancel keys: clients get a key made up by witness for each session, and a cancel request with
//! that key is recorded in its session and forwarded to the target with the target's real key.
//! It also wakes the session if a statement of it is held for approval: that one is withdrawn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use witness_core::{kind, Direction, Event};
use witness_ledger::SessionWriter;

/// The live sessions' cancel keys, shared by all connections of one front.
#[derive(Clone, Default)]
pub struct CancelKeys {
    inner: Arc<Mutex<HashMap<(i32, i32), CancelTarget>>>,
}

struct CancelTarget {
    address: String,
    key: (i32, i32),
    session: SessionWriter,
    cancelled: Arc<Notify>,
}

/// Removes a session's key when the session ends.
pub(crate) struct KeyGuard {
    keys: CancelKeys,
    key: (i32, i32),
    /// Notified (waiters only) when a cancel request for the session arrives.
    pub(crate) cancelled: Arc<Notify>,
}

impl CancelKeys {
    /// Makes up a key for a session whose target key is `target_key`.
    pub(crate) fn register(&self, address: &str, target_key: (i32, i32), session: SessionWriter) -> ((i32, i32), KeyGuard) {
        let mut map = self.lock();
        let key = loop {
            let key: (i32, i32) = (rand::random::<i32>() & 0x7fff_ffff, rand::random());
            if !map.contains_key(&key) {
                break key;
            }
        };
        let cancelled = Arc::new(Notify::new());
        map.insert(key, CancelTarget { address: address.to_string(), key: target_key, session, cancelled: cancelled.clone() });
        (key, KeyGuard { keys: self.clone(), key, cancelled })
    }

    /// Records and forwards a cancel request; unknown keys are ignored, as PostgreSQL does.
    pub(crate) async fn cancel(&self, key: (i32, i32), client: &str) {
        let found = self.lock().get(&key).map(|t| (t.address.clone(), t.key, t.session.clone(), t.cancelled.clone()));
        let Some((address, target_key, session, cancelled)) = found else {
            tracing::debug!(client, "cancel request with an unknown key ignored");
            return;
        };
        let event = Event::note(kind::PG_CANCEL, Direction::Request, "cancel request").with_attr("client_addr", client);
        if let Err(e) = session.append(&event).await {
            tracing::warn!(error = %e, "cancel request not recorded, so not forwarded");
            return;
        }
        // A statement held for approval is withdrawn; one running on the target is cancelled there.
        cancelled.notify_waiters();
        if let Err(e) = crate::back::send_cancel(&address, target_key).await {
            tracing::warn!(address, error = %e, "could not forward a cancel request to the target");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), CancelTarget>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.keys.lock().remove(&self.key);
    }
}
