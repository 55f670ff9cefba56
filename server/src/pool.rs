//! The bounded worker pool that serves connections.
//!
//! Shaped like the Rust Book's `ThreadPool` (a job channel, named workers,
//! shutdown by dropping the sender and joining), with three changes a chat
//! server needs:
//!
//! - Workers are started on demand, up to `--workers`, and leave after
//!   [`IDLE_EXIT`] without work, so a quiet server holds few threads.
//! - Admission is decided before the hand-off ([`Pool::reserve`]): a
//!   connection learns at once whether it is served, waits (and where it is
//!   in line), or is refused because the queue is full. The bound on waiting
//!   connections is `--queue`; the pool size caps the clients served at once.
//! - A panicking job is caught, so it never shrinks the pool.
//!
//! The crossbeam receiver is cloned into each worker: no lock is held while
//! a job runs. The `State` lock is taken only at job boundaries.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::log;

/// A connection to serve, run once on a worker.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long a worker waits for a job before it leaves (if spare).
pub const IDLE_EXIT: Duration = Duration::from_secs(30);

/// Stack of a worker thread. A worker runs one session's reader: framing and
/// command handling, no deep recursion. Small stacks are what let 10,000
/// clients fit; only touched pages count towards memory.
pub const WORKER_STACK: usize = 256 * 1024;

/// Counts shared by the pool and its workers.
#[derive(Debug, Default)]
struct State {
    /// Jobs admitted and not finished: running plus waiting in the channel.
    busy: usize,
    /// Worker threads alive.
    workers: usize,
}

/// Why [`Pool::reserve`] refused a connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// A place reserved in the pool for one job; given back if dropped unused.
pub struct Ticket {
    state: Arc<Mutex<State>>,
    /// 1-based position in line when every worker is busy.
    waiting: Option<usize>,
    used: bool,
}

impl Ticket {
    /// Where the job stands in line, if it must wait for a worker.
    pub fn waiting(&self) -> Option<usize> {
        self.waiting
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.used {
            self.state.lock().busy -= 1;
        }
    }
}

/// A thread the pool started.
struct Worker {
    thread: JoinHandle<()>,
}

/// Runs jobs on at most `max_workers` threads, with at most `max_waiting`
/// jobs waiting for one.
pub struct Pool {
    /// `None` once shutting down: dropping it lets workers drain the
    /// channel and stop.
    sender: Option<Sender<Job>>,
    /// Cloned into each new worker.
    receiver: Receiver<Job>,
    state: Arc<Mutex<State>>,
    workers: Vec<Worker>,
    max_workers: usize,
    max_waiting: usize,
    next_id: usize,
}

impl Pool {
    /// A pool with no threads yet.
    pub fn new(max_workers: usize, max_waiting: usize) -> Pool {
        // Admission (`reserve`) bounds what is in flight to workers +
        // waiting, so a send never blocks.
        let (sender, receiver) = crossbeam_channel::bounded(max_workers + max_waiting);
        Pool {
            sender: Some(sender),
            receiver,
            state: Arc::new(Mutex::new(State::default())),
            workers: Vec::new(),
            max_workers,
            max_waiting,
            next_id: 0,
        }
    }

    /// Reserves a place for one job, starting a worker if none is free.
    ///
    /// # Errors
    /// [`Full`] when every worker is busy and `max_waiting` jobs already wait.
    pub fn reserve(&mut self) -> Result<Ticket, Full> {
        let shared = Arc::clone(&self.state);
        let mut state = shared.lock();
        if state.busy >= state.workers && state.workers < self.max_workers {
            match self.spawn_worker() {
                Ok(()) => state.workers += 1,
                Err(e) => log!("cannot start a worker thread: {e}"),
            }
        }
        let waiting = (state.busy + 1).saturating_sub(state.workers);
        if waiting > self.max_waiting || state.workers == 0 {
            return Err(Full);
        }
        state.busy += 1;
        Ok(Ticket {
            state: Arc::clone(&self.state),
            waiting: (waiting > 0).then_some(waiting),
            used: false,
        })
    }

    /// Hands `job` to a worker, in the place `ticket` reserved.
    pub fn execute(&mut self, mut ticket: Ticket, job: Job) {
        ticket.used = true;
        let sender = self
            .sender
            .as_ref()
            .expect("execute is not called after shutdown");
        if sender.try_send(job).is_err() {
            // Cannot happen: the channel holds workers + waiting, and
            // admission keeps busy below that. Give the place back.
            ticket.used = false;
            log!("worker channel full: connection dropped");
        }
    }

    fn spawn_worker(&mut self) -> std::io::Result<()> {
        self.workers.retain(|w| !w.thread.is_finished());
        self.next_id += 1;
        let receiver = self.receiver.clone();
        let state = Arc::clone(&self.state);
        let thread = thread::Builder::new()
            .name(format!("worker-{}", self.next_id))
            .stack_size(WORKER_STACK)
            .spawn(move || work(&receiver, &state))?;
        self.workers.push(Worker { thread });
        Ok(())
    }
}

/// A worker's life: take jobs until the channel closes, or until idle long
/// enough while spare.
fn work(receiver: &Receiver<Job>, state: &Mutex<State>) {
    loop {
        match receiver.recv_timeout(IDLE_EXIT) {
            Ok(job) => {
                // The job logs its own errors; a panic is reported by the
                // panic hook and must not take the worker with it.
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
                state.lock().busy -= 1;
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut state = state.lock();
                // Leave only if every admitted job still has a worker.
                if state.busy < state.workers {
                    state.workers -= 1;
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for Pool {
    /// Graceful shutdown: close the channel, let the workers finish what was
    /// admitted, join them all.
    fn drop(&mut self) {
        drop(self.sender.take());
        for worker in self.workers.drain(..) {
            if worker.thread.join().is_err() {
                log!("a worker thread panicked");
            }
        }
    }
}
