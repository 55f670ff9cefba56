//! The writer: appends every line to its room's log, over one connection
//! per server.
//!
//! Lines are queued ([`Writer::append_all`]) and whoever sends takes whatever
//! is waiting, up to [`BATCH_MAX`], into one pipeline: one round trip to
//! Redis carries many lines under load, one line when the room is quiet.
//! Each line is the [`keys::APPEND`] script, which numbers it and XADDs it
//! atomically.
//!
//! Who sends: the writer's state (connection, uid sequence, unsure lines)
//! is behind one lock. A thread that has just relayed its client's line
//! and holds no other lock ([`Writer::send_queued`]) takes it if it is
//! free and sends the queue itself, so a line does not wait for the
//! writer thread to be woken and scheduled (on a busy machine about a
//! millisecond at each hand-over). When the lock is taken, the line waits
//! for the one who holds it, or for the writer thread, which wakes when
//! lines are queued, takes the lock and sends what is left; it alone
//! settles unsure lines (relaying threads leave the queue to it
//! meanwhile). The lock holder takes the queue in order, so each client's
//! lines reach the log in the order it sent them
//! (`relaying_threads_sending_for_each_other_keep_each_senders_order`).
//!
//! A line is never queued for later: when Redis is down (or the queue is
//! full) it is handed back to [`Sink::refused`] at once. A batch whose
//! connection broke after it was sent may or may not be in the log, and
//! may still reach Redis later (a paused Redis, a cut that heals: "not in
//! the log yet" is not "never will be"). Each line keeps its uid and the
//! time it was first sent, and [`keys::APPEND`] skips a uid at or below
//! this server's high-water mark, and a line older than [`STALE_AFTER`] by
//! Redis's clock. So once the link is back:
//!
//! - within [`UNSURE_DEADLINE`] those lines are sent again, first, with
//!   the same uids: each is applied once, whichever copy comes first;
//! - past it, the mark is raised over them ([`keys::FENCE`]), so no late
//!   copy can apply, and the mark as it was says exactly which ones the
//!   log took (delivered like any other) and which it never will (refused).
//!
//! While Redis stays away past the deadline (stopped, a network that stops
//! answering), no copy of such a line can be applied any more (it is
//! stale), but one may have been just before Redis stopped, only its reply
//! lost: it is refused at the deadline as [`Refusal::Unsure`](super::Refusal::Unsure), its sender
//! told it may not have been sent. A line sent to a Redis that restarted
//! empty since is not sent again (it may have been applied and read
//! before the restart): refused as [`Refusal::Restarted`](super::Refusal::Restarted). So no line is
//! doubled, none appears after its sender was told `!`, and a sender told
//! `!` without "not sure" never sees its line. Lines queued behind
//! unsettled ones are refused meanwhile (they were never sent).
//!
//! This file: the handle the rooms' log queues lines through. The thread's
//! loop and pipelines: `writer/sending.rs`. Lines whose fate is unknown:
//! `writer/unsure.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use redis::Script;

use super::link::{Endpoint, IO_TIMEOUT};
use super::{keys, Line, LogConfig, Sink, Token};
use crate::shutdown::Shutdown;

mod sending;
mod unsure;

use self::sending::WriterThread;

/// Most lines in one pipelined round trip.
pub const BATCH_MAX: usize = 512;

/// A round trip appends at most this fraction of what a room's log keeps
/// (`--redis-log-len`, `sending::batch_max`): the other servers' readers
/// read between two batches of each writer, so with up to this many
/// servers appending at once, no line is trimmed before they read it. At
/// the default log length (10,000) the bound is [`BATCH_MAX`] itself.
pub const LOG_SHARE: u64 = 16;

/// Most batches a relaying thread sends in a row for others
/// ([`Writer::send_queued`]) before it leaves the rest to the writer
/// thread and goes back to its own client.
const SEND_ROUNDS: usize = 4;

/// Lines that may wait for the writer; past that a line is refused (Redis
/// too slow). Worst case: this many lines of `--max-line` bytes.
pub const QUEUE_MAX: usize = 16_384;

/// How long a line whose fate is unknown (its batch's connection broke)
/// waits for the link to come back before it is refused.
pub const UNSURE_DEADLINE: Duration = Duration::from_secs(5);

/// How long after its first sending (this server's clock) a line may still
/// be applied (Redis's clock): [`keys::APPEND`] skips an older one. Half of
/// [`UNSURE_DEADLINE`], so at the deadline no copy can be applied even if
/// Redis's clock is behind this server's by up to the other half; Redis's
/// clock ahead by `d` leaves a line `STALE_AFTER - d` to reach it.
pub const STALE_AFTER: Duration = Duration::from_millis(UNSURE_DEADLINE.as_millis() as u64 / 2);

/// At most one log line this often about lines refused as stale (a clock
/// apart from Redis's would make every line stale).
const STALE_LOG_EVERY: Duration = Duration::from_secs(10);

/// When a line was first sent, and with which uid: what every copy of it
/// carries, so all of them are applied once at most and go stale together.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// The counter of its uid.
    counter: u64,
    /// When, by this server's monotonic clock: its [`UNSURE_DEADLINE`].
    since: Instant,
    /// When, by its wall clock (ms since the Unix epoch): for
    /// [`STALE_AFTER`], by Redis's clock.
    wall_ms: u64,
}

/// What the writer thread is asked to do.
enum Job {
    /// Append a line; `Token` says whom to tell if it is refused.
    Append(Token, Line),
    /// Add an entry to a reader's wake stream, ending its blocking XREAD.
    Wake(String),
    /// Name a room (its key, its spelling) unless it is named already:
    /// this server just gave it its first member ([`super::spelling`]).
    Spell(String, String),
    /// File a local member (its name, its [`keys::member_value`], its
    /// client) in this server's members list while it holds the name:
    /// ahead of its join notice, queued next ([`Writer::file`]).
    File(String, String, u64),
    /// Take a local member (its name, its [`keys::member_value`]) out of
    /// this server's members list if it is filed so still: ahead of the
    /// notice queued after it ([`Writer::unfile`]).
    Unfile(String, String),
    /// Send again a line whose first sending was lost on the way, as it was
    /// first sent (same uid, so Redis applies it once; same time, so no
    /// copy is applied past [`STALE_AFTER`]).
    Retry(Token, Line, Sent),
}

/// What happened to lines handed to [`Writer::append_all`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The writer has it; the sink hears of it only if it is refused.
    Queued,
    /// The writer's queue is full or it has stopped: refused now.
    Refused,
}

/// The handle to the writer thread. Dropping every handle ends the thread.
#[derive(Clone)]
pub struct Writer {
    /// The queue to the thread.
    jobs: Sender<Job>,
    /// The same queue's other end, for [`Writer::send_queued`].
    queue: Receiver<Job>,
    /// The thread's state: whoever holds it sends.
    state: Arc<Mutex<WriterThread>>,
    /// Lines of a batch that found the queue full half-way (another thread
    /// filled it first): refused by the writer thread, which may call the
    /// sink (the caller of [`Writer::append_all`] holds a room's lock).
    late: Arc<Mutex<Vec<(Token, Line)>>>,
    /// Pipelines sent so far (one round trip each), for tests.
    #[cfg(test)]
    round_trips: Arc<AtomicU64>,
    /// Shared with the thread: see [`Written`].
    written: Written,
    /// Lines sent whose fate is not known yet (in flight, or their reply
    /// lost and not settled), for tests.
    #[cfg(test)]
    unsettled: Arc<AtomicUsize>,
}

/// Per room, the epoch of the Redis and the highest line number the
/// writer's appends got back from it: what this server knows a log took,
/// so that when Redis loses it, the reader can say at least how many lines
/// went unseen. One entry per room this server wrote to; the reader drops
/// a room's entry when it stops reading the room.
pub type Written = Arc<Mutex<HashMap<String, (String, u64)>>>;

impl Writer {
    /// Starts the writer thread of server `server_id`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        endpoint: &Endpoint,
        server_id: &str,
        config: LogConfig,
        sink: Arc<dyn Sink>,
        shutdown: Arc<Shutdown>,
    ) -> std::io::Result<(Writer, thread::JoinHandle<()>)> {
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE_MAX);
        let round_trips = Arc::new(AtomicU64::new(0));
        let late = Arc::new(Mutex::new(Vec::new()));
        let written = Written::default();
        let unsettled = Arc::new(AtomicUsize::new(0));
        let thread = WriterThread {
            unsettled: Arc::clone(&unsettled),
            written: Arc::clone(&written),
            late: Arc::clone(&late),
            round_trips: Arc::clone(&round_trips),
            link: endpoint.link("writer", IO_TIMEOUT).rechecked(),
            server_id: server_id.to_string(),
            config,
            sink,
            queue: queue.clone(),
            shutdown,
            next_uid: AtomicU64::new(1),
            unsure: Vec::new(),
            retry: Vec::new(),
            script: Script::new(keys::APPEND),
            fence: Script::new(keys::FENCE),
            unfile: Script::new(keys::HDEL_IF),
            file: Script::new(keys::FILE_IF),
            stale_logged: None,
        };
        let state = Arc::new(Mutex::new(thread));
        let handle = {
            let state = Arc::clone(&state);
            thread::Builder::new()
                .name("redis-writer".into())
                .spawn(move || sending::run(&state))?
        };
        Ok((
            Writer {
                jobs,
                queue,
                state,
                late,
                #[cfg(test)]
                round_trips,
                written,
                #[cfg(test)]
                unsettled,
            },
            handle,
        ))
    }

    /// Queues a line for its room's log (tests: the server queues a
    /// batch at a time, [`Writer::append_all`]).
    #[cfg(test)]
    pub fn append(&self, token: Token, line: Line) -> Queued {
        match self.jobs.try_send(Job::Append(token, line)) {
            Ok(()) => Queued::Queued,
            Err(_) => Queued::Refused,
        }
    }

    /// Queues every line of a batch, in order, or none of them if the
    /// queue has no room for all ([`Queued::Refused`]). Should another
    /// thread fill the queue in between, the lines that did not fit are
    /// refused through the sink by the writer thread.
    pub fn append_all(&self, token: Token, lines: impl ExactSizeIterator<Item = Line>) -> Queued {
        if self.jobs.len() + lines.len() > QUEUE_MAX {
            return Queued::Refused;
        }
        let mut lines = lines;
        let mut missed = None;
        for line in lines.by_ref() {
            if let Err(e) = self.jobs.try_send(Job::Append(token, line)) {
                missed = Some(e.into_inner());
                break;
            }
        }
        if let Some(Job::Append(token, line)) = missed {
            let mut late = self.late.lock();
            late.push((token, line));
            late.extend(lines.map(|line| (token, line)));
        }
        Queued::Queued
    }

    /// Sends what is queued from the calling thread (one that holds no
    /// lock), if no one is sending and nothing is to be settled first:
    /// the line goes out without waiting for the writer thread to be
    /// scheduled. Otherwise leaves it to whoever sends, or to the thread.
    pub fn send_queued(&self) {
        let mut batch = Vec::new();
        for _ in 0..SEND_ROUNDS {
            if self.queue.is_empty() {
                return;
            }
            let Some(mut state) = self.state.try_lock() else {
                return;
            };
            if !state.takes_lines() || state.take(&mut batch).is_err() {
                return;
            }
            state.send(&mut batch);
        }
    }

    /// What the logs took, as far as this writer knows.
    pub fn written(&self) -> Written {
        Arc::clone(&self.written)
    }

    /// How many pipelines (round trips) the writer has sent.
    #[cfg(test)]
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many lines were sent whose fate is not known yet: on their way,
    /// or their reply lost and not settled.
    #[cfg(test)]
    pub fn unsettled(&self) -> usize {
        self.unsettled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Asks for an entry in `server_id`'s wake stream (best effort: a
    /// reader that is not woken sees its change after its block timeout).
    pub fn wake(&self, server_id: &str) {
        let _ = self.jobs.try_send(Job::Wake(keys::wake(server_id)));
    }

    /// Asks for local member `name` (client `client`) to be filed as
    /// `value` in this server's members list, if it still holds the name
    /// then ([`keys::FILE_IF`]), in the same pipeline as the lines queued
    /// after it and before them: its join notice, queued next, reaches no
    /// one before `/who` lists it. Best effort: the names link files it
    /// too, once the rooms hold no lock ([`super::bridge::Bridge::settled`]).
    pub fn file(&self, name: &str, value: String, client: u64) {
        let _ = self
            .jobs
            .try_send(Job::File(name.to_string(), value, client));
    }

    /// Asks for local member `name` to be taken out of this server's
    /// members list if it is filed as `value` still ([`keys::HDEL_IF`]),
    /// in the same pipeline as the lines queued after it and before them:
    /// the leave notice queued next reaches no one before `/who` agrees
    /// with it. A value names one filing (its room, when it entered it,
    /// its client), so a removal that lands late never takes out a newer
    /// one. Best effort: the names link takes it out too, after.
    pub fn unfile(&self, name: &str, value: String) {
        let _ = self.jobs.try_send(Job::Unfile(name.to_string(), value));
    }

    /// Asks for room `key` to be named `spelling` in Redis unless it is
    /// named already (best effort: presence names it at its next beat
    /// otherwise).
    pub fn spell(&self, key: &str, spelling: &str) {
        let _ = self
            .jobs
            .try_send(Job::Spell(key.to_string(), spelling.to_string()));
    }
}
