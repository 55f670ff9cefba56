//! Quiet lines: join and leave notices, written a little later in bulk.
//!
//! In a storm of joins every client would otherwise be woken (one context
//! switch and one `sendmsg`) once per join: n joins, n * n wake-ups. So a
//! notice is pushed with [`Wake::Later`]: it waits in the client's queue,
//! unannounced, until one of three things sends it:
//!
//! - the next line pushed with [`Wake::Now`] (a chat line): the notice goes
//!   first, so it never passes a chat line sent after it;
//! - [`QUIET_LINES`] quiet lines waiting (or half the queue): the client is
//!   woken at once, or a storm faster than the wake-ups would fill the queue
//!   of a client that does read, and drop it as too slow;
//! - the notice thread, which wakes every queue on its list after a short
//!   pause ([`wake_interval`]) that lets a burst of joins share one wake-up.
//!
//! A notice pushed behind lines its writer was already woken for (a chat
//! line, say) goes out with them: it does not make the queue quiet again,
//! or a writer not yet at the lock would go back to sleep on the chat line.
//!
//! A queue's first quiet line puts it on the notice thread's list (once: the
//! queue's `listed` flag), so the thread wakes exactly the clients that have
//! notices waiting, without any room's lock, and sleeps while the server
//! is idle. Locks: see [the write side's lock facts](super#locks).

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::flusher::Shared;
use super::queue::{Full, Handoff, Queue};
use super::{Peer, WRITER_STACK};

/// Quiet lines a queue holds before its writer is woken anyway. Small, so a
/// storm of joins keeps every queue small: 10,000 clients connecting would
/// otherwise grow 10,000 queues to hundreds of entries each between two
/// quiet wake-ups, and the heap keeps what it grew to.
pub const QUIET_LINES: usize = 48;

/// When a pushed line's writer is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// At once: chat lines, which must not wait.
    Now,
    /// Within the quiet wait (`write::quiet::wake_interval`, 10 to 250 ms
    /// by the clients woken): join and leave notices.
    Later,
}

/// Shortest wait of quiet lines for a wake-up (a few clients).
pub const MIN_QUIET_WAIT: Duration = Duration::from_millis(10);
/// Longest wait of quiet lines for a wake-up (many clients).
pub const MAX_QUIET_WAIT: Duration = Duration::from_millis(250);
/// Wait added per client woken last time: 20 us each keeps waking them at
/// about 50,000 wake-ups a second at most.
pub const QUIET_WAIT_PER_CLIENT: Duration = Duration::from_micros(20);

/// How long quiet lines may wait for a wake-up: [`QUIET_WAIT_PER_CLIENT`]
/// per client woken, within [`MIN_QUIET_WAIT`] and [`MAX_QUIET_WAIT`].
pub fn wake_interval(clients: usize) -> Duration {
    let scaled = QUIET_WAIT_PER_CLIENT.saturating_mul(clients.try_into().unwrap_or(u32::MAX));
    scaled.clamp(MIN_QUIET_WAIT, MAX_QUIET_WAIT)
}

/// What a quiet push asks of its caller.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Quieted {
    /// Nothing: the queue is already on the list (or has ended).
    Waiting,
    /// The queue's first quiet line: put it on the notice thread's list.
    List,
    /// [`QUIET_LINES`] wait: signal the queue now.
    SignalNow,
}

impl Queue {
    /// Queues `line` without waking anyone (see the module docs).
    ///
    /// # Errors
    /// [`Full`] when the queue is full.
    pub(super) fn push_quiet(&self, line: &Arc<str>) -> Result<Quieted, Full> {
        let mut state = self.enqueue(std::slice::from_ref(line))?;
        if state.ended() {
            return Ok(Quieted::Waiting);
        }
        if !state.quiet && state.queued() > 1 {
            // Lines its writer was woken for wait ahead of this one: it goes
            // with them.
            return Ok(Quieted::Waiting);
        }
        state.quiet = true;
        if state.queued() >= QUIET_LINES.min(self.limits.lines.div_ceil(2)) {
            return Ok(Quieted::SignalNow);
        }
        if state.listed {
            return Ok(Quieted::Waiting);
        }
        state.listed = true;
        Ok(Quieted::List)
    }

    /// Wakes the drainer for quietly pushed lines, if any wait. `listed`:
    /// the notice thread took this queue off its list.
    pub(super) fn signal(&self, listed: bool) -> Handoff {
        let mut state = self.state.lock();
        if listed {
            state.listed = false;
        }
        if !state.quiet {
            return Handoff::Done;
        }
        state.quiet = false;
        self.wake(&mut state)
    }
}

/// A queue with quiet lines that nobody has been woken for yet.
pub(super) enum Waiting {
    /// A client's: hand it to the flushers.
    Peer(Arc<Peer>),
    /// The console's display: its thread is notified.
    Display(Arc<Queue>),
}

/// The notice thread's list and its wake-up.
#[derive(Default)]
pub(super) struct Notices {
    /// The queues with quiet lines waiting: nests in no other lock.
    list: Mutex<List>,
    /// Notified when the list stops being empty, and at stop.
    ready: Condvar,
}

#[derive(Default)]
struct List {
    /// Each queue at most once (its `listed` flag).
    waiting: Vec<Waiting>,
    /// How many the last wake-up woke: the next pause scales with it.
    last_woken: usize,
    /// Set by [`Notices::stop`].
    stopping: bool,
}

impl Notices {
    /// Puts a queue on the list; wakes the thread if the list was empty
    /// (while it pauses the list is not, so a burst does not cut the pause).
    pub(super) fn list(&self, waiting: Waiting) {
        let mut list = self.list.lock();
        list.waiting.push(waiting);
        if list.waiting.len() == 1 {
            self.ready.notify_one();
        }
    }

    /// Asks the thread to leave; quiet lines left are the shutdown's to
    /// drain.
    pub(super) fn stop(&self) {
        self.list.lock().stopping = true;
        self.ready.notify_all();
    }
}

/// Starts the notice thread.
///
/// # Errors
/// When the thread cannot be started.
pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("notices".into())
        .stack_size(WRITER_STACK)
        .spawn(move || run(&shared))
}

/// The notice thread's life: asleep until a queue is listed, a pause, then
/// wake everything listed.
fn run(shared: &Shared) {
    let notices = &shared.notices;
    loop {
        let mut list = notices.list.lock();
        while list.waiting.is_empty() && !list.stopping {
            notices.ready.wait(&mut list);
        }
        let pause = wake_interval(list.last_woken.max(list.waiting.len()));
        let until = Instant::now() + pause;
        while !list.stopping && !notices.ready.wait_until(&mut list, until).timed_out() {}
        if list.stopping {
            return;
        }
        let waiting = std::mem::take(&mut list.waiting);
        list.last_woken = waiting.len();
        drop(list);
        for queue in waiting {
            match queue {
                Waiting::Peer(peer) => {
                    if peer.queue.signal(true) == Handoff::Schedule {
                        shared.schedule(&peer);
                    }
                }
                Waiting::Display(queue) => {
                    // A thread-owned queue is notified, never scheduled.
                    let _ = queue.signal(true);
                }
            }
        }
    }
}

/// Pushes `lines` quietly to `peer`, listing it or signalling it as its
/// queue asks.
///
/// # Errors
/// [`Full`]: the client is too slow.
pub(super) fn push(shared: &Shared, peer: &Arc<Peer>, lines: &[Arc<str>]) -> Result<(), Full> {
    for line in lines {
        match peer.queue.push_quiet(line)? {
            Quieted::Waiting => {}
            Quieted::List => shared.notices.list(Waiting::Peer(Arc::clone(peer))),
            Quieted::SignalNow => {
                if peer.queue.signal(false) == Handoff::Schedule {
                    shared.schedule(peer);
                }
            }
        }
    }
    Ok(())
}

/// Pushes `line` quietly to the display's queue; a display that cannot keep
/// up loses it.
pub(super) fn show(shared: &Shared, display: &Arc<Queue>, line: &Arc<str>) {
    match display.push_quiet(line) {
        Ok(Quieted::List) => shared.notices.list(Waiting::Display(Arc::clone(display))),
        Ok(Quieted::SignalNow) => {
            let _ = display.signal(false);
        }
        Ok(Quieted::Waiting) | Err(Full) => {}
    }
}
