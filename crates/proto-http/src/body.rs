//! Bodies streamed through witness and seen on the way: every byte is counted and hashed, the
//! first bytes up to the recording cap are kept, and nothing else is held. When the body ends
//! (or breaks off, or is abandoned by the side reading it) what was seen is handed to a callback,
//! which records it. A stream (a body without a length, which may flow for hours) can also have
//! its kept bytes handed out as they pass ([`Tap::with_parts`]), so that they are recorded then.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Errors of bodies passing through witness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What was seen of a body.
pub struct Seen {
    /// Every byte's count.
    pub length: u64,
    /// BLAKE3 rather than SHA-256: a quarter of the CPU for the same bytes, on a path that hashes
    /// every byte of every body.
    hasher: blake3::Hasher,
    /// The first bytes, at most `cap`.
    pub start: Vec<u8>,
    cap: usize,
    /// How many of `start` were handed out as parts while the body passed.
    pub parted: usize,
}

/// How a body's passage ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Complete,
    /// The side sending it failed (the upstream's connection broke, the client's upload stopped).
    Failed(String),
    /// The side reading it stopped before its end (the client left mid-download).
    Abandoned,
}

impl Seen {
    pub fn new(cap: usize) -> Seen {
        Seen { length: 0, hasher: blake3::Hasher::new(), start: Vec::new(), cap, parted: 0 }
    }

    pub fn observe(&mut self, bytes: &[u8]) {
        self.length += bytes.len() as u64;
        self.hasher.update(bytes);
        let room = self.cap.saturating_sub(self.start.len());
        self.start.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// Whether as many bytes as the record keeps have been seen.
    pub fn full(&self) -> bool {
        self.length >= self.cap as u64
    }

    /// `blake3:` and the hex digest of every byte seen so far.
    pub fn digest(&self) -> String {
        format!("blake3:{}", self.hasher.finalize().to_hex())
    }
}

type OnEnd = Box<dyn FnOnce(Seen, Ending) + Send + Sync>;
type OnPart = Box<dyn FnMut(&[u8]) + Send + Sync>;

/// Parts handed out at most: a stream of tiny frames cannot make a record of each byte; what
/// the cap keeps past the last part goes in the record made at the end.
pub const MAX_PARTS: usize = 256;

/// A body passed on frame by frame while it is seen; `replay` holds frames read (and seen)
/// before it was passed on, sent first.
pub struct Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    inner: B,
    replay: VecDeque<Bytes>,
    seen: Option<Seen>,
    on_end: Option<OnEnd>,
    /// Called with the kept bytes of each frame as it passes, and how many more calls may come.
    on_part: Option<(OnPart, usize)>,
}

impl<B> Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn new(inner: B, seen: Seen, replay: VecDeque<Bytes>, on_end: impl FnOnce(Seen, Ending) + Send + Sync + 'static) -> Tap<B> {
        Tap { inner, replay, seen: Some(seen), on_end: Some(Box::new(on_end)), on_part: None }
    }

    /// Hands `on_part` the bytes of each frame that the record keeps, as the frame passes (up to
    /// [`MAX_PARTS`] times); [`Seen::parted`] then says how many of the kept bytes it got.
    pub fn with_parts(mut self, on_part: impl FnMut(&[u8]) + Send + Sync + 'static) -> Tap<B> {
        self.on_part = Some((Box::new(on_part), MAX_PARTS));
        self
    }

    fn finish(&mut self, ending: Ending) {
        if let (Some(seen), Some(on_end)) = (self.seen.take(), self.on_end.take()) {
            on_end(seen, ending);
        }
    }
}

impl<B> Body for Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.as_mut().get_mut();
        if let Some(bytes) = this.replay.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(seen)) = (frame.data_ref(), this.seen.as_mut()) {
                    seen.observe(data);
                    if let Some((on_part, left)) = this.on_part.as_mut().filter(|(_, left)| *left > 0) {
                        if seen.start.len() > seen.parted {
                            on_part(&seen.start[seen.parted..]);
                            seen.parted = seen.start.len();
                            *left -= 1;
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.finish(Ending::Failed(e.to_string()));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(Ending::Complete);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let replayed: u64 = self.replay.iter().map(|b| b.len() as u64).sum();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + replayed);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + replayed);
        }
        hint
    }
}

impl<B> Drop for Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn drop(&mut self) {
        // A reader stops polling at the end of a body of known length without asking for more:
        // such a body, read to its end, is complete.
        let ending = if self.is_end_stream() { Ending::Complete } else { Ending::Abandoned };
        self.finish(ending);
    }
}

/// Bytes of a body witness reads whole to mask it (and of each line of one masked line by line);
/// a larger one is refused.
pub const MAX_MASKED_BYTES: usize = 32 << 20;

type MaskLine = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// A streamed body masked one line at a time (a watch's events, server-sent events, JSON lines):
/// each line is held until it ends, masked and passed on, so that the stream keeps flowing. A
/// line the mask refuses, or one longer than [`MAX_MASKED_BYTES`], ends the body with an error.
pub struct MaskedLines<B> {
    inner: B,
    mask: MaskLine,
    /// The start of a line that has not ended yet.
    partial: Vec<u8>,
    /// How much of `partial` is known to hold no line end (so a long line is searched once).
    searched: usize,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl<B> MaskedLines<B> {
    pub fn new(inner: B, mask: impl FnMut(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'static) -> MaskedLines<B> {
        MaskedLines { inner, mask: Box::new(mask), partial: Vec::new(), searched: 0, ready: VecDeque::new(), ended: false }
    }

    /// Masks every whole line of `partial`; with `last`, the rest too.
    fn mask_lines(&mut self, last: bool) -> Result<(), BoxError> {
        while let Some(end) = self.partial[self.searched..].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=self.searched + end).collect();
            self.searched = 0;
            self.mask_one(&line)?;
        }
        self.searched = self.partial.len();
        if self.partial.len() > MAX_MASKED_BYTES {
            return Err(format!("a line longer than {MAX_MASKED_BYTES} bytes, more than witness masks").into());
        }
        if last && !self.partial.is_empty() {
            self.searched = 0;
            let rest = std::mem::take(&mut self.partial);
            self.mask_one(&rest)?;
        }
        Ok(())
    }

    fn mask_one(&mut self, line: &[u8]) -> Result<(), BoxError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            self.ready.push_back(Bytes::copy_from_slice(line));
            return Ok(());
        }
        self.ready.push_back(Bytes::from((self.mask)(line)?));
        Ok(())
    }
}

impl<B> Body for MaskedLines<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on: witness would have to mask them too.
                    if let Ok(data) = frame.into_data() {
                        this.partial.extend_from_slice(&data);
                        if let Err(e) = this.mask_lines(false) {
                            this.ended = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    if let Err(e) = this.mask_lines(true) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full};

    use super::*;

    type Ended = Arc<Mutex<Vec<(u64, Vec<u8>, String, Ending)>>>;

    fn tap(body: &'static [u8], replay: &[&'static [u8]], cap: usize, ended: &Ended) -> Tap<Full<Bytes>> {
        let mut seen = Seen::new(cap);
        for chunk in replay {
            seen.observe(chunk);
        }
        let ended = ended.clone();
        Tap::new(Full::new(Bytes::from_static(body)), seen, replay.iter().map(|c| Bytes::from_static(c)).collect(), move |seen, ending| {
            let digest = seen.digest();
            ended.lock().unwrap().push((seen.length, seen.start, digest, ending));
        })
    }

    #[tokio::test]
    async fn a_body_passes_whole_and_is_seen_up_to_the_cap() {
        let ended = Ended::default();
        let body = tap(b"world", &[b"hello ", b"big "], 8, &ended);
        assert_eq!(body.size_hint().exact(), Some(15));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello big world");
        let ended = ended.lock().unwrap();
        assert_eq!(ended.len(), 1, "the end is reported once");
        let (length, start, digest, ending) = &ended[0];
        assert_eq!((*length, &start[..], ending), (15, &b"hello bi"[..], &Ending::Complete));
        assert_eq!(digest, &format!("blake3:{}", blake3::hash(b"hello big world").to_hex()));
    }

    #[test]
    fn a_body_dropped_before_its_end_is_abandoned() {
        let ended = Ended::default();
        drop(tap(b"never read", &[b"read "], 64, &ended));
        let ended = ended.lock().unwrap();
        assert_eq!((ended[0].0, &ended[0].3), (5, &Ending::Abandoned));
    }

    #[tokio::test]
    async fn a_stream_hands_out_its_kept_bytes_as_they_pass() {
        let ended = Ended::default();
        let parts = Arc::new(Mutex::new(Vec::new()));
        let seen_parts = parts.clone();
        let frames = ready_stream(
            [&b"one "[..], b"two ", b"three"]
                .into_iter()
                .map(|f| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(f))))
                .collect(),
        );
        let ended_here = ended.clone();
        let body = Tap::new(http_body_util::StreamBody::new(frames), Seen::new(10), VecDeque::new(), move |seen, ending| {
            ended_here.lock().unwrap().push((seen.length, seen.start[seen.parted..].to_vec(), seen.digest(), ending));
        })
        .with_parts(move |part| seen_parts.lock().unwrap().push(part.to_vec()));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"one two three");
        // Up to the cap (10 bytes), each frame's kept bytes once; nothing left for the end.
        assert_eq!(*parts.lock().unwrap(), [b"one ".to_vec(), b"two ".to_vec(), b"th".to_vec()]);
        let ended = ended.lock().unwrap();
        assert_eq!((ended[0].0, ended[0].1.len(), &ended[0].3), (13, 0, &Ending::Complete));
    }

    /// A stream of ready items, without a futures crate.
    pub(crate) fn ready_stream<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
        struct Items<T>(VecDeque<T>);
        impl<T: Unpin> futures_core::Stream for Items<T> {
            type Item = T;
            fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
                Poll::Ready(self.get_mut().0.pop_front())
            }
        }
        Items(items.into())
    }
}
