//! The bounded worker pool that serves connections.
//!
//! Shaped like the Rust Book's `ThreadPool` (named workers, shutdown by
//! closing the queue and joining), with four changes a chat server needs:
//!
//! - Workers are started on demand, up to `--workers`, and leave after
//!   [`IDLE_EXIT`] without work, so a quiet server holds few threads.
//! - Admission is decided before the hand-off ([`Pool::reserve`]): a
//!   connection learns at once whether it is served, waits (and where it is
//!   in line), or is refused because the queue is full. The bound on waiting
//!   connections is `--queue`; the pool size caps the clients served at once.
//! - A connection that gives up while it waits (closes, or is reset) leaves
//!   the line: a watcher thread notices within [`WATCH_INTERVAL`] and drops
//!   its job, which frees its place in line and, through the job's guards,
//!   its per-address slot. A socket the server shut itself (`/ban`, a
//!   lockout, the shutdown) looks the same from here and is dropped the
//!   same way; the job's guard ([`crate::unserved::Unserved`]) then tells
//!   it why. The pool logs no drop: the guard, which knows which it was,
//!   does. A job a worker takes is run, and the connection looks again
//!   ([`gave_up`], `serve_connection`): one gone by then never joins a
//!   room.
//! - A panicking job is caught, so it never shrinks the pool.
//!
//! The line is a `VecDeque` under the `State` lock (a channel cannot give
//! back a job from its middle), grown as connections wait: nothing is
//! reserved up front in proportion to `--workers` or `--queue`. The lock is
//! taken only at job boundaries, never while a job runs.
//!
//! The watcher's polling is `pool/watch.rs`.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::log;

mod watch;

pub use watch::gave_up;
use watch::watch;

/// A connection to serve, run once on a worker.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long a worker waits for a job before it leaves (if spare).
pub const IDLE_EXIT: Duration = Duration::from_secs(30);

/// Stack of a worker thread. A worker runs one session's reader: framing and
/// command handling, no deep recursion. Small stacks are what let 10,000
/// clients fit; only touched pages count towards memory.
pub const WORKER_STACK: usize = 256 * 1024;

/// Longest a waiting connection that closed keeps its place: the watcher
/// looks at every waiting socket at least this often (SPEC: within 1 s).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Stack of the watcher thread: it only polls.
const WATCHER_STACK: usize = 64 * 1024;

/// A job waiting for a worker.
struct Waiting {
    /// Names it for [`Pool`]'s watcher, which may take it out of line.
    id: u64,
    /// The connection's session: run once by a worker, or dropped unrun
    /// if its connection gave up or the pool stopped (its guards then free
    /// the place and tell it why).
    job: Job,
    /// Its connection, watched for the peer giving up; `None` once it is
    /// known to have data to serve (a half-close after a last line).
    watch: Option<Arc<TcpStream>>,
}

/// What the pool, its workers and its watcher share, under one lock.
#[derive(Default)]
struct State {
    /// Jobs admitted and not finished: running plus waiting in `line`, plus
    /// places reserved by a [`Ticket`] not yet used.
    busy: usize,
    /// Of `busy`, the places reserved by a [`Ticket`] not yet used: the
    /// watcher tells the jobs idle workers take now by them.
    reserved: usize,
    /// Worker threads alive.
    workers: usize,
    /// Jobs waiting for a worker, oldest first.
    line: VecDeque<Waiting>,
    /// Set on shutdown: workers finish the line and stop, the watcher stops.
    closed: bool,
    /// Id of the next job.
    next_id: u64,
}

/// The lock and the two wake-ups.
#[derive(Default)]
struct Shared {
    /// Taken only at job boundaries (to queue, take or finish a job),
    /// never while a job runs.
    state: Mutex<State>,
    /// A job was queued, or the pool closed.
    work: Condvar,
    /// A job started waiting, or the pool closed (for the watcher).
    waiting: Condvar,
}

/// Why [`Pool::reserve`] refused a connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// A place reserved in the pool for one job; given back if dropped unused.
pub struct Ticket {
    /// The pool's state, to give the place back (`busy`) if the ticket is
    /// dropped unused.
    shared: Arc<Shared>,
    /// 1-based position in line when every worker is busy.
    waiting: Option<usize>,
    /// Set by [`Pool::execute`]: the job holds the place from then on, and
    /// a worker gives it back when the job ends.
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
            let mut state = self.shared.state.lock();
            state.busy -= 1;
            state.reserved -= 1;
        }
    }
}

/// Runs jobs on at most `max_workers` threads, with at most `max_waiting`
/// jobs waiting for one.
pub struct Pool {
    /// Shared with every worker and the watcher; closed at the stop (or
    /// the drop), which ends them.
    shared: Arc<Shared>,
    /// Threads started (finished ones are pruned when a new one starts).
    workers: Vec<JoinHandle<()>>,
    /// Takes jobs whose connection gave up out of line.
    watcher: Option<JoinHandle<()>>,
    /// `--workers`: most worker threads at once, so most clients served at
    /// once.
    max_workers: usize,
    /// `--queue`: most jobs waiting for a worker; past it a connection is
    /// refused ([`Full`]).
    max_waiting: usize,
    /// Numbers the workers' thread names (`worker-N`), never reused.
    next_worker: usize,
}

impl Pool {
    /// A pool with no threads yet but its watcher.
    pub fn new(max_workers: usize, max_waiting: usize) -> Pool {
        let shared = Arc::new(Shared::default());
        let watcher = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("queue-watch".into())
                .stack_size(WATCHER_STACK)
                .spawn(move || watch(&shared))
        };
        let watcher = match watcher {
            Ok(thread) => Some(thread),
            Err(e) => {
                log!("cannot watch waiting connections: {e}");
                None
            }
        };
        Pool {
            shared,
            workers: Vec::new(),
            watcher,
            max_workers,
            max_waiting,
            next_worker: 0,
        }
    }

    /// Reserves a place for one job, starting a worker if none is free.
    /// The new worker is counted under the lock and started after it is
    /// let go (a spawn is a system call, and workers finishing jobs wait
    /// on that lock); if it cannot start, the count is undone. Only the
    /// accept thread reserves, so no other reserve comes in between.
    ///
    /// # Errors
    /// [`Full`] when every worker is busy and `max_waiting` jobs already wait.
    pub fn reserve(&mut self) -> Result<Ticket, Full> {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.state.lock();
        if state.busy >= state.workers && state.workers < self.max_workers {
            state.workers += 1;
            drop(state);
            let started = self.spawn_worker();
            state = shared.state.lock();
            if let Err(e) = started {
                state.workers -= 1;
                log!("cannot start a worker thread: {e}");
            }
        }
        let waiting = (state.busy + 1).saturating_sub(state.workers);
        if waiting > self.max_waiting || state.workers == 0 {
            return Err(Full);
        }
        state.busy += 1;
        state.reserved += 1;
        Ok(Ticket {
            shared: Arc::clone(&self.shared),
            waiting: (waiting > 0).then_some(waiting),
            used: false,
        })
    }

    /// Hands `job` to a worker, in the place `ticket` reserved. While it
    /// waits, `watch` is watched: if its peer gives up, the job is dropped
    /// unrun.
    pub fn execute(&mut self, mut ticket: Ticket, job: Job, watch: Arc<TcpStream>) {
        ticket.used = true;
        let mut state = self.shared.state.lock();
        state.reserved -= 1;
        state.next_id += 1;
        let id = state.next_id;
        state.line.push_back(Waiting {
            id,
            job,
            watch: Some(watch),
        });
        drop(state);
        self.shared.work.notify_one();
        self.shared.waiting.notify_one();
    }

    fn spawn_worker(&mut self) -> std::io::Result<()> {
        self.workers.retain(|w| !w.is_finished());
        self.next_worker += 1;
        let shared = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name(format!("worker-{}", self.next_worker))
            .stack_size(WORKER_STACK)
            .spawn(move || work(&shared))?;
        self.workers.push(thread);
        Ok(())
    }
}

/// A worker's life: take jobs until the pool closes and the line is empty,
/// or until idle long enough while spare.
fn work(shared: &Shared) {
    let mut state = shared.state.lock();
    loop {
        if let Some(Waiting { job, watch, .. }) = state.line.pop_front() {
            drop(state);
            // The session holds the connection from here on (and looks
            // whether its peer is gone: `serve_connection`).
            drop(watch);
            // The job logs its own errors; a panic is reported by the
            // panic hook and must not take the worker with it.
            let _ = panic::catch_unwind(AssertUnwindSafe(job));
            state = shared.state.lock();
            state.busy -= 1;
            continue;
        }
        if state.closed {
            return;
        }
        if shared.work.wait_for(&mut state, IDLE_EXIT).timed_out()
            && state.line.is_empty()
            && state.busy < state.workers
        {
            // Leave only if every admitted job still has a worker.
            state.workers -= 1;
            return;
        }
    }
}

impl Pool {
    /// The server's graceful stop: close the line, let the workers finish
    /// what was admitted, and join them and the watcher, but not past
    /// `deadline`. A worker still busy then (its session blocked on
    /// something the shutdown cannot wake, such as a round trip to a hung
    /// Redis, which ends only at the link's timeout) is left to process
    /// exit, so the stop stays within its 2 s.
    pub fn stop(mut self, deadline: Instant) {
        self.close();
        for worker in self.workers.drain(..) {
            crate::shutdown::join_until(worker, deadline);
        }
        if let Some(watcher) = self.watcher.take() {
            crate::shutdown::join_until(watcher, deadline);
        }
    }

    fn close(&self) {
        self.shared.state.lock().closed = true;
        self.shared.work.notify_all();
        self.shared.waiting.notify_all();
    }
}

impl Drop for Pool {
    /// Close the line, let the workers finish what was admitted, join them
    /// all and the watcher (after [`Pool::stop`], whatever it left).
    fn drop(&mut self) {
        self.close();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log!("a worker thread panicked");
            }
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

#[cfg(test)]
mod tests;
