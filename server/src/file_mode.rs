//! `--mode file` over TCP: each line names a file under `--root`, the reply
//! is its bytes exactly (SPEC "File mode").
//!
//! A name ends at LF (a CR before it dropped), at the end of the stream, or
//! when [`NAME_PAUSE`] passes with no more bytes after part of a name: the
//! textbook client sends a bare name and waits in `recv`. A refusal is one
//! `! ` line and the connection goes on; the stop line (`--stop`) ends it.
//! Finding the file safely is [`files`](crate::files)' job.
//!
//! Memory per connection: one read buffer ([`CHUNK`]), one partial name
//! (at most [`MAX_FILE_NAME`] bytes; a longer line is refused and skipped, not
//! kept) and one buffer of file bytes in flight ([`CHUNK`]): whatever the
//! client asks for, a file is sent in pieces, never held whole.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chat_common::protocol::{self, error};
use chat_common::stop::without_line_end;

use crate::files::{Found, Root, MAX_FILE_NAME};
use crate::lab::CHUNK;
use crate::log;
use crate::write::{write_polling, WRITE_POLL};
use crate::Context;

/// Silence after part of a name that makes it a name (SPEC: 200 ms).
pub const NAME_PAUSE: Duration = Duration::from_millis(200);

/// What one connection did, for its log line.
#[derive(Default)]
struct Tally {
    /// Files sent whole.
    sent: u64,
    /// Names refused.
    refused: u64,
    /// Whether it ended with the stop line.
    stopped: bool,
}

/// Serves one file-mode connection until the client closes it or sends the
/// stop line.
pub fn serve(stream: &TcpStream, peer: SocketAddr, ctx: &Context, root: &Root) {
    log!("{peer} connected (file mode)");
    let mut tally = Tally::default();
    match pump(stream, peer, ctx, root, &mut tally) {
        Ok(()) => {
            if tally.stopped {
                crate::linger::close_after_stop(stream, ctx);
            }
            log!(
                "{peer} disconnected after {} sent, {} refused{}",
                protocol::count(tally.sent, "file"),
                tally.refused,
                if tally.stopped { " (stop line)" } else { "" }
            );
        }
        Err(e) if e.kind() == ErrorKind::TimedOut && ctx.shutdown.is_triggered() => {
            log!("{peer} disconnected: server shutting down (client not reading)");
        }
        // A reply cut short (`answer`'s own error, the only one of this
        // kind): an end of stream tells the client, after what was sent;
        // names it sent meanwhile are read and dropped, so the close is
        // no reset (which would lose the end of the reply).
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            crate::linger::close_after_stop(stream, ctx);
            log!("{peer} disconnected: {}", log::plain(&e));
        }
        Err(e) => log!("{peer} disconnected: {}", log::plain(&e)),
    }
}

/// The partial name being read, bounded by [`MAX_FILE_NAME`].
#[derive(Default)]
struct Name {
    /// Bytes of the name so far.
    bytes: Vec<u8>,
    /// Set once the line grew past [`MAX_FILE_NAME`]: the rest of it is skipped.
    too_long: bool,
}

/// Reads names and answers each, until end of stream or the stop line.
fn pump(
    stream: &TcpStream,
    peer: SocketAddr,
    ctx: &Context,
    root: &Root,
    tally: &mut Tally,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_POLL))?;
    let mut buf = vec![0; CHUNK];
    let mut name = Name::default();
    let mut reading = stream;
    while !ctx.shutdown.is_triggered() {
        // Block while no name is begun; after part of one, its end is
        // NAME_PAUSE of silence.
        let partial = !name.bytes.is_empty() || name.too_long;
        stream.set_read_timeout(partial.then_some(NAME_PAUSE))?;
        let n = match reading.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if answer(stream, peer, ctx, root, &mut name, tally)? {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            if partial {
                answer(stream, peer, ctx, root, &mut name, tally)?;
            }
            return Ok(());
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let (part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(lf) => (&rest[..lf], true),
                None => (rest, false),
            };
            rest = &rest[part.len() + usize::from(ended)..];
            if !name.too_long {
                if name.bytes.len() + part.len() > MAX_FILE_NAME + 1 {
                    name.too_long = true;
                    name.bytes.clear();
                } else {
                    name.bytes.extend_from_slice(part);
                }
            }
            if ended && answer(stream, peer, ctx, root, &mut name, tally)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Answers the name read so far and clears it. `true` when it was the stop
/// line: the connection ends.
fn answer(
    stream: &TcpStream,
    peer: SocketAddr,
    ctx: &Context,
    root: &Root,
    name: &mut Name,
    tally: &mut Tally,
) -> std::io::Result<bool> {
    let give_up = || ctx.shutdown.deadline().is_some_and(|d| Instant::now() >= d);
    let too_long = std::mem::take(&mut name.too_long);
    let line = std::mem::take(&mut name.bytes);
    // One CR comes off, once: `EXIT\r\r` is a name, as it is text in echo
    // mode.
    let bytes = without_line_end(&line);
    if !ctx.config.stop.is_empty() && bytes == ctx.config.stop.as_bytes() {
        tally.stopped = true;
        return Ok(true);
    }
    let shown = String::from_utf8_lossy(bytes);
    let found = if too_long {
        Err(crate::files::Refusal::BadName("file name too long"))
    } else {
        root.lookup(bytes, ctx.config.max_file)
    };
    match found {
        Ok(Found { file, size }) => {
            let sent = send_file(stream, file, size, give_up)?;
            if sent < size {
                // Replies carry no length: the end of the connection is
                // the only way to tell the client this one is short.
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("{shown:?} was cut short, {sent} of its {size} bytes sent (it shrank, or reading it failed, while it was sent)"),
                ));
            }
            tally.sent += 1;
            log!("{peer} was sent {shown:?} ({size} bytes)");
        }
        Err(refusal) => {
            tally.refused += 1;
            log!("{peer} asked for {shown:?}: {refusal}");
            write_polling(stream, error(&refusal.to_string()).as_bytes(), give_up)?;
        }
    }
    Ok(false)
}

/// Sends at most `size` bytes of `file`, a [`CHUNK`] at a time, and says
/// how many it sent: fewer than `size` if the file shrank meanwhile, or a
/// read failed.
fn send_file(
    stream: &TcpStream,
    file: std::fs::File,
    size: u64,
    give_up: impl Fn() -> bool,
) -> std::io::Result<u64> {
    let mut file = file.take(size);
    let mut chunk = vec![0; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK))];
    let mut sent = 0;
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => return Ok(sent),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log!("reading a served file failed: {}", log::plain(&e));
                return Ok(sent);
            }
        };
        write_polling(stream, &chunk[..n], &give_up)?;
        sent += n as u64;
    }
}
