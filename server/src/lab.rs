//! The lab services over TCP: echo (RFC 862) and uppercase (Kurose and Ross).
//!
//! No banner and no framing: each read is answered at once, so a textbook
//! client that sends `hello` without a newline and blocks in `recv` gets
//! `hello` back. Memory per connection is one read buffer ([`CHUNK`]), the
//! bytes passed by the stop line (at most [`CHUNK`] and a held stop line)
//! and their transformed copy (at most three times as long: no character's
//! uppercase is more than three times its UTF-8 length), whatever the
//! client sends. A
//! client that sends but never reads is pushed back on by TCP: we stop
//! reading while our write waits.
//!
//! The stop line (`--stop`, `EXIT` by default) ends the connection: a
//! [`StopLine`] in front of the transform passes every byte on at once,
//! except those of a partial line that could still become the stop line
//! (at most [`MAX_STOP`](crate::config::MAX_STOP) and a CR), which wait for
//! the byte that decides. Matching is on the bytes the client sent, so in
//! upper mode `exit` is uppercased and sent back, not taken as `EXIT`.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};

use chat_common::stop::{Scan, StopLine};
use chat_common::upper::Upcaser;

use crate::config::Mode;
use crate::log;
use crate::write::{write_polling, WRITE_POLL};
use crate::Context;

/// Bytes read at a time.
pub const CHUNK: usize = 16 * 1024;

/// Serves one echo or upper connection until the client closes it or sends
/// the stop line.
pub fn serve(stream: &TcpStream, peer: SocketAddr, ctx: &Context) {
    let mode = match ctx.config.mode {
        Mode::Upper => "upper",
        _ => "echo",
    };
    log!("{peer} connected ({mode} mode)");
    match pump(stream, ctx) {
        Ok(Echoed { bytes, stopped }) => {
            if stopped {
                crate::linger::close_after_stop(stream, ctx);
            }
            log!(
                "{peer} disconnected after {bytes} bytes{}",
                if stopped { " (stop line)" } else { "" }
            );
        }
        // `write_polling` gave up: the shutdown deadline passed while the
        // client was not reading its replies.
        Err(e) if e.kind() == ErrorKind::TimedOut && ctx.shutdown.is_triggered() => {
            log!("{peer} disconnected: server shutting down (client not reading)");
        }
        Err(e) => log!("{peer} disconnected: {e}"),
    }
}

/// How an echo or upper connection ended.
struct Echoed {
    /// Bytes sent back, before any transform.
    bytes: u64,
    /// Whether the client sent the stop line (else it closed).
    stopped: bool,
}

/// Reads, transforms, writes back, until end of stream or the stop line.
fn pump(mut stream: &TcpStream, ctx: &Context) -> std::io::Result<Echoed> {
    stream.set_write_timeout(Some(WRITE_POLL))?;
    let give_up = || {
        ctx.shutdown
            .deadline()
            .is_some_and(|d| std::time::Instant::now() >= d)
    };
    let mut upper = (ctx.config.mode == Mode::Upper).then(Upcaser::new);
    let mut stop = StopLine::new(&ctx.config.stop);
    let mut buf = vec![0; CHUNK];
    let mut passed = Vec::with_capacity(CHUNK + crate::config::MAX_STOP + 1);
    let mut out = Vec::new();
    let mut total = 0;
    let mut stopped = false;
    // Shutdown wakes a blocked read by shutting the socket's read side
    // (`Connections::close_all`), but on Linux a read may go on returning
    // data that keeps arriving after that: a client streaming through us as
    // fast as it reads would never see the end. So the loop also checks the
    // switch itself.
    while !ctx.shutdown.is_triggered() {
        passed.clear();
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                stopped = stop.finish(&mut passed) == Scan::Stop;
                0
            }
            Ok(n) => {
                stopped = stop.feed(&buf[..n], &mut passed) == Scan::Stop;
                n
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let reply = match upper.as_mut() {
            Some(upper) => {
                out.clear();
                upper.push(&passed, &mut out);
                &out[..]
            }
            None => &passed[..],
        };
        write_polling(stream, reply, give_up)?;
        total += passed.len() as u64;
        if n == 0 || stopped {
            break;
        }
    }
    if let Some(upper) = upper.as_mut() {
        out.clear();
        upper.finish(&mut out);
        write_polling(stream, &out, give_up)?;
    }
    Ok(Echoed {
        bytes: total,
        stopped,
    })
}
