//! One client's queue of outgoing lines: its bounds, and who drains it.
//!
//! The relay pushes a shared `Arc<str>` into each recipient's queue under
//! the room's lock; that is what gives every member of a room the same
//! order. A push never blocks: when a client's queue is full it fails, and
//! the rooms drop that client alone.
//!
//! Full means `--sendq` lines, or `--sendq-bytes` bytes, piled up since the
//! client's socket filled: the client is not keeping up. Bytes matter for a
//! client that asks for big replies (`/who` of a large room) and never
//! reads: one line can be 12 KB. While its socket still takes everything
//! written, a longer queue is the server's own lag (a storm of joins on a
//! busy machine, a paste relayed faster than the flushers get CPU), so the
//! queue may hold [`Limits::lag_lines`] lines and [`LAG_ALLOWANCE`] times
//! `--sendq-bytes` bytes before the client is dropped anyway; what was
//! queued when the socket filled does not count against the limits either.
//! Whether the socket is full is [`Socket`]: full from the moment a send
//! finds it so, until a write of the client's own thread goes through whole
//! (the client caught up: the allowance is back, and the next stall counts
//! from what is queued then). The limits are checked once per batch of
//! lines ([`Queue::push_all`]), so a paste is never cut by a drop in its
//! middle: a queue may pass its limit by one batch.
//!
//! A room's history replayed to a client entering it ([`Queue::push_replay`])
//! is the server's own backlog too: up to `--history` lines at once, more
//! than the limits may allow (`--history 10000` of 1 KB lines is 10 MB), so
//! they do not count against them while they wait; the lines relayed after
//! them do. One replay at a time is so exempt (a second one, pushed before
//! the client read the first, counts like any line), so a client that
//! never reads and keeps entering rooms is still dropped: a queue holds at
//! most one replay beyond its limits.
//!
//! Who drains the queue is part of its state ([`Owner`]): nobody while it is
//! empty, a shared flusher thread while writes go through at once, or a
//! thread of its own while the client's socket is full (see `slow.rs`). A
//! push into an idle queue says so ([`Handoff::Schedule`]), and the pusher
//! hands the client to the flushers. So an idle client costs no thread and no
//! buffer, and a busy room costs one `sendmsg` per batch, not per line.
//!
//! Quiet lines (join and leave notices) are pushed and signalled by the
//! methods in `quiet.rs`; this file only keeps their flag.
//!
//! This file: the state and the pushers' side. `queue/taking.rs`: the
//! writers' side (taking batches, endings). `queue/limits.rs`: [`Limits`].
//!
//! Locks: see [the write side's lock facts](super#locks).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

mod limits;
mod taking;

pub use limits::Limits;

/// Most bytes a writer takes from the queue for one `sendmsg`. A batch's
/// buffer lives only as long as the batch.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Most lines a writer takes at once: one `sendmsg` gathers them, and Linux
/// takes at most 1,024 pieces (`IOV_MAX`) in one call.
pub const BATCH_LINES: usize = 512;

/// How many times the larger of `--sendq` and `--burst` lines, and how many
/// times `--sendq-bytes` bytes, a queue may hold while the client's socket
/// takes everything written: the backlog is the server's, not the client's.
/// It still bounds the queue, so memory stays bounded when the server is
/// overloaded.
pub const LAG_ALLOWANCE: usize = 4;

/// A queue whose storage grew past this many entries gives it back once
/// empty, so a burst cannot pin memory for the rest of the connection.
const KEEP_CAPACITY: usize = 64;

/// The queue is full: the client is not reading fast enough (or the server
/// is hopelessly behind; see [`Limits::lag_lines`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Full;

/// What the caller of a push, signal or ending must do next.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Handoff {
    /// Nothing: someone already drains the queue, or nothing is to be sent.
    Done,
    /// The queue was idle: hand its client to the flushers.
    Schedule,
}

/// Whether a writer waiting on a full socket should stop waiting.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stall {
    /// Keep waiting for the client to read.
    Wait,
    /// Stop: the queue was aborted (too slow, kicked), or its drain deadline
    /// passed.
    GiveUp,
}

/// How a queue ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Deliver what is queued, until the deadline, then close.
    Drain(Instant),
    /// Stop now: what is queued is discarded (bar one last word).
    Abort,
}

/// Who is responsible for draining the queue now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Nobody: the queue is empty, or holds only quiet lines.
    Idle,
    /// Handed to the flushers, waiting for one to pick it up.
    Queued,
    /// A flusher is writing it.
    Flushing,
    /// A thread of its own, which waits on `ready`.
    Thread,
    /// Finished: the socket is closed for writing.
    Done,
}

/// Whether the client's socket is full, which decides the queue's limits
/// ([`Queue::room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    /// It took everything written so far: a longer queue is the server's
    /// lag, and the allowance for it applies.
    TakesAll,
    /// It filled with `lines` lines and `bytes` bytes queued (the server's
    /// backlog then, not the client's): `--sendq` and `--sendq-bytes` count
    /// from there, until a write goes through whole again.
    Full { lines: usize, bytes: usize },
}

/// A queue's lines and where it stands, under its one lock.
pub(super) struct State {
    /// The lines waiting, shared with every other recipient's queue.
    lines: VecDeque<Arc<str>>,
    /// Bytes of `lines`, for [`Limits::bytes`].
    bytes: usize,
    /// Set once the queue is drained or aborted: nothing more goes in.
    end: Option<End>,
    /// Lines pushed quietly wait: nobody has been woken for them yet.
    pub(super) quiet: bool,
    /// The queue is on the notice thread's list (`quiet.rs`): at most once.
    pub(super) listed: bool,
    /// Who drains it now, so it is handed to the flushers only when idle.
    owner: Owner,
    /// Whether the socket is full, and the backlog when it filled.
    socket: Socket,
    /// Lines ever taken from the front: the number of `lines[0]` in the
    /// order the queue was pushed, for [`Replay`].
    front: u64,
    /// A replayed history still (partly) queued: not counted against the
    /// limits.
    replay: Option<Replay>,
}

/// The lines of a replayed history, by their numbers in the order the queue
/// was pushed (see [`State::front`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replay {
    /// The number of its first line.
    from: u64,
    /// The number after its last line.
    to: u64,
    /// Bytes of its lines still queued.
    bytes: usize,
}

impl State {
    /// Lines and bytes waiting that count against the limits: all but what
    /// is left of a replayed history.
    fn counted(&self) -> (usize, usize) {
        match self.replay {
            Some(replay) => {
                let left = replay.to - replay.from.max(self.front);
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                (
                    self.lines.len().saturating_sub(left),
                    self.bytes.saturating_sub(replay.bytes),
                )
            }
            None => (self.lines.len(), self.bytes),
        }
    }

    /// Lines waiting now.
    pub(super) fn queued(&self) -> usize {
        self.lines.len()
    }

    /// Whether the queue was drained or aborted: nothing more goes in.
    pub(super) fn ended(&self) -> bool {
        self.end.is_some()
    }
}

/// What a writer got from [`Queue::take_now`] or [`Queue::take_wait`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// Nothing to write: the queue went back to idle.
    Idle,
    /// Lines were moved into the batch (maybe none, when the queue ended).
    Batch(After),
}

/// What comes after a batch taken from a queue: its writer carries this
/// along with what is left of the batch (to a slow client's own thread).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Maybe more lines: keep the connection.
    More,
    /// The queue has ended and this batch is all that is left: close the
    /// socket once it is written.
    Close,
}

/// A bounded queue of lines for one client (or the console's display).
pub(super) struct Queue {
    /// Taken last, after a room's lock or the directory's, and never held
    /// across a write (the lock order is in `write/mod.rs`).
    pub(super) state: Mutex<State>,
    /// Signalled for a queue owned by a thread: lines or end arrived.
    ready: Condvar,
    /// Its bounds: a client's from `--sendq` and `--sendq-bytes` with the
    /// lag allowance, the display's its own.
    pub(super) limits: Limits,
}

impl Queue {
    /// An empty, idle queue. Allocates no storage until the first line.
    pub(super) fn new(limits: Limits) -> Queue {
        Queue::with_owner(limits, Owner::Idle)
    }

    /// A queue drained by one dedicated thread for its whole life (the
    /// server's stdout display).
    pub(super) fn for_thread(limits: Limits) -> Queue {
        Queue::with_owner(limits, Owner::Thread)
    }

    fn with_owner(limits: Limits, owner: Owner) -> Queue {
        Queue {
            state: Mutex::new(State {
                lines: VecDeque::new(),
                bytes: 0,
                end: None,
                quiet: false,
                listed: false,
                owner,
                socket: Socket::TakesAll,
                front: 0,
                replay: None,
            }),
            ready: Condvar::new(),
            limits,
        }
    }

    /// Queues `lines`, in order, for prompt delivery, under one lock: the
    /// lines a client sent in one packet cost each recipient one lock, not
    /// one per line. They are taken whole or not at all. Lines pushed after
    /// the queue ended are dropped.
    ///
    /// # Errors
    /// [`Full`] when the queue was already full (see [`Queue::room`]).
    pub(super) fn push_all(&self, lines: &[Arc<str>]) -> Result<Handoff, Full> {
        let mut state = self.enqueue(lines)?;
        if state.end.is_some() {
            return Ok(Handoff::Done);
        }
        state.quiet = false;
        Ok(self.wake(&mut state))
    }

    /// [`Queue::push_all`] for a room's history replayed to a client
    /// entering it (with the answer before it): the lines do not count
    /// against the limits while they wait, unless an earlier replay still
    /// does not (see the module docs).
    ///
    /// # Errors
    /// [`Full`] when the queue was already full.
    pub(super) fn push_replay(&self, lines: &[Arc<str>]) -> Result<Handoff, Full> {
        let mut state = self.enqueue(lines)?;
        if state.end.is_some() {
            return Ok(Handoff::Done);
        }
        if state.replay.is_none() {
            let to = state.front + state.lines.len() as u64;
            state.replay = Some(Replay {
                from: to - lines.len() as u64,
                to,
                bytes: lines.iter().map(|line| line.len()).sum(),
            });
        }
        state.quiet = false;
        Ok(self.wake(&mut state))
    }

    /// Appends `lines` unless the queue is full; the caller decides whom to
    /// wake.
    pub(super) fn enqueue(&self, lines: &[Arc<str>]) -> Result<MutexGuard<'_, State>, Full> {
        let mut state = self.state.lock();
        if state.end.is_none() {
            let (room_lines, room_bytes) = self.room(&state);
            let (counted_lines, counted_bytes) = state.counted();
            if counted_lines >= room_lines || counted_bytes >= room_bytes {
                return Err(Full);
            }
            for line in lines {
                state.bytes += line.len();
                state.lines.push_back(Arc::clone(line));
            }
        }
        Ok(state)
    }

    /// How many lines and bytes may wait before a batch is refused: while
    /// the client's socket is full, `--sendq` lines and `--sendq-bytes`
    /// bytes more than were queued when it filled; while it takes everything
    /// (the client cannot be behind what it was never sent), the lag
    /// allowance, which also caps the first.
    fn room(&self, state: &State) -> (usize, usize) {
        let lines = self.limits.lag_lines;
        let bytes = self.limits.bytes.saturating_mul(LAG_ALLOWANCE);
        match state.socket {
            Socket::Full {
                lines: backlog,
                bytes: backlog_bytes,
            } => (
                backlog.saturating_add(self.limits.lines).min(lines),
                backlog_bytes.saturating_add(self.limits.bytes).min(bytes),
            ),
            Socket::TakesAll => (lines, bytes),
        }
    }

    /// Ends the queue gracefully: `last` (the shutdown notice, say) is
    /// queued past the limit, then what is queued goes out until `deadline`.
    pub(super) fn drain(&self, last: Option<&Arc<str>>, deadline: Instant) -> Handoff {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return Handoff::Done;
        }
        if let Some(last) = last {
            state.bytes += last.len();
            state.lines.push_back(Arc::clone(last));
        }
        state.end = Some(End::Drain(deadline));
        state.quiet = false;
        self.wake(&mut state)
    }

    /// Ends the queue now: queued lines are dropped and only `last` (the
    /// reason, best effort) is left to send.
    pub(super) fn abort(&self, last: Option<Arc<str>>) -> Handoff {
        let mut state = self.state.lock();
        if state.end == Some(End::Abort) {
            return Handoff::Done;
        }
        state.bytes = last.as_ref().map_or(0, |line| line.len());
        state.lines = last.into_iter().collect();
        state.replay = None;
        state.end = Some(End::Abort);
        state.quiet = false;
        self.wake(&mut state)
    }

    /// Makes sure someone drains what is queued.
    pub(super) fn wake(&self, state: &mut State) -> Handoff {
        match state.owner {
            Owner::Idle => {
                state.owner = Owner::Queued;
                Handoff::Schedule
            }
            Owner::Thread => {
                self.ready.notify_one();
                Handoff::Done
            }
            Owner::Queued | Owner::Flushing | Owner::Done => Handoff::Done,
        }
    }

    /// Lines waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().lines.len()
    }

    /// Bytes waiting now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state.lock().bytes
    }
}

#[cfg(test)]
mod tests;
