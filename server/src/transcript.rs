//! `--transcript FILE`: every line a room shows, appended to a file as
//! `TIME #room LINE`, and the history reloaded from its tail at start.
//!
//! The rooms never touch the file: a delivered batch is handed (under the
//! room's lock, with a non-blocking `try_send`) to a bounded queue, and one
//! thread of its own formats the lines and writes them in batches, at most
//! [`FLUSH_EVERY`] after they were relayed. A disk that fails or fills
//! never holds up a room: the lines are counted as lost, the failure is
//! logged when it starts and when it ends (not once per line), and the
//! server's exit summary says how many lines the transcript lacks. A full
//! queue (a disk slower than the room) loses lines the same way, and is
//! logged the same way: once when lines start being dropped, by whichever
//! side sees it first (a room's `record`, under its lock: a log line is
//! queued, never written there; the thread may be stuck in a write), once
//! when the thread has caught up.
//!
//! At a graceful stop the thread writes what is queued, then flushes and
//! syncs the file, by the shutdown deadline plus [`SYNC_WAIT`]. A thread
//! still stuck in a write then (a FIFO nobody reads, a hung disk) is left
//! to process exit: what it had not written is counted missing, and the
//! skipped sync is logged.
//!
//! FILE itself (opening it, mending a torn end, writing each line whole or
//! not at all) is `file.rs`; reading the history back at start is
//! `history.rs`.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use chat_common::protocol;

use crate::log;
use crate::shutdown::Joined;

mod file;
mod history;

use file::Written;
pub use file::{open, Sink};
pub use history::{load_history, LINE_FRAME};

/// Batches of lines that may wait for the transcript thread; past that,
/// lines are counted as lost rather than slowing the room. Each holds one
/// room's batch: at most [`crate::session::RELAY_BATCH_LINES`] lines of one
/// client's read, or with `--redis` a run of one sender's lines as the
/// cluster's reader delivers them, which may be longer (up to one read,
/// [`crate::cluster::reader::READ_BUDGET`]); [`TRANSCRIPT_LINES`] bounds the
/// memory whatever the batches.
pub const TRANSCRIPT_QUEUE: usize = 4096;

/// Lines that may wait for the transcript thread (queued, or formatted and
/// not yet written), whatever the batches: what bounds its memory when the
/// disk is slower than the rooms. A line is at most 3 x `--max-line` bytes
/// plus its sender's name once sanitised (an invalid byte or a control
/// character becomes a 3-byte stand-in), so 16,384 x (3 x `--max-line` +
/// ~40) bytes, about 97 MiB at the default `--max-line` (32 MiB for lines
/// without such bytes).
pub const TRANSCRIPT_LINES: usize = 16_384;

/// How long a relayed line may wait before it is written: SPEC says it is
/// in the file within 1 s.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// How long past the shutdown deadline the stop waits for the thread to
/// write what is queued and sync: the log's last flush ends by
/// `log::FLUSH_LIMIT` (800 ms) past that deadline, inside SPEC's 2 s.
pub const SYNC_WAIT: Duration = Duration::from_millis(300);

/// Bytes buffered before a write regardless of [`FLUSH_EVERY`].
const WRITE_BYTES: usize = 64 * 1024;

/// How much of the end of FILE is read at start for history: bounded in
/// time and memory however large FILE is.
pub const TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// What the rooms hand to the transcript thread.
enum Record {
    /// Lines of one room, relayed at `at`.
    Lines {
        /// When they were relayed: TIME in the file.
        at: SystemTime,
        /// `#name`, as shown.
        room: Arc<str>,
        /// The lines, each with its LF, shared with the members' queues.
        lines: Vec<Arc<str>>,
    },
    /// Write what is left, sync, and stop.
    Stop,
}

/// The sending side, kept by the rooms.
pub struct Transcript {
    /// To the transcript thread; bounded ([`TRANSCRIPT_QUEUE`]).
    queue: Sender<Record>,
    /// Lines the file lacks: dropped at a full queue, lost to a failed
    /// write, or left unwritten at the stop.
    lost: Arc<AtomicU64>,
    /// Lines handed to the thread and not yet written (see
    /// [`TRANSCRIPT_LINES`]): what the stop counts missing if the thread
    /// is stuck.
    queued: Arc<AtomicUsize>,
    /// Lines dropped at a full queue that the thread has not counted yet,
    /// for its log line at the end of the episode.
    dropped: Arc<AtomicU64>,
    /// An episode of dropping is going on and its start was logged: set by
    /// whoever logs the start (a room's `record`, or the thread), cleared
    /// by the thread once it caught up.
    lagging: Arc<AtomicBool>,
    /// FILE, for the stop's log line.
    name: String,
    /// The writing thread, joined by [`Transcript::stop`].
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The counters shared by the rooms' side and the thread.
struct Counters {
    /// See [`Transcript::lost`].
    lost: Arc<AtomicU64>,
    /// See [`Transcript::queued`].
    queued: Arc<AtomicUsize>,
    /// See [`Transcript::dropped`].
    dropped: Arc<AtomicU64>,
    /// See [`Transcript::lagging`].
    lagging: Arc<AtomicBool>,
}

impl Transcript {
    /// Starts the thread that writes to `file` (see [`open`]).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(file: Sink<File>, name: String) -> std::io::Result<Transcript> {
        let (queue, records) = crossbeam_channel::bounded(TRANSCRIPT_QUEUE);
        let mut transcript = Transcript::without_thread(queue, name);
        let counters = transcript.counters();
        let name = transcript.name.clone();
        let thread = thread::Builder::new()
            .name("transcript".into())
            .spawn(move || write_loop(file, &name, &records, &counters))?;
        transcript.thread = Mutex::new(Some(thread));
        Ok(transcript)
    }

    /// The sending side alone, on `queue`.
    fn without_thread(queue: Sender<Record>, name: String) -> Transcript {
        Transcript {
            queue,
            lost: Arc::default(),
            queued: Arc::default(),
            dropped: Arc::default(),
            lagging: Arc::default(),
            name,
            thread: Mutex::new(None),
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            lost: Arc::clone(&self.lost),
            queued: Arc::clone(&self.queued),
            dropped: Arc::clone(&self.dropped),
            lagging: Arc::clone(&self.lagging),
        }
    }

    /// Hands a room's lines to the thread. Never blocks: a full queue
    /// counts them as lost.
    pub fn record(&self, room: &Arc<str>, lines: &[Arc<str>]) {
        let n = lines.len();
        if self.queued.fetch_add(n, Ordering::AcqRel) + n > TRANSCRIPT_LINES {
            return self.drop_lines(n);
        }
        let record = Record::Lines {
            at: SystemTime::now(),
            room: Arc::clone(room),
            lines: lines.to_vec(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(record)
        {
            self.drop_lines(n);
        }
    }

    /// `n` lines counted in `queued` were not queued after all: they give
    /// their place back, count as lost, and as dropped for the thread to
    /// count; the first of an episode logs its start here, since the
    /// thread may be stuck in a write for as long as it lasts (a FIFO
    /// nobody reads).
    fn drop_lines(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.lost.fetch_add(n as u64, Ordering::Relaxed);
        self.dropped.fetch_add(n as u64, Ordering::AcqRel);
        if !self.lagging.swap(true, Ordering::AcqRel) {
            log_lagging(&self.name);
        }
    }

    /// At a graceful stop, after the rooms are closed: the thread writes
    /// what is queued, flushes and syncs, and is joined, all by `deadline`.
    /// A thread still busy then (stuck in a write) is left to process exit:
    /// the lines it had not written count as lost, and the skipped sync is
    /// logged.
    pub fn stop(&self, deadline: Instant) {
        // A full queue of a stuck thread: the thread is not waited for
        // either, below.
        let _ = self.queue.send_deadline(Record::Stop, deadline);
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        if crate::shutdown::join_by(thread, deadline) == Joined::Joined {
            return;
        }
        let unwritten = self.queued.load(Ordering::Acquire);
        self.lost.fetch_add(unwritten as u64, Ordering::Relaxed);
        let dropped = self.dropped.swap(0, Ordering::AcqRel);
        let dropped = if dropped > 0 {
            format!(" ({dropped} more dropped at its full queue)")
        } else {
            String::new()
        };
        log!(
            "transcript {}: still writing at the shutdown deadline: not synced, {} not written{dropped}",
            self.name,
            protocol::count(unwritten as u64, "line")
        );
    }

    /// Lines the file lacks.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The transcript thread: gathers lines, writes them at least every
/// [`FLUSH_EVERY`].
fn write_loop(mut file: Sink<File>, name: &str, records: &Receiver<Record>, counters: &Counters) {
    let mut out = Pending::default();
    let mut lagging = Lagging::default();
    let mut due: Option<Instant> = None;
    loop {
        // Nothing waiting to be written: sleep until lines come (an idle
        // server's threads make no wake-ups).
        let received = match due {
            None => records.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => records.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        lagging.look(name, records, counters);
        let stop = match received {
            Ok(Record::Lines { at, room, lines }) => {
                let time = humantime::format_rfc3339_millis(at).to_string();
                for line in &lines {
                    // LINE keeps its own LF.
                    out.bytes.extend_from_slice(time.as_bytes());
                    out.bytes.push(b' ');
                    out.bytes.extend_from_slice(room.as_bytes());
                    out.bytes.push(b' ');
                    out.bytes.extend_from_slice(line.as_bytes());
                }
                out.lines += lines.len();
                due.get_or_insert_with(|| Instant::now() + FLUSH_EVERY);
                if out.bytes.len() < WRITE_BYTES {
                    continue;
                }
                false
            }
            Ok(Record::Stop) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        due = None;
        let lost = match file.write(&out.bytes) {
            Written::Nothing | Written::Whole => false,
            Written::Again => {
                log!("transcript {name}: writing again");
                false
            }
            Written::Failed(e) => {
                log!(
                    "transcript {name}: cannot write ({}); lines are lost until it can",
                    log::plain(&e)
                );
                true
            }
            Written::StillFailing => true,
        };
        if lost {
            counters.lost.fetch_add(out.lines as u64, Ordering::Relaxed);
        }
        counters.queued.fetch_sub(out.lines, Ordering::AcqRel);
        out.bytes.clear();
        out.lines = 0;
        if stop {
            lagging.look(name, records, counters);
            lagging.end(name, counters);
            if let Err(e) = file.finish() {
                if !file.failing() {
                    log!("transcript {name}: cannot sync ({})", log::plain(&e));
                }
            }
            return;
        }
    }
}

/// The start of an episode of lines dropped at a full queue.
fn log_lagging(name: &str) {
    log!("transcript {name}: the disk is slower than the rooms; lines are dropped until it catches up");
}

/// An episode of lines dropped at a full queue, as the thread counts it:
/// its start logged by whoever saw it first ([`Transcript::lagging`]), its
/// end by the thread, once it has caught up.
#[derive(Default)]
struct Lagging {
    /// Lines dropped in this episode; 0: none is going on.
    dropped: u64,
}

impl Lagging {
    /// Takes the drops the rooms counted since the last look; logs the
    /// start of an episode if no room did, or its end once the queue is
    /// empty with no new drop.
    fn look(&mut self, name: &str, records: &Receiver<Record>, counters: &Counters) {
        let new = counters.dropped.swap(0, Ordering::AcqRel);
        if new > 0 {
            if !counters.lagging.swap(true, Ordering::AcqRel) {
                log_lagging(name);
            }
            self.dropped += new;
        } else if records.is_empty() {
            self.end(name, counters);
        }
    }

    /// Logs the end of the episode, if one is going on; the next drop
    /// starts a new one.
    fn end(&mut self, name: &str, counters: &Counters) {
        if self.dropped > 0 {
            log!(
                "transcript {name}: caught up; {} dropped meanwhile",
                protocol::count(self.dropped, "line")
            );
            self.dropped = 0;
            counters.lagging.store(false, Ordering::Release);
        }
    }
}

/// Formatted lines not yet written.
#[derive(Default)]
struct Pending {
    /// Formatted `TIME #room LINE` lines.
    bytes: Vec<u8>,
    /// How many: what is counted lost if writing them fails.
    lines: usize,
}

#[cfg(test)]
mod tests;
