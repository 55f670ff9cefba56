//! A TCP session: connect, then one reader thread and one writer thread.
//!
//! Chat is full duplex: a peer's line must appear while the user is still
//! typing, and a slow server must not freeze the keyboard. So the stream is
//! `try_clone`d into a [`ReadHalf`] and a [`WriteHalf`] (the tiny-http shape)
//! and each half gets a thread of its own; neither ever waits for the other.
//! The main thread only waits for the first [`Event`] that decides how the
//! session ends, and turns it into an exit status: returning from `main`
//! ends the process even while the writer sits in a blocking read of stdin.
//!
//! How a session ends:
//! - the server closes: a note on stderr, exit 0 (also after end of stdin,
//!   which half-closes and keeps printing until the server is done);
//! - `EXIT` typed: the write half is closed (the server sees end of stream,
//!   as after Ctrl+D), replies still on their way are printed, and we wait
//!   at most [`LINGER`] for the server to close too, so our socket never
//!   closes with unread data (which would reset it). `EXIT` itself is not
//!   sent: end of stream says "done" to every server mode alike, whatever
//!   its `--stop` word (the stop line is `chat_common::stop`'s, shared with
//!   the server);
//! - a reset, a timeout, or any other error: one [`Failure`] line, exit 1.
//!
//! Our end of stream waits for the server's first bytes (its welcome), at
//! most [`FIRST_WORD_WAIT`]: a chat server takes a connection that shuts
//! its side before a worker picked it up for one that gave up (a port
//! scan's), and serves it nothing, so `chat-client HOST PORT </dev/null`
//! went unwelcomed about one time in five.

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::address::{summarize, Target};
use crate::args::Options;
use crate::error::{stdout_failure, words, Failure, Result};

/// How long we wait, after `EXIT` or a failed write, for the server to close
/// its side or for the reader to say what went wrong. Long enough for a
/// server on the other side of the world, short enough to feel immediate.
pub const LINGER: Duration = Duration::from_secs(1);

/// Longest wait, once stdin ended (or `EXIT`), for the server's first
/// bytes before our end of stream goes: a server answers a new connection
/// at once (its welcome, a refusal, a "please wait"); one that says
/// nothing (an echo server) is not waited for longer.
pub const FIRST_WORD_WAIT: Duration = Duration::from_secs(2);

/// Most bytes of stdin held at once: a longer line is read and sent in
/// pieces of this size, so the writer's memory is bounded whatever the
/// length of a line. 64 KiB: a few socket writes' worth, large enough
/// that a long line costs few system calls.
pub const LINE_PIECE: usize = 64 * 1024;

/// Longest first line of a `--password-file` read, line end excluded. A
/// password is a few dozen bytes; the bound keeps a wrong FILE (a log, a
/// disk image) from being read whole, and from being sent to the server.
pub const MAX_PASSWORD_LINE: usize = 4 * 1024;

/// Bytes read from the socket at once; lines are printed as they arrive,
/// whatever their length, so this only sets how often we call `read`.
const READ_CHUNK: usize = 8 * 1024;

/// What a thread reports to the main thread; the first decisive one ends
/// the session.
#[derive(Debug)]
enum Event {
    /// The server closed its side: the reader printed everything.
    Closed,
    /// Reading from the server failed (reset, timeout).
    ReadFailed(io::Error),
    /// The user typed `EXIT`; it was not sent, and the write half closed.
    Exit,
    /// Stdin ended; everything was sent and the write half closed.
    InputDone,
    /// Sending to the server failed.
    WriteFailed(io::Error),
    /// Printing to our stdout failed (it was closed).
    OutputFailed(io::Error),
}

/// Connects to `options.target` and runs the session until it ends.
///
/// # Errors
///
/// A name that does not resolve, a connection that cannot be made, or one
/// that breaks: a [`Failure`] naming `host:port` and the cause.
pub fn run(options: &Options) -> Result<()> {
    let target = &options.target;
    let password = match &options.password_file {
        Some(file) => Some(read_password(file)?),
        None => None,
    };
    let addrs = target.resolve()?;
    let stream = connect(target, &addrs, options.timeout)?;
    // A chat line must not wait for a delayed ACK; failure only costs latency.
    let _ = stream.set_nodelay(true);
    if is_terminal_stdin() {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        eprintln!(
            "chat-client: connected to {target} ({peer}); type EXIT or press Ctrl+D to leave"
        );
    }
    let (read_half, write_half) = split(stream).map_err(|err| {
        Failure::new(format!(
            "cannot use the connection to {target}: {}",
            words(&err)
        ))
    })?;
    let (events, verdicts) = mpsc::channel();
    let heard = Arc::new(Heard::default());
    spawn("reader", {
        let events = events.clone();
        let heard = Arc::clone(&heard);
        move || {
            let _ = events.send(read_loop(read_half, &heard));
        }
    })?;
    let name = options.name.clone();
    spawn("writer", move || {
        let event = write_loop(&write_half, password, name);
        if matches!(event, Event::InputDone | Event::Exit) {
            heard.wait(FIRST_WORD_WAIT);
        }
        // Dropping the write half sends our end of stream.
        drop(write_half);
        let _ = events.send(event);
    })?;
    wait(target, &verdicts)
}

/// Tries each address in turn, each for at most `timeout`.
fn connect(target: &Target, addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream> {
    let mut attempts = Vec::new();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                let reason = match err.kind() {
                    ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                        format!("no answer within {} (timed out)", secs(timeout))
                    }
                    _ => words(&err),
                };
                attempts.push((*addr, reason));
            }
        }
    }
    Err(Failure::new(format!(
        "cannot connect to {target}: {}",
        summarize(&attempts)
    )))
}

/// Decides how the session ends from the threads' reports.
fn wait(target: &Target, verdicts: &Receiver<Event>) -> Result<()> {
    loop {
        // Both threads hold a sender until they report, so `Err` means both
        // are gone; the reader always reports before it goes.
        let Ok(event) = verdicts.recv() else {
            return Ok(());
        };
        match event {
            Event::Closed => {
                eprintln!("chat-client: {target} closed the connection");
                return Ok(());
            }
            Event::ReadFailed(err) => return Err(lost(target, &err)),
            Event::OutputFailed(err) => return Err(stdout_failure(&err)),
            Event::InputDone => continue,
            Event::Exit => {
                // The reader prints the replies still coming until the
                // server closes; whatever it says then, the user asked to
                // leave.
                let _ = next_within(verdicts, LINGER);
                return Ok(());
            }
            Event::WriteFailed(err) => {
                // The reader usually knows better (the server closed, or
                // reset); its word wins if it comes soon.
                return match next_within(verdicts, LINGER) {
                    Some(Event::Closed) => {
                        eprintln!("chat-client: {target} closed the connection");
                        Ok(())
                    }
                    Some(Event::ReadFailed(read_err)) => Err(lost(target, &read_err)),
                    _ => Err(lost(target, &err)),
                };
            }
        }
    }
}

/// The next event within `limit`, if any.
fn next_within(verdicts: &Receiver<Event>, limit: Duration) -> Option<Event> {
    verdicts.recv_timeout(limit).ok()
}

/// The line for a connection that broke after it was made.
fn lost(target: &Target, err: &io::Error) -> Failure {
    Failure::new(format!("connection to {target} lost: {}", words(err)))
}

/// Prints whatever the server sends, as it arrives, until it closes.
///
/// Bytes go to stdout unchanged (the server already made peers' text
/// harmless, and any line server must work); a last line without LF gets
/// one, so the shell prompt does not land on it.
fn read_loop(mut half: ReadHalf, heard: &Heard) -> Event {
    let _heard = heard.on_drop();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut at_line_start = true;
    loop {
        let n = match half.0.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Event::ReadFailed(err),
        };
        heard.set();
        if let Err(err) = print(&buf[..n]) {
            return Event::OutputFailed(err);
        }
        at_line_start = buf[n - 1] == b'\n';
    }
    if !at_line_start {
        if let Err(err) = print(b"\n") {
            return Event::OutputFailed(err);
        }
    }
    Event::Closed
}

/// Whether the server has said anything yet (or the reader is done):
/// what the writer waits for before its end of stream.
#[derive(Default)]
struct Heard {
    said: Mutex<bool>,
    changed: Condvar,
}

impl Heard {
    fn set(&self) {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        if !*said {
            *said = true;
            self.changed.notify_all();
        }
    }

    /// Waits until [`Heard::set`], at most `limit`.
    fn wait(&self, limit: Duration) {
        let said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.changed.wait_timeout_while(said, limit, |said| !*said);
    }

    /// Sets it when dropped: the reader's end (the server closed, or the
    /// connection failed) frees the writer too.
    fn on_drop(&self) -> SetOnDrop<'_> {
        SetOnDrop(self)
    }
}

/// See [`Heard::on_drop`].
struct SetOnDrop<'a>(&'a Heard);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Writes `bytes` to stdout now, not when a buffer fills.
fn print(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// The first line of the password file, without surrounding whitespace (the
/// server trims its own the same way). Errors name the file, never show
/// its contents.
///
/// A path may name anything, so it is checked before it is opened: only a
/// regular file is read (opening a FIFO would wait for a writer forever,
/// and `/dev/zero` never ends), and only its first line, of at most
/// [`MAX_PASSWORD_LINE`] bytes. std cannot open without blocking
/// (`O_NONBLOCK` needs libc), so a path swapped for a FIFO between the
/// check and the open could still wait; what was opened is checked again.
fn read_password(file: &std::path::Path) -> Result<String> {
    let unreadable = |why: String| {
        Failure::new(format!(
            "cannot use the password file {}: {why}",
            file.display()
        ))
    };
    let plain = |err: io::Error| unreadable(chat_common::plain::plain(&err));
    if !std::fs::metadata(file).map_err(plain)?.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    let opened = std::fs::File::open(file).map_err(plain)?;
    if !opened.metadata().map_err(plain)?.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    // Room for the longest line and its CR LF: a longer first line reads
    // as at least MAX_PASSWORD_LINE + 1 bytes once its line end is off.
    let room = MAX_PASSWORD_LINE + 2;
    let mut first = Vec::with_capacity(room);
    io::BufReader::new(opened)
        .take(room as u64)
        .read_until(b'\n', &mut first)
        .map_err(plain)?;
    let line = chat_common::stop::without_line_end(&first);
    if line.len() > MAX_PASSWORD_LINE {
        return Err(unreadable(format!(
            "its first line is longer than {MAX_PASSWORD_LINE} bytes"
        )));
    }
    let text = std::str::from_utf8(line).map_err(|_| unreadable("not UTF-8".into()))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(unreadable("its first line is empty".into()));
    }
    Ok(password.to_string())
}

/// Sends `/pass PASSWORD` and `/nick NAME` if asked (the password first:
/// a server with a password reads nothing else before it), then each line
/// typed, as typed, until `EXIT` or the end of stdin. Its caller then drops
/// `half`, which closes our sending side, so the server sees end of stream
/// on every way out (after the server's first bytes, [`FIRST_WORD_WAIT`]).
///
/// A line goes out in pieces of at most [`LINE_PIECE`] bytes, each sent as
/// soon as it is read, so memory does not grow with the length of a line
/// (`head -c 400M /dev/zero | chat-client ...` is one line). Only a piece
/// that starts a line can be `EXIT`: the rest of a long line is text.
///
/// While the server does not read (its receive window is full), this thread
/// is blocked in `write_all` and reads no stdin, so an `EXIT` or a Ctrl+D
/// typed meanwhile takes effect only once that write completes (the server
/// reads again, or the connection fails). The two-thread design leaves no
/// thread to watch stdin during the write; Ctrl+C always ends the process
/// at once.
fn write_loop(half: &WriteHalf, password: Option<String>, name: Option<String>) -> Event {
    let mut out = &half.0;
    if let Some(password) = password {
        if let Err(err) = out.write_all(format!("/pass {password}\n").as_bytes()) {
            return Event::WriteFailed(err);
        }
    }
    if let Some(name) = name {
        if let Err(err) = out.write_all(format!("/nick {name}\n").as_bytes()) {
            return Event::WriteFailed(err);
        }
    }
    let mut input = io::stdin().lock();
    let mut piece = Vec::with_capacity(LINE_PIECE);
    let mut starts_line = true;
    loop {
        piece.clear();
        // `read_until` stops at a LF, at the end of stdin, or after
        // LINE_PIECE bytes; so a piece without a LF that is short enough to
        // be `EXIT` is the end of stdin, exactly as a whole-line read saw it.
        match (&mut input)
            .take(LINE_PIECE as u64)
            .read_until(b'\n', &mut piece)
        {
            // A stdin that fails to read (a vanished terminal) has ended too.
            Ok(0) | Err(_) => return Event::InputDone,
            Ok(_) => {}
        }
        if starts_line && chat_common::stop::is_exit(&piece) {
            return Event::Exit;
        }
        starts_line = piece.last() == Some(&b'\n');
        if let Err(err) = out.write_all(&piece) {
            return Event::WriteFailed(err);
        }
    }
}

/// The receiving side of the connection; shuts reading down when dropped.
struct ReadHalf(TcpStream);

/// The sending side of the connection; dropping it sends FIN (half-close),
/// which is how the server learns we are done.
struct WriteHalf(TcpStream);

impl Drop for ReadHalf {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Read);
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

/// Splits a connected stream into its two halves (two handles on one socket).
fn split(stream: TcpStream) -> io::Result<(ReadHalf, WriteHalf)> {
    let writer = stream.try_clone()?;
    Ok((ReadHalf(stream), WriteHalf(writer)))
}

/// Starts a named thread (names show up in debuggers and `top -H`).
fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map(drop)
        .map_err(|err| Failure::new(format!("cannot start the {name} thread: {}", words(&err))))
}

/// Whether a person is typing (then a hint on how to leave is worth a line).
fn is_terminal_stdin() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
}

/// A duration as a person writes it: `5s`, `0.5s`.
pub fn secs(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line only, trimmed, CR LF or not, up to the bound; a
    /// longer one, an empty one, or a path that is not a regular file is
    /// refused with a line that names the file and never shows its text.
    #[test]
    fn password_is_the_bounded_first_line_of_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("chat-client-pw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let longest = "p".repeat(MAX_PASSWORD_LINE);
        let cases = [
            (
                write("crlf", b"  secret \r\nmore\n"),
                Ok("secret".to_string()),
            ),
            (write("no-lf", b"secret"), Ok("secret".to_string())),
            (
                write("max", format!("{longest}\r\n").as_bytes()),
                Ok(longest.clone()),
            ),
            (write("max-eof", longest.as_bytes()), Ok(longest.clone())),
            (
                write("over", format!("{longest}q\n").as_bytes()),
                Err("longer than"),
            ),
            (
                write("over-eof", format!("{longest}qq").as_bytes()),
                Err("longer than"),
            ),
            (write("empty", b" \nsecret\n"), Err("first line is empty")),
            (dir.clone(), Err("not a regular file")),
            (
                std::path::PathBuf::from("/dev/null"),
                Err("not a regular file"),
            ),
        ];
        let results: Vec<_> = cases
            .iter()
            .map(|(path, _)| read_password(path).map_err(|e| e.to_string()))
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        for ((path, want), got) in cases.iter().zip(results) {
            match (want, got) {
                (Ok(want), Ok(got)) => assert_eq!(&got, want, "{}", path.display()),
                (Err(want), Err(got)) => {
                    assert!(got.contains(want), "{}: {got}", path.display());
                    assert!(!got.contains("ppp"), "{got}");
                }
                (want, got) => panic!("{}: want {want:?}, got {got:?}", path.display()),
            }
        }
    }

    #[test]
    fn durations_read_plainly() {
        assert_eq!(secs(Duration::from_secs(5)), "5s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5s");
    }
}
