//! The server password (`--password-file`): the gate a chat client passes
//! before it joins the room, and the per-address count of wrong tries.
//!
//! Until it gives `/pass PASSWORD` the client is in no room: the rooms do
//! not know it, so it sees no line, is announced to no one, and nothing
//! it sends is relayed. The gate runs on the client's worker, before
//! [`crate::session`] joins it to the room.
//!
//! - A wrong password is answered after [`WRONG_DELAY`]; [`MAX_TRIES`] wrong
//!   ones close the connection.
//! - [`LOCKOUT_TRIES`] wrong ones from one address within [`LOCKOUT_WINDOW`]
//!   lock that address out for [`LOCKOUT`]: the accept loop refuses it like a
//!   ban ([`crate::access`]), and so does the gate, before each line it
//!   reads: a try from a locked-out address is not judged, whichever of its
//!   connections makes it ([`Failures::judge`] checks and counts under one
//!   lock). Its connections not yet in the room are closed at once, with the
//!   same line where they are at the prompt.
//! - No right password within `--password-timeout` (30 s): closed.
//!
//! The password is compared in constant time for a given length of what the
//! client sent, and it is never logged, echoed or shown: neither it nor what
//! a client offered as one appears in any line the server writes.
//!
//! The gate reads the socket one byte per `read`, so it never takes bytes
//! past the `/pass` line: what the client sent after it (a `/nick`, its first
//! chat line) is left in the socket for the session's own reader.
//!
//! The wrong tries per address and the lockouts are `password/failures.rs`.

use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use chat_common::command::{self, Command};
use chat_common::{protocol, Line, LineReader};

use crate::conns::Stage;
use crate::flood::TokenBucket;
use crate::log;
use crate::shutdown::Waited;
use crate::start_file;
use crate::write::write_polling;
use crate::Context;

/// What a chat client is asked first when the server has a password (and
/// all a client that shut its side before a word is shown:
/// `session::glimpse`).
pub const PROMPT: &str = "this server needs a password: send /pass PASSWORD";

mod failures;

pub use failures::{Failures, Judged, Strike};

/// How long a wrong password waits for its answer: guessing costs time.
pub const WRONG_DELAY: Duration = Duration::from_secs(1);

/// Wrong passwords one connection may give; the last one closes it.
pub const MAX_TRIES: u32 = 3;

/// Wrong passwords from one address, within [`LOCKOUT_WINDOW`], that lock
/// the address out.
pub const LOCKOUT_TRIES: usize = 10;

/// The window [`LOCKOUT_TRIES`] are counted in.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(60);

/// How long a locked-out address is refused at accept.
pub const LOCKOUT: Duration = Duration::from_secs(60);

/// Most addresses whose wrong tries are remembered at once. Each costs about
/// 250 bytes (ten instants and the map's overhead): about 1 MiB in all. When
/// full, addresses with no wrong try in the last minute are forgotten first,
/// then the unlocked one whose last try is oldest; a locked-out address is
/// never forgotten before its minute is over.
pub const MAX_TRACKED: usize = 4096;

/// The password, never shown: `Debug` and `Display` print a placeholder.
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

impl Password {
    /// The first line of `file`, without surrounding whitespace. Read once,
    /// at start: changing the file takes a restart.
    ///
    /// # Errors
    /// An unreadable file (not a regular file, over
    /// [`MAX_START_FILE`](crate::start_file::MAX_START_FILE)) or an empty
    /// first line: one line that names the file but never shows its
    /// contents.
    pub fn load(file: &Path) -> Result<Password, String> {
        let bytes = start_file::read(file)
            .map_err(|why| format!("cannot read the password file {}: {why}", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(format!(
                "the password file {} has an empty first line",
                file.display()
            ));
        }
        Ok(Password(first.to_string()))
    }

    /// Whether `given` is the password. Takes the same time whatever the
    /// password is, for a given length of `given`: every byte of `given` is
    /// compared, with no early exit.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.0.as_bytes())
    }
}

/// `given == secret`, in time that depends on `given.len()` only.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    let n = secret.len().max(1);
    for (i, &g) in given.iter().enumerate() {
        let s = secret.get(i % n).copied().unwrap_or(0);
        diff |= std::hint::black_box(g ^ s);
    }
    std::hint::black_box(diff) == 0
}

/// What the gate decided.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Passage {
    /// The right password: the client may join.
    Granted,
    /// Turned away: tell it this `! ` or `* ` line (with its LF) and close.
    Refused(String),
    /// The client left, or its socket failed; `why` is for the log.
    Gone(String),
}

/// The password and the wrong tries: what `--password-file` switches on.
pub struct Gate {
    /// What a client must give (never shown: see [`Password`]).
    password: Password,
    /// `--password-timeout`: how long a client has to give it.
    timeout: Duration,
    /// Wrong tries per address, for the lockout.
    pub failures: Failures,
}

/// Reads one byte per call, so a [`LineReader`] on it never reads past the
/// line it returns.
struct OneByte<'a>(&'a TcpStream);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        (&*self.0).read(&mut buf[..n])
    }
}

impl Gate {
    /// A gate for the password in `file`, giving each client `timeout`.
    ///
    /// # Errors
    /// As [`Password::load`].
    pub fn load(file: &Path, timeout: Duration) -> Result<Gate, String> {
        Ok(Gate {
            password: Password::load(file)?,
            timeout,
            failures: Failures::default(),
        })
    }

    /// How long `ip` is still locked out, if it is.
    pub fn locked(&self, ip: IpAddr) -> Option<Duration> {
        self.failures.locked(ip, Instant::now())
    }

    /// Asks the client on `stream` for the password and reads lines until
    /// it gives the right one, gives up, or is turned away. The stream must
    /// have a write timeout (the session sets [`crate::write::WRITE_POLL`]);
    /// its read timeout is cleared again on the way out.
    pub fn pass(&self, stream: &TcpStream, peer: SocketAddr, ctx: &Context) -> Passage {
        let deadline = Instant::now() + self.timeout;
        let passage = match self.ask(stream, peer, ctx, deadline) {
            Ok(passage) | Err(passage) => passage,
        };
        let _ = stream.set_read_timeout(None);
        passage
    }

    fn ask(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
        ctx: &Context,
        deadline: Instant,
    ) -> Result<Passage, Passage> {
        let say = |line: String| {
            write_polling(stream, line.as_bytes(), || {
                ctx.shutdown.is_triggered() || Instant::now() >= deadline
            })
            .map_err(|e| Passage::Gone(log::plain(&e)))
        };
        say(protocol::notice(PROMPT))?;
        let mut lines =
            LineReader::new(OneByte(stream), ctx.config.max_line as usize).with_telnet();
        let mut bucket = TokenBucket::new(ctx.config.rate_limit, ctx.config.burst);
        let mut wrong = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Passage::Refused(protocol::error(&format!(
                    "no password within {} s; closing",
                    self.timeout.as_secs()
                ))));
            }
            let _ = stream.set_read_timeout(Some(left));
            let line = match lines.read_line() {
                Ok(Some(line)) => line,
                _ if ctx.shutdown.is_triggered() => return Ok(shutting_down()),
                Ok(None) => return Ok(Passage::Gone("closed before giving the password".into())),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => return Ok(Passage::Gone(log::plain(&e))),
            };
            if !bucket.try_take() && bucket.wait(&ctx.shutdown) == Waited::ShuttingDown {
                return Ok(shutting_down());
            }
            // Banned or locked out meanwhile: its read side was shut, but
            // lines it sent before (or sends still) may yet arrive. None of
            // them is handled.
            if let Some(line) = ctx.access.shut_out(peer.ip()) {
                return Ok(Passage::Refused(line));
            }
            // `EXIT` or `/quit` leaves, as in the room (SPEC: `EXIT`
            // leaves like `/quit`): it is no try, and no one is told.
            if let Line::Text(text) = &line {
                if let Some(Command::Quit(_)) = command::parse(text) {
                    return Ok(Passage::Gone("left at the password prompt".into()));
                }
            }
            let given = match &line {
                Line::Text(text) if text.trim().is_empty() => continue,
                Line::Text(text) => command::pass_argument(text),
                Line::TooLong => None,
            };
            let Some(given) = given else {
                say(protocol::error(
                    "this server needs a password first: send /pass PASSWORD",
                ))?;
                continue;
            };
            let judged = self
                .failures
                .judge(peer.ip(), Instant::now(), || self.password.matches(given));
            let strike = match judged {
                Judged::Right => {
                    log!("{peer} gave the right password");
                    return Ok(Passage::Granted);
                }
                // Locked out by another connection's tries: not judged.
                Judged::Locked(left) => return Ok(Passage::Refused(lockout_line(left))),
                Judged::Wrong(strike) => strike,
            };
            wrong += 1;
            log!("{peer} gave a wrong password ({wrong} of {MAX_TRIES})");
            if strike == Strike::LockedOut {
                let ip = peer.ip().to_canonical();
                // Its other connections not yet in the room go too: at the
                // prompt they see end of stream and are told why; waiting
                // for a worker, the pool drops them and `Unserved` tells
                // them.
                let closed = ctx
                    .conns
                    .close_where(|other, stage| other == ip && stage == Stage::Outside);
                log!(
                    "{ip} locked out for {} s: {LOCKOUT_TRIES} wrong passwords within {} s; closed its {} not in the room",
                    LOCKOUT.as_secs(),
                    LOCKOUT_WINDOW.as_secs(),
                    chat_common::protocol::count(closed.saturating_sub(1) as u64, "other connection")
                );
            }
            if ctx.shutdown.pause(WRONG_DELAY) == Waited::ShuttingDown {
                return Ok(shutting_down());
            }
            if strike == Strike::LockedOut {
                return Ok(Passage::Refused(protocol::error(&format!(
                    "wrong password; too many wrong passwords from your address: refused for {} s",
                    LOCKOUT.as_secs()
                ))));
            }
            if wrong >= MAX_TRIES {
                return Ok(Passage::Refused(protocol::error(&format!(
                    "wrong password; {MAX_TRIES} wrong tries, closing"
                ))));
            }
            let left = MAX_TRIES - wrong;
            say(protocol::error(&format!(
                "wrong password; {left} {} left",
                if left == 1 { "try" } else { "tries" }
            )))?;
        }
    }
}

/// What a locked-out address is told, at accept or at the prompt.
pub fn lockout_line(left: Duration) -> String {
    protocol::error(&format!(
        "too many wrong passwords from your address; try again in {}",
        crate::bans::format_left(left)
    ))
}

fn shutting_down() -> Passage {
    Passage::Refused(protocol::shutting_down())
}

#[cfg(test)]
mod tests;
