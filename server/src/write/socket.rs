//! How bytes reach a socket: a gathering send that never blocks (the
//! flushers), a blocking write that looks up between timeouts (a slow
//! client's own thread, the lab's echo), and a best-effort send beside the
//! queue (telnet's answers).

use std::io::{self, ErrorKind, IoSlice, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;

/// How often a writer blocked on a client that does not read looks up to see
/// whether it should give up (too slow, kicked, shutdown deadline). Sessions
/// set it as the socket's write timeout.
pub const WRITE_POLL: Duration = Duration::from_millis(100);

/// Sends what the socket takes of `batch` now, in one gathering `sendmsg`
/// (no copy into a joined buffer), without blocking: the socket itself
/// stays blocking for its reader.
pub(super) fn send_now(stream: &TcpStream, batch: &[Arc<str>]) -> io::Result<usize> {
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

/// Sends a few bytes out of band of the queue, best effort and without
/// blocking: telnet's answers to option requests. Telnet reads them at any
/// point of the stream, even inside a line the writers are sending.
pub fn send_aside(stream: &TcpStream, bytes: &[u8]) {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let _ = SockRef::from(stream).send_with_flags(bytes, flags);
}

/// How a blocking write went.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrote {
    /// The socket took every byte without a timeout: the peer keeps up.
    Whole,
    /// The socket was full at least once on the way: a write timed out, or
    /// went short.
    AfterStall,
}

/// Writes all of `buf` to a stream that has a write timeout, asking
/// `give_up` after each timeout (a write that failed with one, or went
/// short) whether to stop waiting for the peer.
///
/// # Errors
/// The socket's error, or `TimedOut` when `give_up` says so.
pub fn write_polling(stream: &TcpStream, buf: &[u8], give_up: impl Fn() -> bool) -> io::Result<()> {
    write_watching(stream, buf, give_up).map(|_| ())
}

/// [`write_polling`], saying whether the socket was ever full. A blocking
/// write that times out after writing some bytes returns short instead of
/// failing: that is a timeout too, and `give_up` is asked (a peer reading a
/// trickle would otherwise never be asked about).
///
/// # Errors
/// The socket's error, or `TimedOut` when `give_up` says so.
pub(super) fn write_watching(
    mut stream: &TcpStream,
    mut buf: &[u8],
    give_up: impl Fn() -> bool,
) -> io::Result<Wrote> {
    let mut wrote = Wrote::Whole;
    while !buf.is_empty() {
        let timed_out = match stream.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                !buf.is_empty()
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(e) if e.kind() == ErrorKind::Interrupted => false,
            Err(e) => return Err(e),
        };
        if timed_out {
            wrote = Wrote::AfterStall;
            if give_up() {
                return Err(ErrorKind::TimedOut.into());
            }
        }
    }
    Ok(wrote)
}
