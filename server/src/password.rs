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

use std::collections::HashMap;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use chat_common::{protocol, Line, LineReader};
use parking_lot::Mutex;

use crate::conns::Stage;
use crate::flood::TokenBucket;
use crate::log;
use crate::write::write_polling;
use crate::Context;

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
    /// An unreadable file or an empty first line: one line that names the
    /// file but never shows its contents.
    pub fn load(file: &Path) -> Result<Password, String> {
        let bytes = std::fs::read(file).map_err(|e| {
            format!(
                "cannot read the password file {}: {}",
                file.display(),
                log::plain(&e)
            )
        })?;
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

/// What one more wrong try did to its address.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Strike {
    /// Counted; the address may go on.
    Counted,
    /// The address is now locked out for [`LOCKOUT`].
    LockedOut,
}

/// What [`Failures::judge`] made of one try.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Judged {
    /// The right password.
    Right,
    /// A wrong one, counted.
    Wrong(Strike),
    /// Not judged: the address is locked out for this much longer.
    Locked(Duration),
}

/// Wrong tries per address, and lockouts; bounded by [`MAX_TRACKED`].
#[derive(Default)]
pub struct Failures {
    by_ip: Mutex<HashMap<IpAddr, Record>>,
}

struct Record {
    /// When its recent wrong tries were made, oldest first; at most
    /// [`LOCKOUT_TRIES`].
    tries: Vec<Instant>,
    /// Refused at accept until then.
    locked_until: Option<Instant>,
}

impl Record {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }

    fn stale(&self, now: Instant) -> bool {
        !self.locked(now)
            && self
                .tries
                .last()
                .is_none_or(|&t| now.saturating_duration_since(t) >= LOCKOUT_WINDOW)
    }
}

impl Failures {
    /// How long `ip` is still locked out, if it is.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let by_ip = self.by_ip.lock();
        let until = by_ip.get(&ip.to_canonical())?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a wrong try from `ip` at `now`.
    pub fn strike(&self, ip: IpAddr, now: Instant) -> Strike {
        strike_in(&mut self.by_ip.lock(), ip.to_canonical(), now)
    }

    /// Judges one try from `ip` at `now` with `right` (the compare), and
    /// counts it if wrong, all under the lock: so however many connections
    /// of one address try at once, at most [`LOCKOUT_TRIES`] of its tries
    /// are judged before it is locked out, and none while it is.
    pub fn judge(&self, ip: IpAddr, now: Instant, right: impl FnOnce() -> bool) -> Judged {
        let ip = ip.to_canonical();
        let mut by_ip = self.by_ip.lock();
        if let Some(until) = by_ip.get(&ip).and_then(|r| r.locked_until) {
            if until > now {
                return Judged::Locked(until - now);
            }
        }
        if right() {
            Judged::Right
        } else {
            Judged::Wrong(strike_in(&mut by_ip, ip, now))
        }
    }

    /// Addresses remembered now (for tests).
    pub fn tracked(&self) -> usize {
        self.by_ip.lock().len()
    }
}

/// Counts a wrong try from `ip` (canonical) at `now`, under the lock.
fn strike_in(by_ip: &mut HashMap<IpAddr, Record>, ip: IpAddr, now: Instant) -> Strike {
    if !by_ip.contains_key(&ip) && by_ip.len() >= MAX_TRACKED {
        make_room(by_ip, now);
        if by_ip.len() >= MAX_TRACKED {
            // Every remembered address is locked out: this one goes
            // uncounted (its connections still have 3 tries each).
            return Strike::Counted;
        }
    }
    let record = by_ip.entry(ip).or_insert_with(|| Record {
        // Never more than this: no growth past the stated bound.
        tries: Vec::with_capacity(LOCKOUT_TRIES),
        locked_until: None,
    });
    record
        .tries
        .retain(|&t| now.saturating_duration_since(t) < LOCKOUT_WINDOW);
    record.tries.push(now);
    if record.tries.len() >= LOCKOUT_TRIES {
        record.tries.clear();
        record.locked_until = Some(now + LOCKOUT);
        Strike::LockedOut
    } else {
        Strike::Counted
    }
}

/// Forgets stale records; if none is stale, the unlocked one whose last
/// try is oldest.
fn make_room(by_ip: &mut HashMap<IpAddr, Record>, now: Instant) {
    by_ip.retain(|_, record| !record.stale(now));
    if by_ip.len() < MAX_TRACKED {
        return;
    }
    let oldest = by_ip
        .iter()
        .filter(|(_, record)| !record.locked(now))
        .min_by_key(|(_, record)| record.tries.last().copied())
        .map(|(&ip, _)| ip);
    if let Some(ip) = oldest {
        by_ip.remove(&ip);
    }
}

/// The password and the wrong tries: what `--password-file` switches on.
pub struct Gate {
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
        say(protocol::notice(
            "this server needs a password: send /pass PASSWORD",
        ))?;
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
            if !bucket.try_take() && !bucket.wait(&ctx.shutdown) {
                return Ok(shutting_down());
            }
            // Banned or locked out meanwhile: its read side was shut, but
            // lines it sent before (or sends still) may yet arrive. None of
            // them is handled.
            if let Some(line) = ctx.access.shut_out(peer.ip()) {
                return Ok(Passage::Refused(line));
            }
            let given = match &line {
                Line::Text(text) if text.trim().is_empty() => continue,
                Line::Text(text) => pass_argument(text),
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
                    "{ip} locked out for {} s: {LOCKOUT_TRIES} wrong passwords within {} s; closed its {} other connections not in the room",
                    LOCKOUT.as_secs(),
                    LOCKOUT_WINDOW.as_secs(),
                    closed.saturating_sub(1)
                );
            }
            if ctx.shutdown.pause(WRONG_DELAY) {
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
    Passage::Refused(protocol::notice("server shutting down"))
}

/// The password in `/pass PASSWORD` (command word in any case), without
/// surrounding whitespace; `None` for any other line, `/pass` alone included.
pub fn pass_argument(text: &str) -> Option<&str> {
    let command = text.trim_start().strip_prefix('/')?;
    let (word, rest) = command.split_once([' ', '\t'])?;
    if !word.eq_ignore_ascii_case("pass") {
        return None;
    }
    let given = rest.trim();
    (!given.is_empty()).then_some(given)
}

#[cfg(test)]
mod tests;
