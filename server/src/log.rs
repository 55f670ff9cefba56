//! Timestamped log lines on stderr, written by one logger thread.
//!
//! Logs go to stderr so stdout carries only the room's conversation. A
//! stderr that nobody reads (a supervisor or a harness that only reads
//! stdout) fills its pipe after a few hundred lines; a thread writing to it
//! then blocks, and a session thread blocked in a log line is a dead room.
//! So [`write`] never writes: it formats the line and puts it in a bounded
//! queue ([`LOG_QUEUE`] lines), and the `log` thread writes them in order,
//! each with one `write` call, so lines never interleave. When the queue is
//! full the line is dropped and counted; once a write goes through again
//! (the pipe drained), the logger says how many were lost.
//!
//! Memory: at most [`LOG_QUEUE`] lines (each a timestamp and a message of a
//! few hundred bytes at most, or a `--max-line` reason).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use chat_common::plain::plain;

/// Log lines that may wait for the logger thread; past that they are
/// dropped (and counted) rather than block the thread that logs.
pub const LOG_QUEUE: usize = 1024;

/// How long [`flush`] waits at exit for queued lines to reach stderr: a
/// stderr nobody reads must not hold up the exit.
pub const FLUSH_LIMIT: Duration = Duration::from_millis(500);

/// The queue and its counters, started with the first log line.
struct Logger {
    /// Where [`write`] puts lines; `None` if the thread could not start
    /// (then lines are written directly, as before there was a queue).
    lines: Option<Sender<String>>,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
    /// Lines queued and not yet written (or dropped by the logger).
    pending: Arc<AtomicU64>,
}

/// The process's one logger.
static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(LOG_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let started = {
            let dropped = Arc::clone(&dropped);
            let pending = Arc::clone(&pending);
            thread::Builder::new()
                .name("log".into())
                .stack_size(64 * 1024)
                .spawn(move || drain(&rx, &dropped, &pending))
        };
        Logger {
            lines: started.is_ok().then_some(tx),
            dropped,
            pending,
        }
    })
}

/// The logger thread: writes each line, then the count of lines lost while
/// it was blocked, if any. Ends when the process does.
fn drain(lines: &Receiver<String>, dropped: &AtomicU64, pending: &AtomicU64) {
    for line in lines {
        emit(&line);
        pending.fetch_sub(1, Ordering::AcqRel);
        let lost = dropped.swap(0, Ordering::AcqRel);
        if lost > 0 {
            emit(&stamp(format_args!(
                "log: {lost} lines dropped while stderr was not being read"
            )));
        }
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

/// Waits (at most [`FLUSH_LIMIT`]) until every queued line is on stderr:
/// called before the process exits, so the summary line is not lost.
pub fn flush() {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let deadline = Instant::now() + FLUSH_LIMIT;
    while logger.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
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
