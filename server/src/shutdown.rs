//! The shutdown signal every long-lived thread watches.
//!
//! One [`Shutdown`], in the server's `Context`, is watched by the accept
//! loop, every session (chat, echo, upper and file: flood control pauses on
//! it), the console, the notices thread and the UDP thread; the write side
//! does not watch it, [`Server::run`](crate::Server::run) stops it in turn.
//! Triggering it is a one-way switch: a flag for cheap polls plus a dropped
//! channel sender, so that a thread pausing on purpose (the accept loop's
//! back-off, a flooder's rate limit, the notices thread's interval) wakes at
//! once instead of sleeping through the shutdown.
//!
//! The stop joins threads by a deadline (`join_by`, `join_until`): one
//! that cannot be woken in time is left to process exit, so the stop stays
//! within [`GRACE`] and its deadlines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// How long shutdown may spend delivering what is queued before connections
/// are closed regardless (SPEC: all within 2 s).
pub const GRACE: Duration = Duration::from_millis(1000);

/// How often [`join_by`] looks whether a thread has finished: a thread has
/// no "joined or timed out" wait, and 5 ms is short next to the stop's
/// deadlines (hundreds of ms) and costs nothing over a stop's few threads.
pub(crate) const JOIN_POLL: Duration = Duration::from_millis(5);

/// Whether [`join_by`] joined its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Joined {
    /// It finished by the deadline and was joined.
    Joined,
    /// Still running at the deadline: left to process exit, unjoined.
    StillBusy,
}

/// Joins `thread` if it finishes by `deadline`, looking every
/// [`JOIN_POLL`]; a thread still running then (stuck in a write, or on a
/// round trip to a hung Redis) is left to process exit. The caller says
/// what that cost, if anything.
pub(crate) fn join_by(thread: JoinHandle<()>, deadline: Instant) -> Joined {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return Joined::StillBusy;
        }
        thread::sleep(JOIN_POLL);
    }
    let _ = thread.join();
    Joined::Joined
}

/// [`join_by`], logging a thread still busy at `deadline` (a display stuck
/// on a stdout nobody reads) by its name.
pub(crate) fn join_until(thread: JoinHandle<()>, deadline: Instant) {
    let name = thread.thread().name().unwrap_or("a").to_string();
    if join_by(thread, deadline) == Joined::StillBusy {
        crate::log!("{name} thread still busy at the deadline; not waiting for it");
    }
}

/// How a wait that shutdown cuts short ended: [`Shutdown::pause`],
/// [`TokenBucket::wait`](crate::flood::TokenBucket::wait),
/// [`Link::wait_up`](crate::cluster::link::Link::wait_up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Waited {
    /// The wait ran its course (its time passed, or what it waited for came)
    /// and shutdown has not begun.
    Done,
    /// Shutdown began, before or during the wait: the caller stops.
    ShuttingDown,
}

/// A one-way switch from "running" to "shutting down".
pub struct Shutdown {
    /// Set once; read by polls on every hot path.
    flag: AtomicBool,
    /// Dropped on trigger, which disconnects `wake` and ends every
    /// [`Shutdown::pause`] at once.
    trigger: Mutex<Option<Sender<()>>>,
    /// Never receives a message: it only disconnects.
    wake: Receiver<()>,
    /// When shutdown began; the delivery deadline counts from here.
    started: Mutex<Option<Instant>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A switch in the "running" position.
    pub fn new() -> Self {
        let (trigger, wake) = crossbeam_channel::bounded(0);
        Shutdown {
            flag: AtomicBool::new(false),
            trigger: Mutex::new(Some(trigger)),
            wake,
            started: Mutex::new(None),
        }
    }

    /// Starts the shutdown. Returns `true` the first time only.
    pub fn trigger(&self) -> bool {
        let first = !self.flag.swap(true, Ordering::SeqCst);
        if first {
            *self.started.lock() = Some(Instant::now());
            self.trigger.lock().take();
        }
        first
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sleeps for `d`, or less if shutdown begins meanwhile;
    /// [`Waited::ShuttingDown`] if shutdown has begun.
    pub fn pause(&self, d: Duration) -> Waited {
        let _ = self.wake.recv_timeout(d);
        if self.is_triggered() {
            Waited::ShuttingDown
        } else {
            Waited::Done
        }
    }

    /// The instant by which queued lines must be out; `None` while running.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.lock().map(|t| t + GRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pause runs its course while the server runs; once shutdown is
    /// triggered it ends at once and says why.
    #[test]
    fn pause_says_how_it_ended() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.pause(Duration::from_millis(1)), Waited::Done);
        assert!(shutdown.trigger());
        let started = Instant::now();
        assert_eq!(
            shutdown.pause(Duration::from_secs(30)),
            Waited::ShuttingDown
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
