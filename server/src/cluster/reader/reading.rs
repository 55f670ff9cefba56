//! The reader thread itself: the loop of blocking XREADs, the cursors it
//! keeps per room, and what it tells the sink on reconnection (a new
//! epoch, a rollback: `reading/rollback.rs`). See the parent module for
//! what it guarantees.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use redis::streams::StreamReadReply;

use super::super::link::{Failure, Link};
use super::super::presence::{BACK_KIND, LOST_KIND};
use super::super::writer::Written;
use super::super::{keys, Entry, Missed, Request, Sink};
use super::{read_count, Control, Controls, Start, READ_BLOCK};
use crate::log;
use crate::shutdown::{Shutdown, Waited};

mod rollback;
mod since;

use self::since::Clock;

/// Where the reader is in one room's log.
#[derive(Debug, Clone)]
struct Cursor {
    /// The stream id of the last entry delivered ("0-0": none yet).
    id: String,
    /// Its number in the log (0: none yet).
    n: u64,
    /// The epoch of the Redis the cursor points into.
    epoch: String,
    /// Reasons to read the room ([`Reader::watch`](super::Reader::watch) calls not yet undone):
    /// it is read while this is above 0.
    watchers: usize,
}

/// The reader thread's state.
pub(super) struct ReaderThread {
    /// The reader's own connection (its reads block for [`READ_BLOCK`]).
    link: Link,
    /// This server's wake stream, read along with the room logs.
    wake_key: String,
    /// The last wake entry seen.
    wake_id: String,
    /// This server's inbox, read along with the room logs.
    inbox_key: String,
    /// The last inbox entry taken.
    inbox_id: String,
    /// How the uids of presence's notices about this server's own members
    /// start (announced lost, then back, while it was taken for lost):
    /// not delivered here, where no one left.
    own_notices: [String; 2],
    /// What [`Reader`](super::Reader) handles asked, not yet served.
    controls: Controls,
    /// What the writer knows the logs took (for [`Missed::LogLost`]).
    written: Written,
    /// Rooms read, by key.
    cursors: HashMap<String, Cursor>,
    /// Where entries, missed lines, link changes and requests go.
    sink: Arc<dyn Sink>,
    /// The cluster's stop switch, looked at between two reads.
    shutdown: Arc<Shutdown>,
    /// The link's connection count last seen: a change is a new connection.
    connects: u64,
    /// What the sink was last told about the link.
    up: bool,
    /// The epoch the wake and inbox cursors point into.
    epoch_seen: String,
    /// Redis's clock at the last reply (`None` before the first): where a
    /// room watched while Redis was away starts.
    clock: Option<Clock>,
}

impl ReaderThread {
    pub(super) fn new(
        link: Link,
        server_id: &str,
        written: Written,
        controls: Controls,
        sink: Arc<dyn Sink>,
        shutdown: Arc<Shutdown>,
    ) -> ReaderThread {
        ReaderThread {
            written,
            link,
            wake_key: keys::wake(server_id),
            wake_id: "0-0".into(),
            inbox_key: keys::inbox(server_id),
            inbox_id: "0-0".into(),
            own_notices: [LOST_KIND, BACK_KIND].map(|kind| format!("{kind}:{server_id}:")),
            controls,
            cursors: HashMap::new(),
            sink,
            shutdown,
            connects: 0,
            up: true,
            epoch_seen: String::new(),
            clock: None,
        }
    }

    pub(super) fn run(&mut self) {
        loop {
            // Down while the sink was last told it is up: its first
            // connection not made yet, or lost in a call that reports no
            // failure (a best-effort check). Said before waiting for Redis.
            if self.up && !self.link.is_up() {
                if let Err(failure) = self.link.run(|_| Ok(())) {
                    self.failed(failure);
                }
            }
            if self.link.wait_up(&self.shutdown) == Waited::ShuttingDown {
                return;
            }
            if self.link.connects() != self.connects {
                self.connected();
            }
            if let Err(failure) = self.serve_controls() {
                self.failed(failure);
                continue;
            }
            if let Err(failure) = self.read_once() {
                self.failed(failure);
            }
        }
    }

    /// A new connection: tell the sink the link is back, and if Redis lost
    /// everything meanwhile, tell it so (every room it keeps loses what
    /// counted in the old logs), then that every watched room's log is
    /// gone (with at least how many lines went unseen); if Redis went back
    /// to an older copy of its data (a room's counter below its cursor),
    /// say so and move the cursor back with it.
    fn connected(&mut self) {
        self.connects = self.link.connects();
        let epoch = self.link.epoch().unwrap_or_default().to_string();
        if self.epoch_seen != epoch {
            self.sink.epoch(&epoch);
            // A new Redis: its wake stream and inbox start empty.
            self.wake_id = "0-0".into();
            self.inbox_id = "0-0".into();
            self.epoch_seen.clone_from(&epoch);
        }
        let written = self.written.lock().clone();
        for (room, cursor) in &mut self.cursors {
            if cursor.epoch != epoch {
                let unseen = written
                    .get(room)
                    .filter(|(e, _)| *e == cursor.epoch)
                    .map_or(0, |(_, n)| n.saturating_sub(cursor.n));
                // A cursor still at the log's start lost lines too when
                // this server wrote some there: a reader that fell behind
                // (a loaded machine) had read none of them yet.
                if cursor.n > 0 || cursor.id != "0-0" || unseen > 0 {
                    self.sink.missed(room, Missed::LogLost { unseen });
                }
                cursor.id = "0-0".into();
                cursor.n = 0;
                cursor.epoch.clone_from(&epoch);
            }
        }
        self.check_rollback();
        if !self.up {
            self.up = true;
            self.sink.link(true);
        }
    }

    fn failed(&mut self, failure: Failure) {
        match failure {
            Failure::Refused(e) => {
                // Not the link: a key of ours holds something else. Logged,
                // and the next read goes on (after a pause, not a spin).
                log!("redis reader: {}", super::super::link::brief(&e));
                let _ = self.shutdown.pause(READ_BLOCK);
            }
            Failure::Lost if !self.link.lost_to_timeout() && self.link.run(|_| Ok(())).is_ok() => {
                // Redis closed the connection (`CLIENT KILL`, a timeout of
                // its own) and took a new one at once: not an outage, the
                // clients are not told. The next read resumes from the
                // cursors as after any reconnection.
            }
            Failure::Down | Failure::Lost => {
                if self.up {
                    self.up = false;
                    self.sink.link(false);
                }
            }
        }
    }

    /// Serves the watches and unwatches asked since the last time, one
    /// merged control per room. A watch that fails waits for the next time
    /// (merged with whatever was asked since).
    fn serve_controls(&mut self) -> Result<(), Failure> {
        let controls = std::mem::take(&mut *self.controls.lock());
        let mut result = Ok(());
        for (room, control) in controls {
            if result.is_err() {
                self.put_back(room, control);
                continue;
            }
            if let Some(cursor) = self.cursors.get_mut(&room) {
                let watchers = cursor.watchers as i64 + control.delta;
                if watchers <= 0 {
                    self.cursors.remove(&room);
                    self.written.lock().remove(&room);
                    continue;
                }
                cursor.watchers = watchers as usize;
                // Its history was loaded past where this reader stands:
                // skip what the history holds already.
                if let Some(Start::After(from)) = &control.start {
                    if from.epoch == cursor.epoch && from.n > cursor.n {
                        cursor.id.clone_from(&from.id);
                        cursor.n = from.n;
                    }
                }
                continue;
            }
            if control.delta <= 0 {
                continue;
            }
            if let Err(failure) = self.enter(&room, control.start.clone(), control.delta as usize) {
                self.put_back(room, control);
                result = Err(failure);
            }
        }
        result
    }

    /// Puts a control that could not be served back, under any asked since.
    fn put_back(&mut self, room: String, control: Control) {
        let mut controls = self.controls.lock();
        let newer = controls.entry(room).or_default();
        newer.delta += control.delta;
        if newer.start.is_none() {
            newer.start = control.start;
        }
    }

    /// One blocking XREAD over every watched log and the wake stream, and
    /// Redis's clock right after it (in the same round trip) when the last
    /// note of it is older than [`since::CLOCK_EVERY`].
    fn read_once(&mut self) -> Result<(), Failure> {
        let rooms: Vec<(String, String)> = self
            .cursors
            .iter()
            .map(|(room, c)| (room.clone(), c.id.clone()))
            .collect();
        let count = read_count(rooms.len() + 2);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.wake_key)
            .arg(&self.inbox_key);
        for (room, _) in &rooms {
            cmd.arg(keys::log(room));
        }
        cmd.arg(&self.wake_id).arg(&self.inbox_id);
        for (_, id) in &rooms {
            cmd.arg(id);
        }
        let epoch = self.link.epoch().unwrap_or_default();
        let reply: Option<StreamReadReply> = if self.clock.as_ref().is_some_and(|c| c.fresh(epoch))
        {
            self.link.run(|conn| cmd.query(conn))?
        } else {
            let (reply, time): (Option<StreamReadReply>, (u64, u64)) = self
                .link
                .run(|conn| redis::pipe().add_command(cmd).cmd("TIME").query(conn))?;
            let epoch = self.link.epoch().unwrap_or_default();
            self.clock = Some(Clock::new(time, Instant::now(), epoch));
            reply
        };
        let Some(reply) = reply else {
            return Ok(());
        };
        for stream in reply.keys {
            if stream.key == self.wake_key {
                if let Some(last) = stream.ids.last() {
                    self.wake_id.clone_from(&last.id);
                }
                continue;
            }
            if stream.key == self.inbox_key {
                for id in &stream.ids {
                    self.inbox_id.clone_from(&id.id);
                    match Request::from_stream(id) {
                        Some(request) => self.sink.request(request),
                        None => log!(
                            "redis reader: inbox entry {} is not a request; skipped",
                            id.id
                        ),
                    }
                }
                continue;
            }
            let Some(room) = stream.key.strip_prefix(&keys::log("")).map(str::to_string) else {
                continue;
            };
            let mut run = Vec::with_capacity(stream.ids.len());
            for id in &stream.ids {
                let Some(entry) = Entry::from_stream(id) else {
                    log!(
                        "redis reader: entry {} of {} is not ours; skipped",
                        id.id,
                        stream.key
                    );
                    continue;
                };
                self.take(&room, entry, &mut run);
            }
            if !run.is_empty() {
                self.sink.deliver(&room, run);
            }
        }
        Ok(())
    }

    /// Takes one entry into `run` (what will be delivered in one go),
    /// moving the cursor; lines missed before it are reported first, after
    /// delivering what `run` holds so far, so the order stays the log's.
    fn take(&mut self, room: &str, entry: Entry, run: &mut Vec<Entry>) {
        let Some(cursor) = self.cursors.get_mut(room) else {
            return;
        };
        if entry.n <= cursor.n {
            if !later(&entry.id, &cursor.id) {
                // Already taken (a watch moved the cursor past it).
                return;
            }
            // Later in the stream, yet numbered as if before: the log
            // went back (Redis restarted from an older copy of its data)
            // and numbers its lines again from below the cursor.
            if !run.is_empty() {
                self.sink.deliver(room, std::mem::take(run));
            }
            let (from, to) = (cursor.n, entry.n - 1);
            cursor.n = to;
            self.sink.missed(room, Missed::RolledBack { from, to });
        }
        let missed = entry.n - cursor.n - 1;
        cursor.id.clone_from(&entry.id);
        cursor.n = entry.n;
        if missed > 0 {
            if !run.is_empty() {
                self.sink.deliver(room, std::mem::take(run));
            }
            self.sink.missed(room, Missed::Lines(missed));
        }
        if self
            .own_notices
            .iter()
            .any(|own| entry.uid.starts_with(own))
        {
            // Skipped, ending the run: the history numbers a run's lines
            // back from its last entry, one by one.
            if !run.is_empty() {
                self.sink.deliver(room, std::mem::take(run));
            }
            return;
        }
        run.push(entry);
    }
}

/// Whether stream id `a` comes after `b` (`MS-SEQ`, compared as numbers).
fn later(a: &str, b: &str) -> bool {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a) > parse(b)
}
