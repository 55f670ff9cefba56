//! A thread of its own for a client whose socket is full.
//!
//! A flusher never blocks, so when a client's socket is full (it is not
//! reading, or reads slowly) the flusher hands that peer here: a thread that
//! waits on the socket with a [`WRITE_POLL`] timeout, looking up between
//! waits to see whether to give up (the client was dropped as too slow, or a
//! deadline passed). While the socket is full, `--sendq` counts; once a
//! write goes through whole, the client keeps up again and the lag
//! allowance is back (see `queue.rs`). The thread leaves after
//! [`THREAD_IDLE`] with nothing to write, and the peer goes back to the
//! flushers. So only a client whose socket filled costs a thread, until it
//! has had nothing to write for a second: in a busy room, that can be the
//! rest of its connection.
//!
//! At shutdown, [`stop_all`] cuts every such client's deadline to the
//! shutdown's, then joins the threads.
//!
//! [`WRITE_POLL`]: super::WRITE_POLL

use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::flusher::Shared;
use super::queue::{After, Stall, Taken};
use super::socket::{write_watching, Wrote};
use super::{Peer, WRITER_STACK};
use crate::log;

/// How long a client's own writer thread waits for more lines before it
/// leaves and hands the client back to the flushers.
pub const THREAD_IDLE: Duration = Duration::from_secs(1);

/// A slow client's thread, kept to stop it at shutdown.
pub(super) struct Slow {
    /// Its client, whose deadline shutdown cuts. Weak: a finished thread
    /// must not keep its client's socket open until the list is pruned.
    peer: Weak<Peer>,
    /// Joined at shutdown, once its client's deadline is cut.
    thread: JoinHandle<()>,
}

/// The peer's socket is full with `rest` of a batch unsent: give it a thread
/// of its own, unless it is being dropped anyway.
pub(super) fn blocked(shared: &Shared, peer: Arc<Peer>, rest: Vec<u8>, after: After) {
    if peer.queue.hand_to_thread(Instant::now()) == Stall::GiveUp {
        return peer.fail();
    }
    let name = format!("writer-{}", peer.id);
    let moved = Arc::clone(&peer);
    let started = thread::Builder::new()
        .name(name)
        .stack_size(WRITER_STACK)
        .spawn(move || own_thread(&moved, rest, after));
    match started {
        Ok(thread) => {
            let mut threads = shared.threads.lock();
            threads.retain(|slow| !slow.thread.is_finished());
            threads.push(Slow {
                peer: Arc::downgrade(&peer),
                thread,
            });
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

/// Stops the slow clients' threads at shutdown: each gives up by
/// `deadline` (one [`WRITE_POLL`] later at most), whatever deadline its
/// queue had, and is joined.
///
/// [`WRITE_POLL`]: super::WRITE_POLL
pub(super) fn stop_all(threads: Vec<Slow>, deadline: Instant) {
    for slow in &threads {
        if let Some(peer) = slow.peer.upgrade() {
            peer.queue.cut(deadline);
        }
    }
    for slow in threads {
        let _ = slow.thread.join();
    }
}

/// A slow client's own writer: blocking writes, `rest` first, until its
/// queue is idle for [`THREAD_IDLE`] or ends.
fn own_thread(peer: &Peer, rest: Vec<u8>, mut after: After) {
    let full = || peer.queue.still_full(Instant::now()) == Stall::GiveUp;
    let mut buf = rest;
    let mut batch = Vec::new();
    loop {
        match write_watching(&peer.stream, &buf, full) {
            Ok(Wrote::Whole) => peer.queue.took_all(),
            Ok(Wrote::AfterStall) => {}
            Err(e) => return peer.fail_with(&e),
        }
        if after == After::Close {
            return peer.close();
        }
        let Taken::Batch(next) = peer.queue.take_wait(&mut batch, Some(THREAD_IDLE)) else {
            return;
        };
        after = next;
        buf = join(&mut batch);
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
