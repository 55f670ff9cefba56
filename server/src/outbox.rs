//! One client's outbound queue, and the writer that drains it.
//!
//! The relay pushes a shared `Arc<str>` into each recipient's outbox under
//! the registry lock; that is what gives every client the same order. The
//! push never blocks: when a client's queue holds `--sendq` lines it fails,
//! and the registry drops that client alone. The client's writer thread takes
//! everything waiting at once and sends it in as few `write` calls as it can,
//! so a busy room costs one system call per batch, not per line.
//!
//! Lock order: registry, then outbox. The writer takes only the outbox lock,
//! and never holds it across a write.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How often a writer blocked on a client that does not read looks up to see
/// whether it should give up (too slow, kicked, shutdown deadline).
pub const WRITE_POLL: Duration = Duration::from_millis(100);

/// How long a leaving client's queued lines may take to go out.
pub const LINGER: Duration = Duration::from_secs(2);

/// Most bytes a writer takes from its queue for one `write`. A batch's
/// buffer is allocated for the batch and freed after it, so an idle client
/// holds no write buffer and a burst cannot pin memory for the rest of the
/// connection.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Most lines a writer takes from its queue at once (bounds the batch's
/// vector of pointers however short the lines).
pub const BATCH_LINES: usize = 512;

/// The queue is full: the client is not reading fast enough.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// How an outbox ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Deliver what is queued, until the deadline, then close.
    Drain(Instant),
    /// Stop now: what is queued is discarded (bar one last word).
    Abort,
}

struct State {
    lines: VecDeque<Arc<str>>,
    end: Option<End>,
    /// Lines are waiting that were pushed quietly: the writer has not been
    /// woken for them yet.
    quiet: bool,
}

/// A bounded queue of lines for one client.
pub struct Outbox {
    state: Mutex<State>,
    /// Signalled when a line arrives into an empty queue, or on end.
    ready: Condvar,
    /// `--sendq`.
    limit: usize,
}

impl Outbox {
    /// An empty outbox holding at most `limit` lines. Allocates no queue
    /// storage until the first line.
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                lines: VecDeque::new(),
                end: None,
                quiet: false,
            }),
            ready: Condvar::new(),
            limit,
        }
    }

    /// Queues `line` and wakes the writer. Lines pushed after the outbox
    /// ended are dropped.
    ///
    /// # Errors
    /// [`Full`] when `limit` lines are already waiting.
    pub fn push(&self, line: &Arc<str>) -> Result<(), Full> {
        self.enqueue(line, false)
    }

    /// Queues `line` without waking the writer: it goes out with the next
    /// line pushed with [`Outbox::push`], or when [`Outbox::signal`] is
    /// called. Join and leave notices go this way, so a burst of a thousand
    /// joins costs each client a few writes, not a thousand.
    ///
    /// # Errors
    /// [`Full`] when `limit` lines are already waiting.
    pub fn push_quiet(&self, line: &Arc<str>) -> Result<(), Full> {
        self.enqueue(line, true)
    }

    fn enqueue(&self, line: &Arc<str>, quiet: bool) -> Result<(), Full> {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return Ok(());
        }
        if state.lines.len() >= self.limit {
            return Err(Full);
        }
        state.lines.push_back(Arc::clone(line));
        // The writer waits only on an empty queue, or on one holding quiet
        // lines: those are the two cases that need a wake-up.
        let writer_waits = state.lines.len() == 1 || state.quiet;
        if quiet {
            state.quiet |= state.lines.len() == 1;
        } else if writer_waits {
            state.quiet = false;
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Wakes the writer for quietly pushed lines, if any wait.
    pub fn signal(&self) {
        let mut state = self.state.lock();
        if state.quiet {
            state.quiet = false;
            self.ready.notify_one();
        }
    }

    /// Ends the outbox gracefully: `last` (the shutdown notice, say) is
    /// queued past the limit, then what is queued goes out until `deadline`.
    pub fn drain(&self, last: Option<&Arc<str>>, deadline: Instant) {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return;
        }
        state.lines.extend(last.cloned());
        state.end = Some(End::Drain(deadline));
        self.ready.notify_one();
    }

    /// Ends the outbox now: queued lines are dropped and only `last` (the
    /// reason, best effort) is left to send.
    pub fn abort(&self, last: Option<Arc<str>>) {
        let mut state = self.state.lock();
        if state.end == Some(End::Abort) {
            return;
        }
        state.lines = last.into_iter().collect();
        state.end = Some(End::Abort);
        self.ready.notify_one();
    }

    /// Waits for lines, moves up to [`BATCH_BYTES`] (at least one line, at
    /// most [`BATCH_LINES`]) into `batch`, and says whether this batch is
    /// the last (the outbox ended and nothing is left).
    pub(crate) fn take(&self, batch: &mut Vec<Arc<str>>) -> bool {
        let mut state = self.state.lock();
        while (state.lines.is_empty() || state.quiet) && state.end.is_none() {
            self.ready.wait(&mut state);
        }
        state.quiet = false;
        let mut bytes = 0;
        while bytes < BATCH_BYTES && batch.len() < BATCH_LINES {
            let Some(line) = state.lines.pop_front() else {
                break;
            };
            bytes += line.len();
            batch.push(line);
        }
        if state.lines.is_empty() && state.lines.capacity() > 64 {
            // Give back what a burst grew, so an idle client holds little.
            state.lines = VecDeque::new();
        }
        state.end.is_some() && state.lines.is_empty()
    }

    /// Whether the writer should stop waiting on a stalled socket.
    fn give_up(&self, now: Instant) -> bool {
        match self.state.lock().end {
            Some(End::Abort) => true,
            Some(End::Drain(deadline)) => now >= deadline,
            None => false,
        }
    }

    /// Lines waiting now.
    pub fn len(&self) -> usize {
        self.state.lock().lines.len()
    }

    /// Whether no line is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's writer: sends batches from `outbox` to `stream` until the
/// outbox ends or the socket fails, then half-closes the socket. On a write
/// error the outbox is aborted and the socket shut down both ways, which
/// wakes the reader so the client leaves.
pub fn run_writer(outbox: &Outbox, stream: &TcpStream) {
    let result = stream
        .set_write_timeout(Some(WRITE_POLL))
        .and_then(|()| write_batches(outbox, stream));
    match result {
        Ok(()) => {
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(_) => {
            outbox.abort(None);
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn write_batches(outbox: &Outbox, stream: &TcpStream) -> io::Result<()> {
    let mut batch = Vec::new();
    loop {
        let last = outbox.take(&mut batch);
        let mut buf = Vec::with_capacity(batch.iter().map(|line| line.len()).sum());
        for line in batch.drain(..) {
            buf.extend_from_slice(line.as_bytes());
        }
        write_polling(stream, &buf, || outbox.give_up(Instant::now()))?;
        if last {
            return Ok(());
        }
    }
}

/// Writes all of `buf` to a stream that has a write timeout, asking
/// `give_up` after each timeout whether to stop waiting for the peer.
///
/// # Errors
/// The socket's error, or `TimedOut` when `give_up` says so.
pub fn write_polling(
    mut stream: &TcpStream,
    mut buf: &[u8],
    give_up: impl Fn() -> bool,
) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if give_up() {
                    return Err(ErrorKind::TimedOut.into());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// The queue refuses the line past its limit, and takes everything at once.
    #[test]
    fn bounded_and_batched() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(&line("a\n")), Ok(()));
        assert_eq!(outbox.push(&line("b\n")), Ok(()));
        assert_eq!(outbox.push(&line("c\n")), Err(Full));
        let mut batch = Vec::new();
        assert!(!outbox.take(&mut batch));
        assert_eq!(batch, vec![line("a\n"), line("b\n")]);
    }

    /// Quiet lines wait for a loud line or a signal, and keep their order.
    #[test]
    fn quiet_lines_wait_for_a_wake() {
        let outbox = Outbox::new(8);
        outbox.push_quiet(&line("* joined\n")).unwrap();
        assert!(outbox.state.lock().quiet);
        outbox.signal();
        assert!(!outbox.state.lock().quiet);
        outbox.push_quiet(&line("* left\n")).unwrap();
        outbox.push(&line("<a> hi\n")).unwrap();
        assert!(
            !outbox.state.lock().quiet,
            "a loud line wakes the writer for all"
        );
        let mut batch = Vec::new();
        assert!(!outbox.take(&mut batch));
        assert_eq!(
            batch,
            vec![line("* joined\n"), line("* left\n"), line("<a> hi\n")]
        );
    }

    /// Abort drops what was queued but keeps the last word, and ends.
    #[test]
    fn abort_keeps_only_last_word() {
        let outbox = Outbox::new(8);
        outbox.push(&line("a\n")).unwrap();
        outbox.abort(Some(line("! bye\n")));
        outbox.push(&line("late\n")).unwrap();
        let mut batch = Vec::new();
        assert!(outbox.take(&mut batch));
        assert_eq!(batch, vec![line("! bye\n")]);
        assert!(outbox.give_up(Instant::now()));
    }

    /// Drain keeps the queue, adds the notice past the limit, and gives up
    /// only after its deadline.
    #[test]
    fn drain_delivers_then_gives_up_at_deadline() {
        let outbox = Outbox::new(1);
        outbox.push(&line("a\n")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        outbox.drain(Some(&line("* bye\n")), deadline);
        let mut batch = Vec::new();
        assert!(outbox.take(&mut batch));
        assert_eq!(batch, vec![line("a\n"), line("* bye\n")]);
        assert!(!outbox.give_up(Instant::now()));
        assert!(outbox.give_up(deadline));
    }
}
