//! One session's recording, in order. Events come from the request handler (which waits until
//! each is durable before it forwards a request) and from bodies streaming through (which cannot
//! wait: a body's record is handed over as it ends, from inside a poll or a drop). One task per
//! session takes them in the order given and appends them; when the last handle is gone it
//! closes the session with the reason set by then.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use witness_core::Event;
use witness_ledger::SessionWriter;

/// Why a session ends when nothing else was said: the client's connection closed.
pub const CLIENT_CLOSED: &str = "the client closed the connection";

/// A handle on a session's recording; clones record into the same session.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Entry>,
    /// Why the session ends; set before the last handle is dropped.
    pub end_reason: Arc<Mutex<String>>,
}

/// One event, and who waits for it to be durable.
struct Entry {
    event: Event,
    done: Option<oneshot::Sender<bool>>,
}

/// The ledger refused an event; nothing more of the session can be recorded.
#[derive(Debug, thiserror::Error)]
#[error("witness cannot record this session's requests (the ledger refused a record), so it forwards none; see witness's log")]
pub struct NotRecorded;

impl Recorder {
    /// Starts the session's recording task; it ends once every handle is dropped.
    pub fn start(writer: SessionWriter) -> (Recorder, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Entry>();
        let end_reason = Arc::new(Mutex::new(CLIENT_CLOSED.to_string()));
        let reason = end_reason.clone();
        let task = tokio::spawn(async move {
            let mut broken = false;
            while let Some(Entry { event, done }) = rx.recv().await {
                let recorded = !broken
                    && match writer.submit(&event).await {
                        Ok(pending) => pending.wait().await.is_ok(),
                        Err(_) => false,
                    };
                if !recorded && !broken {
                    tracing::error!(session = %writer.id(), kind = %event.kind, "cannot record an HTTP event; the session records nothing more");
                    broken = true;
                }
                if let Some(done) = done {
                    let _ = done.send(recorded);
                }
            }
            let reason = reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Err(e) = writer.close(&reason).await {
                tracing::error!(error = %e, "cannot record the end of an HTTP session");
            }
        });
        // Bounded in practice: HTTP/1.1 runs one request of a connection at a time, so at most a
        // request's, its body's and its response's records wait here.
        (Recorder { tx, end_reason }, task)
    }

    /// Records `event` and waits until it is durable.
    pub async fn record(&self, event: Event) -> Result<(), NotRecorded> {
        let (done, durable) = oneshot::channel();
        self.tx.send(Entry { event, done: Some(done) }).map_err(|_| NotRecorded)?;
        match durable.await {
            Ok(true) => Ok(()),
            _ => Err(NotRecorded),
        }
    }

    /// Hands `event` over to be recorded after those before it, without waiting.
    pub fn record_later(&self, event: Event) {
        let _ = self.tx.send(Entry { event, done: None });
    }

    /// Says why the session ends (the first reason given stands).
    pub fn ending(&self, reason: &str) {
        let mut end = self.end_reason.lock().unwrap_or_else(|p| p.into_inner());
        if *end == CLIENT_CLOSED {
            *end = reason.to_string();
        }
    }
}
