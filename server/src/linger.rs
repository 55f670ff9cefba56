//! The end of a lab connection after its stop line.
//!
//! Closing a socket that still has unread input makes Linux send RST and
//! throw away the replies still in our send buffer: a client that sent
//! `EXIT` and then one more line would lose the tail of what it was owed
//! (2 MiB echoed, ~127 KB received, then "connection reset"). So after the
//! stop line the server shuts its write side (the client reads every reply,
//! then end of stream), then reads and discards what still comes until the
//! client closes, [`LINGER`] passes or the shutdown deadline does, and only
//! then closes. Memory: one [`DISCARD`] buffer.
//!
//! A chat client's session ends without a stop line of its own (a kick, a
//! ban, Ctrl+C): what its writer still has to send may wait behind a
//! client that is not reading, and the client may have input the server
//! left unread (flood control paced it). [`discard_pending`] throws that
//! input away before the socket is closed, so the close is a FIN after the
//! last line, not a reset.

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::Context;

/// How long a stopped connection waits for the client to close after our
/// end of stream before it is closed anyway.
pub const LINGER: Duration = Duration::from_secs(1);

/// Bytes discarded per read while lingering.
pub const DISCARD: usize = 4 * 1024;

/// How long one read of [`discard_pending`] waits for more input: it
/// takes what is there, it does not wait for what might come.
pub const PENDING_WAIT: Duration = Duration::from_millis(1);

/// Reads and drops the input waiting in `stream` (the session that read it
/// is over), until none comes for [`PENDING_WAIT`], the client closes, or
/// [`LINGER`] (cut to the shutdown deadline) passes: a client that keeps
/// sending is not waited out. Without it, closing a socket with unread
/// input resets the connection, and the client loses its last line (`!
/// disconnected: ...`, `* server shutting down`) and whatever the kernel
/// still held for it.
pub fn discard_pending(mut stream: &TcpStream, ctx: &Context) {
    let mut until = Instant::now() + LINGER;
    if let Some(deadline) = ctx.shutdown.deadline() {
        until = until.min(deadline);
    }
    if stream.set_read_timeout(Some(PENDING_WAIT)).is_err() {
        return;
    }
    let mut buf = [0; DISCARD];
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Timed out (nothing waiting), reset or closed.
            Err(_) => return,
        }
    }
}

/// Ends a connection whose client sent the stop line: end of stream to the
/// client, then discard its input until it closes (at most [`LINGER`], cut
/// to the shutdown deadline), so closing does not reset the connection.
pub fn close_after_stop(mut stream: &TcpStream, ctx: &Context) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut until = Instant::now() + LINGER;
    let mut buf = [0; DISCARD];
    loop {
        if let Some(deadline) = ctx.shutdown.deadline() {
            until = until.min(deadline);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
