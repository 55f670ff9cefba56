//! The writer thread's loop: taking queued lines into one pipeline,
//! sending it, and settling each line from its reply (see the parent
//! module for what is guaranteed).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use redis::{Script, Value};

use super::super::link::{Failure, Link};
use super::super::{keys, Line, LogConfig, Refusal, Sink, Token};
use super::unsure::Unsure;
use super::{wall_ms, Job, Sent, Written, BATCH_MAX, STALE_AFTER, STALE_LOG_EVERY};
use crate::log;
use crate::shutdown::Shutdown;

/// The writer thread's state.
pub(super) struct WriterThread {
    /// Shared with [`Writer::late`].
    pub(super) late: Arc<Mutex<Vec<(Token, Line)>>>,
    /// Shared with [`Writer::round_trips`].
    pub(super) round_trips: Arc<AtomicU64>,
    /// Shared with [`Writer::written`].
    pub(super) written: Written,
    /// Shared with [`Writer::unsettled`].
    pub(super) unsettled: Arc<AtomicUsize>,
    /// The writer's own connection.
    pub(super) link: Link,
    /// This server's id: the first part of every uid.
    pub(super) server_id: String,
    /// How the logs are bounded (MAXLEN, idle expiry).
    pub(super) config: LogConfig,
    /// Told of every line refused.
    pub(super) sink: Arc<dyn Sink>,
    /// What [`Writer`] handles queued.
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
    /// When lines refused as stale were last logged.
    pub(super) stale_logged: Option<Instant>,
}

impl WriterThread {
    pub(super) fn run(&mut self) {
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
    pub(super) fn log_stale(&mut self, count: usize, age: i64, sent: Instant) {
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

    /// Publishes [`Writer::unsettled`]: the unsure lines, those to be
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
