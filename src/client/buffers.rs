//! Read buffers: how a connection's buffer grows, and the per-worker-thread shelf idle
//! clients give theirs back to, so an idle client holds no buffer and a transaction need not
//! allocate one. Used by the [`super::relay`] and [`super::acquire`] for client and server
//! reads alike.

use std::cell::RefCell;

use bytes::BytesMut;

/// Read buffers grow by this much when their spare room runs low.
const READ_CHUNK: usize = 32 * 1024;
/// Spare room below which a read buffer grows. Forwarded bytes are split off the front of
/// the buffer, so the same allocation serves many reads before a new one is needed.
const MIN_SPARE: usize = 4 * 1024;
/// A client's read buffer when its bytes arrive: a request is usually small, and thousands
/// of clients queued for a server each hold theirs, so it starts at this size and grows by
/// [`READ_CHUNK`] only for large messages.
const CLIENT_BUFFER: usize = 2 * MIN_SPARE;
/// Most read buffers a worker thread keeps for clients that will read again.
const MAX_SHELVED: usize = 16;

thread_local! {
    /// Read buffers idle clients gave back, for the next client on this worker thread whose
    /// bytes arrive: idle clients hold no buffer, and a transaction needn't allocate one.
    static SHELF: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An idle client's empty read buffer goes to its worker's shelf, or is freed: when bytes
/// split off it are still queued somewhere, when it grew past the usual size, or when the
/// shelf is full.
pub(super) fn shelve(mut buf: BytesMut) {
    if buf.capacity() > 2 * READ_CHUNK || !buf.try_reclaim(CLIENT_BUFFER) {
        return;
    }
    SHELF.with(|s| {
        let mut shelf = s.borrow_mut();
        if shelf.len() < MAX_SHELVED {
            shelf.push(buf);
        }
    });
}

/// A read buffer for a client whose bytes have arrived: a shelved one, or a new one.
pub(super) fn unshelve() -> BytesMut {
    SHELF
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(CLIENT_BUFFER))
}

/// Makes room for the next read: a buffer with less than [`MIN_SPARE`] free grows by
/// [`READ_CHUNK`].
pub(super) fn ensure_spare(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(READ_CHUNK);
    }
}
