//! What a channel's client sends toward the target, queued (boundedly) between the half that
//! reads the client and the target's window. The reader goes on reading the client while the
//! target's window is closed, so that russh's loop, which waits whenever one channel's queue is
//! full, keeps moving for the connection's other channels and for the client's window
//! adjustments (which the other half waits for: an SFTP client sends its read requests before it
//! reads the replies). Past [`OUTBOX_BYTES`] the reader waits, and the client's window for this
//! channel is what holds its sender back.
//!
//! What this module does not do: record (bytes are recorded before they are queued).

use std::sync::Arc;

use bytes::Bytes;
use russh::{client, ChannelWriteHalf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::channel::Stop;

/// Bytes one channel may hold for the target: the window witness gives the client (a client that
/// keeps to its window never has more in flight).
pub(crate) const OUTBOX_BYTES: usize = crate::CHANNEL_WINDOW as usize;

/// What goes to the target through the outbox, in order.
pub(crate) enum Input {
    Data(Bytes),
    ExtendedData(u32, Bytes),
    Eof,
}

/// The reader's end.
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<(Input, OwnedSemaphorePermit)>,
    /// Bytes the outbox may still take; each message takes at least one, so their number is
    /// bounded too.
    room: Arc<Semaphore>,
}

/// The writer's end.
pub(crate) struct Inbox {
    queue: mpsc::UnboundedReceiver<(Input, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
}

pub(crate) fn outbox() -> (Outbox, Inbox) {
    let (queue, receiver) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(OUTBOX_BYTES));
    (Outbox { queue, room: room.clone() }, Inbox { queue: receiver, room })
}

// === impl Input ===

impl Input {
    fn cost(&self) -> u32 {
        let n_bytes = match self {
            Input::Data(data) | Input::ExtendedData(_, data) => data.len(),
            Input::Eof => 0,
        };
        n_bytes.clamp(1, OUTBOX_BYTES) as u32
    }
}

// === impl Outbox ===

impl Outbox {
    /// Queues `input`, waiting while the outbox is full; false once the writer has stopped.
    pub(crate) async fn push(&self, input: Input) -> bool {
        let Ok(permit) = self.room.clone().acquire_many_owned(input.cost()).await else { return false };
        self.queue.send((input, permit)).is_ok()
    }

    /// Waits until everything queued has reached the target, for a request that must not
    /// overtake it (a command, a subsystem).
    pub(crate) async fn flush(&self) {
        if let Ok(all) = self.room.acquire_many(OUTBOX_BYTES as u32).await {
            drop(all);
        }
    }
}

/// Writes what the outbox holds to the target, in order, until the reader's end is dropped and
/// all is written, or the channel stops.
pub(crate) async fn write(mut inbox: Inbox, target: &ChannelWriteHalf<client::Msg>, mut stop: Stop) {
    while let Some((input, permit)) = inbox.queue.recv().await {
        let written = match input {
            Input::Data(data) => stop.unless(target.data_bytes(data)).await,
            Input::ExtendedData(ext, data) => stop.unless(target.extended_data_bytes(ext, data)).await,
            Input::Eof => stop.unless(target.eof()).await,
        };
        drop(permit);
        if !matches!(written, Some(Ok(()))) {
            break;
        }
    }
    // A reader waiting for room learns that nothing more goes through.
    inbox.room.close();
}
