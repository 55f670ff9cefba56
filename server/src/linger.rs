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

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::Context;

/// How long a stopped connection waits for the client to close after our
/// end of stream before it is closed anyway.
pub const LINGER: Duration = Duration::from_secs(1);

/// Bytes discarded per read while lingering.
pub const DISCARD: usize = 4 * 1024;

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
