//! The write side: shared flusher threads, and a thread of its own for a
//! client whose socket is full.
//!
//! A thread per client that sat waiting for lines would double the threads
//! and the memory of a big idle room, and cost a context switch per client
//! per line. Instead, a [`Peer`] (a client's [`Outbox`] and socket) is handed
//! to a small pool of flusher threads, one per two cores, when its outbox gets
//! lines. A flusher takes a batch, joins it into one buffer and sends it
//! with `MSG_DONTWAIT`, which never blocks the flusher. A client that reads
//! is served that way start to end.
//!
//! When a client's socket is full (it is not reading, or reads slowly), the
//! flusher hands that peer to a thread of its own, which waits on the socket
//! with a [`WRITE_POLL`] timeout, looking up between waits to see whether to
//! give up (the client was dropped as too slow, or a deadline passed). It
//! leaves after [`THREAD_IDLE`] with nothing to write, and the peer goes back
//! to the flushers. So only slow clients cost a thread, and never for long.

use std::io::{self, ErrorKind, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use socket2::SockRef;

use crate::log;
use crate::outbox::{Full, Outbox, Taken};

/// How often a writer blocked on a client that does not read looks up to see
/// whether it should give up (too slow, kicked, shutdown deadline).
pub const WRITE_POLL: Duration = Duration::from_millis(100);

/// How long a client's own writer thread waits for more lines before it
/// leaves and hands the client back to the flushers.
pub const THREAD_IDLE: Duration = Duration::from_secs(1);

/// Batches a flusher writes for one peer before it serves the next one in
/// line: one fast talker's audience cannot starve everyone else's.
pub const TURN: usize = 4;

/// How many flusher threads a machine with `cores` cores gets: one per two
/// cores, at least one. A flusher never blocks, so one keeps a core busy;
/// the other cores are for the reader threads, which do the relaying. More
/// flushers would each come round to a client sooner, with fewer lines
/// waiting, so every line would cost more `sendmsg` calls: on 2 cores,
/// `make bench` (c) measured about 175 ns of server CPU per delivered line
/// with two flushers and 145 ns with one, at higher throughput.
pub fn flushers_for(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// Stack of a writer thread: it only moves bytes.
pub const WRITER_STACK: usize = 64 * 1024;

/// A client as the write side sees it.
pub struct Peer {
    /// The client's number, for thread names and logs.
    pub id: u64,
    /// Lines waiting for this client.
    pub outbox: Outbox,
    /// Shared with the client's reader and the connection table.
    pub stream: Arc<TcpStream>,
    /// Why the connection is ending, when the write side or the registry
    /// knows better than the reader: a writer that meets a reset first
    /// consumes the socket's error and closes it, and an evicted client's
    /// reader is woken with a plain end of stream. The session reads the
    /// real reason here. The first cause noted wins.
    cause: Mutex<Option<String>>,
}

impl Peer {
    /// A client with an empty outbox of `sendq` lines (see [`Outbox`] for
    /// how the limit counts).
    pub fn new(id: u64, sendq: usize, stream: Arc<TcpStream>) -> Peer {
        Peer {
            id,
            outbox: Outbox::new(sendq),
            stream,
            cause: Mutex::new(None),
        }
    }

    /// Notes why the connection is ending, unless a cause is already noted.
    pub fn note_cause(&self, why: impl Into<String>) {
        self.cause.lock().get_or_insert_with(|| why.into());
    }

    /// Why the connection is ending, if the write side or the registry said.
    pub fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }
}

/// The flusher pool; cheap to clone (the registry keeps one).
#[derive(Clone)]
pub struct Writers {
    shared: Arc<Shared>,
}

struct Shared {
    /// Peers with lines to write, in the order they got them; `None` asks
    /// a flusher to leave once the queue is empty.
    queue: Sender<Option<Arc<Peer>>>,
    /// Cloned into each flusher.
    ready: Receiver<Option<Arc<Peer>>>,
    flushers: Mutex<Vec<JoinHandle<()>>>,
    /// Threads started for slow clients; joined at shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Writers {
    /// Starts `flushers` flusher threads.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(flushers: usize) -> io::Result<Writers> {
        let (queue, ready) = crossbeam_channel::unbounded();
        let writers = Writers {
            shared: Arc::new(Shared {
                queue,
                ready,
                flushers: Mutex::new(Vec::new()),
                threads: Mutex::new(Vec::new()),
            }),
        };
        for n in 1..=flushers {
            let shared = Arc::clone(&writers.shared);
            let thread = thread::Builder::new()
                .name(format!("flusher-{n}"))
                .stack_size(WRITER_STACK)
                .spawn(move || flusher(&shared))?;
            writers.shared.flushers.lock().push(thread);
        }
        Ok(writers)
    }

    /// Queues `line` for `peer` and makes sure someone writes it.
    ///
    /// # Errors
    /// [`Full`]: the client is too slow.
    pub fn push(&self, peer: &Arc<Peer>, line: &Arc<str>) -> Result<(), Full> {
        self.push_all(peer, std::slice::from_ref(line))
    }

    /// Queues `lines` for `peer`, in order, and makes sure someone writes
    /// them.
    ///
    /// # Errors
    /// [`Full`]: the client is too slow.
    pub fn push_all(&self, peer: &Arc<Peer>, lines: &[Arc<str>]) -> Result<(), Full> {
        if peer.outbox.push_all(lines)? {
            self.schedule(peer);
        }
        Ok(())
    }

    /// Writes quietly queued lines of `peer`, if any.
    pub fn signal(&self, peer: &Arc<Peer>) {
        if peer.outbox.signal() {
            self.schedule(peer);
        }
    }

    /// Ends `peer` gracefully: `last`, then what is queued, until `deadline`.
    pub fn drain(&self, peer: &Arc<Peer>, last: Option<&Arc<str>>, deadline: Instant) {
        if peer.outbox.drain(last, deadline) {
            self.schedule(peer);
        }
    }

    /// Ends `peer` now, with `last` as its best-effort last line.
    pub fn abort(&self, peer: &Arc<Peer>, last: Option<Arc<str>>) {
        if peer.outbox.abort(last) {
            self.schedule(peer);
        }
    }

    /// Hands `peer` to the flushers. Never blocks: the queue is unbounded,
    /// and each peer is in it at most once (its outbox's owner says so).
    fn schedule(&self, peer: &Arc<Peer>) {
        // The receiver lives in `shared` as long as any sender: cannot fail.
        let _ = self.shared.queue.send(Some(Arc::clone(peer)));
    }

    /// Stops the write side at shutdown: flushers finish the queue and
    /// leave; every writer thread is joined (each gives up by its outbox's
    /// drain deadline).
    pub fn stop(&self) {
        let flushers = std::mem::take(&mut *self.shared.flushers.lock());
        for _ in &flushers {
            let _ = self.shared.queue.send(None);
        }
        for thread in flushers {
            let _ = thread.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Writer threads alive now (slow clients).
    pub fn threads(&self) -> usize {
        let mut threads = self.shared.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.len()
    }
}

/// A flusher's life: serve peers in turn until shutdown empties the queue.
fn flusher(shared: &Arc<Shared>) {
    let mut batch = Vec::new();
    loop {
        match shared.ready.recv() {
            Ok(Some(peer)) => flush(shared, peer, &mut batch),
            Ok(None) if shared.ready.is_empty() => return,
            // Peers were put back in line behind the stop: serve them first.
            Ok(None) => {
                let _ = shared.queue.send(None);
            }
            Err(_) => return,
        }
    }
}

/// One turn for one peer: up to [`TURN`] batches, written without blocking.
fn flush(shared: &Arc<Shared>, peer: Arc<Peer>, batch: &mut Vec<Arc<str>>) {
    for _ in 0..TURN {
        let Taken::Batch { last } = peer.outbox.take_now(batch) else {
            return;
        };
        let total: usize = batch.iter().map(|line| line.len()).sum();
        match send_now(&peer.stream, batch) {
            Ok(n) if n == total => {
                batch.clear();
                if last {
                    close(&peer);
                    return;
                }
            }
            Ok(n) => return blocked(shared, peer, rest(batch, n), last),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return blocked(shared, peer, rest(batch, 0), last)
            }
            Err(e) => {
                batch.clear();
                return fail_with(&peer, &e);
            }
        }
    }
    if peer.outbox.requeue() {
        let _ = shared.queue.send(Some(peer));
    }
}

/// The peer's socket is full: give it a thread of its own, unless it is
/// being dropped anyway.
fn blocked(shared: &Arc<Shared>, peer: Arc<Peer>, rest: Vec<u8>, last: bool) {
    if peer.outbox.give_up(Instant::now()) {
        return fail(&peer);
    }
    peer.outbox.hand_to_thread();
    let name = format!("writer-{}", peer.id);
    let moved = Arc::clone(&peer);
    let started = thread::Builder::new()
        .name(name)
        .stack_size(WRITER_STACK)
        .spawn(move || own_thread(&moved, &rest, last));
    match started {
        Ok(thread) => {
            let mut threads = shared.threads.lock();
            threads.retain(|t| !t.is_finished());
            threads.push(thread);
        }
        Err(e) => {
            log!(
                "cannot start a writer thread ({e}): dropping client {}",
                peer.id
            );
            fail(&peer);
        }
    }
}

/// A slow client's own writer: blocking writes, until its outbox is idle
/// for [`THREAD_IDLE`] or ends.
fn own_thread(peer: &Peer, rest: &[u8], last: bool) {
    let give_up = || peer.outbox.give_up(Instant::now());
    if let Err(e) = write_polling(&peer.stream, rest, give_up) {
        return fail_with(peer, &e);
    }
    if last {
        return close(peer);
    }
    let mut batch = Vec::new();
    loop {
        let Taken::Batch { last } = peer.outbox.take_wait(&mut batch, Some(THREAD_IDLE)) else {
            return;
        };
        let buf = join(&mut batch);
        if let Err(e) = write_polling(&peer.stream, &buf, give_up) {
            return fail_with(peer, &e);
        }
        if last {
            return close(peer);
        }
    }
}

/// What a partial send left of a batch, as one buffer; empties the batch.
fn rest(batch: &mut Vec<Arc<str>>, sent: usize) -> Vec<u8> {
    let mut buf = join(batch);
    buf.drain(..sent);
    buf
}

/// Joins a batch into one buffer (one `write`), emptying the batch.
fn join(batch: &mut Vec<Arc<str>>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|line| line.len()).sum());
    for line in batch.drain(..) {
        buf.extend_from_slice(line.as_bytes());
    }
    buf
}

/// Sends what the socket takes of `batch` now, in one gathering `sendmsg`
/// (no copy into a joined buffer), without blocking: the socket itself
/// stays blocking for its reader.
fn send_now(stream: &TcpStream, batch: &[Arc<str>]) -> io::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let slices: Vec<IoSlice<'_>> = batch
        .iter()
        .map(|line| IoSlice::new(line.as_bytes()))
        .collect();
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    loop {
        match SockRef::from(stream).send_vectored_with_flags(&slices, flags) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Sends a few bytes out of band of the outbox, best effort and without
/// blocking: telnet's answers to option requests. Telnet reads them at any
/// point of the stream, even inside a line the writers are sending.
pub fn send_aside(stream: &TcpStream, bytes: &[u8]) {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let _ = SockRef::from(stream).send_with_flags(bytes, flags);
}

/// The outbox ended and everything went out: half-close, so the client
/// reads our last line and then end of stream. An aborted outbox closes
/// both ways, which also wakes the client's reader.
fn close(peer: &Peer) {
    let how = if peer.outbox.aborted() {
        Shutdown::Both
    } else {
        Shutdown::Write
    };
    peer.outbox.finish();
    let _ = peer.stream.shutdown(how);
}

/// A write failed: remember why (a give-up is not the socket's fault), then
/// close as [`fail`] does.
fn fail_with(peer: &Peer, e: &io::Error) {
    match e.kind() {
        ErrorKind::TimedOut => {}
        ErrorKind::ConnectionReset => peer.note_cause("connection reset"),
        ErrorKind::BrokenPipe => peer.note_cause("connection closed"),
        _ => peer.note_cause(crate::log::plain(e)),
    }
    fail(peer);
}

/// The socket failed, or the client is being dropped: close both ways,
/// which wakes the client's reader so the session ends.
fn fail(peer: &Peer) {
    peer.outbox.finish();
    let _ = peer.stream.shutdown(Shutdown::Both);
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
