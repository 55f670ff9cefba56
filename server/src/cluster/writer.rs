//! The writer: one thread per server appends every line to its room's log.
//!
//! Lines are queued ([`Writer::append`]) and the thread takes whatever is
//! waiting, up to [`BATCH_MAX`], into one pipeline: one round trip to Redis
//! carries many lines under load, one line when the room is quiet. Each line
//! is the [`keys::APPEND`] script, which numbers it and XADDs it atomically.
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
//! lost: it is refused at the deadline as [`Refusal::Unsure`], its sender
//! told it may not have been sent. A line sent to a Redis that restarted
//! empty since is not sent again (it may have been applied and read
//! before the restart): refused as [`Refusal::Restarted`]. So no line is
//! doubled, none appears after its sender was told `!`, and a sender told
//! `!` without "not sure" never sees its line. Lines queued behind
//! unsettled ones are refused meanwhile (they were never sent).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use redis::{Script, Value};

use super::link::{Endpoint, Failure, Link, IO_TIMEOUT};
use super::{keys, Line, LogConfig, Refusal, Sink, Token};
use crate::log;
use crate::shutdown::Shutdown;

/// Most lines in one pipelined round trip.
pub const BATCH_MAX: usize = 512;

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

/// Now by this server's wall clock, in ms since the Unix epoch: a line's
/// first sending, compared with Redis's clock by [`keys::APPEND`].
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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
    /// Send again a line whose first sending was lost on the way, as it was
    /// first sent (same uid, so Redis applies it once; same time, so no
    /// copy is applied past [`STALE_AFTER`]).
    Retry(Token, Line, Sent),
}

/// What happened to a line handed to [`Writer::append`].
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
    /// Lines of a batch that found the queue full half-way (another thread
    /// filled it first): refused by the writer thread, which may call the
    /// sink (the caller of [`Writer::append_all`] holds a room's lock).
    late: Arc<Mutex<Vec<(Token, Line)>>>,
    /// Pipelines sent so far (one round trip each), for tests and stats.
    round_trips: Arc<AtomicU64>,
    /// Shared with the thread: see [`Written`].
    written: Written,
    /// Lines sent whose fate is not known yet (in flight, or their reply
    /// lost and not settled), for tests and stats.
    unsettled: Arc<AtomicUsize>,
}

/// Per room, the epoch of the Redis and the highest line number the
/// writer's appends got back from it: what this server knows a log took,
/// so that when Redis loses it, the reader can say at least how many lines
/// went unseen. One entry per room this server wrote to; the reader drops
/// a room's entry when it stops reading the room.
pub type Written = Arc<Mutex<HashMap<String, (String, u64)>>>;

/// A line sent in a batch whose reply was lost.
struct Unsure {
    /// Whom to tell if it is refused in the end.
    token: Token,
    /// The line, to send again or hand back.
    line: Line,
    /// Its uid's counter (sent again with it, or compared with the
    /// high-water mark) and when it was first sent (settled after
    /// [`UNSURE_DEADLINE`]).
    sent: Sent,
    /// The epoch of the Redis it was sent to: it is not sent again to a
    /// Redis restarted empty since.
    epoch: Option<String>,
}

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
        let mut thread = WriterThread {
            unsettled: Arc::clone(&unsettled),
            written: Arc::clone(&written),
            late: Arc::clone(&late),
            round_trips: Arc::clone(&round_trips),
            link: endpoint.link("writer", IO_TIMEOUT),
            server_id: server_id.to_string(),
            config,
            sink,
            queue,
            shutdown,
            next_uid: AtomicU64::new(1),
            unsure: Vec::new(),
            retry: Vec::new(),
            script: Script::new(keys::APPEND),
            fence: Script::new(keys::FENCE),
            stale_logged: None,
        };
        let handle = thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || thread.run())?;
        Ok((
            Writer {
                jobs,
                late,
                round_trips,
                written,
                unsettled,
            },
            handle,
        ))
    }

    /// Queues a line for its room's log.
    pub fn append(&self, token: Token, line: Line) -> Queued {
        match self.jobs.try_send(Job::Append(token, line)) {
            Ok(()) => Queued::Queued,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Queued::Refused,
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

    /// What the logs took, as far as this writer knows.
    pub fn written(&self) -> Written {
        Arc::clone(&self.written)
    }

    /// How many pipelines (round trips) the writer has sent.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// How many lines were sent whose fate is not known yet: on their way,
    /// or their reply lost and not settled.
    pub fn unsettled(&self) -> usize {
        self.unsettled.load(Ordering::Acquire)
    }

    /// Asks for an entry in `server_id`'s wake stream (best effort: a
    /// reader that is not woken sees its change after its block timeout).
    pub fn wake(&self, server_id: &str) {
        let _ = self.jobs.try_send(Job::Wake(keys::wake(server_id)));
    }
}

/// The writer thread's state.
struct WriterThread {
    /// Shared with [`Writer::late`].
    late: Arc<Mutex<Vec<(Token, Line)>>>,
    /// Shared with [`Writer::round_trips`].
    round_trips: Arc<AtomicU64>,
    /// Shared with [`Writer::written`].
    written: Written,
    /// Shared with [`Writer::unsettled`].
    unsettled: Arc<AtomicUsize>,
    /// The writer's own connection.
    link: Link,
    /// This server's id: the first part of every uid.
    server_id: String,
    /// How the logs are bounded (MAXLEN, idle expiry).
    config: LogConfig,
    /// Told of every line refused.
    sink: Arc<dyn Sink>,
    /// What [`Writer`] handles queued.
    queue: Receiver<Job>,
    /// The cluster's stop switch: the thread ends once the queue is empty.
    shutdown: Arc<Shutdown>,
    /// Numbers the uids this server gives its lines.
    next_uid: AtomicU64,
    /// Lines sent in a batch whose reply was lost.
    unsure: Vec<Unsure>,
    /// Lines found not to be in the log after all: sent again first.
    retry: Vec<Job>,
    /// The append script (for its hash).
    script: Script,
    /// The fence script (for its hash).
    fence: Script,
    /// When lines refused as stale were last logged.
    stale_logged: Option<Instant>,
}

impl WriterThread {
    fn run(&mut self) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            if !self.unsure.is_empty() {
                self.settle_unsure();
            }
            self.publish_unsettled(0);
            if !self.retry.is_empty() {
                let mut retry = std::mem::take(&mut self.retry);
                self.send(&mut retry);
                continue;
            }
            let late = std::mem::take(&mut *self.late.lock());
            for (token, line) in late {
                self.sink.refused(token, &line, Refusal::NotTaken);
            }
            let wait = if self.unsure.is_empty() {
                Duration::from_millis(200)
            } else {
                Duration::from_millis(20)
            };
            match self.queue.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {
                    if self.shutdown.is_triggered() {
                        // Stopping: no one is told any more.
                        self.refuse_unsure_all();
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.refuse_unsure_all();
                    return;
                }
            }
            while batch.len() < BATCH_MAX {
                match self.queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if self.unsure.is_empty() {
                self.send(&mut batch);
            } else {
                // Behind lines not settled yet: refused, so the log never
                // takes them before those.
                self.refuse(&mut batch);
            }
        }
    }

    /// Refuses every line of `batch`.
    fn refuse(&mut self, batch: &mut Vec<Job>) {
        for job in batch.drain(..) {
            if let Job::Append(token, line) | Job::Retry(token, line, _) = job {
                self.sink.refused(token, &line, Refusal::NotTaken);
            }
        }
    }

    /// Sends one batch in one pipeline and settles each line.
    fn send(&mut self, batch: &mut Vec<Job>) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = Vec::with_capacity(batch.len());
        let now = Instant::now();
        let now_ms = wall_ms();
        let stale_ms = STALE_AFTER.as_millis() as u64;
        for job in batch.drain(..) {
            let (token, line, first) = match job {
                Job::Append(token, line) => (
                    token,
                    line,
                    Sent {
                        counter: self.next_uid.fetch_add(1, Ordering::Relaxed),
                        since: now,
                        wall_ms: now_ms,
                    },
                ),
                Job::Retry(token, line, first) => (token, line, first),
                Job::Wake(key) => {
                    pipe.cmd("XADD")
                        .arg(key)
                        .arg("MAXLEN")
                        .arg(1)
                        .arg("*")
                        .arg("w")
                        .arg(1);
                    sent.push(None);
                    continue;
                }
            };
            let uid = format!("{}:{}", self.server_id, first.counter);
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(3)
                .arg(keys::log(&line.room))
                .arg(keys::seq(&line.room))
                .arg(keys::hw(&self.server_id))
                .arg(self.config.max_len)
                .arg(self.config.idle_ttl.as_millis() as u64)
                .arg(&uid)
                .arg(&line.from)
                .arg(&line.kind)
                .arg(&line.text)
                .arg(first.counter)
                .arg(first.wall_ms)
                .arg(stale_ms);
            sent.push(Some((token, line, first)));
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.publish_unsettled(sent.iter().flatten().count());
        match self.link.run(|conn| pipe.query::<Vec<Value>>(conn)) {
            Ok(replies) => {
                let epoch = self.link.epoch().unwrap_or_default().to_string();
                let mut stale: Option<(usize, i64)> = None;
                for (reply, line) in replies.into_iter().zip(sent) {
                    let Some((token, line, first)) = line else {
                        continue;
                    };
                    match reply {
                        Value::ServerError(e) => {
                            log!("redis: append to #{} refused: {e:?}", line.room);
                            self.sink.refused(token, &line, Refusal::NotTaken);
                        }
                        Value::Array(parts) => {
                            let int = |i: usize| match parts.get(i) {
                                Some(Value::Int(n)) => Some(*n),
                                _ => None,
                            };
                            if int(1) == Some(-1) {
                                // Too old when Redis ran it: not applied,
                                // and no copy of it ever will be.
                                let age = int(2).map_or(0, |t| t - first.wall_ms as i64);
                                let (count, _) = stale.get_or_insert((0, age));
                                *count += 1;
                                self.sink.refused(token, &line, Refusal::NotTaken);
                                continue;
                            }
                            let n = int(1).and_then(|n| u64::try_from(n).ok());
                            if let Some(n) = n.filter(|&n| n > 0) {
                                let mut written = self.written.lock();
                                let seen = written.entry(line.room).or_default();
                                if seen.0 != epoch {
                                    *seen = (epoch.clone(), 0);
                                }
                                seen.1 = seen.1.max(n);
                            }
                        }
                        _ => {}
                    }
                }
                if let Some((count, age)) = stale {
                    self.log_stale(count, age, now);
                }
            }
            Err(Failure::Lost) => {
                let epoch = self.link.epoch().map(str::to_string);
                self.unsure.extend(
                    sent.into_iter()
                        .flatten()
                        .map(|(token, line, sent)| Unsure {
                            token,
                            line,
                            sent,
                            epoch: epoch.clone(),
                        }),
                );
            }
            Err(Failure::Down | Failure::Refused(_)) => {
                let epoch = self.link.epoch().map(str::to_string);
                for (token, line, sent) in sent.into_iter().flatten() {
                    if sent.since == now {
                        // Never sent: certainly not applied.
                        self.sink.refused(token, &line, Refusal::NotTaken);
                    } else {
                        // Sent again, and its first sending may still be
                        // applied: unsure still, not refused.
                        self.unsure.push(Unsure {
                            token,
                            line,
                            sent,
                            epoch: epoch.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Logs, at most once per [`STALE_LOG_EVERY`], that `count` lines of a
    /// batch sent at `sent` were refused as stale, the first `age` ms old
    /// by Redis's clock: far more than this server waited for them means
    /// the clocks are apart.
    fn log_stale(&mut self, count: usize, age: i64, sent: Instant) {
        if self
            .stale_logged
            .is_some_and(|at| at.elapsed() < STALE_LOG_EVERY)
        {
            return;
        }
        self.stale_logged = Some(Instant::now());
        log!(
            "redis: {count} line(s) refused as stale: {age} ms old by Redis's clock when it ran them ({} ms since this batch was sent by ours; more than {} ms apart means the clocks disagree)",
            sent.elapsed().as_millis(),
            STALE_AFTER.as_millis()
        );
    }

    /// Settles the unsure lines. Past [`UNSURE_DEADLINE`] with Redis
    /// still away, they are refused as [`Refusal::Unsure`] (no copy can be
    /// applied any more: they are stale). Otherwise once the link is back:
    /// those sent to a Redis that restarted empty since are refused as
    /// [`Refusal::Restarted`], never sent again (a reader may have had them
    /// before the restart); the others are sent again with their uids
    /// within the deadline (applied once, whichever copy comes first), and
    /// past it fenced off, the mark they found saying which the log took.
    fn settle_unsure(&mut self) {
        let Some(top) = self.unsure.iter().map(|u| u.sent.counter).max() else {
            return;
        };
        let now = Instant::now();
        let due = |u: &Unsure| now.duration_since(u.sent.since) >= UNSURE_DEADLINE;
        let overdue = self.unsure.iter().any(due);
        let applied: u64 = if overdue {
            let hw = keys::hw(&self.server_id);
            let ttl = self.config.idle_ttl.as_millis() as u64;
            let fence = self.fence.get_hash().to_string();
            match self.link.run(|conn| {
                redis::cmd("EVALSHA")
                    .arg(&fence)
                    .arg(1)
                    .arg(&hw)
                    .arg(top)
                    .arg(ttl)
                    .query(conn)
            }) {
                Ok(mark) => mark,
                Err(_) => {
                    self.refuse_due(now);
                    return;
                }
            }
        } else {
            // Connects if it can; the lines are sent again below.
            if self.link.run(|_| Ok(())).is_err() {
                // The attempt may have taken up to its timeout: a line
                // past its deadline by now is answered now, not after one
                // more attempt.
                self.refuse_due(Instant::now());
                return;
            }
            0
        };
        let epoch = self.link.epoch().map(str::to_string);
        for unsure in std::mem::take(&mut self.unsure) {
            if unsure.epoch != epoch {
                // Redis restarted empty since: whether it was applied (and
                // read) before cannot be known, and sending it again could
                // show it twice.
                self.sink
                    .refused(unsure.token, &unsure.line, Refusal::Restarted);
            } else if !overdue {
                self.retry
                    .push(Job::Retry(unsure.token, unsure.line, unsure.sent));
            } else if unsure.sent.counter > applied {
                // Fenced off: it can never be applied now.
                self.sink
                    .refused(unsure.token, &unsure.line, Refusal::NotTaken);
            }
        }
    }

    /// Redis away (stopped, dead, cut off): refuses as [`Refusal::Unsure`]
    /// every unsure line past its deadline at `now`. None can be applied
    /// any more (stale), but each may have been just before, its reply
    /// lost.
    fn refuse_due(&mut self, now: Instant) {
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsure)
            .into_iter()
            .partition(|u| now.duration_since(u.sent.since) >= UNSURE_DEADLINE);
        self.unsure = wait;
        for unsure in due {
            self.sink
                .refused(unsure.token, &unsure.line, Refusal::Unsure);
        }
    }

    /// Publishes [`Writer::unsettled`]: the unsure lines, those to be
    /// sent again, and `in_flight` more.
    fn publish_unsettled(&self, in_flight: usize) {
        let again = self
            .retry
            .iter()
            .filter(|job| matches!(job, Job::Retry(..)))
            .count();
        self.unsettled
            .store(self.unsure.len() + again + in_flight, Ordering::Release);
    }

    fn refuse_unsure_all(&mut self) {
        for unsure in std::mem::take(&mut self.unsure) {
            self.sink
                .refused(unsure.token, &unsure.line, Refusal::Unsure);
        }
    }
}
