//! The writer: one thread per server appends every line to its room's log.
//!
//! Lines are queued ([`Writer::append`]) and the thread takes whatever is
//! waiting, up to [`BATCH_MAX`], into one pipeline: one round trip to Redis
//! carries many lines under load, one line when the room is quiet. Each line
//! is the [`keys::APPEND`] script, which numbers it and XADDs it atomically.
//!
//! A line is never queued for later: when Redis is down (or the queue is
//! full) it is handed back to [`Sink::refused`] at once. A batch whose
//! connection broke after it was sent may or may not be in the log; those
//! lines are looked up by their uid once the link is back (found: they will
//! be delivered like any other; not found, or Redis restarted empty: sent
//! again, first, so their order holds), and refused after
//! [`UNSURE_DEADLINE`] if the link does not come back, so no sender waits
//! forever. Lines queued behind unsettled ones are refused meanwhile.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use redis::{Script, Value};

use super::link::{Endpoint, Failure, Link, IO_TIMEOUT};
use super::{keys, Line, LogConfig, Sink, Token};
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

/// What the writer thread is asked to do.
enum Job {
    /// Append a line; `Token` says whom to tell if it is refused.
    Append(Token, Line),
    /// Add an entry to a reader's wake stream, ending its blocking XREAD.
    Wake(String),
    /// Send again a line whose first sending was lost on the way (it is
    /// not in the log), first sent at the instant given.
    Retry(Token, Line, Instant),
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
}

/// A line sent in a batch whose reply was lost.
struct Unsure {
    /// Whom to tell if it is refused in the end.
    token: Token,
    /// The line, to send again or hand back.
    line: Line,
    /// The id it was sent with: looked for in the log.
    uid: String,
    /// When it was sent: refused after [`UNSURE_DEADLINE`].
    since: Instant,
    /// The epoch of the Redis it was sent to: a Redis restarted empty
    /// certainly lost it.
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
        let mut thread = WriterThread {
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
        };
        let handle = thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || thread.run())?;
        Ok((
            Writer {
                jobs,
                late,
                round_trips,
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

    /// How many pipelines (round trips) the writer has sent.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
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
}

impl WriterThread {
    fn run(&mut self) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            if !self.unsure.is_empty() {
                self.settle_unsure();
            }
            if !self.retry.is_empty() {
                let mut retry = std::mem::take(&mut self.retry);
                self.send(&mut retry);
                continue;
            }
            let late = std::mem::take(&mut *self.late.lock());
            for (token, line) in late {
                self.sink.refused(token, &line);
            }
            let wait = if self.unsure.is_empty() {
                Duration::from_millis(200)
            } else {
                Duration::from_millis(20)
            };
            match self.queue.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {
                    if self.shutdown.is_triggered() && self.unsure.is_empty() {
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
                self.sink.refused(token, &line);
            }
        }
    }

    /// Sends one batch in one pipeline and settles each line.
    fn send(&mut self, batch: &mut Vec<Job>) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = Vec::with_capacity(batch.len());
        let now = Instant::now();
        for job in batch.drain(..) {
            let (token, line, since) = match job {
                Job::Append(token, line) => (token, line, now),
                Job::Retry(token, line, since) => (token, line, since),
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
            let uid = format!(
                "{}:{}",
                self.server_id,
                self.next_uid.fetch_add(1, Ordering::Relaxed)
            );
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(2)
                .arg(keys::log(&line.room))
                .arg(keys::seq(&line.room))
                .arg(self.config.max_len)
                .arg(self.config.idle_ttl.as_millis() as u64)
                .arg(&uid)
                .arg(&line.from)
                .arg(&line.kind)
                .arg(&line.text);
            sent.push(Some((token, line, uid, since)));
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match self.link.run(|conn| pipe.query::<Vec<Value>>(conn)) {
            Ok(replies) => {
                for (reply, line) in replies.into_iter().zip(sent) {
                    if let (Value::ServerError(e), Some((token, line, _, _))) = (&reply, line) {
                        log!("redis: append to #{} refused: {e:?}", line.room);
                        self.sink.refused(token, &line);
                    }
                }
            }
            Err(Failure::Lost) => {
                let epoch = self.link.epoch().map(str::to_string);
                self.unsure
                    .extend(
                        sent.into_iter()
                            .flatten()
                            .map(|(token, line, uid, since)| Unsure {
                                token,
                                line,
                                uid,
                                since,
                                epoch: epoch.clone(),
                            }),
                    );
            }
            Err(Failure::Down | Failure::Refused(_)) => {
                for (token, line, _, _) in sent.into_iter().flatten() {
                    self.sink.refused(token, &line);
                }
            }
        }
    }

    /// Looks the unsure lines up in their logs, if the link is back; refuses
    /// those not found, and those past [`UNSURE_DEADLINE`].
    fn settle_unsure(&mut self) {
        let mut rooms: Vec<String> = self.unsure.iter().map(|u| u.line.room.clone()).collect();
        rooms.sort();
        rooms.dedup();
        let scan = self.config.max_len;
        let found = self.link.run(|conn| {
            let mut pipe = redis::pipe();
            for room in &rooms {
                pipe.cmd("XREVRANGE")
                    .arg(keys::log(room))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(scan);
            }
            pipe.query::<Vec<redis::streams::StreamRangeReply>>(conn)
        });
        match found {
            Ok(replies) => {
                let in_log: HashSet<String> = replies
                    .iter()
                    .flat_map(|reply| &reply.ids)
                    .filter_map(|id| id.get::<String>("uid"))
                    .collect();
                let epoch = self.link.epoch().map(str::to_string);
                let now = Instant::now();
                for unsure in std::mem::take(&mut self.unsure) {
                    // In a Redis restarted empty since, it is gone for sure.
                    let lost = unsure.epoch != epoch || !in_log.contains(&unsure.uid);
                    if !lost {
                        continue;
                    }
                    if now.duration_since(unsure.since) < UNSURE_DEADLINE {
                        self.retry
                            .push(Job::Retry(unsure.token, unsure.line, unsure.since));
                    } else {
                        self.sink.refused(unsure.token, &unsure.line);
                    }
                }
            }
            Err(_) => {
                let now = Instant::now();
                let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsure)
                    .into_iter()
                    .partition(|u| now.duration_since(u.since) >= UNSURE_DEADLINE);
                self.unsure = keep;
                for unsure in late {
                    self.sink.refused(unsure.token, &unsure.line);
                }
            }
        }
    }

    fn refuse_unsure_all(&mut self) {
        for unsure in std::mem::take(&mut self.unsure) {
            self.sink.refused(unsure.token, &unsure.line);
        }
    }
}
