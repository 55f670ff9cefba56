//! The reader: one thread per server reads every room log that has local
//! members, with one blocking XREAD over all of them, and hands each entry
//! to the [`Sink`] once (never once per client).
//!
//! It keeps, per watched room, a cursor: the id and number of the last
//! entry it delivered and the epoch of the Redis it came from. After a lost
//! link it resumes from that id, so nothing the log still holds is missed or
//! doubled; a jump in the entries' numbers is reported as
//! [`Missed::Lines`](super::Missed::Lines) (trimmed before it was read), a new epoch as
//! [`Missed::LogLost`](super::Missed::LogLost) (Redis restarted empty; the cursor starts again at
//! the new log's beginning).
//!
//! Redis may also come back with an older copy of its data (restarted from
//! a snapshot): the epoch is the same, but the room's counter went back.
//! An entry numbered at or below the cursor yet later in the stream, or a
//! counter below the cursor found on reconnecting, is that: reported as
//! [`Missed::RolledBack`](super::Missed::RolledBack), and the cursor's number goes back with the log,
//! so the new lines are not skipped as if already delivered.
//!
//! A room starts being read ([`Reader::watch`]) from a [`Position`]: the
//! last entry its history was loaded from ([`super::tail::tail`]), so history and live
//! lines never overlap nor leave a gap. With no position (Redis away when
//! the room got its first local member), from the moment of the watch on
//! Redis's clock, as the reader last saw it: `reader/reading/since.rs`.
//!
//! This file: the handle the rooms' log uses (watch, unwatch). The thread's
//! loop and cursors: `reader/reading.rs`. Reading a log's tail: `tail.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::link::{Endpoint, IO_TIMEOUT};
use super::writer::Writer;
use super::Sink;
use crate::shutdown::Shutdown;

mod reading;

use self::reading::ReaderThread;

/// How long one XREAD blocks in Redis: the longest a change of the watched
/// rooms waits when its wake-up entry is lost, and how often an idle reader
/// checks for shutdown. Its reply may take twice `IO_TIMEOUT` more before
/// the link counts as lost: a busy machine must not look like a Redis gone.
pub const READ_BLOCK: Duration = Duration::from_millis(500);

/// Most entries one XREAD returns in all, split evenly over the streams it
/// reads (XREAD's COUNT is per stream: each gets this divided by their
/// number, at least one). So one reply holds at most this many entries, or
/// one per stream when more streams than that are read: worst case
/// `max(READ_BUDGET, streams)` x `--max-line` bytes (4,096 x 2 KiB = 8 MiB).
pub const READ_BUDGET: usize = 4096;

/// Where a room's log was read up to: the next entry read is the one after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The stream id of the last entry taken ("0-0": none).
    pub id: String,
    /// Its number in the log (0: none).
    pub n: u64,
    /// The epoch of the Redis it was read from.
    pub epoch: String,
}

/// Where a watch asks the reader to start reading a room.
#[derive(Debug, Clone)]
pub(super) enum Start {
    /// Right after this entry (its history was loaded up to it).
    After(Position),
    /// From this moment (the watch's): every entry the log takes after it.
    Since(Instant),
}

/// What the reader is asked to do about one room, between two XREADs:
/// every watch and unwatch of a room not yet served is merged into one
/// (the count added up, the latest watch's start kept), so what waits
/// while Redis is down is bounded by the number of rooms, whatever the
/// churn.
#[derive(Default)]
pub(super) struct Control {
    /// Watches minus unwatches.
    delta: i64,
    /// Where the latest watch starts (`None`: no watch).
    start: Option<Start>,
}

/// The controls not yet served, by room.
pub(super) type Controls = Arc<Mutex<HashMap<String, Control>>>;

/// The handle to the reader thread.
#[derive(Clone)]
pub struct Reader {
    /// To the thread: watches and unwatches, served between two XREADs.
    controls: Controls,
    /// Writes the wake-up entry that ends a blocked XREAD.
    writer: Writer,
    /// Whose wake stream that is.
    server_id: String,
}

impl Reader {
    /// Starts the reader thread of server `server_id`; `writer` is used to
    /// wake it when the rooms it reads change.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        endpoint: &Endpoint,
        server_id: &str,
        writer: Writer,
        sink: Arc<dyn Sink>,
        shutdown: Arc<Shutdown>,
    ) -> std::io::Result<(Reader, thread::JoinHandle<()>)> {
        let controls = Controls::default();
        let mut state = ReaderThread::new(
            endpoint.link("reader", READ_BLOCK + 2 * IO_TIMEOUT),
            server_id,
            writer.written(),
            Arc::clone(&controls),
            sink,
            shutdown,
        );
        let handle = thread::Builder::new()
            .name("redis-reader".into())
            .spawn(move || state.run())?;
        Ok((
            Reader {
                controls,
                writer,
                server_id: server_id.to_string(),
            },
            handle,
        ))
    }

    /// Reads `room` from `from` on (its history was loaded up to there), or
    /// if `None` every entry its log takes from now on, however long the
    /// reader is cut off from Redis before it serves this
    /// (`reading/since.rs`). A room watched already keeps its cursor: each
    /// watch only counts one more reason to read it.
    pub fn watch(&self, room: &str, from: Option<Position>) {
        let start = match from {
            Some(from) => Start::After(from),
            None => Start::Since(Instant::now()),
        };
        {
            let mut controls = self.controls.lock();
            let control = controls.entry(room.to_string()).or_default();
            control.delta += 1;
            control.start = Some(start);
        }
        self.writer.wake(&self.server_id);
    }

    /// How many rooms have watches or unwatches not yet served (at most
    /// one each, however many were asked).
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.controls.lock().len()
    }

    /// Undoes one [`Reader::watch`] of `room`.
    pub fn unwatch(&self, room: &str) {
        self.controls
            .lock()
            .entry(room.to_string())
            .or_default()
            .delta -= 1;
    }
}

/// XREAD's COUNT (per stream) for one read of `streams` streams: the
/// [`READ_BUDGET`] split evenly, at least one each.
pub fn read_count(streams: usize) -> usize {
    (READ_BUDGET / streams.max(1)).max(1)
}
