//! The lab services over TCP: echo (RFC 862) and uppercase (Kurose and Ross).
//!
//! No banner and no framing: each read is answered at once, so a textbook
//! client that sends `hello` without a newline and blocks in `recv` gets
//! `hello` back. Memory per connection is one read buffer ([`CHUNK`]) and its
//! transformed copy (at most three times as long: no character's uppercase
//! is more than three times its UTF-8 length), whatever the client sends. A
//! client that sends but never reads is pushed back on by TCP: we stop
//! reading while our write waits.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};

use chat_common::upper::Upcaser;

use crate::config::Mode;
use crate::log;
use crate::write::{write_polling, WRITE_POLL};
use crate::Context;

/// Bytes read at a time.
pub const CHUNK: usize = 16 * 1024;

/// Serves one echo or upper connection until the client closes it.
pub fn serve(stream: &TcpStream, peer: SocketAddr, ctx: &Context) {
    let mode = match ctx.config.mode {
        Mode::Upper => "upper",
        _ => "echo",
    };
    log!("{peer} connected ({mode} mode)");
    match pump(stream, ctx) {
        Ok(bytes) => log!("{peer} disconnected after {bytes} bytes"),
        // `write_polling` gave up: the shutdown deadline passed while the
        // client was not reading its replies.
        Err(e) if e.kind() == ErrorKind::TimedOut && ctx.shutdown.is_triggered() => {
            log!("{peer} disconnected: server shutting down (client not reading)");
        }
        Err(e) => log!("{peer} disconnected: {e}"),
    }
}

/// Reads, transforms, writes back; returns the bytes echoed.
fn pump(mut stream: &TcpStream, ctx: &Context) -> std::io::Result<u64> {
    stream.set_write_timeout(Some(WRITE_POLL))?;
    let give_up = || {
        ctx.shutdown
            .deadline()
            .is_some_and(|d| std::time::Instant::now() >= d)
    };
    let mut upper = (ctx.config.mode == Mode::Upper).then(Upcaser::new);
    let mut buf = vec![0; CHUNK];
    let mut out = Vec::new();
    let mut total = 0;
    // Shutdown wakes a blocked read by shutting the socket's read side
    // (`Connections::close_all`), but on Linux a read may go on returning
    // data that keeps arriving after that: a client streaming through us as
    // fast as it reads would never see the end. So the loop also checks the
    // switch itself.
    while !ctx.shutdown.is_triggered() {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let reply = match upper.as_mut() {
            Some(upper) => {
                out.clear();
                upper.push(&buf[..n], &mut out);
                &out[..]
            }
            None => &buf[..n],
        };
        write_polling(stream, reply, give_up)?;
        total += n as u64;
    }
    if let Some(upper) = upper.as_mut() {
        out.clear();
        upper.finish(&mut out);
        write_polling(stream, &out, give_up)?;
    }
    Ok(total)
}
