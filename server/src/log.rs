//! Timestamped log lines on stderr, written by one logger thread.
//!
//! Logs go to stderr so stdout carries only the room's conversation. A
//! stderr that nobody reads (a supervisor or a harness that only reads
//! stdout) fills its pipe after a few hundred lines; a thread writing to it
//! then blocks, and a session thread blocked in a log line is a dead room.
//! So [`write`](fn@write) never writes: it formats the line and puts it in a bounded
//! queue ([`LOG_QUEUE`] lines), and the `log` thread writes them in order,
//! each with one `write` call, so lines never interleave. When the queue is
//! full the line is dropped and counted; once a write goes through again
//! (the pipe drained), the logger says how many were lost.
//!
//! At exit, [`finish`] waits for the queue while it keeps draining, then
//! stops the logger and writes the summary itself, after one line saying
//! how many lines were lost at exit, if any: the summary is always the last
//! line, and it is never dropped to make room.
//!
//! Memory: at most [`LOG_QUEUE`] lines (each a timestamp and a message of a
//! few hundred bytes at most, or a `--max-line` reason).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use chat_common::plain::plain;

/// Log lines that may wait for the logger thread; past that they are
/// dropped (and counted) rather than block the thread that logs.
pub const LOG_QUEUE: usize = 1024;

/// How long past the shutdown deadline [`finish`] may take to write the
/// queued lines and the summary: with `shutdown::GRACE` (1 s) the exit
/// stays inside SPEC's 2 s, and a stderr nobody reads cannot hold it up.
pub const FLUSH_LIMIT: Duration = Duration::from_millis(800);

/// At exit, how long the queue may go without getting shorter before
/// [`finish`] stops waiting for it (stderr is not being read).
pub const FLUSH_STALL: Duration = Duration::from_millis(250);

/// The end of [`finish`]'s budget kept for the summary itself: the wait
/// for queued lines stops this long before the deadline.
pub const TAIL_RESERVE: Duration = Duration::from_millis(300);

/// Stack of the `log` and `log-exit` threads: they only write formatted
/// lines, so a fraction of the default 2 MiB.
const LOGGER_STACK: usize = 64 * 1024;

/// The queue and its counters, started with the first log line.
struct Logger {
    /// Where [`write`](fn@write) puts lines; `None` if the thread could not start
    /// (then lines are written directly, as before there was a queue).
    lines: Option<Sender<String>>,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
    /// Lines queued and not yet written (or dropped by the logger).
    pending: Arc<AtomicU64>,
    /// Set by [`finish`]: the logger writes nothing more, so the summary
    /// is the last line.
    closing: Arc<AtomicBool>,
}

/// The process's one logger.
static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(LOG_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let started = {
            let dropped = Arc::clone(&dropped);
            let pending = Arc::clone(&pending);
            let closing = Arc::clone(&closing);
            thread::Builder::new()
                .name("log".into())
                .stack_size(LOGGER_STACK)
                .spawn(move || drain(&rx, &dropped, &pending, &closing))
        };
        Logger {
            lines: started.is_ok().then_some(tx),
            dropped,
            pending,
            closing,
        }
    })
}

/// The logger thread: writes each line, then the count of lines lost while
/// it was blocked, if any. A line leaves `pending` only once both are
/// written, with stderr still held, so [`finish`] never counts a line as
/// written before it is. Ends at [`finish`] or when the process does.
fn drain(lines: &Receiver<String>, dropped: &AtomicU64, pending: &AtomicU64, closing: &AtomicBool) {
    for line in lines {
        let mut err = std::io::stderr().lock();
        if closing.load(Ordering::Acquire) {
            return;
        }
        // A closed stderr must not take the server down: the line is dropped.
        let _ = err.write_all(line.as_bytes());
        let lost = dropped.swap(0, Ordering::AcqRel);
        if lost > 0 {
            let _ = err.write_all(
                stamp(format_args!(
                    "log: {} dropped while stderr was not being read",
                    chat_common::protocol::count(lost, "line")
                ))
                .as_bytes(),
            );
        }
        pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One line, timestamped, with its LF.
fn stamp(args: fmt::Arguments<'_>) -> String {
    format!(
        "{} {}\n",
        humantime::format_rfc3339_millis(SystemTime::now()),
        args
    )
}

/// Writes a finished line to stderr. A closed stderr must not take the
/// server down: the line is dropped.
fn emit(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Queues one log line: an RFC 3339 UTC timestamp, then the message. Never
/// blocks: with the queue full the line is dropped and counted.
pub fn write(args: fmt::Arguments<'_>) {
    let line = stamp(args);
    let logger = logger();
    let Some(lines) = &logger.lines else {
        emit(&line);
        return;
    };
    logger.pending.fetch_add(1, Ordering::AcqRel);
    match lines.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            logger.pending.fetch_sub(1, Ordering::AcqRel);
            logger.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The last log line, at exit: waits for the queued lines while the queue
/// keeps getting shorter (until [`TAIL_RESERVE`] before `deadline`, or
/// [`FLUSH_STALL`] without progress), stops the logger, then writes one "N log lines lost at exit"
/// line if any are left, and `summary`, last. Returns by `deadline` even if
/// stderr is not read: the tail is written by a helper thread, which
/// process exit ends.
pub fn finish(summary: fmt::Arguments<'_>, deadline: Instant) {
    let line = stamp(summary);
    let logger = logger();
    let mut left = logger.pending.load(Ordering::Acquire);
    let mut moved = Instant::now();
    let queue_by = deadline.checked_sub(TAIL_RESERVE).unwrap_or(deadline);
    while left > 0 && Instant::now() < queue_by && moved.elapsed() < FLUSH_STALL {
        thread::sleep(Duration::from_millis(2));
        let now = logger.pending.load(Ordering::Acquire);
        if now < left {
            moved = Instant::now();
        }
        left = now;
    }
    logger.closing.store(true, Ordering::Release);
    let pending = Arc::clone(&logger.pending);
    let dropped = Arc::clone(&logger.dropped);
    let (done, wait) = crossbeam_channel::bounded(1);
    let tail = thread::Builder::new()
        .name("log-exit".into())
        .stack_size(LOGGER_STACK)
        .spawn(move || {
            // Holding stderr: the logger finished the line it was writing
            // and writes no more, so `pending` is exactly what is lost.
            let mut err = std::io::stderr().lock();
            let lost = pending.load(Ordering::Acquire) + dropped.swap(0, Ordering::AcqRel);
            let mut tail = String::new();
            if lost > 0 {
                tail = stamp(format_args!(
                    "log: {} lost at exit",
                    chat_common::protocol::count(lost, "log line")
                ));
            }
            tail.push_str(&line);
            let _ = err.write_all(tail.as_bytes());
            let _ = done.send(());
        });
    if tail.is_ok() {
        let _ = wait.recv_deadline(deadline);
    }
}

/// Writes one line to stdout, ignoring a closed stdout: the server's own
/// output must never take it down.
pub fn say(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// `log!("accepted {}", addr)`: one timestamped line on stderr.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::write(format_args!($($arg)*))
    };
}
