//! One client's outbound queue, and who is draining it.
//!
//! The relay pushes a shared `Arc<str>` into each recipient's outbox under
//! the registry lock; that is what gives every client the same order. A push
//! never blocks: when a client's queue is full it fails, and the registry
//! drops that client alone.
//!
//! Full means `--sendq` lines piled up since the client's socket filled: the
//! client is not keeping up. While its socket still takes everything
//! written, a longer queue is the server's own lag (in a storm of joins on a
//! busy machine, the flushers get too little CPU), so the queue may hold
//! [`LAG_ALLOWANCE`] times as much before the client is dropped anyway; what
//! was queued when the socket filled does not count against `--sendq`
//! either. The limit is checked once per batch of lines ([`Outbox::push_all`]),
//! so a paste is never cut by a drop in its middle: a queue may pass its
//! limit by one batch.
//!
//! Who drains the queue is part of the outbox's state ([`Owner`]): nobody
//! while it is empty, a shared flusher thread while writes go through at
//! once, or a thread of its own while the client's socket is full (see
//! [`crate::writer`]). A push into an idle outbox says so, and the pusher
//! hands the client to the flushers. So an idle client costs no thread and
//! no buffer, and a busy room costs one `write` per batch, not per line.
//!
//! Lock order: registry, then outbox. The writers take only the outbox
//! lock, and never hold it across a write.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Most bytes a writer takes from the queue for one `write`. A batch's
/// buffer lives only as long as the batch.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Most lines a writer takes at once: one `sendmsg` gathers them, and Linux
/// takes at most 1,024 pieces (`IOV_MAX`) in one call.
pub const BATCH_LINES: usize = 512;

/// Quiet lines a queue holds before its writer is woken anyway. Small, so a
/// storm of joins keeps every queue small: 10,000 clients connecting would
/// otherwise grow 10,000 queues to hundreds of entries each between two
/// quiet wake-ups, and the heap keeps what it grew to.
pub const QUIET_LINES: usize = 48;

/// How many times `--sendq` a queue may hold while the client's socket
/// takes everything written: the backlog is the server's, not the client's.
/// It still bounds the queue, so memory stays bounded when the server is
/// overloaded.
pub const LAG_ALLOWANCE: usize = 4;

/// A queue whose storage grew past this many entries gives it back once
/// empty, so a burst cannot pin memory for the rest of the connection.
const KEEP_CAPACITY: usize = 64;

/// The queue is full: the client is not reading fast enough (or the server
/// is hopelessly behind; see [`LAG_ALLOWANCE`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// How an outbox ends.
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

struct State {
    lines: VecDeque<Arc<str>>,
    end: Option<End>,
    /// Lines pushed quietly wait: nobody has been woken for them yet.
    quiet: bool,
    owner: Owner,
    /// Lines already queued when the socket filled (the server's lag, not
    /// the client's): they do not count against `--sendq`.
    backlog_at_stall: usize,
}

/// What a writer got from [`Outbox::take_now`] or [`Outbox::take_wait`].
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Nothing to write: the outbox went back to idle.
    Idle,
    /// Lines were moved into the batch; `last` means the outbox has ended
    /// and this batch (possibly empty) is all that is left.
    Batch {
        /// Close after writing this batch.
        last: bool,
    },
}

/// A bounded queue of lines for one client.
pub struct Outbox {
    state: Mutex<State>,
    /// Signalled for an outbox owned by a thread: lines or end arrived.
    ready: Condvar,
    /// `--sendq`: the most lines waiting while the socket is full.
    limit: usize,
}

impl Outbox {
    /// An empty, idle outbox holding at most `limit` lines while its socket
    /// is full ([`LAG_ALLOWANCE`] times as many until then). Allocates no
    /// queue storage until the first line.
    pub fn new(limit: usize) -> Outbox {
        Outbox::with_owner(limit, Owner::Idle)
    }

    /// An outbox drained by one dedicated thread for its whole life (the
    /// server's stdout display).
    pub fn for_thread(limit: usize) -> Outbox {
        Outbox::with_owner(limit, Owner::Thread)
    }

    fn with_owner(limit: usize, owner: Owner) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                lines: VecDeque::new(),
                end: None,
                quiet: false,
                owner,
                backlog_at_stall: 0,
            }),
            ready: Condvar::new(),
            limit,
        }
    }

    /// Queues `line` for prompt delivery. `Ok(true)` means the outbox was
    /// idle and the caller must hand it to the flushers. Lines pushed after
    /// the outbox ended are dropped.
    ///
    /// # Errors
    /// [`Full`] when the queue is full (see [`Outbox::room`]).
    pub fn push(&self, line: &Arc<str>) -> Result<bool, Full> {
        self.push_all(std::slice::from_ref(line))
    }

    /// [`Outbox::push`] for several lines in order, under one lock: the
    /// lines a client sent in one packet cost each recipient one lock, not
    /// one per line. They are taken whole or not at all.
    ///
    /// # Errors
    /// [`Full`] when the queue was already full (see [`Outbox::room`]).
    pub fn push_all(&self, lines: &[Arc<str>]) -> Result<bool, Full> {
        let mut state = self.enqueue(lines)?;
        if state.end.is_some() {
            return Ok(false);
        }
        state.quiet = false;
        Ok(self.wake(&mut state))
    }

    /// Queues `line` without waking anyone: it goes out with the next line
    /// pushed with [`Outbox::push`], or at the next [`Outbox::signal`]. Join
    /// and leave notices go this way, so a burst of a thousand joins costs
    /// each client a few writes, not a thousand.
    ///
    /// `Ok(true)` once [`QUIET_LINES`] (or half the queue) wait: the caller must then
    /// [`Outbox::signal`] at once rather than wait for the next quiet
    /// wake-up, or a burst of joins faster than those wake-ups would fill
    /// the queue of a client that does read, and drop it as too slow.
    ///
    /// # Errors
    /// [`Full`] when the queue is full (see [`Outbox::room`]).
    pub fn push_quiet(&self, line: &Arc<str>) -> Result<bool, Full> {
        let mut state = self.enqueue(std::slice::from_ref(line))?;
        if state.end.is_some() {
            return Ok(false);
        }
        state.quiet = true;
        Ok(state.lines.len() >= QUIET_LINES.min(self.limit.div_ceil(2)))
    }

    fn enqueue(&self, lines: &[Arc<str>]) -> Result<parking_lot::MutexGuard<'_, State>, Full> {
        let mut state = self.state.lock();
        if state.end.is_none() {
            if state.lines.len() >= self.room(&state) {
                return Err(Full);
            }
            state.lines.extend(lines.iter().cloned());
        }
        Ok(state)
    }

    /// How many lines may wait before a batch is refused: once a thread of
    /// its own waits on the client's full socket, `limit` more than were
    /// queued when it filled; while the socket takes everything (the client
    /// cannot be behind what it was never sent), [`LAG_ALLOWANCE`] times
    /// `limit`, which also caps the first.
    fn room(&self, state: &State) -> usize {
        let allowance = self.limit.saturating_mul(LAG_ALLOWANCE);
        if state.owner == Owner::Thread {
            (state.backlog_at_stall + self.limit).min(allowance)
        } else {
            allowance
        }
    }

    /// Wakes the drainer for quietly pushed lines, if any wait. `true`:
    /// hand the outbox to the flushers.
    pub fn signal(&self) -> bool {
        let mut state = self.state.lock();
        if !state.quiet {
            return false;
        }
        state.quiet = false;
        self.wake(&mut state)
    }

    /// Ends the outbox gracefully: `last` (the shutdown notice, say) is
    /// queued past the limit, then what is queued goes out until `deadline`.
    /// `true`: hand the outbox to the flushers.
    pub fn drain(&self, last: Option<&Arc<str>>, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return false;
        }
        state.lines.extend(last.cloned());
        state.end = Some(End::Drain(deadline));
        state.quiet = false;
        self.wake(&mut state)
    }

    /// Ends the outbox now: queued lines are dropped and only `last` (the
    /// reason, best effort) is left to send. `true`: hand the outbox to the
    /// flushers.
    pub fn abort(&self, last: Option<Arc<str>>) -> bool {
        let mut state = self.state.lock();
        if state.end == Some(End::Abort) {
            return false;
        }
        state.lines = last.into_iter().collect();
        state.end = Some(End::Abort);
        state.quiet = false;
        self.wake(&mut state)
    }

    /// Makes sure someone drains what is queued.
    fn wake(&self, state: &mut State) -> bool {
        match state.owner {
            Owner::Idle => {
                state.owner = Owner::Queued;
                true
            }
            Owner::Thread => {
                self.ready.notify_one();
                false
            }
            Owner::Queued | Owner::Flushing | Owner::Done => false,
        }
    }

    /// For a flusher that picked this outbox up: takes a batch without
    /// waiting, or returns it to idle when there is nothing to write.
    pub fn take_now(&self, batch: &mut Vec<Arc<str>>) -> Taken {
        let mut state = self.state.lock();
        debug_assert!(matches!(state.owner, Owner::Queued | Owner::Flushing));
        if state.lines.is_empty() && state.end.is_none() {
            state.owner = Owner::Idle;
            return Taken::Idle;
        }
        state.owner = Owner::Flushing;
        Self::take_batch(&mut state, batch)
    }

    /// For a thread that owns this outbox: waits for lines, up to `idle` if
    /// given; when that passes with nothing to write, the outbox goes back
    /// to idle and the thread may leave.
    pub fn take_wait(&self, batch: &mut Vec<Arc<str>>, idle: Option<Duration>) -> Taken {
        let mut state = self.state.lock();
        let until = idle.map(|idle| Instant::now() + idle);
        while (state.lines.is_empty() || state.quiet) && state.end.is_none() {
            match until {
                Some(until) => {
                    if self.ready.wait_until(&mut state, until).timed_out() {
                        break;
                    }
                }
                None => self.ready.wait(&mut state),
            }
        }
        if state.lines.is_empty() && state.end.is_none() {
            state.owner = Owner::Idle;
            state.quiet = false;
            state.backlog_at_stall = 0;
            return Taken::Idle;
        }
        Self::take_batch(&mut state, batch)
    }

    fn take_batch(state: &mut State, batch: &mut Vec<Arc<str>>) -> Taken {
        state.quiet = false;
        let mut bytes = 0;
        while bytes < BATCH_BYTES && batch.len() < BATCH_LINES {
            let Some(line) = state.lines.pop_front() else {
                break;
            };
            bytes += line.len();
            batch.push(line);
        }
        if state.lines.is_empty() && state.lines.capacity() > KEEP_CAPACITY {
            // Give back what a burst grew, so an idle client holds little.
            state.lines = VecDeque::new();
        }
        Taken::Batch {
            last: state.end.is_some() && state.lines.is_empty(),
        }
    }

    /// A flusher ran its turn and lines remain: back in line for fairness.
    /// `true`: hand the outbox to the flushers again.
    pub fn requeue(&self) -> bool {
        let mut state = self.state.lock();
        if state.owner == Owner::Flushing {
            state.owner = Owner::Queued;
            return true;
        }
        false
    }

    /// The client's socket is full: a thread of its own takes over. What
    /// is queued now is the server's backlog, not the client's.
    pub fn hand_to_thread(&self) {
        let mut state = self.state.lock();
        state.owner = Owner::Thread;
        state.backlog_at_stall = state.lines.len();
    }

    /// The socket is closed for writing: nothing more will be sent.
    pub fn finish(&self) {
        let mut state = self.state.lock();
        state.owner = Owner::Done;
        state.lines = VecDeque::new();
        state.end.get_or_insert(End::Abort);
    }

    /// Whether a writer should stop waiting on a stalled socket: the outbox
    /// was aborted (too slow, kicked), or its drain deadline passed.
    pub fn give_up(&self, now: Instant) -> bool {
        match self.state.lock().end {
            Some(End::Abort) => true,
            Some(End::Drain(deadline)) => now >= deadline,
            None => false,
        }
    }

    /// Whether the outbox was aborted (its socket is to be closed both ways).
    pub fn aborted(&self) -> bool {
        self.state.lock().end == Some(End::Abort)
    }

    /// Lines waiting now.
    pub fn len(&self) -> usize {
        self.state.lock().lines.len()
    }

    /// Whether no line is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
