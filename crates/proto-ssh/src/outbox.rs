//! What a channel holds for one peer while that peer's window is closed: a queue bounded in
//! bytes between the half that reads the other peer and the writes to this one, one each way.
//!
//! russh reads each connection in one loop, which waits whenever one channel's queue is full, and
//! it opens a channel's window as bytes arrive rather than as they are used. A half that stopped
//! reading while it waited for a window would therefore stop its connection's loop, and with it
//! the window adjustments the channel's other direction waits for: an SFTP client sending its
//! requests before it reads the replies, or a `cat` echoing its input to a slow reader, would
//! stall both ways. So each half goes on reading into its outbox while the peer it writes to is
//! slow, and waits only once the outbox is full.
//!
//! That bounds what a channel holds, and it is also where the design stops: a client that sends
//! more than the outboxes and windows hold (about 14 MiB) ahead of what it reads back on one
//! channel fills both, and that channel (only it) stalls, where directly the sender would merely
//! be slowed. Withholding one channel's window until its bytes are used would end that, and
//! russh 0.65 has no call for it.
//!
//! What this module does not do: record (bytes are recorded before they are queued).

use std::sync::Arc;

use bytes::Bytes;
use russh::{client, server, ChannelWriteHalf, Sig};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::channel::Stop;

/// Bytes a channel may hold for the target: the window witness gives the client (a client that
/// keeps to its window never has more in flight).
pub(crate) const TOWARD_TARGET_BYTES: usize = crate::CHANNEL_WINDOW as usize;

/// Bytes a channel may hold for the client: three times the window witness gives the target, so
/// that while the client's window is closed, what the target answers to the bytes it holds (up
/// to its window), to those waiting in the outbox toward it and to those the client has in
/// flight (a window each) can still be taken, and the target's connection keeps reading the
/// window adjustments the client's bytes wait for. Each window of room lets a client run about
/// 2 MiB further ahead of its reading (see the module's note).
pub(crate) const TOWARD_CLIENT_BYTES: usize = 3 * crate::CHANNEL_WINDOW as usize;

/// What an item costs beyond its bytes (its slot, its permit, its buffer's header), so that a
/// peer sending empty or one-byte messages cannot queue millions of them.
const ITEM_OVERHEAD: usize = 128;

/// Something queued, with the bytes it holds.
pub(crate) trait Queued {
    fn n_bytes(&self) -> usize;
}

/// The reading half's end.
pub(crate) struct Outbox<T> {
    queue: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    /// Bytes the outbox may still take; each item also takes [`ITEM_OVERHEAD`], so their number
    /// is bounded too.
    room: Arc<Semaphore>,
    capacity: usize,
}

/// The writing end. Dropping it tells a reader waiting for room that nothing more goes through.
pub(crate) struct Inbox<T> {
    queue: mpsc::UnboundedReceiver<(T, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
}

/// An outbox of `capacity` bytes.
pub(crate) fn outbox<T>(capacity: usize) -> (Outbox<T>, Inbox<T>) {
    let (queue, receiver) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(capacity));
    (Outbox { queue, room: room.clone(), capacity }, Inbox { queue: receiver, room })
}

// === impl Outbox ===

impl<T: Queued> Outbox<T> {
    /// Queues `item`, waiting while the outbox is full; false once the writer has stopped.
    pub(crate) async fn push(&self, item: T) -> bool {
        let cost = (item.n_bytes() + ITEM_OVERHEAD).min(self.capacity) as u32;
        let Ok(permit) = self.room.clone().acquire_many_owned(cost).await else { return false };
        self.queue.send((item, permit)).is_ok()
    }

    /// Waits until everything queued has been written, for a request that must not overtake
    /// it (a command, a subsystem).
    pub(crate) async fn flush(&self) {
        if let Ok(all) = self.room.acquire_many(self.capacity as u32).await {
            drop(all);
        }
    }
}

// === impl Inbox ===

impl<T> Inbox<T> {
    /// The next item and its room, which is freed when the permit is dropped (once the item is
    /// written); None when the reader's end is dropped and all has been taken.
    async fn next(&mut self) -> Option<(T, OwnedSemaphorePermit)> {
        self.queue.recv().await
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.room.close();
    }
}

/// What goes to the target, in order.
pub(crate) enum Input {
    Data(Bytes),
    ExtendedData(u32, Bytes),
    Eof,
}

impl Queued for Input {
    fn n_bytes(&self) -> usize {
        match self {
            Input::Data(data) | Input::ExtendedData(_, data) => data.len(),
            Input::Eof => 0,
        }
    }
}

/// Writes what the outbox holds to the target until the reader is done or the channel stops.
pub(crate) async fn write_to_target(mut inbox: Inbox<Input>, target: &ChannelWriteHalf<client::Msg>, mut stop: Stop) {
    while let Some((input, _room)) = inbox.next().await {
        let written = match input {
            Input::Data(data) => stop.unless(target.data_bytes(data)).await,
            Input::ExtendedData(ext, data) => stop.unless(target.extended_data_bytes(ext, data)).await,
            Input::Eof => stop.unless(target.eof()).await,
        };
        if !matches!(written, Some(Ok(()))) {
            break;
        }
    }
}

/// What goes to the client, in order.
pub(crate) enum Output {
    Data(Bytes),
    ExtendedData(u32, Bytes),
    Eof,
    ExitStatus(u32),
    ExitSignal { signal: Sig, core_dumped: bool, message: String, lang: String },
    Close,
}

impl Queued for Output {
    fn n_bytes(&self) -> usize {
        match self {
            Output::Data(data) | Output::ExtendedData(_, data) => data.len(),
            Output::ExitSignal { message, lang, .. } => message.len() + lang.len(),
            Output::Eof | Output::ExitStatus(_) | Output::Close => 0,
        }
    }
}

/// Delivers what the outbox holds to the client until the reader is done. Each item is tried
/// even when one before it could not be delivered; once the channel stops (the client closed it
/// or left), the rest is dropped: recorded, never delivered. `session` sends what a channel's
/// half cannot (an exit signal).
pub(crate) async fn deliver_to_client(
    mut inbox: Inbox<Output>,
    client: &ChannelWriteHalf<server::Msg>,
    session: &server::Handle,
    mut stop: Stop,
) {
    while let Some((output, _room)) = inbox.next().await {
        match output {
            Output::Data(data) => {
                let _ = stop.unless(client.data_bytes(data)).await;
            }
            Output::ExtendedData(ext, data) => {
                let _ = stop.unless(client.extended_data_bytes(ext, data)).await;
            }
            Output::Eof => {
                let _ = stop.unless(client.eof()).await;
            }
            Output::ExitStatus(status) => {
                let _ = stop.unless(client.exit_status(status)).await;
            }
            Output::ExitSignal { signal, core_dumped, message, lang } => {
                let _ = stop.unless(session.exit_signal_request(client.id(), signal, core_dumped, message, lang)).await;
            }
            Output::Close => {
                let _ = stop.unless(client.close()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ready_now;

    #[test]
    fn empty_items_take_room_too() {
        let (outbox, _inbox) = outbox::<Output>(64 * ITEM_OVERHEAD);
        let mut taken = 0;
        while ready_now(outbox.push(Output::Eof)) == Some(true) {
            taken += 1;
            assert!(taken <= 64, "an outbox of 64 items' overhead took more");
        }
        assert_eq!(taken, 64);
    }

    #[test]
    fn bytes_take_their_size_and_a_full_outbox_waits() {
        let (outbox, inbox) = outbox::<Input>(4 << 10);
        assert_eq!(ready_now(outbox.push(Input::Data(Bytes::from(vec![0; 3 << 10])))), Some(true));
        assert_eq!(ready_now(outbox.push(Input::Data(Bytes::from(vec![0; 1 << 10])))), None, "past its room it waits");
        drop(inbox);
        assert_eq!(ready_now(outbox.push(Input::Eof)), Some(false), "once the writer is gone nothing goes through");
    }
}
