//! The flusher pool, and [`Writers`]: the write side's one handle.
//!
//! A thread per client that sat waiting for lines would double the threads
//! and the memory of a big idle room, and cost a context switch per client
//! per line. Instead, a [`Peer`] is handed to a small pool of flusher
//! threads, one per two cores, when its queue gets lines. A flusher takes a
//! batch and sends it in one gathering `sendmsg` with `MSG_DONTWAIT`, which
//! never blocks the flusher. A client that reads is served that way start to
//! end; one whose socket fills goes to a thread of its own (`slow.rs`).

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::display::Display;
use super::queue::{After, Handoff, Limits, Queue, Taken};
use super::quiet::{self, Notices, Wake};
use super::socket::send_now;
use super::{slow, Peer, WRITER_STACK};

/// Batches a flusher writes for one peer before it serves the next one in
/// line: one fast talker's audience cannot starve everyone else's.
pub const TURN: usize = 4;

/// How many flusher threads a machine with `cores` cores gets: one per two
/// cores, at least one. A flusher never blocks, so one keeps a core busy;
/// the other cores are for the reader threads, which do the relaying. More
/// flushers would each come round to a client sooner, with fewer lines
/// waiting, so every line would cost more `sendmsg` calls: on 2 cores,
/// `make bench` (c) measured about 175 ns of server CPU per delivered line
/// with two flushers and 145 ns with one, at higher throughput.
pub fn flushers_for(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// What became of lines pushed to a client.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued (or dropped silently: the client is already leaving).
    Queued,
    /// Refused: the client's queue is full, it is too slow. The caller
    /// removes it.
    TooSlow,
}

/// The write side: flushers, slow-client threads and the notice thread.
/// Cheap to clone (the rooms keep one).
#[derive(Clone)]
pub struct Writers {
    /// What the flushers, the slow-client threads and the notice thread
    /// share; [`Writers::stop`] ends them.
    shared: Arc<Shared>,
}

/// The write side's queue of peers to flush and its threads.
pub(super) struct Shared {
    /// Peers with lines to write, in the order they got them; `None` asks
    /// a flusher to leave once the queue is empty.
    queue: Sender<Option<Arc<Peer>>>,
    /// Cloned into each flusher.
    ready: Receiver<Option<Arc<Peer>>>,
    /// Each new client's queue bounds.
    limits: Limits,
    /// The flusher threads: joined by [`Writers::stop`] once each is asked
    /// to leave.
    flushers: Mutex<Vec<JoinHandle<()>>>,
    /// Threads started for slow clients; stopped at shutdown.
    pub(super) threads: Mutex<Vec<slow::Slow>>,
    /// Queues with quiet lines waiting, and the thread that wakes them.
    pub(super) notices: Notices,
    /// The notice thread: joined by [`Writers::stop`] before the flushers
    /// are asked to leave, since it hands queues to them.
    notice_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Hands `peer` to the flushers. Never blocks: the queue is unbounded,
    /// and each peer is in it at most once (its queue's owner says so).
    pub(super) fn schedule(&self, peer: &Arc<Peer>) {
        // The receiver lives in `self` as long as any sender: cannot fail.
        let _ = self.queue.send(Some(Arc::clone(peer)));
    }

    fn hand_off(&self, peer: &Arc<Peer>, handoff: Handoff) {
        if handoff == Handoff::Schedule {
            self.schedule(peer);
        }
    }
}

impl Writers {
    /// Starts `flushers` flusher threads and the notice thread; every
    /// client's queue is bounded by `limits`.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(flushers: usize, limits: Limits) -> io::Result<Writers> {
        let (queue, ready) = crossbeam_channel::unbounded();
        let writers = Writers {
            shared: Arc::new(Shared {
                queue,
                ready,
                limits,
                flushers: Mutex::new(Vec::new()),
                threads: Mutex::new(Vec::new()),
                notices: Notices::default(),
                notice_thread: Mutex::new(None),
            }),
        };
        for n in 1..=flushers {
            let shared = Arc::clone(&writers.shared);
            let thread = thread::Builder::new()
                .name(format!("flusher-{n}"))
                .stack_size(WRITER_STACK)
                .spawn(move || flusher(&shared))?;
            writers.shared.flushers.lock().push(thread);
        }
        let notices = quiet::spawn(Arc::clone(&writers.shared))?;
        *writers.shared.notice_thread.lock() = Some(notices);
        Ok(writers)
    }

    /// A new client `id` on `stream`, with an empty queue.
    pub fn peer(&self, id: u64, stream: Arc<TcpStream>) -> Arc<Peer> {
        Arc::new(Peer::new(id, self.shared.limits, stream))
    }

    /// The console's display: a queue of `lines` lines drained by a
    /// thread of its own.
    pub fn display(&self, lines: usize) -> Display {
        let limits = Limits {
            lines,
            lag_lines: lines,
            bytes: usize::MAX,
        };
        Display::new(Arc::new(Queue::for_thread(limits)), self.clone())
    }

    /// Queues `line` for `peer` and makes sure someone writes it now.
    pub fn push(&self, peer: &Arc<Peer>, line: &Arc<str>) -> Pushed {
        self.push_all(peer, std::slice::from_ref(line), Wake::Now)
    }

    /// Queues `lines` for `peer`, in order, and makes sure someone writes
    /// them, at once or within the quiet interval (see [`Wake`]).
    pub fn push_all(&self, peer: &Arc<Peer>, lines: &[Arc<str>], wake: Wake) -> Pushed {
        let pushed = match wake {
            Wake::Now => peer
                .queue
                .push_all(lines)
                .map(|handoff| self.shared.hand_off(peer, handoff)),
            Wake::Later => quiet::push(&self.shared, peer, lines),
        };
        match pushed {
            Ok(()) => Pushed::Queued,
            Err(_) => Pushed::TooSlow,
        }
    }

    /// Queues the answer to a client entering a room and the room's history
    /// for `peer`, and makes sure someone writes them now. Unlike
    /// [`Writers::push_all`], the lines do not count against the queue's
    /// limits while they wait: the replay is the server's backlog, not the
    /// client's (see `queue.rs`).
    pub fn push_replay(&self, peer: &Arc<Peer>, lines: &[Arc<str>]) -> Pushed {
        match peer.queue.push_replay(lines) {
            Ok(handoff) => {
                self.shared.hand_off(peer, handoff);
                Pushed::Queued
            }
            Err(_) => Pushed::TooSlow,
        }
    }

    /// Ends `peer` gracefully: `last`, then what is queued, until `deadline`.
    pub fn drain(&self, peer: &Arc<Peer>, last: Option<&Arc<str>>, deadline: Instant) {
        self.shared.hand_off(peer, peer.queue.drain(last, deadline));
    }

    /// Ends `peer` now, with `last` as its best-effort last line.
    pub fn abort(&self, peer: &Arc<Peer>, last: Option<Arc<str>>) {
        self.shared.hand_off(peer, peer.queue.abort(last));
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Stops the write side at shutdown, by `deadline`: the notice thread
    /// leaves; flushers finish the queue and leave (they never block); every
    /// slow client's thread gives up by `deadline`, even one whose queue was
    /// draining until later (a client kicked or gone just before), and is
    /// joined.
    pub fn stop(&self, deadline: Instant) {
        self.shared.notices.stop();
        if let Some(thread) = self.shared.notice_thread.lock().take() {
            let _ = thread.join();
        }
        let flushers = std::mem::take(&mut *self.shared.flushers.lock());
        for _ in &flushers {
            let _ = self.shared.queue.send(None);
        }
        for thread in flushers {
            let _ = thread.join();
        }
        // Only flushers start slow threads: the list is complete now.
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        slow::stop_all(threads, deadline);
    }
}

/// A flusher's life: serve peers in turn until shutdown empties the queue.
fn flusher(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        match shared.ready.recv() {
            Ok(Some(peer)) => flush(shared, peer, &mut batch),
            Ok(None) if shared.ready.is_empty() => return,
            // Peers were put back in line behind the stop: serve them first.
            Ok(None) => {
                let _ = shared.queue.send(None);
            }
            Err(_) => return,
        }
    }
}

/// One turn for one peer: up to [`TURN`] batches, each sent in one
/// gathering `sendmsg` without blocking.
fn flush(shared: &Shared, peer: Arc<Peer>, batch: &mut Vec<Arc<str>>) {
    for _ in 0..TURN {
        let Taken::Batch(after) = peer.queue.take_now(batch) else {
            return;
        };
        let total: usize = batch.iter().map(|line| line.len()).sum();
        match send_now(&peer.stream, batch) {
            Ok(n) if n == total => {
                batch.clear();
                if after == After::Close {
                    return peer.close();
                }
            }
            Ok(n) => return slow::blocked(shared, peer, slow::rest(batch, n), after),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return slow::blocked(shared, peer, slow::rest(batch, 0), after)
            }
            Err(e) => {
                batch.clear();
                return peer.fail_with(&e);
            }
        }
    }
    if peer.queue.requeue() == Handoff::Schedule {
        shared.schedule(&peer);
    }
}
