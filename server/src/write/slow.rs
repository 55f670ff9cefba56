//! A thread of its own for a client whose socket is full.
//!
//! A flusher never blocks, so when a client's socket is full (it is not
//! reading, or reads slowly) the flusher hands that peer here: a thread that
//! waits on the socket with a [`WRITE_POLL`] timeout, looking up between
//! waits to see whether to give up (the client was dropped as too slow, or a
//! deadline passed). While it owns the queue, `--sendq` counts (see
//! `queue.rs`). It leaves after [`THREAD_IDLE`] with nothing to write, and
//! the peer goes back to the flushers. So only slow clients cost a thread,
//! and never for long.
//!
//! [`WRITE_POLL`]: super::WRITE_POLL

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::flusher::Shared;
use super::queue::{Stall, Taken};
use super::socket::write_polling;
use super::{Peer, WRITER_STACK};
use crate::log;

/// How long a client's own writer thread waits for more lines before it
/// leaves and hands the client back to the flushers.
pub const THREAD_IDLE: Duration = Duration::from_secs(1);

/// The peer's socket is full with `rest` of a batch unsent: give it a thread
/// of its own, unless it is being dropped anyway.
pub(super) fn blocked(shared: &Shared, peer: Arc<Peer>, rest: Vec<u8>, last: bool) {
    if peer.queue.stall(Instant::now()) == Stall::GiveUp {
        return peer.fail();
    }
    peer.queue.hand_to_thread();
    let name = format!("writer-{}", peer.id);
    let moved = Arc::clone(&peer);
    let started = thread::Builder::new()
        .name(name)
        .stack_size(WRITER_STACK)
        .spawn(move || own_thread(&moved, &rest, last));
    match started {
        Ok(thread) => {
            let mut threads = shared.threads.lock();
            threads.retain(|t| !t.is_finished());
            threads.push(thread);
        }
        Err(e) => {
            log!(
                "cannot start a writer thread ({e}): dropping client {}",
                peer.id
            );
            peer.fail();
        }
    }
}

/// A slow client's own writer: blocking writes, until its queue is idle
/// for [`THREAD_IDLE`] or ends.
fn own_thread(peer: &Peer, rest: &[u8], last: bool) {
    let give_up = || peer.queue.stall(Instant::now()) == Stall::GiveUp;
    if let Err(e) = write_polling(&peer.stream, rest, give_up) {
        return peer.fail_with(&e);
    }
    if last {
        return peer.close();
    }
    let mut batch = Vec::new();
    loop {
        let Taken::Batch { last } = peer.queue.take_wait(&mut batch, Some(THREAD_IDLE)) else {
            return;
        };
        let buf = join(&mut batch);
        if let Err(e) = write_polling(&peer.stream, &buf, give_up) {
            return peer.fail_with(&e);
        }
        if last {
            return peer.close();
        }
    }
}

/// What a partial send left of a batch, as one buffer; empties the batch.
pub(super) fn rest(batch: &mut Vec<Arc<str>>, sent: usize) -> Vec<u8> {
    let mut buf = join(batch);
    buf.drain(..sent);
    buf
}

/// Joins a batch into one buffer, emptying the batch: a blocking `write`
/// with a timeout has no gathering form in std, and this thread runs only
/// for a client that is behind anyway.
fn join(batch: &mut Vec<Arc<str>>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|line| line.len()).sum());
    for line in batch.drain(..) {
        buf.extend_from_slice(line.as_bytes());
    }
    buf
}
