//! Where the reader starts reading a room ([`ReaderThread::enter`]): right
//! after the position its history was loaded up to, or, with none, from
//! the moment of the watch.
//!
//! A room gets no position when its first local member arrives while this
//! server is cut off from Redis (no tail could be read). It is read from
//! the moment of that watch, on Redis's clock, so every line its log took
//! after the member entered is delivered once Redis is back (SPEC: "never
//! a silent gap").
//!
//! Stream ids are Redis's clock (ms), and a server may run on another
//! machine: its own wall clock is never compared with them. The reader
//! notes Redis's `TIME` with an XREAD at most every [`CLOCK_EVERY`] (asked
//! in the same round trip, right after the read) and the server's
//! monotonic instant its reply arrived ([`Clock`]). A watch notes only its own instant; when the reader
//! serves it, that instant is put on Redis's clock from the last note:
//! `time + (watched - noted)`, less [`DRIFT_MARGIN`] per second between the
//! two. Redis read its time before the reply arrived, so this is at or
//! before what Redis's clock said at the watch: every line appended after
//! it has an id at or past it; a line appended a moment before may be
//! delivered too.
//!
//! Then one MULTI asks the log for its last entry before that moment, its
//! first entry and its counter ([`start_at`]):
//! - an entry before the moment: reading goes on after it, so a gap in the
//!   numbers is counted exactly, as for any cursor ([`Missed::Lines`]);
//! - none, and the first is numbered 1, or the log is empty: nothing was
//!   trimmed, reading starts at the log's beginning;
//! - none, and the first is numbered `f` > 1: the log was trimmed past the
//!   moment; of its `f - 1` lines gone, how many came after it is not known:
//!   [`Missed::Trimmed`], with that bound.
//!
//! The room's history here is then what this server had (nothing, if the
//! room was new here): the log's history up to that entry is read
//! ([`tail_upto`]) and handed to the sink
//! ([`Sink::history`](crate::cluster::Sink::history)), so a
//! newcomer on this server is replayed the room's history as on any other.
//!
//! The note of Redis's clock is from another epoch (Redis restarted empty
//! since): the log the member was owed lines of is gone,
//! [`Missed::LogLost`], as for a position read before the restart.

use std::time::{Duration, Instant};

use redis::streams::StreamRangeReply;

use super::{Cursor, ReaderThread};
use crate::cluster::link::{Failure, Link};
use crate::cluster::reader::{Position, Start};
use crate::cluster::tail::{tail, tail_upto};
use crate::cluster::{keys, Entry, Missed};

/// How far the server's monotonic clock and Redis's wall clock may run
/// apart, per second between a note of Redis's time and a watch: 1 ms (0.1 %,
/// twice the most NTP slews a clock by). The moment a watch is read from is
/// moved back by this much, so a clock that runs slow does not skip lines.
pub const DRIFT_MARGIN: Duration = Duration::from_millis(1);

/// How often the reader asks Redis's clock at most (with the XREAD whose
/// reply comes after this much since the last note): a watch's moment is
/// put on Redis's clock from a note at most this old, plus [`DRIFT_MARGIN`]
/// a second. (Asked with every XREAD, it doubled the reader's commands
/// under load for a note that only a watch made while cut off uses.)
pub const CLOCK_EVERY: Duration = Duration::from_secs(1);

/// Redis's clock as the reader last saw it.
#[derive(Debug, Clone)]
pub(super) struct Clock {
    /// Redis's `TIME`, in microseconds.
    time_us: u64,
    /// When its reply arrived here.
    at: Instant,
    /// The epoch of the Redis that answered.
    pub(super) epoch: String,
}

impl Clock {
    /// A note of Redis's `TIME` reply (seconds, microseconds), which
    /// arrived at `at` from the Redis of `epoch`.
    pub(super) fn new((secs, micros): (u64, u64), at: Instant, epoch: &str) -> Clock {
        Clock {
            time_us: secs.saturating_mul(1_000_000).saturating_add(micros),
            at,
            epoch: epoch.to_string(),
        }
    }

    /// Whether this note is recent enough ([`CLOCK_EVERY`]) and of the
    /// Redis of `epoch`: the next XREAD need not ask the time again.
    pub(super) fn fresh(&self, epoch: &str) -> bool {
        self.epoch == epoch && self.at.elapsed() < CLOCK_EVERY
    }

    /// Redis's clock (ms) at or before what it said at `when`.
    pub(super) fn at_or_before(&self, when: Instant) -> u64 {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let (us, apart) = match when.checked_duration_since(self.at) {
            Some(after) => (self.time_us.saturating_add(micros(after)), after),
            None => {
                let before = self.at - when;
                (self.time_us.saturating_sub(micros(before)), before)
            }
        };
        let margin = micros(apart).saturating_mul(micros(DRIFT_MARGIN)) / 1_000_000;
        us.saturating_sub(margin) / 1000
    }
}

impl ReaderThread {
    /// Starts reading `room` at `start` (or its end), for `watchers` reasons.
    pub(super) fn enter(
        &mut self,
        room: &str,
        start: Option<Start>,
        watchers: usize,
    ) -> Result<(), Failure> {
        let epoch = self.link.epoch().unwrap_or_default().to_string();
        if self.clock.is_none() {
            // No read answered yet, so no other Redis was seen here: this
            // one's clock will do.
            let time = self.link.run_idempotent(|c| redis::cmd("TIME").query(c))?;
            self.clock = Some(Clock::new(time, Instant::now(), &epoch));
        }
        let from = match start {
            Some(Start::After(from)) if from.epoch == epoch => from,
            Some(Start::Since(when)) => match self.clock.as_ref().filter(|c| c.epoch == epoch) {
                Some(clock) => {
                    let (from, missed) = start_at(&mut self.link, room, clock.at_or_before(when))?;
                    if let Some(missed) = missed {
                        self.sink.missed(room, missed);
                    }
                    // No history was loaded when it was watched: the log's
                    // up to where reading starts, for whoever enters next.
                    let want = self.sink.history_wanted(room);
                    if want > 0 && from.id != "0-0" {
                        let (lines, _) = tail_upto(&mut self.link, room, &from.id, want, |e| {
                            e.text.starts_with('<')
                        })?;
                        self.sink.history(room, &from, lines);
                    }
                    from
                }
                // Redis restarted empty since its clock was last seen.
                None => self.log_lost(room, epoch),
            },
            // Read before Redis restarted empty: that log is gone.
            Some(Start::After(_)) => self.log_lost(room, epoch),
            // Not asked by any watch (each gives a start): from its end.
            None => tail(&mut self.link, room, 0, |_| false)?.1,
        };
        self.cursors.insert(
            room.to_string(),
            Cursor {
                id: from.id,
                n: from.n,
                epoch: from.epoch,
                watchers,
            },
        );
        Ok(())
    }

    /// Tells the sink `room`'s log was lost: it is read from the start of
    /// the log of `epoch`.
    fn log_lost(&self, room: &str, epoch: String) -> Position {
        self.sink.missed(room, Missed::LogLost { unseen: 0 });
        Position {
            id: "0-0".into(),
            n: 0,
            epoch,
        }
    }
}

/// Where to read `room`'s log from so that every entry it took at or
/// after Redis time `ms` is delivered, and what it can no longer deliver.
///
/// # Errors
/// When Redis cannot be asked.
pub(super) fn start_at(
    link: &mut Link,
    room: &str,
    ms: u64,
) -> Result<(Position, Option<Missed>), Failure> {
    let key = keys::log(room);
    // `(0-0` is no interval's end (a clock at 1970 is no real one anyway).
    let ms = ms.max(1);
    let (before, first, seq): (StreamRangeReply, StreamRangeReply, Option<u64>) = link
        .run_idempotent(|conn| {
            redis::pipe()
                .atomic()
                .cmd("XREVRANGE")
                .arg(&key)
                .arg(format!("({ms}-0"))
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("GET")
                .arg(keys::seq(room))
                .query(conn)
        })?;
    let epoch = link.epoch().unwrap_or_default().to_string();
    let entry = |reply: &StreamRangeReply| reply.ids.first().and_then(Entry::from_stream);
    let at = |id: String, n: u64| Position {
        id,
        n,
        epoch: epoch.clone(),
    };
    Ok(match (entry(&before), entry(&first)) {
        (Some(last), _) => (at(last.id, last.n), None),
        (None, Some(first)) if first.n > 1 => (
            at("0-0".into(), first.n - 1),
            Some(Missed::Trimmed {
                at_most: first.n - 1,
            }),
        ),
        (None, Some(first)) => (at("0-0".into(), first.n - 1), None),
        // Empty: its next line is numbered after the counter.
        (None, None) => (at("0-0".into(), seq.unwrap_or(0)), None),
    })
}
