//! The client's bytes of one read from the target, once a message in it is rewritten. Masking
//! writes a rewritten row here; the relay forwards the buffer. Neither side needs the other.

use bytes::BytesMut;

/// Where the client's bytes are put together once a message of a read is rewritten in place (a
/// masked row): the messages before it that go as they came, then the new message, so a row is
/// copied once on its way.
pub struct ToClient<'a> {
    out: &'a mut BytesMut,
    /// The read's bytes that go to the client as they came and are not in `out` yet.
    forwarded: &'a [u8],
}

impl<'a> ToClient<'a> {
    pub fn new(out: &'a mut BytesMut, forwarded: &'a [u8]) -> ToClient<'a> {
        ToClient { out, forwarded }
    }

    /// The buffer a rewritten message goes on the end of, with the forwarded bytes before it.
    pub(crate) fn rewrite(&mut self) -> &mut BytesMut {
        self.out.extend_from_slice(std::mem::take(&mut self.forwarded));
        self.out
    }
}
