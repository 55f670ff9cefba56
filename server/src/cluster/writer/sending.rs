//! The writer thread's loop: taking queued lines into one pipeline,
//! sending it, and settling each line from its reply (see the parent
//! module for what is guaranteed).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, TryRecvError};
use parking_lot::Mutex;
use redis::{Script, Value};

use super::super::link::{Failure, Link};
use super::super::now_ms;
use super::super::{keys, Line, LogConfig, Refusal, Sink, Token};
use super::unsure::Unsure;
use super::{Job, Sent, Written, BATCH_MAX, LOG_SHARE, STALE_AFTER, STALE_LOG_EVERY};
use crate::log;
use crate::shutdown::Shutdown;

/// The writer thread's state.
pub(super) struct WriterThread {
    /// Shared with [`Writer::late`](super::Writer::late).
    pub(super) late: Arc<Mutex<Vec<(Token, Line)>>>,
    /// Shared with `Writer::round_trips` (read by tests).
    pub(super) round_trips: Arc<AtomicU64>,
    /// Shared with [`Writer::written`](super::Writer::written).
    pub(super) written: Written,
    /// Shared with `Writer::unsettled` (read by tests).
    pub(super) unsettled: Arc<AtomicUsize>,
    /// The writer's own connection.
    pub(super) link: Link,
    /// This server's id: the first part of every uid.
    pub(super) server_id: String,
    /// How the logs are bounded (MAXLEN, idle expiry).
    pub(super) config: LogConfig,
    /// Told of every line refused.
    pub(super) sink: Arc<dyn Sink>,
    /// What [`Writer`](super::Writer) handles queued.
    pub(super) queue: Receiver<Job>,
    /// The cluster's stop switch: the thread ends once the queue is empty.
    pub(super) shutdown: Arc<Shutdown>,
    /// Numbers the uids this server gives its lines.
    pub(super) next_uid: AtomicU64,
    /// Lines sent in a batch whose reply was lost.
    pub(super) unsure: Vec<Unsure>,
    /// Lines found not to be in the log after all: sent again first.
    pub(super) retry: Vec<Job>,
    /// The append script (for its hash).
    pub(super) script: Script,
    /// The fence script (for its hash).
    pub(super) fence: Script,
    /// The script that takes a member out if filed so still (its hash).
    pub(super) unfile: Script,
    /// The script that files a member while it holds its name (its hash).
    pub(super) file: Script,
    /// When lines refused as stale were last logged.
    pub(super) stale_logged: Option<Instant>,
}

/// Most lines in one round trip for a room log kept to about `max_len`
/// lines: [`BATCH_MAX`], or a [`LOG_SHARE`]th of the log if that is less.
/// Redis runs a pipeline whole before it reads another client's command,
/// so a batch lands at once between two reads of every other server's
/// reader: a batch as long as the log would trim lines those readers had
/// not read yet, with no outage at all.
pub(super) fn batch_max(max_len: u64) -> usize {
    usize::try_from(max_len / LOG_SHARE).map_or(BATCH_MAX, |share| share.clamp(1, BATCH_MAX))
}

/// How long the writer thread waits for a queued line with no line unsure
/// before it looks again: a line wakes it at once, so this only bounds how
/// late it notices the stop.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// How long it waits with lines unsure: how often it tries to settle them
/// (reconnect, send again, or refuse those past
/// [`super::UNSURE_DEADLINE`]), so each is answered soon after it can be.
const UNSURE_WAIT: Duration = Duration::from_millis(20);

/// The writer thread: waits for queued lines (without taking them, so a
/// relaying thread that holds the state may send them itself, see
/// [`Writer::send_queued`](super::Writer::send_queued)), settles the
/// unsure lines, and sends what no relaying thread did.
pub(super) fn run(state: &Mutex<WriterThread>) {
    let (queue, shutdown) = {
        let s = state.lock();
        (s.queue.clone(), Arc::clone(&s.shutdown))
    };
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        let wait = {
            let mut s = state.lock();
            if s.tend() {
                continue;
            }
            if s.unsure.is_empty() {
                IDLE_WAIT
            } else {
                UNSURE_WAIT
            }
        };
        let mut select = Select::new();
        select.recv(&queue);
        if select.ready_timeout(wait).is_err() {
            if shutdown.is_triggered() {
                // Stopping: no one is told any more.
                state.lock().refuse_unsure_all();
                return;
            }
            continue;
        }
        let mut s = state.lock();
        // A relaying thread's send may have left lines unsure since the
        // wait began: settled first, so no line queued behind them is
        // refused while they can still be sent again.
        if s.tend() {
            continue;
        }
        match s.take(&mut batch) {
            Err(TryRecvError::Disconnected) => {
                s.refuse_unsure_all();
                return;
            }
            Err(TryRecvError::Empty) => {}
            Ok(()) => s.send_or_refuse(&mut batch),
        }
    }
}

impl WriterThread {
    /// Settles unsure lines, sends the ones to be sent again, refuses the
    /// late ones. Returns whether it sent lines again (then it is called
    /// again before any new line is taken).
    fn tend(&mut self) -> bool {
        if !self.unsure.is_empty() {
            self.settle_unsure();
        }
        self.publish_unsettled(0);
        if !self.retry.is_empty() {
            let mut retry = std::mem::take(&mut self.retry);
            self.send(&mut retry);
            return true;
        }
        let late = std::mem::take(&mut *self.late.lock());
        for (token, line) in late {
            self.sink.refused(token, &line, Refusal::NotTaken);
        }
        false
    }

    /// Whether new lines may be sent now by whoever holds the state: no
    /// line before them is unsettled or to be sent again, and the link is
    /// up (a relaying thread never waits for a connection).
    pub(super) fn takes_lines(&self) -> bool {
        self.unsure.is_empty() && self.retry.is_empty() && self.link.is_up()
    }

    /// Takes what is queued, up to [`batch_max`] jobs, into `batch`.
    pub(super) fn take(&mut self, batch: &mut Vec<Job>) -> Result<(), TryRecvError> {
        let most = batch_max(self.config.max_len);
        batch.push(self.queue.try_recv()?);
        while batch.len() < most {
            match self.queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Sends `batch`, or refuses it behind lines not settled yet (so the
    /// log never takes them before those).
    pub(super) fn send_or_refuse(&mut self, batch: &mut Vec<Job>) {
        if self.unsure.is_empty() {
            self.send(batch);
        } else {
            self.refuse(batch);
        }
    }

    /// Refuses every line of `batch`.
    pub(super) fn refuse(&mut self, batch: &mut Vec<Job>) {
        for job in batch.drain(..) {
            if let Job::Append(token, line) | Job::Retry(token, line, _) = job {
                self.sink.refused(token, &line, Refusal::NotTaken);
            }
        }
    }

    /// Sends one batch in one pipeline and settles each line.
    pub(super) fn send(&mut self, batch: &mut Vec<Job>) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = Vec::with_capacity(batch.len());
        let now = Instant::now();
        let wall = now_ms();
        let stale_ms = STALE_AFTER.as_millis() as u64;
        for job in batch.drain(..) {
            let (token, line, first) = match job {
                Job::Append(token, line) => (
                    token,
                    line,
                    Sent {
                        counter: self.next_uid.fetch_add(1, Ordering::Relaxed),
                        since: now,
                        wall_ms: wall,
                    },
                ),
                Job::Retry(token, line, first) => (token, line, first),
                Job::Spell(key, spelling) => {
                    super::super::spelling::name(&mut pipe, &key, &spelling);
                    sent.push(None);
                    continue;
                }
                Job::File(name, value, client) => {
                    pipe.cmd("EVALSHA")
                        .arg(self.file.get_hash())
                        .arg(2)
                        .arg(keys::members(&self.server_id))
                        .arg(keys::name(&name.to_lowercase()))
                        .arg(name)
                        .arg(value)
                        .arg(keys::holder_prefix(&self.server_id, client));
                    sent.push(None);
                    continue;
                }
                Job::Unfile(name, value) => {
                    pipe.cmd("EVALSHA")
                        .arg(self.unfile.get_hash())
                        .arg(1)
                        .arg(keys::members(&self.server_id))
                        .arg(name)
                        .arg(value);
                    sent.push(None);
                    continue;
                }
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
    pub(super) fn log_stale(&mut self, count: usize, age: i64, sent: Instant) {
        if self
            .stale_logged
            .is_some_and(|at| at.elapsed() < STALE_LOG_EVERY)
        {
            return;
        }
        self.stale_logged = Some(Instant::now());
        log!(
            "redis: {} refused as stale: {age} ms old by Redis's clock when it ran them ({} ms since this batch was sent by ours; more than {} ms apart means the clocks disagree)",
            chat_common::protocol::count(count as u64, "line"),
            sent.elapsed().as_millis(),
            STALE_AFTER.as_millis()
        );
    }

    /// Publishes `Writer::unsettled` (read by tests): the unsure lines, those to be
    /// sent again, and `in_flight` more.
    pub(super) fn publish_unsettled(&self, in_flight: usize) {
        let again = self
            .retry
            .iter()
            .filter(|job| matches!(job, Job::Retry(..)))
            .count();
        self.unsettled
            .store(self.unsure.len() + again + in_flight, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_max, BATCH_MAX};

    /// A sixteenth of the log, at least one line, at most `BATCH_MAX`.
    #[test]
    fn a_batch_is_a_share_of_the_log() {
        assert_eq!(batch_max(10_000), BATCH_MAX);
        assert_eq!(batch_max(u64::MAX), BATCH_MAX);
        assert_eq!(batch_max(160), 10);
        assert_eq!(batch_max(100), 6);
        assert_eq!(batch_max(1), 1);
    }
}
