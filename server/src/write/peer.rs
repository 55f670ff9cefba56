//! A client as the write side sees it: its queue, its socket, and why its
//! connection ends.
//!
//! The rooms keep an `Arc<Peer>` per client and push lines to it
//! through [`super::Writers`]; the flushers and the slow-client thread hold
//! clones while they write. The queue inside is private to `write/`.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;

use super::queue::{Limits, Queue};

/// A client as the write side sees it.
pub struct Peer {
    /// The client's number, for thread names and logs.
    pub id: u64,
    /// Lines waiting for this client; only `write/` touches it.
    pub(super) queue: Queue,
    /// Shared with the client's reader and the connection table.
    pub stream: Arc<TcpStream>,
    /// Why the connection is ending, when the write side or the rooms
    /// knows better than the reader: a writer that meets a reset first
    /// consumes the socket's error and closes it, and an evicted client's
    /// reader is woken with a plain end of stream. The session reads the
    /// real reason here. The first cause noted wins.
    cause: Mutex<Option<String>>,
}

impl Peer {
    /// A client with an empty queue bounded by `limits`.
    pub(super) fn new(id: u64, limits: Limits, stream: Arc<TcpStream>) -> Peer {
        Peer {
            id,
            queue: Queue::new(limits),
            stream,
            cause: Mutex::new(None),
        }
    }

    /// Notes why the connection is ending, unless a cause is already noted.
    pub fn note_cause(&self, why: impl Into<String>) {
        self.cause.lock().get_or_insert_with(|| why.into());
    }

    /// Why the connection is ending, if the write side or the rooms said.
    pub fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }

    /// The queue ended and everything went out: half-close, so the client
    /// reads our last line and then end of stream. An aborted queue closes
    /// both ways, which also wakes the client's reader.
    pub(super) fn close(&self) {
        let how = self.queue.finish();
        let _ = self.stream.shutdown(how);
    }

    /// A write failed: remember why (a give-up is not the socket's fault),
    /// then close as [`Peer::fail`] does.
    pub(super) fn fail_with(&self, e: &io::Error) {
        match e.kind() {
            ErrorKind::TimedOut => {}
            ErrorKind::ConnectionReset => self.note_cause("connection reset"),
            ErrorKind::BrokenPipe => self.note_cause("connection closed"),
            _ => self.note_cause(crate::log::plain(e)),
        }
        self.fail();
    }

    /// The socket failed, or the client is being dropped: close both ways,
    /// which wakes the client's reader so the session ends.
    pub(super) fn fail(&self) {
        let _ = self.queue.finish();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
