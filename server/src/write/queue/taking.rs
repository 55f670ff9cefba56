//! The writers' side of a client's queue: taking a batch to send (a
//! flusher without waiting, a slow client's thread waiting), giving the
//! queue back, and how it ends once the socket is full or closing.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    After, End, Handoff, Owner, Queue, Socket, Stall, State, Taken, BATCH_BYTES, BATCH_LINES,
    KEEP_CAPACITY,
};

impl Queue {
    /// For a flusher that picked this queue up: takes a batch without
    /// waiting, or returns it to idle when there is nothing to write.
    pub(in crate::write) fn take_now(&self, batch: &mut Vec<Arc<str>>) -> Taken {
        let mut state = self.state.lock();
        debug_assert!(matches!(state.owner, Owner::Queued | Owner::Flushing));
        if state.lines.is_empty() && state.end.is_none() {
            state.owner = Owner::Idle;
            return Taken::Idle;
        }
        state.owner = Owner::Flushing;
        Self::take_batch(&mut state, batch)
    }

    /// For a thread that owns this queue: waits for lines, up to `idle` if
    /// given; when that passes with nothing to write, the queue goes back
    /// to idle and the thread may leave.
    pub(in crate::write) fn take_wait(
        &self,
        batch: &mut Vec<Arc<str>>,
        idle: Option<Duration>,
    ) -> Taken {
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
            state.socket = Socket::TakesAll;
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
            let number = state.front;
            state.front += 1;
            if let Some(replay) = &mut state.replay {
                if number >= replay.from {
                    replay.bytes -= line.len();
                }
                if number + 1 >= replay.to {
                    state.replay = None;
                }
            }
            bytes += line.len();
            batch.push(line);
        }
        state.bytes -= bytes;
        if state.lines.is_empty() && state.lines.capacity() > KEEP_CAPACITY {
            // Give back what a burst grew, so an idle client holds little.
            state.lines = VecDeque::new();
        }
        if state.end.is_some() && state.lines.is_empty() {
            Taken::Batch(After::Close)
        } else {
            Taken::Batch(After::More)
        }
    }

    /// A flusher ran its turn and lines remain: back in line for fairness.
    pub(in crate::write) fn requeue(&self) -> Handoff {
        let mut state = self.state.lock();
        if state.owner == Owner::Flushing {
            state.owner = Owner::Queued;
            return Handoff::Schedule;
        }
        Handoff::Done
    }

    /// A flusher found the client's socket full: a thread of its own takes
    /// over, and what is queued now is the server's backlog, not the
    /// client's. Says whether to give up instead (see [`Queue::still_full`]).
    pub(in crate::write) fn hand_to_thread(&self, now: Instant) -> Stall {
        let mut state = self.state.lock();
        state.owner = Owner::Thread;
        let (lines, bytes) = state.counted();
        state.socket = Socket::Full { lines, bytes };
        Self::stall(&state, now)
    }

    /// The client's own thread found its socket full (a write timed out or
    /// went short): counting starts from what is queued now, unless it
    /// already started. Says whether to stop waiting: the queue was aborted
    /// (too slow, kicked), or its drain deadline passed.
    pub(in crate::write) fn still_full(&self, now: Instant) -> Stall {
        let mut state = self.state.lock();
        if state.socket == Socket::TakesAll {
            let (lines, bytes) = state.counted();
            state.socket = Socket::Full { lines, bytes };
        }
        Self::stall(&state, now)
    }

    /// The client's own thread wrote a batch and the socket took it whole:
    /// the client is keeping up again, so the lag allowance is back.
    pub(in crate::write) fn took_all(&self) {
        self.state.lock().socket = Socket::TakesAll;
    }

    /// Shutdown: whoever waits on this client gives up by `deadline` at the
    /// latest, even if the queue was draining until later (a kicked or
    /// leaving client's queue drains for the rooms' `LEAVE_DRAIN`, longer
    /// than the shutdown's grace).
    pub(in crate::write) fn cut(&self, deadline: Instant) {
        let mut state = self.state.lock();
        match state.end {
            Some(End::Drain(until)) => state.end = Some(End::Drain(until.min(deadline))),
            Some(End::Abort) => {}
            // Not ended (the rooms end every member's queue first):
            // what is queued goes out until the deadline.
            None if state.owner == Owner::Thread => {
                state.end = Some(End::Drain(deadline));
                self.ready.notify_one();
            }
            None => {}
        }
    }

    /// Nothing more will be sent: drops what is queued and says how to shut
    /// the socket: both ways if the queue was aborted (which also wakes the
    /// client's reader), else for writing only, so the client reads our
    /// last line and then end of stream.
    pub(in crate::write) fn finish(&self) -> Shutdown {
        let mut state = self.state.lock();
        let how = if state.end == Some(End::Abort) {
            Shutdown::Both
        } else {
            Shutdown::Write
        };
        state.owner = Owner::Done;
        state.lines = VecDeque::new();
        state.bytes = 0;
        state.replay = None;
        state.end.get_or_insert(End::Abort);
        how
    }

    /// Whether a writer should stop waiting on a stalled socket.
    fn stall(state: &State, now: Instant) -> Stall {
        match state.end {
            Some(End::Abort) => Stall::GiveUp,
            Some(End::Drain(deadline)) if now >= deadline => Stall::GiveUp,
            Some(End::Drain(_)) | None => Stall::Wait,
        }
    }
}
